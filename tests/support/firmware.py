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
