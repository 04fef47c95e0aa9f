"""Hot-add every device kind of the catalog into a paused QEMU 7.2 and record what QEMU answers.

The oracle is QMP ``device_add`` alone: each kind gets a fresh empty slot of
a hotplug-capable bus, with whatever backend QEMU needs (a ``null-co`` block
node, a RAM memory backend, a built-in crypto backend, an fsdev, an audiodev)
so that the answer is about hotplug and not about a missing option. Raw
driver names and bus names are used; nothing here asks pcitopo where a device
may go.

The positions are

``q35-root-port``
    a ``pcie-root-port`` (ACPI hotplug, QEMU 7.2's default on q35);
``q35-pcie-pci-bridge``
    a slot of a ``pcie-pci-bridge`` behind a root port;
``pc-root``
    a slot of ``pc``'s root bus ``pci.0`` (ACPI hotplug);
``pc-pci-bridge``
    a slot of a ``pci-bridge`` on ``pci.0``.

An outcome is ``accepted`` (``{"return": {}}``), ``refused`` (QEMU's class
check: "Parameter 'driver' expects a pluggable device type", before any
property is looked at), ``backend`` (the class check passed but the device
needs something of the host this machine lacks: ``/dev/vhost-*``, a VFIO
device, an evdev, a vhost-user or ivshmem server), ``absent`` (this QEMU has
no such driver: "'igb' is not a valid device model name"), or ``other`` (any
other error; the kind's hotplug is undecided, and the calibration script says so).
``benchmarks/calibrate_hotplug.py`` runs it and rewrites the catalog flags;
``tests/integration/test_device_hotplug.py`` pins the outcomes.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import attrs

from pcitopo.qemu._qmp import Qemu, QmpCommandError

__all__ = [
    "HOST_BACKEND",
    "NOT_PLUGGABLE",
    "POSITIONS",
    "SINGLETONS",
    "Outcome",
    "measure",
]

NOT_PLUGGABLE = "Parameter 'driver' expects a pluggable device type"
"""What QEMU 7.2 answers for a driver whose class is not hot-pluggable (``qdev_get_device_class``)."""

POSITIONS = ("q35-root-port", "q35-pcie-pci-bridge", "pc-root", "pc-pci-bridge")

SINGLETONS = frozenset({"virtio-balloon-pci", "virtio-balloon-pci-transitional", "virtio-balloon-pci-non-transitional"})
"""Drivers QEMU allows once per VM ("Only one balloon device is supported"): each is measured in a VM of its own."""

HOST_BACKEND: Mapping[str, str] = {
    "vfio-pci": "a host PCI device bound to vfio-pci",
    "vhost-scsi-pci": "/dev/vhost-scsi",
    "vhost-scsi-pci-transitional": "/dev/vhost-scsi",
    "vhost-scsi-pci-non-transitional": "/dev/vhost-scsi",
    "vhost-vsock-pci": "/dev/vhost-vsock",
    "vhost-vsock-pci-transitional": "/dev/vhost-vsock",
    "vhost-vsock-pci-non-transitional": "/dev/vhost-vsock",
    "vhost-user-fs-pci": "a vhost-user-fs daemon (virtiofsd)",
    "virtio-input-host-pci": "a host evdev (/dev/input/event*)",
    "ivshmem-doorbell": "an ivshmem server",
}
"""Drivers whose backend is a host resource this test machine cannot provide: the expected ``backend`` outcome."""


@attrs.frozen
class Outcome:
    """What ``device_add`` of one driver at one position answered."""

    driver: str
    position: str
    verdict: str
    """``accepted``, ``refused``, ``backend``, ``absent`` or ``other`` (see the module docstring)."""
    error: str = ""

    def __str__(self) -> str:
        tail = f": {self.error}" if self.error else ""
        return f"{self.driver} at {self.position}: {self.verdict}{tail}"


# -- backends ----------------------------------------------------------------------------------

_FSDEVS = 8
_MEMORY = ["-m", "128M,slots=4,maxmem=4G"]


def _backend(vm: Qemu, driver: str, n: int) -> dict[str, Any]:
    """Create what ``driver`` needs through QMP and return the device properties that use it."""
    base = driver.removesuffix("-non-transitional").removesuffix("-transitional")
    if base == "virtio-blk-pci":
        vm.execute("blockdev-add", driver="null-co", **{"node-name": f"blk{n}"})
        return {"drive": f"blk{n}"}
    if base == "nvme":
        return {"serial": f"pcitopo{n}"}
    if base == "virtio-9p-pci":
        return {"fsdev": f"fs{n % _FSDEVS}", "mount_tag": f"tag{n}"}
    if base in ("ivshmem-plain", "virtio-pmem-pci", "virtio-mem-pci"):
        vm.execute("object-add", **{"qom-type": "memory-backend-ram", "id": f"mem{n}", "size": 4 << 20})
        if base == "virtio-mem-pci":
            return {"memdev": f"mem{n}", "requested-size": 0}
        return {"memdev": f"mem{n}"}
    if base == "virtio-crypto-pci":
        vm.execute("object-add", **{"qom-type": "cryptodev-backend-builtin", "id": f"crypto{n}"})
        return {"cryptodev": f"crypto{n}"}
    if base in ("AC97", "ES1370", "intel-hda", "ich9-intel-hda"):
        return {"audiodev": "snd0"} if base in ("AC97", "ES1370") else {}
    if base == "vhost-vsock-pci":
        return {"guest-cid": 3 + n}
    if base == "vhost-scsi-pci":
        return {"wwpn": f"naa.5001405{n:09x}"}
    return {}


def _common_args() -> list[str]:
    fsdevs = []
    for i in range(_FSDEVS):
        fsdevs += ["-fsdev", f"local,id=fs{i},path=/tmp,security_model=none"]
    return [*_MEMORY, "-nodefaults", "-display", "none", "-S", "-accel", "tcg", "-audiodev", "none,id=snd0", *fsdevs]


# -- positions ---------------------------------------------------------------------------------

# A position layout: the machine, the -device options that build it, and the free (bus, slot)s it offers.
_Layout = tuple[str, list[str], list[tuple[str, int]]]


def _layout(position: str, count: int) -> _Layout:
    """A machine with at least ``count`` empty hotplug slots of the kind ``position`` names."""
    args: list[str] = []
    slots: list[tuple[str, int]] = []
    if position == "q35-root-port":
        for i in range(count):
            slot, function = 2 + i // 8, i % 8
            multi = ",multifunction=on" if function == 0 else ""
            args += [
                "-device",
                f"pcie-root-port,id=rp{i},bus=pcie.0,addr={slot:#x}.{function}{multi},chassis={i + 1},port={i + 16:#x}",
            ]
            slots.append((f"rp{i}", 0))
        return "q35", args, slots
    if position == "q35-pcie-pci-bridge":
        bridges = -(-count // 31)
        for b in range(bridges):
            args += [
                "-device",
                f"pcie-root-port,id=rp{b},bus=pcie.0,addr={2 + b:#x}.0,chassis={b + 1},port={b + 16:#x}",
                "-device",
                f"pcie-pci-bridge,id=br{b},bus=rp{b},addr=0x0",
            ]
            slots += [(f"br{b}", s) for s in range(1, 32)]
        return "q35", args, slots[:count]
    if position == "pc-root":
        return "pc", args, [("pci.0", s) for s in range(2, 32)][:count]
    if position == "pc-pci-bridge":
        bridges = -(-count // 31)
        for b in range(bridges):
            args += ["-device", f"pci-bridge,id=br{b},bus=pci.0,addr={3 + b:#x},chassis_nr={b + 1}"]
            slots += [(f"br{b}", s) for s in range(1, 32)]
        return "pc", args, slots[:count]
    raise ValueError(f"unknown position {position!r} (known: {', '.join(POSITIONS)})")


def _classify(driver: str, error: str) -> str:
    if error == NOT_PLUGGABLE:
        return "refused"
    if error == f"'{driver}' is not a valid device model name":
        return "absent"
    if driver in HOST_BACKEND:
        return "backend"
    return "other"


def _batches(drivers: list[str], position: str) -> Iterable[list[str]]:
    """The drivers in the groups that share one VM: singletons alone, ``pc-root`` at most 30 a VM."""
    plain = [d for d in drivers if d not in SINGLETONS]
    size = 30 if position == "pc-root" else max(len(plain), 1)
    for i in range(0, len(plain), size):
        yield plain[i : i + size]
    for d in drivers:
        if d in SINGLETONS:
            yield [d]


def measure(
    drivers: Iterable[str],
    position: str,
    *,
    binary: str | None = None,
    progress: Callable[[Outcome], None] | None = None,
) -> list[Outcome]:
    """``device_add`` each driver into its own empty slot at ``position``; one VM per batch (see ``_batches``)."""
    binary = binary or shutil.which("qemu-system-x86_64")
    if binary is None:
        raise LookupError("qemu-system-x86_64 is not on PATH")
    out: list[Outcome] = []
    for batch in _batches(list(drivers), position):
        machine, layout, slots = _layout(position, len(batch))
        with Qemu(binary, ["-machine", machine, *_common_args(), *layout]) as vm:
            for n, (driver, (bus, slot)) in enumerate(zip(batch, slots, strict=True)):
                try:
                    props = _backend(vm, driver, n)
                    vm.execute("device_add", driver=driver, id=f"d{n}", bus=bus, addr=f"{slot:#x}", **props)
                except QmpCommandError as exc:
                    outcome = Outcome(driver, position, _classify(driver, exc.desc), exc.desc)
                else:
                    outcome = Outcome(driver, position, "accepted")
                out.append(outcome)
                if progress is not None:
                    progress(outcome)
    return out
