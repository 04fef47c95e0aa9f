"""The solver's entry point: :func:`solve`.

The steps, each in its own module:

1. pinned controllers without an address are placed first-fit;
2. graph reasoning (:mod:`._model`): devices become units and demand classes;
   free positions of the existing topology are filled when they cost nothing
   (right kind, hotplug and NUMA node, no new controller);
3. the rest is a small CSP (:mod:`._csp`): which context (main root bus,
   expander bus of a NUMA node, host bridge) hosts each chunk of each class,
   under the budgets of root-bus slots, bus numbers and IO windows, at the
   lowest cost for the policy's soft constraints;
4. each context is laid out (:mod:`._layout`, :mod:`._realize`);
5. the plan is validated with the same rules as :func:`pcitopo.validate`, and
   the soft constraints are reported.

>>> from pcitopo.devices import Device
>>> from pcitopo.topology import IO_WINDOW, Topology
>>> t = Topology.build("q35", devices=[Device("net0", "virtio-net"), Device("disk0", "virtio-blk")])
>>> plan = solve(t)
>>> {k: str(v) for k, v in plan.assigned.items()}
{'net0': '0000:01:00.0', 'disk0': '0000:02:00.0'}
>>> [(c.model, str(c.address)) for c in plan.added]
[('pcie-root-port', '0000:00:01.0'), ('pcie-root-port', '0000:00:01.1'), ('pcie-root-port', '0000:00:01.2')]
>>> plan.cost
3
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from typing import Any

import attrs

from pcitopo.address import PciAddress
from pcitopo.devices import Controller, Device, HotplugNeed
from pcitopo.errors import InternalError, InvalidTopology, PcitopoError, Unsatisfiable
from pcitopo.legality.catalog import Connect
from pcitopo.policy.policy import Policy
from pcitopo.solver import _csp
from pcitopo.solver._layout import BRIDGE_SLOTS, Context, Counts, Decision, add_counts, add_units, decide
from pcitopo.solver._model import (
    DemandClass,
    Unit,
    build_units,
    classify,
    free_pools,
    io_windows_used,
    unit_fits_pool,
)
from pcitopo.solver._realize import Builder, realize_new_phbs, realize_pci, realize_pcie, with_placements
from pcitopo.solver.plan import Plan, SoftResult, Status
from pcitopo.topology import IO_WINDOW, Topology

__all__ = ["solve"]


def __dir__() -> list[str]:
    return __all__


def solve(topology: Topology, policy: Policy | str | None = None) -> Plan:
    """Place every unaddressed device of ``topology`` by ``policy`` (default ``hotplug``).

    Adds the controllers needed, never moves an addressed device or controller,
    and returns a frozen :class:`~pcitopo.solver.plan.Plan` that has passed
    validation. Raises :class:`~pcitopo.errors.Unsatisfiable` when no plan
    meets every hard requirement, and :class:`~pcitopo.errors.InvalidTopology`
    when the pinned part is already illegal.
    """
    if policy is None:
        policy = Policy.named("hotplug")
    elif isinstance(policy, str):
        policy = Policy.named(policy)
    _check_pins(topology)
    if policy.libvirt:
        from pcitopo.solver._libvirt import libvirt_assign  # type: ignore[import-not-found, unused-ignore]

        result = libvirt_assign(topology)
        return _finish(topology, result, policy, Status.OPTIMAL)
    placed = _place_pinned_controllers(topology)
    result, status = _allocate(placed, policy)
    return _finish(topology, result, policy, status)


# -- steps -------------------------------------------------------------------------


def _validate(topology: Topology) -> Sequence[object]:
    from pcitopo.legality import rules

    return rules.validate(topology)


def _check_pins(topology: Topology) -> None:
    violations = _validate(topology)
    if violations:
        raise InvalidTopology(violations)  # type: ignore[arg-type]


def _place_pinned_controllers(topology: Topology) -> Topology:
    """Give user-declared controllers without an address one, first fit, and their target values."""
    pending = [c for c in topology.controllers if c.address is None and c.index != 0]
    if not pending:
        return topology
    current = topology
    for c in sorted(pending, key=lambda c: c.index):
        model = current.model(c)
        if model.root:  # pseries host bridges have no address
            filled = _fill_identity(current, c, None)
        else:
            positions = current.free_positions(c)
            if not positions:
                raise Unsatisfiable(
                    [f"controller {c.name!r} ({c.model}) needs a slot, and no bus that takes it has a free one"],
                    suggestions=[f"remove {c.name!r} or give it an address"],
                )
            filled = _fill_identity(current, c, positions[0])
        controllers = [filled if x.index == c.index else x for x in current.controllers]
        # a root port packed into a slot with others: multifunction on function 0
        if filled.address is not None and filled.address.function > 0:
            controllers = [
                attrs.evolve(x, multifunction=True)
                if x.address == filled.address.slot_address and x.multifunction is None
                else x
                for x in controllers
            ]
        current = current.replace(controllers=controllers)
    return current


def _fill_identity(topology: Topology, c: Controller, address: PciAddress | None) -> Controller:
    changes: dict[str, Any] = {"address": address}
    model = topology.model(c)
    if "chassis" in model.identity:
        if c.chassis is None:
            changes["chassis"] = c.index
        if c.port is None and address is not None:
            changes["port"] = address.devfn if c.model == "pcie-root-port" else address.slot
    if "chassis-nr" in model.identity and c.chassis_nr is None:
        changes["chassis_nr"] = c.index
    if "bus-nr" in model.identity and c.bus_nr is None:
        lowest = min([x.bus_nr for x in topology.controllers if x.bus_nr is not None], default=256)
        if lowest <= 2:
            raise Unsatisfiable(
                [f"no free bus number below {lowest} for expander bus {c.name!r}"],
                suggestions=[f"set busNr for {c.name!r} by hand"],
            )
        changes["bus_nr"] = lowest - 2
    if "target-index" in model.identity and c.target_index is None:
        used = {x.target_index for x in topology.controllers if x.target_index is not None}
        changes["target_index"] = next(i for i in range(1, 32) if i not in used)
    return attrs.evolve(c, **changes)


@attrs.frozen
class _Problem:
    topology: Topology
    policy: Policy
    units: tuple[Unit, ...]
    classes: tuple[DemandClass, ...]
    contexts: tuple[Context, ...]
    fixed: Mapping[int, int]
    """class index -> context id, for classes with a single candidate."""
    chunks: Mapping[str, tuple[int, int, int]]
    """chunk variable -> (class index, first unit, end unit)."""
    candidates: Mapping[str, tuple[int, ...]]
    chains: tuple[tuple[str, ...], ...]
    spare: Mapping[int, int]
    region: int
    """Bus numbers free in the main domain for the main root and new expanders."""
    io_budget: int | None
    io_used: int
    cache: dict[tuple[str, int], Counts] = attrs.field(factory=dict, eq=False, repr=False)
    """Counts of each piece in each context, filled during the search."""


def _allocate(topology: Topology, policy: Policy) -> tuple[Topology, Status]:
    units = build_units(topology, policy)
    if not units:
        return _ensure_spares_only(topology, policy), Status.OPTIMAL
    topology, units = _fill_pools(topology, units, policy)
    if not units:
        return _ensure_spares_only(topology, policy), Status.OPTIMAL
    problem = _formulate(topology, policy, units)
    result = _csp.search(problem.candidates, problem.chains, lambda a: _evaluate(problem, a))
    if result.assignment is None:
        raise _explain(topology, policy, units)
    final = _realize(problem, result.assignment)
    return final, Status.OPTIMAL if result.optimal else Status.FEASIBLE


def _ensure_spares_only(topology: Topology, policy: Policy) -> Topology:
    """With nothing to place, still add the spare hotplug ports the policy asks for."""
    if policy.spare_ports == 0:
        return topology
    problem = _formulate(topology, policy, ())
    result = _csp.search({}, (), lambda a: _evaluate(problem, a))
    if result.assignment is None:
        return topology
    return _realize(problem, result.assignment)


# -- step 2: free positions at no cost -------------------------------------------------


def _fill_pools(topology: Topology, units: tuple[Unit, ...], policy: Policy) -> tuple[Topology, tuple[Unit, ...]]:
    pools = list(free_pools(topology))
    if not pools:
        return topology, units
    budget = topology.io_window_budget()
    io_left = None if budget is None else budget - io_windows_used(topology)
    io_bytes = topology.io_bytes_by_bus()
    min_address = _ordered_floor(topology) if policy.ordered else {}
    free: dict[int, list[int]] = {i: list(p.slots) for i, p in enumerate(pools)}
    placements: dict[str, PciAddress] = {}
    multifunction: set[str] = set()
    left: list[Unit] = []
    strictness = sorted(
        units,
        key=lambda u: (
            not u.integrated_required,
            not (u.numa_node is not None and u.numa_strict),
            u.hotplug is not HotplugNeed.REQUIRED,
            u.position,
        ),
    )
    for u in strictness:
        spot = None
        for i, pool in enumerate(pools):
            if not free[i] or not unit_fits_pool(u, pool, prefer_integrated=policy.prefer_integrated):
                continue
            if u.has_io and io_left is not None and _more_windows(io_bytes, pool.bus, u.io_size) > io_left:
                continue
            floors = [min_address[d.kind] for d in u.devices if d.kind in min_address]
            floor = max(floors) if floors else None
            for slot in free[i]:
                a = PciAddress(bus=pool.bus, slot=slot)
                if floor is None or a > floor:
                    spot = (i, slot)
                    break
            if spot:
                break
        if spot is None:
            left.append(u)
            continue
        i, slot = spot
        free[i].remove(slot)
        pool = pools[i]
        if u.has_io:
            if io_left is not None:
                io_left -= _more_windows(io_bytes, pool.bus, u.io_size)
            io_bytes[pool.bus] = io_bytes.get(pool.bus, 0) + u.io_size
        for f, d in enumerate(u.devices):
            placements[d.id] = PciAddress(bus=pool.bus, slot=slot, function=f)
        if len(u.devices) > 1:
            multifunction.add(u.devices[0].id)
    if not placements:
        return topology, units
    devices = [
        attrs.evolve(d, address=placements[d.id], multifunction=True if d.id in multifunction else d.multifunction)
        if d.id in placements
        else d
        for d in topology.devices
    ]
    remaining = tuple(sorted(left, key=lambda u: u.position))
    return topology.replace(devices=devices), remaining


def _more_windows(io_bytes: Mapping[int, int], bus: int, size: int) -> int:
    """How many more 4 KiB windows a bridge needs for ``size`` more bytes of IO BAR.

    A bridge's window is its own bytes rounded up plus its children's windows,
    so the growth of one bus's rounding is the growth of the whole count.
    """
    before = io_bytes.get(bus, 0)
    return -(-(before + size) // IO_WINDOW) - -(-before // IO_WINDOW)


def _ordered_floor(topology: Topology) -> dict[str, PciAddress]:
    floor: dict[str, PciAddress] = {}
    for d in topology.devices:
        if d.address is not None and (d.kind not in floor or d.address > floor[d.kind]):
            floor[d.kind] = d.address
    return floor


# -- step 3: the CSP -------------------------------------------------------------------------


def _formulate(topology: Topology, policy: Policy, units: Sequence[Unit]) -> _Problem:
    machine = topology.machine
    classes = classify(units)
    contexts = _contexts(topology, policy, classes)
    candidates_by_class: list[tuple[int, ...]] = []
    for cls in classes:
        candidates_by_class.append(_candidates(cls, contexts, policy))
    fixed: dict[int, int] = {}
    chunks: dict[str, tuple[int, int, int]] = {}
    candidates: dict[str, tuple[int, ...]] = {}
    chains: list[tuple[str, ...]] = []
    for ci, (cls, cands) in enumerate(zip(classes, candidates_by_class, strict=False)):
        if len(cands) == 0:
            fixed[ci] = -1
            continue
        if len(cands) == 1:
            fixed[ci] = cands[0]
            continue
        size = 8 if cls.sample.connect is Connect.PCIE_DEVICE else BRIDGE_SLOTS
        n = len(cls.units)
        size = max(size, math.ceil(n / 24))
        if cls.key[0] in ("switch", "bus"):
            size = n  # a group moves as one
        names = []
        for k, start in enumerate(range(0, n, size)):
            name = f"c{ci:03d}k{k:03d}"
            chunks[name] = (ci, start, min(n, start + size))
            candidates[name] = cands
            names.append(name)
        if len(names) > 1:
            chains.append(tuple(names))
    spare = _spare_wanted(topology, policy, contexts)
    budget = topology.io_window_budget()
    expanders = [c for c in topology.controllers if topology.model(c).expander and c.bus_nr is not None]
    ceiling = min([c.bus_nr for c in expanders if c.bus_nr], default=machine.bus_numbers)
    main_used = topology.bus_numbers_used(0) - sum(topology.subtree_bus_numbers(c.index) for c in expanders)
    return _Problem(
        topology=topology,
        policy=policy,
        units=tuple(units),
        classes=classes,
        contexts=contexts,
        fixed=fixed,
        chunks=chunks,
        candidates=candidates,
        chains=tuple(chains),
        spare=spare,
        region=ceiling - main_used,
        io_budget=budget,
        io_used=io_windows_used(topology),
    )


def _contexts(topology: Topology, policy: Policy, classes: Sequence[DemandClass]) -> tuple[Context, ...]:
    machine = topology.machine
    usage = topology.slot_usage()
    contexts: list[Context] = []
    children: dict[int, int] = {}
    for c in topology.controllers:
        if c.address is not None:
            children[c.address.bus] = children.get(c.address.bus, 0) + 1
    for d in topology.devices:
        if d.address is not None:
            children[d.address.bus] = children.get(d.address.bus, 0) + 1

    def empty_hot_ports(root: int) -> int:
        n = 0
        for c in topology.controllers:
            m = topology.model(c)
            if m.port and c.index not in children and topology.is_hotpluggable(c.index, 0):
                top = _context_root(topology, c.index)
                if top == root:
                    n += 1
        return n

    def add(**kw: object) -> None:
        contexts.append(
            Context(
                id=len(contexts),
                offers_pcie_to_pci=machine.offers("pcie-to-pci-bridge"),
                offers_dmi=machine.offers("dmi-to-pci-bridge"),
                offers_switch=machine.offers("pcie-switch-upstream-port")
                and machine.offers("pcie-switch-downstream-port"),
                **kw,  # type: ignore[arg-type]
            )
        )

    def free_slots(index: int) -> tuple[int, ...]:
        model = topology.model(index)
        return tuple(s for s in model.slot_range() if (0, index, s) not in usage)

    def port_functions(index: int) -> tuple[PciAddress, ...]:
        out: list[PciAddress] = []
        by_slot: dict[int, list[Controller]] = {}
        for c in topology.controllers:
            if c.address is not None and c.address.bus == index:
                by_slot.setdefault(c.address.slot, []).append(c)
        others = {d.address.slot for d in topology.devices if d.address is not None and d.address.bus == index}
        for slot, members in sorted(by_slot.items()):
            fn0 = [c for c in members if c.address is not None and c.address.function == 0]
            if slot in others or not fn0 or fn0[0].multifunction is not True:
                continue
            if any(c.model != "pcie-root-port" for c in members):
                continue
            used = {c.address.function for c in members if c.address is not None}
            out += [PciAddress(bus=index, slot=slot, function=f) for f in range(8) if f not in used]
        return tuple(out)

    root = topology.model(0)
    pcie = root.name == "pcie-root"
    main_free = free_slots(0)
    add(
        label=topology.bus_name(0),
        root_kind="pcie" if pcie else "pci",
        bus=0,
        new_model=None,
        numa_node=topology.controller(0).numa_node,
        free_slots=main_free,
        free_port_functions=port_functions(0) if pcie else (),
        can_integrate=pcie,
        root_hotplug=(not pcie) and any(topology.is_hotpluggable(0, s) for s in main_free[:1] or (1,)),
        domain="main",
        own_range=None,
        empty_hot_ports=empty_hot_ports(0) if pcie else 0,
    )
    # existing expander buses and host bridges
    for c in topology.controllers:
        m = topology.model(c)
        if c.index == 0 or not (m.expander or m.root):
            continue
        if m.expander and (c.address is None or c.bus_nr is None):
            continue
        if m.expander:
            higher = [x.bus_nr for x in topology.controllers if x.bus_nr is not None and x.bus_nr > (c.bus_nr or 0)]
            top = min(higher, default=machine.bus_numbers)
            own = top - (c.bus_nr or 0) - topology.subtree_bus_numbers(c.index)
            kind = "pcie" if m.name == "pcie-expander-bus" else "pci"
            domain = "main"
        else:
            own = machine.bus_numbers - topology.bus_numbers_used(c.index)
            kind = "pci"
            domain = f"phb{c.index}"
        add(
            label=f"{topology.bus_name(c.index)} ({m.name})",
            root_kind=kind,
            bus=c.index,
            new_model=None,
            numa_node=c.numa_node,
            free_slots=free_slots(c.index),
            free_port_functions=port_functions(c.index) if kind == "pcie" else (),
            can_integrate=False,
            root_hotplug=any(topology.is_hotpluggable(c.index, s) for s in free_slots(c.index)[:1]),
            domain=domain,
            own_range=own,
            empty_hot_ports=empty_hot_ports(c.index) if kind == "pcie" else 0,
        )
    # new expander buses / host bridges, one per NUMA node that some device names
    nodes = sorted({cls.sample.numa_node for cls in classes if cls.sample.numa_node is not None})
    if policy.spare_ports_per_node:
        nodes = sorted(set(nodes) | set(range(topology.numa_nodes)))
    pseries = machine.offers("spapr-pci-host-bridge")
    for node in [None, *nodes] if pseries else nodes:
        if node is not None and node >= topology.numa_nodes:
            continue
        if pseries:
            add(
                label="new PCI host bridges" + (f" for NUMA node {node}" if node is not None else ""),
                root_kind="phb-new",
                bus=None,
                new_model="spapr-pci-host-bridge",
                numa_node=node,
                free_slots=tuple(range(1, 32)),
                free_port_functions=(),
                can_integrate=False,
                root_hotplug=True,
                domain=f"newphb{node}",
                own_range=None,
                empty_hot_ports=0,
            )
            continue
        model = "pcie-expander-bus" if pcie else "pci-expander-bus"
        if not machine.offers(model):
            continue
        add(
            label=f"a new {model} for NUMA node {node}",
            root_kind="pcie" if pcie else "pci",
            bus=None,
            new_model=model,
            numa_node=node,
            free_slots=tuple(range(32)),
            free_port_functions=(),
            can_integrate=False,
            root_hotplug=False,
            domain="main",
            own_range=None,
            empty_hot_ports=0,
        )
    return tuple(contexts)


def _context_root(topology: Topology, index: int) -> int | None:
    for c in topology._walk_up(index):
        m = topology.model(c)
        if m.root or m.expander:
            return c.index
    return None


def _candidates(cls: DemandClass, contexts: Sequence[Context], policy: Policy) -> tuple[int, ...]:
    u = cls.sample
    own: list[int] = []
    neutral: list[int] = []
    for ctx in contexts:
        if u.integrated_required and ctx.bus != 0:
            continue
        if ctx.numa_node is not None and ctx.numa_node == u.numa_node:
            own.append(ctx.id)
        elif ctx.numa_node is None:
            if False:
                continue
            neutral.append(ctx.id)
    if u.numa_node is not None and u.numa_strict:
        return tuple(own)
    if u.numa_node is not None:
        return tuple(own + neutral)
    return tuple(neutral)


def _spare_wanted(topology: Topology, policy: Policy, contexts: Sequence[Context]) -> dict[int, int]:
    spare: dict[int, int] = {}
    if policy.spare_ports == 0:
        return spare
    for ctx in contexts:
        if ctx.bus == 0 or (policy.spare_ports_per_node and ctx.numa_node is not None and ctx.root_kind != "phb-new"):
            spare[ctx.id] = policy.spare_ports
    return spare


def _assignment_by_context(problem: _Problem, assignment: Mapping[str, int]) -> dict[int, list[Unit]]:
    by_ctx: dict[int, list[Unit]] = {}
    for ci, ctx_id in problem.fixed.items():
        by_ctx.setdefault(ctx_id, []).extend(problem.classes[ci].units)
    for name, (ci, start, end) in problem.chunks.items():
        if name in assignment:
            by_ctx.setdefault(assignment[name], []).extend(problem.classes[ci].units[start:end])
    return by_ctx


_Piece = tuple[str, int, int, int]
"""A piece of a demand class: (cache key, class index, first unit, end unit)."""


def _pieces_by_context(problem: _Problem, assignment: Mapping[str, int]) -> dict[int, list[_Piece]]:
    by_ctx: dict[int, list[_Piece]] = {}
    for ci, ctx_id in problem.fixed.items():
        by_ctx.setdefault(ctx_id, []).append((f"f{ci}", ci, 0, len(problem.classes[ci].units)))
    for name, (ci, start, end) in problem.chunks.items():
        if name in assignment:
            by_ctx.setdefault(assignment[name], []).append((name, ci, start, end))
    return by_ctx


def _counts(problem: _Problem, ctx: Context, pieces: Sequence[_Piece]) -> Counts:
    """A context's counts, summed from cached counts of each piece (the CSP checks thousands of assignments)."""
    total = Counts()
    for key, ci, start, end in pieces:
        cached = problem.cache.get((key, ctx.id))
        if cached is None:
            cached = add_units(ctx, Counts(), problem.classes[ci].units[start:end], problem.policy)
            problem.cache[(key, ctx.id)] = cached
        total = add_counts(total, cached)
    return total


