"""Verify a topology in a real QEMU.

:func:`verify` starts QEMU (TCG, paused) with the topology's command line
and checks, over QMP:

``placement``
    every device and controller sits on its planned bus at its planned
    slot.function (``qom-get`` of ``parent_bus`` and ``addr``);
``firmware``, ``enumerated``, ``bars``
    on x86, after the firmware ran (SeaBIOS, or OVMF booted from its pflash
    images): the firmware finished its PCI setup without running out of
    address space, every device is enumerated behind the expected bridge
    (``query-pci``), and every BAR but the expansion ROM is mapped (address
    != -1) inside the windows of every bridge above it, but the BARs the
    firmware never assigns wherever they sit (edk2: a 2-byte memory BAR,
    pvpanic-pci's; see :meth:`Firmware.assigns_mem_bar
    <pcitopo.legality.firmware.Firmware.assigns_mem_bar>`), which are
    reported as left to the guest OS; on aarch64 virt, after edk2 ran, with
    the BARs read from config space where edk2 left decoding off
    (``_read_bars`` says when a BAR reading 0 counts as at address 0);
``hotplug``, ``hotplug-refused``
    ``device_add`` into every empty slot the topology calls hotpluggable
    succeeds, and into every empty slot it calls non-hotpluggable is refused
    (but on a bus whose model QEMU hot-plugs and libvirt does not,
    ``ControllerModel.qemu_hotplug``: a dmi-to-pci-bridge's).

Endpoints that need a backend (``virtio-blk-pci`` needs ``drive=``) get it
through ``extra``, as for :func:`~pcitopo.qemu.qemu_args`; where ``extra``
gives none, nvme, virtio-blk, virtio-9p, virtio-crypto, virtio-pmem, virtio-mem
and ivshmem-plain get a stand-in that
costs nothing (``_backends``), so a plan starts as it is. QEMU always runs in
a private temporary directory and is always killed.

>>> check = Check("placement", "net0", True, "on pci.1 at 00.0")
>>> report = VerifyReport("q35", "qemu-system-x86_64", "7.2.22", (), (check,))
>>> report.ok, str(report.checks[0])
(True, 'ok placement net0: on pci.1 at 00.0')
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import attrs

from pcitopo.address import PciAddress
from pcitopo.errors import InvalidInput, PcitopoError
from pcitopo.legality.firmware import Firmware
from pcitopo.qemu._qmp import Qemu, QemuError, QmpCommandError, find_binary
from pcitopo.qemu.args import DeviceSpec, Syntax, Value, device_specs, machine_args, qemu_args
from pcitopo.topology import Topology

__all__ = ["Check", "VerificationFailed", "VerifyReport", "firmware_args", "settle_pci", "verify"]


def __dir__() -> list[str]:
    return __all__


HOTPLUG_PROBE_KIND = "virtio-rng"
"""The device kind hot-plugged to probe positions: it exists in every target and needs no backend.

Only buses that take such an endpoint are probed (not a switch's upstream
port or a pxb-pcie, which take ports only)."""

_X86 = frozenset({"x86_64", "i686"})
_FIRMWARE_LOG = "firmware.log"
_ROM_BAR = 6
_SETTLE = 5.0
"""Seconds query-pci must stay unchanged, every bridge numbered, for an EFI firmware's PCI setup to count as done."""
_FIRMWARE_MEMORY = {"pc": 3072}
"""MiB of RAM a firmware boot gets where the 32-bit hole depends on it: on pc SeaBIOS and OVMF start the hole at
2 GiB when RAM ends below it ("mmio32" in seabios.toml and ovmf.toml), and pcitopo plans for the smaller hole of
a guest with more RAM, so the boot checks that one. QEMU allocates guest RAM as it is touched: it costs nothing."""
_FIRMWARE_NODE_MEMORY = {"aarch64-virt": 128}
"""MiB of RAM a firmware boot gets for each NUMA node (or in all, without nodes) where the firmware needs more than
machine_args' default of 64 a node: edk2 on aarch64 virt stops at once with a "Synchronous Exception" when a node
has less than 128 MiB (1 node of 64, 2 of 64, 4 of 64 crash; 1 of 128, 2 of 128, 4 of 128 reach its boot menu)."""


