"""The validator: one illegal topology per rule, legal topologies that stay clean, and robustness."""

from __future__ import annotations

import pickle
from collections.abc import Sequence

import attrs
import pytest

from pcitopo.address import PciAddress
from pcitopo.devices import Controller, Device, HotplugNeed, Needs
from pcitopo.errors import InvalidTopology
from pcitopo.legality import rules
from pcitopo.legality.catalog import Catalog
from pcitopo.legality.machine import Machine, machines
from pcitopo.legality.rules import RULES, check, validate
from pcitopo.topology import Topology
from pcitopo.violation import Violation


def A(text: str) -> PciAddress:
    return PciAddress.parse(text)


def rp(index: int, address: str, *, chassis: int | None = None, port: int | None = None, **kw: object) -> Controller:
    """A pcie-root-port with libvirt's identity defaults (chassis = index, port = devfn)."""
    a = A(address)
    return Controller(
        index,
        "pcie-root-port",
        address=a,
        chassis=index if chassis is None else chassis,
        port=a.devfn if port is None else port,
        **kw,  # type: ignore[arg-type]
    )


def ctl(index: int, model: str, address: str | None = None, **kw: object) -> Controller:
    return Controller(index, model, address=None if address is None else A(address), **kw)  # type: ignore[arg-type]


def dev(id: str, kind: str, address: str | None = None, **kw: object) -> Device:
    return Device(id, kind, address=None if address is None else A(address), **kw)  # type: ignore[arg-type]


def switch(up: int, at: str, downs: Sequence[tuple[int, str]]) -> list[Controller]:
    """An upstream port at ``at`` with downstream ports (index, address) below it."""
    result = [ctl(up, "pcie-switch-upstream-port", at)]
    result += [ctl(i, "pcie-switch-downstream-port", a, chassis=i, port=A(a).slot) for i, a in downs]
    return result


def found(t: Topology) -> list[tuple[str, tuple[str, ...]]]:
    return [(v.rule, v.devices) for v in validate(t)]


NIC = "virtio-net"  # PCIe on PCIe machines (non-transitional behind a port), no IO BAR there


def _switch_group_split() -> Topology:
    """Issue 9: switch group {a, b} on q35 with one empty root port present: a on that port, b behind a switch."""
    return Topology.build(
        "q35",
        [rp(1, "00:01.0", multifunction=True), rp(2, "00:01.1"), *switch(3, "02:00.0", [(4, "03:00.0")])],
        [
            dev("a", NIC, "01:00.0", needs=Needs(switch_group="s")),
            dev("b", NIC, "04:00.0", needs=Needs(switch_group="s")),
        ],
    )


def _bus_group_split() -> Topology:
    """Issue 9: bus group {g1, g2} with g1 at 02:1f.0 and g2 at 04:01.0, behind two pcie-to-pci-bridges."""
    return Topology.build(
        "q35",
        [
            rp(1, "00:01.0", multifunction=True),
            ctl(2, "pcie-to-pci-bridge", "01:00.0"),
            rp(3, "00:01.1"),
            ctl(4, "pcie-to-pci-bridge", "03:00.0"),
        ],
        [
            dev("g1", "e1000", "02:1f.0", needs=Needs(bus_group="g")),
            dev("g2", "e1000", "04:01.0", needs=Needs(bus_group="g")),
        ],
    )


def _switch_group_two_switches() -> Topology:
    """Switch group {a, b}: each behind a switch of its own."""
    return Topology.build(
        "q35",
        [
            rp(1, "00:01.0", multifunction=True),
            *switch(2, "01:00.0", [(3, "02:00.0")]),
            rp(4, "00:01.1"),
            *switch(5, "04:00.0", [(6, "05:00.0")]),
        ],
        [
            dev("a", NIC, "03:00.0", needs=Needs(switch_group="s")),
            dev("b", NIC, "06:00.0", needs=Needs(switch_group="s")),
        ],
    )


GROUP_CASES: list[tuple[str, Topology, list[tuple[str, tuple[str, ...]]]]] = [
    ("switch-group: a on a root port, b behind a switch", _switch_group_split(), [("switch-group", ("a", "b"))]),
    ("switch-group: a and b behind two switches", _switch_group_two_switches(), [("switch-group", ("a", "b"))]),
    ("bus-group: g1 and g2 on two buses", _bus_group_split(), [("bus-group", ("g1", "g2"))]),
]

