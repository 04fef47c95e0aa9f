"""The libvirt policy against behaviour recorded from the running libvirt 9.0 (virsh define + dumpxml).

Each expected value below was printed by libvirt 9.0.0 (Debian 12, QEMU 7.2) for
the same devices, not copied from the reference text; the live comparison is
``tests/integration/test_libvirt_differential.py``.
"""

from __future__ import annotations

import pytest

from pcitopo.address import PciAddress
from pcitopo.devices import Controller, Device
from pcitopo.errors import InvalidInput, Unsatisfiable
from pcitopo.legality.rules import validate
from pcitopo.solver import solve
from pcitopo.solver._libvirt import libvirt_assign
from pcitopo.topology import Topology


def addr(text: str) -> PciAddress:
    return PciAddress.parse(text)


def controllers(t: Topology) -> list[tuple[int, str, str | None, bool | None]]:
    return [
        (c.index, c.model, None if c.address is None else str(c.address)[5:], c.multifunction) for c in t.controllers
    ]


def places(t: Topology) -> dict[str, str]:
    return {d.id: str(d.address)[5:] for d in t.devices if d.address is not None}


def test_q35_virtio_and_legacy_nic() -> None:
    """A PCIe and a PCI nic on a bare q35: two root ports, a pcie-to-pci-bridge behind the first, one spare port."""
    t = Topology.build("q35", devices=[Device("net0", "virtio-net"), Device("net1", "e1000")])
    done = libvirt_assign(t)
    assert controllers(done) == [
        (0, "pcie-root", None, None),
        (1, "pcie-root-port", "00:01.0", True),
        (2, "pcie-root-port", "00:01.1", None),
        (3, "pcie-to-pci-bridge", "01:00.0", None),
        (4, "pcie-root-port", "00:01.2", None),
    ]
    assert places(done) == {"net0": "02:00.0", "net1": "03:01.0"}
    assert [(c.chassis, c.port) for c in done.controllers if c.model == "pcie-root-port"] == [(1, 8), (2, 9), (4, 10)]
    assert done.controller(3).qemu_model == "pcie-pci-bridge"


def test_q35_default_devices_only() -> None:
    """q35-default-devices-only: xhci on bus 1, balloon on bus 2, one spare root port (00:01.0-.2)."""
    t = Topology.build("q35", devices=[Device("usb", "qemu-xhci"), Device("balloon", "virtio-balloon")])
    done = libvirt_assign(t)
    assert [str(c.address)[5:] for c in done.controllers[1:]] == ["00:01.0", "00:01.1", "00:01.2"]
    assert places(done) == {"usb": "01:00.0", "balloon": "02:00.0"}


def test_q35_virtio_transitional() -> None:
    """virtio-transitional: legacy devices on a pcie-to-pci-bridge from slot 1, nic before disk, a spare port."""
    t = Topology.build(
        "q35", devices=[Device("disk0", "virtio-blk-transitional"), Device("net0", "virtio-net-transitional")]
    )
    done = libvirt_assign(t)
    assert controllers(done)[1:] == [
        (1, "pcie-root-port", "00:01.0", True),
        (2, "pcie-to-pci-bridge", "01:00.0", None),
        (3, "pcie-root-port", "00:01.1", None),
    ]
    assert places(done) == {"net0": "02:01.0", "disk0": "02:02.0"}


def test_q35_usb2_companions_take_slot_1d() -> None:
    """q35-usb2: the ICH9 companions share 00:1d, ehci1 at function 7, uhci1 at 0 with multifunction on."""
    kinds = ["ich9-ehci1", "ich9-uhci1", "ich9-uhci2", "ich9-uhci3"]
    t = Topology.build("q35", devices=[Device(k, k) for k in kinds])
    done = libvirt_assign(t)
    assert places(done) == {
        "ich9-ehci1": "00:1d.7",
        "ich9-uhci1": "00:1d.0",
        "ich9-uhci2": "00:1d.1",
        "ich9-uhci3": "00:1d.2",
    }
    assert [d.multifunction for d in done.devices] == [None, True, None, None]
    assert len(done.controllers) == 1


