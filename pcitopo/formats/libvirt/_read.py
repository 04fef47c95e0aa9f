"""Reading a domain's elements into its topology: classification, what libvirt adds, libvirt's orders."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import attrs
from lxml import etree

from pcitopo.address import PciAddress
from pcitopo.devices import Controller, Device
from pcitopo.errors import DuplicateId, InvalidDomainXML, InvalidInput, PcitopoError, UnknownName
from pcitopo.legality.firmware import Firmware
from pcitopo.legality.machine import Machine, machines
from pcitopo.topology import Topology

if TYPE_CHECKING:
    from pcitopo.formats.libvirt import LibvirtDomain

from pcitopo.formats.libvirt._tables import (
    _ADDRESS_LIMITS,
    _CHIPSET,
    _CHIPSET_MESSAGES,
    _DEFAULT_MACHINE,
    _DISK_CONTROLLERS,
    _INPUT_TYPES,
    _NIC_MODELS,
    _NIC_NOT_PCI,
    _PCI_MODELS,
    _PPC_ARCHES,
    _SCSI_MODELS,
    _SCSI_NOT_PCI,
    _SOUND_MODELS,
    _SOUND_NOT_PCI,
    _USB2_COMPANIONS,
    _USB2_FUNCTION,
    _USB_MODELS,
    _USB_NOT_PCI,
    _USER_ALIAS_PREFIX,
    _VIDEO_MODELS,
    _VIDEO_NOT_PCI,
    _VIRT_ARCHES,
    _VIRTIO_MODELS,
)

_Element = etree._Element


class _Where(str):
    """An element's XPath that remembers the element's line, so errors can name both."""

    line: int | None

    def __new__(cls, path: str, line: int | None) -> _Where:
        self = super().__new__(cls, path)
        self.line = line
        return self


def _line(el: _Element) -> int | None:
    """The line an element starts on (lxml's ``sourceline``), if known."""
    line = el.sourceline
    return line if isinstance(line, int) else None


def _child(el: _Element, tag: str) -> _Element | None:
    """``el.find(tag)`` for a plain tag name: the first child element named ``tag``, or ``None``.

    The same element ``find`` returns (lxml's ElementPath turns a plain name
    into exactly this ``iterchildren`` call), without parsing the path on
    every call: the reader and writer look up a few children of every device
    element, and ``find`` cost three times as much.

    >>> el = etree.fromstring("<disk><!-- c --><target dev='vda'/><address/><target dev='vdb'/></disk>")
    >>> _child(el, "target").get("dev"), _child(el, "alias")
    ('vda', None)
    """
    return next(el.iterchildren(tag), None)


def _bad(where: str, reason: str) -> InvalidDomainXML:
    """The error for the element at ``where``; the reader adds the document's name."""
    return InvalidDomainXML(str(where), reason, line=getattr(where, "line", None))


# -- numbers and addresses -----------------------------------------------------------

_NUMBER = re.compile(r"^\s*(?:(?P<hex>0[xX][0-9a-fA-F]+)|(?P<oct>0[0-7]*)|(?P<dec>[1-9][0-9]*))\s*$")


def _number(text: str, where: str, name: str) -> int:
    """An unsigned number the way libvirt reads it (``strtoul`` with base 0)."""
    match = _NUMBER.match(text)
    if match is None:
        raise _bad(where, f"{name}={text!r} is not a number")
    if match["hex"]:
        return int(match["hex"], 16)
    if match["oct"]:
        return int(match["oct"], 8)
    return int(match["dec"])


def _opt_number(el: _Element, attr: str, where: str) -> int | None:
    value = el.get(attr)
    return None if value is None else _number(value, where, attr)


def _on_off(value: str | None, where: str, name: str) -> bool | None:
    if value is None:
        return None
    if value in ("on", "off"):
        return value == "on"
    raise _bad(where, f"{name} must be 'on' or 'off' (got {value!r})")


def _pci_address(el: _Element, where: str) -> tuple[PciAddress | None, bool | None]:
    """The address of a ``<address type='pci'>`` element (``None`` when it only asks for one)."""
    values: dict[str, int] = {}
    for name, limit, message in _ADDRESS_LIMITS:
        raw = el.get(name)
        value = 0 if raw is None else _number(raw, where, name)
        if value > limit:
            raise _bad(where, message.format(v=value))
        values[name] = value
    multifunction = _on_off(el.get("multifunction"), where, "multifunction")
    if values["domain"] == values["bus"] == values["slot"] == 0:
        return None, multifunction
    # checked above against libvirt's limits, which are PciAddress's ranges (numbers here are never negative): built
    # without checking them again (two addresses an element, hundreds a complete domain)
    return PciAddress._trusted(values["domain"], values["bus"], values["slot"], values["function"]), multifunction


def _format_address(address: PciAddress, multifunction: bool | None, *, close: bool = True) -> str:
    # %-formatting: half the time of an f-string's format specs (each parsed anew), for every address a plan writes
    text = "<address type='pci' domain='0x%04x' bus='0x%02x' slot='0x%02x' function='0x%x'" % (  # noqa: UP031
        address.domain,
        address.bus,
        address.slot,
        address.function,
    )
    if multifunction is not None:
        text += f" multifunction='{'on' if multifunction else 'off'}'"
    return text + ("/>" if close else ">")


class _Context:
    """What classification needs to know about the domain."""

    def __init__(
        self,
        machine: Machine,
        arch: str,
        first_video: _Element | None,
        child: Callable[[_Element, str], _Element | None] = _child,
    ) -> None:
        self.machine = machine
        self.arch = arch
        self.first_video = first_video
        self.child = child
        """:func:`_child` for the document's elements (the domain's index of them: ``LibvirtDomain._child``)."""

    @property
    def pseries(self) -> bool:
        return self.machine.name == "pseries"

    @property
    def virt(self) -> bool:
        return self.arch in _VIRT_ARCHES

    def default_usb(self) -> str:
        if self.machine.libvirt.usb_model is not None:
            return self.machine.libvirt.usb_model
        return "qemu-xhci" if self.arch in ("aarch64", *_PPC_ARCHES) else "piix3-uhci"

    def default_nic(self) -> str:
        if self.machine.libvirt.nic is not None:
            return self.machine.libvirt.nic
        return "virtio" if self.virt else "rtl8139"

    def default_video(self) -> str:
        if self.machine.libvirt.video is not None:
            return self.machine.libvirt.video
        if self.arch in _PPC_ARCHES:
            return "vga"
        return "virtio" if self.virt else "cirrus"

    def default_scsi(self) -> str:
        if self.machine.libvirt.scsi is not None:
            return self.machine.libvirt.scsi
        return "ibmvscsi" if self.pseries else "lsilogic"


def _virtio(base: str, model: str | None, where: str, what: str) -> str:
    """``virtio-net``, ``virtio-net-transitional`` or ``virtio-net-non-transitional`` for a virtio model."""
    suffix = _VIRTIO_MODELS.get(model or "virtio")
    if suffix is None:
        raise _bad(where, f"unknown {what} model {model!r} (known: {', '.join(_VIRTIO_MODELS)})")
    return base + suffix


def _unknown(where: str, what: str, model: str, known: Iterable[str]) -> InvalidDomainXML:
    return _bad(where, str(UnknownName(what, model, known)))


def _interface(el: _Element, ctx: _Context, where: str) -> str | None:
    if el.get("type") == "hostdev":
        return "vfio-pci"
    model_el = ctx.child(el, "model")
    model = model_el.get("type") if model_el is not None else None
    model = model or ctx.default_nic()
    if model in _VIRTIO_MODELS:
        return _virtio("virtio-net", model, where, "interface")
    if model in _NIC_MODELS:
        return _NIC_MODELS[model]
    if model in _NIC_NOT_PCI:
        return None
    raise _unknown(where, "interface model", model, [*_VIRTIO_MODELS, *_NIC_MODELS, *_NIC_NOT_PCI])


def _disk(el: _Element, ctx: _Context, where: str) -> str | None:
    target = ctx.child(el, "target")
    bus = target.get("bus") if target is not None else None
    if bus is None and target is not None and (target.get("dev") or "").startswith("vd"):
        bus = "virtio"
    if bus != "virtio":
        return None
    return _virtio("virtio-blk", el.get("model"), where, "virtio disk")


def _controller(el: _Element, ctx: _Context, where: str) -> str | None:
    ctype = el.get("type")
    model = el.get("model")
    if ctype == "sata":
        return "ahci"
    if ctype == "ide":
        if ctx.machine.name != "pc":
            raise _bad(where, "IDE controllers are unsupported for this QEMU binary or machine type")
        return "piix3-ide"
    if ctype == "usb":
        model = model or ctx.default_usb()
        if model in _USB_NOT_PCI:
            return None
        if model not in _USB_MODELS:
            raise _unknown(where, "USB controller model", model, [*_USB_MODELS, *_USB_NOT_PCI])
        return _USB_MODELS[model]
    if ctype == "scsi":
        if model is None:
            model = ctx.default_scsi()
        if model in ("virtio-scsi", *_VIRTIO_MODELS):
            return _virtio("virtio-scsi", None if model == "virtio-scsi" else model, where, "SCSI controller")
        if model in _SCSI_NOT_PCI:
            return None
        if model not in _SCSI_MODELS:
            raise _unknown(where, "SCSI controller model", model, [*_SCSI_MODELS, "virtio-scsi", *_SCSI_NOT_PCI])
        return _SCSI_MODELS[model]
    if ctype == "virtio-serial":
        return _virtio("virtio-serial", model, where, "virtio-serial controller")
    if ctype == "nvme":
        return "nvme"
    return None  # fdc, ccid, xenbus, isa


def _sound(el: _Element, ctx: _Context, where: str) -> str | None:
    model = el.get("model") or ""
    if model in _SOUND_NOT_PCI:
        return None
    if model not in _SOUND_MODELS:
        raise _unknown(where, "sound model", model, [*_SOUND_MODELS, *_SOUND_NOT_PCI])
    return _SOUND_MODELS[model]


def _video(el: _Element, ctx: _Context, where: str) -> str | None:
    model_el = _child(el, "model")
    model = (model_el.get("type") if model_el is not None else None) or ctx.default_video()
    if model in _VIDEO_NOT_PCI:
        return None
    if model == "virtio":
        primary = el is ctx.first_video
        return "virtio-vga" if primary and ctx.arch in ("x86_64", "i686", "riscv64", "riscv32") else "virtio-gpu"
    if model not in _VIDEO_MODELS:
        raise _unknown(where, "video model", model, [*_VIDEO_MODELS, "virtio", *_VIDEO_NOT_PCI])
    if model == "qxl" and el is not ctx.first_video:
        return "qxl-secondary"  # libvirt starts QEMU's "qxl" (no VGA) for every qxl but the primary
    return _VIDEO_MODELS[model]


def _primary_video(videos: list[_Element]) -> _Element | None:
    """The primary video device as libvirt 9.0 picks it: the one whose model says ``primary='yes'``, else the first."""
    for el in videos:
        model_el = _child(el, "model")
        if model_el is not None and model_el.get("primary") == "yes":
            return el
    return videos[0] if videos else None


def _hostdev(el: _Element, ctx: _Context, where: str) -> str | None:
    if el.get("mode", "subsystem") != "subsystem":
        return None
    htype = el.get("type")
    if htype == "pci":
        return "vfio-pci"
    if htype == "mdev":
        return "vfio-pci" if el.get("model") == "vfio-pci" else None
    if htype == "scsi_host":
        return _virtio("vhost-scsi", el.get("model"), where, "scsi_host hostdev")
    return None


def _model_attr(base: str, what: str, *, none: tuple[str, ...] = ()) -> Callable[[_Element, _Context, str], str | None]:
    def classify(el: _Element, ctx: _Context, where: str) -> str | None:
        model = el.get("model")
        if model in none:
            return None
        return _virtio(base, model, where, what)

    return classify


def _watchdog(el: _Element, ctx: _Context, where: str) -> str | None:
    return "i6300esb" if el.get("model") == "i6300esb" else None


def _shmem(el: _Element, ctx: _Context, where: str) -> str | None:
    model_el = _child(el, "model")
    model = (model_el.get("type") if model_el is not None else None) or "ivshmem"
    if model == "ivshmem-doorbell" and _child(el, "size") is not None:
        # the memory is the ivshmem server's to size: libvirt 9.0 refuses the domain at define
        raise _bad(where, "shmem model 'ivshmem-doorbell' does not support size setting")
    if model in ("ivshmem-plain", "ivshmem-doorbell"):
        return model
    raise _bad(
        where,
        f"shmem model {model!r} is not supported by QEMU 7.2 or pcitopo; use ivshmem-plain or ivshmem-doorbell",
    )


def _input(el: _Element, ctx: _Context, where: str) -> str | None:
    itype = el.get("type") or ""
    if itype not in _INPUT_TYPES or (el.get("bus") != "virtio" and itype != "passthrough"):
        return None
    model = el.get("model")
    if model not in (None, "virtio", "virtio-non-transitional"):
        raise _bad(where, f"input model {model!r} is not in pcitopo's catalog (use virtio)")
    return _INPUT_TYPES[itype]


def _filesystem(el: _Element, ctx: _Context, where: str) -> str | None:
    driver = _child(el, "driver")
    dtype = driver.get("type") if driver is not None else None
    if dtype == "virtiofs":
        return "vhost-user-fs"
    if dtype in (None, "path", "handle"):
        return _virtio("virtio-9p", el.get("model"), where, "filesystem")
    return None


def _serial(el: _Element, ctx: _Context, where: str) -> str | None:
    target = _child(el, "target")
    if target is None:
        return None
    model = _child(target, "model")
    if target.get("type") == "pci-serial" or (model is not None and model.get("name") == "pci-serial"):
        return "pci-serial"
    return None


def _simple(model_attr: str, mapping: Mapping[str, str]) -> Callable[[_Element, _Context, str], str | None]:
    def classify(el: _Element, ctx: _Context, where: str) -> str | None:
        return mapping.get(el.get(model_attr) or "")

    return classify


_CLASSIFY: Mapping[str, Callable[[_Element, _Context, str], str | None]] = {
    "disk": _disk,
    "controller": _controller,
    "interface": _interface,
    "sound": _sound,
    "video": _video,
    "hostdev": _hostdev,
    "rng": _model_attr("virtio-rng", "rng"),
    "watchdog": _watchdog,
    "memballoon": _model_attr("virtio-balloon", "memballoon", none=("none", "xen")),
    "shmem": _shmem,
    "input": _input,
    "vsock": _model_attr("vhost-vsock", "vsock"),
    "filesystem": _filesystem,
    "serial": _serial,
    "iommu": _simple("model", {"virtio": "virtio-iommu"}),
    "panic": _simple("model", {"pvpanic": "pvpanic-pci"}),
    "crypto": _simple("model", {"virtio": "virtio-crypto"}),
    "memory": _simple("model", {"virtio-pmem": "virtio-pmem", "virtio-mem": "virtio-mem"}),
}
"""Device element → its catalog kind (``None``: it does not use PCI)."""


@attrs.frozen
class _Implicit:
    """A device element libvirt adds on its own; pcitopo writes it, placed, whenever it writes a plan."""

    tag: str
    open: str
    inner: tuple[str, ...] = ()
    after: tuple[str, ...] = ()
    """Tags after whose last element in ``<devices>`` it goes (none found: at the end)."""

    def lines(self, address: PciAddress | None, multifunction: bool | None) -> list[tuple[int, str]]:
        body = [(1, text) for text in self.inner]
        if address is not None:
            body.append((1, _format_address(address, multifunction)))
        if not body:
            return [(0, self.open[:-1] + "/>")]
        return [(0, self.open), *body, (0, f"</{self.tag}>")]


def _implicit_elements(children: list[_Element], ctx: _Context) -> list[tuple[str, int | None, _Implicit]]:
    """The PCI device elements libvirt 9.0 adds to this domain: (kind, controller index, element).

    In libvirt's order: the machine's defaults (USB controller 0, SATA
    controller 0), then the controllers disks and virtio channels need, the
    video for graphics, the memballoon.
    """
    machine = ctx.machine
    defaults = machine.libvirt
    controllers: dict[str, set[int]] = {}
    for el in children:
        if el.tag == "controller":
            raw = el.get("index")
            index = int(raw) if raw is not None and raw.isdigit() else 0
            controllers.setdefault(str(el.get("type")), set()).add(index)
    out: list[tuple[str, int | None, _Implicit]] = []
    after_controller = ("controller", "disk", "emulator")

    def add_controller(ctype: str, index: int, model: str | None) -> None:
        controllers.setdefault(ctype, set()).add(index)
        el = etree.Element("controller", type=ctype, index=str(index))
        if model is not None:
            el.set("model", model)
        kind = _controller(el, ctx, "")
        if kind is None:
            return
        model_text = f" model='{model}'" if model is not None else ""
        out.append(
            (
                kind,
                index,
                _Implicit(
                    "controller", f"<controller type='{ctype}' index='{index}'{model_text}>", (), after_controller
                ),
            )
        )

    if defaults.usb is not None and 0 not in controllers.get("usb", set()):
        add_controller("usb", 0, defaults.usb)
    if defaults.sata0 and 0 not in controllers.get("sata", set()):
        add_controller("sata", 0, None)
    disk_indexes = _disk_controller_indexes(children, ctx.child)
    for bus in ("scsi", "ide", "sata"):
        # virDomainDefAddDiskControllersForType: every index up to the highest a disk uses
        for index in range(max(disk_indexes.get(bus, ()), default=-1) + 1):
            if index not in controllers.get(bus, set()):
                add_controller(bus, index, ctx.default_scsi() if bus == "scsi" else None)
    serial_indexes: set[int] = set()
    for el in children:
        target = _child(el, "target") if el.tag in ("channel", "console") else None
        if target is not None and target.get("type") == "virtio":
            address = _child(el, "address")
            raw = address.get("controller") if address is not None else None
            serial_indexes.add(int(raw) if raw is not None and raw.isdigit() else 0)
    for index in sorted(serial_indexes):
        if index not in controllers.get("virtio-serial", set()):
            add_controller("virtio-serial", index, None)
    tags = {str(el.tag) for el in children}
    if "graphics" in tags and "video" not in tags:
        model = ctx.default_video()
        video = etree.Element("video")
        etree.SubElement(video, "model", type=model)
        kind = _video(video, _Context(machine, ctx.arch, video), "")
        if kind is not None:
            out.append(
                (kind, None, _Implicit("video", "<video>", (f"<model type='{model}'/>",), ("video", "graphics")))
            )
    if defaults.memballoon and "memballoon" not in tags:
        out.append(("virtio-balloon", None, _Implicit("memballoon", "<memballoon model='virtio'>")))
    return out


def _disk_controller_indexes(
    children: list[_Element], child: Callable[[_Element, str], _Element | None]
) -> dict[str, set[int]]:
    """For each disk bus with controllers (scsi, ide, sata), the controller indexes its disks use.

    A disk's index is its drive address's controller, else libvirt's default for its target name.
    ``child`` finds a child element (:func:`_child`, or the domain's index of them).
    """
    indexes: dict[str, set[int]] = {}
    for el in children:
        if el.tag != "disk":
            continue
        target = child(el, "target")
        if target is None:
            continue
        bus = target.get("bus")
        if bus is None or bus not in _DISK_CONTROLLERS:
            continue
        address = child(el, "address")
        if address is not None and address.get("type") == "drive" and (address.get("controller") or "").isdigit():
            indexes.setdefault(bus, set()).add(int(str(address.get("controller"))))
            continue
        n = _disk_name_index(str(target.get("dev", "")))
        if n >= 0:
            indexes.setdefault(bus, set()).add(n // _DISK_CONTROLLERS[bus])
    return indexes


_DISK_NAME = re.compile(r"^(?:fd|hd|vd|sd|xvd|ubd)([a-z]+)")
"""A disk target's name (compiled once: ``re.match`` looks its pattern up in a cache every call, once a disk)."""


def _child_paths(d: LibvirtDomain, parent: _Element, children: Sequence[_Element]) -> list[str]:
    """The XPath of each of ``children`` (every child element of ``parent``, in order), as ``d._path`` gives it.

    lxml's ``getpath`` names a child by its tag, with its position among the siblings of that tag when it has
    any (``interface[2]``): written here from the parent's path rather than asked of lxml for each child, which
    walks the siblings again (the reader names every device element, for its errors). A child with a namespace
    gets its path from lxml (``getpath`` writes prefixes).
    """
    base = str(d._path(parent))
    totals: dict[str, int] = {}
    for el in children:
        totals[el.tag] = totals.get(el.tag, 0) + 1
    seen: dict[str, int] = {}
    out: list[str] = []
    for el in children:
        tag = el.tag
        if "{" in tag:
            out.append(d._path(el))
            continue
        n = seen[tag] = seen.get(tag, 0) + 1
        out.append(_Where(f"{base}/{tag}[{n}]" if totals[tag] > 1 else f"{base}/{tag}", _line(el)))
    return out


def _first_child_path(where: str, child: _Element) -> str:
    """The XPath of ``child``, the first child of its tag (as :func:`_child` finds it) of the element at ``where``.

    ``d._path(child)`` without asking lxml: ``getpath`` walks the siblings of
    every ancestor, the devices' hundreds among them, so that naming each
    address and target of a complete domain cost as much as reading the rest
    of it (a fifth of the reading of a complete 150-device domain). The first
    child of a tag gets ``[1]`` when a sibling of its tag follows it, as
    ``getpath`` writes it; ``where`` is the parent's path as ``d._path`` gives it.
    """
    tag = str(child.tag)
    assert "{" not in tag  # _child looks up plain tags only
    if next(child.itersiblings(tag), None) is not None:
        return _Where(f"{where}/{tag}[1]", _line(child))
    return _Where(f"{where}/{tag}", _line(child))


def _disk_name_index(name: str) -> int:
    """libvirt's virDiskNameToIndex: ``vda`` 0, ``vdz`` 25, ``vdaa`` 26."""
    match = _DISK_NAME.match(name)
    if match is None:
        return -1
    index = 0
    for ch in match.group(1):
        index = index * 26 + (ord(ch) - ord("a") + 1)
    return index - 1


def _implied_multifunction(
    controllers: list[Controller], devices: list[Device]
) -> tuple[list[Controller], list[Device], frozenset[str]]:
    """``multifunction='on'`` where libvirt sets it: function 0 of a slot whose other functions are in use.

    ``virDomainPCIAddressSetAllMulti`` does this for every slot unless the
    user wrote ``multifunction`` on function 0 (``off`` is kept, and is then
    an error). Returns the changed lists and the keys (device id, or
    ``pci.N`` for a controller) of what was changed.
    """
    used = {
        (a.domain, a.bus, a.slot)
        for a in (*(c.address for c in controllers), *(d.address for d in devices))
        if a is not None and a.function != 0
    }
    if not used:
        return controllers, devices, frozenset()
    changed: set[str] = set()

    def implied(address: PciAddress | None, multifunction: bool | None) -> bool:
        return (
            address is not None
            and address.function == 0
            and multifunction is None
            and (address.domain, address.bus, address.slot) in used
        )

    new_controllers = []
    for c in controllers:
        if implied(c.address, c.multifunction):
            c = attrs.evolve(c, multifunction=True)
            changed.add(f"pci.{c.index}")
        new_controllers.append(c)
    new_devices = []
    for dev in devices:
        if implied(dev.address, dev.multifunction):
            dev = attrs.evolve(dev, multifunction=True)
            changed.add(dev.id)
        new_devices.append(dev)
    return new_controllers, new_devices, frozenset(changed)


def _gap_controllers(machine: Machine, controllers: list[Controller], devices: list[Device]) -> list[Controller]:
    """The PCI controllers libvirt adds for indexes below the highest one in use: a gap, a bus an address names.

    ``qemuDomainPCIAddressSetCreate`` gives every missing index the default
    model (pseries: another host bridge; PCI Express machines: a root port;
    else a pci-bridge), and libvirt then adds those controllers.
    """
    have = {c.index for c in controllers}
    buses = [a.bus for a in (*(c.address for c in controllers), *(d.address for d in devices)) if a is not None]
    top = max([*have, *buses], default=0)
    if top <= 0 or len(have) > top:
        return []
    if machine.max_host_bridges > 1:
        model = "spapr-pci-host-bridge"
    elif machine.root_model == "pcie-root":
        model = "pcie-root-port"
    else:
        model = "pci-bridge"
    return [Controller(i, model) for i in range(1, top + 1) if i not in have]


def _acpi_index(el: _Element | None, d: LibvirtDomain) -> int | None:
    """The ``index`` of a device's ``<acpi>`` element (``None`` without one)."""
    text = None if el is None else el.get("index")
    if el is None or text is None:
        return None
    if not text.isdecimal() or not 0 <= int(text) < 2**32:
        raise _bad(d._path(el), f"index must be a decimal number from 0 to {2**32 - 1} (got {text!r})")
    return int(text)


def _usb2_slot_groups(
    devices: list[Device], elements: Mapping[str, _Element], indexes: Mapping[_Element, int]
) -> list[Device]:
    """Each ICH9 USB2 set (the companions of one USB index) as one slot group, UHCI1-3 then EHCI.

    libvirt keeps a set in one slot (``uhci1`` .0, ``uhci2`` .1, ``uhci3``
    .2, ``ehci1`` .7) whatever order the controllers are listed in; a slot
    group keeps any policy from splitting it. A set with an addressed member
    is left as written.
    """
    sets: dict[int, list[int]] = {}
    for i, dev in enumerate(devices):
        if dev.kind in _USB2_FUNCTION and elements[dev.id].tag == "controller":
            sets.setdefault(indexes.get(elements[dev.id], 0), []).append(i)
    out = list(devices)
    for index, positions in sets.items():
        members = [devices[i] for i in positions]
        if len(members) < 2 or any(m.address is not None or m.needs.slot_group for m in members):
            continue
        members.sort(key=lambda m: _USB2_FUNCTION[m.kind])
        for i, m in zip(positions, members, strict=True):
            out[i] = attrs.evolve(m, needs=attrs.evolve(m.needs, slot_group=f"usb2-{index}"))
    return out


def _libvirt_controller_order(
    devices: list[Device], elements: Mapping[str, _Element], indexes: Mapping[_Element, int], slots: list[int]
) -> list[Device]:
    """Controllers in the order libvirt keeps them after parsing, other devices where they are.

    ``virDomainControllerInsertPreAlloced`` puts a parsed controller right
    after the last one of its type with a lower index (before one with a
    higher index); a type not seen yet goes at the end. That order is the
    one ``qemuDomainAssignDevicePCISlots`` follows. ``slots``: the positions of the devices of ``<controller>``
    elements in ``devices``.
    """
    if len(slots) < 2:
        return devices
    order: list[Device] = []
    for i in slots:
        dev = devices[i]
        el = elements[dev.id]
        ctype, index = el.get("type"), indexes.get(el, 0)
        at = -1
        for j in range(len(order) - 1, -1, -1):
            other = elements[order[j].id]
            if other.get("type") != ctype:
                continue
            if indexes.get(other, 0) > index:
                at = j
            elif at == -1:
                at = j + 1
        order.insert(len(order) if at == -1 else at, dev)
    out = list(devices)
    for i, dev in zip(slots, order, strict=True):
        out[i] = dev
    return out


def _libvirt_disk_order(
    devices: list[Device],
    elements: Mapping[str, _Element],
    child: Callable[[_Element, str], _Element | None],
    slots: list[int],
) -> list[Device]:
    """Disks in the order libvirt keeps them (by bus, then target name), other devices where they are.

    libvirt sorts ``<disk>`` elements when it parses a domain, so its
    placement, and definition order, follow ``vda, vdb, ...``. ``child`` finds
    a child element (:func:`_child`, or the domain's index of them); ``slots``
    are the positions of the disks in ``devices``.
    """

    def key(dev: Device) -> tuple[str, int, str]:
        target = child(elements[dev.id], "target")
        name = str(target.get("dev", "")) if target is not None else ""
        bus = str(target.get("bus", "")) if target is not None else ""
        return (bus, _disk_name_index(name), name)

    return _sorted_in_place(devices, slots, key)


def _libvirt_video_order(
    devices: list[Device], elements: Mapping[str, _Element], primary: _Element | None, slots: list[int]
) -> list[Device]:
    """Videos in the order libvirt keeps them: the primary (``primary='yes'``) first, the others after it.

    libvirt's parser moves the primary video to the front, so it is placed
    first and named ``video0``. ``slots`` are the positions of the videos in ``devices``.
    """
    return _sorted_in_place(devices, slots, lambda dev: elements[dev.id] is not primary)


def _sorted_in_place(devices: list[Device], slots: list[int], key: Callable[[Device], Any]) -> list[Device]:
    """The devices at ``slots`` (the positions of one element tag's) sorted by ``key`` (stably) into those
    positions; the others stay. The reader lists each tag's positions as it makes the devices: asking each
    device's element its tag again, for disks, videos and controllers, was three passes over a plan's devices."""
    if len(slots) < 2:
        return devices
    out = list(devices)
    for i, dev in zip(slots, sorted((devices[i] for i in slots), key=key), strict=True):
        out[i] = dev
    return out


def _os_firmware(root: Any, machine: Machine) -> str | None:
    """The firmware ``<os>`` asks for, when the machine is booted by one pcitopo models (``None``: its default).

    ``<os firmware='efi'>`` and a ``<loader>`` path with OVMF or edk2 in it
    mean OVMF; ``firmware='bios'`` means SeaBIOS.
    """
    os_el = _child(root, "os")
    if os_el is None or not machine.firmware_names:
        return None
    choice = os_el.get("firmware")
    name: str | None = None
    if choice == "efi":
        name = next((f for f in machine.firmware_names if Firmware.named(f).efi), None)
    elif choice == "bios":
        name = next((f for f in machine.firmware_names if not Firmware.named(f).efi), None)
    else:
        loader = (os_el.findtext("loader") or "").strip()
        if loader:
            try:
                name = Firmware.for_loader(loader).name
            except UnknownName:
                name = None
    return name if name in machine.firmware_names else None


_SCALE = {
    "b": 1, "bytes": 1, "k": 1024, "kib": 1024, "kb": 1000, "m": 1 << 20, "mib": 1 << 20, "mb": 10**6,
    "g": 1 << 30, "gib": 1 << 30, "gb": 10**9, "t": 1 << 40, "tib": 1 << 40, "tb": 10**12,
}  # fmt: skip
"""libvirt's scaled-integer units (``virScaleInteger``), lower-cased."""

_MEMORY_KINDS = ("vga", "vmvga", "bochs")
"""Video kinds whose ``<model vram>`` (KiB) libvirt 9.0 passes to QEMU as their video memory
(``vgamem_mb`` for VGA and vmware-svga, ``vgamem`` for bochs-display)."""


def _scaled(el: _Element, where: str, default_unit: str) -> int:
    """A libvirt scaled integer: the element's text in its ``unit`` (``default_unit`` when absent)."""
    unit = str(el.get("unit") or default_unit).lower()
    text = (el.text or "").strip()
    if unit not in _SCALE or not text.isdigit():
        raise _bad(where, f"expected a size in bytes, KiB, MiB, GiB or TiB (got {text!r} {el.get('unit') or ''})")
    return int(text) * _SCALE[unit]


def _device_memory(el: _Element, kind: str, where: str) -> int | None:
    """Bytes of a device's memory where the domain sets it: ``<shmem><size>``, ``<video><model vram>``."""
    if el.tag == "shmem" and kind == "ivshmem-plain":
        size_el = _child(el, "size")
        if size_el is None:
            return None
        size = _scaled(size_el, f"{where}/size", "b")
        return size or None
    if el.tag == "video" and kind in _MEMORY_KINDS:
        model_el = _child(el, "model")
        vram = model_el.get("vram") if model_el is not None else None
        if vram is None:
            return None
        if not str(vram).isdigit() or int(vram) == 0:
            raise _bad(f"{where}/model", f"vram must be a positive number of KiB (got {vram!r})")
        return int(vram) * 1024
    return None


def _mmio64(root: Any, machine: Machine, firmware: str | None, path: Callable[[Any], str]) -> int | None:
    """The 64-bit MMIO window the domain asks for: OVMF's fw_cfg entry, else ``<pcihole64>`` (bytes)."""
    fw = machine.firmware(firmware) if machine.firmware_names else None
    if fw is None:
        return None
    if fw.mmio64_knob:
        ns = "{http://libvirt.org/schemas/domain/qemu/1.0}"
        for arg in root.findall(f"{ns}commandline/{ns}arg"):
            value = str(arg.get("value", ""))
            if value.startswith(f"name={fw.mmio64_knob},string="):
                text = value.rsplit("=", 1)[1]
                if not text.isdigit() or int(text) == 0:
                    raise _bad(path(arg), f"{fw.mmio64_knob} must be a number of MiB (got {text!r})")
                return int(text) << 20
        return None
    for el in root.findall("devices/controller[@type='pci']"):
        hole = _child(el, "pcihole64")
        if hole is not None and el.get("index", "0") == "0":
            return _scaled(hole, path(hole), "KiB") or None
    return None


_QEMU_NS = "{http://libvirt.org/schemas/domain/qemu/1.0}"


def _io_reserves(root: Any, path: Callable[[Any], str]) -> dict[str, int | None]:
    """QEMU's ``io-reserve`` set by ``<qemu:override>``, by device alias (``None``: the property is removed)."""
    found: dict[str, int | None] = {}
    for device in root.findall(f"{_QEMU_NS}override/{_QEMU_NS}device"):
        alias = device.get("alias")
        for prop in device.findall(f"{_QEMU_NS}frontend/{_QEMU_NS}property"):
            if prop.get("name") != "io-reserve" or alias is None:
                continue
            kind, value = prop.get("type"), str(prop.get("value", ""))
            if kind == "remove":
                found[str(alias)] = None
            elif kind in ("unsigned", "signed", "string") and value.isdigit():
                found[str(alias)] = int(value)
            else:
                raise _bad(path(prop), f"io-reserve must be an unsigned number of bytes (got {kind!r} {value!r})")
    return found


def _phys_bits(root: Any) -> int | None:
    """The guest CPU's physical address bits: ``<maxphysaddr mode='emulate' bits>``; ``None`` for the host's."""
    cpu = _child(root, "cpu")
    if cpu is None:
        return 40
    limit = _child(cpu, "maxphysaddr")
    if limit is not None and limit.get("mode") == "emulate" and str(limit.get("bits", "")).isdigit():
        return int(str(limit.get("bits")))
    if (limit is not None and limit.get("mode") == "passthrough") or cpu.get("mode") == "host-passthrough":
        return None  # QEMU's -cpu host takes the host's physical address bits
    return 40


class _Reader:
    """Reads a domain's elements into its topology."""

    def __init__(self, domain: LibvirtDomain) -> None:
        self.d = domain
        self.root = domain._root
        self.active = self.root.get("id") is not None
        """A running domain's document (``<domain id>``): every alias is libvirt's own and an identity."""

    def _alias(self, el: _Element) -> str | None:
        """The element's ``<alias name>`` when it identifies the element, else ``None``.

        In a running domain's document every alias is one libvirt gave (or a
        user's ``ua-`` one). In a definition (no ``<domain id>``) libvirt 9.0
        keeps only user aliases, those starting ``ua-``, and drops any other
        on ``virsh define``, so such an alias is no identity: it stays in the
        document as written but the element is named as if it had none.
        """
        alias = self.d._child(el, "alias")
        name = alias.get("name") if alias is not None else None
        if not name or not (self.active or str(name).startswith(_USER_ALIAS_PREFIX)):
            return None
        return str(name)

    def read(self) -> None:
        d = self.d
        machine, arch = self._machine()
        d.machine = machine
        devices_el = _child(self.root, "devices")
        children = [c for c in devices_el if isinstance(c.tag, str)] if devices_el is not None else []
        videos = [c for c in children if c.tag == "video"]
        ctx = _Context(machine, arch, _primary_video(videos), d._child)
        # libvirt moves the primary video first, so it is video0 and the others follow in order
        video_numbers = {el: n for n, el in enumerate(sorted(videos, key=lambda el: el is not ctx.first_video))}

        self.ids: dict[str, _Element] = {}
        self.aliases: dict[_Element, str] = {}  # each child's identifying alias, read once
        for el in children:
            name = self._alias(el)
            if name is not None:
                self.aliases[el] = name
                if name in self.ids:
                    raise DuplicateId(name, d._path(self.ids[name]), d._path(el), line=_line(el))
                self.ids[name] = el

        self.io_reserves = _io_reserves(self.root, d._path)
        paths = _child_paths(d, devices_el, children) if devices_el is not None else []
        controller_indexes = self._controller_indexes(children, paths)
        controllers: list[Controller] = []
        d._controller_elements = {}
        d._index_implied = {}
        devices: list[Device] = []
        d._elements = {}
        counts: dict[str, int] = {}
        positions: dict[str, list[int]] = {}  # each element tag's devices, by their position in devices
        for el, where in zip(children, paths, strict=True):
            tag = str(el.tag)
            n = counts.get(tag, 0)
            counts[tag] = n + 1
            if tag == "video":
                n = video_numbers[el]
            if tag == "controller" and el.get("type") == "pci":
                c = self._pci_controller(el, where, controller_indexes[el], machine)
                controllers.append(c)
                d._controller_elements[c.index] = el
                if el.get("index") is None:
                    d._index_implied[c.index] = el
                if c.id is not None:
                    d._elements[c.id] = el
                continue
            classify = _CLASSIFY.get(tag)
            if classify is None:
                continue
            address_el = d._child(el, "address")
            address_type = address_el.get("type") if address_el is not None else None
            if address_type is not None and address_type != "pci":
                continue  # not on PCI: ccw, virtio-mmio, spapr-vio, isa, drive, usb, ...
            kind = classify(el, ctx, where)
            if kind is None:
                if address_type == "pci":
                    raise _bad(where, f"a <{tag}> of this type or model does not use PCI but has a PCI address")
                continue
            address: PciAddress | None = None
            multifunction: bool | None = None
            if address_el is not None:
                address, multifunction = _pci_address(address_el, _first_child_path(where, address_el))
            if address is None:
                address = self._chipset_address(el, machine, controller_indexes.get(el))
            elif self._chipset_address(el, machine, controller_indexes.get(el)) not in (None, address):
                raise _bad(where, _CHIPSET_MESSAGES[(machine.name, str(el.get("type")))])
            ident = self._id(el, tag, n, controller_indexes.get(el))
            memory = _device_memory(el, kind, where)
            acpi_index = _acpi_index(d._child(el, "acpi"), d)
            try:
                devices.append(
                    Device(
                        ident,
                        kind,
                        address=address,
                        multifunction=multifunction,
                        memory=memory,
                        acpi_index=acpi_index,
                    )
                )
            except InvalidInput as exc:
                raise _bad(where, exc.reason) from None
            d._elements[ident] = el
            positions.setdefault(tag, []).append(len(devices) - 1)
        # the sorts below permute devices of one tag among their own positions: each tag's stay where they are
        devices = _libvirt_disk_order(devices, d._elements, d._child, positions.get("disk", []))
        devices = _libvirt_video_order(devices, d._elements, ctx.first_video, positions.get("video", []))
        devices = _libvirt_controller_order(devices, d._elements, controller_indexes, positions.get("controller", []))
        devices = _usb2_slot_groups(devices, d._elements, controller_indexes)
        d._implicit = {}
        for kind, index, implicit in _implicit_elements(children, ctx):
            tag = implicit.tag
            ctype = implicit.open.split("'")[1] if tag == "controller" else ""
            base = f"{ctype}{index}" if tag == "controller" else f"{tag}{counts.get(tag, 0)}"
            ident, k = base, 1
            while ident in self.ids:
                k += 1
                ident = f"{base}-{k}"
            self.ids[ident] = self.root
            address = None
            if tag == "controller" and index == 0:
                address = _CHIPSET.get((machine.name, ctype, kind))
            devices.append(Device(ident, kind, address=address))
            d._implicit[ident] = implicit
        controllers += _gap_controllers(machine, controllers, devices)
        controllers, devices, d._multi_implied = _implied_multifunction(controllers, devices)
        d._implicit_controllers = frozenset(c.index for c in controllers if c.index not in d._controller_elements)
        d._implicit_controllers -= {0}
        numa = self.root.findall("cpu/numa/cell")
        acpi = self.root.find("features/acpi") is not None
        firmware = _os_firmware(self.root, machine)
        try:
            d.topology = Topology.build(
                machine,
                controllers,
                devices,
                numa_nodes=len(numa),
                acpi=acpi,
                firmware=firmware,
                mmio64=_mmio64(self.root, machine, firmware, d._path),
                phys_bits=_phys_bits(self.root),
            )
        except DuplicateId:
            raise  # the reader adds the document's name
        except PcitopoError as exc:
            raise InvalidDomainXML("", str(exc), source=d.source) from None

    def _machine(self) -> tuple[Machine, str]:
        type_el = self.root.find("os/type")
        where = self.d._path(type_el) if type_el is not None else "/domain/os/type"
        arch = type_el.get("arch") if type_el is not None else None
        if arch is None:
            emulator = self.root.findtext("devices/emulator") or ""
            match = re.search(r"qemu-system-(\w+)$", emulator.strip())
            arch = match.group(1) if match else "x86_64"
        machine_type = type_el.get("machine") if type_el is not None else None
        if self.d._machine_override is not None:
            override = self.d._machine_override
            if arch not in override.arches:
                raise _bad(
                    where,
                    f"arch {arch!r} is not one of machine description {override.name!r}'s "
                    f"({', '.join(override.arches)})",
                )
            return override, arch
        if machine_type is None:
            machine_type = _DEFAULT_MACHINE.get(arch)
            if machine_type is None:
                raise _bad(where, f"no machine type given and pcitopo knows no default for arch {arch!r}")
        try:
            machine = Machine.for_machine_type(machine_type, arch=arch)
        except UnknownName:
            known = "; ".join(
                f"{m.name} ({', '.join(m.machine_types)})" for m in machines().values() if m.machine_types
            )
            raise _bad(
                where,
                f"machine type {machine_type!r} on arch {arch!r} has no PCI bus pcitopo can place devices on"
                f" (machines with PCI: {known})",
            ) from None
        if arch == "armv7l" and machine.name == "aarch64-virt":
            machine = Machine.named("aarch64-virt-highmem-off")
        return machine, arch

    def _controller_indexes(self, children: list[_Element], paths: list[str]) -> dict[_Element, int]:
        """Each controller's index; missing ones get the lowest unused index of their type, like libvirt.

        ``paths`` are the children's XPaths (:func:`_child_paths`).
        """
        result: dict[_Element, int] = {}
        used: dict[str, set[int]] = {}
        usb2_indexes: set[int] = set()
        for el, where in zip(children, paths, strict=True):
            if el.tag == "controller" and el.get("index") is not None:
                index = _number(str(el.get("index")), where, "index")
                if el.get("type") == "pci" and index > 255:
                    raise _bad(where, f"PCI controller index {index} too high, maximum is 255")
                companion = el.get("type") == "usb" and el.get("model") in _USB2_COMPANIONS
                if index in used.setdefault(str(el.get("type")), set()) and not (companion and index in usb2_indexes):
                    raise _bad(where, f"a {el.get('type')} controller with index {index} is defined twice")
                if companion:
                    usb2_indexes.add(index)
                used[str(el.get("type"))].add(index)
                result[el] = index
        last_usb2: int | None = None
        for el in children:
            if el.tag == "controller" and el.get("type") == "usb" and el.get("model") in _USB2_COMPANIONS:
                if el.get("index") is None and last_usb2 is not None:
                    # libvirt: an unindexed companion joins the USB2 controller before it
                    result[el] = last_usb2
                    continue
                if el in result:
                    last_usb2 = result[el]
            if el.tag == "controller" and el.get("index") is None:
                taken = used.setdefault(str(el.get("type")), set())
                index = next(i for i in range(len(taken) + 1) if i not in taken)
                taken.add(index)
                result[el] = index
        return result

    def _pci_controller(self, el: _Element, where: str, index: int, machine: Machine) -> Controller:
        model = el.get("model")
        if model is None:
            if index != 0:
                raise _bad(where, "a PCI controller needs a model")
            model = machine.root_model
        if model not in _PCI_MODELS:
            raise _unknown(where, "PCI controller model", model, _PCI_MODELS)
        model_el = _child(el, "model")
        qemu_model = model_el.get("name") if model_el is not None else None
        target = _child(el, "target")
        twhere = _first_child_path(where, target) if target is not None else where
        if model in ("pci-root", "pcie-root"):
            if index == 0 and model != machine.root_model:
                raise _bad(
                    where,
                    f"The PCI controller with index='0' must be model='{machine.root_model}' for this machine type,"
                    f" but model='{model}' was found instead",
                )
            if index != 0:
                if machine.name != "pseries" or model != "pci-root":
                    raise _bad(where, "pci-root and pcie-root controllers should have index 0")
                model = "spapr-pci-host-bridge"
        elif index == 0:
            raise _bad(
                where,
                f"The PCI controller with index='0' must be model='{machine.root_model}' for this machine type,"
                f" but model='{model}' was found instead",
            )
        address: PciAddress | None = None
        multifunction: bool | None = None
        address_el = _child(el, "address")
        if address_el is not None:
            if address_el.get("type") != "pci":
                raise _bad(_first_child_path(where, address_el), "a PCI controller can only have a PCI address")
            address, multifunction = _pci_address(address_el, _first_child_path(where, address_el))
        alias = self.aliases.get(el)
        fields: dict[str, int | None] = {}
        node: int | None = None
        hotplug: bool | None = None
        if target is not None:
            for attr, field in (
                ("chassisNr", "chassis_nr"),
                ("chassis", "chassis"),
                ("port", "port"),
                ("busNr", "bus_nr"),
                ("index", "target_index"),
            ):
                fields[field] = _opt_number(target, attr, twhere)
            hotplug = _on_off(target.get("hotplug"), twhere, "hotplug")
            node_text = target.findtext("node")
            if node_text is not None:
                node = _number(node_text, twhere, "node")
        try:
            return Controller(
                index,
                model,
                address=address,
                id=alias,
                qemu_model=qemu_model,
                numa_node=node,
                hotplug=hotplug,
                multifunction=multifunction,
                io_reserve=self.io_reserves.get(alias) if alias is not None else None,
                **fields,
            )
        except InvalidInput as exc:
            raise _bad(twhere if target is not None else where, exc.reason) from None

    def _chipset_address(self, el: _Element, machine: Machine, index: int | None) -> PciAddress | None:
        if el.tag != "controller" or index != 0:
            return None
        ctype = el.get("type")
        if machine.name == "q35" and ctype == "sata":
            return PciAddress(slot=0x1F, function=2)
        if machine.name == "pc" and ctype == "ide":
            return PciAddress(slot=1, function=1)
        if machine.name == "pc" and ctype == "usb" and el.get("model") in (None, "piix3-uhci"):
            return PciAddress(slot=1, function=2)
        return None

    def _id(self, el: _Element, tag: str, n: int, index: int | None) -> str:
        alias = self.aliases.get(el)
        if alias is not None:
            return alias
        base = f"{el.get('type')}{index}" if tag == "controller" else f"{tag}{n}"
        ident, k = base, 1
        while ident in self.ids:
            k += 1
            ident = f"{base}-{k}"
        self.ids[ident] = el
        return ident
