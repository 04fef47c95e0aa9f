"""Measure what SeaBIOS, OVMF and edk2 on aarch64 enumerate and map, and regenerate the calibration tables.

Every number in ``pcitopo/legality/data/firmware/*.toml`` comes from an
experiment here. Each experiment boots a layout of raw ``-device`` options (no
pcitopo code builds them, so the oracle shares nothing with the rules it
calibrates) in QEMU under TCG with no disk, lets the firmware run, reads QMP
``query-pci`` once PCI setup settled (SeaBIOS: its debug log says so; OVMF:
some BAR mapped or bridge numbered, every bridge numbered and nothing changed
for 5 s) and counts the BARs left
unmapped (address -1, expansion ROMs aside). A layout *fits* when none is.
edk2 on aarch64 leaves decoding off on devices no driver claims, so there
the BARs are read from the ECAM and one outside its bridge's window counts as
unmapped.

For each machine x firmware x ACPI setting it finds the largest N that fits
for:

``io-bars``
    N ports (q35: root ports holding an e1000e; pc: pci-bridges holding an
    e1000) whose device has an IO BAR, so each needs a 4 KiB IO window;
``empty-bridges``
    N empty hotplug-capable conventional bridges (q35: a pcie-to-pci-bridge
    behind each of N root ports; pc: pci-bridges on pci.0);
``empty-root-ports``
    N empty pcie-root-ports (q35 and aarch64 virt; up to 28);
``root-io`` (ACPI on only)
    beside the ``io-windows`` ports of the firmware file, N rtl8139 (256
    bytes of IO BAR each) on the root bus: the root bus's IO BARs share the
    firmware's IO aperture with the bridge windows;

and the largest 64-bit BAR that maps by default (``large-bar64``: one
ivshmem-plain whose shared memory is 2^k GiB, a 64-bit prefetchable BAR of
that size, up to 1 TiB, counted as mapped only when it ends within the
guest CPU's 40 physical address bits). The OVMF experiments are slow under TCG (20-40 s a
boot), so a full run takes about 15 minutes on a 2-core machine.

``--mmio`` measures the memory budgets instead (``benchmarks/results/mmio.json``,
``docs/firmware_mmio_table.inc``): ``mmio32``, how many secondary-vgas with a
64 MiB 32-bit BAR fit on the root bus (pc at 256 MiB and 4 GiB of RAM: its
hole moves), and on q35 how many empty hotplug root ports fit beside the most
that fit; ``ovmf-knob``, a 128-512 GiB ivshmem-plain under OVMF with
``opt/ovmf/X-PciMmio64Mb`` unset or set, and one empty port beside.

``--facts`` boots the named single layouts the firmware files cite
(``reservations``, ``reservations-overflow``, ``idle-reservations``,
``io-reserve``, ``hotplug-off``, ``empty-dmi-bridges``, ...) and prints
each outcome with the windows the first bridges got.

Usage::

    python benchmarks/calibrate_firmware.py                 # every experiment
    python benchmarks/calibrate_firmware.py --firmware seabios --machine q35
    python benchmarks/calibrate_firmware.py --update-docs   # rewrite docs/firmware_table.inc
    python benchmarks/calibrate_firmware.py --facts         # the single experiments (about 6 minutes)
    python benchmarks/calibrate_firmware.py --from-json benchmarks/results/firmware.json --update-docs
    python benchmarks/calibrate_firmware.py --mmio --update-docs  # the 32-bit hole and OVMF's knob (~8 min)
    python benchmarks/calibrate_firmware.py --mmio --from-json benchmarks/results/mmio.json --update-docs

Results go to ``benchmarks/results/firmware.json`` and the table is printed.
It needs QEMU 7.2 (``qemu-system-x86``, ``qemu-system-arm``), ``seabios``, ``ovmf`` and
``qemu-efi-aarch64`` from Debian.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pcitopo.legality.firmware import Firmware  # noqa: E402
from pcitopo.qemu._qmp import Qemu, QemuError, find_binary  # noqa: E402
from pcitopo.qemu.verify import _read_bars, firmware_args, settle_pci  # noqa: E402

Layout = Callable[[int], list[str]]

RESULTS = ROOT / "benchmarks" / "results" / "firmware.json"
TABLE = ROOT / "docs" / "firmware_table.inc"
MMIO_RESULTS = ROOT / "benchmarks" / "results" / "mmio.json"
MMIO_TABLE = ROOT / "docs" / "firmware_mmio_table.inc"
GIB = 1 << 30
PHYS_BITS = 40
"""The physical address width of QEMU's default TCG CPU (qemu64): a BAR ending above 2^40 is unreachable."""


def _rp(i: int) -> str:
    return f"pcie-root-port,id=rp{i},bus=pcie.0,chassis={i + 1},addr={2 + i:#x}"


def _pcb(i: int) -> str:
    return f"pci-bridge,id=br{i},bus=pci.0,chassis_nr={i + 1},addr={3 + i:#x}"


