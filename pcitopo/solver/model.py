"""The solver's model: units of demand, their classes, the contexts that can host them, and the CSP.

Built from a topology and a policy by graph reasoning, before any search:
devices become *units* (one device, or the functions of one slot), units with
the same needs form *demand classes* (units of one class are interchangeable),
and the places new structure can grow (the main root bus, existing expander
buses, new expander buses per NUMA node, pseries host bridges) become
*contexts*. A :class:`Problem` then states, like a CPMpy model, the decision
variables at the level where they are interchangeable, the hard constraints
over them and one objective; it does not solve anything
(:mod:`pcitopo.solver.search` does, through a backend).

The decisions, per context:

* ``count[class, context]``: how many units of a class it hosts (only for
  classes with more than one candidate context; the others are constants);
* ``integrate[context]`` (PCIe roots that take integrated endpoints): how many
  endpoints beyond those that must be integrated sit directly on the root bus;
* ``bridges[context]`` (conventional roots): how many pci-bridges hang off it;
* ``spare[context]``: how many empty hotpluggable ports it adds.

Everything else (root ports and how they are packed, switches, bridge trees,
expander buses, bus numbers, IO windows) is a deterministic function of these
(:func:`pcitopo.solver._layout.decide`). That includes choices whose effect
stays inside one context, which ``decide`` makes by the policy's weights:
which units leave their category's position for a cheaper one (a
dmi-to-pci-bridge's slot, functions of a shared root port, a pci-bridge's
slot under a pxb, the functions of a multifunction slot for conventional
units past what the firmware's IO windows let bridges hold, IO-BAR units among
them), and which kind
of unit last-resort integration takes first. The exhaustive enumerator of the tests
(``tests/support/enumerate.py``) checks that this loses no optimum.
"""

from __future__ import annotations

import functools
import heapq
import itertools
import operator
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

import attrs

from pcitopo.address import PciAddress
from pcitopo.devices import Controller, Device, HotplugNeed, Needs
from pcitopo.errors import InvalidInput, Unsatisfiable
from pcitopo.legality.catalog import Connect, Integrated
from pcitopo.policy.evaluate import _needs_key, effective_needs
from pcitopo.policy.policy import Policy
from pcitopo.solver._layout import (
    BRIDGE_SLOTS,
    Context,
    Counts,
    Decision,
    RootKind,
    add_counts,
    add_units,
    decide,
    integrable,
    pcie_cost_floor,
    quick_decide,
    scale_counts,
)
from pcitopo.topology import Topology

__all__ = [
    "SPLIT_LIMIT",
    "Constraint",
    "ConstraintKind",
    "DemandClass",
    "Pool",
    "PortReuse",
    "Problem",
    "Reuse",
    "Unit",
    "Variable",
    "build_contexts",
    "build_units",
    "candidates",
    "classify",
    "context_root",
    "empty_ports",
    "formulate",
    "free_bridge_slots",
    "free_pools",
    "io_windows_used",
    "reachable_nodes",
    "root_has_fixed_slot",
    "spare_wanted",
    "unit_fits_pool",
]


def __dir__() -> list[str]:
    return __all__


@attrs.frozen
class Unit:
    """One device, or the devices that are the functions of one slot."""

    devices: tuple[Device, ...]
    connect: Connect
    hotplug: HotplugNeed
    numa_node: int | None
    numa_strict: bool
    integrated_required: bool
    can_integrate: bool
    io_size: int
    position: int
    """Index of the first device in definition order."""
    switch_group: str | None = None
    bus_group: str | None = None
    rank: tuple[float, int] = (0.0, 0)
    """Placement order: the order hint (or the definition index), then the definition index."""

    @property
    def name(self) -> str:
        return self.devices[0].id if len(self.devices) == 1 else "+".join(d.id for d in self.devices)

    @property
    def has_io(self) -> bool:
        return self.io_size > 0


@attrs.frozen
class DemandClass:
    """Units with the same needs, in definition order."""

    key: tuple[object, ...]
    units: tuple[Unit, ...]

    @property
    def sample(self) -> Unit:
        return self.units[0]

    def describe(self) -> str:
        u = self.sample
        n = len(self.units)
        what = "PCI Express" if u.connect is Connect.PCIE_DEVICE else "conventional PCI"
        parts = [f"{n} {what} device{'s' if n != 1 else ''}"]
        if u.hotplug is HotplugNeed.REQUIRED:
            parts.append("that must be hotpluggable")
        elif u.hotplug is HotplugNeed.FORBIDDEN:
            parts.append("that must not be hotpluggable")
        if u.numa_node is not None and u.numa_strict:
            parts.append(f"on NUMA node {u.numa_node}")
        if u.integrated_required:
            parts.append("integrated on the root bus")
        names = ", ".join(repr(x.name) for x in self.units[:3]) + (", ..." if n > 3 else "")
        return " ".join(parts) + f" ({names})"


_RANK = operator.attrgetter("rank")
"""A unit's placement order as a sort key: a C function, not a lambda called for each of hundreds of units."""


def build_units(topology: Topology, policy: Policy) -> tuple[Unit, ...]:
    """The unplaced devices as units, in definition order; slot groups joined."""
    pending = [(i, d) for i, d in enumerate(topology.devices) if d.address is None]
    groups: dict[str, list[tuple[int, Device]]] = {}
    order: list[tuple[int, str | None, Device | None]] = []
    for i, d in pending:
        group = d.needs.slot_group
        if group is None:
            order.append((i, None, d))
        else:
            if group not in groups:
                order.append((i, group, None))
            groups.setdefault(group, []).append((i, d))
    units: list[Unit] = []
    memo: dict[tuple[str, Needs], Needs] = {}
    shapes: dict[tuple[object, ...], Unit] = {}  # by kind, needs (as _needs_key), IO BAR and overrides
    overrides = policy.overrides
    for i, group, single in order:
        if single is not None:
            # most units are one device: their needs resolve the same way for the same kind, needs, IO BAR
            # and policy overrides (which match devices by id, so the ones that apply are part of the key)
            applying = tuple(j for j, o in enumerate(overrides) if o.applies_to(single)) if overrides else ()
            key = (single.kind, _needs_key(single.needs), single.io_bar, applying)  # see _needs_key
            shape = shapes.get(key)
            if shape is None:
                shape = _unit(topology, policy, [single], None, 0, memo)
                shapes[key] = shape
            hint = shape.rank[0] if single.needs.order is not None else float(i)
            units.append(
                Unit(
                    (single,),
                    shape.connect,
                    shape.hotplug,
                    shape.numa_node,
                    shape.numa_strict,
                    shape.integrated_required,
                    shape.can_integrate,
                    shape.io_size,
                    i,
                    shape.switch_group,
                    shape.bus_group,
                    (hint, i),
                )
            )
            continue
        members = [d for _, d in groups[group or ""]]
        units.append(_unit(topology, policy, members, group, i, memo))
    _check_groups(units)
    return tuple(units)


def _unit(
    topology: Topology,
    policy: Policy,
    members: list[Device],
    group: str | None,
    i: int,
    memo: dict[tuple[str, Needs], Needs],
) -> Unit:
    """One unit from its devices (one, or the functions of a slot group)."""
    pcie = topology.machine.pcie
    catalog = topology.catalog
    if len(members) > 8:
        raise InvalidInput(f"slot group {group!r}", f"has {len(members)} devices but a slot has only 8 functions")
    needs = [_needs(policy, d, memo) for d in members]
    functions = [n.function for n in needs]
    if any(f is not None for f in functions) and (
        None in functions or 0 not in functions or len(set(functions)) != len(functions)
    ):
        raise InvalidInput(
            f"slot group {group!r}",
            f"its devices ask for functions {', '.join('-' if f is None else str(f) for f in functions)}: "
            "each must ask for a different one, 0 among them, or none may ask",
        )
    kinds = [catalog.device(d.kind) for d in members]
    connects = {k.connect_on(pcie=pcie) for k in kinds}
    connect = Connect.PCIE_DEVICE if Connect.PCIE_DEVICE in connects else Connect.PCI_DEVICE
    hot = _strongest_hotplug([n.hotplug for n in needs], [d.id for d in members])
    nodes = {n.numa_node for n in needs if n.numa_node is not None}
    if len(nodes) > 1:
        raise InvalidInput(f"slot group {group!r}", f"its devices ask for different NUMA nodes {sorted(nodes)}")
    node = nodes.pop() if nodes else None
    strict = any(n.numa_strict for n in needs if n.numa_node is not None) or (policy.numa and node is not None)
    integrated_required = any(
        n.integrated or k.integrated is Integrated.REQUIRED for n, k in zip(needs, kinds, strict=True)
    )
    can_integrate = all(k.integrated is not Integrated.FORBIDDEN for k in kinds)
    behind_port = connect is Connect.PCIE_DEVICE
    io = sum(topology.io_bar_size(d, behind_pcie_port=behind_port) for d in members)
    switch_groups = {n.switch_group for n in needs}
    bus_groups = {n.bus_group for n in needs}
    if len(switch_groups) > 1 or len(bus_groups) > 1:
        raise InvalidInput(f"slot group {group!r}", "its devices name different switch or bus groups")
    hints = [n.order for n in needs if n.order is not None]
    rank = (float(min(hints)) if hints else float(i), i)
    if hot in (HotplugNeed.REQUIRED, HotplugNeed.PREFERRED) and not all(topology.kind_hotpluggable(d) for d in members):
        # the needs as evaluate resolves them: an override may soften a device's own requirement, and the
        # policy's default does not apply to a kind that is never hot-plugged
        required = [
            d
            for d in members
            if not topology.kind_hotpluggable(d)
            and effective_needs(topology, policy, d).hotplug is HotplugNeed.REQUIRED
        ]
        if required:
            d = required[0]
            why = (
                "cannot be hot-plugged at all"
                if not catalog.device(d.kind).hotpluggable
                else f"must sit on the root bus {topology.machine.root_bus_name}, which takes no hot-plugged device"
            )
            raise Unsatisfiable(
                [f"{d.id!r} requires hotplug, but a {d.kind} {why}"],
                suggestions=[f"drop the hotplug requirement of {d.id!r}"],
            )
        # the policy's default does not apply to a kind that is never hot-plugged; a device's own preference
        # does, as evaluate scores it (a hotpluggable slot meets it)
        hot = effective_needs(topology, policy, members[0]).hotplug if len(members) == 1 else HotplugNeed.ANY
    conflict = _integrated_hotplug_conflict(topology, hot) if integrated_required else None
    if conflict is not None:
        raise Unsatisfiable(
            [f"{members[0].id!r} {conflict}"],
            suggestions=[f"drop the hotplug or the integrated requirement of {members[0].id!r}"],
        )
    return Unit(
        devices=tuple(members),
        connect=connect,
        hotplug=hot,
        numa_node=node,
        numa_strict=strict,
        integrated_required=integrated_required,
        can_integrate=can_integrate,
        io_size=io,
        position=i,
        switch_group=switch_groups.pop(),
        bus_group=bus_groups.pop(),
        rank=rank,
    )


