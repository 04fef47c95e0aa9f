"""PCI addresses: parsing, printing, ordering, and range errors with exact text."""

from __future__ import annotations

import pytest

from pcitopo import address
from pcitopo.address import PciAddress
from pcitopo.errors import InvalidAddress, PcitopoError

PARSED = [
    ("0000:00:1f.3", (0, 0, 0x1F, 3)),
    ("00:02.0", (0, 0, 2, 0)),
    ("1:2:3.4", (1, 2, 3, 4)),
    ("ffff:ff:1f.7", (0xFFFF, 0xFF, 0x1F, 7)),
    ("  0000:0A:1E.1  ", (0, 0x0A, 0x1E, 1)),
]


@pytest.mark.parametrize(("text", "fields"), PARSED)
def test_parse(text: str, fields: tuple[int, int, int, int]) -> None:
    """Parsing reads hex fields, allows the domain to be left out, and ignores case and surrounding space."""
    a = PciAddress.parse(text)
    assert (a.domain, a.bus, a.slot, a.function) == fields


@pytest.mark.parametrize(
    ("fields", "text"),
    [
        ((0, 0, 0, 0), "0000:00:00.0"),
        ((0, 0, 0x1F, 3), "0000:00:1f.3"),
        ((0xABCD, 0xEF, 0x10, 7), "abcd:ef:10.7"),
    ],
)
def test_str_and_repr(fields: tuple[int, int, int, int], text: str) -> None:
    """str() is the canonical DDDD:BB:SS.F form and repr() wraps it like packaging's Version."""
    domain, bus, slot, function = fields
    a = PciAddress(domain=domain, bus=bus, slot=slot, function=function)
    assert str(a) == text
    assert repr(a) == f"<PciAddress({text!r})>"
    assert PciAddress.parse(text) == a


PARSE_ERRORS = [
    ("0000:00:20.0", "invalid PCI address '0000:00:20.0': slot must be in 0x00..0x1f (got 0x20)", "slot"),
    ("00:00.8", "invalid PCI address '00:00.8': function must be in 0x0..0x7 (got 0x8)", "function"),
    ("zz", "invalid PCI address 'zz': expected DDDD:BB:SS.F in hexadecimal, like '0000:00:02.0'", None),
    ("0000:00:1f", "invalid PCI address '0000:00:1f': expected DDDD:BB:SS.F in hexadecimal, like '0000:00:02.0'", None),
    (
        "10000:00:00.0",
        "invalid PCI address '10000:00:00.0': expected DDDD:BB:SS.F in hexadecimal, like '0000:00:02.0'",
        None,
    ),
    (
        "0000:100:00.0",
        "invalid PCI address '0000:100:00.0': expected DDDD:BB:SS.F in hexadecimal, like '0000:00:02.0'",
        None,
    ),
    ("00:02.0.1", "invalid PCI address '00:02.0.1': expected DDDD:BB:SS.F in hexadecimal, like '0000:00:02.0'", None),
    ("", "invalid PCI address '': expected DDDD:BB:SS.F in hexadecimal, like '0000:00:02.0'", None),
    ("0x00:02.0", "invalid PCI address '0x00:02.0': expected DDDD:BB:SS.F in hexadecimal, like '0000:00:02.0'", None),
]


@pytest.mark.parametrize(("text", "message", "field"), PARSE_ERRORS)
def test_parse_errors(text: str, message: str, field: str | None) -> None:
    """Malformed strings and out-of-range fields raise InvalidAddress quoting the input."""
    with pytest.raises(InvalidAddress) as info:
        PciAddress.parse(text)
    assert str(info.value) == message
    assert info.value.text == text
    assert info.value.field == field


def test_parse_rejects_non_strings() -> None:
    """Parsing something that is not a string says what a PCI address looks like."""
    with pytest.raises(InvalidAddress, match=r"^a PCI address must be a string like '0000:00:02.0' \(got 5\)$"):
        PciAddress.parse(5)  # type: ignore[arg-type]


