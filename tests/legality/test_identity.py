"""libvirt's identity defaults and bus-number regions: one home, exact values, one behaviour when numbers run out."""

from __future__ import annotations

import pytest

from pcitopo.address import PciAddress
from pcitopo.devices import Controller
from pcitopo.errors import InvalidTopology, Unsatisfiable
from pcitopo.legality import identity
from pcitopo.legality.identity import BusRegion
from pcitopo.topology import Topology


def A(text: str) -> PciAddress:
    return PciAddress.parse(text)


def phbs(n: int) -> Topology:
    """A pseries topology with ``n`` extra host bridges, none with a target index."""
    extra = [Controller(i, "spapr-pci-host-bridge") for i in range(1, n + 1)]
    return Topology.build("pseries", extra)


def test_port_defaults_follow_libvirt() -> None:
    """A root port gets chassis = index and port = devfn; a downstream port chassis = index and port = slot."""
    t = Topology.build(
        "q35",
        [
            Controller(1, "pcie-root-port", address=A("00:02.5")),
            Controller(2, "pcie-switch-upstream-port", address=A("01:00.0")),
            Controller(3, "pcie-switch-downstream-port", address=A("02:07.0")),
            Controller(4, "pcie-root-port", address=A("00:03.0"), chassis=9),
        ],
    )
    assert identity.defaults(t) == {
        0: {},
        1: {"chassis": 1, "port": 0x15},
        2: {},
        3: {"chassis": 3, "port": 7},
        4: {"port": 0x18},
    }


def test_bridge_gets_its_index_as_chassis_nr() -> None:
    """A pci-bridge without chassisNr gets its controller index."""
    t = Topology.build("pc", [Controller(1, "pci-bridge", address=A("00:05.0"))])
    assert identity.defaults(t) == {0: {}, 1: {"chassis_nr": 1}}


def test_expander_bus_nr_goes_down_by_two_from_the_lowest() -> None:
    """Unset busNrs are handed out in index order, each 2 below the lowest busNr any controller has."""
    t = Topology.build(
        "q35",
        [
            Controller(1, "pcie-expander-bus", address=A("00:05.0")),
            Controller(2, "pcie-expander-bus", address=A("00:06.0"), bus_nr=100),
            Controller(3, "pcie-expander-bus", address=A("00:07.0")),
        ],
    )
    assert identity.defaults(t) == {0: {}, 1: {"bus_nr": 98}, 2: {}, 3: {"bus_nr": 96}}


def test_target_index_is_the_lowest_free_from_one_among_earlier_bridges() -> None:
    """Unnumbered host bridges take the lowest in 1..30 no earlier bridge has (as libvirt: here a duplicate)."""
    t = Topology.build(
        "pseries",
        [
            Controller(1, "spapr-pci-host-bridge"),
            Controller(2, "spapr-pci-host-bridge", target_index=1),
            Controller(3, "spapr-pci-host-bridge"),
        ],
    )
    assert identity.defaults(t) == {0: {"target_index": 0}, 1: {"target_index": 1}, 2: {}, 3: {"target_index": 2}}


def test_only_the_asked_indexes_are_returned() -> None:
    """``indexes`` limits the answer, but earlier controllers still take their numbers first."""
    t = Topology.build(
        "q35",
        [
            Controller(1, "pcie-expander-bus", address=A("00:05.0")),
            Controller(2, "pcie-expander-bus", address=A("00:06.0")),
        ],
    )
    assert identity.defaults(t, {2}) == {2: {"bus_nr": 252}}
    assert set(identity.filled(t, {2})) == {2}


def test_thirty_host_bridges_fit_and_the_thirty_first_is_a_violation() -> None:
    """Target indexes 1..30 are libvirt's (0-30 minus the default bridge's 0); one more runs out."""
    assert identity.defaults(phbs(30))[30] == {"target_index": 30}
    with pytest.raises(InvalidTopology) as info:
        identity.defaults(phbs(31))
    assert [str(v) for v in info.value.violations] == [
        "'pci.31' (spapr-pci-host-bridge) has no target index, and libvirt has none left to give it: "
        "every target index in 1..30 is taken (rule: phb-index)"
    ]