LAYOUTS: dict[tuple[str, str], Layout] = {
    ("q35", "io-bars"): lambda n: [d for i in range(n) for d in (_rp(i), f"e1000e,id=n{i},bus=rp{i}")],
    ("q35", "empty-bridges"): lambda n: [d for i in range(n) for d in (_rp(i), f"pcie-pci-bridge,id=b{i},bus=rp{i}")],
    ("q35", "empty-root-ports"): lambda n: [_rp(i) for i in range(n)],
    ("pc", "io-bars"): lambda n: [d for i in range(n) for d in (_pcb(i), f"e1000,id=n{i},bus=br{i},addr=0x1")],
    ("pc", "empty-bridges"): lambda n: [_pcb(i) for i in range(n)],
}
LAYOUTS[("aarch64-virt", "io-bars")] = LAYOUTS[("q35", "io-bars")]
LAYOUTS[("aarch64-virt", "empty-bridges")] = LAYOUTS[("q35", "empty-bridges")]
LAYOUTS[("aarch64-virt", "empty-root-ports")] = LAYOUTS[("q35", "empty-root-ports")]
CAPS = {"q35": 28, "pc": 28, "aarch64-virt": 28}
"""The largest N tried (q35 has 30 free slots on pcie.0; pc about as many)."""
QEMU: dict[str, tuple[str, str, list[str]]] = {
    "q35": ("qemu-system-x86_64", "q35", []),
    "pc": ("qemu-system-x86_64", "pc", []),
    "aarch64-virt": ("qemu-system-aarch64", "virt", ["-cpu", "cortex-a57"]),
}
"""Each machine's QEMU binary, -machine name and extra options."""


def root_io_layout(machine: str, windows: int, n: int) -> list[str]:
    """``windows`` ports whose device has an IO BAR, then ``n`` rtl8139 (256 bytes of IO BAR) on the root bus."""
    layout = LAYOUTS[(machine, "io-bars")](windows)
    first = windows + (3 if machine == "pc" else 2)
    return layout + [
        f"rtl8139,id=r{i},bus={'pci.0' if machine == 'pc' else 'pcie.0'},addr={first + i:#x}" for i in range(n)
    ]


def _e1000e(i: int, extra: str = "") -> list[str]:
    return [_rp(i) + extra, f"e1000e,id=n{i},bus=rp{i}"]


def _empty(first: int, n: int, extra: str = "") -> list[str]:
    return [_rp(i) + extra for i in range(first, first + n)]


def _e1000e_ports(n: int) -> list[str]:
    return [d for i in range(n) for d in _e1000e(i)]


def _tiny(bus: str) -> list[str]:
    return [f"pvpanic-pci,id=p,bus={bus},addr=0x3", f"virtio-net-pci,id=v,bus={bus},addr=0x4"]


