"""libvirt 9.0's PCI address assignment, reproduced on pcitopo's model.

:func:`libvirt_assign` does what ``qemuDomainAssignPCIAddresses`` does when a
domain is defined: a *dry run* that places everything first fit and grows the
set of buses where nothing fits (deciding which controllers to add), then a
*real pass* over the final controller list that gives every controller and
device its address, then ``multifunction`` and the controllers' target values
(``shared/reference/libvirt-rules.md`` §3-§4; checked against the running
libvirt 9.0 by ``tests/integration/test_libvirt_differential.py``).

Facts the model does not carry are derived from the topology:

* a device's libvirt class (which orders the first fit) is its catalog kind's
  ``device_class``; within a class, the topology's order, which the libvirt
  reader makes libvirt's own (controllers grouped by type as libvirt's parser
  inserts them, the devices libvirt adds on its own last, in the order it
  adds them);
* the primary video is the first device of class ``video``;
* chipset positions come from the machine description: built-ins are
  reserved, a device of a built-in's ``stands_for`` kind without an address
  is that built-in (libvirt's SATA/IDE controller 0), and the ``preferred``
  roles are libvirt's soft chipset preferences (``primary-video``,
  ``dmi-to-pci-bridge``, ``ich9-sound``, ``usb2``);
* ICH9 USB2 companions (catalog ``usb2_function``) form one controller
  *index* per run in definition order: a companion whose function was already
  seen starts the next index (libvirt groups by the ``index`` attribute);
* isolation groups (pseries host IOMMU groups) are all 0: pcitopo does not
  know the host's IOMMU groups, and libvirt gives 0 to host devices it cannot
  look up.

Where libvirt would produce a topology QEMU cannot build, this module does
better, on purpose: libvirt 9.0 places a user-declared switch upstream port
without an address on one of its own downstream ports (first fit does not
look for cycles). When the result has a controller cycle, the placement that
closed it is forbidden and the assignment is run again, so the controller
takes the next legal choice in libvirt's own order (another bus, or a new
root port). And libvirt 9.0 puts an ICH9 USB2 set that has no UHCI1 (say a
lone ``ich9-ehci1``) at its own function of an empty slot (``.7``), where
guests never look; here the set's first controller takes function 0.

>>> from pcitopo.devices import Device
>>> from pcitopo.topology import Topology
>>> t = Topology.build("q35", devices=[Device("net0", "virtio-net"), Device("nic1", "e1000")])
>>> done = libvirt_assign(t)
>>> for c in done.controllers[1:]:
...     print(c.index, c.model, c.address, c.port)
1 pcie-root-port 0000:00:01.0 8
2 pcie-root-port 0000:00:01.1 9
3 pcie-to-pci-bridge 0000:01:00.0 None
4 pcie-root-port 0000:00:01.2 10
>>> [str(d.address) for d in done.devices]
['0000:02:00.0', '0000:03:01.0']
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import attrs

from pcitopo.address import PciAddress
from pcitopo.devices import Controller, Device
from pcitopo.errors import InvalidInput, Unsatisfiable
from pcitopo.legality import identity
from pcitopo.legality.catalog import Connect, ControllerModel, Integrated
from pcitopo.topology import Topology

__all__ = ["CLASS_ORDER", "libvirt_assign"]


def __dir__() -> list[str]:
    return __all__


CLASS_ORDER: tuple[str, ...] = (
    "filesystem",
    "net",
    "sound",
    "controller",
    "disk",
    "hostdev",
    "memballoon",
    "rng",
    "watchdog",
    "video",
    "shmem",
    "input",
    "serial",
    "iommu",
    "vsock",
    "memory",
    "crypto",
    "panic",
)
"""The order in which ``qemuDomainAssignDevicePCISlots`` gives addresses, after the PCI controllers."""

_ENDPOINTS = frozenset({Connect.PCI_DEVICE, Connect.PCIE_DEVICE})
_SLOTS = 32
_NO_SLOTS = "No more available PCI slots"


@attrs.frozen
class _Flags:
    """libvirt's connect flags of a device: what it plugs into and how."""

    connect: Connect
    autoassign: bool = True
    integrated: bool = False
    aggregate: bool = False


