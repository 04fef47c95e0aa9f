"""A broken rule: which rule, which devices, which address, and why.

>>> from pcitopo.address import PciAddress
>>> v = Violation("unique-address", "slot 0000:00:03.0 wanted by 'net0' and 'disk1'",
...               devices=("net0", "disk1"), address=PciAddress.parse("00:03.0"))
>>> str(v)
"slot 0000:00:03.0 wanted by 'net0' and 'disk1' (rule: unique-address)"
"""

from __future__ import annotations

from collections.abc import Iterable

import attrs

from pcitopo.address import PciAddress

__all__ = ["Violation"]


def __dir__() -> list[str]:
    return __all__


def _names(devices: Iterable[str]) -> tuple[str, ...]:
    return tuple(devices)


@attrs.frozen(order=True)
class Violation:
    """One broken rule. ``rule`` is a stable identifier (see :mod:`pcitopo.legality.rules`)."""

    rule: str
    message: str
    devices: tuple[str, ...] = attrs.field(default=(), converter=_names)
    address: PciAddress | None = attrs.field(default=None, order=False)

    def __str__(self) -> str:
        return f"{self.message} (rule: {self.rule})"

    def as_dict(self) -> dict[str, object]:
        """A JSON-ready form."""
        return {
            "rule": self.rule,
            "message": self.message,
            "devices": list(self.devices),
            "address": None if self.address is None else str(self.address),
        }