def _decisions(problem: _Problem, by_ctx: Mapping[int, Sequence[_Piece]]) -> dict[int, Decision] | None:
    policy = problem.policy
    new_expanders = [
        ctx.id
        for ctx in problem.contexts
        if ctx.new_model in ("pcie-expander-bus", "pci-expander-bus")
        and (by_ctx.get(ctx.id) or problem.spare.get(ctx.id))
    ]
    decisions: dict[int, Decision] = {}
    for ctx in problem.contexts:
        pieces = by_ctx.get(ctx.id, [])
        if ctx.id != 0 and not pieces and not problem.spare.get(ctx.id):
            continue
        counts = _counts(problem, ctx, pieces)
        d = decide(
            ctx,
            counts,
            policy,
            spare_wanted=problem.spare.get(ctx.id, 0),
            expanders_here=len(new_expanders) if ctx.id == 0 else 0,
            bus_cap=ctx.own_range if ctx.own_range is not None else problem.region,
        )
        if not d.feasible:
            return None
        decisions[ctx.id] = d
    return decisions


def _evaluate(problem: _Problem, assignment: Mapping[str, int]) -> int | None:
    by_ctx = _pieces_by_context(problem, assignment)
    if -1 in by_ctx:
        return None
    decisions = _decisions(problem, by_ctx)
    if decisions is None:
        return None
    return _cost(problem, by_ctx, decisions)


