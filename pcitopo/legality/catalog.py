"""The catalog: controller models and endpoint device kinds, loaded from data files.

Legality lives in ``pcitopo/legality/data/controllers.toml`` and
``devices.toml``; this module only reads them into frozen values.

>>> cat = Catalog.default()
>>> rp = cat.controller("pcie-root-port")
>>> rp.qemu_device, rp.slots, sorted(c.value for c in rp.accepts)
('pcie-root-port', (0, 0), ['pcie-device', 'pcie-switch-upstream-port', 'pcie-to-pci-bridge'])
>>> cat.device("virtio-net-transitional").connect
<Connect.PCI_DEVICE: 'pci-device'>
>>> cat.controller("pcie-rot-port")
Traceback (most recent call last):
  ...
pcitopo.errors.UnknownName: unknown controller model 'pcie-rot-port'; did you mean 'pcie-root-port'?
"""

from __future__ import annotations

import enum
import functools
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import attrs

from pcitopo._frozen import FrozenDict
from pcitopo.devices import Bar
from pcitopo.errors import InvalidDescription, UnknownName
from pcitopo.legality._toml import Table, load_packaged, load_path

if TYPE_CHECKING:
    from pathlib import Path

__all__ = [
    "TARGET_OPTIONS",
    "Catalog",
    "Connect",
    "ControllerModel",
    "DeviceKind",
    "Hotplug",
    "Integrated",
    "IoBar",
]


def __dir__() -> list[str]:
    return __all__


class Connect(enum.Enum):
    """What a device needs from the bus it plugs into, and what a bus accepts."""

    PCI_DEVICE = "pci-device"
    PCIE_DEVICE = "pcie-device"
    PCIE_ROOT_PORT = "pcie-root-port"
    PCIE_SWITCH_UPSTREAM_PORT = "pcie-switch-upstream-port"
    PCIE_SWITCH_DOWNSTREAM_PORT = "pcie-switch-downstream-port"
    DMI_TO_PCI_BRIDGE = "dmi-to-pci-bridge"
    PCIE_TO_PCI_BRIDGE = "pcie-to-pci-bridge"
    PCI_BRIDGE = "pci-bridge"
    PCI_EXPANDER_BUS = "pci-expander-bus"
    PCIE_EXPANDER_BUS = "pcie-expander-bus"

    @property
    def phrase(self) -> str:
        """How libvirt names what a bus must accept for this connect type."""
        return _PHRASES[self]


_PHRASES = {
    Connect.PCI_DEVICE: "standard PCI device",
    Connect.PCIE_DEVICE: "PCI Express device",
    Connect.PCIE_ROOT_PORT: "pcie-root-port",
    Connect.PCIE_SWITCH_UPSTREAM_PORT: "pcie-switch-upstream-port",
    Connect.PCIE_SWITCH_DOWNSTREAM_PORT: "pcie-switch-downstream-port",
    Connect.DMI_TO_PCI_BRIDGE: "dmi-to-pci-bridge",
    Connect.PCIE_TO_PCI_BRIDGE: "pcie-to-pci-bridge",
    Connect.PCI_BRIDGE: "pci-bridge",
    Connect.PCI_EXPANDER_BUS: "pci-expander-bus",
    Connect.PCIE_EXPANDER_BUS: "pcie-expander-bus",
}


class Hotplug(enum.Enum):
    """Whether the slots of a controller's bus accept hot-plugged devices."""

    NEVER = "never"
    ALWAYS = "always"
    DEFAULT_ON = "default-on"


class Integrated(enum.Enum):
    """Whether an endpoint kind may sit directly on a PCI Express root bus."""

    ALLOWED = "allowed"
    REQUIRED = "required"
    FORBIDDEN = "forbidden"


class IoBar(enum.Enum):
    """When an endpoint kind has an IO BAR (and so needs an IO window above it)."""

    ALWAYS = "always"
    NEVER = "never"
    LEGACY = "legacy"