FACTS: dict[str, tuple[str, str, list[str]]] = {
    # name: (machine, firmware, devices); the firmware files cite these names
    "reservations (one empty root port)": ("q35", "ovmf", _empty(0, 1)),
    "reservations-overflow (9 e1000e ports, then an empty port)": ("q35", "ovmf", _e1000e_ports(9) + _empty(9, 1)),
    "reservations-overflow (an empty port, then 9 e1000e ports)": (
        "q35",
        "ovmf",
        _empty(0, 1) + [d for i in range(1, 10) for d in _e1000e(i)],
    ),
    "reservations-overflow (1 e1000e port, then 12 empty ports)": ("q35", "ovmf", _e1000e(0) + _empty(1, 12)),
    "reservations (an e1000e port and two ports holding a virtio-net each)": (
        "q35",
        "ovmf",
        [*_e1000e(0), _rp(1), "virtio-net-pci,id=v1,bus=rp1", _rp(2), "virtio-net-pci,id=v2,bus=rp2"],
    ),
    "idle-reservations (20 empty ports and a virtio-net port)": (
        "q35",
        "ovmf",
        [*_empty(0, 20), _rp(20), "virtio-net-pci,id=v,bus=rp20"],
    ),
    "io-reserve (9 e1000e ports, 10 empty ports with io-reserve=0)": (
        "q35",
        "ovmf",
        _e1000e_ports(9) + _empty(9, 10, ",io-reserve=0"),
    ),
    "hotplug-off (9 e1000e ports, 10 empty ports with hotplug=off)": (
        "q35",
        "ovmf",
        _e1000e_ports(9) + _empty(9, 10, ",hotplug=off"),
    ),
    "io-reserve (9 e1000e ports, then a virtio-net port)": (
        "q35",
        "ovmf",
        [*_e1000e_ports(9), _rp(9), "virtio-net-pci,id=v9,bus=rp9"],
    ),
    "io-reserve (9 e1000e ports, then a virtio-net port with io-reserve=0)": (
        "q35",
        "ovmf",
        [*_e1000e_ports(9), _rp(9) + ",io-reserve=0", "virtio-net-pci,id=v9,bus=rp9"],
    ),
    "io-reserve (8 e1000e ports, 3 virtio-net ports and an empty port, all 4 with io-reserve=0)": (
        "q35",
        "ovmf",
        _e1000e_ports(8)
        + [d for i in range(8, 11) for d in (_rp(i) + ",io-reserve=0", f"virtio-net-pci,id=v{i},bus=rp{i}")]
        + _empty(11, 1, ",io-reserve=0"),
    ),
    "io-reserve (8 e1000e ports, 3 virtio-net ports and an empty port)": (
        "q35",
        "ovmf",
        _e1000e_ports(8)
        + [d for i in range(8, 11) for d in (_rp(i), f"virtio-net-pci,id=v{i},bus=rp{i}")]
        + _empty(11, 1),
    ),
    "io-reserve (a virtio-net port and an empty port with io-reserve=0, then 9 e1000e ports)": (
        "q35",
        "ovmf",
        [_rp(0) + ",io-reserve=0", "virtio-net-pci,id=v0,bus=rp0", *_empty(1, 1, ",io-reserve=0")]
        + [d for i in range(2, 11) for d in _e1000e(i)],
    ),
    "io-reserve (8 e1000 pci-bridges, then an empty pci-bridge with io-reserve=0)": (
        "pc",
        "seabios",
        [*LAYOUTS["pc", "io-bars"](8), _pcb(8) + ",io-reserve=0"],
    ),
    "io-reserve (8 e1000 pci-bridges, then an empty pci-bridge)": (
        "pc",
        "seabios",
        [*LAYOUTS["pc", "io-bars"](8), _pcb(8)],
    ),
    "io-reserve (3 e1000 pci-bridges, then an empty pci-bridge)": (
        "pc",
        "ovmf",
        [*LAYOUTS["pc", "io-bars"](3), _pcb(3)],
    ),
    "io-reserve (3 e1000 pci-bridges, then an empty pci-bridge with io-reserve=0)": (
        "pc",
        "ovmf",
        [*LAYOUTS["pc", "io-bars"](3), _pcb(3) + ",io-reserve=0"],
    ),
    "io-reserve (14 e1000e ports, then a port holding an empty pcie-to-pci-bridge, io-reserve=0)": (
        "q35",
        "seabios",
        [d for i in range(14) for d in _e1000e(i)] + [_rp(14) + ",io-reserve=0", "pcie-pci-bridge,id=p2p,bus=rp14"],
    ),
    "io-reserve (14 empty ports with io-reserve=4096)": ("q35", "seabios", _empty(0, 14, ",io-reserve=4096")),
    "io-reserve (15 empty ports with io-reserve=4096)": ("q35", "seabios", _empty(0, 15, ",io-reserve=4096")),
    "io-reserve aarch64 (16 e1000e ports, then a virtio-net port)": (
        "aarch64-virt",
        "edk2-aarch64",
        [*_e1000e_ports(16), _rp(16), "virtio-net-pci,id=v16,bus=rp16"],
    ),
    "io-reserve aarch64 (16 e1000e ports, then a virtio-net port with io-reserve=0)": (
        "aarch64-virt",
        "edk2-aarch64",
        [*_e1000e_ports(16), _rp(16) + ",io-reserve=0", "virtio-net-pci,id=v16,bus=rp16"],
    ),
    "io-reserve aarch64 (a virtio-net port with io-reserve=0, then 16 e1000e ports)": (
        "aarch64-virt",
        "edk2-aarch64",
        [_rp(0) + ",io-reserve=0", "virtio-net-pci,id=v0,bus=rp0", *[d for i in range(1, 17) for d in _e1000e(i)]],
    ),
    "io-reserve aarch64 (15 e1000e ports, 3 empty ports with io-reserve=0)": (
        "aarch64-virt",
        "edk2-aarch64",
        _e1000e_ports(15) + _empty(15, 3, ",io-reserve=0"),
    ),
    "empty-dmi-bridges (20)": (
        "q35",
        "seabios",
        [f"i82801b11-bridge,id=dmi{i},bus=pcie.0,addr={2 + i:#x}" for i in range(20)],
    ),
    # pvpanic-pci's BAR0 is 2 bytes: sized, it answers 0xfffffffe, whose memory type bits read as reserved
    "tiny-bar q35 ovmf (a pvpanic-pci, 2-byte BAR0, and a virtio-net)": ("q35", "ovmf", _tiny("pcie.0")),
    "tiny-bar pc ovmf (a pvpanic-pci, 2-byte BAR0, and a virtio-net)": ("pc", "ovmf", _tiny("pci.0")),
    "tiny-bar aarch64 (a pvpanic-pci, 2-byte BAR0, and a virtio-net)": (
        "aarch64-virt",
        "edk2-aarch64",
        _tiny("pcie.0"),
    ),
    "tiny-bar q35 seabios (a pvpanic-pci, 2-byte BAR0, and a virtio-net)": ("q35", "seabios", _tiny("pcie.0")),
    "tiny-bar pc seabios (a pvpanic-pci, 2-byte BAR0, and a virtio-net)": ("pc", "seabios", _tiny("pci.0")),
    "nested-bridges (15 empty pci-bridges behind one pcie-to-pci-bridge)": (
        "q35",
        "seabios",
        [_rp(0), "pcie-pci-bridge,id=p2p,bus=rp0"]
        + [f"pci-bridge,id=b{i},bus=p2p,chassis_nr={i + 2},addr={1 + i:#x}" for i in range(15)],
    ),
}


