"""Requests that several test files plan: found by fuzzing, kept as data so a failure names them."""

from __future__ import annotations

from pcitopo.devices import Device, HotplugNeed, Needs
from pcitopo.topology import Topology

# 41 devices with IO BARs, most preferring one of four NUMA nodes (kind:node:hotplug, "-" none, "p" preferred): the
# IO-BAR devices of a 113-device q35 request of an OVMF boot fuzz (2026-12-03, seed 31, case 4)
_NUMA_IO = """
virtio-net-transitional:-:- e1000e:2:- rtl8139:3:p lsilogic:-:- e1000e:0:p e1000:1:p lsilogic:2:-
virtio-net-transitional:1:p e1000:-:- e1000:-:p rtl8139:3:- e1000:0:p e1000:2:- rtl8139:2:- lsilogic:1:-
lsilogic:1:p e1000e:1:- virtio-net-transitional:-:- rtl8139:0:- e1000:0:- virtio-net-transitional:1:- e1000e:3:-
rtl8139:-:- e1000e:0:- e1000:3:- lsilogic:3:- e1000:3:- lsilogic:0:p e1000e:0:- rtl8139:2:- rtl8139:-:- e1000:0:-
e1000e:-:p e1000:-:p lsilogic:-:- virtio-net-transitional:0:- e1000e:2:p virtio-net-transitional:0:- lsilogic:-:-
virtio-net-transitional:2:- virtio-net-transitional:0:p
"""


def numa_io_request() -> Topology:
    """q35 under OVMF (9 IO windows) with four NUMA nodes and the 41 IO-BAR devices of :data:`_NUMA_IO`, whose
    NUMA nodes are preferences only: the search, splitting each class by node over five contexts (141 variables),
    finds no plan within its node limit, while one exists (the same devices without the preferences plan at once)."""
    devices = []
    for i, spec in enumerate(_NUMA_IO.split()):
        kind, node, hot = spec.split(":")
        needs = Needs(
            hotplug=HotplugNeed.PREFERRED if hot == "p" else HotplugNeed.ANY,
            numa_node=None if node == "-" else int(node),
        )
        devices.append(Device(f"d{i}", kind, needs=needs))
    return Topology.build("q35", devices=devices, numa_nodes=4, firmware="ovmf")