def _integrated_hotplug_conflict(topology: Topology, hot: HotplugNeed) -> str | None:
    """Why no slot of the main root bus meets a hotplug need ``hot`` that must be met there (``None``: one does)."""
    root = topology.machine.root_bus_name
    if hot is HotplugNeed.REQUIRED and not any(topology.is_hotpluggable(0, s) for s in topology.model(0).slot_range()):
        return f"requires hotplug and must sit integrated on the root bus {root}, which takes no hot-plugged device"
    if hot is HotplugNeed.FORBIDDEN and not root_has_fixed_slot(topology):
        return (
            f"must not be hot-pluggable and must sit integrated on the root bus {root}, "
            "every slot of which is hot-pluggable"
        )
    return None


def root_has_fixed_slot(topology: Topology) -> bool:
    """Whether some slot of the main root bus is not hot-pluggable (pseries: none is)."""
    return not all(topology.is_hotpluggable(0, s) for s in topology.model(0).slot_range())


def _check_groups(units: Sequence[Unit]) -> None:
    switch: dict[str, int] = {}
    bus: dict[str, int] = {}
    for u in units:
        if u.switch_group is not None:
            switch[u.switch_group] = switch.get(u.switch_group, 0) + 1
        if u.bus_group is not None:
            bus[u.bus_group] = bus.get(u.bus_group, 0) + 1
    for label, n in sorted(switch.items()):
        if n > 32:
            raise InvalidInput(f"switch group {label!r}", f"has {n} slots of devices but a switch has 32 ports")
    for label, n in sorted(bus.items()):
        if n > 31:
            raise InvalidInput(f"bus group {label!r}", f"has {n} slots of devices but a bridge has 31 slots")


def _needs(policy: Policy, device: Device, memo: dict[tuple[str, Needs], Needs]) -> Needs:
    if policy.overrides:
        return policy.needs_for(device)
    key = ("", device.needs)
    if key not in memo:
        memo[key] = policy.needs_for(device)
    return memo[key]


def _strongest_hotplug(values: Sequence[HotplugNeed], ids: Sequence[str]) -> HotplugNeed:
    s = set(values)
    if HotplugNeed.REQUIRED in s and HotplugNeed.FORBIDDEN in s:
        raise InvalidInput(
            f"slot group of {', '.join(repr(i) for i in ids)}",
            "some functions require hotplug and others forbid it",
        )
    for need in (HotplugNeed.REQUIRED, HotplugNeed.FORBIDDEN, HotplugNeed.PREFERRED):
        if need in s:
            return need
    return HotplugNeed.ANY


def classify(units: Sequence[Unit], *, io_matters: bool = True) -> tuple[DemandClass, ...]:
    """Group units with identical needs; classes in order of their first unit.

    With ``io_matters`` (the machine's firmware has an IO-window budget) units
    with different IO BARs are different classes; without a budget the IO
    BAR changes nothing a decision depends on, and they are one class.
    """
    classes: dict[tuple[object, ...], list[Unit]] = {}
    for u in units:
        if u.switch_group is not None or u.bus_group is not None:
            # a group moves as one: one class, never split between contexts
            label = ("switch", u.switch_group) if u.switch_group is not None else ("bus", u.bus_group)
            classes.setdefault((*label, u.numa_node, u.numa_strict), []).append(u)
            continue
        key = (
            # the members' values read directly: Enum.value is a Python descriptor call, twice a unit
            u.connect._value_,
            u.hotplug._value_,
            u.numa_node,
            u.numa_strict,
            u.integrated_required,
            u.can_integrate,
            u.io_size if io_matters else 0,  # identical IO BARs: every unit of a class costs the same IO windows
            len(u.devices),
        )
        classes.setdefault(key, []).append(u)
    return tuple(DemandClass(k, tuple(v)) for k, v in classes.items())


# -- free positions of the existing topology ---------------------------------------


@attrs.frozen
class Pool:
    """Free slots of one existing bus with the same hotplug state."""

    bus: int
    slots: tuple[int, ...]
    hotpluggable: bool
    accepts_pci: bool
    accepts_pcie: bool
    integrated_root: bool
    """The bus is a PCIe root bus (endpoints there are integrated)."""
    numa_node: int | None
    behind_port: bool
    root: int


def free_pools(topology: Topology) -> tuple[Pool, ...]:
    """Empty slots on existing buses that can take endpoints, grouped by bus and hotplug state."""
    usage = topology.slot_usage()
    pools: list[Pool] = []
    for c in topology.controllers:
        if c.address is None and c.index != 0:
            continue
        model = topology.model(c)
        if model.root or model.expander:
            continue  # root buses are laid out with the new structure (they also host new controllers)
        root = topology.root_of(c.index)
        if root is None:
            continue
        accepts_pci = Connect.PCI_DEVICE in model.accepts
        accepts_pcie = Connect.PCIE_DEVICE in model.accepts
        is_pcie_root = model.root and model.name == "pcie-root"
        if not (accepts_pci or accepts_pcie):
            continue
        by_hot: dict[bool, list[int]] = {}
        for slot in model.slot_range():
            if (0, c.index, slot) in usage:
                continue
            by_hot.setdefault(topology.is_hotpluggable(c.index, slot), []).append(slot)
        for hot, slots in sorted(by_hot.items(), key=lambda kv: not kv[0]):
            pools.append(
                Pool(
                    bus=c.index,
                    slots=tuple(slots),
                    hotpluggable=hot,
                    accepts_pci=accepts_pci or is_pcie_root,
                    accepts_pcie=accepts_pcie,
                    integrated_root=is_pcie_root,
                    numa_node=topology.numa_node_of_bus(c.index),
                    behind_port=model.port,
                    root=root.index,
                )
            )
    return tuple(pools)


def unit_fits_pool(
    unit: Unit,
    pool: Pool,
    *,
    prefer_integrated: bool,
    hotplug_off_occupied: bool = False,
    free_only: bool = False,
    numa_anywhere: bool = False,
    hotplug_anywhere: bool = False,
    spare_ports: bool = False,
    root_hotplug: bool = False,
) -> bool:
    """Whether a unit may take a slot of an existing pool at no hotplug or NUMA cost; ``free_only``: at no soft cost
    at all, the policy's preference for integrated devices (``prefer_integrated``: the unit could sit on the root bus
    instead), for hotplug off on occupied positions (``hotplug_off_occupied``) and for spare ports (``spare_ports``:
    an empty hot-pluggable port a unit takes is a spare port less) included. ``numa_anywhere``: the
    unit's preferred node is one no bus of the plan can have (:func:`reachable_nodes`), or the policy's NUMA
    weight is 0: missing it costs the same anywhere. ``root_hotplug``: the main root bus's slots are hot-pluggable
    (else a unit that must be hot-pluggable cannot be integrated, and misses that preference anywhere alike).
    ``hotplug_anywhere``: a unit that prefers hotplug may take a slot without it (missing the preference)."""
    if free_only and not pool.integrated_root:
        integrable = unit.can_integrate and (root_hotplug or unit.hotplug is not HotplugNeed.REQUIRED)
        if prefer_integrated and integrable:
            return False
        if hotplug_off_occupied and pool.hotpluggable and unit.hotplug is HotplugNeed.ANY:
            return False
        if spare_ports and pool.hotpluggable and pool.behind_port:
            return False
    if unit.integrated_required and pool.bus != 0:
        return False
    if pool.integrated_root:
        if not unit.can_integrate:
            return False
        if not (unit.integrated_required or prefer_integrated):
            return False
    elif not (pool.accepts_pcie if unit.connect is Connect.PCIE_DEVICE else pool.accepts_pci):
        return False
    if unit.hotplug is HotplugNeed.REQUIRED and not pool.hotpluggable:
        return False
    if unit.hotplug is HotplugNeed.PREFERRED and not pool.hotpluggable and not hotplug_anywhere:
        return False
    if unit.hotplug is HotplugNeed.FORBIDDEN and pool.hotpluggable:
        return False
    if numa_anywhere:
        return True
    if unit.numa_node is not None and pool.numa_node != unit.numa_node:
        return False
    return not (unit.numa_node is None and pool.numa_node is not None)


def reachable_nodes(topology: Topology) -> frozenset[int]:
    """The NUMA nodes a bus of a plan for ``topology`` can be on: those of its root and expander buses, and every
    node where the machine offers expander buses or host bridges to add."""
    machine = topology.machine
    pcie = topology.model(0).name == "pcie-root"
    grows = machine.offers("spapr-pci-host-bridge") or machine.offers(
        "pcie-expander-bus" if pcie else "pci-expander-bus"
    )
    if grows:
        return frozenset(range(topology.numa_nodes))
    return frozenset(
        c.numa_node
        for c in topology.controllers
        if c.numa_node is not None and (topology.model(c).root or topology.model(c).expander)
    )


def io_windows_used(topology: Topology) -> int:
    """4 KiB IO windows the firmware must give bridges of this topology (the io-space rule's count)."""
    return sum(topology.io_windows().values())


PortReuse = Literal["none", "unpluggable", "any"]
"""Which empty ports of the request a plan may plug its new bridges and switches into instead of new root ports:
none, those with hotplug off (no spare port is lost), or any (a hot-pluggable one then no longer counts as spare)."""


def empty_ports(topology: Topology, reuse: PortReuse) -> dict[int, list[tuple[int, frozenset[Connect]]]]:
    """The request's ports with nothing below them that ``reuse`` lets new bridges and switches take, by the root
    bus or expander bus they hang from: those with hotplug off first (they are no spare ports), then by address."""
    if reuse == "none":
        return {}
    children = {c.address.bus for c in topology.controllers if c.address is not None}
    children |= {d.address.bus for d in topology.devices if d.address is not None}
    found: list[tuple[bool, PciAddress, int, int, frozenset[Connect]]] = []
    for c in topology.controllers:
        model = topology.model(c)
        if not model.port or c.address is None or c.index in children:
            continue
        hot = topology.is_hotpluggable(c.index, 0)
        root = context_root(topology, c.index)
        if root is None or (hot and reuse != "any"):
            continue
        found.append((hot, c.address, c.index, root, model.accepts))
    out: dict[int, list[tuple[int, frozenset[Connect]]]] = {}
    for _hot, _address, index, root, accepts in sorted(found, key=operator.itemgetter(0, 1)):
        out.setdefault(root, []).append((index, accepts))
    return out


