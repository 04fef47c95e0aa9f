"""Guest NIC names against QEMU 7.2: the bus numbers SeaBIOS gives, and which acpi-index values QEMU takes."""

from __future__ import annotations

import re
import shutil

import pytest

from pcitopo.naming import ACPI_INDEX_MAX, guest_bus_numbers, guest_names
from pcitopo.qemu import verify
from pcitopo.qemu._qmp import Qemu, QemuError
from tests.support.qemu import TOPOLOGIES

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("qemu")]

_AT = re.compile(r"^at ([0-9a-f]{2}):([0-9a-f]{2})\.([0-7]) ")


@pytest.mark.parametrize("machine", ["q35", "pc"])
def test_predicted_bus_numbers_match_what_seabios_assigns(machine: str) -> None:
    """Every predicted guest bus number is the one QEMU's query-pci shows once SeaBIOS numbered the buses."""
    topology = TOPOLOGIES[machine]()
    report = verify(topology, hotplug=False)
    assert report.ok, str(report)
    numbers = guest_bus_numbers(topology)
    seen = {}
    for check in report.named("enumerated"):
        match = _AT.match(check.detail)
        assert match, check.detail
        seen[check.subject] = int(match.group(1), 16)
    expected = {d.id: numbers[d.address.bus] for d in topology.devices if d.address is not None}
    expected |= {c.name: numbers[c.address.bus] for c in topology.controllers if c.address is not None}
    assert seen == expected
    for ident, name in guest_names(topology).items():
        assert name.path is not None
        assert name.path.startswith(f"enp{seen[ident]}s"), (ident, name)


def _start(machine: str, *devices: str) -> str | None:
    """Start QEMU paused with these -device options; None if it starts, else its message."""
    binary = shutil.which("qemu-system-x86_64")
    assert binary is not None
    args = ["-machine", machine, "-nodefaults", "-display", "none", "-S", "-accel", "tcg"]
    for d in devices:
        args += ["-device", d]
    try:
        with Qemu(binary, args):
            return None
    except QemuError as exc:
        return exc.qemu_message


def test_acpi_index_range_and_uniqueness_are_qemus() -> None:
    """QEMU 7.2 takes acpi-index up to ACPI_INDEX_MAX, refuses one more, and refuses the same index twice."""
    nic = "virtio-net-pci,acpi-index={}"
    for machine in ("pc", "q35"):
        assert _start(machine, nic.format(ACPI_INDEX_MAX)) is None
        assert _start(machine, nic.format(ACPI_INDEX_MAX + 1)) == "acpi-index should be less or equal to 16383"
        assert _start(machine, nic.format(5), nic.format(5)) == "a PCI device with acpi-index = 5 already exist"
