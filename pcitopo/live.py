"""Live hotplug planning: where devices can be hot-plugged into a running domain, and what can be unplugged.

:func:`attach` reads a running domain (``virsh dumpxml``) and one or more
device elements, and puts each device on an existing free position that can
take it *now*: an empty slot of a bus whose hotplug is on at that slot, that
legally takes the device, that meets the device's needs and the policy (its
NUMA node when strict, preferred first otherwise), and after which every rule
still holds. It never adds a controller: q35 and ARM/RISC-V virt cannot
hot-add a root port or a bridge at all, and a bridge hot-plugged on ``pc``
would come up without the firmware's resources. When nothing fits it raises
:class:`~pcitopo.errors.Unsatisfiable` with the reason per device and the cold
change (for the domain's persistent definition, at the next boot) that would
make it fit: the controllers the solver would add.

:func:`detach` says whether a device can be hot-unplugged and what goes with
it: not a controller, not a device the machine builds in, not on a position
without hotplug, not a device of a kind that cannot be hot-plugged, and not a
function of a multifunction slot -- libvirt refuses that ("cannot hot unplug
multifunction PCI device"), and QEMU's ``device_del`` of function 0 takes the
whole slot with it.

>>> from pcitopo.formats.libvirt import LibvirtDomain
>>> live = LibvirtDomain.from_string('''<domain type='kvm'><name>v</name>
...   <os><type arch='x86_64' machine='pc-q35-7.2'>hvm</type></os><devices>
...   <controller type='pci' index='0' model='pcie-root'/>
...   <controller type='pci' index='1' model='pcie-root-port'>
...     <address type='pci' domain='0x0000' bus='0x00' slot='0x02' function='0x0'/></controller>
...   </devices></domain>''')
>>> (a,) = attach(live, "<interface type='network'><source network='default'/><model type='virtio'/></interface>")
>>> str(a.address), a.bus
('0000:01:00.0', 'pci.1')
>>> print(a.xml)
<interface type="network"><source network="default"/><model type="virtio"/><address type="pci" \
domain="0x0000" bus="0x01" slot="0x00" function="0x0"/></interface>
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import attrs
from lxml import etree

from pcitopo.address import PciAddress
from pcitopo.devices import Device, HotplugNeed
from pcitopo.errors import InvalidInput, PcitopoError, UnknownName, Unsatisfiable
from pcitopo.formats.libvirt import LibvirtDomain
from pcitopo.legality.catalog import Connect
from pcitopo.legality.rules import validate
from pcitopo.policy.policy import Policy
from pcitopo.topology import Topology
from pcitopo.violation import Violation

__all__ = ["Attachment", "Detachment", "attach", "detach"]


def __dir__() -> list[str]:
    return __all__


@attrs.frozen
class Attachment:
    """One device placed for ``virsh attach-device``: where, and its XML with the address."""

    device: str
    kind: str
    address: PciAddress
    bus: str
    """The QEMU name of the bus (``pci.3``)."""
    numa_node: int | None
    xml: str

    def __str__(self) -> str:
        node = f", NUMA node {self.numa_node}" if self.numa_node is not None else ""
        return f"{self.device!r} ({self.kind}) at {self.address} on {self.bus}{node}"


@attrs.frozen
class Detachment:
    """Whether a device can be hot-unplugged (``reasons`` say why not) and what goes with it."""

    device: str
    possible: bool
    reasons: tuple[str, ...] = ()
    with_it: tuple[str, ...] = ()

    def __str__(self) -> str:
        if self.possible:
            return f"{self.device!r} can be hot-unplugged"
        return f"{self.device!r} cannot be hot-unplugged: " + "; ".join(self.reasons)


# -- attach ---------------------------------------------------------------------------------


def _device_elements(text: str, source: str) -> list[etree._Element]:
    try:
        root = etree.fromstring(text.encode("utf-8"), etree.XMLParser(remove_blank_text=False, resolve_entities=False))
    except etree.XMLSyntaxError as exc:
        raise InvalidInput(source, f"malformed XML: {exc.msg}") from None
    found = [el for el in root if isinstance(el.tag, str)] if root.tag == "devices" else [root]
    if not found:
        raise InvalidInput(source, "holds no device element")
    return found


def _running(domain: LibvirtDomain) -> Topology:
    """A running domain's topology: what its XML lists (libvirt added its own devices when it defined it)."""
    return domain.topology.without(*domain.implicit) if domain.implicit else domain.topology


