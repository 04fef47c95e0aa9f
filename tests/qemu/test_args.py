"""Tests for pcitopo.qemu.args: topologies as QEMU command lines."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from pcitopo.address import PciAddress
from pcitopo.devices import Controller, Device
from pcitopo.errors import InvalidInput, InvalidTopology, PcitopoError
from pcitopo.qemu import args as qemu_args_module
from pcitopo.qemu.args import DeviceSpec, Value, device_specs, machine_args, qemu_args
from pcitopo.topology import Topology
from tests.support.qemu import TOPOLOGIES

DATA = Path(__file__).parent / "data"
A = PciAddress.parse


def _golden(name: str) -> list[str]:
    return (DATA / f"{name}.args").read_text().splitlines()


@pytest.mark.parametrize("machine", sorted(TOPOLOGIES))
def test_golden_keyval(machine: str) -> None:
    """The machine and device arguments of each hand-built topology match its golden file."""
    topology = TOPOLOGIES[machine]()
    assert machine_args(topology) + qemu_args(topology) == _golden(machine)


def test_golden_json() -> None:
    """The JSON syntax gives one -device {...} per device, matching the golden file."""
    assert qemu_args(TOPOLOGIES["q35"](), syntax="json") == _golden("q35-json")


def test_json_is_used_for_every_device() -> None:
    """With syntax='json' no -device argument is in keyval form, and values keep their types."""
    args = qemu_args(TOPOLOGIES["q35"](), syntax="json")
    values = [json.loads(a) for a in args[1::2]]
    assert args[0::2] == ["-device"] * len(values)
    first = values[0]
    assert first == {
        "driver": "pcie-root-port",
        "id": "pci.1",
        "bus": "pcie.0",
        "addr": "0x2",
        "multifunction": True,
        "chassis": 1,
        "port": 16,
    }


def test_every_device_has_bus_and_addr() -> None:
    """Every -device of every topology names its bus and its address, except a pseries host bridge."""
    for make in TOPOLOGIES.values():
        for spec in device_specs(make()):
            if spec.driver == "spapr-pci-host-bridge":
                assert spec.get("bus") is None
                assert spec.get("index") is not None
            else:
                assert spec.get("bus") is not None, spec
                assert spec.get("addr") is not None, spec


def test_parents_come_before_children() -> None:
    """A controller whose index is lower than its parent's is still emitted after the parent."""
    t = Topology.build(
        "q35",
        [
            Controller(1, "pcie-to-pci-bridge", address=A("02:00.0")),
            Controller(2, "pcie-root-port", address=A("00:05.0"), chassis=2, port=0x28),
        ],
        [Device("net0", "e1000", address=A("01:01.0"))],
    )
    assert [s.id for s in device_specs(t)] == ["pci.2", "pci.1", "net0"]


def test_endpoints_are_sorted_by_bus_order_then_address() -> None:
    """Endpoints follow the controller order, then slot and function, whatever the definition order."""
    t = Topology.build(
        "pc",
        [Controller(1, "pci-bridge", address=A("00:03.0"), chassis_nr=1)],
        [
            Device("b", "e1000", address=A("01:02.0")),
            Device("a", "e1000", address=A("00:05.1")),
            Device("c", "e1000", address=A("00:05.0"), multifunction=True),
        ],
    )
    assert [s.id for s in device_specs(t)] == ["pci.1", "c", "a", "b"]


