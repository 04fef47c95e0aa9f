"""The topology graph: buses, the controllers that provide them, and what sits on them.

A :class:`Topology` is a frozen value: a machine, its controllers and its
devices. Its :attr:`~Topology.graph` is a networkx ``DiGraph`` (frozen) whose
nodes are ``("bus", index)``, ``("controller", index)``, ``("device", id)`` and
``("builtin", name)``; a controller has an edge to the bus it provides, and a
bus has an edge, carrying the ``address``, to everything plugged into it.

Building or querying a topology never changes anything a caller holds: every
change returns a new topology.

>>> from pcitopo.address import PciAddress
>>> t = Topology.default("q35")
>>> [str(p) for p in t.free_positions("pcie-root-port")][:3]
['0000:00:01.0', '0000:00:02.0', '0000:00:03.0']
>>> t = t.with_controllers(Controller(1, "pcie-root-port", address=PciAddress.parse("00:01.0"), chassis=1, port=8))
>>> t = t.with_devices(Device("net0", "virtio-net", address=PciAddress.parse("01:00.0")))
>>> [str(c) for c in t.path_to_root("net0")]
["'pci.1' (pcie-root-port, index 1)", "'pcie.0' (pcie-root, index 0)"]
>>> t.is_hotpluggable(1, 0), t.is_hotpluggable(0, 2)
(True, False)
>>> t.bus_numbers_used(), t.bus_numbers_left()
(2, 254)
"""

from __future__ import annotations

import functools
import operator
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, Literal

import attrs

from pcitopo.address import PciAddress
from pcitopo.devices import Bar, Controller, Device, HotplugNeed, Needs
from pcitopo.errors import DuplicateId, InvalidInput, UnknownName
from pcitopo.legality.catalog import Catalog, Connect, ControllerModel, DeviceKind, Hotplug, Integrated
from pcitopo.legality.firmware import Firmware, FirmwareMachine
from pcitopo.legality.machine import Builtin, Machine

if TYPE_CHECKING:
    import networkx as nx

__all__ = ["IO_WINDOW", "Bus", "Mmio", "Node", "Topology"]

IO_WINDOW = 4096
"""Bytes in one bridge IO window (the PCI-to-PCI bridge granularity)."""


def __dir__() -> list[str]:
    return __all__


Node = tuple[Literal["bus", "controller", "device", "builtin"], int | str]
"""A node of the topology graph."""


@attrs.frozen
class Bus:
    """A bus, as provided by a controller."""

    index: int
    controller: Controller
    model: ControllerModel
    name: str
    """The name QEMU gives the bus (``pcie.0``, ``pci.3``, an alias)."""

    def __str__(self) -> str:
        return f"bus {self.index} ({self.model.name} {self.name!r})"


def _as_machine(machine: Machine | str) -> Machine:
    return Machine.named(machine) if isinstance(machine, str) else machine


_NEEDS_FREE = (
    "_by_index",
    "_models",
    "_children",
    "_models_by_name",
    "_kinds_by_name",
    "_builtins",
    "_cycles",
    "_in_cycle",
    "_roots",
    "_numa_tops",
    "_bus_numbers_by_root",
    "_io_bytes",
    "firmware_model",
    "_firmware_machine",
    "_bridges",
    "_io_sizes",
    "_io_sizes_needed",
    "_io_windows_reserved",
    "_expanders_own_io",
    "_io_windows_needed",
    "_io_windows_short",
    "_root_io_bytes",
    "mmio",
    "mmio_with_unplaced",
)
"""The cached values of a :class:`Topology` that its devices' needs do not enter (:meth:`Topology.with_needs` keeps
them): worked out from controllers, addresses, kinds, BARs and the firmware. Not the device lookup (it holds the
devices), the placement caches (they answer for needs) or the graph."""


