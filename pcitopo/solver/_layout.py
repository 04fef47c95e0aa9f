"""Per-context layout: how a root bus hosts the units the CSP gives it.

:func:`decide` works on counts only (it runs inside the CSP's checks, so it
must be cheap); :func:`realize` turns the same decision into concrete
controllers and addresses. Both follow one set of rules, in this order:

* PCIe root complex (``pcie.0``, ``pxb-pcie``): endpoints that must or (by
  policy) may be integrated take root-bus slots; PCI Express endpoints get a
  root port each (8 per slot as multifunction, or one per slot), then
  switches when the slots run out; conventional endpoints go to one
  ``pcie-to-pci-bridge`` behind a root port, with ``pci-bridge``\\ s chained
  below it past 31; those that must not be hotpluggable go on a ``dmi-to-pci-bridge``.
* Conventional root (``pci.0`` on pc, ``pxb``, pseries host bridges): endpoints
  take root slots, overflowing into ``pci-bridge``\\ s.
* New pseries host bridges: 31 endpoints each.

Where another position is cheaper by the policy's weights, a unit leaves its
category's: on a PCIe root, conventional units may take a dmi-to-pci-bridge's
slots (or the bridge trees hang from it), PCI Express units may share a root
port as functions of its slot (beside a tree's pcie-to-pci-bridge too); on a
conventional root that is not hotpluggable, units preferring hotplug take the
pci-bridges' slots first (see ``_Moves`` and ``_count_alternatives``). On a
PCIe root, conventional units without IO BARs may also be packed 8 a slot as
the functions of multifunction slots (the root bus's, the
dmi-to-pci-bridge's, the trees'), when the trees would need more IO windows
than the firmware has (``io_cap``) or fewer bridges make it cheaper; a packed
unit cannot be hot-plugged on its own (``_Moves.pack_pci``). When the IO
windows run out, IO-BAR units are packed too: on a PCIe root on the root bus
(``_Moves.pack_io``) or on the trees' own slots (``_Moves.pack_tree_io``), on a
conventional root on its pci-bridges' buses (``_pci_packing``), so a 4 KiB
window holds more than a bus's 31 slots of them (64 e1000). Those two take IO
BARs of several sizes and units of several hotplug needs (``_tree_io_mix``,
``_pci_mix``): no need first, then preferring it, largest first; a unit that
requires hotplug is never packed.
"""

from __future__ import annotations

import enum
import functools
import itertools
import math
import operator
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, NamedTuple

import attrs

from pcitopo.address import PciAddress
from pcitopo.devices import HotplugNeed
from pcitopo.legality.catalog import Connect
from pcitopo.policy.policy import Policy
from pcitopo.solver._iobalance import BusIo, balance_buses, bus_windows, fill_root
from pcitopo.topology import IO_WINDOW

if TYPE_CHECKING:
    from pcitopo.solver.model import Unit

__all__: list[str] = []

BRIDGE_SLOTS = 31
"""Usable slots of a pci-bridge or pcie-to-pci-bridge (1..31)."""


class RootKind(enum.Enum):
    """What kind of root a context grows from."""

    PCIE = "pcie"
    """A PCI Express root complex (``pcie.0``, a ``pxb-pcie``): root ports, switches, bridges."""
    PCI = "pci"
    """A conventional root bus (``pci.0`` on pc, a ``pxb``, a pseries host bridge): slots and pci-bridges."""
    NEW_HOST_BRIDGE = "new-host-bridge"
    """New pseries host bridges, 31 endpoints each."""


@attrs.frozen
class Context:
    """A place where new structure can grow."""

    id: int
    label: str
    root_kind: RootKind
    bus: int | None
    """The root bus's index, or ``None`` for a root this plan adds."""
    new_model: str | None
    """The model of the expander bus or host bridge this plan adds for the context, if any."""
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
    reserves_io_pci_bridge: bool = False
    """The firmware gives every pci-bridge an IO window even with no IO BAR below it (SeaBIOS: SHPC)."""
    reserves_io_pcie_to_pci: bool = False
    """The same for a pcie-to-pci-bridge."""
    trees_via_dmi: bool = True
    """Whether bridge trees may hang from the dmi-to-pci-bridge (``_Moves.tree_via_dmi``): the solver searches
    again without when an ordered plan took it (its local choice does not weigh the order term)."""
    balance_io: bool = False
    """Whether a conventional root's packing may deal its bridged IO BARs out balanced between the pci-bridges
    (:func:`~pcitopo.solver._iobalance.balance_buses`) where its own deal, largest first, needs too many IO windows:
    the solver searches again with it only when it found no plan without (so every plan found before is kept).
    With it, the main root bus's slots take IO BARs up to :attr:`root_io_room` bytes
    (:func:`~pcitopo.solver._iobalance.fill_root`) rather than the largest first."""
    root_io_room: int | None = None
    """With :attr:`balance_io`: the IO BAR bytes the main root bus can still take at no window's cost."""
    reusable_uplinks: int = 0
    """Places of the request a new bridge tree's top or a new switch may plug into instead of a new root port (its
    empty ports, its conventional buses' free slots: ``model.empty_ports``, ``model.free_bridge_slots``). Only the
    local choice among layouts (``_decide_pcie``) reads it, counting a controller fewer for each uplink up to
    this many: the realised plan takes them (``_realize.realize``'s ``reuse``) and its score is the judge. A
    layout's figures (:attr:`Decision.controllers`, its bus numbers) still count new root ports for them."""

    @property
    def new_expander(self) -> bool:
        return self.new_model in ("pcie-expander-bus", "pci-expander-bus")


class Category(enum.Enum):
    """Where a unit goes inside a context."""

    INTEGRATED = "integrated"
    """Must be integrated: a slot of the PCIe root bus (a conventional root's slot on pc)."""
    OPTIONAL_INTEGRATED_PCIE = "optional-integrated-pcie"
    """A PCI Express endpoint the policy would integrate (``prefer_integrated``), else on a root port."""
    OPTIONAL_INTEGRATED_PCI = "optional-integrated-pci"
    """A conventional endpoint the policy would integrate, else in a bridge tree."""
    ROOT_PORT = "root-port"
    """A PCI Express endpoint on its own root port (or a switch's downstream port)."""
    BRIDGE_TREE = "bridge-tree"
    """A conventional endpoint in a hotpluggable bridge tree (pcie-to-pci-bridge, pci-bridges)."""
    NOT_HOTPLUGGABLE_BRIDGE = "not-hotpluggable-bridge"
    """A conventional endpoint that must not be hot-pluggable: a dmi-to-pci-bridge's slot."""
    ROOT_SLOT = "root-slot"
    """A slot of a conventional root bus, or of a pci-bridge below it when the root runs out."""
    HOTPLUG_BRIDGE_ONLY = "hotplug-bridge-only"
    """Must be hot-pluggable, and the conventional root is not: a pci-bridge's slot."""
    SWITCH_GROUP = "switch-group"
    BUS_GROUP = "bus-group"
    IMPOSSIBLE = "impossible"


@attrs.frozen
class Counts:
    """What the units given to a context need, by category (a unit with an IO BAR also counts in ``*_io``)."""

    devices: int = 0
    integrable_devices: int = 0
    """Devices whose kind may sit on the main root bus (the ``integrated`` term asks it of them)."""
    integrated_required: int = 0
    optional_integrated_pcie: int = 0
    optional_integrated_pcie_io: int = 0
    optional_integrated_pci: int = 0
    optional_integrated_pci_io: int = 0
    optional_integrated_pci_forbidden: int = 0
    """Those of ``optional_integrated_pci`` that must not be hot-plugged: integrated first, and when the root
    bus has no slot left, on a dmi-to-pci-bridge's slot (never in a bridge tree, whose slots are hotpluggable)."""
    optional_integrated_pci_forbidden_io: int = 0
    root_port_units: int = 0
    root_port_io: int = 0
    tree_units: int = 0
    tree_io: int = 0
    dmi_units: int = 0
    dmi_io: int = 0
    root_slot_units: int = 0
    root_slot_io: int = 0
    hot_bridge_units: int = 0
    hot_bridge_io: int = 0
    root_slot_preferred: int = 0
    """Root-slot units that prefer hotplug on a root that is not hotpluggable: a pci-bridge's slot is better."""
    root_slot_preferred_io: int = 0
    tree_any: int = 0
    """Bridge-tree units with no hotplug need: a dmi-to-pci-bridge's slot serves them as well."""
    tree_any_io: int = 0
    tree_preferred: int = 0
    """Bridge-tree units that prefer hotplug: a dmi-to-pci-bridge's slot serves them at the hotplug weight."""
    tree_preferred_io: int = 0
    tree_any_packable: int = 0
    """Single-device bridge-tree units without an IO BAR and with no hotplug need: they may be packed as the
    functions of a multifunction slot (8 a slot; see ``_Moves.pack_pci``)."""
    tree_preferred_packable: int = 0
    """The same, preferring hotplug: packed, each is a hotplug miss (functions are not hot-plugged one by one)."""
    optional_pci_packable: int = 0
    """Single-device units the policy would integrate, without an IO BAR and with no hotplug need: those it does
    not integrate alone on a root slot may be packed as well (on the root bus they are integrated all the same)."""
    tree_packable_fixed: int = 0
    """Of those two, the units that may not be integrated (packed groups then never take the root bus's slots)."""
    tree_any_packable_io: int = 0
    """Single-device bridge-tree units with an IO BAR and no hotplug need that may be integrated: they may be
    packed on the root bus only (no bridge window there; see ``_Moves.pack_io``)."""
    tree_preferred_packable_io: int = 0
    """The same, preferring hotplug."""
    tree_packable_io: int = 0
    """Single-device bridge-tree units with an IO BAR and no hotplug requirement: they may be packed as functions on
    the trees' own slots (``_Moves.pack_tree_io``)."""
    tree_packable_io_any: int = 0
    """Of those, the ones with no hotplug need."""
    optional_pci_packable_io: int = 0
    """Single-device units the policy would integrate, with an IO BAR and no hotplug need: those it does not
    integrate may be packed on the root bus only (``_Moves.pack_io``)."""
    root_slot_any: int = 0
    """Root-slot units with no hotplug need (``hotplug-off-occupied`` counts those on hotpluggable slots)."""
    root_slot_packable_io: int = 0
    """Single-device root-slot units with an IO BAR that need not be integrated and do not require hotplug: those
    bridged may be packed as the functions of multifunction slots of the pci-bridges (``_pci_packing``)."""
    root_slot_packable_io_any: int = 0
    """Of those, the ones with no hotplug need (packed, the others are each a hotplug miss)."""
    bus_group_any: int = 0
    """Bus-group units with no hotplug need (a bridge's slots are hotpluggable)."""
    port_any: int = 0
    """Single-device root-port units with no hotplug need: they may share a port as its slot's functions."""
    port_preferred: int = 0
    """Single-device root-port units that prefer hotplug: they may share a port at the hotplug weight."""
    bus_group_windows: int = 0
    switch_groups: int = 0
    switch_group_units: int = 0
    switch_group_io: int = 0
    bus_groups: int = 0
    bus_group_units: int = 0
    last_resort_pcie_any: int = 0
    last_resort_pci_any: int = 0
    last_resort_pcie_preferred: int = 0
    last_resort_pci_preferred: int = 0
    """Units that may, as a last resort, be integrated on the root bus (hotplug any/preferred)."""
    hot_misses: int = 0
    """Units whose hotplug preference cannot be met in this context."""
    io_sizes: tuple[tuple[str, int, int], ...] = ()
    """The IO BARs behind the ``*_io`` counts that a bridge's window holds, and those of the ``last_resort_*``
    buckets: ``(field, bytes, units)``, largest first in each field (a bridge's window is the sum of its bus's
    BARs rounded up to 4 KiB, and the root buses' BARs share the firmware's room there, so sizes count)."""
    pack_sizes: tuple[tuple[str, int, int], ...] = ()
    """The IO BARs of the units the IO packings may pack, by hotplug need, as ``io_sizes`` (apart from it: the
    model reads the sum of ``io_sizes`` as a bound): ``tree`` and ``tree_any`` (``tree_packable_io`` and
    ``tree_packable_io_any``), ``root_slot`` and ``root_slot_any`` (``root_slot_packable_io`` and ``_any``), and
    ``root_slot_integrated`` (root-slot units that must be integrated, the IO-less with 0 bytes). With several
    sizes or needs, the packings read which units they pack from these (``_tree_io_mix``, ``_pci_mix``)."""
    impossible: str = ""


IoSizes = tuple[tuple[int, int], ...]
"""IO BARs of some units: ``(bytes, units)`` pairs, largest first."""

_IO_SIZED = (
    "integrated_io",
    "optional_integrated_pcie_io",
    "tree_io",
    "optional_integrated_pci_io",
    "dmi_io",
    "root_slot_io",
    "root_slot_preferred_io",
    "hot_bridge_io",
)
"""The ``*_io`` counts whose units' sizes :attr:`Counts.io_sizes` keeps: those that may end in a bridge's window."""

_FIELDS = tuple(f.name for f in attrs.fields(Counts))
if _FIELDS[-3:] != ("io_sizes", "pack_sizes", "impossible"):  # pragma: no cover - a guard on the class above
    raise TypeError("Counts must end with io_sizes, pack_sizes and impossible: add_counts passes its fields by place")
_ADDITIVE = _FIELDS[:-3]
"""The fields of a :class:`Counts` that add, all but its last three (:func:`add_counts` passes them by place, in
this order, then those three: the search adds counts thousands of times, and a dict of 54 keywords costs more)."""
_counts_by_place: Callable[..., Counts] = Counts
"""A :class:`Counts` from its fields by place (see :data:`_ADDITIVE`)."""

_CATEGORY_FIELDS: dict[Category, tuple[str, str | None]] = {
    Category.INTEGRATED: ("integrated_required", None),
    Category.OPTIONAL_INTEGRATED_PCIE: ("optional_integrated_pcie", "optional_integrated_pcie_io"),
    Category.OPTIONAL_INTEGRATED_PCI: ("optional_integrated_pci", "optional_integrated_pci_io"),
    Category.ROOT_PORT: ("root_port_units", "root_port_io"),
    Category.BRIDGE_TREE: ("tree_units", "tree_io"),
    Category.NOT_HOTPLUGGABLE_BRIDGE: ("dmi_units", "dmi_io"),
    Category.ROOT_SLOT: ("root_slot_units", "root_slot_io"),
    Category.HOTPLUG_BRIDGE_ONLY: ("hot_bridge_units", "hot_bridge_io"),
}


_additive = operator.attrgetter(*_ADDITIVE)
"""The additive fields of a :class:`Counts`, all at once (the search adds counts thousands of times)."""
_NONE = Counts()


def add_counts(a: Counts, b: Counts) -> Counts:
    """The counts of two groups of units given to one context."""
    if a == _NONE:
        return b
    if b == _NONE:
        return a
    return _counts_by_place(
        *map(operator.add, _additive(a), _additive(b)),
        _merge_io(a.io_sizes, b.io_sizes),  # io_sizes
        _merge_io(a.pack_sizes, b.pack_sizes),  # pack_sizes
        a.impossible or b.impossible,  # impossible
    )


def _merge_io(
    a: tuple[tuple[str, int, int], ...], b: tuple[tuple[str, int, int], ...]
) -> tuple[tuple[str, int, int], ...]:
    """The IO BARs of two groups of units, by field, largest first."""
    if not a or not b:
        return a or b
    merged: dict[tuple[str, int], int] = {}
    for field, size, n in (*a, *b):
        merged[(field, size)] = merged.get((field, size), 0) + n
    return tuple(sorted(((f, size, n) for (f, size), n in merged.items()), key=lambda t: (t[0], -t[1])))


def scale_counts(c: Counts, n: int) -> Counts:
    """The counts of ``n`` copies of one unit (or ``n`` times identical units)."""
    if n == 1:
        return c
    if n == 0:
        return _NONE
    io_sizes = tuple((field, size, k * n) for field, size, k in c.io_sizes)
    pack_sizes = tuple((field, size, k * n) for field, size, k in c.pack_sizes)
    return _counts_by_place(*[v * n for v in _additive(c)], io_sizes, pack_sizes, c.impossible)


