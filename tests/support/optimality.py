"""The solver against the exhaustive enumerator: what the optimality property test asserts (issue 9, item 5).

:func:`check_against_the_enumerator` is the whole check: the solver's cost is
the enumerated minimum whenever the enumerator proves one, a plan called
``OPTIMAL`` is never beaten, and Unsatisfiable (or a refused request) comes
only when no completion exists. :func:`small_requests` and :data:`POLICIES`
draw what it runs on. ``tests/property/test_optimality.py`` runs it (with 2 devices and 1000
candidates an example takes 0.13 s of enumeration at the median, 10 s at
most).
"""

from __future__ import annotations

import attrs
from hypothesis import strategies as st

import pcitopo
from pcitopo.devices import HotplugNeed
from pcitopo.errors import InvalidTopology, Unsatisfiable
from pcitopo.legality.machine import machines as shipped_machines
from pcitopo.policy import Override, Policy, evaluate
from pcitopo.strategies import device_requests, legal_topologies, machines, policies
from pcitopo.topology import Topology
from tests.support.enumerate import minimum

__all__ = [
    "MAX_ADDED",
    "MAX_CANDIDATES",
    "POLICIES",
    "check_against_the_enumerator",
    "check_status_against_the_enumerator",
    "describe",
    "grown_requests",
    "small_requests",
    "with_overrides",
]

MAX_ADDED = 4
"""Controllers the enumerator adds at most; its result says when that bound proves the minimum."""

MAX_CANDIDATES = 1000
"""The enumerator's work per example (10 s at most); a search cut short proves nothing and asserts nothing."""


@st.composite
def small_requests(draw: st.DrawFn, *, max_devices: int) -> Topology:
    """Any shipped machine's default topology, 0..2 NUMA nodes, 1..``max_devices`` devices with drawn needs."""
    machine = draw(machines(names=sorted(shipped_machines())))
    nodes = draw(st.integers(0, 2))
    devices = draw(device_requests(machine=machine, min_devices=1, max_devices=max_devices, numa_nodes=nodes))
    return Topology.build(machine, devices=devices, numa_nodes=nodes)


@st.composite
def grown_requests(draw: st.DrawFn, *, max_devices: int) -> Topology:
    """A legal topology with pinned controllers and devices (:func:`~pcitopo.strategies.legal_topologies`: up to 3
    and 3) on any shipped machine, and 1..``max_devices`` new devices beside them: a VM grown."""
    machine = draw(machines(names=sorted(shipped_machines())))
    pinned = draw(legal_topologies(machine=machine, max_devices=3, max_controllers=3))
    devices = draw(
        device_requests(
            machine=machine, min_devices=1, max_devices=max_devices, numa_nodes=pinned.numa_nodes, beside=pinned
        )
    )
    return pinned.replace(devices=[*pinned.devices, *devices])


POLICIES = st.one_of(
    policies(max_spare_ports=1), policies(max_spare_ports=1, weights=True, min_weight={"fewer-controllers": 1})
)
"""Built-in policies, composed or not, and drawn weights (fewer-controllers >= 1, which the bound needs)."""


@st.composite
def with_overrides(draw: st.DrawFn, request: Topology, policy: Policy) -> Policy:
    """``policy`` with ``[[device]]`` overrides for some of the request's devices (by id, as users write them).

    Overrides match devices by id, so two devices alike in every other way can end up with different needs:
    the solver must not treat them as interchangeable.
    """
    if policy.libvirt:
        return policy
    ids = [d.id for d in request.devices if d.address is None]
    chosen = draw(st.lists(st.sampled_from(ids), max_size=len(ids), unique=True)) if ids else []
    overrides = tuple(
        Override(
            i,
            hotplug=draw(st.none() | st.sampled_from([HotplugNeed.FORBIDDEN, HotplugNeed.PREFERRED, HotplugNeed.ANY])),
            integrated=draw(st.none() | st.booleans()),
        )
        for i in chosen
    )
    return attrs.evolve(policy, overrides=policy.overrides + overrides)


def check_against_the_enumerator(request: Topology, policy: Policy) -> None:
    """The solver's cost is the enumerated minimum; Unsatisfiable only when nothing is enumerated."""
    found = minimum(request, policy, max_added=MAX_ADDED, max_candidates=MAX_CANDIDATES)
    try:
        plan = pcitopo.solve(request, policy)
    except Unsatisfiable:
        if policy.libvirt:
            # libvirt plans by its own rules, without NUMA or hotplug needs, and refuses some devices (pvpanic-pci);
            # the libvirt policy reproduces that and is not a search: the differential tests against libvirt 9.0
            # (tests/integration/test_libvirt_differential.py) are its oracle, not the enumerator
            return
        assert found.cost is None, f"Unsatisfiable, but this completion costs {found.cost}: {describe(found.best)}"
        return
    except InvalidTopology:  # the request itself breaks a rule (a USB companion without its master, say)
        assert found.cost is None, f"the request was refused, but this completion is legal: {describe(found.best)}"
        return
    scored = evaluate(request, plan.topology, policy)
    assert scored.legal, scored.violations
    assert plan.cost == scored.cost, (plan.soft, scored.soft)
    if found.cost is not None and found.complete:
        if policy.libvirt:
            assert plan.status is not pcitopo.Status.OPTIMAL, "libvirt's placement is reproduced, not proven optimal"
            assert scored.cost >= found.cost
        elif any(s.name == "order" and s.weight for s in plan.soft) and plan.status is not pcitopo.Status.OPTIMAL:
            # the model does not bound the order terms: unless no assignment the search scored could hide a
            # cheaper order (pcitopo.solver.solve._finish), no proof is claimed, and the bound given holds
            assert plan.bound is None or plan.bound <= found.cost, f"bound {plan.bound}, a completion {found.cost}"
            assert scored.cost >= found.cost
        else:
            assert scored.cost == found.cost, (
                f"solver {scored.cost}, a completion costs {found.cost}: {describe(found.best)}"
            )
    if plan.status is pcitopo.Status.OPTIMAL and found.cost is not None:
        assert scored.cost <= found.cost, f"'optimal' plan costs {scored.cost}, a completion {found.cost}"


def check_status_against_the_enumerator(request: Topology, policy: Policy) -> None:
    """The solver's status is honest where its cost may not be the minimum (a grown request, whose existing buses'
    free slots the model does not search): a plan called ``OPTIMAL`` is never beaten, its cost is evaluate's, and
    Unsatisfiable comes only when no completion exists."""
    found = minimum(request, policy, max_added=MAX_ADDED, max_candidates=MAX_CANDIDATES)
    try:
        plan = pcitopo.solve(request, policy)
    except Unsatisfiable:
        assert policy.libvirt or found.cost is None, f"Unsatisfiable, but this completion costs {found.cost}: " + (
            describe(found.best)
        )
        return
    scored = evaluate(request, plan.topology, policy)
    assert scored.legal, scored.violations
    assert plan.cost == scored.cost, (plan.soft, scored.soft)
    if plan.status is pcitopo.Status.OPTIMAL and found.cost is not None:
        assert scored.cost <= found.cost, f"'optimal' plan costs {scored.cost}, a completion {found.cost}: " + (
            describe(found.best)
        )


def describe(topology: Topology | None) -> str:
    """A completion in one line: the controllers added and where every device went."""
    if topology is None:
        return "none"
    controllers = ", ".join(f"{c.name} {c.model} at {c.address}" for c in topology.controllers if c.index != 0)
    devices = ", ".join(f"{d.id} at {d.address}" for d in topology.devices)
    return f"[{controllers}] [{devices}]"
