"""Write small sysfs trees from a compact description, for ``Host.from_sysfs`` and ``host-scan --sysfs``.

A tree is laid out as the kernel lays out ``/sys``: the functions are
directories under ``devices/pciDDDD:BB/`` nested as the PCI hierarchy is, and
``bus/pci/devices/ADDR`` are relative links to them; ``iommu_group`` links to
``kernel/iommu_groups/N``, ``physfn``/``virtfnN`` link VFs and PFs, and
``config`` holds a config space with the PCI Express capability (port type)
and, when given, the ACS extended capability.

>>> import tempfile, pathlib
>>> root = pathlib.Path(tempfile.mkdtemp())
>>> write_tree(root, [RootBus("0000:00", numa=0, children=[Fn("00:02.0", 0x8086, 0x1234, 0x030000, group=1)])])
>>> sorted(p.name for p in (root / "bus/pci/devices").iterdir())
['0000:00:02.0']
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from pcitopo.address import PciAddress

__all__ = ["Fn", "RootBus", "write_tree"]

_PORT_CODES = {
    "endpoint": 0x0,
    "legacy-endpoint": 0x1,
    "root-port": 0x4,
    "upstream-port": 0x5,
    "downstream-port": 0x6,
    "pcie-to-pci-bridge": 0x7,
    "integrated-endpoint": 0x9,
}


@dataclass
class Fn:
    """One PCI function: its address, ids, BARs and what sits below it (if a bridge or port).

    ``bars`` are ``(index, size, kind)`` or ``(index, size, kind, prefetchable)``;
    ``vfs`` asks for that many SR-IOV VFs (``vf_device`` id) at ``vf_offset``
    (routing IDs after the PF) with ``vf_stride``, each in its own group
    counting from ``vf_group``.
    """

    bdf: str
    vendor: int
    device: int
    cls: int
    port: str | None = "endpoint"
    bars: Sequence[tuple[int, int, str] | tuple[int, int, str, bool]] = ()
    group: int | None = None
    acs: int | None = None
    driver: str | None = None
    children: Sequence[Fn] = ()
    vfs: int = 0
    vf_device: int = 0
    vf_offset: int = 16
    vf_stride: int = 1
    vf_group: int = 0
    vf_bars: Sequence[tuple[int, int, str] | tuple[int, int, str, bool]] = ()


@dataclass
class RootBus:
    """A root bus (``pciDDDD:BB``) with the NUMA node of everything on it."""

    name: str
    numa: int = -1
    children: Sequence[Fn] = field(default_factory=list)


def _config(port: str | None, acs: int | None, bridge: bool) -> bytes:
    data = bytearray(4096 if acs is not None else 256)
    data[0x0E] = 1 if bridge else 0  # header type
    if port is not None:
        data[0x06] = 0x10  # capability list
        data[0x34] = 0x40
        data[0x40] = 0x10  # PCI Express capability
        data[0x41] = 0
        data[0x42:0x44] = (2 | (_PORT_CODES[port] << 4)).to_bytes(2, "little")
    if acs is not None:
        data[0x100:0x104] = (0x000D | (1 << 16)).to_bytes(4, "little")
        data[0x104:0x106] = (0x001F).to_bytes(2, "little")
        data[0x106:0x108] = acs.to_bytes(2, "little")
    return bytes(data)


class _Writer:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.next_mem = 0xE000_0000
        self.next_mem64 = 0x1_0000_0000
        self.next_io = 0x1000

    def resource(self, bars: Iterable[tuple[int, int, str] | tuple[int, int, str, bool]]) -> str:
        lines = ["0x0000000000000000 0x0000000000000000 0x0000000000000000"] * 13
        for bar in bars:
            index, size, kind = bar[0], bar[1], bar[2]
            prefetch = len(bar) > 3 and bool(bar[3])
            if kind == "io":
                start, self.next_io = self.next_io, self.next_io + max(size, 4)
                flags = 0x101
            elif kind == "mem64":
                start = -(-self.next_mem64 // size) * size
                self.next_mem64 = start + size
                flags = 0x140204 | (0x2000 if prefetch else 0)
            else:
                start = -(-self.next_mem // size) * size
                self.next_mem = start + size
                flags = 0x40200 | (0x2000 if prefetch else 0)
            lines[index] = f"0x{start:016x} 0x{start + size - 1:016x} 0x{flags:016x}"
        return "\n".join(lines) + "\n"

    def function(
        self,
        parent_dir: Path,
        path_parts: list[str],
        domain: str,
        fn: Fn,
        numa: int,
        physfn: str | None = None,
    ) -> None:
        address = str(PciAddress.parse(fn.bdf if fn.bdf.count(":") == 2 else f"{domain}:{fn.bdf}"))
        d = parent_dir / address
        d.mkdir(parents=True)
        bridge = fn.cls >> 8 in (0x0604, 0x0609)
        (d / "vendor").write_text(f"0x{fn.vendor:04x}\n")
        (d / "device").write_text(f"0x{fn.device:04x}\n")
        (d / "class").write_text(f"0x{fn.cls:06x}\n")
        (d / "numa_node").write_text(f"{numa}\n")
        (d / "resource").write_text(self.resource(fn.bars))
        (d / "config").write_bytes(_config(fn.port, fn.acs, bridge))
        parts = [*path_parts, address]
        link = self.root / "bus" / "pci" / "devices" / address
        link.symlink_to(os.path.join("..", "..", "..", "devices", *parts))
        if fn.group is not None:
            group_dir = self.root / "kernel" / "iommu_groups" / str(fn.group) / "devices"
            group_dir.mkdir(parents=True, exist_ok=True)
            (d / "iommu_group").symlink_to(
                os.path.join(*([".."] * (len(parts) + 1)), "kernel", "iommu_groups", str(fn.group))
            )
            (group_dir / address).symlink_to(os.path.join("..", "..", "..", "..", "devices", *parts))
        if fn.driver is not None:
            driver_dir = self.root / "bus" / "pci" / "drivers" / fn.driver
            driver_dir.mkdir(parents=True, exist_ok=True)
            (d / "driver").symlink_to(os.path.join(*([".."] * (len(parts) + 1)), "bus", "pci", "drivers", fn.driver))
        if physfn is not None:
            (d / "physfn").symlink_to(os.path.join("..", physfn))
        if fn.vfs:
            (d / "sriov_totalvfs").write_text(f"{fn.vfs}\n")
            (d / "sriov_numvfs").write_text(f"{fn.vfs}\n")
            pf = PciAddress.parse(address)
            for n in range(fn.vfs):
                rid = (pf.bus << 8 | pf.devfn) + fn.vf_offset + n * fn.vf_stride
                vf = PciAddress(domain=pf.domain, bus=rid >> 8, slot=(rid >> 3) & 0x1F, function=rid & 7)
                vf_fn = Fn(
                    str(vf),
                    fn.vendor,
                    fn.vf_device,
                    fn.cls,
                    port=fn.port,
                    bars=fn.vf_bars,
                    group=fn.vf_group + n,
                    driver=None,
                )
                self.function(parent_dir, path_parts, domain, vf_fn, numa, physfn=address)
                (d / f"virtfn{n}").symlink_to(os.path.join("..", str(vf)))
        for child in fn.children:
            self.function(d, parts, domain, child, numa)


def write_tree(root: Path, buses: Iterable[RootBus]) -> None:
    """Write a sysfs tree with these root buses under ``root`` (which must be empty or missing)."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "bus" / "pci" / "devices").mkdir(parents=True)
    w = _Writer(root)
    for bus in buses:
        domain = bus.name.split(":")[0]
        top = f"pci{bus.name}"
        for fn in bus.children:
            w.function(root / "devices" / top, [top], domain, fn, bus.numa)
