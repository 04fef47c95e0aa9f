"""The topology graph: shape, paths, NUMA, hotplug, bus numbers, free positions, immutability, bad input."""

from __future__ import annotations

import copy

import attrs
import networkx as nx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pcitopo import topology
from pcitopo.address import PciAddress
from pcitopo.devices import Bar, Controller, Device, HotplugNeed, Needs
from pcitopo.errors import DuplicateId, InvalidInput, PcitopoError, UnknownName
from pcitopo.legality.machine import machines
from pcitopo.strategies import legal_topologies
from pcitopo.topology import Topology


def A(text: str) -> PciAddress:
    return PciAddress.parse(text)


def numa_q35() -> Topology:
    """q35 with a root port, a pxb-pcie on node 1 with a root port, and a device behind each."""
    return Topology.build(
        "q35",
        [
            Controller(1, "pcie-root-port", address=A("00:02.0"), chassis=1, port=0x10),
            Controller(2, "pcie-expander-bus", address=A("00:03.0"), bus_nr=200, numa_node=1),
            Controller(3, "pcie-root-port", address=A("02:00.0"), chassis=3, port=0),
            Controller(4, "pcie-root-port", address=A("02:01.0"), chassis=4, port=8),
        ],
        [Device("net0", "virtio-net", address=A("01:00.0")), Device("net1", "virtio-net", address=A("03:00.0"))],
        numa_nodes=2,
    )


def test_graph_shape() -> None:
    """Controllers provide buses; buses hold controllers, devices and built-ins on edges carrying addresses."""
    g = numa_q35().graph
    assert g.has_edge(("controller", 2), ("bus", 2))
    assert g.edges[("bus", 0), ("controller", 2)]["address"] == A("00:03.0")
    assert g.edges[("bus", 3), ("device", "net1")]["address"] == A("03:00.0")
    assert g.edges[("bus", 0), ("builtin", "lpc")]["address"] == A("00:1f.0")
    assert nx.is_directed_acyclic_graph(g)
    assert nx.is_frozen(g)
    with pytest.raises(nx.NetworkXError):
        g.add_node(("bus", 99))


def test_graph_keeps_unaddressed_devices_unattached() -> None:
    """A device without an address is a node with no bus above it."""
    t = Topology.build("q35", devices=[Device("req", "e1000")])
    assert list(t.graph.predecessors(("device", "req"))) == []


def test_devices_keep_definition_order() -> None:
    """Topology.devices keeps the order the devices were given in."""
    t = Topology.build("pc", devices=[Device(n, "e1000") for n in ["z", "a", "m"]])
    assert [d.id for d in t.devices] == ["z", "a", "m"]


def test_root_controller_is_added() -> None:
    """Building without an index-0 controller adds the machine's root model."""
    assert [c.model for c in Topology.build("pc").controllers] == ["pci-root"]
    assert [c.model for c in Topology.build("q35").controllers] == ["pcie-root"]


def test_path_to_root() -> None:
    """path_to_root walks from a device or a bus up through its controllers to the root."""
    t = numa_q35()
    assert [c.name for c in t.path_to_root("net1")] == ["pci.3", "pci.2", "pcie.0"]
    assert [c.name for c in t.path_to_root(1)] == ["pci.1", "pcie.0"]
    assert t.root_of(3) == t.controller(0)


def test_path_to_root_of_unaddressed_device() -> None:
    """A device without an address has no path, and the error says so."""
    t = Topology.build("q35", devices=[Device("req", "e1000")])
    with pytest.raises(InvalidInput, match=r"^device 'req': has no address, so no path to a root bus$"):
        t.path_to_root("req")


def test_path_to_root_stops_at_a_cycle() -> None:
    """Walking up from a controller cycle ends instead of looping, and no root is found."""
    t = Topology.build(
        "q35",
        [
            Controller(1, "pcie-switch-upstream-port", address=A("02:00.0")),
            Controller(2, "pcie-switch-downstream-port", address=A("01:00.0"), chassis=2, port=0),
        ],
    )
    assert [c.index for c in t.path_to_root(1)] == [1, 2]
    assert t.root_of(1) is None
    assert t.controller_cycles() == [[1, 2]]
    assert t.bus_numbers_used() == 1