def _combined(live: LibvirtDomain, elements: Sequence[etree._Element], source: str) -> tuple[LibvirtDomain, list[str]]:
    """The live domain with the new elements appended to ``<devices>``, and the new devices' ids."""
    root = etree.fromstring(live.to_bytes())
    devices = root.find("devices")
    if devices is None:
        devices = etree.SubElement(root, "devices")
    before = len([c for c in devices if isinstance(c.tag, str)])
    for el in elements:
        el = copy.deepcopy(el)
        el.tail = "\n"
        devices.append(el)
    text = etree.tostring(root, encoding="unicode")
    domain = LibvirtDomain.from_string(text, source=live.source)
    holders = {el.getparent() for el in domain.elements.values()}
    children = [c for h in holders if h is not None and h.tag == "devices" for c in h if isinstance(c.tag, str)]
    new_elements = set(children[before:])
    new_ids = [ident for ident, el in domain.elements.items() if el in new_elements]
    kept = {domain.elements[i] for i in new_ids}
    tags = {str(el.tag) for el in children[before:] if el not in kept}
    if len(new_ids) != len(elements):
        ignored = len(elements) - len(new_ids)
        raise InvalidInput(
            source,
            f"{ignored} of its elements ({', '.join(sorted(tags))}) do not use PCI; attach places PCI devices only",
        )
    return domain, new_ids


def _candidates(topology: Topology, device: Device, policy: Policy) -> tuple[list[PciAddress], str]:
    """Free hotpluggable positions for ``device`` in preference order, and why there are none."""
    kind = topology.kind(device)
    if not kind.hotpluggable:
        return [], f"cannot be hot-plugged at all (QEMU refuses to hot-add a {kind.qemu_device})"
    needs = attrs.evolve(policy.needs_for(device), hotplug=HotplugNeed.REQUIRED)
    positions = list(topology.free_positions(device, needs=needs))
    if not positions:
        connect = topology.connect(device).phrase
        node = f" under NUMA node {needs.numa_node}" if needs.numa_node is not None and needs.numa_strict else ""
        return [], f"has no empty hot-pluggable slot that takes a {connect}{node}"

    def key(a: PciAddress) -> tuple[int, int, int]:
        node = topology.numa_node_of_bus(a.bus)
        mismatch = int(needs.numa_node is not None and node != needs.numa_node)
        return (mismatch, a.bus, a.slot)

    return sorted(positions, key=key), ""