def test_pc_usb2_companions_share_the_first_free_slot() -> None:
    """On pc the companions take the first free slot (00:02) together."""
    kinds = ["ich9-ehci1", "ich9-uhci1", "ich9-uhci2", "ich9-uhci3"]
    done = libvirt_assign(Topology.build("pc", devices=[Device(k, k) for k in kinds]))
    assert places(done) == {
        "ich9-ehci1": "00:02.7",
        "ich9-uhci1": "00:02.0",
        "ich9-uhci2": "00:02.1",
        "ich9-uhci3": "00:02.2",
    }


@pytest.mark.parametrize(
    ("nics", "bridge"),
    [
        (28, None),
        (29, "00:03.0"),
    ],
)
def test_pc_keeps_a_root_slot_for_a_bridge(nics: int, bridge: str | None) -> None:
    """pc: video at 00:02, 28 nics fit 00:03-1e (a slot is kept for a bridge); the 29th brings one, at 00:03."""
    devices = [Device("vga", "vga")] + [Device(f"net{i}", "virtio-net") for i in range(nics)]
    done = libvirt_assign(Topology.build("pc", devices=devices))
    assert done.device("vga").address == addr("00:02.0")
    if bridge is None:
        assert len(done.controllers) == 1
        assert done.device("net27").address == addr("00:1e.0")
    else:
        assert controllers(done)[1] == (1, "pci-bridge", bridge, None)
        assert done.controller(1).chassis_nr == 1
        assert done.device("net0").address == addr("00:04.0")
        assert done.device("net28").address == addr("01:01.0")


def test_pc_without_room_for_a_bridge_fails_like_libvirt() -> None:
    """pc with 121 nics and one bridge: libvirt's own error, as an Unsatisfiable conflict."""
    t = Topology.build("pc", [Controller(1, "pci-bridge")], [Device(f"net{i}", "virtio-net") for i in range(121)])
    with pytest.raises(Unsatisfiable) as info:
        libvirt_assign(t)
    assert info.value.conflicts == (
        "a PCI slot is needed to connect a PCI controller model='pci-bridge', but none is available, "
        "and it cannot be automatically added",
    )


def test_pseries_grows_host_bridges() -> None:
    """pseries: 31 slots on the default PHB, then a new PHB (index 1, target index 1) from slot 1."""
    done = libvirt_assign(Topology.build("pseries", devices=[Device(f"net{i}", "virtio-net") for i in range(33)]))
    assert [(c.index, c.model, c.address, c.target_index) for c in done.controllers] == [
        (0, "pci-root", None, 0),
        (1, "spapr-pci-host-bridge", None, 1),
    ]
    assert done.device("net30").address == addr("00:1f.0")
    assert done.device("net31").address == addr("01:01.0")
    assert done.device("net32").address == addr("01:02.0")


def test_expander_bus_numbers_count_down_from_254() -> None:
    """pcie-expander-buses without busNr get 254, 252 in index order and sit on pcie.0 before root ports."""
    t = Topology.build(
        "q35",
        [
            Controller(1, "pcie-expander-bus", numa_node=0),
            Controller(2, "pcie-expander-bus"),
            Controller(3, "pcie-root-port"),
        ],
        numa_nodes=2,
    )
    done = libvirt_assign(t)
    assert [(c.index, str(c.address)[5:], c.bus_nr, c.port) for c in done.controllers[1:]] == [
        (1, "00:01.0", 254, None),
        (2, "00:02.0", 252, None),
        (3, "00:03.0", None, 0x18),
    ]