def _walked_up(t: Topology, bus: int, stops: str) -> Controller | None:
    """The first controller at or above ``bus`` whose model is a root (or, ``stops="numa"``, also an expander),
    found by following addresses one step at a time (``None`` at a cycle or a bus no controller has)."""
    catalog = t.machine.catalog
    by_index = {c.index: c for c in t.controllers}
    seen: set[int] = set()
    current: int | None = bus
    while current is not None and current in by_index and current not in seen:
        seen.add(current)
        c = by_index[current]
        model = catalog.controller(c.model)
        if model.root or (stops == "numa" and model.expander):
            return c
        current = c.address.bus if c.address is not None and current != 0 else None
    return None


UPWARD_CASES = {
    "numa_q35": numa_q35(),
    "a switch plugged into its own downstream port": Topology.build(
        "q35",
        [
            Controller(1, "pcie-switch-upstream-port", address=A("02:00.0")),
            Controller(2, "pcie-switch-downstream-port", address=A("01:00.0"), chassis=2, port=0),
            Controller(3, "pcie-root-port", address=A("00:02.0"), chassis=3, port=0x10),
        ],
    ),
    "a host bridge in a cycle, beside one on node 1, and a bridge on a bus nobody has": Topology.build(
        "pseries",
        [
            Controller(1, "spapr-pci-host-bridge", address=A("02:01.0"), target_index=1, numa_node=0),
            Controller(2, "pci-bridge", address=A("01:01.0"), chassis_nr=2),
            Controller(3, "pci-bridge", address=A("02:02.0"), chassis_nr=3),
            Controller(4, "spapr-pci-host-bridge", target_index=2, numa_node=1),
            Controller(5, "pci-bridge", address=A("04:01.0"), chassis_nr=5),
            Controller(6, "pci-bridge", address=A("09:01.0"), chassis_nr=6),
            Controller(7, "pci-bridge", address=A("00:05.0"), chassis_nr=7),
        ],
        numa_nodes=2,
    ),
    "an expander bus behind a root port, on node 1": Topology.build(
        "q35",
        [
            Controller(1, "pcie-root-port", address=A("00:02.0"), chassis=1, port=0x10),
            Controller(2, "pcie-expander-bus", address=A("01:00.0"), bus_nr=200, numa_node=1),
            Controller(3, "pcie-root-port", address=A("02:00.0"), chassis=3, port=0),
        ],
        numa_nodes=2,
    ),
}


@pytest.mark.parametrize("case", sorted(UPWARD_CASES))
def test_root_and_numa_node_of_every_bus_match_a_walk_up(case: str) -> None:
    """root_of and numa_node_of_bus (computed for every bus at once, top down) answer what a walk up finds."""
    t = UPWARD_CASES[case]
    for bus in [*(c.index for c in t.controllers), 99]:
        assert t.root_of(bus) == _walked_up(t, bus, "root"), bus
        top = _walked_up(t, bus, "numa")
        assert t.numa_node_of_bus(bus) == (None if top is None else top.numa_node), bus


def test_a_host_bridge_in_a_cycle_is_its_own_root() -> None:
    """A walk up from a bus in a cycle through a root controller stops at that root, not at the cycle."""
    t = UPWARD_CASES["a host bridge in a cycle, beside one on node 1, and a bridge on a bus nobody has"]
    assert [t.root_of(i) for i in (1, 2, 3, 5, 6, 7)] == [
        t.controller(1),
        t.controller(1),
        t.controller(1),
        t.controller(4),
        None,
        t.controller(0),
    ]
    assert [t.numa_node_of_bus(i) for i in (2, 5, 6)] == [0, 1, None]


@pytest.mark.parametrize(("bus", "node"), [(0, None), (1, None), (2, 1), (3, 1), (4, 1)])
def test_numa_node_of_bus(bus: int, node: int | None) -> None:
    """A bus belongs to the NUMA node of the nearest expander above it, or to none."""
    assert numa_q35().numa_node_of_bus(bus) == node


