"""Explaining infeasibility: the smallest set of conflicting requirements, and what would help.

A request is a set of *requirements*, one per demand class ("240 PCI
Express devices that must be hotpluggable"). When no plan exists,
:func:`explain` shrinks the set by deletion (CPMpy's deletion-based MUS):
drop each requirement in turn and keep it dropped while the rest still
conflicts. What is left conflicts, and removing any one of its members makes
the request feasible. It then tries the relaxations a VM owner could accept
(hotplug as a preference, NUMA as a preference, switches, fewer devices) and
reports the ones that work.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import attrs

from pcitopo.devices import HotplugNeed
from pcitopo.errors import PcitopoError, Unsatisfiable
from pcitopo.policy.policy import Policy
from pcitopo.solver._layout import Counts, add_units, decide
from pcitopo.solver.model import DemandClass, Unit, classify, formulate, io_windows_used
from pcitopo.solver.model import candidates as class_contexts
from pcitopo.topology import IO_WINDOW, Topology

Feasibility = Callable[[Topology, Policy, Sequence[Unit]], bool]
"""Whether some units can all be placed in a topology under a policy."""

__all__ = ["explain"]


def __dir__() -> list[str]:
    return __all__


def explain(
    topology: Topology,
    policy: Policy,
    units: Sequence[Unit],
    *,
    feasible: Feasibility,
    gave_up: str | None = None,
) -> Unsatisfiable:
    """Build the :class:`~pcitopo.errors.Unsatisfiable` error for units that cannot all be placed.

    ``feasible`` is the test of whether a set of units can be placed (the
    solver's search, stopped at the first plan). ``gave_up``: the search
    stopped at its node limit (this says so) instead of proving that no plan
    exists. No smallest conflict is then looked for: each test of a subset
    could give up the same way, after as long, and call feasible what is not
    known to be; the error gives the budgets and what no layout can change.
    """
    if gave_up is not None:
        return _gave_up(topology, policy, units, gave_up)
    classes = list(classify(units))

    def ok(chosen: Sequence[DemandClass], pol: Policy = policy) -> bool:
        return feasible(topology, pol, [u for c in chosen for u in c.units])

    facts = _describe_budget(topology, policy)
    core = list(classes)
    for cls in list(core):
        trial = [c for c in core if c is not cls]
        if trial and not ok(trial):
            core = trial
    conflicts = [c.describe() for c in core]
    facts += _context_reasons(topology, policy, [u for c in core for u in c.units])
    if len(core) == 1:
        conflicts[0] += (
            " does not fit, even on its own" if len(core[0].units) == 1 else " do not fit, even on their own"
        )
    io_space = _io_space_short(topology, units)
    suggestions: list[str] = []
    if io_space is not None:
        conflicts.insert(0, io_space[0])
        suggestions.append(io_space[1])
    others = [c for c in classes if c not in core]
    for cls in core:
        rest = [c for c in core if c is not cls]
        u = cls.sample
        if u.hotplug is HotplugNeed.REQUIRED:
            relaxed = _relax(cls, lambda x: attrs.evolve(x, hotplug=HotplugNeed.PREFERRED))
            if ok([*rest, relaxed]):
                suggestions.append(f"drop the hotplug requirement for {len(cls.units)} devices ({_names(cls)})")
        if u.hotplug is HotplugNeed.FORBIDDEN:
            relaxed = _relax(cls, lambda x: attrs.evolve(x, hotplug=HotplugNeed.ANY))
            if ok([*rest, relaxed]):
                suggestions.append(f"let {_names(cls)} be hot-pluggable")
        if u.numa_node is not None and u.numa_strict:
            relaxed = _relax(cls, lambda x: attrs.evolve(x, numa_strict=False))
            if ok([*rest, relaxed]):
                suggestions.append(f"let {_names(cls)} leave NUMA node {u.numa_node} when it is full")
        fit = _max_fitting(cls, rest, ok)
        if 0 < fit < len(cls.units):
            suggestions.append(
                f"drop {len(cls.units) - fit} of the {len(cls.units)} devices ({_names(cls)}): {fit} fit"
            )
    if not policy.allow_switches and ok(core, attrs.evolve(policy, allow_switches=True)):
        suggestions.append("allow PCI Express switches")
    if policy.spare_ports and ok(core, attrs.evolve(policy, spare_ports=0)):
        suggestions.append("ask for fewer spare hotplug ports")
    if others:
        facts.append(f"{len(others)} other group(s) of devices fit once these are resolved")
    return Unsatisfiable(conflicts, facts=facts, suggestions=suggestions)


def _gave_up(topology: Topology, policy: Policy, units: Sequence[Unit], reason: str) -> Unsatisfiable:
    """The error of a search that gave up: ``reason``, with the budgets and what no layout can change."""
    facts = _describe_budget(topology, policy) + _context_reasons(topology, policy, units)
    conflicts, suggestions = [reason], ["split the request into smaller ones, or pin some devices' addresses"]
    io_space = _io_space_short(topology, units)
    if io_space is not None:
        conflicts.insert(0, io_space[0])
        suggestions.insert(0, io_space[1])
    return Unsatisfiable(conflicts, facts=facts, suggestions=suggestions)


def _io_space_short(topology: Topology, units: Sequence[Unit]) -> tuple[str, str] | None:
    """Why no arrangement can fit the IO at all, and what would help (``None``: it may fit).

    Either the bridges already placed need more windows than the firmware
    has, or the devices' IO BARs need more bytes than it has: the firmware
    gives bridges 4 KiB windows and the root buses' IO BARs some bytes beside
    them from one aperture, and the IO BARs a device has wherever it goes
    (behind a PCIe port legacy virtio has none) can never take less.
    """
    fw = topology.firmware_model
    budget = topology.machine.io_window_budget(acpi=topology.acpi, firmware=topology.firmware)
    spec = None if fw is None else fw.for_machine(topology.machine.name, topology.machine.root_model)
    if fw is None or budget is None or spec is None:
        return None
    acpi = "with ACPI" if topology.acpi else "without ACPI"
    used, now = io_windows_used(topology), topology.io_window_budget()
    if now is not None and topology.io_windows_short():
        names = ", ".join(repr(topology.controller(i).name) for i in sorted(topology.io_windows()))
        return (
            f"the bridges and ports already there need {used} IO windows of 4 KiB ({names}), but "
            f"{fw.name} on {topology.machine.name} {acpi} has room for {now}",
            "declare fewer bridges or ports that the firmware gives IO windows",
        )
    if spec.root_io is None:
        return None
    pcie = topology.machine.pcie
    placed = sum(topology.io_bar_size(d) for d in topology.devices if d.address is not None)
    new = [d for u in units for d in u.devices if topology.io_bar_size(d, behind_pcie_port=pcie)]
    need = placed + sum(topology.io_bar_size(d, behind_pcie_port=pcie) for d in new)
    room = budget * IO_WINDOW + spec.root_io
    if need <= room:
        return None
    return (
        f"the IO BARs of the devices need {need} bytes of IO space ({len(new)} new devices have one), but "
        f"{fw.name} on {topology.machine.name} {acpi} has room for {room} ({budget} IO windows of 4 KiB "
        f"and {spec.root_io} bytes on the root bus)",
        "use device kinds without IO BARs (modern virtio, e1000e behind a PCIe port) for some",
    )


def _names(cls: DemandClass) -> str:
    n = len(cls.units)
    head = ", ".join(repr(u.name) for u in cls.units[:3])
    return head + (f" and {n - 3} more" if n > 3 else "")


def _relax(cls: DemandClass, change: Callable[[Unit], Unit]) -> DemandClass:
    return DemandClass(cls.key, tuple(change(u) for u in cls.units))


def _max_fitting(cls: DemandClass, rest: Sequence[DemandClass], ok: Callable[[Sequence[DemandClass]], bool]) -> int:
    lo, hi = 0, len(cls.units)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if ok([*rest, DemandClass(cls.key, cls.units[:mid])]):
            lo = mid
        else:
            hi = mid - 1
    return lo


def _context_reasons(topology: Topology, policy: Policy, units: Sequence[Unit]) -> list[str]:
    """Why each class of units cannot go to each place it could go, one line per reason."""
    try:
        problem = formulate(topology, policy, units)
    except PcitopoError as exc:
        return [str(exc)]
    reasons: list[str] = []
    for cls in problem.classes:
        # every context the class may go to by its NUMA node, those where it is impossible too (the model drops
        # them from its candidates): why it cannot go there is a reason to give
        candidates = class_contexts(cls, problem.contexts)
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
            cap = ctx.own_range if ctx.own_range is not None else problem.bus_region
            d = decide(ctx, counts, policy, bus_cap=cap)
            if not d.feasible and d.reason and d.reason not in reasons:
                reasons.append(d.reason)
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