def _cost(problem: _Problem, by_ctx: Mapping[int, Sequence[_Piece]], decisions: Mapping[int, Decision]) -> int | None:
    w = problem.policy.weights
    main_bus = 0
    io = problem.io_used
    cost = 0
    phbs = 0
    for ctx_id, d in decisions.items():
        ctx = problem.contexts[ctx_id]
        bus = d.bus_numbers
        controllers = d.controllers
        if ctx.new_model in ("pcie-expander-bus", "pci-expander-bus"):
            own = problem.topology.catalog.controller(ctx.new_model).bus_numbers
            bus += own
            controllers += 1
        if ctx.own_range is not None:
            if bus > ctx.own_range:
                return None
        elif ctx.domain == "main":
            main_bus += bus
        elif bus > problem.topology.machine.bus_numbers:
            return None
        phbs += d.phbs
        io += d.io_windows
        cost += w.get("fewer-controllers", 1) * controllers
        cost += w.get("hotplug", 100) * d.hot_misses
        cost += w.get("integrated", 5) * d.int_misses
        cost += w.get("spare-ports", 20) * d.spare_missing
        for _, ci, start, end in by_ctx.get(ctx_id, ()):
            node = problem.classes[ci].sample.numa_node
            if node is not None and ctx.numa_node != node:
                cost += w.get("numa", 50) * (end - start)
    if main_bus > problem.region:
        return None
    if problem.io_budget is not None and io > problem.io_budget:
        return None
    if phbs:
        existing = sum(1 for c in problem.topology.controllers if problem.topology.model(c).root)
        if existing + phbs > problem.topology.machine.max_host_bridges:
            return None
    return cost


