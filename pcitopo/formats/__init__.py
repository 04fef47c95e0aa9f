"""Interchange formats: libvirt domain XML in and out.

>>> from pcitopo.formats import LibvirtDomain
>>> LibvirtDomain.from_string("<domain><os><type arch='x86_64' machine='pc'>hvm</type></os></domain>").machine.name
'pc'

:class:`LibvirtDomain` is imported on first use (:mod:`pcitopo._lazy`), so
:mod:`pcitopo.formats.host_json` alone does not bring in lxml.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pcitopo._lazy import lazy

if TYPE_CHECKING:
    from pcitopo.formats.libvirt import LibvirtDomain

__all__ = ["LibvirtDomain"]

__getattr__ = lazy(__name__, {"LibvirtDomain": "pcitopo.formats.libvirt"})


def __dir__() -> list[str]:
    return __all__
