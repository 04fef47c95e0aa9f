"""The validator: every way a topology breaks the rules of QEMU, libvirt and the guest.

:func:`validate` returns every :class:`~pcitopo.violation.Violation` at once,
sorted; :func:`check` raises :class:`~pcitopo.errors.InvalidTopology` with all
of them. :data:`RULES` names each rule (the ids are stable API) and says what
it means. The rules read the catalog and the machine description; none of them
asks which machine it is looking at.

Devices and controllers without an address are requests for one: the solver
places them, so they are never violations of a placement rule.

>>> from pcitopo.address import PciAddress
>>> from pcitopo.devices import Device
>>> from pcitopo.topology import IO_WINDOW, Topology
>>> validate(Topology.default("q35"))
()
>>> t = Topology.build("q35", devices=[
...     Device("net0", "virtio-net", address=PciAddress.parse("00:03.0")),
...     Device("disk1", "virtio-blk", address=PciAddress.parse("00:03.0")),
... ])
>>> for v in validate(t):
...     print(v)
0000:00:03.0 is wanted by 'net0' and 'disk1' (rule: unique-address)
>>> check(t)
Traceback (most recent call last):
  ...
pcitopo.errors.InvalidTopology: 1 rule violation:
  - 0000:00:03.0 is wanted by 'net0' and 'disk1' (rule: unique-address)
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator, Mapping, Sequence
from types import MappingProxyType
from typing import TYPE_CHECKING, Literal, NamedTuple

from pcitopo.address import PciAddress
from pcitopo.devices import Controller, Device, HotplugNeed
from pcitopo.errors import InvalidTopology
from pcitopo.legality import identity
from pcitopo.legality.catalog import Connect, ControllerModel, DeviceKind, Integrated
from pcitopo.topology import Mmio, Topology
from pcitopo.violation import Violation

if TYPE_CHECKING:
    from pcitopo.host import Host  # only validate_passthrough's callers, who have one, need pcitopo.host

__all__ = [
    "HOST_RULES",
    "RULES",
    "RULE_ENFORCEMENT",
    "Enforcement",
    "check",
    "crash_violations",
    "io_violations",
    "mmio64_setting",
    "mmio_violations",
    "validate",
    "validate_passthrough",
]


def __dir__() -> list[str]:
    return __all__


RULES: Mapping[str, str] = MappingProxyType(
    {
        "unknown-bus": "an address whose bus is no controller's index",
        "domain": "an address outside PCI domain 0 (pcitopo, like libvirt, addresses domain 0 only)",
        "slot-range": "a slot outside the usable slots of the bus model (slot 0 on pci-root, pcie-root, "
        "pci-bridge, pcie-to-pci-bridge)",
        "port-slot": "anything at slot != 0 behind a PCIe root or downstream port (the link exposes device 0 only; "
        "QEMU 7.2 accepts it silently)",
        "function-range": "a function the bus model does not have",
        "unique-address": "two things at one address, the machine's built-in devices included",
        "placement": "a connection the placement matrix does not allow; the message says what the bus accepts",
        "integrated": "an endpoint that may not be integrated directly on a PCIe root bus, or one that must be "
        "integrated (on bus 0) placed elsewhere",
        "machine-model": "a controller model the machine does not offer, or the wrong model at index 0",
        "function-zero": "a slot with functions > 0 used but function 0 empty (guests never scan it)",
        "multifunction": "a slot with several functions whose function 0 does not have multifunction on",
        "controller-cycle": "controllers that plug, through each other, into themselves",
        "unique-chassis-port": "two PCIe root or downstream ports with the same chassis (QEMU registers "
        "(chassis, slot), and slot is 0 on the command lines libvirt writes)",
        "chassis-nr": "a pci-bridge with chassis_nr 0, or a chassis_nr used twice where the machine needs them "
        "unique (pseries)",
        "phb-index": "a host bridge target index out of range, used twice, or not 0 exactly on index 0; "
        "more host bridges than the machine has",
        "index-order": "a pci-bridge whose index is not larger than the bus it plugs into (libvirt refuses it)",
        "expander-bus-nr": "expander bus_nr out of range or used twice, or bus number ranges that leave no room "
        "for the buses below a root",
        "bus-numbers": "more guest bus numbers used in a PCI domain than the machine has",
        "numa-node": "a controller NUMA node the guest does not declare, or one on a controller that cannot have one",
        "io-space": "more 4 KiB IO windows needed by bridges and ports than the x86 firmware can give",
        "mmio-space": "more memory than the firmware's 32-bit MMIO hole holds, or a 64-bit window larger than "
        "the firmware gives (by default, or at all under the guest CPU's physical address bits)",
        "firmware-acpi": "a firmware that maps no BAR on this machine without ACPI (OVMF on pc), booted without it",
        "firmware-crash": "a layout QEMU 7.2 crashes on while the firmware sets up PCI (OVMF: an lsilogic beside a "
        "pci-bridge on a bus other than the main root bus)",
        "hotplug": "a device that must be hot-pluggable at a position that is not (a slot without hotplug, or a "
        "slot it shares: libvirt hot-plugs single-function slots only), or the reverse",
        "numa": "a device that requires a NUMA node placed under another node",
        "slot-group": "devices of one slot group (``needs.slot_group``) not all functions of one slot",
        "bus-group": "devices of one bus group (``needs.bus_group``) not all on one bus",
        "switch-group": "devices of one switch group (``needs.switch_group``) not all behind one PCIe switch",
        "root-address": "a root bus (pci-root, pcie-root, a pseries host bridge) with an address (libvirt: "
        '"pci-root and pcie-root controllers should not have an address")',
        "usb-master": "ICH9 UHCI companion USB controllers and no USB controller of their own to be their master "
        '(libvirt: "No master USB controller specified")',
        "controller-options": "a controller <model name> or <target> option its model does not take "
        "(libvirt 9.0 refuses the domain at define), or an io-reserve on a QEMU device without that property "
        "(QEMU refuses to start)",
        "qemu-driver": "a device kind whose QEMU driver the machine's QEMU release lacks: added later (igb came with "
        "QEMU 8.0) or in no release (vhost-vsock-pci-transitional, which libvirt 9.0 still asks for), or one the "
        "machine's QEMU does not start (qxl-vga on aarch64, virtio-iommu on riscv64 virt: its ``[refuses]``)",
        "one-per-guest": "two devices of a kind QEMU starts once a guest on the machine (virtio-balloon in any "
        "variant; virtio-iommu on x86 and aarch64; vmvga; qxl-vga): its ``[one-per-guest]``",
    }
)
"""Every rule id with what it means. The ids are stable."""


Enforcement = Literal["refused", "guest-visibility"]
"""``refused``: QEMU, libvirt or the firmware refuses it, or it breaks a device's own requirement;
``guest-visibility``: QEMU 7.2 starts the VM, but the guest does not see the device (kept in a grow,
with a warning, unless strict)."""

RULE_ENFORCEMENT: Mapping[str, Enforcement] = MappingProxyType(
    {rule: ("guest-visibility" if rule in ("function-zero", "port-slot") else "refused") for rule in RULES}
)
"""Which rules QEMU enforces itself, by rule id (tests/integration/test_qemu_silent.py starts the others)."""


_INDEX_ORDER_MODELS = frozenset({"pci-bridge"})
"""Models whose index libvirt requires to be larger than their bus's (``qemuDomainAssignPCIAddresses``)."""


