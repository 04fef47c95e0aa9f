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
('q35', ["'ua-net0' (virtio-net)", "'usb0' (qemu-xhci)", "'sata0' (ahci)"])
>>> sorted(domain.implicit)  # libvirt adds these; pcitopo places and writes them too
['sata0', 'usb0']
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
gives the NUMA node count and ``<features><acpi/>`` ACPI; ``<os firmware='efi'>``
or a ``<loader>`` path naming OVMF/edk2 means the guest boots OVMF (else the
machine's default, SeaBIOS on x86, as libvirt does). Every
``<controller type='pci'>`` is a :class:`~pcitopo.devices.Controller`
(a pseries ``pci-root`` with index > 0 is an ``spapr-pci-host-bridge``). Every
other device element that uses PCI by libvirt's classification
(``libvirt-rules.md`` §2) is a :class:`~pcitopo.devices.Device` of the catalog
kind. Models left out are given libvirt 9.0's defaults for the machine, from
the ``[libvirt]`` table of its description (checked with ``virsh define`` on
QEMU 7.2): NIC ``rtl8139`` on x86 and pseries, ``virtio`` on ARM/RISC-V virt;
video ``cirrus`` on x86, ``vga`` on pseries, ``virtio`` on virt; USB
``qemu-xhci`` on aarch64 and pseries, else ``piix3-uhci``; SCSI ``lsilogic``
(pseries: ``ibmvscsi``, not PCI). Devices that
do not use PCI (a SATA disk, a PS/2 input, ``model='none'``, an element with a
``ccw``, ``virtio-mmio``, ``spapr-vio`` or ``isa`` address) are not part of the
topology and stay in the document untouched. Chipset positions libvirt forces
are filled in: SATA controller 0 at 00:1f.2 on q35; IDE controller 0 at
00:01.1 and a PIIX3 USB controller 0 at 00:01.2 on pc.

What libvirt adds on its own is part of the topology too (ids in
:attr:`LibvirtDomain.implicit`): the machine's default USB controller, SATA
controller 0 and memballoon, a video device for graphics, the SCSI, IDE and
SATA controllers disks use, virtio-serial controllers for virtio channels and
consoles, controllers for every index below the highest bus an address names,
and ``multifunction='on'`` on function 0 of a slot whose other functions are
used. Controllers are listed in libvirt's parse order (by type, then index),
the added ones last in libvirt's order, and each ICH9 USB2 set is one slot
group. The export writes them all, so that libvirt adds and moves nothing.

The reader is :mod:`pcitopo.formats.libvirt._read`, the writer
:mod:`pcitopo.formats.libvirt._write`, and the element tables (model names,
what is not PCI, chipset positions) are data in
:mod:`pcitopo.formats.libvirt._tables`.

Device ids: the ``<alias name>`` when it is one libvirt keeps; else, for controllers,
``<type><index>`` (``sata0``, ``usb1``, ``virtio-serial0``) and for other
elements ``<element><n>`` with ``n`` counting elements of that name in
``<devices>`` from 0 (``interface0``, ``disk1``; every element counts, PCI or
not, so ids stay put when a SATA disk is added in front of a virtio one). A
generated id that is taken gets ``-2``, ``-3``, ... appended. libvirt 9.0
keeps only user aliases, those starting ``ua-``, when it defines a domain, and
drops any other (checked with ``virsh define``); so in a definition only a
``ua-`` alias names its element, and another alias (``usb0`` on a NIC) stays in
the document as written but is no id and clashes with nothing. A running
domain's document (``<domain id='N'>``, from ``virsh dumpxml`` of a running
domain) carries libvirt's own aliases (``net0``, ``pci.1``), and there every
alias is the id.

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

import os
import re
import threading
from collections.abc import Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, cast

from lxml import etree

from pcitopo.errors import DuplicateId, InternalError, InvalidDomainXML, InvalidInput, UnknownName
from pcitopo.formats._xmltext import ElementSpan, Offsets, ScanError, indent_before, scan_offsets, splice
from pcitopo.formats.libvirt._read import _Implicit, _line, _Reader, _Where
from pcitopo.formats.libvirt._write import _Writer
from pcitopo.legality.machine import Machine
from pcitopo.topology import Topology

if TYPE_CHECKING:
    from pathlib import Path

    from pcitopo.solver.plan import Plan

