"""Machine descriptions: the root bus, built-in devices and limits of a QEMU machine type.

Descriptions are TOML files; the shipped ones live in
``pcitopo/legality/data/machines``. A user can load their own with
:meth:`Machine.from_file` (say, for a QEMU build without ``pcie-to-pci-bridge``).

>>> q35 = Machine.named("q35")
>>> q35.root_bus_name, q35.pcie, q35.bus_numbers
('pcie.0', True, 256)
>>> [str(b.address) for b in q35.builtins]
['0000:00:00.0', '0000:00:1f.0', '0000:00:1f.2', '0000:00:1f.3']
>>> Machine.for_machine_type("pc-q35-7.2", arch="x86_64").name
'q35'
>>> sorted(machines())
['aarch64-virt', 'aarch64-virt-highmem-off', 'pc', 'pseries', 'q35', 'riscv64-virt']
"""

from __future__ import annotations

import fnmatch
import functools
import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import attrs

from pcitopo._frozen import FrozenDict
from pcitopo.address import PciAddress
from pcitopo.errors import InvalidAddress, InvalidDescription, UnknownName
from pcitopo.legality._toml import DATA_DIR, Table, load_packaged, load_path
from pcitopo.legality.catalog import Catalog, ControllerModel
from pcitopo.legality.firmware import Firmware, firmwares

if TYPE_CHECKING:
    from pathlib import Path

__all__ = ["Builtin", "LibvirtDefaults", "Machine", "machines"]


def __dir__() -> list[str]:
    return __all__


@attrs.frozen
class Builtin:
    """A device the machine itself creates at a fixed address.

    ``stands_for`` names the device kind a user's device may declare at this
    address to mean the built-in one (libvirt's SATA controller 0 at 00:1f.2).
    """

    address: PciAddress
    name: str
    qemu_device: str
    description: str = ""
    multifunction: bool = False
    stands_for: str | None = None
    optional: bool = False


def _read_only(value: Mapping[str, tuple[PciAddress, ...]]) -> Mapping[str, tuple[PciAddress, ...]]:
    return FrozenDict({role: tuple(addresses) for role, addresses in value.items()})


def _read_only_text(value: Mapping[str, str]) -> Mapping[str, str]:
    return FrozenDict(dict(value))


def _kind_messages(catalog: Catalog, table: Table, *, family: bool) -> Mapping[str, str]:
    """A table of device kinds (``family``: kind families) to QEMU's message, every key checked."""
    found: dict[str, str] = {}
    for name in list(table.data):
        where = f"{table.key}.{name}" if table.key else name
        if name not in catalog.devices or (family and catalog.devices[name].family != name):
            what = "device kind family" if family else "device kind"
            names = {n for n, k in catalog.devices.items() if not family or k.family == n}
            raise InvalidDescription(table.source, where, str(UnknownName(what, name, names)))
        found[name] = table.get(name, str, required=True)
    table.check_unknown()
    return FrozenDict(found)


@attrs.frozen
class LibvirtDefaults:
    """What libvirt 9.0 adds or picks on its own for a domain of this machine (the ``[libvirt]`` table).

    These depend on the machine and on the QEMU binary's capabilities; the
    shipped values are libvirt 9.0 with QEMU 7.2 (Debian 12), read from
    ``virsh define`` + ``dumpxml --inactive`` (``virsh domcapabilities``
    lists the same models). ``None`` (or a missing key) means the
    architecture's usual value for model defaults, and nothing added for
    the implicit devices.

    * ``usb``: the USB controller libvirt adds as index 0 when the domain
      lists none (``qemu-xhci`` on q35 and pseries, ``piix3-uhci`` on pc,
      none on ARM and RISC-V virt);
    * ``usb_model``: the model of a ``<controller type='usb'>`` without one;
    * ``memballoon``: whether a virtio memballoon is added when the domain
      has no ``<memballoon>``;
    * ``sata0``: whether SATA controller 0 (the chipset's AHCI) is always added;
    * ``video``, ``nic``, ``scsi``: models of a model-less ``<video>``
      (also the one added for ``<graphics>`` without video), ``<interface>``
      and SCSI controller.
    """

    usb: str | None = None
    usb_model: str | None = None
    memballoon: bool = False
    sata0: bool = False
    video: str | None = None
    nic: str | None = None
    scsi: str | None = None