@attrs.frozen
class ControllerModel:
    """A PCI controller model: what it provides downstream and needs upstream."""

    name: str
    description: str
    qemu_devices: tuple[str, ...]
    root: bool
    connect: Connect | None
    accepts: frozenset[Connect]
    slots: tuple[int, int]
    functions: int
    hotplug: Hotplug
    hotplug_slots: tuple[int, int] | None
    autoassign: bool
    aggregate: bool
    port: bool
    expander: bool
    bus_numbers: int
    identity: tuple[str, ...]
    target_options: tuple[str, ...] = ()
    """The ``<target>`` attributes libvirt 9.0 accepts on this model (its names: ``chassisNr``, ``busNr``, ...)."""
    bars: tuple[Bar, ...] = ()
    """The controller's own memory BARs, on the bus it plugs into (benchmarks/calibrate_bars.py)."""
    io_reserve_devices: tuple[str, ...] = ()
    """The QEMU devices of this model that take the ``io-reserve`` property (``-device NAME,help`` in QEMU 7.2)."""
    qemu_hotplug: bool = False
    """QEMU takes ``device_add`` into this bus's slots though libvirt refuses hot-plug there: the slots count as
    not hot-pluggable (libvirt's rule, which its users meet), and ``verify`` expects QEMU to accept."""

    def takes_io_reserve(self, qemu_device: str | None) -> bool:
        """Whether this model, created as ``qemu_device`` (``None``: its default device), takes ``io-reserve``."""
        return (qemu_device or self.qemu_device) in self.io_reserve_devices

    @property
    def qemu_device(self) -> str | None:
        """The QEMU device this model is created with by default."""
        return self.qemu_devices[0] if self.qemu_devices else None

    def slot_range(self) -> range:
        return range(self.slots[0], self.slots[1] + 1)

    def __str__(self) -> str:
        return self.name


@attrs.frozen
class DeviceKind:
    """An endpoint device kind: how it connects, whether it has an IO BAR, its class."""

    name: str
    qemu_device: str
    connect_type: str  # "pci", "pcie" or "virtio"
    io_bar: IoBar
    io_bar_size: int
    integrated: Integrated
    device_class: str
    usb2_function: int | None = None
    hotpluggable: bool = True
    usb: str | None = None
    """``"host"`` for a USB controller of its own, ``"companion"`` for an ICH9 UHCI companion, else ``None``."""
    bars: tuple[Bar, ...] = ()
    """The memory BARs and expansion ROM QEMU 7.2 gives this kind (benchmarks/calibrate_bars.py);
    empty for a kind whose BARs come from the host (``vfio-pci``) or that has IO BARs only."""
    memory_bar: int | None = None
    """The BAR whose size is the device's memory (``Device.memory``), when the domain sets it."""
    memory_property: str | None = None
    """The QEMU property that sets that memory (bytes; MiB when it ends in ``_mb``), if a property does."""
    qemu_since: tuple[int, int] | None = None
    """The QEMU release (major, minor) that added the kind's driver; ``None``: every release pcitopo describes
    has it. A machine describing an older QEMU refuses the kind (rule ``qemu-driver``)."""
    in_qemu: bool = True
    """``False`` for a kind libvirt names but no QEMU has a driver for (``vhost-vsock-transitional``: libvirt 9.0
    accepts ``<vsock model='virtio-transitional'>`` and asks QEMU for ``vhost-vsock-pci-transitional``). Such a
    kind is read from a domain so that ``validate`` can refuse it (rule ``qemu-driver``), and never planned."""
    family: str = attrs.field(default=attrs.Factory(lambda kind: kind.name, takes_self=True), kw_only=True)
    """The ``devices.toml`` table the kind comes from: a virtio kind's ``-transitional`` and
    ``-non-transitional`` variants share their base's (QEMU counts them as one where it starts one a guest:
    a machine's ``[one-per-guest]``)."""
    first_display: bool = attrs.field(default=False, kw_only=True)
    """QEMU starts the kind only as the first display device on its command line (``qxl-vga``: "primary
    qxl-vga device must be console 0"), so :func:`pcitopo.qemu.qemu_args` puts it before the others."""
    vga: str | None = None
    """How a VGA-compatible kind (PCI class 0300, legacy VGA ranges, a video BIOS) reaches VBE:
    ``"bochs-vbe"`` (the Bochs DISPI I/O ports) or ``"cirrus"``; ``None``: not VGA-compatible."""

    @property
    def connect(self) -> Connect:
        """The connect type on a PCI Express machine.

        Use :meth:`connect_on` to resolve it for a given machine.
        """
        return self.connect_on(pcie=True)

    def connect_on(self, *, pcie: bool) -> Connect:
        """The connect type on a machine with (``pcie=True``) or without PCI Express.

        On machines without PCI Express every endpoint is a conventional PCI device.
        """
        if not pcie or self.connect_type == "pci":
            return Connect.PCI_DEVICE
        return Connect.PCIE_DEVICE

    def in_qemu_release(self, version: tuple[int, int] | None) -> bool:
        """Whether QEMU ``version`` (``None``: a release not known) has this kind's driver.

        >>> cat = Catalog.default()
        >>> cat.device("igb").in_qemu_release((7, 2)), cat.device("igb").in_qemu_release((8, 0))
        (False, True)
        >>> cat.device("vhost-vsock-transitional").in_qemu_release(None)
        False
        """
        if not self.in_qemu:
            return False
        return version is None or self.qemu_since is None or version >= self.qemu_since

    def has_io_bar(self, *, behind_pcie_port: bool) -> bool:
        """Whether this device has an IO BAR where it sits."""
        if self.io_bar is IoBar.ALWAYS:
            return True
        if self.io_bar is IoBar.LEGACY:
            return not behind_pcie_port
        return False

    def __str__(self) -> str:
        return self.name


