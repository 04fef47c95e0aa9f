"""The solver's entry point: :func:`solve`, in steps.

1. the pinned part is checked: a rule QEMU enforces refuses the request; a
   guest-visibility rule QEMU does not enforce (function-zero, port-slot) is
   kept with a warning, or refused with ``strict=True``;
2. user-declared controllers without an address get one, first fit, with
   whatever they need to plug in (a root port for a switch's upstream port or a
   pcie-to-pci-bridge);
3. devices become units and demand classes (:mod:`.model`); free positions of
   the existing topology that meet every need of a unit at no cost are filled;
4. a backend (:mod:`.backends`) places the rest: the model's CSP searched by
   python-constraint2 (:mod:`.search`) and laid out (:mod:`._layout`,
   :mod:`._realize`), or libvirt's own placement reproduced; a realised plan
   whose bridge windows and reservations overflow the firmware's 32-bit MMIO
   hole or 64-bit window is no solution, and the search goes on to the next;
5. the plan is validated with the same rules as :func:`pcitopo.validate`, and
   the soft constraints are scored.

>>> from pcitopo.devices import Device
>>> from pcitopo.topology import Topology
>>> t = Topology.build("q35", devices=[Device("net0", "virtio-net"), Device("disk0", "virtio-blk")])
>>> plan = solve(t)
>>> {k: str(v) for k, v in plan.assigned.items()}
{'net0': '0000:01:00.0', 'disk0': '0000:02:00.0'}
>>> [(c.model, str(c.address)) for c in plan.added]
[('pcie-root-port', '0000:00:01.0'), ('pcie-root-port', '0000:00:01.1'), ('pcie-root-port', '0000:00:01.2')]
>>> plan.cost, plan.status.value
(3, 'optimal')
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence
from typing import Literal

import attrs

from pcitopo.address import PciAddress
from pcitopo.devices import Controller, Device, HotplugNeed
from pcitopo.errors import InternalError, InvalidTopology, Unsatisfiable
from pcitopo.legality import identity
from pcitopo.legality.catalog import Connect
from pcitopo.policy.evaluate import SoftResult, soft_results, vbe_needs_root_bus, with_effective_needs
from pcitopo.policy.policy import Policy
from pcitopo.solver import backends
from pcitopo.solver._realize import unit_functions
from pcitopo.solver.model import (
    Pool,
    Unit,
    build_units,
    free_pools,
    io_windows_used,
    reachable_nodes,
    root_has_fixed_slot,
    unit_fits_pool,
)
from pcitopo.solver.plan import Plan, Status
from pcitopo.topology import IO_WINDOW, Topology
from pcitopo.violation import Violation

__all__ = ["solve"]

Pooling = Literal["lax", "free-only", "spares-taken", "numa-blind", "hotplug-blind", "ports-kept", "packed"]
"""How units are put in the free slots of existing buses before the search (:func:`_fill_pools`):

* ``lax``: where they cost nothing of hotplug and NUMA;
* ``free-only``: where they cost nothing at all;
* ``spares-taken``: as ``free-only``, but in empty hot-pluggable ports too, each a spare port less (a new port for
  the unit may cost more);