# -- step 4: lay it out --------------------------------------------------------------------------


def _realize(problem: _Problem, assignment: Mapping[str, int]) -> Topology:
    topology = problem.topology
    by_ctx = _assignment_by_context(problem, assignment)
    decisions = _decisions(problem, _pieces_by_context(problem, assignment))
    if decisions is None:  # pragma: no cover - the search only returns feasible assignments
        raise InternalError("the chosen assignment is not feasible")
    b = Builder(
        used_indexes={c.index for c in topology.controllers},
        used_chassis_port={
            (c.chassis, -1 if c.port is None else c.port) for c in topology.controllers if c.chassis is not None
        },
        used_chassis_nr={c.chassis_nr for c in topology.controllers if c.chassis_nr is not None},
        used_target_index={c.target_index for c in topology.controllers if c.target_index is not None},
    )
    main = problem.contexts[0]
    main_slots = list(main.free_slots)
    # slots of the main root bus kept for new expander buses: the last free ones
    new_exp = [
        problem.contexts[i]
        for i in decisions
        if problem.contexts[i].new_model in ("pcie-expander-bus", "pci-expander-bus")
    ]
    exp_slots = {ctx.id: main_slots.pop() for ctx in sorted(new_exp, key=lambda c: c.id)}
    expander_controllers: dict[int, Controller] = {}
    for ctx in sorted(new_exp, key=lambda c: c.id):
        index = b.next_index()
        ctrl = Controller(
            index, ctx.new_model or "", address=PciAddress(bus=0, slot=exp_slots[ctx.id]), numa_node=ctx.numa_node
        )
        expander_controllers[ctx.id] = ctrl
        b.controllers.append(ctrl)
    dmi_pref = topology.machine.preferred.get("dmi-to-pci-bridge", ())
    for ctx_id in sorted(decisions):
        ctx = problem.contexts[ctx_id]
        d = decisions[ctx_id]
        units = by_ctx.get(ctx_id, [])
        if ctx.root_kind == "phb-new":
            realize_new_phbs(b, ctx, d, units)
            continue
        root_bus = ctx.bus if ctx.bus is not None else expander_controllers[ctx_id].index
        slots = main_slots if ctx_id == 0 else list(ctx.free_slots)
        if ctx.root_kind == "pcie":
            realize_pcie(
                b,
                ctx,
                root_bus,
                d,
                units,
                problem.policy,
                free_slots=slots,
                port_functions=ctx.free_port_functions,
                dmi_preferred=dmi_pref,
            )
        else:
            realize_pci(b, ctx, root_bus, d, units, problem.policy, free_slots=slots)
    b.set_multifunction()
    controllers = list(b.controllers)
    # bus numbers for new expander buses: carved from the top of the free region
    if expander_controllers:
        controllers = _assign_bus_nr(problem, decisions, expander_controllers, controllers)
    return topology.replace(
        controllers=[*topology.controllers, *controllers],
        devices=with_placements(topology.devices, b),
    )


