"""The realiser's shortcuts around the attrs constructors build exactly what the constructors build."""

from __future__ import annotations

import attrs

from pcitopo.address import PciAddress
from pcitopo.devices import Bar, Controller, Device, HotplugNeed, Needs
from pcitopo.solver import _realize


def test_the_copied_fields_are_every_field() -> None:
    """_moved and _new_controller set every field of Device and Controller, and nothing else."""
    assert tuple(f.name for f in attrs.fields(Device)) == _realize._DEVICE_FIELDS
    assert tuple(f.name for f in attrs.fields(Controller)) == _realize._CONTROLLER_FIELDS


def test_moved_is_evolve() -> None:
    """_moved gives the device attrs.evolve gives: every other field kept, the address and multifunction new."""
    d = Device(
        "gpu0",
        "vfio-pci",
        address=PciAddress.parse("00:03.0"),
        multifunction=False,
        needs=Needs(hotplug=HotplugNeed.REQUIRED, numa_node=1),
        io_bar=True,
        memory=1 << 20,
        bars=(Bar(0, 16 << 20, "mem64", prefetchable=True),),
        acpi_index=7,
    )
    to = PciAddress.parse("05:00.0")
    moved = _realize._moved(d, to, True)
    assert moved == attrs.evolve(d, address=to, multifunction=True)
    assert hash(moved) == hash(attrs.evolve(d, address=to, multifunction=True))
    assert d.address == PciAddress.parse("00:03.0")  # the original is untouched


def test_new_controller_is_the_constructor() -> None:
    """_new_controller gives the controller Controller(...) gives, defaults included."""
    at = PciAddress.parse("00:02.7")
    made = _realize._new_controller(9, "pcie-root-port", at, 9, at.devfn, False)
    assert made == Controller(9, "pcie-root-port", address=at, chassis=9, port=at.devfn, hotplug=False)
    assert hash(made) == hash(Controller(9, "pcie-root-port", address=at, chassis=9, port=at.devfn, hotplug=False))
    assert _realize._new_controller(4, "pcie-to-pci-bridge", at) == Controller(4, "pcie-to-pci-bridge", address=at)
    assert made.name == "pci.9"
