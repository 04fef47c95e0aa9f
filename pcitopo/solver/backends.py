"""Backends: what turns a request into a completed topology, under one status enum.

Like CPMpy's solver interface: every backend takes the request and the
policy and returns a :class:`Placement` whose :class:`~pcitopo.solver.plan.Status`
says what is known about it. :class:`CspBackend` models the request
(:mod:`pcitopo.solver.model`) and searches it (:mod:`pcitopo.solver.search`):
``OPTIMAL`` when the search proved it, else ``FEASIBLE`` with the best bound.
:class:`LibvirtBackend` reproduces libvirt 9.0's own placement:
``REPRODUCED``, never "optimal".
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Protocol

import attrs

from pcitopo.devices import Controller, Device, HotplugNeed
from pcitopo.errors import PcitopoError, Unsatisfiable
from pcitopo.legality import identity
from pcitopo.legality.catalog import Hotplug
from pcitopo.policy.policy import Policy
from pcitopo.solver import _realize
from pcitopo.solver.model import Problem, Reuse, Unit, formulate
from pcitopo.solver.plan import SearchStats, Status
from pcitopo.topology import Topology

__all__ = [
    "Backend",
    "CspBackend",
    "Feasibility",
    "GaveUp",
    "LibvirtBackend",
    "Placement",
    "backend_for",
    "feasible",
    "io_reserve_off",
]


def __dir__() -> list[str]:
    return __all__


class GaveUp(Unsatisfiable):
    """The search stopped at its node limit before it found a plan: no proof that none exists.

    :func:`pcitopo.solver.solve.solve` then tries a smaller model whose plans are
    plans of the request too, and does not look for a smallest conflict (every
    test of a subset could give up the same way).
    """


@attrs.frozen
class Placement:
    """A backend's answer: the completed topology and what is known about it."""

    topology: Topology
    status: Status
    stats: SearchStats
    model_cost: int | None = None
    """The objective the search minimised, for the assignment it chose (``None``: no search)."""
    bound: int | None = None
    least_model: int | None = None
    """The least model bound of the assignments the search scored (:attr:`.search.SearchResult.least_model`):
    with terms the model does not bound (order), no completion costs less than the smaller of it and the
    plan's cost (``None``: not known)."""


class Backend(Protocol):
    """Places every unaddressed device of a request."""

    name: str

    def place(
        self,
        request: Topology,
        policy: Policy,
        units: Sequence[Unit],
        *,
        trees_via_dmi: bool = True,
        names_expander: bool = False,
        balance_io: bool = False,
        limit: int | None = None,
    ) -> Placement:
        """Place ``units`` (the request's unplaced devices) in ``request``, or raise Unsatisfiable.

        ``trees_via_dmi=False``: no bridge tree under a dmi-to-pci-bridge; ``names_expander``: a node-less expander
        bus is offered; ``balance_io``: IO BARs dealt out balanced between pci-bridges; ``limit``: the search's
        node limit when lower than its own (a search backend's options, see
        :attr:`~pcitopo.solver._layout.Context.balance_io`).
        """
        ...


NAMES_NODE_LIMIT = 500
"""Partial assignments the extra search for ordered NIC names checks (``names_expander``, see
:func:`pcitopo.solver.solve._place`). Its plan is compared with one already found, and a plan with an order
term is never claimed optimal; with the expander bus as one more context a full search took 5,000 nodes (some
10 s) to find nothing cheaper on generated domains of the libvirt differential test, where the two-e1000 case
it exists for needs a few dozen."""