_CONNECT_BY_VALUE = {c.value: c for c in Connect}

TARGET_OPTIONS = ("chassis", "port", "chassisNr", "busNr", "index", "node", "hotplug")
"""The ``<target>`` attributes of a libvirt PCI controller that pcitopo reads."""


def _connect(table: Table, name: str, value: str) -> Connect:
    try:
        return _CONNECT_BY_VALUE[value]
    except KeyError:
        raise InvalidDescription(
            table.source,
            f"{table.key}.{name}",
            f"unknown connect type {value!r} (known: {', '.join(sorted(_CONNECT_BY_VALUE))})",
        ) from None


def _slot_pair(table: Table, name: str, default: tuple[int, int] | None) -> tuple[int, int] | None:
    raw = table.get(name, list, list(default) if default else None)
    if raw is None:
        return None
    if len(raw) != 2 or not all(isinstance(v, int) and not isinstance(v, bool) for v in raw):
        raise InvalidDescription(table.source, f"{table.key}.{name}", f"expected [first, last] slots (got {raw!r})")
    first, last = raw
    if not 0 <= first <= last <= 31:
        raise InvalidDescription(
            table.source, f"{table.key}.{name}", f"slots must satisfy 0 <= first <= last <= 31 (got {raw!r})"
        )
    return (first, last)


# each enum's values, the choices a description file has: worked out once, not for each of its entries
_HOTPLUG_VALUES = tuple(h.value for h in Hotplug)
_IO_BAR_VALUES = tuple(i.value for i in IoBar)
_INTEGRATED_VALUES = tuple(i.value for i in Integrated)