def test_aarch64_virt_gpu_is_not_primary_on_a_chipset_slot() -> None:
    """aarch64 virt: no chipset slots; virtio-gpu goes behind a root port in video order."""
    t = Topology.build(
        "aarch64-virt", devices=[Device("net0", "virtio-net"), Device("gpu", "virtio-gpu"), Device("net1", "e1000")]
    )
    done = libvirt_assign(t)
    assert places(done) == {"net0": "02:00.0", "net1": "03:01.0", "gpu": "04:00.0"}
    assert [str(c.address)[5:] for c in done.controllers[1:]] == ["00:01.0", "00:01.1", "01:00.0", "00:01.2", "00:01.3"]


def test_controller_placed_on_a_later_controllers_bus() -> None:
    """A pcie-to-pci-bridge declared before its root port lands on it (02:00.0), as libvirt does."""
    t = Topology.build(
        "q35", [Controller(1, "pcie-to-pci-bridge"), Controller(2, "pcie-root-port")], [Device("nic", "e1000")]
    )
    done = libvirt_assign(t)
    assert controllers(done)[1:] == [(1, "pcie-to-pci-bridge", "02:00.0", None), (2, "pcie-root-port", "00:01.0", None)]
    assert places(done) == {"nic": "01:01.0"}


def test_switch_cycle_is_broken_by_the_next_legal_choice() -> None:
    """libvirt 9.0 puts the upstream port on its own downstream port (a cycle); we give it a new root port."""
    t = Topology.build(
        "q35",
        [
            Controller(1, "pcie-switch-upstream-port"),
            Controller(2, "pcie-switch-downstream-port"),
            Controller(3, "pcie-switch-downstream-port"),
        ],
    )
    done = libvirt_assign(t)
    assert done.controller_cycles() == []
    assert controllers(done)[1:] == [
        (1, "pcie-switch-upstream-port", "04:00.0", None),
        (2, "pcie-switch-downstream-port", "01:00.0", None),
        (3, "pcie-switch-downstream-port", "01:01.0", None),
        (4, "pcie-root-port", "00:01.0", None),
    ]
    assert [(c.chassis, c.port) for c in done.controllers[2:]] == [(2, 0), (3, 1), (4, 8)]


def test_pinned_addresses_stay_and_input_is_unchanged() -> None:
    """Pinned devices keep their address; the input topology is not changed."""
    t = Topology.build(
        "q35",
        [Controller(1, "pcie-root-port", address=addr("00:05.0"))],
        [Device("net0", "virtio-net", address=addr("01:00.0")), Device("net1", "virtio-net")],
    )
    before = t
    done = libvirt_assign(t)
    assert t == before
    assert t.device("net1").address is None
    assert places(done) == {"net0": "01:00.0", "net1": "02:00.0"}
    assert controllers(done)[2] == (2, "pcie-root-port", "00:01.0", None)


def test_pinned_address_libvirt_refuses_names_the_device() -> None:
    """Two devices pinned to one address: libvirt's double-use message, naming the device."""
    t = Topology.build(
        "pc",
        devices=[Device("a", "virtio-net", address=addr("00:05.0")), Device("b", "e1000", address=addr("00:05.0"))],
    )
    with pytest.raises(InvalidInput) as info:
        libvirt_assign(t)
    assert str(info.value) == "device 'b': Attempted double use of PCI Address 0000:00:05.0"


def test_a_lone_ehci_takes_function_zero_where_libvirt_would_hide_it() -> None:
    """libvirt 9.0 puts a lone ich9-ehci1 at .7 of an empty slot; pcitopo's libvirt policy uses .0 so guests see it."""
    plan = solve(Topology.build("q35", devices=[Device("ehci", "ich9-ehci1")]), "libvirt")
    assert plan.assigned["ehci"].function == 0
    assert validate(plan.topology) == ()


def test_only_one_device_stands_for_a_builtin() -> None:
    """The first unaddressed AHCI is the chipset's SATA at 00:1f.2; a second one gets a slot of its own."""
    plan = solve(Topology.build("q35", devices=[Device("a", "ahci"), Device("b", "ahci")]), "libvirt")
    assert str(plan.assigned["a"]) == "0000:00:1f.2"
    assert plan.assigned["b"] != plan.assigned["a"]
    assert validate(plan.topology) == ()
