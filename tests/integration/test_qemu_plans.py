"""Plans the solver generates start in QEMU with every device where the plan says."""

from __future__ import annotations

import attrs
import pytest

from pcitopo.devices import Device, HotplugNeed, Needs
from pcitopo.policy.policy import BUILTIN_POLICIES, Policy
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


_NODE_0 = Needs(numa_node=0)


@pytest.mark.parametrize(
    ("machine", "devices", "policy"),
    [
        # a node-less pxb on pc for a device that must not be hot-plugged
        ("pc", [Device("b", "e1000", needs=Needs(hotplug=HotplugNeed.FORBIDDEN))], "hotplug"),
        # a dmi-to-pci-bridge under a pxb-pcie
        ("q35", [Device("a", "ac97", needs=_NODE_0)], "minimal+numa"),
        ("aarch64-virt", [Device("a", "ac97", needs=_NODE_0)], "minimal+numa"),
        # two endpoints as functions 0 and 1 behind one root port
        ("q35", [Device("a", "virtio-net", needs=_NODE_0), Device("b", "virtio-rng", needs=_NODE_0)], "minimal+numa"),
    ],
    ids=["pc-pxb-no-node", "q35-pxb-dmi", "aarch64-pxb-dmi", "q35-shared-port"],
)
def test_plans_of_the_model_s_newer_shapes_verify(machine: str, devices: list[Device], policy: str) -> None:
    """The shapes the optimality fixes added (issue 9, item 4) start in QEMU with every device where planned."""
    plan = solve(Topology.build(machine, devices=devices, numa_nodes=1), policy)
    report = verify(plan.topology)
    assert report.ok, f"{plan.summary()}\n{report}"


def test_an_endpoint_beside_a_pcie_to_pci_bridge_verifies() -> None:
    """An endpoint at function 1 of the root port whose function 0 is a pcie-to-pci-bridge starts in QEMU."""
    weights = {**Policy.named("numa").weights, "fewer-controllers": 86, "hotplug": 61}
    policy = attrs.evolve(Policy.named("numa"), spare_ports=0, weights=weights)
    request = Topology.build(
        "q35",
        devices=[
            Device("r0", "nec-xhci", needs=_NODE_0),
            Device("r1", "ac97", needs=Needs(hotplug=HotplugNeed.REQUIRED, numa_node=0, numa_strict=True)),
        ],
        numa_nodes=1,
    )
    plan = solve(request, policy)
    assert str(plan.topology.device("r0").address) == "0000:02:00.1"
    report = verify(plan.topology)
    assert report.ok, f"{plan.summary()}\n{report}"