def io_of(c: Counts, *fields: str) -> IoSizes:
    """The IO BARs of the units the ``fields`` count, largest first.

    >>> c = Counts(io_sizes=(("dmi_io", 64, 1), ("tree_io", 256, 2), ("tree_io", 32, 3)))
    >>> io_of(c, "tree_io"), io_of(c, "tree_io", "dmi_io")
    (((256, 2), (32, 3)), ((256, 2), (64, 1), (32, 3)))
    """
    return _sizes_of(c.io_sizes, fields)


def pack_of(c: Counts, *fields: str) -> IoSizes:
    """The IO BARs of the packable units the ``fields`` of :attr:`Counts.pack_sizes` count, largest first."""
    return _sizes_of(c.pack_sizes, fields)


def _sizes_of(sized: tuple[tuple[str, int, int], ...], fields: tuple[str, ...]) -> IoSizes:
    merged: dict[int, int] = {}
    for field, size, n in sized:
        if field in fields:
            merged[size] = merged.get(size, 0) + n
    return tuple(sorted(merged.items(), reverse=True))


def io_units(io: IoSizes) -> int:
    """How many units ``io`` holds."""
    return sum(n for _, n in io)


def io_bytes(io: IoSizes) -> int:
    """The bytes of IO BAR ``io`` holds."""
    return sum(size * n for size, n in io)


def split_io(io: IoSizes, k: int) -> tuple[IoSizes, IoSizes]:
    """The ``k`` largest of ``io`` and the rest (units are placed largest first, see ``_realize._io_first``).

    >>> split_io(((256, 2), (32, 3)), 3)
    (((256, 2), (32, 1)), ((32, 2),))
    """
    head: list[tuple[int, int]] = []
    tail: list[tuple[int, int]] = []
    for size, n in io:
        take = min(max(k, 0), n)
        k -= take
        if take:
            head.append((size, take))
        if n - take:
            tail.append((size, n - take))
    return tuple(head), tuple(tail)


def io_without(io: IoSizes, gone: IoSizes) -> IoSizes:
    """``io`` less the units of ``gone`` (a part of it).

    >>> io_without(((256, 2), (32, 3)), ((32, 1),))
    ((256, 2), (32, 2))
    """
    left = dict(io)
    for size, n in gone:
        left[size] = left.get(size, 0) - n
    return tuple((size, n) for size, n in sorted(left.items(), reverse=True) if n > 0)


def _smallest(io: IoSizes, k: int) -> IoSizes:
    """The ``k`` smallest units of ``io`` (those left once the largest are taken)."""
    return split_io(io, io_units(io) - max(k, 0))[1]


def io_merge(*parts: IoSizes) -> IoSizes:
    """The units of several ``IoSizes`` together, largest first."""
    merged: dict[int, int] = {}
    for part in parts:
        for size, n in part:
            merged[size] = merged.get(size, 0) + n
    return tuple(sorted(merged.items(), reverse=True))