@attrs.frozen
class Check:
    """One check: what was checked (``name``), on what (``subject``), the outcome and why."""

    name: str
    subject: str
    ok: bool
    detail: str

    def __str__(self) -> str:
        return f"{'ok' if self.ok else 'FAILED'} {self.name} {self.subject}: {self.detail}"


class VerificationFailed(PcitopoError, RuntimeError):
    """QEMU disagrees with the topology; ``report`` holds every check."""

    def __init__(self, report: VerifyReport) -> None:
        self.report = report
        failures = report.failures
        lines = [f"{len(failures)} of {len(report.checks)} QEMU checks failed on {report.machine}:"]
        lines += [f"  - {f}" for f in failures]
        super().__init__("\n".join(lines))

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.report,))


@attrs.frozen
class VerifyReport:
    """The outcome of :func:`verify`: every check, with the command line used."""

    machine: str
    binary: str
    version: str
    command: tuple[str, ...]
    checks: tuple[Check, ...]
    firmware_log: str = attrs.field(default="", repr=False)

    @property
    def ok(self) -> bool:
        """Whether every check passed."""
        return all(c.ok for c in self.checks)

    @property
    def failures(self) -> tuple[Check, ...]:
        return tuple(c for c in self.checks if not c.ok)

    def named(self, name: str) -> tuple[Check, ...]:
        """The checks called ``name`` (``placement``, ``bars``, ...)."""
        return tuple(c for c in self.checks if c.name == name)

    def raise_for_failures(self) -> None:
        """Raise :class:`VerificationFailed` listing the failed checks, if any."""
        if not self.ok:
            raise VerificationFailed(self)

    def __str__(self) -> str:
        head = f"{self.machine}: {len(self.checks) - len(self.failures)}/{len(self.checks)} checks ok"
        return "\n".join([head, *(f"  {c}" for c in self.checks)])


def verify(
    topology: Topology,
    *,
    binary: str | None = None,
    firmware: bool | str | None = None,
    hotplug: bool = True,
    timeout: float = 60.0,
    firmware_wait: float | None = None,
    extra: Mapping[str, Mapping[str, Value]] | None = None,
    machine_type: str | None = None,
    syntax: Syntax = "keyval",
) -> VerifyReport:
    """Start QEMU with ``topology`` and check that every device is where it was planned.

    ``binary`` defaults to the machine's ``qemu-binary`` on ``PATH``.
    ``firmware`` (default: on for x86) lets the firmware run and checks its
    enumeration: ``True`` boots the topology's own firmware (its
    ``firmware``, else the machine's default), a name (``"seabios"``,
    ``"ovmf"``) boots that one. ``firmware_wait`` bounds how long PCI setup
    may take, in seconds (default 10 for SeaBIOS, 90 for OVMF under TCG).
    ``hotplug`` probes every empty slot with ``device_add``. Raises
    :class:`~pcitopo.qemu.QemuError` with QEMU's message when QEMU refuses the
    command line, and :class:`~pcitopo.errors.InvalidInput` for a topology
    with devices not yet placed.
    """
    machine = topology.machine
    path = find_binary(binary or machine.qemu_binary)
    if path is None:
        raise QemuError(f"no QEMU binary {binary or machine.qemu_binary!r} found")
    fw = _choose_firmware(topology, firmware)
    backends, extra = _backends(topology, extra)
    specs = device_specs(topology, extra=extra)
    memory = _FIRMWARE_MEMORY.get(machine.name) if fw is not None else None
    if fw is not None and machine.name in _FIRMWARE_NODE_MEMORY:
        memory = _FIRMWARE_NODE_MEMORY[machine.name] * max(topology.numa_nodes, 1)
    args = _with_device_memory(machine_args(topology, machine_type=machine_type, memory=memory), backends)
    args += ["-nodefaults", "-display", "none", "-S", "-accel", "tcg", *backends]
    if fw is not None:
        if _X86 & set(machine.arches):
            # SeaBIOS (and OVMF's debug build) log to port 0x402; ARM has no ISA bus
            args += ["-chardev", f"file,id=pcitopo-fw,path={_FIRMWARE_LOG}"]
            args += ["-device", "isa-debugcon,iobase=0x402,chardev=pcitopo-fw"]
        args += firmware_args(fw)
    args += qemu_args(topology, extra=extra, syntax=syntax)
    checks: list[Check] = []
    log = ""
    # The paused VM answers QMP before the firmware runs; -S keeps it there until "cont".
    with Qemu(path, args, timeout=timeout) as vm:
        checks += _placement(vm, specs)
        if fw is not None:
            wait = firmware_wait if firmware_wait is not None else (90.0 if fw.efi else 10.0)
            log, fw_checks = _firmware(vm, topology, specs, wait, fw)
            checks += fw_checks
        if hotplug:
            checks += _hotplug(vm, topology)
        return VerifyReport(machine.name, path, vm.version, vm.command, tuple(checks), log)


