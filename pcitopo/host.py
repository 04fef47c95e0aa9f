"""The host's PCI devices, as read from Linux sysfs: what passthrough planning starts from.

A :class:`Host` is a frozen value holding one :class:`HostDevice` per PCI
function of the host. :meth:`Host.from_sysfs` reads it from
``/sys/bus/pci/devices/*`` (or from a directory laid out exactly like ``/sys``);
:mod:`pcitopo.formats.host_json` writes and reads it as a versioned JSON
document (``pcitopo host-scan``).

Host addresses are real bus numbers (``0000:3b:00.0``), not libvirt controller
indexes: they are what ``<hostdev><source><address>`` names.

What each field comes from (Linux ``Documentation/ABI/testing/sysfs-bus-pci``
and ``drivers/pci/pci-sysfs.c``):

============== ====================================================================
field          sysfs
============== ====================================================================
vendor, device ``vendor``, ``device`` (``0x10de``)
class_code     ``class`` (24 bits: base class, subclass, programming interface)
numa_node      ``numa_node`` (``-1``: none, read as ``None``)
iommu_group    the last component of the ``iommu_group`` link (``None``: no IOMMU)
parent         the PCI function above this one in the ``/sys/devices`` path the
               ``/sys/bus/pci/devices/ADDR`` link points to (``None``: on a root bus)
bars           the lines of ``resource``: 0-5 are the BARs, 6 the expansion ROM,
               7-12 the SR-IOV VF BARs (the size of all VFs together); flags are
               ``IORESOURCE_IO`` 0x100, ``IORESOURCE_MEM`` 0x200,
               ``IORESOURCE_PREFETCH`` 0x2000, ``IORESOURCE_MEM_64`` 0x100000
physfn, virtfn the ``physfn`` link of a VF, the ``virtfnN`` links of a PF;
               ``sriov_totalvfs``
driver         the last component of the ``driver`` link
port_type      the PCI Express capability (ID 0x10) in ``config``: device/port type
acs            the ACS extended capability (ID 0x000d) in ``config``: its control
               register (``None`` when ``config`` is too short to hold extended
               capabilities: an unprivileged reader sees 64 bytes only)
============== ====================================================================

>>> d = HostDevice(PciAddress.parse("0000:3b:00.0"), vendor=0x10de, device=0x20b0, class_code=0x030200,
...                iommu_group=14, numa_node=0)
>>> str(d), d.is_bridge, d.base_class
('0000:3b:00.0 [10de:20b0] class 030200 group 14 node 0', False, 3)
>>> host = Host((d,))
>>> host.device("3b:00.0") is d
True
>>> host.iommu_groups()
{14: (<PciAddress('0000:3b:00.0')>,)}
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING

import attrs

from pcitopo.address import PciAddress
from pcitopo.devices import Bar
from pcitopo.errors import InvalidAddress, InvalidInput, UnknownName

if TYPE_CHECKING:
    from pcitopo.formats.libvirt import LibvirtDomain

__all__ = ["Bar", "Host", "HostDevice", "PortType", "hostdev_sources"]


def __dir__() -> list[str]:
    return __all__


_PORT_TYPES = {
    0x0: "endpoint",
    0x1: "legacy-endpoint",
    0x4: "root-port",
    0x5: "upstream-port",
    0x6: "downstream-port",
    0x7: "pcie-to-pci-bridge",
    0x8: "pci-to-pcie-bridge",
    0x9: "integrated-endpoint",
    0xA: "root-complex-event-collector",
}

PortType = str
"""The PCI Express device/port type: one of the values of ``_PORT_TYPES`` (``root-port``, ...)."""


def _bar_tuple(bars: Iterable[Bar]) -> tuple[Bar, ...]:
    return tuple(bars)


def _address_tuple(addresses: Iterable[PciAddress]) -> tuple[PciAddress, ...]:
    return tuple(addresses)


@attrs.frozen
class HostDevice:
    """One PCI function of the host."""

    address: PciAddress
    vendor: int = attrs.field(kw_only=True)
    device: int = attrs.field(kw_only=True)
    class_code: int = attrs.field(kw_only=True)
    numa_node: int | None = attrs.field(default=None, kw_only=True)
    iommu_group: int | None = attrs.field(default=None, kw_only=True)
    parent: PciAddress | None = attrs.field(default=None, kw_only=True)
    """The bridge or port above this function (``None``: it sits on a root bus)."""
    bars: tuple[Bar, ...] = attrs.field(default=(), kw_only=True, converter=_bar_tuple)
    physfn: PciAddress | None = attrs.field(default=None, kw_only=True)
    virtfns: tuple[PciAddress, ...] = attrs.field(default=(), kw_only=True, converter=_address_tuple)
    sriov_totalvfs: int | None = attrs.field(default=None, kw_only=True)
    driver: str | None = attrs.field(default=None, kw_only=True)
    port_type: PortType | None = attrs.field(default=None, kw_only=True)
    acs: int | None = attrs.field(default=None, kw_only=True)
    """The ACS control register (``None``: no ACS capability seen, or config space not readable)."""

    def __str__(self) -> str:
        group = f" group {self.iommu_group}" if self.iommu_group is not None else ""
        node = f" node {self.numa_node}" if self.numa_node is not None else ""
        return f"{self.address} [{self.vendor:04x}:{self.device:04x}] class {self.class_code:06x}{group}{node}"

    @property
    def base_class(self) -> int:
        return self.class_code >> 16

    @property
    def is_bridge(self) -> bool:
        """A PCI-to-PCI bridge or PCIe port (class 0x0604 or 0x0609): vfio-pci never binds one."""
        return self.class_code >> 8 in (0x0604, 0x0609)

    @property
    def is_nic(self) -> bool:
        """A network or InfiniBand controller (base class 0x02)."""
        return self.base_class == 0x02

    @property
    def is_gpu(self) -> bool:
        """A display controller (base class 0x03)."""
        return self.base_class == 0x03

    @property
    def is_virtfn(self) -> bool:
        return self.physfn is not None

    @property
    def mmio_size(self) -> int:
        """Bytes of memory BARs (0-5), not counting the ROM or VF BARs."""
        return sum(b.size for b in self.bars if b.index < 6 and b.kind != "io")


def _sorted_devices(devices: Iterable[HostDevice]) -> tuple[HostDevice, ...]:
    return tuple(sorted(devices, key=lambda d: d.address))


@attrs.frozen(repr=False)
class Host:
    """Every PCI function of one host, by address. Build with :meth:`from_sysfs` or from JSON."""

    devices: tuple[HostDevice, ...] = attrs.field(converter=_sorted_devices)
    source: str = ""
    """Where the description came from (a sysfs directory, a JSON file)."""

    def __attrs_post_init__(self) -> None:
        seen: set[PciAddress] = set()
        for d in self.devices:
            if d.address in seen:
                raise InvalidInput(f"host device {d.address}", "is listed twice")
            seen.add(d.address)
        for d in self.devices:
            for other, what in ((d.parent, "parent"), (d.physfn, "physfn")):
                if other is not None and other not in seen:
                    raise InvalidInput(f"host device {d.address}", f"its {what} {other} is not a host device")

    def __repr__(self) -> str:
        return f"<Host {self.source or '?'}: {len(self.devices)} devices, {len(self.iommu_groups())} IOMMU groups>"

    @functools.cached_property
    def _by_address(self) -> Mapping[PciAddress, HostDevice]:
        return MappingProxyType({d.address: d for d in self.devices})

    def device(self, address: PciAddress | str) -> HostDevice:
        """The function at this host address; :class:`~pcitopo.errors.UnknownName` if none."""
        a = PciAddress.parse(address) if isinstance(address, str) else address
        found = self._by_address.get(a)
        if found is None:
            raise UnknownName("host PCI device", str(a), [str(d.address) for d in self.devices])
        return found

    def __contains__(self, address: object) -> bool:
        return isinstance(address, PciAddress) and address in self._by_address

    def iommu_groups(self) -> dict[int, tuple[PciAddress, ...]]:
        """Each IOMMU group with its members, by group number."""
        groups: dict[int, list[PciAddress]] = {}
        for d in self.devices:
            if d.iommu_group is not None:
                groups.setdefault(d.iommu_group, []).append(d.address)
        return {g: tuple(groups[g]) for g in sorted(groups)}

    def group_members(self, address: PciAddress) -> tuple[HostDevice, ...]:
        """The functions in the IOMMU group of ``address`` (itself included; only itself without an IOMMU)."""
        d = self.device(address)
        if d.iommu_group is None:
            return (d,)
        return tuple(x for x in self.devices if x.iommu_group == d.iommu_group)

    def upstream(self, address: PciAddress) -> tuple[HostDevice, ...]:
        """The bridges and ports from a function up to its root bus, nearest first."""
        out: list[HostDevice] = []
        current = self.device(address).parent
        while current is not None:
            d = self.device(current)
            out.append(d)
            current = d.parent
        return tuple(out)

    def children(self, address: PciAddress) -> tuple[HostDevice, ...]:
        """The functions directly below a bridge or port."""
        return tuple(d for d in self.devices if d.parent == address)

    def below(self, address: PciAddress) -> tuple[HostDevice, ...]:
        """Every function below a bridge or port, at any depth, by address."""
        out: list[HostDevice] = []
        stack = [address]
        while stack:
            for child in self.children(stack.pop()):
                out.append(child)
                stack.append(child.address)
        return tuple(sorted(out, key=lambda d: d.address))

    def switch_of(self, address: PciAddress) -> HostDevice | None:
        """The upstream port of the PCIe switch nearest above a function (``None``: not behind a switch)."""
        for d in self.upstream(address):
            if d.port_type == "upstream-port":
                return d
        return None

    # -- reading sysfs ------------------------------------------------------------------

    @classmethod
    def from_sysfs(cls, root: str | os.PathLike[str] = "/sys") -> Host:
        """Read every function under ``ROOT/bus/pci/devices``.

        ``root`` is read exactly as if it were ``/sys``: the links there may
        be relative (as the kernel makes them) and are followed inside it.
        """
        base = Path(root)
        devices_dir = base / "bus" / "pci" / "devices"
        if not devices_dir.is_dir():
            raise InvalidInput(str(root), "has no bus/pci/devices directory: not a sysfs tree with PCI")
        found: list[HostDevice] = []
        for entry in sorted(devices_dir.iterdir()):
            try:
                address = PciAddress.parse(entry.name)
            except InvalidAddress:
                continue
            found.append(_read_function(entry, address))
        known = {d.address for d in found}
        # a parent outside the listing (a host bridge shown as a PCI function elsewhere) is dropped
        fixed = [d if d.parent is None or d.parent in known else attrs.evolve(d, parent=None) for d in found]
        return cls(fixed, source=str(root))


def _text(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise InvalidInput(str(path), f"cannot read: {exc.strerror or exc}") from None


def _hex(entry: Path, name: str, *, required: bool = True) -> int | None:
    value = _text(entry / name)
    if value is None:
        if required:
            raise InvalidInput(str(entry), f"has no {name!r} file")
        return None
    try:
        return int(value, 16)
    except ValueError:
        raise InvalidInput(str(entry / name), f"is not a hexadecimal number: {value!r}") from None


def _link_name(path: Path) -> str | None:
    try:
        return os.path.basename(os.readlink(path))
    except (FileNotFoundError, OSError):
        return None


_ADDRESS_COMPONENT = re.compile(r"^[0-9a-fA-F]{4}:[0-9a-fA-F]{2}:[0-9a-fA-F]{2}\.[0-7]$")


def _parent(entry: Path, address: PciAddress) -> PciAddress | None:
    """The PCI function before this one in the device path the link points to."""
    try:
        target = os.readlink(entry)
    except OSError:
        return None  # a directory, not a link: no path to read
    parts = [p for p in target.split("/") if p]
    if not parts or parts[-1] != entry.name:
        return None
    before = parts[-2] if len(parts) > 1 else ""
    return PciAddress.parse(before) if _ADDRESS_COMPONENT.match(before) else None


def _read_function(entry: Path, address: PciAddress) -> HostDevice:
    vendor = _hex(entry, "vendor")
    device = _hex(entry, "device")
    class_code = _hex(entry, "class")
    assert vendor is not None
    assert device is not None
    assert class_code is not None
    numa_text = _text(entry / "numa_node")
    numa: int | None = None
    if numa_text is not None:
        try:
            numa = int(numa_text)
        except ValueError:
            raise InvalidInput(str(entry / "numa_node"), f"is not a number: {numa_text!r}") from None
        numa = None if numa < 0 else numa
    group_name = _link_name(entry / "iommu_group")
    group = int(group_name) if group_name is not None and group_name.isdigit() else None
    bars: list[Bar] = []
    resource = _text(entry / "resource")
    if resource:
        for i, line in enumerate(resource.splitlines()[:13]):
            bar = Bar.from_resource_line(i, line)
            if bar is not None:
                bars.append(bar)
    physfn_name = _link_name(entry / "physfn")
    virtfns = []
    for link in entry.glob("virtfn*"):
        name = _link_name(link)
        if name is not None and link.name[6:].isdigit():
            virtfns.append((int(link.name[6:]), PciAddress.parse(name)))
    total = _text(entry / "sriov_totalvfs")
    port_type, acs = _config(entry / "config")
    return HostDevice(
        address,
        vendor=vendor,
        device=device,
        class_code=class_code,
        numa_node=numa,
        iommu_group=group,
        parent=_parent(entry, address),
        bars=bars,
        physfn=PciAddress.parse(physfn_name) if physfn_name else None,
        virtfns=[a for _, a in sorted(virtfns)],
        sriov_totalvfs=int(total) if total and total.isdigit() else None,
        driver=_link_name(entry / "driver"),
        port_type=port_type,
        acs=acs,
    )


def _config(path: Path) -> tuple[PortType | None, int | None]:
    """The PCIe port type and the ACS control register from the config space, where visible."""
    try:
        data = path.read_bytes()
    except OSError:
        return None, None
    if len(data) < 64 or not data[0x06] & 0x10:  # no capability list
        return None, None
    port_type: PortType | None = None
    pointer, seen = data[0x34] & 0xFC, 0
    while pointer and pointer + 4 <= len(data) and seen < 48:
        if data[pointer] == 0x10:
            port_type = _PORT_TYPES.get((data[pointer + 2] >> 4) & 0xF, "other")
            break
        pointer, seen = data[pointer + 1] & 0xFC, seen + 1
    acs: int | None = None
    offset, seen = 0x100, 0
    while port_type is not None and offset and offset + 8 <= len(data) and seen < 96:
        header = int.from_bytes(data[offset : offset + 4], "little")
        if header == 0 or header == 0xFFFFFFFF:
            break
        if header & 0xFFFF == 0x000D:
            acs = int.from_bytes(data[offset + 6 : offset + 8], "little")
            break
        offset, seen = (header >> 20) & 0xFFC, seen + 1
    return port_type, acs


def _strtoul(text: str) -> int:
    """A number as libvirt reads it (``strtoul(..., 0)``): ``0x10`` hex, ``010`` octal, ``16`` decimal."""
    t = text.strip().lower()
    if t.startswith("0x"):
        return int(t[2:], 16)
    if len(t) > 1 and t.startswith("0"):
        return int(t[1:], 8)
    return int(t, 10)


def hostdev_sources(domain: LibvirtDomain) -> dict[str, PciAddress]:
    """The host function each passed-through PCI device of a domain takes, by device id.

    Read from ``<hostdev mode='subsystem' type='pci'><source><address>`` and
    ``<interface type='hostdev'><source><address type='pci'>``; devices
    without such a source (mdev, vhost-scsi, emulated) are left out.

    >>> from pcitopo.formats.libvirt import LibvirtDomain
    >>> d = LibvirtDomain.from_string(\'\'\'<domain><os><type machine='q35'>hvm</type></os><devices>
    ...   <hostdev mode='subsystem' type='pci' managed='yes'>
    ...     <source><address domain='0x0000' bus='0x3b' slot='0x02' function='0x1'/></source>
    ...   </hostdev></devices></domain>\'\'\')
    >>> hostdev_sources(d)
    {'hostdev0': <PciAddress('0000:3b:02.1')>}
    """
    out: dict[str, PciAddress] = {}
    for ident, el in domain.elements.items():
        if el.tag == "hostdev" and (el.get("mode", "subsystem") != "subsystem" or el.get("type") != "pci"):
            continue
        if el.tag == "interface" and el.get("type") != "hostdev":
            continue
        if el.tag not in ("hostdev", "interface"):
            continue
        address = el.find("source/address")
        if address is None or address.get("type", "pci") != "pci":
            continue
        where = domain.path(ident)
        try:
            fields = {name: _strtoul(str(address.get(name, "0"))) for name in ("domain", "bus", "slot", "function")}
            out[ident] = PciAddress(**fields)
        except (ValueError, InvalidAddress) as exc:
            raise InvalidInput(f"{where}/source/address", f"is not a host PCI address: {exc}") from None
    return out