@pytest.mark.parametrize(
    ("controllers", "expected"),
    [
        # libvirt's defaults: chassis = index, root-port port = its devfn, downstream port = its slot
        (
            [Controller(1, "pcie-root-port", address=A("00:02.3"))],
            ["pcie-root-port,id=pci.1,bus=pcie.0,addr=0x2.0x3,chassis=1,port=0x13"],
        ),
        (
            [
                Controller(1, "pcie-root-port", address=A("00:02.0"), chassis=9, port=1),
                Controller(2, "pcie-switch-upstream-port", address=A("01:00.0")),
                Controller(3, "pcie-switch-downstream-port", address=A("02:04.0")),
            ],
            [
                "pcie-root-port,id=pci.1,bus=pcie.0,addr=0x2,chassis=9,port=0x1",
                "x3130-upstream,id=pci.2,bus=pci.1,addr=0x0",
                "xio3130-downstream,id=pci.3,bus=pci.2,addr=0x4,chassis=3,port=0x4",
            ],
        ),
        # bus_nr = 254, 252, ... below the lowest one set, in controller order
        (
            [
                Controller(1, "pcie-expander-bus", address=A("00:05.0")),
                Controller(2, "pcie-expander-bus", address=A("00:06.0")),
            ],
            [
                "pxb-pcie,id=pci.1,bus=pcie.0,addr=0x5,bus_nr=254",
                "pxb-pcie,id=pci.2,bus=pcie.0,addr=0x6,bus_nr=252",
            ],
        ),
        (
            [
                Controller(1, "pcie-expander-bus", address=A("00:05.0"), bus_nr=100),
                Controller(2, "pcie-expander-bus", address=A("00:06.0")),
            ],
            [
                "pxb-pcie,id=pci.1,bus=pcie.0,addr=0x5,bus_nr=100",
                "pxb-pcie,id=pci.2,bus=pcie.0,addr=0x6,bus_nr=98",
            ],
        ),
        (
            [
                Controller(1, "dmi-to-pci-bridge", address=A("00:1e.0")),
                Controller(2, "pci-bridge", address=A("01:01.0")),
            ],
            [
                "i82801b11-bridge,id=pci.1,bus=pcie.0,addr=0x1e",
                "pci-bridge,id=pci.2,bus=pci.1,addr=0x1,chassis_nr=2",
            ],
        ),
        (
            [Controller(1, "pcie-root-port", address=A("00:02.0"), qemu_model="ioh3420", hotplug=False, id="rp")],
            ["ioh3420,id=rp,bus=pcie.0,addr=0x2,chassis=1,port=0x10,hotplug=off"],
        ),
    ],
)
def test_controller_identity(controllers: list[Controller], expected: list[str]) -> None:
    """Controllers carry their identity, with libvirt's defaults where the topology leaves it unset."""
    args = qemu_args(Topology.build("q35", controllers))
    assert args[1::2] == expected


def test_pseries_host_bridge_index_default() -> None:
    """An extra pseries host bridge without target_index gets the lowest free index, and its bus is '<id>.0'."""
    t = Topology.build(
        "pseries",
        [Controller(1, "spapr-pci-host-bridge", target_index=1), Controller(2, "spapr-pci-host-bridge")],
        [Device("net0", "e1000", address=A("02:01.0"))],
    )
    assert qemu_args(t)[1::2] == [
        "spapr-pci-host-bridge,id=pci.1,index=1",
        "spapr-pci-host-bridge,id=pci.2,index=2",
        "e1000,id=net0,bus=pci.2.0,addr=0x1",
    ]


def test_builtin_stand_in_is_left_out() -> None:
    """A device that stands for a built-in (libvirt's SATA controller at q35's 00:1f.2) is the machine's own."""
    t = Topology.build("q35", devices=[Device("sata0", "ahci", address=A("00:1f.2"))])
    assert qemu_args(t) == []


def test_pc_root_hotplug_off_is_a_global() -> None:
    """hotplug off on the pc root bus becomes PIIX4_PM's acpi-root-pci-hotplug property."""
    t = Topology.build("pc", [Controller(0, "pci-root", hotplug=False)])
    assert qemu_args(t) == ["-global", "PIIX4_PM.acpi-root-pci-hotplug=off"]


def test_pseries_root_hotplug_off_is_refused() -> None:
    """pseries has no way to turn root-bus hotplug off, so the export says so."""
    t = Topology.build("pseries", [Controller(0, "pci-root", hotplug=False)])
    with pytest.raises(InvalidInput) as info:
        qemu_args(t)
    assert str(info.value) == "controller 'pci.0': QEMU cannot turn hotplug off on the root bus of pseries"


def test_extra_properties_are_appended_in_order() -> None:
    """Caller properties follow pcitopo's, in the mapping's order, with commas doubled in keyval."""
    t = Topology.build("pc", devices=[Device("net0", "e1000", address=A("00:05.0"))])
    extra: dict[str, dict[str, Value]] = {
        "net0": {"netdev": "hostnet0", "mac": "52:54:00:00:00:01", "romfile": "a,b", "rombar": 0}
    }
    assert qemu_args(t, extra=extra) == [
        "-device",
        "e1000,id=net0,bus=pci.0,addr=0x5,netdev=hostnet0,mac=52:54:00:00:00:01,romfile=a,,b,rombar=0",
    ]
    assert json.loads(qemu_args(t, extra=extra, syntax="json")[1])["rombar"] == 0


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"net0": {"bus": "pci.1"}}, "device 'net0': extra properties may not set bus: pcitopo sets them"),
        (
            {"pci.1": {"chassis": 3, "addr": "0x9"}},
            "controller 'pci.1': extra properties may not set addr, chassis: pcitopo sets them",
        ),
        ({"nosuch": {"x": "y"}}, "extra: no device or controller with id 'nosuch'"),
    ],
)
def test_extra_may_not_override_placement(extra: dict[str, dict[str, str | int]], message: str) -> None:
    """Extra properties cannot move a device or change an identity pcitopo set."""
    t = Topology.build(
        "q35",
        [Controller(1, "pcie-root-port", address=A("00:02.0"), chassis=1)],
        [Device("net0", "e1000e", address=A("01:00.0"))],
    )
    with pytest.raises(InvalidInput) as info:
        qemu_args(t, extra=extra)
    assert str(info.value) == message


