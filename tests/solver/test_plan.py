"""The plan value: its soft results and cost come from pcitopo.evaluate unless given."""

from __future__ import annotations

import attrs

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


def test_a_plan_is_valid_under_its_policys_overrides_not_under_the_devices_own_needs() -> None:
    """A ``[[device]]`` override wins over a device's own needs, and the plan meets the needs that won.

    ``net0`` asks for hotplug itself and the policy forbids it, so it is integrated on pcie.0 (whose slots are not
    hot-pluggable): ``evaluate`` with the policy finds no violation, while ``validate`` of the topology alone
    checks the device's own need, which the plan breaks on purpose.
    """
    from pcitopo.devices import HotplugNeed, Needs
    from pcitopo.legality.rules import validate
    from pcitopo.policy.policy import Override
    from pcitopo.solver import solve

    request = Topology.build("q35", devices=[Device("net0", "virtio-net", needs=Needs(hotplug=HotplugNeed.REQUIRED))])
    policy = attrs.evolve(Policy.named("hotplug"), overrides=(Override("net0", hotplug=HotplugNeed.FORBIDDEN),))
    plan = solve(request, policy)
    assert plan.topology.device("net0").address == PciAddress.parse("00:01.0")
    assert evaluate(request, plan.topology, policy).violations == ()
    assert [v.rule for v in validate(plan.topology)] == ["hotplug"]