# Each case: a topology that breaks exactly the named rule, and the violations it must yield.
ILLEGAL: list[tuple[str, Topology, list[tuple[str, tuple[str, ...]]]]] = [
    (
        "unknown-bus",
        Topology.build("q35", devices=[dev("net0", NIC, "0000:05:00.0")]),
        [("unknown-bus", ("net0",))],
    ),
    (
        "domain",
        Topology.build("q35", [rp(1, "00:02.0")], [dev("net0", NIC, "0001:01:00.0")]),
        [("domain", ("net0",))],
    ),
    (
        "slot-range on a pci-bridge (slot 0 is the SHPC)",
        Topology.build("pc", [ctl(1, "pci-bridge", "00:03.0", chassis_nr=1)], [dev("net0", "e1000", "01:00.0")]),
        [("slot-range", ("net0",))],
    ),
    (
        "slot-range on pseries' root bus",
        Topology.build("pseries", devices=[dev("net0", "e1000", "00:00.0")]),
        [("slot-range", ("net0",))],
    ),
    (
        "port-slot: endpoint at slot 3 behind a root port",
        Topology.build("q35", [rp(1, "00:02.0")], [dev("net0", NIC, "01:03.0")]),
        [("port-slot", ("net0",))],
    ),
    (
        "port-slot: endpoint at slot 1 behind a downstream port",
        Topology.build(
            "q35", [rp(1, "00:02.0"), *switch(2, "01:00.0", [(3, "02:00.0")])], [dev("net0", NIC, "03:01.0")]
        ),
        [("port-slot", ("net0",))],
    ),
    (
        "unique-address between two devices",
        Topology.build("q35", devices=[dev("net0", "e1000", "00:03.0"), dev("disk1", "virtio-blk", "00:03.0")]),
        [("unique-address", ("net0", "disk1"))],
    ),
    (
        "unique-address with the q35 built-in LPC",
        Topology.build("q35", devices=[dev("net0", "e1000", "00:1f.0")]),
        [("unique-address", ("net0",))],
    ),
    (
        "unique-address between a controller and a device",
        Topology.build("q35", [rp(1, "00:02.0")], [dev("net0", "e1000", "00:02.0")]),
        [("unique-address", ("pci.1", "net0"))],
    ),
    (
        "placement: root port behind a root port",
        Topology.build("q35", [rp(1, "00:02.0"), rp(2, "01:00.0")]),
        [("placement", ("pci.2",))],
    ),
    (
        "placement: downstream port on a root port",
        Topology.build("q35", [rp(1, "00:02.0"), ctl(2, "pcie-switch-downstream-port", "01:00.0", chassis=2, port=0)]),
        [("placement", ("pci.2",))],
    ),
    (
        "placement: downstream port on pcie.0",
        Topology.build("q35", [ctl(1, "pcie-switch-downstream-port", "00:02.0", chassis=1, port=0)]),
        [("placement", ("pci.1",))],
    ),
    (
        "placement: upstream port on pcie.0",
        Topology.build("q35", [ctl(1, "pcie-switch-upstream-port", "00:02.0")]),
        [("placement", ("pci.1",))],
    ),
    (
        "placement: pci-bridge directly on pcie.0",
        Topology.build("q35", [ctl(1, "pci-bridge", "00:02.0", chassis_nr=1)]),
        [("placement", ("pci.1",))],
    ),
    (
        "placement: pcie-to-pci-bridge on pcie.0",
        Topology.build("q35", [ctl(1, "pcie-to-pci-bridge", "00:02.0")]),
        [("placement", ("pci.1",))],
    ),
    (
        "placement: pxb on a pci-bridge rather than the root bus",
        Topology.build(
            "pc", [ctl(1, "pci-bridge", "00:03.0", chassis_nr=1), ctl(2, "pci-expander-bus", "01:01.0", bus_nr=200)]
        ),
        [("placement", ("pci.2",))],
    ),
    (
        "placement: endpoint on a pxb-pcie root bus",
        Topology.build("q35", [ctl(1, "pcie-expander-bus", "00:02.0", bus_nr=200)], [dev("net0", NIC, "01:00.0")]),
        [("placement", ("net0",))],
    ),
    (
        "root-address: a pseries host bridge given an address",
        Topology.build("pseries", [ctl(1, "spapr-pci-host-bridge", "00:02.0", target_index=1)]),
        [("root-address", ("pci.1",))],
    ),
    (
        "root-address: pcie-root given an address",
        Topology.build("q35", [ctl(0, "pcie-root", "00:05.0")]),
        [("root-address", ("pcie.0",))],
    ),
    (
        "unique-chassis-port: a root port's default chassis (its index) beside another port's explicit one",
        Topology.build("q35", [ctl(3, "pcie-root-port", "00:02.0"), ctl(4, "pcie-root-port", "00:03.0", chassis=3)]),
        [("unique-chassis-port", ("pci.3", "pci.4"))],
    ),
    (
        "phb-index: libvirt's default target index duplicates a later bridge's explicit one",
        Topology.build("pseries", [ctl(1, "spapr-pci-host-bridge"), ctl(2, "spapr-pci-host-bridge", target_index=1)]),
        [("phb-index", ("pci.1", "pci.2"))],
    ),
    (
        "expander-bus-nr: no busNr left for libvirt to give",
        Topology.build(
            "q35", [ctl(1, "pcie-expander-bus", "00:05.0", bus_nr=2), ctl(2, "pcie-expander-bus", "00:06.0")]
        ),
        [("expander-bus-nr", ("pci.2",))],
    ),
    (
        "usb-master: ICH9 UHCI companions without an EHCI",
        Topology.build(
            "q35",
            devices=[dev("usb0", "ich9-uhci1", "00:1d.0", multifunction=True), dev("usb1", "ich9-uhci2", "00:1d.1")],
        ),
        [("usb-master", ("usb0", "usb1"))],
    ),
    (
        "controller-options: an upstream port's model name on a root port",
        Topology.build("q35", [rp(1, "00:02.0", qemu_model="x3130-upstream")]),
        [("controller-options", ("pci.1",))],
    ),
    (
        "controller-options: busNr on a root port",
        Topology.build("q35", [rp(1, "00:02.0", bus_nr=5)]),
        [("controller-options", ("pci.1",))],
    ),
    (
        "controller-options: hotplug on a pcie-to-pci-bridge",
        Topology.build("q35", [rp(1, "00:02.0"), ctl(2, "pcie-to-pci-bridge", "01:00.0", hotplug=False)]),
        [("controller-options", ("pci.2",))],
    ),
    (
        "qemu-driver: igb, which QEMU 8.0 added, on a machine describing QEMU 7.2",
        Topology.build("q35", [rp(1, "00:02.0")], [dev("net0", "igb", "01:00.0")]),
        [("qemu-driver", ("net0",))],
    ),
    (
        "qemu-driver: vhost-vsock-transitional, which no QEMU has, placed or not",
        Topology.build(
            "pc",
            devices=[dev("vsock0", "vhost-vsock-transitional", "00:05.0"), dev("vsock1", "vhost-vsock-transitional")],
        ),
        [("qemu-driver", ("vsock0",)), ("qemu-driver", ("vsock1",))],
    ),
    (
        "qemu-driver: qxl-vga, which qemu-system-aarch64 does not have, on aarch64 virt",
        Topology.build("aarch64-virt", devices=[dev("video0", "qxl")]),
        [("qemu-driver", ("video0",))],
    ),
    (
        "one-per-guest: two virtio balloons of different variants, one placed",
        Topology.build(
            "q35", devices=[dev("b0", "virtio-balloon", "00:05.0"), dev("b1", "virtio-balloon-transitional")]
        ),
        [("one-per-guest", ("b0", "b1"))],
    ),
    (
        "one-per-guest: two virtio-iommu on aarch64 virt (pseries starts several)",
        Topology.build(
            "aarch64-virt", devices=[dev("i0", "virtio-iommu", "00:05.0"), dev("i1", "virtio-iommu", "00:06.0")]
        ),
        [("one-per-guest", ("i0", "i1"))],
    ),
    (
        "integrated: pvpanic-pci behind a root port",
        Topology.build("q35", [rp(1, "00:02.0")], [dev("panic", "pvpanic-pci", "01:00.0")]),
        [("integrated", ("panic",))],
    ),
    (
        "integrated: a device whose needs say integrated, behind a root port",
        Topology.build("q35", [rp(1, "00:02.0")], [dev("net0", NIC, "01:00.0", needs=Needs(integrated=True))]),
        [("integrated", ("net0",))],
    ),
    (
        "machine-model: pxb on q35",
        Topology.build("q35", [ctl(1, "pci-expander-bus")]),
        [("machine-model", ("pci.1",))],
    ),
    (
        "machine-model: pcie-root-port on pc",
        Topology.build("pc", [ctl(1, "pcie-root-port")]),
        [("machine-model", ("pci.1",))],
    ),
    (
        "machine-model: pxb-pcie on riscv64-virt",
        Topology.build("riscv64-virt", [ctl(1, "pcie-expander-bus")]),
        [("machine-model", ("pci.1",))],
    ),
    (
        "machine-model: pci-root at index 0 of q35",
        Topology.build("q35", [ctl(0, "pci-root")]),
        [("machine-model", ("pci.0",))],
    ),
    (
        "machine-model: a second root bus on pc",
        Topology.build("pc", [ctl(1, "pci-root")]),
        [("machine-model", ("pci.1",))],
    ),
    (
        "function-zero: a lone root port at function 1",
        Topology.build("q35", [rp(1, "00:02.1")]),
        [("function-zero", ("pci.1",))],
    ),
    (
        "function-zero: libvirt 9.0's lone ich9-ehci1 at function 7",
        Topology.build("q35", devices=[dev("usb", "ich9-ehci1", "00:1d.7")]),
        [("function-zero", ("usb",))],
    ),
    (
        "multifunction: not set on function 0",
        Topology.build("q35", [rp(1, "00:02.0"), rp(2, "00:02.1")]),
        [("multifunction", ("pci.1", "pci.2"))],
    ),
    (
        "multifunction: set off explicitly on function 0",
        Topology.build(
            "q35", devices=[dev("a", "e1000", "00:03.0", multifunction=False), dev("b", "e1000", "00:03.1")]
        ),
        [("multifunction", ("a", "b"))],
    ),
    (
        "controller-cycle: libvirt 9.0's upstream port on its own downstream port",
        Topology.build("q35", switch(1, "02:00.0", [(2, "01:00.0")])),
        [("controller-cycle", ("pci.1", "pci.2"))],
    ),
    (
        "controller-cycle: a bridge plugged into itself",
        Topology.build("pc", [ctl(1, "pci-bridge", "01:01.0", chassis_nr=1)]),
        [("controller-cycle", ("pci.1",)), ("index-order", ("pci.1",))],
    ),
    (
        "unique-chassis-port: the same (chassis, port) twice",
        Topology.build("q35", [rp(1, "00:02.0", chassis=1, port=8), rp(2, "00:03.0", chassis=1, port=8)]),
        [("unique-chassis-port", ("pci.1", "pci.2"))],
    ),
    (
        "unique-chassis-port: one chassis, two ports (QEMU refuses it too)",
        Topology.build("q35", [rp(1, "00:02.0", chassis=7, port=8), rp(2, "00:03.0", chassis=7, port=9)]),
        [("unique-chassis-port", ("pci.1", "pci.2"))],
    ),
    (
        "chassis-nr: 0 on a pci-bridge",
        Topology.build("pc", [ctl(1, "pci-bridge", "00:03.0", chassis_nr=0)]),
        [("chassis-nr", ("pci.1",))],
    ),
    (
        "chassis-nr: a duplicate on pseries",
        Topology.build(
            "pseries", [ctl(1, "pci-bridge", "00:01.0", chassis_nr=5), ctl(2, "pci-bridge", "00:02.0", chassis_nr=5)]
        ),
        [("chassis-nr", ("pci.1", "pci.2"))],
    ),
    (
        "phb-index: out of range",
        Topology.build("pseries", [ctl(1, "spapr-pci-host-bridge", target_index=31)]),
        [("phb-index", ("pci.1",))],
    ),
    (
        "phb-index: target index 0 off index 0",
        Topology.build("pseries", [ctl(1, "spapr-pci-host-bridge", target_index=0)]),
        [("phb-index", ("pci.1",)), ("phb-index", ("pci.0", "pci.1"))],
    ),
    (
        "phb-index: a duplicate",
        Topology.build(
            "pseries",
            [ctl(1, "spapr-pci-host-bridge", target_index=3), ctl(2, "spapr-pci-host-bridge", target_index=3)],
        ),
        [("phb-index", ("pci.1", "pci.2"))],
    ),
    (
        "phb-index: the default PHB with another target index",
        Topology.build("pseries", [ctl(0, "pci-root", target_index=2)]),
        [("phb-index", ("pci.0",))],
    ),
    (
        "index-order: a pci-bridge on a bus of higher index",
        Topology.build(
            "pc", [ctl(2, "pci-bridge", "00:03.0", chassis_nr=2), ctl(1, "pci-bridge", "02:01.0", chassis_nr=1)]
        ),
        [("index-order", ("pci.1",))],
    ),
    (
        "expander-bus-nr: a duplicate",
        Topology.build(
            "pc",
            [ctl(1, "pci-expander-bus", "00:03.0", bus_nr=200), ctl(2, "pci-expander-bus", "00:04.0", bus_nr=200)],
        ),
        [("expander-bus-nr", ("pci.1", "pci.2"))],
    ),
    (
        "expander-bus-nr: bus_nr 0",
        Topology.build("q35", [ctl(1, "pcie-expander-bus", "00:02.0", bus_nr=0)]),
        [("expander-bus-nr", ("pci.1",)), ("expander-bus-nr", ("pcie.0", "pci.1"))],
    ),
    (
        "expander-bus-nr: bus_nr 255",
        Topology.build("q35", [ctl(1, "pcie-expander-bus", "00:02.0", bus_nr=255)]),
        [("expander-bus-nr", ("pci.1",))],
    ),
    (
        "expander-bus-nr: no room below the top for a pxb's two bus numbers",
        Topology.build("pc", [ctl(1, "pci-expander-bus", "00:03.0", bus_nr=254), ctl(2, "pci-bridge", "01:01.0")]),
        [("expander-bus-nr", ("pci.1",))],
    ),
    (
        "expander-bus-nr: overlap, a pxb-pcie's root ports run into the next bus_nr",
        Topology.build(
            "q35",
            [
                ctl(1, "pcie-expander-bus", "00:02.0", bus_nr=100),
                rp(2, "01:00.0"),
                rp(3, "01:01.0"),
                ctl(4, "pcie-expander-bus", "00:03.0", bus_nr=102),
            ],
        ),
        [("expander-bus-nr", ("pci.1",))],
    ),
    (
        "expander-bus-nr: pcie.0's root ports do not fit below the lowest bus_nr (qemu-rules §2.2.3)",
        Topology.build(
            "q35",
            [rp(1, "00:02.0"), rp(2, "00:03.0"), rp(3, "00:04.0"), ctl(4, "pcie-expander-bus", "00:05.0", bus_nr=2)],
        ),
        [("expander-bus-nr", ("pcie.0", "pci.4"))],
    ),
    (
        "bus-numbers: 16 root ports on aarch64-virt-highmem-off need 17 bus numbers",
        Topology.build(
            "aarch64-virt-highmem-off",
            [rp(1 + i, f"00:{1 + i // 8:02x}.{i % 8}", multifunction=True if i % 8 == 0 else None) for i in range(16)],
        ),
        [("bus-numbers", ("pcie.0",))],
    ),
    (
        "numa-node: an expander on a node the guest does not declare",
        Topology.build("q35", [ctl(1, "pcie-expander-bus", "00:02.0", bus_nr=200, numa_node=2)], numa_nodes=2),
        [("numa-node", ("pci.1",))],
    ),
    (
        "numa-node: on the index-0 controller",
        Topology.build("pseries", [ctl(0, "pci-root", numa_node=0)], numa_nodes=1),
        [("numa-node", ("pci.0",))],
    ),
    (
        "numa-node: on a root port, which has none",
        Topology.build("q35", [rp(1, "00:02.0", numa_node=0)], numa_nodes=1),
        [("numa-node", ("pci.1",))],
    ),
    (
        "io-space: 15 root ports with an e1000e each on q35 with ACPI (14 fit)",
        Topology.build(
            "q35",
            [rp(1 + i, f"00:{2 + i:02x}.0") for i in range(15)],
            [dev(f"n{i}", "e1000e", f"{1 + i:02x}:00.0") for i in range(15)],
        ),
        [("io-space", tuple(f"pci.{1 + i}" for i in range(15)))],
    ),
    (
        "io-space: 10 root ports with an e1000 each on q35 without ACPI (9 fit)",
        Topology.build(
            "q35",
            [rp(1 + i, f"00:{2 + i:02x}.0") for i in range(10)],
            [dev(f"n{i}", "e1000", f"{1 + i:02x}:00.0") for i in range(10)],
            acpi=False,
        ),
        [("io-space", tuple(f"pci.{1 + i}" for i in range(10)))],
    ),
    (
        "mmio-space: 16 VGAs with 64 MiB of video memory on pcie.0 under SeaBIOS (15 fit)",
        Topology.build(
            "q35", devices=[dev(f"v{i:02}", "vga", f"00:{3 + i:02x}.0", memory=64 << 20) for i in range(16)]
        ),
        [("mmio-space", ("v00", "v01", "v02"))],
    ),
    (
        "mmio-space: a 256 GiB ivshmem-plain behind a root port, OVMF's default 128 GiB window",
        Topology.build(
            "q35",
            [rp(1, "00:02.0")],
            [dev("shm", "ivshmem-plain", "01:00.0", memory=256 << 30)],
            firmware="ovmf",
        ),
        [("mmio-space", ("shm",))],
    ),
    (
        "firmware-acpi: OVMF on pc without ACPI",
        Topology.build("pc", acpi=False, firmware="ovmf"),
        [("firmware-acpi", ("pci.0",))],
    ),
    (
        "firmware-crash: an lsilogic beside a pci-bridge directly on a pci-expander-bus, OVMF on pc",
        Topology.build(
            "pc",
            [ctl(1, "pci-expander-bus", "00:1f.0", bus_nr=84), ctl(2, "pci-bridge", "01:01.0", chassis_nr=2)],
            [dev("scsi0", "lsilogic", "01:00.0")],
            firmware="ovmf",
        ),
        [("firmware-crash", ("scsi0", "pci.1"))],
    ),
    (
        "firmware-crash: an lsilogic beside a pci-bridge on a pcie-to-pci-bridge, OVMF on q35",
        Topology.build(
            "q35",
            [
                ctl(1, "pcie-expander-bus", "00:1f.7", bus_nr=84),
                rp(2, "01:00.0"),
                ctl(3, "pcie-to-pci-bridge", "02:00.0"),
                ctl(4, "pci-bridge", "03:01.0", chassis_nr=4),
            ],
            [dev("scsi0", "lsilogic", "03:02.0")],
            firmware="ovmf",
        ),
        [("firmware-crash", ("scsi0", "pci.3"))],
    ),
    (
        "hotplug: hotplug required on pcie.0",
        Topology.build("q35", devices=[dev("net0", NIC, "00:03.0", needs=Needs(hotplug=HotplugNeed.REQUIRED))]),
        [("hotplug", ("net0",))],
    ),
    (
        "hotplug: hotplug required behind a root port with hotplug off",
        Topology.build(
            "q35", [rp(1, "00:02.0", hotplug=False)], [dev("net0", NIC, "01:00.0", needs=Needs(hotplug="required"))]
        ),
        [("hotplug", ("net0",))],
    ),
    (
        "hotplug: hotplug forbidden on pc's hotpluggable root bus",
        Topology.build("pc", devices=[dev("net0", "e1000", "00:03.0", needs=Needs(hotplug=HotplugNeed.FORBIDDEN))]),
        [("hotplug", ("net0",))],
    ),
    (
        "hotplug: hotplug required of a kind that cannot be hot-plugged",
        Topology.build("pc", devices=[dev("video", "vga", "00:03.0", needs=Needs(hotplug="required"))]),
        [("hotplug", ("video",))],
    ),
    (
        "numa: a device that requires node 1 under pcie.0 (no node)",
        Topology.build(
            "q35", devices=[dev("net0", NIC, "00:03.0", needs=Needs(numa_node=1, numa_strict=True))], numa_nodes=2
        ),
        [("numa", ("net0",))],
    ),
    (
        "numa: a device that requires node 1 under the pxb-pcie of node 0",
        Topology.build(
            "q35",
            [ctl(1, "pcie-expander-bus", "00:02.0", bus_nr=200, numa_node=0), rp(2, "01:00.0")],
            [dev("net0", NIC, "02:00.0", needs=Needs(numa_node=1, numa_strict=True))],
            numa_nodes=2,
        ),
        [("numa", ("net0",))],
    ),
    (
        "slot-group: two functions of a GPU group in two slots",
        Topology.build(
            "q35",
            devices=[
                dev("gpu", NIC, "00:03.0", needs=Needs(slot_group="g")),
                dev("gpu-audio", NIC, "00:04.0", needs=Needs(slot_group="g")),
            ],
        ),
        [("slot-group", ("gpu", "gpu-audio"))],
    ),
    (
        "slot-group: a member that asks for function 2 sits at function 1",
        Topology.build(
            "q35",
            devices=[
                dev("p0", NIC, "00:03.0", needs=Needs(slot_group="g", function=0), multifunction=True),
                dev("p2", NIC, "00:03.1", needs=Needs(slot_group="g", function=2)),
            ],
        ),
        [("slot-group", ("p2",))],
    ),
    *GROUP_CASES,
]