@attrs.frozen(cache_hash=True, repr=False)
class Topology:
    """A machine with its controllers and devices. Construct with :meth:`build` or :meth:`default`."""

    machine: Machine
    controllers: tuple[Controller, ...]
    devices: tuple[Device, ...] = ()
    numa_nodes: int = 0
    """How many guest NUMA nodes the VM declares."""
    acpi: bool = True
    """Whether the guest has ACPI (it changes the x86 IO-port budget)."""
    firmware: str | None = None
    """The guest firmware that boots it (``seabios``, ``ovmf``); ``None``: the machine's default."""
    mmio64: int | None = None
    """Bytes of 64-bit MMIO window the domain asks its firmware for (OVMF's ``opt/ovmf/X-PciMmio64Mb``
    fw_cfg entry, libvirt's ``<pcihole64>``); ``None``: the firmware's default."""
    phys_bits: int | None = 40
    """The guest CPU's physical address bits: QEMU's default x86 CPU has 40; ``None``: the host's
    (``<cpu mode='host-passthrough'>``), which pcitopo does not know, so the 64-bit ceiling is not checked."""

    def __repr__(self) -> str:
        placed = sum(1 for d in self.devices if d.address is not None)
        numa = f", {self.numa_nodes} NUMA nodes" if self.numa_nodes else ""
        return (
            f"<Topology {self.machine.name}: {len(self.controllers)} controllers, "
            f"{len(self.devices)} devices ({placed} placed){numa}>"
        )

    # -- construction ---------------------------------------------------------------

    @classmethod
    def default(
        cls,
        machine: Machine | str,
        *,
        numa_nodes: int = 0,
        acpi: bool = True,
        firmware: str | None = None,
        mmio64: int | None = None,
        phys_bits: int | None = 40,
    ) -> Topology:
        """The machine as QEMU creates it: the root bus and the built-in devices."""
        return cls.build(
            machine, numa_nodes=numa_nodes, acpi=acpi, firmware=firmware, mmio64=mmio64, phys_bits=phys_bits
        )

    @classmethod
    def build(
        cls,
        machine: Machine | str,
        controllers: Iterable[Controller] = (),
        devices: Iterable[Device] = (),
        *,
        numa_nodes: int = 0,
        acpi: bool = True,
        firmware: str | None = None,
        mmio64: int | None = None,
        phys_bits: int | None = 40,
    ) -> Topology:
        """A topology from controllers and devices (with or without addresses).

        The root controller (index 0) is added when missing. Unknown models or
        kinds and duplicate indexes or ids raise a :class:`~pcitopo.errors.PcitopoError`
        naming every one of them; legality is :func:`pcitopo.validate`'s job.
        """
        machine = _as_machine(machine)
        ctrls = sorted(controllers, key=lambda c: c.index)
        if not any(c.index == 0 for c in ctrls):
            ctrls.insert(0, Controller(0, machine.root_model))
        topology = cls(
            machine,
            tuple(ctrls),
            tuple(devices),
            numa_nodes=numa_nodes,
            acpi=acpi,
            firmware=firmware,
            mmio64=mmio64,
            phys_bits=phys_bits,
        )
        topology._check_names()
        if firmware is not None:
            machine.firmware(firmware)  # an unknown firmware, or one that does not boot this machine, raises
        return topology

    def _check_names(self) -> None:
        catalog = self.machine.catalog
        if self._names_fine(catalog.controllers, catalog.devices):
            return
        problems: list[str] = []
        seen_index: set[int] = set()
        # who holds each name: a controller's index or a device's id, put in words only for a duplicate
        names: dict[str, int | str] = {}

        def holder(who: int | str) -> str:
            return f"controller index {who}" if isinstance(who, int) else f"device {who!r}"

        duplicates: list[DuplicateId] = []
        models, kinds = catalog.controllers, catalog.devices
        for c in self.controllers:
            if c.model not in models:
                problems.append(
                    str(
                        UnknownName(
                            "controller model", c.model, catalog.controllers, where=f"controller index {c.index}"
                        )
                    )
                )
            if c.index in seen_index:
                problems.append(f"controller index {c.index} is used twice")
            seen_index.add(c.index)
            name = c.name
            if name in names:
                duplicates.append(DuplicateId(name, holder(names[name]), holder(c.index)))
                problems.append(str(duplicates[-1]))
            names[name] = c.index
        for d in self.devices:
            if d.kind not in kinds:
                problems.append(str(UnknownName("device kind", d.kind, catalog.devices, where=f"device {d.id!r}")))
            if d.id in names:
                duplicates.append(DuplicateId(d.id, holder(names[d.id]), holder(d.id)))
                problems.append(str(duplicates[-1]))
            names[d.id] = d.id
        if self.numa_nodes < 0:
            problems.append(f"numa_nodes must be >= 0 (got {self.numa_nodes})")
        if problems:
            if len(problems) == 1 and duplicates:
                raise duplicates[0]
            if len(problems) == 1 and problems[0].startswith("unknown "):
                bad = next(
                    (
                        UnknownName(
                            "controller model", c.model, catalog.controllers, where=f"controller index {c.index}"
                        )
                        for c in self.controllers
                        if c.model not in catalog.controllers
                    ),
                    None,
                ) or next(
                    UnknownName("device kind", d.kind, catalog.devices, where=f"device {d.id!r}")
                    for d in self.devices
                    if d.kind not in catalog.devices
                )
                raise bad
            raise InvalidInput("topology", "; ".join(problems))

    def _names_fine(self, models: Mapping[str, object], kinds: Mapping[str, object]) -> bool:
        """Whether :meth:`_check_names` finds nothing: every model and kind known, every index and name once, and
        ``numa_nodes`` not negative. Comprehensions and set sizes, where its loop goes item by item to word each
        problem: a topology is built for every plan realised (a thousand devices), and problems are rare."""
        controllers, devices = self.controllers, self.devices
        names = [c.name for c in controllers]
        names += [d.id for d in devices]
        return (
            self.numa_nodes >= 0
            and len(set(names)) == len(names)
            and len({c.index for c in controllers}) == len(controllers)
            and models.keys() >= {c.model for c in controllers}
            and kinds.keys() >= {d.kind for d in devices}
        )

    def replace(
        self,
        *,
        controllers: Iterable[Controller] | None = None,
        devices: Iterable[Device] | None = None,
        mmio64: int | Literal["keep"] | None = "keep",
    ) -> Topology:
        """A new topology with these controllers and/or devices (and 64-bit window) instead."""
        return Topology.build(
            self.machine,
            self.controllers if controllers is None else controllers,
            self.devices if devices is None else devices,
            numa_nodes=self.numa_nodes,
            acpi=self.acpi,
            firmware=self.firmware,
            mmio64=self.mmio64 if mmio64 == "keep" else mmio64,
            phys_bits=self.phys_bits,
        )

    def with_needs(self, needs: Mapping[str, Needs]) -> Topology:
        """A new topology with the devices named in ``needs`` asking those needs instead; nothing else changes.

        What a topology works out from its controllers, addresses and BARs (its
        MMIO and IO windows, bus numbers, cycles) does not depend on a device's
        needs, so what this one has worked out already is kept rather than
        worked out again (the solver checks its plan with the policy's needs
        applied: the same buses a second time).

        >>> t = Topology.build("q35", devices=[Device("n", "virtio-net", PciAddress.parse("00:02.0"))])
        >>> t.mmio == t.with_needs({"n": Needs(hotplug="preferred")}).mmio
        True
        >>> t.with_needs({"n": Needs(hotplug="preferred")}).device("n").needs.hotplug.value
        'preferred'
        """
        devices = tuple(d.with_needs(needs[d.id]) if d.id in needs else d for d in self.devices)
        new = attrs.evolve(self, devices=devices)
        for name in _NEEDS_FREE:
            try:
                value = object.__getattribute__(self, name)
            except AttributeError:  # not worked out here either
                continue
            object.__setattr__(new, name, value)
        return new

    def with_controllers(self, *controllers: Controller) -> Topology:
        """A new topology with these controllers added."""
        return self.replace(controllers=(*self.controllers, *controllers))

    def with_devices(self, *devices: Device) -> Topology:
        """A new topology with these devices added."""
        return self.replace(devices=(*self.devices, *devices))

    def without(self, *ids: str) -> Topology:
        """A new topology without the devices or controllers named (by id or ``pci.N``).

        Nothing else moves or is renumbered.
        """
        gone = set(ids)
        unknown = gone - {d.id for d in self.devices} - {c.name for c in self.controllers}
        if unknown:
            known = [d.id for d in self.devices] + [c.name for c in self.controllers]
            raise UnknownName("device or controller", sorted(unknown)[0], known)
        return self.replace(
            controllers=[c for c in self.controllers if c.name not in gone],
            devices=[d for d in self.devices if d.id not in gone],
        )

    # -- lookups ----------------------------------------------------------------------

    @functools.cached_property
    def _by_index(self) -> Mapping[int, Controller]:
        return {c.index: c for c in self.controllers}

    @functools.cached_property
    def _by_id(self) -> Mapping[str, Device]:
        return {d.id: d for d in self.devices}

    @property
    def catalog(self) -> Catalog:
        """The catalog the machine description was read with."""
        return self.machine.catalog

    def controller(self, index: int) -> Controller:
        """The controller with this index; :class:`UnknownName` if none."""
        try:
            return self._by_index[index]
        except KeyError:
            raise UnknownName("controller index", str(index), [str(i) for i in self._by_index]) from None

    def has_bus(self, index: int) -> bool:
        return index in self._by_index

    def device(self, id: str) -> Device:
        """The device with this id; :class:`UnknownName` if none."""
        try:
            return self._by_id[id]
        except KeyError:
            raise UnknownName("device", id, self._by_id) from None

    @functools.cached_property
    def _models(self) -> Mapping[int, ControllerModel]:
        catalog = self.machine.catalog
        return {c.index: catalog.controller(c.model) for c in self.controllers}

    @functools.cached_property
    def _children(self) -> Mapping[int, tuple[int, ...]]:
        children: dict[int, list[int]] = {}
        for c in self.controllers:
            if c.address is not None and c.address.bus in self._by_index and c.index != 0:
                children.setdefault(c.address.bus, []).append(c.index)
        return {k: tuple(v) for k, v in children.items()}

    def model(self, controller: Controller | int) -> ControllerModel:
        """The catalog model of a controller (or of the controller with that index)."""
        if type(controller) is int:
            found = self._models.get(controller)
            if found is not None:
                return found
            controller = self.controller(controller)
        assert isinstance(controller, Controller)
        found = self._models_by_name.get(controller.model)
        return found if found is not None else self.machine.catalog.controller(controller.model)

    @functools.cached_property
    def _models_by_name(self) -> Mapping[str, ControllerModel]:
        """The catalog models of this topology's controllers by name (the rules ask thousands of times)."""
        return {m.name: m for m in self._models.values()}

    def kind(self, device: Device | str) -> DeviceKind:
        """The catalog kind of a device (or of the device with that id)."""
        d = self.device(device) if isinstance(device, str) else device
        found = self._kinds_by_name.get(d.kind)
        return found if found is not None else self.machine.catalog.device(d.kind)

    @functools.cached_property
    def _kinds_by_name(self) -> Mapping[str, DeviceKind]:
        """The catalog kinds of this topology's devices by name (the rules and the scorer ask several times each)."""
        kinds = self.machine.catalog.devices
        return {name: kinds[name] for name in {d.kind for d in self.devices} if name in kinds}

    def connect(self, device: Device | str) -> Connect:
        """The connect type of a device on this machine."""
        return self.kind(device).connect_on(pcie=self.machine.pcie)

    def bus(self, index: int) -> Bus:
        """The bus with this index (that of the controller providing it)."""
        c = self.controller(index)
        return Bus(index, c, self.model(c), self.bus_name(index))

    def buses(self) -> tuple[Bus, ...]:
        """Every bus, by index."""
        return tuple(self.bus(c.index) for c in self.controllers)

    def bus_name(self, index: int) -> str:
        """The QEMU name of a bus: ``pcie.0``/``pci.0`` for the root, else the controller's id."""
        c = self.controller(index)
        if index == 0:
            return self.machine.root_bus_name
        if c.model == "spapr-pci-host-bridge":
            return f"{c.name}.0"
        return c.name

    def builtins(self) -> tuple[Builtin, ...]:
        """The machine's built-in devices that occupy their addresses in this topology."""
        return self._builtins

    @functools.cached_property
    def _builtins(self) -> tuple[Builtin, ...]:
        # a device of the kind a built-in stands for at its address replaces it (one pass over the devices)
        stand_ins = {(b.address, b.stands_for) for b in self.machine.builtins if b.stands_for is not None}
        kinds = {kind for _, kind in stand_ins}
        # the kind first: a string compare, where an address would be hashed for every device
        present = {(d.address, d.kind) for d in self.devices if d.kind in kinds and d.address is not None} & stand_ins
        return tuple(
            b
            for b in self.machine.builtins
            if not b.optional and (b.stands_for is None or (b.address, b.stands_for) not in present)
        )

    def occupants(self) -> dict[PciAddress, list[str]]:
        """Every used address with what uses it (built-ins, controllers, devices), in that order."""
        used: dict[PciAddress, list[str]] = {}
        for b in self.builtins():
            used.setdefault(b.address, []).append(f"built-in {b.name}")
        for c in self.controllers:
            if c.address is not None:
                used.setdefault(c.address, []).append(c.name)
        for d in self.devices:
            if d.address is not None:
                used.setdefault(d.address, []).append(d.id)
        return used

    def slot_usage(self) -> dict[tuple[int, int, int], set[int]]:
        """For each (domain, bus, slot) in use, the functions used."""
        usage: dict[tuple[int, int, int], set[int]] = {}
        addresses = [b.address for b in self.builtins()]
        addresses += [c.address for c in self.controllers if c.address is not None]
        addresses += [d.address for d in self.devices if d.address is not None]
        for a in addresses:  # what occupants() lists, without naming who
            key = (a.domain, a.bus, a.slot)
            functions = usage.get(key)
            if functions is None:
                usage[key] = {a.function}
            else:
                functions.add(a.function)
        return usage

    # -- the graph ---------------------------------------------------------------

    @functools.cached_property
    def graph(self) -> nx.DiGraph[Node]:
        """The topology as a frozen networkx ``DiGraph`` (see the module docstring)."""
        import networkx as nx  # imported here: it takes longer to import than a plan takes to make

        g: nx.DiGraph[Node] = nx.DiGraph()
        for c in self.controllers:
            g.add_node(("controller", c.index), kind="controller", model=c.model, name=c.name)
            g.add_node(("bus", c.index), kind="bus", name=self.bus_name(c.index))
            g.add_edge(("controller", c.index), ("bus", c.index), provides=True)
        for b in self.builtins():
            g.add_node(("builtin", b.name), kind="builtin", qemu=b.qemu_device)
            g.add_edge(("bus", 0), ("builtin", b.name), address=b.address)
        for c in self.controllers:
            if c.address is not None and c.address.bus in self._by_index:
                g.add_edge(("bus", c.address.bus), ("controller", c.index), address=c.address)
        for d in self.devices:
            g.add_node(("device", d.id), kind="device", device_kind=d.kind)
            if d.address is not None and d.address.bus in self._by_index:
                g.add_edge(("bus", d.address.bus), ("device", d.id), address=d.address)
        frozen: nx.DiGraph[Node] = nx.freeze(g)
        return frozen

    def controller_cycles(self) -> list[list[int]]:
        """Controllers that plug, through each other, into themselves (indexes, each cycle once).

        Every controller plugs into at most one bus, so following parents from
        each controller finds every cycle in linear time.
        """
        return [list(cycle) for cycle in self._cycles]

    @functools.cached_property
    def _cycles(self) -> tuple[tuple[int, ...], ...]:
        return tuple(tuple(cycle) for cycle in self._find_cycles())

    @functools.cached_property
    def _in_cycle(self) -> frozenset[int]:
        """The indexes of the controllers on a cycle."""
        return frozenset(i for cycle in self._cycles for i in cycle)

    def _find_cycles(self) -> list[list[int]]:
        parent = {
            c.index: c.address.bus
            for c in self.controllers
            if c.address is not None and c.index != 0 and c.address.bus in self._by_index
        }
        state: dict[int, int] = {}  # 1 = on the current walk, 2 = done
        cycles: list[list[int]] = []
        for start in sorted(parent):
            walk: list[int] = []
            node: int | None = start
            while node is not None and state.get(node) is None:
                state[node] = 1
                walk.append(node)
                node = parent.get(node)
            if node is not None and state.get(node) == 1:
                cycles.append(sorted(walk[walk.index(node) :]))
            for n in walk:
                state[n] = 2
        return sorted(cycles)

    def _parent_index(self, index: int) -> int | None:
        c = self._by_index.get(index)
        if c is None or c.address is None or index == 0:
            return None
        return c.address.bus if c.address.bus in self._by_index else None

    def _walk_up(self, bus: int) -> Iterator[Controller]:
        """The controllers from ``bus`` up to its root; stops at a cycle or a dangling bus."""
        seen: set[int] = set()
        current: int | None = bus
        while current is not None and current in self._by_index and current not in seen:
            seen.add(current)
            yield self._by_index[current]
            current = self._parent_index(current)

    def path_to_root(self, item: str | int) -> tuple[Controller, ...]:
        """The controllers from a device (by id) or a bus (by index) up to its root bus."""
        if isinstance(item, str):
            d = self.device(item)
            if d.address is None:
                raise InvalidInput(f"device {item!r}", "has no address, so no path to a root bus")
            bus = d.address.bus
        else:
            bus = item
        self.controller(bus)
        return tuple(self._walk_up(bus))

    def root_of(self, bus: int) -> Controller | None:
        """The root controller above a bus (``None`` if it never reaches one)."""
        return self._roots.get(bus)

    @functools.cached_property
    def _roots(self) -> Mapping[int, Controller]:
        """The root controller at or above each bus that reaches one."""
        models = self._models
        return self._nearest_above(lambda i: models[i].root)

    @functools.cached_property
    def _numa_tops(self) -> Mapping[int, Controller]:
        """The expander bus or root controller at or above each bus that reaches one."""
        models = self._models
        return self._nearest_above(lambda i: models[i].root or models[i].expander)

    def _nearest_above(self, stops: Callable[[int], bool]) -> dict[int, Controller]:
        """For every controller, the nearest controller at or above it (walking up to the root) that ``stops``.

        One pass down from each such controller: a bus below it takes it unless
        another one comes first on the way down. A bus whose walk up ends at a
        cycle or a dangling bus before meeting one is left out.
        """
        children = self._children
        found: dict[int, Controller] = {}
        for c in self.controllers:
            if not stops(c.index):
                continue
            found[c.index] = c
            stack = list(children.get(c.index, ()))
            while stack:
                i = stack.pop()
                if i in found or stops(i):
                    continue  # a stopping controller answers for the buses below it
                found[i] = c
                stack.extend(children.get(i, ()))
        return found

    def numa_node_of_bus(self, index: int) -> int | None:
        """The guest NUMA node a bus belongs to: that of the nearest expander bus or host bridge above it."""
        top = self._numa_tops.get(index)
        return None if top is None else top.numa_node

    def is_behind_pcie_port(self, bus: int) -> bool:
        """Whether a bus is the link of a PCIe root or downstream port."""
        return self.model(bus).port

    def kind_hotpluggable(self, device: Device | str) -> bool:
        """Whether a device of this kind can be hot-plugged anywhere on this machine.

        QEMU must hot-add its driver at all (the catalog's ``hotpluggable``),
        and a kind that must sit integrated on the root bus needs a root bus
        with hotplug: a ``pvpanic-pci`` can be hot-added on ``pc``, never on ``q35``.

        >>> Topology.default("pc").kind_hotpluggable(Device("p", "pvpanic-pci"))
        True
        >>> Topology.default("q35").kind_hotpluggable(Device("p", "pvpanic-pci"))
        False
        >>> Topology.default("pc").kind_hotpluggable(Device("v", "vga"))
        False
        """
        kind = self.kind(device)
        if not kind.hotpluggable:
            return False
        if kind.integrated is Integrated.REQUIRED:
            return any(self.is_hotpluggable(0, s) for s in self.model(0).slot_range())
        return True

    def is_hotpluggable(self, bus: int, slot: int) -> bool:
        """Whether a device may be hot-plugged at (bus, slot)."""
        # by bus: the slots of a bus are all hotpluggable, none, or a range (a plan asks for each of its thousand
        # devices, hundreds of them on one bus)
        slots = self._hotpluggable_slots.get(bus)
        if slots is None:
            slots = self._hotpluggable_slots[bus] = self._bus_hotpluggable_slots(bus)
        return slots if type(slots) is bool else slot in slots

    @functools.cached_property
    def _hotpluggable_slots(self) -> dict[int, bool | range]:
        """:meth:`_bus_hotpluggable_slots` by bus, as :meth:`is_hotpluggable` asks."""
        return {}

    def _bus_hotpluggable_slots(self, bus: int) -> bool | range:
        """Whether every slot of ``bus`` is hotpluggable (``True``), none (``False``), or which ones."""
        c = self._by_index.get(bus)
        if c is None:
            c = self.controller(bus)  # raises UnknownName
        m = self._models[bus]
        if m.hotplug is Hotplug.NEVER:
            return False
        if c.index == 0 and not self.machine.root_hotplug:
            return False
        if m.hotplug is Hotplug.DEFAULT_ON and c.hotplug is False:
            return False
        if m.hotplug_slots is not None:
            return range(m.hotplug_slots[0], m.hotplug_slots[1] + 1)
        return True

    # -- bus numbers ------------------------------------------------------------

    def bus_numbers_used(self, root: int = 0) -> int:
        """Guest bus numbers used in the PCI domain of the root bus ``root``."""
        return self._bus_numbers_by_root.get(root, 0)

    @functools.cached_property
    def _bus_numbers_by_root(self) -> Mapping[int, int]:
        used: dict[int, int] = {}
        roots, models = self._roots, self._models
        for c in self.controllers:
            top = roots.get(c.index)
            if top is not None:
                used[top.index] = used.get(top.index, 0) + models[c.index].bus_numbers
        return used

    def bus_numbers_left(self, root: int = 0) -> int:
        """Guest bus numbers still free in that domain."""
        return self.machine.bus_numbers - self.bus_numbers_used(root)

    def subtree_bus_numbers(self, index: int) -> int:
        """Bus numbers used by a controller and everything below it (not crossing other expanders)."""
        self.controller(index)
        models, children = self._models, self._children
        total = 0
        stack = [index]
        seen: set[int] = set()
        while stack:
            i = stack.pop()
            if i in seen:
                continue
            seen.add(i)
            m = models[i]
            if i != index and (m.expander or m.root):
                continue
            total += m.bus_numbers
            stack.extend(children.get(i, ()))
        return total

    # -- IO space -------------------------------------------------------------------

    def io_bar_size(self, device: Device, *, behind_pcie_port: bool | None = None) -> int:
        """Bytes of IO BAR a device has where it sits (0: none). ``Device.io_bar`` overrides the catalog.

        ``behind_pcie_port`` asks instead about a device not yet placed: whether
        it would sit behind a PCIe port.
        """
        kind = self.kind(device)
        if device.io_bar is not None:
            return max(kind.io_bar_size, 1) if device.io_bar else 0
        if behind_pcie_port is None:
            a = device.address
            behind_pcie_port = a is not None and a.bus in self._by_index and self.model(a.bus).port
        return kind.io_bar_size if kind.has_io_bar(behind_pcie_port=behind_pcie_port) else 0

    def io_bytes_by_bus(self) -> dict[int, int]:
        """IO BAR bytes of the endpoints placed on each bus (buses without any left out)."""
        return dict(self._io_bytes)

    @functools.cached_property
    def _io_bytes(self) -> Mapping[int, int]:
        direct: dict[int, int] = {}
        by_index, models = self._by_index, self._models
        # without its own io_bar, a device's size depends on its kind and whether its bus is a PCIe port's only
        by_kind: dict[tuple[str, bool], int] = {}
        for d in self.devices:
            a = d.address
            if a is None or a.bus not in by_index:
                continue
            if d.io_bar is None:
                key = (d.kind, models[a.bus].port)
                size = by_kind.get(key)
                if size is None:
                    size = by_kind[key] = self.io_bar_size(d)
            else:
                size = self.io_bar_size(d)
            if size:
                direct[a.bus] = direct.get(a.bus, 0) + size
        return direct

    @functools.cached_property
    def firmware_model(self) -> Firmware | None:
        """The description of the firmware that boots this topology (``None``: no firmware modelled)."""
        return self.machine.firmware(self.firmware)

    @functools.cached_property
    def primary_video(self) -> Device | None:
        """The primary video: the first device in definition order whose kind is VGA-compatible (catalog ``vga``).

        libvirt makes its first ``<video>`` the primary one (and only that one a
        VGA model); SeaBIOS takes the first VGA device it finds, root bus first.

        >>> t = Topology.build("q35", devices=[Device("g", "virtio-gpu"), Device("v", "vga"), Device("c", "cirrus")])
        >>> t.primary_video.id
        'v'
        """
        catalog = self.catalog
        return next((d for d in self.devices if catalog.device(d.kind).vga is not None), None)

    @functools.cached_property
    def vbe_video(self) -> Device | None:
        """The primary video when this topology's firmware finds its VBE only on the main root bus, else ``None``.

        It decides the ``primary-video`` soft constraint (:func:`pcitopo.policy.evaluate.vbe_needs_root_bus`).
        Kept on the topology, which is immutable, because the solver asks it of one request at every plan it scores.

        >>> Topology.build("q35", devices=[Device("v", "vga")]).vbe_video.id
        'v'
        >>> Topology.build("q35", devices=[Device("v", "cirrus")]).vbe_video is None
        True
        >>> Topology.build("q35", devices=[Device("v", "vga")], firmware="ovmf").vbe_video is None
        True
        """
        video = self.primary_video
        firmware = self.firmware_model
        if video is None or firmware is None:
            return None
        return video if self.catalog.device(video.kind).vga in firmware.vbe_root_bus_only else None

    def io_window_budget(self) -> int | None:
        """How many 4 KiB IO windows this topology's firmware fits beside its root buses' IO BARs (``None``: no limit).

        The firmware's count (``io-windows``) leaves room for some bytes of IO
        BAR on the root buses (``root-io``); each started 4 KiB beyond them
        takes one window (see :meth:`root_io_windows`).
        """
        budget = self.machine.io_window_budget(acpi=self.acpi, firmware=self.firmware)
        if budget is None:
            return None
        return budget - self.root_io_windows()

    def io_windows_short(self) -> int:
        """How many IO windows beyond the firmware's budget the plan needs (0: its IO fits).

        With no IO BAR below any bridge, a firmware that drops the reservations
        it has no room for (``idle-reservations-harmless``, measured) maps
        every BAR whatever their number.
        """
        return self._io_windows_short

    @functools.cached_property
    def _io_windows_short(self) -> int:
        budget = self.io_window_budget()
        if budget is None:
            return 0
        total = sum(self._io_windows_reserved.values())
        if total <= budget:
            return 0
        spec = self._firmware_machine
        if spec is not None and spec.idle_reservations_harmless and not any(self._io_windows_needed):
            return 0
        return total - budget

    def root_io_bytes(self) -> int:
        """IO BAR bytes of the endpoints placed directly on root and expander buses."""
        return self._root_io_bytes

    @functools.cached_property
    def _root_io_bytes(self) -> int:
        own = self._expanders_own_io
        return sum(size for bus, size in self._io_bytes.items() if not self._is_bridge(bus) and bus not in own)

    @functools.cached_property
    def _expanders_own_io(self) -> frozenset[int]:
        """Expander buses whose own IO BARs take windows of their own (``FirmwareMachine.expander_io_windows``)."""
        spec = self._firmware_machine
        if spec is None or not spec.expander_io_windows:
            return frozenset()
        models = self._models
        return frozenset(bus for bus, size in self._io_bytes.items() if size and models[bus].expander)

    def root_io_windows(self, root_bytes: int | None = None) -> int:
        """Windows the firmware loses to IO BARs on the root buses (``root_bytes``: instead of this topology's)."""
        spec = self._firmware_machine
        if spec is None:
            return 0
        return spec.root_io_windows(self.root_io_bytes() if root_bytes is None else root_bytes)

    @functools.cached_property
    def _firmware_machine(self) -> FirmwareMachine | None:
        fw = self.firmware_model
        return None if fw is None else fw.for_machine(self.machine.name, self.machine.root_model)

    @functools.cached_property
    def bridge_sibling_crash(self) -> frozenset[str]:
        """Device kinds QEMU crashes on, under this topology's firmware, on a bus other than the main root bus that
        also holds a pci-bridge (the ``firmware-crash`` rule; empty: no such kind).

        >>> sorted(Topology.default("q35", firmware="ovmf").bridge_sibling_crash)
        ['lsilogic']
        >>> Topology.default("q35").bridge_sibling_crash
        frozenset()
        """
        spec = self._firmware_machine
        return frozenset(spec.bridge_sibling_crash) if spec is not None else frozenset()

    def reserves_io(self, index: int) -> bool:
        """Whether the firmware gives controller ``index`` an IO window even with no IO BAR below it.

        SeaBIOS does for SHPC bridges, OVMF for every hotplug-capable bridge and port;
        a controller the topology makes non-hotpluggable (``hotplug=off``) gets none,
        nor does one with ``io-reserve=0`` where the firmware honours that
        (:meth:`~pcitopo.legality.firmware.Firmware.honours_io_reserve_off`).

        >>> port = Controller(1, "pcie-root-port", PciAddress.parse("0000:00:02.0"))
        >>> t = Topology.build("q35", [port], firmware="ovmf")
        >>> off = t.replace(controllers=[t.controller(0), attrs.evolve(port, io_reserve=0)])
        >>> t.reserves_io(1), off.reserves_io(1), off.io_windows()
        (True, False, {})
        """
        fw = self.firmware_model
        c = self.controller(index)
        if fw is None or c.hotplug is False:
            return False
        if c.io_reserve == 0 and fw.honours_io_reserve_off(c.model):
            return False
        return fw.reserves_io(c.model)

    def io_reserve_off_candidates(self) -> tuple[int, ...]:
        """Controllers to which ``io-reserve=0`` would each save one IO window, occupied ones first, then by index.

        Those whose reservation is a window of its own on a root or expander
        bus: nothing below them needs IO or holds a bridge the firmware
        reserves a window for, the firmware honours ``io-reserve=0`` on their
        model (:meth:`~pcitopo.legality.firmware.Firmware.honours_io_reserve_off`)
        and their QEMU device has the property.
        """
        fw = self.firmware_model
        if fw is None or not fw.io_reserve_off:
            return ()
        sizes, needed, windows = self._io_sizes, self._io_sizes_needed, self._io_windows_reserved
        occupied = {d.address.bus for d in self.devices if d.address is not None} | set(self._children)
        found: list[tuple[bool, int]] = []
        for index, count in windows.items():
            c = self.controller(index)
            if count != 1 or needed.get(index, 0) or c.io_reserve is not None or not self.reserves_io(index):
                continue
            if not fw.honours_io_reserve_off(c.model) or not self.model(index).takes_io_reserve(c.qemu_model):
                continue
            children = self._children.get(index, ())
            if any(self._is_bridge(child) and sizes.get(child, 0) for child in children):
                continue
            found.append((index not in occupied, index))
        return tuple(index for _, index in sorted(found))

    def with_io_reserve_off(self, indexes: Iterable[int]) -> Topology:
        """This topology with ``io-reserve=0`` on the controllers ``indexes`` (:meth:`Controller.with_io_reserve`)."""
        chosen = set(indexes)
        return self.replace(controllers=[c.with_io_reserve(0) if c.index in chosen else c for c in self.controllers])

    def io_reserve_floor(self, index: int) -> int:
        """Bytes of IO window controller ``index`` gets at least from its ``io-reserve`` (0: none asked or honoured)."""
        fw = self.firmware_model
        reserve = self.controller(index).io_reserve
        if fw is None or not fw.io_reserve_property or not reserve:
            return 0
        return reserve

    @functools.cached_property
    def _io_sizes(self) -> Mapping[int, int]:
        return self._io_sizes_with(reservations=True)

    @functools.cached_property
    def _io_sizes_needed(self) -> Mapping[int, int]:
        return self._io_sizes_with(reservations=False)

    def _io_sizes_with(self, *, reservations: bool) -> Mapping[int, int]:
        """IO space each bridge or port needs for everything below it, rounded to 4 KiB windows.

        With ``reservations``, a bridge the firmware reserves IO for takes one
        window even when nothing below it has an IO BAR.
        """
        direct = self._io_bytes
        sizes: dict[int, int] = {}
        cycles = self._in_cycle
        children = self._children
        # a child is a controller of this topology, so _is_bridge(child) is whether it is among the bridges
        bridges = self._bridges
        by_index = self._by_index
        fw = self.firmware_model if reservations else None
        honours_property = fw is not None and fw.io_reserve_property

        def size_of(index: int) -> int:
            if index in sizes:
                return sizes[index]
            sizes[index] = 0  # guards against cycles
            total = direct.get(index, 0)
            for child in children.get(index, ()):
                if child not in cycles and child in bridges:
                    total += size_of(child)
            if fw is not None:
                # reserves_io and io_reserve_floor, inlined: asked of every bridge and port of a plan
                c = by_index[index]
                if (
                    total == 0
                    and c.hotplug is not False
                    and not (c.io_reserve == 0 and fw.honours_io_reserve_off(c.model))
                    and fw.reserves_io(c.model)
                ):
                    total = IO_WINDOW
                if honours_property and c.io_reserve and c.io_reserve > total:
                    total = c.io_reserve
            sizes[index] = -(-total // IO_WINDOW) * IO_WINDOW
            return sizes[index]

        for c in self.controllers:
            if c.index not in cycles and c.index in bridges:
                size_of(c.index)
        return sizes

    def _is_bridge(self, index: int) -> bool:
        if index in self._bridges:
            return True
        m = self.model(index)  # not a bridge, or not a controller of this topology (which raises)
        return not (m.root or m.expander)

    @functools.cached_property
    def _bridges(self) -> frozenset[int]:
        """The indexes of the controllers that are neither root nor expander buses (bridges and ports)."""
        return frozenset(i for i, m in self._models.items() if not (m.root or m.expander))

    def io_windows(self, *, reservations: bool = True) -> dict[int, int]:
        """The 4 KiB IO windows firmware must give each bridge or port directly on a root or expander bus.

        Keys are controller indexes; only those that need a window are listed.
        A bridge's window holds the windows of the bridges below it and the IO
        BARs of the endpoints on its bus; endpoints on a root bus use the
        legacy range and need none. With ``reservations`` (the default) the
        windows the firmware reserves for hotplug count too (see
        :meth:`reserves_io`); without, only what the devices need.
        """
        return dict(self._io_windows_reserved if reservations else self._io_windows_needed)

    @functools.cached_property
    def _io_windows_reserved(self) -> Mapping[int, int]:
        return self._io_windows_of(self._io_sizes)

    @functools.cached_property
    def _io_windows_needed(self) -> Mapping[int, int]:
        return self._io_windows_of(self._io_sizes_needed)

    def _io_windows_of(self, sizes: Mapping[int, int]) -> dict[int, int]:
        out: dict[int, int] = {}
        by_index = self._by_index
        bridge_bus: dict[int, bool] = {}  # _is_bridge of each bus asked: a plan's root ports are all on bus 0
        for c in self.controllers:
            a = c.address
            if a is None or c.index not in sizes or a.bus not in by_index:
                continue
            bus = a.bus
            on_bridge = bridge_bus.get(bus)
            if on_bridge is None:
                on_bridge = bridge_bus[bus] = self._is_bridge(bus)
            if not on_bridge and sizes[c.index] > 0:
                out[c.index] = sizes[c.index] // IO_WINDOW
        for bus in sorted(self._expanders_own_io):
            # a root bridge of its own to the firmware: its endpoints' IO BARs, rounded up to windows
            out[bus] = -(-self._io_bytes[bus] // IO_WINDOW)
        return out

    # -- memory space (MMIO) --------------------------------------------------------

    def bars(self, device: Device | str) -> tuple[Bar, ...]:
        """The memory BARs and ROM of a device (no IO BAR, no SR-IOV VF BAR).

        A device that carries its own (a passed-through host function's) has
        those; else the catalog's, with the memory BAR sized by ``Device.memory``
        (rounded up to a power of two, as a BAR must be).

        >>> t = Topology.build("q35", devices=[Device("shm", "ivshmem-plain", memory=3 << 30)])
        >>> [str(b) for b in t.bars("shm")]
        ['BAR0 mem32 256B', 'BAR2 mem64 prefetchable 4G']
        """
        d = self.device(device) if isinstance(device, str) else device
        if d.bars is not None:
            return tuple(b for b in d.bars if b.kind != "io" and b.index <= 6)
        kind = self.kind(d)
        if d.memory is None or kind.memory_bar is None:
            return kind.bars
        size = 1 << max(d.memory - 1, 1).bit_length()
        return tuple(attrs.evolve(b, size=size) if b.index == kind.memory_bar else b for b in kind.bars)

    @functools.cached_property
    def mmio(self) -> Mmio | None:
        """What the bridges and root-bus devices need of the firmware's 32-bit hole and 64-bit window.

        ``None`` when the topology's firmware's MMIO is not modelled (no x86 firmware).
        """
        fw = self.firmware_model
        if fw is None or self._mmio_unmodelled:
            return None
        return _mmio(self, fw)

    @property
    def _mmio_unmodelled(self) -> bool:
        """Whether the firmware has no measured 32-bit hole for this machine (edk2 on aarch64: IO only)."""
        spec = self._firmware_machine
        return spec is None or spec.mmio32_hole is None

    @functools.cached_property
    def mmio_with_unplaced(self) -> Mmio | None:
        """:attr:`mmio` with every device still without an address counted as if on the root bus.

        No window or reservation is counted for it, so this is what any plan
        of the topology needs at least.
        """
        fw = self.firmware_model
        if fw is None or self._mmio_unmodelled:
            return None
        return _mmio(self, fw, unplaced=True)

    def mmio_budgets(self) -> tuple[int | None, int | None]:
        """The 32-bit hole and the largest 64-bit window this topology's firmware can give (``None``: unknown).

        The 64-bit window is the firmware's default, or what its knob can be
        set to (OVMF's ``X-PciMmio64Mb``); a firmware that sizes its window to
        fit (SeaBIOS) has none, and its ceiling is checked by :meth:`mmio_problems`.
        Both are known only for the CPU the firmware was measured with (40 physical address bits).
        """
        fw = self.firmware_model
        spec = fw.for_machine(self.machine.name, self.machine.root_model) if fw is not None else None
        if fw is None or spec is None:
            return None, None
        window = None
        if self.phys_bits == fw.phys_bits:
            window = spec.mmio64_max or spec.mmio64_window
        return spec.mmio32_hole, window

    def mmio64_window(self) -> int | None:
        """The 64-bit window this topology gives its firmware: its own ``mmio64``, else the firmware's default."""
        fw = self.firmware_model
        spec = fw.for_machine(self.machine.name, self.machine.root_model) if fw is not None else None
        if spec is None:
            return None
        return self.mmio64 if self.mmio64 is not None and fw is not None and fw.mmio64_knob else spec.mmio64_window

    # -- positions ----------------------------------------------------------------

    def placement_problem(
        self, bus: int, *, model: ControllerModel | None = None, kind: DeviceKind | None = None, strict: bool = True
    ) -> str | None:
        """Why a controller ``model`` or an endpoint ``kind`` may not plug into ``bus`` (``None``: it may).

        ``strict=False`` applies libvirt's relaxation for addresses a user gave:
        a bus that takes any endpoint takes both conventional and PCIe endpoints.
        """
        model_name = model.name if model is not None else None
        kind_name = kind.name if kind is not None else None
        bus_model = self._models.get(bus)
        # whether it may depends only on the bus's model and whether it is bus 0; only the reason names the bus
        fits_key = (bus_model.name if bus_model is not None else None, bus == 0, model_name, kind_name, strict)
        if bus_model is not None and self._fits_cache.get(fits_key):
            return None
        key = (bus, model_name, kind_name, strict)
        cache = self._placement_cache
        if key not in cache:
            cache[key] = self._placement_problem(bus, model=model, kind=kind, strict=strict)
            if cache[key] is None and bus_model is not None:
                self._fits_cache[fits_key] = True
        return cache[key]

    @functools.cached_property
    def _placement_cache(self) -> dict[tuple[int, str | None, str | None, bool], str | None]:
        return {}

    @functools.cached_property
    def _fits_cache(self) -> dict[tuple[str | None, bool, str | None, str | None, bool], bool]:
        return {}

    def _placement_problem(
        self, bus: int, *, model: ControllerModel | None = None, kind: DeviceKind | None = None, strict: bool = True
    ) -> str | None:
        """Why a controller ``model`` or an endpoint ``kind`` may not plug into ``bus`` (``None``: it may).

        ``strict=False`` applies libvirt's relaxation for addresses a user gave:
        a bus that takes any endpoint takes both conventional and PCIe endpoints.
        """
        bus_model = self.model(bus)
        bus_label = f"bus {bus} ({bus_model.name})"
        if model is not None:
            if model.root:
                return f"{model.name} is a root bus and plugs into nothing"
            assert model.connect is not None
            if model.connect not in bus_model.accepts:
                return f"{bus_label} does not accept a {model.name}; it accepts {_accepts(bus_model)}"
            if model.expander and bus != 0:
                return f"an expander bus can only be attached to the main root bus, not to {bus_label}"
            return None
        assert kind is not None
        connect = kind.connect_on(pcie=self.machine.pcie)
        if kind.integrated is Integrated.REQUIRED and bus != 0:
            return f"{kind.name} must be an integrated device on bus 0, not on {bus_label}"
        if bus_model.root and bus_model.name == "pcie-root":
            # FORBIDDEN keeps pcitopo's own placements off the root bus; a user's address there is accepted
            if kind.integrated is Integrated.FORBIDDEN and strict:
                return f"{kind.name} may not be an integrated endpoint on the PCIe root bus"
            return None
        if kind.integrated is Integrated.REQUIRED:
            return None if bus == 0 else f"{kind.name} must be on bus 0"
        endpoints = {Connect.PCI_DEVICE, Connect.PCIE_DEVICE} & bus_model.accepts
        if connect in bus_model.accepts or (not strict and endpoints):
            return None
        return f"{bus_label} does not accept a {connect.phrase}; it accepts {_accepts(bus_model)}"

    def free_positions(
        self,
        item: str | Device | Controller,
        *,
        needs: Needs | None = None,
    ) -> tuple[PciAddress, ...]:
        """Addresses where a device kind, device or controller model could go now.

        For an endpoint, function 0 of every empty slot of every bus that
        legally takes it and meets ``needs`` (hotplug, NUMA node, integrated).
        For a controller model that packs into a slot (root ports), every free
        function of slots that hold only such controllers, too.
        """
        catalog = self.machine.catalog
        model: ControllerModel | None = None
        kind: DeviceKind | None = None
        if isinstance(item, Controller):
            model = catalog.controller(item.model)
        elif isinstance(item, Device):
            kind = catalog.device(item.kind)
            needs = needs or item.needs
        elif item in catalog.controllers:
            model = catalog.controller(item)
        else:
            kind = catalog.device(item)
        needs = needs or Needs()
        usage = self.slot_usage()
        occupants = self.occupants()
        result: list[PciAddress] = []
        for c in self.controllers:
            bus_model = self.model(c)
            if model is not None and (not self.machine.offers(model.name)):
                break
            if self.placement_problem(c.index, model=model, kind=kind) is not None:
                continue
            if self.root_of(c.index) is None:
                continue
            if needs.integrated and c.index != 0:
                continue
            if needs.numa_node is not None and needs.numa_strict and self.numa_node_of_bus(c.index) != needs.numa_node:
                continue
            domain = 0
            for slot in bus_model.slot_range():
                hot = self.is_hotpluggable(c.index, slot)
                if needs.hotplug is HotplugNeed.REQUIRED and not hot:
                    continue
                if needs.hotplug is HotplugNeed.FORBIDDEN and hot:
                    continue
                used = usage.get((domain, c.index, slot), set())
                if not used:
                    result.append(PciAddress(domain=domain, bus=c.index, slot=slot))
                elif model is not None and model.aggregate:
                    holders = [occupants[PciAddress(domain=domain, bus=c.index, slot=slot, function=f)] for f in used]
                    if all(self._by_name_model(name) == model.name for names in holders for name in names):
                        result.extend(
                            PciAddress(domain=domain, bus=c.index, slot=slot, function=f)
                            for f in range(bus_model.functions)
                            if f not in used
                        )
        return tuple(result)

    def _by_name_model(self, name: str) -> str | None:
        for c in self.controllers:
            if c.name == name:
                return c.model
        return None


@attrs.frozen
class Mmio:
    """The memory space a topology needs of its firmware, as the firmware lays it out.

    ``below_4g``: bytes of the 32-bit hole: every 32-bit BAR and ROM (and
    non-prefetchable 64-bit BAR) of the root-bus devices, and each top bridge's
    memory window (its contents rounded up to the window granularity, at
    least the firmware's hotplug reservation). ``above_4g``: the 64-bit
    prefetchable windows of the top bridges (each rounded up to its largest
    BAR, at least the reservation) and the root-bus devices' 64-bit
    prefetchable BARs. ``align_64`` is the largest of those alignments.
    ``consumers_32``/``consumers_64``: who takes it (a root-bus device's id or a
    top bridge's name, its bytes, and the device or controller below it with the
    most), largest first; ``reserved_32``/``reserved_64``:
    the bytes that are reservations for hotplug only.
    """

    below_4g: int
    above_4g: int
    align_64: int
    consumers_32: tuple[tuple[str, int, str], ...]
    consumers_64: tuple[tuple[str, int, str], ...]
    reserved_32: int
    reserved_64: int
    bars_64: int
    """The largest 64-bit prefetchable BAR of any device or controller (0: none)."""
    bars_32: int
    """The largest BAR or ROM that must sit below 4 GiB (0: none)."""


_first, _second = operator.itemgetter(0), operator.itemgetter(1)


def _align(value: int, to: int) -> int:
    return -(-value // to) * to


def _mmio(t: Topology, fw: Firmware, *, unplaced: bool = False) -> Mmio:
    # per bridge bus: [bytes below 4 GiB, bytes of 64-bit prefetchable BARs, their largest, the biggest owner of
    # each], one record a bus
    direct: dict[int, list[Any]] = {}
    root32: list[tuple[str, int, str]] = []
    root64: list[tuple[str, int, str]] = []
    largest = largest32 = 0
    kinds = t._kinds_by_name
    owners: list[tuple[str, PciAddress | None, tuple[Bar, ...]]] = [
        (
            d.id,
            d.address,
            (kinds[d.kind] if d.kind in kinds else t.kind(d)).bars
            if d.bars is None and d.memory is None
            else t.bars(d),
        )
        for d in t.devices
        if unplaced or d.address is not None  # the others are skipped below: their BARs are not looked up
    ]
    models = t._models
    owners += [(c.name, c.address, models[c.index].bars) for c in t.controllers if models[c.index].bars]
    # by id(): a kind's bars are one shared tuple; (bytes below 4 GiB, 64-bit sizes, their sum, their largest,
    # the largest below 4 GiB)
    split: dict[int, tuple[int, tuple[int, ...], int, int, int]] = {}
    by_index = t._by_index
    bridges = t._bridges
    root = PciAddress(domain=0, bus=0, slot=0, function=0)
    for ident, a, bars in owners:
        if a is None and unplaced:
            a = root  # counted as a root-bus device: no window around it
        if a is None or not bars:
            continue
        bus = a.bus
        if bus not in by_index:
            continue
        key = id(bars)
        facts = split.get(key)
        if facts is None:
            below = [b.size for b in bars if b.below_4g]
            high = tuple(b.size for b in bars if not b.below_4g)
            facts = split[key] = (sum(below), high, sum(high), max(high, default=0), max(below, default=0))
        low, high, high_sum, high_max, big32 = facts
        if high_max > largest:
            largest = high_max
        if big32 > largest32:
            largest32 = big32
        if bus in bridges:
            record = direct.get(bus)
            if record is None:
                direct[bus] = [low, high_sum, high_max, (low, ident), (high_sum, ident)]
            else:
                record[0] += low
                record[1] += high_sum
                if high_max > record[2]:
                    record[2] = high_max
                if (low, ident) > record[3]:
                    record[3] = (low, ident)
                if (high_sum, ident) > record[4]:
                    record[4] = (high_sum, ident)
        else:
            if low:
                root32.append((ident, low, ident))
            if high:  # most devices have no 64-bit BAR: no list to build for them
                root64 += [(ident, size, ident) for size in high]
    cycles = t._in_cycle
    children = t._children
    Sizes = tuple[int, int, int, int, int, tuple[int, str], tuple[int, str]]
    sizes: dict[int, Sizes] = {}

    # the firmware's values, read once: a bridge's sizes are worked out for each of a plan's hundred root ports
    window, mem_reserve, pref64_reserve = fw.mem_window, fw.mem_reserve, fw.pref64_reserve
    reserving = fw.mem_reserve_models
    nothing: tuple[int, str] = (0, "")

    def size_of(index: int) -> Sizes:
        """(memory window, 64-bit window, its alignment, reserved 32, reserved 64, biggest owners) of a bridge."""
        if index in sizes:
            return sizes[index]
        sizes[index] = (0, 0, 0, 0, 0, nothing, nothing)  # guards against cycles
        record = direct.get(index)
        mem, pref, align, own32, own64 = record if record is not None else (0, 0, 0, nothing, nothing)
        res32 = res64 = 0
        for child in children.get(index, ()):
            if child not in cycles and child in bridges:
                cm, cp, ca, cr32, cr64, co32, co64 = size_of(child)
                mem, pref, align = mem + cm, pref + cp, max(align, ca)
                res32, res64 = res32 + cr32, res64 + cr64
                own32, own64 = max(own32, co32), max(own64, co64)
        mem = -(-mem // window) * window  # _align(mem, window), inlined
        if pref:
            align = max(align, window)
            pref = -(-pref // align) * align
        else:
            align = 0
        c = by_index[index]
        if c.hotplug is not False and c.model in reserving:  # fw.reserves_mem(c.model)
            if mem < mem_reserve:
                res32, mem = res32 + mem_reserve - mem, mem_reserve
            if pref < pref64_reserve:
                res64, pref = res64 + pref64_reserve - pref, pref64_reserve
                align = max(align, pref64_reserve)
        found = sizes[index] = (mem, pref, align, res32, res64, own32, own64)
        return found

    tops32, tops64 = list(root32), list(root64)
    reserved32 = reserved64 = 0
    top_align = max((size for _, size, _ in root64), default=0)
    for c in t.controllers:
        a = c.address
        if a is None or c.index in cycles or c.index not in bridges or a.bus not in by_index:
            continue
        if a.bus in bridges:
            continue
        mem, pref, align, r32, r64, own32, own64 = size_of(c.index)
        if mem or pref:
            name = c.name  # a property: read once
            if mem:
                tops32.append((name, mem, own32[1] or name))
            if pref:
                tops64.append((name, pref, own64[1] or name))
        top_align = max(top_align, align)
        reserved32 += r32
        reserved64 += r64

    def order(items: list[tuple[str, int, str]]) -> tuple[tuple[str, int, str], ...]:
        # largest first, then by name: two stable sorts by C key functions give what the key (-size, name) gives
        # (a thousand items for a request's devices counted on the root bus, where a lambda a key costs 3 times more)
        return tuple(sorted(sorted(items, key=_first), key=_second, reverse=True))

    below_4g = sum(size for _, size, _ in tops32)
    if fw.efi:
        below_4g, unreserved = _edk2_below_4g(t, fw, owners, unplaced=unplaced)
        reserved32 = below_4g - unreserved
    elif largest32 > fw.mem_window:
        # a BAR below 4 GiB larger than the window granularity: SeaBIOS rounds windows up to their largest BAR
        below_4g = max(below_4g, _seabios_below_4g(t, fw, owners, unplaced=unplaced))
    return Mmio(
        below_4g=below_4g,
        above_4g=sum(size for _, size, _ in tops64),
        align_64=top_align,
        consumers_32=order(tops32),
        consumers_64=order(tops64),
        reserved_32=reserved32,
        reserved_64=reserved64,
        bars_64=largest,
        bars_32=largest32,
    )


def _edk2_below_4g(
    t: Topology, fw: Firmware, owners: list[tuple[str, PciAddress | None, tuple[Bar, ...]]], *, unplaced: bool
) -> tuple[int, int]:
    """The 32-bit MMIO edk2's PciBus (OVMF) needs, with and without the hotplug reservations.

    edk2 puts a 32-bit prefetchable BAR in its bridge's non-prefetchable window
    (the prefetchable one is 64-bit) and lays each bus's resources out largest
    alignment first, each aligned to its own: a window is its contents rounded
    to 1 MiB, aligned to its largest BAR. So a 64 MiB BAR with a 4 KiB one
    behind a root port takes a 65 MiB window at a 64 MiB boundary, and the
    next such window starts 128 MiB on (measured, tests/integration/test_mmio.py:
    OVMF maps 7 such ports, not 8).
    """
    per_bus: dict[int, list[int]] = {}
    root = 0
    for _, a, bars in owners:
        if a is None and unplaced:
            a = PciAddress(domain=0, bus=root, slot=0, function=0)
        if a is None or a.bus not in t._by_index:
            continue
        per_bus.setdefault(a.bus, []).extend(b.size for b in bars if b.below_4g)
    bridges, children, cycles = t._bridges, t._children, t._in_cycle

    def pack(entries: list[tuple[int, int]]) -> int:
        offset = 0
        for length, align in sorted(entries, key=lambda e: -e[1]):
            offset = _align(offset, align) + length
        return offset

    def window(index: int, reserve: bool, seen: frozenset[int]) -> tuple[int, int]:
        """(length, alignment) of a bridge's 32-bit window."""
        entries = [(size, size) for size in per_bus.get(index, ())]
        for child in children.get(index, ()):
            if child in bridges and child not in cycles and child not in seen:
                length, align = window(child, reserve, seen | {child})
                if length:
                    entries.append((length, align))
        length = _align(pack(entries), fw.mem_window) if entries else 0
        c = t._by_index[index]
        if reserve and c.hotplug is not False and fw.reserves_mem(c.model) and length < fw.mem_reserve:
            length = fw.mem_reserve
        return length, max((align for _, align in entries), default=fw.mem_window)

    def total(reserve: bool) -> int:
        entries: list[tuple[int, int]] = []
        for index, model in t._models.items():
            if not (model.root or model.expander):
                continue
            entries += [(size, size) for size in per_bus.get(index, ())]
            for child in children.get(index, ()):
                if child in bridges and child not in cycles:
                    length, align = window(child, reserve, frozenset({child}))
                    if length:
                        entries.append((length, align))
        return pack(entries)

    return total(True), total(False)


def _seabios_below_4g(
    t: Topology, fw: Firmware, owners: list[tuple[str, PciAddress | None, tuple[Bar, ...]]], *, unplaced: bool
) -> int:
    """The 32-bit MMIO SeaBIOS needs when windows hold BARs larger than its 2 MiB granularity.

    SeaBIOS (pciinit.c) sizes a bridge's memory and 32-bit prefetchable windows
    apart, each its contents rounded up to its largest BAR (at least 2 MiB), and
    an empty hotplug bridge's memory window is its 2 MiB reservation (its
    prefetchable one is 64-bit). Measured (tests/integration/test_mmio.py): 7 root
    ports each holding a pcie-to-pci-bridge with a 64 MiB and a 32 MiB display
    map, 8 do not (each pair's window is 128 MiB, not 96).
    """
    mem_bars: dict[int, list[int]] = {}
    pref_bars: dict[int, list[int]] = {}
    for _, a, bars in owners:
        if a is None and unplaced:
            a = PciAddress(domain=0, bus=0, slot=0, function=0)
        if a is None or a.bus not in t._by_index:
            continue
        for b in bars:
            if b.below_4g:
                (pref_bars if b.prefetchable else mem_bars).setdefault(a.bus, []).append(b.size)
    bridges, children, cycles = t._bridges, t._children, t._in_cycle

    def window(index: int, seen: frozenset[int]) -> tuple[int, int, int, int]:
        """(memory window, its alignment, 32-bit prefetchable window, its alignment) of a bridge."""
        mem, pref = list(mem_bars.get(index, ())), list(pref_bars.get(index, ()))
        mem_align, pref_align = max(mem, default=0), max(pref, default=0)
        for child in children.get(index, ()):
            if child in bridges and child not in cycles and child not in seen:
                cm, cma, cp, cpa = window(child, seen | {child})
                mem.append(cm)
                pref.append(cp)
                mem_align, pref_align = max(mem_align, cma), max(pref_align, cpa)
        mem_align, pref_align = max(mem_align, fw.mem_window), max(pref_align, fw.mem_window)
        mem_size, pref_size = _align(sum(mem), mem_align), _align(sum(pref), pref_align)
        c = t._by_index[index]
        if not mem_size and c.hotplug is not False and fw.reserves_mem(c.model):
            mem_size = fw.mem_reserve
        return mem_size, mem_align, pref_size, pref_align

    total = 0
    for index, model in t._models.items():
        if not (model.root or model.expander):
            continue
        total += sum(mem_bars.get(index, ())) + sum(pref_bars.get(index, ()))
        for child in children.get(index, ()):
            if child in bridges and child not in cycles:
                mem, _, pref, _ = window(child, frozenset({child}))
                total += mem + pref
    return total


def _accepts(model: ControllerModel) -> str:
    return ", ".join(sorted(c.phrase for c in model.accepts))