def _backends(
    topology: Topology, extra: Mapping[str, Mapping[str, Value]] | None
) -> tuple[list[str], dict[str, Mapping[str, Value]]]:
    """Stand-in backends for the devices ``extra`` gives none, so that any plan starts as it is.

    - each ivshmem-plain without a ``memdev``: a shared memory backend, a sparse
      file of its memory's size in QEMU's private directory; it costs no RAM
      (nothing touches it under ``-S`` or in the firmware), so a 256 GiB BAR is
      as cheap to map as 4 MiB;
    - each nvme without a ``serial`` (QEMU: "serial property not set"): its id;
    - each virtio-blk without a ``drive`` ("drive property not set"): a
      ``null-co`` block node, which reads zeros and stores nothing;
    - each virtio-9p without an ``fsdev``: QEMU's private directory, shared;
    - each virtio-crypto without a ``cryptodev``: QEMU's built-in one;
    - each virtio-pmem or virtio-mem without a ``memdev``, where the machine starts
      the kind (elsewhere QEMU's own refusal comes first): 16 MiB of RAM, in a
      device memory region :func:`_with_device_memory` makes room for.
    """
    out = dict(extra or {})
    args: list[str] = []
    for n, d in enumerate(topology.devices):
        kind = topology.kind(d)
        given = out.get(d.id, {})
        base = kind.family
        if kind.qemu_device == "ivshmem-plain" and kind.memory_bar is not None and "memdev" not in given:
            size = next(b.size for b in topology.bars(d) if b.index == kind.memory_bar)
            name = f"pcitopo-shm-{n}"
            args += ["-object", f"memory-backend-file,id={name},mem-path={name},share=on,size={size}"]
            out[d.id] = {**given, "memdev": name}
        elif base == "nvme" and "serial" not in given:
            out[d.id] = {**given, "serial": d.id}
        elif base == "virtio-blk" and "drive" not in given:
            name = f"pcitopo-blk-{n}"
            args += ["-blockdev", f"driver=null-co,node-name={name}"]
            out[d.id] = {**given, "drive": name}
        elif base == "virtio-9p" and "fsdev" not in given:
            name = f"pcitopo-fs-{n}"
            args += ["-fsdev", f"local,id={name},path=.,security_model=none"]
            out[d.id] = {**given, "fsdev": name, "mount_tag": name}
        elif base == "virtio-crypto" and "cryptodev" not in given:
            name = f"pcitopo-crypto-{n}"
            args += ["-object", f"cryptodev-backend-builtin,id={name}"]
            out[d.id] = {**given, "cryptodev": name}
        elif base in ("virtio-pmem", "virtio-mem") and "memdev" not in given and topology.machine.starts(d.kind):
            name = f"pcitopo-devmem-{n}"
            args += ["-object", f"memory-backend-ram,id={name},size={_DEVICE_MEMORY_MIB}M"]
            out[d.id] = {**given, "memdev": name}
    return args, out