@pytest.mark.parametrize(
    ("machine", "bus", "slot", "hot"),
    [
        ("q35", 0, 3, False),
        ("pc", 0, 3, True),
        ("pseries", 0, 3, True),
        ("aarch64-virt", 0, 3, False),
    ],
)
def test_root_bus_hotplug(machine: str, bus: int, slot: int, hot: bool) -> None:
    """Only some machines hot-plug into their root bus (ACPI on pc, DRC on pseries)."""
    assert Topology.default(machine).is_hotpluggable(bus, slot) is hot


def test_hotplug_of_ports_and_bridges() -> None:
    """Ports hot-plug unless turned off; SHPC bridges hot-plug in slots 1..31 only; pxb never."""
    t = Topology.build(
        "q35",
        [
            Controller(1, "pcie-root-port", address=A("00:02.0"), chassis=1, port=16),
            Controller(2, "pcie-root-port", address=A("00:03.0"), chassis=2, port=24, hotplug=False),
            Controller(3, "pcie-to-pci-bridge", address=A("01:00.0")),
            Controller(4, "pcie-expander-bus", address=A("00:04.0"), bus_nr=200),
        ],
    )
    assert [t.is_hotpluggable(1, 0), t.is_hotpluggable(2, 0), t.is_hotpluggable(3, 1), t.is_hotpluggable(4, 0)] == [
        True,
        False,
        True,
        False,
    ]
    assert t.is_hotpluggable(3, 0) is False


def test_bus_numbers() -> None:
    """Each bridge or port uses one bus number, a pxb two; the rest of the domain is left."""
    t = numa_q35()
    assert (t.bus_numbers_used(), t.bus_numbers_left()) == (5, 251)
    assert t.subtree_bus_numbers(0) == 2  # pcie.0 and pci.1, not the expander
    assert t.subtree_bus_numbers(2) == 3  # the pxb-pcie and its two root ports
    pc = Topology.build("pc", [Controller(1, "pci-expander-bus", address=A("00:03.0"), bus_nr=254)])
    assert pc.bus_numbers_used() == 3
    highmem_off = Topology.default("aarch64-virt-highmem-off")
    assert highmem_off.bus_numbers_left() == 15


def test_bus_numbers_of_pseries_host_bridges() -> None:
    """Each pseries host bridge is a PCI domain of its own."""
    t = Topology.build(
        "pseries",
        [
            Controller(1, "spapr-pci-host-bridge", target_index=1),
            Controller(2, "pci-bridge", address=A("01:01.0"), chassis_nr=2),
        ],
    )
    assert (t.bus_numbers_used(0), t.bus_numbers_used(1)) == (1, 2)
    assert t.bus_name(1) == "pci.1.0"


FREE = [
    ("q35", "virtio-net", None, "0000:00:01.0", 30),
    ("q35", "vfio-pci", None, None, 0),
    ("q35", "virtio-net", Needs(hotplug=HotplugNeed.REQUIRED), None, 0),
    ("q35", "pcie-root-port", None, "0000:00:01.0", 30),
    ("q35", "pci-bridge", None, None, 0),
    ("pc", "e1000", None, "0000:00:02.0", 30),
    ("pc", "pcie-root-port", None, None, 0),
    ("pc", "pci-bridge", None, "0000:00:02.0", 30),
    ("pseries", "e1000", None, "0000:00:01.0", 31),
    ("riscv64-virt", "pcie-expander-bus", None, None, 0),
    ("aarch64-virt", "pvpanic-pci", Needs(hotplug=HotplugNeed.FORBIDDEN), "0000:00:01.0", 31),
]


@pytest.mark.parametrize(("machine", "item", "needs", "first", "count"), FREE)
def test_free_positions_on_default_topologies(
    machine: str, item: str, needs: Needs | None, first: str | None, count: int
) -> None:
    """free_positions offers empty slots of buses that legally take the item and meet its needs."""
    positions = Topology.default(machine).free_positions(item, needs=needs)
    assert len(positions) == count
    assert (str(positions[0]) if positions else None) == first


