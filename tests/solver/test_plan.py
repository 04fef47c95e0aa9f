"""The plan value: its soft results and cost come from pcitopo.evaluate unless given."""

from __future__ import annotations

from pcitopo.address import PciAddress
from pcitopo.devices import Controller, Device
from pcitopo.policy import Policy, evaluate
from pcitopo.solver.plan import Plan
from pcitopo.topology import Topology


def test_a_plan_built_without_soft_results_is_scored_by_evaluate() -> None:
    """``Plan(...)`` without ``soft`` reports exactly what ``pcitopo.evaluate`` scores for its topology."""
    request = Topology.build("q35", devices=[Device("net0", "virtio-net")])
    port = Controller(1, "pcie-root-port", address=PciAddress.parse("00:01.0"), chassis=1, port=0x10)
    result = request.replace(controllers=[port], devices=[Device("net0", "virtio-net", address=PciAddress(bus=1))])
    policy = Policy.named("hotplug")
    plan = Plan(request=request, topology=result, policy=policy, added=(port,))
    scored = evaluate(request, result, policy)
    assert plan.soft == scored.soft
    assert plan.cost == scored.cost == 20 + 1