def add_units(ctx: Context, counts: Counts, units: Sequence[Unit], policy: Policy) -> Counts:
    """Fold units into a context's counts."""
    d = attrs.asdict(counts, recurse=False)
    switch_labels: set[str] = set()
    bus_labels: set[str] = set()
    bus_io: dict[str, int] = {}
    sized: dict[tuple[str, int], int] = {}
    pack: dict[tuple[str, int], int] = {}
    for u in units:
        d["devices"] += len(u.devices)
        d["integrable_devices"] += len(u.devices) if u.can_integrate else 0
        category, reason = unit_category(ctx, u, policy)
        if category is Category.SWITCH_GROUP:
            d["switch_group_units"] += 1
            d["switch_group_io"] += 1 if u.has_io else 0
            switch_labels.add(u.switch_group or "")
            continue
        if category is Category.BUS_GROUP:
            d["bus_group_units"] += 1
            d["bus_group_any"] += 1 if u.hotplug is HotplugNeed.ANY else 0
            bus_labels.add(u.bus_group or "")
            if u.has_io:
                bus_io[u.bus_group or ""] = bus_io.get(u.bus_group or "", 0) + u.io_size
            continue
        if category is Category.IMPOSSIBLE:
            d["impossible"] = d["impossible"] or f"{ctx.label}: {reason}"
            continue
        name, io_name = _CATEGORY_FIELDS[category]
        d[name] += 1
        if category is Category.INTEGRATED and u.has_io:
            sized[("integrated_io", u.io_size)] = sized.get(("integrated_io", u.io_size), 0) + 1
        if io_name is not None and u.has_io:
            d[io_name] += 1
            if io_name in _IO_SIZED:
                sized[(io_name, u.io_size)] = sized.get((io_name, u.io_size), 0) + 1
            if category is Category.ROOT_SLOT and _prefers_bridge(ctx, u):
                key = ("root_slot_preferred_io", u.io_size)
                sized[key] = sized.get(key, 0) + 1
        if category is Category.OPTIONAL_INTEGRATED_PCI and u.hotplug is HotplugNeed.FORBIDDEN:
            d["optional_integrated_pci_forbidden"] += 1
            d["optional_integrated_pci_forbidden_io"] += 1 if u.has_io else 0
            if u.has_io:
                key = ("optional_integrated_pci_forbidden_io", u.io_size)
                sized[key] = sized.get(key, 0) + 1
        last_resort = last_resort_bucket(ctx, u, category)
        if last_resort:
            d[last_resort] += 1
            if u.has_io:
                sized[(last_resort, u.io_size)] = sized.get((last_resort, u.io_size), 0) + 1
        _count_alternatives(d, ctx, u, category)
        if category is Category.BRIDGE_TREE and u.has_io and u.hotplug is HotplugNeed.PREFERRED:
            # the IO BARs that stay in the trees when those with no hotplug need are packed (``_Moves.pack_io``)
            sized[("tree_preferred_io", u.io_size)] = sized.get(("tree_preferred_io", u.io_size), 0) + 1
        if u.hotplug is HotplugNeed.PREFERRED and _never_hotpluggable(ctx, category):
            d["hot_misses"] += 1
        for field in _pack_keys(u, category):
            pack[(field, u.io_size)] = pack.get((field, u.io_size), 0) + 1
    d["switch_groups"] += len(switch_labels)
    d["bus_groups"] += len(bus_labels)
    # one pci-bridge a group: its window holds the group's IO BARs
    d["bus_group_windows"] += sum(-(-size // IO_WINDOW) for size in bus_io.values())
    own = tuple(sorted(((f, size, n) for (f, size), n in sized.items()), key=lambda t: (t[0], -t[1])))
    d["io_sizes"] = _merge_io(counts.io_sizes, own)
    if pack:
        mine = tuple(sorted(((f, size, n) for (f, size), n in pack.items()), key=lambda t: (t[0], -t[1])))
        d["pack_sizes"] = _merge_io(counts.pack_sizes, mine)
    return Counts(**d)


def io_packable(u: Unit) -> bool:
    """Whether the IO packings (``_tree_io_mix``, ``_pci_mix``) may pack ``u`` as a function of a shared slot: one
    device with an IO BAR that has no hotplug need or only prefers it (one requiring hotplug keeps its own slot)."""
    return u.has_io and len(u.devices) == 1 and u.hotplug in (HotplugNeed.ANY, HotplugNeed.PREFERRED)


def _pack_keys(u: Unit, category: Category) -> tuple[str, ...]:
    """The fields of :attr:`Counts.pack_sizes` a unit counts in (as ``_count_alternatives`` counts it)."""
    if category is Category.ROOT_SLOT and u.integrated_required:
        return ("root_slot_integrated",)
    if not io_packable(u):
        return ()
    if category is Category.BRIDGE_TREE:
        return ("tree", "tree_any") if u.hotplug is HotplugNeed.ANY else ("tree",)
    if category is Category.ROOT_SLOT:
        return ("root_slot", "root_slot_any") if u.hotplug is HotplugNeed.ANY else ("root_slot",)
    return ()


def _prefers_bridge(ctx: Context, u: Unit) -> bool:
    """A root-slot unit that prefers hotplug on a root that is not hotpluggable (``root_slot_preferred``)."""
    return not u.integrated_required and u.hotplug is HotplugNeed.PREFERRED and not ctx.root_hotplug


def _count_alternatives(d: dict[str, int], ctx: Context, u: Unit, category: Category) -> None:
    """Count a unit in the buckets :func:`decide` may move to a cheaper position than its category's.

    A unit that prefers hotplug on a root slot that is not hotpluggable may
    take a pci-bridge's slot instead; a conventional unit may take a
    dmi-to-pci-bridge's slot instead of a bridge tree's (one controller
    instead of a root port and a pcie-to-pci-bridge, not hotpluggable); a
    PCI Express unit may share a root port with others as a function of its
    slot (functions are not hot-plugged one by one).
    """
    movable = not u.integrated_required
    if category is Category.OPTIONAL_INTEGRATED_PCI and u.hotplug is HotplugNeed.ANY and len(u.devices) == 1:
        d["optional_pci_packable_io" if u.has_io else "optional_pci_packable"] += 1
    if category is Category.ROOT_SLOT and u.hotplug is HotplugNeed.ANY:
        d["root_slot_any"] += 1
    if (
        category is Category.ROOT_SLOT
        and movable
        and u.has_io
        and len(u.devices) == 1
        and u.hotplug in (HotplugNeed.ANY, HotplugNeed.PREFERRED)
    ):
        d["root_slot_packable_io"] += 1
        d["root_slot_packable_io_any"] += 1 if u.hotplug is HotplugNeed.ANY else 0
    if movable and category is Category.ROOT_SLOT and u.hotplug is HotplugNeed.PREFERRED and not ctx.root_hotplug:
        d["root_slot_preferred"] += 1
        d["root_slot_preferred_io"] += 1 if u.has_io else 0
    elif category is Category.BRIDGE_TREE and u.hotplug in (HotplugNeed.ANY, HotplugNeed.PREFERRED):
        prefix = "tree_any" if u.hotplug is HotplugNeed.ANY else "tree_preferred"
        d[prefix] += 1
        d[f"{prefix}_io"] += 1 if u.has_io else 0
        if len(u.devices) == 1 and u.has_io:
            d["tree_packable_io"] += 1
            d["tree_packable_io_any"] += 1 if u.hotplug is HotplugNeed.ANY else 0
        if len(u.devices) == 1 and not u.has_io:
            d[f"{prefix}_packable"] += 1
            d["tree_packable_fixed"] += 0 if ctx.can_integrate and u.can_integrate else 1
        elif len(u.devices) == 1 and ctx.can_integrate and u.can_integrate:
            d[f"{prefix}_packable_io"] += 1
    elif category is Category.ROOT_PORT and len(u.devices) == 1:
        if u.hotplug is HotplugNeed.ANY:
            d["port_any"] += 1
        elif u.hotplug is HotplugNeed.PREFERRED:
            d["port_preferred"] += 1


def _never_hotpluggable(ctx: Context, category: Category) -> bool:
    """Whether a unit of this category in this context ends up where it cannot be hot-plugged.

    A root-slot unit on a root that is not hotpluggable is counted by
    :func:`decide`, which may give it a pci-bridge's slot instead.
    """
    return category in (
        Category.INTEGRATED,
        Category.OPTIONAL_INTEGRATED_PCIE,
        Category.OPTIONAL_INTEGRATED_PCI,
        Category.NOT_HOTPLUGGABLE_BRIDGE,
    )


def last_resort_bucket(ctx: Context, u: Unit, category: Category) -> str | None:
    """The last-resort integration bucket of a unit, if it has one."""
    if not (ctx.can_integrate and u.can_integrate) or category not in (Category.ROOT_PORT, Category.BRIDGE_TREE):
        return None
    pcie = category is Category.ROOT_PORT
    # a unit that must not be hot-plugged is as well integrated as on a port whose hotplug is turned off
    if u.hotplug in (HotplugNeed.ANY, HotplugNeed.FORBIDDEN):
        return "last_resort_pcie_any" if pcie else "last_resort_pci_any"
    if u.hotplug is HotplugNeed.PREFERRED:
        return "last_resort_pcie_preferred" if pcie else "last_resort_pci_preferred"
    return None


LAST_RESORT_ORDER = (
    "last_resort_pcie_any",
    "last_resort_pci_any",
    "last_resort_pcie_preferred",
    "last_resort_pci_preferred",
)
"""Which units are integrated first as a last resort: those that do not care about hotplug, PCIe first."""


LAST_RESORT_PCI_FIRST = (
    "last_resort_pci_any",
    "last_resort_pcie_any",
    "last_resort_pci_preferred",
    "last_resort_pcie_preferred",
)
"""The other order: a conventional unit integrated saves a bridge tree (two controllers), a PCIe one a port."""


def last_resort_split(c: Counts, n: int, *, pci_first: bool = False) -> dict[str, int]:
    """How ``n`` last-resort integrations are taken from the buckets, in order."""
    out: dict[str, int] = {}
    for name in LAST_RESORT_PCI_FIRST if pci_first else LAST_RESORT_ORDER:
        take = min(n, getattr(c, name))
        out[name] = take
        n -= take
    return out


def integrable(c: Counts) -> int:
    """Units that may go directly on the root bus beyond the required ones."""
    return (
        c.optional_integrated_pcie
        + c.optional_integrated_pci
        + c.last_resort_pcie_any
        + c.last_resort_pci_any
        + c.last_resort_pcie_preferred
        + c.last_resort_pci_preferred
    )


def unit_category(ctx: Context, u: Unit, policy: Policy) -> tuple[Category, str]:
    """Where a unit goes inside a context, and why not when it cannot go there at all."""
    if u.switch_group is not None:
        if ctx.root_kind is not RootKind.PCIE or not ctx.offers_switch:
            return Category.IMPOSSIBLE, (
                f"switch group {u.switch_group!r} needs PCI Express switches, which {ctx.label} cannot take"
            )
        if u.connect is not Connect.PCIE_DEVICE:
            return Category.IMPOSSIBLE, f"switch group {u.switch_group!r}: {u.name!r} is not a PCI Express device"
        return Category.SWITCH_GROUP, ""
    if u.bus_group is not None:
        if u.connect is Connect.PCIE_DEVICE and ctx.root_kind is RootKind.PCIE:
            if not (ctx.can_integrate and u.can_integrate) or u.hotplug is HotplugNeed.REQUIRED:
                return Category.IMPOSSIBLE, (
                    f"bus group {u.bus_group!r}: PCI Express devices share a bus only as integrated "
                    f"endpoints of the main root bus, which cannot be hot-plugged"
                )
            return Category.INTEGRATED, ""
        if ctx.root_kind is RootKind.NEW_HOST_BRIDGE:
            return Category.IMPOSSIBLE, "bus groups go on a pci-bridge, not a new host bridge"
        if ctx.root_kind is RootKind.PCIE and not ctx.offers_pcie_to_pci:
            return (
                Category.IMPOSSIBLE,
                f"bus group {u.bus_group!r} needs a pcie-to-pci-bridge, which this machine lacks",
            )
        return Category.BUS_GROUP, ""
    if u.integrated_required:
        if ctx.bus != 0:
            return Category.IMPOSSIBLE, "must be integrated on bus 0"
        return (Category.INTEGRATED if ctx.root_kind is RootKind.PCIE else Category.ROOT_SLOT), ""
    if ctx.root_kind is RootKind.PCIE:
        integrate_ok = ctx.can_integrate and u.can_integrate
        if u.connect is Connect.PCIE_DEVICE:
            if integrate_ok and policy.prefer_integrated and u.hotplug in (HotplugNeed.ANY, HotplugNeed.FORBIDDEN):
                return Category.OPTIONAL_INTEGRATED_PCIE, ""
            return Category.ROOT_PORT, ""
        # conventional PCI on a PCIe machine
        if u.hotplug is HotplugNeed.FORBIDDEN:
            if integrate_ok:
                return Category.OPTIONAL_INTEGRATED_PCI, ""
            if not ctx.offers_dmi:
                return Category.IMPOSSIBLE, (
                    "needs a non-hotpluggable conventional slot (no dmi-to-pci-bridge on this machine)"
                )
            return Category.NOT_HOTPLUGGABLE_BRIDGE, ""
        if integrate_ok and policy.prefer_integrated and u.hotplug is HotplugNeed.ANY:
            return Category.OPTIONAL_INTEGRATED_PCI, ""
        if not (ctx.offers_pcie_to_pci or ctx.offers_dmi):
            if integrate_ok and u.hotplug is not HotplugNeed.REQUIRED:
                return Category.OPTIONAL_INTEGRATED_PCI, ""
            return Category.IMPOSSIBLE, "needs a conventional PCI bus (this machine offers no PCIe-to-PCI bridge)"
        return Category.BRIDGE_TREE, ""
    # conventional root: pc pci.0, pxb, pseries host bridges
    if u.hotplug is HotplugNeed.FORBIDDEN:
        if ctx.root_hotplug:
            return Category.IMPOSSIBLE, "must not be hotpluggable, but every slot here is"
        return Category.ROOT_SLOT, ""
    if u.hotplug is HotplugNeed.REQUIRED and not ctx.root_hotplug:
        return Category.HOTPLUG_BRIDGE_ONLY, ""
    return Category.ROOT_SLOT, ""


@attrs.frozen
class Decision:
    """How a context hosts its counts (a deterministic function of the counts and the context's decisions)."""

    feasible: bool
    reason: str = ""
    integrated_pcie: int = 0
    """Optionally integrated PCI Express endpoints (beyond the required ones)."""
    integrated_pci: int = 0
    integrated_devices: int = 0
    """Devices that end up directly on the root bus, every reason counted."""
    direct_ports: int = 0
    """Root ports holding an endpoint or a spare (not switch or bridge uplinks)."""
    port_units: int = 0
    spare: int = 0
    switches: int = 0
    downstream: int = 0
    tree_units: int = 0
    tree_io: int = 0
    tree_bridges: int = 0
    """pci-bridges chained below the top bridges of the trees."""
    tree_sizes: tuple[int, ...] = ()
    """Endpoints of each bridge tree (pcie-to-pci-bridge behind a root port, or a pci-bridge on a root bus)."""
    tree_via_dmi: bool = False
    dmi: bool = False
    dmi_units: int = 0
    dmi_bridges: int = 0
    root_slot_units: int = 0
    preferred_direct: int = 0
    """Root-slot units that prefer hotplug and stay on a root that is not hotpluggable (the rest are bridged)."""
    root_bridges: int = 0
    host_bridges: int = 0
    root_slots: int = 0
    bus_numbers: int = 0
    io_windows: int = 0
    root_io_bytes: int = 0
    """IO BAR bytes of the endpoints put directly on the root bus: the firmware's room for them there is
    shared by every root bus, and each 4 KiB beyond it takes a window."""
    controllers: int = 0
    hot_misses: int = 0
    spare_missing: int = 0
    last_resort: tuple[tuple[str, int], ...] = ()
    """Last-resort integrations by bucket (see :data:`LAST_RESORT_ORDER`)."""
    dmi_any: int = 0
    """Bridge-tree units with no hotplug need moved to the dmi-to-pci-bridge (see ``_Moves``)."""
    dmi_preferred: int = 0
    pack_any: int = 0
    """Root-port units with no hotplug need sharing root ports as functions (see ``_Moves``)."""
    pack_preferred: int = 0
    on_tree_ports: int = 0
    """Of the sharing units, those at functions 1..7 of the root ports holding the trees' pcie-to-pci-bridges."""
    occupied_hot: int = 0
    """Units with no hotplug need left on a hotpluggable position (the ``hotplug-off-occupied`` term's misses)."""
    pack_pci: int = 0
    """Bridge-tree units packed 8 a slot as functions (see ``_Moves.pack_pci``); ``tree_units`` counts slots."""
    pack_pci_any: int = 0
    """Of those, the ones with no hotplug need (they come first)."""
    pack_dmi_groups: int = 0
    """Groups of packed units on the dmi-to-pci-bridge's slots (after the root bus's); the others on tree slots."""
    pack_root_groups: int = 0
    """Groups of packed units on free slots of the root bus (the first groups), as integrated endpoints."""
    pack_io: bool = False
    """The packed units include the trees' IO-BAR units, all on the root bus (``_Moves.pack_io``)."""
    pack_tree_io: bool = False
    """The packed units are the trees' IO-BAR units, on the trees' slots (``_Moves.pack_tree_io``)."""
    bus_packing: tuple[tuple[int, int], ...] = ()
    """On a conventional root whose bridged IO-BAR units are packed (``_pci_packing``): per pci-bridge, the packed
    units on its bus (8 a slot, the last slot the rest) and the units alone on a slot after them."""
    root_io: IoSizes = ()
    """On a conventional root with :attr:`Context.balance_io`, when its slots hold the IO BARs that fit the root's
    room rather than the largest: those BARs of its units with no hotplug preference (0 bytes: no IO BAR)."""
    bus_io: BusIo = ()
    """With :attr:`bus_packing`, when the IO BARs were dealt out balanced (:attr:`Context.balance_io`): per
    pci-bridge, the IO BARs of its packed units and of its units alone (``()``: largest first, in order)."""
    pack_beside: int = 0
    """Packed units after the root bus's groups on the free functions of its slots holding root ports (integrated
    endpoints beside the ports, the slot multifunction): all the packed units the root slots' groups leave."""


def fanout(n: int) -> int:
    """pci-bridges needed below one 31-slot bridge to host ``n`` endpoints (chained: see :data:`TREE_CAPACITY`).

    Each pci-bridge takes one slot of the bridge above it and gives 31, so it
    adds 30: the fewest bridges (bus numbers, controllers) that fit.
    """
    if n <= BRIDGE_SLOTS:
        return 0
    return math.ceil((n - BRIDGE_SLOTS) / (BRIDGE_SLOTS - 1))


TREE_CAPACITY = BRIDGE_SLOTS + (BRIDGE_SLOTS - 1) * BRIDGE_SLOTS
"""Endpoints one bridge tree holds (961): a 31-slot bridge and up to 31 pci-bridges chained below it.

A tree is a chain, not a fan: each pci-bridge sits in slot 1 of the bridge above
it, and the endpoints fill the top bridge's slots 2..31, then the next bridge's,
down to the last one's 1..31. Both shapes spend one bus number and one
controller per 30 endpoints, but the firmware sizes a bridge's IO window as the
IO of its bus plus its children's windows, and SeaBIOS and OVMF reserve a 4 KiB
window for every hotplug bridge whose subtree has no IO BAR: in a fan every
pci-bridge is such a leaf, in a chain only the last one. So a chain of IO-less
endpoints takes one window where a fan of m pci-bridges took m (pc has room for
8: 500 such endpoints fit in a chain, and were refused as fans), and with IO
BARs a chain never takes more (each bus adds its own IO rounded up to 4 KiB
either way). Measured (tests/integration/test_qemu_plans.py): 16 chained
pci-bridges holding 500 endpoints on pc map under SeaBIOS and take device_add in
every empty slot, and 16 below a pcie-to-pci-bridge on q35 map under SeaBIOS and
OVMF. 961
endpoints a tree is kept as the bound: it already exceeds what any one root
port's tree needs (256 bus numbers in all)."""


@functools.lru_cache(maxsize=1024)
def split_trees(n: int) -> tuple[int, ...]:
    """Endpoints per bridge tree: full trees first."""
    sizes = []
    while n > 0:
        sizes.append(min(n, TREE_CAPACITY))
        n -= sizes[-1]
    return tuple(sizes)


@functools.lru_cache(maxsize=4096)
def trees_io_windows(
    sizes: tuple[int, ...], io: IoSizes, *, top_reserves: bool = False, fan_reserves: bool = False
) -> int:
    """IO windows of several trees, IO endpoints (largest first) filling the first trees first.

    See :func:`tree_io_windows`.
    """
    total = 0
    for size in sizes:
        here, io = split_io(io, size)
        total += tree_io_windows(size, here, top_reserves=top_reserves, fan_reserves=fan_reserves)
    return total


@functools.lru_cache(maxsize=1024)
def trees_buses(sizes: tuple[int, ...]) -> int:
    """Bridges of several trees: each top bridge and the pci-bridges chained below it."""
    return sum(1 + fanout(size) for size in sizes)


def tree_free_slots(size: int) -> int:
    """Empty hotpluggable slots a tree of ``size`` endpoints keeps."""
    m = fanout(size)
    return (BRIDGE_SLOTS - m) + BRIDGE_SLOTS * m - size


@functools.lru_cache(maxsize=4096)
def tree_io_windows(n: int, io: IoSizes, *, top_reserves: bool = False, fan_reserves: bool = False) -> int:
    """4 KiB IO windows a bridge tree of ``n`` endpoints needs, its IO endpoints' BARs ``io`` placed first.

    Endpoints fill the top bridge's free slots first, then each pci-bridge of
    the chain below it (:data:`TREE_CAPACITY`); IO endpoints come first,
    largest first, so they share as few buses as possible. Each bus adds
    ``ceil(bytes / 4 KiB)`` windows (the firmware sizes a bridge's window as
    the IO BARs on its bus plus the windows of the bridges below it, rounded
    up to 4 KiB). A bridge the firmware reserves a window for
    (``fan_reserves`` for the chained pci-bridges, ``top_reserves`` for the
    top one) takes one when nothing below it has an IO BAR: in a chain only
    the last bridge can be such a bridge, and the top one only when the whole
    tree has no IO and no chain.

    >>> tree_io_windows(31, ((256, 16), (64, 15)))  # 4096 + 960 bytes on one bus
    2
    >>> tree_io_windows(31, ((256, 8), (32, 23)), top_reserves=True)  # 2048 + 736
    1
    >>> tree_io_windows(400, (), top_reserves=True, fan_reserves=True)  # 13 chained bridges, one window
    1
    """
    m = fanout(n)
    if not io and not (fan_reserves and m) and not top_reserves:
        return 0
    windows = 0
    filled = 0  # buses holding IO endpoints: the top bridge's, then the chain's in order
    while io and filled <= m:
        # every bridge but the last gives one of its slots to the next one
        here, io = split_io(io, BRIDGE_SLOTS - 1 if filled < m else BRIDGE_SLOTS)
        windows += -(-io_bytes(here) // IO_WINDOW)
        filled += 1
    if fan_reserves and m and filled <= m:
        windows += 1  # the last pci-bridge of the chain has no IO BAR below it: its reservation
    return max(windows, 1) if top_reserves else windows


def chain_buses(sizes: Sequence[int]) -> list[int]:
    """The slots each bus of bridge trees of ``sizes`` slots gives endpoints, trees and chains in order: every bus
    of a chain but the last gives one of its 31 to the next pci-bridge (:data:`TREE_CAPACITY`).

    >>> chain_buses((31, 65))
    [31, 30, 30, 5]
    """
    out: list[int] = []
    for n in sizes:
        m = fanout(n)
        out += [BRIDGE_SLOTS - 1] * m + [n - (BRIDGE_SLOTS - 1) * m]
    return out


def deal_groups(capacities: Sequence[int], groups: int) -> list[list[int]]:
    """Groups of packed units dealt to buses of ``capacities`` slots in turn (group ``k`` to the next bus with a
    slot left): per bus, the groups it holds. So every bus holds about as many, and as much IO.

    >>> deal_groups([30, 30, 1], 5)
    [[0, 3], [1, 4], [2]]
    """
    out: list[list[int]] = [[] for _ in capacities]
    k = 0
    while k < groups:
        before = k
        for bus, cap in enumerate(capacities):
            if k < groups and len(out[bus]) < cap:
                out[bus].append(k)
                k += 1
        if k == before:
            raise ValueError(f"{groups} groups do not fit buses of {list(capacities)} slots")
    return out


def packed_trees_io_windows(
    sizes: tuple[int, ...],
    size: int,
    alone_io: int,
    alone: int,
    packed: int,
    *,
    top_reserves: bool = False,
    fan_reserves: bool = False,
) -> int:
    """IO windows of bridge trees of ``sizes`` slots whose IO-BAR units (``size`` bytes each) are partly packed
    (``_Moves.pack_tree_io``): the ``packed`` units in groups of 8 (the last group the rest) dealt to the buses in
    turn (:func:`deal_groups`, a slot a group), then on each bus the ``alone`` units alone on a slot (the
    ``alone_io`` with an IO BAR first), bus by bus (:func:`tree_io_windows` counts the same without groups).

    >>> packed_trees_io_windows((31,), 64, 0, 0, 248, top_reserves=True)  # 31 groups of 8: 15872 bytes
    4
    >>> packed_trees_io_windows((61,), 64, 0, 30, 248, top_reserves=True, fan_reserves=True)  # 16 and 15 groups
    4
    >>> packed_trees_io_windows((31,), 64, 31, 31, 0) == tree_io_windows(31, ((64, 31),))
    True
    """
    return mixed_trees_io_windows(
        sizes,
        (size,) * packed,
        ((size, alone_io),) if alone_io else (),
        alone,
        top_reserves=top_reserves,
        fan_reserves=fan_reserves,
    )


def mixed_trees_io_windows(
    sizes: tuple[int, ...],
    packed: tuple[int, ...],
    alone_io: IoSizes,
    alone: int,
    *,
    top_reserves: bool = False,
    fan_reserves: bool = False,
) -> int:
    """:func:`packed_trees_io_windows` for IO BARs of several sizes: the packed units' BARs in packing order
    (``packed[8k:8k + 8]`` is group ``k``), the units alone with an IO BAR ``alone_io`` (placed largest first).

    >>> mixed_trees_io_windows((31,), (64,) * 8 + (32,) * 8, ((64, 29),), 29, top_reserves=True)  # 768 + 1856
    1
    >>> mixed_trees_io_windows((31,), (64,) * 120, ((32, 16),), 16, top_reserves=True)  # 7680 + 512 bytes
    2
    """
    groups = -(-len(packed) // 8)
    buses = chain_buses(sizes)
    dealt = deal_groups(buses, groups)
    windows = 0
    bus = 0
    for n in sizes:
        m = fanout(n)
        here = 0
        last = 0
        for _ in range(m + 1):
            mine, alone_io = split_io(alone_io, buses[bus] - len(dealt[bus]))
            last = sum(sum(packed[8 * k : 8 * k + 8]) for k in dealt[bus]) + io_bytes(mine)
            here += -(-last // IO_WINDOW)
            bus += 1
        if fan_reserves and m and not last:
            here += 1  # the last pci-bridge of the chain has no IO BAR below it: its reservation
        windows += max(here, 1) if top_reserves else here
    return windows


def packing_order(first: IoSizes, then: IoSizes, n_first: int, n: int) -> tuple[tuple[int, ...], IoSizes]:
    """The IO BARs of ``n`` packed units in packing order, the ``n_first`` largest of ``first`` (those with no
    hotplug need) then the largest of ``then`` (preferring hotplug), as the realiser takes them, and all of them.

    >>> packing_order(((64, 3), (32, 2)), ((32, 4),), 4, 6)
    ((64, 64, 64, 32, 32, 32), ((64, 3), (32, 3)))
    """
    head, _ = split_io(first, n_first)
    tail, _ = split_io(then, n - n_first)
    order = tuple(size for part in (head, tail) for size, k in part for _ in range(k))
    return order, io_merge(head, tail)


def decide(
    ctx: Context,
    c: Counts,
    policy: Policy,
    *,
    integrate: int = 0,
    bridges: int = 0,
    spare: int = 0,
    spare_wanted: int = 0,
    expanders_here: int = 0,
    bus_cap: int | None = None,
    io_cap: int | None = None,
) -> Decision:
    """Lay a context out by counts and its decisions, or say why it cannot be.

    ``integrate``: endpoints beyond the required ones put directly on a PCIe
    root bus (the optional ones first, then last-resort ones, see
    :data:`LAST_RESORT_ORDER`); ``bridges``: pci-bridges on a conventional
    root; ``spare``: empty hotpluggable ports to add (of ``spare_wanted``);
    ``expanders_here``: root slots kept for new expander buses; ``bus_cap``:
    the most bus numbers the context could get; ``io_cap``: the most IO
    windows it could get (a layout within it is preferred to any beyond it,
    which no plan can use).
    """
    if c.impossible:
        return Decision(False, c.impossible)
    if ctx.root_kind is RootKind.PCIE:
        return _decide_pcie(ctx, c, policy, integrate, spare, spare_wanted, expanders_here, bus_cap, io_cap)
    if ctx.root_kind is RootKind.NEW_HOST_BRIDGE:
        return _decide_new_host_bridges(c, policy)
    decision = _decide_pci(ctx, c, policy, bridges, spare, spare_wanted, expanders_here, io_cap)
    if bus_cap is not None and decision.feasible and decision.bus_numbers > bus_cap:
        # an existing pci-expander-bus has the bus numbers up to the next expander's bus_nr only (the domain's
        # shared budget is a constraint of its own, but it does not count an expander's own range)
        return Decision(False, f"{ctx.label}: {decision.bus_numbers} bus numbers needed, {bus_cap} left")
    return decision


class _Moves(NamedTuple):
    """Units a PCIe context moves from their category's position to a cheaper one (see ``_count_alternatives``).

    A named tuple, not an attrs class: a context's decision builds and looks up some fifty of them (the
    packing's binary searches), and a tuple's construction and hash are C code."""

    dmi_any: int = 0
    """Bridge-tree units with no hotplug need put on a dmi-to-pci-bridge's slot."""
    dmi_preferred: int = 0
    """Bridge-tree units preferring hotplug put there (each a hotplug miss)."""
    pack_any: int = 0
    """Root-port units with no hotplug need sharing root ports, 8 functions a port."""
    pack_preferred: int = 0
    """Root-port units preferring hotplug sharing them too (each a hotplug miss)."""
    pci_first: bool = False
    """Last-resort integration takes conventional units before PCI Express ones (:data:`LAST_RESORT_PCI_FIRST`)."""
    tree_via_dmi: bool = False
    """The bridge-tree units go on pci-bridges under the dmi-to-pci-bridge (one controller each) instead of
    pcie-to-pci-bridges behind root ports (two), though the machine offers the latter."""
    pack_pci: int = 0
    """Bridge-tree units packed 8 a slot as the functions of multifunction slots (never 8k + 1: a group of one
    is a unit alone). Those with no hotplug need first (``pack_pci_any`` of them), then those preferring
    hotplug, each a hotplug miss: libvirt and QEMU hot-plug single-function slots only. Every group is a slot
    of a tree's bridge, or with ``pack_dmi`` first a slot of the dmi-to-pci-bridge (no IO window, not
    hotpluggable). So far fewer SHPC bridges hold the units: SeaBIOS gives each a 4 KiB IO window, and q35
    has 14."""
    pack_pci_any: int = 0
    pack_dmi: bool = False
    pack_root: bool = False
    """Packed groups take the root bus's slots that no port needs first (integrated endpoints; every packable unit
    of the context may be integrated); when those run out, the units left may take the free functions of the root
    bus's slots holding root ports (all of them or none; a count of 8k + 1 only so, its last unit beside a port)."""
    pack_io: bool = False
    """The packed units include every bridge-tree unit with an IO BAR and no hotplug need (and every one
    preferring hotplug when those are packed too; ``Counts.*_packable_io``), and every group goes on the root bus
    (its slots, or beside its root ports): the root bus needs no IO window, so their BARs leave the trees' windows
    for the firmware's room on the root buses. Only when the units packed are exactly those the counts say
    (``_io_packable``)."""
    pack_tree_io: bool = False
    """The packed units are the trees' IO-BAR units (and no others), their groups on the trees' own slots after the
    units alone: a bus of 31 slots then holds more than 31 of them, so a 4 KiB window fills (64 e1000) and fewer
    windows hold them all. Only where the counts say exactly which units and BARs those are
    (``_tree_io_packable``)."""


def _decide_pcie(
    ctx: Context,
    c: Counts,
    policy: Policy,
    integrate: int,
    spare_n: int,
    spare_wanted: int,
    expanders_here: int,
    bus_cap: int | None,
    io_cap: int | None = None,
) -> Decision:
    """The cheapest of the layouts that differ only in the moves of :class:`_Moves` (a local choice).

    The moves change only the context's own controllers, hotplug misses and
    integrated endpoints (packed units on the root bus), and lower its bus
    numbers and IO windows, so the cheapest of them by the policy's weights
    (every term of ``model.context_cost`` the moves change) is the context's
    best layout for these decisions;
    ties go to the fewest bus numbers, then to the fewest moves. A layout
    within ``io_cap`` (the IO windows the firmware has left for every
    context together) beats every one beyond it, which no plan can use.
    """
    # the parts of the layouts that do not depend on the packing, shared by every layout of this call
    memo: dict[tuple[object, ...], Decision | _Prepared | _Laid] = {}
    laid = _layout_pcie(ctx, c, policy, integrate, spare_n, spare_wanted, expanders_here, bus_cap, _Moves(), memo)
    base = laid if isinstance(laid, Decision) else laid.decision()
    last = max(0, integrate - c.optional_integrated_pcie - c.optional_integrated_pci)
    both_kinds = last and (c.last_resort_pcie_any or c.last_resort_pcie_preferred)
    both_kinds = both_kinds and (c.last_resort_pci_any or c.last_resort_pci_preferred)
    movable = c.tree_units or c.port_any or c.port_preferred
    fits = base.feasible and (io_cap is None or base.io_windows <= io_cap)
    # packing pays only when the layout does not fit as it is, when the trees need more than one bridge, or when
    # the units can leave the trees for the root bus's slots
    root_ok = ctx.can_integrate and not c.tree_packable_fixed
    packable_units = c.tree_any_packable + c.tree_preferred_packable + c.optional_pci_packable
    packable_units += _io_packable(ctx, c, last)
    # one unit packs only beside a root port (on the root bus's functions): a group of one elsewhere is a unit alone
    packable = packable_units > 1 or (packable_units == 1 and root_ok and base.tree_units > 0)
    packable = packable and (not fits or base.tree_units > (0 if root_ok else BRIDGE_SLOTS))
    # the moves lower bus numbers too: a layout that needs one more than the context has (a pcie-to-pci-bridge behind
    # a root port on a pxb-pcie with one number left) may fit with a dmi-to-pci-bridge instead (found by the
    # enumerator: an 'optimal' plan adding a second pxb-pcie for it)
    if not (movable or both_kinds or packable):
        return base
    weights = policy.weights
    per_controller, per_hot_miss = weights["fewer-controllers"], weights["hotplug"]
    per_occupied_hot = weights["hotplug-off-occupied"]
    # the integrated term (model.context_cost's): packing puts conventional units on the root bus's slots and
    # beside its root ports, integrated endpoints a layout without it leaves on the trees
    per_integrated = weights["integrated"] if policy.prefer_integrated else 0

    reusable = ctx.reusable_uplinks

    def key(d: Decision | _Laid, moves: _Moves) -> tuple[int, ...]:
        cost = per_controller * d.controllers + per_hot_miss * d.hot_misses + per_occupied_hot * d.occupied_hot
        if reusable:
            cost -= per_controller * min(reusable, d.uplinks if isinstance(d, _Laid) else _decision_uplinks(d, c))
        cost += per_integrated * max(0, c.integrable_devices - d.integrated_devices)
        moved = moves.dmi_any + moves.dmi_preferred + moves.pack_any + moves.pack_preferred + moves.pack_pci
        # a layout beyond the IO windows the firmware has left is of no use to any plan: every one within wins
        over = io_cap is not None and d.io_windows > io_cap
        return (over, cost, d.bus_numbers, d.io_windows, moved + moves.pci_first + moves.tree_via_dmi)

    # the best layout so far: its Decision is built once, for the one chosen, not for every one better than the last
    best: Decision | _Laid = base
    best_key = key(base, _Moves())
    # the layouts already considered, by their moves: considering one again cannot change the best (its key is
    # no less than the best's since), so the packing search's repeats cost a look-up
    considered: dict[_Moves, Decision | _Laid] = {_Moves(): base}

    def consider(moves: _Moves) -> Decision | _Laid:
        nonlocal best, best_key
        d = considered.get(moves)
        if d is not None:
            return d
        d = _layout_pcie(ctx, c, policy, integrate, spare_n, spare_wanted, expanders_here, bus_cap, moves, memo)
        considered[moves] = d
        if isinstance(d, _Laid):
            k = key(d, moves)
            if not best.feasible or k < best_key:
                best, best_key = d, k
        return d

    for pci_first in (False, True) if both_kinds else (False,):
        if movable:
            for moves in _moves(ctx, c, policy, last, pci_first):
                if moves != _Moves():
                    consider(moves)
        if packable:
            plain = _Moves(pci_first=pci_first)
            prepared = _prepared(ctx, c, policy, integrate, spare_n, spare_wanted, expanders_here, plain, memo)
            root_idle = isinstance(prepared, _Prepared) and _root_takes_no_group(c, prepared, integrate, spare_n)
            for moves in _pack_moves(
                ctx, c, policy, integrate, pci_first, io_cap, consider, base_fits=fits, root_idle=root_idle
            ):
                consider(moves)
    for pci_first in (False, True) if both_kinds else (False,):
        if fits or io_cap is None:
            break
        plain = _Moves(pci_first=pci_first)
        prepared = _prepared(ctx, c, policy, integrate, spare_n, spare_wanted, expanders_here, plain, memo)
        staying = _tree_io_packable(c, prepared)
        n_any = staying if c.tree_packable_io_any or c.optional_pci_packable_io else 0
        if not staying:
            # several IO BAR sizes or hotplug needs, or units that cannot be packed (hotplug required): the units
            # with no hotplug need first, then those preferring it; the others stay alone on hotpluggable slots
            n_any, staying = _tree_io_mix(c, prepared)
        if not staying:
            continue

        # the trees' IO-BAR units packed on the trees' own slots, for each number of buses of one chain the least
        # packing that fits the trees' units on it (fitting is not monotone in the units packed: fewer buses hold
        # more each, and each bus's IO is rounded up to 4 KiB); the policy's weights choose among them
        assert isinstance(prepared, _Prepared)
        for buses in range(1, BRIDGE_SLOTS + 2):
            short = prepared.tree_units - ((BRIDGE_SLOTS - 1) * buses + 1)  # units past one a slot
            if short <= 0:
                break
            packed = short + short // 7  # the fewest with packed - groups >= short
            while packed - -(-packed // 8) < short or packed % 8 == 1:
                packed += 1
            if packed <= staying:
                consider(
                    _Moves(
                        pci_first=pci_first,
                        pack_pci=packed,
                        pack_pci_any=min(packed, n_any),
                        pack_tree_io=True,
                    )
                )
    return best.decision() if isinstance(best, _Laid) else best


def _tree_io_packable(c: Counts, p: Decision | _Prepared | _Laid) -> int:
    """The trees' IO-BAR units ``_Moves.pack_tree_io`` may pack in a preparation ``p`` (0: it does not apply, the
    layout could not tell exactly which units it packs and their BARs).

    Every IO-BAR unit of the trees may be packed (a single device that does not require hotplug, as is every one
    the policy would integrate that integration leaves to them: those have no hotplug need), all have one BAR size
    and one hotplug need, and the trees hang from root ports. Integration takes the largest BARs first, the same
    for every unit here.
    """
    if not isinstance(p, _Prepared) or p.use_dmi_tree or p.tree_io < 2 or len(p.tree_io_sizes) != 1:
        return 0
    if c.tree_packable_io != c.tree_io:
        return 0
    if c.optional_integrated_pci_io - c.optional_integrated_pci_forbidden_io != c.optional_pci_packable_io:
        return 0
    # one hotplug need: the optional units have none, so the trees' must have none either when those join them
    if c.tree_packable_io_any not in ((c.tree_io,) if c.optional_pci_packable_io else (0, c.tree_io)):
        return 0
    return p.tree_io


def _tree_io_mix(c: Counts, p: Decision | _Prepared | _Laid) -> tuple[int, int]:
    """The trees' IO-BAR units ``_Moves.pack_tree_io`` may pack where :func:`_tree_io_packable` cannot tell
    (several BAR sizes or hotplug needs, or IO-BAR units it cannot pack): those with no hotplug need and all of
    them, ``(0, 0)`` when it does not apply.

    The packable units are the trees' single-device IO-BAR units that do not require hotplug
    (:attr:`Counts.pack_sizes`' ``tree``) and those the policy would integrate that integration leaves to the
    trees (no hotplug need, see :func:`_tree_pools`); the others (hotplug required, several devices) stay alone on
    a slot, hotpluggable.
    """
    if not isinstance(p, _Prepared) or p.use_dmi_tree or p.tree_io < 2:
        return 0, 0
    pools = _tree_pools(c, p.tree_io_sizes, p.split)
    if pools is None:
        return 0, 0
    any_sizes, preferred = pools
    packable = io_units(any_sizes) + io_units(preferred)
    return (io_units(any_sizes), packable) if packable >= 2 else (0, 0)


def _tree_pools(c: Counts, tree_io_sizes: IoSizes, split: dict[str, int]) -> tuple[IoSizes, IoSizes] | None:
    """The BARs of the trees' packable IO-BAR units with no hotplug need and of those preferring it, the trees
    holding ``tree_io_sizes`` after last-resort integration took ``split`` (``None``: the layout cannot tell which
    units those are).

    Last-resort integration takes the largest IO BARs of its buckets first (``_realize._io_first``): the units it
    takes from the trees are the largest of the packable ones when every IO-BAR unit of its buckets is packable
    and every packable one in them (the buckets' BARs are the pools'). The trees also hold the units the policy
    would integrate that integration leaves (the smallest, it takes the largest first): every one of those must be
    packable (a single device; they have no hotplug need), so that the trees' BARs less their own are exactly the
    ones joining them.
    """
    any_sizes = pack_of(c, "tree_any")
    preferred = io_without(pack_of(c, "tree"), any_sizes)
    own = io_of(c, "tree_io")
    taken_any, taken_preferred = split.get("last_resort_pci_any", 0), split.get("last_resort_pci_preferred", 0)
    if taken_any or taken_preferred:
        if (c.tree_any_io, c.tree_preferred_io) != (io_units(any_sizes), io_units(preferred)):
            return None
        if (io_of(c, "last_resort_pci_any"), io_of(c, "last_resort_pci_preferred")) != (any_sizes, preferred):
            return None
        gone = io_merge(split_io(any_sizes, taken_any)[0], split_io(preferred, taken_preferred)[0])
        any_sizes = split_io(any_sizes, taken_any)[1]
        preferred = split_io(preferred, taken_preferred)[1]
        own = io_without(own, gone)
    held = dict(tree_io_sizes)
    if any(held.get(size, 0) < n for size, n in own):
        return None
    joining = io_without(tree_io_sizes, own)
    if joining and c.optional_pci_packable_io != c.optional_integrated_pci_io - c.optional_integrated_pci_forbidden_io:
        return None
    return io_merge(any_sizes, joining), preferred


def _root_takes_no_group(c: Counts, p: _Prepared, integrate: int, spare_n: int) -> bool:
    """Whether no packing of a context's conventional units (``_Moves.pack_pci``, the other moves none) can put a
    group on the root bus or a unit beside a root port: then each packing with ``pack_root`` is laid out as the same
    packing without it (or, for 8k + 1 units, not at all), and :func:`_pack_moves` need not try them.

    ``_layout_pcie`` puts groups on the root bus only when an arrangement leaves a root slot to spare
    (``spare_root_slots`` > 0, or >= 0 with every group there, which takes a slot more), and units beside the
    ports only when it leaves exactly none (and ports are packed 8 a slot). An arrangement's spare root slots are
    its slots left less the slots its ports need past the free port functions; its slots left are at most
    ``free - integrated_required - integrate`` (no dmi-to-pci-bridge, no group on the root bus) and its ports at
    least the root-port units, the spare ports and the switch and bus groups' ports (no tree, no shared port), so
    when that bound is below 0 (or at most 0 with one port a slot), no packing takes the root bus.
    """
    slots = p.free - c.integrated_required - integrate
    ports = (
        c.root_port_units
        + (c.optional_integrated_pcie - p.ip)
        - p.last_pcie
        - p.packed
        + spare_n
        + c.switch_groups
        + c.bus_groups
    )
    most = slots - -(-max(0, ports - p.aggregate_free) // p.pack)
    return most < 0 or (most <= 0 and p.pack != 8)


def quick_decide(
    ctx: Context,
    c: Counts,
    policy: Policy,
    *,
    integrate: int,
    spare: int,
    spare_wanted: int,
    expanders_here: int,
    bus_cap: int | None,
    io_cap: int | None,
) -> bool:
    """Whether a PCI Express root's layout without moves is feasible and within ``io_cap`` (``False``: maybe not).

    :func:`decide` starts from that layout and takes another only when it is cheaper and also within
    ``io_cap``, so its decision is then feasible and within ``io_cap`` too: a cheap answer to whether it is.
    """
    if c.impossible or spare > max(0, spare_wanted - ctx.empty_hot_ports):
        return False
    laid = _layout_pcie(ctx, c, policy, integrate, spare, spare_wanted, expanders_here, bus_cap, _Moves())
    return isinstance(laid, _Laid) and (io_cap is None or laid.io_windows <= io_cap)


def pcie_cost_floor(
    ctx: Context,
    c: Counts,
    policy: Policy,
    integrate: int,
    spare_n: int,
    spare_wanted: int,
    *,
    controllers: bool = True,
) -> int:
    """A lower bound of the cost :func:`decide` gives a PCI Express root's feasible layout, without laying it out.

    Every layout of :func:`_decide_pcie` has the counts' hotplug misses, those of the last-resort units
    integrated (whichever order of buckets it takes) and the spare ports it leaves out; its controllers are at
    least :func:`_pcie_controllers_floor`'s, and each unit preferring hotplug that a move takes off its
    hotpluggable position (packed, or on the dmi-to-pci-bridge) is one hotplug miss more, so a layout with such a
    move costs at least one miss more than the floor of the moves without. The other terms are at least 0.
    ``controllers=False``: the misses and spare ports alone (the controllers counted as 0).
    """
    weights = policy.weights
    per_controller, per_hot_miss = weights["fewer-controllers"], weights["hotplug"]
    spare = max(0, spare_wanted - ctx.empty_hot_ports)
    last = max(0, integrate - c.optional_integrated_pcie - c.optional_integrated_pci)
    splits: tuple[dict[str, int], ...] = ({},)
    if last:
        splits = (last_resort_split(c, last), last_resort_split(c, last, pci_first=True))
        if splits[0] == splits[1]:  # one kind of unit to integrate: both orders take the same
            splits = splits[:1]
    least: int | None = None
    for split in splits:
        misses = split.get("last_resort_pcie_preferred", 0) + split.get("last_resort_pci_preferred", 0)
        cost = per_hot_miss * (c.hot_misses + misses)
        if per_controller and controllers:
            plain = _pcie_controllers_floor(ctx, c, policy, integrate, spare_n, split, moves_preferred=False) or 0
            if per_hot_miss < per_controller * plain:
                # a layout moving a unit that prefers hotplug has a miss more: bounded apart, unless that miss alone
                # is already no less than the floor
                moved = _pcie_controllers_floor(
                    ctx,
                    c,
                    policy,
                    integrate,
                    spare_n,
                    split,
                    moves_preferred=True,
                    below=plain - per_hot_miss // per_controller,
                )
                plain = min(plain, per_hot_miss // per_controller + (moved or 0))
            cost += per_controller * max(0, plain)  # a relaxation may go below 0; controllers never do
        least = cost if least is None else min(least, cost)
    assert least is not None
    return least + weights["spare-ports"] * max(0, spare - spare_n)


def _pcie_controllers_floor(
    ctx: Context,
    c: Counts,
    policy: Policy,
    integrate: int,
    spare_n: int,
    split: dict[str, int],
    *,
    moves_preferred: bool,
    below: int | None = None,
) -> int | None:
    """A lower bound of the controllers of every layout :func:`_layout_pcie` makes of a context's counts and
    decisions, last-resort integration taking ``split``, its moves taking units that prefer hotplug only when
    ``moves_preferred`` (``None``: no such layout fits, by the relaxation below). With ``below``, a floor no less
    than it may be a cheaper one, the ports alone (the caller needs only what is below it).

    A relaxation of ``_layout_pcie``'s figures, each taken at its least over every move: the root-port units
    less all those that may share a port (no shared port counted), the bridge-tree slots less every packable
    unit packed 8 a slot, less a slot for each group on the root bus (each takes a root slot) and on the
    dmi-to-pci-bridge (its 32 slots, its bridge a controller and a root slot) and for the groups beside the root
    ports (at most the free functions and 7 units); then the ports with their root slots (switches past them:
    two controllers each, their downstream ports counted as ports) and the trees' bridges. Trees under the
    dmi-to-pci-bridge are laid out by ``_moves`` only, which packs nothing: the units left are its bridges'.
    Every figure is monotone in what it is taken at, so the least over the root bus's groups is at the most
    groups that need no switch, or with a switch at the most groups of all.
    """
    free = len(ctx.free_slots)  # expanders_here take some: more free slots only lower the floor
    optional_total = c.optional_integrated_pcie + c.optional_integrated_pci
    i_opt = min(integrate, optional_total)
    ip = min(i_opt, c.optional_integrated_pcie)
    ic = i_opt - ip
    last_pcie = split.get("last_resort_pcie_any", 0) + split.get("last_resort_pcie_preferred", 0)
    last_pci = split.get("last_resort_pci_any", 0) + split.get("last_resort_pci_preferred", 0)
    forbidden = c.optional_integrated_pci_forbidden
    forbidden_left = max(0, forbidden - ic)
    if forbidden_left and not ctx.offers_dmi:
        return None
    sharing = c.port_any + (c.port_preferred if moves_preferred else 0)
    ports = c.root_port_units + c.optional_integrated_pcie - ip - last_pcie - sharing
    ports += spare_n + c.switch_groups + c.bus_groups
    fixed = c.switch_groups + c.switch_group_units + c.bus_groups
    if below is not None and ports + fixed >= below:
        return ports + fixed  # every layout has these ports and groups' controllers at least
    tree = c.tree_units + c.optional_integrated_pci - forbidden - max(0, ic - forbidden) - last_pci
    # the most units a packing may take: those with no hotplug need (and the units the policy would integrate,
    # which have none), or every unit the trees may hold
    packable = c.tree_any + c.optional_integrated_pci
    if moves_preferred:
        packable = c.tree_units + c.optional_integrated_pci
    groups = -(-packable // 8)
    slots = tree - packable + groups
    pack = 8 if policy.port_packing == "multifunction" else 1
    aggregate_free = len(ctx.free_port_functions) if pack == 8 else 0
    beside = -(-(aggregate_free + 7) // 8) if pack == 8 else 0
    dmi_room = max(0, DMI_SLOTS - c.dmi_units - forbidden_left) if ctx.offers_dmi else 0
    switches_ok = policy.allow_switches and ctx.offers_switch
    forced_dmi = c.dmi_units > 0 or forbidden_left > 0
    root_left = free - c.integrated_required - integrate
    found: list[int] = []  # the floor of each way the layout may go

    def total(n_ports: int, left: int, buses: int) -> int | None:
        capacity = aggregate_free + left * pack
        if n_ports <= capacity:
            return n_ports + buses
        if not switches_ok:
            return None
        return n_ports + 2 * -(-(n_ports - capacity) // BRIDGE_SLOTS) + buses

    for dmi in (False, True) if ctx.offers_dmi else (False,):
        if forced_dmi and not dmi:
            continue
        left = root_left - (1 if dmi else 0)
        if left < 0:
            continue
        if dmi and tree > 0:
            # the trees under the dmi-to-pci-bridge: its bridges (31 units each) and the units moved share its slots.
            # Where the machine offers pcie-to-pci-bridges, only _moves lays trees out there, packing nothing;
            # else every layout does, every group off the trees at best
            rest = max(0, (tree if ctx.offers_pcie_to_pci else slots - groups - beside) - dmi_room)
            got = total(ports, left, 1 + -(-rest // BRIDGE_SLOTS))
            if got is not None:
                found.append(got + fixed)
        for by_ports in (False, True) if beside else (False,):
            base = slots - (dmi_room if dmi else 0) - (beside if by_ports else 0)
            most = min(groups, left)

            # the most root groups with no switch: the ports' need falls by at most a port a tree as groups take
            # slots, the room by a slot's ports, so those that fit are a prefix
            n_ports, buses = _trees_figures(ports, base - most, dmi)
            g = min(most, (aggregate_free + left * pack - n_ports) // pack)
            while g >= 0:
                n_ports, buses = _trees_figures(ports, base - g, dmi)
                if n_ports <= aggregate_free + (left - g) * pack:
                    found.append(n_ports + buses + fixed)
                    break
                g -= 1
            if switches_ok and (g < most):
                # more groups, with a switch at least: every figure at its least
                n_ports, buses = _trees_figures(ports, base - most, dmi)
                got = n_ports + 2 + buses
                found.append(got + fixed)
    return min(found, default=None)


def _trees_figures(ports: int, slots: int, dmi: bool) -> tuple[int, int]:
    """The ports (``ports`` and a root port a tree) and the bridges (the dmi-to-pci-bridge's included) of the bridge
    trees holding ``slots`` tree slots (none at most 0)."""
    trees = split_trees(max(0, slots))
    return ports + len(trees), trees_buses(trees) + (1 if dmi else 0)


def _pack_moves(
    ctx: Context,
    c: Counts,
    policy: Policy,
    integrate: int,
    pci_first: bool,
    io_cap: int | None,
    layout: Callable[[_Moves], Decision | _Laid],
    *,
    base_fits: bool,
    root_idle: bool = False,
) -> list[_Moves]:
    """The packings worth trying (see ``_Moves.pack_pci``), on the trees' slots or the dmi-to-pci-bridge's first.

    Packing more units never needs more slots, bridges, bus numbers or IO
    windows, and each unit packed past those with no hotplug need costs one
    hotplug miss, while the controllers saved fall with the units packed: the
    cheapest packing is the least that fits (none when the layout fits as it
    is), all with no hotplug need, or all (groups of 8 each, a group of one
    being no packing at all). ``root_idle``: no packing can take the root bus
    (:func:`_root_takes_no_group`), so those with ``pack_root`` are left out.
    """
    optional_total = c.optional_integrated_pcie + c.optional_integrated_pci
    last = max(0, integrate - optional_total)
    split = last_resort_split(c, last, pci_first=pci_first)
    # the optional conventional units integration leaves (as _layout_pcie counts them; the integrated ones are
    # taken as packable, so the count is one the units left always reach)
    optional_left = c.optional_integrated_pci - (
        min(integrate, optional_total) - min(integrate, c.optional_integrated_pcie)
    )
    any_n = max(0, c.tree_any_packable - split.get("last_resort_pci_any", 0))
    any_n += max(0, min(optional_left, c.optional_pci_packable - (c.optional_integrated_pci - optional_left)))
    preferred_n = max(0, c.tree_preferred_packable - split.get("last_resort_pci_preferred", 0))
    total = any_n + preferred_n

    def moves(n: int, dmi: bool, root: bool) -> _Moves:
        n -= 1 if n % 8 == 1 else 0
        # tuple.__new__: _Moves(pci_first=..., pack_pci=n, ...) is several times slower, and the binary searches
        # build some forty a decision
        return tuple.__new__(_Moves, (0, 0, 0, 0, pci_first, False, n, min(n, any_n), dmi, root, False, False))

    def fits(d: Decision | _Laid) -> bool:
        return d.feasible and (io_cap is None or d.io_windows <= io_cap)

    out: list[_Moves] = []
    on_root = (False, True) if ctx.can_integrate and not c.tree_packable_fixed and not root_idle else (False,)
    for root, dmi in itertools.product(on_root, (False, True) if ctx.offers_dmi else (False,)):
        if root:
            # 8k + 1 units: the last beside a root port (``_Moves.pack_root``), a layout of its own
            out += [
                _Moves(pci_first=pci_first, pack_pci=n, pack_pci_any=min(n, any_n), pack_dmi=dmi, pack_root=True)
                for n in sorted({any_n, total})
                if n % 8 == 1
            ]
        sizes = {n for n in (any_n, total) if n > 1}
        if not base_fits and total > 1 and fits(layout(moves(total, dmi, root))):
            # the least packing that fits (fitting is monotone in the units packed): a binary search
            low, high = 2, total
            while low < high:
                mid = (low + high) // 2
                if fits(layout(moves(mid, dmi, root))):
                    high = mid
                else:
                    low = mid + 1
            sizes.add(low)
        out += [moves(n, dmi, root) for n in sorted(sizes)]
    if _io_packable(ctx, c, last):
        # with the IO-BAR units, every group on the root bus (``_Moves.pack_io``): all those with no hotplug need
        # (when none with an IO BAR prefers hotplug), or all; the units the policy would integrate that it does
        # not (every one a single device) have no hotplug need
        others_left = optional_left - max(
            0, c.optional_integrated_pci_forbidden - (c.optional_integrated_pci - optional_left)
        )
        any_io = c.tree_any_packable + c.tree_any_packable_io + others_left
        everything = any_io + c.tree_preferred_packable + c.tree_preferred_packable_io
        out += [
            _Moves(pci_first=pci_first, pack_pci=n, pack_pci_any=any_io, pack_root=True, pack_io=True)
            for n in sorted({any_io, everything})
        ]
    return [m for m in dict.fromkeys(out) if m.pack_pci > 1 or (m.pack_root and m.pack_pci == 1)]


def _io_packable(ctx: Context, c: Counts, last: int) -> int:
    """The bridge-tree units with an IO BAR that ``_Moves.pack_io`` packs on the root bus (0: it does not apply).

    It applies when packed groups may take the root bus (every packable unit may be integrated), every IO-BAR
    unit of the trees is a single device that may be integrated, every unit the policy would integrate (but
    those that must not be hot-plugged) is a single device too, and no last-resort integration picks units
    among them: the packing then takes every unit left (``_pack_moves``), exactly those counted.
    """
    io = c.tree_any_packable_io + c.tree_preferred_packable_io + c.optional_pci_packable_io
    optional_single = c.optional_pci_packable + c.optional_pci_packable_io
    if not io or last or c.tree_any_packable_io + c.tree_preferred_packable_io != c.tree_io:
        return 0
    if optional_single != c.optional_integrated_pci - c.optional_integrated_pci_forbidden:
        return 0
    return io if ctx.can_integrate and not c.tree_packable_fixed else 0


def _moves(ctx: Context, c: Counts, policy: Policy, last: int, pci_first: bool) -> list[_Moves]:
    """The moves worth trying: all or none of each bucket, and the fills of shared ports' free functions.

    Moves that cannot be cheaper are left out: a unit preferring hotplug moved to a dmi-to-pci-bridge saves
    at most two controllers (the last unit of a tree: its root port and pcie-to-pci-bridge), one sharing a
    port at most one; a tree under a dmi-to-pci-bridge that is not there anyway saves a controller only
    past 31 units (one tree: a root port and a bridge, or the dmi-to-pci-bridge and a pci-bridge).
    """
    weights = policy.weights
    dmi_preferred_pays = weights["hotplug"] < 2 * weights["fewer-controllers"]
    pack_preferred_pays = weights["hotplug"] < weights["fewer-controllers"]
    split = last_resort_split(c, last, pci_first=pci_first)
    tree_any = c.tree_any - split.get("last_resort_pci_any", 0)
    tree_preferred = c.tree_preferred - split.get("last_resort_pci_preferred", 0) if dmi_preferred_pays else 0
    port_any = c.port_any - split.get("last_resort_pcie_any", 0)
    port_preferred = c.port_preferred - split.get("last_resort_pcie_preferred", 0) if pack_preferred_pays else 0
    dmi_room = max(0, DMI_SLOTS - c.dmi_units) if ctx.offers_dmi else 0
    dmi_options = {(0, 0)}
    if dmi_room:
        moved_any = min(tree_any, dmi_room)
        dmi_options |= {(moved_any, 0), (moved_any, min(tree_preferred, dmi_room - moved_any))}
    pack_options = {(0, 0)}
    if port_any + port_preferred > 0:
        room = -port_any % 8
        pack_options |= {(port_any, 0), (port_any, min(port_preferred, room)), (port_any, port_preferred)}
        pack_options.add((port_any, min(port_preferred, room + 8 * max(0, (port_preferred - room) // 8))))
    may_via_dmi = ctx.trees_via_dmi and ctx.offers_dmi and ctx.offers_pcie_to_pci and c.tree_units > 0
    return [
        _Moves(dmi_any, dmi_preferred, pack_any, pack_preferred, pci_first, tree_via_dmi)
        for dmi_any, dmi_preferred in sorted(dmi_options)
        for pack_any, pack_preferred in sorted(pack_options)
        for tree_via_dmi in (False, True)
        if not tree_via_dmi
        or (may_via_dmi and (c.dmi_units or dmi_any or dmi_preferred or c.tree_units > BRIDGE_SLOTS))
    ]


DMI_SLOTS = 32
"""Slots of a dmi-to-pci-bridge (0..31): it has no slot-0 restriction, unlike a pci-bridge."""


class _Laid(NamedTuple):
    """A feasible layout of ``_layout_pcie``: the figures its choice among the moves reads, and its
    :class:`Decision`, built only for the one chosen (most layouts tried are not)."""

    controllers: int
    hot_misses: int
    occupied_hot: int
    bus_numbers: int
    io_windows: int
    decision: Callable[[], Decision]
    integrated_devices: int = 0
    feasible: bool = True
    uplinks: int = 0
    """New root ports of the layout that carry a bridge tree's top (and units beside it) or a switch (see
    :func:`_uplinks`)."""


class _Prepared(NamedTuple):
    """What ``_layout_pcie`` computes before it packs conventional units (``_prepare_pcie``): the same for every
    packing of one context, counts, decisions and other moves."""

    free: int
    spare: int
    pack: int
    aggregate_free: int
    ip: int
    ic: int
    split: dict[str, int]
    last_pcie: int
    last_misses: int
    packed: int
    port_io: int
    tree_units: int
    tree_io: int
    tree_io_sizes: IoSizes
    moved_io_sizes: IoSizes
    root_io: int
    dmi_units: int
    use_dmi_tree: bool


class _Arrangement(NamedTuple):
    """Where a layout's packed groups and tree slots go (``_layout_pcie``'s ``arrange``)."""

    dmi_groups: int
    tree_slots: int
    via_dmi: bool
    dmi: bool
    trees: tuple[int, ...]
    on_tree_ports: int
    pcie_units: int
    fixed_ports: int
    slots_left: int
    ports_needed: int
    beside: int = 0


def _prepared_key(moves: _Moves) -> tuple[object, ...]:
    """The moves :func:`_prepare_pcie` depends on, its key in a memo: all but the packing of conventional units
    (``pack_pci``, ``pack_pci_any``, ``pack_dmi``, ``pack_root``, ``pack_io``, the last five fields of
    :class:`_Moves`; :func:`_layout_pcie` applies ``pack_io`` to what is prepared)."""
    return moves[:6]


def _prepared(
    ctx: Context,
    c: Counts,
    policy: Policy,
    integrate: int,
    spare_n: int,
    spare_wanted: int,
    expanders_here: int,
    moves: _Moves,
    memo: dict[tuple[object, ...], Decision | _Prepared | _Laid] | None,
) -> Decision | _Prepared | _Laid:
    """:func:`_prepare_pcie` for ``moves``, looked up in (and kept in) ``memo`` by :func:`_prepared_key` (a
    preparation: a :class:`_Laid` is kept under the longer keys of whole layouts)."""
    key = _prepared_key(moves)
    found = memo.get(key) if memo is not None else None
    if found is None:
        found = _prepare_pcie(ctx, c, policy, integrate, spare_n, spare_wanted, expanders_here, moves)
        if memo is not None:
            memo[key] = found
    return found


def _prepare_pcie(
    ctx: Context,
    c: Counts,
    policy: Policy,
    integrate: int,
    spare_n: int,
    spare_wanted: int,
    expanders_here: int,
    moves: _Moves,
) -> Decision | _Prepared:
    """The part of ``_layout_pcie`` that does not depend on the packing of conventional units (``pack_pci``,
    ``pack_pci_any``, ``pack_dmi``, ``pack_root``): an infeasible :class:`Decision`, or the figures it goes on with."""
    free = len(ctx.free_slots) - expanders_here
    spare = max(0, spare_wanted - ctx.empty_hot_ports)
    if spare_n > spare:
        return Decision(False, f"{ctx.label}: more spare ports than wanted")
    if c.integrated_required > free:
        return Decision(
            False, f"{ctx.label} has {max(free, 0)} free slots for {c.integrated_required} integrated devices"
        )
    # 8 root ports a slot (multifunction, as libvirt packs them) or one: the policy says
    pack = 8 if policy.port_packing == "multifunction" else 1
    aggregate_free = len(ctx.free_port_functions) if pack == 8 else 0
    optional_total = c.optional_integrated_pcie + c.optional_integrated_pci
    use_dmi_tree = c.tree_units > 0 and (moves.tree_via_dmi or not ctx.offers_pcie_to_pci)
    if use_dmi_tree and not ctx.offers_dmi:
        return Decision(False, f"{ctx.label}: no bridge for conventional PCI devices")
    if integrate > integrable(c) or integrate > free - c.integrated_required:
        return Decision(False, f"{ctx.label}: cannot integrate {integrate} more endpoints")
    i_opt = min(integrate, optional_total)
    last = integrate - i_opt
    # optional integration takes PCIe units first, then PCI units (definition order inside)
    ip = min(i_opt, c.optional_integrated_pcie)
    ic = i_opt - ip
    split = last_resort_split(c, last, pci_first=moves.pci_first) if last else {}
    last_pcie = split.get("last_resort_pcie_any", 0) + split.get("last_resort_pcie_preferred", 0)
    last_pci = split.get("last_resort_pci_any", 0) + split.get("last_resort_pci_preferred", 0)
    last_misses = split.get("last_resort_pcie_preferred", 0) + split.get("last_resort_pci_preferred", 0)
    packed = moves.pack_any + moves.pack_preferred
    # integration takes IO-BAR units first (the root bus needs no IO window): what stays on ports needs windows
    port_io = max(0, c.root_port_io + max(0, c.optional_integrated_pcie_io - ip) - last_pcie)
    # optional PCI integration takes the units that must not be hot-plugged first, then the others, IO-BAR units
    # first in each (the root bus needs no IO window); the rest overflow: those that must not be hot-plugged to
    # the dmi-to-pci-bridge, the others to bridge trees (as _realize places them)
    forbidden = c.optional_integrated_pci_forbidden
    forbidden_io = c.optional_integrated_pci_forbidden_io
    forbidden_left = max(0, forbidden - ic)
    others_integrated = max(0, ic - forbidden)
    others_io_left = max(0, c.optional_integrated_pci_io - forbidden_io - others_integrated)
    if forbidden_left and not ctx.offers_dmi:
        return Decision(False, f"{ctx.label}: no slot left for conventional devices that must not be hot-plugged")
    tree_units = c.tree_units + (c.optional_integrated_pci - forbidden - others_integrated) - last_pci
    tree_io = max(0, c.tree_io + others_io_left - last_pci)
    # units moved to the dmi-to-pci-bridge: IO-BAR ones first in each bucket, as _realize moves them
    any_io = max(0, c.tree_any_io - split.get("last_resort_pci_any", 0))
    preferred_io = max(0, c.tree_preferred_io - split.get("last_resort_pci_preferred", 0))
    moved_io = min(moves.dmi_any, any_io) + min(moves.dmi_preferred, preferred_io)
    tree_units -= moves.dmi_any + moves.dmi_preferred
    # the BARs of the tree's IO units: integration and the moves take the largest first (_realize._io_first;
    # exact within one bucket, across buckets the smallest staying are a lower bound); the dmi-to-pci-bridge
    # gets at least the smallest of them
    tree_io_sizes: IoSizes = ()
    moved_io_sizes: IoSizes = ()  # to the dmi-to-pci-bridge: moved, or not integrated and never hot-plugged
    root_io = 0
    if c.io_sizes:
        # last-resort integration takes each bucket's largest first (_realize._io_first)
        last_io = {name: split_io(io_of(c, name), n)[0] for name, n in split.items() if n}
        # optional integration: those that must not be hot-plugged first (the rest to the dmi-to-pci-bridge)
        forbidden_sizes = io_of(c, "optional_integrated_pci_forbidden_io")
        forbidden_in, forbidden_out = split_io(forbidden_sizes, min(ic, forbidden))
        others_in, others_out = split_io(
            io_without(io_of(c, "optional_integrated_pci_io"), forbidden_sizes), others_integrated
        )
        pci_io = io_merge(io_of(c, "tree_io"), others_out)
        pci_io = io_without(pci_io, io_merge(*(io for name, io in last_io.items() if "_pci_" in name)))
        tree_io = io_units(pci_io)
        tree_io_sizes = _smallest(pci_io, max(0, tree_io - moved_io))
        moved_io_sizes = io_merge(_smallest(pci_io, moved_io), forbidden_out)
        # integration takes the largest IO BARs first (_realize._io_first)
        root_io = (
            io_bytes(io_of(c, "integrated_io"))
            + io_bytes(split_io(io_of(c, "optional_integrated_pcie_io"), ip)[0])
            + io_bytes(forbidden_in)
            + io_bytes(others_in)
            + sum(map(io_bytes, last_io.values()))
        )
    tree_io = max(0, tree_io - moved_io)
    dmi_units = c.dmi_units + moves.dmi_any + moves.dmi_preferred + forbidden_left
    return _Prepared(
        free,
        spare,
        pack,
        aggregate_free,
        ip,
        ic,
        split,
        last_pcie,
        last_misses,
        packed,
        port_io,
        tree_units,
        tree_io,
        tree_io_sizes,
        moved_io_sizes,
        root_io,
        dmi_units,
        use_dmi_tree,
    )


def _layout_pcie(
    ctx: Context,
    c: Counts,
    policy: Policy,
    integrate: int,
    spare_n: int,
    spare_wanted: int,
    expanders_here: int,
    bus_cap: int | None,
    moves: _Moves,
    memo: dict[tuple[object, ...], Decision | _Prepared | _Laid] | None = None,
) -> Decision | _Laid:
    """The layout of a context by its decisions and ``moves``: an infeasible :class:`Decision`, or the figures
    that rank a feasible one and its ``decision`` built on demand (``memo``: the parts of the other layouts of
    the same context, counts and decisions that do not depend on the packing, by the moves they depend on)."""
    key = moves[:6]  # _prepared_key, inlined: the packing search lays out thousands of layouts a plan
    prepared = memo.get(key) if memo is not None else None
    if prepared is None:
        prepared = _prepare_pcie(ctx, c, policy, integrate, spare_n, spare_wanted, expanders_here, moves)
        if memo is not None:
            memo[key] = prepared
    if isinstance(prepared, Decision):
        return prepared
    assert isinstance(prepared, _Prepared)
    pack, aggregate_free = prepared.pack, prepared.aggregate_free
    tree_io, tree_io_sizes, root_io = prepared.tree_io, prepared.tree_io_sizes, prepared.root_io
    if moves.pack_io:
        # the IO-BAR units of the trees packed on the root bus (all, or all but those preferring hotplug): their BARs
        # take the firmware's room there
        staying = io_of(c, "tree_preferred_io") if moves.pack_pci == moves.pack_pci_any else ()
        root_io += io_bytes(tree_io_sizes) - io_bytes(staying)
        tree_io, tree_io_sizes = io_units(staying), staying
    # packed units: groups of 8 on the root bus's free slots first (pack_root), then on the dmi-to-pci-bridge's
    # (pack_dmi), the rest a tree slot each
    groups = -(-moves.pack_pci // 8)
    alone = prepared.tree_units - moves.pack_pci
    root_groups = 0
    if not (moves.pack_root and groups):
        arranged = _arrange(c, prepared, moves, integrate, spare_n, groups, alone, 0)
    else:
        # every group on the root bus when it fits (the most packed off the trees is the best), else from none up:
        # the root slots no port needs take groups; fewer tree slots need no more ports, so each step still fits.
        # A group of one (8k + 1 units) never takes a slot of its own: integrating the unit is that layout
        whole = groups - (1 if moves.pack_pci % 8 == 1 else 0)
        everything = _arrange(c, prepared, moves, integrate, spare_n, groups, alone, whole) if whole == groups else None
        if (
            everything is not None
            and _spare_root_slots(aggregate_free, pack, everything.slots_left, everything.ports_needed) >= 0
        ):
            root_groups, arranged = groups, everything
        else:
            arranged = _arrange(c, prepared, moves, integrate, spare_n, groups, alone, 0)
        while (
            root_groups < whole
            and (room := _spare_root_slots(aggregate_free, pack, arranged.slots_left, arranged.ports_needed)) > 0
        ):
            root_groups += min(room, whole - root_groups)
            arranged = _arrange(c, prepared, moves, integrate, spare_n, groups, alone, root_groups)
        left = moves.pack_pci - 8 * root_groups
        # beside_room is at most the free root-port functions and 7 (the last new slot's): past that, no arrangement
        # to try
        if (
            root_groups < groups
            and pack == 8
            and left <= aggregate_free + 7
            and _spare_root_slots(aggregate_free, pack, arranged.slots_left, arranged.ports_needed) == 0
        ):
            # the root slots run out: the units left may take the free functions beside the root ports
            beside = _arrange(c, prepared, moves, integrate, spare_n, groups, alone, root_groups, left)
            if _beside_room(aggregate_free, pack, beside.slots_left, beside.ports_needed) >= left:
                arranged = beside
        if moves.pack_pci % 8 == 1 and not arranged.beside:
            return Decision(False, f"{ctx.label}: no root port's slot has a free function for a packed unit")
        if moves.pack_io and root_groups < groups and not arranged.beside:
            return Decision(False, f"{ctx.label}: no room on the root bus for the packed IO-BAR units")
    lay_args = (ctx, c, policy, bus_cap, moves, integrate, spare_n, prepared, root_io, tree_io, tree_io_sizes)
    if memo is None:
        return _lay(*lay_args, arranged, root_groups)
    # the same arrangement with the same units packed is the same layout (packing on the root bus when it has
    # no slot to spare is packing on the trees' slots): laid out once
    arranged_key = (key, moves.pack_pci, moves.pack_pci_any, moves.pack_io, moves.pack_tree_io, root_groups, arranged)
    found = memo.get(arranged_key)
    if found is None:
        found = memo[arranged_key] = _lay(*lay_args, arranged, root_groups)
    assert not isinstance(found, _Prepared)
    return found


def _arrange(
    c: Counts,
    p: _Prepared,
    moves: _Moves,
    integrate: int,
    spare_n: int,
    groups: int,
    alone: int,
    root_groups: int,
    beside: int = 0,
) -> _Arrangement:
    """With ``root_groups`` groups on the root bus and ``beside`` packed units beside its root ports (all those
    the groups leave, or none): the dmi-to-pci-bridge's groups, the tree slots, whether the trees hang from the
    dmi-to-pci-bridge, whether it exists, the trees, and the ports and root slots (``_layout_pcie``'s ``groups``
    of packed units and units ``alone`` on tree slots).

    A module function, not a closure of ``_layout_pcie``: the closures' cells were most of what a layout
    allocated (and each allocation counts towards a garbage collection), thousands of layouts a plan."""
    dmi_units = p.dmi_units
    rest = 0 if beside else groups - root_groups
    dmi_groups = min(rest, max(0, DMI_SLOTS - dmi_units)) if moves.pack_dmi else 0
    slots = alone + rest - dmi_groups
    via_dmi = p.use_dmi_tree and slots > 0
    dmi = dmi_units > 0 or dmi_groups > 0 or (slots > 0 and via_dmi)
    trees = split_trees(slots) if not via_dmi else ()
    # shared units take functions 1..7 of the root ports holding a tree's pcie-to-pci-bridge first, then new ports
    packed = p.packed
    on_tree_ports = min(packed, 7 * len(trees))
    shared_ports = -(-(packed - on_tree_ports) // 8)
    pcie_units = c.root_port_units + (c.optional_integrated_pcie - p.ip) - p.last_pcie - packed + shared_ports
    fixed_ports = len(trees) + c.switch_groups + c.bus_groups
    slots_left = p.free - c.integrated_required - integrate - (1 if dmi else 0) - root_groups
    ports_needed = pcie_units + spare_n + fixed_ports
    # tuple.__new__: a named tuple's own __new__ takes keywords and defaults, several times slower
    return tuple.__new__(
        _Arrangement,
        (
            dmi_groups,
            slots,
            via_dmi,
            dmi,
            trees,
            on_tree_ports,
            pcie_units,
            fixed_ports,
            slots_left,
            ports_needed,
            beside,
        ),
    )


def _spare_root_slots(aggregate_free: int, pack: int, slots_left: int, ports_needed: int) -> int:
    """Root slots an arrangement leaves free with its ports in place (-1: its ports would need switches)."""
    if ports_needed > aggregate_free + slots_left * pack:
        return -1
    return slots_left - -(-max(0, ports_needed - aggregate_free) // pack)


def _beside_room(aggregate_free: int, pack: int, slots_left: int, ports_needed: int) -> int:
    """Free functions of the root bus's slots holding root ports once an arrangement's ports are in place:
    those of the existing multifunction slots the ports leave, then the last new slot's (``_realize``'s
    order); -1: its ports would need switches, or the policy puts one port a slot."""
    if pack != 8 or ports_needed > aggregate_free + slots_left * pack:
        return -1
    return max(0, aggregate_free - ports_needed) + -max(0, ports_needed - aggregate_free) % 8


_LAID_FIELDS = (
    "integrated_pcie",
    "integrated_pci",
    "integrated_devices",
    "root_io_bytes",
    "direct_ports",
    "port_units",
    "spare",
    "switches",
    "downstream",
    "tree_units",
    "tree_io",
    "tree_bridges",
    "tree_sizes",
    "tree_via_dmi",
    "dmi",
    "dmi_units",
    "dmi_bridges",
    "root_slots",
    "bus_numbers",
    "io_windows",
    "controllers",
    "hot_misses",
    "occupied_hot",
    "spare_missing",
    "last_resort",
    "dmi_any",
    "dmi_preferred",
    "pack_any",
    "pack_preferred",
    "on_tree_ports",
    "pack_pci",
    "pack_pci_any",
    "pack_dmi_groups",
    "pack_root_groups",
    "pack_io",
    "pack_tree_io",
    "pack_beside",
)
"""The fields of a feasible PCI Express layout's :class:`Decision` that :func:`_lay` sets, in its values' order."""


def _laid_decision(values: tuple[object, ...]) -> Decision:
    """The feasible :class:`Decision` of :func:`_lay`'s ``values`` (its fields by :data:`_LAID_FIELDS`)."""
    return Decision(True, **dict(zip(_LAID_FIELDS, values, strict=True)))  # type: ignore[arg-type]


def _lay(
    ctx: Context,
    c: Counts,
    policy: Policy,
    bus_cap: int | None,
    moves: _Moves,
    integrate: int,
    spare_n: int,
    prepared: _Prepared,
    root_io: int,
    tree_io: int,
    tree_io_sizes: IoSizes,
    arranged: _Arrangement,
    root_groups: int,
) -> Decision | _Laid:
    """The layout of an arrangement of ``_layout_pcie`` (``root_io``, ``tree_io``, ``tree_io_sizes``: the
    preparation's, after ``_Moves.pack_io``). Its :class:`Decision` is built on demand by a ``functools.partial``
    (not a closure, whose cells were most of what a layout allocated)."""
    free, spare, pack, aggregate_free, ip, ic, split, _, last_misses, _, port_io = prepared[:11]
    moved_io_sizes = prepared.moved_io_sizes
    dmi_units = prepared.dmi_units
    (
        dmi_groups,
        tree_units,
        use_dmi_tree,
        dmi,
        trees,
        on_tree_ports,
        pcie_units,
        fixed_ports,
        slots_left,
        ports_needed,
        beside_units,
    ) = arranged
    if slots_left < 0:
        return Decision(False, f"{ctx.label} has {max(free, 0)} free slots: not enough")
    capacity = aggregate_free + slots_left * pack
    switches = 0
    downstream = 0
    direct = ports_needed
    if ports_needed > capacity:
        if not (policy.allow_switches and ctx.offers_switch):
            return Decision(
                False,
                f"{ctx.label} has {max(free, 0)} free slots"
                + (f", {aggregate_free} free root-port functions" if aggregate_free else "")
                + f": not enough for {ports_needed} root ports"
                + ("" if policy.allow_switches else " (switches are not allowed)"),
            )
        # a switch takes one root port and gives 32 downstream ports: each adds 31 ports net
        switches = math.ceil((ports_needed - capacity) / BRIDGE_SLOTS)
        direct = capacity - switches
        downstream = ports_needed - direct
        if direct < fixed_ports or downstream > 32 * switches or direct < 0:
            return Decision(False, f"{ctx.label}: not enough root ports even with switches")
    used_port_slots = max(0, direct + switches - aggregate_free)
    root_slots = c.integrated_required + integrate + (1 if dmi else 0) + root_groups + math.ceil(used_port_slots / pack)
    # packed units on the root bus and the dmi-to-pci-bridge (not hotpluggable): the first of the packing order
    packed_off_trees = min(moves.pack_pci, 8 * (root_groups + dmi_groups) + beside_units)
    tree_buses = trees_buses(trees)  # each tree's top bridge and the pci-bridges chained below it
    tree_bridges = tree_buses - len(trees)
    dmi_bridges = math.ceil(tree_units / BRIDGE_SLOTS) if use_dmi_tree else 0
    if dmi and dmi_units + dmi_groups + dmi_bridges > DMI_SLOTS:
        return Decision(False, f"{ctx.label}: the dmi-to-pci-bridge has 32 slots")
    bus = direct + 2 * switches + downstream + tree_buses
    bus += (1 + dmi_bridges) if dmi else 0
    bus += c.switch_groups + c.switch_group_units + c.bus_groups  # upstream + downstream ports; group bridges
    io = port_io + c.switch_group_io + c.bus_group_windows
    if moves.pack_tree_io and len(tree_io_sizes) == 1:
        ((size, _),) = tree_io_sizes
        io += packed_trees_io_windows(
            trees,
            size,
            tree_io - moves.pack_pci,
            tree_units - -(-moves.pack_pci // 8),  # the units alone: the tree slots less the groups
            moves.pack_pci,
            top_reserves=ctx.reserves_io_pcie_to_pci,
            fan_reserves=ctx.reserves_io_pci_bridge,
        )
    elif moves.pack_tree_io:
        # several sizes (_tree_io_mix): the packed BARs in packing order, the others alone
        pools = _tree_pools(c, tree_io_sizes, split)
        assert pools is not None  # _tree_io_mix applies
        order, packed_io = packing_order(*pools, moves.pack_pci_any, moves.pack_pci)
        io += mixed_trees_io_windows(
            trees,
            order,
            io_without(tree_io_sizes, packed_io),
            tree_units - -(-moves.pack_pci // 8),
            top_reserves=ctx.reserves_io_pcie_to_pci,
            fan_reserves=ctx.reserves_io_pci_bridge,
        )
    elif not use_dmi_tree:
        io += trees_io_windows(
            trees,
            tree_io_sizes,
            top_reserves=ctx.reserves_io_pcie_to_pci,
            fan_reserves=ctx.reserves_io_pci_bridge,
        )
    elif tree_io or ctx.reserves_io_pci_bridge:
        # the dmi-to-pci-bridge's pci-bridges, each the top of a tree of at most 31
        io += trees_io_windows((BRIDGE_SLOTS,) * dmi_bridges, tree_io_sizes, top_reserves=ctx.reserves_io_pci_bridge)
    if c.dmi_io or moved_io_sizes:
        io += -(-(io_bytes(io_of(c, "dmi_io")) + io_bytes(moved_io_sizes)) // IO_WINDOW)
    if bus_cap is not None and bus > bus_cap:
        return Decision(False, f"{ctx.label}: {bus} bus numbers needed, {bus_cap} left")
    controllers = direct + 2 * switches + downstream
    controllers += tree_buses
    controllers += (1 + dmi_bridges) if dmi else 0
    controllers += c.switch_groups + c.switch_group_units + c.bus_groups
    hot_misses = c.hot_misses + last_misses + moves.dmi_preferred + moves.pack_preferred
    hot_misses += moves.pack_pci - moves.pack_pci_any
    # bridge-tree and bus-group slots are hotpluggable; ports with such units get hotplug off
    occupied_hot = 0
    if policy.hotplug_off_occupied:
        occupied_hot = (
            c.tree_any
            - split.get("last_resort_pci_any", 0)
            - moves.dmi_any
            - min(moves.pack_pci_any, packed_off_trees)  # packed first, they fill the root bus and dmi first
            + (c.optional_integrated_pci - ic)
            + c.bus_group_any
        )

    # packed units on the root bus's slots and beside its root ports are integrated endpoints too
    integrated_devices = c.integrated_required + integrate + min(moves.pack_pci, 8 * root_groups) + beside_units

    # the keyword arguments of the Decision as one tuple, their names in _LAID_FIELDS' order: a partial with
    # 37 keywords copies them into a dict for every layout laid (hundreds a plan, one Decision built of them)
    decision = functools.partial(
        _laid_decision,
        (
            ip,  # integrated_pcie
            ic,  # integrated_pci
            integrated_devices,
            root_io,  # root_io_bytes
            direct - fixed_ports,  # direct_ports
            pcie_units,  # port_units
            spare_n,  # spare
            switches,
            downstream,
            tree_units,
            tree_io,
            tree_bridges,
            trees,  # tree_sizes
            use_dmi_tree,  # tree_via_dmi
            dmi,
            dmi_units,
            dmi_bridges,
            root_slots,
            bus,  # bus_numbers
            io,  # io_windows
            controllers,
            hot_misses,
            occupied_hot,
            spare - spare_n,  # spare_missing
            tuple(split.items()),  # last_resort
            moves.dmi_any,
            moves.dmi_preferred,
            moves.pack_any,
            moves.pack_preferred,
            on_tree_ports,
            moves.pack_pci,
            moves.pack_pci_any,
            dmi_groups,  # pack_dmi_groups
            root_groups,  # pack_root_groups
            moves.pack_io,
            moves.pack_tree_io,
            beside_units,  # pack_beside
        ),
    )
    # tuple.__new__: a named tuple's own __new__ takes keywords and defaults, several times slower
    # the root ports a realised plan may spare by plugging into the request's empty ports: the trees' and switches'
    # uplinks (units sharing a tree's port go beside its bridge in an empty port as in a new one), none when units
    # sit beside the root ports on the root bus (_realize takes no empty port then)
    uplinks = _uplinks(c, trees, tree_units, use_dmi_tree, switches, beside_units)
    laid = (controllers, hot_misses, occupied_hot, bus, io, decision, integrated_devices, True, uplinks)
    return tuple.__new__(_Laid, laid)


def _uplinks(c: Counts, trees: Sequence[int], tree_units: int, via_dmi: bool, switches: int, beside: int) -> int:
    """:attr:`_Laid.uplinks` of a layout: its trees' ports (unless the trees hang from the dmi-to-pci-bridge), its
    switches' and its groups' (switch groups, bus groups)."""
    if beside:
        return 0
    return (0 if via_dmi or not tree_units else len(trees)) + switches + c.switch_groups + c.bus_groups


def _decision_uplinks(d: Decision, c: Counts) -> int:
    """A :class:`Decision`'s :attr:`_Laid.uplinks`."""
    return _uplinks(c, d.tree_sizes, d.tree_units, d.tree_via_dmi, d.switches, d.pack_beside)


def _decide_pci(
    ctx: Context,
    c: Counts,
    policy: Policy,
    bridges: int,
    spare_n: int,
    spare_wanted: int,
    expanders_here: int,
    io_cap: int | None = None,
) -> Decision:
    need_spare = max(0, spare_wanted - (ctx.empty_hot_ports if ctx.root_hotplug else 0))
    if spare_n > need_spare:
        return Decision(False, f"{ctx.label}: no room for {bridges} pci-bridges")
    # the layout without spares is the same whatever the spares: the search asks for it once a spare count
    core, hot_free = _pci_layout(ctx, c, bridges, expanders_here, policy.hotplug_off_occupied)
    if core.feasible and io_cap is not None and core.io_windows > io_cap:
        # more IO windows than the firmware has: the least packing of the bridged IO-BAR units that fits
        packed = _pci_packing(ctx, c, bridges, expanders_here, policy.hotplug_off_occupied, io_cap, spare_n)
        if packed is not None:
            core, hot_free = packed
    if not core.feasible:
        return core
    if hot_free < spare_n:
        return Decision(False, f"{ctx.label}: no room for {spare_n} spare slots")
    missing = need_spare - spare_n
    if not spare_n and not missing:
        return core
    known = _WITH_SPARE.get((id(core), spare_n, missing))
    if known is not None and known[0] is core:
        return known[1]
    decision = attrs.evolve(core, spare=spare_n, spare_missing=missing)
    if len(_WITH_SPARE) > 4096:
        _WITH_SPARE.clear()
    _WITH_SPARE[(id(core), spare_n, missing)] = (core, decision)
    return decision


_WITH_SPARE: dict[tuple[int, int, int], tuple[Decision, Decision]] = {}
"""A layout's decision with spare slots, by the layout's id and the spares (attrs.evolve is slow; the layout is
kept in the value, so an id reused by another object is never taken for it)."""


BusPacking = tuple[tuple[int, int], ...]
"""Per pci-bridge: the packed units on its bus and the units alone on a slot (:attr:`Decision.bus_packing`)."""


def packed_buses(bridges: int, alone: int, packed: int) -> BusPacking | None:
    """The least packing's buses (``_pci_packing``): ``packed`` units in groups of 8 (the last one the rest), dealt
    to the bridges in turn (group ``k`` to bridge ``k mod bridges``), the units ``alone`` filling the slots the
    groups leave, bridge by bridge (``None``: they do not fit).

    >>> packed_buses(3, 60, 20)  # groups of 8, 8 and 4: one a bridge, then 30 + 30 units alone
    ((8, 30), (8, 30), (4, 0))
    >>> packed_buses(1, 31, 2) is None
    True
    """
    groups = -(-packed // 8)
    if groups > BRIDGE_SLOTS * bridges:
        return None
    out: list[tuple[int, int]] = []
    left = alone
    for mine in deal_groups([BRIDGE_SLOTS] * bridges, groups):
        here = min(BRIDGE_SLOTS - len(mine), left)
        left -= here
        out.append((sum(min(8, packed - 8 * k) for k in mine), here))
    return None if left else tuple(out)


def balanced_buses(bridges: int, units: int) -> BusPacking | None:
    """The balanced packing's buses (``_pci_packing``): the units shared out alike (the first bridges one more),
    each bus packing the fewest that fit its 31 slots, 8 a slot (``None``: more than 248 a bus).

    Where the IO windows are tight this one packs fewer than :func:`packed_buses`, whose first buses hold their
    units alone and so the most IO (498 e1000 on 8 pci-bridges, 8 windows: 290 packed balanced, all 498 the
    other way); where they are not, that one packs fewer (278: 35 packed, 38 balanced).

    >>> balanced_buses(2, 100)  # 50 a bus: 3 slots of 8, 7 and 7 and 28 alone
    ((22, 28), (22, 28))
    """
    out: list[tuple[int, int]] = []
    for j in range(bridges):
        here = units // bridges + (1 if j < units % bridges else 0)
        if here > 8 * BRIDGE_SLOTS:
            return None
        groups = max(0, -(-(here - BRIDGE_SLOTS) // 7))  # each slot of 8 holds 7 more
        out.append((here - BRIDGE_SLOTS + groups, BRIDGE_SLOTS - groups) if groups else (0, here))
    return tuple(out)


def mixed_bus_windows(buses: BusPacking, packed: tuple[int, ...], alone_io: IoSizes, *, reserves: bool) -> int:
    """IO windows of the pci-bridges of ``buses``, bus by bus: the packed units' IO BARs in packing order (each bus
    takes the next of them), then the units alone with an IO BAR ``alone_io`` (placed largest first); ``reserves``:
    the firmware gives an empty one a window.

    >>> mixed_bus_windows(((22, 28), (22, 28)), (64,) * 44, ((64, 56),), reserves=True)  # 50 e1000 a bus: 3200 bytes
    2
    >>> mixed_bus_windows(((22, 28), (22, 28)), (64,) * 22 + (32,) * 22, ((32, 56),), reserves=True)  # 2304, 1600
    2
    """
    windows = 0
    start = 0
    for n_packed, alone in buses:
        mine, alone_io = split_io(alone_io, alone)
        windows += bus_windows(sum(packed[start : start + n_packed]) + io_bytes(mine), reserves=reserves)
        start += n_packed
    return windows


def _pci_packable(c: Counts) -> IoSizes:
    """The IO BARs of the root-slot units of a conventional root that ``_pci_packing`` may pack (``()``: none).

    It packs only where the layout can count exactly which units it packs and where their BARs go: every
    root-slot unit with an IO BAR may be packed (a single device that need not be integrated and does not
    require hotplug), all have one IO BAR size and one hotplug need, and no unit is bridged for its hotplug need
    (the root is hotpluggable: pc's ``pci.0``).
    """
    io = io_of(c, "root_slot_io")
    if len(io) != 1 or c.root_slot_packable_io != c.root_slot_io or c.root_slot_preferred or c.hot_bridge_units:
        return ()
    if c.root_slot_packable_io_any not in (0, c.root_slot_packable_io):
        return ()
    return io


def _pci_mix(c: Counts, direct: int, root: IoSizes = ()) -> tuple[IoSizes, IoSizes, IoSizes] | None:
    """Where :func:`_pci_packable` cannot tell (several BAR sizes or hotplug needs, or IO-BAR units that cannot be
    packed: hotplug required, several devices): the bridged units' BARs, those with no hotplug need packable and
    those preferring it packable (``None``: it does not apply), with ``direct`` units on the root's slots.

    The root's slots take the units that must be integrated first, then the IO-BAR units largest first (no window
    there), of one size those that cannot be packed first, then those preferring hotplug, then the others
    (``_realize._realize_pci`` sorts them so when it packs): the root's slots are hotpluggable, and the units left
    to pack are the ones that lose least by it. It applies on a hotpluggable root (no unit bridged for its hotplug
    need) whose units that must be integrated have no IO BAR. With ``root`` (:attr:`Decision.root_io`), the
    root's slots take those BARs rather than the largest, of each size in the same order.
    """
    if c.root_slot_preferred or c.hot_bridge_units:
        return None
    integrated = pack_of(c, "root_slot_integrated")
    if any(size for size, _ in integrated):
        return None
    any_sizes = pack_of(c, "root_slot_any")
    preferred = io_without(pack_of(c, "root_slot"), any_sizes)
    fixed = io_without(io_of(c, "root_slot_io"), pack_of(c, "root_slot"))
    left = max(0, direct - io_units(integrated))
    bridged: dict[str, list[tuple[int, int]]] = {"fixed": [], "preferred": [], "any": []}
    for size in sorted({s for part in (fixed, preferred, any_sizes) for s, _ in part}, reverse=True):
        if root:
            left = dict(root).get(size, 0)
        for name, part in (("fixed", fixed), ("preferred", preferred), ("any", any_sizes)):
            n = dict(part).get(size, 0)
            take = min(left, n)
            left -= take
            if n - take:
                bridged[name].append((size, n - take))
    return (
        io_merge(*(tuple(v) for v in bridged.values())),
        tuple(bridged["any"]),
        tuple(bridged["preferred"]),
    )


@functools.lru_cache(maxsize=1024)
def _pci_packing(
    ctx: Context, c: Counts, bridges: int, expanders_here: int, off_occupied: bool, io_cap: int, spare_n: int
) -> tuple[Decision, int] | None:
    """The layout of a conventional root with bridged IO-BAR units packed 8 a slot as functions on flat pci-bridges
    that needs at most ``io_cap`` IO windows and keeps ``spare_n`` empty hotpluggable slots (``None``: none does).

    SeaBIOS gives each pci-bridge a window of 4 KiB per 4 KiB of IO BAR on its bus, and a bus has 31 slots: an
    e1000's 64 bytes fill a window with 64 units, one a slot only 31 of them. Packed, more share a bus, so fewer
    windows hold them all (pc has 8). Each unit packed that prefers hotplug is a hotplug miss (functions are not
    hot-plugged one by one), and the bridges are as many either way: of the two packings tried, the least packing
    that fits (:func:`packed_buses`) and the balanced one (:func:`balanced_buses`), the one packing fewer units
    wins. The packed units are those ``_pci_packable`` allows, or with several sizes or hotplug needs those
    :func:`_pci_mix` counts (the units with no hotplug need first, then those preferring it, largest first in
    each; those requiring it stay alone on a slot).
    """
    if bridges < 1:
        return None
    io = _pci_packable(c)
    core, _ = _pci_layout(ctx, c, bridges, expanders_here, off_occupied)
    if not core.feasible:
        return None
    mix = None if io else _pci_mix(c, core.root_slot_units, core.root_io)
    if not io and mix is None:
        return None
    bridged_io, bridged = core.tree_io, core.tree_units
    if io:
        ((size, _),) = io
        bridged_sizes: IoSizes = ((size, bridged_io),)
        any_sizes: IoSizes = bridged_sizes if c.root_slot_packable_io_any else ()
        preferred_sizes: IoSizes = () if c.root_slot_packable_io_any else bridged_sizes
    else:
        assert mix is not None
        bridged_sizes, any_sizes, preferred_sizes = mix
        if io_units(bridged_sizes) != bridged_io:  # pragma: no cover - the two counts of one layout
            return None
    n_any = io_units(any_sizes)
    packable = n_any + io_units(preferred_sizes)
    cap = io_cap - c.bus_group_windows
    # no packing fits when packing all of them leaves too many units alone for the slots, or when their bytes
    # alone need more windows than there are
    if bridged - packable + -(-packable // 8) > BRIDGE_SLOTS * bridges:
        return None
    if max(-(-io_bytes(bridged_sizes) // IO_WINDOW), bridges if ctx.reserves_io_pci_bridge else 0) > cap:
        return None
    free_root = len(ctx.free_slots) - expanders_here - c.bus_groups - bridges - core.root_slot_units
    hot_root = free_root if ctx.root_hotplug else 0

    def fits(buses: BusPacking | None) -> tuple[BusPacking, int, int, BusIo] | None:
        """The buses, their windows, the empty hotpluggable slots they keep and the balanced deal of their BARs
        (``()``: in packing order), when they fit."""
        if buses is None:
            return None
        packed = sum(p for p, _ in buses)
        if packed > packable:
            return None
        hot_free = hot_root + sum(BRIDGE_SLOTS - alone - -(-p // 8) for p, alone in buses)
        if hot_free < spare_n:
            return None
        # one IO BAR size or several: the packed BARs in packing order (no hotplug need first), the others alone
        order, packed_io = packing_order(any_sizes, preferred_sizes, min(packed, n_any), packed)
        alone_io = io_without(bridged_sizes, packed_io)
        windows = mixed_bus_windows(buses, order, alone_io, reserves=ctx.reserves_io_pci_bridge)
        if windows <= cap:
            return buses, windows, hot_free, ()
        if not ctx.balance_io:
            return None
        balanced = balance_buses(buses, packed_io, alone_io, cap, reserves=ctx.reserves_io_pci_bridge)
        return None if balanced is None else (buses, balanced[1], hot_free, balanced[0])

    found = fits(balanced_buses(bridges, bridged))
    most = found and sum(p for p, _ in found[0])
    for packed in range(max(2, bridged - BRIDGE_SLOTS * bridges), (most or packable + 1)):
        if packed % 8 == 1:
            continue  # a group of one is a unit alone
        least = fits(packed_buses(bridges, bridged - packed, packed))
        if least is not None:
            found = least
            break
    if not found:
        return None
    buses, windows, hot_free, bus_io = found
    packed = sum(p for p, _ in buses)
    packed_any = min(packed, n_any)
    decision = attrs.evolve(
        core,
        tree_sizes=tuple(alone + -(-p // 8) for p, alone in buses),
        tree_bridges=0,  # flat: a chained layout's pci-bridges are not there
        bus_numbers=bridges + c.bus_groups,
        controllers=bridges + c.bus_groups,
        io_windows=windows + c.bus_group_windows,
        hot_misses=core.hot_misses + packed - packed_any,
        pack_pci=packed,
        pack_pci_any=packed_any,
        bus_packing=buses,
        bus_io=bus_io,
    )
    return decision, hot_free


@functools.lru_cache(maxsize=4096)
def _pci_layout(ctx: Context, c: Counts, bridges: int, expanders_here: int, off_occupied: bool) -> tuple[Decision, int]:
    """A conventional root's layout without spare slots, and the empty hotpluggable slots it keeps."""
    free = len(ctx.free_slots) - expanders_here - c.bus_groups
    if bridges > max(free, 0):
        return Decision(False, f"{ctx.label}: no room for {bridges} pci-bridges"), 0
    direct_cap = free - bridges
    # the units that prefer hotplug take the pci-bridges' slots first (the root is not hotpluggable);
    # the others take the root's slots first (no bridge needed, no IO window)
    others = c.root_slot_units - c.root_slot_preferred
    others_direct = min(others, direct_cap)
    room = TREE_CAPACITY * bridges - c.hot_bridge_units - (others - others_direct)
    preferred_bridged = min(c.root_slot_preferred, max(0, room))
    preferred_direct = min(c.root_slot_preferred - preferred_bridged, direct_cap - others_direct)
    on_direct = others_direct + preferred_direct
    bridged = c.hot_bridge_units + c.root_slot_units - on_direct
    if bridged > TREE_CAPACITY * bridges:
        return (
            Decision(
                False,
                f"{ctx.label} has {max(free, 0)} free slots: not enough for {c.root_slot_units + c.hot_bridge_units} "
                "devices"
                + (f" with {bridges} pci-bridge{'s' if bridges != 1 else ''}" if bridges else " without pci-bridges"),
            ),
            0,
        )
    # flat pci-bridges while they suffice, else trees with pci-bridges chained below
    if bridged <= BRIDGE_SLOTS * bridges:
        sizes = tuple(min(BRIDGE_SLOTS, max(0, bridged - BRIDGE_SLOTS * i)) for i in range(bridges))
    else:
        sizes = split_trees(bridged)
        sizes = sizes + (0,) * (bridges - len(sizes))
    hot_free = (direct_cap - on_direct if ctx.root_hotplug else 0) + sum(tree_free_slots(n) for n in sizes)
    # direct slots take IO-BAR endpoints first: the root bus needs no IO window
    others_io = c.root_slot_io - c.root_slot_preferred_io
    preferred_bridged_io = max(0, preferred_bridged - (c.root_slot_preferred - c.root_slot_preferred_io))
    io_bridged = c.hot_bridge_io + max(0, others_io - others_direct) + preferred_bridged_io
    # their BARs: direct slots take the largest first (_realize._io_first), the rest are bridged
    preferred_sizes = io_of(c, "root_slot_preferred_io")
    others_sizes = io_without(io_of(c, "root_slot_io"), preferred_sizes)
    others_direct_io, others_bridged_io = split_io(others_sizes, others_direct)
    preferred_direct_io, preferred_bridged_sizes = split_io(preferred_sizes, preferred_direct)
    root_io: IoSizes = ()
    if ctx.root_io_room is not None and others_direct and not pack_of(c, "root_slot_integrated"):
        # or as many bytes as the root bus holds at no window's cost, when that differs (Context.balance_io)
        room = ctx.root_io_room - io_bytes(preferred_direct_io)
        fitted = fill_root(_with_io_less(others_sizes, others), others_direct, room)
        if fitted is not None and io_bytes(fitted) < io_bytes(others_direct_io):
            root_io = fitted
            others_direct_io = tuple((size, n) for size, n in fitted if size)
            others_bridged_io = io_without(others_sizes, others_direct_io)
            io_bridged = c.hot_bridge_io + io_units(others_bridged_io) + preferred_bridged_io
    bridged_sizes = io_merge(io_of(c, "hot_bridge_io"), others_bridged_io, preferred_bridged_sizes)
    buses = trees_buses(sizes)
    hot_misses = c.hot_misses + preferred_direct
    decision = Decision(
        True,
        root_slot_units=on_direct,
        root_io_bytes=io_bytes(others_direct_io) + io_bytes(preferred_direct_io),
        preferred_direct=preferred_direct,
        integrated_devices=c.integrated_required + on_direct if ctx.bus == 0 else 0,
        root_bridges=bridges,
        tree_units=bridged,
        tree_io=io_bridged,
        tree_sizes=sizes,
        tree_bridges=buses - bridges,
        root_slots=on_direct + bridges + c.bus_groups,
        bus_numbers=buses + c.bus_groups,
        io_windows=trees_io_windows(
            sizes,
            bridged_sizes,
            top_reserves=ctx.reserves_io_pci_bridge,
            fan_reserves=ctx.reserves_io_pci_bridge,
        )
        + c.bus_group_windows,
        controllers=buses + c.bus_groups,
        hot_misses=hot_misses,
        occupied_hot=_occupied_hot_pci(ctx, c, others - others_direct, off_occupied),
        root_io=root_io,
    )
    return decision, hot_free


def _with_io_less(io: IoSizes, units: int) -> IoSizes:
    """``io`` with the IO-less of ``units`` as 0-byte BARs."""
    return (*io, (0, units - io_units(io))) if units > io_units(io) else io


def _occupied_hot_pci(ctx: Context, c: Counts, others_bridged: int, off_occupied: bool) -> int:
    """Units with no hotplug need on hotpluggable slots of a conventional root: all on a hotpluggable root,
    else those overflowing to pci-bridges (the root's slots take them first); bus groups' are on bridges."""
    if not off_occupied:
        return 0
    on_root = c.root_slot_any if ctx.root_hotplug else min(c.root_slot_any, others_bridged)
    return on_root + c.bus_group_any


def _decide_new_host_bridges(c: Counts, policy: Policy) -> Decision:
    units = c.root_slot_units + c.hot_bridge_units
    # a pseries host bridge has 31 usable slots (1..31)
    host_bridges = math.ceil(units / BRIDGE_SLOTS) if units else 0
    return Decision(
        True,
        root_slot_units=units,
        host_bridges=host_bridges,
        controllers=host_bridges,
        bus_numbers=0,
        hot_misses=c.hot_misses,
        occupied_hot=c.root_slot_any if policy.hotplug_off_occupied else 0,
    )
