"""libvirt domain XML in and out.

:meth:`LibvirtDomain.from_string` and :meth:`LibvirtDomain.from_path` read a
``<domain>`` document into a :class:`~pcitopo.topology.Topology`;
:meth:`LibvirtDomain.with_topology` writes a (solved) topology back into the
same document, and :meth:`LibvirtDomain.to_string` returns it.

>>> xml = '''<domain type='kvm'>
...   <name>demo</name>
...   <os><type arch='x86_64' machine='pc-q35-7.2'>hvm</type></os>
...   <devices>
...     <controller type='pci' index='0' model='pcie-root'/>
...     <!-- the NIC -->
...     <interface type='network'>
...       <source network='default'/>
...       <model type='virtio'/>
...       <alias name='ua-net0'/>
...     </interface>
...     <memballoon model='none'/>
...   </devices>
... </domain>'''
>>> domain = LibvirtDomain.from_string(xml)
>>> domain.machine.name, [str(d) for d in domain.topology.devices]
('q35', ["'ua-net0' (virtio-net)"])
>>> from pcitopo.address import PciAddress
>>> from pcitopo.devices import Controller
>>> port = Controller(1, "pcie-root-port", address=PciAddress.parse("00:01.0"))
>>> solved = domain.topology.with_controllers(port).replace(
...     devices=[domain.topology.device("ua-net0").placed_at(PciAddress.parse("01:00.0"))])
>>> print(domain.with_topology(solved).to_string())
<domain type='kvm'>
  <name>demo</name>
  <os><type arch='x86_64' machine='pc-q35-7.2'>hvm</type></os>
  <devices>
    <controller type='pci' index='0' model='pcie-root'/>
    <controller type='pci' index='1' model='pcie-root-port'>
      <model name='pcie-root-port'/>
      <target chassis='1' port='0x8'/>
      <address type='pci' domain='0x0000' bus='0x00' slot='0x01' function='0x0'/>
    </controller>
    <!-- the NIC -->
    <interface type='network'>
      <source network='default'/>
      <model type='virtio'/>
      <alias name='ua-net0'/>
      <address type='pci' domain='0x0000' bus='0x01' slot='0x00' function='0x0'/>
    </interface>
    <memballoon model='none'/>
  </devices>
</domain>

Import
------
The machine comes from ``<os><type arch machine>`` (missing machine: the
architecture's usual default, ``pc``, ``virt`` or ``pseries``; missing arch:
the one in the ``<emulator>`` path, else ``x86_64``); ``<cpu><numa><cell>``
gives the NUMA node count and ``<features><acpi/>`` ACPI. Every
``<controller type='pci'>`` is a :class:`~pcitopo.devices.Controller`
(a pseries ``pci-root`` with index > 0 is an ``spapr-pci-host-bridge``). Every
other device element that uses PCI by libvirt's classification
(``libvirt-rules.md`` §2) is a :class:`~pcitopo.devices.Device` of the catalog
kind. Models left out are given libvirt 9.0's defaults for the machine
(checked with ``virsh define`` on QEMU 7.2): NIC ``rtl8139`` on x86 and
pseries, ``virtio`` on ARM/RISC-V virt; video ``cirrus`` on x86, ``vga`` on
pseries, ``virtio`` on virt; USB ``qemu-xhci`` on aarch64 and pseries, else
``piix3-uhci``; SCSI ``lsilogic`` (pseries: ``ibmvscsi``, not PCI). Devices that
do not use PCI (a SATA disk, a PS/2 input, ``model='none'``, an element with a
``ccw``, ``virtio-mmio``, ``spapr-vio`` or ``isa`` address) are not part of the
topology and stay in the document untouched. Chipset positions libvirt forces
are filled in: SATA controller 0 at 00:1f.2 on q35; IDE controller 0 at
00:01.1 and a PIIX3 USB controller 0 at 00:01.2 on pc.

Device ids: the ``<alias name>`` when there is one; else, for controllers,
``<type><index>`` (``sata0``, ``usb1``, ``virtio-serial0``) and for other
elements ``<element><n>`` with ``n`` counting elements of that name in
``<devices>`` from 0 (``interface0``, ``disk1``; every element counts, PCI or
not, so ids stay put when a SATA disk is added in front of a virtio one). A
generated id that is taken gets ``-2``, ``-3``, ... appended.

An address ``<address type='pci'>`` whose domain, bus and slot are all zero is
a request for an address, as in libvirt. Numbers are read like libvirt's
``strtoul(..., 0)``: ``0x10`` hexadecimal, ``010`` octal, ``16`` decimal.

Export
------
:meth:`~LibvirtDomain.with_topology` changes only what the topology changed,
by splicing text into the original document: every other character (quote
style, comments, namespaces, processing instructions, blank lines, the XML
declaration) stays as it was, so a round trip without changes returns the
input byte for byte, the XML declaration included. A new or changed
``<address>`` is written as libvirt writes it (``domain='0x0000' bus='0x01'
slot='0x00' function='0x0'``, ``multifunction='on'`` when set) in place of the
old one, or as the last child of the device. New controllers follow libvirt's
form (``<model name>``, ``<target>`` with the values libvirt would compute,
from :mod:`pcitopo.legality.identity`: chassis = index and port =
slot·8+function for root ports, chassis = index and port = slot for
downstream ports, chassisNr = index for pci-bridges, busNr from 254 down by 2
for expander buses, the lowest free target index for pseries host bridges)
and go after the last ``<controller>`` element, where
``virsh dumpxml`` puts the controllers libvirt adds. Indentation follows the
document's. When anything is written, PCI controllers that had no ``index``
attribute get the one they were given on import.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import attrs
from lxml import etree

from pcitopo.address import PciAddress
from pcitopo.devices import Controller, Device
from pcitopo.errors import DuplicateId, InternalError, InvalidDomainXML, InvalidInput, PcitopoError, UnknownName
from pcitopo.formats._xmltext import Edit, ElementSpan, ScanError, indent_before, scan, splice
from pcitopo.legality import identity
from pcitopo.legality.machine import Machine, machines
from pcitopo.topology import Topology

if TYPE_CHECKING:
    from pcitopo.solver.plan import Plan

__all__ = ["LibvirtDomain"]


def __dir__() -> list[str]:
    return __all__


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


_ADDRESS_LIMITS = (
    ("domain", 0xFFFF, "Invalid PCI address domain='0x{v:x}', must be <= 0xFFFF"),
    ("bus", 0xFF, "Invalid PCI address bus='0x{v:x}', must be <= 0xFF"),
    ("slot", 0x1F, "Invalid PCI address slot='0x{v:x}', must be <= 0x1F"),
    ("function", 7, "Invalid PCI address function=0x{v:x}, must be <= 7"),
)


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
    return PciAddress(**values), multifunction


def _format_address(address: PciAddress, multifunction: bool | None, *, close: bool = True) -> str:
    text = (
        f"<address type='pci' domain='0x{address.domain:04x}' bus='0x{address.bus:02x}'"
        f" slot='0x{address.slot:02x}' function='0x{address.function:x}'"
    )
    if multifunction is not None:
        text += f" multifunction='{'on' if multifunction else 'off'}'"
    return text + ("/>" if close else ">")


# -- machine defaults (libvirt 9.0 with QEMU 7.2, checked with virsh define) --------------

_VIRT_ARCHES = ("aarch64", "armv7l", "riscv64", "riscv32")
_PPC_ARCHES = ("ppc64", "ppc64le")
_DEFAULT_MACHINE = {
    "x86_64": "pc",
    "i686": "pc",
    "aarch64": "virt",
    "armv7l": "virt",
    "riscv64": "virt",
    "riscv32": "virt",
    "ppc64": "pseries",
    "ppc64le": "pseries",
}
_VIRTIO_MODELS = {"virtio": "", "virtio-transitional": "-transitional", "virtio-non-transitional": "-non-transitional"}


class _Context:
    """What classification needs to know about the domain."""

    def __init__(self, machine: Machine, arch: str, first_video: _Element | None) -> None:
        self.machine = machine
        self.arch = arch
        self.first_video = first_video

    @property
    def pseries(self) -> bool:
        return self.machine.name == "pseries"

    @property
    def virt(self) -> bool:
        return self.arch in _VIRT_ARCHES

    def default_usb(self) -> str:
        return "qemu-xhci" if self.arch in ("aarch64", *_PPC_ARCHES) else "piix3-uhci"

    def default_nic(self) -> str:
        return "virtio" if self.virt else "rtl8139"

    def default_video(self) -> str:
        if self.arch in _PPC_ARCHES:
            return "vga"
        return "virtio" if self.virt else "cirrus"


def _virtio(base: str, model: str | None, where: str, what: str) -> str:
    """``virtio-net``, ``virtio-net-transitional`` or ``virtio-net-non-transitional`` for a virtio model."""
    suffix = _VIRTIO_MODELS.get(model or "virtio")
    if suffix is None:
        raise _bad(where, f"unknown {what} model {model!r} (known: {', '.join(_VIRTIO_MODELS)})")
    return base + suffix


def _unknown(where: str, what: str, model: str, known: Iterable[str]) -> InvalidDomainXML:
    return _bad(where, str(UnknownName(what, model, known)))


_NIC_MODELS = {
    "e1000": "e1000",
    "e1000e": "e1000e",
    "igb": "igb",
    "rtl8139": "rtl8139",
    "ne2k_pci": "ne2k_pci",
    "pcnet": "pcnet",
    "vmxnet3": "vmxnet3",
}
_NIC_NOT_PCI = ("spapr-vlan", "usb-net", "smc91c111", "lan9118", "lance", "ne2k_isa")


def _interface(el: _Element, ctx: _Context, where: str) -> str | None:
    if el.get("type") == "hostdev":
        return "vfio-pci"
    model_el = el.find("model")
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
    target = el.find("target")
    bus = target.get("bus") if target is not None else None
    if bus is None and target is not None and (target.get("dev") or "").startswith("vd"):
        bus = "virtio"
    if bus != "virtio":
        return None
    return _virtio("virtio-blk", el.get("model"), where, "virtio disk")


_USB_MODELS = {
    "piix3-uhci": "piix3-uhci",
    "piix4-uhci": "piix4-uhci",
    "ich9-ehci1": "ich9-ehci1",
    "ich9-uhci1": "ich9-uhci1",
    "ich9-uhci2": "ich9-uhci2",
    "ich9-uhci3": "ich9-uhci3",
    "pci-ohci": "pci-ohci",
    "nec-xhci": "nec-xhci",
    "qemu-xhci": "qemu-xhci",
}
_USB_NOT_PCI = ("none", "qusb1", "qusb2", "pxa27x")
_SCSI_MODELS = {
    "lsilogic": "lsilogic",
    "lsisas1068": "lsisas1068",
    "lsisas1078": "lsisas1078",
    "vmpvscsi": "vmpvscsi",
}
_SCSI_NOT_PCI = ("ibmvscsi", "ncr53c90")


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
            model = "ibmvscsi" if ctx.pseries else "lsilogic"
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


_SOUND_MODELS = {"es1370": "es1370", "ac97": "ac97", "ich6": "ich6", "ich9": "ich9"}
_SOUND_NOT_PCI = ("sb16", "pcspk", "usb", "ich7")


def _sound(el: _Element, ctx: _Context, where: str) -> str | None:
    model = el.get("model") or ""
    if model in _SOUND_NOT_PCI:
        return None
    if model not in _SOUND_MODELS:
        raise _unknown(where, "sound model", model, [*_SOUND_MODELS, *_SOUND_NOT_PCI])
    return _SOUND_MODELS[model]


_VIDEO_MODELS = {"vga": "vga", "cirrus": "cirrus", "vmvga": "vmvga", "qxl": "qxl", "bochs": "bochs"}
_VIDEO_NOT_PCI = ("none", "ramfb", "gop")


def _video(el: _Element, ctx: _Context, where: str) -> str | None:
    model_el = el.find("model")
    model = (model_el.get("type") if model_el is not None else None) or ctx.default_video()
    if model in _VIDEO_NOT_PCI:
        return None
    if model == "virtio":
        primary = el is ctx.first_video
        return "virtio-vga" if primary and ctx.arch in ("x86_64", "i686", "riscv64", "riscv32") else "virtio-gpu"
    if model not in _VIDEO_MODELS:
        raise _unknown(where, "video model", model, [*_VIDEO_MODELS, "virtio", *_VIDEO_NOT_PCI])
    return _VIDEO_MODELS[model]


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
    model_el = el.find("model")
    model = (model_el.get("type") if model_el is not None else None) or "ivshmem"
    if model in ("ivshmem-plain", "ivshmem-doorbell"):
        return model
    raise _bad(
        where,
        f"shmem model {model!r} is not supported by QEMU 7.2 or pcitopo; use ivshmem-plain or ivshmem-doorbell",
    )


_INPUT_TYPES = {
    "keyboard": "virtio-keyboard",
    "mouse": "virtio-mouse",
    "tablet": "virtio-tablet",
    "passthrough": "virtio-input-host",
}


def _input(el: _Element, ctx: _Context, where: str) -> str | None:
    itype = el.get("type") or ""
    if itype not in _INPUT_TYPES or (el.get("bus") != "virtio" and itype != "passthrough"):
        return None
    model = el.get("model")
    if model not in (None, "virtio", "virtio-non-transitional"):
        raise _bad(where, f"input model {model!r} is not in pcitopo's catalog (use virtio)")
    return _INPUT_TYPES[itype]


def _filesystem(el: _Element, ctx: _Context, where: str) -> str | None:
    driver = el.find("driver")
    dtype = driver.get("type") if driver is not None else None
    if dtype == "virtiofs":
        return "vhost-user-fs"
    if dtype in (None, "path", "handle"):
        return _virtio("virtio-9p", el.get("model"), where, "filesystem")
    return None


def _serial(el: _Element, ctx: _Context, where: str) -> str | None:
    target = el.find("target")
    if target is None:
        return None
    model = target.find("model")
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

_NOT_PCI_ADDRESSES = ("ccw", "virtio-mmio", "spapr-vio", "isa", "unassigned", "s390")

_PCI_MODELS = (
    "pci-root",
    "pcie-root",
    "pci-bridge",
    "dmi-to-pci-bridge",
    "pcie-root-port",
    "pcie-switch-upstream-port",
    "pcie-switch-downstream-port",
    "pci-expander-bus",
    "pcie-expander-bus",
    "pcie-to-pci-bridge",
)

# -- the domain ---------------------------------------------------------------------------

_ENCODING_DECL = re.compile(r"""^(\ufeff?\s*<\?xml[^>]*?encoding\s*=\s*)(["'])[^"']*\2""")


def _parser() -> etree.XMLParser:
    return etree.XMLParser(resolve_entities=False, no_network=True, remove_comments=False, remove_pis=False)


class LibvirtDomain:
    """A libvirt domain document and the topology it describes.

    Build with :meth:`from_string` or :meth:`from_path`; a domain is not
    changed after that (:meth:`with_topology` returns a new one).
    """

    __slots__ = (
        "_controller_elements",
        "_elements",
        "_index_implied",
        "_machine_override",
        "_root",
        "_spans",
        "_text",
        "_unit",
        "encoding",
        "machine",
        "source",
        "topology",
    )

    source: str
    """Where the document came from (a path, ``<string>``, ``<stdin>``); errors name it."""
    encoding: str
    """The encoding :meth:`to_bytes` uses: the XML declaration's, else UTF-8."""
    machine: Machine
    """The machine description for ``<os><type arch machine>``."""
    topology: Topology
    """The controllers and devices the document describes."""
    _text: str
    _root: _Element
    _spans: dict[_Element, ElementSpan]
    _unit: str
    _machine_override: Machine | None
    _elements: dict[str, _Element]
    _controller_elements: dict[int, _Element]
    _index_implied: dict[int, _Element]

    def __init__(self) -> None:
        raise TypeError("use LibvirtDomain.from_string() or LibvirtDomain.from_path()")

    # -- construction --------------------------------------------------------------------

    @classmethod
    def from_string(cls, text: str, *, source: str = "<string>", machine: Machine | None = None) -> LibvirtDomain:
        """Read a domain from its XML text; ``source`` names it in errors.

        ``machine`` replaces the description pcitopo would pick from
        ``<os><type machine>`` (say, one loaded with :meth:`Machine.from_file`
        for a QEMU build without some controller).
        """
        if not isinstance(text, str):
            raise InvalidInput(source, f"expected the XML as a str (got {type(text).__name__})")
        data = _ENCODING_DECL.sub(r"\1\2utf-8\2", text, count=1).encode("utf-8")
        return cls._load(text, data, source=source, encoding="utf-8", machine=machine)

    @classmethod
    def from_path(cls, path: str | Path, *, machine: Machine | None = None) -> LibvirtDomain:
        """Read a domain from a file (in the encoding its XML declaration names).

        ``machine`` is as in :meth:`from_string`.
        """
        try:
            data = Path(path).read_bytes()
        except OSError as exc:
            raise InvalidDomainXML("", f"cannot read: {exc.strerror or exc}", source=str(path)) from None
        return cls.from_bytes(data, source=str(path), machine=machine)

    @classmethod
    def from_bytes(cls, data: bytes, *, source: str = "<bytes>", machine: Machine | None = None) -> LibvirtDomain:
        """Read a domain from the bytes of a document (in the encoding its XML declaration names).

        ``source`` names it in errors; ``machine`` is as in :meth:`from_string`.
        """
        root = cls._parse(data, source)
        encoding = root.getroottree().docinfo.encoding or "utf-8"
        try:
            text = data.decode(encoding)
        except (UnicodeDecodeError, LookupError) as exc:
            raise InvalidDomainXML("", f"cannot decode as {encoding}: {exc}", source=source) from None
        return cls._load(text, data, source=source, encoding=encoding, root=root, machine=machine)

    @staticmethod
    def _parse(data: bytes, source: str) -> _Element:
        try:
            return etree.fromstring(data, _parser())
        except etree.XMLSyntaxError as exc:
            raise InvalidDomainXML("", f"malformed XML: {exc.msg}", source=source, line=exc.lineno) from None

    @classmethod
    def _load(
        cls,
        text: str,
        data: bytes,
        *,
        source: str,
        encoding: str,
        root: _Element | None = None,
        machine: Machine | None = None,
    ) -> LibvirtDomain:
        if root is None:
            root = cls._parse(data, source)
        if root.tag != "domain":
            tag = etree.QName(root).localname if isinstance(root.tag, str) else str(root.tag)
            raise InvalidDomainXML(
                f"/{tag}",
                f"not a libvirt domain: the root element is <{tag}>, not <domain>",
                source=source,
                line=_line(root),
            )
        self = object.__new__(cls)
        self._text = text
        self._root = root
        self.source = source
        self.encoding = encoding
        try:
            spans = scan(text)
        except ScanError as exc:  # pragma: no cover - lxml accepted the text
            raise InternalError(f"{source}: cannot locate elements in the text: {exc}") from None
        elements = [el for el in root.getroottree().iter() if isinstance(el.tag, str)]
        if len(spans) != len(elements):  # pragma: no cover - same reason
            raise InternalError(f"{source}: found {len(spans)} elements in the text but lxml read {len(elements)}")
        self._spans = dict(zip(elements, spans, strict=True))
        self._unit = self._indent_unit()
        self._machine_override = machine
        try:
            _Reader(self).read()
        except InvalidDomainXML as exc:
            if exc.source:
                raise
            raise InvalidDomainXML(exc.element, exc.reason, source=source, line=exc.line) from None
        except DuplicateId as exc:
            if exc.source:
                raise
            raise DuplicateId(exc.name, exc.first, exc.second, source=source, line=exc.line) from None
        return self

    # -- queries -------------------------------------------------------------------------------

    @property
    def elements(self) -> Mapping[str, _Element]:
        """Each device's (and aliased PCI controller's) XML element, by id."""
        return MappingProxyType(self._elements)

    @property
    def controller_elements(self) -> Mapping[int, _Element]:
        """Each ``<controller type='pci'>`` element, by controller index."""
        return MappingProxyType(self._controller_elements)

    def path(self, id: str) -> str:
        """The XPath of a device's element, like ``/domain/devices/interface[2]``."""
        try:
            return str(self._path(self._elements[id]))
        except KeyError:
            raise UnknownName("device", id, self._elements) from None

    def _path(self, el: _Element) -> str:
        return _Where(str(self._root.getroottree().getpath(el)), _line(el))

    def to_string(self) -> str:
        """The document's text."""
        return self._text

    def to_bytes(self) -> bytes:
        """The document encoded as its XML declaration says (UTF-8 without one)."""
        return self._text.encode(self.encoding)

    def __repr__(self) -> str:
        return f"<LibvirtDomain({self.source!r}, machine={self.machine.name!r}, devices={len(self.topology.devices)})>"

    # -- export --------------------------------------------------------------------------------

    def export(self, topology: Topology | Plan) -> str:
        """The text of this document with the addresses and controllers of ``topology``.

        The same text as ``with_topology(topology).to_string()``, without
        reading the result back into a domain (what ``pcitopo assign`` needs).
        The text is parsed again to make sure it is well formed and lost no
        element.
        """
        text = self._exported_text(topology)
        if text is self._text:
            return text
        root = self._parse(text.encode(self.encoding), self.source)
        before = sum(1 for _ in self._root.iter())
        after = sum(1 for _ in root.iter())
        if after < before:  # pragma: no cover - a bug in the writer
            raise InternalError(f"{self.source}: the export lost {before - after} XML nodes")
        return text

    def _exported_text(self, topology: Topology | Plan) -> str:
        if not isinstance(topology, Topology):
            topology = topology.topology
        if topology.machine.name != self.machine.name:
            raise InvalidInput(
                "topology",
                f"is for machine {topology.machine.name!r} but the domain is {self.machine.name!r}",
            )
        edits = _Writer(self, topology).edits()
        if not edits:
            return self._text
        return splice(self._text, edits)

    def with_topology(self, topology: Topology | Plan) -> LibvirtDomain:
        """This document with the addresses and controllers of ``topology`` (or of a plan's topology).

        Only devices of this domain can be placed; devices left out of
        ``topology`` keep their XML as it is. The result is read back, and
        every address is checked to have survived.
        """
        if not isinstance(topology, Topology):
            topology = topology.topology
        text = self._exported_text(topology)
        if text is self._text:
            return self
        result = LibvirtDomain._load(
            text, text.encode(self.encoding), source=self.source, encoding=self.encoding, machine=self._machine_override
        )
        for d in topology.devices:
            if result.topology.device(d.id).address != d.address:  # pragma: no cover - a bug
                raise InternalError(f"{self.source}: the address of device {d.id!r} did not survive the export")
        return result

    # -- text helpers --------------------------------------------------------------------------

    def _span(self, el: _Element) -> ElementSpan:
        return self._spans[el]

    def _indent_unit(self) -> str:
        devices = self._root.find("devices")
        if devices is not None:
            children = [c for c in devices if isinstance(c.tag, str)]
            outer = indent_before(self._text, self._spans[devices].start)
            if children and outer is not None:
                inner = indent_before(self._text, self._spans[children[0]].start)
                if inner is not None and inner.startswith(outer) and len(inner) > len(outer):
                    return inner[len(outer) :]
        return "  "


_USB2_COMPANIONS = frozenset({"ich9-ehci1", "ich9-uhci1", "ich9-uhci2", "ich9-uhci3"})
"""ICH9 USB2 controllers: one set shares one controller index (and one slot)."""


def _disk_name_index(name: str) -> int:
    """libvirt's virDiskNameToIndex: ``vda`` 0, ``vdz`` 25, ``vdaa`` 26."""
    match = re.match(r"^(?:fd|hd|vd|sd|xvd|ubd)([a-z]+)", name)
    if match is None:
        return -1
    index = 0
    for ch in match.group(1):
        index = index * 26 + (ord(ch) - ord("a") + 1)
    return index - 1


def _libvirt_disk_order(devices: list[Device], elements: Mapping[str, _Element]) -> list[Device]:
    """Disks in the order libvirt keeps them (by bus, then target name), other devices where they are.

    libvirt sorts ``<disk>`` elements when it parses a domain, so its
    placement, and definition order, follow ``vda, vdb, ...``.
    """
    slots = [i for i, dev in enumerate(devices) if elements[dev.id].tag == "disk"]
    if len(slots) < 2:
        return devices

    def key(dev: Device) -> tuple[str, int, str]:
        target = elements[dev.id].find("target")
        name = str(target.get("dev", "")) if target is not None else ""
        bus = str(target.get("bus", "")) if target is not None else ""
        return (bus, _disk_name_index(name), name)

    disks = sorted((devices[i] for i in slots), key=key)
    out = list(devices)
    for i, dev in zip(slots, disks, strict=True):
        out[i] = dev
    return out


class _Reader:
    """Reads a domain's elements into its topology."""

    def __init__(self, domain: LibvirtDomain) -> None:
        self.d = domain
        self.root = domain._root

    def read(self) -> None:
        d = self.d
        machine, arch = self._machine()
        d.machine = machine
        devices_el = self.root.find("devices")
        children = [c for c in devices_el if isinstance(c.tag, str)] if devices_el is not None else []
        videos = [c for c in children if c.tag == "video"]
        ctx = _Context(machine, arch, videos[0] if videos else None)

        self.ids: dict[str, _Element] = {}
        for el in children:
            alias = el.find("alias")
            if alias is not None and alias.get("name"):
                name = str(alias.get("name"))
                if name in self.ids:
                    raise DuplicateId(name, d._path(self.ids[name]), d._path(el), line=_line(el))
                self.ids[name] = el

        controller_indexes = self._controller_indexes(children)
        controllers: list[Controller] = []
        d._controller_elements = {}
        d._index_implied = {}
        devices: list[Device] = []
        d._elements = {}
        counts: dict[str, int] = {}
        for el in children:
            tag = str(el.tag)
            n = counts.get(tag, 0)
            counts[tag] = n + 1
            where = d._path(el)
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
            address_el = el.find("address")
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
                address, multifunction = _pci_address(address_el, d._path(address_el))
            if address is None:
                address = self._chipset_address(el, machine, controller_indexes.get(el))
            elif self._chipset_address(el, machine, controller_indexes.get(el)) not in (None, address):
                raise _bad(where, _CHIPSET_MESSAGES[(machine.name, str(el.get("type")))])
            ident = self._id(el, tag, n, controller_indexes.get(el))
            try:
                devices.append(Device(ident, kind, address=address, multifunction=multifunction))
            except InvalidInput as exc:
                raise _bad(where, exc.reason) from None
            d._elements[ident] = el
        devices = _libvirt_disk_order(devices, d._elements)
        numa = self.root.findall("cpu/numa/cell")
        acpi = self.root.find("features/acpi") is not None
        try:
            d.topology = Topology.build(machine, controllers, devices, numa_nodes=len(numa), acpi=acpi)
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

    def _controller_indexes(self, children: list[_Element]) -> dict[_Element, int]:
        """Each controller's index; missing ones get the lowest unused index of their type, like libvirt."""
        result: dict[_Element, int] = {}
        used: dict[str, set[int]] = {}
        usb2_indexes: set[int] = set()
        for el in children:
            if el.tag == "controller" and el.get("index") is not None:
                where = self.d._path(el)
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
        model_el = el.find("model")
        qemu_model = model_el.get("name") if model_el is not None else None
        target = el.find("target")
        twhere = self.d._path(target) if target is not None else where
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
        address_el = el.find("address")
        if address_el is not None:
            if address_el.get("type") != "pci":
                raise _bad(self.d._path(address_el), "a PCI controller can only have a PCI address")
            address, multifunction = _pci_address(address_el, self.d._path(address_el))
        alias_el = el.find("alias")
        alias = alias_el.get("name") if alias_el is not None else None
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
        alias = el.find("alias")
        if alias is not None and alias.get("name"):
            return str(alias.get("name"))
        base = f"{el.get('type')}{index}" if tag == "controller" else f"{tag}{n}"
        ident, k = base, 1
        while ident in self.ids:
            k += 1
            ident = f"{base}-{k}"
        self.ids[ident] = el
        return ident


_CHIPSET_MESSAGES = {
    ("q35", "sata"): "Primary SATA controller must have PCI address 0:0:1f.2",
    ("pc", "ide"): "Primary IDE controller must have PCI address 0:0:1.1",
    ("pc", "usb"): "PIIX3 USB controller at index 0 must have PCI address 0:0:1.2",
}


# -- export -------------------------------------------------------------------------------------

_TARGET_ATTRS = (
    ("chassis_nr", "chassisNr", "{}"),
    ("chassis", "chassis", "{}"),
    ("port", "port", "0x{:x}"),
    ("bus_nr", "busNr", "{}"),
    ("target_index", "index", "{}"),
)


def _libvirt_defaults(topology: Topology, wanted: set[int]) -> dict[int, Controller]:
    """The controllers of ``wanted`` indexes with the ``<model name>`` and ``<target>`` values libvirt would fill in.

    The ``<target>`` values come from :mod:`pcitopo.legality.identity`
    (:class:`~pcitopo.errors.InvalidTopology` when libvirt has none left to give).
    """
    result: dict[int, Controller] = {}
    for index, c in identity.filled(topology, wanted).items():
        catalog_model = topology.machine.catalog.controller(c.model)
        if c.qemu_model is None and catalog_model.qemu_device is not None:
            c = _evolve(c, {"qemu_model": catalog_model.qemu_device})
        result[index] = c
    return result


def _evolve(c: Controller, changes: Mapping[str, Any]) -> Controller:
    return attrs.evolve(c, **changes)


def _target_attrs(c: Controller) -> list[tuple[str, str]]:
    attrs_: list[tuple[str, str]] = []
    for field, name, fmt in _TARGET_ATTRS:
        value = getattr(c, field)
        if value is not None:
            attrs_.append((name, fmt.format(value)))
    if c.hotplug is not None:
        attrs_.append(("hotplug", "on" if c.hotplug else "off"))
    return attrs_


def _target_lines(c: Controller) -> list[tuple[int, str]]:
    attr_text = "".join(f" {k}='{v}'" for k, v in _target_attrs(c))
    if c.numa_node is None:
        return [(0, f"<target{attr_text}/>")] if attr_text else []
    return [(0, f"<target{attr_text}>"), (1, f"<node>{c.numa_node}</node>"), (0, "</target>")]


def _controller_lines(c: Controller) -> list[tuple[int, str]]:
    model = "pci-root" if c.model == "spapr-pci-host-bridge" else c.model
    lines: list[tuple[int, str]] = [(0, f"<controller type='pci' index='{c.index}' model='{model}'>")]
    if c.qemu_model is not None:
        lines.append((1, f"<model name='{c.qemu_model}'/>"))
    lines += [(depth + 1, text) for depth, text in _target_lines(c)]
    if c.id is not None:
        lines.append((1, f"<alias name='{c.id}'/>"))
    if c.address is not None:
        lines.append((1, _format_address(c.address, c.multifunction)))
    lines.append((0, "</controller>"))
    return lines


class _Writer:
    """Works out the text edits that turn a domain's document into one for ``topology``."""

    def __init__(self, domain: LibvirtDomain, topology: Topology) -> None:
        self.d = domain
        self.text = domain._text
        self.topology = topology
        self.result: list[Edit] = []
        # new children per parent element: (anchor element or None for "first", lines)
        self.children: dict[_Element, list[tuple[_Element | None, list[tuple[int, str]]]]] = {}

    def edits(self) -> list[Edit]:
        self._devices()
        self._controllers()
        if not self.result and not self.children:
            return []
        for index, el in self.d._index_implied.items():
            self._add_index(el, index)
        for parent, items in self.children.items():
            self._insert_children(parent, items)
        return self.result

    # -- devices ---------------------------------------------------------------------------------

    def _devices(self) -> None:
        old = {dev.id: dev for dev in self.d.topology.devices}
        for dev in self.topology.devices:
            before = old.get(dev.id)
            if before is None:
                raise InvalidInput(
                    f"device {dev.id!r}",
                    "is not in the domain XML; pcitopo writes addresses of the devices a domain lists, it does not"
                    " create devices",
                )
            el = self.d._elements[dev.id]
            if dev.kind != before.kind:
                raise InvalidInput(
                    self.d._path(el), f"its kind changed from {before.kind} to {dev.kind}; only addresses are written"
                )
            if dev.address == before.address and bool(dev.multifunction) == bool(before.multifunction):
                continue
            multifunction = dev.multifunction if dev.multifunction or before.multifunction is False else None
            self._set_address(el, dev.address, multifunction)

    def _set_address(self, el: _Element, address: PciAddress | None, multifunction: bool | None) -> None:
        current = el.find("address")
        if address is None:
            if current is not None:
                span = self.d._span(current)
                start = span.start
                indent = indent_before(self.text, span.start)
                if indent is not None:
                    start = self.text.rfind("\n", 0, span.start)
                self.result.append(Edit(start, span.end, ""))
            return
        if current is not None:
            span = self.d._span(current)
            self.result.append(
                Edit(span.start, span.start_end, _format_address(address, multifunction, close=span.empty))
            )
            return
        self._add_child(el, "last", [(0, _format_address(address, multifunction))])

    # -- controllers --------------------------------------------------------------------------

    def _controllers(self) -> None:
        old = {c.index: c for c in self.d.topology.controllers}
        changed: set[int] = set()
        for c in self.topology.controllers:
            before = old.get(c.index)
            if before is None:
                changed.add(c.index)
                continue
            if c == before:
                continue
            if c.model != before.model:
                raise InvalidInput(f"controller index {c.index}", f"its model changed from {before.model} to {c.model}")
            if c.index not in self.d._controller_elements:
                if c.address is None and c.index == 0:
                    continue  # the implicit root bus
                raise InvalidInput(f"controller index {c.index}", "is implicit in the domain and cannot be changed")
            changed.add(c.index)
        filled = _libvirt_defaults(self.topology, changed)
        new = [filled[i] for i in sorted(filled) if i not in old]
        for index in sorted(filled):
            if index in old:
                self._update_controller(old[index], filled[index])
        if new:
            self._insert_controllers(new)

    def _update_controller(self, before: Controller, after: Controller) -> None:
        el = self.d._controller_elements[after.index]
        if after.qemu_model != before.qemu_model and el.find("model") is None and after.qemu_model is not None:
            self._add_child(el, "first", [(0, f"<model name='{after.qemu_model}'/>")])
        new_target = dict(_target_attrs(after))
        old_target = dict(_target_attrs(before))
        target = el.find("target")
        if new_target != old_target or (after.numa_node != before.numa_node and target is None):
            if target is None:
                lines = _target_lines(after)
                if lines:
                    anchor = el.find("model")
                    self._add_child(el, anchor if anchor is not None else "first", lines)
            else:
                merged: dict[str, str] = {str(k): str(v) for k, v in target.attrib.items()}
                merged.update(new_target)
                span = self.d._span(target)
                attr_text = "".join(f" {k}='{v}'" for k, v in merged.items())
                self.result.append(Edit(span.start, span.start_end, f"<target{attr_text}{'/>' if span.empty else '>'}"))
        if (after.address, after.multifunction) != (before.address, before.multifunction):
            self._set_address(el, after.address, after.multifunction)

    def _insert_controllers(self, controllers: list[Controller]) -> None:
        devices = self.d._root.find("devices")
        if devices is None:
            raise InvalidDomainXML(
                "/domain",
                "has no <devices> element to add controllers to",
                source=self.d.source,
                line=_line(self.d._root),
            )
        children = [c for c in devices if isinstance(c.tag, str)]
        anchor: _Element | None = None
        for tag in ("controller", "disk", "emulator"):
            found = [c for c in children if c.tag == tag]
            if found:
                anchor = found[-1]
                break
        lines: list[tuple[int, str]] = []
        for c in controllers:
            lines += _controller_lines(c)
        if anchor is None:
            self._add_child(devices, "first", lines)
        else:
            self._add_child(devices, anchor, lines)

    def _add_index(self, el: _Element, index: int) -> None:
        span = self.d._span(el)
        tag = self.text[span.start : span.start_end]
        match = re.search(r"""\stype\s*=\s*(["'])pci\1""", tag)
        assert match is not None  # it is a <controller type='pci'>
        at = span.start + match.end()
        self.result.append(Edit(at, at, f" index='{index}'"))

    # -- inserting children -------------------------------------------------------------------

    def _add_child(self, parent: _Element, anchor: _Element | str, lines: list[tuple[int, str]]) -> None:
        """Queue ``lines`` as new children of ``parent``: first, last, or after the child ``anchor``."""
        resolved: _Element | None
        if anchor == "first":
            resolved = None
        elif anchor == "last":
            kids = [c for c in parent if isinstance(c.tag, str)]
            resolved = kids[-1] if kids else None
        else:
            assert not isinstance(anchor, str)
            resolved = anchor
        self.children.setdefault(parent, []).append((resolved, lines))

    def _insert_children(self, parent: _Element, items: list[tuple[_Element | None, list[tuple[int, str]]]]) -> None:
        span = self.d._span(parent)
        outer = indent_before(self.text, span.start)
        unit = self.d._unit

        def render(block: list[tuple[int, str]], *, leading: bool) -> str:
            if outer is None:
                return "".join(text for _, text in block)
            inner = outer + unit
            return "".join(
                ("\n" if leading or i else "") + inner + unit * depth + text for i, (depth, text) in enumerate(block)
            )

        if span.empty:
            block = [line for _, lines in items for line in lines]
            slash = self.text.rfind("/", span.start, span.start_end)
            close = f"</{span.name}>" if outer is None else f"\n{outer}</{span.name}>"
            self.result.append(Edit(slash, span.start_end, ">" + render(block, leading=True) + close))
            return
        grouped: dict[int, list[tuple[int, str]]] = {}
        for anchor, lines in items:
            at = span.start_end if anchor is None else self.d._span(anchor).end
            grouped.setdefault(at, []).extend(lines)
        for at, block in grouped.items():
            self.result.append(Edit(at, at, render(block, leading=True)))
        if outer is not None and "\n" not in self.text[span.start_end : span.end_start]:
            self.result.append(Edit(span.end_start, span.end_start, "\n" + outer))
