"""A topology as a QEMU command line.

:func:`qemu_args` gives one ``-device`` per controller (the root bus is the
machine's own) and per endpoint, parents before children, every one with
``id``, ``bus`` and ``addr``. Controllers carry the identity QEMU needs
(``chassis``/``port``, ``chassis_nr``, ``bus_nr``, ``numa_node``, ``index``);
where the topology leaves one unset, libvirt's default from
:mod:`pcitopo.legality.identity` is used (chassis = controller index,
root-port ``port`` = its devfn, downstream-port ``port`` = its slot,
``chassis_nr`` = index, ``bus_nr`` = 254, 252, ... below the lowest one set,
PHB ``index`` = the lowest free one), and
:class:`~pcitopo.errors.InvalidTopology` says when libvirt has none left.

>>> from pcitopo.address import PciAddress
>>> from pcitopo.devices import Controller, Device
>>> from pcitopo.topology import Topology
>>> t = Topology.build("q35",
...     [Controller(1, "pcie-root-port", address=PciAddress.parse("00:01.0"), chassis=1, port=8)],
...     [Device("net0", "virtio-net", address=PciAddress.parse("01:00.0"))])
>>> qemu_args(t, extra={"net0": {"netdev": "hostnet0"}})  # doctest: +NORMALIZE_WHITESPACE
['-device', 'pcie-root-port,id=pci.1,bus=pcie.0,addr=0x1,chassis=1,port=0x8',
 '-device', 'virtio-net-pci,id=net0,bus=pci.1,addr=0x0,netdev=hostnet0']
>>> qemu_args(t, syntax="json")[3]
'{"driver":"virtio-net-pci","id":"net0","bus":"pci.1","addr":"0x0"}'
>>> machine_args(t)
['-machine', 'q35', '-m', '128', '-smp', '1']

Arguments beyond placement (``netdev=``, ``drive=``, ``mac=``) are the
caller's: ``extra`` maps a device or controller id to properties that are
appended, in the mapping's order, after the ones pcitopo sets. They may not
repeat a property pcitopo sets (``id``, ``bus``, ``addr``, ``multifunction``,
the identity properties, and ``acpi-index`` for a device that has one). In
keyval syntax a comma inside a value is doubled, as QEMU expects; in JSON
syntax values keep their Python type.
"""

from __future__ import annotations

import heapq
import json
from collections.abc import Iterable, Mapping
from typing import Literal

import attrs

from pcitopo.address import PciAddress
from pcitopo.devices import Controller, Device
from pcitopo.errors import InternalError, InvalidInput
from pcitopo.legality import identity
from pcitopo.legality.catalog import Hotplug
from pcitopo.topology import Topology

__all__ = ["DeviceSpec", "Syntax", "Value", "device_specs", "machine_args", "qemu_args"]


def __dir__() -> list[str]:
    return __all__


Syntax = Literal["keyval", "json"]
Value = str | int | bool
"""A property value: a string, an int or a bool (``on``/``off`` in keyval syntax)."""

# identity name in controllers.toml -> (Controller attribute, QEMU property, hexadecimal in keyval)
_IDENTITY: Mapping[str, tuple[str, str, bool]] = {
    "chassis": ("chassis", "chassis", False),
    "port": ("port", "port", True),
    "chassis-nr": ("chassis_nr", "chassis_nr", False),
    "bus-nr": ("bus_nr", "bus_nr", False),
    "target-index": ("target_index", "index", False),
    "numa-node": ("numa_node", "numa_node", False),
}
_HEX = frozenset(prop for _, prop, hexa in _IDENTITY.values() if hexa)


@attrs.frozen
class _Start:
    """What a shipped machine needs to start, beyond ``-machine TYPE``."""

    machine_type: str | None = None
    options: tuple[str, ...] = ()
    memory: int = 128
    """MiB without NUMA nodes."""
    node_memory: int = 64
    """MiB per NUMA node."""


# The arm virt default CPU is 32-bit, which silently turns highmem (and with it the
# 256-bus ECAM) off; pseries wants its memory, and each NUMA node's, aligned to 256 MiB.
_START: Mapping[str, _Start] = {
    "aarch64-virt": _Start("virt", ("-cpu", "cortex-a57")),
    "aarch64-virt-highmem-off": _Start("virt,highmem=off", ("-cpu", "cortex-a57")),
    "pseries": _Start(memory=256, node_memory=256),
}