class CspBackend:
    """The model and python-constraint2's search."""

    name = "csp"

    def __init__(self, score: Callable[[Topology], int | None] | None = None) -> None:
        self._score = score
        """The objective of a completed topology (the plan's cost); the model's bound when not given.
        ``None`` from it: the realised plan breaks a budget the model only bounds (the 32-bit MMIO hole, the
        64-bit window), so it is no solution and the search moves on."""

    def place(
        self,
        request: Topology,
        policy: Policy,
        units: Sequence[Unit],
        *,
        trees_via_dmi: bool = True,
        names_expander: bool = False,
        balance_io: bool = False,
        limit: int | None = None,
    ) -> Placement:
        # the request's empty ports new bridges and switches may take instead of new root ports (the model does not
        # count them): each assignment is realised each way, and the cheapest plan kept (the first of a tie)
        reuses = Reuse.options(request) if self._score is not None else (Reuse.none(),)
        reuse_ports = len(reuses) > 1

        def model(*, spares_on_expander: bool = False) -> Problem:
            return formulate(
                request,
                policy,
                units,
                trees_via_dmi=trees_via_dmi,
                names_expander=names_expander,
                balance_io=balance_io,
                reuse=reuses[-1] if reuse_ports else None,
                spares_on_expander=spares_on_expander,
            )

        problem = model()
        homeless = [cls for ci, cls in enumerate(problem.classes) if not problem.candidates[ci]]
        if homeless:
            raise Unsatisfiable([f"{homeless[0].describe()} has nowhere to go"])
        if not reuse_ports:
            return self._search(problem, reuses, units, names_expander=names_expander, limit=limit)
        # a place the plan takes in the request may leave the main root no bus number for the spare ports it wants,
        # where an existing expander bus has some: the model offers spare ports on one context, so the plans with
        # them on that expander bus are searched too, and the cheaper kept (the first of a tie)
        beside = model(spares_on_expander=True)
        if beside.spare == problem.spare:
            return self._search(problem, reuses, units, names_expander=names_expander, limit=limit)
        found: list[Placement] = []
        refused: Unsatisfiable | None = None
        gave_up = False
        for one in (problem, beside):
            try:
                found.append(self._search(one, reuses, units, names_expander=names_expander, limit=limit))
            except Unsatisfiable as exc:
                refused = refused or exc
                gave_up = gave_up or isinstance(exc, GaveUp)
        if not found:
            assert refused is not None
            raise refused
        best = min(found, key=lambda p: math.inf if p.model_cost is None else p.model_cost)
        # a proof, or a bound, of one model holds for the other's plans only when that one has its own
        least = [p.least_model for p in found]
        if gave_up or None in least:
            best = attrs.evolve(best, least_model=None)
        else:
            best = attrs.evolve(best, least_model=min(x for x in least if x is not None))
        if gave_up or any(p.status is not Status.OPTIMAL for p in found):
            bounds = [p.bound for p in found]
            bound = None if gave_up or None in bounds else min(b for b in bounds if b is not None)
            best = attrs.evolve(best, status=Status.FEASIBLE, bound=bound)
        return best

    def _search(
        self,
        problem: Problem,
        reuses: Sequence[Reuse],
        units: Sequence[Unit],
        *,
        names_expander: bool,
        limit: int | None,
    ) -> Placement:
        """The search of one model, each assignment it scores realised each way of ``reuses``."""
        # imported here: the engine pulls in multiprocessing, longer to import than most plans take to make
        from pcitopo.solver import search

        request, policy = problem.topology, problem.policy
        reuse_ports = len(reuses) > 1
        score = self._score
        keep = frozenset(c.index for c in request.controllers)
        required = frozenset(d.id for u in units if u.hotplug is HotplugNeed.REQUIRED for d in u.devices)
        placing = frozenset(d.id for u in units for d in u.devices)
        realised: dict[tuple[tuple[str, int], ...], Topology] = {}
        # each assignment's score: the engine's solutions and the local search's moves come back to the same
        # assignment (the engine's first solution, after the moves found a cheaper one), and realising and
        # scoring one is the dearest step of a small search. The score is a function of the assignment.
        scores: dict[tuple[tuple[str, int], ...], int | None] = {}

        def exact(values: Mapping[str, int]) -> int | None:
            key = tuple(sorted(values.items()))
            if key not in scores:
                scores[key] = _exact(values, key)
            return scores[key]

        # the same model laid out knowing each way's places: a context's local choice may then prefer a bridge tree
        # (its top in an empty port) to packing on the root bus, say, where both cost the same with new root ports
        aware = [None if r.kind == "none" else problem.reusing(r.uplinks()) for r in reuses]

        def _exact(values: Mapping[str, int], key: tuple[tuple[str, int], ...]) -> int | None:
            best: tuple[int, Topology] | None = None
            for reuse, other in zip(reuses, aware, strict=True):
                ways = [problem]
                if other is not None and _lays_out_otherwise(problem, other, values):
                    ways.append(other)
                for way in ways:
                    realised_one = _realize.realize(way, values, reuse)
                    if reuse_ports and not _bus_numbers_fit(realised_one):
                        continue  # the model counted the empty ports' bus numbers as free: this layout took none
                    topology, scored = _scored(realised_one)
                    if scored is not None and (best is None or scored < best[0]):
                        best = scored, topology
            if best is None:
                return None
            realised[key] = best[1]
            return best[0]

        def _scored(topology: Topology) -> tuple[Topology, int | None]:
            assert score is not None
            # the firmware's reservations (an IO window for every SHPC bridge and, with OVMF, every hotplug
            # port) and the root buses' IO BARs beyond the firmware's room for them are counted on the
            # realised plan: the model's count is a lower bound of it. Where the firmware honours io-reserve=0
            # the fewest ports or bridges needing no IO give their windows back (the io-reserve-off term)
            short = topology.io_windows_short()
            if short:
                fitted = io_reserve_off(topology, short, keep)
                if fitted is None:
                    return topology, None
                topology, scored = _hotplug_off_where_cheaper(
                    topology, fitted, keep, required, score, _gain_bound(policy, placing)
                )
            else:
                scored = score(topology)
                if scored is None and topology.firmware_model is not None:
                    # a budget broken (the 32-bit MMIO hole, say): the firmware reserves memory for each hotplug
                    # port, so hotplug off on the ports it can be taken from may make the plan fit, at what the
                    # policy charges for it
                    topology, scored = _hotplug_off_to_fit(topology, keep, required, score)
            return topology, scored

        limit = min(limit or search.NODE_LIMIT, NAMES_NODE_LIMIT if names_expander else search.NODE_LIMIT)
        # each empty port a plan takes saves at most one new root port, and each bridge tree topped by a pci-bridge
        # in a free conventional slot one pcie-to-pci-bridge's root port (a tree a unit at most)
        ports = sum(len(found) for found in reuses[-1].ports.values())
        slots = sum(len(found) for found in reuses[-1].bridge_slots.values())
        slack = (ports + min(slots, len(units))) * policy.weights["fewer-controllers"]
        slack = slack if score is not None and len(reuses) > 1 else 0
        result = search.search(problem, exact=None if score is None else exact, limit=limit, slack=slack)
        stats = SearchStats(self.name, result.variables, result.constraints, result.nodes)
        if result.values is None:
            if not result.proven and result.nodes > limit:  # stopped at the limit it was given, not a proof
                raise GaveUp(
                    [f"the search gave up after {result.nodes} partial assignments without finding a plan"],
                    suggestions=["split the request into smaller ones"],
                )
            raise Unsatisfiable(["no assignment meets every hard constraint"])
        topology = realised.get(tuple(sorted(result.values.items()))) or _realize.realize(problem, result.values)
        status = Status.OPTIMAL if result.proven else Status.FEASIBLE
        bound: int | None = result.bound
        if status is Status.OPTIMAL and _packs_io_by_candidates(problem, result.values):
            # the IO-BAR packings in bridge trees are a few candidates (the least that fits, a balanced one, one a
            # chain length), not every packing: the plan is the best of those, and no bound is known below it
            status, bound = Status.FEASIBLE, None
        return Placement(topology, status, stats, model_cost=result.cost, bound=bound, least_model=result.least_model)


