"""Hand-built legal topologies start in QEMU with every device where planned."""

from __future__ import annotations

import pytest

from pcitopo.address import PciAddress
from pcitopo.devices import Controller, Device
from pcitopo.legality.rules import validate
from pcitopo.qemu import VerificationFailed, verify
from pcitopo.solver import solve
from pcitopo.topology import Topology
from tests.support.qemu import TOPOLOGIES

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("qemu")]

A = PciAddress.parse


@pytest.mark.parametrize("machine", sorted(TOPOLOGIES))
def test_legal_topology_verifies(machine: str) -> None:
    """Every device sits where planned, x86 firmware maps every BAR, and hotplug matches the topology."""
    topology = TOPOLOGIES[machine]()
    assert validate(topology) == ()
    report = verify(topology)
    assert report.ok, str(report)
    placed = {c.subject for c in report.named("placement")}
    assert placed == {d.id for d in topology.devices} | {c.name for c in topology.controllers if c.address}
    assert report.named("hotplug"), "every topology leaves a hotpluggable slot empty"
    assert bool(report.named("hotplug-refused")) is (machine != "pseries")  # pseries hotplugs everywhere
    x86 = machine in ("q35", "pc")
    assert bool(report.named("bars")) is x86


def test_json_syntax_verifies() -> None:
    """The JSON form of the q35 topology builds the same machine."""
    report = verify(TOPOLOGIES["q35"](), syntax="json", hotplug=False)
    assert report.ok, str(report)


def test_firmware_enumerates_behind_the_planned_bridges() -> None:
    """SeaBIOS numbers a pxb-pcie root bus from its bus_nr and puts each endpoint behind its port."""
    report = verify(TOPOLOGIES["q35"](), hotplug=False)
    found = {c.subject: c.detail for c in report.named("enumerated")}
    assert found["pci.12"] == "at 80:00.0 behind root bus 128"
    assert found["net3"] == "at 81:00.0 behind bridge pci.12"
    assert found["net2"].endswith("behind bridge pci.5")


def _io_ports(count: int) -> Topology:
    ports = [
        Controller(i, "pcie-root-port", address=A(f"00:{i + 1:02x}.0"), chassis=i, port=(i + 1) << 3)
        for i in range(1, count + 1)
    ]
    nics = [Device(f"net{i}", "e1000", address=PciAddress(bus=i)) for i in range(1, count + 1)]
    return Topology.build("q35", ports, nics)


def test_fourteen_io_ports_fit() -> None:
    """14 root ports each holding an e1000 (an IO BAR) all get their BARs, and the validator agrees."""
    topology = _io_ports(14)
    assert [v for v in validate(topology) if v.rule == "io-space"] == []
    report = verify(topology, hotplug=False)
    assert report.ok, str(report)


def test_fifteen_io_ports_exhaust_seabios() -> None:
    """With 15 such ports SeaBIOS runs out of IO space and leaves BARs unmapped; the validator says io-space."""
    topology = _io_ports(15)
    assert [v.rule for v in validate(topology) if v.rule == "io-space"] == ["io-space"]
    report = verify(topology, hotplug=False)
    assert not report.ok
    firmware = report.named("firmware")[0]
    assert (firmware.ok, firmware.detail) == (False, "PCI: out of I/O address space")
    unmapped = [c for c in report.named("bars") if not c.ok]
    assert any("(io, 64 bytes)" in c.detail for c in unmapped)
    with pytest.raises(VerificationFailed) as info:
        report.raise_for_failures()
    assert "FAILED firmware pci: PCI: out of I/O address space" in str(info.value)


def test_qemu_accepts_hotplug_into_dmi_to_pci_bridge() -> None:
    """QEMU 7.2's ACPI hotplug takes devices on a dmi-to-pci-bridge, which libvirt (and pcitopo) call never
    (libvirt refuses the attach: tests/integration/test_qemu_plans.py). verify says so, and does not fail the plan
    for it (it failed every plan with a dmi-to-pci-bridge verified with hotplug)."""
    topology = Topology.build("q35", [Controller(1, "dmi-to-pci-bridge", address=A("00:1e.0"))])
    report = verify(topology, firmware=False)
    assert report.ok, str(report)
    refused = report.named("hotplug-refused")
    on_bridge = [c for c in refused if c.subject.startswith("pci.1 ")]
    assert len(on_bridge) == 32
    assert {c.detail for c in on_bridge} == {"accepted by QEMU; libvirt refuses hot-plug on a dmi-to-pci-bridge"}
    assert all(c.ok for c in refused if c.subject.startswith("pcie.0 "))


@pytest.mark.parametrize("machine", ["q35", "pc", "aarch64-virt", "pseries", "riscv64-virt"])
def test_devices_that_need_a_backend_start_without_extra(machine: str) -> None:
    """nvme (serial), virtio-blk in every variant (drive), virtio-9p (fsdev), virtio-crypto (cryptodev), virtio-pmem,
    virtio-mem and ivshmem-plain (memdev) get stand-in backends when ``extra`` gives none (where the machine starts
    the kind): without them QEMU refuses ("serial property not set", "drive property not
    set"); with them the plan starts and every device sits where planned."""
    kinds = ["nvme", "virtio-blk", "virtio-blk-transitional", "virtio-blk-non-transitional", "virtio-9p"]
    kinds += ["ivshmem-plain", "virtio-crypto", "virtio-pmem", "virtio-mem"]
    request = Topology.build(machine, devices=[Device(f"d{i}", k) for i, k in enumerate(kinds)])
    plan = solve(request.replace(devices=[d for d in request.devices if request.machine.starts(d.kind)]))
    report = verify(plan.topology, firmware=False, hotplug=False)
    assert report.ok, str(report)
    assert {c.subject for c in report.named("placement") if c.ok} >= set(plan.assigned)