@attrs.frozen
class DeviceSpec:
    """One ``-device``: the driver and its properties, in command-line order.

    ``address`` is the planned address (its ``bus`` is a controller index),
    ``bus`` the QEMU bus name; both are ``None`` for a pseries host bridge,
    which sits on no PCI bus.
    """

    driver: str
    id: str
    bus: str | None
    address: PciAddress | None
    properties: tuple[tuple[str, Value], ...]
    controller: bool = False

    def keyval(self) -> str:
        """The ``driver,key=value,...`` form.

        >>> DeviceSpec("e1000", "n0", "pci.0", None, (("id", "n0"), ("romfile", "a,b"), ("x", True))).keyval()
        'e1000,id=n0,romfile=a,,b,x=on'
        """
        parts = [self.driver]
        for key, value in self.properties:
            parts.append(f"{key}={_keyval(key, value)}")
        return ",".join(parts)

    def json(self) -> str:
        """The ``{"driver": ...}`` form QEMU 7.2 takes after ``-device``."""
        data: dict[str, Value] = {"driver": self.driver}
        data.update(self.properties)
        return json.dumps(data, separators=(",", ":"))

    def get(self, key: str) -> Value | None:
        """The value of one property, or ``None``."""
        return dict(self.properties).get(key)


def _keyval(key: str, value: Value) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, int):
        return f"{value:#x}" if key in _HEX else str(value)
    return value.replace(",", ",,")


def device_specs(
    topology: Topology, *, extra: Mapping[str, Mapping[str, Value]] | None = None
) -> tuple[DeviceSpec, ...]:
    """The ``-device`` list of a complete topology, parents before children.

    Controllers come in topological order over the graph (siblings by
    index), then endpoints by address, but a kind QEMU starts only as the
    first display device (qxl-vga, :attr:`DeviceKind.first_display
    <pcitopo.legality.catalog.DeviceKind.first_display>`) before every other
    endpoint: the order of ``-device`` options moves no device that has an
    address. Devices that stand for a built-in
    device of the machine (libvirt's SATA controller at q35's 00:1f.2) are the
    machine's own and are left out.
    """
    extra = dict(extra or {})
    _check_complete(topology)
    ids = {c.name for c in topology.controllers} | {d.id for d in topology.devices}
    unknown = sorted(set(extra) - ids)
    if unknown:
        raise InvalidInput("extra", f"no device or controller with id {', '.join(repr(u) for u in unknown)}")
    specs: list[DeviceSpec] = []
    defaults = identity.defaults(topology)
    for c in _controller_order(topology):
        if c.index == 0:
            continue
        specs.append(_controller_spec(topology, c, defaults.get(c.index, {}), extra.get(c.name, {})))
    builtin_standins = {
        d.id
        for d in topology.devices
        if d.address is not None
        and (b := topology.machine.builtin_at(d.address)) is not None
        and b.stands_for == d.kind
    }
    order = {c.index: i for i, c in enumerate(_controller_order(topology))}
    first = {d.id for d in topology.devices if topology.catalog.device(d.kind).first_display}
    endpoints = sorted(
        (d for d in topology.devices if d.id not in builtin_standins),
        key=lambda d: (
            (d.id not in first, order[d.address.bus], d.address) if d.address is not None else (True, 0, PciAddress())
        ),
    )
    for d in endpoints:
        specs.append(_device_spec(topology, d, extra.get(d.id, {})))
    return tuple(specs)


def qemu_args(
    topology: Topology,
    *,
    syntax: Syntax = "keyval",
    extra: Mapping[str, Mapping[str, Value]] | None = None,
) -> list[str]:
    """The ``-device`` arguments (and any ``-global`` the root bus needs) of a complete topology.

    ``syntax`` is ``"keyval"`` (``-device driver,k=v``) or ``"json"``
    (``-device {"driver": ...}``) for every device: QEMU 7.2 creates keyval
    devices before JSON ones, so mixing them would reorder parents and
    children. Raises :class:`~pcitopo.errors.InvalidInput` naming every
    device or controller that has no address yet.
    """
    if syntax not in ("keyval", "json"):
        raise InvalidInput("syntax", f"must be 'keyval' or 'json' (got {syntax!r})")
    args = _root_globals(topology) + _mmio64_args(topology)
    for spec in device_specs(topology, extra=extra):
        args += ["-device", spec.keyval() if syntax == "keyval" else spec.json()]
    return args