def _windows(answer: list[dict[str, Any]]) -> list[str]:
    """Each bridge's windows, as ``name: io BASE+SIZE, memory ..., prefetchable ...``."""
    out = []

    def walk(devs: list[dict[str, Any]]) -> None:
        for d in devs:
            b = d.get("pci_bridge")
            if not b:
                continue
            parts = []
            for key in ("io_range", "memory_range", "prefetchable_range"):
                r = b.get("bus", {}).get(key) or {}
                if "base" in r and 0 <= r["base"] <= r["limit"]:
                    parts.append(f"{key.split('_')[0]} {r['base']:#x}+{r['limit'] - r['base'] + 1:#x}")
            out.append(f"{d.get('qdev_id') or d['slot']}: {', '.join(parts) or 'no windows'}")
            walk(b.get("devices", []))

    for root in answer:
        walk(root.get("devices", []))
    return out


class Booter:
    """Boots layouts and remembers each outcome (a boot costs seconds to tens of seconds)."""

    def __init__(self, *, verbose: bool) -> None:
        self.verbose = verbose
        self.boots = 0
        self.seconds = 0.0

    def boot(
        self, machine: str, fw: Firmware, acpi: bool, devices: list[str], extra: list[str] | None = None
    ) -> dict[str, Any]:
        """Boot once (a second time if QEMU failed to start, as it may on a loaded machine)."""
        try:
            return self._boot(machine, fw, acpi, devices, extra)
        except QemuError as exc:
            print(f"    QEMU failed ({exc}); once more", file=sys.stderr)
            return self._boot(machine, fw, acpi, devices, extra)

    def _boot(
        self, machine: str, fw: Firmware, acpi: bool, devices: list[str], extra: list[str] | None = None
    ) -> dict[str, Any]:
        """Boot once; the outcome: settled, unmapped BARs, the firmware's complaint, the devices seen."""
        binary_name, machine_name, machine_extra = QEMU[machine]
        binary = find_binary(binary_name)
        if binary is None:
            raise SystemExit(f"{binary_name} not found (apt-get install qemu-system-x86 qemu-system-arm)")
        memory = [] if "-m" in (extra or []) else ["-m", "256"]
        args = ["-machine", machine_name + ("" if acpi else ",acpi=off"), *machine_extra]
        args += [*memory, "-nodefaults", "-display", "none", "-S", "-accel", "tcg"]
        if machine != "aarch64-virt":
            args += ["-chardev", "file,id=fw,path=fw.log", "-device", "isa-debugcon,iobase=0x402,chardev=fw"]
        args += firmware_args(fw) + list(extra or [])
        for d in devices:
            args += ["-device", d]
        start = time.monotonic()
        spec = fw.for_machine(machine)
        with Qemu(binary, args, timeout=30) as vm:
            vm.execute("cont")
            if fw.efi:
                answer, settled = settle_pci(vm, 90.0)
                if not fw.bars_decoded and spec is not None and spec.ecam is not None:
                    _read_bars(vm, answer, spec.ecam)
                    _unmap_outside(answer)
            else:
                log_path = Path(vm.dir or ".") / "fw.log"
                deadline = time.monotonic() + 15
                settled = False
                while time.monotonic() < deadline and not settled:
                    text = log_path.read_text(errors="replace") if log_path.exists() else ""
                    settled = "cpu(s)" in text or "PCI: out of" in text
                    time.sleep(0.1)
                answer = vm.execute("query-pci")
            log_path = Path(vm.dir or ".") / "fw.log"
            log = log_path.read_text(errors="replace") if log_path.exists() else ""
        self.boots += 1
        self.seconds += time.monotonic() - start
        unmapped: list[str] = []
        bars: dict[str, list[dict[str, Any]]] = {}

        def walk(devs: list[dict[str, Any]]) -> None:
            for d in devs:
                name = str(d.get("qdev_id") or f"{d['bus']:02x}:{d['slot']:02x}.{d['function']}")
                regions = [r for r in d.get("regions", []) if r.get("bar") != 6]
                bars[name] = regions
                unmapped.extend(f"{name} BAR{r['bar']}" for r in regions if r.get("address") == -1)
                if d.get("pci_bridge"):
                    walk(d["pci_bridge"].get("devices", []))

        for root in answer:
            walk(root.get("devices", []))
        out = {
            "windows": _windows(answer),
            "settled": settled,
            "unmapped": unmapped,
            "out_of_space": sorted({line.strip() for line in log.splitlines() if "PCI: out of" in line}),
            "bars": bars,
            "seconds": round(time.monotonic() - start, 1),
        }
        if self.verbose:
            print(
                f"    {machine} {fw.name} acpi={acpi} {len(devices)} devices: unmapped {len(unmapped)}", file=sys.stderr
            )
        return out


