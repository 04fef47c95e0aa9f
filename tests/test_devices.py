"""Devices and controllers: values, names, and input checks with exact text."""

from __future__ import annotations

import pytest

from pcitopo import devices
from pcitopo.address import PciAddress
from pcitopo.devices import Controller, Device, HotplugNeed, Needs
from pcitopo.errors import InvalidInput


def test_device_defaults_and_text() -> None:
    """A device without an address is a request, printed with its id and kind."""
    d = Device("net0", "virtio-net")
    assert d.address is None
    assert d.needs == Needs()
    assert d.needs.hotplug is HotplugNeed.ANY
    assert str(d) == "'net0' (virtio-net)"


def test_placed_at_returns_a_new_device() -> None:
    """placed_at() leaves the original untouched."""
    d = Device("net0", "virtio-net")
    placed = d.placed_at(PciAddress(bus=1))
    assert placed.address == PciAddress(bus=1)
    assert d.address is None
    assert placed.placed_at(None) == d


def test_with_needs_is_evolve_keeping_every_other_field() -> None:
    """with_needs() gives what attrs.evolve gives: every field of Device copied (a field added to Device and not to
    with_needs would be missing here), the needs new, the original untouched."""
    import attrs

    from pcitopo.devices import Bar

    d = Device(
        "gpu0",
        "vfio-pci",
        PciAddress(bus=3, slot=1, function=2),
        multifunction=True,
        io_bar=True,
        memory=1 << 20,
        bars=(Bar(index=0, size=1 << 24, kind="mem32"),),
        acpi_index=7,
    )
    wanted = Needs(hotplug=HotplugNeed.PREFERRED, numa_node=1)
    moved = d.with_needs(wanted)
    assert moved == attrs.evolve(d, needs=wanted)
    assert all(hasattr(moved, f.name) for f in attrs.fields(Device))
    assert {f.name: getattr(moved, f.name) for f in attrs.fields(Device) if f.name != "needs"} == {
        f.name: getattr(d, f.name) for f in attrs.fields(Device) if f.name != "needs"
    }
    assert d.needs == Needs()


@pytest.mark.parametrize(
    ("index", "model", "id", "name"),
    [
        (0, "pcie-root", None, "pcie.0"),
        (0, "pci-root", None, "pci.0"),
        (3, "pci-bridge", None, "pci.3"),
        (3, "pci-bridge", "ua-bridge", "ua-bridge"),
    ],
)
def test_controller_names(index: int, model: str, id: str | None, name: str) -> None:
    """A controller is named by its alias, else pcie.0 for the PCIe root, else libvirt's pci.N."""
    c = Controller(index, model, id=id)
    assert c.name == name
    assert str(c) == f"{name!r} ({model}, index {index})"


def test_needs_accept_hotplug_by_value() -> None:
    """Needs.hotplug converts its string value to the enum."""
    assert Needs(hotplug="required").hotplug is HotplugNeed.REQUIRED


BAD = [
    (lambda: Device("", "e1000"), "device: id must be a non-empty string of letters, digits and _.:+- (got '')"),
    (lambda: Device("a b", "e1000"), "device: id must be a non-empty string of letters, digits and _.:+- (got 'a b')"),
    (lambda: Controller(256, "pci-bridge"), "controller index 256: index must be in 0..255 (got 256)"),
    (lambda: Controller(1, "pci-bridge", chassis_nr=-1), "controller index 1: chassis_nr must be in 0..255 (got -1)"),
    (
        lambda: Controller(1, "pcie-root-port", chassis="1"),  # type: ignore[arg-type]
        "controller index 1: chassis must be an int or None (got '1')",
    ),
    (lambda: Controller(1, "pcie-root-port", port=True), "controller index 1: port must be an int or None (got True)"),
    (
        lambda: Controller(1, "pci-bridge", id="bad id"),
        "controller: id must be a non-empty string of letters, digits and _.:+- (got 'bad id')",
    ),
    (lambda: Needs(numa_node=300), "Needs: numa_node must be in 0..255 (got 300)"),
    (
        lambda: Needs(hotplug="sometimes"),
        "needs: hotplug must be one of 'any', 'required', 'preferred', 'forbidden' (got 'sometimes')",
    ),
]


@pytest.mark.parametrize(("make", "message"), BAD)
def test_bad_values_raise_invalid_input(make: object, message: str) -> None:
    """Bad ids, indexes and target values raise InvalidInput naming the field and the value."""
    with pytest.raises(InvalidInput) as info:
        make()  # type: ignore[operator]
    assert str(info.value) == message


def test_values_are_frozen_and_hashable() -> None:
    """Devices, controllers and needs are immutable and hashable."""
    d = Device("a", "e1000", needs=Needs(numa_node=1))
    c = Controller(1, "pci-bridge", chassis_nr=1)
    assert len({d, d, c, c}) == 2
    with pytest.raises(AttributeError):
        d.kind = "e1000e"  # type: ignore[misc]


def test_public_names() -> None:
    """The module exports exactly its five classes."""
    assert dir(devices) == ["Bar", "Controller", "Device", "HotplugNeed", "Needs"]


def test_with_io_reserve_gives_a_user_alias_libvirt_keeps() -> None:
    """Setting io-reserve names the controller ua-pci-N (libvirt keeps ua- aliases), and str shows the value."""
    c = Controller(3, "pcie-root-port").with_io_reserve(0)
    assert (c.id, c.io_reserve) == ("ua-pci-3", 0)
    assert str(c) == "'ua-pci-3' (pcie-root-port, index 3, io-reserve 0)"
    assert Controller(3, "pcie-root-port", id="ua-x").with_io_reserve(0).id == "ua-x"


def test_io_reserve_must_be_a_byte_count() -> None:
    """A negative io-reserve is refused naming the field."""
    with pytest.raises(InvalidInput, match=r"io_reserve must be in 0\.\."):
        Controller(3, "pcie-root-port", io_reserve=-1)
