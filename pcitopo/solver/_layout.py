"""Per-context layout: how a root bus hosts the units the CSP gives it.

:func:`decide` works on counts only (it runs inside the CSP's checks, so it
must be cheap); :func:`realize` turns the same decision into concrete
controllers and addresses. Both follow one set of rules, in this order:

* PCIe root complex (``pcie.0``, ``pxb-pcie``): endpoints that must or (by
  policy) may be integrated take root-bus slots; PCI Express endpoints get a
  root port each (8 per slot as multifunction, or one per slot), then
  switches when the slots run out; conventional endpoints go to one
  ``pcie-to-pci-bridge`` behind a root port, fanning out to ``pci-bridge``\\ s
  past 31; those that must not be hotpluggable go on a ``dmi-to-pci-bridge``.
* Conventional root (``pci.0`` on pc, ``pxb``, pseries host bridges): endpoints
  take root slots, overflowing into ``pci-bridge``\\ s.
* New pseries host bridges: 31 endpoints each.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import attrs

from pcitopo.address import PciAddress
from pcitopo.devices import HotplugNeed
from pcitopo.legality.catalog import Connect
from pcitopo.policy.policy import Policy
from pcitopo.solver._model import Unit
from pcitopo.topology import IO_WINDOW

__all__: list[str] = []

BRIDGE_SLOTS = 31
"""Usable slots of a pci-bridge or pcie-to-pci-bridge (1..31)."""


@attrs.frozen
class Context:
    """A place where new structure can grow."""

    id: int
    label: str
    root_kind: str  # "pcie" or "pci" or "phb-new"
    bus: int | None
    new_model: str | None
    numa_node: int | None
    free_slots: tuple[int, ...]
    free_port_functions: tuple[PciAddress, ...]
    can_integrate: bool
    root_hotplug: bool
    domain: str
    """Bus numbers are shared by contexts of one domain key."""
    own_range: int | None
    """For existing expanders: bus numbers left inside their fixed range."""
    empty_hot_ports: int
    """Empty hotpluggable ports already there (they count as spare ports)."""
    offers_pcie_to_pci: bool
    offers_dmi: bool
    offers_switch: bool


@attrs.frozen
class Counts:
    """What the units given to a context need, by category."""

    int_req: int = 0
    int_opt_pcie: int = 0
    int_opt_pci: int = 0
    pcie_ports: int = 0
    pcie_io: int = 0
    pci_tree: int = 0
    pci_tree_io: int = 0
    pci_off: int = 0
    pci_off_io: int = 0
    pci_direct: int = 0
    pci_direct_io: int = 0
    pci_hot_only: int = 0
    pci_hot_only_io: int = 0
    int_opt_pci_io: int = 0
    io_max: int = 0
    """The largest IO BAR among the units (IO windows are estimated with it, never under)."""
    bus_group_windows: int = 0
    sw_groups: int = 0
    sw_units: int = 0
    sw_io: int = 0
    bus_groups: int = 0
    bus_units: int = 0
    bus_io_groups: int = 0
    fb_pcie_any: int = 0
    fb_pcie_pref: int = 0
    fb_pci_any: int = 0
    fb_pci_pref: int = 0
    """Units that may, as a last resort, be integrated on the root bus (hotplug any/preferred)."""
    hot_misses: int = 0
    """Units whose hotplug preference cannot be met in this context."""
    impossible: str = ""


_COUNT_FIELDS = tuple(f.name for f in attrs.fields(Counts) if f.name not in ("impossible", "io_max"))


def add_counts(a: Counts, b: Counts) -> Counts:
    """The counts of two groups of units given to one context."""
    values = {name: getattr(a, name) + getattr(b, name) for name in _COUNT_FIELDS}
    return Counts(**values, io_max=max(a.io_max, b.io_max), impossible=a.impossible or b.impossible)


def add_units(ctx: Context, counts: Counts, units: Sequence[Unit], policy: Policy) -> Counts:
    """Fold units into a context's counts (cheap; used on every CSP check)."""
    d = attrs.asdict(counts, recurse=False)
    sw_labels: set[str] = set()
    bus_labels: set[str] = set()
    bus_io_labels: set[str] = set()
    bus_io: dict[str, tuple[int, int]] = {}
    for u in units:
        if u.has_io:
            d["io_max"] = max(d["io_max"], u.io_size)
        cat = unit_category(ctx, u, policy)
        if cat == "sw_group":
            d["sw_units"] += 1
            d["sw_io"] += 1 if u.has_io else 0
            sw_labels.add(u.switch_group or "")
            continue
        if cat == "bus_group":
            d["bus_units"] += 1
            bus_labels.add(u.bus_group or "")
            if u.has_io:
                bus_io_labels.add(u.bus_group or "")
                n, biggest = bus_io.get(u.bus_group or "", (0, 0))
                bus_io[u.bus_group or ""] = (n + 1, max(biggest, u.io_size))
            continue
        if cat.startswith("!"):
            d["impossible"] = d["impossible"] or f"{ctx.label}: {cat[1:]}"
            continue
        d[cat] += 1
        if cat == "pcie_ports" and u.has_io:
            d["pcie_io"] += 1
        elif cat == "pci_tree" and u.has_io:
            d["pci_tree_io"] += 1
        elif cat == "pci_off" and u.has_io:
            d["pci_off_io"] += 1
        elif cat == "pci_direct" and u.has_io:
            d["pci_direct_io"] += 1
        elif cat == "pci_hot_only" and u.has_io:
            d["pci_hot_only_io"] += 1
        elif cat == "int_opt_pci" and u.has_io:
            d["int_opt_pci_io"] += 1
        fb = fallback_kind(ctx, u, cat)
        if fb:
            d[fb] += 1
        if u.hotplug is HotplugNeed.PREFERRED and cat in ("int_req", "int_opt_pcie", "int_opt_pci", "pci_off"):
            d["hot_misses"] += 1
        if u.hotplug is HotplugNeed.PREFERRED and cat == "pci_direct" and not ctx.root_hotplug:
            d["hot_misses"] += 1
    d["sw_groups"] += len(sw_labels)
    d["bus_groups"] += len(bus_labels)
    d["bus_io_groups"] += len(bus_io_labels)
    d["bus_group_windows"] += sum(-(-n * biggest // IO_WINDOW) for n, biggest in bus_io.values())
    return Counts(**d)


def fallback_kind(ctx: Context, u: Unit, category: str) -> str | None:
    """The last-resort integration bucket of a unit, if it has one."""
    if not (ctx.can_integrate and u.can_integrate) or category not in ("pcie_ports", "pci_tree"):
        return None
    if u.hotplug is HotplugNeed.ANY:
        return "fb_pcie_any" if category == "pcie_ports" else "fb_pci_any"
    if u.hotplug is HotplugNeed.PREFERRED:
        return "fb_pcie_pref" if category == "pcie_ports" else "fb_pci_pref"
    return None


FALLBACK_ORDER = ("fb_pcie_any", "fb_pci_any", "fb_pcie_pref", "fb_pci_pref")


def fallback_split(c: Counts, n: int) -> dict[str, int]:
    """How ``n`` last-resort integrations are taken from the buckets, in order."""
    out: dict[str, int] = {}
    for name in FALLBACK_ORDER:
        take = min(n, getattr(c, name))
        out[name] = take
        n -= take
    return out


def unit_category(ctx: Context, u: Unit, policy: Policy) -> str:
    """Where a unit goes inside a context; ``"!reason"`` when it cannot go there at all."""
    if u.switch_group is not None:
        if ctx.root_kind != "pcie" or not ctx.offers_switch:
            return f"!switch group {u.switch_group!r} needs PCI Express switches, which {ctx.label} cannot take"
        if u.connect is not Connect.PCIE_DEVICE:
            return f"!switch group {u.switch_group!r}: {u.name!r} is not a PCI Express device"
        return "sw_group"
    if u.bus_group is not None:
        if u.connect is Connect.PCIE_DEVICE and ctx.root_kind == "pcie":
            if not (ctx.can_integrate and u.can_integrate) or u.hotplug is HotplugNeed.REQUIRED:
                return (
                    f"!bus group {u.bus_group!r}: PCI Express devices share a bus only as integrated "
                    f"endpoints of the main root bus, which cannot be hot-plugged"
                )
            return "int_req"
        if ctx.root_kind == "phb-new":
            return "!bus groups go on a pci-bridge, not a new host bridge"
        if ctx.root_kind == "pcie" and not ctx.offers_pcie_to_pci:
            return f"!bus group {u.bus_group!r} needs a pcie-to-pci-bridge, which this machine lacks"
        return "bus_group"
    if u.integrated_required:
        if ctx.bus != 0:
            return "!must be integrated on bus 0"
        return "int_req" if ctx.root_kind == "pcie" else "pci_direct"
    if ctx.root_kind == "pcie":
        integrate_ok = ctx.can_integrate and u.can_integrate
        if u.connect is Connect.PCIE_DEVICE:
            if integrate_ok and policy.prefer_integrated and u.hotplug in (HotplugNeed.ANY, HotplugNeed.FORBIDDEN):
                return "int_opt_pcie"
            return "pcie_ports"
        # conventional PCI on a PCIe machine
        if u.hotplug is HotplugNeed.FORBIDDEN:
            if integrate_ok:
                return "int_opt_pci"
            if not ctx.offers_dmi:
                return "!needs a non-hotpluggable conventional slot (no dmi-to-pci-bridge on this machine)"
            return "pci_off"
        if integrate_ok and policy.prefer_integrated and u.hotplug is HotplugNeed.ANY:
            return "int_opt_pci"
        if not (ctx.offers_pcie_to_pci or ctx.offers_dmi):
            if integrate_ok and u.hotplug is not HotplugNeed.REQUIRED:
                return "int_opt_pci"
            return "!needs a conventional PCI bus (this machine offers no PCIe-to-PCI bridge)"
        return "pci_tree"
    # conventional root: pc pci.0, pxb, pseries host bridges
    if u.hotplug is HotplugNeed.FORBIDDEN:
        if ctx.root_hotplug:
            return "!must not be hotpluggable, but every slot here is"
        return "pci_direct"
    if u.hotplug is HotplugNeed.REQUIRED and not ctx.root_hotplug:
        return "pci_hot_only"
    return "pci_direct"


@attrs.frozen
class Decision:
    """How a context hosts its counts."""

    feasible: bool
    reason: str = ""
    integrated_pcie: int = 0
    integrated_pci: int = 0
    direct_ports: int = 0
    """Root ports holding an endpoint or a spare (not switch or bridge uplinks)."""
    port_units: int = 0
    spare: int = 0
    switches: int = 0
    downstream: int = 0
    tree_units: int = 0
    tree_io: int = 0
    tree_bridges: int = 0
    """pci-bridges fanned out under the top bridges of the trees."""
    tree_sizes: tuple[int, ...] = ()
    """Endpoints of each bridge tree (pcie-to-pci-bridge behind a root port, or a pci-bridge on a root bus)."""
    tree_via_dmi: bool = False
    dmi: bool = False
    dmi_units: int = 0
    dmi_bridges: int = 0
    direct_units: int = 0
    root_bridges: int = 0
    phbs: int = 0
    expander: bool = False
    root_slots: int = 0
    bus_numbers: int = 0
    io_windows: int = 0
    controllers: int = 0
    hot_misses: int = 0
    int_misses: int = 0
    spare_missing: int = 0
    fallback: tuple[tuple[str, int], ...] = ()
    """Last-resort integrations by bucket (see :data:`FALLBACK_ORDER`)."""

    @property
    def tree(self) -> bool:
        return self.tree_units > 0


def fanout(n: int) -> int:
    """pci-bridges needed under one 31-slot bridge to host ``n`` endpoints."""
    if n <= BRIDGE_SLOTS:
        return 0
    return math.ceil((n - BRIDGE_SLOTS) / (BRIDGE_SLOTS - 1))


TREE_CAPACITY = BRIDGE_SLOTS + (BRIDGE_SLOTS - 1) * BRIDGE_SLOTS
"""Endpoints one bridge tree holds: a 31-slot bridge with up to 31 pci-bridges fanned out below it."""


def split_trees(n: int) -> tuple[int, ...]:
    """Endpoints per bridge tree: full trees first."""
    sizes = []
    while n > 0:
        sizes.append(min(n, TREE_CAPACITY))
        n -= sizes[-1]
    return tuple(sizes)


def trees_io_windows(sizes: tuple[int, ...], n_io: int, io_max: int) -> int:
    """IO windows of several trees, IO endpoints filling the first trees first."""
    total = 0
    for size in sizes:
        here = min(size, n_io)
        total += tree_io_windows(size, here, io_max)
        n_io -= here
    return total


def trees_buses(sizes: tuple[int, ...]) -> int:
    """Bridges of several trees: each top bridge and its fanned-out pci-bridges."""
    return sum(1 + fanout(size) for size in sizes)


def tree_free_slots(size: int) -> int:
    """Empty hotpluggable slots a tree of ``size`` endpoints keeps."""
    m = fanout(size)
    return (BRIDGE_SLOTS - m) + BRIDGE_SLOTS * m - size


def tree_io_windows(n: int, n_io: int, io_max: int) -> int:
    """4 KiB IO windows a bridge tree needs, IO endpoints placed first, each counted at ``io_max`` bytes.

    Endpoints fill the top bridge's free slots first, then each fanned-out
    pci-bridge; IO endpoints come first, so they share as few buses as
    possible. Each bus needs ``ceil(bytes / 4 KiB)`` windows, and a bridge's
    window holds those of the bridges below it, so the tree needs their sum.
    """
    if n_io == 0:
        return 0
    m = fanout(n)
    capacities = [BRIDGE_SLOTS - m] + [BRIDGE_SLOTS] * m
    windows = 0
    for cap in capacities:
        here = min(cap, n_io)
        windows += -(-here * max(io_max, 1) // IO_WINDOW)
        n_io -= here
        if n_io == 0:
            break
    return windows


def decide(
    ctx: Context,
    c: Counts,
    policy: Policy,
    *,
    spare_wanted: int,
    expanders_here: int = 0,
    bus_cap: int | None = None,
) -> Decision:
    """Lay a context out by counts (``bus_cap``: the most bus numbers it could get)."""
    if c.impossible:
        return Decision(False, c.impossible)
    if ctx.root_kind == "pcie":
        return _decide_pcie(ctx, c, policy, spare_wanted, expanders_here, bus_cap)
    if ctx.root_kind == "phb-new":
        return _decide_new_phb(ctx, c, policy, spare_wanted)
    return _decide_pci(ctx, c, policy, spare_wanted, expanders_here)


def _decide_pcie(
    ctx: Context, c: Counts, policy: Policy, spare_wanted: int, expanders_here: int, bus_cap: int | None
) -> Decision:
    free = len(ctx.free_slots) - expanders_here
    spare = max(0, spare_wanted - ctx.empty_hot_ports)
    if c.int_req > free:
        return Decision(False, f"{ctx.label} has {free} free slots for {c.int_req} integrated devices")
    pack = 8 if policy.port_packing == "multifunction" else 1
    aggregate_free = len(ctx.free_port_functions) if pack == 8 else 0
    int_opt_total = c.int_opt_pcie + c.int_opt_pci
    dmi_possible = ctx.offers_dmi
    use_dmi_tree = c.pci_tree > 0 and not ctx.offers_pcie_to_pci
    if use_dmi_tree and not dmi_possible:
        return Decision(False, f"{ctx.label}: no bridge for conventional PCI devices")

    def attempt(i_opt: int, switches_ok: bool, spare_n: int, fb: int = 0) -> Decision | None:
        # optional integration takes PCIe units first, then PCI units (definition order inside)
        ip = min(i_opt, c.int_opt_pcie)
        ic = i_opt - ip
        split = fallback_split(c, fb) if fb else {}
        fb_pcie = split.get("fb_pcie_any", 0) + split.get("fb_pcie_pref", 0)
        fb_pci = split.get("fb_pci_any", 0) + split.get("fb_pci_pref", 0)
        fb_misses = split.get("fb_pcie_pref", 0) + split.get("fb_pci_pref", 0)
        pcie_units = c.pcie_ports + (c.int_opt_pcie - ip) - fb_pcie
        over_pci = c.int_opt_pci - ic
        tree_units = c.pci_tree + over_pci - fb_pci
        # optional PCI integration takes IO-BAR units first; the rest overflow to the tree
        tree_io = c.pci_tree_io + max(0, c.int_opt_pci_io - ic)
        dmi_units = c.pci_off
        dmi = dmi_units > 0 or (tree_units > 0 and use_dmi_tree)
        trees = split_trees(tree_units) if not use_dmi_tree else ()
        tree_rp = len(trees)
        fixed_rp = tree_rp + c.sw_groups + c.bus_groups
        slots_left = free - c.int_req - i_opt - fb - (1 if dmi else 0)
        if slots_left < 0:
            return None
        ports_needed = pcie_units + spare_n + fixed_rp
        capacity = aggregate_free + slots_left * pack
        switches = 0
        downstream = 0
        direct = ports_needed
        if ports_needed > capacity:
            if not (switches_ok and policy.allow_switches and ctx.offers_switch):
                return None
            switches = math.ceil((ports_needed - capacity) / (BRIDGE_SLOTS))
            direct = capacity - switches
            downstream = ports_needed - direct
            if direct < fixed_rp or downstream > 32 * switches or direct < 0:
                return None
        used_port_slots = max(0, direct + switches - aggregate_free)
        root_slots = c.int_req + i_opt + fb + (1 if dmi else 0) + math.ceil(used_port_slots / pack)
        tree_bridges = sum(fanout(size) for size in trees)
        dmi_bridges = math.ceil(tree_units / BRIDGE_SLOTS) if use_dmi_tree else 0
        if dmi and dmi_units + dmi_bridges > 32:
            return None
        bus = direct + 2 * switches + downstream + trees_buses(trees)
        bus += (1 + dmi_bridges) if dmi else 0
        bus += c.sw_groups + c.sw_units + c.bus_groups  # upstream + downstream ports; group bridges
        io = c.pcie_io + c.sw_io + c.bus_group_windows
        if not use_dmi_tree:
            io += trees_io_windows(trees, tree_io, c.io_max)
        elif tree_io:
            io += trees_io_windows((BRIDGE_SLOTS,) * dmi_bridges, tree_io, c.io_max)
        io += -(-c.pci_off_io * c.io_max // IO_WINDOW)
        if bus_cap is not None and bus > bus_cap:
            return None
        controllers = direct + 2 * switches + downstream
        controllers += trees_buses(trees)
        controllers += (1 + dmi_bridges) if dmi else 0
        controllers += c.sw_groups + c.sw_units + c.bus_groups
        return Decision(
            True,
            integrated_pcie=ip,
            integrated_pci=ic,
            direct_ports=direct - fixed_rp,
            port_units=pcie_units,
            spare=spare_n,
            switches=switches,
            downstream=downstream,
            tree_units=tree_units,
            tree_io=tree_io,
            tree_bridges=tree_bridges,
            tree_sizes=trees,
            tree_via_dmi=use_dmi_tree,
            dmi=dmi,
            dmi_units=dmi_units,
            dmi_bridges=dmi_bridges,
            root_slots=root_slots,
            bus_numbers=bus,
            io_windows=io,
            controllers=controllers,
            hot_misses=c.hot_misses + fb_misses,
            int_misses=int_opt_total - i_opt,
            spare_missing=spare - spare_n,
            fallback=tuple(split.items()),
        )

    # most integration first (it is only optional when the policy prefers it), spares if they fit;
    # integration takes slots but saves bus numbers, so the feasible counts form an interval: scan
    top = min(int_opt_total, max(free, 0))
    for switches_ok in (False, True):
        for spare_n in range(spare, -1, -1):
            for i_opt in range(top, -1, -1):
                d = attempt(i_opt, switches_ok, spare_n)
                if d is not None:
                    return d
    # last resort: integrate endpoints whose hotplug is optional or only preferred (the fewest
    # that make the slots and the bus numbers fit)
    total_fb = c.fb_pcie_any + c.fb_pci_any + c.fb_pcie_pref + c.fb_pci_pref

    def fits(fb: int) -> Decision | None:
        d = attempt(0, True, 0, fb)
        if d is None or (bus_cap is not None and d.bus_numbers > bus_cap):
            return None
        return d

    # feasible counts form an interval (too few: no room; too many: no slots), so scan
    for fb in range(1, min(total_fb, max(free, 0)) + 1):
        found = fits(fb)
        if found is not None:
            return found
    return Decision(
        False,
        f"{ctx.label} has {max(free, 0)} free slots"
        + (f", {aggregate_free} free root-port functions" if aggregate_free else "")
        + (f" and {bus_cap} bus numbers left" if bus_cap is not None else "")
        + f": not enough for {c.pcie_ports + c.int_opt_pcie} PCI Express devices"
        + (f", {c.pci_tree + c.int_opt_pci + c.pci_off} conventional PCI devices" if c.pci_tree + c.pci_off else "")
        + (f" and {c.int_req} integrated devices" if c.int_req else "")
        + ("" if policy.allow_switches else " (switches are not allowed)"),
    )


def _decide_pci(ctx: Context, c: Counts, policy: Policy, spare_wanted: int, expanders_here: int) -> Decision:
    free = len(ctx.free_slots) - expanders_here - c.bus_groups
    direct_units = c.pci_direct
    need_spare = max(0, spare_wanted - (ctx.empty_hot_ports if ctx.root_hotplug else 0))
    for spare_n in (need_spare, 0) if need_spare else (0,):
        for bridges in range(max(free, 0) + 1):
            direct_cap = free - bridges
            on_direct = min(direct_units, direct_cap)
            bridged = c.pci_hot_only + direct_units - on_direct
            if bridged > TREE_CAPACITY * bridges:
                continue
            # flat pci-bridges while they suffice, else trees with pci-bridges fanned out below
            if bridged <= BRIDGE_SLOTS * bridges:
                sizes = tuple(min(BRIDGE_SLOTS, max(0, bridged - BRIDGE_SLOTS * i)) for i in range(bridges))
            else:
                sizes = split_trees(bridged)
                sizes = sizes + (0,) * (bridges - len(sizes))
            hot_free = (direct_cap - on_direct if ctx.root_hotplug else 0) + sum(tree_free_slots(n) for n in sizes)
            if hot_free < spare_n:
                continue
            # direct slots take IO-BAR endpoints first: the root bus needs no IO window
            io_bridged = c.pci_hot_only_io + max(0, c.pci_direct_io - on_direct)
            buses = trees_buses(sizes)
            return Decision(
                True,
                direct_units=on_direct,
                root_bridges=bridges,
                tree_units=bridged,
                tree_io=io_bridged,
                tree_sizes=sizes,
                tree_bridges=buses - bridges,
                root_slots=on_direct + bridges + c.bus_groups,
                bus_numbers=buses + c.bus_groups,
                io_windows=trees_io_windows(sizes, io_bridged, c.io_max) + c.bus_group_windows,
                controllers=buses + c.bus_groups,
                hot_misses=c.hot_misses,
                spare=spare_n,
                spare_missing=need_spare - spare_n,
            )
    return Decision(
        False,
        f"{ctx.label} has {max(free, 0)} free slots: not enough for {direct_units + c.pci_hot_only} devices"
        + (" even with pci-bridges" if free > 0 else ""),
    )


def _decide_new_phb(ctx: Context, c: Counts, policy: Policy, spare_wanted: int) -> Decision:
    units = c.pci_direct + c.pci_hot_only
    phbs = math.ceil(units / BRIDGE_SLOTS) if units else 0
    return Decision(
        True,
        direct_units=units,
        phbs=phbs,
        controllers=phbs,
        bus_numbers=0,
        hot_misses=c.hot_misses,
    )