def _unmap_outside(answer: list[dict[str, Any]]) -> None:
    """Mark -1 every BAR read from the ECAM that lies outside its bridge's window of its kind (edk2 dropped it)."""

    def walk(devs: list[dict[str, Any]], windows: dict[str, tuple[int, int]] | None) -> None:
        for d in devs:
            for r in d.get("regions", []):
                if windows is None or r.get("bar") == 6 or r.get("address") == -1:
                    continue
                kind = "io" if r.get("type") == "io" else "memory" if not r.get("prefetch") else "pref"
                spans = [windows[k] for k in ((kind, "memory") if kind == "pref" else (kind,)) if k in windows]
                start, end = int(r["address"]), int(r["address"]) + int(r.get("size", 0)) - 1
                if not any(base <= start and end <= limit for base, limit in spans):
                    r["address"] = -1
            bridge = d.get("pci_bridge")
            if bridge:
                bus = bridge.get("bus", {})
                inner = {
                    kind: (int(w["base"]), int(w["limit"]))
                    for key, kind in (("io_range", "io"), ("memory_range", "memory"), ("prefetchable_range", "pref"))
                    if (w := bus.get(key) or {}) and 0 <= w.get("base", -1) <= w.get("limit", -1)
                }
                walk(bridge.get("devices", []), inner)

    for root in answer:
        walk(root.get("devices", []), None)


def fits(outcome: dict[str, Any]) -> bool:
    return bool(outcome["settled"]) and not outcome["unmapped"] and not outcome["out_of_space"]


def largest_fitting(boot: Callable[[int], bool], hint: int, cap: int) -> dict[str, Any]:
    """The largest N in 0..cap that fits (fits(N) is monotone in these layouts), in few boots.

    Tries ``hint`` and ``hint + 1`` first (the current data's number: two boots
    confirm it), then ``cap``, then bisects.
    """
    tried: dict[int, bool] = {}

    def ok(n: int) -> bool:
        if n not in tried:
            tried[n] = boot(n)
        return tried[n]

    hint = max(0, min(hint, cap))
    if ok(hint):
        low, high = hint, cap + 1  # low fits, high does not (cap + 1: never tried)
        if hint < cap:
            if not ok(hint + 1):
                high = hint + 1
            elif ok(cap):
                low = cap
            else:
                low, high = hint + 1, cap
    else:
        low, high = -1, hint
    while high - low > 1 and low < cap:
        mid = (low + high) // 2
        if ok(mid):
            low = mid
        else:
            high = mid
    return {"fits": low, "capped": low == cap, "tried": {str(k): v for k, v in sorted(tried.items())}}


def measure(machines: list[str], firmwares: list[str], *, verbose: bool) -> dict[str, Any]:
    booter = Booter(verbose=verbose)
    rows: list[dict[str, Any]] = []
    for machine in machines:
        for name in firmwares:
            fw = Firmware.named(name)
            spec = fw.for_machine(machine)
            if spec is None:
                continue  # this firmware does not boot this machine
            for acpi in (True, False):
                row: dict[str, Any] = {"machine": machine, "firmware": name, "acpi": acpi}
                if fw.efi and not acpi and machine == "pc":
                    probe = booter.boot(machine, fw, acpi, [])
                    row["boots"] = bool(probe["settled"])
                    if not probe["settled"]:
                        rows.append(row)
                        print(json.dumps(row), file=sys.stderr)
                        continue
                for experiment in ("io-bars", "empty-bridges", "empty-root-ports"):
                    layout = LAYOUTS.get((machine, experiment))
                    if layout is None:
                        continue
                    hint = (spec.io_windows if acpi else spec.io_windows_without_acpi) if spec else 8
                    if experiment == "empty-root-ports":
                        hint = CAPS[machine]

                    def boot(
                        n: int, layout: Layout = layout, acpi: bool = acpi, fw: Firmware = fw, machine: str = machine
                    ) -> bool:
                        return fits(booter.boot(machine, fw, acpi, layout(n)))

                    row[experiment] = largest_fitting(boot, hint, CAPS[machine])
                if acpi:
                    if machine != "aarch64-virt":  # the ivshmem BAR experiment is x86's (QEMU's 40 bits)
                        row["large-bar64"] = _largest_bar(booter, machine, fw)
                    row["root-io"] = _root_io(booter, machine, fw, spec.io_windows)
                rows.append(row)
                print(json.dumps(row), file=sys.stderr)
    return {
        "qemu": {m: QEMU[m][0] for m in machines},
        "boots": booter.boots,
        "boot_seconds": round(booter.seconds, 1),
        "rows": rows,
    }


def _root_io(booter: Booter, machine: str, fw: Firmware, windows: int) -> dict[str, Any]:
    """The most rtl8139 (256 bytes of IO BAR each) on the root bus beside ``windows`` IO-BAR ports."""
    cap = 29 - windows - (1 if machine == "pc" else 0)
    cap = min(cap, 16)

    def boot(n: int) -> bool:
        return fits(booter.boot(machine, fw, True, root_io_layout(machine, windows, n)))

    found = largest_fitting(boot, 15 if fw.name != "edk2-aarch64" else 0, cap)
    return {"windows": windows, **found, "bytes": 256 * max(found["fits"], 0)}


