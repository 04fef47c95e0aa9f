"""The names a Linux guest with systemd's predictable naming gives each NIC of a plan.

systemd-udevd's ``net_id`` builtin computes up to three names for a PCI NIC and
the default ``NamePolicy=keep kernel database onboard slot path``
(``99-default.link``) takes the first that exists:

``onboard`` -- ``eno<N>``
    ``N`` is the function's ``acpi_index`` sysfs attribute, which Linux fills
    from the ACPI ``_DSM`` "device name" function (``drivers/pci/pci-label.c``).
    QEMU (6.0+) provides that ``_DSM`` for a device with ``acpi-index=N`` (libvirt
    ``<acpi index='N'/>``). systemd ignores an index above 16383 before naming
    scheme v249 and above 65535 from v249 (``NAMING_16BIT_INDEX``), and 0
    before v240 (``NAMING_ZERO_ACPI_INDEX``); QEMU 7.2 itself refuses
    ``acpi-index`` above 16383 ("acpi-index should be less or equal to 16383")
    and the same index twice ("a PCI device with acpi-index = N already
    exist"). **QEMU 7.2 describes acpi-index to the guest only for devices on
    a bus with ACPI PCI hotplug** (a VGA there too): on ``pc``, the root bus
    (unless root hotplug is off) and pci-bridges; on ``q35``, hot-pluggable
    PCIe root and downstream ports and PCI bridges, never ``pcie.0`` itself;
    nothing below an expander bus (checked in a booted guest). QEMU 8.0 added
    acpi-index for non-hotpluggable devices (Igor Mammedov's ACPI PCI series of
    January 2023). Elsewhere QEMU 7.2 accepts the property and the guest never
    sees it.

``slot`` -- ``ens<N>[f<function>]``
    ``N`` is the number of the hotplug slot (``/sys/bus/pci/slots/N``) whose
    ``address`` is the device's ``domain:bus:slot``; only names that are a
    positive decimal number count (``pci_get_hotplug_slot_from_address``).
    QEMU's ACPI hotplug names each slot it describes after ``_SUN``, the slot
    number, and the kernel renames a name already taken (``3-2``), which
    systemd then ignores. The slots QEMU 7.2 describes with a positive number
    are those of conventional buses with ACPI hotplug: the ``pc`` root bus
    (unless root hotplug is off) and pci-bridges and pcie-to-pci-bridges not
    below an expander bus; every slot of such a bus except one holding a
    bridge, a built-in device or a device QEMU cannot hot-plug (a VGA). The
    kernel registers them bus by bus in bus-number order, so the first bus to
    describe slot ``N`` gets the name: on ``pc`` a NIC in root-bus slot 3 is
    ``ens3``, and a NIC in slot 1 of a pci-bridge is ``ens1`` because the
    root bus's slot 1 (the PIIX3) is not described. PCIe ports describe slot
    0 only, which systemd ignores: a NIC behind a root port gets its path
    name. Checked against a booted guest (``tests/integration/test_naming_guest.py``).

``path`` -- ``en[P<domain>]p<bus>s<slot>[f<function>]``
    ``bus`` is the bus number the guest sees: the firmware numbers bridges
    depth first, in slot order, from each root bus (SeaBIOS
    ``pci_bios_init_bus_rec``; an expander bus starts at its ``bus_nr``, and a
    ``pxb``'s devices sit behind its internal bridge, ``bus_nr + 1``), and
    Linux keeps those numbers.

``f<function>`` is added when the function is not 0 or the device has the
multifunction bit (``multifunction=on``); ``P<domain>`` when the domain is not
0 (``get_pci_slot_specifiers``). Sources: systemd ``src/udev/udev-builtin-net_id.c``
and ``src/shared/netif-naming-scheme.h``; ``man systemd.net-naming-scheme``.

>>> from pcitopo.address import PciAddress
>>> from pcitopo.devices import Controller, Device
>>> from pcitopo.topology import Topology
>>> t = Topology.build("q35", [Controller(1, "pcie-root-port", address=PciAddress.parse("00:02.0"))],
...                    [Device("net0", "virtio-net", address=PciAddress.parse("01:00.0"))])
>>> guest_names(t)["net0"].name
'enp1s0'
>>> pc = Topology.build("pc", devices=[Device("net0", "e1000", address=PciAddress.parse("00:03.0"))])
>>> n = guest_names(pc, acpi_index={"net0": 7})["net0"]
>>> n.name, n.slot, n.path
('eno7', 'ens3', 'enp0s3')
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING

import attrs

from pcitopo.devices import Device
from pcitopo.errors import InvalidInput
from pcitopo.topology import Topology

if TYPE_CHECKING:
    from pcitopo.formats.libvirt import LibvirtDomain

__all__ = [
    "ACPI_INDEX_MAX",
    "PSERIES_NOTE",
    "GuestName",
    "acpi_index_problem",
    "acpi_indexes",
    "guest_bus_numbers",
    "guest_names",
    "name_key",
    "names_in_order",
    "nic_order",
    "number_nics",
]


def __dir__() -> list[str]:
    return __all__


PSERIES_NOTE = (
    "pseries names are not predicted: systemd gives a PCI NIC its path name enP<domain>p<bus>s<slot> there "
    "(no acpi_index, and the hotplug slots are named 'C<n>', not numbers), but the domain (Linux's PHB number) "
    "and the bus numbers (SLOF's) are not checked in a booted pseries guest here"
)
"""Why a pseries NIC gets no predicted name (see ``docs/naming.rst``, "pseries")."""

ACPI_INDEX_MAX = 16383
"""The largest ``acpi-index`` QEMU 7.2 accepts (and systemd before naming scheme v249 uses)."""


@attrs.frozen
class GuestName:
    """The names systemd gives one NIC, and the one the guest ends up with.

    ``name`` is ``onboard`` if there is one, else ``slot``, else ``path``
    (``NamePolicy=... onboard slot path``); ``source`` says which;
    ``notes`` say why a name is missing or uncertain.
    """

    device: str
    path: str | None
    slot: str | None = None
    onboard: str | None = None
    notes: tuple[str, ...] = ()

    @property
    def name(self) -> str | None:
        return self.onboard or self.slot or self.path

    @property
    def source(self) -> str | None:
        return "onboard" if self.onboard else "slot" if self.slot else "path" if self.path else None

    def __str__(self) -> str:
        return f"{self.device}: {self.name or '?'}"

    def as_dict(self) -> dict[str, object]:
        """A JSON-ready form."""
        return {
            "name": self.name,
            "source": self.source,
            "onboard": self.onboard,
            "slot": self.slot,
            "path": self.path,
            "notes": list(self.notes),
        }


def guest_bus_numbers(topology: Topology) -> dict[int, int]:
    """The bus number the guest sees on each controller's bus, by controller index.

    Depth first, in (slot, function) order, from each root bus, as SeaBIOS
    numbers them; an expander bus starts at its ``bus_nr`` and a ``pxb``'s
    endpoints are one behind (its internal bridge). Controllers without an
    address, or below one, are left out.
    """
    # each child by its address's fields (PciAddress's order) and index: sorted as plain tuples, without a Python
    # comparison of two addresses for each step of the sort
    children: dict[int, list[tuple[tuple[int, int, int, int], int]]] = {}
    for c in topology.controllers:
        a = c.address
        if a is not None and c.index != 0 and topology.has_bus(a.bus):
            children.setdefault(a.bus, []).append(((a.domain, a.bus, a.slot, a.function), c.index))
    numbers: dict[int, int] = {}

    def walk(bus: int, counter: int) -> int:
        for _, child in sorted(children.get(bus, ())):
            m = topology.model(child)
            if m.expander or m.root:
                continue
            counter += 1
            numbers[child] = counter
            counter = walk(child, counter)
        return counter

    walk(0, 0)
    numbers[0] = 0
    expanders = sorted(
        (c for c in topology.controllers if topology.model(c).expander and c.bus_nr is not None),
        key=lambda c: c.bus_nr or 0,
    )
    for c in expanders:
        assert c.bus_nr is not None
        start = c.bus_nr + topology.model(c).bus_numbers - 1
        numbers[c.index] = start
        walk(c.index, start)
    return numbers


def _acpi_slot_buses(topology: Topology, numbers: Mapping[int, int]) -> list[int]:
    """The conventional buses whose slots QEMU 7.2 describes with ``_SUN``, in guest bus-number order."""
    machine = topology.machine.name
    if not topology.acpi or machine not in ("pc", "q35"):
        return []
    buses = []
    for c in topology.controllers:
        model = topology.model(c).name
        conventional = model in ("pci-bridge", "pcie-to-pci-bridge") or (model == "pci-root" and machine == "pc")
        if not conventional or c.index not in numbers:
            continue  # the cheap tests first: a q35 domain has a root port for each of many devices
        if any(topology.model(x).expander for x in topology.path_to_root(c.index)):
            continue
        if topology.is_hotpluggable(c.index, 1):
            buses.append(c.index)
    return sorted(buses, key=lambda b: numbers[b])


def _slot_names(topology: Topology, numbers: Mapping[int, int]) -> dict[tuple[int, int], int]:
    """(bus, slot) -> the positive slot name the guest kernel gives it, for the slots that keep their number."""
    buses = _acpi_slot_buses(topology, numbers)
    if not buses:
        return {}  # no slot the guest names by its number (say, a q35 domain without PCI bridges)
    taken: set[int] = set()
    names: dict[tuple[int, int], int] = {}
    holders: dict[tuple[int, int], list[str]] = {}
    # what sits on those buses only (a q35 plan has a bridge or two of them, and a root port for each of many devices)
    on = set(buses)
    for b in topology.builtins():
        if b.address.bus in on:
            holders.setdefault((b.address.bus, b.address.slot), []).append("builtin")
    for c in topology.controllers:
        if c.address is not None and c.address.bus in on:
            holders.setdefault((c.address.bus, c.address.slot), []).append("bridge")
    for d in topology.devices:
        if d.address is not None and d.address.bus in on:
            ok = topology.catalog.device(d.kind).hotpluggable
            holders.setdefault((d.address.bus, d.address.slot), []).append("device" if ok else "fixed")
    for bus in buses:
        for slot in topology.model(bus).slot_range():
            if any(h != "device" for h in holders.get((bus, slot), ())) or slot in taken:
                continue
            taken.add(slot)
            if slot > 0:
                names[(bus, slot)] = slot
    return names


def _acpi_hotplug_bus(topology: Topology, bus: int, slot: int) -> bool:
    """Whether QEMU 7.2 describes (bus, slot) as an ACPI PCI hotplug slot (where acpi-index reaches the guest)."""
    machine = topology.machine.name
    if not topology.acpi or machine not in ("pc", "q35"):
        return False
    if not topology.is_hotpluggable(bus, slot):
        return False
    for c in topology.path_to_root(bus):
        if topology.model(c).expander:
            return False
    model = topology.model(bus).name
    if machine == "pc":
        return model in ("pci-root", "pci-bridge")
    return model in ("pcie-root-port", "pcie-switch-downstream-port", "pci-bridge", "pcie-to-pci-bridge")


def acpi_index_problem(topology: Topology, device: str, index: int) -> str | None:
    """Why an ``acpi-index`` will not name a device ``eno<index>`` (``None``: it will)."""
    d = topology.device(device)
    if not 1 <= index <= ACPI_INDEX_MAX:
        return f"acpi-index {index} is outside 1..{ACPI_INDEX_MAX} (QEMU 7.2 refuses it above {ACPI_INDEX_MAX})"
    if d.address is None:
        return "the device has no address yet"
    machine = topology.machine.name
    if machine not in ("pc", "q35"):
        return f"QEMU describes acpi-index to the guest in the ACPI tables of pc and q35 only, not {machine}"
    if not topology.acpi:
        return "the guest has no ACPI"
    if not _acpi_hotplug_bus(topology, d.address.bus, d.address.slot):
        where = f"bus {d.address.bus} ({topology.model(d.address.bus).name}) slot {d.address.slot:#04x}"
        return (
            f"QEMU 7.2 describes acpi-index only for ACPI hot-pluggable slots, and {where} is not one "
            "(QEMU 8.0 lifts this)"
        )
    return None


def guest_names(
    topology: Topology,
    *,
    acpi_index: Mapping[str, int] | None = None,
    nics: Iterable[str] = (),
) -> dict[str, GuestName]:
    """The guest's names for every NIC of ``topology`` (kinds of class ``net``, plus the ids in ``nics``).

    ``acpi_index`` maps device ids to their ``acpi-index``, over the devices'
    own (:attr:`Device.acpi_index <pcitopo.devices.Device.acpi_index>`).
    Devices without an address get no name.
    """
    indexes = {d.id: d.acpi_index for d in topology.devices if d.acpi_index is not None}
    indexes.update(acpi_index or {})
    named = set(nics)
    wanted = [d for d in topology.devices if topology.kind(d).device_class == "net" or d.id in named]
    numbers = guest_bus_numbers(topology)
    slot_names = _slot_names(topology, numbers)
    seen_index: dict[int, str] = {}
    out: dict[str, GuestName] = {}
    for d in wanted:
        notes: list[str] = []
        if d.address is None:
            out[d.id] = GuestName(d.id, None, notes=("no address yet",))
            continue
        a = d.address
        if topology.machine.name == "pseries":
            out[d.id] = GuestName(d.id, None, notes=(PSERIES_NOTE,))
            continue
        bus_number = numbers.get(a.bus)
        function = ""
        if a.function > 0 or d.multifunction:
            function = f"f{a.function}"
        path = None
        if bus_number is None:
            notes.append(f"bus {a.bus} does not reach a root bus, so it has no guest bus number")
        else:
            domain = f"P{a.domain}" if a.domain else ""
            path = f"en{domain}p{bus_number}s{a.slot}{function}"
        slot = None
        if (a.bus, a.slot) in slot_names:
            slot = f"ens{slot_names[(a.bus, a.slot)]}{function}"
        onboard = None
        if d.id in indexes:
            index = indexes[d.id]
            problem = acpi_index_problem(topology, d.id, index)
            if index in seen_index:
                problem = f"acpi-index {index} is also given to {seen_index[index]!r} (QEMU refuses the second)"
            seen_index.setdefault(index, d.id)
            if problem is None:
                onboard = f"eno{index}"
            else:
                notes.append(problem)
        out[d.id] = GuestName(d.id, path, slot, onboard, tuple(notes))
    return out


def acpi_indexes(domain: LibvirtDomain) -> dict[str, int]:
    """The ``<acpi index='N'/>`` of each device of a domain, by device id.

    >>> from pcitopo.formats.libvirt import LibvirtDomain
    >>> d = LibvirtDomain.from_string('''<domain><os><type machine='pc'>hvm</type></os><devices>
    ...   <interface type='user'><model type='e1000'/><acpi index='3'/></interface></devices></domain>''')
    >>> acpi_indexes(d)
    {'interface0': 3}
    """
    from pcitopo.formats.libvirt._read import _child  # the domain's own reader is loaded: this costs nothing

    # a device's index is the one the reader read from this element and checked (a decimal number below 2**32),
    # the same int(text, 10) gives: looking up every device's <acpi> again was a fifth of an assign record
    read = {d.id: d.acpi_index for d in domain.topology.devices}
    out: dict[str, int] = {}
    for ident, el in domain.elements.items():
        if ident in read:  # a device (the elements of the others are aliased controllers: ids are unique)
            index = read[ident]
            if index is not None:
                out[ident] = index
            continue
        acpi = _child(el, "acpi")
        if acpi is None or acpi.get("index") is None:
            continue
        text = str(acpi.get("index"))
        try:
            out[ident] = int(text, 10)
        except ValueError:
            raise InvalidInput(f"{domain.path(ident)}/acpi", f"index must be a decimal number (got {text!r})") from None
    return out


# -- naming order ----------------------------------------------------------------------------


def name_key(name: str) -> tuple[str | int, ...]:
    """The natural-order key of a name (``sort -V``): digit runs compare as numbers.

    For path names that is the order the guest's kernel enumerates the
    devices in (guest bus number, then slot, then function), for slot names
    the slot number, for onboard names the acpi-index.

    >>> sorted(["enp10s0", "enp2s0", "eno3", "enp2s0f1"], key=name_key)
    ['eno3', 'enp2s0', 'enp2s0f1', 'enp10s0']
    """
    parts = re.split(r"(\d+)", name)
    return tuple(int(p) if i % 2 else p for i, p in enumerate(parts))


def nic_order(topology: Topology) -> list[Device]:
    """The NICs (kinds of class ``net``) in the user's order: ``needs.order`` where given, else definition order.

    A device's ``needs.order`` stands in for its position among the devices,
    as in the ``ordered`` policy's ``order`` term.
    """
    ranked = []
    for i, d in enumerate(topology.devices):
        if topology.kind(d).device_class == "net":
            hint = d.needs.order
            ranked.append(((float(i) if hint is None else float(hint), i), d))
    return [d for _, d in sorted(ranked, key=lambda e: e[0])]


def number_nics(topology: Topology, placed: Iterable[str]) -> Topology:
    """``topology`` with an ``acpi-index`` for each NIC in ``placed`` that lacks one, increasing in NIC order.

    Walking the NICs in :func:`nic_order`, each one of ``placed`` without an
    index gets the smallest index above the last one seen that no device
    uses, where that index reaches the guest (:func:`acpi_index_problem`);
    elsewhere it gets none. NICs outside ``placed`` (already in a running
    guest: a new index would rename them) keep what they have.

    >>> from pcitopo.address import PciAddress
    >>> from pcitopo.devices import Controller
    >>> A = PciAddress.parse
    >>> t = Topology.build("q35", [Controller(1, "pcie-root-port", address=A("00:02.0")),
    ...                            Controller(2, "pcie-root-port", address=A("00:02.1"))],
    ...                    [Device("b", "virtio-net", address=A("02:00.0")),
    ...                     Device("a", "e1000e", address=A("01:00.0"), acpi_index=4)])
    >>> [(d.id, d.acpi_index) for d in number_nics(t, ["b"]).devices]
    [('b', 1), ('a', 4)]
    """
    todo = set(placed)
    used = {d.acpi_index for d in topology.devices if d.acpi_index is not None}
    last = 0
    given: dict[str, int] = {}
    for d in nic_order(topology):
        if d.acpi_index is not None or d.id not in todo:
            last = max(last, d.acpi_index or 0)
            continue
        index = last + 1
        while index in used:
            index += 1
        if acpi_index_problem(topology, d.id, index) is None:
            given[d.id] = index
            used.add(index)
            last = index
    if not given:
        return topology
    return topology.replace(devices=[d.with_acpi_index(given[d.id]) if d.id in given else d for d in topology.devices])


def names_in_order(topology: Topology, nics: Sequence[Device]) -> tuple[bool, list[str]]:
    """Whether the guest names of ``nics`` increase in natural order, and the names (``?`` for none)."""
    names = guest_names(topology, nics=[d.id for d in nics])
    shown = [names[d.id].name or "?" for d in nics]
    keys = [name_key(n) for n in shown]
    ok = "?" not in shown and all(a < b for a, b in itertools.pairwise(keys))
    return ok, shown