__all__ = ["LibvirtDomain"]


def __dir__() -> list[str]:
    return __all__


_Element = etree._Element

# -- the domain ---------------------------------------------------------------------------

_ENCODING_DECL = re.compile(r"""^(\ufeff?\s*<\?xml[^>]*?encoding\s*=\s*)(["'])[^"']*\2""")


_PARSERS = threading.local()
"""This thread's parser (lxml's parsers are not thread-safe): made once and reused."""


def _parser() -> etree.XMLParser:
    """The domain parser: made once a thread. A fresh parser allocates its buffers anew for every document (the
    same instructions, more time: a serve request reads its domain and the exported text, about 0.3 ms of its
    22 ms wall time). Each parse starts anew (lxml clears the parser's error log)."""
    parser: etree.XMLParser | None = getattr(_PARSERS, "parser", None)
    if parser is None:
        parser = _PARSERS.parser = etree.XMLParser(
            resolve_entities=False, no_network=True, remove_comments=False, remove_pis=False
        )
    return parser


class _NoTree:
    """A parser target that builds nothing: libxml2 reads the document all the same and reports what is wrong."""

    def close(self) -> None:
        return None


def _checker() -> etree.XMLParser:
    """This thread's parser that checks a document without building its tree (:meth:`LibvirtDomain._check_export`)."""
    parser: etree.XMLParser | None = getattr(_PARSERS, "checker", None)
    if parser is None:
        # lxml calls only the methods a target has (lxml-stubs' ParserTarget asks for all of them): none per element
        target = cast("etree.ParserTarget", _NoTree())
        parser = _PARSERS.checker = etree.XMLParser(
            target=target, resolve_entities=False, no_network=True, remove_comments=False, remove_pis=False
        )
    return parser


_TREE_ONLY = ("<!DOCTYPE", "<![CDATA[")
"""Markup whose text may hold what looks like markup (a DOCTYPE's internal subset, a CDATA section), or that
declares entities: a document with it is counted in a tree, not in its text."""

_MARKUP = re.compile(r"<!--.*?-->|<\?.*?\?>", re.DOTALL)
"""A comment or a processing instruction (or the XML declaration): the only markup, in a well-formed document
without a DOCTYPE or CDATA section, that may hold a ``<`` of its own (text and attribute values escape it)."""


def _nodes(text: str) -> int:
    """The elements, comments and processing instructions of a well-formed document without a DOCTYPE or CDATA.

    Every other ``<`` starts a tag, an end tag's with ``</``: the elements are counted with ``str.count``, two
    thirds of the instructions of a regular expression matching each tag (callgrind, the 150-device domain's plan).

    >>> _nodes("<?xml version='1.0'?><!-- <a> </a> --><a x='&lt;'><b/><?pi <c></c>?>text</a>")
    5
    """
    starts = text.count("<") - text.count("</")
    found = _MARKUP.findall(text)
    for markup in found:
        starts -= markup.count("<") - markup.count("</")
    return starts + len(found)