_DEVICE_MEMORY_MIB = 16
"""The size of the stand-in memory backend of a virtio-pmem or virtio-mem (a multiple of every block size)."""


def _with_device_memory(args: list[str], backends: list[str]) -> list[str]:
    """``args`` with room for the stand-in device memory of :func:`_backends` beside the RAM (QEMU: "'memdev'
    property must be set", then a device memory region, which ``-m``'s ``maxmem`` gives)."""
    count = sum(a.startswith("memory-backend-ram,id=pcitopo-devmem-") for a in backends)
    if not count:
        return args
    at = args.index("-m") + 1
    ram = int(args[at])
    # rounded up to 256 MiB, which pseries requires ("Maximum memory size ... is not aligned to 256 MiB")
    most = -(-(ram + count * _DEVICE_MEMORY_MIB) // 256) * 256
    return [*args[:at], f"{ram},slots=1,maxmem={most}M", *args[at + 1 :]]


# -- placement ----------------------------------------------------------------------------


def _placement(vm: Qemu, specs: tuple[DeviceSpec, ...]) -> list[Check]:
    checks = []
    for spec in specs:
        if spec.address is None or spec.bus is None:
            continue
        where = f"/machine/peripheral/{spec.id}"
        try:
            bus = str(vm.execute("qom-get", path=where, property="parent_bus")).rsplit("/", 1)[-1]
            devfn = int(vm.execute("qom-get", path=where, property="addr"))
        except QmpCommandError as exc:
            checks.append(Check("placement", spec.id, False, f"not found in QEMU: {exc.desc}"))
            continue
        got = PciAddress.from_devfn(devfn)
        planned = f"{spec.bus} at {spec.address.slot:02x}.{spec.address.function}"
        actual = f"{bus} at {got.slot:02x}.{got.function}"
        if bus == spec.bus and got.devfn == spec.address.devfn:
            checks.append(Check("placement", spec.id, True, f"on {actual}"))
        else:
            checks.append(Check("placement", spec.id, False, f"planned on {planned}, QEMU has it on {actual}"))
    return checks


# -- firmware -----------------------------------------------------------------------------


def _choose_firmware(topology: Topology, firmware: bool | str | None) -> Firmware | None:
    machine = topology.machine
    x86 = bool(_X86 & set(machine.arches))
    if firmware is False or (firmware is None and not x86):
        return None
    if not machine.firmware_names:
        raise InvalidInput("firmware", f"pcitopo knows no firmware that boots {machine.name}")
    name = firmware if isinstance(firmware, str) else None
    fw = topology.machine.firmware(name if name is not None else topology.firmware)
    if fw is None:
        raise InvalidInput("firmware", f"no firmware is known for {machine.name}")
    return fw


def firmware_args(firmware: Firmware) -> list[str]:
    """The QEMU options that boot ``firmware`` (none for SeaBIOS, QEMU's default; pflash for OVMF).

    >>> firmware_args(Firmware.named("seabios"))
    []
    >>> firmware_args(Firmware.named("ovmf"))  # doctest: +NORMALIZE_WHITESPACE
    ['-drive', 'if=pflash,format=raw,unit=0,readonly=on,file=/usr/share/OVMF/OVMF_CODE.fd',
     '-drive', 'if=pflash,format=raw,unit=1,snapshot=on,file=/usr/share/OVMF/OVMF_VARS.fd']
    """
    if firmware.code_path is None:
        return []
    args = ["-drive", f"if=pflash,format=raw,unit=0,readonly=on,file={firmware.code_path}"]
    if firmware.vars_path is not None:
        # snapshot=on: the firmware may write its variables, into a throw-away overlay.
        args += ["-drive", f"if=pflash,format=raw,unit=1,snapshot=on,file={firmware.vars_path}"]
    return args


@attrs.frozen
class _Seen:
    bus: int
    slot: int
    function: int
    parent: str | int
    """The id of the nearest named bridge above it, or the number of its root bus."""
    unmapped: tuple[str, ...]
    outside: tuple[str, ...] = ()
    """Mapped BARs that lie outside a window of a bridge above the device."""
    left: tuple[str, ...] = ()
    """Unmapped BARs the firmware never assigns, wherever the device sits (:meth:`Firmware.assigns_mem_bar`)."""


@attrs.frozen
class _Window:
    bridge: str
    kind: str
    base: int
    limit: int


def _windows(name: str, bridge: Mapping[str, Any]) -> tuple[_Window, ...]:
    bus = bridge.get("bus", {})
    out = []
    for key, kind in (("io_range", "io"), ("memory_range", "memory"), ("prefetchable_range", "prefetchable")):
        r = bus.get(key) or {}
        if "base" in r and "limit" in r:
            out.append(_Window(name, kind, int(r["base"]), int(r["limit"])))
    return tuple(out)


def _outside(region: Mapping[str, Any], above: tuple[tuple[_Window, ...], ...]) -> str | None:
    """Why a mapped BAR is not inside the windows of every bridge above it (``None``: it is)."""
    start = int(region["address"])
    end = start + int(region.get("size", 0)) - 1
    io = region.get("type") == "io"
    for windows in above:
        kinds = ("io",) if io else ("prefetchable", "memory") if region.get("prefetch") else ("memory",)
        if not any(w.kind in kinds and w.base <= start and end <= w.limit for w in windows):
            bridge = windows[0].bridge if windows else "?"
            what = "IO" if io else "memory"
            return f"BAR{region.get('bar')} ({what} {start:#x}-{end:#x}) outside the {what} windows of {bridge}"
    return None


def _walk(
    devices: list[dict[str, Any]],
    parent: str | int,
    seen: dict[str, _Seen],
    above: tuple[tuple[_Window, ...], ...] = (),
    firmware: Firmware | None = None,
) -> None:
    for dev in devices:
        qdev = str(dev.get("qdev_id") or "")
        regions = [r for r in dev.get("regions", []) if r.get("bar") != _ROM_BAR]
        unassigned = [r for r in regions if r.get("address") == -1]
        left = [r for r in unassigned if firmware is not None and _never_assigned(firmware, r)]
        unmapped = tuple(_bar(r) for r in unassigned if r not in left)
        outside = tuple(why for r in regions if r.get("address") != -1 and (why := _outside(r, above)) is not None)
        if qdev:
            where = (int(dev["bus"]), int(dev["slot"]), int(dev["function"]))
            seen[qdev] = _Seen(*where, parent, unmapped, outside, tuple(_bar(r) for r in left))
        bridge = dev.get("pci_bridge")
        if bridge:
            name = qdev or f"{int(dev['bus']):02x}:{int(dev['slot']):02x}.{int(dev['function'])}"
            _walk(bridge.get("devices", []), qdev or parent, seen, (*above, _windows(name, bridge)), firmware)


def _bar(region: Mapping[str, Any]) -> str:
    return f"BAR{region.get('bar')} ({region.get('type')}, {region.get('size')} bytes)"


def _never_assigned(firmware: Firmware, region: Mapping[str, Any]) -> bool:
    return region.get("type") != "io" and not firmware.assigns_mem_bar(int(region.get("size", 0)))


def _read_bars(vm: Qemu, answer: list[dict[str, Any]], ecam: int) -> None:
    """Fill in, from the ECAM, the BARs the firmware programmed but left undecoded (query-pci shows them as -1).

    edk2 on aarch64 assigns every BAR and turns decoding on only for devices a
    driver claims. A BAR that reads back 0 is at address 0 or unassigned (0 is
    its value at reset), and config space cannot tell which: it counts as at 0
    only where 0 can be its. That is inside a range that starts at 0 (the IO
    space of the main root bus, which on aarch64 virt is ports 0x0000-0xffff, or
    a bridge's IO or memory window that starts at 0), where edk2, handing a
    range out from its start upward, puts the first resource; on a device edk2
    enumerated (it writes 0xff to the Interrupt Line, which QEMU resets to 0);
    when no bridge window or decoded BAR there starts at 0; and when no other
    BAR in the range reads 0 (of two, at least one is unassigned and neither
    counts: verify may then name one BAR too many, never too few). A range
    whose every resource was dropped would pass its one BAR reading 0 as
    assigned; edk2 was not seen to drop the first resource of a range.
    """

    def config(bus: int, slot: int, function: int) -> list[int]:
        """The dwords at 0x10-0x3f: the six BARs, ..., the Interrupt Line in the low byte of the last."""
        where = ecam + (bus << 20) + (slot << 15) + (function << 12) + 0x10
        text = str(vm.execute("human-monitor-command", **{"command-line": f"xp /12wx {where:#x}"}))
        return [int(word, 16) for line in text.splitlines() for word in line.partition(":")[2].split()]

    def fill(devices: list[dict[str, Any]], starts: frozenset[str], *, main_root: bool = False) -> None:
        """Read the undecoded BARs of ``devices``, all on one bus (``main_root``: on the root buses), then below."""
        zeros: dict[str, list[dict[str, Any]]] = {}
        taken: set[str] = set()
        for dev in devices:
            bridge = dev.get("pci_bridge")
            if bridge:
                taken |= _at_zero(bridge)
            mine = [r for r in dev.get("regions", []) if r.get("bar") != _ROM_BAR]
            taken |= {_space(r) for r in mine if r.get("address") == 0}
            regions = [r for r in mine if r.get("address") == -1]
            if not regions:
                continue
            words = config(int(dev["bus"]), int(dev["slot"]), int(dev["function"]))
            enumerated = len(words) > _LINE_WORD and words[_LINE_WORD] & 0xFF == 0xFF
            may_be_at_zero = enumerated and (not main_root or int(dev["bus"]) == 0)
            for r in regions:
                n = int(r.get("bar", 0))
                if n >= _BARS:
                    continue
                io = r.get("type") == "io"
                value = words[n] & (~0x3 if io else ~0xF)
                if not io and r.get("mem_type_64") and n + 1 < _BARS:
                    value |= words[n + 1] << 32
                if value:
                    r["address"] = value
                elif may_be_at_zero:
                    zeros.setdefault(_space(r), []).append(r)
        for space, regions in zeros.items():
            if space in starts and space not in taken and len(regions) == 1:
                regions[0]["address"] = 0
        for dev in devices:
            bridge = dev.get("pci_bridge")
            if bridge:
                fill(bridge.get("devices", []), _at_zero(bridge))

    # The root buses share one IO space, so port 0 is one resource's at most; a BAR reading 0 counts only on the
    # main root bus (how edk2 splits the IO space among expander buses was not measured).
    fill([dev for root in answer for dev in root.get("devices", [])], frozenset({"io"}), main_root=True)


_BARS = 6
_LINE_WORD = 11
"""The dword of :func:`_read_bars`' config read that holds the Interrupt Line (0x3c)."""


def _space(region: Mapping[str, Any]) -> str:
    return "io" if region.get("type") == "io" else "memory"


def _at_zero(bridge: Mapping[str, Any]) -> frozenset[str]:
    """The spaces (``io``, ``memory``) in which a bridge's window starts at address 0."""
    bus = bridge.get("bus", {})
    return frozenset(
        kind
        for key, kind in (("io_range", "io"), ("memory_range", "memory"))
        if (bus.get(key) or {}).get("base") == 0 and (bus.get(key) or {}).get("limit", -1) >= 0
    )


def _firmware_done(log: str) -> bool:
    # SeaBIOS prints the CPU count right after PCI setup, and "out of ... space" when it gives up on BARs.
    return "cpu(s)" in log or "PCI: out of" in log


def _numbered(devices: list[dict[str, Any]]) -> bool:
    """Whether the firmware gave every bridge in ``devices`` (recursively) a secondary bus number."""
    for dev in devices:
        bridge = dev.get("pci_bridge")
        if bridge:
            if not bridge.get("bus", {}).get("secondary"):
                return False
            if not _numbered(bridge.get("devices", [])):
                return False
    return True


def _started(devices: list[dict[str, Any]]) -> bool:
    """Whether the firmware has reached PCI setup: some BAR is mapped or some bridge numbered."""
    for dev in devices:
        if any(r.get("address") != -1 for r in dev.get("regions", [])):
            return True
        bridge = dev.get("pci_bridge")
        if bridge and (bridge.get("bus", {}).get("secondary") or _started(bridge.get("devices", []))):
            return True
    return False


def settle_pci(
    vm: Qemu,
    wait: float,
    *,
    settle: float = _SETTLE,
    fill: Callable[[list[dict[str, Any]]], None] | None = None,
) -> tuple[list[dict[str, Any]], bool]:
    """Poll ``query-pci`` until the firmware did PCI setup and nothing changed for ``settle`` seconds.

    PCI setup has happened once some BAR is mapped or some bridge numbered,
    and every bridge is numbered. Returns the last answer and whether it
    settled within ``wait`` seconds. OVMF says nothing on its debug port in
    Debian's build, and when it runs out of room it numbers the buses, maps no
    BAR and sits idle, so the settled answer is the only witness of what it did.
    ``fill`` completes each answer before it is judged: a firmware that
    programs BARs but leaves their decoding off (edk2 on aarch64, for devices
    no driver of its claims) shows them only in config space, and without
    them a root bus holding only such devices would never count as set up.
    """
    deadline = time.monotonic() + wait

    def query() -> list[dict[str, Any]]:
        answer: list[dict[str, Any]] = vm.execute("query-pci")
        if fill is not None:
            fill(answer)
        return answer

    last = query()
    since = time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.5)
        now = query()
        if now != last:
            last, since = now, time.monotonic()
        elif (
            time.monotonic() - since >= settle
            and any(_started(r.get("devices", [])) for r in now)
            and all(_numbered(r.get("devices", [])) for r in now)
        ):
            return now, True
    return last, False