* ``numa-blind``: as ``lax``, whatever NUMA node they prefer (missing it where the bus is another node's), and those
  with none on any node's bus too;
* ``hotplug-blind``: as ``lax``, units that prefer hotplug on slots without it too, missing it (the model may have
  nothing better for them: a slot on their NUMA node, say);
* ``ports-kept``: as ``lax``, leaving empty ports empty (a new bridge tree or switch may take one instead of a root
  port of its own);
* ``packed``: as ``free-only``, units that need no hotplug sharing a slot as its functions, where the policy packs
  them so."""
POOLINGS: tuple[Pooling, ...] = (
    "lax",
    "free-only",
    "spares-taken",
    "numa-blind",
    "hotplug-blind",
    "ports-kept",
    "packed",
)


def __dir__() -> list[str]:
    return __all__


def solve(topology: Topology, policy: Policy | str | None = None, *, strict: bool = False) -> Plan:
    """Place every unaddressed device of ``topology`` by ``policy`` (default ``hotplug``).

    Adds the controllers needed, never moves an addressed device or controller,
    and returns a frozen :class:`~pcitopo.solver.plan.Plan` that has passed
    validation. Raises :class:`~pcitopo.errors.Unsatisfiable` when no plan
    meets every hard requirement, and :class:`~pcitopo.errors.InvalidTopology`
    when the pinned part already breaks a rule QEMU enforces (any rule with
    ``strict=True``).
    """
    if policy is None:
        policy = Policy.named("hotplug")
    elif isinstance(policy, str):
        policy = Policy.named(policy)
    tolerated = _check_pins(topology, strict=strict)
    _check_mmio_floor(topology)
    request, chosen = topology, policy
    # the soft results of each plan the search scored, by the plan's id (the plan kept so the id stays its own):
    # the chosen one is reported without scoring it again
    scored: dict[int, tuple[Topology, Topology, tuple[SoftResult, ...]]] = {}
    # the first realised plan refused for breaking a firmware budget (MMIO or IO windows), with what it broke
    short: list[tuple[Topology, list[Violation]]] = []
    # whether a realised plan was refused for a layout QEMU crashes on: the model does not know that rule, and
    # another layout of the same decisions (the device on another bus of its tree) may avoid it, so the search's
    # proof no longer covers every plan
    crashed: list[bool] = []

    def score(result: Topology) -> int | None:
        broken = _budget_breaks(result)
        if broken:
            # the windows and reservations of this layout overflow the 32-bit hole, the 64-bit window or the
            # firmware's IO windows: no solution, the search moves on to the next-best plan (fewer ports, devices
            # on the root bus)
            if not short:
                short.append((result, broken))
            if not crashed and any(v.rule == "firmware-crash" for v in broken):
                crashed.append(True)
            return None
        named = _named(request, result, chosen)
        soft = soft_results(request, named, chosen)
        scored[id(result)] = (result, named, soft)
        return sum(s.cost for s in soft)

    backend = backends.backend_for(policy, score)
    if isinstance(backend, backends.LibvirtBackend):
        placement = backend.place(topology, policy, ())
        return _finish(topology, placement, policy, tolerated)
    placed = _place_pinned_controllers(topology)
    placed = _join_placed_groups(placed)
    all_units = build_units(placed, policy)
    # the free slots of existing buses are not in the model: units are put there first, each where it costs
    # nothing of hotplug and NUMA. Where that differs from putting there only units that cost nothing at all (the
    # policy may prefer them integrated, or hotplug off where they sit), or from putting there units that prefer
    # another NUMA node too (the node missed may cost less than what the model has for them), or units that prefer
    # hotplug on slots without it (likewise), or, of those that cost nothing else, units in empty hot-pluggable ports
    # (a spare port less may cost less than a new port), each is searched and the cheapest plan kept (the first of a
    # tie)
    pools = free_pools(placed)
    variants: list[tuple[Pooling, Topology, tuple[Unit, ...]]] = []
    for pooling in POOLINGS:
        pooled, rest = _fill_pools(placed, pools, all_units, policy, pooling)
        if not any(pooled.devices == other.devices for _, other, _ in variants):
            variants.append((pooling, pooled, rest))
    best: Plan | None = None
    refused: tuple[Topology, tuple[Unit, ...], Unsatisfiable, list[tuple[Topology, list[Violation]]]] | None = None
    for pooling, pooled, rest in variants:
        short.clear()
        crashed.clear()
        try:
            placement, units, balance_io = _place_or_retry(
                backend, placed, policy, all_units, pooled, rest, pooling=pooling
            )
        except Unsatisfiable as caught:
            if refused is None or not refused[1]:
                refused = pooled, rest, caught, list(short)  # explained with units left to name, where any are
            continue
        video = _primary_video_unit(topology, policy, units)
        if video is not None:
            placement = _primary_video_on_root(
                placed, policy, units, video, backend, placement, balance_io=balance_io, pooling=pooling
            )
        if crashed and placement.status is Status.OPTIMAL:
            placement = attrs.evolve(placement, status=Status.FEASIBLE, bound=None)
        plan = _finish(topology, placement, policy, tolerated, scored)
        if best is None or plan.cost < best.cost:
            best = plan
    if best is not None:
        if best.cost and pools and (best.status is Status.OPTIMAL or best.bound is not None):
            # the search proved the plan optimal (or bounded the cost) among those that leave the free slots of
            # existing buses as the pooling left them, not among those that put other units there, or leave a slot
            # a unit took empty (an empty hot-pluggable port is a spare one): the exhaustive enumerator finds such
            # plans, cheaper (tests/property/test_optimality.py). No bound is known; a plan that costs nothing is
            # proven all the same
            return attrs.evolve(best, status=Status.FEASIBLE, bound=None)
        return best
    assert refused is not None
    pooled, rest, failed, short_first = refused
    gave_up = isinstance(failed, backends.GaveUp)
    if short_first:
        # every plan the search realised broke a firmware budget (or the search gave up after refusing them)
        raise _budget_unsatisfiable(*short_first[0], gave_up=gave_up) from None
    from pcitopo.solver.explain import explain

    raise explain(
        pooled, policy, rest, feasible=backends.feasible, gave_up=failed.conflicts[0] if gave_up else None
    ) from None


def _place_or_retry(
    backend: backends.Backend,
    placed: Topology,
    policy: Policy,
    units: tuple[Unit, ...],
    pooled: Topology,
    rest: Sequence[Unit],
    *,
    pooling: Pooling = "lax",
) -> tuple[backends.Placement, tuple[Unit, ...], bool]:
    """The placement of ``rest`` in ``pooled`` (``units`` in ``placed``, the free pools filled), the units it placed
    and whether it dealt IO BARs out balanced; or the last search's :class:`~pcitopo.errors.Unsatisfiable`.

    Each retry runs only where the search before it found no plan, so that every plan found without it stays as
    it was: with IO BARs balanced between the pci-bridges where the firmware has an IO budget and a conventional
    root is there to balance; then, when the search gave up, the smaller models of :func:`_relaxations` (the
    NUMA preferences of the IO-BAR units dropped, then all of them), the plan of least cost under the request's
    full objective kept (the first on a tie); then, where the firmware has an IO budget and the search found
    that no plan exists, without the hotplug preferences of IO-BAR units (:func:`_io_hotplug_preferences_dropped`).
    The smaller models' free pools are filled as ``pooled``'s were (``pooling``, see :func:`_fill_pools`).
    """
    balance_io = False
    try:
        return _place(backend, pooled, policy, rest), units, balance_io
    except Unsatisfiable as caught:
        failed = caught
    if placed.io_window_budget() is not None and _has_conventional_root(placed):
        # no plan with the layout's own deal of IO BARs (largest first): searched again with them dealt out
        # balanced between the pci-bridges (_layout.Context.balance_io), which a mix near the IO budget may need
        balance_io = True
        try:
            return _place(backend, pooled, policy, rest, balance_io=True), units, balance_io
        except Unsatisfiable as caught:
            failed = caught
    gave_up = isinstance(failed, backends.GaveUp)
    if gave_up:
        best: tuple[backends.Placement, tuple[Unit, ...]] | None = None
        for relaxed, limit in _relaxations(units):
            placement = _place_relaxed(backend, placed, policy, relaxed, limit, pooling=pooling)
            if placement is not None and (best is None or (placement.model_cost or 0) < (best[0].model_cost or 0)):
                best = placement, relaxed
        if best is not None:
            return best[0], best[1], balance_io
    if placed.io_window_budget() is not None and not gave_up:
        # only where the model was searched to the end: after a give-up the smaller models give up too (a 88-device
        # request under numa, whose preferred nodes are required, took 110 s to be refused instead of 24)
        for pcie_only in (True, False):
            freed = _io_hotplug_preferences_dropped(units, pcie_only=pcie_only)
            placement = (
                None
                if freed is None
                else _place_relaxed(backend, placed, policy, freed, RELAXED_NODE_LIMIT, pooling=pooling)
            )
            if freed is not None and placement is not None:
                return placement, freed, balance_io
    raise failed


def _has_conventional_root(topology: Topology) -> bool:
    """Whether a conventional root bus is (or may be added) there, the only kind whose IO BARs
    :attr:`~pcitopo.solver._layout.Context.balance_io` deals out (pc's ``pci.0``, a ``pci-expander-bus``)."""
    return topology.model(0).name != "pcie-root" or any(c.model == "pci-expander-bus" for c in topology.controllers)


# -- when the search gives up: a smaller model whose plans are the request's too -------------


RELAXED_NODE_LIMIT = 500
"""Partial assignments the search of :func:`_io_numa_preferences_dropped`'s model checks. Its plan is compared
with the plan without any preference and is never claimed optimal; each solution it finds is improved by local
search, every move realised and scored (some 50 ms a move under ``minimal``): on a generated q35 request of 115
devices under OVMF whose own search gave up, 300 nodes found the plan 5,000 did (``hotplug``: 5 s against 20 s;
``minimal``: 27 s against some 130 s, most of it the local search from the first plan). The searches of
:func:`_io_hotplug_preferences_dropped`'s models check as many at most."""


def _relaxations(units: Sequence[Unit]) -> list[tuple[tuple[Unit, ...], int | None]]:
    """The smaller models searched when the request's own gave up, each a model whose plans are the request's
    too, with its node limit (``None``: the search's own): the preferred NUMA nodes of the units with IO BARs
    dropped (:func:`_io_numa_preferences_dropped`), then every preferred node dropped
    (:func:`_numa_preferences_dropped`)."""
    rungs: list[tuple[tuple[Unit, ...], int | None]] = []
    io_dropped = _io_numa_preferences_dropped(units)
    if io_dropped is not None:
        rungs.append((io_dropped, RELAXED_NODE_LIMIT))
    all_dropped = _numa_preferences_dropped(units)
    if all_dropped is not None:
        rungs.append((all_dropped, None))
    return rungs


def _io_numa_preferences_dropped(units: Sequence[Unit]) -> tuple[Unit, ...] | None:
    """``units`` with the preferred NUMA node of every unit with an IO BAR dropped (``None``: no such unit prefers
    one, or no unit without one does, when :func:`_numa_preferences_dropped` is the same model).

    Under a firmware with few IO windows (OVMF's nine) each expander bus that
    takes an IO BAR costs windows, known only once its whole scope is set:
    the search gives up refuting such assignments at the leaves. Without the
    IO-BAR units' preferences those units need no expander bus of their
    node, while the other units keep theirs and may still meet them.
    """
    if not any(u.has_io and _prefers_node(u) for u in units):
        return None
    if not any(not u.has_io and _prefers_node(u) for u in units):
        return None
    return tuple(attrs.evolve(u, numa_node=None) if u.has_io and _prefers_node(u) else u for u in units)


def _prefers_node(unit: Unit) -> bool:
    """Whether ``unit`` names a NUMA node it only prefers (one a smaller model may drop)."""
    return unit.numa_node is not None and not unit.numa_strict


def _numa_preferences_dropped(units: Sequence[Unit]) -> tuple[Unit, ...] | None:
    """``units`` with every NUMA node that is only preferred dropped (``None``: no unit prefers one).

    A preferred node splits each demand class by node and adds a context per
    node: a model of a few hundred variables, which the search may give up on
    before it finds any plan (113 devices on four nodes under OVMF, whose few
    IO windows refute most assignments only once realised). Without the
    preferences the classes merge and the expander buses are not offered; a
    unit may still go everywhere it could go (a preferred node's unit goes to
    its own node, the node-less contexts or the other nodes), so every plan
    of the smaller model is a plan of the request, scored with its
    preferences by :func:`pcitopo.policy.evaluate.soft_results`.
    """
    if not any(_prefers_node(u) for u in units):
        return None
    return tuple(attrs.evolve(u, numa_node=None) if _prefers_node(u) else u for u in units)


def _io_hotplug_preferences_dropped(units: Sequence[Unit], *, pcie_only: bool) -> tuple[Unit, ...] | None:
    """``units`` with the hotplug preference of every one with an IO BAR dropped, PCI Express ones only with
    ``pcie_only`` (``None``: no such unit, or none beyond the PCI Express ones without ``pcie_only``).

    The model integrates units on the root bus (which needs no IO window) in a fixed order: those with no
    hotplug need first, those preferring hotplug last, each a hotplug miss. Where the firmware has few IO
    windows (OVMF's 9 on q35) a plan may need the IO-BAR units preferring hotplug integrated rather than IO-less
    units with no need: each such unit left on a root port takes a window of its own. The model's order cannot
    put them there, so it refused requests whose plans other policies find and this one accepts (issue 9).
    Without the preference such a unit joins those with no need, IO-BAR units first, and may still go everywhere
    it could go, so every plan of the smaller model is a plan of the request, scored with its preferences by
    :func:`pcitopo.policy.evaluate.soft_results`. The PCI Express units are dropped first: a context's layout is
    chosen by the units' own needs (``_layout._decide_pcie``), so the fewer needs dropped, the closer that
    choice stays to the score, and conventional units have moves of their own to the root bus (``pack_io``).
    """

    def drops(u: Unit) -> bool:
        return u.has_io and u.hotplug is HotplugNeed.PREFERRED and (not pcie_only or u.connect is Connect.PCIE_DEVICE)

    if not any(drops(u) for u in units):
        return None
    if not pcie_only and all(u.connect is Connect.PCIE_DEVICE for u in units if drops(u)):
        return None  # the same model as with pcie_only, searched already
    return tuple(attrs.evolve(u, hotplug=HotplugNeed.ANY) if drops(u) else u for u in units)


def _place_relaxed(
    backend: backends.Backend,
    placed: Topology,
    policy: Policy,
    units: tuple[Unit, ...],
    limit: int | None = None,
    *,
    pooling: Pooling = "lax",
) -> backends.Placement | None:
    """The placement of a smaller model (``units`` with some preferences dropped, see :func:`_place_or_retry`),
    never claimed optimal: the request's own model was not searched to the end, or had no plan (``None``: no
    plan there either; ``limit``: the search's node limit when lower than its own)."""
    pooled, rest = _fill_pools(placed, free_pools(placed), units, policy, pooling)
    try:
        placement = _place(backend, pooled, policy, rest, limit=limit)
    except Unsatisfiable:
        return None
    return attrs.evolve(placement, status=Status.FEASIBLE, bound=None)


# -- the primary-video term: one binary choice, searched both ways ---------------------------


def _primary_video_unit(request: Topology, policy: Policy, units: Sequence[Unit]) -> Unit | None:
    """The unit of the primary video when the ``primary-video`` term can cost something and integrating it is open."""
    if not policy.weights["primary-video"]:
        return None
    video = vbe_needs_root_bus(request)
    if video is None:
        return None
    unit = next((u for u in units if any(d.id == video.id for d in u.devices)), None)
    if unit is None or unit.integrated_required or not unit.can_integrate:
        return None  # placed with its group already, already on bus 0, or never there
    if unit.hotplug is HotplugNeed.FORBIDDEN and not root_has_fixed_slot(request):
        return None  # must not be hot-pluggable, and every slot of bus 0 is
    return unit


def _primary_video_on_root(
    placed: Topology,
    policy: Policy,
    units: Sequence[Unit],
    video: Unit,
    backend: backends.Backend,
    free: backends.Placement,
    *,
    balance_io: bool = False,
    pooling: Pooling = "lax",
) -> backends.Placement:
    """The better of ``free`` (the search with the video anywhere) and the search with it integrated on bus 0.

    The ``primary-video`` term is one binary choice (the primary video on bus 0
    or not) that the model does not express per unit, so the solver searches
    both sides: the model with the video's unit required on bus 0 (every
    completion there, where the term is met), and the model as it is, whose
    exact objective (the realised plan's score) counts the term wherever the
    video lands. The cheaper wins, the integrated one on a tie; it is proven
    optimal when both searches are.

    When the free search is proven and already put the video first of what
    it placed on bus 0, the forced search is not run: its completions are a
    subset of the free search's that holds the free optimum, so it can only
    tie, and its tie would put the video there too (the forced unit takes
    the first free slot). The forced search fills the free pools as the free
    one's were (``pooling``, see :func:`_fill_pools`).
    """
    if free.status is Status.OPTIMAL and _first_on_main_root(placed, free.topology, video):
        return free
    forced = [attrs.evolve(u, integrated_required=True) if u is video else u for u in units]
    pooled, rest = _fill_pools(placed, free_pools(placed), tuple(forced), policy, pooling)
    try:
        rooted = _place(backend, pooled, policy, rest, balance_io=balance_io)
    except Unsatisfiable:
        return free  # no completion puts it on bus 0
    return _cheaper(rooted, free)


def _first_on_main_root(request: Topology, result: Topology, unit: Unit) -> bool:
    """Whether ``result`` has ``unit`` on the main root bus (bus 0), before everything else it added there."""
    ids = {d.id for d in unit.devices}
    pinned = {d.id for d in request.devices if d.address is not None}
    known = {c.index for c in request.controllers}
    own = [d.address for d in result.devices if d.id in ids]
    if not own or any(a is None or a.bus != 0 for a in own):
        return False
    others = [d.address for d in result.devices if d.id not in ids and d.id not in pinned]
    others += [c.address for c in result.controllers if c.index not in known]
    first = min((a.slot, a.function) for a in own if a is not None)
    return all((a.slot, a.function) > first for a in others if a is not None and a.bus == 0)


def _cheaper(first: backends.Placement, second: backends.Placement) -> backends.Placement:
    """The cheaper of two searches over two sides of one choice (``first`` on a tie); optimal when both are."""
    nodes = first.stats.nodes + second.stats.nodes
    bound = None if first.bound is None or second.bound is None else min(first.bound, second.bound)
    proven = first.status is Status.OPTIMAL and second.status is Status.OPTIMAL
    best = first if (first.model_cost or 0) <= (second.model_cost or 0) else second
    least = (
        None if first.least_model is None or second.least_model is None else min(first.least_model, second.least_model)
    )
    return attrs.evolve(
        best,
        status=Status.OPTIMAL if proven else Status.FEASIBLE,
        stats=attrs.evolve(best.stats, nodes=nodes),
        bound=bound,
        least_model=least,
    )


def _place(
    backend: backends.Backend,
    pooled: Topology,
    policy: Policy,
    rest: Sequence[Unit],
    *,
    balance_io: bool = False,
    limit: int | None = None,
) -> backends.Placement:
    """The backend's placement; under an ordered policy, also searched without bridge trees under a
    dmi-to-pci-bridge when the plan has one (``balance_io``: see :attr:`~pcitopo.solver._layout.Context.balance_io`).

    A context's local choice of layout (_layout._decide_pcie) weighs controllers and hotplug, not the
    order term: a tree under the dmi-to-pci-bridge saves a controller, but the guest numbers the
    dmi-to-pci-bridge's own bus first, so the devices on it come before every device of the tree.
    Both sides are searched and scored exactly; the cheaper wins.
    """
    first = backend.place(pooled, policy, rest, balance_io=balance_io, limit=limit)
    if not (policy.ordered and policy.weights["order"]):
        return first
    best = first
    if _trees_under_dmi(pooled, first.topology):
        with contextlib.suppress(Unsatisfiable):
            best = _cheaper(
                first, backend.place(pooled, policy, rest, trees_via_dmi=False, balance_io=balance_io, limit=limit)
            )
    if _names_out_of_order(pooled, best.topology, policy):
        # the NICs' guest names break their order: also searched with a node-less expander bus, below which every
        # NIC gets its path name (model.build_contexts), and without trees under a dmi-to-pci-bridge
        with contextlib.suppress(Unsatisfiable):
            best = _cheaper(
                best,
                backend.place(
                    pooled, policy, rest, trees_via_dmi=False, names_expander=True, balance_io=balance_io, limit=limit
                ),
            )
    return best


def _names_out_of_order(request: Topology, result: Topology, policy: Policy) -> bool:
    """Whether the NICs of ``result`` on pc or q35 with ACPI, one of them placed by the plan, get guest names out of
    NIC order."""
    from pcitopo.naming import names_in_order, nic_order

    if not (result.acpi and result.machine.name in ("pc", "q35")):
        return False
    nics = nic_order(result)
    pending = {d.id for d in request.devices if d.address is None}
    if len(nics) < 2 or not any(d.id in pending for d in nics):
        return False
    return not names_in_order(_named(request, result, policy), nics)[0]


def _trees_under_dmi(request: Topology, result: Topology) -> bool:
    """Whether ``result`` adds a pci-bridge under a dmi-to-pci-bridge."""
    dmi = {c.index for c in result.controllers if c.model == "dmi-to-pci-bridge"}
    known = {c.index for c in request.controllers}
    return any(
        c.model == "pci-bridge" and c.index not in known and c.address is not None and c.address.bus in dmi
        for c in result.controllers
    )


# -- step 1: the pinned part ---------------------------------------------------------------


def _validate(topology: Topology) -> tuple[Violation, ...]:
    from pcitopo.legality import rules

    return rules.validate(topology)


def _check_pins(topology: Topology, *, strict: bool) -> tuple[Violation, ...]:
    """Refuse a pinned part that breaks a rule QEMU enforces; return the guest-visibility ones it keeps."""
    from pcitopo.legality.rules import RULE_ENFORCEMENT

    violations = _validate(topology)
    refused = [v for v in violations if strict or RULE_ENFORCEMENT.get(v.rule) != "guest-visibility"]
    if refused:
        raise InvalidTopology(violations)
    return violations


# -- step 2: declared controllers without an address ------------------------------------


def _place_pinned_controllers(topology: Topology) -> Topology:
    """Give user-declared controllers without an address one, first fit, and their target values.

    A controller that plugs into a PCI Express port (a switch's upstream port,
    a pcie-to-pci-bridge) and finds none free gets a new root port.
    """
    pending = [c for c in topology.controllers if c.address is None and c.index != 0]
    if not pending:
        return topology
    current = topology
    for c in sorted(pending, key=lambda c: c.index):
        model = current.model(c)
        if model.root:  # pseries host bridges have no address
            filled = identity.fill(current, c, None)
        else:
            positions = current.free_positions(c)
            if not positions:
                current, positions = _add_root_port_for(current, c)
            if not positions:
                raise Unsatisfiable(
                    [f"controller {c.name!r} ({c.model}) needs a slot, and no bus that takes it has a free one"],
                    suggestions=[f"remove {c.name!r} or give it an address"],
                )
            filled = identity.fill(current, c, positions[0])
        controllers = _multifunction_for([filled if x.index == c.index else x for x in current.controllers], filled)
        current = current.replace(controllers=controllers)
    return current


def _multifunction_for(controllers: list[Controller], packed: Controller) -> list[Controller]:
    """A root port packed into a slot with others: multifunction on the slot's function 0."""
    if packed.address is None or packed.address.function == 0:
        return controllers
    slot = packed.address.slot_address
    return [
        attrs.evolve(x, multifunction=True) if x.address == slot and x.multifunction is None else x for x in controllers
    ]


def _add_root_port_for(topology: Topology, c: Controller) -> tuple[Topology, tuple[PciAddress, ...]]:
    """Add a root port on the main root bus for a controller that plugs into one; its free positions then."""
    machine = topology.machine
    if not machine.offers("pcie-root-port"):
        return topology, ()
    root_port_slots = topology.free_positions("pcie-root-port")
    main = [a for a in root_port_slots if a.bus == 0]
    if not main:
        return topology, ()
    used = {x.index for x in topology.controllers}
    index = next(i for i in range(1, 256) if i not in used and i > 0)
    port = identity.fill(topology, Controller(index, "pcie-root-port"), main[0])
    grown = topology.replace(controllers=_multifunction_for([*topology.controllers, port], port))
    positions = tuple(a for a in grown.free_positions(c) if a.bus == index)
    if not positions:
        return topology, ()
    return grown, positions


def _join_placed_groups(topology: Topology) -> Topology:
    """Put unplaced members of a slot, bus or switch group whose other members are placed next to them.

    A slot group takes a free function of its slot, a bus group a free slot of
    its bus, a switch group an empty downstream port of its switch (or a new
    one on a free port of that switch). When there is no room, the error says
    which group, where it is and why.
    """
    current = topology
    grouped = [
        d
        for d in topology.devices
        if d.address is None
        and (d.needs.slot_group is not None or d.needs.bus_group is not None or d.needs.switch_group is not None)
    ]
    for d in grouped:
        for what in ("slot", "bus", "switch"):
            label = getattr(d.needs, f"{what}_group")
            if label is None:
                continue
            members = [
                x for x in current.devices if x.address is not None and getattr(x.needs, f"{what}_group") == label
            ]
            if not members:
                continue
            anchor = members[0].address
            assert anchor is not None
            found = _group_position(current, what, anchor, d)
            if found is None:
                raise Unsatisfiable(
                    [
                        f"device {d.id!r} belongs to {what} group {label!r}, whose other members are at {anchor}, "
                        f"and that {what} has no free position for it"
                    ],
                    suggestions=[f"free a position on that {what}, or take {d.id!r} out of the group"],
                )
            current, address = found
            devices = [x.placed_at(address) if x.id == d.id else x for x in current.devices]
            if what == "slot":
                devices = [
                    attrs.evolve(x, multifunction=True)
                    if x.address == address.slot_address and x.multifunction is None
                    else x
                    for x in devices
                ]
            current = current.replace(devices=devices)
            break
    return current


def _group_position(
    topology: Topology, what: str, anchor: PciAddress, device: Device
) -> tuple[Topology, PciAddress] | None:
    usage = topology.slot_usage()
    if what == "slot":
        used = usage.get((0, anchor.bus, anchor.slot), set())
        free = [f for f in range(8) if f not in used]
        return (topology, anchor.with_function(free[0])) if free else None
    if what == "bus":
        model = topology.model(anchor.bus)
        for slot in model.slot_range():
            if (0, anchor.bus, slot) not in usage and topology.placement_problem(
                anchor.bus, kind=topology.catalog.device(device.kind)
            ) is None:
                return topology, PciAddress(bus=anchor.bus, slot=slot)
        return None
    # switch: the upstream port above the member's downstream port
    port = topology.controller(anchor.bus)
    if port.model != "pcie-switch-downstream-port" or port.address is None:
        return None
    upstream = port.address.bus
    occupied = {x.address.bus for x in topology.devices if x.address is not None}
    occupied |= {c.address.bus for c in topology.controllers if c.address is not None}
    for c in topology.controllers:
        if (
            c.model == "pcie-switch-downstream-port"
            and c.address is not None
            and c.address.bus == upstream
            and c.index not in occupied
        ):
            return topology, PciAddress(bus=c.index, slot=0)
    slots = [s for s in topology.model(upstream).slot_range() if (0, upstream, s) not in usage]
    if not slots:
        return None
    used = {c.index for c in topology.controllers}
    index = next((i for i in range(1, 256) if i not in used), None)
    if index is None:
        return None
    new = identity.fill(
        topology, Controller(index, "pcie-switch-downstream-port"), PciAddress(bus=upstream, slot=slots[0])
    )
    grown = topology.replace(controllers=[*topology.controllers, new])
    return grown, PciAddress(bus=index, slot=0)


# -- step 3: free positions at no cost -------------------------------------------------


def _fill_pools(
    topology: Topology, pools: Sequence[Pool], units: tuple[Unit, ...], policy: Policy, pooling: Pooling = "lax"
) -> tuple[Topology, tuple[Unit, ...]]:
    """``units`` put in ``pools``, the free slots of ``topology``'s existing buses (:func:`free_pools`), where they
    fit (:func:`unit_fits_pool`) by ``pooling`` (:data:`Pooling`), and the rest."""
    if not pools:
        return topology, units
    budget = topology.io_window_budget()
    io_left = None if budget is None else budget - io_windows_used(topology)
    io_bytes = topology.io_bytes_by_bus()
    min_address = _ordered_floor(topology) if policy.ordered else {}
    reachable = reachable_nodes(topology)
    root_hotplug = any(topology.is_hotpluggable(0, slot) for slot in topology.model(0).slot_range())
    # a node missed costs nothing, or the variant that weighs missing it against the model's places for the unit
    free_numa = not policy.weights["numa"] or pooling == "numa-blind"
    free: dict[int, list[int]] = {i: list(p.slots) for i, p in enumerate(pools)}
    if pooling == "ports-kept":
        free = {i: [] if p.behind_port else slots for (i, slots), p in zip(free.items(), pools, strict=True)}
    packs = pooling == "packed" and policy.port_packing == "multifunction"
    # with packs: slots of the pools holding units that need no hotplug, by pool, and the functions they hold
    shared: dict[tuple[int, int], list[str]] = {}
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
        if u.switch_group is not None or u.bus_group is not None:
            left.append(u)  # a group is placed as one, by the search
            continue
        floors = [min_address[d.kind] for d in u.devices if d.kind in min_address]
        floor = max(floors) if floors else None

        def fits(pool: Pool, u: Unit = u, io_left: int | None = io_left) -> bool:
            if u.has_io and io_left is not None and _more_windows(topology, io_bytes, pool.bus, u.io_size) > io_left:
                return False
            return unit_fits_pool(
                u,
                pool,
                prefer_integrated=policy.prefer_integrated,
                hotplug_off_occupied=policy.hotplug_off_occupied,
                free_only=pooling in ("free-only", "spares-taken", "packed"),
                hotplug_anywhere=pooling == "hotplug-blind",
                spare_ports=policy.spare_ports > 0 and pooling != "spares-taken",
                root_hotplug=root_hotplug,
                numa_anywhere=(
                    u.numa_node is not None and not u.numa_strict and (u.numa_node not in reachable or free_numa)
                )
                or (u.numa_node is None and pooling == "numa-blind"),
            )

        if packs and _packable(u):
            # a slot already holding such a unit first: a function of it, not a slot of its own
            spot = next(
                (
                    (i, slot)
                    for (i, slot), ids in shared.items()
                    if len(ids) < 8
                    and (floor is None or PciAddress(bus=pools[i].bus, slot=slot, function=len(ids)) > floor)
                    and fits(pools[i])
                ),
                None,
            )
        for i, pool in enumerate(pools) if spot is None else ():
            if not free[i] or not fits(pool):
                continue
            above = [s for s in free[i] if floor is None or PciAddress(bus=pool.bus, slot=s) > floor]
            if above:
                spot = (i, above[0])
                break
        if spot is None:
            left.append(u)
            continue
        i, slot = spot
        pool = pools[i]
        if u.has_io:
            if io_left is not None:
                io_left -= _more_windows(topology, io_bytes, pool.bus, u.io_size)
            io_bytes[pool.bus] = io_bytes.get(pool.bus, 0) + u.io_size
        if (i, slot) in shared:
            ids = shared[(i, slot)]
            placements[u.devices[0].id] = PciAddress(bus=pool.bus, slot=slot, function=len(ids))
            multifunction.add(ids[0])
            ids.append(u.devices[0].id)
            continue
        free[i].remove(slot)
        if packs and _packable(u):
            shared[(i, slot)] = [u.devices[0].id]
        functions = unit_functions(u.devices)
        for f, d in zip(functions, u.devices, strict=True):
            placements[d.id] = PciAddress(bus=pool.bus, slot=slot, function=f)
        if len(u.devices) > 1:
            multifunction.add(u.devices[functions.index(0)].id)
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


def _packable(u: Unit) -> bool:
    """Whether a unit may share a pool's slot with others as one of its functions (``packed`` pooling): one device,
    no hotplug need, no function of its own asked for."""
    (device, *more) = u.devices
    return not more and u.hotplug is HotplugNeed.ANY and device.needs.function is None


def _more_windows(topology: Topology, io_bytes: Mapping[int, int], bus: int, size: int) -> int:
    """How many more 4 KiB windows a bridge needs for ``size`` more bytes of IO BAR.

    A bridge's window is its own bytes rounded up plus its children's windows,
    so the growth of one bus's rounding is the growth of the whole count. On a
    root or expander bus the bytes share the firmware's aperture with the
    windows: they cost windows once they pass the firmware's room for them.
    """

    def on_root(b: int) -> bool:
        return topology.model(b).root or topology.model(b).expander

    if on_root(bus):
        root = sum(n for b, n in io_bytes.items() if on_root(b))
        return topology.root_io_windows(root + size) - topology.root_io_windows(root)
    before = io_bytes.get(bus, 0)
    return -(-(before + size) // IO_WINDOW) - -(-before // IO_WINDOW)


def _ordered_floor(topology: Topology) -> dict[str, PciAddress]:
    floor: dict[str, PciAddress] = {}
    for d in topology.devices:
        if d.address is not None and (d.kind not in floor or d.address > floor[d.kind]):
            floor[d.kind] = d.address
    return floor


# -- step 5: check, report -------------------------------------------------------------------------


def _finish(
    request: Topology,
    placement: backends.Placement,
    policy: Policy,
    tolerated: Sequence[Violation],
    scored: Mapping[int, tuple[Topology, Topology, tuple[SoftResult, ...]]] | None = None,
) -> Plan:
    result = _size_mmio64(placement.topology)
    known = set(tolerated)
    # checked as evaluate checks it: the policy's needs (overrides included) on the devices the plan placed
    violations = [v for v in _validate(with_effective_needs(request, result, policy)) if v not in known]
    if violations and all(v.rule == "mmio-space" for v in violations):
        # libvirt's placement (the search refuses such plans): the devices fit the firmware's budgets on their
        # own (_check_mmio_floor), the bridges' windows do not
        raise _budget_unsatisfiable(result, violations)
    if violations and policy.libvirt:
        # libvirt places without looking at NUMA or hotplug needs, the IO budget, the machine's bus numbers or an
        # expander's bus range (libvirt 9.0 defines a q35 domain whose new root ports take the bus_nr of a
        # pcie-expander-bus: tests/integration/test_libvirt_differential.py): say what its choice breaks
        raise Unsatisfiable(
            [f"libvirt's placement breaks a requirement: {v}" for v in violations],
            suggestions=["use the hotplug, numa or minimal policy, which place by these requirements and budgets"],
        )
    if violations:
        raise InternalError("the solver produced a plan that breaks rules", violations)
    unplaced = [d.id for d in result.devices if d.address is None]
    if unplaced:
        raise InternalError(f"devices left without an address: {', '.join(unplaced)}")
    earlier = scored.get(id(result)) if scored else None
    if earlier is not None and earlier[0] is result:
        result, soft = earlier[1], earlier[2]  # named and scored when the search scored it
    else:
        result = _named(request, result, policy)
        soft = soft_results(request, result, policy)
    before = {c.index for c in request.controllers}
    added = tuple(c for c in result.controllers if c.index not in before)
    cost = sum(s.cost for s in soft)
    status = placement.status
    bound = placement.bound
    if status is Status.OPTIMAL and placement.model_cost != cost:
        # the model's objective and the realised plan's score disagree: the proof does not hold for this plan
        status = Status.FEASIBLE
        bound = None
    if status is Status.OPTIMAL and any(s.name == "order" and s.weight for s in soft):
        # the order terms are scored on the realised plan, but the layout's local choices (which bridge holds
        # which devices, the NICs' name kinds) do not weigh them, and the model does not bound them: another
        # layout of an assignment the search scored may keep an order its realised plan broke (the exhaustive
        # enumerator finds such plans, tests/property/test_optimality.py). Each such completion costs at least
        # its assignment's model bound, and every assignment the search did not score was pruned by that bound;
        # so the plan is proven only when no scored assignment's bound is below its cost
        least = placement.least_model
        if least is None or least < cost:
            status = Status.FEASIBLE
            bound = least
    warnings = tuple(f"{v} — kept because QEMU starts it; repair: {_repair(v)}" for v in tolerated)
    misses = tuple(
        (s.subject, _why_not_hotpluggable(result, s.subject))
        for s in soft
        if s.name == "hotplug" and not s.met and s.subject is not None
    )
    return Plan(
        request=request,
        topology=result,
        policy=policy,
        added=added,
        soft=soft,
        status=status,
        bound=cost if status is Status.OPTIMAL else bound,
        stats=placement.stats,
        warnings=warnings,
        not_hotpluggable=misses,
    )


# -- memory budgets (MMIO) ------------------------------------------------------------------


def _check_mmio_floor(topology: Topology) -> None:
    """Refuse a request whose devices alone (no bridge window, no reservation) exceed a firmware MMIO budget."""
    from pcitopo.legality.rules import mmio_violations

    violations = mmio_violations(topology, unplaced=True, knob_settable=True)
    if violations:
        raise Unsatisfiable(
            [v.message for v in violations],
            facts=_mmio_facts(topology, unplaced=True),
            suggestions=["pass fewer large-BAR devices, or give them less memory"],
        )


def _budget_breaks(result: Topology) -> list[Violation]:
    """The firmware budgets a realised plan breaks: MMIO (:func:`_mmio_breaks`), IO windows where the firmware
    counts them otherwise than the model's layouts (an expander bus's own IO BARs under OVMF), and layouts QEMU
    crashes on while the firmware sets up PCI (``firmware-crash``: an lsilogic beside a pci-bridge on a bus other
    than the main root bus under OVMF), which the search must plan around like a budget."""
    from pcitopo.legality.rules import crash_violations, io_violations

    if result.firmware_model is None:
        return []
    return _mmio_breaks(result) or io_violations(result) or crash_violations(result)


def _mmio_breaks(result: Topology) -> list[Violation]:
    """The ``mmio-space`` violations of a realised plan, its 64-bit window sized as :func:`_finish` sizes it."""
    from pcitopo.legality.rules import mmio_violations

    if result.firmware_model is None:
        return []
    return mmio_violations(_size_mmio64(result))


def _budget_unsatisfiable(result: Topology, violations: Sequence[Violation], *, gave_up: bool = False) -> Unsatisfiable:
    """The refusal of a request whose plans' bridge windows and reservations overflow a firmware budget.

    ``result`` is the cheapest such plan; ``gave_up``: the search stopped at its node limit, so cheaper
    plans that fit may exist and the conflict says so.
    """
    plan = "the cheapest plan found" if gave_up else "the plan"
    return Unsatisfiable(
        [
            *(["the search gave up before finding a plan within the firmware's budgets"] if gave_up else []),
            *(
                f"{plan} crashes QEMU under its firmware: {v.message}"
                if v.rule == "firmware-crash"
                else f"{plan}'s bridge windows and hotplug reservations break a firmware budget: {v.message}"
                for v in violations
            ),
        ],
        facts=_mmio_facts(_size_mmio64(result)),
        suggestions=[
            "pass fewer large-BAR devices, or ask for fewer hot-pluggable ports (the minimal policy)"
            if all(v.rule == "mmio-space" for v in violations)
            else "pass fewer devices with IO BARs, or ask for fewer hot-pluggable ports (the minimal policy)"
        ],
    )


def _mmio_facts(topology: Topology, *, unplaced: bool = False) -> list[str]:
    """The firmware's MMIO budgets and what the topology needs of them."""
    m = topology.mmio_with_unplaced if unplaced else topology.mmio
    fw = topology.firmware_model
    if m is None or fw is None:
        return []
    hole, window = topology.mmio_budgets()
    facts = [f"below 4 GiB: {m.below_4g >> 20} MiB needed" + (f" of a {hole >> 20} MiB hole" if hole else "")]
    above = f"above 4 GiB: {m.above_4g >> 20} MiB needed"
    if window is not None:
        above += f" of a window of at most {window >> 20} MiB under {fw.name}"
    return [*facts, above]


def _size_mmio64(topology: Topology) -> Topology:
    """The plan with the firmware's 64-bit window knob set when its devices need more than the default.

    Only a firmware with a knob (OVMF's ``opt/ovmf/X-PciMmio64Mb``) gets one, only
    for BARs larger than a hotplug reservation (reservations alone are dropped
    harmlessly), and never smaller than the request's own setting. Under the
    CPU the firmware was measured with it is at most the measured largest; under
    the host's CPU (more address bits, not known) it is what the BARs need.
    """
    from pcitopo.legality.rules import mmio64_setting

    fw, m = topology.firmware_model, topology.mmio
    spec = fw.for_machine(topology.machine.name, topology.machine.root_model) if fw is not None else None
    if fw is None or m is None or spec is None or not fw.mmio64_knob or spec.mmio64_window is None:
        return topology
    window = topology.mmio64_window() or 0
    if m.above_4g <= window or m.bars_64 <= fw.pref64_reserve:
        return topology
    wanted = mmio64_setting(m.above_4g)
    if spec.mmio64_max is not None and topology.phys_bits == fw.phys_bits:
        wanted = min(wanted, spec.mmio64_max)  # more would leave every BAR unmapped (measured); the rule says why
    return topology.replace(mmio64=max(wanted, topology.mmio64 or 0))


def _named(request: Topology, result: Topology, policy: Policy) -> Topology:
    """``result`` with the acpi-indexes the policy gives the NICs the plan places (``acpi_index``)."""
    if not policy.acpi_index:
        return result
    from pcitopo.naming import number_nics

    return number_nics(result, [d.id for d in request.devices if d.address is None])


def _repair(v: Violation) -> str:
    if v.rule == "function-zero":
        return f"move {', '.join(repr(d) for d in v.devices)} to function 0 of {v.address or 'its slot'}"
    if v.rule == "port-slot":
        return f"move {', '.join(repr(d) for d in v.devices)} to slot 0 behind its port"
    return "give the devices legal addresses"


def _why_not_hotpluggable(topology: Topology, device_id: str) -> str:
    d = next(x for x in topology.devices if x.id == device_id)
    if d.address is None:  # pragma: no cover - every device is placed
        return "not placed"
    if d.address.bus == 0:
        return f"it sits directly on {topology.bus_name(0)}, where nothing is hot-pluggable"
    return f"bus {topology.bus_name(d.address.bus)} is not hot-pluggable (slots, bus numbers or IO windows ran out)"