def validate(topology: Topology) -> tuple[Violation, ...]:
    """Every violation of every rule, sorted (by rule, then message)."""
    ctx = _Context(topology)
    found: list[Violation] = []
    for rule in _CHECKS:
        found.extend(rule(ctx))
    return tuple(sorted(found))


def check(topology: Topology) -> None:
    """Raise :class:`~pcitopo.errors.InvalidTopology` naming every violation, if there is any."""
    violations = validate(topology)
    if violations:
        raise InvalidTopology(violations)


# -- what the rules look at ---------------------------------------------------------------


class _Item(NamedTuple):
    """Something with an address: a built-in device, a controller or an endpoint.

    A named tuple, not an attrs class: validation builds one for every placed
    controller and device, and a tuple is several times cheaper to make.
    """

    builtin: str | None
    """A built-in device's name (``None`` for a controller or an endpoint)."""
    ident: str | None
    """The id reported in ``Violation.devices`` (``None`` for built-ins)."""
    address: PciAddress
    multifunction: bool | None
    controller: Controller | None = None
    device: Device | None = None

    @property
    def label(self) -> str:
        """How messages name it: ``'net0'``, ``'pci.3'``, ``built-in 'lpc'``. Worded when a message asks: validation
        makes an item for each of a plan's thousand placed devices and controllers, and words a few."""
        return repr(self.ident) if self.ident is not None else f"built-in {self.builtin!r}"

    @property
    def slot(self) -> tuple[int, int, int]:
        return (self.address.domain, self.address.bus, self.address.slot)


def _q(name: str) -> str:
    return repr(name)


def _all(items: Sequence[object]) -> str:
    return "both" if len(items) == 2 else "all"


def _names(labels: Sequence[str]) -> str:
    if len(labels) <= 1:
        return "".join(labels)
    return f"{', '.join(labels[:-1])} and {labels[-1]}"


class _Context:
    """A topology with the lookups every rule shares, computed once."""

    def __init__(self, topology: Topology) -> None:
        self.t = topology
        self.machine = topology.machine
        self.catalog = topology.catalog
        self.indexes = {c.index for c in topology.controllers}

    @functools.cached_property
    def items(self) -> tuple[_Item, ...]:
        t = self.t
        new = tuple.__new__  # _Item's own __new__ takes keywords and defaults: several times slower for thousands
        items = [new(_Item, (b.name, None, b.address, b.multifunction or None, None, None)) for b in t.builtins()]
        for c in t.controllers:
            if c.address is not None:
                items.append(new(_Item, (None, c.name, c.address, c.multifunction, c, None)))
        items += [
            new(_Item, (None, d.id, d.address, d.multifunction, None, d)) for d in t.devices if d.address is not None
        ]
        return tuple(items)

    @functools.cached_property
    def placed(self) -> tuple[_Item, ...]:
        """Controllers and devices (not built-ins) whose bus exists."""
        return tuple(i for i in self.items if i.ident is not None and i.address.bus in self.indexes)

    @functools.cached_property
    def slots(self) -> dict[tuple[int, int, int], list[_Item]]:
        by_slot: dict[tuple[int, int, int], list[_Item]] = {}
        for item in self.items:
            a = item.address  # _Item.slot, inlined: a property call for each of a plan's thousand items
            by_slot.setdefault((a.domain, a.bus, a.slot), []).append(item)
        return by_slot

    def model(self, index: int) -> ControllerModel:
        return self.t.model(index)

    def is_pcie_root(self, index: int) -> bool:
        m = self.model(index)
        return m.root and Connect.PCIE_DEVICE in m.accepts

    def where(self, item: _Item) -> str:
        return f"{item.label} at {item.address}"

    @functools.cached_property
    def controllers(self) -> tuple[tuple[Controller, ControllerModel], ...]:
        """Every controller with its model, looked up once for all the rules that ask."""
        t = self.t
        by_name = t._models_by_name  # what Topology.model finds first for a controller, without the call
        return tuple((c, by_name.get(c.model) or t.model(c)) for c in t.controllers)

    @functools.cached_property
    def host_bridges(self) -> tuple[Controller, ...]:
        """The root controllers: index 0 and any extra host bridges (pseries PHBs)."""
        return tuple(c for c, model in self.controllers if c.index == 0 or model.root)

    @functools.cached_property
    def in_cycle(self) -> frozenset[int]:
        return frozenset(i for cycle in self.t.controller_cycles() for i in cycle)


def _violation(rule: str, message: str, *items: _Item | str, address: PciAddress | None = None) -> Violation:
    devices: list[str] = []
    for i in items:
        ident = i if isinstance(i, str) else i.ident
        if ident is not None:
            devices.append(ident)
    return Violation(rule, message, devices=devices, address=address)


Check = Callable[[_Context], Iterator[Violation]]
_CHECKS: list[Check] = []


def _rule(func: Check) -> Check:
    _CHECKS.append(func)
    return func


# -- addresses ----------------------------------------------------------------------------


@_rule
def _unknown_bus(ctx: _Context) -> Iterator[Violation]:
    for item in ctx.items:
        if item.ident is not None and item.address.bus not in ctx.indexes:
            known = ", ".join(str(i) for i in sorted(ctx.indexes))
            yield _violation(
                "unknown-bus",
                f"{ctx.where(item)}: no controller has index {item.address.bus} (indexes: {known})",
                item,
                address=item.address,
            )


@_rule
def _domain(ctx: _Context) -> Iterator[Violation]:
    for item in ctx.items:
        if item.ident is not None and item.address.domain != 0:
            yield _violation(
                "domain",
                f"{ctx.where(item)}: only PCI domain 0 is available (got domain {item.address.domain:#06x})",
                item,
                address=item.address,
            )


@_rule
def _slot_ranges(ctx: _Context) -> Iterator[Violation]:
    # each bus model's usable slots, made once a model rather than once an item (a plan's devices sit each behind a
    # root port of its own)
    models = ctx.t._models
    usable_slots: dict[str, range] = {}
    for item in ctx.placed:
        bus = item.address.bus
        model = models[bus]
        usable = usable_slots.get(model.name)
        if usable is None:
            usable = usable_slots[model.name] = model.slot_range()
        slot = item.address.slot
        if model.port:
            if slot != 0:
                yield _violation(
                    "port-slot",
                    f"{ctx.where(item)}: bus {bus} is the link of a {model.name}, which exposes device 0 only; "
                    f"the slot must be 0x00 (got {slot:#04x})",
                    item,
                    address=item.address,
                )
        elif slot not in usable:
            first, last = model.slots
            yield _violation(
                "slot-range",
                f"{ctx.where(item)}: slot {slot:#04x} is outside the usable slots {first:#04x}..{last:#04x} "
                f"of bus {bus} ({model.name})",
                item,
                address=item.address,
            )
        if item.address.function >= model.functions:
            yield _violation(
                "function-range",
                f"{ctx.where(item)}: bus {bus} ({model.name}) has functions 0..{model.functions - 1} only",
                item,
                address=item.address,
            )