def _assign_bus_nr(
    problem: _Problem,
    decisions: Mapping[int, Decision],
    expanders: Mapping[int, Controller],
    controllers: list[Controller],
) -> list[Controller]:
    topology = problem.topology
    machine = topology.machine
    existing = [c.bus_nr for c in topology.controllers if c.bus_nr is not None]
    ceiling = min(existing, default=machine.bus_numbers)
    need: dict[int, int] = {}
    for ctx_id, ctrl in expanders.items():
        own = topology.catalog.controller(ctrl.model).bus_numbers
        need[ctx_id] = decisions[ctx_id].bus_numbers + own
    main_need = (
        problem.topology.bus_numbers_used(0)
        - sum(topology.subtree_bus_numbers(c.index) for c in topology.controllers if topology.model(c).expander)
        + decisions[0].bus_numbers
        if 0 in decisions
        else 0
    )
    region_top = ceiling
    slack = max(0, region_top - main_need - sum(need.values()))
    share = slack // (len(need) + 1)
    bus_nr: dict[int, int] = {}
    top = region_top
    for ctx_id in sorted(need, reverse=True):
        size = need[ctx_id] + share
        top -= size
        bus_nr[ctx_id] = top
    by_index = {ctrl.index: ctx_id for ctx_id, ctrl in expanders.items()}
    out = []
    for c in controllers:
        if c.index in by_index:
            nr = bus_nr[by_index[c.index]]
            if not 1 <= nr <= 254:
                raise Unsatisfiable([f"no room for the bus numbers of {c.model} {c.name!r}"])
            c = attrs.evolve(c, bus_nr=nr)
        out.append(c)
    return out