def _lays_out_otherwise(problem: Problem, other: Problem, values: Mapping[str, int]) -> bool:
    """Whether ``other`` (:meth:`Problem.reusing`) lays a context of the assignment out otherwise."""
    return any(problem.decision(ctx, values) != other.decision(ctx, values) for ctx in problem.context_variables)


def _bus_numbers_fit(topology: Topology) -> bool:
    """Whether every bus-number region of PCI domain 0, and the domain, has the numbers its buses take."""
    return topology.bus_numbers_left(0) >= 0 and all(r.free >= 0 for r in identity.bus_regions(topology))


def _packs_io_by_candidates(problem: Problem, values: Mapping[str, int]) -> bool:
    """Whether a context of the assignment packs its bridge trees' IO-BAR units (``Decision.pack_tree_io``, or
    ``Decision.bus_packing`` on a conventional root): layouts chosen among candidates, not proven the least."""
    for ctx_id in problem.context_variables:
        d = problem.decision(ctx_id, values)
        if d is not None and d.feasible and (d.pack_tree_io or d.bus_packing):
            return True
    return False


def io_reserve_off(topology: Topology, short: int, keep: Collection[int] = ()) -> Topology | None:
    """``topology`` with ``io-reserve=0`` on the ``short`` first candidates that each give an IO window back.

    Only PCIe ports the plan adds are changed (not those of ``keep``, the request's indexes): a pci-bridge
    with io-reserve=0 would pay only in layouts the model does not weigh (a dmi-to-pci-bridge's tree on q35,
    found by the enumerator), so the solver leaves bridges their reservation. ``None`` when
    there are fewer such controllers (see :meth:`~pcitopo.topology.Topology.io_reserve_off_candidates`): the
    plan does not fit. Each one costs the same (the ``io-reserve-off`` weight), so the fewest are set, ports
    holding a device before empty ones (those are kept for hot-plugging).
    """
    candidates = [i for i in topology.io_reserve_off_candidates() if i not in keep and topology.model(i).port]
    if len(candidates) < short:
        return None
    result = topology.with_io_reserve_off(candidates[:short])
    return None if result.io_windows_short() else result


