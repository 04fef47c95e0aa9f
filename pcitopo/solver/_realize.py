"""Turn per-context decisions into concrete controllers and addresses.

Follows :mod:`pcitopo.solver._layout`'s rules exactly; the result is checked
again by the validator, so a disagreement is caught, never shipped.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Iterator, Mapping, Sequence

import attrs

from pcitopo.address import PciAddress
from pcitopo.devices import Controller, Device, HotplugNeed
from pcitopo.errors import InternalError, Unsatisfiable
from pcitopo.legality import identity
from pcitopo.legality.catalog import Catalog, Connect
from pcitopo.policy.policy import Policy
from pcitopo.solver._layout import (
    BRIDGE_SLOTS,
    Category,
    Context,
    Decision,
    IoSizes,
    RootKind,
    chain_buses,
    deal_groups,
    fanout,
    io_packable,
    last_resort_bucket,
    unit_category,
)
from pcitopo.solver.model import Problem, Reuse, Unit
from pcitopo.topology import Topology

__all__: list[str] = []


_rank, _io_size = operator.attrgetter("rank"), operator.attrgetter("io_size")
"""Sort keys of units, C functions rather than lambdas (the realiser sorts hundreds of units a plan)."""


def _addr(bus: int, slot: int, function: int = 0) -> PciAddress:
    return PciAddress._trusted(0, bus, slot, function)


class Builder:
    """Hands out controller indexes and identity values, and collects the result."""

    def __init__(
        self,
        used_indexes: set[int],
        used_chassis_port: set[tuple[int, int]],
        used_chassis_nr: set[int],
        used_target_index: set[int],
        crash_kinds: frozenset[str] = frozenset(),
    ) -> None:
        self.crash_kinds = crash_kinds
        """Device kinds QEMU crashes on beside a pci-bridge under the firmware (``bridge-sibling-crash``)."""
        self.used_indexes = set(used_indexes)
        self.used_chassis_port = set(used_chassis_port)
        self.used_chassis = {c for c, _ in used_chassis_port}
        self.used_chassis_nr = set(used_chassis_nr)
        self.used_target_index = set(used_target_index)
        self.controllers: list[Controller] = []
        self.placements: dict[str, PciAddress] = {}
        self.multifunction: dict[str, bool] = {}
        self._next = 1

    def next_index(self) -> int:
        i = self._next
        while i in self.used_indexes:
            i += 1
        self._next = i + 1
        if i > 255:
            raise Unsatisfiable(
                ["more than 255 PCI controllers would be needed"],
                facts=["libvirt and pcitopo number controllers 0..255"],
                suggestions=["use fewer devices or larger bridges"],
            )
        self.used_indexes.add(i)
        return i

    def _chassis(self, index: int, port: int) -> int:
        """A chassis no other PCIe port uses: QEMU registers (chassis, slot), and slot stays 0."""
        # fresh_chassis's first choice, the index, without the call when it is free (the common case)
        chassis = index if index not in self.used_chassis else identity.fresh_chassis(index, self.used_chassis)
        self.used_chassis_port.add((chassis, port))
        self.used_chassis.add(chassis)
        return chassis

    def root_port(self, address: PciAddress, *, hotplug: bool | None = None) -> Controller:
        index = self.next_index()
        port = address.devfn
        c = _new_controller(index, "pcie-root-port", address, self._chassis(index, port), port, hotplug)
        self.controllers.append(c)
        return c

    def downstream_port(self, address: PciAddress, *, hotplug: bool | None = None) -> Controller:
        index = self.next_index()
        port = address.slot
        c = _new_controller(index, "pcie-switch-downstream-port", address, self._chassis(index, port), port, hotplug)
        self.controllers.append(c)
        return c

    def simple(self, model: str, address: PciAddress) -> Controller:
        index = self.next_index()
        c = _new_controller(index, model, address)
        self.controllers.append(c)
        return c

    def pci_bridge(self, address: PciAddress) -> Controller:
        index = self.next_index()
        nr = identity.fresh_chassis_nr(index, self.used_chassis_nr)
        self.used_chassis_nr.add(nr)
        c = Controller(index, "pci-bridge", address=address, chassis_nr=nr)
        self.controllers.append(c)
        return c

    def host_bridge(self, numa_node: int | None) -> Controller:
        index = self.next_index()
        target = identity.fresh_target_index(self.used_target_index)
        self.used_target_index.add(target)
        c = Controller(index, "spapr-pci-host-bridge", target_index=target, numa_node=numa_node)
        self.controllers.append(c)
        return c

    def place(self, unit: Unit, slot: PciAddress) -> None:
        if len(unit.devices) == 1 and slot.function == 0:  # the common case, without the multifunction work
            self.placements[unit.devices[0].id] = slot
            return
        functions = unit_functions(unit.devices)
        for f, d in zip(functions, unit.devices, strict=True):
            self.placements[d.id] = slot.with_function(f)
        if len(unit.devices) > 1:
            self.multifunction[unit.devices[functions.index(0)].id] = True

    def set_multifunction(self) -> None:
        """multifunction=True on function 0 of every new slot holding several new root ports."""
        by_slot: dict[tuple[int, int], list[int]] = {}
        for i, c in enumerate(self.controllers):
            if c.address is not None:
                by_slot.setdefault((c.address.bus, c.address.slot), []).append(i)
        for members in by_slot.values():
            if len(members) > 1:
                for i in members:
                    c = self.controllers[i]
                    if c.address is not None and c.address.function == 0:
                        self.controllers[i] = attrs.evolve(c, multifunction=True)


def _by_category(ctx: Context, units: Sequence[Unit], policy: Policy) -> dict[Category, list[Unit]]:
    # by the member's value, a str: a dict look-up by an enum member calls its Python Enum.__hash__, a unit (a
    # thousand a plan); the categories in the order of their first unit, as before
    by_value: dict[str, tuple[Category, list[Unit]]] = {}
    for u in units:
        category = unit_category(ctx, u, policy)[0]
        found = by_value.get(category._value_)
        if found is None:
            found = by_value[category._value_] = (category, [])
        found[1].append(u)
    return dict(by_value.values())


def _io_first(units: Sequence[Unit]) -> list[Unit]:
    """``units`` largest IO BAR first, then by rank: two stable sorts by C key functions give what the key
    ``(-io_size, rank)`` gives, without a Python call a unit (the trees hold hundreds)."""
    return sorted(sorted(units, key=_rank), key=_io_size, reverse=True)


def _realize_pcie(
    b: Builder,
    ctx: Context,
    root_bus: int,
    decision: Decision,
    units: Sequence[Unit],
    policy: Policy,
    *,
    free_slots: Sequence[int],
    port_functions: Sequence[PciAddress],
    dmi_preferred: Sequence[PciAddress] = (),
    io_matters: bool = True,
    empty_ports: Sequence[tuple[int, frozenset[Connect]]] = (),
    bridge_slots: Sequence[PciAddress] = (),
    catalog: Catalog | None = None,
) -> None:
    """Lay out a PCIe root complex context (``free_slots`` excludes slots kept for expanders).

    ``empty_ports``: ports of the request with nothing below them (index, what they accept), in the order they
    are taken: a new pcie-to-pci-bridge or switch plugs into the first that takes it instead of a new root port.
    ``bridge_slots``: free slots of the request's conventional buses that take a pci-bridge: where no empty port is
    left, a bridge tree's top is a pci-bridge there instead of a pcie-to-pci-bridge behind a new root port.

    ``io_matters``: the firmware has an IO-window budget. Without one the model's classes do not tell units
    with an IO BAR from others (:func:`~pcitopo.solver.model.classify`), so packing takes either.
    """
    cats = _by_category(ctx, units, policy)
    slots = list(free_slots)

    def take_slot() -> int:
        return slots.pop(0)

    # 1. integrated endpoints
    integrated = list(cats.get(Category.INTEGRATED, []))
    opt_pcie = _io_first(cats.get(Category.OPTIONAL_INTEGRATED_PCIE, []))
    # units that must not be hot-plugged are integrated first: left over, they need a dmi-to-pci-bridge's slot
    opt_pci_all = cats.get(Category.OPTIONAL_INTEGRATED_PCI, [])
    opt_pci = _io_first([u for u in opt_pci_all if u.hotplug is HotplugNeed.FORBIDDEN])
    opt_pci += _io_first([u for u in opt_pci_all if u.hotplug is not HotplugNeed.FORBIDDEN])
    integrated += opt_pcie[: decision.integrated_pcie]
    integrated += opt_pci[: decision.integrated_pci]
    overflow_pcie = opt_pcie[decision.integrated_pcie :]
    overflow_pci = [u for u in opt_pci[decision.integrated_pci :] if u.hotplug is not HotplugNeed.FORBIDDEN]
    overflow_forbidden = [u for u in opt_pci[decision.integrated_pci :] if u.hotplug is HotplugNeed.FORBIDDEN]
    for u in sorted(integrated, key=_rank):
        b.place(u, _addr(root_bus, take_slot()))

    port_units = sorted([*cats.get(Category.ROOT_PORT, []), *overflow_pcie], key=_rank)
    tree_units = _io_first([*cats.get(Category.BRIDGE_TREE, []), *overflow_pci])
    # last-resort integration, bucket by bucket, in definition order
    if any(n for _, n in decision.last_resort):
        wanted = dict(decision.last_resort)
        moved: list[Unit] = []
        for source in (port_units, tree_units):
            for u in _io_first(source):
                bucket = last_resort_bucket(ctx, u, unit_category(ctx, u, policy)[0])
                if bucket is None and u in overflow_pcie:
                    bucket = last_resort_bucket(ctx, u, Category.ROOT_PORT)
                if bucket and wanted.get(bucket, 0) > 0:
                    wanted[bucket] -= 1
                    moved.append(u)
        # by identity (distinct units are never equal: each holds its own devices), not a scan of the list a unit
        taken_ids = set(map(id, moved))
        port_units = [u for u in port_units if id(u) not in taken_ids]
        tree_units = [u for u in tree_units if id(u) not in taken_ids]
        for u in sorted(moved, key=_rank):
            b.place(u, _addr(root_bus, take_slot()))
    dmi_units = _io_first([*cats.get(Category.NOT_HOTPLUGGABLE_BRIDGE, []), *overflow_forbidden])
    # bridge-tree units moved to the dmi-to-pci-bridge (_layout._Moves): no hotplug need first, IO-BAR ones first
    tree_category = set(map(id, cats.get(Category.BRIDGE_TREE, [])))
    for need, n in ((HotplugNeed.ANY, decision.dmi_any), (HotplugNeed.PREFERRED, decision.dmi_preferred)):
        movable = [u for u in tree_units if id(u) in tree_category and u.hotplug is need][:n]
        dmi_units += movable
        movable_ids = set(map(id, movable))
        tree_units = [u for u in tree_units if id(u) not in movable_ids]
    # bridge-tree units packed 8 a slot as functions (_layout._Moves.pack_pci): those with no hotplug need first
    packed_groups: list[list[Unit]] = []
    if decision.pack_pci:
        # bridge-tree units, and the units the policy would integrate that were not (no hotplug need only)
        overflow = {id(u) for u in overflow_pci if u.hotplug is HotplugNeed.ANY}
        packable = [
            u
            for u in tree_units
            if (id(u) in tree_category or id(u) in overflow)
            and len(u.devices) == 1
            # IO-BAR units only with decision.pack_io (_layout._Moves.pack_io: all of them, on the root bus)
            and not (io_matters and u.has_io and not decision.pack_io)
        ]
        if decision.pack_tree_io:
            # the trees' IO-BAR units and no others, on the trees' slots (_layout._Moves.pack_tree_io)
            packable = [
                u
                for u in tree_units
                if (id(u) in tree_category or id(u) in overflow) and len(u.devices) == 1 and u.has_io
            ]
        packed = [u for u in packable if u.hotplug is HotplugNeed.ANY][: decision.pack_pci_any]
        preferred = [u for u in packable if u.hotplug is HotplugNeed.PREFERRED]
        packed += preferred[: decision.pack_pci - decision.pack_pci_any]
        if len(packed) != decision.pack_pci:  # pragma: no cover - the layout counts only units that exist
            raise InternalError(f"{ctx.label}: {decision.pack_pci} units to pack, {len(packed)} found")
        taken = set(map(id, packed))
        tree_units = [u for u in tree_units if id(u) not in taken]
        # with the trees' IO-BAR units, largest first within each need (the layout counts each group's bytes)
        packed.sort(
            key=lambda u: (u.hotplug is not HotplugNeed.ANY, -u.io_size if decision.pack_tree_io else 0, u.rank)
        )
        packed_groups = [packed[i : i + 8] for i in range(0, len(packed), 8)]
    # the first groups on the root bus, then the units beside its root ports (all the rest), or the next groups on
    # the dmi-to-pci-bridge and the rest on the trees' slots
    root_groups = packed_groups[: decision.pack_root_groups]
    beside_ports = [u for group in packed_groups[decision.pack_root_groups :] for u in group]
    if len(beside_ports) != decision.pack_beside:
        beside_ports = []
    dmi_groups = packed_groups[decision.pack_root_groups :][: decision.pack_dmi_groups]
    tree_items: list[Unit | list[Unit]] = [
        *tree_units,
        *packed_groups[decision.pack_root_groups + decision.pack_dmi_groups :],
    ]
    if decision.pack_tree_io:
        # the groups dealt to the trees' buses in turn, each bus's units alone after them (_layout._Moves.pack_tree_io)
        buses = chain_buses(decision.tree_sizes)
        groups = packed_groups[decision.pack_root_groups + decision.pack_dmi_groups :]
        alone = list(tree_units)
        tree_items = []
        for cap, mine in zip(buses, deal_groups(buses, len(groups)), strict=True):
            tree_items += [groups[k] for k in mine]
            tree_items += alone[: cap - len(mine)]
            del alone[: cap - len(mine)]
    if beside_ports:
        dmi_groups, tree_items = [], list(tree_units)
    for group in root_groups:
        _place_group(b, group, _addr(root_bus, take_slot()))

    # 2. dmi-to-pci-bridge (non-hotpluggable conventional slots, or the only bridge on offer)
    via_dmi = list(tree_items) if decision.dmi and decision.tree_via_dmi else []
    if via_dmi:
        tree_items = []
    # an ordered policy numbers buses in device order: the dmi-to-pci-bridge (its index, so its bus) comes after
    # the ports and trees when they hold a device defined before all it takes
    on_dmi = [*dmi_units, *(u for group in dmi_groups for u in group)]
    in_trees = [u for item in tree_items for u in (item if isinstance(item, list) else [item])]
    late_dmi = policy.ordered and _defined_later(on_dmi, [*port_units, *in_trees])
    dmi_slot: int | None = None
    if decision.dmi:
        pref = [a.slot for a in dmi_preferred if a.bus == root_bus and a.slot in slots]
        # late, it takes the last free slot too: the guest numbers the buses below a root bus in slot order
        dmi_slot = pref[0] if pref else slots.pop() if late_dmi else take_slot()
        if pref:
            slots.remove(dmi_slot)

    def realize_dmi(slot: int) -> None:
        dmi = b.simple("dmi-to-pci-bridge", _addr(root_bus, slot))
        dslot = 0
        for u in dmi_units:
            b.place(u, _addr(dmi.index, dslot))
            dslot += 1
        for group in dmi_groups:
            _place_group(b, group, _addr(dmi.index, dslot))
            dslot += 1
        remaining = via_dmi
        for _ in range(decision.dmi_bridges if remaining else 0):
            br = b.pci_bridge(_addr(dmi.index, dslot))
            dslot += 1
            for s in range(1, BRIDGE_SLOTS + 1):
                if not remaining:
                    break
                _place_item_at(b, remaining.pop(0), _addr(br.index, s))

    if dmi_slot is not None and not late_dmi:
        realize_dmi(dmi_slot)

    # 3. root ports: positions in order (free functions of existing multifunction slots, then new slots)
    positions = _port_positions(root_bus, port_functions, slots, policy)

    def next_port_position() -> PciAddress:
        try:
            return next(positions)
        except StopIteration:
            raise Unsatisfiable([f"{ctx.label} ran out of slots for root ports"]) from None

    # units packed beside the root ports take the free functions of the slots of the ports the layout counted:
    # with a port of the request in place of a new one they would lack one, so such a layout reuses none
    reusable = [] if beside_ports else list(empty_ports)
    bridge_slots_left = [] if beside_ports else list(bridge_slots)

    def uplink(model: str) -> int:
        """The bus a new bridge or switch plugs into: an empty port of the request that takes it (one controller
        fewer than the model counted: the realised plan's score is the judge), or a new root port."""
        if reusable and catalog is not None:
            connect = catalog.controller(model).connect
            for i, (index, accepts) in enumerate(reusable):
                if connect in accepts:
                    del reusable[i]
                    return index
        return b.root_port(next_port_position()).index

    tree_rp = len(decision.tree_sizes) if tree_items else 0
    items, beside_bridges = _port_items(port_units, ctx, policy, decision)
    direct_units = items[: decision.direct_ports]
    switched_units = items[decision.direct_ports :]

    def realize_direct() -> None:
        for item in direct_units:
            rp = b.root_port(next_port_position(), hotplug=_item_hotplug(item, policy))
            _place_item(b, item, rp.index)

    def realize_trees() -> None:
        nonlocal beside_bridges
        remaining = list(tree_items)
        for size in decision.tree_sizes if tree_rp else ():
            # endpoints sharing the port: functions 1..7 of its slot, beside the bridge at function 0 (the port's
            # hotplug is theirs: the bridge's own slots are hot-plugged through its SHPC either way)
            beside, beside_bridges = beside_bridges[:7], beside_bridges[7:]
            if not beside and not reusable and bridge_slots_left:
                # a pci-bridge in a free slot of a conventional bus of the request: one controller, not two
                _fill_tree(b, b.pci_bridge(bridge_slots_left.pop(0)).index, remaining[:size])
                del remaining[:size]
                continue
            if beside and not reusable:
                port = b.root_port(next_port_position(), hotplug=_item_hotplug(beside, policy)).index
            else:
                # an empty port of the request keeps its own hotplug, whatever units share its slot with the bridge
                port = uplink("pcie-to-pci-bridge")
            at = len(b.controllers)  # the bridge's place in the list, for its multifunction below
            bridge = b.simple("pcie-to-pci-bridge", _addr(port, 0))
            _fill_tree(b, bridge.index, remaining[:size])
            del remaining[:size]
            for function, u in enumerate(beside, start=1):
                b.placements[u.devices[0].id] = _addr(port, 0, function)
            if beside:
                b.controllers[at] = attrs.evolve(bridge, multifunction=True)

    # the guest numbers buses depth first in slot order: under an ordered policy the bridge trees take the first
    # ports when they hold a device defined before all of the direct ports' devices
    trees_first = (
        policy.ordered and tree_rp > 0 and _defined_later([u for item in direct_units for u in item], in_trees)
    )
    if trees_first:
        realize_trees()
    realize_direct()
    for _label, members in _groups(cats.get(Category.SWITCH_GROUP, []), "switch_group"):
        up = b.simple("pcie-switch-upstream-port", _addr(uplink("pcie-switch-upstream-port"), 0))
        for s, u in enumerate(members):
            dp = b.downstream_port(_addr(up.index, s), hotplug=_port_hotplug(u, policy))
            b.place(u, _addr(dp.index, 0))
    for _label, members in _groups(cats.get(Category.BUS_GROUP, []), "bus_group"):
        bridge = b.simple("pcie-to-pci-bridge", _addr(uplink("pcie-to-pci-bridge"), 0))
        for s, u in enumerate(members, start=1):
            b.place(u, _addr(bridge.index, s))
    if not trees_first:
        realize_trees()
    # switches: their uplinks, then downstream ports for the remaining units and spares
    spare_left = decision.spare
    downstream_needed = decision.downstream
    for _ in range(decision.switches):
        up = b.simple("pcie-switch-upstream-port", _addr(uplink("pcie-switch-upstream-port"), 0))
        for s in range(32):
            if downstream_needed == 0:
                break
            downstream_needed -= 1
            if switched_units:
                item = switched_units.pop(0)
                dp = b.downstream_port(_addr(up.index, s), hotplug=_item_hotplug(item, policy))
                _place_item(b, item, dp.index)
            else:
                b.downstream_port(_addr(up.index, s))
                spare_left -= 1
    if dmi_slot is not None and late_dmi:
        realize_dmi(dmi_slot)
    for _ in range(max(0, spare_left)):
        b.root_port(next_port_position())
    if beside_ports:
        _place_beside_ports(b, ctx, beside_ports, [next_port_position() for _ in beside_ports])


def _place_beside_ports(b: Builder, ctx: Context, units: Sequence[Unit], positions: Sequence[PciAddress]) -> None:
    """Packed units at the free functions of root-bus slots holding root ports (``Decision.pack_beside``), with
    multifunction on the port at function 0 of each such slot."""
    ports = {(c.address.bus, c.address.slot, c.address.function): i for i, c in enumerate(b.controllers) if c.address}
    for u, at in zip(units, positions, strict=True):
        if at.function == 0:  # pragma: no cover - the layout counts only functions of slots with a port
            raise InternalError(f"{ctx.label}: no root port's slot has a free function for {u.name}")
        b.placements[u.devices[0].id] = at
        first = ports.get((at.bus, at.slot, 0))
        if first is not None:  # a new port (an existing one at function 0 has multifunction on already)
            c = b.controllers[first]
            if c.multifunction is not True:
                b.controllers[first] = attrs.evolve(c, multifunction=True)


def _defined_later(units: Sequence[Unit], others: Sequence[Unit]) -> bool:
    """Whether the first of ``units`` ranks after the first of ``others`` (the order term compares devices of one
    kind, and NICs across kinds: the first device of each group stands for it)."""
    return bool(units and others) and min(u.rank for u in units) > min(u.rank for u in others)


def _port_items(
    port_units: Sequence[Unit], ctx: Context, policy: Policy, decision: Decision
) -> tuple[list[list[Unit]], list[Unit]]:
    """What each new port holds: one unit, or up to 8 sharing it as functions (_layout._Moves), in rank order;
    and the sharing units that go beside the trees' pcie-to-pci-bridges (the first ones)."""
    root_port = set(map(id, (u for u in port_units if unit_category(ctx, u, policy)[0] is Category.ROOT_PORT)))
    packed: list[Unit] = []
    for need, n in ((HotplugNeed.ANY, decision.pack_any), (HotplugNeed.PREFERRED, decision.pack_preferred)):
        packed += [u for u in port_units if id(u) in root_port and u.hotplug is need and len(u.devices) == 1][:n]
    packed.sort(key=_rank)
    packed_ids = set(map(id, packed))
    items = [[u] for u in port_units if id(u) not in packed_ids]
    beside_bridges, packed = packed[: decision.on_tree_ports], packed[decision.on_tree_ports :]
    items += [packed[i : i + 8] for i in range(0, len(packed), 8)]
    return sorted(items, key=lambda item: item[0].rank), beside_bridges


def _item_hotplug(item: Sequence[Unit], policy: Policy) -> bool | None:
    """A port's hotplug setting: its unit's, or for units sharing it off with ``hotplug_off_occupied``."""
    if len(item) == 1:
        return _port_hotplug(item[0], policy)
    if any(u.hotplug is HotplugNeed.FORBIDDEN for u in item) or policy.hotplug_off_occupied:
        return False
    return None


def _place_item(b: Builder, item: Sequence[Unit], bus: int) -> None:
    """A port's units: one at slot 0, or several as functions 0, 1, ... of slot 0 (multifunction on 0)."""
    if len(item) == 1:
        b.place(item[0], _addr(bus, 0))
        return
    for function, u in enumerate(item):
        b.placements[u.devices[0].id] = _addr(bus, 0, function)
    b.multifunction[item[0].devices[0].id] = True


def _fill_tree(b: Builder, top: int, units: Sequence[Unit | list[Unit]]) -> None:
    """Place units on a bridge tree: the top bridge's free slots first, then each pci-bridge chained below it.

    With ``m`` pci-bridges (:func:`~pcitopo.solver._layout.fanout`), each but the
    last takes slot 1 of the bridge above it and the units its slots 2..31; the
    last one's units take its slots 1..31. So addresses grow with the units'
    order, and only the last bridge can be one whose subtree has no IO BAR (the
    one the firmware reserves a window for; ``_layout.TREE_CAPACITY`` says why).
    A list is a group of packed units taking one slot (:func:`_place_group`).
    """
    m = fanout(len(units))
    if m and b.crash_kinds:
        units = _crash_kinds_last(units, b.crash_kinds)
    order: list[PciAddress] = []
    bus = top
    for _ in range(m):
        order += [_addr(bus, s) for s in range(2, BRIDGE_SLOTS + 1)]
        bus = b.pci_bridge(_addr(bus, 1)).index
    order += [_addr(bus, s) for s in range(1, BRIDGE_SLOTS + 1)]
    for u, a in zip(units, order, strict=False):
        _place_item_at(b, u, a)


def _crash_kinds_last(units: Sequence[Unit | list[Unit]], kinds: frozenset[str]) -> list[Unit | list[Unit]]:
    """``units`` with those holding a device of ``kinds`` last, each part in its own order.

    In a chain every bus but the last holds the next pci-bridge, and QEMU 7.2 crashes under OVMF on some
    device kinds beside a pci-bridge off the root bus (rule ``firmware-crash``): the last bus has none, so
    those units go there. Their order among themselves is kept, and so the order term of their kind. The
    IO windows may differ from the model's count (IO endpoints first), which the realised plan's check
    decides; where the last bus cannot take them all the rule still refuses the plan.
    """

    def crashes(item: Unit | list[Unit]) -> bool:
        members = item if isinstance(item, list) else [item]
        return any(d.kind in kinds for u in members for d in u.devices)

    return sorted(units, key=crashes)  # stable: False before True, each part in its order


def _place_item_at(b: Builder, item: Unit | list[Unit], slot: PciAddress) -> None:
    """A unit at a slot, or a group of packed units as its functions."""
    if isinstance(item, list):
        _place_group(b, item, slot)
    else:
        b.place(item, slot)


def _place_group(b: Builder, group: Sequence[Unit], slot: PciAddress) -> None:
    """Single-device units as functions 0, 1, ... of one slot, multifunction on function 0 when there are several."""
    for function, u in enumerate(group):
        b.placements[u.devices[0].id] = slot.with_function(function)
    if len(group) > 1:
        b.multifunction[group[0].devices[0].id] = True


def _groups(units: Sequence[Unit], attr: str) -> list[tuple[str, list[Unit]]]:
    """Units by group label, groups in order of their first unit, units in placement order."""
    groups: dict[str, list[Unit]] = {}
    for u in sorted(units, key=_rank):
        groups.setdefault(str(getattr(u, attr)), []).append(u)
    return list(groups.items())


def _port_hotplug(u: Unit, policy: Policy) -> bool | None:
    """Hotplug off on a port whose device must not be hot-plugged, and with ``hotplug_off_occupied``
    on one whose device does not ask for hotplug (a device that prefers it keeps it: the policy's
    wish for occupied ports never overrides a device's own)."""
    if u.hotplug is HotplugNeed.FORBIDDEN:
        return False
    if policy.hotplug_off_occupied and u.hotplug is HotplugNeed.ANY:
        return False
    return None


def _port_positions(
    bus: int, port_functions: Sequence[PciAddress], slots: list[int], policy: Policy
) -> Iterator[PciAddress]:
    if policy.port_packing == "multifunction":
        yield from port_functions
    while slots:
        slot = slots.pop(0)
        functions = range(8) if policy.port_packing == "multifunction" else range(1)
        for f in functions:
            yield _addr(bus, slot, f)


def _realize_pci(
    b: Builder,
    ctx: Context,
    root_bus: int,
    decision: Decision,
    units: Sequence[Unit],
    policy: Policy,
    *,
    free_slots: Sequence[int],
) -> None:
    """Lay out a conventional root context: direct slots (IO endpoints first), then pci-bridges."""
    cats = _by_category(ctx, units, policy)
    slots = list(free_slots)
    root_slot = cats.get(Category.ROOT_SLOT, [])
    # as _layout._decide_pci: units preferring hotplug (the root is not hotpluggable) are bridged first
    wants_bridge = [u for u in root_slot if _prefers_a_bridge(ctx, u)]
    # a unit that must be integrated (the primary video the solver puts on bus 0) takes a direct slot first
    others = sorted(_io_first([u for u in root_slot if not _prefers_a_bridge(ctx, u)]), key=_not_integrated)
    if decision.bus_packing:
        # of one IO BAR size, the root's (hotpluggable) slots take those that cannot be packed first, then those
        # preferring hotplug: the units left to pack lose least by it (_layout._pci_mix counts the same)
        others.sort(key=lambda u: (_not_integrated(u), -u.io_size, _pack_rank(u)))
    preferred = _io_first(wants_bridge)
    others_direct = decision.root_slot_units - decision.preferred_direct
    if decision.root_io:
        # the root's slots hold the BARs that fit its room (_layout._pci_layout with Context.balance_io): of each
        # size the first units in the order above
        others = _dealt(others, [decision.root_io])
    direct = [*others[:others_direct], *preferred[: decision.preferred_direct]]
    bridged = _io_first(
        [
            *cats.get(Category.HOTPLUG_BRIDGE_ONLY, []),
            *others[others_direct:],
            *preferred[decision.preferred_direct :],
        ]
    )
    for u in sorted(direct, key=_rank):
        b.place(u, _addr(root_bus, slots.pop(0)))
    for _, members in _groups(cats.get(Category.BUS_GROUP, []), "bus_group"):
        br = b.pci_bridge(_addr(root_bus, slots.pop(0)))
        for s, u in enumerate(members, start=1):
            b.place(u, _addr(br.index, s))
    if decision.bus_packing:
        # the bridged IO-BAR units packed 8 a slot, on each bridge's bus as many as the layout says, then the units
        # alone (_layout._pci_packing)
        packable = [u for u in bridged if io_packable(u)]
        packed = [u for u in packable if u.hotplug is HotplugNeed.ANY][: decision.pack_pci_any]
        packed += [u for u in packable if u.hotplug is HotplugNeed.PREFERRED][: decision.pack_pci - len(packed)]
        taken = set(map(id, packed))
        alone = [u for u in bridged if id(u) not in taken]
        if len(packed) != decision.pack_pci:  # pragma: no cover - the layout counts only units that exist
            raise InternalError(f"{ctx.label}: {decision.pack_pci} units to pack, {len(packed)} found")
        if decision.bus_io:
            # the BARs dealt out balanced (_iobalance.balance_buses): each bus takes, of each size, the first units
            # of that size of the packed ones and of those alone, so each order is kept within a size
            packed = _dealt(packed, [p for p, _ in decision.bus_io])
            alone = _dealt(alone, [a for _, a in decision.bus_io])
        for n_packed, n_alone in decision.bus_packing:
            br = b.pci_bridge(_addr(root_bus, slots.pop(0)))
            groups: list[Unit | list[Unit]] = [packed[i : min(i + 8, n_packed)] for i in range(0, n_packed, 8)]
            _fill_tree(b, br.index, [*groups, *alone[:n_alone]])
            del packed[:n_packed]
            del alone[:n_alone]
        return
    for size in decision.tree_sizes:
        br = b.pci_bridge(_addr(root_bus, slots.pop(0)))
        _fill_tree(b, br.index, bridged[:size])
        del bridged[:size]


def _dealt(units: Sequence[Unit], per_bus: Sequence[IoSizes]) -> list[Unit]:
    """``units`` reordered bus by bus as ``per_bus`` deals their IO BARs (sizes, and units of each size), the
    units of one size in their order, then those dealt to none in their order: cutting the result at each bus's
    count gives each bus its BARs."""
    by_size: dict[int, list[Unit]] = {}
    for u in units:
        by_size.setdefault(u.io_size, []).append(u)
    out: list[Unit] = []
    for sizes in per_bus:
        for size, n in sizes:
            mine = by_size.get(size, [])
            if len(mine) < n:  # pragma: no cover - the layout deals only BARs that exist
                raise InternalError(f"{n} units with {size} bytes of IO BAR dealt, {len(mine)} found")
            out += mine[:n]
            del mine[:n]
    taken = set(map(id, out))
    return out + [u for u in units if id(u) not in taken]


def _not_integrated(u: Unit) -> bool:
    return not u.integrated_required


def _pack_rank(u: Unit) -> int:
    """A unit's rank among those of one IO BAR size for the root's slots when bridged units are packed: those that
    cannot be packed (hotplug required, several devices) first, then those preferring hotplug, then the others."""
    if not io_packable(u):
        return 0
    return 1 if u.hotplug is HotplugNeed.PREFERRED else 2


def _prefers_a_bridge(ctx: Context, u: Unit) -> bool:
    """A root-slot unit that prefers hotplug on a root that is not hotpluggable (see ``_count_alternatives``)."""
    return u.hotplug is HotplugNeed.PREFERRED and not ctx.root_hotplug and not u.integrated_required


def _realize_new_host_bridges(b: Builder, ctx: Context, decision: Decision, units: Sequence[Unit]) -> None:
    remaining = sorted(units, key=_rank)
    for _ in range(decision.host_bridges):
        host_bridge = b.host_bridge(ctx.numa_node)
        for s in range(1, BRIDGE_SLOTS + 1):
            if not remaining:
                break
            b.place(remaining.pop(0), _addr(host_bridge.index, s))


_DEVICE_FIELDS = ("id", "kind", "address", "multifunction", "needs", "io_bar", "memory", "bars", "acpi_index")
"""The fields :func:`_moved` copies, one by one (tests/solver/test_realize.py checks they are all of Device's)."""

_CONTROLLER_FIELDS = (
    "index",
    "model",
    "address",
    "id",
    "qemu_model",
    "chassis",
    "port",
    "chassis_nr",
    "bus_nr",
    "target_index",
    "numa_node",
    "hotplug",
    "multifunction",
    "io_reserve",
)
"""The fields :func:`_new_controller` sets, one by one (the same test checks they are all of Controller's)."""


def _moved(
    d: Device,
    address: PciAddress,
    multifunction: bool | None,
    _new: Callable[[type[Device]], Device] = object.__new__,
    _set: Callable[[object, str, object], None] = object.__setattr__,
) -> Device:
    """``d`` at ``address``: ``attrs.evolve`` without re-running the validators of values already checked
    (the id's pattern, for every device of every realised plan), each field set by name (a loop over the
    names costs twice as much, for every device of every plan)."""
    new = _new(Device)
    _set(new, "id", d.id)
    _set(new, "kind", d.kind)
    _set(new, "address", address)
    _set(new, "multifunction", multifunction)
    _set(new, "needs", d.needs)
    _set(new, "io_bar", d.io_bar)
    _set(new, "memory", d.memory)
    _set(new, "bars", d.bars)
    _set(new, "acpi_index", d.acpi_index)
    return new


def _new_controller(
    index: int,
    model: str,
    address: PciAddress,
    chassis: int | None = None,
    port: int | None = None,
    hotplug: bool | None = None,
    _new: Callable[[type[Controller]], Controller] = object.__new__,
    _set: Callable[[object, str, object], None] = object.__setattr__,
) -> Controller:
    """``Controller(index, model, address=..., chassis=..., port=..., hotplug=...)`` without its validators.

    For the builder's own values only, in range by construction: an index from
    :meth:`Builder.next_index` (at most 255), a chassis from
    :func:`~pcitopo.legality.identity.fresh_chassis` (0..255), a port that is a
    devfn or a slot. Half the cost of the attrs constructor, once a new port.
    """
    new = _new(Controller)
    _set(new, "index", index)
    _set(new, "model", model)
    _set(new, "address", address)
    _set(new, "id", None)
    _set(new, "qemu_model", None)
    _set(new, "chassis", chassis)
    _set(new, "port", port)
    _set(new, "chassis_nr", None)
    _set(new, "bus_nr", None)
    _set(new, "target_index", None)
    _set(new, "numa_node", None)
    _set(new, "hotplug", hotplug)
    _set(new, "multifunction", None)
    _set(new, "io_reserve", None)
    return new


def _with_placements(devices: Sequence[Device], b: Builder) -> list[Device]:
    placements, multifunction = b.placements, b.multifunction
    out = []
    for d in devices:
        address = placements.get(d.id)
        if address is not None:
            d = _moved(d, address, True if multifunction.get(d.id) else d.multifunction)
        out.append(d)
    return out


def realize(problem: Problem, values: Mapping[str, int], reuse: Reuse | None = None) -> Topology:
    """The completed topology of an assignment: every context laid out by its decision.

    ``reuse``: the places of the request new bridges and switches may take (:class:`~pcitopo.solver.model.Reuse`;
    none when not given). The model counts a new root port for each (but their bus numbers:
    ``formulate``'s ``reuse``), so a plan that takes one may cost less than the assignment's model cost: the
    search prunes by that much less (``search.search``'s ``slack``) and claims no proof, which a request with free
    pools never had anyway.
    """
    topology = problem.topology
    reusable = {} if reuse is None else reuse.ports
    bridge_slots = {} if reuse is None else reuse.bridge_slots
    by_ctx = problem.units_by_context(values)
    decisions: dict[int, Decision] = {}
    for ctx_id in problem.context_variables:
        d = problem.decision(ctx_id, values)
        if d is None or not d.feasible:  # pragma: no cover - the search only returns feasible assignments
            raise InternalError("the chosen assignment is not feasible")
        if ctx_id == 0 or by_ctx.get(ctx_id) or problem.used(ctx_id, values):
            decisions[ctx_id] = d
    # The numbers QEMU will be told, libvirt's defaults included: a port without a chassis gets its
    # index as chassis from libvirt, so a new port must not take that number either.
    told = identity.effective(topology).values()
    b = Builder(
        used_indexes={c.index for c in topology.controllers},
        used_chassis_port={(c.chassis, -1 if c.port is None else c.port) for c in told if c.chassis is not None},
        used_chassis_nr={c.chassis_nr for c in told if c.chassis_nr is not None},
        used_target_index={c.target_index for c in told if c.target_index is not None},
        crash_kinds=topology.bridge_sibling_crash,
    )
    main = problem.contexts[0]
    main_slots = list(main.free_slots)
    # slots of the main root bus kept for new expander buses: the last free ones
    new_expanders = sorted(
        (problem.contexts[i] for i in decisions if problem.contexts[i].new_expander), key=lambda c: c.id
    )
    expander_slots = {ctx.id: main_slots.pop() for ctx in new_expanders}
    expander_controllers: dict[int, Controller] = {}
    for ctx in new_expanders:
        index = b.next_index()
        ctrl = Controller(
            index, ctx.new_model or "", address=PciAddress(bus=0, slot=expander_slots[ctx.id]), numa_node=ctx.numa_node
        )
        expander_controllers[ctx.id] = ctrl
        b.controllers.append(ctrl)
    dmi_preferred = topology.machine.preferred.get("dmi-to-pci-bridge", ())

    # contexts laid out in the order of their first unit, so that their controllers' indexes (the
    # buses in the devices' addresses) grow with the definition order of the devices they host
    def first_rank(ctx_id: int) -> tuple[tuple[float, int], int]:
        units = by_ctx.get(ctx_id, [])
        return (min(map(_rank, units), default=(float("inf"), 0)), ctx_id)  # a C key, not a generator a unit

    for ctx_id in sorted(decisions, key=first_rank):
        ctx = problem.contexts[ctx_id]
        d = decisions[ctx_id]
        units = by_ctx.get(ctx_id, [])
        if ctx.root_kind is RootKind.NEW_HOST_BRIDGE:
            _realize_new_host_bridges(b, ctx, d, units)
            continue
        root_bus = ctx.bus if ctx.bus is not None else expander_controllers[ctx_id].index
        slots = main_slots if ctx_id == 0 else list(ctx.free_slots)
        if ctx.root_kind is RootKind.PCIE:
            _realize_pcie(
                b,
                ctx,
                root_bus,
                d,
                units,
                problem.policy,
                free_slots=slots,
                port_functions=ctx.free_port_functions,
                dmi_preferred=dmi_preferred,
                io_matters=problem.io_budget is not None,
                empty_ports=reusable.get(root_bus, ()),
                bridge_slots=bridge_slots.get(root_bus, ()),
                catalog=topology.machine.catalog,
            )
        else:
            _realize_pci(b, ctx, root_bus, d, units, problem.policy, free_slots=slots)
    b.set_multifunction()
    controllers = list(b.controllers)
    if expander_controllers:
        controllers = _assign_bus_nr(problem, decisions, expander_controllers, controllers, values)
    return topology.replace(
        controllers=[*topology.controllers, *controllers],
        devices=_with_placements(topology.devices, b),
    )


def _assign_bus_nr(
    problem: Problem,
    decisions: Mapping[int, Decision],
    expanders: Mapping[int, Controller],
    controllers: list[Controller],
    values: Mapping[str, int],
) -> list[Controller]:
    """Bus numbers for new expander buses: carved from the top of the free region, the slack shared out."""
    topology = problem.topology
    machine = topology.machine
    need = {ctx_id: problem.bus_numbers(ctx_id, decisions[ctx_id], values) for ctx_id in expanders}
    host = problem.bus_host
    if host:
        # the top of an existing expander bus's range (Problem.bus_host), above the numbers its own tree takes
        region = next(r for r in identity.bus_regions(topology) if r.owner == problem.contexts[host].bus)
        ceiling = region.end
        main_need = region.first + region.used + (decisions[host].bus_numbers if host in decisions else 0)
    else:
        existing = [c.bus_nr for c in topology.controllers if c.bus_nr is not None]
        ceiling = min(existing, default=machine.bus_numbers)
        main_need = (
            topology.bus_numbers_used(0)
            - sum(topology.subtree_bus_numbers(c.index) for c in topology.controllers if topology.model(c).expander)
            + (decisions[0].bus_numbers if 0 in decisions else 0)
        )
    slack = max(0, ceiling - main_need - sum(need.values()))
    share = slack // (len(need) + 1)
    bus_nr: dict[int, int] = {}
    top = ceiling
    for ctx_id in sorted(need, reverse=True):
        top -= need[ctx_id] + share
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


def unit_functions(devices: Sequence[Device]) -> list[int]:
    """The function each device of a unit takes in its slot: an ICH9 USB2 set's own, the ones asked, or 0, 1, ..."""
    return _usb2_functions(devices) or _own_functions(devices) or list(range(len(devices)))


def _own_functions(devices: Sequence[Device]) -> list[int] | None:
    """The functions a slot group's members ask for (``needs.function``), when each asks and 0 is among them."""
    functions = [d.needs.function for d in devices]
    if len(devices) < 2 or None in functions or 0 not in functions or len(set(functions)) != len(functions):
        return None
    return [f for f in functions if f is not None]


def _usb2_functions(devices: Sequence[Device]) -> list[int] | None:
    """An ICH9 USB2 set's own functions (UHCI1-3 at .0-.2, EHCI at .7, as libvirt places them), if it has UHCI1."""
    kinds = Catalog.default().devices
    functions: list[int] = []
    for d in devices:
        f = kinds[d.kind].usb2_function if d.kind in kinds else None
        if f is None or f in functions:
            return None
        functions.append(f)
    return functions if 0 in functions else None