def attach(
    live: LibvirtDomain,
    devices_xml: str,
    policy: Policy | str | None = None,
    *,
    source: str = "DEVICE.xml",
) -> tuple[Attachment, ...]:
    """Place the devices of ``devices_xml`` (one element, or several in ``<devices>``) into a running domain.

    Raises :class:`~pcitopo.errors.Unsatisfiable` when some device has no
    position; :class:`~pcitopo.errors.InvalidInput` when ``live`` has devices
    without an address (not a running domain) or a new device is not PCI.
    """
    if policy is None:
        policy = Policy.named("hotplug")
    elif isinstance(policy, str):
        policy = Policy.named(policy)
    unplaced = [d.id for d in _running(live).devices if d.address is None]
    if unplaced:
        raise InvalidInput(
            live.source,
            f"is not a running domain: {', '.join(repr(i) for i in unplaced)} "
            f"{'has' if len(unplaced) == 1 else 'have'} no PCI address (use virsh dumpxml of the running domain)",
        )
    elements = _device_elements(devices_xml, source)
    domain, new_ids = _combined(live, elements, source)
    topology = _running(domain)
    baseline = set(validate(topology.without(*new_ids)))
    placed: dict[str, PciAddress] = {}
    failures: list[str] = []
    short: dict[str, int] = {}
    for ident in new_ids:
        device = topology.device(ident)
        if device.address is not None:
            problem = _pinned_problem(topology, device, baseline)
            if problem:
                failures.append(f"{device} at {device.address}: {problem}")
            else:
                placed[ident] = device.address
            continue
        positions, why = _candidates(topology, device, policy)
        chosen = None
        for a in positions:
            trial = topology.replace(devices=[d.placed_at(a) if d.id == ident else d for d in topology.devices])
            if set(validate(trial)) - baseline:
                continue
            chosen, topology = a, trial
            break
        if chosen is None:
            failures.append(f"{device} {why or 'has no position where every rule still holds'}")
            need = _missing_position(topology, device, policy)
            short[need] = short.get(need, 0) + 1
        else:
            placed[ident] = chosen
    if failures:
        wanted = [f"at least {n} more {what}" for what, n in short.items()]
        raise Unsatisfiable(
            failures,
            facts=_facts(_running(live)),
            suggestions=[*wanted, *_cold_change(domain, new_ids, policy)],
        )
    originals = dict(zip(new_ids, elements, strict=True))
    out = []
    for ident in new_ids:
        a = placed[ident]
        out.append(
            Attachment(
                ident,
                topology.device(ident).kind,
                a,
                topology.bus_name(a.bus),
                topology.numa_node_of_bus(a.bus),
                _with_address(originals[ident], a),
            )
        )
    return tuple(out)


def _with_address(element: etree._Element, a: PciAddress) -> str:
    """The device element's text with its PCI address set as libvirt writes it."""
    el = copy.deepcopy(element)
    el.tail = None
    for old in el.findall("address"):
        if old.get("type", "pci") == "pci":
            el.remove(old)
    children = list(el)
    attrib = {
        "type": "pci",
        "domain": f"0x{a.domain:04x}",
        "bus": f"0x{a.bus:02x}",
        "slot": f"0x{a.slot:02x}",
        "function": f"0x{a.function:x}",
    }
    address = etree.SubElement(el, "address", attrib)
    if children:
        last = children[-1]
        before = children[-2].tail if len(children) > 1 else el.text
        address.tail, last.tail = last.tail, before
    return etree.tostring(el, encoding="unicode")


def _pinned_problem(topology: Topology, device: Device, baseline: set[Violation]) -> str | None:
    a = device.address
    assert a is not None
    if not topology.has_bus(a.bus):
        return f"there is no bus {a.bus}"
    if not topology.is_hotpluggable(a.bus, a.slot):
        return f"bus {a.bus} ({topology.model(a.bus).name}) does not hot-plug slot {a.slot:#04x}"
    new = [str(v) for v in validate(topology) if v not in baseline]
    return "; ".join(new) if new else None


def _missing_position(topology: Topology, device: Device, policy: Policy) -> str:
    """What kind of empty hot-pluggable position the device lacked, in words."""
    needs = policy.needs_for(device)
    node = f" under NUMA node {needs.numa_node}" if needs.numa_node is not None and needs.numa_strict else ""
    if topology.connect(device) is Connect.PCIE_DEVICE:
        return f"empty hot-pluggable pcie-root-port or switch downstream port{node}"
    if topology.machine.pcie:
        return f"empty hot-pluggable slot on a pci-bridge or pcie-to-pci-bridge{node}"
    return f"empty hot-pluggable slot on the root bus or a pci-bridge{node}"


