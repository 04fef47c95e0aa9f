"""Shapes of planned topologies that several test files assert."""

from __future__ import annotations

from pcitopo.topology import Topology


def pci_bridges_held(t: Topology) -> list[int]:
    """How many pci-bridges each pci-bridge or pcie-to-pci-bridge of ``t`` holds, in index order (a chain: 1s, then
    a 0)."""
    held = {c.index: 0 for c in t.controllers if c.model in ("pci-bridge", "pcie-to-pci-bridge")}
    for c in t.controllers:
        if c.model == "pci-bridge" and c.address is not None and c.address.bus in held:
            held[c.address.bus] += 1
    return [held[i] for i in sorted(held)]
