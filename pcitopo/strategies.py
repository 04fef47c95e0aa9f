"""Hypothesis strategies for pcitopo's values: machines, addresses, device kinds and topologies.

Install with ``pip install pcitopo[strategies]``. The strategies follow
Hypothesis's own style: keyword-only arguments named ``min_*``/``max_*``,
arguments checked when the strategy is built (``InvalidArgument``), and
examples that shrink toward small topologies.

:func:`legal_topologies` builds a topology only from legal steps (each
controller and device goes to a position :meth:`~pcitopo.topology.Topology.free_positions`
offers, with identity properties set the way libvirt sets them), so
:func:`pcitopo.legality.rules.validate` finds nothing in it.
:func:`illegal_topologies` breaks one rule of such a topology on purpose.

A downstream project testing its own code, say an exporter that must keep
every device:

>>> from hypothesis import given, settings
>>> from pcitopo.strategies import legal_topologies
>>> @settings(max_examples=5, deadline=None)
... @given(legal_topologies(machine="q35", max_devices=4))
... def test_export_keeps_every_device(topology):
...     exported = {d.id for d in topology.devices}  # call your exporter here
...     assert exported == {d.id for d in topology.devices}
>>> test_export_keeps_every_device()

and a checker that must refuse every broken topology:

>>> from pcitopo.legality.rules import validate
>>> @settings(max_examples=5, deadline=None)
... @given(illegal_topologies(rule="unique-address"))
... def test_refuses(case):
...     topology, rule = case
...     assert rule in {v.rule for v in validate(topology)}
>>> test_refuses()
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Collection, Iterable, Mapping

import attrs
from hypothesis import assume
from hypothesis import strategies as st
from hypothesis.errors import InvalidArgument

from pcitopo.address import PciAddress
from pcitopo.devices import Controller, Device, HotplugNeed, Needs
from pcitopo.errors import UnknownName
from pcitopo.legality import identity as _identity
from pcitopo.legality.catalog import Catalog, Connect, ControllerModel, DeviceKind, Hotplug
from pcitopo.legality.machine import Machine
from pcitopo.legality.machine import machines as shipped_machines
from pcitopo.legality.rules import RULES
from pcitopo.policy.policy import Policy
from pcitopo.solver.plan import Plan
from pcitopo.topology import Topology

__all__ = [
    "device_kinds",
    "device_requests",
    "illegal_topologies",
    "legal_topologies",
    "machines",
    "pci_addresses",
    "plans",
    "policies",
    "requests",
]


def __dir__() -> list[str]:
    return __all__


# -- argument checks (shared, with uniform messages) ----------------------------------------


def _check_int(name: str, value: object, low: int, high: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise InvalidArgument(f"{name}={value!r} must be an int (got a {type(value).__name__})")
    if not low <= value <= high:
        raise InvalidArgument(f"{name}={value!r} must be in {low}..{high}")
    return value


def _check_order(name: str, low: int, high: int) -> None:
    if high < low:
        raise InvalidArgument(f"Cannot have max_{name}={high} < min_{name}={low}")


def _machine(machine: Machine | str | None, *, argument: str = "machine") -> Machine | None:
    if machine is None or isinstance(machine, Machine):
        return machine
    if not isinstance(machine, str):
        raise InvalidArgument(f"{argument}={machine!r} must be a Machine, a machine name or None")
    try:
        return Machine.named(machine)
    except UnknownName as exc:
        raise InvalidArgument(f"{argument}={machine!r}: {exc}") from None


# -- simple values --------------------------------------------------------------------------


def machines(*, names: Iterable[str] | None = None) -> st.SearchStrategy[Machine]:
    """Shipped machine descriptions (all of them, or those ``names``), shrinking toward the first name.

    >>> from hypothesis import find
    >>> find(machines(names=["q35", "pc"]), lambda m: True).name
    'q35'
    """
    known = shipped_machines()
    if names is None:
        chosen = sorted(known)
    else:
        if isinstance(names, str):
            raise InvalidArgument(f"names={names!r} must be a collection of machine names, not one string")
        chosen = list(names)
        unknown = [n for n in chosen if n not in known]
        if unknown:
            raise InvalidArgument(f"names contains unknown machine {unknown[0]!r}; known: {', '.join(sorted(known))}")
        if not chosen:
            raise InvalidArgument("names=[] leaves no machine to draw")
    return st.sampled_from([known[n] for n in chosen])


def pci_addresses(
    *,
    min_domain: int = 0,
    max_domain: int = 0xFFFF,
    min_bus: int = 0,
    max_bus: int = 0xFF,
    min_slot: int = 0,
    max_slot: int = 0x1F,
    min_function: int = 0,
    max_function: int = 7,
) -> st.SearchStrategy[PciAddress]:
    """PCI addresses with each field in its range, shrinking toward ``0000:00:00.0``.

    >>> from hypothesis import find
    >>> find(pci_addresses(min_slot=3), lambda a: True)
    <PciAddress('0000:00:03.0')>
    """
    limits = {"domain": 0xFFFF, "bus": 0xFF, "slot": 0x1F, "function": 7}
    given = {
        "domain": (min_domain, max_domain),
        "bus": (min_bus, max_bus),
        "slot": (min_slot, max_slot),
        "function": (min_function, max_function),
    }
    fields = {}
    for name, (low, high) in given.items():
        _check_int(f"min_{name}", low, 0, limits[name])
        _check_int(f"max_{name}", high, 0, limits[name])
        _check_order(name, low, high)
        fields[name] = st.integers(low, high)
    return st.builds(PciAddress, **fields)


def device_kinds(
    *, machine: Machine | str | None = None, connect: Connect | str | None = None
) -> st.SearchStrategy[str]:
    """Names of endpoint device kinds, optionally those that connect as ``connect`` on ``machine``.

    Without a machine, kinds are classified as on a PCI Express machine. Only kinds the machine's QEMU
    starts are drawn (every shipped machine's, without one): no ``igb`` for QEMU 7.2, no
    ``vhost-vsock-transitional`` (rule ``qemu-driver``).

    >>> device_kinds(machine="pc", connect="pcie-device")
    Traceback (most recent call last):
      ...
    hypothesis.errors.InvalidArgument: no device kind connects as a PCI Express device on pc
    """
    resolved = _machine(machine)
    wanted: Connect | None
    if connect is None or isinstance(connect, Connect):
        wanted = connect
    else:
        try:
            wanted = Connect(connect)
        except ValueError:
            known = ", ".join(c.value for c in Connect)
            raise InvalidArgument(f"connect={connect!r} is not a connect type; known: {known}") from None
    catalog = resolved.catalog if resolved is not None else Catalog.default()
    pcie = resolved.pcie if resolved is not None else True
    names = [
        k.name
        for k in catalog.devices.values()
        if (wanted is None or k.connect_on(pcie=pcie) is wanted) and _starts(k, resolved)
    ]
    if not names:
        where = f" on {resolved.name}" if resolved is not None else ""
        assert wanted is not None
        raise InvalidArgument(f"no device kind connects as a {wanted.phrase}{where}")
    return st.sampled_from(names)


# -- building topologies by legal steps -------------------------------------------------------

_MAX_NUMA_NODES = 4


class _Builder:
    """A topology grown one legal step at a time (all steps check their own preconditions)."""

    def __init__(self, topology: Topology) -> None:
        self.t = topology

    @property
    def machine(self) -> Machine:
        return self.t.machine

    def next_index(self) -> int | None:
        index = max(c.index for c in self.t.controllers) + 1
        return index if index <= 255 else None

    # bus numbers: the root bus owns [0, lowest bus_nr), each expander [bus_nr, next bus_nr)
    def _regions(self) -> list[tuple[int, int, int, int]]:
        """(owner index, first, end, used) of each bus-number region of domain 0, from the identity module."""
        return [(r.owner, r.first, r.end, r.used) for r in _identity.bus_regions(self.t)]

    def room(self, bus: int, need: int) -> bool:
        """Whether ``need`` more bus numbers fit below ``bus``."""
        t = self.t
        owner = next(c for c in t.path_to_root(bus) if t.model(c).expander or t.model(c).root)
        if owner.index != 0 and t.model(owner).root:  # a host bridge: a PCI domain of its own
            return t.bus_numbers_used(owner.index) + need <= self.machine.bus_numbers
        for index, first, end, used in self._regions():
            if index == owner.index:
                return first + used + need <= end
        return False

    def bus_nr_choices(self, need: int) -> list[tuple[int, int]]:
        """Ranges [low, high] of bus_nr where a new expander using ``need`` bus numbers fits."""
        highest = min(254, self.machine.bus_numbers - 1)
        taken = {first for _, first, _, _ in self._regions()}
        ranges = []
        for _, first, end, used in self._regions():
            low, high = max(first + used, 1), min(end - need, highest)
            if low == first:
                low += 1
            if low <= high and not (low == high and low in taken):
                ranges.append((low, high))
        return ranges

    # IO windows: counted by the topology itself, as the io-space rule counts them
    def io_windows(self) -> int:
        return sum(self.t.io_windows().values())

    def io_fits(self, device: Device, bus: int) -> bool:
        budget = self.t.io_window_budget()
        m = self.t.model(bus)
        if budget is None or m.root or m.expander:
            return True
        trial = self.t.with_devices(attrs.evolve(device, address=PciAddress(bus=bus, slot=m.slots[0])))
        return sum(trial.io_windows().values()) <= budget

    # steps
    def place_controller(self, controller: Controller) -> None:
        """Add a controller; a function > 0 turns multifunction on at function 0 of its slot."""
        controllers = list(self.t.controllers)
        a = controller.address
        if a is not None and a.function:
            zero = a.slot_address
            controllers = [
                attrs.evolve(c, multifunction=True) if c.address == zero and not c.multifunction else c
                for c in controllers
            ]
        self.t = self.t.replace(controllers=[*controllers, controller])

    def place_device(self, device: Device) -> None:
        self.t = self.t.with_devices(device)

    def identity(
        self, draw: st.DrawFn, model: ControllerModel, index: int, address: PciAddress | None
    ) -> dict[str, object]:
        """Identity properties set legally, as libvirt's defaults (:mod:`pcitopo.legality.identity`)."""
        kw: dict[str, object] = {}
        if "chassis" in model.identity:
            kw["chassis"] = index
        if "port" in model.identity and address is not None:
            kw["port"] = _identity.default_port(model, address)
        if "chassis-nr" in model.identity:
            kw["chassis_nr"] = index
        if "numa-node" in model.identity and self.t.numa_nodes:
            kw["numa_node"] = draw(st.none() | st.integers(0, self.t.numa_nodes - 1))
        if model.hotplug is Hotplug.DEFAULT_ON:
            kw["hotplug"] = draw(st.sampled_from([None, False]))
        return kw

    def fits(self, name: str) -> bool:
        """Whether a controller of model ``name`` can be added somewhere now (cheap pre-check)."""
        model = self.t.catalog.controller(name)
        if model.root:
            return len([c for c in self.t.controllers if c.index == 0 or self.t.model(c).root]) < (
                self.machine.max_host_bridges
            )
        if model.expander and not self.bus_nr_choices(model.bus_numbers):
            return False
        return any(self.room(p.bus, model.bus_numbers) for p in self.t.free_positions(name))

    def add_controller(self, draw: st.DrawFn, name: str, *, io_budget: bool = True) -> Controller | None:
        """Add a controller of model ``name`` where it legally fits; ``None`` if it fits nowhere.

        With ``io_budget``, not where the IO window the firmware reserves for it would not fit.
        """
        t = self.t
        model = t.catalog.controller(name)
        index = self.next_index()
        if index is None or not self.machine.offers(name):
            return None
        kw: dict[str, object] = {}
        address: PciAddress | None = None
        if model.root:  # an extra host bridge: no address, a target index of its own
            bridges = [c for c in t.controllers if c.index == 0 or t.model(c).root]
            free = _identity.next_target_index(c.target_index for c in bridges if c.target_index is not None)
            if len(bridges) >= self.machine.max_host_bridges or free is None:
                return None
            kw["target_index"] = free
        else:
            positions = [p for p in t.free_positions(name) if self.room(p.bus, model.bus_numbers)]
            if model.expander:
                choices = self.bus_nr_choices(model.bus_numbers)
                if not choices:
                    return None
                low, high = draw(st.sampled_from(choices))
                kw["bus_nr"] = draw(st.integers(low, high))
            if not positions:
                return None
            address = _position(draw, positions)
        kw.update(self.identity(draw, model, index, address))
        controller = Controller(index, name, address=address, **kw)  # type: ignore[arg-type]
        before = self.t
        self.place_controller(controller)
        budget = self.t.io_window_budget()
        if io_budget and budget is not None and self.io_windows() > budget:  # the firmware reserves IO for it
            self.t = before
            return None
        return controller

    def add_device(self, draw: st.DrawFn, kinds: list[str], ident: str) -> Device | None:
        """Add an endpoint of a drawn kind with drawn needs, at a free position that meets them."""
        t = self.t
        kinds = _open_kinds(kinds, t, _once(self.machine))
        if not kinds:
            return None
        kind = draw(st.sampled_from(kinds))
        needs = draw(_needs(t.numa_nodes, t.catalog.device(kind)))
        for device in (Device(ident, kind, needs=needs), Device(ident, kind)):
            positions = [p for p in t.free_positions(device) if self.io_fits(device, p.bus)]
            if positions:
                placed = device.placed_at(_position(draw, positions))
                self.place_device(placed)
                return placed
        return None


def _position(draw: st.DrawFn, positions: list[PciAddress]) -> PciAddress:
    """A bus first, then a position on it: a port's single slot is as likely as a bridge's 31."""
    bus = draw(st.sampled_from(sorted({p.bus for p in positions})))
    return draw(st.sampled_from([p for p in positions if p.bus == bus]))


def _needs(numa_nodes: int, kind: DeviceKind) -> st.SearchStrategy[Needs]:
    hotplug = list(HotplugNeed) if kind.hotpluggable else [HotplugNeed.ANY, HotplugNeed.FORBIDDEN]
    numa: st.SearchStrategy[tuple[int | None, bool]] = st.just((None, False))
    if numa_nodes:
        numa = st.tuples(st.none() | st.integers(0, numa_nodes - 1), st.booleans())
    return st.builds(
        lambda h, n, i: Needs(hotplug=h, numa_node=n[0], numa_strict=n[1] and n[0] is not None, integrated=i),
        st.sampled_from(hotplug),
        numa,
        st.booleans(),
    )


def _resolve_models(machine: Machine | None, controller_models: Collection[str] | None) -> tuple[str, ...] | None:
    if controller_models is None:
        return None
    if isinstance(controller_models, str):
        raise InvalidArgument(f"controller_models={controller_models!r} must be a collection of model names")
    catalog = machine.catalog if machine is not None else Catalog.default()
    for name in controller_models:
        if name not in catalog.controllers:
            raise InvalidArgument(f"controller_models: {UnknownName('controller model', name, catalog.controllers)}")
        if machine is not None and not machine.offers(name):
            raise InvalidArgument(f"controller_models: {machine.name} does not offer {name!r}")
    return tuple(controller_models)


def legal_topologies(
    *,
    machine: Machine | str | None = None,
    min_devices: int = 0,
    max_devices: int = 20,
    max_controllers: int = 6,
    numa_nodes: int | None = None,
    controller_models: Collection[str] | None = None,
) -> st.SearchStrategy[Topology]:
    """Topologies built only from legal steps, so valid by construction.

    Starting from the machine's default topology, each step adds a controller
    of a model the machine offers (up to ``max_controllers``; only
    ``controller_models`` if given) or an endpoint of any kind (between
    ``min_devices`` and ``max_devices``), at a position
    :meth:`~pcitopo.topology.Topology.free_positions` offers, with drawn
    hotplug/NUMA needs that the position meets. Identity properties follow
    libvirt: chassis = index and port = devfn on ports, chassis_nr = index on
    bridges, bus_nr ranges that leave room, the lowest free PHB target index.
    ``numa_nodes`` is the guest's NUMA node count (drawn from 0..2 if ``None``).

    >>> from hypothesis import given, settings
    >>> from pcitopo.legality.rules import validate
    >>> @settings(max_examples=10, deadline=None)
    ... @given(legal_topologies(machine="q35", min_devices=3, max_devices=3))
    ... def test_three_devices_and_valid(t):
    ...     assert len(t.devices) == 3 and validate(t) == ()
    >>> test_three_devices_and_valid()
    """
    resolved = _machine(machine)
    _check_int("min_devices", min_devices, 0, 200)
    _check_int("max_devices", max_devices, 0, 200)
    _check_order("devices", min_devices, max_devices)
    _check_int("max_controllers", max_controllers, 0, 254)
    if numa_nodes is not None:
        _check_int("numa_nodes", numa_nodes, 0, 64)
    models = _resolve_models(resolved, controller_models)
    return _legal_topologies(machine, min_devices, max_devices, max_controllers, numa_nodes, models)


@st.composite
def _legal_topologies(
    draw: st.DrawFn,
    machine: Machine | str | None,
    min_devices: int,
    max_devices: int,
    max_controllers: int,
    numa_nodes: int | None,
    models: tuple[str, ...] | None,
) -> Topology:
    resolved = _machine(machine)
    builder = _builder(draw, st.just(resolved) if resolved is not None else machines(), numa_nodes)
    offered = [m for m in builder.machine.controllers if models is None or m in models]
    # an ICH9 UHCI companion needs a USB controller of its own as its master (rule usb-master)
    # and only kinds the machine's QEMU has a driver for (rule qemu-driver)
    kinds = [
        name
        for name, kind in builder.machine.catalog.devices.items()
        if kind.usb != "companion" and _starts(kind, builder.machine)
    ]
    devices = draw(st.integers(min_devices, max_devices))
    controllers = draw(st.integers(0, max_controllers)) if offered else 0
    # controllers first shrinks best: devices can then go behind them
    steps = draw(st.permutations([True] * controllers + [False] * devices))
    placed = 0
    for is_controller in steps:
        fitting = [m for m in offered if builder.fits(m)] if is_controller else []
        if fitting:
            builder.add_controller(draw, draw(st.sampled_from(fitting)))
        elif builder.add_device(draw, kinds, f"d{placed}") is not None:
            placed += 1
    assume(placed >= min_devices)
    return builder.t


def _builder(draw: st.DrawFn, machine_strategy: st.SearchStrategy[Machine], numa_nodes: int | None) -> _Builder:
    machine = draw(machine_strategy)
    nodes = draw(st.integers(0, 2)) if numa_nodes is None else numa_nodes
    acpi = draw(st.sampled_from([True, False]))
    return _Builder(Topology.default(machine, numa_nodes=nodes, acpi=acpi))


# -- one deliberate break -------------------------------------------------------------------

_PLAIN = "virtio-net-non-transitional"
"""A kind with no IO BAR that may go almost anywhere: the breakers' endpoint."""


def _machines_where(test: Callable[[Machine], bool]) -> list[str]:
    return sorted(name for name, m in shipped_machines().items() if test(m))


def _starts(kind: DeviceKind, machine: Machine | None) -> bool:
    """Whether ``machine``'s QEMU (every shipped machine's, for ``None``) starts ``kind`` (rule qemu-driver)."""
    if machine is not None:
        return machine.starts(kind.name)
    return all(m.starts(kind.name) for m in shipped_machines().values())


def _once(machine: Machine | None) -> frozenset[str]:
    """The kind families ``machine``'s QEMU (some shipped machine's, for ``None``) starts once (rule one-per-guest)."""
    if machine is not None:
        return frozenset(machine.one_per_guest)
    return frozenset(f for m in shipped_machines().values() for f in m.one_per_guest)


def _open_kinds(kinds: list[str], t: Topology, once: frozenset[str]) -> list[str]:
    """``kinds`` but those of a family ``t`` already has a device of that QEMU starts once (rule one-per-guest)."""
    return _outside(kinds, t.catalog, {t.catalog.device(d.kind).family for d in t.devices} & once)


def _outside(kinds: list[str], catalog: Catalog, full: Collection[str]) -> list[str]:
    """``kinds`` but those whose family is in ``full`` (``kinds`` itself when ``full`` is empty)."""
    if not full:
        return kinds
    return [k for k in kinds if catalog.device(k).family not in full]


def _base(
    draw: st.DrawFn, names: list[str], *, numa_nodes: int | None = None, models: tuple[str, ...] | None = None
) -> _Builder:
    machine = draw(st.sampled_from(names))
    topology = draw(
        legal_topologies(
            machine=machine, max_devices=5, max_controllers=4, numa_nodes=numa_nodes, controller_models=models
        )
    )
    return _Builder(topology)


def _free(builder: _Builder, draw: st.DrawFn, *, bus: int | None = None, kind: str = _PLAIN) -> PciAddress:
    positions = [p for p in builder.t.free_positions(kind) if bus is None or p.bus == bus]
    assume(positions)
    return draw(st.sampled_from(positions))


def _offering(*models: str) -> Callable[[Machine], bool]:
    return lambda m: all(m.offers(x) for x in models)


def _pcie_root(m: Machine) -> bool:
    return Connect.PCIE_DEVICE in m.root.accepts


def _root_takes_bridges(m: Machine) -> bool:
    return Connect.PCI_BRIDGE in m.root.accepts and m.offers("pci-bridge")


def _add(builder: _Builder, draw: st.DrawFn, name: str, *, io_budget: bool = True) -> Controller:
    controller = builder.add_controller(draw, name, io_budget=io_budget)
    assume(controller is not None)
    assert controller is not None
    return controller


def _change(builder: _Builder, controller: Controller, **changes: int | None) -> None:
    """Change identity properties of one controller of the builder's topology."""
    builder.t = builder.t.replace(
        controllers=[
            attrs.evolve(c, **changes) if c.index == controller.index else c  # type: ignore[arg-type]
            for c in builder.t.controllers
        ]
    )


Breaker = Callable[[st.DrawFn], Topology]
_BREAKERS: dict[str, Breaker] = {}


def _breaks(rule: str) -> Callable[[Breaker], Breaker]:
    def register(func: Breaker) -> Breaker:
        _BREAKERS[rule] = func
        return func

    return register


@_breaks("unknown-bus")
def _break_unknown_bus(draw: st.DrawFn) -> Topology:
    b = _base(draw, sorted(shipped_machines()))
    index = b.next_index()
    assume(index is not None)
    b.place_device(Device("stray", _PLAIN, address=PciAddress(bus=index or 0, slot=draw(st.integers(0, 31)))))
    return b.t


@_breaks("domain")
def _break_domain(draw: st.DrawFn) -> Topology:
    b = _base(draw, sorted(shipped_machines()))
    at = attrs.evolve(_free(b, draw), domain=draw(st.integers(1, 0xFFFF)))
    b.place_device(Device("stray", _PLAIN, address=at))
    return b.t


@_breaks("slot-range")
def _break_slot_range(draw: st.DrawFn) -> Topology:
    b = _base(draw, sorted(shipped_machines()))
    t = b.t
    kind = t.catalog.device(_PLAIN)
    used = t.slot_usage()
    candidates = [
        PciAddress(bus=c.index, slot=slot)
        for c in t.controllers
        if t.root_of(c.index) is not None
        and not t.model(c).port
        and t.placement_problem(c.index, kind=kind, strict=False) is None
        for slot in range(32)
        if slot not in t.model(c).slot_range() and (0, c.index, slot) not in used
    ]
    if not candidates:  # pseries leaves slot 0 of its root bus free
        b = _base(draw, _machines_where(lambda m: m.builtin_at(PciAddress()) is None))
        candidates = [PciAddress(bus=0, slot=0)]
    b.place_device(Device("stray", _PLAIN, address=draw(st.sampled_from(candidates))))
    return b.t


@_breaks("port-slot")
def _break_port_slot(draw: st.DrawFn) -> Topology:
    b = _base(draw, _machines_where(_offering("pcie-root-port")))
    port = _add(b, draw, "pcie-root-port")
    b.place_device(Device("stray", _PLAIN, address=PciAddress(bus=port.index, slot=draw(st.integers(1, 31)))))
    return b.t


@functools.cache
def _single_function_root(name: str) -> Machine:
    """A shipped machine read with a catalog whose root bus has one function per slot."""
    catalog = Catalog.default()
    root = Machine.named(name).root_model
    models = dict(catalog.controllers)
    models[root] = attrs.evolve(models[root], functions=1)
    return Machine.named(name, catalog=Catalog(controllers=models, devices=catalog.devices))


@_breaks("function-range")
def _break_function_range(draw: st.DrawFn) -> Topology:
    machine = _single_function_root(draw(st.sampled_from(sorted(shipped_machines()))))
    b = _Builder(draw(legal_topologies(machine=machine, max_devices=5, max_controllers=4)))
    at = _free(b, draw, bus=0)
    b.place_device(Device("zero", _PLAIN, address=at, multifunction=True))
    b.place_device(Device("stray", _PLAIN, address=at.with_function(draw(st.integers(1, 7)))))
    return b.t


@_breaks("unique-address")
def _break_unique_address(draw: st.DrawFn) -> Topology:
    b = _base(draw, sorted(shipped_machines()))
    at = _free(b, draw)
    b.place_device(Device("first", _PLAIN, address=at))
    b.place_device(Device("second", _PLAIN, address=at))
    return b.t


@_breaks("placement")
def _break_placement(draw: st.DrawFn) -> Topology:
    b = _base(draw, _machines_where(lambda m: _pcie_root(m) and m.offers("pcie-switch-downstream-port")))
    assume(b.room(0, 1))
    at = _free(b, draw, bus=0)
    index = b.next_index()
    assume(index is not None)
    assert index is not None
    b.place_controller(Controller(index, "pcie-switch-downstream-port", address=at, chassis=index, port=at.slot))
    return b.t


@_breaks("integrated")
def _break_integrated(draw: st.DrawFn) -> Topology:
    # a kind that must be integrated (on bus 0) placed elsewhere; a kind that may not be integrated is
    # accepted on a PCIe root bus at an explicit address (libvirt and QEMU take it), so it breaks nothing
    # (virtio-iommu: where the machine starts it, and none there yet: QEMU starts one, rule one-per-guest)
    b = _base(draw, _machines_where(lambda m: _pcie_root(m) and m.starts("virtio-iommu")))
    assume(all(d.kind != "virtio-iommu" for d in b.t.devices))
    positions = [p for p in b.t.free_positions(_PLAIN) if p.bus != 0]
    assume(positions)
    b.place_device(Device("stray", "virtio-iommu", address=draw(st.sampled_from(positions))))
    return b.t


@_breaks("machine-model")
def _break_machine_model(draw: st.DrawFn) -> Topology:
    b = _base(draw, sorted(shipped_machines()))
    catalog = b.t.catalog
    missing = [m for m, model in catalog.controllers.items() if not model.root and not b.machine.offers(m)]
    index = b.next_index()
    assume(missing and index is not None)
    name = draw(st.sampled_from(missing))
    bus_nr = None
    if catalog.controller(name).expander:  # a bus number that breaks nothing else (expander-bus-nr)
        choices = b.bus_nr_choices(catalog.controller(name).bus_numbers)
        assume(choices)
        low, high = draw(st.sampled_from(choices))
        bus_nr = draw(st.integers(low, high))
    b.place_controller(Controller(index or 1, name, bus_nr=bus_nr))
    return b.t


@_breaks("function-zero")
def _break_function_zero(draw: st.DrawFn) -> Topology:
    b = _base(draw, sorted(shipped_machines()))
    at = _free(b, draw).with_function(draw(st.integers(1, 7)))
    b.place_device(Device("stray", _PLAIN, address=at))
    return b.t


@_breaks("multifunction")
def _break_multifunction(draw: st.DrawFn) -> Topology:
    b = _base(draw, sorted(shipped_machines()))
    at = _free(b, draw)
    b.place_device(Device("zero", _PLAIN, address=at, multifunction=draw(st.sampled_from([None, False]))))
    b.place_device(Device("stray", _PLAIN, address=at.with_function(draw(st.integers(1, 7)))))
    return b.t


@_breaks("controller-cycle")
def _break_controller_cycle(draw: st.DrawFn) -> Topology:
    up_model, down_model = "pcie-switch-upstream-port", "pcie-switch-downstream-port"
    b = _base(draw, _machines_where(_offering(up_model, down_model)))
    up = b.next_index()
    assume(up is not None and up < 255)
    assert up is not None
    slot = draw(st.integers(0, 31))
    # libvirt 9.0 wrote exactly this: the upstream port on one of its own downstream ports
    b.place_controller(Controller(up, up_model, address=PciAddress(bus=up + 1)))
    b.place_controller(Controller(up + 1, down_model, address=PciAddress(bus=up, slot=slot), chassis=up + 1, port=slot))
    return b.t


@_breaks("unique-chassis-port")
def _break_unique_chassis(draw: st.DrawFn) -> Topology:
    b = _base(draw, _machines_where(_offering("pcie-root-port")))
    taken = {c.chassis for c in b.t.controllers}
    chassis = draw(st.integers(0, 255).filter(lambda x: x not in taken))
    for _ in range(2):
        port = _add(b, draw, "pcie-root-port")
        _change(b, port, chassis=chassis)
    return b.t


@_breaks("chassis-nr")
def _break_chassis_nr(draw: st.DrawFn) -> Topology:
    b = _base(draw, _machines_where(_root_takes_bridges))
    bridge = _add(b, draw, "pci-bridge")
    _change(b, bridge, chassis_nr=0)
    return b.t


@_breaks("phb-index")
def _break_phb_index(draw: st.DrawFn) -> Topology:
    def has_phbs(m: Machine) -> bool:
        return any("target-index" in m.catalog.controller(x).identity for x in m.controllers)

    b = _base(draw, _machines_where(has_phbs))
    phb = next(x for x in b.machine.controllers if "target-index" in b.t.catalog.controller(x).identity)
    bridge = _add(b, draw, phb)
    targets = [c.target_index for c in b.t.controllers if c.target_index is not None and c is not bridge]
    bad = draw(st.sampled_from([0, *targets]) | st.integers(b.machine.max_host_bridges, 255))
    _change(b, bridge, target_index=bad)
    return b.t


@_breaks("index-order")
def _break_index_order(draw: st.DrawFn) -> Topology:
    b = _base(draw, _machines_where(_root_takes_bridges))
    low = b.next_index()
    assume(low is not None and low < 255 and b.room(0, 2))
    assert low is not None
    at = _free(b, draw, bus=0, kind="pci-bridge")
    b.place_controller(Controller(low + 1, "pci-bridge", address=at, chassis_nr=low + 1))
    slot = draw(st.integers(1, 31))
    b.place_controller(Controller(low, "pci-bridge", address=PciAddress(bus=low + 1, slot=slot), chassis_nr=low))
    return b.t


@_breaks("expander-bus-nr")
def _break_expander_bus_nr(draw: st.DrawFn) -> Topology:
    def has_expander(m: Machine) -> bool:
        return any(m.catalog.controller(x).expander for x in m.controllers)

    b = _base(draw, _machines_where(has_expander))
    model = next(x for x in b.machine.controllers if b.t.catalog.controller(x).expander)
    taken = [c.bus_nr for c in b.t.controllers if c.bus_nr is not None]
    bad = draw(st.sampled_from([0, 255, *taken]))
    index = b.next_index()
    need = b.t.catalog.controller(model).bus_numbers
    assume(index is not None and b.t.bus_numbers_left() >= need)
    at = _free(b, draw, bus=0, kind=model)
    b.place_controller(Controller(index or 1, model, address=at, bus_nr=bad))
    return b.t


@_breaks("bus-numbers")
def _break_bus_numbers(draw: st.DrawFn) -> Topology:
    names = _machines_where(lambda m: m.bus_numbers <= 64 and m.offers("pcie-root-port"))
    machine = Machine.named(draw(st.sampled_from(names)))
    models = tuple(m for m in machine.controllers if not machine.catalog.controller(m).expander)
    b = _base(draw, [machine.name], models=models)
    while b.t.bus_numbers_used() <= machine.bus_numbers:
        index = b.next_index()
        positions = [p for p in b.t.free_positions("pcie-root-port") if p.bus == 0]
        assume(index is not None and positions)
        assert index is not None
        at = draw(st.sampled_from(positions))
        b.place_controller(Controller(index, "pcie-root-port", address=at, chassis=index, port=at.devfn))
    return b.t


@_breaks("numa-node")
def _break_numa_node(draw: st.DrawFn) -> Topology:
    def numa_models(m: Machine) -> list[str]:
        return [x for x in m.controllers if "numa-node" in m.catalog.controller(x).identity]

    b = _base(draw, _machines_where(lambda m: bool(numa_models(m))))
    added = _add(b, draw, draw(st.sampled_from(numa_models(b.machine))))
    node = b.t.numa_nodes + draw(st.integers(0, 3))
    _change(b, added, numa_node=node)
    return b.t


@_breaks("firmware-acpi")
def _break_firmware_acpi(draw: st.DrawFn) -> Topology:
    # OVMF on pc without ACPI (measured: it maps no BAR); endpoints on pci.0 only, so no IO window is at stake
    b = _Builder(Topology.default("pc", acpi=False, firmware="ovmf"))
    for i in range(draw(st.integers(0, 3))):
        b.place_device(Device(f"d{i}", _PLAIN, address=_free(b, draw, bus=0)))
    return b.t


@_breaks("firmware-crash")
def _break_firmware_crash(draw: st.DrawFn) -> Topology:
    # OVMF on pc: a pci-bridge on pci.0 holding an lsilogic beside a second, empty pci-bridge (QEMU 7.2 crashes in
    # OVMF's PCI setup); two IO windows, within pc's three
    b = _Builder(Topology.default("pc", firmware="ovmf"))
    b.place_controller(Controller(1, "pci-bridge", address=_free(b, draw, bus=0), chassis_nr=1))
    b.place_controller(Controller(2, "pci-bridge", address=_free(b, draw, bus=1), chassis_nr=2))
    b.place_device(Device("scsi0", "lsilogic", address=_free(b, draw, bus=1)))
    return b.t


_SMALL_MMIO = 1 << 20
"""The most memory-BAR bytes of an endpoint :func:`_break_io_space` adds (rtl8139, e1000 and lsilogic are under it)."""


@_breaks("io-space")
def _break_io_space(draw: st.DrawFn) -> Topology:
    b = _base(draw, _machines_where(lambda m: m.io_window_budget() is not None))
    budget = b.t.io_window_budget()
    assert budget is not None
    # endpoints with small memory BARs only: a dozen qxl (128 MiB each) behind the new bridges would fill the 32-bit
    # MMIO hole as well, and break mmio-space beside io-space
    io_kinds = [
        k.name
        for k in b.t.catalog.devices.values()
        if k.has_io_bar(behind_pcie_port=True)
        and k.usb != "companion"
        and _starts(k, b.machine)
        and k.family not in b.machine.one_per_guest  # a dozen of one kind: no balloon (rule one-per-guest)
        and sum(bar.size for bar in k.bars) <= _SMALL_MMIO
    ]
    bridges = [
        m for m in b.machine.controllers if not (b.t.catalog.controller(m).expander or b.t.catalog.controller(m).root)
    ]
    count = 0
    while b.io_windows() <= budget:
        bridge = _add(b, draw, draw(st.sampled_from(bridges)), io_budget=False)
        fits = [k for k in io_kinds if any(p.bus == bridge.index for p in b.t.free_positions(k))]
        if not fits:
            continue
        kind = draw(st.sampled_from(fits))
        at = _free(b, draw, bus=bridge.index, kind=kind)
        b.place_device(Device(f"io{count}", kind, address=at))
        count += 1
    return b.t


@_breaks("mmio-space")
def _break_mmio_space(draw: st.DrawFn) -> Topology:
    # measured: 15 VGAs of 64 MiB fit SeaBIOS's 32-bit hole, 14 OVMF's (pc and q35, RAM above 2 GiB); 16 fit neither
    machine = draw(st.sampled_from(["q35", "pc"]))
    b = _Builder(Topology.default(machine, firmware=draw(st.sampled_from(["seabios", "ovmf"]))))
    for i in range(16 + draw(st.integers(0, 3))):
        b.place_device(Device(f"vga{i}", "vga", address=_free(b, draw, bus=0, kind="vga"), memory=64 << 20))
    return b.t


@_breaks("hotplug")
def _break_hotplug(draw: st.DrawFn) -> Topology:
    b = _base(draw, sorted(shipped_machines()))
    at = _free(b, draw)
    hot = b.t.is_hotpluggable(at.bus, at.slot)
    need = HotplugNeed.FORBIDDEN if hot else HotplugNeed.REQUIRED
    b.place_device(Device("stray", _PLAIN, address=at, needs=Needs(hotplug=need)))
    return b.t


@_breaks("numa")
def _break_numa(draw: st.DrawFn) -> Topology:
    b = _base(draw, sorted(shipped_machines()), numa_nodes=2)
    at = _free(b, draw)
    node = 1 if b.t.numa_node_of_bus(at.bus) == 0 else 0
    b.place_device(Device("stray", _PLAIN, address=at, needs=Needs(numa_node=node, numa_strict=True)))
    return b.t


@_breaks("root-address")
def _break_root_address(draw: st.DrawFn) -> Topology:
    b = _base(draw, sorted(shipped_machines()))
    at = _free(b, draw, bus=0)
    root = b.t.controller(0)
    b.t = b.t.replace(controllers=[attrs.evolve(root, address=at), *b.t.controllers[1:]])
    return b.t


@_breaks("usb-master")
def _break_usb_master(draw: st.DrawFn) -> Topology:
    b = _base(draw, sorted(shipped_machines()))
    assume(all(b.t.kind(d).usb != "host" for d in b.t.devices))
    at = _free(b, draw, kind="ich9-uhci1")
    b.place_device(Device("usb-companion", "ich9-uhci1", address=at))
    return b.t


@_breaks("controller-options")
def _break_controller_options(draw: st.DrawFn) -> Topology:
    b = _base(draw, sorted(shipped_machines()))
    root = b.t.controller(0)
    b.t = b.t.replace(controllers=[attrs.evolve(root, qemu_model="no-such-device"), *b.t.controllers[1:]])
    return b.t


@_breaks("slot-group")
def _break_slot_group(draw: st.DrawFn) -> Topology:
    b = _base(draw, sorted(shipped_machines()))
    first = _free(b, draw)
    b.place_device(Device("gpu", _PLAIN, address=first, needs=Needs(slot_group="g")))
    at = _free(b, draw)
    assume((at.bus, at.slot) != (first.bus, first.slot))
    b.place_device(Device("gpu-audio", _PLAIN, address=at, needs=Needs(slot_group="g")))
    return b.t


@_breaks("bus-group")
def _break_bus_group(draw: st.DrawFn) -> Topology:
    b = _base(draw, sorted(shipped_machines()))
    first = _free(b, draw)
    b.place_device(Device("g1", _PLAIN, address=first, needs=Needs(bus_group="g")))
    at = _free(b, draw)
    assume(at.bus != first.bus)
    b.place_device(Device("g2", _PLAIN, address=at, needs=Needs(bus_group="g")))
    return b.t


@_breaks("switch-group")
def _break_switch_group(draw: st.DrawFn) -> Topology:
    b = _base(draw, sorted(shipped_machines()))
    at = _free(b, draw)
    t = b.t
    assume(not any(Connect.PCIE_SWITCH_DOWNSTREAM_PORT in t.model(c).accepts for c in t.path_to_root(at.bus)))
    b.place_device(Device("lonely", _PLAIN, address=at, needs=Needs(switch_group="s")))
    return b.t


@_breaks("qemu-driver")
def _break_qemu_driver(draw: st.DrawFn) -> Topology:
    b = _base(draw, sorted(shipped_machines()))
    missing = sorted(k.name for k in b.t.catalog.devices.values() if not _starts(k, b.machine) and k.usb is None)
    assume(missing)
    assume(b.add_device(draw, missing, "missing") is not None)
    return b.t


@_breaks("one-per-guest")
def _break_one_per_guest(draw: st.DrawFn) -> Topology:
    b = _base(draw, _machines_where(lambda m: bool(m.one_per_guest)))
    family = draw(st.sampled_from(sorted(b.machine.one_per_guest)))
    kinds = [k.name for k in b.t.catalog.devices.values() if k.family == family and _starts(k, b.machine)]
    assume(kinds)
    have = sum(b.t.kind(d).family == family for d in b.t.devices)
    for i in range(2 - have):
        device = Device(f"once{i}", draw(st.sampled_from(kinds)))
        positions = [p for p in b.t.free_positions(device) if b.io_fits(device, p.bus)]
        assume(positions)
        b.place_device(device.placed_at(_position(draw, positions)))
    return b.t


assert set(_BREAKERS) == set(RULES), sorted(set(RULES) ^ set(_BREAKERS))


def illegal_topologies(*, rule: str | None = None) -> st.SearchStrategy[tuple[Topology, str]]:
    """``(topology, rule)``: a legal topology with one deliberate break of ``rule`` (any rule if ``None``).

    The break is made so that ``rule`` is the only rule broken. For
    ``function-range``, which no shipped catalog can break, the machine is
    read with a catalog whose root bus has one function per slot.

    >>> from hypothesis import given, settings
    >>> from pcitopo.legality.rules import validate
    >>> @settings(max_examples=10, deadline=None)
    ... @given(illegal_topologies(rule="controller-cycle"))
    ... def test_only_that_rule(case):
    ...     t, rule = case
    ...     assert {v.rule for v in validate(t)} == {rule} == {"controller-cycle"}
    >>> test_only_that_rule()
    """
    if rule is not None and rule not in RULES:
        raise InvalidArgument(f"rule={rule!r} is not a rule id; known: {', '.join(sorted(RULES))}")
    chosen = [rule] if rule is not None else sorted(RULES)
    return st.sampled_from(chosen).flatmap(_breaking)


def _breaking(rule: str) -> st.SearchStrategy[tuple[Topology, str]]:
    return st.composite(_BREAKERS[rule])().map(lambda t: (t, rule))


# -- requests, policies and plans for the solver ---------------------------------------------

_REQUEST_MACHINES = ("q35", "pc", "aarch64-virt", "pseries", "riscv64-virt")


def device_requests(
    *,
    machine: Machine | str | None = None,
    min_devices: int = 0,
    max_devices: int = 20,
    numa_nodes: int = 0,
    taken: Collection[str] = (),
    kinds: Collection[str] | None = None,
    beside: Topology | None = None,
) -> st.SearchStrategy[list[Device]]:
    """Unaddressed devices for the solver: kinds valid on ``machine``, drawn hotplug and NUMA needs.

    Ids are unique and avoid ``taken`` (and the ids of ``beside``'s devices). NUMA nodes (strict or preferred) are
    drawn only below ``numa_nodes``. Of a kind family the machine's QEMU starts once a guest (every shipped
    machine's, without a machine; rule ``one-per-guest``) one device at most is drawn, none when ``beside``, the
    topology the devices are for, has one. Shrinks toward fewer devices with no needs.

    >>> from hypothesis import given, settings
    >>> @settings(max_examples=5, deadline=None)
    ... @given(device_requests(machine="q35", min_devices=2, max_devices=2))
    ... def test_two(devices):
    ...     assert len({d.id for d in devices}) == 2 and all(d.address is None for d in devices)
    >>> test_two()
    >>> device_requests(min_devices=3, max_devices=1)
    Traceback (most recent call last):
      ...
    hypothesis.errors.InvalidArgument: Cannot have max_devices=1 < min_devices=3
    """
    _check_int("min_devices", min_devices, 0, 2000)
    _check_int("max_devices", max_devices, 0, 2000)
    _check_order("devices", min_devices, max_devices)
    _check_int("numa_nodes", numa_nodes, 0, 64)
    resolved = _machine(machine)
    catalog = resolved.catalog if resolved is not None else Catalog.default()
    if kinds is not None:
        unknown = sorted(set(kinds) - set(catalog.devices))
        if unknown:
            raise InvalidArgument(f"kinds contains unknown device kind {unknown[0]!r}")
        names = sorted(kinds)
    else:
        # kinds a user would ask pcitopo to place (the chipset's own functions are built in)
        # (and no ICH9 UHCI companion: alone it has no master USB controller, rule usb-master)
        # (nor a kind the machine's QEMU has no driver for: rule qemu-driver)
        names = sorted(
            k
            for k, v in catalog.devices.items()
            if k not in ("piix3-ide",) and v.usb != "companion" and _starts(v, resolved)
        )
    if not names and max_devices:
        raise InvalidArgument("kinds is empty, so no device can be generated")
    taken_ids = frozenset(taken) | (frozenset(d.id for d in beside.devices) if beside is not None else frozenset())
    once = _once(resolved)
    present = (
        frozenset(catalog.device(d.kind).family for d in beside.devices) & once if beside is not None else frozenset()
    )
    nodes = st.none() if numa_nodes == 0 else st.one_of(st.none(), st.integers(0, numa_nodes - 1))
    needs = st.builds(
        Needs,
        hotplug=st.sampled_from([HotplugNeed.ANY, HotplugNeed.PREFERRED, HotplugNeed.REQUIRED]),
        numa_node=nodes,
        numa_strict=st.booleans(),
    )

    @st.composite
    def build(draw: st.DrawFn) -> list[Device]:
        n = draw(st.integers(min_devices, max_devices))
        out = []
        serial = 0
        full = set(present)
        for _ in range(n):
            while f"r{serial}" in taken_ids:
                serial += 1
            open_names = _outside(names, catalog, full)
            if not open_names:
                break
            kind = draw(st.sampled_from(open_names))
            if catalog.device(kind).family in once:
                full.add(catalog.device(kind).family)
            out.append(Device(f"r{serial}", kind, needs=draw(needs)))
            serial += 1
        return out

    return build()


def requests(
    *,
    machine: Machine | str | None = None,
    min_devices: int = 1,
    max_devices: int = 16,
    max_numa_nodes: int = 2,
) -> st.SearchStrategy[Topology]:
    """A topology to solve: a machine's default topology (with 0..``max_numa_nodes`` guest NUMA nodes)
    plus unaddressed devices from :func:`device_requests`.

    >>> from hypothesis import given, settings
    >>> @settings(max_examples=5, deadline=None)
    ... @given(requests(machine="pc", max_devices=3))
    ... def test_unaddressed(t):
    ...     assert t.machine.name == "pc" and all(d.address is None for d in t.devices)
    >>> test_unaddressed()
    """
    resolved = _machine(machine)
    _check_int("min_devices", min_devices, 0, 2000)
    _check_int("max_devices", max_devices, 0, 2000)
    _check_order("devices", min_devices, max_devices)
    _check_int("max_numa_nodes", max_numa_nodes, 0, 64)
    machine_st = st.just(resolved) if resolved is not None else machines(names=_REQUEST_MACHINES)

    @st.composite
    def build(draw: st.DrawFn) -> Topology:
        m = draw(machine_st)
        nodes = draw(st.integers(0, max_numa_nodes))
        devices = draw(device_requests(machine=m, min_devices=min_devices, max_devices=max_devices, numa_nodes=nodes))
        return Topology.build(m, devices=devices, numa_nodes=nodes)

    return build()


def policies(
    *,
    names: Iterable[str] | None = None,
    composed: bool = True,
    max_spare_ports: int = 3,
    weights: bool = False,
    min_weight: Mapping[str, int] | None = None,
) -> st.SearchStrategy[Policy]:
    """Built-in policies (those ``names``), alone or composed with ``+``, with drawn spare-port counts.

    ``weights=True`` draws every soft constraint's weight too (integers 0..120,
    at least ``min_weight[name]`` where given).

    >>> policies(names=["fastest"])
    Traceback (most recent call last):
      ...
    hypothesis.errors.InvalidArgument: names contains 'fastest', which is not a built-in policy; known: ...
    """
    from pcitopo.policy import BUILTIN_POLICIES

    chosen = sorted(BUILTIN_POLICIES) if names is None else list(names)
    for name in chosen:
        if name not in BUILTIN_POLICIES:
            known = ", ".join(sorted(BUILTIN_POLICIES))
            raise InvalidArgument(f"names contains {name!r}, which is not a built-in policy; known: {known}")
    if not chosen:
        raise InvalidArgument("names is empty, so no policy can be generated")
    base = st.sampled_from(chosen)
    # libvirt's policy reproduces libvirt and composes with nothing
    others = [n for n in chosen if n != "libvirt"]
    combo = base
    if composed and others:
        combo = st.one_of(base, st.lists(st.sampled_from(others), min_size=2, max_size=2, unique=True).map("+".join))
    _check_int("max_spare_ports", max_spare_ports, 0, 64)
    from pcitopo.policy.policy import SOFT_CONSTRAINTS

    floors = dict(min_weight or {})
    unknown = sorted(set(floors) - set(SOFT_CONSTRAINTS))
    if unknown:
        raise InvalidArgument(f"min_weight names {unknown[0]!r}, which is not a soft constraint")
    drawn_weights: st.SearchStrategy[dict[str, int] | None] = (
        st.fixed_dictionaries({name: st.integers(floors.get(name, 0), 120) for name in SOFT_CONSTRAINTS})
        if weights
        else st.none()
    )

    def build(name: str, spare: int, off: bool, chosen_weights: dict[str, int] | None) -> Policy:
        policy = Policy.named(name)
        if "libvirt" not in name:
            policy = attrs.evolve(policy, spare_ports=spare, hotplug_off_occupied=off)
        if chosen_weights is not None:
            policy = attrs.evolve(policy, weights=chosen_weights)
        return policy

    return st.builds(build, combo, st.integers(0, max_spare_ports), st.booleans(), drawn_weights)


def plans(
    *, machine: Machine | str | None = None, max_devices: int = 16, policy: Policy | str | None = None
) -> st.SearchStrategy[Plan]:
    """Plans of generated requests (requests no plan satisfies are skipped).

    >>> from hypothesis import given, settings
    >>> from pcitopo.legality.rules import validate
    >>> @settings(max_examples=5, deadline=None)
    ... @given(plans(machine="q35", max_devices=4))
    ... def test_valid(plan):
    ...     assert validate(plan.topology) == ()
    >>> test_valid()
    """
    from pcitopo.errors import Unsatisfiable
    from pcitopo.solver import solve

    policy_st: st.SearchStrategy[Policy | str | None] = st.just(policy) if policy is not None else policies()

    @st.composite
    def build(draw: st.DrawFn) -> Plan:
        request = draw(requests(machine=machine, max_devices=max_devices))
        chosen = draw(policy_st)
        try:
            return solve(request, chosen)
        except Unsatisfiable:
            assume(False)
            raise AssertionError("unreachable") from None

    return build()