@attrs.frozen
class Machine:
    """What pcitopo knows of one machine type."""

    name: str
    description: str
    arches: tuple[str, ...]
    machine_types: tuple[str, ...]
    qemu_binary: str
    pcie: bool
    root_model: str
    root_qemu: str | None
    root_bus_name: str
    root_hotplug: bool
    bus_numbers: int
    io_windows: int | None
    io_windows_without_acpi: int | None
    controllers: tuple[str, ...]
    unique_bridge_chassis: bool
    max_host_bridges: int
    builtins: tuple[Builtin, ...]
    firmware_names: tuple[str, ...] = attrs.field(default=(), kw_only=True)
    """Firmware that boots this machine, the default first (``firmware`` in the file)."""
    qemu_version: tuple[int, int] | None = attrs.field(default=None, kw_only=True)
    """The QEMU release (major, minor) this description describes (``qemu-version``; a probe's binary);
    ``None``: not known. Device kinds whose driver came later are refused (rule ``qemu-driver``)."""
    refuses: Mapping[str, str] = attrs.field(factory=dict, kw_only=True, converter=_read_only_text)
    """Device kinds this machine's QEMU does not start at all, each with QEMU's message (``[refuses]``,
    measured: the binary has no such device, or the machine cannot plug it). Rule ``qemu-driver``."""
    one_per_guest: Mapping[str, str] = attrs.field(factory=dict, kw_only=True, converter=_read_only_text)
    """Device kind families (:attr:`DeviceKind.family <pcitopo.legality.catalog.DeviceKind.family>`: a virtio
    kind with its variants) of which this machine's QEMU starts one a guest, each with QEMU's message for a
    second (``[one-per-guest]``, measured). Rule ``one-per-guest``."""
    preferred: Mapping[str, tuple[PciAddress, ...]] = attrs.field(eq=False, converter=_read_only)
    """Preferred addresses by role (read-only: shipped descriptions are shared by every caller)."""
    catalog: Catalog = attrs.field(eq=False, repr=False)
    source: str = attrs.field(eq=False, repr=False, default="")
    libvirt: LibvirtDefaults = attrs.field(eq=False, repr=False, factory=LibvirtDefaults)

    @classmethod
    def named(cls, name: str, *, catalog: Catalog | None = None) -> Machine:
        """A shipped machine description by name (``q35``, ``pc``, ``aarch64-virt``, ...)."""
        if catalog is None or catalog is Catalog.default():
            return _shipped(name)
        source, data = load_packaged(f"machines/{_check_known(name)}.toml")
        return cls.from_data(source, data, catalog=catalog)

    @classmethod
    def from_file(cls, path: str | Path, *, catalog: Catalog | None = None) -> Machine:
        """Load a machine description from a TOML file in the shipped format."""
        source, data = load_path(path)
        return cls.from_data(source, data, catalog=catalog)

    @classmethod
    def for_machine_type(cls, machine_type: str, *, arch: str) -> Machine:
        """The shipped description matching a QEMU machine type on an architecture.

        Raises :class:`UnknownName` for machines without PCI (``s390-ccw-virtio``).
        """
        for name in _shipped_names():
            # decide on the file's own lists first: building a description costs more than reading it
            _, data = _shipped_data(name)
            arches, types = data.get("arches"), data.get("machine-types")
            if isinstance(arches, list) and isinstance(types, list) and arch not in arches:
                continue
            if isinstance(types, list) and not any(_glob(machine_type, str(t)) for t in types):
                continue
            machine = _shipped(name)
            if arch in machine.arches and any(_glob(machine_type, pattern) for pattern in machine.machine_types):
                return machine
        known = sorted(
            {f"{t} ({a})" for n in _shipped_names() for t in _shipped(n).machine_types for a in _shipped(n).arches}
        )
        raise UnknownName("machine type with PCI", f"{machine_type}", known, where=f"arch {arch}")

    @classmethod
    def from_data(cls, source: str, data: Mapping[str, Any], *, catalog: Catalog | None = None) -> Machine:
        """Build from parsed TOML data; ``source`` names it in errors."""
        catalog = catalog or Catalog.default()
        t = Table(source, "", data)
        root_model = t.get("root-model", str, required=True)
        _check_model(catalog, source, "root-model", root_model, root=True)
        controllers = t.str_list("controllers", required=True)
        for i, model in enumerate(controllers):
            _check_model(catalog, source, f"controllers[{i}]", model, root=False)
        builtins = tuple(_builtin(source, i, entry) for i, entry in enumerate(t.get("builtin", list, [])))
        pref_table = t.sub("preferred")
        preferred = {
            role: tuple(_address(source, f"preferred.{role}[{i}]", a) for i, a in enumerate(pref_table.str_list(role)))
            for role in list(pref_table.data)
        }
        lv = t.sub("libvirt")
        libvirt = LibvirtDefaults(
            usb=lv.get("usb", str, None) or None,
            usb_model=lv.get("usb-model", str, None),
            memballoon=lv.get("memballoon", bool, False),
            sata0=lv.get("sata0", bool, False),
            video=lv.get("video", str, None),
            nic=lv.get("nic", str, None),
            scsi=lv.get("scsi", str, None),
        )
        lv.check_unknown()
        refuses = _kind_messages(catalog, t.sub("refuses"), family=False)
        one_per_guest = _kind_messages(catalog, t.sub("one-per-guest"), family=True)
        machine = cls(
            name=t.get("name", str, required=True),
            description=t.get("description", str, ""),
            arches=t.str_list("arches", required=True),
            machine_types=t.str_list("machine-types"),
            qemu_binary=t.get("qemu-binary", str, ""),
            pcie=t.get("pcie", bool, required=True),
            root_model=root_model,
            root_qemu=t.get("root-qemu", str, None),
            root_bus_name=t.get("root-bus-name", str, required=True),
            root_hotplug=t.get("root-hotplug", bool, False),
            bus_numbers=t.get("bus-numbers", int, 256),
            io_windows=t.get("io-windows", int, None),
            io_windows_without_acpi=t.get("io-windows-without-acpi", int, None),
            controllers=controllers,
            unique_bridge_chassis=t.get("unique-bridge-chassis", bool, False),
            max_host_bridges=t.get("max-host-bridges", int, 1),
            builtins=builtins,
            firmware_names=t.str_list("firmware"),
            qemu_version=t.release("qemu-version"),
            refuses=refuses,
            one_per_guest=one_per_guest,
            preferred=FrozenDict(preferred),
            libvirt=libvirt,
            catalog=catalog,
            source=source,
        )
        t.check_unknown()
        if not 1 <= machine.bus_numbers <= 256:
            raise InvalidDescription(source, "bus-numbers", f"must be in 1..256 (got {machine.bus_numbers})")
        known_fw = firmwares()
        for i, fw in enumerate(machine.firmware_names):
            if fw not in known_fw:
                raise InvalidDescription(source, f"firmware[{i}]", str(UnknownName("firmware", fw, known_fw)))
        seen: dict[PciAddress, str] = {}
        for b in builtins:
            if b.address in seen:
                raise InvalidDescription(
                    source, "builtin", f"{b.address} is given to both {seen[b.address]!r} and {b.name!r}"
                )
            seen[b.address] = b.name
            if b.stands_for is not None and b.stands_for not in catalog.devices:
                raise InvalidDescription(
                    source,
                    f"builtin {b.name!r}.stands-for",
                    str(UnknownName("device kind", b.stands_for, catalog.devices)),
                )
        return machine

    def starts(self, kind: str) -> bool:
        """Whether this machine's QEMU has the driver of device kind ``kind`` (rule ``qemu-driver``).

        >>> q35 = Machine.named("q35")
        >>> q35.qemu_version, q35.starts("e1000e"), q35.starts("igb"), q35.starts("vhost-vsock-transitional")
        ((7, 2), True, False, False)
        >>> Machine.named("aarch64-virt").starts("qxl"), Machine.named("riscv64-virt").starts("virtio-iommu")
        (False, False)
        """
        return kind not in self.refuses and self.catalog.device(kind).in_qemu_release(self.qemu_version)

    @property
    def root(self) -> ControllerModel:
        """The controller model of the root bus (index 0)."""
        return self.catalog.controller(self.root_model)

    def offers(self, model: str) -> bool:
        """Whether controllers of ``model`` may be added on this machine."""
        return model in self.controllers

    def builtin_at(self, address: PciAddress) -> Builtin | None:
        for b in self.builtins:
            if b.address == address:
                return b
        return None

    def io_window_budget(self, *, acpi: bool = True, firmware: str | Firmware | None = None) -> int | None:
        """How many 4 KiB IO windows the firmware can give bridges (``None``: no limit known).

        ``firmware`` (default: the machine's default firmware) is looked up in
        the firmware descriptions; the machine file's own ``io-windows`` count
        when the firmware has no numbers for this machine.
        """
        fw = self.firmware(firmware)
        if fw is not None:
            budget = fw.io_window_budget(self.name, acpi=acpi, root_model=self.root_model)
            if budget is not None:
                return budget
        return self.io_windows if acpi else self.io_windows_without_acpi

    @property
    def default_firmware(self) -> str | None:
        """The firmware that boots this machine when none is chosen (libvirt's default: SeaBIOS on x86)."""
        return self.firmware_names[0] if self.firmware_names else None

    def firmware(self, name: str | Firmware | None = None) -> Firmware | None:
        """The firmware description ``name`` (default: the machine's default firmware; ``None``: none known).

        Raises :class:`UnknownName` for a firmware this machine is not booted by.
        """
        if isinstance(name, Firmware):
            return name
        if name is None:
            name = self.default_firmware
            if name is None:
                return None
        if name not in self.firmware_names:
            raise UnknownName("firmware", name, self.firmware_names, where=f"machine {self.name}")
        return Firmware.named(name)

    def __str__(self) -> str:
        return self.name

    def __repr__(self) -> str:
        return f"<Machine {self.name!r}>"