def _largest_bar(booter: Booter, machine: str, fw: Firmware) -> dict[str, Any]:
    """The largest 2^k GiB ivshmem-plain BAR (4 GiB .. 1 TiB) that maps with the firmware's defaults."""
    tried: dict[str, Any] = {}
    best = 0
    for k in range(2, 11):
        size = (1 << k) * GIB
        with tempfile.TemporaryDirectory() as tmp:
            backend = f"memory-backend-file,id=shm,mem-path={tmp}/shm,share=on,size={size >> 30}G"
            if machine == "q35":
                devices = [_rp(0), "ivshmem-plain,id=iv,bus=rp0,memdev=shm"]
            else:
                devices = ["ivshmem-plain,id=iv,bus=pci.0,addr=0x5,memdev=shm"]
            outcome = booter.boot(machine, fw, True, devices, ["-object", backend])
        bar2 = next((r for r in outcome["bars"].get("iv", []) if r.get("bar") == 2), None)
        address = None if bar2 is None or bar2.get("address") == -1 else int(bar2["address"])
        reachable = address is not None and address + size <= 1 << PHYS_BITS
        ok = fits(outcome) and reachable
        tried[f"{size >> 30}G"] = {"fits": ok, "address": None if address is None else hex(address)}
        if not ok:
            break
        best = size
    return {"largest": best, "tried": tried}


# -- MMIO: the 32-bit hole and the 64-bit window -------------------------------------------

VGA_MB = 64
"""Each secondary-vga of the mmio32 experiment has a 64 MiB 32-bit prefetchable BAR0 (its vgamem_mb)."""


def _vga(i: int, machine: str) -> str:
    bus = "pcie.0" if machine == "q35" else "pci.0"
    return f"secondary-vga,id=vga{i},bus={bus},addr={3 + i:#x},vgamem_mb={VGA_MB},romfile="


def _ports(first: int, n: int) -> list[str]:
    """n empty hotplug root ports, 8 functions a slot, from slot 0x18 down (out of the VGAs' way)."""
    out = []
    for i in range(n):
        slot, fn = 0x1E - i // 8, i % 8
        mf = ",multifunction=on" if fn == 0 else ""
        out.append(f"pcie-root-port,id=p{i},bus=pcie.0,chassis={first + i},addr={slot:#x}.{fn}{mf}")
    return out


def _mmio32(booter: Booter, machine: str, fw: Firmware, memory: int) -> dict[str, Any]:
    """How many 64 MiB 32-bit BARs fit on the root bus, and then how many empty root ports beside them."""

    def boot(n: int, ports: int = 0) -> bool:
        devices = [_vga(i, machine) for i in range(n)] + (_ports(100, ports) if ports else [])
        return fits(booter.boot(machine, fw, True, devices, ["-m", str(memory)]))

    vgas = largest_fitting(boot, 14, 26)
    row: dict[str, Any] = {"memory_mib": memory, "vga64": vgas}
    if machine == "q35" and vgas["fits"] > 0:
        n = vgas["fits"]
        row["ports_beside"] = largest_fitting(lambda k: boot(n, k), 16, 64)
    return row


KNOB_FACTS = [
    # (GiB of ivshmem-plain behind a root port, OVMF's X-PciMmio64Mb or None, empty root ports beside it)
    (256, 262144, 0),
    (512, 524288, 0),
    (512, 1048576, 0),
    (128, None, 1),
]
"""The 64-bit window experiments under OVMF on q35 (``mmio64-max``, and reservations counting against it)."""


def _knob_fact(booter: Booter, gib: int, knob: int | None, ports: int) -> dict[str, Any]:
    fw = Firmware.named("ovmf")
    with tempfile.TemporaryDirectory() as tmp:
        extra = ["-object", f"memory-backend-file,id=shm,mem-path={tmp}/shm,share=on,size={gib}G"]
        if knob is not None:
            extra += ["-fw_cfg", f"name={fw.mmio64_knob},string={knob}"]
        devices = [_rp(0), "ivshmem-plain,id=iv,bus=rp0,memdev=shm"] + [_rp(i) for i in range(1, 1 + ports)]
        outcome = booter.boot("q35", fw, True, devices, extra)
    bar2 = next((r for r in outcome["bars"].get("iv", []) if r.get("bar") == 2), None)
    address = None if bar2 is None or bar2.get("address") == -1 else hex(bar2["address"])
    return {"gib": gib, "knob": knob, "ports": ports, "fits": fits(outcome), "address": address,
            "unmapped": len(outcome["unmapped"])}  # fmt: skip