def _hotplug_off_where_cheaper(
    unfitted: Topology,
    topology: Topology,
    keep: Collection[int],
    required: Collection[str],
    score: Callable[[Topology], int | None],
    gain: Callable[[Topology, Controller], int | None] | None = None,
) -> tuple[Topology, int | None]:
    """``topology`` (``unfitted``'s short IO windows given back by :func:`io_reserve_off`) with ``hotplug=off``
    instead of ``io-reserve=0`` on each such port where that scores less, and its score.

    A port with hotplug off gets no IO window either (the firmware reserves none for it), and costs what the
    policy charges for its device not being hot-pluggable (or for one spare port fewer) instead of the
    ``io-reserve-off`` weight: which is cheaper depends on the weights, so each port is tried, one at a time.
    A port holding a device that must be hot-pluggable keeps io-reserve=0. ``gain(best, port)``: the most the
    best with ``port`` (the trial's controller) in place can score below the best (``None``: unknown); a trial it
    bounds by 0 or less cannot be taken, so it is neither built, checked nor scored (see :func:`_gain_bound`).
    """
    best, best_score = topology, score(topology)
    before = {c.index: c for c in unfitted.controllers}
    on_bus = _device_ids_by_bus(topology)
    for c in topology.controllers:
        if c.io_reserve != 0 or c.index in keep or any(d in required for d in on_bus.get(c.index, ())):
            continue
        port = attrs.evolve(before[c.index], hotplug=False)
        most = gain(best, port) if gain is not None and best_score is not None else None
        if most is not None and most <= 0:
            continue  # cannot score less than the best
        trial = best.replace(controllers=[port if x.index == c.index else x for x in best.controllers])
        if trial.io_windows_short():
            continue
        scored = score(trial)
        if scored is not None and (best_score is None or scored < best_score):
            best, best_score = trial, scored
    return best, best_score


def _device_ids_by_bus(topology: Topology) -> dict[int, list[str]]:
    """The ids of the devices ``topology`` places, by bus."""
    on_bus: dict[int, list[str]] = {}
    for d in topology.devices:
        if d.address is not None:
            on_bus.setdefault(d.address.bus, []).append(d.id)
    return on_bus


HOTPLUG_OFF_TRIALS = 64
"""The most plans :func:`_hotplug_off_to_fit` scores for one realised plan that breaks a budget: a heuristic bound
(a plan of 11 such ports gets every single and pair), so that a search near the 32-bit hole does not score every
pair of a hundred ports for each assignment it realises."""


def _hotplug_off_to_fit(
    topology: Topology, keep: Collection[int], required: Collection[str], score: Callable[[Topology], int | None]
) -> tuple[Topology, int | None]:
    """``topology``, which breaks a firmware budget (``score`` gives ``None``), with ``hotplug=off`` on the fewest
    of the ports it adds that fit it, the cheapest such plan, and its score (``None``: none fits).

    The firmware reserves memory (and IO) for every hotplug port (SeaBIOS 2 MiB of 32-bit memory, for one), so a
    plan near the 32-bit hole may fit with a port or two not hot-pluggable, at what the policy charges for their
    devices (or spares). Ports holding a device that must be hot-pluggable, and the request's own, keep hotplug.
    Each port alone is tried, then each pair, :data:`HOTPLUG_OFF_TRIALS` trials at most: enough for the small plans
    near a budget the enumerator checks (tests/property/test_optimality.py), and a bounded cost on a plan with many
    ports (each trial is scored in full).
    """
    on_bus = _device_ids_by_bus(topology)
    ports = [
        c
        for c in topology.controllers
        if c.index not in keep
        and topology.model(c).port
        and c.hotplug is not False
        and not any(d in required for d in on_bus.get(c.index, ()))
    ]
    best: tuple[Topology, int | None] = (topology, None)
    trials = 0
    for size in (1, 2):
        for chosen in itertools.combinations(ports, size):
            trials += 1
            if trials > HOTPLUG_OFF_TRIALS:
                return best
            off = {c.index: attrs.evolve(c, hotplug=False) for c in chosen}
            trial = topology.replace(controllers=[off.get(x.index, x) for x in topology.controllers])
            scored = score(trial)
            if scored is not None and (best[1] is None or scored < best[1]):
                best = (trial, scored)
        if best[1] is not None:
            return best
    return best


