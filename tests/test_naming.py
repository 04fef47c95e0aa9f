"""Guest NIC names: systemd's rules applied to plans, pinned with the documented and well-known cases."""

from __future__ import annotations

import io
import json
from pathlib import Path

import attrs
import pytest

from pcitopo.address import PciAddress
from pcitopo.cli import main
from pcitopo.devices import Controller, Device, Needs
from pcitopo.naming import (
    ACPI_INDEX_MAX,
    GuestName,
    guest_bus_numbers,
    guest_names,
    names_in_order,
    nic_order,
    number_nics,
)
from pcitopo.topology import Topology
from tests.support.qemu import TOPOLOGIES

A = PciAddress.parse


def rp(index: int, address: str, **kw: object) -> Controller:
    return Controller(index, "pcie-root-port", address=A(address), chassis=index, port=A(address).devfn, **kw)  # type: ignore[arg-type]


def test_q35_nic_behind_a_root_port_is_a_path_name() -> None:
    """A q35 NIC behind the first root port is enp1s0, the name q35 guests are known for (no slot number)."""
    t = Topology.build("q35", [rp(1, "00:02.0")], [Device("net0", "virtio-net", address=A("01:00.0"))])
    n = guest_names(t)["net0"]
    assert (n.name, n.source, n.slot, n.onboard) == ("enp1s0", "path", None, None)


def test_pc_nic_on_the_root_bus_takes_its_acpi_slot_number() -> None:
    """An i440fx NIC in root slot 3 is ens3 (ACPI _SUN = slot), the default name of pc guests."""
    t = Topology.build("pc", devices=[Device("net0", "e1000", address=A("00:03.0"))])
    n = guest_names(t)["net0"]
    assert (n.name, n.slot, n.path) == ("ens3", "ens3", "enp0s3")


def test_pc_root_hotplug_off_leaves_the_path_name() -> None:
    """With root-bus hotplug off there is no ACPI slot, so the pc NIC falls back to enp0s3."""
    root = Controller(0, "pci-root", hotplug=False)
    t = Topology.build("pc", [root], [Device("net0", "e1000", address=A("00:03.0"))])
    assert guest_names(t)["net0"].name == "enp0s3"


def test_function_suffix_for_other_functions_and_multifunction() -> None:
    """f<N> follows a function above 0, and function 0 of a multifunction slot (f0)."""
    t = Topology.build(
        "q35",
        [rp(1, "00:02.0")],
        [
            Device("a", "e1000e", address=A("01:00.0"), multifunction=True),
            Device("b", "e1000e", address=A("01:00.1")),
        ],
    )
    names = guest_names(t)
    assert [names["a"].name, names["b"].name] == ["enp1s0f0", "enp1s0f1"]


def test_only_nics_are_named_and_extra_ids_join() -> None:
    """Non-NIC kinds get no name unless listed in nics= (a passed-through NIC)."""
    t = Topology.build(
        "q35",
        [rp(1, "00:02.0"), rp(2, "00:02.1")],
        [Device("rng", "virtio-rng", address=A("01:00.0")), Device("vf", "vfio-pci", address=A("02:00.0"))],
    )
    assert guest_names(t) == {}
    assert guest_names(t, nics=["vf"]) == {"vf": GuestName("vf", "enp2s0")}


def test_bus_numbers_depth_first_with_expanders() -> None:
    """Bridges are numbered depth first in slot order; expander buses start at bus_nr, a pxb's bridge one past."""
    assert guest_bus_numbers(TOPOLOGIES["q35"]()) == {
        0: 0,
        1: 1,
        2: 2,
        3: 3,
        4: 4,
        5: 5,
        6: 6,
        7: 7,
        8: 8,
        9: 9,
        10: 10,
        11: 0x80,
        12: 0x81,
    }
    assert guest_bus_numbers(TOPOLOGIES["pc"]()) == {0: 0, 1: 1, 2: 0x41}


def test_names_of_the_hand_built_q35_and_pc_topologies() -> None:
    """Reference q35 and pc topologies: path names behind ports and expanders, slot names on bridges and pc's root."""
    q35 = {i: n.name for i, n in guest_names(TOPOLOGIES["q35"]()).items()}
    assert q35 == {"net0": "enp1s0", "net1": "enp2s0", "net2": "ens2", "net3": "enp129s0"}
    pc = {i: n.name for i, n in guest_names(TOPOLOGIES["pc"]()).items()}
    assert pc == {"net0": "ens5", "net1": "ens1", "net2": "enp65s0"}