def test_free_positions_with_needs() -> None:
    """Hotplug and strict NUMA needs narrow the positions to the buses that meet them."""
    t = numa_q35().without("net0", "net1")
    hot = t.free_positions("virtio-net", needs=Needs(hotplug="required"))
    assert [str(p) for p in hot] == ["0000:01:00.0", "0000:03:00.0", "0000:04:00.0"]
    node1 = t.free_positions("virtio-net", needs=Needs(hotplug="required", numa_node=1, numa_strict=True))
    assert [str(p) for p in node1] == ["0000:03:00.0", "0000:04:00.0"]
    cold = t.free_positions("virtio-net", needs=Needs(hotplug="forbidden"))
    assert all(p.bus == 0 for p in cold)
    integrated = t.free_positions(Device("x", "e1000", needs=Needs(integrated=True)))
    assert integrated
    assert all(p.bus == 0 for p in integrated)


def test_root_ports_pack_into_functions_of_a_root_port_slot() -> None:
    """A slot holding only root ports offers its free functions to another root port, not to endpoints."""
    t = Topology.build("q35", [Controller(1, "pcie-root-port", address=A("00:02.0"), chassis=1, port=16)])
    ports = {str(p) for p in t.free_positions("pcie-root-port")}
    assert {f"0000:00:02.{f}" for f in range(1, 8)} <= ports
    assert not any(p.slot == 2 and p.bus == 0 for p in t.free_positions("virtio-net"))


def test_builtins_and_occupants() -> None:
    """Built-ins occupy their addresses unless a device of the kind they stand for takes their place."""
    t = Topology.build("q35", devices=[Device("sata0", "ahci", address=A("00:1f.2"))])
    assert [b.name for b in t.builtins()] == ["mch", "lpc", "smbus"]
    assert t.occupants()[A("00:1f.2")] == ["sata0"]
    assert t.occupants()[A("00:1f.0")] == ["built-in lpc"]
    assert t.slot_usage()[(0, 0, 0x1F)] == {0, 2, 3}


def test_building_and_querying_never_mutate_inputs() -> None:
    """The caller's lists and values stay as they were, and changes return new topologies."""
    controllers = [Controller(2, "pcie-root-port", address=A("00:03.0")), Controller(1, "pcie-root-port")]
    devices = [Device("n", "virtio-net", address=A("02:00.0"))]
    snapshot = (copy.copy(controllers), copy.copy(devices))
    t = Topology.build("q35", controllers, devices)
    t.graph, t.free_positions("virtio-net"), t.path_to_root("n"), t.controller_cycles()
    bigger = t.with_devices(Device("m", "virtio-net"))
    smaller = t.without("n")
    assert (controllers, devices) == snapshot
    assert [d.id for d in t.devices] == ["n"]
    assert [d.id for d in bigger.devices] == ["n", "m"]
    assert smaller.devices == ()
    assert [c.index for c in t.controllers] == [0, 1, 2]
    with pytest.raises(AttributeError):
        t.devices = ()  # type: ignore[misc]


BAD_INPUT = [
    (
        lambda: Topology.build("q35", [Controller(1, "pcie-rot-port")]),
        UnknownName,
        "unknown controller model 'pcie-rot-port' (controller index 1); did you mean 'pcie-root-port'?",
    ),
    (
        lambda: Topology.build("q35", devices=[Device("a", "e1001")]),
        UnknownName,
        "unknown device kind 'e1001' (device 'a'); did you mean 'e1000'?",
    ),
    (
        lambda: Topology.build("q35", devices=[Device("a", "e1000"), Device("a", "e1000")]),
        DuplicateId,
        "id 'a' is used by device 'a' and device 'a'",
    ),
    (
        lambda: Topology.build("q35", [Controller(1, "pci-bridge"), Controller(1, "pcie-root-port")]),
        InvalidInput,
        "topology: controller index 1 is used twice; id 'pci.1' is used by controller index 1 and controller index 1",
    ),
    (lambda: Topology.default("q53"), UnknownName, "unknown machine 'q53'; did you mean 'q35'?"),
    (lambda: Topology.build("q35", numa_nodes=-1), InvalidInput, "topology: numa_nodes must be >= 0 (got -1)"),
    (lambda: Topology.default("q35").device("x"), UnknownName, "unknown device 'x'"),
    (lambda: Topology.default("q35").without("zz"), UnknownName, "unknown device or controller 'zz'; known: pcie.0"),
    (
        lambda: Topology.default("q35").free_positions("e1001"),
        UnknownName,
        "unknown device kind 'e1001'; did you mean 'e1000'?",
    ),
]


