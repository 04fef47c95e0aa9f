"""Boot a tiny Linux guest and read what its kernel shows of PCI: the oracle for guest-visible names.

:func:`guest_pci` boots Debian's cloud kernel (``linux-image-cloud-amd64``)
with an initramfs holding only a static busybox and a script that prints, for
every PCI function, its address, class, header type and ``acpi_index``
attribute, and every hotplug slot with its address (``/sys/bus/pci/slots``),
then powers off. It runs under TCG (KVM on the project's machine never reaches the
kernel's console): a boot takes about 15 seconds.

:func:`systemd_name` turns those sysfs facts into the name systemd's
``net_id`` would pick, written here from systemd's source independently of
:mod:`pcitopo.naming` (which works from the plan, not from sysfs).
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path

import attrs

from tests.support.packages import ensure_packages

__all__ = ["GUEST_PACKAGES", "GuestPci", "guest_pci", "kernel", "systemd_name"]

GUEST_PACKAGES = ["linux-image-cloud-amd64", "busybox-static", "cpio"]

_INIT = """#!/bin/busybox sh
/bin/busybox mkdir -p /proc /sys /bin
/bin/busybox --install -s /bin
mount -t sysfs sysfs /sys
mount -t proc proc /proc
echo PCITOPO-BEGIN
for d in /sys/bus/pci/devices/*; do
  a=$(basename $d)
  idx=$(cat $d/acpi_index 2>/dev/null || echo -)
  hdr=$(od -An -tx1 -j14 -N1 $d/config | tr -d ' ')
  echo "dev $a $(cat $d/class) $hdr $idx"
done
for s in /sys/bus/pci/slots/*; do
  if [ -e "$s/address" ]; then echo "slot $(basename $s) $(cat $s/address)"; fi
done
echo PCITOPO-END
poweroff -f
"""


@attrs.frozen
class GuestPci:
    """What the guest kernel shows: functions (address -> (class, header type, acpi_index)) and slots."""

    functions: dict[str, tuple[int, int, int | None]]
    slots: dict[str, str]
    """Slot directory name -> address (``0000:00:03``)."""


def kernel() -> tuple[str, str] | str:
    """(vmlinuz, busybox) paths, installing the packages if needed; else why not."""
    reason = ensure_packages(GUEST_PACKAGES)
    if reason is not None:
        return reason
    kernels = sorted(glob.glob("/boot/vmlinuz-*-cloud-amd64"))
    busybox = shutil.which("busybox") or "/bin/busybox"
    if not kernels or not os.path.exists(busybox):
        return "installed, but no /boot/vmlinuz-*-cloud-amd64 or busybox"
    return kernels[-1], busybox


def _initramfs(directory: Path, busybox: str) -> Path:
    root = directory / "root"
    (root / "bin").mkdir(parents=True)
    shutil.copy(busybox, root / "bin" / "busybox")
    init = root / "init"
    init.write_text(_INIT)
    init.chmod(0o755)
    files = sorted(str(p.relative_to(root)) for p in root.rglob("*"))
    out = directory / "initramfs.cpio"
    with out.open("wb") as handle:
        subprocess.run(
            ["cpio", "-o", "-H", "newc", "--quiet"],
            input="\n".join(files).encode(),
            stdout=handle,
            cwd=root,
            check=True,
        )
    return out


def guest_pci(qemu: str, machine_args: Sequence[str], device_args: Sequence[str], *, timeout: float = 120) -> GuestPci:
    """Boot the guest with these arguments and return what its kernel shows of PCI."""
    found = kernel()
    if isinstance(found, str):
        raise RuntimeError(found)
    vmlinuz, busybox = found
    with tempfile.TemporaryDirectory(prefix="pcitopo-guest-") as tmp:
        initrd = _initramfs(Path(tmp), busybox)
        command = [
            qemu,
            *machine_args,
            "-accel",
            "tcg",
            "-nodefaults",
            "-display",
            "none",
            "-no-reboot",
            "-serial",
            "stdio",
            "-kernel",
            vmlinuz,
            "-initrd",
            str(initrd),
            "-append",
            "console=ttyS0 panic=-1 rdinit=/init quiet",
            *device_args,
        ]
        result = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
    text = result.stdout.replace("\r", "")
    if "PCITOPO-END" not in text:
        raise RuntimeError(f"the guest did not report (exit {result.returncode}): {result.stderr[-800:]}{text[-800:]}")
    body = text.split("PCITOPO-BEGIN", 1)[1].split("PCITOPO-END", 1)[0]
    functions: dict[str, tuple[int, int, int | None]] = {}
    slots: dict[str, str] = {}
    for line in body.splitlines():
        parts = line.split()
        if len(parts) == 5 and parts[0] == "dev":
            functions[parts[1]] = (int(parts[2], 16), int(parts[3], 16), None if parts[4] == "-" else int(parts[4]))
        elif len(parts) == 3 and parts[0] == "slot":
            slots[parts[1]] = parts[2]
    return GuestPci(functions, slots)


def systemd_name(guest: GuestPci, address: str) -> str:
    """The name systemd 252's net_id and the default NamePolicy give the NIC at ``address`` in this guest.

    onboard (``acpi_index`` 1..65535) first, then the hotplug slot whose
    address prefixes the function's (only positive decimal slot names; the
    parent bridge's slot is not used for a bridge with a single-function
    device below), then the path; ``f<N>`` for a function above 0 or a
    multifunction device (header type bit 7).
    """
    _, header, index = guest.functions[address]
    domain, bus, rest = address.split(":")
    slot, function = (int(x, 16) for x in rest.split("."))
    func = f"f{function}" if function > 0 or header & 0x80 else ""
    if index is not None and 0 <= index <= 65535:
        return f"eno{index}"
    for name, slot_address in sorted(guest.slots.items()):
        if name.isdigit() and int(name) > 0 and address.startswith(slot_address):
            return f"ens{int(name)}{func}"
    prefix = f"P{int(domain, 16)}" if int(domain, 16) else ""
    return f"en{prefix}p{int(bus, 16)}s{slot}{func}"