@pytest.mark.parametrize(("case", "topology", "expected"), ILLEGAL, ids=[c[0] for c in ILLEGAL])
def test_illegal_topology_is_rejected_by_its_rule(
    case: str, topology: Topology, expected: list[tuple[str, tuple[str, ...]]]
) -> None:
    """Each illegal topology yields exactly the violations of its rule, naming the devices at fault."""
    assert sorted(found(topology)) == sorted(expected)


def test_every_rule_has_an_illegal_case() -> None:
    """The table of illegal topologies covers every documented rule but function-range (tested on its own)."""
    covered = {rule for _, _, expected in ILLEGAL for rule, _ in expected}
    assert covered | {"function-range"} == set(RULES)


def test_function_range_on_a_catalog_with_single_function_slots() -> None:
    """A catalog whose root bus has one function per slot rejects function 1 there (rule function-range)."""
    cat = Catalog.default()
    models = dict(cat.controllers)
    models["pci-root"] = attrs.evolve(models["pci-root"], functions=1)
    machine = Machine.named("pc", catalog=Catalog(controllers=models, devices=cat.devices))
    t = Topology.build(
        machine, devices=[dev("a", "e1000", "00:03.0", multifunction=True), dev("b", "e1000", "00:03.1")]
    )
    assert [str(v) for v in validate(t)] == [
        "'b' at 0000:00:03.1: bus 0 (pci-root) has functions 0..0 only (rule: function-range)"
    ]


