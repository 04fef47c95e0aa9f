"""The search: python-constraint2 under a model, branch and bound, the engine-independent tie-break."""

from __future__ import annotations

from collections.abc import Mapping

from pcitopo.devices import Device, Needs
from pcitopo.policy import Policy
from pcitopo.solver import search
from pcitopo.solver.model import Constraint, Problem, Variable, build_units, formulate
from pcitopo.topology import Topology


def _toy(domains: Mapping[str, tuple[int, ...]], total: int, cost: Mapping[str, int]) -> Problem:
    """A model with the given variables summing to ``total`` and a linear objective."""
    base = formulate(Topology.default("q35"), Policy.named("hotplug"), ())
    variables = tuple(Variable(n, d) for n, d in domains.items())

    def objective(values: Mapping[str, int]) -> int:
        return sum(cost[n] * v for n, v in values.items())

    constraints = (
        Constraint("sum", "exact-sum", tuple(domains), total=total),
        Constraint("objective", "objective", tuple(domains), bound=objective),
    )
    return Problem(
        topology=base.topology,
        policy=base.policy,
        units=(),
        classes=(),
        contexts=base.contexts,
        candidates=(),
        spare={},
        bus_region=base.bus_region,
        io_budget=base.io_budget,
        host_bridges_left=base.host_bridges_left,
        variables=variables,
        constraints=constraints,
        count_variables={},
        context_variables={},
        domains=dict(domains),
        per_unit={},
    )


def test_the_cheapest_assignment_is_found_and_proven() -> None:
    """x + y = 3 at cost 5x + y: y takes everything, and the search says it proved it."""
    result = search.search(_toy({"x": (0, 1, 2, 3), "y": (0, 1, 2, 3)}, 3, {"x": 5, "y": 1}))
    assert result.values == {"x": 0, "y": 3}
    assert (result.cost, result.proven, result.bound) == (3, True, 3)
    assert (result.variables, result.constraints) == (2, 2)


def test_ties_go_to_the_smallest_key_whatever_the_engine_tries_first() -> None:
    """Every split of x + y = 2 costs the same: the winner is the one whose values rank first in name order."""
    # the model prefers x = 2 (rank 0) and y = 0 (rank 0): the key (0, 0) wins over every other split
    result = search.search(_toy({"x": (2, 1, 0), "y": (0, 1, 2)}, 2, {"x": 1, "y": 1}))
    assert result.values == {"x": 2, "y": 0}
    flipped = search.search(_toy({"x": (0, 1, 2), "y": (2, 1, 0)}, 2, {"x": 1, "y": 1}))
    assert flipped.values == {"x": 0, "y": 2}


def test_no_assignment_is_reported_as_none() -> None:
    """x + y = 9 with both at most 3: no values, and no claim of a proven plan."""
    result = search.search(_toy({"x": (0, 1, 2, 3), "y": (0, 1, 2, 3)}, 9, {"x": 1, "y": 1}))
    assert result.values is None
    assert result.proven is False


def test_a_real_request_gives_the_engine_counts_and_layout_decisions() -> None:
    """Devices preferring NUMA node 0 on a 2-node q35: count variables per context, integrate and spare decisions."""
    devices = [Device(f"n{i}", "virtio-net") for i in range(3)]
    devices += [Device("numa0", "virtio-net", needs=Needs(numa_node=0))]
    t = Topology.build("q35", devices=devices, numa_nodes=2)
    policy = Policy.named("hotplug")
    problem = formulate(t, policy, build_units(t, policy))
    names = [v.name for v in problem.variables]
    # the NIC preferring node 0: its node's expander first; the others: the main root first, node 0's allowed
    assert [n for n in names if n.startswith("count[")] == ["count[0@0]", "count[0@1]", "count[1@1]", "count[1@0]"]
    assert "spare[0]" in names
    assert [c.kind for c in problem.constraints].count("exact-sum") == 2
    result = search.search(problem)
    assert result.proven
    assert result.values is not None