RANGE_ERRORS = [
    ({"domain": 0x10000}, "invalid PCI address: domain must be in 0x0000..0xffff (got 0x10000)"),
    ({"domain": -1}, "invalid PCI address: domain must be in 0x0000..0xffff (got -1)"),
    ({"bus": 256}, "invalid PCI address: bus must be in 0x00..0xff (got 0x100)"),
    ({"slot": 32}, "invalid PCI address: slot must be in 0x00..0x1f (got 0x20)"),
    ({"function": 8}, "invalid PCI address: function must be in 0x0..0x7 (got 0x8)"),
    ({"slot": "1"}, "PCI address slot must be an int (got '1' that is a str)"),
    ({"function": True}, "PCI address function must be an int (got True that is a bool)"),
]


@pytest.mark.parametrize(("fields", "message"), RANGE_ERRORS)
def test_range_errors_name_field_range_and_value(fields: dict[str, object], message: str) -> None:
    """Building from fields checks each one and names the field, the range and the value."""
    with pytest.raises(InvalidAddress) as info:
        PciAddress(**fields)  # type: ignore[arg-type]
    assert str(info.value) == message
    assert info.value.field == next(iter(fields))
    assert isinstance(info.value, ValueError)
    assert isinstance(info.value, PcitopoError)


def test_range_error_keeps_the_range_as_data() -> None:
    """A range error carries the value and the allowed minimum and maximum."""
    with pytest.raises(InvalidAddress) as info:
        PciAddress(slot=40)
    assert (info.value.value, info.value.minimum, info.value.maximum) == (40, 0, 31)


def test_ordering_and_hashing() -> None:
    """Addresses order by (domain, bus, slot, function) and work as dict keys."""
    addresses = [PciAddress.parse(t) for t in ["01:00.0", "00:1f.3", "0001:00:00.0", "00:02.1", "00:02.0"]]
    assert [str(a) for a in sorted(addresses)] == [
        "0000:00:02.0",
        "0000:00:02.1",
        "0000:00:1f.3",
        "0000:01:00.0",
        "0001:00:00.0",
    ]
    assert {PciAddress.parse("00:02.0"): "x"}[PciAddress(slot=2)] == "x"


def test_addresses_are_frozen() -> None:
    """An address cannot be changed in place."""
    a = PciAddress(slot=2)
    with pytest.raises(AttributeError):
        a.slot = 3  # type: ignore[misc]


@pytest.mark.parametrize(
    ("text", "devfn", "qemu"),
    [("00:00.0", 0, "0x0"), ("00:02.0", 16, "0x2"), ("00:1f.3", 251, "0x1f.0x3"), ("03:1f.7", 255, "0x1f.0x7")],
)
def test_devfn_and_qemu_addr(text: str, devfn: int, qemu: str) -> None:
    """devfn is slot << 3 | function and qemu_addr is the addr= value QEMU takes."""
    a = PciAddress.parse(text)
    assert a.devfn == devfn
    assert a.qemu_addr == qemu
    assert PciAddress.from_devfn(devfn, bus=a.bus) == a


def test_from_devfn_range() -> None:
    """A devfn outside one byte is an InvalidAddress naming devfn."""
    with pytest.raises(InvalidAddress) as info:
        PciAddress.from_devfn(256)
    assert str(info.value) == "invalid PCI address: devfn must be in 0x00..0xff (got 0x100)"
    assert info.value.field == "devfn"


def test_slot_helpers() -> None:
    """slot_address gives function 0 of the slot and with_function another function of it."""
    a = PciAddress.parse("02:03.5")
    assert str(a.slot_address) == "0000:02:03.0"
    assert str(a.with_function(7)) == "0000:02:03.7"


def test_public_names() -> None:
    """The module exports exactly PciAddress."""
    assert dir(address) == ["PciAddress"]