def machines() -> dict[str, Machine]:
    """Every shipped machine description, by name."""
    return {name: _shipped(name) for name in _shipped_names()}


def _builtin(source: str, index: int, data: Any) -> Builtin:
    t = Table(source, f"builtin[{index}]", data)
    b = Builtin(
        address=_address(source, f"builtin[{index}].address", t.get("address", str, required=True)),
        name=t.get("name", str, required=True),
        qemu_device=t.get("qemu", str, required=True),
        description=t.get("description", str, ""),
        multifunction=t.get("multifunction", bool, False),
        stands_for=t.get("stands-for", str, None),
        optional=t.get("optional", bool, False),
    )
    t.check_unknown()
    return b


def _address(source: str, key: str, text: str) -> PciAddress:
    try:
        return PciAddress.parse(text)
    except InvalidAddress as exc:
        raise InvalidDescription(source, key, str(exc)) from None


def _check_model(catalog: Catalog, source: str, key: str, model: str, *, root: bool) -> None:
    if model not in catalog.controllers:
        raise InvalidDescription(source, key, str(UnknownName("controller model", model, catalog.controllers)))
    if catalog.controllers[model].root and not root and model != "spapr-pci-host-bridge":
        raise InvalidDescription(source, key, f"{model!r} is a root bus, not an addable controller")
    if root and not catalog.controllers[model].root:
        raise InvalidDescription(source, key, f"{model!r} is not a root bus model")


