"""Properties of PCI addresses: text round trips and ordering."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from pcitopo.address import PciAddress
from pcitopo.strategies import pci_addresses


def fields(a: PciAddress) -> tuple[int, int, int, int]:
    return (a.domain, a.bus, a.slot, a.function)


@given(pci_addresses())
def test_str_parse_round_trip(address: PciAddress) -> None:
    """Parsing the printed form of an address gives back an equal address with the same hash."""
    again = PciAddress.parse(str(address))
    assert again == address
    assert hash(again) == hash(address)


@given(pci_addresses())
def test_printed_form_is_canonical(address: PciAddress) -> None:
    """The printed form is DDDD:BB:SS.F in lower-case hex, and upper-case or padded input parses to it."""
    text = str(address)
    assert len(text) == 12
    assert text == text.lower()
    assert PciAddress.parse(f"  {text.upper()} ") == address


@given(pci_addresses(max_domain=0))
def test_domain_may_be_left_out(address: PciAddress) -> None:
    """In domain 0, BB:SS.F parses to the same address as DDDD:BB:SS.F."""
    assert PciAddress.parse(str(address)[5:]) == address


@given(pci_addresses(), pci_addresses())
def test_ordering_matches_field_tuples(a: PciAddress, b: PciAddress) -> None:
    """Addresses order like their (domain, bus, slot, function) tuples."""
    assert (a < b) == (fields(a) < fields(b))
    assert (a == b) == (fields(a) == fields(b))


@given(st.lists(pci_addresses(), max_size=20))
def test_sorting_is_consistent_with_tuples(addresses: list[PciAddress]) -> None:
    """Sorting addresses sorts their field tuples."""
    assert [fields(a) for a in sorted(addresses)] == sorted(fields(a) for a in addresses)


@given(pci_addresses())
def test_devfn_round_trip(address: PciAddress) -> None:
    """from_devfn(devfn) rebuilds the address on its bus and domain."""
    assert PciAddress.from_devfn(address.devfn, domain=address.domain, bus=address.bus) == address