def _gain_bound(policy: Policy, placing: Collection[str]) -> Callable[[Topology, Controller], int | None]:
    """The most a plan can score less (:func:`pcitopo.policy.evaluate.soft_results`, the score of
    :func:`pcitopo.solver.solve.solve`) once :func:`_hotplug_off_where_cheaper` turns one port's hotplug off and
    gives its IO reservation back; ``placing``: the devices the search places (all of them placed by the plan).

    Only the port changes, so only the terms that read it can: ``is_hotpluggable`` reads a bus's own
    controller alone, hence the devices on the port's bus only. The ``io-reserve-off`` term loses at most one
    controller (its weight); ``hotplug-off-occupied`` gains at most each device there (its weight each); a
    device preferring hotplug that is met (hot-pluggable, alone at function 0) loses the ``hotplug`` weight when
    the port's model has hotplug on unless turned off (``Hotplug.DEFAULT_ON``, which ``is_hotpluggable`` reads
    so), counted among ``placing`` only (the request leaves them unaddressed; an undercount only raises the
    bound); the spare-ports term can only rise, and the others
    (NUMA, integration, controllers, primary video) do not read hotplug. Of an ordered policy's terms, the
    addresses' order does not read it, but the NIC names may change with a port's hotplug (acpi-index reaches
    the guest on hotplug slots only): that term is one result for all the NICs, met or not
    (:func:`pcitopo.policy.evaluate.soft_results`), so it can fall by its ``order`` weight at most. Weights are
    never negative (the policy's check), so each term moves as said.
    """
    from pcitopo.policy.evaluate import effective_needs

    weights = policy.weights
    if any(w < 0 for w in weights.values()):
        return lambda best, port: None
    names = weights["order"] if policy.ordered else 0
    per_device = weights["hotplug-off-occupied"] if policy.hotplug_off_occupied else 0
    # the devices by bus and the slots' functions of the last best (a new best only when a trial is taken)
    seen: list[tuple[Topology, dict[int, list[Device]], dict[tuple[int, int, int], set[int]]]] = []

    def gain(best: Topology, port: Controller) -> int | None:
        if not seen or seen[0][0] is not best:
            on_bus: dict[int, list[Device]] = {}
            for d in best.devices:
                if d.address is not None:
                    on_bus.setdefault(d.address.bus, []).append(d)
            seen[:] = [(best, on_bus, best.slot_usage())]
        _, on_bus, usage = seen[0]
        here = on_bus.get(port.index, [])
        turned_off = port.hotplug is False and best.model(port.index).hotplug is Hotplug.DEFAULT_ON
        lost = 0
        for d in here if turned_off else ():
            a = d.address
            assert a is not None
            if (
                d.id in placing
                and a.function == 0
                and best.is_hotpluggable(a.bus, a.slot)
                and usage.get((a.domain, a.bus, a.slot), set()) == {0}
                and effective_needs(best, policy, d).hotplug is HotplugNeed.PREFERRED
            ):
                lost += 1
        return weights["io-reserve-off"] + per_device * (len(here) - lost) - weights["hotplug"] * lost + names

    return gain


def feasible(request: Topology, policy: Policy, units: Sequence[Unit]) -> bool:
    """Whether ``units`` can be placed at all (the search stops at the first plan); for explanations."""
    if not units:
        return True
    try:
        problem = formulate(request, policy, units)
    except PcitopoError:
        return False
    if any(not c for c in problem.candidates):
        return False
    from pcitopo.solver import search

    return search.search(problem, optimise=False).values is not None


class LibvirtBackend:
    """libvirt 9.0's own placement (``qemuDomainAssignPCIAddresses``), reproduced."""

    name = "libvirt"

    def place(
        self,
        request: Topology,
        policy: Policy,
        units: Sequence[Unit],
        *,
        trees_via_dmi: bool = True,
        names_expander: bool = False,
        balance_io: bool = False,
        limit: int | None = None,
    ) -> Placement:
        from pcitopo.solver._libvirt import libvirt_assign  # type: ignore[import-not-found, unused-ignore]

        result: Topology = libvirt_assign(request)
        return Placement(result, Status.REPRODUCED, SearchStats(self.name))


def backend_for(policy: Policy, score: Callable[[Topology], int | None] | None = None) -> Backend:
    """The libvirt backend for a policy that asks for libvirt's choices, else the CSP backend."""
    return LibvirtBackend() if policy.libvirt else CspBackend(score)


Feasibility = Callable[[Topology, Policy, Sequence[Unit]], bool]
"""The feasibility test :func:`pcitopo.solver.explain.explain` takes."""