# -- step 5: check, report -------------------------------------------------------------------------


def _finish(request: Topology, result: Topology, policy: Policy, status: Status) -> Plan:
    violations = _validate(result)
    if violations and policy.libvirt and all(v.rule in ("numa", "hotplug", "io-space") for v in violations):  # type: ignore[attr-defined]
        # libvirt places without looking at NUMA or hotplug needs or the IO budget: say what its choice breaks
        raise Unsatisfiable(
            [f"libvirt's placement breaks a requirement: {v}" for v in violations],
            suggestions=["use the hotplug, numa or minimal policy, which place by these requirements and budgets"],
        )
    if violations:
        raise InternalError("the solver produced a plan that breaks rules", violations)  # type: ignore[arg-type]
    unplaced = [d.id for d in result.devices if d.address is None]
    if unplaced:
        raise InternalError(f"devices left without an address: {', '.join(unplaced)}")
    before = {c.index for c in request.controllers}
    added = tuple(c for c in result.controllers if c.index not in before)
    return Plan(
        request=request,
        topology=result,
        policy=policy,
        added=added,
        soft=_soft_results(request, result, policy, added),
        status=status,
    )


def _soft_results(
    request: Topology, result: Topology, policy: Policy, added: Sequence[Controller]
) -> tuple[SoftResult, ...]:
    w = policy.weights
    out: list[SoftResult] = []
    pending = {d.id for d in request.devices if d.address is None}
    for d in result.devices:
        if d.id not in pending or d.address is None:
            continue
        needs = policy.needs_for(d)
        if needs.hotplug is HotplugNeed.PREFERRED:
            hot = result.is_hotpluggable(d.address.bus, d.address.slot)
            out.append(SoftResult("hotplug", hot, w["hotplug"], f"{d.id!r} on a hotpluggable position", d.id))
        if needs.numa_node is not None and not needs.numa_strict and not policy.numa:
            node = result.numa_node_of_bus(d.address.bus)
            out.append(
                SoftResult(
                    "numa", node == needs.numa_node, w["numa"], f"{d.id!r} under NUMA node {needs.numa_node}", d.id
                )
            )
        if policy.prefer_integrated:
            out.append(
                SoftResult(
                    "integrated", d.address.bus == 0, w["integrated"], f"{d.id!r} integrated on the root bus", d.id
                )
            )
    if policy.spare_ports:
        have = _spare_ports(result)
        out.append(
            SoftResult(
                "spare-ports",
                have >= policy.spare_ports,
                w["spare-ports"] * max(0, policy.spare_ports - have) or w["spare-ports"],
                f"{policy.spare_ports} spare hotplug port(s) (have {have})",
            )
        )
    out.append(
        SoftResult(
            "fewer-controllers",
            not added,
            w["fewer-controllers"] * len(added),
            f"{len(added)} controller(s) added",
        )
    )
    if policy.ordered:
        by_kind: dict[str, list[Device]] = {}
        for d in result.devices:
            by_kind.setdefault(d.kind, []).append(d)
        for kind, devices in sorted(by_kind.items()):
            addresses = [d.address for d in devices if d.address is not None]
            ok = all(a < b for a, b in itertools.pairwise(addresses))
            out.append(SoftResult("order", ok, w["order"], f"{kind} devices in definition order", kind))
    return tuple(out)