def free_bridge_slots(topology: Topology) -> dict[int, list[PciAddress]]:
    """Free slots of the request's conventional buses below a PCI Express root (dmi-to-pci-bridges, pci-bridges,
    pcie-to-pci-bridges) that take a pci-bridge, by that root, in address order."""
    usage = topology.slot_usage()
    out: dict[int, list[PciAddress]] = {}
    for c in topology.controllers:
        model = topology.model(c)
        if c.address is None or model.root or model.expander or Connect.PCI_BRIDGE not in model.accepts:
            continue
        root = context_root(topology, c.index)
        if root is None or topology.model(root).name not in ("pcie-root", "pcie-expander-bus"):
            continue
        out.setdefault(root, []).extend(
            PciAddress(bus=c.index, slot=s) for s in model.slot_range() if (0, c.index, s) not in usage
        )
    return {root: sorted(slots) for root, slots in out.items() if slots}


@attrs.frozen(eq=False)
class Reuse:
    """The places of a request that a plan's new bridge trees and switches may plug into instead of new root ports,
    by the root bus or expander bus they hang from: one of the :data:`PortReuse` ways.

    >>> from pcitopo.topology import Topology
    >>> request = Topology.build("q35", controllers=[Controller(0, "pcie-root"),
    ...     Controller(1, "pcie-root-port", address=PciAddress(bus=0, slot=1), hotplug=False)])
    >>> reuse = Reuse.of(request, "unpluggable")
    >>> reuse.uplinks()
    {0: 1}
    >>> Reuse.of(request, "none").uplinks()
    {}
    """

    kind: PortReuse
    ports: Mapping[int, Sequence[tuple[int, frozenset[Connect]]]]
    """:func:`empty_ports` of the kind: (index, what it accepts), in the order they are taken."""
    bridge_slots: Mapping[int, Sequence[PciAddress]]
    """:func:`free_bridge_slots` (none for ``"none"``): a bridge tree's top is a pci-bridge there when no port is
    left."""

    @classmethod
    def of(cls, topology: Topology, kind: PortReuse) -> Reuse:
        slots = free_bridge_slots(topology) if kind != "none" else {}
        return cls(kind, empty_ports(topology, kind), slots)

    @classmethod
    def none(cls) -> Reuse:
        """No place of the request is taken: every new bridge tree and switch gets a new root port."""
        return cls("none", {}, {})

    @classmethod
    def options(cls, topology: Topology) -> tuple[Reuse, ...]:
        """The ways worth realising an assignment in: ``"none"`` first, then those that offer more places (the last
        offers them all)."""
        slots = free_bridge_slots(topology)
        cold = cls("unpluggable", empty_ports(topology, "unpluggable"), slots)
        every = cls("any", empty_ports(topology, "any"), slots)
        out = [cls.none()]
        if cold.ports or cold.bridge_slots:
            out.append(cold)
        if every.ports != cold.ports:
            out.append(every)
        return tuple(out)

    def uplinks(self) -> dict[int, int]:
        """Places by root bus (:attr:`~pcitopo.solver._layout.Context.reusable_uplinks`)."""
        out: dict[int, int] = {}
        for found in (self.ports, self.bridge_slots):
            for root, places in found.items():
                out[root] = out.get(root, 0) + len(places)
        return out


# -- contexts: where new structure can grow -------------------------------------------------