MESSAGES = [
    (
        Topology.build("riscv64-virt", devices=[dev("iommu0", "virtio-iommu")]),
        "'iommu0' (virtio-iommu) needs QEMU device 'virtio-iommu-pci', which qemu-system-riscv64 7.2 does not start "
        "on riscv64-virt: 'Check your machine implements a hotplug handler for the virtio-iommu-pci device' "
        "(rule: qemu-driver)",
    ),
    (
        Topology.build("q35", devices=[dev("b0", "virtio-balloon", "00:05.0"), dev("b1", "virtio-balloon")]),
        "2 virtio-balloon devices: 'b0' (virtio-balloon) at 0000:00:05.0, 'b1' (virtio-balloon); q35's QEMU starts "
        "one a guest ('Only one balloon device is supported'): keep one (rule: one-per-guest)",
    ),
    (
        Topology.build("q35", [rp(1, "00:02.0")], [dev("net0", "igb", "01:00.0")]),
        "'net0' (igb) at 0000:01:00.0 needs QEMU device 'igb', which QEMU 8.0 added; q35 describes QEMU 7.2 "
        "(rule: qemu-driver)",
    ),
    (
        Topology.build("pc", devices=[dev("vsock0", "vhost-vsock-transitional")]),
        "'vsock0' (vhost-vsock-transitional) needs QEMU device 'vhost-vsock-pci-transitional', which no QEMU "
        "release has (libvirt 9.0 accepts the model; QEMU refuses to start); use 'vhost-vsock' or "
        "'vhost-vsock-non-transitional' (rule: qemu-driver)",
    ),
    (
        Topology.build("q35", [rp(1, "00:02.0"), ctl(2, "pcie-to-pci-bridge", "01:00.0", io_reserve=0)]),
        "'pci.2' (pcie-to-pci-bridge) has io-reserve 0; QEMU's pcie-pci-bridge has no io-reserve property "
        "(only pci-bridge and pcie-root-port do) (rule: controller-options)",
    ),
    (
        Topology.build("q35", [rp(1, "00:02.0", qemu_model="ioh3420", io_reserve=0)]),
        "'pci.1' (pcie-root-port) has io-reserve 0; QEMU's ioh3420 has no io-reserve property "
        "(only pci-bridge and pcie-root-port do) (rule: controller-options)",
    ),
    (
        Topology.build("q35", devices=[dev("net0", NIC, "00:03.0"), dev("disk1", "virtio-blk", "00:03.0")]),
        "0000:00:03.0 is wanted by 'net0' and 'disk1' (rule: unique-address)",
    ),
    (
        Topology.build("q35", devices=[dev("net0", "e1000", "00:1f.0")]),
        "0000:00:1f.0 is wanted by built-in 'lpc' and 'net0' (rule: unique-address)",
    ),
    (
        Topology.build("q35", devices=[dev("net0", NIC, "0000:05:00.0")]),
        "'net0' at 0000:05:00.0: no controller has index 5 (indexes: 0) (rule: unknown-bus)",
    ),
    (
        Topology.build(
            "q35",
            devices=[
                dev("p0", NIC, "00:03.0", needs=Needs(slot_group="g", function=0), multifunction=True),
                dev("p2", NIC, "00:03.1", needs=Needs(slot_group="g", function=2)),
            ],
        ),
        "slot group 'g': 'p2' at 0000:00:03.1 is not at function 2 of its slot (rule: slot-group)",
    ),
    (
        Topology.build("q35", [rp(1, "00:02.0")], [dev("net0", NIC, "01:03.0")]),
        "'net0' at 0000:01:03.0: bus 1 is the link of a pcie-root-port, which exposes device 0 only; "
        "the slot must be 0x00 (got 0x03) (rule: port-slot)",
    ),
    (
        Topology.build("q35", [ctl(1, "pci-bridge", "00:02.0", chassis_nr=1)]),
        "'pci.1' at 0000:00:02.0 (pci-bridge): bus 0 (pcie-root) does not accept a pci-bridge; it accepts "
        "PCI Express device, dmi-to-pci-bridge, pcie-expander-bus, pcie-root-port (rule: placement)",
    ),
    (
        Topology.build("q35", [rp(1, "00:02.0")], [dev("panic", "pvpanic-pci", "01:00.0")]),
        "'panic' at 0000:01:00.0 (pvpanic-pci): a pvpanic-pci must be an integrated device on bus 0, not on bus 1 "
        "(pcie-root-port) (rule: integrated)",
    ),
    (
        Topology.build("q35", [ctl(3, "pcie-root-port", "00:02.0"), ctl(4, "pcie-root-port", "00:03.0", chassis=3)]),
        "'pci.3' (chassis 3 by default, port unset) and 'pci.4' (chassis 3, port unset) share a chassis; QEMU "
        "registers each PCIe port as (chassis, slot) and libvirt leaves slot at 0, so the chassis must differ "
        "(rule: unique-chassis-port)",
    ),
    (
        Topology.build("pseries", [ctl(1, "spapr-pci-host-bridge"), ctl(2, "spapr-pci-host-bridge", target_index=1)]),
        "'pci.1' (by default) and 'pci.2' both have target index 1 (rule: phb-index)",
    ),
    (
        Topology.build("q35", [ctl(0, "pcie-root", "00:05.0")]),
        "'pcie.0' (pcie-root) is a root bus, which plugs into nothing, but has the address 0000:00:05.0; "
        "libvirt: pci-root and pcie-root controllers should not have an address (rule: root-address)",
    ),
    (
        Topology.build("q35", devices=[dev("usb2", "ich9-uhci2", "00:1d.0")]),
        "'usb2' (ich9-uhci2) is an ICH9 UHCI companion, but no USB controller of its own (an ich9-ehci1, say) is "
        "there to be the master; libvirt: No master USB controller specified (rule: usb-master)",
    ),
    (
        Topology.build("q35", [rp(1, "00:02.0", qemu_model="x3130-upstream")]),
        "'pci.1' (pcie-root-port) has <model name='x3130-upstream'>; libvirt takes only 'pcie-root-port' and "
        "'ioh3420' on a pcie-root-port (rule: controller-options)",
    ),
    (
        Topology.build("q35", [rp(1, "00:02.0", bus_nr=5, chassis_nr=2)]),
        "'pci.1' (pcie-root-port) has the <target> options chassisNr, busNr; libvirt takes only chassis, port, "
        "hotplug on a pcie-root-port (rule: controller-options)",
    ),
    (
        Topology.build("q35", [ctl(1, "pcie-switch-upstream-port", "02:00.0", hotplug=True), rp(2, "00:02.0")]),
        "'pci.1' (pcie-switch-upstream-port) has the <target> option hotplug; libvirt takes no <target> option on "
        "a pcie-switch-upstream-port (rule: controller-options)",
    ),
    (
        Topology.build("q35", [ctl(1, "pci-expander-bus")]),
        "'pci.1': q35 has no pci-expander-bus controllers; the machine does not offer it (rule: machine-model)",
    ),
    (
        Topology.build("q35", devices=[dev("usb", "ich9-ehci1", "00:1d.7")]),
        "0000:00:1d.0 is empty, but 'usb' at function 7; guests scan function 0 first and never find the others "
        "(rule: function-zero)",
    ),
    (
        Topology.build("q35", [rp(1, "00:02.0"), rp(2, "00:02.1")]),
        "'pci.1' at 0000:00:02.0 has no multifunction on, but 'pci.2' uses another function of its slot "
        "(rule: multifunction)",
    ),
    (
        Topology.build("q35", switch(1, "02:00.0", [(2, "01:00.0")])),
        "controllers 'pci.1' and 'pci.2' plug into each other ('pci.1' plugs into 'pci.2'; 'pci.2' plugs into "
        "'pci.1'), so none of them reaches a root bus (rule: controller-cycle)",
    ),
    (
        Topology.build("q35", [rp(1, "00:02.0", chassis=1, port=8), rp(2, "00:03.0", chassis=1, port=8)]),
        "'pci.1' (chassis 1, port 8) and 'pci.2' (chassis 1, port 8) share a chassis; QEMU registers each PCIe "
        "port as (chassis, slot) and libvirt leaves slot at 0, so the chassis must differ (rule: unique-chassis-port)",
    ),
    (
        Topology.build("pc", [ctl(1, "pci-bridge", "00:03.0", chassis_nr=0)]),
        "'pci.1' (pci-bridge) has chassis_nr 0; each bridge needs a chassis number in 1..255 (rule: chassis-nr)",
    ),
    (
        Topology.build(
            "pc", [ctl(2, "pci-bridge", "00:03.0", chassis_nr=2), ctl(1, "pci-bridge", "02:01.0", chassis_nr=1)]
        ),
        "'pci.1' (pci-bridge, index 1) plugs into bus 2; a pci-bridge's index must be larger than its bus's "
        "(rule: index-order)",
    ),
    (
        Topology.build("pc", [ctl(1, "pci-expander-bus", "00:03.0", bus_nr=254), ctl(2, "pci-bridge", "01:01.0")]),
        "'pci.1' (pci-expander-bus, bus_nr 254) and the buses below it need bus numbers 254..256, "
        "but pc has 256 bus numbers (rule: expander-bus-nr)",
    ),
    (
        Topology.build("q35", [ctl(1, "pcie-expander-bus", "00:02.0", bus_nr=200, numa_node=2)], numa_nodes=2),
        "'pci.1' (pcie-expander-bus) is on NUMA node 2, but the guest declares nodes 0..1 (rule: numa-node)",
    ),
    (
        Topology.build("q35", devices=[dev("net0", NIC, "00:03.0", needs=Needs(hotplug=HotplugNeed.REQUIRED))]),
        "'net0' at 0000:00:03.0 must be hot-pluggable, but bus 0 (pcie-root) slot 0x03 does not support hotplug "
        "(rule: hotplug)",
    ),
    (
        Topology.build(
            "q35", devices=[dev("net0", NIC, "00:03.0", needs=Needs(numa_node=1, numa_strict=True))], numa_nodes=2
        ),
        "'net0' at 0000:00:03.0 requires NUMA node 1, but bus 0 is under no NUMA node (rule: numa)",
    ),
]


