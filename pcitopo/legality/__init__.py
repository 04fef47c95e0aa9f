"""Legality: what QEMU and libvirt allow, held as data.

:mod:`~pcitopo.legality.catalog` reads controller models and device kinds,
:mod:`~pcitopo.legality.machine` reads machine descriptions, and
:mod:`~pcitopo.legality.rules` checks a topology against both.
"""

from __future__ import annotations

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


def __dir__() -> list[str]:
    return __all__