_PCI_DUMMY = _Flags(Connect.PCI_DEVICE)
_PCIE_DUMMY = _Flags(Connect.PCIE_DEVICE)


class _Bus:
    """One bus of the address set: what it accepts, its slot range, the functions used."""

    def __init__(self, model: ControllerModel) -> None:
        self.model = model
        self.accepts: frozenset[Connect] = model.accepts
        self.autoassign = model.autoassign
        self.min_slot, self.max_slot = model.slots
        self.functions = [0] * _SLOTS
        self.aggregate = [False] * _SLOTS

    def fully_reserved(self) -> bool:
        return all(self.functions[s] for s in range(self.min_slot, self.max_slot + 1))


class _Failure(Exception):
    """libvirt would fail here; ``message`` is libvirt's text."""

    def __init__(self, message: str, *, config: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.config = config


class _Item:
    """A controller or device being addressed: its flags, its address, who it is."""

    def __init__(self, key: str, flags: _Flags | None, address: PciAddress | None, multi: bool | None) -> None:
        self.key = key
        self.flags = flags
        self.address = address
        self.multi = multi


class _Set:
    """libvirt's ``virDomainPCIAddressSet`` for one pass."""

    def __init__(self, assigner: _Assigner, nbuses: int, dry_run: bool) -> None:
        self.a = assigner
        self.dry_run = dry_run
        self.buses: list[_Bus] = []
        catalog = assigner.catalog
        models = {c.index: catalog.controller(c.model) for c in assigner.controllers}
        for i in range(nbuses):
            self.buses.append(_Bus(models.get(i) or assigner.default_model(i)))

    # -- growth (dry run only) ---------------------------------------------------

    def grow(self, bus: int, flags: _Flags) -> int:
        """Add buses so that ``bus`` exists, choosing the model from the device's flags; the bus to use."""
        add = bus - len(self.buses) + 1
        if add <= 0:
            return bus
        catalog = self.a.catalog
        pcie_bridge = dmi_bridge = False
        if flags.connect is Connect.PCI_DEVICE:
            if self.a.multiple_roots:
                model = catalog.controller("spapr-pci-host-bridge")
            else:
                model = catalog.controller("pci-bridge")
                if not any(Connect.PCI_BRIDGE in b.accepts for b in self.buses):
                    pcie_bridge = self.a.machine.offers("pcie-to-pci-bridge")
                    dmi_bridge = not pcie_bridge
                if (pcie_bridge or dmi_bridge) and add == 1:
                    add += 1
                    bus += 1
        elif flags.connect in (Connect.PCIE_DEVICE, Connect.PCIE_SWITCH_UPSTREAM_PORT):
            model = catalog.controller("pcie-root-port")
        else:
            existing = _CONTROLLER_FOR.get(flags.connect)
            if existing is not None:
                raise _Failure(
                    f"a PCI slot is needed to connect a PCI controller model='{existing}', "
                    "but none is available, and it cannot be automatically added"
                )
            raise _Failure(f"Cannot automatically add a new PCI bus for a device that needs a {flags.connect.phrase}")
        new: list[_Bus] = []
        if dmi_bridge:
            new.append(_Bus(catalog.controller("dmi-to-pci-bridge")))
        if pcie_bridge:
            port = _Bus(catalog.controller("pcie-root-port"))
            port.accepts = frozenset({Connect.PCIE_TO_PCI_BRIDGE})
            port.autoassign = False
            new.append(port)
            new.append(_Bus(catalog.controller("pcie-to-pci-bridge")))
        while len(new) < add:
            new.append(_Bus(model))
        self.buses.extend(new[:add])
        return bus

    # -- reservation ---------------------------------------------------------------

    def compatible(self, bus_index: int, flags: _Flags, *, from_config: bool) -> str | None:
        """Why a device with ``flags`` may not use ``bus_index`` (``None``: it may)."""
        bus = self.buses[bus_index]
        accepts = set(bus.accepts)
        autoassign = bus.autoassign
        if flags.integrated:
            if bus_index != 0:
                return "needs to be an integrated device (bus=0)"
            autoassign = True
        wanted = {flags.connect}
        if from_config:
            if accepts & _ENDPOINTS:
                accepts |= _ENDPOINTS
            if flags.connect is Connect.PCI_BRIDGE:
                wanted.add(Connect.PCI_DEVICE)
        elif flags.autoassign and not autoassign:
            return (
                f"was auto-assigned this address, but the PCI controller with index='{bus_index}' "
                "doesn't allow auto-assignment"
            )
        if not wanted & accepts:
            return (
                f"cannot be plugged into the PCI controller with index='{bus_index}'. "
                f"It requires a controller that accepts a {flags.connect.phrase}."
            )
        return None

    def validate(self, address: PciAddress, flags: _Flags, *, from_config: bool) -> None:
        if address.domain != 0:
            raise _Failure(f"Invalid PCI address {address}. Only PCI domain 0 is available", config=from_config)
        if address.bus >= len(self.buses):
            raise _Failure(
                f"Invalid PCI address {address}. Only PCI buses up to {len(self.buses) - 1} are available",
                config=from_config,
            )
        problem = self.compatible(address.bus, flags, from_config=from_config)
        if problem is not None:
            raise _Failure(f"The device at PCI address {address} {problem}", config=from_config)
        bus = self.buses[address.bus]
        if bus.min_slot and address.slot < bus.min_slot:
            raise _Failure(f"Invalid PCI address {address}. slot must be >= {bus.min_slot}", config=from_config)
        if address.slot > bus.max_slot:
            raise _Failure(f"Invalid PCI address {address}. slot must be <= {bus.max_slot}", config=from_config)

    def reserve(self, address: PciAddress, flags: _Flags, *, from_config: bool) -> PciAddress:
        """``virDomainPCIAddressReserveAddrInternal``: the address reserved (its bus may move when growing)."""
        if self.dry_run:
            bus = self.grow(address.bus, flags)
            if bus != address.bus:
                address = attrs.evolve(address, bus=bus)
        self.validate(address, flags, from_config=from_config)
        bus_state = self.buses[address.bus]
        bit = 1 << address.function
        if bus_state.functions[address.slot] & bit:
            raise _Failure(f"Attempted double use of PCI Address {address}", config=from_config)
        if not bus_state.functions[address.slot] and flags.aggregate:
            bus_state.aggregate[address.slot] = True
        bus_state.functions[address.slot] |= bit
        return address

    def mark(self, address: PciAddress) -> None:
        """Reserve a chipset function without checks (built-ins are always there)."""
        if address.bus < len(self.buses):
            self.buses[address.bus].functions[address.slot] |= 1 << address.function

    def in_use(self, address: PciAddress) -> bool:
        return address.bus < len(self.buses) and bool(self.buses[address.bus].functions[address.slot])

    def next_address(self, flags: _Flags, function: int | None = None, *, who: str | None = None) -> PciAddress:
        """``virDomainPCIAddressGetNextAddr``: first fit over buses and slots (grows in the dry run)."""
        forbidden = self.a.forbidden.get(who, frozenset()) if who is not None else frozenset()
        for index, bus in enumerate(self.buses):
            if index in forbidden or self.compatible(index, flags, from_config=False) is not None:
                continue
            for slot in range(bus.min_slot, bus.max_slot + 1):
                used = bus.functions[slot]
                if not used:
                    return PciAddress(bus=index, slot=slot, function=function or 0)
                if flags.aggregate and bus.aggregate[slot]:
                    wanted = function or 0
                    if not used & (1 << wanted):
                        return PciAddress(bus=index, slot=slot, function=wanted)
                    if function is None:
                        free = [f for f in range(8) if not used & (1 << f)]
                        if free:
                            return PciAddress(bus=index, slot=slot, function=free[0])
        if not self.dry_run:
            raise _Failure(_NO_SLOTS)
        first_new = len(self.buses)
        bus_index = self.grow(first_new, flags)
        return PciAddress(bus=bus_index, slot=self.buses[bus_index].min_slot, function=function or 0)

    def reserve_next(self, item: _Item, function: int | None = None) -> PciAddress:
        """``virDomainPCIAddressReserveNextAddr``: the address is kept only in the real pass."""
        assert item.flags is not None
        address = self.next_address(item.flags, function, who=item.key)
        address = self.reserve(address, item.flags, from_config=False)
        if not self.dry_run:
            item.address = address
            self.a.placed.append(item.key)
        return address


_CONTROLLER_FOR = {
    Connect.PCIE_ROOT_PORT: "pcie-root-port",
    Connect.PCIE_SWITCH_UPSTREAM_PORT: "pcie-switch-upstream-port",
    Connect.PCIE_SWITCH_DOWNSTREAM_PORT: "pcie-switch-downstream-port",
    Connect.DMI_TO_PCI_BRIDGE: "dmi-to-pci-bridge",
    Connect.PCI_EXPANDER_BUS: "pci-expander-bus",
    Connect.PCIE_EXPANDER_BUS: "pcie-expander-bus",
    Connect.PCI_BRIDGE: "pci-bridge",
}


class _Assigner:
    """One run of the assignment over a topology (with some placements forbidden)."""

    def __init__(self, topology: Topology, forbidden: dict[str, frozenset[int]]) -> None:
        self.topology = topology
        self.machine = topology.machine
        self.catalog = topology.catalog
        self.forbidden = forbidden
        self.multiple_roots = self.machine.max_host_bridges > 1
        self.pcie_root = self.machine.root_model == "pcie-root"
        self.controllers: list[Controller] = list(topology.controllers)
        self.items: dict[str, _Item] = {}
        for c in self.controllers:
            model = self.catalog.controller(c.model)
            flags = (
                None if model.root or model.connect is None else _Flags(model.connect, False, False, model.aggregate)
            )
            self.items[_ckey(c.index)] = _Item(_ckey(c.index), flags, c.address, c.multifunction)
        for d in topology.devices:
            kind = self.catalog.device(d.kind)
            flags = _Flags(
                kind.connect_on(pcie=self.machine.pcie),
                integrated=kind.integrated is Integrated.REQUIRED,
            )
            self.items[_dkey(d.id)] = _Item(_dkey(d.id), flags, d.address, d.multifunction)
        self.placed: list[str] = []
        self.max_index = max(c.index for c in self.controllers)

    def default_model(self, index: int) -> ControllerModel:
        """The model of a bus between the declared ones (an index gap)."""
        if index == 0:
            return self.catalog.controller(self.machine.root_model)
        if self.multiple_roots:
            return self.catalog.controller("spapr-pci-host-bridge")
        if self.pcie_root:
            return self.catalog.controller("pcie-root-port")
        return self.catalog.controller("pci-bridge")

    # -- the passes -----------------------------------------------------------------

    def run(self) -> None:
        nbuses = self.max_index + 1
        dry = self._create(nbuses, dry_run=True)
        self._chipset(dry)
        if self.machine.root_model == "pci-root" and not all(b.fully_reserved() for b in dry.buses):
            dry.reserve_next(_Item("dummy", _PCI_DUMMY, None, None))
        self._assign(dry)
        if self.pcie_root and self.max_index <= 0 and len(dry.buses) > self.max_index + 1:
            dry.reserve_next(_Item("dummy", _PCIE_DUMMY, None, None))
        i = 1
        while i < len(dry.buses):
            if _ckey(i) not in self.items:
                model = dry.buses[i].model
                controller = Controller(i, model.name)
                self.controllers.append(controller)
                flags = (
                    None
                    if model.root or model.connect is None
                    else _Flags(model.connect, False, False, model.aggregate)
                )
                item = _Item(_ckey(i), flags, None, None)
                self.items[item.key] = item
                if flags is not None:
                    dry.reserve_next(item)
            i += 1
        self.controllers.sort(key=lambda c: c.index)
        real = self._create(len(dry.buses), dry_run=False)
        self._chipset(real)
        self._assign(real)

    def _create(self, nbuses: int, *, dry_run: bool) -> _Set:
        """``qemuDomainPCIAddressSetCreate``: the buses, then every address already given."""
        addrs = _Set(self, nbuses, dry_run)
        for key in self._collect_order():
            item = self.items[key]
            if item.address is None or item.flags is None:
                continue
            builtin = self.machine.builtin_at(item.address)
            if builtin is not None and key.startswith("d:"):
                continue  # a device standing for a built-in: reserved with the chipset
            try:
                reserved = addrs.reserve(item.address, item.flags, from_config=True)
            except _Failure as exc:
                raise InvalidInput(self._label(key), exc.message) from None
            if reserved != item.address:  # never for a valid input
                item.address = reserved
        return addrs

    def _collect_order(self) -> list[str]:
        devices = sorted(
            (d for d in self.topology.devices),
            key=lambda d: _COLLECT_ORDER.get(self.catalog.device(d.kind).device_class, len(_COLLECT_ORDER)),
        )
        controllers_at = _COLLECT_ORDER["controller"]
        keys: list[str] = []
        emitted = False
        for d in devices:
            rank = _COLLECT_ORDER.get(self.catalog.device(d.kind).device_class, len(_COLLECT_ORDER))
            if not emitted and rank >= controllers_at:
                keys.extend(_ckey(c.index) for c in self.controllers)
                emitted = True
            keys.append(_dkey(d.id))
        if not emitted:
            keys.extend(_ckey(c.index) for c in self.controllers)
        return keys

    def _chipset(self, addrs: _Set) -> None:
        """The machine's fixed and preferred positions (``qemuDomainValidateDevicePCISlotsChipsets``)."""
        machine = self.machine
        for b in machine.builtins:
            if b.stands_for is not None:
                holder = next(
                    (
                        d
                        for d in self.topology.devices
                        if d.kind == b.stands_for and self.items[_dkey(d.id)].address == b.address
                    ),
                    None,
                )
                if holder is None:
                    holder = next(
                        (
                            d
                            for d in self.topology.devices
                            if d.kind == b.stands_for and self.items[_dkey(d.id)].address is None
                        ),
                        None,
                    )
                    if holder is not None:
                        self.items[_dkey(holder.id)].address = b.address
                if holder is None and b.optional:
                    continue
            if b.address.bus == 0 and b.address.slot >= addrs.buses[0].min_slot:
                addrs.mark(b.address)
        preferred = machine.preferred
        if not preferred:
            return
        for address_list, items in (
            (preferred.get("usb2", ()), self._usb2_first()),
            (preferred.get("dmi-to-pci-bridge", ()), self._unaddressed_controllers("dmi-to-pci-bridge")),
        ):
            for item in items:
                for address in address_list:
                    if not addrs.in_use(address):
                        assert item.flags is not None
                        addrs.mark(address)
                        item.address = address
                        if item.key.startswith("d:"):
                            item.multi = True
                        break
        video = next(
            (d for d in self.topology.devices if self.catalog.device(d.kind).device_class == "video"),
            None,
        )
        spots = preferred.get("primary-video", ())
        if video is not None and spots:
            item = self.items[_dkey(video.id)]
            if item.address is None:
                if addrs.in_use(spots[0]):
                    addrs.reserve_next(item)
                else:
                    addrs.mark(spots[0])
                    item.address = spots[0]
        for spot in preferred.get("ich9-sound", ()):
            if addrs.in_use(spot):
                continue
            sound = next(
                (d for d in self.topology.devices if d.kind == "ich9" and self.items[_dkey(d.id)].address is None),
                None,
            )
            if sound is not None:
                addrs.mark(spot)
                self.items[_dkey(sound.id)].address = spot

    def _usb2_first(self) -> list[_Item]:
        """The first-function (uhci1) companion of each USB2 set without an address."""
        return [
            self.items[_dkey(d.id)]
            for d in self.topology.devices
            if self.catalog.device(d.kind).usb2_function == 0 and self.items[_dkey(d.id)].address is None
        ]

    def _unaddressed_controllers(self, model: str) -> list[_Item]:
        return [
            self.items[_ckey(c.index)]
            for c in self.controllers
            if c.model == model and self.items[_ckey(c.index)].address is None
        ]

    def _assign(self, addrs: _Set) -> None:
        """``qemuDomainAssignDevicePCISlots``: controllers, then devices class by class."""
        for c in sorted(self.controllers, key=lambda c: c.index):
            item = self.items[_ckey(c.index)]
            if item.flags is None or item.address is not None:
                continue
            addrs.reserve_next(item)
        usb2_sets = self._usb2_sets()
        by_class: dict[str, list[Device]] = {}
        for d in self.topology.devices:
            by_class.setdefault(self.catalog.device(d.kind).device_class, []).append(d)
        order = list(CLASS_ORDER) + sorted(set(by_class) - set(CLASS_ORDER))
        for cls in order:
            for d in by_class.get(cls, ()):
                item = self.items[_dkey(d.id)]
                if item.address is not None:
                    continue
                function = self.catalog.device(d.kind).usb2_function
                if function is None:
                    addrs.reserve_next(item)
                    continue
                sibling = next(
                    (
                        self.items[_dkey(s.id)].address
                        for s in usb2_sets[d.id]
                        if self.items[_dkey(s.id)].address is not None
                    ),
                    None,
                )
                if sibling is not None:
                    assert item.flags is not None
                    address = sibling.with_function(function)
                    try:
                        addrs.reserve(address, item.flags, from_config=True)
                    except _Failure as exc:
                        raise InvalidInput(self._label(item.key), exc.message) from None
                    item.address = address
                else:
                    if not any(self.catalog.device(s.kind).usb2_function == 0 for s in usb2_sets[d.id]):
                        # libvirt 9.0 puts a set without a UHCI1 at its own function of an empty
                        # slot (ich9-ehci1 alone at .7); guests scan function 0 first and never
                        # find it, so pcitopo takes function 0 instead (the function-zero rule)
                        function = 0
                    addrs.reserve_next(item, function)
                if function == 0:
                    item.multi = True

    def _usb2_sets(self) -> dict[str, list[Device]]:
        """Each USB2 companion's set (one controller index): runs in definition order."""
        sets: dict[str, list[Device]] = {}
        current: list[Device] = []
        seen: set[int] = set()
        for d in self.topology.devices:
            function = self.catalog.device(d.kind).usb2_function
            if function is None:
                continue
            if function in seen:
                current, seen = [], set()
            current.append(d)
            seen.add(function)
            sets[d.id] = current
        return sets

    # -- finishing ---------------------------------------------------------------------

    def result(self) -> Topology:
        """The completed topology: addresses, multifunction, target values."""
        items = self.items
        by_slot: dict[tuple[int, int, int], list[_Item]] = {}
        for key in self._collect_order():
            item = items[key]
            if item.address is not None:
                a = item.address
                by_slot.setdefault((a.domain, a.bus, a.slot), []).append(item)
        for group in by_slot.values():
            if any(i.address is not None and i.address.function != 0 for i in group):
                first = next((i for i in group if i.address is not None and i.address.function == 0), None)
                if first is not None and first.multi is None:
                    first.multi = True
        controllers: list[Controller] = []
        for c in sorted(self.controllers, key=lambda c: c.index):
            item = items[_ckey(c.index)]
            controllers.append(attrs.evolve(c, address=item.address, multifunction=item.multi))
        finished: list[Controller] = []
        for c in controllers:
            c = self._targets(c, finished + controllers[len(finished) :])
            finished.append(c)
        devices = []
        for d in self.topology.devices:
            item = items[_dkey(d.id)]
            devices.append(attrs.evolve(d, address=item.address, multifunction=item.multi))
        return self.topology.replace(controllers=finished, devices=devices)

    def _targets(self, c: Controller, current: Sequence[Controller]) -> Controller:
        model = self.catalog.controller(c.model)
        changes: dict[str, Any] = {}
        if c.qemu_model is None:
            if model.qemu_device is not None:
                changes["qemu_model"] = model.qemu_device
            elif c.index == 0 and self.machine.root_qemu is not None:
                changes["qemu_model"] = self.machine.root_qemu
        a = c.address
        if c.model == "pci-bridge":
            if c.chassis_nr is None:
                changes["chassis_nr"] = c.index
            if a is not None and c.index <= a.bus:
                raise Unsatisfiable(
                    [
                        f"PCI controller at index {c.index} (0x{c.index:02x}) has bus='0x{a.bus:02x}', "
                        "but index must be larger than bus"
                    ]
                )
        elif model.connect in (Connect.PCIE_ROOT_PORT, Connect.PCIE_SWITCH_DOWNSTREAM_PORT) and a is not None:
            # the numbers themselves come from legality/identity; the refusals keep libvirt's words
            if c.chassis is None:
                changes["chassis"] = c.index
            if c.port is None:
                changes["port"] = identity.default_port(model, a)
        elif model.expander and c.bus_nr is None:
            nr = identity.next_bus_nr(x.bus_nr for x in current if x.bus_nr is not None)
            if nr is None:
                raise Unsatisfiable(
                    [
                        "No free busNr lower than current lowest busNr is available to auto-assign "
                        f"to bus {a.bus if a is not None else 0}. Must be manually assigned"
                    ]
                )
            changes["bus_nr"] = nr
        elif self.multiple_roots and model.root and c.target_index is None:
            if c.index == 0:
                changes["target_index"] = 0
            else:
                # libvirt looks only at the host bridges before this one
                earlier = (x.target_index for x in current if x.index < c.index and x.target_index is not None)
                target = identity.next_target_index(earlier)
                if target is None:
                    last = identity.TARGET_INDEX[-1]
                    raise Unsatisfiable([f"PCI controller target index '{last + 1}' out of range - must be 0-{last}"])
                changes["target_index"] = target
        return attrs.evolve(c, **changes) if changes else c

    def _label(self, key: str) -> str:
        kind, _, name = key.partition(":")
        return f"controller index {name}" if kind == "c" else f"device {name!r}"


_COLLECT_ORDER = {
    cls: rank
    for rank, cls in enumerate(
        (
            "disk",
            "net",
            "sound",
            "hostdev",
            "video",
            "controller",
            "serial",
            "input",
            "filesystem",
            "watchdog",
            "memballoon",
            "rng",
            "shmem",
            "panic",
            "memory",
            "iommu",
            "vsock",
            "crypto",
        )
    )
}
"""The order ``virDomainDeviceInfoIterate`` visits device classes (only growth from pinned addresses cares)."""


def _controller_flags(model: ControllerModel) -> _Flags | None:
    """A controller's connect flags (never AUTOASSIGN); ``None`` for roots, which plug into nothing."""
    if model.root or model.connect is None:
        return None
    return _Flags(model.connect, autoassign=False, aggregate=model.aggregate)


def _ckey(index: int) -> str:
    return f"c:{index}"


def _dkey(ident: str) -> str:
    return f"d:{ident}"


def libvirt_assign(topology: Topology) -> Topology:
    """Address every controller and device of ``topology`` as libvirt 9.0 would; add the controllers it adds.

    Pinned addresses stay; the input is not changed. Raises
    :class:`~pcitopo.errors.Unsatisfiable` with libvirt's reason where libvirt
    fails (``No more available PCI slots``, a controller that cannot be
    added), and :class:`~pcitopo.errors.InvalidInput` for a pinned address
    libvirt refuses (with libvirt's message).

    >>> from pcitopo.devices import Device
    >>> t = Topology.build("pc", devices=[Device("vga0", "vga"), Device("net0", "virtio-net")])
    >>> [str(d.address) for d in libvirt_assign(t).devices]
    ['0000:00:02.0', '0000:00:03.0']
    """
    forbidden: dict[str, frozenset[int]] = {}
    limit = 1 + len(topology.controllers) * 4
    for _ in range(limit):
        run = _Assigner(topology, forbidden)
        try:
            run.run()
        except _Failure as exc:
            raise Unsatisfiable([exc.message], facts=_facts(topology)) from None
        result = run.result()
        cycles = result.controller_cycles()
        if not cycles:
            return result
        culprit = _first_placed(run.placed, cycles, result)
        if culprit is None:
            break
        index, bus = culprit
        forbidden[_ckey(index)] = forbidden.get(_ckey(index), frozenset()) | {bus}
    raise Unsatisfiable(
        [f"controllers {cycles} plug into each other, and no other placement is left in libvirt's order"],
        facts=_facts(topology),
    )


def _first_placed(placed: Iterable[str], cycles: list[list[int]], result: Topology) -> tuple[int, int] | None:
    """The auto-placed controller of a cycle that was placed first, and the bus it took."""
    in_cycle = {i for cycle in cycles for i in cycle}
    for key in placed:
        if key.startswith("c:"):
            index = int(key[2:])
            address = result.controller(index).address
            if index in in_cycle and address is not None:
                return index, address.bus
    return None


def _facts(topology: Topology) -> list[str]:
    return [
        f"machine {topology.machine.name}",
        f"{len(topology.devices)} devices, {len(topology.controllers)} controllers",
    ]