def machine_args(topology: Topology, *, machine_type: str | None = None, memory: int | None = None) -> list[str]:
    """``-machine``, ``-cpu`` (where needed), ``-m``, ``-smp`` and ``-numa`` for an empty VM of this topology.

    ``machine_type`` defaults to the description's plain machine type
    (``q35``, ``pc``, ``virt``, ``pseries``). ``memory`` is in MiB: by
    default 128 (256 on pseries), or enough for every NUMA node of the
    topology (each gets an equal share and one CPU).

    >>> from pcitopo.topology import Topology
    >>> machine_args(Topology.default("pc", numa_nodes=2, acpi=False))  # doctest: +NORMALIZE_WHITESPACE
    ['-machine', 'pc,acpi=off', '-m', '128', '-smp', '2',
     '-object', 'memory-backend-ram,id=pcitopo-ram0,size=64M', '-numa', 'node,nodeid=0,cpus=0,memdev=pcitopo-ram0',
     '-object', 'memory-backend-ram,id=pcitopo-ram1,size=64M', '-numa', 'node,nodeid=1,cpus=1,memdev=pcitopo-ram1']
    """
    machine = topology.machine
    start = _START.get(machine.name, _Start())
    if machine_type is None:
        plain = [t for t in machine.machine_types if not any(ch in t for ch in "*?[")]
        machine_type = start.machine_type or (plain[0] if plain else None)
        if machine_type is None:
            raise InvalidInput(
                f"machine {machine.name!r}", "names no plain QEMU machine type; pass machine_type= explicitly"
            )
    if not topology.acpi and any(a in ("x86_64", "i686", "aarch64") for a in machine.arches):
        machine_type += ",acpi=off"
    nodes = topology.numa_nodes
    if memory is None:
        memory = start.node_memory * nodes if nodes else start.memory
    if memory < 1 or (nodes and memory // nodes < 1):
        raise InvalidInput("memory", f"must give every NUMA node at least 1 MiB (got {memory} MiB for {nodes} nodes)")
    each = memory // nodes if nodes else memory
    args = [
        "-machine",
        machine_type,
        *start.options,
        "-m",
        str(each * nodes if nodes else memory),
        "-smp",
        str(max(nodes, 1)),
    ]
    for node in range(nodes):
        args += [
            "-object",
            f"memory-backend-ram,id=pcitopo-ram{node},size={each}M",
            "-numa",
            f"node,nodeid={node},cpus={node},memdev=pcitopo-ram{node}",
        ]
    return args


# -- internals ----------------------------------------------------------------------------


def _check_complete(topology: Topology) -> None:
    missing = [
        c.name for c in topology.controllers if c.index != 0 and c.address is None and not topology.model(c).root
    ] + [d.id for d in topology.devices if d.address is None]
    if missing:
        names = ", ".join(repr(m) for m in missing)
        raise InvalidInput("topology", f"no address for {names}; solve the topology before exporting it")
    problems = []
    for c in topology.controllers:
        if c.address is not None and not topology.has_bus(c.address.bus):
            problems.append(
                f"controller {c.name!r} is at {c.address}, on bus {c.address.bus} that no controller provides"
            )
    for d in topology.devices:
        if d.address is not None and not topology.has_bus(d.address.bus):
            problems.append(f"device {d.id!r} is at {d.address}, on bus {d.address.bus} that no controller provides")
    cycles = topology.controller_cycles()
    for cycle in cycles:
        names = " -> ".join(topology.controller(i).name for i in cycle)
        problems.append(f"controllers plug into each other: {names}")
    if problems:
        raise InvalidInput("topology", "; ".join(problems))


def _controller_order(topology: Topology) -> list[Controller]:
    """Controllers parents first, the lowest index first among those ready (a lexicographic topological sort)."""
    children: dict[int, list[int]] = {}
    waiting: dict[int, int] = {}  # controller index -> parents not yet listed (0 or 1)
    for c in topology.controllers:
        waiting.setdefault(c.index, 0)
        if c.address is not None and c.index != 0:
            children.setdefault(c.address.bus, []).append(c.index)
            waiting.setdefault(c.address.bus, 0)
            waiting[c.index] += 1
    ready = [i for i, n in waiting.items() if n == 0]
    heapq.heapify(ready)
    order: list[int] = []
    while ready:
        i = heapq.heappop(ready)
        order.append(i)
        for child in children.get(i, ()):
            waiting[child] -= 1
            if not waiting[child]:
                heapq.heappush(ready, child)
    if len(order) != len(waiting):  # pragma: no cover - _check_exportable refuses cycles first
        raise InternalError("controllers plug into each other; no order to create them in")
    return [topology.controller(i) for i in order]


def _placement(topology: Topology, address: PciAddress) -> list[tuple[str, Value]]:
    return [("bus", topology.bus_name(address.bus)), ("addr", address.qemu_addr)]


def _controller_spec(
    topology: Topology, c: Controller, defaults: Mapping[str, int], extra: Mapping[str, Value]
) -> DeviceSpec:
    model = topology.model(c)
    driver = c.qemu_model or model.qemu_device
    if driver is None:
        raise InvalidInput(f"controller {c.name!r}", f"model {model.name} has no QEMU device")
    props: list[tuple[str, Value]] = [("id", c.name)]
    if c.address is not None:
        props += _placement(topology, c.address)
    if c.multifunction is not None:
        props.append(("multifunction", c.multifunction))
    for name in model.identity:
        attr, prop, _ = _IDENTITY[name]
        value = getattr(c, attr)
        if value is None:
            value = defaults.get(attr)
        if value is not None:
            props.append((prop, value))
    if model.hotplug is Hotplug.DEFAULT_ON and c.hotplug is False:
        props.append(("hotplug", False))
    if c.io_reserve is not None:
        if not model.takes_io_reserve(driver):
            raise InvalidInput(f"controller {c.name!r}", f"QEMU's {driver} has no io-reserve property")
        props.append(("io-reserve", c.io_reserve))
    props += _extra(f"controller {c.name!r}", props, extra)
    bus = topology.bus_name(c.address.bus) if c.address is not None else None
    return DeviceSpec(driver, c.name, bus, c.address, tuple(props), controller=True)


def _device_spec(topology: Topology, d: Device, extra: Mapping[str, Value]) -> DeviceSpec:
    assert d.address is not None  # _check_complete
    driver = topology.kind(d).qemu_device
    props: list[tuple[str, Value]] = [("id", d.id), *_placement(topology, d.address)]
    if d.multifunction is not None:
        props.append(("multifunction", d.multifunction))
    kind = topology.kind(d)
    if d.memory is not None and kind.memory_property is not None and kind.memory_bar is not None:
        size = next(b.size for b in topology.bars(d) if b.index == kind.memory_bar)
        props.append((kind.memory_property, size >> 20 if kind.memory_property.endswith("_mb") else size))
    if d.acpi_index is not None:
        props.append(("acpi-index", d.acpi_index))
    props += _extra(f"device {d.id!r}", props, extra)
    return DeviceSpec(driver, d.id, topology.bus_name(d.address.bus), d.address, tuple(props))


_RESERVED = frozenset({"id", "bus", "addr", "multifunction", "driver"})


def _extra(who: str, props: Iterable[tuple[str, Value]], extra: Mapping[str, Value]) -> list[tuple[str, Value]]:
    taken = {k for k, _ in props} | _RESERVED
    clash = sorted(k for k in extra if k in taken)
    if clash:
        raise InvalidInput(who, f"extra properties may not set {', '.join(clash)}: pcitopo sets them")
    for key, value in extra.items():
        if not isinstance(value, str | int | bool):
            raise InvalidInput(who, f"extra property {key} must be a str, int or bool (got {value!r})")
    return list(extra.items())


_PCI_HOSTS = {"pcie-root": "q35-pcihost", "pci-root": "i440FX-pcihost"}
"""The QEMU host bridge device of an x86 root bus, which owns ``pci-hole64-size``."""


def _mmio64_args(topology: Topology) -> list[str]:
    """The 64-bit MMIO window the topology asks for: OVMF's fw_cfg knob, else the host bridge's pci-hole64-size.

    >>> t = Topology.build("q35", firmware="ovmf", mmio64=512 << 30)
    >>> _mmio64_args(t)
    ['-fw_cfg', 'name=opt/ovmf/X-PciMmio64Mb,string=524288']
    >>> _mmio64_args(Topology.build("pc", mmio64=64 << 30))
    ['-global', 'i440FX-pcihost.pci-hole64-size=68719476736']
    """
    fw = topology.firmware_model
    if topology.mmio64 is None or fw is None:
        return []
    if fw.mmio64_knob:
        return ["-fw_cfg", f"name={fw.mmio64_knob},string={topology.mmio64 >> 20}"]
    host = _PCI_HOSTS.get(topology.machine.root_model)
    return [] if host is None else ["-global", f"{host}.pci-hole64-size={topology.mmio64}"]


def _root_globals(topology: Topology) -> list[str]:
    root = topology.controller(0)
    if root.hotplug is not False or not topology.machine.root_hotplug:
        return []
    if any(b.qemu_device == "PIIX4_PM" for b in topology.machine.builtins):
        return ["-global", "PIIX4_PM.acpi-root-pci-hotplug=off"]
    raise InvalidInput(
        f"controller {root.name!r}", f"QEMU cannot turn hotplug off on the root bus of {topology.machine.name}"
    )