@_rule
def _unique_address(ctx: _Context) -> Iterator[Violation]:
    for in_slot in ctx.slots.values():
        if len(in_slot) == 1:
            continue  # one thing in the slot: the common case
        by_function: dict[int, list[_Item]] = {}
        for item in in_slot:
            by_function.setdefault(item.address.function, []).append(item)
        for items in by_function.values():
            if len(items) > 1:
                address = items[0].address
                yield _violation(
                    "unique-address",
                    f"{address} is wanted by {_names([i.label for i in items])}",
                    *items,
                    address=address,
                )


@_rule
def _functions(ctx: _Context) -> Iterator[Violation]:
    for items in ctx.slots.values():
        if len(items) == 1 and items[0].address.function == 0:
            continue  # one thing at function 0: the common case
        functions = sorted({i.address.function for i in items})
        if functions == [0]:
            continue
        if functions[0] == 0 and next(i for i in items if i.address.function == 0).multifunction is True:
            continue  # function 0 has multifunction on: the slot of a plan's packed root ports, nothing to word
        first = items[0].address.slot_address
        others = [i for i in items if i.address.function != 0]
        if functions[0] != 0:
            listed = ", ".join(f"{i.label} at function {i.address.function}" for i in others)
            yield _violation(
                "function-zero",
                f"{first} is empty, but {listed}; guests scan function 0 first and never find the others",
                *others,
                address=first,
            )
            continue
        labels = sorted({i.label for i in others})
        uses = "uses another function" if len(labels) == 1 else "use other functions"
        # the first claimant of function 0 holds it; a second one is a unique-address problem
        zero = next(i for i in items if i.address.function == 0)
        if zero.multifunction is not True:
            state = "multifunction off" if zero.multifunction is False else "no multifunction on"
            yield _violation(
                "multifunction",
                f"{ctx.where(zero)} has {state}, but {_names(labels)} {uses} of its slot",
                zero,
                *others,
                address=zero.address,
            )


# -- placement ----------------------------------------------------------------------------


@_rule
def _placement(ctx: _Context) -> Iterator[Violation]:
    t = ctx.t
    models = t._models  # each bus's model, by index: every placed item's bus is a controller's
    # an endpoint's checks below depend on its bus's model, whether the bus is bus 0, its kind and whether it needs
    # to be integrated alone (Topology.placement_problem answers by the same): a key that passed them passes again,
    # so that a plan's devices, each behind a root port of its own, are checked once a kind
    passed: set[tuple[str, bool, str, bool]] = set()
    # likewise a controller's depend on its bus's model, whether that is bus 0 and its own model only
    passed_controllers: set[tuple[str, bool, str]] = set()
    for item in ctx.placed:
        bus = item.address.bus
        bus_model = models[bus].name
        if item.controller is not None:
            controller_key = (bus_model, bus == 0, item.controller.model)
            if controller_key in passed_controllers:
                continue
            model = t.model(item.controller)
            if model.root:
                continue  # a root bus with an address: rule root-address
            problem = t.placement_problem(bus, model=model, strict=True)
            if problem is not None:
                yield _violation(
                    "placement", f"{ctx.where(item)} ({model.name}): {problem}", item, address=item.address
                )
            else:
                passed_controllers.add(controller_key)
            continue
        device = item.device
        if device is None:
            continue
        key = (bus_model, bus == 0, device.kind, device.needs.integrated)
        if key in passed:
            continue
        kind = t.kind(device)
        integrated = _integrated_problem(ctx, device, bus, kind) if bus != 0 else None
        if integrated is not None:
            yield _violation("integrated", f"{ctx.where(item)} ({kind.name}): {integrated}", item, address=item.address)
            continue
        problem = t.placement_problem(bus, kind=kind, strict=False)
        if problem is not None:
            yield _violation("placement", f"{ctx.where(item)} ({kind.name}): {problem}", item, address=item.address)
        else:
            passed.add(key)


def _integrated_problem(ctx: _Context, device: Device, bus: int, kind: DeviceKind) -> str | None:
    if bus != 0 and kind.integrated is Integrated.REQUIRED:
        return f"a {kind.name} must be an integrated device on bus 0, not on bus {bus} ({ctx.model(bus).name})"
    if bus != 0 and device.needs.integrated:
        return f"the device needs to be integrated on bus 0, not on bus {bus} ({ctx.model(bus).name})"
    # Integrated.FORBIDDEN keeps pcitopo from putting a kind on a PCIe root bus on its own; an address
    # there is accepted (libvirt relaxes explicit addresses, QEMU makes it an integrated endpoint)
    return None


@_rule
def _machine_models(ctx: _Context) -> Iterator[Violation]:
    machine = ctx.machine
    offered: dict[str, bool] = {}
    for c in ctx.t.controllers:
        if c.index == 0:
            if c.model != machine.root_model:
                label = _q(c.name)
                yield _violation(
                    "machine-model",
                    f"{label}: the controller with index 0 must be a {machine.root_model} on {machine.name} "
                    f"(got {c.model})",
                    c.name,
                )
            continue
        if c.model not in offered:
            offered[c.model] = machine.offers(c.model)
        if not offered[c.model]:
            label = _q(c.name)
            reason = "only index 0 may be a root bus" if ctx.t.model(c).root else "the machine does not offer it"
            yield _violation("machine-model", f"{label}: {machine.name} has no {c.model} controllers; {reason}", c.name)


@_rule
def _cycles(ctx: _Context) -> Iterator[Violation]:
    t = ctx.t
    for cycle in t.controller_cycles():
        members = [t.controller(i) for i in cycle]
        names = [c.name for c in members]
        if len(members) == 1:
            message = f"{_q(names[0])} plugs into its own bus, so it never reaches a root bus"
        else:
            links = "; ".join(
                f"{_q(c.name)} plugs into {_q(t.controller(c.address.bus).name)}" for c in members if c.address
            )
            message = (
                f"controllers {_names([_q(n) for n in names])} plug into each other ({links}), "
                "so none of them reaches a root bus"
            )
        yield _violation("controller-cycle", message, *names)


@_rule
def _index_order(ctx: _Context) -> Iterator[Violation]:
    for c in ctx.t.controllers:
        if c.model in _INDEX_ORDER_MODELS and c.address is not None and c.index <= c.address.bus:
            yield _violation(
                "index-order",
                f"{_q(c.name)} ({c.model}, index {c.index}) plugs into bus {c.address.bus}; "
                f"a {c.model}'s index must be larger than its bus's",
                c.name,
                address=c.address,
            )