@pytest.mark.parametrize(
    ("machine", "where", "index", "expected", "note"),
    [
        ("pc", "root", 7, "eno7", None),
        ("q35", "port", 7, "eno7", None),
        (
            "q35",
            "pcie.0",
            7,
            "enp0s3",
            "QEMU 7.2 describes acpi-index only for ACPI hot-pluggable slots, and bus 0 "
            "(pcie-root) slot 0x03 is not one (QEMU 8.0 lifts this)",
        ),
        (
            "q35",
            "port-hotplug-off",
            7,
            "enp1s0",
            "QEMU 7.2 describes acpi-index only for ACPI hot-pluggable slots, "
            "and bus 1 (pcie-root-port) slot 0x00 is not one (QEMU 8.0 lifts this)",
        ),
        (
            "q35",
            "port",
            ACPI_INDEX_MAX + 1,
            "enp1s0",
            "acpi-index 16384 is outside 1..16383 (QEMU 7.2 refuses it above 16383)",
        ),
        ("q35", "port", 0, "enp1s0", "acpi-index 0 is outside 1..16383 (QEMU 7.2 refuses it above 16383)"),
    ],
)
def test_acpi_index_gives_an_onboard_name_where_qemu_72_describes_it(
    machine: str, where: str, index: int, expected: str, note: str | None
) -> None:
    """acpi-index names the NIC eno<N> on ACPI-hotplug slots of pc and q35; elsewhere a note says why not."""
    if machine == "pc":
        t = Topology.build("pc", devices=[Device("n", "e1000", address=A("00:03.0"))])
    elif where == "pcie.0":
        t = Topology.build("q35", devices=[Device("n", "e1000e", address=A("00:03.0"))])
    else:
        port = rp(1, "00:02.0", hotplug=False) if where == "port-hotplug-off" else rp(1, "00:02.0")
        t = Topology.build("q35", [port], [Device("n", "e1000e", address=A("01:00.0"))])
    n = guest_names(t, acpi_index={"n": index})["n"]
    assert n.name == expected
    assert n.notes == (() if note is None else (note,))


def test_duplicate_acpi_index_names_only_the_first() -> None:
    """Two NICs with one acpi-index: QEMU refuses the second, and the note names the first."""
    t = Topology.build(
        "pc", devices=[Device("a", "e1000", address=A("00:03.0")), Device("b", "e1000", address=A("00:04.0"))]
    )
    names = guest_names(t, acpi_index={"a": 2, "b": 2})
    assert (names["a"].name, names["b"].name) == ("eno2", "ens4")
    assert names["b"].notes == ("acpi-index 2 is also given to 'a' (QEMU refuses the second)",)


def test_pseries_and_unplaced_nics_get_no_name() -> None:
    """pseries naming is not modelled and an unplaced NIC has no name yet; both say so."""
    names = guest_names(TOPOLOGIES["pseries"]())
    assert names["net0"].name is None
    assert names["net0"].notes == (
        "pseries names are not predicted: systemd gives a PCI NIC its path name enP<domain>p<bus>s<slot> there "
        "(no acpi_index, and the hotplug slots are named 'C<n>', not numbers), but the domain (Linux's PHB number) "
        "and the bus numbers (SLOF's) are not checked in a booted pseries guest here",
    )
    t = Topology.build("q35", devices=[Device("n", "virtio-net")])
    assert guest_names(t)["n"].notes == ("no address yet",)


_PC = """<domain type='kvm'>
  <name>n</name>
  <os><type arch='x86_64' machine='pc-i440fx-7.2'>hvm</type></os>
  <features><acpi/></features>
  <devices>
    <interface type='user'><model type='e1000'/>
      <address type='pci' domain='0x0000' bus='0x00' slot='0x03' function='0x0'/></interface>
    <interface type='user'><model type='virtio'/><acpi index='4'/>
      <address type='pci' domain='0x0000' bus='0x00' slot='0x04' function='0x0'/></interface>
  </devices>
</domain>
"""


def test_show_names_and_json(tmp_path: Path) -> None:
    """``show --format names`` prints one line per NIC and ``show --json`` the same as data."""
    xml = tmp_path / "pc.xml"
    xml.write_text(_PC)
    out = io.StringIO()
    assert main(["show", str(xml), "--format", "names"], stdout=out) == 0
    assert out.getvalue() == "interface0  ens3  (slot)\ninterface1  eno4  (onboard)\n"
    out = io.StringIO()
    assert main(["show", str(xml), "--json"], stdout=out) == 0
    doc = json.loads(out.getvalue())
    assert doc["guest_names"]["interface1"] == {
        "name": "eno4",
        "source": "onboard",
        "onboard": "eno4",
        "slot": "ens4",
        "path": "enp0s4",
        "notes": [],
    }


def test_assign_json_reports_guest_names() -> None:
    """``assign --json`` gives each NIC of the plan its guest name."""
    out = io.StringIO()
    example = Path(__file__).resolve().parent.parent / "docs" / "examples" / "q35-small.xml"
    assert main(["assign", str(example), "--json"], stdout=out) == 0
    names = json.loads(out.getvalue())["guest_names"]
    assert {i: n["name"] for i, n in names.items()} == {"ua-net0": "enp3s0", "ua-legacy": "ens1"}


