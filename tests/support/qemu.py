"""Find QEMU for the integration tests, installing the Debian packages when missing.

The ``qemu`` session fixture installs ``qemu-system-x86``, ``-arm``, ``-ppc``
and ``-misc`` through :func:`tests.support.packages.ensure_packages` and skips
only with the reason that returns (not root, no apt-get). ``qemu_binary``
names the binary a machine description asks for.
"""

from __future__ import annotations

import os
import shutil

import pytest

from pcitopo.address import PciAddress
from pcitopo.devices import Controller, Device
from pcitopo.legality.machine import Machine
from pcitopo.topology import Topology
from tests.support.packages import ensure_packages

__all__ = ["QEMU_PACKAGES", "TOPOLOGIES", "qemu", "qemu_binary", "require_qemu"]

QEMU_PACKAGES = ["qemu-system-x86", "qemu-system-arm", "qemu-system-ppc", "qemu-system-misc"]


def require_qemu() -> str | None:
    """``None`` when every QEMU binary is there (installing them if needed), else why not."""
    reason = ensure_packages(QEMU_PACKAGES)
    if reason is not None:
        return reason
    missing = [b for b in ("qemu-system-x86_64", "qemu-system-aarch64", "qemu-system-ppc64") if not shutil.which(b)]
    return f"installed, but {', '.join(missing)} not on PATH" if missing else None


@pytest.fixture(scope="session")
def qemu() -> None:
    """Make sure the QEMU binaries exist; skip with the installer's reason if impossible (fail in CI)."""
    reason = require_qemu()
    if reason is not None:
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the QEMU tests, but: {reason}")
        pytest.skip(reason)


def qemu_binary(machine: str | Machine) -> str:
    """The full path of the QEMU binary for a machine description."""
    m = Machine.named(machine) if isinstance(machine, str) else machine
    path = shutil.which(m.qemu_binary)
    if path is None:
        raise LookupError(f"{m.qemu_binary} is not on PATH")
    return path


# -- hand-built legal topologies, one per machine -----------------------------------------

_A = PciAddress.parse


def q35_topology() -> Topology:
    """q35: packed root ports (one hotplug=off), a switch, a PCIe-to-PCI bridge with a pci-bridge, a pxb-pcie."""
    return Topology.build(
        "q35",
        [
            Controller(1, "pcie-root-port", address=_A("00:02.0"), chassis=1, port=0x10, multifunction=True),
            Controller(2, "pcie-root-port", address=_A("00:02.1"), chassis=2, port=0x11),
            Controller(3, "pcie-root-port", address=_A("00:02.2"), chassis=3, port=0x12, hotplug=False),
            Controller(4, "pcie-root-port", address=_A("00:03.0"), chassis=4, port=0x18),
            Controller(5, "pcie-to-pci-bridge", address=_A("04:00.0")),
            Controller(6, "pci-bridge", address=_A("05:01.0"), chassis_nr=6),
            Controller(7, "pcie-root-port", address=_A("00:04.0"), chassis=7, port=0x20),
            Controller(8, "pcie-switch-upstream-port", address=_A("07:00.0")),
            Controller(9, "pcie-switch-downstream-port", address=_A("08:00.0"), chassis=9, port=0),
            Controller(10, "pcie-switch-downstream-port", address=_A("08:01.0"), chassis=10, port=1),
            Controller(11, "pcie-expander-bus", address=_A("00:10.0"), bus_nr=0x80),
            Controller(12, "pcie-root-port", address=_A("0b:00.0"), chassis=12, port=0),
        ],
        [
            Device("video0", "vga", address=_A("00:01.0")),
            Device("net0", "virtio-net", address=_A("01:00.0")),
            Device("net1", "e1000e", address=_A("02:00.0")),
            Device("rng0", "virtio-rng", address=_A("03:00.0")),
            Device("net2", "e1000", address=_A("05:02.0")),
            Device("serial0", "pci-serial", address=_A("06:01.0")),
            Device("usb0", "qemu-xhci", address=_A("09:00.0")),
            Device("net3", "virtio-net", address=_A("0c:00.0")),
        ],
    )


def pc_topology() -> Topology:
    """pc: a pci-bridge and a pxb on NUMA node 1, endpoints on all three buses."""
    return Topology.build(
        "pc",
        [
            Controller(1, "pci-bridge", address=_A("00:03.0"), chassis_nr=1),
            Controller(2, "pci-expander-bus", address=_A("00:04.0"), bus_nr=0x40, numa_node=1),
        ],
        [
            Device("video0", "vga", address=_A("00:02.0")),
            Device("net0", "e1000", address=_A("00:05.0")),
            Device("net1", "virtio-net", address=_A("01:01.0")),
            Device("net2", "rtl8139", address=_A("02:00.0")),
            Device("rng0", "virtio-rng", address=_A("02:01.0")),
        ],
        numa_nodes=2,
    )


def aarch64_topology() -> Topology:
    """aarch64 virt: root ports, a switch, a pxb-pcie with a root port."""
    return Topology.build(
        "aarch64-virt",
        [
            Controller(1, "pcie-root-port", address=_A("00:01.0"), chassis=1, port=8, multifunction=True),
            Controller(2, "pcie-root-port", address=_A("00:01.1"), chassis=2, port=9),
            Controller(3, "pcie-root-port", address=_A("00:02.0"), chassis=3, port=0x10),
            Controller(4, "pcie-switch-upstream-port", address=_A("03:00.0")),
            Controller(5, "pcie-switch-downstream-port", address=_A("04:00.0"), chassis=5, port=0),
            Controller(6, "pcie-expander-bus", address=_A("00:08.0"), bus_nr=0x40),
            Controller(7, "pcie-root-port", address=_A("06:00.0"), chassis=7, port=0),
        ],
        [
            Device("net0", "virtio-net", address=_A("01:00.0")),
            Device("net1", "e1000e", address=_A("05:00.0")),
            Device("rng0", "virtio-rng", address=_A("07:00.0")),
        ],
    )


def pseries_topology() -> Topology:
    """pseries: devices on the default PHB, a pci-bridge, an extra PHB on NUMA node 1."""
    return Topology.build(
        "pseries",
        [
            Controller(1, "pci-bridge", address=_A("00:02.0"), chassis_nr=1),
            Controller(2, "spapr-pci-host-bridge", target_index=1, numa_node=1),
        ],
        [
            Device("net0", "virtio-net", address=_A("00:01.0")),
            Device("rng0", "virtio-rng", address=_A("01:01.0")),
            Device("net1", "e1000", address=_A("02:03.0")),
        ],
        numa_nodes=2,
    )


def riscv64_topology() -> Topology:
    """riscv64 virt: two root ports with virtio devices and a spare one."""
    return Topology.build(
        "riscv64-virt",
        [
            Controller(1, "pcie-root-port", address=_A("00:01.0"), chassis=1, port=8),
            Controller(2, "pcie-root-port", address=_A("00:02.0"), chassis=2, port=0x10),
            Controller(3, "pcie-root-port", address=_A("00:03.0"), chassis=3, port=0x18),
        ],
        [Device("net0", "virtio-net", address=_A("01:00.0")), Device("rng0", "virtio-rng", address=_A("02:00.0"))],
    )


TOPOLOGIES = {
    "q35": q35_topology,
    "pc": pc_topology,
    "aarch64-virt": aarch64_topology,
    "pseries": pseries_topology,
    "riscv64-virt": riscv64_topology,
}
"""A legal hand-built topology per machine, by machine name."""