# -- identity properties --------------------------------------------------------------------


@_rule
def _chassis(ctx: _Context) -> Iterator[Violation]:
    ports: dict[int, list[Controller]] = {}
    bridges: dict[int, list[Controller]] = {}
    for c, model in ctx.controllers:
        chassis = identity.effective_chassis(model, c)
        if model.port and chassis is not None:
            ports.setdefault(chassis, []).append(c)
        if "chassis-nr" in model.identity:
            if c.chassis_nr == 0:
                yield _violation(
                    "chassis-nr",
                    f"{_q(c.name)} ({c.model}) has chassis_nr 0; each bridge needs a chassis number in 1..255",
                    c.name,
                )
            else:
                bridges.setdefault(c.index if c.chassis_nr is None else c.chassis_nr, []).append(c)
    for same in ports.values():
        if len(same) > 1:
            pairs = _names([f"{_q(c.name)} (chassis {_chassis_of(c)}, port {_opt(c.port)})" for c in same])
            yield _violation(
                "unique-chassis-port",
                f"{pairs} share a chassis; QEMU registers each PCIe port as (chassis, slot) and libvirt leaves "
                "slot at 0, so the chassis must differ",
                *(c.name for c in same),
            )
    if ctx.machine.unique_bridge_chassis:
        for number, same in bridges.items():
            if len(same) > 1:
                yield _violation(
                    "chassis-nr",
                    f"{_names([_q(c.name) for c in same])} use chassis_nr {number}; "
                    f"{ctx.machine.name} needs every bridge's chassis_nr unique",
                    *(c.name for c in same),
                )


def _opt(value: int | None) -> str:
    return "unset" if value is None else str(value)


def _chassis_of(c: Controller) -> str:
    return f"{c.index} by default" if c.chassis is None else str(c.chassis)


@_rule
def _host_bridges(ctx: _Context) -> Iterator[Violation]:
    machine = ctx.machine
    phb_models = {m for m in machine.controllers if "target-index" in ctx.catalog.controller(m).identity}
    if not phb_models:
        return
    limit = machine.max_host_bridges
    bridges = ctx.host_bridges
    effective = identity.effective(ctx.t)
    by_target: dict[int, list[Controller]] = {}
    for c in bridges:
        target = c.target_index
        if c.index == 0:
            if target not in (None, 0):
                yield _violation(
                    "phb-index",
                    f"{_q(c.name)} is the default host bridge and must have target index 0 (got {target})",
                    c.name,
                )
            target = 0
        elif target is not None and not 0 <= target < limit:
            yield _violation(
                "phb-index",
                f"{_q(c.name)} ({c.model}) has target index {target}; it must be in 0..{limit - 1}",
                c.name,
            )
        elif target == 0:
            yield _violation(
                "phb-index",
                f"{_q(c.name)} ({c.model}) has target index 0, which only the controller with index 0 may have",
                c.name,
            )
        if target is None:
            target = effective[c.index].target_index
        if target is not None:
            by_target.setdefault(target, []).append(c)
    for target, same in by_target.items():
        if len(same) > 1:
            labels = [_q(c.name) + (" (by default)" if c.target_index is None else "") for c in same]
            yield _violation(
                "phb-index",
                f"{_names(labels)} {_all(same)} have target index {target}",
                *(c.name for c in same),
            )
    if len(bridges) > limit:
        yield _violation(
            "phb-index",
            f"{len(bridges)} host bridges, but {machine.name} has at most {limit}",
            *(c.name for c in bridges),
        )


@_rule
def _numa_nodes(ctx: _Context) -> Iterator[Violation]:
    t = ctx.t
    for c, model in ctx.controllers:
        if c.numa_node is None:
            continue
        if c.index == 0:
            yield _violation("numa-node", f"{_q(c.name)}: the controller with index 0 cannot have a NUMA node", c.name)
        elif "numa-node" not in model.identity:
            yield _violation(
                "numa-node",
                f"{_q(c.name)} ({c.model}) cannot have a NUMA node; only expander buses and host bridges do",
                c.name,
            )
        elif c.numa_node >= t.numa_nodes:
            declared = f"declares nodes 0..{t.numa_nodes - 1}" if t.numa_nodes else "declares no NUMA nodes"
            yield _violation(
                "numa-node",
                f"{_q(c.name)} ({c.model}) is on NUMA node {c.numa_node}, but the guest {declared}",
                c.name,
            )


# -- bus numbers --------------------------------------------------------------------------


@_rule
def _expander_bus_nr(ctx: _Context) -> Iterator[Violation]:
    t = ctx.t
    top = ctx.machine.bus_numbers
    highest = min(identity.BUS_NR[-1], top - 1)
    expanders = [c for c, model in ctx.controllers if model.expander and c.bus_nr is not None]
    by_nr: dict[int, list[Controller]] = {}
    for c in expanders:
        assert c.bus_nr is not None
        if not 1 <= c.bus_nr <= highest:
            yield _violation(
                "expander-bus-nr",
                f"{_q(c.name)} ({c.model}) has bus_nr {c.bus_nr}; it must be in 1..{highest} "
                f"({ctx.machine.name} has {top} bus numbers)",
                c.name,
            )
        by_nr.setdefault(c.bus_nr, []).append(c)
    for nr, same in by_nr.items():
        if len(same) > 1:
            yield _violation(
                "expander-bus-nr",
                f"{_names([_q(c.name) for c in same])} {_all(same)} have bus_nr {nr}",
                *(c.name for c in same),
            )
    if not expanders:
        return  # the root bus's region alone (identity.bus_regions takes the expanders with a bus_nr after it)
    regions = identity.bus_regions(t)
    if len(regions) == 1:
        return
    root, lowest = regions[0], regions[1].first
    if root.used > root.end:
        yield _violation(
            "expander-bus-nr",
            f"{_q(t.controller(0).name)} and the buses below it need bus numbers 0..{root.used - 1}, but the lowest "
            f"expander bus_nr is {lowest} ({_names([_q(c.name) for c in by_nr[lowest]])})",
            t.controller(0).name,
            *(c.name for c in by_nr[lowest]),
        )
    for region in regions[1:]:
        nr, end, need = region.first, region.end, region.used
        c = t.controller(region.owner)
        if nr + need > end:
            after = (
                f"the next bus_nr is {end} ({_names([_q(n.name) for n in by_nr[end]])})"
                if end in by_nr
                else f"{ctx.machine.name} has {top} bus numbers"
            )
            yield _violation(
                "expander-bus-nr",
                f"{_q(c.name)} ({c.model}, bus_nr {nr}) and the buses below it need bus numbers "
                f"{nr}..{nr + need - 1}, but {after}",
                c.name,
            )


