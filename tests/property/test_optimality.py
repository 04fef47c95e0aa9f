"""The exhaustive enumerator of legal completions, the solver's independent optimality oracle (issue 9, item 5).

:func:`tests.support.enumerate.minimum` shares no code with the solver: it
builds every completion, checks it with :func:`pcitopo.evaluate` and keeps
the least cost. These cases pin it to minima worked out by hand.
"""

from __future__ import annotations

import attrs
import pytest

from pcitopo.devices import Device, HotplugNeed, Needs
from pcitopo.policy import Policy, evaluate
from pcitopo.topology import Topology
from tests.support.enumerate import minimum

PREFERRED = Needs(hotplug=HotplugNeed.PREFERRED)


@pytest.mark.parametrize(
    ("case", "request_", "policy", "cost"),
    [
        (
            # the root bus of q35 is not hotpluggable: a root port for the NIC, and one spare port
            "one NIC needing hotplug on q35: its root port and a spare one",
            Topology.build("q35", devices=[Device("n", "virtio-net")]),
            Policy.named("hotplug"),
            2,
        ),
        (
            # functions of one port's slot are not hot-plugged one by one, so each device needs its own port
            "two devices needing hotplug on q35: two root ports and a spare one",
            Topology.build("q35", devices=[Device("n", "virtio-net"), Device("d", "virtio-blk")]),
            Policy.named("hotplug"),
            3,
        ),
        (
            "minimal on q35: both devices integrated on pcie.0, nothing added",
            Topology.build("q35", devices=[Device("n", "virtio-net"), Device("d", "virtio-blk")]),
            Policy.named("minimal"),
            0,
        ),
        (
            "hotplug on pc: the root bus is hotpluggable and has free slots to spare",
            Topology.build("pc", devices=[Device("n", "e1000"), Device("d", "virtio-blk")]),
            Policy.named("hotplug"),
            0,
        ),
        (
            # issue 9: the port of a device that prefers hotplug keeps it; the spare port costs 1 more
            "hotplug-off-occupied leaves hotplug on under a device that prefers it",
            Topology.build("q35", devices=[Device("n", "virtio-net", needs=PREFERRED)]),
            attrs.evolve(Policy.named("hotplug"), hotplug_off_occupied=True),
            2,
        ),
        (
            # a strict node needs the pxb of node 0; its bus is not hotpluggable, a pci-bridge under it is
            "pc: a device on NUMA node 0 that prefers hotplug goes on a pci-bridge under the node's pxb",
            Topology.build(
                "pc",
                devices=[
                    Device("g", "virtio-gpu", needs=Needs(hotplug=HotplugNeed.PREFERRED, numa_node=0, numa_strict=True))
                ],
                numa_nodes=1,
            ),
            attrs.evolve(Policy.named("ordered"), spare_ports=0),
            2,
        ),
        (
            # issue 9: the ac97 are conventional PCI needing hotplug: a pcie-to-pci-bridge behind a root port under
            # node 0's pxb takes both, in order (3 controllers), and a spare root port makes 4
            "ordered on q35 with one NUMA node: two ac97, one preferring node 0",
            Topology.build(
                "q35", devices=[Device("a", "ac97", needs=Needs(numa_node=0)), Device("b", "ac97")], numa_nodes=1
            ),
            Policy.named("ordered"),
            4,
        ),
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_the_enumerator_agrees_with_minima_worked_out_by_hand(
    case: str, request_: Topology, policy: Policy, cost: int
) -> None:
    """On small fixed requests the enumerated minimum is the one reasoned out by hand, and proven."""
    found = minimum(request_, policy)
    assert (found.cost, found.complete) == (cost, True)
    assert found.best is not None
    scored = evaluate(request_, found.best, policy)
    assert (scored.legal, scored.cost) == (True, cost)


def test_the_enumerator_finds_nothing_when_no_completion_exists() -> None:
    """A device that requires NUMA node 0 of a guest without NUMA nodes has no legal completion."""
    request = Topology.build("q35", devices=[Device("n", "virtio-net", needs=Needs(numa_node=0, numa_strict=True))])
    found = minimum(request, Policy.named("hotplug"), max_added=3)
    assert (found.cost, found.best, found.completions) == (None, None, 0)
    assert found.candidates > 0


def test_the_enumerator_imports_nothing_from_the_solver() -> None:
    """The oracle shares no code with what it checks: no import of pcitopo.solver."""
    import ast
    from pathlib import Path

    source = Path(__file__).parents[1] / "support" / "enumerate.py"
    tree = ast.parse(source.read_text(encoding="utf-8"))
    imported = [n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
    imported += [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
    assert [m for m in imported if m and m.startswith("pcitopo.solver")] == []


def test_a_spent_candidate_budget_leaves_the_result_unproven() -> None:
    """With ``max_candidates`` spent before the bound closes, the result is not ``complete``."""
    request = Topology.build(
        "q35", devices=[Device("a", "ac97", needs=Needs(numa_node=0)), Device("b", "ac97")], numa_nodes=1
    )
    found = minimum(request, Policy.named("ordered"), max_candidates=10)
    assert (found.complete, found.candidates) == (False, 11)


# -- the solver against the oracle ----------------------------------------------------------------

_SMALL = [
    Topology.build("q35", devices=[Device("n", "virtio-net")]),
    Topology.build("q35", devices=[Device("n", "virtio-net"), Device("d", "virtio-blk")]),
    Topology.build("q35", devices=[Device("w", "i6300esb")]),
    Topology.build("pc", devices=[Device("n", "e1000"), Device("d", "virtio-blk")]),
    Topology.build("aarch64-virt", devices=[Device("n", "virtio-net")]),
    Topology.build("q35", devices=[Device("a", "ac97", needs=Needs(numa_node=0)), Device("b", "ac97")], numa_nodes=1),
]


@pytest.mark.parametrize("policy_name", ["hotplug", "minimal", "numa", "ordered"])
@pytest.mark.parametrize("request_", _SMALL, ids=lambda t: f"{t.machine.name}-{len(t.devices)}")
def test_an_optimal_plan_costs_what_the_enumerator_finds(request_: Topology, policy_name: str) -> None:
    """When the solver says optimal, no legal completion the enumerator builds is cheaper; its cost is evaluate's."""
    from pcitopo.solver import Status, solve

    policy = Policy.named(policy_name)
    plan = solve(request_, policy)
    assert plan.cost == evaluate(request_, plan.topology, policy).cost
    found = minimum(request_, policy, max_added=4)
    assert found.cost is not None
    if plan.status is Status.OPTIMAL and found.complete:
        assert plan.cost <= found.cost


# -- counterexamples the Hypothesis probe found, each fixed in the model ------------------------------

_STRICT_0 = Needs(hotplug=HotplugNeed.PREFERRED, numa_node=0, numa_strict=True)

_MINIMAL_NUMA = Policy.named("minimal+numa")
_DEAR_CONTROLLERS = attrs.evolve(_MINIMAL_NUMA, weights={**_MINIMAL_NUMA.weights, "fewer-controllers": 5})
"""No hotplug need, strict NUMA nodes, and a controller weighing 5: the enumerator's bound proves its minimum
after 3 or 4 controllers."""

_COUNTEREXAMPLES = [
    (
        # the new pxb's slots are not hotpluggable: the device that prefers hotplug takes a pci-bridge's slot
        # below it, where the model used to leave it on the pxb (solver 101, enumerator 2)
        "pc: a device preferring hotplug on NUMA node 0 goes on a pci-bridge under the node's pxb",
        Topology.build(
            "pc", devices=[Device("r0", "virtio-input-host", needs=_STRICT_0), Device("r1", "ich9")], numa_nodes=1
        ),
        Policy.named("ordered"),
        2,
    ),
    (
        # solver 201, enumerator 2: both share the bridge
        "pc: two NICs preferring hotplug on NUMA node 0 share a pci-bridge under the node's pxb",
        Topology.build(
            "pc",
            devices=[Device("r0", "ne2k_pci", needs=_STRICT_0), Device("r1", "ne2k_pci", needs=_STRICT_0)],
            numa_nodes=2,
        ),
        Policy.named("hotplug"),
        2,
    ),
    (
        # a dmi-to-pci-bridge under the pxb-pcie hosts a conventional device with no hotplug need: one controller
        # where a root port and a pcie-to-pci-bridge are two (solver 20, enumerator 15)
        "q35: a conventional device with no hotplug need on NUMA node 0 goes on a dmi-to-pci-bridge under the pxb",
        Topology.build("q35", devices=[Device("a", "ac97", needs=Needs(numa_node=0))], numa_nodes=1),
        _DEAR_CONTROLLERS,
        15,
    ),
    (
        # solver 20, enumerator 15: aarch64-virt's pxb-pcie takes a dmi-to-pci-bridge as well
        "aarch64-virt: a conventional device with no hotplug need on NUMA node 0 goes on a dmi-to-pci-bridge",
        Topology.build("aarch64-virt", devices=[Device("a", "ac97", needs=Needs(numa_node=0))], numa_nodes=1),
        _DEAR_CONTROLLERS,
        15,
    ),
    (
        # two endpoints with no hotplug need share one root port as functions 0 and 1 (solver 25, enumerator 20)
        "q35: two PCI Express devices with no hotplug need on NUMA node 0 share a root port under the pxb",
        Topology.build(
            "q35",
            devices=[
                Device("a", "virtio-net", needs=Needs(numa_node=0)),
                Device("b", "virtio-blk", needs=Needs(numa_node=0)),
            ],
            numa_nodes=1,
        ),
        _DEAR_CONTROLLERS,
        20,
    ),
]


@pytest.mark.parametrize(
    ("case", "request_", "policy", "cost"), _COUNTEREXAMPLES, ids=lambda v: v if isinstance(v, str) else ""
)
def test_the_solver_finds_the_enumerated_minimum_of_a_former_counterexample(
    case: str, request_: Topology, policy: Policy, cost: int
) -> None:
    """A request the solver once planned dearer than a legal completion now costs the proven enumerated minimum."""
    from pcitopo.solver import Status, solve

    found = minimum(request_, policy)
    assert (found.cost, found.complete) == (cost, True)
    plan = solve(request_, policy)
    assert (plan.status, plan.cost, evaluate(request_, plan.topology, policy).cost) == (Status.OPTIMAL, cost, cost)
