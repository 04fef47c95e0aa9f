"""Interchange formats: libvirt domain XML in and out.

>>> from pcitopo.formats import LibvirtDomain
>>> LibvirtDomain.from_string("<domain><os><type arch='x86_64' machine='pc'>hvm</type></os></domain>").machine.name
'pc'
"""

from __future__ import annotations

from pcitopo.formats.libvirt import LibvirtDomain

__all__ = ["LibvirtDomain"]


def __dir__() -> list[str]:
    return __all__