def _controller(source: str, name: str, data: Mapping[str, Any]) -> ControllerModel:
    t = Table(source, name, data)
    connect_name = t.get("connect", str, None)
    model = ControllerModel(
        name=name,
        description=t.get("description", str, ""),
        qemu_devices=t.str_list("qemu"),
        root=t.get("root", bool, False),
        connect=_connect(t, "connect", connect_name) if connect_name is not None else None,
        accepts=frozenset(_connect(t, "accepts", v) for v in t.str_list("accepts", required=True)),
        slots=_slot_pair(t, "slots", None) or (0, 31),
        functions=t.get("functions", int, 8),
        hotplug=Hotplug(t.choice("hotplug", _HOTPLUG_VALUES, "never")),
        hotplug_slots=_slot_pair(t, "hotplug-slots", None),
        autoassign=t.get("autoassign", bool, False),
        aggregate=t.get("aggregate", bool, False),
        port=t.get("port", bool, False),
        expander=t.get("expander", bool, False),
        bus_numbers=t.get("bus-numbers", int, 1),
        identity=t.str_list("identity"),
        target_options=t.str_list("target-options"),
        bars=_bars(t),
        io_reserve_devices=t.str_list("io-reserve-devices"),
        qemu_hotplug=t.get("qemu-hotplug", bool, False),
    )
    unknown = sorted(set(model.target_options) - set(TARGET_OPTIONS))
    if unknown:
        raise InvalidDescription(
            source,
            f"{name}.target-options",
            f"unknown <target> option {unknown[0]!r} (known: {', '.join(TARGET_OPTIONS)})",
        )
    if model.connect is None and not model.root:
        raise InvalidDescription(source, f"{name}.connect", "a controller that is not a root needs a connect type")
    t.check_unknown()
    return model


def _usb_role(value: str) -> str | None:
    return None if value == "none" else value


_BAR_KEYS = frozenset({"bar", "size", "type", "prefetchable"})


def _bars(table: Table) -> tuple[Bar, ...]:
    """The ``bars`` array: ``{ bar = N, size = BYTES, type = "mem32"|"mem64", prefetchable = true }``."""
    out: list[Bar] = []
    for i, raw in enumerate(table.get("bars", list, [])):
        where = f"{table.key}.bars[{i}]"
        if not isinstance(raw, dict) or set(raw) - _BAR_KEYS or not {"bar", "size", "type"} <= set(raw):
            raise InvalidDescription(table.source, where, f"expected {{bar, size, type[, prefetchable]}} (got {raw!r})")
        index, size, kind = raw["bar"], raw["size"], raw["type"]
        if not isinstance(index, int) or not 0 <= index <= 6:
            raise InvalidDescription(table.source, where, f"bar must be 0..6 (got {index!r})")
        if not isinstance(size, int) or size <= 0 or size & (size - 1):
            raise InvalidDescription(table.source, where, f"size must be a power of two in bytes (got {size!r})")
        if kind not in ("mem32", "mem64"):
            raise InvalidDescription(table.source, where, f"type must be 'mem32' or 'mem64' (got {kind!r})")
        out.append(Bar(index, size, kind, bool(raw.get("prefetchable", False))))
    return tuple(out)


def _devices(source: str, name: str, data: Mapping[str, Any]) -> list[DeviceKind]:
    t = Table(source, name, data)
    kind = DeviceKind(
        name=name,
        qemu_device=t.get("qemu", str, required=True),
        connect_type=t.choice("connect", ("pci", "pcie", "virtio"), "pci"),
        io_bar=IoBar(t.choice("io-bar", _IO_BAR_VALUES, "never")),
        io_bar_size=t.get("io-bar-size", int, 0),
        integrated=Integrated(t.choice("integrated", _INTEGRATED_VALUES, "allowed")),
        device_class=t.get("class", str, required=True),
        usb2_function=t.get("usb2-function", int, None),
        hotpluggable=t.get("hotpluggable", bool, True),
        usb=_usb_role(t.choice("usb", ("host", "companion", "none"), "none")),
        bars=_bars(t),
        memory_bar=t.get("memory-bar", int, None),
        memory_property=t.get("memory-property", str, None),
        vga=t.get("vga", str, None),
        qemu_since=t.release("qemu-since"),
        first_display=t.get("first-display", bool, False),
    )
    if kind.memory_bar is not None and kind.memory_bar not in {b.index for b in kind.bars}:
        raise InvalidDescription(source, f"{name}.memory-bar", f"BAR{kind.memory_bar} is not among its bars")
    if kind.io_bar is not IoBar.NEVER and kind.io_bar_size <= 0:
        raise InvalidDescription(source, f"{name}.io-bar-size", "a kind with an IO BAR needs its size in bytes")
    kinds = [kind]
    variants = _virtio_variants(t)
    if variants:
        transitional = attrs.evolve(
            kind,
            name=f"{name}-transitional",
            qemu_device=f"{kind.qemu_device}-transitional",
            connect_type="pci",
            io_bar=IoBar.ALWAYS,
        )
        if "transitional" not in variants:
            # libvirt still names it; QEMU has no such driver, so no IO BAR either: nothing to count
            transitional = attrs.evolve(transitional, in_qemu=False, io_bar=IoBar.NEVER, io_bar_size=0)
        kinds.append(transitional)
        kinds.append(
            attrs.evolve(
                kind,
                name=f"{name}-non-transitional",
                qemu_device=f"{kind.qemu_device}-non-transitional",
                io_bar=IoBar.NEVER,
                io_bar_size=0,
                in_qemu="non-transitional" in variants,
            )
        )
    t.check_unknown()
    return kinds


