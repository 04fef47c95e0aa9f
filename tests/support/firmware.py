"""Topologies for the firmware experiments, shared by the rule tests and the QEMU boots that pin them."""

from __future__ import annotations

from pcitopo.address import PciAddress
from pcitopo.devices import Controller, Device
from pcitopo.topology import Topology

A = PciAddress.parse


def port_order(spec: str, firmware: str = "ovmf") -> Topology:
    """Root ports on q35's pcie.0 in order: ``E8 P2`` is 8 ports each holding an e1000e, then 2 empty ports.

    >>> [c.index for c in port_order("E1 P1").controllers], [str(d.address) for d in port_order("E1 P1").devices]
    ([0, 1, 2], ['0000:01:00.0'])
    """
    controllers: list[Controller] = []
    devices: list[Device] = []
    for part in spec.split():
        for _ in range(int(part[1:])):
            i = len(controllers) + 1
            controllers.append(Controller(i, "pcie-root-port", address=A(f"00:{1 + i:02x}.0"), chassis=i))
            if part[0] == "E":
                devices.append(Device(f"n{i}", "e1000e", address=A(f"{i:02x}:00.0")))
    return Topology.build("q35", controllers, devices, firmware=firmware)


def ovmf_e1000e_ports(n: int, *extra: Device) -> Topology:
    """q35 under OVMF with ``n`` pinned root ports each holding an e1000e (an IO window each), and ``extra`` to place.

    >>> t = ovmf_e1000e_ports(2, Device("r0", "virtio-net"))
    >>> [str(d.address) for d in t.devices], t.firmware
    (['0000:01:00.0', '0000:02:00.0', 'None'], 'ovmf')
    """
    ports = [Controller(1 + i, "pcie-root-port", A(f"00:{2 + i:02x}.0"), chassis=1 + i, port=16 + i) for i in range(n)]
    pinned = [Device(f"e{i}", "e1000e", address=A(f"{1 + i:02x}:00.0")) for i in range(n)]
    return Topology.build("q35", ports, [*pinned, *extra], firmware="ovmf")