def test_bus_nr_running_out_is_a_violation_naming_the_lowest() -> None:
    """When the lowest busNr is 2, libvirt has no busNr for another expander: a violation, not a silent skip."""
    t = Topology.build(
        "q35",
        [
            Controller(1, "pcie-expander-bus", address=A("00:05.0"), bus_nr=2),
            Controller(2, "pcie-expander-bus", address=A("00:06.0")),
        ],
    )
    assert [str(v) for v in identity.shortages(t)] == [
        "'pci.2' (pcie-expander-bus) has no bus_nr, and libvirt has none left to give it: "
        "the lowest busNr is 2, and a new one goes 2 below it, within 1..254 (rule: expander-bus-nr)"
    ]
    assert [(v.devices, v.address) for v in identity.shortages(t)] == [(("pci.2",), A("00:06.0"))]
    with pytest.raises(InvalidTopology):
        identity.filled(t)


def test_fill_raises_unsatisfiable_naming_the_budget() -> None:
    """Planning a host bridge when 1..30 are taken is Unsatisfiable, with the budget and a way out."""
    t = Topology.build("pseries", [Controller(i, "spapr-pci-host-bridge", target_index=i) for i in range(1, 31)])
    with pytest.raises(Unsatisfiable) as info:
        identity.fill(t, Controller(31, "spapr-pci-host-bridge"))
    assert info.value.facts == ("libvirt gives a new host bridge the lowest free target index in 1..30",)
    assert info.value.suggestions == ("set the target index of 'pci.31' by hand",)


def test_fill_places_and_numbers_a_new_port() -> None:
    """``fill`` gives a new root port its address and libvirt's chassis and port there."""
    t = Topology.default("q35")
    c = identity.fill(t, Controller(7, "pcie-root-port"), A("00:04.2"))
    assert (c.address, c.chassis, c.port) == (A("00:04.2"), 7, 0x22)


@pytest.mark.parametrize(
    ("taken", "expected"),
    [([], 254), ([254], 252), ([10, 200], 8), ([3], 1), ([2], None), ([1], None)],
)
def test_next_bus_nr(taken: list[int], expected: int | None) -> None:
    """2 below the lowest (256 when none), or None once the lowest is 2 or less (libvirt refuses)."""
    assert identity.next_bus_nr(taken) == expected


def test_fresh_numbers_skip_taken_ones() -> None:
    """Fresh chassis and chassisNr start at the index and skip taken ones; chassisNr never 0."""
    assert identity.fresh_chassis(5, {5, 6}) == 7
    assert identity.fresh_chassis_nr(255, {255, 1}) == 2
    assert identity.fresh_target_index({0, 1, 2}) == 3
    with pytest.raises(Unsatisfiable) as info:
        identity.fresh_chassis_nr(1, set(range(256)))
    assert info.value.conflicts == ("every pci-bridge chassisNr 1..255 is taken",)


def test_effective_chassis_is_none_for_non_ports() -> None:
    """Only PCIe root and downstream ports have a chassis, set or by default."""
    t = Topology.build("pc", [Controller(1, "pci-bridge", address=A("00:05.0"))])
    assert identity.effective_chassis(t.model(1), t.controller(1)) is None


def test_bus_regions_split_domain_zero_at_each_bus_nr() -> None:
    """The root owns bus numbers below the lowest busNr; each expander up to the next; the last to the machine's end."""
    t = Topology.build(
        "q35",
        [
            Controller(1, "pcie-expander-bus", address=A("00:05.0"), bus_nr=200),
            Controller(2, "pcie-root-port", address=A("01:00.0"), chassis=2, port=0),
            Controller(3, "pcie-expander-bus", address=A("00:06.0"), bus_nr=100),
            Controller(4, "pcie-expander-bus", address=A("00:07.0")),
        ],
    )
    assert identity.bus_regions(t) == (
        BusRegion(0, 0, 100, 1),
        BusRegion(3, 100, 200, 1),
        BusRegion(1, 200, 256, 2),
    )
    assert identity.bus_regions(t)[2].free == 54


def test_two_expanders_with_one_bus_nr_each_get_the_whole_region() -> None:
    """Expanders sharing a busNr (a violation) are each measured against the region up to the next busNr."""
    t = Topology.build(
        "q35",
        [
            Controller(1, "pcie-expander-bus", address=A("00:05.0"), bus_nr=100),
            Controller(2, "pcie-expander-bus", address=A("00:06.0"), bus_nr=100),
            Controller(3, "pcie-expander-bus", address=A("00:07.0"), bus_nr=150),
        ],
    )
    assert [(r.owner, r.first, r.end) for r in identity.bus_regions(t)] == [
        (0, 0, 100),
        (1, 100, 150),
        (2, 100, 150),
        (3, 150, 256),
    ]
