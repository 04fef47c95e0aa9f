"""PCI addresses as values.

An address names one function of one slot on one bus: ``DDDD:BB:SS.F``.
Following libvirt, ``bus`` is the *index of the controller* that provides the
bus (0 is the root bus), not the number the guest firmware gives it later.

>>> a = PciAddress.parse("0000:00:1f.3")
>>> a
<PciAddress('0000:00:1f.3')>
>>> str(a), a.slot, a.function, a.devfn
('0000:00:1f.3', 31, 3, 251)
>>> PciAddress(bus=1, slot=0) < PciAddress(bus=1, slot=0, function=1)
True
>>> PciAddress.parse("00:02.0") == PciAddress(bus=0, slot=2)
True
"""

from __future__ import annotations

import re

import attrs

from pcitopo.errors import InvalidAddress

__all__ = ["PciAddress"]


def __dir__() -> list[str]:
    return __all__


_RANGES = {
    "domain": (0, 0xFFFF),
    "bus": (0, 0xFF),
    "slot": (0, 0x1F),
    "function": (0, 7),
}
_WIDTH = {"domain": 4, "bus": 2, "slot": 2, "function": 1}

_SYNTAX = re.compile(
    r"""^\s*
    (?:(?P<domain>[0-9a-fA-F]{1,4}):)?
    (?P<bus>[0-9a-fA-F]{1,2}):
    (?P<slot>[0-9a-fA-F]{1,2})
    \.(?P<function>[0-9a-fA-F])
    \s*$""",
    re.VERBOSE,
)


def _check_range(field: str, value: int, text: str | None = None) -> None:
    low, high = _RANGES[field]
    if not isinstance(value, int) or isinstance(value, bool):
        raise InvalidAddress(
            f"PCI address {field} must be an int (got {value!r} that is a {type(value).__name__})",
            text=text,
            field=field,
        )
    if not low <= value <= high:
        width = _WIDTH[field]
        got = f"0x{value:0{width}x}" if value >= 0 else str(value)
        prefix = f"invalid PCI address {text!r}: " if text is not None else "invalid PCI address: "
        raise InvalidAddress(
            f"{prefix}{field} must be in 0x{low:0{width}x}..0x{high:0{width}x} (got {got})",
            text=text,
            field=field,
            value=value,
            minimum=low,
            maximum=high,
        )


def _validator(instance: PciAddress, attribute: attrs.Attribute[int], value: int) -> None:
    _check_range(attribute.name, value)


@attrs.frozen(repr=False)
class PciAddress:
    """A PCI function address: domain, bus (controller index), slot, function.

    Ordered by (domain, bus, slot, function), hashable, immutable.

    >>> a, b = PciAddress.parse("00:02.0"), PciAddress.parse("01:00.0")
    >>> (a < b, a <= b, a > b, a >= b, a < a, a <= a, sorted([b, a]) == [a, b])
    (True, True, False, False, False, True, True)
    """

    domain: int = attrs.field(default=0, kw_only=True, validator=_validator)
    bus: int = attrs.field(default=0, kw_only=True, validator=_validator)
    slot: int = attrs.field(default=0, kw_only=True, validator=_validator)
    function: int = attrs.field(default=0, kw_only=True, validator=_validator)

    @classmethod
    def parse(cls, text: str) -> PciAddress:
        """Parse ``DDDD:BB:SS.F`` (the domain may be left out).

        >>> PciAddress.parse("0000:00:20.0")
        Traceback (most recent call last):
          ...
        pcitopo.errors.InvalidAddress: invalid PCI address '0000:00:20.0': slot must be in 0x00..0x1f (got 0x20)
        """
        if not isinstance(text, str):
            raise InvalidAddress(
                f"a PCI address must be a string like '0000:00:02.0' (got {text!r})",
                text=None,
            )
        match = _SYNTAX.match(text)
        if match is None:
            raise InvalidAddress(
                f"invalid PCI address {text!r}: expected DDDD:BB:SS.F in hexadecimal, like '0000:00:02.0'",
                text=text,
            )
        fields = {k: int(v, 16) for k, v in match.groupdict(default="0").items()}
        for name, value in fields.items():
            _check_range(name, value, text)
        return cls(**fields)

    @classmethod
    def from_devfn(cls, devfn: int, *, domain: int = 0, bus: int = 0) -> PciAddress:
        """Build from a ``devfn`` byte (``slot << 3 | function``), as QEMU reports it.

        >>> str(PciAddress.from_devfn(16, bus=3))
        '0000:03:02.0'
        """
        if not 0 <= devfn <= 0xFF:
            raise InvalidAddress(
                f"invalid PCI address: devfn must be in 0x00..0xff (got {devfn:#x})",
                field="devfn",
                value=devfn,
                minimum=0,
                maximum=0xFF,
            )
        return cls(domain=domain, bus=bus, slot=devfn >> 3, function=devfn & 7)

    @classmethod
    def _trusted(cls, domain: int, bus: int, slot: int, function: int) -> PciAddress:
        """Build without range checks, for values pcitopo computed itself."""
        self = object.__new__(cls)
        object.__setattr__(self, "domain", domain)
        object.__setattr__(self, "bus", bus)
        object.__setattr__(self, "slot", slot)
        object.__setattr__(self, "function", function)
        return self

    @property
    def devfn(self) -> int:
        """``slot << 3 | function``."""
        return self.slot << 3 | self.function

    @property
    def slot_address(self) -> PciAddress:
        """The address of function 0 of this slot."""
        return PciAddress._trusted(self.domain, self.bus, self.slot, 0)

    def with_function(self, function: int) -> PciAddress:
        """This slot, another function."""
        _check_range("function", function)
        return PciAddress._trusted(self.domain, self.bus, self.slot, function)

    @property
    def qemu_addr(self) -> str:
        """The ``addr=`` value QEMU takes: ``0x2`` or ``0x2.0x1``.

        >>> PciAddress.parse("00:1f.3").qemu_addr
        '0x1f.0x3'
        """
        if self.function:
            return f"{self.slot:#x}.{self.function:#x}"
        return f"{self.slot:#x}"

    # The order, written out: attrs' order=True compares through a generator of the fields, and sorting
    # addresses (the solver, the naming, the writer do it for every device) took several times as long.

    def __lt__(self, other: PciAddress) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        a, b = self, other
        return (a.domain, a.bus, a.slot, a.function) < (b.domain, b.bus, b.slot, b.function)

    def __le__(self, other: PciAddress) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        a, b = self, other
        return (a.domain, a.bus, a.slot, a.function) <= (b.domain, b.bus, b.slot, b.function)

    def __gt__(self, other: PciAddress) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        a, b = self, other
        return (a.domain, a.bus, a.slot, a.function) > (b.domain, b.bus, b.slot, b.function)

    def __ge__(self, other: PciAddress) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        a, b = self, other
        return (a.domain, a.bus, a.slot, a.function) >= (b.domain, b.bus, b.slot, b.function)

    def __str__(self) -> str:
        # %-formatting: half the time of an f-string's format specs (each parsed anew); a plan's JSON record and
        # messages write every address
        return "%04x:%02x:%02x.%x" % (self.domain, self.bus, self.slot, self.function)  # noqa: UP031

    def __repr__(self) -> str:
        return f"<PciAddress({str(self)!r})>"
