"""Balancing IO BAR bytes between IO windows (``pcitopo.solver._iobalance``), and the plans that need it."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from pcitopo.devices import Device, HotplugNeed, Needs
from pcitopo.errors import Unsatisfiable
from pcitopo.solver import _layout, solve
from pcitopo.solver._iobalance import IoSizes, balance_buses, bus_windows, fill_root
from pcitopo.topology import IO_WINDOW, Topology


def _units(io: IoSizes) -> Counter[int]:
    return Counter(dict(io))


def _check_deal(counts: list[tuple[int, int]], packed: IoSizes, alone: IoSizes, cap: int) -> int:
    """Deal with :func:`balance_buses` and check what it promises: every bus holds its counts, every BAR is dealt
    once, the windows are the buses' own and within ``cap``. The windows."""
    found = balance_buses(counts, packed, alone, cap, reserves=True)
    assert found is not None
    deal, windows = found
    assert len(deal) == len(counts)
    for (n_packed, n_alone), (p, a) in zip(counts, deal, strict=True):
        assert sum(n for _, n in p) == n_packed
        assert sum(n for _, n in a) == n_alone
    assert sum((_units(p) for p, _ in deal), Counter()) == _units(packed)
    dealt = sum((_units(a) for _, a in deal), Counter())
    assert dealt[0] == sum(a for _, a in counts) - sum(n for _, n in alone)  # 0 bytes: the units with no IO BAR
    del dealt[0]
    assert dealt == _units(alone)
    loads = [sum(size * n for size, n in (*p, *a)) for p, a in deal]
    assert windows == sum(bus_windows(load, reserves=True) for load in loads) <= cap
    return windows


def test_the_balanced_deal_fits_where_largest_first_takes_a_window_more() -> None:
    """8 pci-bridges of 31 units alone, 90 rtl8139 (256 bytes), 81 e1000 and 77 pcnet: 30976 bytes, 7.6 windows.
    Largest first, the first buses take 31 rtl8139 each (7936 bytes, two windows): 11 windows; dealt out, 8."""
    counts = [(0, 31)] * 8
    alone: IoSizes = ((256, 90), (64, 81), (32, 77))
    assert _layout.mixed_bus_windows(tuple(counts), (), alone, reserves=True) == 11
    assert _check_deal(counts, (), alone, 8) == 8


def test_packed_and_alone_bars_keep_their_counts_per_bus() -> None:
    """Packed BARs go only to packed places and units alone only to places alone, whatever their sizes."""
    counts = [(16, 25), (8, 28), (0, 31)]
    packed: IoSizes = ((256, 8), (32, 16))
    alone: IoSizes = ((256, 20), (64, 40), (32, 20))  # and 4 units with no IO BAR
    assert _check_deal(counts, packed, alone, 4) <= 4


def test_a_bus_that_overflows_gets_the_window_left() -> None:
    """9 KiB of BARs on 2 buses need 3 windows: with 3 the deal finds them, with 2 none."""
    alone: IoSizes = ((1024, 9),)
    assert _check_deal([(0, 5), (0, 4)], (), alone, 3) == 3
    assert balance_buses([(0, 5), (0, 4)], (), alone, 2, reserves=True) is None


def test_every_bridge_keeps_its_reserved_window() -> None:
    """SeaBIOS gives every pci-bridge a window: 3 buses need 3 even when their bytes fit one."""
    assert balance_buses([(0, 1)] * 3, (), ((32, 3),), 2, reserves=True) is None
    assert balance_buses([(0, 1)] * 3, (), ((32, 3),), 3, reserves=True) == (
        (((), ((32, 1),)), ((), ((32, 1),)), ((), ((32, 1),))),
        3,
    )
    # without the reservation, buses with no IO BAR take none
    assert balance_buses([(0, 1)] * 3, (), ((32, 1),), 1, reserves=False) is not None


def test_counts_that_do_not_match_the_bars_are_an_error() -> None:
    with pytest.raises(ValueError, match="do not match"):
        balance_buses([(2, 0)], ((32, 3),), (), 1, reserves=True)