@_rule
def _bus_numbers(ctx: _Context) -> Iterator[Violation]:
    t = ctx.t
    have = ctx.machine.bus_numbers
    for root in ctx.host_bridges:
        used = t.bus_numbers_used(root.index)
        if used > have:
            yield _violation(
                "bus-numbers",
                f"the PCI domain of {_q(t.bus_name(root.index))} needs {used} bus numbers, "
                f"but {ctx.machine.name} has {have}",
                root.name,
            )


# -- resources ----------------------------------------------------------------------------


@_rule
def _io_space(ctx: _Context) -> Iterator[Violation]:
    t = ctx.t
    budget = t.io_window_budget()
    if budget is None:
        return
    if t.io_windows_short() == 0:
        return  # it fits, or the firmware drops the reservations that do not (measured)
    needed = t.io_windows()
    windows = sum(needed.values())
    fw = t.firmware_model
    for_devices = sum(t.io_windows(reservations=False).values())
    acpi = "with ACPI" if t.acpi else "without ACPI"
    tops = [t.controller(i) for i in sorted(needed)]
    listed = _names([f"{_q(c.name)} ({needed[c.index]})" for c in tops])
    own = [_q(c.name) for c in tops if t.model(c).expander]
    if own:
        # a root bridge of its own to the firmware (FirmwareMachine.expander_io_windows)
        listed += f"; the IO BARs directly on {_names(own)} take windows of their own"
    reserved = windows - for_devices
    why = f", {reserved} of them reserved by {fw.name} for hotplug" if fw is not None and reserved else ""
    under = f" under {fw.name}" if fw is not None else ""
    lost = t.root_io_windows()
    beside = f" beside {t.root_io_bytes()} bytes of IO BARs on the root buses" if lost else ""
    yield _violation(
        "io-space",
        f"bridges and ports below the root buses need {windows} IO windows of 4 KiB ({listed}{why}), "
        f"but {ctx.machine.name} {acpi}{under} has room for {budget}{beside}",
        *(c.name for c in tops),
    )


def _size(size: int, *, most: str = "TiB") -> str:
    """Bytes in words: ``_size(3 << 29)`` is ``'1.5 GiB'``; ``most='MiB'`` keeps hole sizes in MiB."""
    units = (("TiB", 40), ("GiB", 30), ("MiB", 20), ("KiB", 10))
    for unit, shift in units[[u for u, _ in units].index(most) :]:
        if size >= 1 << shift:
            value = size / (1 << shift)
            return f"{value:.0f} {unit}" if value == int(value) else f"{value:.1f} {unit}"
    return f"{size} bytes"


def _consumers(ctx: _Context, consumers: Sequence[tuple[str, int, str]]) -> tuple[str, PciAddress | None, list[str]]:
    """The three largest consumers as words, the address of the largest one's device, and their devices' ids."""
    t = ctx.t
    shown = consumers[:3]
    words = [
        f"{_q(name)} {_size(size)}" + (f" (for {_q(owner)})" if owner != name else "") for name, size, owner in shown
    ]
    if len(consumers) > 3:
        words.append(f"{len(consumers) - 3} more")
    address = None
    if shown:
        owner = shown[0][2]
        found = [d.address for d in t.devices if d.id == owner] + [c.address for c in t.controllers if c.name == owner]
        address = found[0] if found else None
    return ", ".join(words), address, list(dict.fromkeys(owner for _, _, owner in shown))


@_rule
def _mmio_space(ctx: _Context) -> Iterator[Violation]:
    yield from _mmio_checks(ctx, ctx.t.mmio, knob_settable=False)


def io_violations(topology: Topology) -> list[Violation]:
    """The ``io-space`` violations of a topology: its bridges' IO windows beyond the firmware's room."""
    return list(_io_space(_Context(topology)))


def mmio_violations(topology: Topology, *, unplaced: bool = False, knob_settable: bool = False) -> list[Violation]:
    """The ``mmio-space`` violations of a topology.

    ``unplaced`` counts devices without an address too, as if each sat on the
    root bus with no bridge window around it: what any plan needs at least.
    ``knob_settable`` takes the 64-bit window at the largest the firmware's
    knob can give (a plan sets it when the default is too small).
    """
    m = topology.mmio_with_unplaced if unplaced else topology.mmio
    return list(_mmio_checks(_Context(topology), m, knob_settable=knob_settable))