@functools.cache
def _shipped_names() -> tuple[str, ...]:
    names = os.listdir(os.path.join(DATA_DIR, "machines"))
    return tuple(sorted(n[: -len(".toml")] for n in names if n.endswith(".toml")))


def _check_known(name: str) -> str:
    if name not in _shipped_names():
        raise UnknownName("machine", name, _shipped_names())
    return name


def _glob(name: str, pattern: str) -> bool:
    """``fnmatch.fnmatchcase(name, pattern)``, without compiling a regular expression for a pattern of ``*`` only.

    Every shipped machine type pattern is text and ``*`` (``pc-q35-*``), and
    compiling each to a regular expression, as :mod:`fnmatch` does, costs a
    short command about 1% of its instructions; other patterns go to fnmatch.

    >>> [_glob("pc-q35-7.2", p) for p in ("pc-q35-*", "pc-*-7.2", "pc", "*q35*", "pc-q35-7.[0-9]", "pc-*-*-*")]
    [True, True, False, True, True, False]
    """
    if "[" in pattern or "?" in pattern:
        return fnmatch.fnmatchcase(name, pattern)
    if "*" not in pattern:
        return name == pattern
    first, *middle, last = pattern.split("*")
    if len(name) < len(first) + len(last) or not name.startswith(first) or not name.endswith(last):
        return False
    pos, end = len(first), len(name) - len(last)
    for part in middle:
        found = name.find(part, pos, end)
        if found < 0:
            return False
        pos = found + len(part)
    return True


@functools.cache
def _shipped_data(name: str) -> tuple[str, dict[str, Any]]:
    """A shipped file's parsed TOML (callers must not change it)."""
    return load_packaged(f"machines/{_check_known(name)}.toml")


@functools.cache
def _shipped(name: str) -> Machine:
    source, data = _shipped_data(name)
    machine = Machine.from_data(source, data)
    if machine.name != name:
        raise InvalidDescription(source, "name", f"must match the file name {name!r} (got {machine.name!r})")
    return machine