def test_the_deal_is_deterministic() -> None:
    rng = random.Random(9)
    for _ in range(20):
        buses = rng.randint(2, 8)
        counts = [(8 * rng.randint(0, 2), rng.randint(10, 31)) for _ in range(buses)]
        n_packed = sum(p for p, _ in counts)
        n_alone = sum(a for _, a in counts)
        k = rng.randint(0, n_packed)
        packed: IoSizes = tuple((s, n) for s, n in ((256, k), (32, n_packed - k)) if n)
        j = rng.randint(0, n_alone)
        alone: IoSizes = tuple((s, n) for s, n in ((64, j), (32, n_alone - j)) if n)
        first = balance_buses(counts, packed, alone, 2 * buses, reserves=True)
        assert first == balance_buses(counts, packed, alone, 2 * buses, reserves=True)
        if first is not None:
            _check_deal(counts, packed, alone, 2 * buses)


@pytest.mark.parametrize(
    ("io", "k", "room", "expected"),
    [
        (((256, 20), (64, 10), (32, 10)), 22, 4064, 4064),  # 15 x 256 and 7 x 32: full
        (((256, 20), (64, 10)), 22, 4064, 3904),  # 13 x 256 and 9 x 64 (14 and 8: 4096 bytes)
        (((256, 3), (0, 10)), 5, 4064, 768),  # all the IO, the rest with none
        (((64, 31),), 31, 4064, 1984),
    ],
)
def test_the_root_takes_the_most_bytes_within_its_room(io: IoSizes, k: int, room: int, expected: int) -> None:
    fitted = fill_root(io, k, room)
    assert fitted is not None
    assert sum(n for _, n in fitted) == k
    assert not _units(fitted) - _units(io)  # only units there are
    assert sum(size * n for size, n in fitted) == expected <= room


def test_the_root_cannot_take_more_than_its_room() -> None:
    assert fill_root(((256, 20),), 16, 4064) is None  # 16 x 256 = 4096
    assert fill_root(((256, 20),), 15, 4064) == ((256, 15),)


def _near_budget_mix() -> list[Device]:
    """105 rtl8139 (256-byte IO BARs), 84 e1000 (64) and 89 pcnet (32), interleaved: 35104 bytes, 95% of what pc's
    SeaBIOS maps (8 windows of 4 KiB and 4064 bytes on pci.0: 36832)."""
    kinds = ["rtl8139"] * 105 + ["e1000"] * 84 + ["pcnet"] * 89
    order = sorted(range(len(kinds)), key=lambda i: (i * 7919) % len(kinds))
    return [Device(f"n{j}", kinds[i]) for j, i in enumerate(order)]


def test_a_pc_mix_at_95_percent_of_the_io_bytes_plans_within_the_windows() -> None:
    """Refused before (largest first, pci.0 took 5632 bytes of rtl8139 and the first buses the rest of them); now
    planned with pci.0 at its 4064 bytes and the pci-bridges' buses within SeaBIOS's 8 windows, as the realised
    topology counts them (tests/integration/test_qemu_plans.py boots it)."""
    plan = solve(Topology.build("pc", devices=_near_budget_mix()), "minimal")
    t = plan.topology
    assert set(plan.assigned) == {d.id for d in t.devices}
    assert t.root_io_bytes() <= 4064
    assert sum(t.io_windows().values()) <= (t.io_window_budget() or 0) == 8
    assert t.io_windows_short() == 0
    per_bus = Counter[int]()
    sizes = {"rtl8139": 256, "e1000": 64, "pcnet": 32}
    for d in t.devices:
        assert d.address is not None
        per_bus[d.address.bus] += sizes[d.kind]
    assert sum(-(-b // IO_WINDOW) for bus, b in per_bus.items() if bus) <= 8


def test_over_the_io_bytes_a_mix_is_still_refused() -> None:
    """120 rtl8139, 60 e1000 and 80 pcnet: 37120 bytes, more than pc's 36832, so no packing exists."""
    devices = [Device(f"r{i}", "rtl8139") for i in range(120)]
    devices += [Device(f"e{i}", "e1000") for i in range(60)]
    devices += [Device(f"p{i}", "pcnet", needs=Needs(hotplug=HotplugNeed.ANY)) for i in range(80)]
    with pytest.raises(Unsatisfiable):
        solve(Topology.build("pc", devices=devices), "minimal")


def test_only_requests_with_a_conventional_root_are_searched_again() -> None:
    """The balanced deal is a conventional root's (pc's ``pci.0``, a ``pci-expander-bus``): a q35 request refused is
    not searched a second time for nothing."""
    from pcitopo.solver.solve import _has_conventional_root

    assert _has_conventional_root(Topology.build("pc"))
    assert not _has_conventional_root(Topology.build("q35"))