@pytest.mark.parametrize(("topology", "message"), MESSAGES)
def test_messages_name_devices_and_addresses(topology: Topology, message: str) -> None:
    """Violation messages read like the spec: devices by id, controllers by name, addresses as DDDD:BB:SS.F."""
    assert [str(v) for v in validate(topology)] == [message]


def test_bus_numbers_message() -> None:
    """bus-numbers names the domain's root bus, the count needed and the machine's limit."""
    t = ILLEGAL[
        [c[0] for c in ILLEGAL].index("bus-numbers: 16 root ports on aarch64-virt-highmem-off need 17 bus numbers")
    ][1]
    assert [str(v) for v in validate(t)] == [
        "the PCI domain of 'pcie.0' needs 17 bus numbers, but aarch64-virt-highmem-off has 16 (rule: bus-numbers)"
    ]


def test_io_space_message_names_ports_and_budget() -> None:
    """io-space counts 4 KiB windows per port and says the budget of the machine with its ACPI setting."""
    t = Topology.build(
        "q35",
        [rp(1 + i, f"00:{2 + i:02x}.0") for i in range(10)],
        [dev(f"n{i}", "e1000", f"{1 + i:02x}:00.0") for i in range(10)],
        acpi=False,
    )
    (v,) = validate(t)
    assert v.message.startswith("bridges and ports below the root buses need 10 IO windows of 4 KiB ('pci.1' (1), ")
    assert v.message.endswith("but q35 without ACPI under seabios has room for 9")


def test_all_violations_at_once() -> None:
    """A topology that breaks six rules yields a violation for each of them, sorted by rule."""
    t = Topology.build(
        "q35",
        [rp(1, "00:02.0"), rp(2, "01:00.0"), ctl(3, "pci-expander-bus")],
        [
            dev("a", NIC, "00:03.0"),
            dev("b", NIC, "00:03.0"),
            dev("panic", "pvpanic-pci", "02:00.0"),
            dev("lost", NIC, "09:00.0"),
            dev("late", NIC, "00:05.1"),
        ],
    )
    violations = validate(t)
    assert [v.rule for v in violations] == [
        "function-zero",
        "integrated",
        "machine-model",
        "placement",
        "unique-address",
        "unknown-bus",
    ]
    assert list(violations) == sorted(violations)
    with pytest.raises(InvalidTopology) as info:
        check(t)
    assert info.value.violations == violations
    assert str(info.value).splitlines()[0] == "6 rule violations:"


def test_dangling_bus_and_cycle_do_not_hide_other_rules() -> None:
    """A controller on a missing bus and a controller cycle leave every other check running."""
    t = Topology.build(
        "q35",
        [
            *switch(1, "02:00.0", [(2, "01:00.0")]),
            rp(3, "07:00.0"),
            rp(4, "00:02.0", chassis=9),
            rp(5, "00:03.0", chassis=9),
        ],
        [
            dev("behind-cycle", "e1000", "01:05.0"),
            dev("on-dangling", NIC, "03:00.0"),
            dev("dup1", NIC, "00:04.0"),
            dev("dup2", NIC, "00:04.0"),
        ],
    )
    assert sorted(found(t)) == [
        ("controller-cycle", ("pci.1", "pci.2")),
        ("placement", ("behind-cycle",)),
        ("unique-address", ("dup1", "dup2")),
        ("unique-chassis-port", ("pci.4", "pci.5")),
        ("unknown-bus", ("pci.3",)),
    ]


def test_unaddressed_devices_and_controllers_are_not_violations() -> None:
    """Devices and controllers without an address are requests for one, not violations."""
    t = Topology.build(
        "q35", [ctl(1, "pcie-root-port"), ctl(2, "pcie-switch-downstream-port")], [dev("net0", "vfio-pci")]
    )
    assert validate(t) == ()


def test_check_passes_silently_on_a_legal_topology() -> None:
    """check() returns None when there is nothing to report."""
    check(Topology.default("q35"))


def test_device_standing_for_a_builtin_is_that_builtin() -> None:
    """An ahci at q35 00:1f.2 is the built-in SATA controller, not a second device there."""
    t = Topology.build("q35", devices=[dev("sata0", "ahci", "00:1f.2")])
    assert validate(t) == ()


@pytest.mark.parametrize("name", sorted(machines()))
@pytest.mark.parametrize("acpi", [True, False])
def test_default_topology_of_every_machine_validates(name: str, acpi: bool) -> None:
    """Each shipped machine, as QEMU creates it, breaks no rule."""
    assert validate(Topology.default(name, acpi=acpi)) == ()


