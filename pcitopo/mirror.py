"""The ``mirror`` request: passed-through devices placed the way they sit on the host.

:func:`mirror_request` turns the host description into needs of the
passed-through devices of a request, for the solver to meet:

- a device on host NUMA node *N* needs guest NUMA node *N*, strictly (it goes
  under an expander bus of that node; the guest's NUMA cells come from the
  domain, and a host node the guest does not declare is an error);
- devices behind one host PCIe switch form a switch group: they sit under one
  guest switch, so peer-to-peer paths that tools read from the guest's
  topology (NCCL) look like the host's, and GPU-NIC pairs keep their pairing;
- functions of one host device passed together form a slot group: one guest
  slot, multifunction, each at its host function number. A guest slot needs
  function 0: when the host's function 0 is not passed (functions 1 and 2 of
  a four-port NIC whose ports have IOMMU groups of their own), the lowest
  passed function takes function 0 and the others keep theirs;
- SR-IOV virtual functions are devices of their own, whatever host slot and
  function their routing IDs land on (a VF at ``3b:02.3``): each gets a guest
  slot of its own, at function 0, so it can be hot-unplugged alone, as libvirt
  and Nova place VFs;
- each passed-through device carries its host function's BARs
  (:func:`with_host_bars`), so they count in the firmware's 32-bit hole and
  64-bit window, and the plan asks for a larger window where the firmware
  has a knob for it.

The IOMMU-group rules (:func:`pcitopo.legality.rules.validate_passthrough`)
are checked first. ``pcitopo assign IN.xml --host host.json --policy mirror``
solves the mirrored request with the ``hotplug+numa`` policy.

>>> from pcitopo.address import PciAddress
>>> from pcitopo.devices import Device
>>> from pcitopo.host import Host, HostDevice
>>> A = PciAddress.parse
>>> host = Host([
...     HostDevice(A("0000:01:00.0"), vendor=0x10de, device=0x2206, class_code=0x030000, iommu_group=1, numa_node=0),
...     HostDevice(A("0000:01:00.1"), vendor=0x10de, device=0x1aef, class_code=0x040300, iommu_group=1, numa_node=0),
... ])
>>> t = Topology.build("q35", devices=[Device("aud", "vfio-pci"), Device("gpu", "vfio-pci")], numa_nodes=1)
>>> m = mirror_request(t, host, {"gpu": A("0000:01:00.0"), "aud": A("0000:01:00.1")})
>>> [(d.id, d.needs.slot_group, d.needs.numa_node) for d in m.devices]
[('gpu', 'host-slot-0000:01:00.0', 0), ('aud', 'host-slot-0000:01:00.0', 0)]
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs

from pcitopo.address import PciAddress
from pcitopo.devices import Device
from pcitopo.errors import InvalidInput, InvalidTopology
from pcitopo.host import Host
from pcitopo.legality.rules import validate_passthrough
from pcitopo.topology import Topology

__all__ = ["MIRROR_POLICY", "mirror_request", "with_host_bars"]


def __dir__() -> list[str]:
    return __all__


MIRROR_POLICY = "hotplug+numa"
"""The built-in policy a mirrored request is solved with."""


def with_host_bars(topology: Topology, host: Host, sources: Mapping[str, PciAddress]) -> Topology:
    """``topology`` with each passed-through device carrying its host function's BARs (``Device.bars``).

    A source the host does not list is left alone (``validate_passthrough`` names it).
    """
    devices = []
    for d in topology.devices:
        a = sources.get(d.id)
        if a is not None and a in host:
            d = attrs.evolve(d, bars=host.device(a).bars)
        devices.append(d)
    return topology.replace(devices=devices)


def mirror_request(topology: Topology, host: Host, sources: Mapping[str, PciAddress]) -> Topology:
    """``topology`` with the passed-through devices' needs set from the host (see the module docstring).

    Raises :class:`~pcitopo.errors.InvalidTopology` when the IOMMU-group rules
    fail, and :class:`~pcitopo.errors.InvalidInput` when a device sits on a
    host NUMA node the guest does not declare.
    """
    violations = validate_passthrough(topology, host, sources)
    if violations:
        raise InvalidTopology(violations)
    passed = {ident: a for ident, a in sources.items() if any(d.id == ident for d in topology.devices)}
    by_slot: dict[PciAddress, list[PciAddress]] = {}
    for a in passed.values():
        if not host.device(a).is_virtfn:
            by_slot.setdefault(a.slot_address, []).append(a)
    problems: list[str] = []
    changed: dict[str, Device] = {}
    for d in topology.devices:
        if d.id not in passed:
            continue
        hd = host.device(passed[d.id])
        changes: dict[str, Any] = {}
        if hd.numa_node is not None and topology.numa_nodes:
            if hd.numa_node >= topology.numa_nodes:
                problems.append(
                    f"{d} passes {hd.address} on host NUMA node {hd.numa_node}, but the guest declares "
                    f"{topology.numa_nodes} NUMA cell{'s' if topology.numa_nodes != 1 else ''}"
                )
            else:
                changes.update(numa_node=hd.numa_node, numa_strict=True)
        switch = host.switch_of(hd.address)
        if switch is not None:
            changes["switch_group"] = f"host-switch-{switch.address}"
        together = by_slot.get(hd.address.slot_address, [])
        if len(together) > 1:
            changes["slot_group"] = f"host-slot-{hd.address.slot_address}"
            lowest = min(a.function for a in together)
            changes["function"] = 0 if hd.address.function == lowest else hd.address.function
        changed[d.id] = attrs.evolve(d, needs=attrs.evolve(d.needs, **changes))
    if problems:
        raise InvalidInput("mirror", "; ".join(problems))
    # the members of a slot group are listed in the host's function order, as they sit in the guest slot
    devices = [changed.get(d.id, d) for d in topology.devices]
    slots = [i for i, d in enumerate(devices) if d.needs.slot_group is not None and d.id in passed]
    ordered = sorted((devices[i] for i in slots), key=lambda d: (str(d.needs.slot_group), passed[d.id]))
    groups_in_place = sorted(slots)
    for i, d in zip(groups_in_place, ordered, strict=True):
        devices[i] = d
    return with_host_bars(topology.replace(devices=devices), host, passed)