def build_contexts(
    topology: Topology, policy: Policy, classes: Sequence[DemandClass], *, names_expander: bool = False
) -> tuple[Context, ...]:
    """Every context of the request: the main root, existing expanders and host bridges, new ones per NUMA node.

    ``names_expander``: a node-less expander bus too, for an ordered policy's NIC names (see below).
    """
    machine = topology.machine
    usage = topology.slot_usage()
    contexts: list[Context] = []
    every, cold = empty_ports(topology, "any"), empty_ports(topology, "unpluggable")

    def empty_hot_ports(root: int) -> int:
        return len(every.get(root, ())) - len(cold.get(root, ()))

    firmware = topology.firmware_model

    def add(**fields: object) -> None:
        contexts.append(
            Context(
                id=len(contexts),
                reserves_io_pci_bridge=firmware is not None and firmware.reserves_io("pci-bridge"),
                reserves_io_pcie_to_pci=firmware is not None and firmware.reserves_io("pcie-to-pci-bridge"),
                offers_pcie_to_pci=machine.offers("pcie-to-pci-bridge"),
                offers_dmi=machine.offers("dmi-to-pci-bridge"),
                offers_switch=machine.offers("pcie-switch-upstream-port")
                and machine.offers("pcie-switch-downstream-port"),
                **fields,  # type: ignore[arg-type]
            )
        )

    def free_slots(index: int) -> tuple[int, ...]:
        model = topology.model(index)
        return tuple(s for s in model.slot_range() if (0, index, s) not in usage)

    def port_functions(index: int) -> tuple[PciAddress, ...]:
        """Free functions of slots that already hold multifunction root ports (new ports can join them)."""
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
        root_kind=RootKind.PCIE if pcie else RootKind.PCI,
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
            kind = RootKind.PCIE if m.name == "pcie-expander-bus" else RootKind.PCI
            domain = "main"
        else:
            own = machine.bus_numbers - topology.bus_numbers_used(c.index)
            kind = RootKind.PCI
            domain = f"host-bridge-{c.index}"
        add(
            label=f"{topology.bus_name(c.index)} ({m.name})",
            root_kind=kind,
            bus=c.index,
            new_model=None,
            numa_node=c.numa_node,
            free_slots=free_slots(c.index),
            free_port_functions=port_functions(c.index) if kind is RootKind.PCIE else (),
            can_integrate=False,
            root_hotplug=any(topology.is_hotpluggable(c.index, s) for s in free_slots(c.index)[:1]),
            domain=domain,
            own_range=own,
            empty_hot_ports=empty_hot_ports(c.index) if kind is RootKind.PCIE else 0,
        )
    # new expander buses / host bridges, one per NUMA node that some device names
    nodes = sorted({cls.sample.numa_node for cls in classes if cls.sample.numa_node is not None})
    if policy.spare_ports_per_node:
        nodes = sorted(set(nodes) | set(range(topology.numa_nodes)))
    pseries = machine.offers("spapr-pci-host-bridge")
    # a node-less pxb where the root bus is hotpluggable (pc): the only slots there that are not, for devices
    # that must not be hot-plugged or that the policy wants on a position with hotplug off
    main_hot = not pcie and contexts[0].root_hotplug
    not_hot = policy.hotplug_off_occupied or any(cls.sample.hotplug is HotplugNeed.FORBIDDEN for cls in classes)
    nodeless_pxb = main_hot and not_hot and machine.offers("pci-expander-bus")
    # an ordered policy's NIC names: below an expander bus every NIC gets its path name (QEMU describes no ACPI
    # hotplug slot there, see pcitopo.naming), where the main root's mix slot names (ens<N>) and path names
    # (enp<B>s<S>), whose natural order is not the NICs' bus order
    # (solve._place asks for it when a plan's names are out of order: one more context multiplies the search)
    expander = "pcie-expander-bus" if pcie else "pci-expander-bus"
    nodeless_pxb = nodeless_pxb or (names_expander and machine.offers(expander))
    for node in [None, *nodes] if pseries or nodeless_pxb else nodes:
        if node is not None and node >= topology.numa_nodes:
            continue
        if pseries:
            add(
                label="new PCI host bridges" + (f" for NUMA node {node}" if node is not None else ""),
                root_kind=RootKind.NEW_HOST_BRIDGE,
                bus=None,
                new_model="spapr-pci-host-bridge",
                numa_node=node,
                free_slots=tuple(range(1, 32)),
                free_port_functions=(),
                can_integrate=False,
                root_hotplug=True,
                domain=f"new-host-bridge-{node}",
                own_range=None,
                empty_hot_ports=0,
            )
            continue
        model = "pcie-expander-bus" if pcie else "pci-expander-bus"
        if not machine.offers(model):
            continue
        add(
            label=f"a new {model} for NUMA node {node}",
            root_kind=RootKind.PCIE if pcie else RootKind.PCI,
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


def context_root(topology: Topology, index: int) -> int | None:
    """The root bus or expander bus a bus hangs from."""
    for c in topology._walk_up(index):
        m = topology.model(c)
        if m.root or m.expander:
            return c.index
    return None


def candidates(cls: DemandClass, contexts: Sequence[Context]) -> tuple[int, ...]:
    """The contexts a class may go to, in order of preference.

    A strict NUMA node: only that node's. A preferred node: its own, then the
    node-less ones, then the other nodes' (at the ``numa`` weight). No node:
    the node-less ones, then every node's (a device that does not care may
    share a node's expander bus with one that does, at no cost).
    """
    u = cls.sample
    own: list[int] = []
    neutral: list[int] = []
    others: list[int] = []
    for ctx in contexts:
        if u.integrated_required and ctx.bus != 0:
            continue
        if ctx.numa_node is None:
            neutral.append(ctx.id)
        elif ctx.numa_node == u.numa_node:
            own.append(ctx.id)
        else:
            others.append(ctx.id)
    if u.numa_node is not None and u.numa_strict:
        return tuple(own)
    if u.numa_node is not None:
        return tuple(own + neutral + others)
    return tuple(neutral + others)


def spare_wanted(policy: Policy, contexts: Sequence[Context]) -> dict[int, int]:
    """Spare hotplug ports each context should add: the main root's, and each node's with ``spare_ports_per_node``.

    Without ``spare_ports_per_node`` the term counts empty hot-pluggable ports anywhere
    (:func:`pcitopo.policy.evaluate.spare_ports`), so those below existing expander buses count for the main
    root's want too (the contexts' own ones are counted by the layout): found by the exhaustive enumerator, a
    root port added on pcie.0 as a spare beside one left empty on a pxb-pcie.
    """
    spare: dict[int, int] = {}
    if policy.spare_ports == 0:
        return spare
    elsewhere = sum(ctx.empty_hot_ports for ctx in contexts if ctx.bus != 0)
    for ctx in contexts:
        per_node = policy.spare_ports_per_node and ctx.numa_node is not None
        if ctx.bus == 0 and not policy.spare_ports_per_node:
            spare[ctx.id] = max(0, policy.spare_ports - elsewhere)
        elif ctx.bus == 0 or (per_node and ctx.root_kind is not RootKind.NEW_HOST_BRIDGE):
            spare[ctx.id] = policy.spare_ports
    return spare


# -- the model handed to a backend -------------------------------------------------------------


@attrs.frozen
class Variable:
    """A decision variable: its name and its domain, the most preferred value first."""

    name: str
    domain: tuple[int, ...]


ConstraintKind = Literal["exact-sum", "check", "objective"]


@attrs.frozen
class Constraint:
    """A hard constraint over some variables, or the objective's bound.

    ``exact-sum``: the variables sum to ``total`` (posted to the engine as its
    own sum constraint). ``check``: ``test(partial)`` is false when no
    completion of a partial assignment can meet the constraint (budgets:
    every term is monotone, so the assigned part is a lower bound).
    ``objective``: ``bound(partial)`` is a lower bound of the objective of
    every completion of the partial assignment, exact when complete.
    """

    name: str
    kind: ConstraintKind
    scope: tuple[str, ...]
    total: int = 0
    test: Callable[[Mapping[str, int]], bool] | None = attrs.field(default=None, eq=False, repr=False)
    bound: Callable[[Mapping[str, int]], int | None] | None = attrs.field(default=None, eq=False, repr=False)
    floor: Callable[[Mapping[str, int], int | None], int] | None = attrs.field(default=None, eq=False, repr=False)
    """``objective``: a cheaper lower bound than ``bound``, no greater (the search refuses a partial assignment
    whose floor is dearer than the best so far without computing its bound). ``floor(partial, best)`` may stop
    refining once it is above ``best`` (``None``: refined in full)."""


SPLIT_LIMIT = 64
"""A class of at most this many units may be split between its contexts unit by unit; a bigger one
only in steps of ``ceil(n / 64)`` units, so that a count's domain stays at 65 values or fewer (the
search time grows with the product of the domains). A proven optimum is then optimal among the
splits the model can express: say a 500-unit class splits 8 units at a time."""


@attrs.frozen
class Problem:
    """The model of one request under one policy: variables, hard constraints, one objective.

    Frozen and never changed by solving. ``fixed`` holds the classes with a
    single candidate context (no choice: a constant, not a variable).
    """

    topology: Topology
    policy: Policy
    units: tuple[Unit, ...]
    classes: tuple[DemandClass, ...]
    contexts: tuple[Context, ...]
    candidates: tuple[tuple[int, ...], ...]
    """Per class: the contexts it may go to, in order of preference (:func:`candidates`, less those where a unit
    of the class is impossible whatever else goes there)."""
    spare: Mapping[int, int]
    """Spare ports each context should add."""
    bus_region: int
    """Bus numbers free in the main domain for the new expanders and the context they share them with
    (:attr:`bus_host`)."""
    io_budget: int | None
    """4 KiB IO windows the firmware can still give (``None``: no limit on this machine)."""
    host_bridges_left: int
    variables: tuple[Variable, ...]
    constraints: tuple[Constraint, ...]
    count_variables: Mapping[tuple[int, int], str]
    """(class, context) -> the variable counting the class's units there."""
    context_variables: Mapping[int, tuple[str, ...]]
    """Context -> the variables its layout depends on (its counts, its decisions; for the main root
    also the new expanders', whose slots it keeps)."""
    domains: Mapping[str, tuple[int, ...]]
    """Each variable's domain, by name."""
    per_unit: Mapping[tuple[int, int], Counts] = attrs.field(eq=False, repr=False)
    """(class, context) -> the counts of one unit of the class there (all units of a class are alike)."""
    bus_host: int = 0
    """The context whose bus numbers the new expander buses share, from the top of its range down: the main root,
    below the lowest existing expander bus (libvirt's way, which leaves expanders the high numbers), or the existing
    expander bus with more numbers left in its range than that (one whose ``busNr`` a user set low)."""
    cache: dict[tuple[object, ...], Decision] = attrs.field(factory=dict, eq=False, repr=False)
    """Decisions already computed, by :meth:`_layout_key` (the search asks for the same ones many times)."""
    layouts: dict[tuple[int, ...], Decision] = attrs.field(factory=dict, eq=False, repr=False)
    """Decisions already computed, by context, counts (:meth:`_counts_id`) and decisions: those of :attr:`cache`,
    where counts of different classes that come to the same needs share one. :attr:`cache` holds a decision once
    it was asked for by its key (:meth:`quick_fits` answers from it, and then keeps it by the scope's values, which
    :meth:`cost_floor` counts), this one once it was laid out."""
    group_counts: dict[tuple[int, int], Counts] = attrs.field(factory=dict, eq=False, repr=False)
    equal_counts: dict[Counts, int] = attrs.field(factory=dict, eq=False, repr=False)
    """Each :class:`Counts` value met, and its :meth:`_counts_id` (shared with :attr:`layouts`, whose keys hold it)."""

    def reusing(self, uplinks: Mapping[int, int]) -> Problem:
        """The same model whose PCI Express contexts lay out knowing the places of the request that new bridge trees
        and switches may plug into, by root bus (:attr:`Context.reusable_uplinks`): the same variables,
        constraints and domains, only the local choices among layouts differ (a tree where packing on the root
        bus cost as much with a new root port). Its decisions are for realising plans, not for bounds: their
        figures count a new root port for each uplink as before. Its caches are its own."""
        contexts = tuple(
            attrs.evolve(c, reusable_uplinks=uplinks.get(c.bus, 0))
            if c.root_kind is RootKind.PCIE and c.bus is not None
            else c
            for c in self.contexts
        )
        return attrs.evolve(self, contexts=contexts, cache={}, layouts={}, group_counts={}, equal_counts={})

    # -- evaluating (partial) assignments ------------------------------------------------------

    def count(self, ci: int, ctx_id: int, values: Mapping[str, int]) -> int | None:
        """How many units of class ``ci`` go to context ``ctx_id`` (``None``: not decided yet)."""
        name = self.count_variables.get((ci, ctx_id))
        if name is not None:
            return values.get(name)
        # no variable: the context is the class's only candidate, or not one of them
        return len(self.classes[ci].units) if ctx_id in self.candidates[ci] else 0

    @functools.cached_property
    def _context_classes(self) -> Mapping[int, tuple[int, ...]]:
        """Context -> the classes that may go there (the others put 0 units there)."""
        out: dict[int, list[int]] = {}
        for ci, cands in enumerate(self.candidates):
            for ctx_id in cands:
                out.setdefault(ctx_id, []).append(ci)
        return {k: tuple(v) for k, v in out.items()}

    @functools.cached_property
    def _scope_values(self) -> Mapping[int, Callable[[Mapping[str, int]], object]]:
        """Context -> the values of its scope from an assignment, at once (``KeyError``: one is unset)."""
        out: dict[int, Callable[[Mapping[str, int]], object]] = {}
        for ctx_id, scope in self.context_variables.items():
            if scope:
                out[ctx_id] = operator.itemgetter(*scope)  # one name: the value itself, else a tuple
        return out

    def counts(self, ctx_id: int, values: Mapping[str, int]) -> Counts | None:
        """What the units ``values`` give a context need (``None``: a count of it is not set yet)."""
        key = self._count_key(ctx_id, values)
        if key is None:
            return None
        return self._counts_of(key)

    def _counts_of(self, key: tuple[int, ...]) -> Counts:
        """The counts of a :meth:`_count_key`: those of the same key without its last class, plus that class's.

        The classes are added in the same order as one by one from nothing, but
        the search's neighbouring assignments share every key but the last.
        """
        known = self._counts_cache.get(key)
        if known is not None:
            return known
        last = max((i for i in range(1, len(key)) if key[i]), default=0)
        if not last:
            total = Counts()
        else:
            ctx_id = key[0]
            ci = self._context_classes[ctx_id][last - 1]
            total = add_counts(
                self._counts_of((*key[:last], 0, *key[last + 1 :])), self._class_counts(ci, ctx_id, key[last])
            )
        self._counts_cache[key] = total
        return total

    def _counts_id(self, count_key: tuple[int, ...]) -> int:
        """A number for the counts of a :meth:`_count_key`, the same for equal counts.

        Classes that differ in what a context's layout does not ask (the NUMA node a unit prefers, in a node's
        expander bus: that term is counted per variable) give it equal counts from different keys; what is
        decided by the counts (a layout, a floor) is kept by this number, so that they share it.
        """
        known = self._counts_ids.get(count_key)
        if known is None:
            counts = self._counts_of(count_key)
            known = self.equal_counts.setdefault(counts, len(self.equal_counts))
            self._counts_ids[count_key] = known
        return known

    @functools.cached_property
    def _counts_ids(self) -> dict[tuple[int, ...], int]:
        """:meth:`_counts_id` by :meth:`_count_key`."""
        return {}

    def _count_key(self, ctx_id: int, values: Mapping[str, int]) -> tuple[int, ...] | None:
        """The context and how many units of each class that may go there it gets (``None``: a count is open).

        A context's counts depend on these numbers only, not on its layout decisions nor on other contexts'
        variables, so the search's many partial assignments that differ elsewhere share one :class:`Counts`.
        """
        getter = self._count_getters[ctx_id]
        try:
            if getter is not None:
                return (ctx_id, *getter(values))
            return (ctx_id, *[values[name] if name else n for name, n in self._count_spec[ctx_id]])
        except KeyError:
            return None

    @functools.cached_property
    def _count_getters(self) -> Mapping[int, Callable[[Mapping[str, int]], tuple[int, ...]] | None]:
        """Context -> its :meth:`_count_key` less the context, at once, where every class that may go there has a
        count variable there (``None``: a constant among them, or fewer than two)."""
        return {
            ctx_id: operator.itemgetter(*(name for name, _ in spec))
            if len(spec) > 1 and all(name for name, _ in spec)
            else None
            for ctx_id, spec in self._count_spec.items()
        }

    @functools.cached_property
    def _count_spec(self) -> Mapping[int, tuple[tuple[str, int], ...]]:
        """Context -> per class that may go there: its count variable, or ``""`` and the constant count."""
        return {
            ctx_id: tuple(
                (name, 0) if (name := self.count_variables.get((ci, ctx_id))) else ("", len(self.classes[ci].units))
                for ci in self._context_classes.get(ctx_id, ())
            )
            for ctx_id in range(len(self.contexts))
        }

    @functools.cached_property
    def _counts_cache(self) -> dict[tuple[int, ...], Counts]:
        """Counts already computed, by :meth:`_count_key`."""
        return {}

    def _class_counts(self, ci: int, ctx_id: int, n: int) -> Counts:
        cls = self.classes[ci]
        if cls.key[0] in ("switch", "bus"):
            # a group is one whole (its count is 0 or all): its label counts once, not once a unit
            counts = self.group_counts.get((ci, ctx_id))
            if counts is None:
                counts = add_units(self.contexts[ctx_id], Counts(), cls.units, self.policy)
                self.group_counts[(ci, ctx_id)] = counts
            return counts
        return scale_counts(self.per_unit[(ci, ctx_id)], n)

    def used(self, ctx_id: int, values: Mapping[str, int]) -> bool | None:
        """Whether a context gets anything (a new expander bus exists only then)."""
        key = self._count_key(ctx_id, values)
        if key is None:
            return None
        any_unit = any(key[1:])
        spare_name = f"spare[{ctx_id}]"
        if spare_name in self.context_variables.get(ctx_id, ()):
            if spare_name not in values:
                return None
            any_unit = any_unit or values[spare_name] > 0
        return any_unit

    @functools.cached_property
    def _decisions(self) -> dict[tuple[int, object], Decision]:
        """Decisions already computed, by context and the values of its scope (which alone decide its layout):
        the search asks for the same ones many times, and this key is cheaper to make than the one below."""
        return {}

    @functools.cached_property
    def _quick(self) -> set[tuple[int, object]]:
        """Contexts' scope values whose decision :meth:`quick_fits` showed feasible and within the IO budget."""
        return set()

    @functools.cached_property
    def _floors(self) -> dict[tuple[int, object], int]:
        """:meth:`_context_floor` by context and scope values."""
        return {}

    @functools.cached_property
    def _own_floors(self) -> dict[tuple[object, ...], int]:
        """:meth:`_context_floor` by whether refined, the context's counts and its integrate and spare decisions."""
        return {}

    @functools.cached_property
    def _refined_floors(self) -> dict[tuple[int, object], int]:
        """:meth:`_context_floor` with its controllers bounded too, by context and scope values."""
        return {}

    def _scope_key(self, ctx_id: int, values: Mapping[str, int]) -> tuple[int, object] | None:
        """The context and the values of its scope, which alone decide its layout (``None``: one is not set)."""
        getter = self._scope_values.get(ctx_id)
        try:
            return (ctx_id, getter(values) if getter is not None else None)
        except KeyError:
            return None  # a variable of its scope is not set yet

    def quick_fits(self, ctx_id: int, values: Mapping[str, int]) -> bool | None:
        """Whether a context's decision is feasible and within the IO budget, when that is quick to tell (``False``:
        maybe not, ask :meth:`decision`; ``None``: a variable of its scope is open).

        The search asks the hard constraints of every value of a context's last open variable (forward
        checking) and visits few of them: a layout of the context without moves that fits (see
        :func:`quick_decide`) answers for its best one.
        """
        scope_key = self._scope_key(ctx_id, values)
        if scope_key is None:
            return None
        if scope_key in self._quick:
            return True
        d = self._decisions.get(scope_key)
        if d is None:
            key = self._layout_key(ctx_id, values)
            d = self.cache.get(key)
            if d is None:
                if self._quick_layout(ctx_id, key):
                    self._quick.add(scope_key)
                    return True
                return False
            self._decisions[scope_key] = d
        return d.feasible and (self.io_budget is None or d.io_windows <= self.io_budget)

    def fits(self, ctx_id: int, values: Mapping[str, int]) -> bool:
        """Whether a context has a feasible layout (``True`` while a variable of its scope is open)."""
        if self.quick_fits(ctx_id, values) is not False:
            return True
        d = self.decision(ctx_id, values)
        return d is None or d.feasible

    def decision(self, ctx_id: int, values: Mapping[str, int]) -> Decision | None:
        """The layout of a context, once every variable it depends on is set (else ``None``)."""
        scope_key = self._scope_key(ctx_id, values)
        if scope_key is None:
            return None
        known = self._decisions.get(scope_key)
        if known is not None:
            return known
        key = self._layout_key(ctx_id, values)
        result = self.cache.get(key)
        if result is None:
            count_key, integrate, bridges, spare, expanders_here = key
            same = (ctx_id, self._counts_id(count_key), integrate, bridges, spare, expanders_here)
            result = self.layouts.get(same)
            if result is None:
                result = decide(**self._layout_args(ctx_id, key), bridges=bridges)
                self.layouts[same] = result
            self.cache[key] = result
        self._decisions[scope_key] = result
        return result

    def _quick_layout(self, ctx_id: int, key: tuple[tuple[int, ...], int, int, int, int]) -> bool:
        """Whether :func:`quick_decide` tells a PCI Express root's layout of a :meth:`_layout_key` feasible and within
        the IO budget (``False`` on other roots), remembered by the counts' value as :attr:`layouts` is."""
        count_key, integrate, bridges, spare, expanders_here = key
        same = (ctx_id, self._counts_id(count_key), integrate, bridges, spare, expanders_here)
        quick = self._quick_layouts.get(same)
        if quick is None:
            args = self._layout_args(ctx_id, key)
            quick = args["ctx"].root_kind is RootKind.PCIE and quick_decide(**args)
            self._quick_layouts[same] = quick
        return quick

    @functools.cached_property
    def _quick_layouts(self) -> dict[tuple[int, ...], bool]:
        """:meth:`_quick_layout` by context, counts (:meth:`_counts_id`) and decisions."""
        return {}

    def _layout_key(self, ctx_id: int, values: Mapping[str, int]) -> tuple[tuple[int, ...], int, int, int, int]:
        """The key of :attr:`cache` for a context whose scope is set: its :meth:`_count_key` and its decisions."""
        count_key = self._count_key(ctx_id, values)
        assert count_key is not None
        expanders_here = 0
        if ctx_id == 0:
            expanders_here = sum(1 for other in self.contexts if other.new_expander and self.used(other.id, values))
        integrate = values.get(f"integrate[{ctx_id}]", 0)
        bridges = values.get(f"bridges[{ctx_id}]", 0)
        spare = values.get(f"spare[{ctx_id}]", 0)
        # the layout depends on these alone (the rest is fixed per context): assignments that differ in other
        # contexts' variables share it
        return count_key, integrate, bridges, spare, expanders_here

    def _layout_args(self, ctx_id: int, key: tuple[tuple[int, ...], int, int, int, int]) -> dict[str, Any]:
        """:func:`quick_decide`'s arguments for a context whose scope is set, by its :meth:`_layout_key`."""
        count_key, integrate, _, spare, expanders_here = key
        ctx = self.contexts[ctx_id]
        bus_cap = ctx.own_range if ctx.own_range is not None else self.bus_region
        if ctx.new_expander and (any(count_key[1:]) or spare):
            # the new expander's own bus numbers, once it exists (:meth:`used`): a context left empty is not
            # added, so it fits where the domain has no bus number left for it
            bus_cap -= self.topology.catalog.controller(ctx.new_model or "").bus_numbers
        return {
            "ctx": ctx,
            "c": self._counts_of(count_key),
            "policy": self.policy,
            "integrate": integrate,
            "spare": spare,
            "spare_wanted": self.spare.get(ctx_id, 0),
            "expanders_here": expanders_here,
            "bus_cap": bus_cap,
            "io_cap": self.io_budget,
        }

    def _context_floor(
        self, ctx_id: int, values: Mapping[str, int], scope_key: tuple[int, object], *, refined: bool = True
    ) -> int:
        """A lower bound of :meth:`context_cost` for a context whose scope is set, without its layout when that is
        not computed yet (on PCI Express roots; 0 on others). ``refined=False``: its hotplug misses and spare ports
        alone, not its controllers (a few operations where the controllers' floor takes a few hundred: the floor
        is asked of many assignments that the misses alone rule out)."""
        cache = self._refined_floors if refined else self._floors
        floor = cache.get(scope_key)
        if floor is not None:
            return floor
        count_key = self._count_key(ctx_id, values)
        assert count_key is not None
        integrate = values.get(f"integrate[{ctx_id}]", 0)
        spare_n = values.get(f"spare[{ctx_id}]", 0)
        floor = self._own_floor(count_key, integrate, spare_n, refined=refined)
        cache[scope_key] = floor
        return floor

    def _own_floor(self, count_key: tuple[int, ...], integrate: int, spare_n: int, *, refined: bool) -> int:
        """:meth:`_context_floor` by what it depends on: the context's counts (its :meth:`_count_key`) and its
        integrate and spare decisions. Scopes that differ in other contexts' variables (the main root's holds the
        new expander buses') share it."""
        own_key = (refined, count_key[0], self._counts_id(count_key), integrate, spare_n)
        floor = self._own_floors.get(own_key)
        if floor is None:
            ctx_id = count_key[0]
            ctx = self.contexts[ctx_id]
            floor = 0
            if ctx.root_kind is RootKind.PCIE:
                counts = self._counts_of(count_key)
                spare_wanted = self.spare.get(ctx_id, 0)
                floor = pcie_cost_floor(ctx, counts, self.policy, integrate, spare_n, spare_wanted, controllers=refined)
            self._own_floors[own_key] = floor
        return floor

    def _numa_cost(self, values: Mapping[str, int]) -> int:
        """What the assigned class counts pay for units away from the NUMA node they prefer."""
        total = 0
        for ci, ctx_id, per_unit in self._numa_terms:
            n = self.count(ci, ctx_id, values)
            if n:
                total += per_unit * n
        return total

    def cost_floor(self, values: Mapping[str, int], above: int | None = None) -> int:
        """A lower bound of the objective of every completion, no greater than :meth:`lower_bound` and cheaper: the
        contexts whose layout is not computed yet count their :meth:`_context_floor`, those with open variables 0.

        With ``above``, their controllers are bounded only when the floor without is at most ``above`` (the
        search's best: a floor above it refuses the assignment as it is)."""
        total = self._numa_cost(values) + self._open_units_floor(values)
        pending: list[tuple[int, tuple[int, object]]] = []
        for ctx_id in self.context_variables:
            scope_key = self._scope_key(ctx_id, values)
            if scope_key is None:
                continue
            d = self._decisions.get(scope_key)
            if d is None:
                total += self._context_floor(ctx_id, values, scope_key, refined=False)
                pending.append((ctx_id, scope_key))
            elif d.feasible:
                total += self.context_cost(ctx_id, d, values)
        if not pending or (above is not None and total > above):
            return total
        for ctx_id, scope_key in pending:
            total += self._context_floor(ctx_id, values, scope_key) - self._floors[scope_key]
        return total

    def bus_numbers(self, ctx_id: int, decision: Decision, values: Mapping[str, int]) -> int:
        """Bus numbers a context takes from its domain (a new expander bus's own included)."""
        ctx = self.contexts[ctx_id]
        bus = decision.bus_numbers
        if ctx.new_expander and self.used(ctx_id, values):
            bus += self.topology.catalog.controller(ctx.new_model or "").bus_numbers
        return bus

    def context_cost(self, ctx_id: int, decision: Decision, values: Mapping[str, int]) -> int:
        """The objective's terms that one context decides (the NUMA terms are counted per variable)."""
        weights = self.policy.weights
        ctx = self.contexts[ctx_id]
        controllers = decision.controllers + (1 if ctx.new_expander and self.used(ctx_id, values) else 0)
        cost = weights["fewer-controllers"] * controllers
        cost += weights["hotplug"] * decision.hot_misses
        cost += weights["spare-ports"] * decision.spare_missing
        cost += weights["hotplug-off-occupied"] * decision.occupied_hot
        if self.policy.prefer_integrated:
            counts = self.counts(ctx_id, values)
            assert counts is not None
            cost += weights["integrated"] * max(0, counts.integrable_devices - decision.integrated_devices)
        return cost

    def numa_cost(self, ci: int, ctx_id: int, n: int) -> int:
        """The NUMA term of ``n`` units of a class in a context: each device away from its preferred node."""
        u = self.classes[ci].sample
        if u.numa_node is None or u.numa_strict or self.contexts[ctx_id].numa_node == u.numa_node:
            return 0
        return self.policy.weights["numa"] * n * len(u.devices)

    def lower_bound(self, values: Mapping[str, int]) -> int:
        """A lower bound of the objective of every completion (exact when every variable is set)."""
        total = self._numa_cost(values)
        for ctx_id in self.context_variables:
            low = self.context_lower_bound(ctx_id, values)
            if low is None:
                return None  # type: ignore[return-value]
            if ctx_id == 0:
                low = max(low, self._root_integration_floor(values))
            total += low
        return total + self._open_units_floor(values)

    def _root_integration_floor(self, values: Mapping[str, int]) -> int:
        """A lower bound of the main root's cost and the ``integrated`` terms of the open units that go elsewhere,
        over every completion, on a conventional root bus (pc's pci.0) under ``prefer_integrated``.

        :meth:`context_lower_bound` takes the open counts as 0, and the units of a class whose counts are all
        open cost at least their cheapest context (0 on the main root): both miss that the root bus has only
        so many slots. Its integrated devices are at most its slots left by the new expander buses that must
        be used and by its pci-bridges (:func:`~pcitopo.solver._layout.decide`), and the open units that go
        elsewhere pay the ``integrated`` term each (the classes taken here are those whose every other
        candidate's per-unit floor is at least that above the root's, see :attr:`_root_integration`). So the
        root's ``integrated`` misses, and the others' misses among the open units, are at least the
        integrable devices that may go to the root less its room, plus a controller each pci-bridge; with none,
        the spare ports it should add are its own slots that its units leave empty.
        """
        spec = self._root_integration
        if spec is None:
            return 0
        room, required, slots, need_spare, hot_root, classes = spec
        devices = 0
        for ci, name, per_unit, eligible, others in classes:
            if not name:
                devices += per_unit * len(self.classes[ci].units)
                continue
            n = values.get(name)
            if n is None:
                if not eligible:
                    continue
                n = len(self.classes[ci].units) - sum(values.get(other, 0) for other in others)
            devices += per_unit * n
        weights = self.policy.weights
        per_integrated, per_spare = weights["integrated"], weights["spare-ports"]
        bridges = values.get("bridges[0]")
        options = (bridges,) if bridges is not None else self.domains.get("bridges[0]", (0,))
        least: int | None = None
        for b in options:
            top = max(0, min(devices, room - b))  # the most devices integrated
            if b or not need_spare:
                cost = per_integrated * (devices - top) + weights["fewer-controllers"] * b
            else:
                # no pci-bridge: the spare ports are the root's own slots, those its units leave (the integrated
                # ones beyond the required take a slot each, the required are counted in the room). The cost is
                # convex in the devices integrated: least at an end or where the spares start to go missing
                def cost_of(y: int) -> int:
                    hot_free = max(0, slots - max(0, y - required)) if hot_root else 0
                    return per_integrated * (devices - y) + per_spare * max(0, need_spare - hot_free)

                cost = min(cost_of(y) for y in {0, top, min(top, max(0, required + slots - need_spare))})
            least = cost if least is None else min(least, cost)
        return least or 0

    @functools.cached_property
    def _root_integration(
        self,
    ) -> tuple[int, int, int, int, bool, tuple[tuple[int, str, int, bool, tuple[str, ...]], ...]] | None:
        """What :meth:`_root_integration_floor` needs (``None``: it is 0): the main root's room for integrated
        devices, and per class that may go there: its count variable there (``""``: a constant, all its units),
        the integrable devices of a unit, whether its open units count (every other candidate costs a unit the
        ``integrated`` term more than the root, whatever the layout) and its other count variables."""
        if not self.policy.prefer_integrated or 0 not in self.context_variables:
            return None
        root = self.contexts[0]
        if root.bus != 0 or root.root_kind is not RootKind.PCI:
            return None
        # new expander buses some class can go nowhere else: each is used, and takes a slot of the root bus
        forced = {cands[0] for cands in self.candidates if len(cands) == 1 and self.contexts[cands[0]].new_expander}
        slots = len(root.free_slots) - len(forced)
        required = 0
        per_integrated = self.policy.weights["integrated"]
        classes = []
        for ci, cands in enumerate(self.candidates):
            if 0 not in cands:
                continue
            unit = self.per_unit[(ci, 0)]
            required += unit.integrated_required * len(self.classes[ci].units)
            name = self.count_variables.get((ci, 0), "")
            others = tuple(self.count_variables[(ci, k)] for k in cands if k and (ci, k) in self.count_variables)
            eligible = all(
                self._unit_floor(ci, k) >= self._unit_floor(ci, 0) + per_integrated * unit.integrable_devices
                for k in cands
                if k
            )
            if unit.integrable_devices:
                classes.append((ci, name, unit.integrable_devices, eligible, others))
        # the spare ports the root should add (_layout._decide_pci)
        need_spare = max(0, self.spare.get(0, 0) - (root.empty_hot_ports if root.root_hotplug else 0))
        return slots + required, required, slots, need_spare, root.root_hotplug, tuple(classes)

    def _open_units_floor(self, values: Mapping[str, int]) -> int:
        """The least the units of the classes with open counts cost wherever they go."""
        total = 0
        # the units of a class no count of which is set yet are in no context's bound (their counts are taken
        # as 0): wherever they go, each costs at least its least per-unit cost among the contexts left open
        for ci, open_, _least in self._unit_floors:
            placed = 0
            cheapest: int | None = None
            for name, floor in open_:
                n = values.get(name)
                if n is None:
                    cheapest = floor if cheapest is None else min(cheapest, floor)
                else:
                    placed += n
            if cheapest:
                total += cheapest * (len(self.classes[ci].units) - placed)
        return total

    @functools.cached_property
    def _unit_floors(self) -> tuple[tuple[int, tuple[tuple[str, int], ...], int], ...]:
        """(class, its count variables with the least each unit costs in that context, the least of those) for
        the classes some unit of which costs something wherever it goes.

        The per-unit costs counted are those a conventional root's layout
        (``_decide_pci``) charges every unit of the class whatever the layout
        (see :meth:`_unit_floor`); every other context counts 0.
        """
        out = []
        for ci in range(len(self.classes)):
            names = [
                (name, self._unit_floor(ci, k))
                for k in self.candidates[ci]
                if (name := self.count_variables.get((ci, k)))
            ]
            least = min((floor for _, floor in names), default=0)
            if names and least:
                out.append((ci, tuple(names), least))
        return tuple(out)

    def _unit_floor(self, ci: int, ctx_id: int) -> int:
        """What one unit of class ``ci`` costs in a conventional root context whatever its layout: its hotplug
        miss when the context cannot meet its preference, ``hotplug-off-occupied`` on a hotpluggable root (its
        slots and its pci-bridges' are all hotpluggable), and the ``integrated`` term off the main root bus."""
        ctx = self.contexts[ctx_id]
        if ctx.root_kind is not RootKind.PCI or self.classes[ci].key[0] in ("switch", "bus"):
            return 0
        unit = self.per_unit[(ci, ctx_id)]
        weights = self.policy.weights
        cost = weights["hotplug"] * unit.hot_misses
        if self.policy.hotplug_off_occupied and ctx.root_hotplug:
            cost += weights["hotplug-off-occupied"] * unit.root_slot_any
        if self.policy.prefer_integrated and ctx.bus != 0:
            cost += weights["integrated"] * unit.integrable_devices
        return cost

    @functools.cached_property
    def _numa_terms(self) -> tuple[tuple[int, int, int], ...]:
        """(class, context, NUMA cost of one unit there) for the pairs where that cost is not 0."""
        return tuple(
            (ci, ctx_id, cost)
            for ci, cands in enumerate(self.candidates)
            for ctx_id in cands
            if (cost := self.numa_cost(ci, ctx_id, 1))
        )

    def context_lower_bound(self, ctx_id: int, values: Mapping[str, int]) -> int | None:
        """The least a context can cost in any completion of ``values`` (``None``: no completion fits).

        Unassigned counts are taken as 0 and unassigned layout decisions at
        their best: a context never costs less with more units, so this is a
        lower bound, and the exact cost once everything it depends on is set.

        Remembered by what it depends on (:meth:`_bound_key`): the search asks it of every context on every
        node, and a node changes one variable.

        The one exception to "never less with more units": how many endpoints a PCI Express root integrates
        beyond those that must be (``integrate``) picks the cheapest to integrate of the units it has, so with
        more units (those preferring no hotplug) the same value may cost less. While a count of the context is
        open, its ``integrate`` is taken as open too, at its best: the units known, and those of them a
        completion integrates (found by Hypothesis: a bound of 103 over a completion of 4, a virtio-blk forced
        onto the root bus by integrate=3 with the e1000s that take those places counted as 0).
        """
        values = self._bound_values(ctx_id, values)
        key = self._bound_key(ctx_id, values)
        known = self._context_bounds.get(key)
        if known is None:
            known = self._context_lower_bound(ctx_id, values)
            self._context_bounds[key] = known
            return known[0]
        low, laid = known
        # the layouts it lays out are kept by the values of the context's scope (:attr:`_decisions`), where
        # :meth:`cost_floor` counts a layout's cost rather than its floor: laid out again for these values (from
        # :attr:`cache`), that the search prunes as it would have with the bound computed anew
        if not laid:
            self.decision(ctx_id, values)
        else:
            trial, _, _ = self._bound_trial(ctx_id, values)
            for assigned in laid:
                trial.update(assigned)
                self.decision(ctx_id, trial)
        return low

    def _bound_values(self, ctx_id: int, values: Mapping[str, int]) -> Mapping[str, int]:
        """``values`` as :meth:`context_lower_bound` reads them: without the context's ``integrate`` while one of its
        counts is open (see there)."""
        integrate = f"integrate[{ctx_id}]"
        if integrate in values and not all(name in values for name, _ in self._count_spec[ctx_id] if name):
            return {name: value for name, value in values.items() if name != integrate}
        return values

    @functools.cached_property
    def _context_bounds(self) -> dict[tuple[object, ...], tuple[int | None, tuple[tuple[tuple[str, int], ...], ...]]]:
        """:meth:`_context_lower_bound` by :meth:`_bound_key`."""
        return {}

    def _bound_key(self, ctx_id: int, values: Mapping[str, int]) -> tuple[object, ...]:
        """What :meth:`context_lower_bound` of a context depends on in ``values``.

        Its counts (the open ones taken as 0, as the bound takes them) by their value (:meth:`_counts_id`: a layout
        and its cost depend on nothing else of them) and whether one is open; the values of its own decisions
        (``None``: open); of another context in its scope (a new expander bus's, in the main root's), whether its
        counts set so far put a unit there (its open counts taken as 0) and its spare ports, which together say
        whether it is used, the only way it changes this context's layout; and whether any of those counts is open
        (the bound proves no layout fits only when none is). Its other layout decisions change nothing here.
        """
        own, others, other_counts = self._bound_key_specs[ctx_id]
        spec = self._count_spec[ctx_id]
        counts = self._counts_id((ctx_id, *[values.get(name, 0) if name else n for name, n in spec]))
        parts: list[object] = [ctx_id, counts, all(name in values for name, _ in spec if name), *map(values.get, own)]
        for names, constant, outside, spare in others:
            parts.append(constant or any(values.get(name, 0) for name in names))
            parts.append(tuple(map(values.get, outside)))
            parts.append(values.get(spare))
        if others:
            parts.append(all(name in values for name in other_counts))
        return tuple(parts)

    @functools.cached_property
    def _bound_key_specs(
        self,
    ) -> Mapping[
        int, tuple[tuple[str, ...], tuple[tuple[tuple[str, ...], bool, tuple[str, ...], str], ...], tuple[str, ...]]
    ]:
        """Context -> what :meth:`_bound_key` reads besides its counts: the variables of its scope that are its own
        decisions; per other context with variables in its scope, that context's count variables in the scope,
        whether a class goes there whatever the counts (a constant), its count variables outside the scope (their
        values as they are: with one open, :meth:`used` cannot tell) and its spare ports' variable (``""``: none);
        and the other contexts' count variables in the scope."""
        of_count = {name: k for (_, k), name in self.count_variables.items()}
        out = {}
        for ctx_id, scope in self.context_variables.items():
            own = f"[{ctx_id}]"
            mine = tuple(name for name in scope if name not in of_count and name.endswith(own))
            foreign = sorted(
                {of_count[name] for name in scope if of_count.get(name, ctx_id) != ctx_id}
                | {k for k, names in self.context_variables.items() if k != ctx_id and set(names) & set(scope)}
            )
            others = []
            for k in foreign:
                spec = self._count_spec[k]
                names = tuple(name for name, _ in spec if name)
                spare = f"spare[{k}]"
                others.append(
                    (
                        tuple(name for name in names if name in scope),
                        any(n for name, n in spec if not name),
                        tuple(name for name in names if name not in scope),
                        spare if spare in self.domains else "",
                    )
                )
            other_counts = tuple(name for name in scope if of_count.get(name, ctx_id) != ctx_id)
            out[ctx_id] = (mine, tuple(others), other_counts)
        return out

    def _bound_trial(self, ctx_id: int, values: Mapping[str, int]) -> tuple[dict[str, int], list[str], str | None]:
        """The assignment :meth:`_context_lower_bound` lays a context out with, its open counts taken as 0; the
        open layout decisions it tries each value of; and the one of those it tries last, in its domain's order
        (``None``: none)."""
        free = [name for name in self.context_variables.get(ctx_id, ()) if name not in values]
        layout = [name for name in free if not name.startswith("count[")]
        trial = {**values, **{name: 0 for name in free if name.startswith("count[")}}
        # another context's layout decisions (a new expander's, in the main root's scope) change this one's
        # layout only through whether that context is used, which its counts and spare ports say: one value
        # of each of the others does (16 layouts of the main root on pc with a new pxb become 4)
        own = f"[{ctx_id}]"
        for name in [n for n in layout if not n.endswith(own) and not n.startswith("spare[")]:
            layout.remove(name)
            trial[name] = self.domains[name][0]
        # on a conventional root, spare slots change only whether the layout fits (fewer always fit when more
        # do) and the spare-ports term (less with more): its first fitting count, most first, is its cheapest
        spare_name = f"spare[{ctx_id}]"
        last = spare_name if spare_name in layout and self.contexts[ctx_id].root_kind is RootKind.PCI else None
        if last is not None:
            layout.remove(last)
        return trial, layout, last

    def _context_lower_bound(
        self, ctx_id: int, values: Mapping[str, int]
    ) -> tuple[int | None, tuple[tuple[tuple[str, int], ...], ...]]:
        """:meth:`context_lower_bound`, computed, and the open layout decisions of each layout it laid out (none:
        the context's scope is set, and it laid that out)."""
        values = self._bound_values(ctx_id, values)
        scope = self.context_variables.get(ctx_id, ())
        free = [name for name in scope if name not in values]
        if not free:
            d = self.decision(ctx_id, values)
            assert d is not None
            return (self.context_cost(ctx_id, d, values) if d.feasible else None), ()
        trial, layout, last = self._bound_trial(ctx_id, values)
        laid: list[tuple[tuple[str, int], ...]] = []
        best: int | None = None
        combos = list(itertools.product(*(self.domains[name] for name in layout)))
        if last is None and len(combos) > 1:
            # the cheapest layout of the context, best first: each combination by its floor (its hotplug misses and
            # spare ports first, then with its controllers, which take longer), the least first, so that the
            # cheapest is found early and the floors of the rest, no less than the cheapest so far, stop the search.
            # A floor never exceeds its layout's cost, so the least is the least of every combination's, as in the
            # domains' order
            # the counts are set (the open ones taken as 0) whatever the combination
            count_key = self._count_key(ctx_id, trial)
            assert count_key is not None
            integrate_name, spare_name = f"integrate[{ctx_id}]", f"spare[{ctx_id}]"
            queue: list[tuple[int, bool, int]] = []
            for i, combo in enumerate(combos):
                trial.update(zip(layout, combo, strict=True))
                integrate, spare_n = trial.get(integrate_name, 0), trial.get(spare_name, 0)
                queue.append((self._own_floor(count_key, integrate, spare_n, refined=False), False, i))
            heapq.heapify(queue)
            while queue and (best is None or queue[0][0] < best):
                _, refined, i = heapq.heappop(queue)
                trial.update(zip(layout, combos[i], strict=True))
                if not refined:
                    integrate, spare_n = trial.get(integrate_name, 0), trial.get(spare_name, 0)
                    heapq.heappush(queue, (self._own_floor(count_key, integrate, spare_n, refined=True), True, i))
                    continue
                d = self.decision(ctx_id, trial)
                laid.append(tuple(zip(layout, combos[i], strict=True)))
                if d is not None and d.feasible:
                    cost = self.context_cost(ctx_id, d, trial)
                    best = cost if best is None else min(best, cost)
            combos = []
        for combo in combos:
            trial.update(zip(layout, combo, strict=True))
            for spare in self.domains[last] if last is not None else (0,):
                if last is not None:
                    trial[last] = spare
                if best is not None and last is None:
                    # a layout whose floor is no less than the cheapest so far cannot lower it
                    scope_key = self._scope_key(ctx_id, trial)
                    if scope_key is not None and (
                        self._context_floor(ctx_id, trial, scope_key, refined=False) >= best
                        or self._context_floor(ctx_id, trial, scope_key) >= best
                    ):
                        continue
                d = self.decision(ctx_id, trial)
                laid.append((*zip(layout, combo, strict=True), *(((last, spare),) if last is not None else ())))
                if d is not None and d.feasible:
                    cost = self.context_cost(ctx_id, d, trial)
                    best = cost if best is None else min(best, cost)
                    break
        # with some counts still open, a context that fits no layout now may fit none later either,
        # but the counts were lowered to 0, so "no layout" only proves something when none was open
        if best is None and not any(name.startswith("count[") for name in free):
            return None, tuple(laid)
        return best or 0, tuple(laid)

    def units_by_context(self, values: Mapping[str, int]) -> dict[int, list[Unit]]:
        """The units each context hosts: a class's units in order, to its candidates in order."""
        out: dict[int, list[Unit]] = {}
        for ci, cls in enumerate(self.classes):
            units = sorted(cls.units, key=_RANK)
            start = 0
            for ctx_id in self.candidates[ci]:
                n = self.count(ci, ctx_id, values) or 0
                if n:
                    out.setdefault(ctx_id, []).extend(units[start : start + n])
                start += n
        return out


def _root_io_room(topology: Topology) -> int:
    """The IO BAR bytes the root buses can still take before the firmware gives them a window more."""
    now = topology.root_io_bytes()
    windows = topology.root_io_windows(now)
    low, high = 0, 1 << 16  # the whole IO space: past it, a window more whatever the room
    while low < high:
        mid = (low + high + 1) // 2
        if topology.root_io_windows(now + mid) == windows:
            low = mid
        else:
            high = mid - 1
    return low


def formulate(
    topology: Topology,
    policy: Policy,
    units: Sequence[Unit],
    *,
    trees_via_dmi: bool = True,
    names_expander: bool = False,
    balance_io: bool = False,
    reuse: Reuse | None = None,
    spares_on_expander: bool = False,
) -> Problem:
    """The model of placing ``units`` in ``topology`` under ``policy``.

    ``trees_via_dmi=False`` keeps bridge trees off the dmi-to-pci-bridge (:attr:`Context.trees_via_dmi`);
    ``names_expander`` offers a node-less expander bus (:func:`build_contexts`); ``balance_io`` lets conventional
    roots deal their bridged IO BARs out balanced (:attr:`Context.balance_io`). ``reuse``: the assignments
    will be realised with new bridges and switches in these places of the request too (its empty ports, each a
    root port and its bus number fewer than the layout counts, and free conventional slots, each a bridge tree's
    top as a pci-bridge, likewise: a tree a unit at most; :meth:`Reuse.options`, the last): each context's bus
    numbers are counted with that many more, and a realised plan that then overflows them is no solution (the
    caller checks). ``spares_on_expander``: the spare ports the main root wants go to the existing expander bus with
    the most bus numbers left, when it has more than the main root (else only when the main root has fewer left
    than the spare ports need).
    """
    machine = topology.machine
    budget = topology.io_window_budget()
    classes = classify(units, io_matters=budget is not None)
    contexts = build_contexts(topology, policy, classes, names_expander=names_expander)
    if not trees_via_dmi:
        contexts = tuple(attrs.evolve(c, trees_via_dmi=False) for c in contexts)
    if balance_io:
        room = _root_io_room(topology)
        contexts = tuple(
            attrs.evolve(c, balance_io=True, root_io_room=room if c.bus == 0 and c.root_kind is RootKind.PCI else None)
            for c in contexts
        )
    offered = tuple(candidates(cls, contexts) for cls in classes)
    per_unit: dict[tuple[int, int], Counts] = {}
    for ci, cls in enumerate(classes):
        for ctx_id in offered[ci]:
            per_unit[(ci, ctx_id)] = add_units(contexts[ctx_id], Counts(), cls.units[:1], policy)
    # a context where a unit of the class is impossible whatever else goes there (_layout.unit_category: say one
    # that must not be hot-pluggable on pc's pci.0, whose every slot is) is no candidate: decide refuses every
    # layout holding one, so no plan changes, but left in, the search tries every count of the other classes
    # there before it sends the class elsewhere, and gives up on a few dozen devices (issue 9)
    class_candidates = tuple(
        tuple(k for k in cands if not per_unit[(ci, k)].impossible) for ci, cands in enumerate(offered)
    )
    per_unit = {key: c for key, c in per_unit.items() if key[1] in class_candidates[key[0]]}
    spare = spare_wanted(policy, contexts)
    budget = topology.io_window_budget()
    io_left = None if budget is None else budget - io_windows_used(topology)
    if io_left is not None and io_left < 0 and not topology.io_windows_short():
        # the pinned part counts more windows than the budget, and fits: the firmware drops the idle reservations it
        # has no room for (idle-reservations-harmless, measured). The model cannot count what the firmware drops, so
        # it leaves IO to the realised plan's check (backends: io_windows_short); with a negative budget no plan,
        # not even one that adds nothing, would have fitted (found by Hypothesis: a re-plan after a removal refused)
        io_left = None
    expanders = [c for c in topology.controllers if topology.model(c).expander and c.bus_nr is not None]
    ceiling = min([c.bus_nr for c in expanders if c.bus_nr], default=machine.bus_numbers)
    main_used = topology.bus_numbers_used(0) - sum(topology.subtree_bus_numbers(c.index) for c in expanders)
    bus_region = main_range = ceiling - main_used
    roomiest = _roomiest_expander(contexts, main_range)
    bus_host = roomiest if any(c.new_expander for c in contexts) else 0
    if bus_host:
        # the new expander buses take their bus numbers from the top of an existing one's range, which has more
        # left than the main root below the lowest expander (the main root keeps its own for itself)
        bus_region = contexts[bus_host].own_range or 0
        ranges = {0: main_range, bus_host: None}
        contexts = tuple(attrs.evolve(c, own_range=ranges[c.id]) if c.id in ranges else c for c in contexts)
    if reuse is not None:
        extra = {root: len(ports) for root, ports in reuse.ports.items()}
        for root, slots in reuse.bridge_slots.items():
            extra[root] = extra.get(root, 0) + min(len(slots), len(units))
        for c in contexts:
            if c.bus in extra and c.own_range is None and c.domain == "main":
                bus_region += extra[c.bus]  # the main root's, or the expander bus whose range new expanders share
        contexts = tuple(
            attrs.evolve(c, own_range=c.own_range + extra[c.bus]) if c.own_range is not None and c.bus in extra else c
            for c in contexts
        )
    # the spare ports the main root must add: those it wants less its own empty hot-pluggable ones
    need = spare.get(0, 0) - contexts[0].empty_hot_ports
    moved = need > main_range or (spares_on_expander and need > 0)
    if roomiest and moved and contexts[0].root_kind is RootKind.PCIE:
        # the spare ports the main root has no bus numbers for go where the numbers are (an empty hot-pluggable
        # root port on an expander bus is as spare as one on the main root, and costs the same); the expander's
        # layout counts its own empty ones, the main root's count for it too (found by the enumerator: a spare port
        # added on a pxb-pcie beside two empty ones on pcie.0)
        wanted = spare.pop(0)
        if not policy.spare_ports_per_node:
            wanted = need + contexts[roomiest].empty_hot_ports
        spare[roomiest] = max(spare.get(roomiest, 0), wanted)
    existing_host_bridges = sum(1 for c in topology.controllers if topology.model(c).root)

    variables: list[Variable] = []
    constraints: list[Constraint] = []
    count_variables: dict[tuple[int, int], str] = {}
    for ci, cls in enumerate(classes):
        cands = class_candidates[ci]
        if len(cands) < 2:
            continue
        n = len(cls.units)
        if cls.key[0] in ("switch", "bus"):
            values = [0, n]  # a group is never split
        elif n <= SPLIT_LIMIT:
            values = list(range(n + 1))
        else:
            step = -(-n // SPLIT_LIMIT)
            values = sorted({*range(0, n, step), n})
        names = []
        for ctx_id in cands:
            name = f"count[{ci}@{ctx_id}]"
            count_variables[(ci, ctx_id)] = name
            # the first context offered (the class's own NUMA node, or the main root) is preferred: most there first.
            # When the class is impossible there, no other takes its place, so the ranks of the values (the search's
            # tie-break) are those of the model that offered it, whose plans these are: no tie is broken anew
            domain = tuple(reversed(values)) if ctx_id == offered[ci][0] else tuple(values)
            variables.append(Variable(name, domain))
            names.append(name)
        constraints.append(Constraint(f"class {ci} placed", "exact-sum", tuple(names), total=n))

    # the contexts, and each one's most units (the top of its bridges' domain), as offered: the model is the one that
    # offered the classes every context, less the counts that were always 0
    active = sorted({0, *spare, *(k for cands in offered for k in cands)})
    context_variables: dict[int, tuple[str, ...]] = {}
    for ctx_id in active:
        ctx = contexts[ctx_id]
        own: list[str] = [
            count_variables[(ci, ctx_id)] for ci in range(len(classes)) if (ci, ctx_id) in count_variables
        ]
        most_units = sum(len(classes[ci].units) for ci in range(len(classes)) if ctx_id in offered[ci])
        integrable_most = sum(
            len(classes[ci].units)
            for ci in range(len(classes))
            if ctx_id in class_candidates[ci] and integrable(per_unit[(ci, ctx_id)]) > 0
        )
        if ctx.root_kind is RootKind.PCIE and ctx.can_integrate and integrable_most:
            top = min(integrable_most, len(ctx.free_slots))
            # the policy that prefers integration tries the most first; the others the fewest
            order = range(top, -1, -1) if policy.prefer_integrated else range(top + 1)
            variables.append(Variable(f"integrate[{ctx_id}]", tuple(order)))
            own.append(f"integrate[{ctx_id}]")
        if ctx.root_kind is RootKind.PCI:
            # more pci-bridges than the units and spares fill at 30 a bridge only cost controllers
            top = min(len(ctx.free_slots), -(-(most_units + spare.get(ctx_id, 0)) // (BRIDGE_SLOTS - 1)) + 1)
            variables.append(Variable(f"bridges[{ctx_id}]", tuple(range(top + 1))))
            own.append(f"bridges[{ctx_id}]")
        want = spare.get(ctx_id, 0)
        if want and ctx.root_kind is not RootKind.NEW_HOST_BRIDGE:
            variables.append(Variable(f"spare[{ctx_id}]", tuple(range(want, -1, -1))))
            own.append(f"spare[{ctx_id}]")
        context_variables[ctx_id] = tuple(own)
    # the main root keeps a slot for each new expander bus: its layout depends on theirs being used
    new_expander_scope = [name for k in active if contexts[k].new_expander for name in context_variables[k]]
    if 0 in context_variables:
        context_variables[0] = tuple(dict.fromkeys([*context_variables[0], *new_expander_scope]))

    problem = Problem(
        topology=topology,
        policy=policy,
        units=tuple(units),
        classes=classes,
        contexts=contexts,
        candidates=class_candidates,
        spare=spare,
        bus_region=bus_region,
        bus_host=bus_host,
        io_budget=io_left,
        host_bridges_left=machine.max_host_bridges - existing_host_bridges,
        variables=tuple(variables),
        constraints=(),
        count_variables=count_variables,
        context_variables=context_variables,
        domains={v.name: v.domain for v in variables},
        per_unit=per_unit,
    )
    constraints += _budget_constraints(problem, active)
    everything = tuple(v.name for v in variables)
    constraints.append(
        Constraint("objective", "objective", everything, bound=problem.lower_bound, floor=problem.cost_floor)
    )
    return attrs.evolve(
        problem,
        constraints=tuple(constraints),
        cache=problem.cache,
        group_counts=problem.group_counts,
        equal_counts=problem.equal_counts,
        layouts=problem.layouts,
    )


def _roomiest_expander(contexts: Sequence[Context], main_region: int) -> int:
    """The existing expander bus of the main domain whose range has the most bus numbers left, when that is more
    than ``main_region``, the main root's below the lowest expander; else 0. Where new expander buses may be added
    it is :attr:`Problem.bus_host` (they share one region: a choice made before the search, the larger)."""
    hosts = [c for c in contexts if c.domain == "main" and c.own_range is not None and c.bus is not None]
    best = max(hosts, key=lambda c: (c.own_range or 0, -c.id), default=None)
    return best.id if best is not None and (best.own_range or 0) > main_region else 0


def _budget_constraints(problem: Problem, active: Sequence[int]) -> list[Constraint]:
    """The hard constraints: each context's layout, then the budgets contexts share."""
    out: list[Constraint] = []
    for ctx_id in active:
        scope = problem.context_variables[ctx_id]

        def layout_fits(values: Mapping[str, int], ctx_id: int = ctx_id) -> bool:
            return problem.fits(ctx_id, values)

        out.append(Constraint(f"layout of {problem.contexts[ctx_id].label}", "check", scope, test=layout_fits))

    main = [k for k in active if problem.contexts[k].domain == "main" and problem.contexts[k].own_range is None]
    # a PCI Express root's layout is infeasible past the bus numbers its domain has left (decide's bus_cap), so
    # when it is the domain's only context its layout's check implies this one
    alone_capped = len(main) == 1 and problem.contexts[main[0]].root_kind is RootKind.PCIE and problem.bus_region >= 0

    def bus_numbers_fit(values: Mapping[str, int]) -> bool:
        if alone_capped:
            return True
        used = 0
        for k in main:
            d = problem.decision(k, values)
            if d is not None and d.feasible:
                used += problem.bus_numbers(k, d, values)
        return used <= problem.bus_region

    main_scope = tuple(dict.fromkeys(name for k in main for name in problem.context_variables[k]))
    out.append(Constraint("bus numbers", "check", main_scope, test=bus_numbers_fit))

    if problem.io_budget is not None:
        budget = problem.io_budget

        topology = problem.topology
        root_bytes = topology.root_io_bytes()
        root_windows = topology.root_io_windows(root_bytes)
        alone = active[0] if len(active) == 1 else None

        def io_windows_fit(values: Mapping[str, int]) -> bool:
            # one context: its decision within the budget (quick to tell), with room on the root buses for every IO
            # BAR it has, fits
            if alone is not None and problem.quick_fits(alone, values):
                count_key = problem._count_key(alone, values)
                assert count_key is not None
                most = sum(size * n for _, size, n in problem._counts_of(count_key).io_sizes)
                if topology.root_io_windows(root_bytes + most) == root_windows:
                    return True
            used = 0
            root = 0
            for k in active:
                d = problem.decision(k, values)
                if d is not None and d.feasible:
                    used += d.io_windows
                    root += d.root_io_bytes
            if root:
                # the root buses' IO BARs beyond the firmware's room there take windows too
                used += topology.root_io_windows(root_bytes + root) - root_windows
            return used <= budget

        scope = tuple(dict.fromkeys(name for k in active for name in problem.context_variables[k]))
        out.append(Constraint("IO windows", "check", scope, test=io_windows_fit))

    new_host = [k for k in active if problem.contexts[k].root_kind is RootKind.NEW_HOST_BRIDGE]
    if new_host:
        left = problem.host_bridges_left

        def host_bridges_fit(values: Mapping[str, int]) -> bool:
            used = 0
            for k in new_host:
                d = problem.decision(k, values)
                if d is not None:
                    used += d.host_bridges
            return used <= left

        scope = tuple(dict.fromkeys(name for k in new_host for name in problem.context_variables[k]))
        out.append(Constraint("host bridges", "check", scope, test=host_bridges_fit))
    return out
