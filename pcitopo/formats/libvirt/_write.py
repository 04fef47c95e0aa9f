"""Writing a topology back into a domain's text: addresses, new controllers, the elements libvirt would add."""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import attrs
from lxml import etree

from pcitopo.address import PciAddress
from pcitopo.devices import Controller
from pcitopo.errors import InvalidDomainXML, InvalidInput
from pcitopo.formats._xmltext import Edit, indent_before
from pcitopo.legality import identity
from pcitopo.topology import Topology

if TYPE_CHECKING:
    from pcitopo.formats.libvirt import LibvirtDomain

from pcitopo.formats.libvirt._read import (
    _child,
    _format_address,
    _line,
)
from pcitopo.formats.libvirt._tables import (
    _TARGET_ATTRS,
    _USER_ALIAS_PREFIX,
)

_Element = etree._Element

QEMU_NS = "http://libvirt.org/schemas/domain/qemu/1.0"
"""libvirt's namespace for QEMU command-line passthrough (``<qemu:commandline>``)."""


def _libvirt_defaults(topology: Topology, wanted: set[int]) -> dict[int, tuple[Controller, dict[str, Any]]]:
    """The controllers of ``wanted`` indexes, each with the ``<model name>`` and ``<target>`` values libvirt would
    fill in (the changes :func:`_filled` makes).

    The ``<target>`` values come from :mod:`pcitopo.legality.identity`
    (:class:`~pcitopo.errors.InvalidTopology` when libvirt has none left to give). The controllers are not
    evolved here: a new controller is only written (:meth:`_Writer._controllers_text` reads the changes), and most
    changes a plan's new ports get are their model name alone.
    """
    values = identity.defaults(topology, wanted)
    result: dict[int, tuple[Controller, dict[str, Any]]] = {}
    catalog = topology.machine.catalog
    for c in topology.controllers:
        if c.index not in values:
            continue
        changes: dict[str, Any] = dict(values[c.index])
        if c.qemu_model is None:
            qemu_device = catalog.controller(c.model).qemu_device
            if qemu_device is not None:
                changes["qemu_model"] = qemu_device
        result[c.index] = (c, changes)
    return result


def _filled(c: Controller, changes: Mapping[str, Any]) -> Controller:
    """``c`` with the changes :func:`_libvirt_defaults` found for it."""
    return _evolve(c, changes) if changes else c


_FIELDS = attrs.fields(Controller)
_VALIDATORS = {a.name: (a, a.validator) for a in _FIELDS if a.validator is not None}
"""The fields of a controller that have validators, by name (Controller has no converters)."""
_NAMES = frozenset(a.name for a in _FIELDS)
_VALUES = operator.attrgetter(*(a.name for a in _FIELDS))
"""Every field's value of a controller, in field order, read at once."""
_SETTERS: tuple[Callable[[Controller, object], None], ...] = tuple(getattr(Controller, a.name).__set__ for a in _FIELDS)
"""Each field's slot setter, in field order: what ``object.__setattr__`` finds by name, found once."""


def _evolve(
    c: Controller,
    changes: Mapping[str, Any],
    _new: Callable[[type[Controller]], Controller] = object.__new__,
    _set: Callable[[object, str, object], None] = object.__setattr__,
) -> Controller:
    """``attrs.evolve(c, **changes)`` running the validators of the changed fields only: those of the fields it keeps
    ran when ``c`` was made. The writer fills in libvirt's values for every controller it writes (a hundred and
    more a plan): a third of ``attrs.evolve``'s cost (the fields copied through their slots' setters, a fifth less
    again)."""
    if not _NAMES.issuperset(changes):
        raise TypeError(f"Controller has no fields {sorted(set(changes) - _NAMES)}")  # as attrs.evolve refuses them
    new = _new(Controller)
    for set_field, value in zip(_SETTERS, _VALUES(c), strict=True):
        set_field(new, value)
    for name, value in changes.items():
        _set(new, name, value)
    for name, value in changes.items():  # once every change is in, as attrs.evolve runs them
        checked = _VALIDATORS.get(name)
        if checked is not None:
            checked[1](new, checked[0], value)
    return new


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