def test_unaddressed_devices_are_named() -> None:
    """Exporting a topology that still has requests names every unplaced controller and device."""
    t = Topology.build(
        "q35",
        [Controller(1, "pcie-root-port")],
        [Device("net0", "virtio-net"), Device("disk0", "virtio-blk"), Device("ok", "e1000e", address=A("00:03.0"))],
    )
    with pytest.raises(PcitopoError) as info:
        qemu_args(t)
    assert str(info.value) == (
        "topology: no address for 'pci.1', 'net0', 'disk0'; solve the topology before exporting it"
    )


def test_dangling_bus_is_an_error() -> None:
    """A device on a bus no controller provides is reported, not a KeyError."""
    t = Topology.build("q35", devices=[Device("net0", "e1000e", address=A("07:00.0"))])
    with pytest.raises(InvalidInput) as info:
        qemu_args(t)
    assert str(info.value) == "topology: device 'net0' is at 0000:07:00.0, on bus 7 that no controller provides"


def test_bad_syntax() -> None:
    """An unknown syntax is refused with the choices."""
    with pytest.raises(InvalidInput) as info:
        qemu_args(Topology.default("q35"), syntax="yaml")  # type: ignore[arg-type]
    assert str(info.value) == "syntax: must be 'keyval' or 'json' (got 'yaml')"


MachineArgs = Callable[[], Topology]


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (lambda: Topology.default("q35"), ["-machine", "q35", "-m", "128", "-smp", "1"]),
        (lambda: Topology.default("q35", acpi=False), ["-machine", "q35,acpi=off", "-m", "128", "-smp", "1"]),
        (lambda: Topology.default("pc"), ["-machine", "pc", "-m", "128", "-smp", "1"]),
        (
            lambda: Topology.default("aarch64-virt"),
            ["-machine", "virt", "-cpu", "cortex-a57", "-m", "128", "-smp", "1"],
        ),
        (
            lambda: Topology.default("aarch64-virt-highmem-off"),
            ["-machine", "virt,highmem=off", "-cpu", "cortex-a57", "-m", "128", "-smp", "1"],
        ),
        (lambda: Topology.default("pseries", acpi=False), ["-machine", "pseries", "-m", "256", "-smp", "1"]),
        (lambda: Topology.default("riscv64-virt"), ["-machine", "virt", "-m", "128", "-smp", "1"]),
    ],
)
def test_machine_args(make: MachineArgs, expected: list[str]) -> None:
    """Each machine starts with its plain machine type, the CPU it needs and 128 MiB (pseries: 256)."""
    assert machine_args(make()) == expected


def test_machine_args_numa_memory_per_node() -> None:
    """pseries NUMA nodes get 256 MiB each (QEMU wants them 256 MiB aligned), others 64 MiB."""
    args = machine_args(Topology.default("pseries", numa_nodes=3))
    assert args[:6] == ["-machine", "pseries", "-m", "768", "-smp", "3"]
    assert "memory-backend-ram,id=pcitopo-ram2,size=256M" in args
    assert machine_args(Topology.default("q35", numa_nodes=2), memory=300)[3] == "300"


def test_machine_type_override() -> None:
    """An explicit machine type replaces the default, and ACPI off still applies."""
    t = Topology.default("q35", acpi=False)
    assert machine_args(t, machine_type="pc-q35-6.1")[:2] == ["-machine", "pc-q35-6.1,acpi=off"]


def test_spec_keyval_quoting() -> None:
    """Booleans become on/off, port values hex, and commas are doubled."""
    spec = DeviceSpec("x", "i", None, None, (("port", 17), ("chassis", 17), ("on", True), ("s", "a,b")))
    assert spec.keyval() == "x,port=0x11,chassis=17,on=on,s=a,,b"


def test_public_names() -> None:
    """The module's __all__ lists exactly its public names."""
    public = {n for n in vars(qemu_args_module) if not n.startswith("_")} - {"annotations"}
    imported = {"Iterable", "Mapping", "Literal", "attrs", "heapq", "json", "PciAddress", "Controller", "Device"}
    imported |= {"InternalError", "InvalidInput", "identity", "Hotplug", "Topology"}
    assert set(qemu_args_module.__all__) == public - imported


