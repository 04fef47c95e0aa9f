"""Balancing IO BAR bytes between the 4 KiB IO windows of bridges whose unit counts are fixed.

The firmware sizes a bridge's IO window as the IO BARs on its bus rounded up to
4 KiB (SeaBIOS ``pciinit.c``: ``pci_bios_check_devices`` sums a bus's BARs and
aligns the bridge's window to its 4 KiB granularity; OVMF's PciBus the same), so
how many windows some buses take depends on which BARs share a bus, not only on
their sum. The layout decides how many units each bus holds (packed 8 a slot as
functions, or alone on a slot: ``_layout._pci_packing``) and, by default, deals
their BARs out largest first: the first buses then take the largest BARs, and a
mix whose bytes fit the windows may still need one more (315 rtl8139's 256 bytes
on the first buses, the 32-byte ones on the last).

:func:`balance_buses` deals the same BARs out so that each bus stays within the
windows it is given: largest first, each to the bus with the most room left once
the smallest BARs its other units could take are set aside (a worst-fit
decreasing with look-ahead); when a bus still overflows it is given one more
window and the deal starts again, while the windows last. A heuristic, not a
proof that no packing exists when it fails: the layout keeps its own deal where
that one fits (the plans that planned before are unchanged) and asks for this one
only when the solver found no plan otherwise (:attr:`~pcitopo.solver._layout.Context.balance_io`).
"""

from __future__ import annotations

from collections.abc import Sequence

from pcitopo.topology import IO_WINDOW

IoSizes = tuple[tuple[int, int], ...]
"""IO BARs of some units: ``(bytes, units)`` pairs, largest first (as ``_layout.IoSizes``)."""

BusIo = tuple[tuple[IoSizes, IoSizes], ...]
"""Per bus: the IO BARs of its packed units and of its units alone on a slot (0 bytes: a unit with no IO BAR)."""