LEGAL = [
    (
        "q35 with root ports packed as multifunction, a switch and a pcie-to-pci-bridge with e1000s",
        Topology.build(
            "q35",
            [
                rp(1, "00:02.0", multifunction=True),
                rp(2, "00:02.1"),
                rp(3, "00:02.2"),
                ctl(4, "pcie-switch-upstream-port", "03:00.0"),
                ctl(5, "pcie-switch-downstream-port", "04:00.0", chassis=5, port=0),
                ctl(6, "pcie-switch-downstream-port", "04:01.0", chassis=6, port=1),
                ctl(7, "pcie-to-pci-bridge", "02:00.0"),
            ],
            [
                dev("video", "vga", "00:01.0"),
                dev("net0", NIC, "01:00.0", needs=Needs(hotplug="required")),
                dev("disk0", "virtio-blk", "05:00.0"),
                dev("disk1", "nvme", "06:00.0"),
                dev("e0", "e1000", "07:01.0"),
                dev("e1", "e1000", "07:02.0", needs=Needs(hotplug="required")),
                dev("sata0", "ahci", "00:1f.2"),
                dev("panic", "pvpanic-pci", "00:03.0", needs=Needs(hotplug="forbidden")),
            ],
        ),
    ),
    (
        "q35 with a pxb-pcie on NUMA node 1 and a device that requires node 1",
        Topology.build(
            "q35",
            [
                rp(1, "00:02.0"),
                ctl(2, "pcie-expander-bus", "00:03.0", bus_nr=0xFE, numa_node=1),
                rp(3, "02:00.0"),
            ],
            [
                dev("net0", NIC, "01:00.0"),
                dev("net1", NIC, "03:00.0", needs=Needs(numa_node=1, numa_strict=True)),
            ],
            numa_nodes=2,
        ),
    ),
    (
        "q35 with the classic dmi-to-pci-bridge and pci-bridge",
        Topology.build(
            "q35",
            [ctl(1, "dmi-to-pci-bridge", "00:1e.0"), ctl(2, "pci-bridge", "01:00.0", chassis_nr=2)],
            [dev("net0", "rtl8139", "02:01.0"), dev("snd", "ich9", "00:1b.0")],
        ),
    ),
    (
        "pc with a pci-bridge and a pxb",
        Topology.build(
            "pc",
            [ctl(1, "pci-bridge", "00:03.0", chassis_nr=1), ctl(2, "pci-expander-bus", "00:04.0", bus_nr=252)],
            [
                dev("video", "cirrus", "00:02.0"),
                dev("net0", "e1000", "01:01.0"),
                dev("disk0", "virtio-blk", "02:00.0"),
                dev("ide", "piix3-ide", "00:01.1"),
            ],
        ),
    ),
    (
        "pseries with two extra PHBs",
        Topology.build(
            "pseries",
            [
                ctl(1, "spapr-pci-host-bridge", target_index=1, numa_node=0),
                ctl(2, "spapr-pci-host-bridge", target_index=2),
                ctl(3, "pci-bridge", "01:01.0", chassis_nr=3),
            ],
            [dev("net0", "e1000", "01:02.0"), dev("net1", "virtio-net", "02:01.0"), dev("net2", "e1000", "03:01.0")],
            numa_nodes=1,
        ),
    ),
    (
        "aarch64-virt-highmem-off with 15 root ports: exactly 16 bus numbers",
        Topology.build(
            "aarch64-virt-highmem-off",
            [rp(1 + i, f"00:{1 + i // 8:02x}.{i % 8}", multifunction=True if i % 8 == 0 else None) for i in range(15)],
        ),
    ),
    (
        "q35 with 14 root ports holding e1000e: the IO budget exactly",
        Topology.build(
            "q35",
            [rp(1 + i, f"00:{2 + i:02x}.0") for i in range(14)],
            [dev(f"n{i}", "e1000e", f"{1 + i:02x}:00.0") for i in range(14)],
        ),
    ),
    (
        "q35 with 20 root ports holding modern virtio: no IO windows at all",
        Topology.build(
            "q35",
            [rp(1 + i, f"00:{2 + i:02x}.0") for i in range(20)],
            [dev(f"n{i}", NIC, f"{1 + i:02x}:00.0") for i in range(20)],
        ),
    ),
    (
        "riscv64-virt with a switch and hotplug-forbidden device on pcie.0",
        Topology.build(
            "riscv64-virt",
            [rp(1, "00:01.0"), *switch(2, "01:00.0", [(3, "02:00.0"), (4, "02:01.0")])],
            [dev("net0", NIC, "03:00.0"), dev("rng", "virtio-rng", "00:02.0", needs=Needs(hotplug="forbidden"))],
        ),
    ),
    (
        "q35 with a passthrough device the user addressed on pcie.0 (libvirt and QEMU accept it)",
        Topology.build("q35", devices=[dev("gpu0", "vfio-pci", "00:05.0")]),
    ),
    (
        "q35 root ports with libvirt's default chassis (their indexes) and one explicit chassis that differs",
        Topology.build("q35", [ctl(3, "pcie-root-port", "00:02.0"), ctl(4, "pcie-root-port", "00:03.0", chassis=9)]),
    ),
    (
        "q35 USB2 set whose UHCI companions have their EHCI master",
        Topology.build(
            "q35",
            devices=[
                dev("ehci", "ich9-ehci1", "00:1d.7"),
                dev("uhci1", "ich9-uhci1", "00:1d.0", multifunction=True),
                dev("uhci2", "ich9-uhci2", "00:1d.1"),
            ],
        ),
    ),
    (
        "pseries: the default host bridge with its model name, another with hotplug off (both libvirt takes)",
        Topology.build(
            "pseries",
            [ctl(0, "pci-root", qemu_model="spapr-pci-host-bridge"), ctl(1, "spapr-pci-host-bridge", hotplug=False)],
        ),
    ),
]


@pytest.mark.parametrize(("case", "topology"), LEGAL, ids=[c[0] for c in LEGAL])
def test_legal_topology_validates_clean(case: str, topology: Topology) -> None:
    """A typical legal topology breaks no rule."""
    assert validate(topology) == ()


def test_rules_are_documented() -> None:
    """RULES maps every stable rule id to a one-line description and cannot be changed."""
    assert all(isinstance(d, str) and d and "\n" not in d for d in RULES.values())
    with pytest.raises(TypeError):
        RULES["new"] = "x"  # type: ignore[index]


def test_module_is_tidy() -> None:
    """The module exports exactly its public names."""
    assert sorted(dir(rules)) == [
        "Enforcement",
        "HOST_RULES",
        "RULES",
        "RULE_ENFORCEMENT",
        "check",
        "crash_violations",
        "io_violations",
        "mmio64_setting",
        "mmio_violations",
        "validate",
        "validate_passthrough",
    ]


def test_validation_does_not_mutate_and_violations_pickle() -> None:
    """Validating leaves the topology equal to itself, and its error pickles with every violation."""
    t = ILLEGAL[0][1]
    before = (t.controllers, t.devices)
    violations = validate(t)
    assert (t.controllers, t.devices) == before
    error = InvalidTopology(violations)
    again = pickle.loads(pickle.dumps(error))
    assert again.violations == violations
    assert isinstance(again.violations[0], Violation)


def test_chassis_uniqueness_follows_what_qemu_checks() -> None:
    """Ports sharing a chassis are refused even with different ports; a shared port with distinct chassis is fine.

    QEMU registers every pcie-root-port and xio3130-downstream as a (chassis, slot) pair in one global list
    (qemu-rules §1.3). libvirt writes ``chassis`` and ``port`` but never ``slot``, so slot stays 0 and the pair
    is effectively the chassis alone. Checked on QEMU 7.2.22 (Debian 12), q35, ``-S``:
    ``-device pcie-root-port,id=a,chassis=1,port=8,addr=2 -device pcie-root-port,id=b,chassis=1,port=9,addr=3``
    fails with ``Can't add chassis slot, error -16``; ``chassis=1,port=8`` with ``chassis=2,port=8`` starts;
    an xio3130-downstream with a root port's chassis fails the same way.
    """
    shared_chassis = Topology.build("q35", [rp(1, "00:02.0", chassis=1, port=8), rp(2, "00:03.0", chassis=1, port=9)])
    shared_port = Topology.build("q35", [rp(1, "00:02.0", chassis=1, port=8), rp(2, "00:03.0", chassis=2, port=8)])
    across_switch = Topology.build(
        "q35",
        [
            rp(1, "00:02.0", chassis=1),
            rp(2, "00:03.0"),
            ctl(3, "pcie-switch-upstream-port", "02:00.0"),
            ctl(4, "pcie-switch-downstream-port", "03:00.0", chassis=1, port=0),
        ],
    )
    assert found(shared_chassis) == [("unique-chassis-port", ("pci.1", "pci.2"))]
    assert found(shared_port) == []
    assert found(across_switch) == [("unique-chassis-port", ("pci.1", "pci.4"))]


def test_new_rules_name_the_controller_and_its_address() -> None:
    """root-address and controller-options violations carry the controller's id and address."""
    t = Topology.build("q35", [ctl(0, "pcie-root", "00:05.0"), rp(1, "00:02.0", bus_nr=5)])
    assert [(v.rule, v.devices, v.address) for v in validate(t)] == [
        ("controller-options", ("pci.1",), A("00:02.0")),
        ("root-address", ("pcie.0",), A("00:05.0")),
    ]