def measure_mmio(machines: list[str], firmwares: list[str], *, verbose: bool) -> dict[str, Any]:
    """The mmio32 experiment for each machine x firmware (pc at 256 MiB and 4 GiB of RAM: its hole moves)."""
    booter = Booter(verbose=verbose)
    rows = []
    for machine in machines:
        for name in firmwares:
            fw = Firmware.named(name)
            for memory in (256, 4096) if machine == "pc" else (256,):
                row = {"machine": machine, "firmware": name, **_mmio32(booter, machine, fw, memory)}
                rows.append(row)
                print(json.dumps(row), file=sys.stderr)
    knobs = [_knob_fact(booter, *fact) for fact in KNOB_FACTS] if "ovmf" in firmwares and "q35" in machines else []
    return {"boots": booter.boots, "boot_seconds": round(booter.seconds, 1), "rows": rows, "ovmf_knob": knobs}


def mmio_table(results: dict[str, Any]) -> str:
    """The MMIO calibration table (the 32-bit hole and OVMF's 64-bit knob), as reStructuredText."""
    header = ["machine", "firmware", "RAM", "64 MiB 32-bit BARs that map", "empty hotplug ports beside them"]
    lines = [", ".join(f'"{h}"' for h in header)]
    for row in results["rows"]:
        beside = row.get("ports_beside")
        cells = [
            row["machine"],
            row["firmware"],
            f"{row['memory_mib']} MiB",
            _count(row["vga64"]),
            _count(beside) if beside else "",
        ]
        lines.append(", ".join(f'"{c}"' for c in cells))
    knob = ["BAR (GiB)", "X-PciMmio64Mb", "empty ports beside", "maps", "at"]
    klines = [", ".join(f'"{h}"' for h in knob)]
    for k in results.get("ovmf_knob", []):
        cells = [str(k["gib"]), str(k["knob"] or "(default)"), str(k["ports"]), "yes" if k["fits"] else "no"]
        klines.append(", ".join(f'"{c}"' for c in [*cells, k["address"] or ""]))
    return (
        ".. This table is generated by benchmarks/calibrate_firmware.py --mmio --update-docs; do not edit.\n\n"
        ".. csv-table:: The 32-bit hole: secondary-vgas (64 MiB 32-bit BAR) on the root bus, then hotplug "
        "root ports\n   :header-rows: 1\n\n"
        + "\n".join(f"   {line}" for line in lines)
        + "\n\n.. csv-table:: OVMF's 64-bit window on q35: an ivshmem-plain behind a root port\n"
        "   :header-rows: 1\n\n"
        + "\n".join(f"   {line}" for line in klines)
        + f"\n\nMeasured with {results['boots']} boots.\n"
    )


def _gib(size: int) -> str:
    return f"{size >> 30} GiB" if size else "under 4 GiB (4 GiB does not map)"


def _count(entry: dict[str, Any] | None) -> str:
    if entry is None:
        return "n/a"
    if entry["fits"] < 0:
        return "0: even the built-in devices' BARs stay unmapped"
    return f"{entry['fits']}+ (none failed)" if entry["capped"] else str(entry["fits"])


def _root_bytes(entry: dict[str, Any] | None) -> str:
    if entry is None:
        return "(ACPI on only)"
    if entry["fits"] < 0:
        return f"none: the {entry['windows']} windows do not fit"
    more = "" if entry["capped"] else f" ({entry['bytes'] + 256} do not)"
    return f"{entry['bytes']}{more}"


def table(results: dict[str, Any]) -> str:
    """The calibration table, as reStructuredText."""
    header = [
        "machine",
        "firmware",
        "ACPI",
        "IO-BAR devices",
        "empty bridges",
        "empty root ports",
        "root-bus IO bytes beside the IO-BAR devices",
        "largest 64-bit BAR",
    ]
    lines = [", ".join(f'"{h}"' for h in header)]
    for row in results["rows"]:
        if row.get("boots") is False:
            cells = [row["machine"], row["firmware"], "off", "does not boot", "", "", "", ""]
        else:
            bar = row.get("large-bar64")
            cells = [
                row["machine"],
                row["firmware"],
                "on" if row["acpi"] else "off",
                _count(row.get("io-bars")),
                _count(row.get("empty-bridges")),
                _count(row.get("empty-root-ports")),
                _root_bytes(row.get("root-io")) if row["acpi"] else "(ACPI on only)",
                _gib(bar["largest"]) if bar else "(ACPI on only)" if not row["acpi"] else "not measured",
            ]
        lines.append(", ".join(f'"{c}"' for c in cells))
    body = "\n".join(f"   {line}" for line in lines)
    return (
        ".. This table is generated by benchmarks/calibrate_firmware.py --update-docs; do not edit.\n\n"
        ".. csv-table:: What fits, measured in QEMU 7.2 with Debian 12's SeaBIOS 1.16.2, OVMF 2022.11 and "
        "edk2 2022.11 for aarch64\n"
        "   :header-rows: 1\n\n"
        f"{body}\n\n"
        f"Measured with {results['boots']} boots ({results['boot_seconds']:.0f} s of QEMU under TCG).\n"
    )


