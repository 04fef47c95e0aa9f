"""Measure every device kind's memory BARs in QEMU 7.2 and regenerate the ``bars`` of the device catalog.

Every ``bars`` line of ``pcitopo/legality/data/devices.toml`` comes from here.
For each kind the script starts ``qemu-system-x86_64 -machine q35 -S`` with
that one device on ``pcie.0`` (a backend where the device needs one), reads
QMP ``query-pci`` and keeps the device's memory regions: BARs 0-5 and the
expansion ROM (6), each with its size, whether it is 64-bit and whether it
is prefetchable. No firmware runs (``-S``): QEMU reports a BAR's size before
anything maps it, and the size does not depend on where the device sits.
A virtio kind is measured with ``disable-legacy=on`` (as behind a PCIe port);
its ``-transitional`` and ``-non-transitional`` variants are measured too and
must have the same memory BARs (the catalog derives them from the base kind).

Kinds whose BAR follows a setting of the domain are measured at several
values of it, and the catalog says which BAR follows it (``memory-bar``):
``ivshmem-plain`` (BAR2 is the shared memory: libvirt's ``<shmem><size>``),
``vga``, ``vmvga`` and ``bochs`` (BAR0 is the video memory: libvirt's
``<model vram>``, ``vgamem_mb``/``vgamem`` in QEMU).

Kinds that need a host resource or a server are started with one:
``vhost-vsock``, ``vhost-scsi`` (``wwpn=``) and ``virtio-input-host``
(``evdev=``) open a character device (``/dev/vhost-vsock``, ``/dev/vhost-scsi``,
an evdev node); where the host lacks it, the ``LD_PRELOAD`` stub of
``tests/support/vhost_stub.py`` fakes it (it answers the few ioctls QEMU makes
before the guest runs; the BARs are QEMU's own). ``ivshmem-doorbell`` connects
to the ivshmem server of ``tests/support/ivshmem_server.py`` (Debian has no
``ivshmem-server``), whose shared memory is its BAR2: measured at several sizes
like ``ivshmem-plain``, catalogued at ``ivshmem-server``'s default, 4 MiB.
``vhost-user-fs`` connects to Debian's ``virtiofsd`` (``tests/support/virtiofsd.py``).
Only ``vfio-pci`` is not measured: its BARs are the host device's (``--host``).
``vhost-vsock`` is measured as it is, without ``disable-legacy=on``, because QEMU 7.2
forces it to virtio 1 (modern only, no IO BAR) and has no ``vhost-vsock-pci-transitional``;
so is ``vhost-user-fs``, whose QEMU 7.2 driver has no ``disable-legacy`` property (modern only).

Usage::

    python benchmarks/calibrate_bars.py            # measure, print a table, compare with the catalog
    python benchmarks/calibrate_bars.py --update   # rewrite the bars lines of devices.toml

It needs QEMU 7.2 (``qemu-system-x86``) from Debian; a run takes about a minute.
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pcitopo.legality.catalog import Catalog, DeviceKind  # noqa: E402
from pcitopo.qemu._qmp import Qemu, QemuError, find_binary  # noqa: E402
from tests.support.ivshmem_server import IvshmemServer  # noqa: E402
from tests.support.vhost_stub import EVDEV, build, preloaded  # noqa: E402
from tests.support.virtiofsd import find_virtiofsd, running_virtiofsd  # noqa: E402

DEVICES_TOML = ROOT / "pcitopo" / "legality" / "data" / "devices.toml"
CONTROLLERS_TOML = ROOT / "pcitopo" / "legality" / "data" / "controllers.toml"
CONTROLLER_PROPS = {
    "pci-bridge": "chassis_nr=1",
    "pcie-root-port": "chassis=1",
    "xio3130-downstream": "chassis=1",
}
"""Controllers are measured on pcie.0 too (a port's own BARs do not depend on its bus); pxb/pxb-pcie
cannot sit there and have no BAR of their own."""
MIB = 1 << 20

# what a QEMU device needs to start: extra -device properties and other options
NEEDS: dict[str, tuple[str, list[str]]] = {
    "virtio-blk-pci": ("drive=nb", ["-blockdev", "driver=null-co,node-name=nb"]),
    "virtio-9p-pci": ("fsdev=fs,mount_tag=t", ["-fsdev", "local,id=fs,path=/tmp,security_model=none"]),
    "nvme": ("serial=pcitopo", []),
    "ivshmem-plain": ("memdev=shm", ["-object", "memory-backend-ram,id=shm,share=on,size={memory}"]),
    "virtio-crypto-pci": ("cryptodev=cr", ["-object", "cryptodev-backend-builtin,id=cr"]),
    "virtio-pmem-pci": ("memdev=pm", ["-object", "memory-backend-ram,id=pm,size=16M"]),
    "virtio-mem-pci": ("memdev=vm", ["-object", "memory-backend-ram,id=vm,size=16M"]),
    "vhost-vsock-pci": ("guest-cid=3", []),
    "vhost-scsi-pci": ("wwpn=naa.5001405000000001", []),
    "virtio-input-host-pci": (f"evdev={EVDEV}", []),
    "ivshmem-doorbell": ("chardev=iv", ["-chardev", "socket,id=iv,path={socket}"]),
    "vhost-user-fs-pci": ("chardev=fs,tag=pcitopo", ["-chardev", "socket,id=fs,path={socket}"]),
}
HOST_ONLY = ("vfio-pci",)
"""QEMU devices whose BARs are the host's: not measured."""
STUBBED = {
    "vhost-vsock-pci": "/dev/vhost-vsock",
    "vhost-scsi-pci": "/dev/vhost-scsi",
    "virtio-input-host-pci": EVDEV,
}
"""Devices (base drivers) that open a host character device: tests/support/vhost_stub.py fakes it when it is missing."""
FORCED_VIRTIO_1 = frozenset({"vhost-vsock-pci", "vhost-user-fs-pci"})
"""Virtio drivers measured as they are, without disable-legacy=on: QEMU 7.2 makes them modern only (vhost-vsock-pci
forces virtio 1; vhost-user-fs-pci is a non-transitional type with no disable-legacy property at all)."""
_PRELOAD: list[Path] = []
"""The compiled stub, once built (``main`` builds it)."""

# kinds whose memory BAR follows a domain setting: the QEMU property (its unit) and the values tried
MEMORY = {
    "ivshmem-plain": ("", [1 * MIB, 64 * MIB, 1024 * MIB]),
    "VGA": ("vgamem_mb", [1 * MIB, 8 * MIB, 64 * MIB]),
    "vmware-svga": ("vgamem_mb", [1 * MIB, 8 * MIB, 64 * MIB]),
    "bochs-display": ("vgamem", [4 * MIB, 8 * MIB, 64 * MIB]),
    "ivshmem-doorbell": ("", [1 * MIB, 64 * MIB, 1024 * MIB]),
}


def _machine_options(driver: str) -> list[str]:
    if driver in ("virtio-pmem-pci", "virtio-mem-pci"):
        return ["-m", "128,slots=2,maxmem=1G"]
    return ["-m", "128"]


@contextmanager
def backend(driver: str, memory: int | None) -> Iterator[Path | None]:
    """The server ``driver`` connects to, running (its socket), or ``None`` when it needs none."""
    if driver not in ("ivshmem-doorbell", "vhost-user-fs-pci"):
        yield None
        return
    with tempfile.TemporaryDirectory(prefix="pcitopo-bars-") as tmp:
        if driver == "ivshmem-doorbell":
            with IvshmemServer(Path(tmp) / "ivshmem.sock", memory or DEFAULT_MEMORY[driver]) as server:
                yield server.path
        else:
            with running_virtiofsd(Path(tmp)) as sock:
                yield sock


def regions(binary: str, driver: str, props: str = "", memory: int | None = None) -> list[dict[str, Any]]:
    """The memory regions QEMU gives one ``driver`` on q35's pcie.0, as query-pci reports them."""
    base = driver.removesuffix("-non-transitional").removesuffix("-transitional")
    with backend(base, memory) as socket:
        return _regions(binary, driver, base, props, memory, socket)


def _regions(
    binary: str, driver: str, base: str, props: str, memory: int | None, socket: Path | None
) -> list[dict[str, Any]]:
    extra_props, options = NEEDS.get(base, ("", []))
    options = [o.format(memory=memory, socket=socket) for o in options]
    prop = ",".join(p for p in (f"{driver},id=dut,bus=pcie.0,addr=0x5", extra_props, props) if p)
    if memory is not None and driver in MEMORY and MEMORY[driver][0]:
        name = MEMORY[driver][0]
        prop += f",{name}={memory // MIB if name.endswith('_mb') else memory}"
    args = ["-machine", "q35", *_machine_options(driver), "-nodefaults", "-display", "none", "-S", "-accel", "tcg"]
    args += [*options, "-device", prop]
    if base in STUBBED and _PRELOAD and not Path(STUBBED[base]).exists():
        binary, prefix = preloaded(binary, _PRELOAD[0])
        args = [*prefix, *args]
    with Qemu(binary, args, timeout=30) as vm:
        answer = vm.execute("query-pci")
    for bus in answer:
        for d in bus["devices"]:
            if d.get("qdev_id") == "dut":
                return [r for r in d.get("regions", []) if r.get("type") == "memory"]
    raise SystemExit(f"{driver}: not on pcie.0 in query-pci")


def bar_entries(found: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The catalog's form of measured regions: bar index, size, mem32/mem64, prefetchable."""
    out = []
    for r in sorted(found, key=lambda r: r["bar"]):
        entry: dict[str, Any] = {
            "bar": r["bar"],
            "size": r["size"],
            "type": "mem64" if r.get("mem_type_64") else "mem32",
        }
        if r.get("prefetch"):
            entry["prefetchable"] = True
        out.append(entry)
    return out


def toml_line(entries: list[dict[str, Any]]) -> str:
    """``bars = [...]`` as an inline TOML array of inline tables."""
    cells = []
    for e in entries:
        parts = [f"bar = {e['bar']}", f"size = {e['size']}", f'type = "{e["type"]}"']
        if e.get("prefetchable"):
            parts.append("prefetchable = true")
        cells.append("{ " + ", ".join(parts) + " }")
    return "bars = [" + ", ".join(cells) + "]"


def measure_kind(binary: str, kind: DeviceKind, catalog: Catalog) -> dict[str, Any]:
    """One kind's BARs (and, for a memory-sized kind, which BAR follows the memory)."""
    driver = kind.qemu_device
    props = "disable-legacy=on" if kind.connect_type == "virtio" and driver not in FORCED_VIRTIO_1 else ""
    out: dict[str, Any] = {"kind": kind.name, "driver": driver}
    if driver in MEMORY:
        sizes = MEMORY[driver][1]
        runs = {m: bar_entries(regions(binary, driver, props, memory=m)) for m in sizes}
        first = sizes[0]
        moving = [
            e["bar"]
            for e in runs[first]
            if all(next(x["size"] for x in runs[m] if x["bar"] == e["bar"]) == max(m, 4096) for m in sizes)
        ]
        if len(moving) != 1:
            raise SystemExit(f"{driver}: expected one BAR sized like its memory, got {moving} ({runs})")
        out["memory_bar"] = moving[0]
        out["memory_property"] = MEMORY[driver][0] or None
        out["tried"] = {str(m): runs[m] for m in sizes}
        # the catalogued size: QEMU's default (libvirt's for ivshmem, which has no default in QEMU)
        out["bars"] = bar_entries(regions(binary, driver, props, memory=DEFAULT_MEMORY.get(driver)))
    else:
        out["bars"] = bar_entries(regions(binary, driver, props))
    for variant in ("transitional", "non-transitional"):
        other = catalog.devices.get(f"{kind.name}-{variant}")
        if other is not None and other.in_qemu:  # vhost-vsock-transitional: libvirt's name, no QEMU driver
            got = bar_entries(regions(binary, f"{driver}-{variant}"))
            if got != out["bars"]:
                out.setdefault("variants_differ", {})[variant] = got
    return out


DEFAULT_MEMORY = {"ivshmem-plain": 4 * MIB, "ivshmem-doorbell": 4 * MIB}
"""The memory a kind is catalogued with when the domain gives none (libvirt's default ``<shmem>`` size, 4 MiB;
for ivshmem-doorbell the server's, whose default is 4 MiB too)."""


def measurable(kind: DeviceKind) -> bool:
    if kind.qemu_device in STUBBED:
        return bool(_PRELOAD) or Path(STUBBED[kind.qemu_device]).exists()
    if kind.qemu_device == "vhost-user-fs-pci":
        return find_virtiofsd() is not None
    return not any(kind.qemu_device.startswith(p) for p in HOST_ONLY)


def update(results: list[dict[str, Any]], path: Path = DEVICES_TOML) -> None:
    """Rewrite (or add) the ``bars`` and ``memory-bar`` lines of each measured base kind in ``path``."""
    text = path.read_text()
    for r in results:
        section = re.search(rf"^\[{re.escape(r['kind'])}\]\n(.*?)(?=^\[|\Z)", text, re.M | re.S)
        if section is None:
            continue  # a derived variant (NAME-transitional): measured, compared, not written
        body = section.group(1)
        body = re.sub(r"^(bars|memory-bar|memory-property) = .*\n", "", body, flags=re.M)
        body = body.rstrip("\n") + "\n" + toml_line(r["bars"]) + "\n"
        if "memory_bar" in r:
            body += f"memory-bar = {r['memory_bar']}\n"
        if r.get("memory_property"):
            body += f'memory-property = "{r["memory_property"]}"\n'
        text = text[: section.start(1)] + body + "\n" + text[section.end(1) :].lstrip("\n")
    path.write_text(text)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--update", action="store_true", help=f"rewrite the bars lines of {DEVICES_TOML.name}")
    parser.add_argument("--kind", action="append", help="only this kind (repeatable)")
    args = parser.parse_args()
    binary = find_binary("qemu-system-x86_64")
    if binary is None:
        raise SystemExit("qemu-system-x86_64 not found (apt-get install qemu-system-x86)")
    catalog = Catalog.default()
    stub_dir = Path(tempfile.mkdtemp(prefix="pcitopo-vhost-stub-"))
    library = build(stub_dir)
    if library is not None:
        _PRELOAD.append(library)
    results = []
    differ = 0
    for kind in catalog.devices.values():
        if args.kind and kind.name not in args.kind:
            continue
        if kind.name.endswith(("-transitional", "-non-transitional")) or not measurable(kind):
            continue
        try:
            r = measure_kind(binary, kind, catalog)
        except QemuError as exc:
            print(f"{kind.name}: QEMU refused ({exc})", file=sys.stderr)
            continue
        results.append(r)
        line = toml_line(r["bars"])
        known = [
            {"bar": b.index, "size": b.size, "type": b.kind, **({"prefetchable": True} if b.prefetchable else {})}
            for b in kind.bars
        ]
        same = (
            known == r["bars"]
            and kind.memory_bar == r.get("memory_bar")
            and kind.memory_property == r.get("memory_property")
        )
        differ += not same
        flag = "" if same else "   <- differs from the catalog"
        memory = f" memory-bar={r['memory_bar']}" if "memory_bar" in r else ""
        print(f"{kind.name:24} {line}{memory}{flag}")
        if r.get("variants_differ"):
            print(f"    variants differ: {r['variants_differ']}")
    controllers = []
    for model in catalog.controllers.values():
        driver = model.qemu_device
        if args.kind or driver is None or driver.startswith(("pxb", "spapr")):
            continue
        found = bar_entries(regions(binary, driver, CONTROLLER_PROPS.get(driver, "")))
        controllers.append({"kind": model.name, "bars": found})
        same = found == [
            {"bar": b.index, "size": b.size, "type": b.kind, **({"prefetchable": True} if b.prefetchable else {})}
            for b in model.bars
        ]
        differ += not same
        print(f"{model.name:24} {toml_line(found)}{'' if same else '   <- differs from the catalog'}")
    if args.update:
        update(results)
        update(controllers, CONTROLLERS_TOML)
        print(f"rewrote {DEVICES_TOML.relative_to(ROOT)}; run python -m pcitopo.legality._toml next")
    elif differ:
        print(f"{differ} kinds differ from the catalog (--update rewrites it)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
