"""The solver's model: units of demand, their classes, and the contexts that can host them.

Built from a topology and a policy by graph reasoning, before any search:
devices become *units* (one device, or the functions of one slot), units with
the same needs form *demand classes*, and the places new structure can grow
(the main root bus, existing expander buses, new expander buses per NUMA node,
pseries host bridges) become *contexts*. The CSP only chooses a context for
each chunk of each class; everything else is computed.
"""

from __future__ import annotations

from collections.abc import Sequence

import attrs

from pcitopo.devices import Device, HotplugNeed, Needs
from pcitopo.errors import InvalidInput, Unsatisfiable
from pcitopo.legality.catalog import Connect, Integrated
from pcitopo.policy.policy import Policy
from pcitopo.topology import Topology

__all__: list[str] = []


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
    # a slot group whose other members are already placed must join them: not supported
    placed_groups = {d.needs.slot_group for d in topology.devices if d.address is not None and d.needs.slot_group}
    placed_switch = {d.needs.switch_group for d in topology.devices if d.address is not None and d.needs.switch_group}
    placed_bus = {d.needs.bus_group for d in topology.devices if d.address is not None and d.needs.bus_group}
    for _, d in pending:
        for label, placed, what in (
            (d.needs.switch_group, placed_switch, "switch"),
            (d.needs.bus_group, placed_bus, "bus"),
        ):
            if label is not None and label in placed:
                raise InvalidInput(
                    f"device {d.id!r}",
                    f"{what} group {label!r} already has placed devices; give this device an address "
                    f"on that {what} (pcitopo does not add to a group that is already placed)",
                )
    units: list[Unit] = []
    memo: dict[tuple[str, Needs], Needs] = {}
    shapes: dict[tuple[object, ...], Unit] = {}
    for i, group, single in order:
        if single is not None:
            # most units are one device: their needs resolve the same way for the same kind and needs
            key = (single.kind, single.needs, single.io_bar)
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
        if group is not None and group in placed_groups:
            raise InvalidInput(
                f"device {members[0].id!r}",
                f"slot group {group!r} already has placed functions; give this device an address in that slot",
            )
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
    if hot is HotplugNeed.REQUIRED and not all(k.hotpluggable for k in kinds):
        own = [d for d, k in zip(members, kinds, strict=True) if not k.hotpluggable]
        if any(d.needs.hotplug is HotplugNeed.REQUIRED for d in own):
            d = next(d for d in own if d.needs.hotplug is HotplugNeed.REQUIRED)
            raise Unsatisfiable(
                [f"{d.id!r} requires hotplug, but a {d.kind} cannot be hot-plugged at all"],
                suggestions=[f"drop the hotplug requirement of {d.id!r}"],
            )
        # the policy's default does not apply to a kind that is never hot-plugged
        hot = HotplugNeed.ANY
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


def classify(units: Sequence[Unit]) -> tuple[DemandClass, ...]:
    """Group units with identical needs; classes in order of their first unit."""
    classes: dict[tuple[object, ...], list[Unit]] = {}
    for u in units:
        if u.switch_group is not None or u.bus_group is not None:
            # a group moves as one: one class, never split between contexts
            label = ("switch", u.switch_group) if u.switch_group is not None else ("bus", u.bus_group)
            classes.setdefault((*label, u.numa_node, u.numa_strict), []).append(u)
            continue
        key = (
            u.connect.value,
            u.hotplug.value,
            u.numa_node,
            u.numa_strict,
            u.integrated_required,
            u.can_integrate,
            u.has_io,
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


def unit_fits_pool(unit: Unit, pool: Pool, *, prefer_integrated: bool) -> bool:
    """Whether a unit may take a slot of an existing pool at no soft cost."""
    if unit.integrated_required and pool.bus != 0:
        return False
    if pool.integrated_root:
        if not unit.can_integrate:
            return False
        if not (unit.integrated_required or prefer_integrated):
            return False
    elif not (pool.accepts_pcie if unit.connect is Connect.PCIE_DEVICE else pool.accepts_pci):
        return False
    if unit.hotplug in (HotplugNeed.REQUIRED, HotplugNeed.PREFERRED) and not pool.hotpluggable:
        return False
    if unit.hotplug is HotplugNeed.FORBIDDEN and pool.hotpluggable:
        return False
    if unit.numa_node is not None and pool.numa_node != unit.numa_node:
        return False
    return not (unit.numa_node is None and pool.numa_node is not None)


def io_windows_used(topology: Topology) -> int:
    """4 KiB IO windows the firmware must give bridges of this topology (the io-space rule's count)."""
    return sum(topology.io_windows().values())
