"""Plans the solver generates start in QEMU with every device where the plan says."""

from __future__ import annotations

import pytest

from pcitopo.devices import Device, Needs
from pcitopo.policy.policy import BUILTIN_POLICIES
from pcitopo.qemu import verify
from pcitopo.solver import solve
from pcitopo.topology import Topology

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("qemu")]

MACHINES = ["q35", "pc", "aarch64-virt", "pseries", "riscv64-virt"]


def request(machine: str) -> Topology:
    """A small VM: devices of every connect type that QEMU starts without a backend."""
    # riscv64 virt has no expander bus, so nothing there can be on NUMA node 1
    numa = Needs() if machine == "riscv64-virt" else Needs(numa_node=1)
    devices = [
        Device("net0", "virtio-net"),
        Device("net1", "e1000"),
        Device("rng0", "virtio-rng", needs=numa),
        Device("usb0", "qemu-xhci"),
        Device("net2", "virtio-net"),
    ]
    if machine in ("q35", "pc"):
        devices.append(Device("video0", "vga"))
    return Topology.build(machine, devices=devices, numa_nodes=2)


@pytest.mark.parametrize("policy", sorted(BUILTIN_POLICIES))
@pytest.mark.parametrize("machine", MACHINES)
def test_plan_verifies(machine: str, policy: str) -> None:
    """Every device and added controller of the plan is where it was planned, and x86 firmware maps every BAR."""
    plan = solve(request(machine), policy)
    report = verify(plan.topology)
    assert report.ok, f"{plan.summary()}\n{report}"
    assert {c.subject for c in report.named("placement")} >= set(plan.assigned)