_VIRTIO_VARIANTS = ("transitional", "non-transitional")


def _virtio_variants(table: Table) -> tuple[str, ...]:
    """``virtio-variants``: ``true`` (QEMU has both), ``false`` (none) or the list of those QEMU has.

    libvirt 9.0 names both variants of every virtio model, so both are kinds whenever any is; a variant
    the list leaves out is a kind that no QEMU starts (``DeviceKind.in_qemu`` false).
    """
    raw = table.get("virtio-variants", object, False)
    if raw is True:
        return _VIRTIO_VARIANTS
    if raw is False:
        return ()
    where = f"{table.key}.virtio-variants"
    if not isinstance(raw, list) or not raw or not all(v in _VIRTIO_VARIANTS for v in raw) or len(set(raw)) < len(raw):
        raise InvalidDescription(
            table.source,
            where,
            f"expected true, false or a list of {', '.join(map(repr, _VIRTIO_VARIANTS))} (got {raw!r})",
        )
    return tuple(raw)


@attrs.frozen
class Catalog:
    """Controller models and device kinds by name."""

    controllers: Mapping[str, ControllerModel] = attrs.field(repr=lambda m: f"<{len(m)} controller models>")
    devices: Mapping[str, DeviceKind] = attrs.field(repr=lambda m: f"<{len(m)} device kinds>")

    @classmethod
    def default(cls) -> Catalog:
        """The catalog shipped with pcitopo."""
        return _default_catalog()

    @classmethod
    def from_files(cls, controllers: str | Path, devices: str | Path) -> Catalog:
        """Load a catalog from two TOML files in the shipped format."""
        return cls._build(load_path(controllers), load_path(devices))

    @classmethod
    def _build(cls, controllers: tuple[str, dict[str, Any]], devices: tuple[str, dict[str, Any]]) -> Catalog:
        csource, cdata = controllers
        dsource, ddata = devices
        models = {name: _controller(csource, name, data) for name, data in cdata.items()}
        kinds: dict[str, DeviceKind] = {}
        for name, data in ddata.items():
            for kind in _devices(dsource, name, data):
                if kind.name in kinds or kind.name in models:
                    raise InvalidDescription(dsource, kind.name, "defined twice")
                kinds[kind.name] = kind
        return cls(controllers=FrozenDict(models), devices=FrozenDict(kinds))

    def controller(self, name: str) -> ControllerModel:
        """The controller model called ``name``; :class:`UnknownName` if none."""
        try:
            return self.controllers[name]
        except KeyError:
            raise UnknownName("controller model", name, self.controllers) from None

    def device(self, name: str) -> DeviceKind:
        """The endpoint device kind called ``name``; :class:`UnknownName` if none."""
        try:
            return self.devices[name]
        except KeyError:
            raise UnknownName("device kind", name, self.devices) from None

    def controllers_accepting(self, connect: Connect) -> tuple[ControllerModel, ...]:
        """Controller models whose bus accepts ``connect``, in file order."""
        return tuple(m for m in self.controllers.values() if connect in m.accepts)


@functools.cache
def _default_catalog() -> Catalog:
    return Catalog._build(load_packaged("controllers.toml"), load_packaged("devices.toml"))
