"""Requests that several test files plan: found by fuzzing, kept as data so a failure names them."""

from __future__ import annotations

import attrs

from pcitopo.devices import Device, HotplugNeed, Needs
from pcitopo.policy.policy import Override, Policy
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
    return Topology.build("q35", devices=_numa_devices(_NUMA_IO, "d"), numa_nodes=4, firmware="ovmf")


def _numa_devices(specs: str, prefix: str) -> list[Device]:
    """The devices of ``specs`` (``kind:node:hotplug`` each, ``-`` for none and ``p`` for preferred), ids
    ``prefix`` and their place."""
    devices = []
    for i, spec in enumerate(specs.split()):
        kind, node, hot = spec.split(":")
        needs = Needs(
            hotplug=HotplugNeed.PREFERRED if hot == "p" else HotplugNeed.ANY,
            numa_node=None if node == "-" else int(node),
        )
        devices.append(Device(f"{prefix}{i}", kind, needs=needs))
    return devices


# 74 devices, IO-BAR NICs among others, most preferring one of three NUMA nodes (kind:node:hotplug as in _NUMA_IO):
# a request of a seeded generator of q35 requests under OVMF (seed 12, 2026-12-03, branch numaladder), with its
# virtio-balloons but the first made virtio-serial (the same IO BAR; QEMU starts one balloon, rule one-per-guest)
_NUMA_MIXED = """
virtio-rng:0:- virtio-balloon:2:- rtl8139:-:- rtl8139:0:p virtio-rng:0:p rtl8139:1:- virtio-net-transitional:-:-
nvme:-:- virtio-blk:1:- qemu-xhci:2:- e1000e:1:- e1000e:0:- nvme:1:p virtio-net-transitional:0:- rtl8139:2:-
virtio-serial:2:- virtio-rng:1:- virtio-serial:0:- nvme:2:- e1000e:-:- e1000:0:- nvme:1:- e1000e:0:-
virtio-serial:1:- nvme:2:- virtio-net-transitional:0:- virtio-net:2:p e1000e:0:- virtio-net:2:- e1000e:-:-
qemu-xhci:-:- pcnet:1:- rtl8139:-:- qemu-xhci:1:- virtio-scsi:2:- virtio-blk:2:- virtio-scsi:1:- nvme:2:-
qemu-xhci:0:- virtio-serial:2:- virtio-rng:0:p e1000e:-:- rtl8139:2:- qemu-xhci:2:- virtio-net:-:- qemu-xhci:1:-
e1000e:2:p virtio-rng:0:p rtl8139:0:- qemu-xhci:-:- virtio-rng:1:- qemu-xhci:2:- virtio-net-transitional:1:-
rtl8139:-:p e1000:-:- virtio-rng:-:- e1000e:-:- virtio-net:0:p rtl8139:1:- e1000e:0:- virtio-net-transitional:1:p
rtl8139:-:- virtio-serial:1:- virtio-net:1:p pcnet:2:- virtio-rng:-:- e1000:1:p e1000:-:p virtio-net:2:-
virtio-scsi:1:- virtio-rng:-:- virtio-rng:-:- virtio-rng:0:- e1000e:0:p
"""


def numa_mixed_request() -> Topology:
    """q35 under OVMF (9 IO windows) with three NUMA nodes and the 74 devices of :data:`_NUMA_MIXED`, 55 of which
    prefer a node (preferences only), 21 of those with an IO BAR: the search gives up in both of its orders."""
    return Topology.build("q35", devices=_numa_devices(_NUMA_MIXED, "g"), numa_nodes=3, firmware="ovmf")


# 55 devices on pc (kind:hotplug, "-" any, "p" preferred, "r" required), ids r0..r54: a request of
# benchmarks/same_plans.py's random draw (``draw_requests(450)``, "larger219", 2026-12-03), with its virtio-balloons
# but the first made virtio-serial of the same variant (the same IO BAR; QEMU starts one balloon, rule one-per-guest)
_PC_UNPLUGGABLE = """
virtio-rng-transitional:- bochs:- vfio-pci:r ich9:r es1370:r cirrus:p virtio-blk-non-transitional:r bochs:-
virtio-serial-transitional:r virtio-scsi:r cirrus:- vfio-pci:p rtl8139:- virtio-rng-non-transitional:r
virtio-balloon:- vga:p nec-xhci:- ahci:p virtio-serial-non-transitional:- ich9:- ivshmem-plain:- bochs:r
pcnet:p ich9-ehci1:- lsilogic:r nvme:- virtio-vga:p virtio-net:- es1370:- virtio-9p-transitional:p
virtio-rng-transitional:p virtio-serial-transitional:- vga:- ich9:r virtio-serial-transitional:p
pvpanic-pci:- lsilogic:- vfio-pci-conventional:p virtio-serial-non-transitional:p ich9:p
virtio-serial-transitional:p virtio-scsi-non-transitional:r virtio-keyboard:p vfio-pci:- pci-ohci:-
vhost-scsi-transitional:p virtio-9p-non-transitional:- virtio-9p-transitional:p vmxnet3:p
virtio-serial-transitional:- virtio-serial:- vhost-vsock:r lsisas1068:p vhost-scsi:p
virtio-scsi-non-transitional:-
"""