def test_bridge_slots_take_the_numbers_the_root_bus_left() -> None:
    """On pc, bridge slot 2 is ens2 (root slot 2 holds the VGA) but bridge slot 6 loses to root slot 6."""
    t = TOPOLOGIES["pc"]().with_devices(
        Device("root6", "e1000", address=A("00:06.0")),
        Device("br6", "e1000", address=A("01:06.0")),
        Device("br2", "e1000", address=A("01:02.0")),
    )
    names = {i: n.name for i, n in guest_names(t).items()}
    assert (names["root6"], names["br6"], names["br2"]) == ("ens6", "enp1s6", "ens2")


def test_no_slot_names_without_acpi() -> None:
    """A pc guest without ACPI has no ACPI hotplug slots: every NIC gets its path name."""
    t = attrs.evolve(Topology.build("pc", devices=[Device("n", "e1000", address=A("00:03.0"))]), acpi=False)
    assert guest_names(t)["n"].name == "enp0s3"


def test_number_nics_gives_increasing_indexes_only_where_they_reach_the_guest() -> None:
    """On q35 a NIC on pcie.0 gets no acpi-index (QEMU 7.2 hides it there); the others count on from 1."""
    t = Topology.build(
        "q35",
        [rp(1, "00:02.0"), rp(2, "00:02.1")],
        [
            Device("a", "virtio-net", address=A("02:00.0")),
            Device("b", "e1000e", address=A("00:05.0")),
            Device("c", "virtio-net", address=A("01:00.0")),
        ],
    )
    numbered = number_nics(t, ["a", "b", "c"])
    assert [(d.id, d.acpi_index) for d in numbered.devices] == [("a", 1), ("b", None), ("c", 2)]
    assert [guest_names(numbered)[i].name for i in "abc"] == ["eno1", "enp0s5", "eno2"]


def test_number_nics_keeps_given_indexes_and_counts_above_them() -> None:
    """A NIC with an index keeps it, a NIC outside ``placed`` gets none, and later ones count on above the last."""
    t = Topology.build(
        "q35",
        [rp(1, "00:02.0"), rp(2, "00:02.1"), rp(3, "00:02.2")],
        [
            Device("a", "virtio-net", address=A("01:00.0"), acpi_index=7),
            Device("old", "virtio-net", address=A("02:00.0")),
            Device("new", "virtio-net", address=A("03:00.0")),
        ],
    )
    assert [d.acpi_index for d in number_nics(t, ["new"]).devices] == [7, None, 8]


def test_nic_order_follows_needs_order_then_definition() -> None:
    """A NIC's ``needs.order`` stands in for its position; non-NICs are left out."""
    t = Topology.build(
        "pc",
        devices=[
            Device("x", "e1000"),
            Device("rng", "virtio-rng"),
            Device("y", "virtio-net", needs=Needs(order=-1)),
            Device("z", "rtl8139"),
        ],
    )
    assert [d.id for d in nic_order(t)] == ["y", "x", "z"]


def test_names_in_order_compares_numbers_as_numbers() -> None:
    """enp2s0 comes before enp10s0, and a q35 slot name after every path name."""
    t = Topology.build(
        "q35",
        [rp(i, f"00:{2 + (i - 1) // 8:02x}.{(i - 1) % 8}", multifunction=i in (1, 9)) for i in range(1, 11)],
        [Device("a", "virtio-net", address=A("02:00.0")), Device("b", "virtio-net", address=A("0a:00.0"))],
    )
    nics = nic_order(t)
    assert names_in_order(t, nics) == (True, ["enp2s0", "enp10s0"])
    assert names_in_order(t, nics[::-1]) == (False, ["enp10s0", "enp2s0"])


def test_assign_with_acpi_index_writes_the_indexes_show_reads(tmp_path: Path) -> None:
    """A policy file with ``acpi-index = true`` writes ``<acpi index>`` in NIC order; ``show`` names them eno1, eno2."""
    (tmp_path / "names.toml").write_text("ordered = true\nacpi-index = true\n")
    (tmp_path / "in.xml").write_text(
        "<domain type='kvm'><name>n</name><os><type arch='x86_64' machine='pc-q35-7.2'>hvm</type></os>"
        "<features><acpi/></features><devices>\n"
        "    <interface type='user'><model type='e1000'/></interface>\n"
        "    <interface type='user'><model type='virtio'/></interface>\n"
        "  </devices></domain>\n"
    )
    args = [
        "assign",
        str(tmp_path / "in.xml"),
        "--policy",
        str(tmp_path / "names.toml"),
        "-o",
        str(tmp_path / "out.xml"),
    ]
    assert main(args, stdout=io.StringIO()) == 0
    assert (tmp_path / "out.xml").read_text().count("<acpi index=") == 2
    out = io.StringIO()
    assert main(["show", str(tmp_path / "out.xml"), "--format", "names"], stdout=out) == 0
    assert out.getvalue() == "interface0  eno1  (onboard)\ninterface1  eno2  (onboard)\n"