@pytest.mark.parametrize(("make", "error", "message"), BAD_INPUT)
def test_bad_input_raises_a_pcitopo_error(make: object, error: type[PcitopoError], message: str) -> None:
    """Unknown names and duplicates raise pcitopo errors naming them, never KeyError or a networkx error."""
    with pytest.raises(error) as info:
        make()  # type: ignore[operator]
    assert str(info.value) == message


@pytest.mark.parametrize("name", sorted(machines()))
def test_default_topology_of_every_machine(name: str) -> None:
    """Every shipped machine builds a default topology with just its root bus."""
    t = Topology.default(name)
    assert [c.index for c in t.controllers] == [0]
    assert t.bus(0).name == t.machine.root_bus_name
    assert t.bus_numbers_used() == 1


def test_unknown_bus_index_is_an_unknown_name() -> None:
    """Asking for a bus no controller provides raises UnknownName, not KeyError."""
    with pytest.raises(UnknownName, match=r"^unknown controller index '7'"):
        Topology.default("q35").bus(7)


def test_public_names() -> None:
    """The module exports IO_WINDOW, Bus, Mmio, Node and Topology."""
    assert dir(topology) == sorted(["IO_WINDOW", "Bus", "Mmio", "Node", "Topology"])


# -- memory space (MMIO) ------------------------------------------------------------------------

MIB = 1 << 20


def test_a_devices_memory_sizes_its_memory_bar_rounded_to_a_power_of_two() -> None:
    """An ivshmem-plain's BAR2 and a VGA's BAR0 take the device's memory (rounded up); other BARs stay."""
    t = Topology.build(
        "q35", devices=[Device("shm", "ivshmem-plain", memory=3 * MIB), Device("vga", "vga", memory=8 * MIB)]
    )
    assert [str(b) for b in t.bars("shm")] == ["BAR0 mem32 256B", "BAR2 mem64 prefetchable 4M"]
    assert [str(b) for b in t.bars("vga")] == ["BAR0 mem32 prefetchable 8M", "BAR2 mem32 4K", "ROM mem32 64K"]
    assert [str(b) for b in t.bars(Device("d", "ivshmem-plain"))] == ["BAR0 mem32 256B", "BAR2 mem64 prefetchable 4M"]


def test_a_devices_own_bars_replace_the_catalogs_without_io_or_vf_bars() -> None:
    """A passed-through function's host BARs count, but not its IO BAR or its SR-IOV VF BARs."""
    bars = (Bar(0, 16 * MIB, "mem32"), Bar(1, 64 << 30, "mem64", True), Bar(5, 128, "io"), Bar(7, MIB, "mem64", True))
    t = Topology.build("q35", devices=[Device("gpu", "vfio-pci", bars=bars)])
    assert t.bars("gpu") == bars[:2]


def test_seabios_windows_round_to_2_mib_and_count_the_bridges_own_bars() -> None:
    """A root port holding a pcie-to-pci-bridge with an e1000 needs 4 MiB, as SeaBIOS gave it (0x400000)."""
    t = Topology.build(
        "q35",
        [
            Controller(1, "pcie-root-port", address=PciAddress.parse("00:02.0"), chassis=1),
            Controller(2, "pcie-to-pci-bridge", address=PciAddress.parse("01:00.0")),
        ],
        [Device("e", "e1000", address=PciAddress.parse("02:01.0"))],
    )
    assert t.mmio is not None
    assert t.mmio.consumers_32 == (("pci.1", 4 * MIB, "e"), ("pci.1", 4096, "pci.1"))
    assert t.mmio.below_4g == 4 * MIB + 4096
    assert t.mmio.above_4g == 2 * MIB  # the bridge's 2 MiB prefetchable reservation, which the port holds