def facts(only: str | None = None) -> int:
    """Boot every layout of FACTS (those whose name contains ``only``) and print what the firmware made of it."""
    booter = Booter(verbose=False)
    for name, (machine, fw, devices) in FACTS.items():
        if only is not None and only not in name:
            continue
        outcome = booter.boot(machine, Firmware.named(fw), True, devices)
        lost = outcome["unmapped"]
        named = ", ".join(lost[:4]) + (", ..." if len(lost) > 4 else "")
        verdict = "fits" if fits(outcome) else f"{len(lost)} BARs unmapped ({named})"
        print(f"{name} [{machine}, {fw}]: {verdict}", flush=True)
        for line in outcome["windows"][:3]:
            print(f"    {line}", flush=True)
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--machine", action="append", choices=("q35", "pc", "aarch64-virt"), help="only this machine (repeatable)"
    )
    parser.add_argument(
        "--firmware", action="append", choices=("seabios", "ovmf", "edk2-aarch64"), help="only this firmware"
    )
    parser.add_argument(
        "--root-io", action="store_true", help="measure only the root-io experiment and add it to the saved rows"
    )
    parser.add_argument("--output", type=Path, default=RESULTS, help=f"JSON results (default {RESULTS})")
    parser.add_argument("--update-docs", action="store_true", help=f"rewrite {TABLE.relative_to(ROOT)}")
    parser.add_argument("--quiet", action="store_true", help="do not report each boot on stderr")
    parser.add_argument("--from-json", type=Path, metavar="FILE", help="only print (and write) the table of FILE")
    parser.add_argument(
        "--facts",
        nargs="?",
        const="",
        metavar="SUBSTRING",
        help="boot the single named experiments instead (those whose name contains SUBSTRING)",
    )
    parser.add_argument("--mmio", action="store_true", help="the 32-bit hole experiments instead (mmio.json)")
    args = parser.parse_args()
    if args.mmio:
        if args.from_json is not None:
            mmio = json.loads(args.from_json.read_text())
        else:
            signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
            machines, fws = args.machine or ["q35", "pc"], args.firmware or ["seabios", "ovmf"]
            mmio = measure_mmio(machines, fws, verbose=not args.quiet)
            MMIO_RESULTS.write_text(json.dumps(mmio, indent=2) + "\n")
        text = mmio_table(mmio)
        print(text)
        if args.update_docs:
            MMIO_TABLE.write_text(text)
        return 0
    if args.facts is not None:
        return facts(args.facts or None)
    if args.from_json is not None:
        text = table(json.loads(args.from_json.read_text()))
        print(text)
        if args.update_docs:
            TABLE.write_text(text)
        return 0
    # On SIGTERM unwind normally, so the running QEMU is killed and its directory removed.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    machines = args.machine or ["q35", "pc", "aarch64-virt"]
    firmwares = args.firmware or ["seabios", "ovmf", "edk2-aarch64"]
    if args.root_io:
        return _add_root_io(args.output, machines, firmwares, update_docs=args.update_docs, verbose=not args.quiet)
    results = measure(machines, firmwares, verbose=not args.quiet)
    results["environment"] = {"python": sys.version.split()[0], "cpus": os.cpu_count()}
    if args.output.exists() and (args.machine or args.firmware):
        # a partial run replaces its own rows and keeps the others
        old = json.loads(args.output.read_text())

        def key(row: dict[str, Any]) -> tuple[str, str, bool]:
            return (row["machine"], row["firmware"], row["acpi"])

        fresh = {key(r): r for r in results["rows"]}
        kept = [r for r in old["rows"] if key(r) not in fresh]
        results["rows"] = sorted(kept + results["rows"], key=_row_order)
        results["boots"] += old["boots"]
        results["boot_seconds"] = round(results["boot_seconds"] + old["boot_seconds"], 1)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=2) + "\n")
    text = table(results)
    print(text)
    if args.update_docs:
        TABLE.write_text(text)
    return 0


def _row_order(row: dict[str, Any]) -> tuple[int, int, bool]:
    machines, firmwares = ["q35", "pc", "aarch64-virt"], ["seabios", "ovmf", "edk2-aarch64"]
    return (machines.index(row["machine"]), firmwares.index(row["firmware"]), not row["acpi"])


def _add_root_io(output: Path, machines: list[str], firmwares: list[str], *, update_docs: bool, verbose: bool) -> int:
    """Measure root-io for the saved ACPI-on rows of these machines and firmwares, and save it into them."""
    results = json.loads(output.read_text())
    booter = Booter(verbose=verbose)
    for row in results["rows"]:
        if row["machine"] in machines and row["firmware"] in firmwares and row["acpi"] and row.get("boots", True):
            fw = Firmware.named(row["firmware"])
            spec = fw.for_machine(row["machine"])
            if spec is not None:
                row["root-io"] = _root_io(booter, row["machine"], fw, spec.io_windows)
                print(json.dumps({k: row[k] for k in ("machine", "firmware", "root-io")}), file=sys.stderr)
    results["boots"] += booter.boots
    results["boot_seconds"] = round(results["boot_seconds"] + booter.seconds, 1)
    output.write_text(json.dumps(results, indent=2) + "\n")
    text = table(results)
    print(text)
    if update_docs:
        TABLE.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