def _spare_ports(topology: Topology) -> int:
    occupied = {c.address.bus for c in topology.controllers if c.address is not None}
    occupied |= {d.address.bus for d in topology.devices if d.address is not None}
    if topology.machine.pcie:
        return sum(
            1
            for c in topology.controllers
            if topology.model(c).port and c.index not in occupied and topology.is_hotpluggable(c.index, 0)
        )
    usage = topology.slot_usage()
    free = 0
    for c in topology.controllers:
        m = topology.model(c)
        if not ({Connect.PCI_DEVICE, Connect.PCIE_DEVICE} & m.accepts):
            continue
        for s in m.slot_range():
            if (0, c.index, s) not in usage and topology.is_hotpluggable(c.index, s):
                free += 1
    return free


def _explain(topology: Topology, policy: Policy, units: Sequence[Unit]) -> Unsatisfiable:
    from pcitopo.solver.explain import explain

    return explain(topology, policy, units)


def _feasible(topology: Topology, policy: Policy, units: Sequence[Unit]) -> bool:
    """Whether these units can be placed (no optimisation); used to explain failures."""
    if not units:
        return True
    try:
        problem = _formulate(topology, policy, units)
    except PcitopoError:
        return False
    result = _csp.search(problem.candidates, problem.chains, lambda a: _evaluate(problem, a), optimise=False)
    return result.assignment is not None


