"""Reference hosts, written from public descriptions of real servers, as compact sysfs descriptions.

Each entry of :data:`HOSTS` is a list of :class:`~tests.support.sysfs.RootBus`
that :func:`tests.support.sysfs.write_tree` turns into a tree ``host-scan
--sysfs`` reads. Vendor and device ids are the ones ``lspci -nn`` prints for
those parts (pci.ids); the bus numbers follow the public ``lspci`` listings of
such machines where they exist, and are otherwise plausible.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from tests.support.sysfs import Fn, RootBus, write_tree

__all__ = ["HOSTS", "write_host"]

# class codes
VGA = 0x030000
GPU_3D = 0x030200
AUDIO = 0x040300
ETHERNET = 0x020000
INFINIBAND = 0x020700
BRIDGE = 0x060400
ACS_ON = 0x001D  # source validation, request redirect, completion redirect, upstream forwarding

_A100: Ids = (0x10DE, 0x20B0, GPU_3D)
_A100_BARS: Bars = ((0, 16 << 20, "mem32"), (1, 64 << 30, "mem64", True), (3, 32 << 20, "mem64", True))
_CX6: Ids = (0x15B3, 0x101B, INFINIBAND)
_CX6_BARS: Bars = ((0, 32 << 20, "mem64", True),)
_PEX88096: Ids = (0x1000, 0xC010, BRIDGE)


Ids = tuple[int, int, int]
Bars = tuple[tuple[int, int, str] | tuple[int, int, str, bool], ...]


def _switch(bus: int, upstream_group: int, endpoints: list[tuple[str, Ids, Bars, int]]) -> Fn:
    """A Broadcom PEX88096 behind an AMD root port: the upstream port on ``bus``, one downstream port per endpoint."""
    downstream = []
    for i, (driver, ids, bars, group) in enumerate(endpoints):
        below = bus + 2 + i
        downstream.append(
            Fn(
                f"{bus + 1:02x}:{i:02x}.0",
                *_PEX88096,
                port="downstream-port",
                acs=ACS_ON,
                group=upstream_group + 1 + i,
                driver="pcieport",
                children=[Fn(f"{below:02x}:00.0", *ids, bars=bars, group=group, driver=driver)],
            )
        )
    return Fn(
        f"{bus:02x}:00.0",
        *_PEX88096,
        port="upstream-port",
        group=upstream_group,
        driver="pcieport",
        children=downstream,
    )


def dgx_a100() -> list[RootBus]:
    """8 A100 GPUs and 8 ConnectX-6 HCAs behind 4 PCIe switches, 2 GPUs + 2 HCAs each, over 2 sockets.

    From NVIDIA's DGX A100 system architecture white paper: two AMD EPYC 7742,
    four PCIe Gen4 switches, each with two A100s and two ConnectX-6 200 Gb/s
    HCAs; switches 0-1 hang off socket 0, 2-3 off socket 1. ACS is on in every
    downstream port, so each GPU and HCA is alone in its IOMMU group.
    """
    buses = []
    group = 10
    for root, numa in ((0x00, 0), (0x40, 0), (0x80, 1), (0xC0, 1)):
        endpoints = [
            ("nvidia", _A100, _A100_BARS, group + 10),
            ("nvidia", _A100, _A100_BARS, group + 11),
            ("mlx5_core", _CX6, _CX6_BARS, group + 12),
            ("mlx5_core", _CX6, _CX6_BARS, group + 13),
        ]
        switch = _switch(root + 1, group + 1, endpoints)
        port = Fn(
            f"{root:02x}:01.1",
            vendor=0x1022,
            device=0x1483,
            cls=BRIDGE,
            port="root-port",
            acs=ACS_ON,
            group=group,
            driver="pcieport",
            children=[switch],
        )
        buses.append(RootBus(f"0000:{root:02x}", numa=numa, children=[port]))
        group += 20
    return buses


def r750xa() -> list[RootBus]:
    """Dell PowerEdge R750xa: 2 Ice Lake-SP sockets, 4 A100 PCIe GPUs each straight on a CPU root port.

    Each Ice Lake-SP PCIe stack is its own root bus with root port ``BB:02.0``;
    two GPUs per socket.
    """
    gpu: Ids = (0x10DE, 0x20F1, GPU_3D)
    bars: Bars = ((0, 16 << 20, "mem32"), (1, 64 << 30, "mem64", True), (3, 32 << 20, "mem64", True))
    buses = []
    for i, (root, numa) in enumerate(((0x16, 0), (0x30, 0), (0xB0, 1), (0xC9, 1))):
        port = Fn(
            f"{root:02x}:02.0",
            vendor=0x8086,
            device=0x347A,
            cls=BRIDGE,
            port="root-port",
            acs=ACS_ON,
            group=40 + 2 * i,
            driver="pcieport",
            children=[Fn(f"{root + 1:02x}:00.0", *gpu, bars=bars, group=41 + 2 * i, driver="nvidia")],
        )
        buses.append(RootBus(f"0000:{root:02x}", numa=numa, children=[port]))
    return buses


def workstation() -> list[RootBus]:
    """A desktop with a GeForce RTX 3080 (VGA 10de:2206 + HDMI audio 10de:1aef) on the CPU's PEG port.

    As on consumer Intel CPUs, the PEG root port 00:01.0 has no ACS, so it
    shares IOMMU group 1 with both GPU functions; the integrated NIC is apart.
    """
    gpu = Fn(
        "01:00.0",
        vendor=0x10DE,
        device=0x2206,
        cls=VGA,
        bars=((0, 16 << 20, "mem32"), (1, 256 << 20, "mem64", True), (3, 32 << 20, "mem64", True), (5, 128, "io")),
        group=1,
        driver="vfio-pci",
    )
    audio = Fn("01:00.1", vendor=0x10DE, device=0x1AEF, cls=AUDIO, bars=((0, 16 << 10, "mem32"),), group=1)
    peg = Fn(
        "00:01.0",
        vendor=0x8086,
        device=0x4C01,
        cls=BRIDGE,
        port="root-port",
        group=1,
        driver="pcieport",
        children=[gpu, audio],
    )
    nic = Fn(
        "00:1f.6",
        vendor=0x8086,
        device=0x15FA,
        cls=ETHERNET,
        port=None,
        bars=((0, 128 << 10, "mem32"),),
        group=9,
        driver="e1000e",
    )
    return [RootBus("0000:00", numa=-1, children=[peg, nic])]


def sriov_nic() -> list[RootBus]:
    """An Intel X710 (8086:1572) port with 8 VFs (8086:154c) enabled, first VF offset 16, stride 1."""
    pf = Fn(
        "3b:00.0",
        vendor=0x8086,
        device=0x1572,
        cls=ETHERNET,
        bars=((0, 8 << 20, "mem64", True), (3, 32 << 10, "mem64", True), (7, 8 * (64 << 10), "mem64", True)),
        group=60,
        driver="i40e",
        vfs=8,
        vf_device=0x154C,
        vf_group=61,
        vf_bars=((0, 64 << 10, "mem64", True), (3, 16 << 10, "mem64", True)),
    )
    port = Fn(
        "3a:00.0",
        vendor=0x8086,
        device=0x2030,
        cls=BRIDGE,
        port="root-port",
        acs=ACS_ON,
        group=59,
        driver="pcieport",
        children=[pf],
    )
    return [RootBus("0000:3a", numa=0, children=[port])]


def switch_no_acs() -> list[RootBus]:
    """A PLX PEX 8747 switch (10b5:8747) without ACS below an ACS root port, two NICs behind it.

    Without ACS in the switch's downstream ports the kernel puts the switch's
    ports and everything below them in one IOMMU group (7).
    """
    plx: Ids = (0x10B5, 0x8747, BRIDGE)
    nic: Ids = (0x8086, 0x1521, ETHERNET)
    nic_bars = ((0, 1 << 20, "mem32"), (3, 16 << 10, "mem32"))
    down = [
        Fn(
            f"03:{i * 8:02x}.0",
            *plx,
            port="downstream-port",
            group=7,
            driver="pcieport",
            children=[Fn(f"{4 + i:02x}:00.0", *nic, bars=nic_bars, group=7, driver="igb")],
        )
        for i in range(2)
    ]
    upstream = Fn("02:00.0", *plx, port="upstream-port", group=7, driver="pcieport", children=down)
    port = Fn(
        "00:03.0",
        vendor=0x8086,
        device=0x6F08,
        cls=BRIDGE,
        port="root-port",
        acs=ACS_ON,
        group=6,
        driver="pcieport",
        children=[upstream],
    )
    return [RootBus("0000:00", numa=0, children=[port])]


def quad_nic() -> list[RootBus]:
    """An Intel I350-T4 (four functions 8086:1521) on an ACS root port, each port in an IOMMU group of its own.

    The I350 has no ACS capability, but Linux's ``pci_quirk_mf_endpoint_acs``
    (drivers/pci/quirks.c) vouches for its functions' isolation, so each port
    is a group (20-23) and can be passed alone: ports 1 and 2 without port 0
    is a host device whose passed functions do not start at 0.
    """
    ports = [
        Fn(
            f"05:00.{f}",
            vendor=0x8086,
            device=0x1521,
            cls=ETHERNET,
            bars=((0, 1 << 20, "mem32"), (2, 32, "io"), (3, 16 << 10, "mem32")),
            group=20 + f,
            driver="igb",
        )
        for f in range(4)
    ]
    port = Fn(
        "00:02.0",
        vendor=0x8086,
        device=0x6F04,
        cls=BRIDGE,
        port="root-port",
        acs=ACS_ON,
        group=19,
        driver="pcieport",
        children=ports,
    )
    return [RootBus("0000:00", numa=0, children=[port])]


HOSTS: dict[str, Callable[[], list[RootBus]]] = {
    "dgx-a100": dgx_a100,
    "r750xa": r750xa,
    "workstation": workstation,
    "sriov-nic": sriov_nic,
    "switch-no-acs": switch_no_acs,
    "quad-nic": quad_nic,
}


def write_host(name: str, root: Path) -> Path:
    """Write the sysfs tree of one reference host under ``root``; return ``root``."""
    write_tree(root, HOSTS[name]())
    return root
