"""Illegal topologies that QEMU refuses are refused with QEMU's exact message, and the validator agrees."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from pcitopo.address import PciAddress
from pcitopo.devices import Controller, Device
from pcitopo.legality.rules import validate
from pcitopo.qemu import QemuError, verify
from pcitopo.topology import Topology

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("qemu")]

A = PciAddress.parse


def _rp(index: int, addr: str, chassis: int) -> Controller:
    return Controller(index, "pcie-root-port", address=A(addr), chassis=chassis, port=index)


ILLEGAL: list[tuple[str, Callable[[], Topology], str]] = [
    (
        "duplicate PCIe chassis/slot",
        lambda: Topology.build("q35", [_rp(1, "00:02.0", 5), _rp(2, "00:03.0", 5)]),
        "Can't add chassis slot, error -16",
    ),
    (
        "duplicate pxb-pcie bus_nr",
        lambda: Topology.build(
            "q35",
            [
                Controller(1, "pcie-expander-bus", address=A("00:05.0"), bus_nr=10),
                Controller(2, "pcie-expander-bus", address=A("00:06.0"), bus_nr=10),
            ],
        ),
        "Bus 10 is already in use",
    ),
    (
        "endpoint on pxb-pcie",
        lambda: Topology.build(
            "q35",
            [Controller(1, "pcie-expander-bus", address=A("00:05.0"), bus_nr=10)],
            [Device("net0", "e1000e", address=A("01:00.0"))],
        ),
        "PCI: Only PCI/PCIe bridges can be plugged into pxb-pcie",
    ),
    (
        "duplicate pxb bus_nr",
        lambda: Topology.build(
            "pc",
            [
                Controller(1, "pci-expander-bus", address=A("00:05.0"), bus_nr=10),
                Controller(2, "pci-expander-bus", address=A("00:06.0"), bus_nr=10),
            ],
        ),
        "Bus 10 is already in use",
    ),
    (
        "pci-bridge without chassis_nr",
        lambda: Topology.build("pc", [Controller(1, "pci-bridge", address=A("00:05.0"), chassis_nr=0)]),
        "Bridge chassis not specified. Each bridge is required to be assigned a unique chassis id > 0.",
    ),
    (
        "duplicate pci-bridge chassis_nr on pseries",
        lambda: Topology.build(
            "pseries",
            [
                Controller(1, "pci-bridge", address=A("00:05.0"), chassis_nr=1),
                Controller(2, "pci-bridge", address=A("00:06.0"), chassis_nr=1),
            ],
        ),
        "Bridge chassis 1 already in use",
    ),
    (
        "address used twice",
        lambda: Topology.build("q35", [_rp(1, "00:02.0", 1)], [Device("net0", "e1000e", address=A("00:02.0"))]),
        "PCI: slot 2 function 0 not available for e1000e, in use by pcie-root-port,id=pci.1",
    ),
    (
        "address of a built-in",
        lambda: Topology.build("q35", devices=[Device("net0", "e1000e", address=A("00:1f.0"))]),
        "PCI: slot 31 function 0 not available for e1000e, in use by ICH9-LPC,id=(null)",
    ),
    (
        "pxb-pcie on a PCI bus",
        lambda: Topology.build("pc", [Controller(1, "pcie-expander-bus", address=A("00:05.0"), bus_nr=10)]),
        "pxb-pcie devices cannot reside on a PCI bus",
    ),
    (
        "pxb on a PCIe bus",
        lambda: Topology.build("q35", [Controller(1, "pci-expander-bus", address=A("00:05.0"), bus_nr=10)]),
        "pxb devices cannot reside on a PCIe bus",
    ),
    (
        "NUMA node not declared",
        lambda: Topology.build(
            "q35", [Controller(1, "pcie-expander-bus", address=A("00:05.0"), bus_nr=10, numa_node=1)], numa_nodes=1
        ),
        "Illegal numa node 1",
    ),
    (
        "function 1 next to a single-function function 0",
        lambda: Topology.build(
            "q35",
            devices=[
                Device("a", "e1000e", address=A("00:05.0"), multifunction=False),
                Device("b", "e1000e", address=A("00:05.1")),
            ],
        ),
        "PCI: single function device can't be populated in function 5.1",
    ),
]


@pytest.mark.parametrize(("case", "make", "message"), ILLEGAL, ids=[c for c, _, _ in ILLEGAL])
def test_qemu_refuses(case: str, make: Callable[[], Topology], message: str) -> None:
    """QEMU refuses to start with the exact message, and pcitopo's validator reports a violation too."""
    topology = make()
    assert validate(topology), f"the validator accepts {case}"
    with pytest.raises(QemuError) as info:
        verify(topology, firmware=False, hotplug=False)
    assert info.value.qemu_message == message
    assert message in info.value.stderr