def _firmware(
    vm: Qemu, topology: Topology, specs: tuple[DeviceSpec, ...], wait: float, fw: Firmware
) -> tuple[str, list[Check]]:
    log_path = Path(vm.dir or ".") / _FIRMWARE_LOG
    vm.execute("cont")
    checks: list[Check] = []
    log = ""
    if fw.efi:
        on = fw.for_machine(topology.machine.name, topology.machine.root_model)
        ecam = on.ecam if not fw.bars_decoded and on is not None else None
        answer, settled = settle_pci(vm, wait, fill=None if ecam is None else lambda a: _read_bars(vm, a, ecam))
        log = log_path.read_text(errors="replace") if log_path.exists() else ""
        if settled:
            checks.append(Check("firmware", "pci", True, f"{fw.name}: PCI setup settled"))
        else:
            checks.append(Check("firmware", "pci", False, f"{fw.name} did not settle its PCI setup within {wait:g}s"))
    else:
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            log = log_path.read_text(errors="replace") if log_path.exists() else ""
            if _firmware_done(log):
                break
            time.sleep(0.1)
        trouble = [line.strip() for line in log.splitlines() if "PCI: out of" in line]
        if not _firmware_done(log):
            checks.append(Check("firmware", "pci", False, f"the firmware did not finish PCI setup within {wait:g}s"))
        elif trouble:
            checks.append(Check("firmware", "pci", False, "; ".join(dict.fromkeys(trouble))))
        else:
            checks.append(Check("firmware", "pci", True, "PCI setup finished"))
        answer = vm.execute("query-pci")
    seen: dict[str, _Seen] = {}
    for root in answer:
        _walk(root.get("devices", []), int(root["bus"]), seen, firmware=fw)
    by_name = {s.id: s for s in specs}
    for spec in specs:
        if spec.address is None:
            continue
        got = seen.get(spec.id)
        if got is None:
            checks.append(
                Check("enumerated", spec.id, False, "not enumerated by the firmware (missing from query-pci)")
            )
            continue
        expected = _expected_parent(topology, spec.address.bus, by_name)
        place = f"{got.bus:02x}:{got.slot:02x}.{got.function}"
        parent = f"bridge {got.parent}" if isinstance(got.parent, str) else f"root bus {got.parent}"
        if got.parent != expected or (got.slot, got.function) != (spec.address.slot, spec.address.function):
            want = f"bridge {expected}" if isinstance(expected, str) else f"root bus {expected}"
            checks.append(
                Check(
                    "enumerated",
                    spec.id,
                    False,
                    f"found at {place} behind {parent}, planned at slot {spec.address.slot:02x}."
                    f"{spec.address.function} behind {want}",
                )
            )
        else:
            checks.append(Check("enumerated", spec.id, True, f"at {place} behind {parent}"))
        if got.unmapped:
            checks.append(Check("bars", spec.id, False, "unmapped: " + ", ".join(got.unmapped)))
        elif got.outside:
            checks.append(Check("bars", spec.id, False, "; ".join(got.outside)))
        elif got.left:
            checks.append(
                Check(
                    "bars",
                    spec.id,
                    True,
                    f"every BAR mapped inside its bridges' windows but {', '.join(got.left)}, which {fw.name} "
                    "never assigns (left to the guest OS)",
                )
            )
        else:
            checks.append(Check("bars", spec.id, True, "every BAR mapped inside its bridges' windows"))
    return log, checks


