"""Probing the Debian QEMU gives the shipped machine descriptions."""

from __future__ import annotations

import pytest

from pcitopo.legality.machine import Machine
from pcitopo.qemu import QemuError, machine_to_toml, probe
from tests.support.qemu import qemu_binary

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("qemu")]

MACHINES = [
    # shipped name, QEMU machine type
    ("q35", "q35"),
    ("pc", "pc"),
    ("aarch64-virt", "virt"),
    ("pseries", "pseries"),
    ("riscv64-virt", "virt"),
]


@pytest.mark.parametrize(("name", "machine_type"), MACHINES)
def test_probe_agrees_with_shipped(name: str, machine_type: str) -> None:
    """Root bus, PCIe flag, built-ins (address and QEMU type) and offered controllers match the shipped file."""
    shipped = Machine.named(name)
    probed = probe(qemu_binary(shipped), machine_type)
    assert probed.root_bus_name == shipped.root_bus_name
    assert probed.pcie == shipped.pcie
    assert probed.root_hotplug == shipped.root_hotplug
    assert probed.root_qemu == shipped.root_qemu
    assert [(b.address, b.qemu_device, b.multifunction) for b in probed.builtins] == [
        (b.address, b.qemu_device, b.multifunction) for b in shipped.builtins if not b.optional
    ]
    assert set(probed.controllers) == set(shipped.controllers)
    assert any(t in shipped.machine_types for t in probed.machine_types)


@pytest.mark.parametrize(("name", "machine_type"), MACHINES)
def test_probe_with_base_is_the_shipped_description(name: str, machine_type: str) -> None:
    """Completed by the shipped file, a probe gives exactly the shipped description, and its TOML reads back."""
    shipped = Machine.named(name)
    probed = probe(qemu_binary(shipped), machine_type, base=shipped)
    assert probed == shipped
    assert "# from base" in machine_to_toml(probed, base=shipped)


def test_probe_unknown_machine_type() -> None:
    """An unknown machine type is a QemuError carrying QEMU's own message."""
    with pytest.raises(QemuError) as info:
        probe(qemu_binary("q35"), "no-such-machine")
    assert info.value.qemu_message == "unsupported machine type"
