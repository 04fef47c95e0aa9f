"""Legality: what QEMU and libvirt allow, held as data.

:mod:`~pcitopo.legality.catalog` reads controller models and device kinds,
:mod:`~pcitopo.legality.machine` reads machine descriptions, and
:mod:`~pcitopo.legality.rules` checks a topology against both.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pcitopo.legality.catalog import Catalog, Connect, ControllerModel, DeviceKind
from pcitopo.legality.machine import Builtin, Machine, machines

if TYPE_CHECKING:
    from pcitopo.legality.rules import RULES, check, validate

__all__ = [
    "RULES",
    "Builtin",
    "Catalog",
    "Connect",
    "ControllerModel",
    "DeviceKind",
    "Machine",
    "check",
    "machines",
    "validate",
]


def __dir__() -> list[str]:
    return __all__


def __getattr__(name: str) -> Any:
    """``RULES``, ``check`` and ``validate`` from :mod:`~pcitopo.legality.rules`, imported when first asked for.

    The rules sit above :mod:`pcitopo.topology` (they check topologies), and
    the topology needs the catalog and machines of this package: importing
    the rules here eagerly would make ``pcitopo.topology`` import itself
    through this package.
    """
    if name in ("RULES", "check", "validate"):
        from pcitopo.legality import rules

        return getattr(rules, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
