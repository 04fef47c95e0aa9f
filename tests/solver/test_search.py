"""The search: python-constraint2 under a model, branch and bound, the engine-independent tie-break."""

from __future__ import annotations

import itertools
import random
from collections.abc import Mapping

import attrs

from pcitopo.address import PciAddress
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


def _requests() -> list[tuple[Topology, Policy]]:
    """Small requests whose every assignment can be tried: integration and spare ports on q35 and aarch64-virt,
    bridges on pc, NUMA contexts, and one q35 with more conventional devices than its free slots."""
    devices = [Device(f"n{i}", "virtio-net") for i in range(3)]
    devices += [Device("e0", "e1000"), Device("e1", "e1000"), Device("snd", "ich9"), Device("gpu", "virtio-gpu")]
    numa = [Device("m0", "virtio-net", needs=Needs(numa_node=0)), Device("m1", "e1000", needs=Needs(numa_node=1))]
    many = [Device(f"c{i}", "e1000") for i in range(40)]
    out = [(Topology.build(m, devices=devices), Policy.named(p)) for m in ("q35", "pc") for p in ("hotplug", "minimal")]
    out.append((Topology.build("q35", devices=devices), Policy.named("ordered")))
    out.append((Topology.build("aarch64-virt", devices=devices[:3] + devices[-1:]), Policy.named("hotplug")))
    out.append((Topology.build("q35", devices=devices[:1] + numa, numa_nodes=2), Policy.named("hotplug")))
    out.append((Topology.build("q35", devices=many), Policy.named("minimal")))
    return out


def _assignments(problem: Problem) -> list[dict[str, int]]:
    names = [v.name for v in problem.variables]
    return [dict(zip(names, combo, strict=True)) for combo in itertools.product(*(v.domain for v in problem.variables))]


def test_the_cost_floor_never_exceeds_the_bound_and_a_quick_fit_is_a_fit() -> None:
    """Over every assignment of small requests: the objective's cheap floor is at most its exact value, and a
    context that the quick check passes has a feasible layout within the IO budget."""
    for request, policy in _requests():
        units = build_units(request, policy)
        fresh = formulate(request, policy, units)  # nothing laid out yet: the floors and quick checks alone
        assignments = _assignments(fresh)
        floors = [fresh.cost_floor(values) for values in assignments]
        quick = [{k: fresh.quick_fits(k, values) for k in fresh.context_variables} for values in assignments]
        problem = formulate(request, policy, units)
        for values, floor, fits in zip(assignments, floors, quick, strict=True):
            exact = problem.lower_bound(values)
            assert exact is None or floor <= exact, (request.machine.name, policy.name, values)
            for k, yes in fits.items():
                d = problem.decision(k, values)
                assert d is not None
                if yes:
                    assert d.feasible, (request.machine.name, policy.name, values, k)
                    assert problem.io_budget is None or d.io_windows <= problem.io_budget


def test_the_cost_floor_changes_no_search_result() -> None:
    """The search with the objective's floor finds what it finds without it: the same values, cost, bound and proof."""
    for request, policy in _requests():
        units = build_units(request, policy)
        problem = formulate(request, policy, units)
        plain = formulate(request, policy, units)
        plain = attrs.evolve(
            plain, constraints=tuple(attrs.evolve(c, floor=None) if c.floor else c for c in plain.constraints)
        )
        with_floor, without = search.search(problem), search.search(plain)
        assert (with_floor.values, with_floor.cost, with_floor.bound, with_floor.proven) == (
            without.values,
            without.cost,
            without.bound,
            without.proven,
        ), (request.machine.name, policy.name)


def test_a_contexts_bound_remembered_is_the_bound_computed_anew() -> None:
    """Over partial assignments of small requests (parts of each complete one, drawn with a fixed seed), a
    context's bound as the search asks it, remembered from the assignments before by what it depends on (the main
    root's by whether each new expander bus is used), is the one computed for that assignment alone."""
    draw = random.Random(9)
    # and the main root with two free slots, which the new expander buses take from it when used
    pinned = [Device(f"p{slot}", "virtio-net", address=PciAddress(bus=0, slot=slot)) for slot in range(1, 29)]
    numa = [Device("m0", "virtio-net", needs=Needs(numa_node=0)), Device("m1", "e1000", needs=Needs(numa_node=1))]
    tight = Topology.build("q35", devices=[*pinned, *numa, Device("n0", "virtio-net")], numa_nodes=2)
    for request, policy in [*_requests(), (tight, Policy.named("hotplug")), (tight, Policy.named("minimal"))]:
        units = build_units(request, policy)
        problem = formulate(request, policy, units)
        anew = formulate(request, policy, units)
        names = [v.name for v in problem.variables]
        for values in _assignments(problem):
            for _ in range(3):
                partial = {name: values[name] for name in names if draw.random() < 0.7}
                for ctx_id in problem.context_variables:
                    got = problem.context_lower_bound(ctx_id, partial)
                    assert got == anew._context_lower_bound(ctx_id, partial)[0], (request.machine.name, ctx_id, partial)