_HOTPLUG_NEED = {"-": HotplugNeed.ANY, "p": HotplugNeed.PREFERRED, "r": HotplugNeed.REQUIRED}


def pc_unpluggable_request() -> tuple[Topology, Policy]:
    """pc with the 55 devices of :data:`_PC_UNPLUGGABLE`, and the drawn policy: ``minimal+numa`` with a spare port
    and the drawn ``[[device]]`` overrides, among them 'r51' (vhost-vsock) that must not be hot-pluggable. Every
    slot of pci.0 is, so 'r51' goes on a new pci-expander-bus; with pci.0 offered to it too, the search tried
    every count of the other classes there first and gave up after 5,000 partial assignments, while a plan exists
    (pci.0 with one pci-bridge, 'r51' alone on the expander bus)."""
    devices = []
    for i, spec in enumerate(_PC_UNPLUGGABLE.split()):
        kind, hot = spec.split(":")
        devices.append(Device(f"r{i}", kind, needs=Needs(hotplug=_HOTPLUG_NEED[hot])))
    overrides = (
        Override("r9", hotplug=HotplugNeed.PREFERRED, integrated=False),
        Override("r18", integrated=False),
        Override("r52", integrated=False),
        Override("r51", hotplug=HotplugNeed.FORBIDDEN, integrated=False),
        Override("r16", integrated=False),
        Override("r4"),
        Override("r22", integrated=True),
        Override("r0", hotplug=HotplugNeed.PREFERRED, integrated=False),
        Override("r45", hotplug=HotplugNeed.PREFERRED),
        Override("r40", hotplug=HotplugNeed.ANY, integrated=False),
        Override("r44", integrated=False),
    )
    policy = attrs.evolve(Policy.named("minimal+numa"), spare_ports=1, overrides=overrides)
    return Topology.build("pc", devices=devices), policy


# 117 devices on q35 under OVMF (kind:hotplug, "-" any, "p" preferred), ids d0..d116: a request of the coordinator's
# OVMF boot fuzz (2026-12-03, req81_8), drawn with policy minimal+numa (no NUMA nodes)
_OVMF_IO_PORTS = """
virtio-net:- e1000e:- rtl8139:p pcnet:p rtl8139:p e1000:p virtio-scsi:p virtio-rng:p e1000e:p e1000e:- qemu-xhci:-
virtio-net:- virtio-rng:p virtio-rng:p virtio-rng:p rtl8139:p qemu-xhci:p qemu-xhci:- e1000:p pcnet:p rtl8139:p
virtio-net:p e1000e:p e1000e:- pcnet:p virtio-scsi:p virtio-net:p virtio-rng:p virtio-rng:p rtl8139:-
virtio-net-transitional:p rtl8139:p e1000e:- virtio-scsi:p rtl8139:- virtio-net:- qemu-xhci:p e1000e:- virtio-net:p
virtio-rng:p e1000:- virtio-rng:p virtio-net:- e1000e:p e1000:p virtio-rng:p qemu-xhci:p e1000e:- virtio-scsi:p
virtio-net-transitional:p pcnet:- e1000:p virtio-rng:- virtio-scsi:p virtio-net:p qemu-xhci:p rtl8139:- e1000:p
e1000e:p qemu-xhci:p virtio-scsi:p qemu-xhci:p qemu-xhci:p e1000:p virtio-scsi:- qemu-xhci:p e1000:p pcnet:p
e1000:p virtio-net:- e1000:p e1000e:p qemu-xhci:- virtio-net:p e1000:p virtio-scsi:p qemu-xhci:p virtio-scsi:-
rtl8139:- e1000e:p pcnet:p qemu-xhci:p virtio-rng:p virtio-scsi:p qemu-xhci:- rtl8139:- e1000e:p pcnet:p
qemu-xhci:p virtio-scsi:- virtio-scsi:- qemu-xhci:p virtio-rng:p virtio-scsi:p virtio-rng:p virtio-rng:p
virtio-scsi:p e1000e:p e1000:- e1000e:p rtl8139:- virtio-net-transitional:- pcnet:- virtio-rng:p qemu-xhci:p
virtio-net-transitional:p pcnet:p e1000e:- virtio-net:p pcnet:p qemu-xhci:p virtio-net-transitional:p virtio-net:p
pcnet:p virtio-net:p e1000e:- pcnet:-
"""


def ovmf_io_ports_request() -> Topology:
    """q35 under OVMF (9 IO windows) with the 117 devices of :data:`_OVMF_IO_PORTS`, 17 of them e1000e (a 32-byte IO
    BAR), 9 of those preferring hotplug. ``minimal`` integrates the units with no hotplug need on pcie.0 before
    those preferring it, so the 9 e1000e preferring hotplug stay on root ports, a window each, and with the bridge
    tree of the 40 conventional devices the 9 windows never suffice: the model refused the request, while
    ``hotplug``'s plan (10 e1000e on pcie.0, io-reserve=0 on the other ports) breaks none of minimal's rules."""
    devices = []
    for i, spec in enumerate(_OVMF_IO_PORTS.split()):
        kind, hot = spec.split(":")
        devices.append(Device(f"d{i}", kind, needs=Needs(hotplug=_HOTPLUG_NEED[hot])))
    return Topology.build("q35", devices=devices, firmware="ovmf")