def _expected_parent(topology: Topology, bus: int, specs: Mapping[str, DeviceSpec]) -> str | int:
    if bus == 0:
        return 0
    c = topology.controller(bus)
    model = topology.model(c)
    # pxb puts its endpoints behind an internal pci-bridge that QEMU names after the pxb
    # (the second bus number it uses); pxb-pcie's children sit on its root bus itself.
    if model.expander and model.bus_numbers == 1:
        number = specs[c.name].get("bus_nr")
        return int(number) if isinstance(number, int) else -1
    return c.name


# -- hotplug ------------------------------------------------------------------------------


def _empty_positions(topology: Topology) -> Iterator[tuple[int, int, bool]]:
    """Every empty slot an endpoint may legally take, and whether the topology calls it hotpluggable."""
    usage = topology.slot_usage()
    used = {(bus, slot) for (_, bus, slot) in usage}
    probe = topology.catalog.device(HOTPLUG_PROBE_KIND)
    for c in topology.controllers:
        if topology.root_of(c.index) is None:
            continue
        if topology.placement_problem(c.index, kind=probe, strict=False) is not None:
            continue
        for slot in topology.model(c).slot_range():
            if (c.index, slot) not in used:
                yield c.index, slot, topology.is_hotpluggable(c.index, slot)


def _hotplug(vm: Qemu, topology: Topology) -> list[Check]:
    checks = []
    driver = topology.catalog.device(HOTPLUG_PROBE_KIND).qemu_device
    for n, (bus, slot, hot) in enumerate(_empty_positions(topology)):
        name = topology.bus_name(bus)
        subject = f"{name} slot {slot:02x}"
        try:
            vm.execute("device_add", driver=driver, id=f"pcitopo-hp{n}", bus=name, addr=f"{slot:#x}")
        except QmpCommandError as exc:
            if hot:
                checks.append(Check("hotplug", subject, False, f"refused: {exc.desc}"))
            else:
                checks.append(Check("hotplug-refused", subject, True, f"refused: {exc.desc}"))
            continue
        if hot:
            checks.append(Check("hotplug", subject, True, "accepted"))
        elif topology.model(bus).qemu_hotplug:
            model = topology.model(bus).name
            checks.append(
                Check("hotplug-refused", subject, True, f"accepted by QEMU; libvirt refuses hot-plug on a {model}")
            )
        else:
            checks.append(
                Check("hotplug-refused", subject, False, "accepted, though the topology calls it not hotpluggable")
            )
    return checks