def test_ovmf_reserves_512_mib_of_64_bit_window_per_empty_hotplug_port() -> None:
    """Each empty hotplug port takes OVMF's 512 MiB prefetchable reservation, a port with hotplug off none."""
    ports = [Controller(1 + i, "pcie-root-port", address=PciAddress.parse(f"00:{2 + i:02x}.0")) for i in range(3)]
    ports[2] = Controller(3, "pcie-root-port", address=PciAddress.parse("00:04.0"), hotplug=False)
    t = Topology.build("q35", ports, firmware="ovmf")
    assert t.mmio is not None
    assert (t.mmio.above_4g, t.mmio.reserved_64) == (1024 * MIB, 1024 * MIB)
    assert Topology.build("aarch64-virt").mmio is None  # edk2 on aarch64: its MMIO is not modelled


def test_ovmf_aligns_each_window_to_its_largest_bar() -> None:
    """Two ports each holding a 64 MiB display: OVMF's windows are 65 MiB at 64 MiB boundaries (193 MiB and the
    ports' and ICH9's small BARs, as OVMF placed them: 0xc0000000 and 0xc8000000); SeaBIOS's 2 x (64 + 2) MiB."""

    def two(firmware: str) -> Topology:
        ports = [
            Controller(1, "pcie-root-port", address=PciAddress.parse("00:01.0"), chassis=1, multifunction=True),
            Controller(2, "pcie-root-port", address=PciAddress.parse("00:01.1"), chassis=2),
        ]
        displays = [Device(f"v{i}", "bochs", address=PciAddress.parse(f"0{i}:00.0"), memory=64 * MIB) for i in (1, 2)]
        return Topology.build("q35", ports, displays, firmware=firmware)

    ovmf, seabios = two("ovmf").mmio, two("seabios").mmio
    assert ovmf is not None
    assert seabios is not None
    assert (ovmf.below_4g >> 20, ovmf.reserved_32) == (193, 0)
    assert seabios.below_4g >> 20 == 132


def test_unplaced_devices_count_as_root_bus_devices_in_the_floor() -> None:
    """mmio_with_unplaced counts devices without an address with their BARs alone; mmio leaves them out."""
    t = Topology.build("q35", devices=[Device("shm", "ivshmem-plain", memory=256 << 30)])
    assert t.mmio is not None
    assert t.mmio_with_unplaced is not None
    assert (t.mmio.above_4g, t.mmio_with_unplaced.above_4g) == (0, 256 << 30)


# -- io-reserve (issue 11): QEMU's property, as the firmware files say each firmware reads it ----------------


def _virtio_ports(n: int, *, io_reserve: int | None, firmware: str) -> Topology:
    """N root ports each holding a virtio-net (no IO BAR), with ``io_reserve`` on every port."""
    ports = [
        Controller(1 + i, "pcie-root-port", address=PciAddress.parse(f"00:{2 + i:02x}.0"), io_reserve=io_reserve)
        for i in range(n)
    ]
    devices = [Device(f"v{i}", "virtio-net", address=PciAddress.parse(f"{1 + i:02x}:00.0")) for i in range(n)]
    return Topology.build("q35", ports, devices, firmware=firmware)


def test_ovmf_io_reserve_zero_takes_a_virtio_ports_window_away() -> None:
    """Under OVMF a port holding a virtio-net takes a window; with io-reserve=0 it takes none (measured)."""
    assert _virtio_ports(2, io_reserve=None, firmware="ovmf").io_windows() == {1: 1, 2: 1}
    assert _virtio_ports(2, io_reserve=0, firmware="ovmf").io_windows() == {}


def test_io_reserve_zero_does_not_hide_a_devices_io_bar() -> None:
    """io-reserve=0 on a port whose e1000e has an IO BAR leaves the window the device needs."""
    port = Controller(1, "pcie-root-port", address=PciAddress.parse("00:02.0"), io_reserve=0)
    t = Topology.build("q35", [port], [Device("e", "e1000e", address=PciAddress.parse("01:00.0"))], firmware="ovmf")
    assert t.io_windows() == {1: 1}