class _Writer:
    """Works out the text edits that turn a domain's document into one for ``topology``."""

    def __init__(self, domain: LibvirtDomain, topology: Topology) -> None:
        self.d = domain
        self.text = domain._text
        self.topology = topology
        self.result: list[Edit] = []
        # new children per parent element: (anchor element or None for "first", lines)
        self.children: dict[_Element, list[tuple[_Element | None, list[tuple[int, str]]]]] = {}
        self.implicit_changed = False
        self.implicit_controllers: list[Controller] = []
        self.qemu_ns_added = False
        self.partial = any(dev.address is None for dev in topology.devices)
        """Not a plan (a device has no address): only what changed is written."""

    def edits(self) -> list[Edit]:
        self._devices()
        new = self._controllers()
        self._mmio64()
        self._io_reserve()
        planned = bool(self.result or self.children or new or self.implicit_changed)
        if not planned and self.partial:
            return []  # neither a change nor a plan: the document stays as it is
        # A complete topology is written as libvirt would keep it, even when nothing moved (a domain
        # complete but for what libvirt adds): implied multifunction='on', missing controller indexes,
        # the controllers libvirt adds, the implicit devices, chipset addresses.
        self._implied_multifunction()
        new += [(c, {}) for c in self.implicit_controllers if self.topology.has_bus(c.index)]
        if new:
            self._insert_controllers(sorted(new, key=lambda item: item[0].index))
        self._implicit()
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
            if dev.id in self.d._implicit and before is not None:
                if dev.kind != before.kind:
                    raise InvalidInput(
                        f"device {dev.id!r}",
                        f"its kind changed from {before.kind} to {dev.kind}; only addresses are written",
                    )
                if dev != before:
                    self.implicit_changed = True
                continue
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
            if dev.acpi_index != before.acpi_index:
                self._set_acpi_index(el, dev.acpi_index)
            address = dev.address
            if (
                # equal addresses (PciAddress's own __eq__ only where both have one: a plan gives most devices theirs)
                (
                    address is before.address
                    or (address is not None and before.address is not None and address == before.address)
                )
                and bool(dev.multifunction) == bool(before.multifunction)
                and (dev.address is None or self.d._child(el, "address") is not None or self.partial)
            ):
                continue  # unchanged, and written (a chipset address libvirt would write is not)
            multifunction = dev.multifunction if dev.multifunction or before.multifunction is False else None
            self._set_address(el, dev.address, multifunction)

    def _set_acpi_index(self, el: _Element, index: int | None) -> None:
        """Write ``<acpi index='N'/>`` (before the ``<address>``, where libvirt puts it), or change or drop it."""
        current = _child(el, "acpi")
        if current is not None:
            span = self.d._span(current)
            start = span.start
            if index is None:
                if indent_before(self.text, span.start) is not None:
                    start = self.text.rfind("\n", 0, span.start)
                self.result.append(Edit(start, span.end, ""))
            else:
                self.result.append(Edit(span.start, span.end, f"<acpi index='{index}'/>"))
            return
        if index is None:
            return
        kids = [c for c in el if isinstance(c.tag, str)]
        address = _child(el, "address")
        anchor: _Element | str = "last"
        if address is not None:
            before = kids.index(address)
            anchor = kids[before - 1] if before else "first"
        self._add_child(el, anchor, [(0, f"<acpi index='{index}'/>")])

    def _implied_multifunction(self) -> None:
        """Write ``multifunction='on'`` that libvirt would add (read as set) where nothing else rewrote the address."""
        if not self.d._multi_implied:
            return  # none read as implied: nothing to write (the common case, looked at once a plan)
        old = {dev.id: dev for dev in self.d.topology.devices}
        for dev in self.topology.devices:
            before = old.get(dev.id)
            if dev.id in self.d._multi_implied and before is not None and dev == before and dev.id in self.d._elements:
                self._set_address(self.d._elements[dev.id], dev.address, True)
        old_c = {c.index: c for c in self.d.topology.controllers}
        for c in self.topology.controllers:
            if f"pci.{c.index}" in self.d._multi_implied and old_c.get(c.index) == c:
                self._set_address(self.d._controller_elements[c.index], c.address, True)

    def _implicit(self) -> None:
        """The elements libvirt would add, with their addresses: a written plan is complete."""
        devices = _child(self.d._root, "devices")
        if devices is None:
            return
        if not self.d._implicit:
            return
        last: dict[str, _Element] = {}  # the last child element of each tag: where an implicit one goes after
        for c in devices:
            if isinstance(c.tag, str):
                last[c.tag] = c
        for dev in self.topology.devices:
            implicit = self.d._implicit.get(dev.id)
            if implicit is None:
                continue
            anchor: _Element | str = next((last[tag] for tag in implicit.after if tag in last), "last")
            self._add_child(devices, anchor, implicit.lines(dev.address, dev.multifunction))

    def _set_address(self, el: _Element, address: PciAddress | None, multifunction: bool | None) -> None:
        current = self.d._child(el, "address")
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

    # -- the firmware's 64-bit window ---------------------------------------------------------

    def _mmio64(self) -> None:
        """Write the 64-bit window a plan asks of its firmware: OVMF's fw_cfg knob as QEMU arguments.

        libvirt 9.0 refuses the knob in ``<sysinfo type='fwcfg'>`` ("That firmware
        name is reserved": it keeps ``opt/ovmf/`` for itself), so pcitopo writes
        ``<qemu:commandline>`` with ``-fw_cfg name=opt/ovmf/X-PciMmio64Mb,string=MIB``,
        which libvirt passes to QEMU as it is.
        """
        after, before = self.topology.mmio64, self.d.topology.mmio64
        fw = self.topology.firmware_model
        if after == before or after is None or fw is None:
            return
        if not fw.mmio64_knob:
            raise InvalidInput(
                "mmio64",
                f"{fw.name} has no knob for its 64-bit window that pcitopo writes (it sizes the window itself)",
            )
        setting = f"name={fw.mmio64_knob},string={after >> 20}"
        root = self.d._root
        for arg in root.findall(f"{{{QEMU_NS}}}commandline/{{{QEMU_NS}}}arg"):
            if str(arg.get("value", "")).startswith(f"name={fw.mmio64_knob},"):
                span = self.d._span(arg)
                self.result.append(Edit(span.start, span.start_end, f"<{self._qemu_prefix()}:arg value='{setting}'/>"))
                return
        prefix = self._qemu_prefix()
        args = [(1, f"<{prefix}:arg value='-fw_cfg'/>"), (1, f"<{prefix}:arg value='{setting}'/>")]
        existing = root.find(f"{{{QEMU_NS}}}commandline")
        if existing is not None:
            self._add_child(existing, "last", [(0, text) for _, text in args])
            return
        self._append_to_domain([(0, f"<{prefix}:commandline>"), *args, (0, f"</{prefix}:commandline>")])

    def _qemu_prefix(self) -> str:
        """The prefix of libvirt's QEMU namespace in the document, declared on ``<domain>`` if it was not."""
        root = self.d._root
        prefix = next((p for p, uri in root.nsmap.items() if uri == QEMU_NS and p), None)
        if prefix is not None:
            return str(prefix)
        if not self.qemu_ns_added:
            self.qemu_ns_added = True
            span = self.d._span(root)
            self.result.append(Edit(span.start_end - 1, span.start_end - 1, f" xmlns:qemu='{QEMU_NS}'"))
        return "qemu"

    def _append_to_domain(self, lines: list[tuple[int, str]]) -> None:
        """Insert ``lines`` as the last children of ``<domain>`` (after whatever this writer put there already)."""
        last = [c for c in self.d._root if isinstance(c.tag, str)][-1]
        span = self.d._span(last)
        indent = indent_before(self.text, span.start)
        if indent is None:
            text = "".join(t for _, t in lines)
        else:
            text = "".join(f"\n{indent}{self.d._unit * depth}{t}" for depth, t in lines)
        self.result.append(Edit(span.end, span.end, text))

    # -- QEMU properties libvirt has no element for: <qemu:override> ---------------------------------

    def _io_reserve(self) -> None:
        """Write each controller's ``io-reserve`` as a ``<qemu:override>`` of its alias (libvirt 9.0 passes it to QEMU).

        Only the ``io-reserve`` property of the controllers whose value changed is
        touched: every other override, property and ``<qemu:commandline>`` stays
        as it is, where it is.
        """
        old = {c.index: c for c in self.d.topology.controllers}
        changed = [
            c
            for c in self.topology.controllers
            if c.io_reserve != (old[c.index].io_reserve if c.index in old else None)
            or (c.io_reserve is not None and c.index in old and old[c.index].id != c.id)
        ]
        if not changed:
            return
        root = self.d._root
        ns = f"{{{QEMU_NS}}}"
        existing = {
            str(device.get("alias")): device
            for device in root.findall(f"{ns}override/{ns}device")
            if device.get("alias") is not None
        }
        new_blocks: list[tuple[int, str]] = []
        for c in changed:
            if c.io_reserve is not None and (c.id is None or not c.id.startswith(_USER_ALIAS_PREFIX)):
                raise InvalidInput(
                    str(c),
                    f"io-reserve is written as a <qemu:override> of the controller's alias, and libvirt keeps only "
                    f"aliases that start with {_USER_ALIAS_PREFIX!r} (give it one: Controller.with_io_reserve does)",
                )
            before = old.get(c.index)
            if before is not None and before.io_reserve is not None and before.id is not None and before.id != c.id:
                self._drop_io_reserve(existing.get(before.id))
            device = existing.get(c.id) if c.id is not None else None
            prop = None
            if device is not None:
                prop = next(
                    (p for p in device.findall(f"{ns}frontend/{ns}property") if p.get("name") == "io-reserve"), None
                )
            if c.io_reserve is None:
                self._drop_io_reserve(device)
                continue
            prefix = self._qemu_prefix()
            element = f"<{prefix}:property name='io-reserve' type='unsigned' value='{c.io_reserve}'/>"
            if prop is not None:
                span = self.d._span(prop)
                self.result.append(Edit(span.start, span.start_end, element))
            elif device is not None:
                frontend = device.find(f"{ns}frontend")
                if frontend is not None:
                    self._add_child(frontend, "last", [(0, element)])
                else:
                    self._add_child(
                        device, "last", [(0, f"<{prefix}:frontend>"), (1, element), (0, f"</{prefix}:frontend>")]
                    )
            else:
                new_blocks += [
                    (1, f"<{prefix}:device alias='{c.id}'>"),
                    (2, f"<{prefix}:frontend>"),
                    (3, element),
                    (2, f"</{prefix}:frontend>"),
                    (1, f"</{prefix}:device>"),
                ]
        if not new_blocks:
            return
        override = root.find(f"{ns}override")
        if override is not None:
            self._add_child(override, "last", [(depth - 1, text) for depth, text in new_blocks])
            return
        prefix = self._qemu_prefix()
        self._append_to_domain([(0, f"<{prefix}:override>"), *new_blocks, (0, f"</{prefix}:override>")])

    def _drop_io_reserve(self, device: _Element | None) -> None:
        """Make an override's ``io-reserve`` property ``type='remove'`` (QEMU's default again; no element dropped)."""
        if device is None:
            return
        ns = f"{{{QEMU_NS}}}"
        for prop in device.findall(f"{ns}frontend/{ns}property"):
            if prop.get("name") == "io-reserve" and prop.get("type") != "remove":
                span = self.d._span(prop)
                element = f"<{self._qemu_prefix()}:property name='io-reserve' type='remove'/>"
                self.result.append(Edit(span.start, span.start_end if span.empty else span.end, element))

    # -- controllers --------------------------------------------------------------------------

    def _controllers(self) -> list[tuple[Controller, dict[str, Any]]]:
        """Queue the changes of listed controllers; the new ones, to insert, with the changes libvirt would make."""
        old = {c.index: c for c in self.d.topology.controllers}
        changed: set[int] = set()
        implicit: set[int] = set()
        for c in self.topology.controllers:
            before = old.get(c.index)
            if c.index in self.d._implicit_controllers:
                implicit.add(c.index)
                if c != before:
                    self.implicit_changed = True
                continue
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
        filled = _libvirt_defaults(self.topology, changed | implicit)
        self.implicit_controllers = [_filled(*filled[i]) for i in sorted(implicit)]
        for index in sorted(changed):
            if index in old:
                self._update_controller(old[index], _filled(*filled[index]))
        return [filled[i] for i in sorted(changed) if i not in old]

    def _update_controller(self, before: Controller, after: Controller) -> None:
        el = self.d._controller_elements[after.index]
        if after.qemu_model != before.qemu_model and _child(el, "model") is None and after.qemu_model is not None:
            self._add_child(el, "first", [(0, f"<model name='{after.qemu_model}'/>")])
        new_target = dict(_target_attrs(after))
        old_target = dict(_target_attrs(before))
        target = _child(el, "target")
        if new_target != old_target or (after.numa_node != before.numa_node and target is None):
            if target is None:
                lines = _target_lines(after)
                if lines:
                    anchor = _child(el, "model")
                    self._add_child(el, anchor if anchor is not None else "first", lines)
            else:
                merged: dict[str, str] = {str(k): str(v) for k, v in target.attrib.items()}
                merged.update(new_target)
                span = self.d._span(target)
                attr_text = "".join(f" {k}='{v}'" for k, v in merged.items())
                self.result.append(Edit(span.start, span.start_end, f"<target{attr_text}{'/>' if span.empty else '>'}"))
        if after.id != before.id and after.id is not None and _child(el, "alias") is None:
            # libvirt's order: <model>, <target>, <alias>, <address>
            anchor = next((x for x in (_child(el, "target"), _child(el, "model")) if x is not None), None)
            self._add_child(el, anchor if anchor is not None else "first", [(0, f"<alias name='{after.id}'/>")])
        if (after.address, after.multifunction) != (before.address, before.multifunction):
            self._set_address(el, after.address, after.multifunction)

    def _insert_controllers(self, controllers: list[tuple[Controller, dict[str, Any]]]) -> None:
        devices = _child(self.d._root, "devices")
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
        lines = [(0, self._controllers_text(devices, controllers))]
        if anchor is None:
            self._add_child(devices, "first", lines)
        else:
            self._add_child(devices, anchor, lines)

    def _controllers_text(self, parent: _Element, controllers: list[tuple[Controller, dict[str, Any]]]) -> str:
        """The new controllers' elements (each with the ``changes`` of :func:`_libvirt_defaults` made) as one line
        for ``parent``, indented as :meth:`_insert_children` renders lines, the first line's indent left to it.

        A change of the model name alone is read here rather than made by evolving the controller.

        A plan adds a controller for nearly every device (its root port): each written with its indents in one
        format, where a line of each element was a tuple rendered on its own (a third of the writer's work).
        """
        outer = indent_before(self.text, self.d._offsets[parent][1])
        unit = self.d._unit
        # the text before a line of each depth but the first (render: on its own line, one unit deeper a depth)
        inner = "" if outer is None else f"\n{outer}{unit}"
        at0, at1, at2 = inner, inner + unit if inner else "", inner + 2 * unit if inner else ""
        parts: list[str] = []
        for c, changes in controllers:
            qemu_model = c.qemu_model
            if changes:
                if changes.keys() == {"qemu_model"}:
                    qemu_model = changes["qemu_model"]
                else:
                    c = _evolve(c, changes)
                    qemu_model = c.qemu_model
            model = "pci-root" if c.model == "spapr-pci-host-bridge" else c.model
            parts.append(f"{at0}<controller type='pci' index='{c.index}' model='{model}'>")
            if qemu_model is not None:
                parts.append(f"{at1}<model name='{qemu_model}'/>")
            if c.chassis_nr is None and c.bus_nr is None and c.target_index is None and c.hotplug is None:
                # a root port's target (chassis and port) or none: _target_attrs' loop, written out
                attr_text = "" if c.chassis is None else f" chassis='{c.chassis}'"
                if c.port is not None:
                    attr_text += " port='0x%x'" % c.port  # noqa: UP031 - as _TARGET_ATTRS formats it
            else:
                attr_text = "".join([f" {k}='{v}'" for k, v in _target_attrs(c)])
            if c.numa_node is not None:
                parts.append(f"{at1}<target{attr_text}>{at2}<node>{c.numa_node}</node>{at1}</target>")
            elif attr_text:
                parts.append(f"{at1}<target{attr_text}/>")
            if c.id is not None:
                parts.append(f"{at1}<alias name='{c.id}'/>")
            if c.address is not None:
                parts.append(at1 + _format_address(c.address, c.multifunction))
            parts.append(f"{at0}</controller>")
        return "".join(parts)[len(at0) :]

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
            resolved = self.d._last_child(parent)
        else:
            assert not isinstance(anchor, str)
            resolved = anchor
        self.children.setdefault(parent, []).append((resolved, lines))

    def _insert_children(self, parent: _Element, items: list[tuple[_Element | None, list[tuple[int, str]]]]) -> None:
        # the offsets as the reader found them, not an ElementSpan each: a plan inserts an <address> into every device
        offsets = self.d._offsets
        name, start, start_end, end_start, end = offsets[parent]
        outer = indent_before(self.text, start)
        unit = self.d._unit
        inner = "" if outer is None else f"\n{outer}{unit}"
        if len(items) == 1 and end != start_end and len(items[0][1]) == 1 and not items[0][1][0][0]:
            # one line into an element with content: a device's new <address>, what nearly every call here is (a
            # plan's thousand devices), written as render() writes it without a block to render
            anchor, ((_, text),) = items[0]
            at = start_end if anchor is None else offsets[anchor][4]
            self.result.append(Edit(at, at, f"{inner}{text}"))
            if outer is not None and self.text.find("\n", start_end, end_start) < 0:
                self.result.append(Edit(end_start, end_start, "\n" + outer))
            return

        def render(block: list[tuple[int, str]]) -> str:
            # each line on its own line, indented one unit deeper than the parent per depth (all on one line when
            # the parent is not on a line of its own); a plain loop: every device's new <address> comes through here
            if outer is None:
                return "".join([text for _, text in block])
            return "".join([f"{inner}{unit * depth}{text}" if depth else f"{inner}{text}" for depth, text in block])

        if end == start_end:  # an empty-element tag (ElementSpan.empty)
            block = [line for _, lines in items for line in lines]
            slash = self.text.rfind("/", start, start_end)
            close = f"</{name}>" if outer is None else f"\n{outer}</{name}>"
            self.result.append(Edit(slash, start_end, ">" + render(block) + close))
            return
        if len(items) == 1:
            anchor, block = items[0]
            at = start_end if anchor is None else offsets[anchor][4]
            self.result.append(Edit(at, at, render(block)))
        else:
            grouped: dict[int, list[tuple[int, str]]] = {}
            for anchor, lines in items:
                at = start_end if anchor is None else offsets[anchor][4]
                grouped.setdefault(at, []).extend(lines)
            for at, block in grouped.items():
                self.result.append(Edit(at, at, render(block)))
        if outer is not None and self.text.find("\n", start_end, end_start) < 0:
            self.result.append(Edit(end_start, end_start, "\n" + outer))