@pytest.mark.parametrize("seed", range(20))
def test_controller_order_matches_networkx(seed: int) -> None:
    """The local topological sort gives networkx's lexicographical topological order on random controller trees."""
    import random
    from types import SimpleNamespace
    from typing import cast

    import networkx as nx

    rng = random.Random(seed)
    indexes = rng.sample(range(1, 200), rng.randint(1, 40))
    controllers = [Controller(0, "pcie-root")]
    placed = [0]
    for i in indexes:
        parent = rng.choice(placed)
        controllers.append(Controller(i, "pci-bridge", address=PciAddress(bus=parent, slot=rng.randint(1, 31))))
        placed.append(i)
    rng.shuffle(controllers)
    by_index = {c.index: c for c in controllers}
    fake = cast(Topology, SimpleNamespace(controllers=tuple(controllers), controller=by_index.__getitem__))
    g: nx.DiGraph[int] = nx.DiGraph()
    for c in controllers:
        g.add_node(c.index)
        if c.address is not None and c.index != 0:
            g.add_edge(c.address.bus, c.index)
    expected = list(nx.lexicographical_topological_sort(g, key=lambda i: i))
    assert [c.index for c in qemu_args_module._controller_order(fake)] == expected


def test_no_bus_nr_left_is_a_violation_not_bad_input() -> None:
    """An expander libvirt has no busNr for (the lowest is 2) is reported as the expander-bus-nr violation."""
    t = Topology.build(
        "q35",
        [
            Controller(1, "pcie-expander-bus", address=A("00:05.0"), bus_nr=2),
            Controller(2, "pcie-expander-bus", address=A("00:06.0")),
        ],
    )
    with pytest.raises(InvalidTopology) as info:
        qemu_args(t)
    assert [(v.rule, v.devices) for v in info.value.violations] == [("expander-bus-nr", ("pci.2",))]


def test_a_displays_memory_becomes_its_qemu_property_as_libvirt_passes_vram() -> None:
    """bochs-display takes vgamem in bytes, VGA vgamem_mb in MiB (rounded up to a power of two, as the BAR is)."""
    t = Topology.build(
        "q35",
        devices=[
            Device("b", "bochs", address=PciAddress.parse("00:03.0"), memory=64 << 20),
            Device("v", "vga", address=PciAddress.parse("00:04.0"), memory=3 << 20),
            Device("s", "ivshmem-plain", address=PciAddress.parse("00:05.0"), memory=1 << 30),
        ],
    )
    assert qemu_args(t) == [
        "-device",
        "bochs-display,id=b,bus=pcie.0,addr=0x3,vgamem=67108864",
        "-device",
        "VGA,id=v,bus=pcie.0,addr=0x4,vgamem_mb=4",
        "-device",
        "ivshmem-plain,id=s,bus=pcie.0,addr=0x5",
    ]


def test_a_64_bit_window_becomes_the_ovmf_knob_or_the_host_bridges_hole() -> None:
    """OVMF gets -fw_cfg opt/ovmf/X-PciMmio64Mb in MiB; SeaBIOS's q35 host bridge the pci-hole64-size it was given."""
    assert qemu_args(Topology.build("q35", firmware="ovmf", mmio64=256 << 30)) == [
        "-fw_cfg",
        "name=opt/ovmf/X-PciMmio64Mb,string=262144",
    ]
    assert qemu_args(Topology.build("q35", mmio64=64 << 30)) == ["-global", "q35-pcihost.pci-hole64-size=68719476736"]
    assert qemu_args(Topology.build("q35")) == []


def test_io_reserve_is_a_root_port_property() -> None:
    """A root port's io-reserve=0 is passed to QEMU as the device property."""
    port = Controller(1, "pcie-root-port", address=A("00:02.0"), chassis=1, port=16).with_io_reserve(0)
    assert qemu_args(Topology.build("q35", [port])) == [
        "-device",
        "pcie-root-port,id=ua-pci-1,bus=pcie.0,addr=0x2,chassis=1,port=0x10,io-reserve=0",
    ]


def test_io_reserve_on_a_device_without_the_property_is_refused() -> None:
    """QEMU's ioh3420 has no io-reserve: the export names the controller instead of writing a line QEMU refuses."""
    port = Controller(1, "pcie-root-port", address=A("00:02.0"), qemu_model="ioh3420", io_reserve=0)
    with pytest.raises(InvalidInput) as info:
        qemu_args(Topology.build("q35", [port]))
    assert str(info.value) == "controller 'pci.1': QEMU's ioh3420 has no io-reserve property"