def test_seabios_keeps_an_shpc_bridges_window_under_io_reserve_zero() -> None:
    """SeaBIOS gives an empty pci-bridge its window whatever io-reserve says (measured on pc: 26 BARs unmapped)."""
    bridge = Controller(1, "pci-bridge", address=PciAddress.parse("00:03.0"), chassis_nr=1, io_reserve=0)
    assert Topology.build("pc", [bridge], firmware="seabios").io_windows() == {1: 1}
    assert Topology.build("pc", [bridge], firmware="ovmf").io_windows() == {}


def test_io_reserve_above_zero_gives_an_empty_port_a_window_under_seabios() -> None:
    """An empty root port gets no IO from SeaBIOS, but io-reserve=4096 gives it one window (measured: 14 fit)."""
    assert _virtio_ports(1, io_reserve=None, firmware="seabios").io_windows() == {}
    assert _virtio_ports(1, io_reserve=4096, firmware="seabios").io_windows() == {1: 1}


def test_io_reserve_off_candidates_are_ports_whose_window_is_their_own_reservation() -> None:
    """Occupied ports first, then empty ones; never a port whose device needs IO, holds a reserving bridge,
    has hotplug off, or is an ioh3420 (no io-reserve property); none under SeaBIOS."""
    a = PciAddress.parse
    controllers = [
        Controller(1, "pcie-root-port", a("00:02.0")),  # empty
        Controller(2, "pcie-root-port", a("00:03.0")),  # a virtio-net
        Controller(3, "pcie-root-port", a("00:04.0")),  # an e1000e: needs IO
        Controller(4, "pcie-root-port", a("00:05.0")),  # a pcie-to-pci-bridge, which reserves its own window
        Controller(5, "pcie-to-pci-bridge", a("04:00.0")),
        Controller(6, "pcie-root-port", a("00:06.0"), hotplug=False),
        Controller(7, "pcie-root-port", a("00:07.0"), qemu_model="ioh3420"),
    ]
    devices = [Device("v", "virtio-net", address=a("02:00.0")), Device("e", "e1000e", address=a("03:00.0"))]
    t = Topology.build("q35", controllers, devices, firmware="ovmf")
    assert t.io_reserve_off_candidates() == (2, 1)
    off = t.with_io_reserve_off([2])
    assert (off.controller(2).io_reserve, off.controller(2).name) == (0, "ua-pci-2")
    assert sum(off.io_windows().values()) == sum(t.io_windows().values()) - 1
    assert Topology.build("q35", controllers, devices, firmware="seabios").io_reserve_off_candidates() == ()


@settings(max_examples=60, deadline=None)
@given(legal_topologies(max_devices=12, max_controllers=5), st.data())
def test_with_needs_keeps_only_what_needs_do_not_change(t: Topology, data: st.DataObject) -> None:
    """Every value ``with_needs`` carries over from the topology it came from equals the one worked out afresh."""
    for name in topology._NEEDS_FREE:
        getattr(t, name)  # worked out on the original, so with_needs has something to keep
    picked = data.draw(st.lists(st.sampled_from([d.id for d in t.devices]), unique=True) if t.devices else st.just([]))
    hotplug = data.draw(st.sampled_from(list(HotplugNeed)))
    numa = data.draw(st.one_of(st.none(), st.integers(0, 2)))
    needs = {i: Needs(hotplug=hotplug, numa_node=numa, numa_strict=numa is not None) for i in picked}
    kept = t.with_needs(needs)
    fresh = Topology.build(
        t.machine,
        t.controllers,
        [attrs.evolve(d, needs=needs[d.id]) if d.id in needs else d for d in t.devices],
        numa_nodes=t.numa_nodes,
        acpi=t.acpi,
        firmware=t.firmware,
        mmio64=t.mmio64,
        phys_bits=t.phys_bits,
    )
    assert kept == fresh
    for name in topology._NEEDS_FREE:
        assert getattr(kept, name) == getattr(fresh, name), name