@pytest.mark.parametrize(
    ("topology", "message"),
    [
        (
            _switch_group_split(),
            "switch group 's': 'a' at 0000:01:00.0 is behind no PCIe switch (rule: switch-group)",
        ),
        (
            _switch_group_two_switches(),
            "switch group 's': 'a' at 0000:03:00.0 (behind 'pci.2') and 'b' at 0000:06:00.0 (behind 'pci.5') "
            "are not behind one PCIe switch (rule: switch-group)",
        ),
        (
            _bus_group_split(),
            "bus group 'g': 'g1' at 0000:02:1f.0 and 'g2' at 0000:04:01.0 are not on one bus (rule: bus-group)",
        ),
    ],
)
def test_group_messages_name_the_group_its_members_and_where_they_are(topology: Topology, message: str) -> None:
    """A split group is one violation naming the group, every placed member and its address."""
    assert [str(v) for v in validate(topology)] == [message]
    with pytest.raises(InvalidTopology):
        check(topology)


def test_groups_kept_together_are_legal() -> None:
    """Both switch-group members under downstream ports of one switch, both bus-group members on one bridge: clean."""
    switch_ok = Topology.build(
        "q35",
        [rp(1, "00:01.0"), *switch(2, "01:00.0", [(3, "02:00.0"), (4, "02:01.0")])],
        [
            dev("a", NIC, "03:00.0", needs=Needs(switch_group="s")),
            dev("b", NIC, "04:00.0", needs=Needs(switch_group="s")),
        ],
    )
    bus_ok = Topology.build(
        "q35",
        [rp(1, "00:01.0"), ctl(2, "pcie-to-pci-bridge", "01:00.0")],
        [
            dev("g1", "e1000", "02:1f.0", needs=Needs(bus_group="g")),
            dev("g2", "e1000", "02:01.0", needs=Needs(bus_group="g")),
        ],
    )
    assert (validate(switch_ok), validate(bus_ok)) == ((), ())


def test_group_members_without_an_address_are_not_violations() -> None:
    """A group member still to be placed does not split its group; only the placed members are compared."""
    t = Topology.build(
        "q35",
        [rp(1, "00:01.0")],
        [
            dev("a", NIC, needs=Needs(switch_group="s")),
            dev("g1", "e1000", "00:03.0", needs=Needs(bus_group="g")),
            dev("g2", "e1000", needs=Needs(bus_group="g")),
        ],
    )
    assert validate(t) == ()


def test_a_device_that_requires_hotplug_may_not_share_its_slot() -> None:
    """libvirt hot-plugs single-function slots only: requiring hotplug at function 1 of a port breaks ``hotplug``."""
    required = Needs(hotplug=HotplugNeed.REQUIRED)
    t = Topology.build(
        "q35",
        [rp(1, "00:01.0")],
        [dev("a", NIC, "01:00.0", multifunction=True), dev("b", NIC, "01:00.1", needs=required)],
    )
    assert [str(v) for v in validate(t)] == [
        "'b' at 0000:01:00.1 must be hot-pluggable, but it shares its slot with 'a' "
        "(libvirt hot-plugs single-function slots only) (rule: hotplug)"
    ]


# -- mmio-space: the firmware's 32-bit hole and 64-bit window -----------------------------------
# The numbers are those benchmarks/calibrate_firmware.py --mmio measured in QEMU 7.2 (firmware files).

GIB = 1 << 30


def _vgas(n: int, *, memory: int = 64 << 20) -> list[Device]:
    return [dev(f"v{i:02}", "vga", f"00:{3 + i:02x}.0", memory=memory) for i in range(n)]


def _empty_ports(n: int, first_index: int = 1) -> list[Controller]:
    """n empty hotplug root ports, eight functions a slot from slot 0x1e down (as in the experiment)."""
    return [
        rp(first_index + i, f"00:{0x1E - i // 8:02x}.{i % 8}", multifunction=True if i % 8 == 0 else None)
        for i in range(n)
    ]


def test_the_32_bit_hole_violation_names_the_budget_the_devices_and_the_address() -> None:
    """16 VGAs of 64 MiB overflow SeaBIOS's 1004 MiB hole; the message names the hole, the biggest devices and sizes."""
    t = Topology.build("q35", devices=_vgas(16))
    (v,) = validate(t)
    assert str(v) == (
        "the 32-bit MMIO hole: BARs that must sit below 4 GiB and the bridges' memory windows need 1025.1 MiB "
        "('v00' 64.1 MiB, 'v01' 64.1 MiB, 'v02' 64.1 MiB, 13 more), but q35 under seabios has 1004 MiB "
        "(rule: mmio-space)"
    )
    assert v.address == A("00:03.0")


@pytest.mark.parametrize(
    ("firmware", "vgas", "ports", "fits"),
    [
        # measured: SeaBIOS 15 VGAs fit, 16 do not; beside 15, 21 empty hotplug root ports fit and 22 do not
        ("seabios", 15, 0, True),
        ("seabios", 16, 0, False),
        ("seabios", 15, 21, True),
        ("seabios", 15, 22, False),
        # measured: OVMF 14 fit, 15 do not; beside 14, 64 ports fit (their reservations are dropped, no BAR)
        ("ovmf", 14, 0, True),
        ("ovmf", 15, 0, False),
        ("ovmf", 14, 64, True),
    ],
)
def test_the_32_bit_hole_matches_the_measured_layouts(firmware: str, vgas: int, ports: int, fits: bool) -> None:
    """validate accepts exactly the VGA and root-port layouts the firmware mapped in QEMU 7.2."""
    t = Topology.build("q35", _empty_ports(ports, 1), _vgas(vgas), firmware=firmware)
    assert [v.rule for v in validate(t)] == ([] if fits else ["mmio-space"])


def _ivshmem(size: int, firmware: str, **kw: object) -> Topology:
    """One ivshmem-plain of ``size`` bytes of shared memory behind a root port."""
    return Topology.build(
        "q35",
        [rp(1, "00:02.0")],
        [dev("shm", "ivshmem-plain", "01:00.0", memory=size)],
        firmware=firmware,
        **kw,  # type: ignore[arg-type]
    )


def test_a_bar_larger_than_ovmfs_default_window_asks_for_the_knob() -> None:
    """256 GiB needs OVMF's X-PciMmio64Mb; the message says the setting and that the default window is too small."""
    assert [str(v) for v in validate(_ivshmem(256 * GIB, "ovmf"))] == [
        "the 64-bit MMIO window: 64-bit prefetchable BARs and windows need 256 GiB ('pci.1' 256 GiB (for 'shm')), "
        "more than the 128 GiB window q35 under ovmf has by default; the domain needs opt/ovmf/X-PciMmio64Mb set "
        "to 262144 MiB (<qemu:commandline> -fw_cfg; pcitopo assign writes it) (rule: mmio-space)"
    ]
    assert validate(_ivshmem(256 * GIB, "ovmf", mmio64=256 * GIB)) == ()
    assert validate(_ivshmem(128 * GIB, "ovmf")) == ()


def test_a_bar_beyond_every_window_says_why_it_cannot_map() -> None:
    """A 1 TiB BAR fits no window under 40 physical address bits: OVMF's knob tops out, SeaBIOS runs past 2^40."""
    assert [str(v) for v in validate(_ivshmem(1 << 40, "ovmf", mmio64=512 * GIB))] == [
        "the 64-bit MMIO window: 64-bit prefetchable BARs and windows need 1 TiB ('pci.1' 1 TiB (for 'shm')), "
        "more than the 512 GiB window q35 under ovmf has; the largest ovmf can be given under the guest CPU's 40 "
        "physical address bits is 512 GiB; give the guest CPU more physical address bits "
        "(<cpu><maxphysaddr mode='passthrough'/>, or mode='emulate' with bits='N') or pass fewer large-BAR devices "
        "(rule: mmio-space)"
    ]
    assert [str(v) for v in validate(_ivshmem(1 << 40, "seabios"))] == [
        "the 64-bit MMIO window: 64-bit prefetchable BARs and windows need 1 TiB ('pci.1' 1 TiB (for 'shm')), "
        "which seabios lays out from 0x10000000000 to 0x20000000000, past the guest CPU's 40 physical address "
        "bits (0x10000000000); give the guest CPU more physical address bits (<cpu><maxphysaddr "
        "mode='passthrough'/>, or mode='emulate' with bits='N') or pass fewer large-BAR devices (rule: mmio-space)"
    ]
    assert validate(_ivshmem(512 * GIB, "seabios")) == ()  # measured: 512 GiB maps at 0x8000000000
    assert validate(_ivshmem(1 << 40, "seabios", phys_bits=None)) == ()  # the host's CPU: not known, not checked