def _once_cases() -> list[tuple[str, str, str]]:
    from pcitopo.legality.machine import machines as shipped_machines

    return [
        (m.name, family, message) for m in shipped_machines().values() for family, message in m.one_per_guest.items()
    ]


def _refused_cases() -> list[tuple[str, str, str]]:
    from pcitopo.legality.machine import machines as shipped_machines

    return [(m.name, kind, message) for m in shipped_machines().values() for kind, message in m.refuses.items()]


@pytest.mark.parametrize(("machine", "family", "message"), _once_cases(), ids=[f"{m}-{f}" for m, f, _ in _once_cases()])
def test_qemu_starts_one_device_of_each_one_per_guest_family(machine: str, family: str, message: str) -> None:
    """Each machine's ``[one-per-guest]`` is what its QEMU does: one device of the family starts, a second is refused
    with the message the description holds (rule one-per-guest names it), and the validator reports the pair."""
    one = Topology.build(machine, devices=[Device("a", family, address=A("00:05.0"))])
    assert validate(one) == ()
    report = verify(one, firmware=False, hotplug=False)
    assert report.ok, str(report)
    two = one.with_devices(Device("b", family, address=A("00:06.0")))
    assert [v.rule for v in validate(two)] == ["one-per-guest"]
    with pytest.raises(QemuError) as info:
        verify(two, firmware=False, hotplug=False)
    assert info.value.qemu_message == message


@pytest.mark.parametrize(
    ("machine", "kind", "message"), _refused_cases(), ids=[f"{m}-{k}" for m, k, _ in _refused_cases()]
)
def test_qemu_refuses_the_kinds_a_machine_refuses(machine: str, kind: str, message: str) -> None:
    """Each machine's ``[refuses]`` is what its QEMU does: the kind alone on the root bus is refused with the message
    the description holds, and the validator reports it (rule qemu-driver)."""
    t = Topology.build(machine, devices=[Device("a", kind, address=A("00:05.0"))])
    assert [v.rule for v in validate(t)] == ["qemu-driver"]
    with pytest.raises(QemuError) as info:
        verify(t, firmware=False, hotplug=False)
    assert info.value.qemu_message == message


def test_pseries_starts_two_virtio_iommus() -> None:
    """pseries is the machine whose QEMU starts a second virtio-iommu-pci (x86 and aarch64 virt refuse it): no
    ``[one-per-guest]`` entry, and both start."""
    t = Topology.build(
        "pseries",
        devices=[Device("a", "virtio-iommu", address=A("00:05.0")), Device("b", "virtio-iommu", address=A("00:06.0"))],
    )
    assert validate(t) == ()
    report = verify(t, firmware=False, hotplug=False)
    assert report.ok, str(report)


def test_a_qxl_vga_after_another_display_device_starts() -> None:
    """QEMU starts qxl-vga only as the first display device on its command line; pcitopo's command line puts it
    first whatever its address, so a VGA at a lower slot does not stop QEMU."""
    t = Topology.build(
        "q35", devices=[Device("vga0", "vga", address=A("00:02.0")), Device("qxl0", "qxl", address=A("00:03.0"))]
    )
    assert validate(t) == ()
    report = verify(t, firmware=False, hotplug=False)
    assert report.ok, str(report)