def _mmio_checks(ctx: _Context, m: Mmio | None, *, knob_settable: bool) -> Iterator[Violation]:
    t = ctx.t
    fw = t.firmware_model
    spec = fw.for_machine(ctx.machine.name, ctx.machine.root_model) if fw is not None else None
    if m is None or fw is None or spec is None:
        return
    machine = ctx.machine.name
    hole = spec.mmio32_hole
    # measured (OVMF): when only hotplug reservations overflow, the firmware drops them and maps every BAR
    harmless32 = spec.idle_reservations_harmless
    if hole is not None and m.below_4g > hole and not (harmless32 and m.below_4g - m.reserved_32 <= hole):
        listed, address, ids = _consumers(ctx, m.consumers_32)
        reserved = f", {_size(m.reserved_32)} of it reserved by {fw.name} for hotplug" if m.reserved_32 else ""
        yield _violation(
            "mmio-space",
            f"the 32-bit MMIO hole: BARs that must sit below 4 GiB and the bridges' memory windows need "
            f"{_size(m.below_4g, most='MiB')} ({listed}{reserved}), but {machine} under {fw.name} has "
            f"{_size(hole, most='MiB')}",
            *ids,
            address=address,
        )
    if not m.above_4g or t.phys_bits != fw.phys_bits:
        return  # a CPU other than the one measured (the host's): its ceiling is not known
    bits = f"the guest CPU's {fw.phys_bits} physical address bits"
    more_bits = (
        "give the guest CPU more physical address bits (<cpu><maxphysaddr mode='passthrough'/>, or "
        "mode='emulate' with bits='N') or pass fewer large-BAR devices"
    )
    # the consumers are worded only for a violation: a plan of many root ports has 64-bit reservations, and finding
    # the largest consumer's address walks every device and controller
    if spec.mmio64_top is not None:
        base = max(1 << 32, -(-(1 << 32) // max(m.align_64, 1)) * max(m.align_64, 1))
        end = base + m.above_4g
        # the firmware lays windows out largest alignment first, so hotplug reservations (2 MiB) come last:
        # past the top they hold no BAR (a device hot-plugged there later gets no room)
        if end - m.reserved_64 > spec.mmio64_top:
            listed, address, ids = _consumers(ctx, m.consumers_64)
            yield _violation(
                "mmio-space",
                f"the 64-bit MMIO window: 64-bit prefetchable BARs and windows need {_size(m.above_4g)} "
                f"({listed}), which {fw.name} lays out from {base:#x} to {end:#x}, past {bits} "
                f"({spec.mmio64_top:#x}); {more_bits}",
                *ids,
                address=address,
            )
        return
    window = t.mmio64_window()
    if knob_settable and fw.mmio64_knob and spec.mmio64_max is not None:
        window = max(window or 0, spec.mmio64_max)
    if window is None or m.above_4g <= window:
        return
    if spec.idle_reservations_harmless and m.bars_64 <= fw.pref64_reserve and m.above_4g - m.reserved_64 <= window:
        return
    listed, address, ids = _consumers(ctx, m.consumers_64)
    reserved = f", {_size(m.reserved_64)} of it reserved by {fw.name} for hotplug" if m.reserved_64 else ""
    need = f"64-bit prefetchable BARs and windows need {_size(m.above_4g)} ({listed}{reserved})"
    largest = spec.mmio64_max
    if largest is not None and fw.mmio64_knob and m.above_4g <= largest:
        set_to = f"{fw.mmio64_knob} set to {mmio64_setting(m.above_4g) >> 20} MiB"
        given = f"the {_size(window)} window {machine} under {fw.name} has" + (
            "" if t.mmio64 is not None else " by default"
        )
        yield _violation(
            "mmio-space",
            f"the 64-bit MMIO window: {need}, more than {given}; the domain needs {set_to} "
            f"(<qemu:commandline> -fw_cfg; pcitopo assign writes it)",
            *ids,
            address=address,
        )
        return
    most = f"the largest {fw.name} can be given under {bits} is {_size(largest)}" if largest else ""
    yield _violation(
        "mmio-space",
        f"the 64-bit MMIO window: {need}, more than the {_size(window)} window {machine} under {fw.name} has"
        + (f"; {most}; {more_bits}" if most else ""),
        *ids,
        address=address,
    )


def mmio64_setting(need: int) -> int:
    """The 64-bit window (bytes, a power of two of at least 1 GiB) that holds ``need`` bytes of windows.

    >>> mmio64_setting(130 << 30) >> 30
    256
    """
    return 1 << max(need - 1, (1 << 30) - 1).bit_length()


@_rule
def _firmware_acpi(ctx: _Context) -> Iterator[Violation]:
    t = ctx.t
    fw = t.firmware_model
    if t.acpi or fw is None:
        return
    spec = fw.for_machine(ctx.machine.name, ctx.machine.root_model)
    if spec is not None and spec.requires_acpi:
        yield _violation(
            "firmware-acpi",
            f"{fw.name} leaves every BAR unmapped on {ctx.machine.name} without ACPI; turn ACPI on or boot "
            f"{ctx.machine.default_firmware or 'another firmware'}",
            ctx.machine.root_bus_name,
        )


@_rule
def _firmware_crash(ctx: _Context) -> Iterator[Violation]:
    t = ctx.t
    kinds = t.bridge_sibling_crash
    fw = t.firmware_model
    if not kinds or fw is None:
        return
    bridges: dict[int, list[Controller]] = {}
    for c in t.controllers:
        if c.model == "pci-bridge" and c.address is not None and c.address.bus != 0:
            bridges.setdefault(c.address.bus, []).append(c)
    for d in t.devices:
        if d.address is None or d.kind not in kinds or d.address.bus not in bridges:
            continue
        bus = t.controller(d.address.bus)
        yield _violation(
            "firmware-crash",
            f"{_q(d.id)} ({d.kind}) at {d.address} is on {bus.model} {_q(bus.name)} beside pci-bridge "
            f"{_names([_q(b.name) for b in bridges[d.address.bus]])}: QEMU 7.2 crashes while {fw.name} sets up "
            f"PCI on {ctx.machine.name}; place it on another bus",
            d.id,
            bus.name,
            address=d.address,
        )


def crash_violations(topology: Topology) -> list[Violation]:
    """The ``firmware-crash`` violations of a topology: layouts QEMU crashes on while its firmware sets up PCI."""
    return list(_firmware_crash(_Context(topology)))


@_rule
def _device_needs(ctx: _Context) -> Iterator[Violation]:
    t = ctx.t
    checked = (HotplugNeed.REQUIRED, HotplugNeed.FORBIDDEN)
    for item in ctx.placed:
        device = item.device
        if device is None:
            continue
        needs = device.needs
        if needs.hotplug not in checked and needs.numa_node is None:
            continue  # nothing asked of the position
        bus, slot = item.address.bus, item.address.slot
        if needs.hotplug in checked:
            kind = t.kind(device)
            hot = t.is_hotpluggable(bus, slot)
            if needs.hotplug is HotplugNeed.REQUIRED and not kind.hotpluggable:
                yield _violation(
                    "hotplug",
                    f"{ctx.where(item)} must be hot-pluggable, but a {kind.name} cannot be hot-plugged at all",
                    item,
                    address=item.address,
                )
            elif needs.hotplug is HotplugNeed.REQUIRED and not hot:
                position = f"bus {bus} ({ctx.model(bus).name}) slot {slot:#04x}"
                yield _violation(
                    "hotplug",
                    f"{ctx.where(item)} must be hot-pluggable, but {position} does not support hotplug",
                    item,
                    address=item.address,
                )
            elif needs.hotplug is HotplugNeed.FORBIDDEN and hot:
                position = f"bus {bus} ({ctx.model(bus).name}) slot {slot:#04x}"
                yield _violation(
                    "hotplug",
                    f"{ctx.where(item)} must not be hot-pluggable, but {position} supports hotplug",
                    item,
                    address=item.address,
                )
        if needs.numa_node is not None and needs.numa_strict:
            node = t.numa_node_of_bus(bus)
            if node != needs.numa_node:
                under = "no NUMA node" if node is None else f"NUMA node {node}"
                yield _violation(
                    "numa",
                    f"{ctx.where(item)} requires NUMA node {needs.numa_node}, but bus {bus} is under {under}",
                    item,
                    address=item.address,
                )


# -- groups -------------------------------------------------------------------------------


def _groups(ctx: _Context, attr: str) -> Iterator[tuple[str, list[_Item]]]:
    """The placed members of each group named by ``needs.<attr>``, groups by label."""
    groups: dict[str, list[_Item]] = {}
    for item in ctx.placed:
        if item.device is not None:
            label = getattr(item.device.needs, attr)
            if label is not None:
                groups.setdefault(label, []).append(item)
    yield from sorted(groups.items())


def _members(ctx: _Context, items: Sequence[_Item]) -> str:
    return _names([ctx.where(i) for i in items])


@_rule
def _slot_groups(ctx: _Context) -> Iterator[Violation]:
    for label, items in _groups(ctx, "slot_group"):
        if len({i.slot for i in items}) > 1:
            yield _violation(
                "slot-group", f"slot group {_q(label)}: {_members(ctx, items)} are not functions of one slot", *items
            )
        for i in items:
            want = i.device.needs.function if i.device is not None else None
            if want is not None and i.address.function != want:
                yield _violation(
                    "slot-group",
                    f"slot group {_q(label)}: {ctx.where(i)} is not at function {want} of its slot",
                    i,
                    address=i.address,
                )


@_rule
def _bus_groups(ctx: _Context) -> Iterator[Violation]:
    for label, items in _groups(ctx, "bus_group"):
        if len({i.address.bus for i in items}) > 1:
            yield _violation("bus-group", f"bus group {_q(label)}: {_members(ctx, items)} are not on one bus", *items)


@_rule
def _switch_groups(ctx: _Context) -> Iterator[Violation]:
    for label, items in _groups(ctx, "switch_group"):
        switches = {i.ident: _switch_above(ctx, i.address.bus) for i in items}
        alone = [i for i in items if switches[i.ident] is None]
        if alone:
            yield _violation(
                "switch-group",
                f"switch group {_q(label)}: {_members(ctx, alone)} {'is' if len(alone) == 1 else 'are'} "
                f"behind no PCIe switch",
                *items,
            )
        elif len(set(switches.values())) > 1:
            behind = _names(
                [f"{ctx.where(i)} (behind {_q(ctx.t.controller(switches[i.ident] or 0).name)})" for i in items]
            )
            yield _violation(
                "switch-group", f"switch group {_q(label)}: {behind} are not behind one PCIe switch", *items
            )


def _switch_above(ctx: _Context, bus: int) -> int | None:
    """The index of the nearest PCIe switch upstream port above a bus, if any."""
    for c in ctx.t.path_to_root(bus):
        if Connect.PCIE_SWITCH_DOWNSTREAM_PORT in ctx.model(c.index).accepts:
            return c.index
    return None


@_rule
def _hotplug_shared_slot(ctx: _Context) -> Iterator[Violation]:
    """A device that requires hotplug in a slot it shares: libvirt hot-plugs function 0 of a lone slot only."""
    for item in ctx.placed:
        device = item.device
        if device is None or device.needs.hotplug is not HotplugNeed.REQUIRED:
            continue
        in_slot = ctx.slots.get(item.slot, [])
        if len(in_slot) == 1:
            continue  # alone in its slot
        others = [i for i in in_slot if i is not item]
        if not others or not ctx.t.is_hotpluggable(item.address.bus, item.address.slot):
            continue
        yield _violation(
            "hotplug",
            f"{ctx.where(item)} must be hot-pluggable, but it shares its slot with {_names([i.label for i in others])} "
            f"(libvirt hot-plugs single-function slots only)",
            item,
            address=item.address,
        )


# -- what libvirt itself refuses ------------------------------------------------------------


@_rule
def _identity_shortages(ctx: _Context) -> Iterator[Violation]:
    """Expander buses and host bridges libvirt has no busNr or target index left to give."""
    yield from identity.shortages(ctx.t)


@_rule
def _root_address(ctx: _Context) -> Iterator[Violation]:
    for c, model in ctx.controllers:
        if c.address is not None and model.root:
            yield _violation(
                "root-address",
                f"{_q(c.name)} ({c.model}) is a root bus, which plugs into nothing, but has the address "
                f"{c.address}; libvirt: pci-root and pcie-root controllers should not have an address",
                c.name,
                address=c.address,
            )


@_rule
def _usb_master(ctx: _Context) -> Iterator[Violation]:
    t = ctx.t
    one_of_each = {d.kind: d for d in t.devices}  # the role is the kind's: one lookup per kind
    roles = {kind: t.kind(d).usb for kind, d in one_of_each.items()}
    if "companion" not in roles.values():
        return
    companions = [d for d in t.devices if roles[d.kind] == "companion"]
    if companions and "host" not in roles.values():
        listed = _names([f"{_q(d.id)} ({d.kind})" for d in companions])
        are = "is an ICH9 UHCI companion" if len(companions) == 1 else "are ICH9 UHCI companions"
        yield _violation(
            "usb-master",
            f"{listed} {are}, but no USB controller of its own (an ich9-ehci1, say) is there to be the master; "
            "libvirt: No master USB controller specified",
            *(d.id for d in companions),
            address=companions[0].address,
        )


_TARGET_FIELDS = (
    ("chassis", "chassis"),
    ("port", "port"),
    ("chassis_nr", "chassisNr"),
    ("bus_nr", "busNr"),
    ("target_index", "index"),
    ("hotplug", "hotplug"),
)
"""Controller fields and the ``<target>`` attribute each is written as (``node`` is rule numa-node's)."""


@_rule
def _controller_options(ctx: _Context) -> Iterator[Violation]:
    numbered_roots = any("target-index" in ctx.catalog.controller(m).identity for m in ctx.machine.controllers)
    # the <target> fields each model does not take, by model name: only those are read of each controller
    refused: dict[str, tuple[tuple[str, str], ...]] = {}
    for c, model in ctx.controllers:
        if c.qemu_model is not None:
            label = f"{_q(c.name)} ({c.model})"
            names = model.qemu_devices
            if c.index == 0:  # the machine's own root bus: only its host bridge device, if it names one
                names = (ctx.machine.root_qemu,) if ctx.machine.root_qemu is not None else ()
            if c.qemu_model not in names:
                takes = f"takes only {_names([repr(n) for n in names])}" if names else "takes no <model name>"
                yield _violation(
                    "controller-options",
                    f"{label} has <model name={c.qemu_model!r}>; libvirt {takes} on a {c.model}",
                    c.name,
                    address=c.address,
                )
        if c.io_reserve is not None and not model.takes_io_reserve(c.qemu_model):
            device = c.qemu_model or model.qemu_device
            having = sorted({d for m in ctx.catalog.controllers.values() for d in m.io_reserve_devices})
            yield _violation(
                "controller-options",
                f"{_q(c.name)} ({c.model}) has io-reserve {c.io_reserve}; QEMU's {device or c.model} has no "
                f"io-reserve property (only {_names(having)} do)",
                c.name,
                address=c.address,
            )
        allowed = model.target_options
        fields = refused.get(model.name)
        if fields is None:
            fields = refused[model.name] = tuple((f, attr) for f, attr in _TARGET_FIELDS if attr not in allowed)
        bad = [attr for field, attr in fields if getattr(c, field) is not None]
        if c.index == 0 and numbered_roots:
            bad = [attr for attr in bad if attr != "index"]  # the default host bridge's: rule phb-index
        if bad:
            label = f"{_q(c.name)} ({c.model})"
            takes = f"takes only {', '.join(allowed)}" if allowed else "takes no <target> option"
            options = "option" if len(bad) == 1 else "options"
            yield _violation(
                "controller-options",
                f"{label} has the <target> {options} {', '.join(bad)}; libvirt {takes} on a {c.model}",
                c.name,
                address=c.address,
            )


@_rule
def _qemu_driver(ctx: _Context) -> Iterator[Violation]:
    version = ctx.machine.qemu_version
    release = "{}.{}".format(*version) if version is not None else None
    present: set[str] = set()  # the kinds the release has: looked up once a kind, not once a device
    for d in ctx.t.devices:  # placed or not: no address makes the driver exist
        if d.kind in present:
            continue
        kind = ctx.catalog.device(d.kind)
        refusal = ctx.machine.refuses.get(d.kind)
        if refusal is None and kind.in_qemu_release(version):
            present.add(d.kind)
            continue
        where = f" at {d.address}" if d.address is not None else ""
        if refusal is not None:
            qemu = " ".join(x for x in (ctx.machine.qemu_binary or "QEMU", release) if x)
            lacks = f"which {qemu} does not start on {ctx.machine.name}: {refusal!r}"
        elif not kind.in_qemu:
            base = kind.name.removesuffix("-non-transitional").removesuffix("-transitional")
            others = [
                n
                for n in (base, f"{base}-non-transitional")
                if n != kind.name and n in ctx.catalog.devices and ctx.machine.starts(n)
            ]
            lacks = "which no QEMU release has (libvirt 9.0 accepts the model; QEMU refuses to start)"
            if others:
                lacks += f"; use {' or '.join(map(_q, others))}"
        else:
            since = "{}.{}".format(*kind.qemu_since) if kind.qemu_since is not None else "a later release"
            lacks = f"which QEMU {since} added; {ctx.machine.name} describes QEMU {release}"
        yield _violation(
            "qemu-driver",
            f"{_q(d.id)} ({d.kind}){where} needs QEMU device {kind.qemu_device!r}, {lacks}",
            d.id,
            address=d.address,
        )


@_rule
def _one_per_guest(ctx: _Context) -> Iterator[Violation]:
    limited = ctx.machine.one_per_guest
    if not limited:
        return
    by_family: dict[str, list[Device]] = {}
    families: dict[str, str] = {}  # each kind's family, looked up once a kind, not once a device
    for d in ctx.t.devices:  # placed or not: QEMU counts devices, not addresses
        family = families.get(d.kind)
        if family is None:
            family = families[d.kind] = ctx.catalog.device(d.kind).family
        if family in limited:
            by_family.setdefault(family, []).append(d)
    for family, devices in sorted(by_family.items()):
        if len(devices) < 2:
            continue
        named = ", ".join(
            f"{_q(d.id)} ({d.kind})" + (f" at {d.address}" if d.address is not None else "") for d in devices
        )
        yield _violation(
            "one-per-guest",
            f"{len(devices)} {family} devices: {named}; {ctx.machine.name}'s QEMU starts one a guest "
            f"({limited[family]!r}): keep one",
            *(d.id for d in devices),
        )


# -- passthrough: the host's IOMMU groups ------------------------------------------------

HOST_RULES: Mapping[str, str] = MappingProxyType(
    {
        "host-device": "a passed-through device whose host source is not a function of the host description, "
        "is a bridge or port (vfio-pci binds only header-type-0 functions), or is passed twice",
        "iommu-group": "an IOMMU group passed only in part (every endpoint function of a group goes to the guest "
        "together; bridges and ports of the group stay with the host), or a host function without an IOMMU group",
    }
)
"""The rules :func:`validate_passthrough` checks against a host description, with what they mean."""


def validate_passthrough(topology: Topology, host: Host, sources: Mapping[str, PciAddress]) -> tuple[Violation, ...]:
    """Every violation of :data:`HOST_RULES` by the passed-through devices of ``topology``, sorted.

    ``sources`` maps a device id to the host function it passes through
    (``<hostdev><source><address>``; see :func:`pcitopo.host.hostdev_sources`).
    A group is all-or-nothing: VFIO gives a group to one user, and a group is
    usable only when every endpoint in it is bound to vfio-pci (or pci-stub,
    or no driver) -- Linux ``Documentation/driver-api/vfio.rst``. Bridges and
    PCIe ports in a group do not count: vfio-pci refuses to bind them, and the
    kernel lets them stay with ``pcieport`` (commits "vfio: Whitelist PCI
    bridges", 2015, and "PCI: portdrv: Set driver_managed_dma", 2022).

    >>> from pcitopo.devices import Device
    >>> from pcitopo.host import Host, HostDevice
    >>> A = PciAddress.parse
    >>> host = Host([
    ...     HostDevice(A("0000:01:00.0"), vendor=0x10de, device=0x2206, class_code=0x030000, iommu_group=1),
    ...     HostDevice(A("0000:01:00.1"), vendor=0x10de, device=0x1aef, class_code=0x040300, iommu_group=1),
    ... ])
    >>> t = Topology.build("q35", devices=[Device("gpu", "vfio-pci")])
    >>> for v in validate_passthrough(t, host, {"gpu": A("0000:01:00.0")}):
    ...     print(v)
    IOMMU group 1 is passed only in part: 0000:01:00.1 is not passed (group 1: 0000:01:00.0 by 'gpu', \
0000:01:00.1 not passed) (rule: iommu-group)
    """
    found: list[Violation] = []
    known = {d.id for d in topology.devices}
    by_source: dict[PciAddress, list[str]] = {}
    for ident in sorted(sources):
        if ident in known:
            by_source.setdefault(sources[ident], []).append(ident)
    groups: dict[int, list[PciAddress]] = {}
    for address in sorted(by_source):
        ids = by_source[address]
        who = _names([_q(i) for i in ids])
        if len(ids) > 1:
            found.append(Violation("host-device", f"host device {address} is passed by {_all(ids)} {who}", devices=ids))
        if address not in host:
            found.append(
                Violation(
                    "host-device",
                    f"{who} passes host device {address}, which the host description does not have",
                    devices=ids,
                )
            )
            continue
        d = host.device(address)
        if d.is_bridge:
            found.append(
                Violation(
                    "host-device",
                    f"{who} passes host device {address}, a bridge or port (class {d.class_code:06x}): "
                    "vfio-pci binds only endpoints; pass the functions below it instead",
                    devices=ids,
                )
            )
            continue
        if d.iommu_group is None:
            found.append(
                Violation(
                    "iommu-group",
                    f"{who} passes host device {address}, which is in no IOMMU group "
                    "(the host has no IOMMU, or it is off)",
                    devices=ids,
                )
            )
            continue
        groups.setdefault(d.iommu_group, []).append(address)
    for group in sorted(groups):
        members = [m for m in host.devices if m.iommu_group == group]
        missing = [m.address for m in members if not m.is_bridge and m.address not in by_source]
        if not missing:
            continue
        parts = []
        for m in members:
            if m.address in by_source:
                parts.append(f"{m.address} by {_names([_q(i) for i in by_source[m.address]])}")
            elif m.is_bridge:
                parts.append(f"{m.address} (bridge, stays with the host)")
            else:
                parts.append(f"{m.address} not passed")
        passed = [i for m in members for i in by_source.get(m.address, ())]
        verb = "is" if len(missing) == 1 else "are"
        found.append(
            Violation(
                "iommu-group",
                f"IOMMU group {group} is passed only in part: {_names([str(a) for a in missing])} {verb} not passed "
                f"(group {group}: {', '.join(parts)})",
                devices=passed,
            )
        )
    return tuple(sorted(found))