def test_mmio64_setting_is_a_power_of_two_of_at_least_a_gib() -> None:
    """The window pcitopo asks for holds the need, rounded up to a power of two GiB."""
    assert [rules.mmio64_setting(n) >> 30 for n in (1, GIB, GIB + 1, 128 * GIB, 130 * GIB)] == [1, 1, 2, 128, 256]


@pytest.mark.parametrize(("on_root", "on_second"), [(2, 3), (3, 2)])
def test_an_expander_is_placed_by_its_bus_not_by_the_bus_model_alone(on_root: int, on_second: int) -> None:
    """An expander on a second pci-root is refused though one on bus 0 (the same bus model) is fine, in either order."""
    t = Topology.build(
        "pc",
        [
            ctl(1, "pci-root"),
            ctl(on_root, "pci-expander-bus", "00:05.0", bus_nr=200),
            ctl(on_second, "pci-expander-bus", "01:05.0", bus_nr=100),
        ],
    )
    placement = [v for v in validate(t) if v.rule == "placement"]
    assert [(v.devices, v.message) for v in placement] == [
        (
            (f"pci.{on_second}",),
            f"'pci.{on_second}' at 0000:01:05.0 (pci-expander-bus): an expander bus can only be attached to the "
            "main root bus, not to bus 1 (pci-root)",
        )
    ]


def test_usb_master_is_quiet_with_a_master_or_without_companions() -> None:
    """Companions beside an EHCI master, and a master alone, break no usb-master rule."""
    with_master = Topology.build(
        "q35",
        devices=[
            dev("ehci", "ich9-ehci1", "00:1d.7"),
            dev("usb0", "ich9-uhci1", "00:1d.0", multifunction=True),
            dev("usb1", "ich9-uhci2", "00:1d.1"),
        ],
    )
    alone = Topology.build("q35", devices=[dev("ehci", "ich9-ehci1", "00:1d.0")])
    assert [v for v in validate(with_master) + validate(alone) if v.rule == "usb-master"] == []


def test_unique_address_tells_the_functions_of_a_slot_apart() -> None:
    """In a slot with several functions, only things sharing one function clash, each address once."""
    t = Topology.build(
        "q35",
        devices=[
            dev("a", "e1000", "00:03.0", multifunction=True),
            dev("b", "e1000", "00:03.1"),
            dev("c", "e1000", "00:03.1"),
            dev("d", "e1000", "00:03.2"),
            dev("e", "e1000", "00:03.2"),
            dev("f", "e1000", "00:03.2"),
        ],
    )
    clashes = [(v.devices, str(v.address), v.message) for v in validate(t) if v.rule == "unique-address"]
    assert clashes == [
        (("b", "c"), "0000:00:03.1", "0000:00:03.1 is wanted by 'b' and 'c'"),
        (("d", "e", "f"), "0000:00:03.2", "0000:00:03.2 is wanted by 'd', 'e' and 'f'"),
    ]


def _lsi_on_expander(*, bridge: bool, firmware: str, device: str | None = "lsilogic") -> Topology:
    """pc: a pci-expander-bus holding ``device`` directly, and a pci-bridge beside it when ``bridge``; with
    ``device=None`` an lsilogic and a pci-bridge on pci.0 and no expander."""
    if device is None:
        bridges = [ctl(1, "pci-bridge", "00:03.0", chassis_nr=1)]
        return Topology.build("pc", bridges, [dev("scsi0", "lsilogic", "00:02.0")], firmware=firmware)
    controllers = [ctl(1, "pci-expander-bus", "00:1f.0", bus_nr=84)]
    if bridge:
        controllers.append(ctl(2, "pci-bridge", "01:01.0", chassis_nr=2))
    return Topology.build("pc", controllers, [dev("scsi0", device, "01:00.0")], firmware=firmware)


def test_firmware_crash_names_the_device_the_expander_bus_and_the_bridge() -> None:
    """The firmware-crash violation says which device, at which address, beside which bridge on which expander."""
    (v,) = validate(_lsi_on_expander(bridge=True, firmware="ovmf"))
    assert (v.rule, str(v.address)) == ("firmware-crash", "0000:01:00.0")
    assert v.message == (
        "'scsi0' (lsilogic) at 0000:01:00.0 is on pci-expander-bus 'pci.1' beside pci-bridge 'pci.2': "
        "QEMU 7.2 crashes while ovmf sets up PCI on pc; place it on another bus"
    )


@pytest.mark.parametrize(
    ("bridge", "firmware", "device"),
    [
        (False, "ovmf", "lsilogic"),  # 0 of 8 boots crashed (one pxb, no bridge)
        (True, "seabios", "lsilogic"),  # 0 of 8
        (True, "ovmf", "rtl8139"),  # 0 of 8
        (True, "ovmf", None),  # the lsilogic and the pci-bridge on pci.0: 0 of 8
    ],
)
def test_firmware_crash_is_as_narrow_as_the_measurements(bridge: bool, firmware: str, device: str | None) -> None:
    """The shapes that were measured to boot (no bridge, SeaBIOS, another device kind) break no rule."""
    assert validate(_lsi_on_expander(bridge=bridge, firmware=firmware, device=device)) == ()


_SCREENED_BESIDE_A_BRIDGE = [
    # 0 of 8 boots crashed in the lsilogic's place (issue 11; ovmf.toml, [machines.pc])
    *("lsisas1068", "lsisas1078", "vmpvscsi", "ahci", "piix3-ide", "nvme", "e1000", "pcnet"),
    # 0 of 4
    *("ne2k_pci", "vmxnet3", "e1000e", "piix3-uhci", "piix4-uhci", "pci-ohci", "ich9-ehci1", "nec-xhci"),
    *("ac97", "es1370", "ich6", "ich9", "i6300esb", "pci-serial", "ivshmem-plain"),
    *("vga", "cirrus", "vmvga", "qxl", "qxl-secondary", "bochs", "virtio-vga", "virtio-gpu"),
    *("virtio-net", "virtio-blk", "virtio-balloon", "virtio-rng", "virtio-serial", "virtio-9p", "virtio-crypto"),
    *("virtio-keyboard", "virtio-mouse", "virtio-tablet", "virtio-mem", "virtio-pmem"),
    *("virtio-net-non-transitional", "virtio-blk-non-transitional", "virtio-scsi-non-transitional"),
    *("virtio-balloon-non-transitional", "virtio-rng-non-transitional", "virtio-serial-non-transitional"),
    "virtio-9p-non-transitional",
]


@pytest.mark.parametrize("kind", _SCREENED_BESIDE_A_BRIDGE)
def test_firmware_crash_spares_the_kinds_screened_beside_a_bridge(kind: str) -> None:
    """A kind that booted in the lsilogic's place beside a pci-bridge on a pxb under OVMF (none crashed) breaks no
    rule there."""
    assert validate(_lsi_on_expander(bridge=True, firmware="ovmf", device=kind)) == ()


@pytest.mark.parametrize(
    ("version", "refused"),
    [((7, 2), True), ((7, 99), True), ((8, 0), False), ((9, 1), False), (None, False)],
)
def test_qemu_driver_compares_the_machine_s_qemu_release_with_the_kind_s(
    version: tuple[int, int] | None, refused: bool
) -> None:
    """igb (qemu-since 8.0) is refused on a machine describing an older QEMU, accepted on 8.0 on and when unknown."""
    machine = attrs.evolve(Machine.named("q35"), qemu_version=version)
    t = Topology.build(machine, [rp(1, "00:02.0")], [dev("net0", "igb", "01:00.0")])
    assert ("qemu-driver", ("net0",)) in found(t) if refused else found(t) == []


@pytest.mark.parametrize("version", [(7, 2), (8, 0), None])
def test_qemu_driver_refuses_a_kind_no_qemu_has_whatever_the_release(version: tuple[int, int] | None) -> None:
    """vhost-vsock-transitional is refused even on a machine whose QEMU release is not known."""
    machine = attrs.evolve(Machine.named("q35"), qemu_version=version)
    t = Topology.build(machine, devices=[dev("vsock0", "vhost-vsock-transitional")])
    assert found(t) == [("qemu-driver", ("vsock0",))]


def test_pseries_starts_several_virtio_iommus() -> None:
    """QEMU 7.2 starts two virtio-iommu-pci on pseries (x86 and aarch64 virt refuse a second): no violation there."""
    t = Topology.build("pseries", devices=[dev("i0", "virtio-iommu", "00:05.0"), dev("i1", "virtio-iommu", "00:06.0")])
    assert found(t) == []