class LibvirtDomain:
    """A libvirt domain document and the topology it describes.

    Build with :meth:`from_string` or :meth:`from_path`; a domain is not
    changed after that (:meth:`with_topology` returns a new one).
    """

    __slots__ = (
        "_controller_elements",
        "_elements",
        "_first_children",
        "_implicit",
        "_implicit_controllers",
        "_index_implied",
        "_last_children",
        "_machine_override",
        "_multi_implied",
        "_offsets",
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
    _offsets: dict[_Element, Offsets]
    _first_children: dict[tuple[_Element | None, str], _Element]
    _last_children: dict[_Element | None, _Element]
    _spans: dict[_Element, ElementSpan]
    _unit: str
    _machine_override: Machine | None
    _elements: dict[str, _Element]
    _controller_elements: dict[int, _Element]
    _index_implied: dict[int, _Element]
    _implicit: dict[str, _Implicit]
    _implicit_controllers: frozenset[int]
    _multi_implied: frozenset[str]

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
            with open(os.fspath(path), "rb") as handle:
                data = handle.read()
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
            spans = scan_offsets(text)
        except ScanError as exc:  # pragma: no cover - lxml accepted the text
            raise InternalError(f"{source}: cannot locate elements in the text: {exc}") from None
        # lxml picks the elements (not comments, processing instructions, entities) itself: no proxy for the others
        elements = list(root.getroottree().iter(etree.Element))
        if len(spans) != len(elements):  # pragma: no cover - same reason
            raise InternalError(f"{source}: found {len(spans)} elements in the text but lxml read {len(elements)}")
        self._offsets = dict(zip(elements, spans, strict=True))
        # each parent's first child element of each tag, found in one pass over the elements lxml has listed:
        # the reader and writer ask a few children of every device, and lxml's iterchildren(tag) costs each time
        first: dict[tuple[_Element | None, str], _Element] = {}
        last: dict[_Element | None, _Element] = {}  # each parent's last child element: where the writer appends
        for el in elements:
            parent = el.getparent()
            first.setdefault((parent, el.tag), el)
            last[parent] = el
        self._first_children = first
        self._last_children = last
        self._spans = {}
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
    def implicit(self) -> frozenset[str]:
        """The ids of the devices libvirt adds to this domain on its own (they have no element yet).

        pcitopo places them like the others and writes their elements with
        the plan, so that libvirt adds nothing.

        >>> xml = "<domain><os><type arch='x86_64' machine='q35'/></os>"
        >>> xml += "<devices><graphics type='vnc'/></devices></domain>"
        >>> domain = LibvirtDomain.from_string(xml)
        >>> sorted(domain.implicit)
        ['memballoon0', 'sata0', 'usb0', 'video0']
        >>> [str(domain.topology.device(i)) for i in sorted(domain.implicit)]
        ["'memballoon0' (virtio-balloon)", "'sata0' (ahci)", "'usb0' (qemu-xhci)", "'video0' (cirrus)"]
        """
        return frozenset(self._implicit)

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
        self._check_export(text)
        return text

    def _check_export(self, text: str) -> None:
        """Raise unless ``text``, this document's export, is well formed and kept every node of the document.

        libxml2 reads the whole text as it reads any document, without building
        a tree (:func:`_checker`); the nodes are counted in the text
        (:func:`_nodes`), which a document libxml2 has read can be: 7 M
        instructions for the 150-device domain's plan, where parsing it into a
        tree and counting the tree's nodes took 11.5 M (callgrind). A document with a
        DOCTYPE or a CDATA section (whose text may hold markup), or one that
        draws a non-fatal error from libxml2 (an undeclared namespace prefix),
        is parsed into a tree as before, so what it raises is unchanged.
        """
        data = text.encode(self.encoding)
        if not any(marker in t for marker in _TREE_ONLY for t in (text, self._text)):
            checker = _checker()
            try:
                etree.fromstring(data, checker)
            except etree.XMLSyntaxError:
                pass  # the tree parse below raises the error, worded as every reader's
            else:
                if not any(e.level >= etree.ErrorLevels.ERROR for e in checker.error_log):
                    before, after = _nodes(self._text), _nodes(text)
                    if after < before:
                        raise InternalError(f"{self.source}: the export lost {before - after} XML nodes")
                    return
        root = self._parse(data, self.source)
        before = sum(1 for _ in self._root.iter())
        after = sum(1 for _ in root.iter())
        if after < before:
            raise InternalError(f"{self.source}: the export lost {before - after} XML nodes")

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

    def _child(self, el: _Element, tag: str) -> _Element | None:
        """The first child named ``tag`` of ``el``, an element of this document (``_read._child``, looked up)."""
        return self._first_children.get((el, tag))

    def _last_child(self, el: _Element) -> _Element | None:
        """The last child element of ``el``, an element of this document (``None``: it has none)."""
        return self._last_children.get(el)

    def _span(self, el: _Element) -> ElementSpan:
        span = self._spans.get(el)
        if span is None:  # made when first asked: the writer looks at a few elements of a large document
            span = self._spans[el] = ElementSpan(*self._offsets[el])
        return span

    def _indent_unit(self) -> str:
        devices = self._root.find("devices")
        if devices is not None:
            children = [c for c in devices if isinstance(c.tag, str)]
            outer = indent_before(self._text, self._offsets[devices][1])
            if children and outer is not None:
                inner = indent_before(self._text, self._offsets[children[0]][1])
                if inner is not None and inner.startswith(outer) and len(inner) > len(outer):
                    return inner[len(outer) :]
        return "  "