def _facts(topology: Topology) -> list[str]:
    facts = []
    if not topology.is_hotpluggable(0, 1) and topology.machine.root_model == "pcie-root":
        facts.append(f"the root bus {topology.machine.root_bus_name} takes no hot-plugged device")
    ports = [c for c in topology.controllers if topology.model(c).port]
    if ports:
        usage = topology.slot_usage()
        free = [c for c in ports if not usage.get((0, c.index, 0)) and topology.is_hotpluggable(c.index, 0)]
        off = [c for c in ports if not topology.is_hotpluggable(c.index, 0)]
        text = f"{len(ports)} PCIe port{'s' if len(ports) != 1 else ''}, {len(free)} empty and hot-pluggable"
        if off:
            text += f", {len(off)} with hotplug off ({', '.join(c.name for c in off)})"
        facts.append(text)
    return facts


def _cold_change(domain: LibvirtDomain, new_ids: Sequence[str], policy: Policy) -> list[str]:
    """What the solver would add to the persistent definition so the devices fit at the next boot."""
    from pcitopo.solver import solve

    topology = _running(domain)
    request = topology.replace(devices=[d.placed_at(None) if d.id in new_ids else d for d in topology.devices])
    try:
        plan = solve(request, policy)
    except PcitopoError as exc:
        return [f"no cold change found either: {' '.join(str(exc).split())}"]
    if not plan.added:
        return ["a cold plug at the next boot fits without new controllers"]
    counts: dict[str, int] = {}
    for c in plan.added:
        node = topology.numa_node_of_bus(c.address.bus) if c.address is not None else None
        where = f" under NUMA node {node}" if node is not None else ""
        label = f"{c.model}{where}"
        counts[label] = counts.get(label, 0) + 1
    parts = [f"{n} {label}{'s' if n != 1 else ''}" for label, n in counts.items()]
    return [
        f"add {', '.join(parts)} to the persistent definition (what policy {policy.name!r} plans for these "
        "devices, its spare ports included); they take effect at the next boot"
    ]


# -- detach ---------------------------------------------------------------------------------


def detach(live: LibvirtDomain, ident: str) -> Detachment:
    """Whether ``ident`` can be hot-unplugged from the running domain, and what goes with it."""
    topology = _running(live)
    if any(c.name == ident for c in topology.controllers):
        return Detachment(
            ident, False, ("a PCI controller cannot be hot-unplugged (libvirt detaches no PCI controller)",)
        )
    try:
        device = topology.device(ident)
    except UnknownName:
        known = [d.id for d in topology.devices] + [c.name for c in topology.controllers]
        raise UnknownName("device", ident, known, where=live.source) from None
    a = device.address
    if a is None:
        return Detachment(ident, False, ("it has no PCI address, so it is not plugged in",))
    reasons: list[str] = []
    builtin = next((b for b in topology.machine.builtins if b.address == a), None)
    if builtin is not None:
        reasons.append(f"it is the machine's built-in {builtin.name} at {a}")
    kind = topology.kind(device)
    if not kind.hotpluggable:
        reasons.append(f"a {kind.name} cannot be hot-unplugged")
    if topology.has_bus(a.bus) and not topology.is_hotpluggable(a.bus, a.slot):
        c = topology.controller(a.bus)
        if topology.model(c).port or c.hotplug is False:
            reasons.append(f"its bus {topology.bus_name(a.bus)} ({c.model}) has hotplug off")
        else:
            reasons.append(f"its bus {topology.bus_name(a.bus)} ({c.model}) does not support hotplug")
    others = sorted(
        x.id
        for x in topology.devices
        if x.id != ident and x.address is not None and x.address.slot_address == a.slot_address
    )
    if others:
        reasons.append(
            f"it is a function of the multifunction slot {a.slot_address} with {', '.join(repr(o) for o in others)}: "
            "libvirt refuses to hot-unplug it, and QEMU's device_del of function 0 removes the whole slot"
        )
    return Detachment(ident, not reasons, tuple(reasons), tuple(others))
