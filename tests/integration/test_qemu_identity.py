"""QEMU 7.2 takes the ends of every identity range of :mod:`pcitopo.legality.identity`.

libvirt's ranges (pinned in ``test_libvirt_identity.py``) are the binding ones;
QEMU accepts each end too, refuses the pseries host bridge index one past
them, and accepts a pxb-pcie ``bus_nr`` of 255, which libvirt refuses.
"""

from __future__ import annotations

import pytest

from pcitopo.address import PciAddress
from pcitopo.devices import Controller
from pcitopo.legality import identity
from pcitopo.legality.rules import validate
from pcitopo.qemu import QemuError, verify
from pcitopo.topology import Topology

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("qemu")]

A = PciAddress.parse


def test_qemu_takes_both_ends_of_the_x86_ranges() -> None:
    """Root ports with chassis/port 0 and 255, a pxb-pcie at each end of busNr, a pci-bridge with chassisNr 255."""
    c, p, b = identity.CHASSIS, identity.PORT, identity.BUS_NR
    q35 = Topology.build(
        "q35",
        [
            Controller(1, "pcie-root-port", address=A("00:02.0"), chassis=c[0], port=p[0]),
            Controller(2, "pcie-root-port", address=A("00:03.0"), chassis=c[-1], port=p[-1]),
            Controller(3, "pcie-expander-bus", address=A("00:05.0"), bus_nr=b[-1]),
        ],
    )
    low = Topology.build("q35", [Controller(1, "pcie-expander-bus", address=A("00:05.0"), bus_nr=b[0])])
    pc = Topology.build(
        "pc",
        [
            Controller(1, "pci-bridge", address=A("00:05.0"), chassis_nr=identity.CHASSIS_NR[-1]),
            Controller(2, "pci-bridge", address=A("00:06.0"), chassis_nr=identity.CHASSIS_NR[0]),
        ],
    )
    for topology in (q35, low, pc):
        assert validate(topology) == ()
        assert verify(topology, firmware=False, hotplug=False).ok


def test_qemu_bounds_the_host_bridge_index_as_libvirt_does() -> None:
    """pseries takes host bridge index 30 and refuses 31, with QEMU's message."""
    last = identity.TARGET_INDEX[-1]
    ok = Topology.build("pseries", [Controller(1, "spapr-pci-host-bridge", target_index=last)])
    assert verify(ok, firmware=False, hotplug=False).ok
    beyond = Topology.build("pseries", [Controller(1, "spapr-pci-host-bridge", target_index=last + 1)])
    assert [v.rule for v in validate(beyond)] == ["phb-index"]
    with pytest.raises(QemuError) as info:
        verify(beyond, firmware=False, hotplug=False)
    assert info.value.qemu_message == '"index" for PAPR PHB is too large (max 30)'


def test_qemu_takes_bus_nr_255_which_libvirt_refuses() -> None:
    """QEMU starts a pxb-pcie with bus_nr 255; libvirt's 1..254 is the binding range, so pcitopo refuses it."""
    t = Topology.build("q35", [Controller(1, "pcie-expander-bus", address=A("00:05.0"), bus_nr=255)])
    assert 255 not in identity.BUS_NR
    assert verify(t, firmware=False, hotplug=False).ok
    assert [v.rule for v in validate(t)] == ["expander-bus-nr"]