def _context_reasons(topology: Topology, policy: Policy, units: Sequence[Unit]) -> list[str]:
    """Why each group of units cannot go to each place it could go, one line per reason."""
    try:
        problem = _formulate(topology, policy, units)
    except PcitopoError as exc:
        return [str(exc)]
    reasons: list[str] = []
    for ci, cls in enumerate(problem.classes):
        candidates = _candidates(cls, problem.contexts, policy)
        if not candidates:
            u = cls.sample
            if u.numa_node is not None and u.numa_strict:
                reasons.append(
                    f"no bus of NUMA node {u.numa_node} exists and {topology.machine.name} cannot add an expander bus"
                    + ("" if u.numa_node < topology.numa_nodes else f" (the guest has {topology.numa_nodes} nodes)")
                )
            continue
        for ctx_id in candidates:
            ctx = problem.contexts[ctx_id]
            counts = add_units(ctx, Counts(), cls.units, policy)
            d = decide(ctx, counts, policy, spare_wanted=0, bus_cap=ctx.own_range or problem.region)
            if not d.feasible and d.reason and d.reason not in reasons:
                reasons.append(d.reason)
        del ci
    return reasons


def _describe_budget(topology: Topology, policy: Policy) -> list[str]:
    """The numbers behind an infeasible request."""
    facts = []
    usage = topology.slot_usage()
    root = topology.model(0)
    free = [s for s in root.slot_range() if (0, 0, s) not in usage]
    facts.append(f"{topology.bus_name(0)} has {len(free)} free slots")
    facts.append(f"bus numbers left: {topology.bus_numbers_left(0)}")
    budget = topology.io_window_budget()
    if budget is not None:
        facts.append(f"IO windows left: {budget - io_windows_used(topology)} of {budget}")
    return facts
