"""Legality: what QEMU and libvirt allow, held as data.

:mod:`~pcitopo.legality.catalog` reads controller models and device kinds,
:mod:`~pcitopo.legality.machine` reads machine descriptions, and
:mod:`~pcitopo.legality.rules` checks a topology against both. Each name is
imported from its module on first use (:mod:`pcitopo._lazy`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pcitopo._lazy import lazy

if TYPE_CHECKING:
    from pcitopo.legality.catalog import Catalog, Connect, ControllerModel, DeviceKind
    from pcitopo.legality.machine import Builtin, Machine, machines
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

_CATALOG, _MACHINE, _RULES = "pcitopo.legality.catalog", "pcitopo.legality.machine", "pcitopo.legality.rules"
__getattr__ = lazy(
    __name__,
    {
        "RULES": _RULES,
        "Builtin": _MACHINE,
        "Catalog": _CATALOG,
        "Connect": _CATALOG,
        "ControllerModel": _CATALOG,
        "DeviceKind": _CATALOG,
        "Machine": _MACHINE,
        "check": _RULES,
        "machines": _MACHINE,
        "validate": _RULES,
    },
)


def __dir__() -> list[str]:
    return __all__