def bus_windows(load: int, *, reserves: bool) -> int:
    """The 4 KiB windows a bus with ``load`` bytes of IO BARs takes (``reserves``: the firmware gives a bridge
    with none one window anyway).

    >>> bus_windows(4096, reserves=False), bus_windows(4097, reserves=False), bus_windows(0, reserves=True)
    (1, 2, 1)
    """
    n = -(-load // IO_WINDOW)
    return max(n, 1) if reserves else n


def balance_buses(
    counts: Sequence[tuple[int, int]], packed: IoSizes, alone: IoSizes, cap: int, *, reserves: bool
) -> tuple[BusIo, int] | None:
    """Deal the IO BARs ``packed`` and ``alone`` to buses holding ``counts`` (per bus: packed units, units alone)
    so that they take at most ``cap`` windows in all: per bus the BARs it takes, and the windows (``None``: the
    deal found none; ``alone`` may hold fewer units than the counts: the rest have no IO BAR).

    Each bus is first given one window (none without ``reserves``: a bus with no IO BAR takes none); each BAR,
    largest first, goes to the bus with the most bytes left after it once each of that bus's other free places is
    set aside for the smallest BAR of its kind (ties: the first bus); a bus that overflows gets one more window
    and the deal is made again.

    >>> balance_buses([(0, 4), (0, 4)], (), ((2048, 1), (1024, 3), (512, 4)), 2, reserves=True)
    ((((), ((2048, 1), (512, 3))), ((), ((1024, 3), (512, 1)))), 2)

    (Largest first, the first bus would take 2048 + 3 x 1024 bytes, two windows, and the second 4 x 512: three.)
    >>> balance_buses([(0, 2), (0, 2)], (), ((4096, 4),), 3, reserves=True) is None  # 16 KiB need 4 windows
    True
    """
    n_alone = sum(a for _, a in counts)
    zeros = n_alone - sum(n for _, n in alone)
    if zeros < 0 or sum(p for p, _ in counts) != sum(n for _, n in packed):
        raise ValueError(f"{packed} packed and {alone} alone do not match the buses' counts {list(counts)}")
    items = sorted(
        [(size, 0) for size, n in packed for _ in range(n)] + [(size, 1) for size, n in alone for _ in range(n)],
        key=lambda item: (-item[0], item[1]),
    )
    items += [(0, 1)] * zeros
    smallest = (
        min((size for size, _ in packed), default=0),
        0 if zeros else min((size for size, _ in alone), default=0),
    )
    windows = [1 if reserves else 0 for _ in counts]
    while sum(windows) <= cap:
        deal = _deal(counts, items, smallest, windows)
        over = [load - IO_WINDOW * w for load, w in zip(deal[0], windows, strict=True)]
        worst = max(range(len(over)), key=lambda b: (over[b], -b), default=None)
        if worst is None or over[worst] <= 0:
            used = sum(bus_windows(load, reserves=reserves) for load in deal[0])
            return (deal[1], used) if used <= cap else None
        windows[worst] += 1
    return None


def _deal(
    counts: Sequence[tuple[int, int]], items: Sequence[tuple[int, int]], smallest: tuple[int, int], windows: list[int]
) -> tuple[list[int], BusIo]:
    """One deal of ``items`` (size, kind: 0 packed, 1 alone; largest first) to buses of ``windows`` windows: per
    bus its bytes and its BARs."""
    room = [[p, a] for p, a in counts]
    loads = [0] * len(counts)
    got: list[tuple[dict[int, int], dict[int, int]]] = [({}, {}) for _ in counts]
    for size, kind in items:
        best = -1
        best_left = 0
        for b, free in enumerate(room):
            if not free[kind]:
                continue
            # what the bus has left once this BAR and the smallest BARs of its other free places are in
            left = IO_WINDOW * windows[b] - loads[b] - size
            left -= (free[0] - (kind == 0)) * smallest[0] + (free[1] - (kind == 1)) * smallest[1]
            if best < 0 or left > best_left:
                best, best_left = b, left
        if best < 0:  # pragma: no cover - the counts were checked to match the BARs
            raise ValueError(f"no bus has room for a BAR of {size} bytes")
        room[best][kind] -= 1
        loads[best] += size
        mine = got[best][kind]
        mine[size] = mine.get(size, 0) + 1
    deal = tuple((tuple(sorted(p.items(), reverse=True)), tuple(sorted(a.items(), reverse=True))) for p, a in got)
    return loads, deal


def fill_root(io: IoSizes, k: int, room: int) -> IoSizes | None:
    """The IO BARs of ``k`` of the units ``io`` (0 bytes: no IO BAR) with the most bytes within ``room`` (``None``:
    the ``k`` smallest exceed it): a unit at a time, the largest that leaves room for the smallest of the rest.

    The root bus holds IO BARs beside the bridges' windows up to the firmware's ``root-io`` bytes at no window's
    cost; past it each 4 KiB takes one. Largest first, the root's slots may take more than that while the bridges'
    windows hold less; with the bytes fitted to the room, the bridges take exactly the rest.

    >>> fill_root(((256, 20), (64, 10), (32, 10)), 22, 4064)  # 4064 bytes (the 22 largest: 5632)
    ((256, 15), (32, 7))
    >>> fill_root(((256, 20),), 22, 4064) is None
    True
    """
    left = dict(io)
    chosen: dict[int, int] = {}
    used = 0
    for i in range(k):
        rest = k - i - 1
        for size in sorted((s for s, n in left.items() if n), reverse=True):
            left[size] -= 1
            floor = io_bytes_smallest(left, rest)
            if floor is not None and used + size + floor <= room:
                chosen[size] = chosen.get(size, 0) + 1
                used += size
                break
            left[size] += 1
        else:
            return None
    return tuple(sorted(chosen.items(), reverse=True))


def io_bytes_smallest(units: dict[int, int], k: int) -> int | None:
    """The bytes of the ``k`` smallest of ``units`` (size: count), ``None`` when there are fewer.

    >>> io_bytes_smallest({256: 3, 32: 2}, 3), io_bytes_smallest({32: 1}, 2)
    (320, None)
    """
    total = 0
    for size in sorted(units):
        take = min(k, units[size])
        total += take * size
        k -= take
        if not k:
            break
    return None if k else total
