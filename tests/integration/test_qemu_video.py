"""The primary video under SeaBIOS: where VBE graphics modes work, and where pcitopo's plans put it.

QEMU 7.2 boots SeaBIOS 1.16.2 from a one-sector disk whose code asks the
video BIOS for VBE mode 0x118 (1024x768, 24 bits, linear framebuffer:
``int 10h`` with ``AX=4F02h``) and writes ``Y`` (``AX=004Fh``, done) or ``N``
to the debug port 0x402, then halts; QMP ``screendump`` gives the mode the
screen is in. On the root bus every VGA kind sets the mode. Behind a root
port or a pci-bridge, SeaVGABIOS of the ``bochs-vbe`` kinds (``vga``,
``qxl``, ``virtio-vga``, ``vmvga``) finds no Bochs DISPI interface (its I/O
ports 0x1ce/0x1cf are not forwarded, only the legacy VGA ranges), falls back
to plain VGA and refuses the mode: the console shows, in text mode only.
``cirrus`` sets the mode behind a root port too. These are the facts behind
the catalog's ``vga``, SeaBIOS's ``vbe-root-bus-only`` and the
``primary-video`` term.
"""

from __future__ import annotations

import json
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import attrs
import pytest

from pcitopo.address import PciAddress
from pcitopo.devices import Controller, Device
from pcitopo.qemu.args import machine_args, qemu_args
from pcitopo.solver import solve
from pcitopo.topology import Topology
from tests.support.qemu import qemu_binary

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("qemu")]

NO_VBE = "No VBE DISPI interface detected, falling back to stdvga"

# mov ax,4F02h; mov bx,4118h; int 10h; mov dx,402h; cmp ax,004Fh; jne N; mov al,'Y'; jmp out; N: mov al,'N';
# out: out dx,al; cli; hlt; jmp hlt
_CODE = bytes.fromhex("B8024F BB1841 CD10 BA0204 3D4F00 7504 B059 EB02 B04E EE FA F4 EBFD".replace(" ", ""))
BOOT_SECTOR = _CODE + bytes(510 - len(_CODE)) + b"\x55\xaa"


@attrs.frozen
class Boot:
    """What one boot showed: the boot sector's answer, the screen's size, SeaBIOS's debug log."""

    vbe_set: bool
    screen: str
    log: str


def boot(topology: Topology) -> Boot:
    """Boot ``topology`` under SeaBIOS with the VBE boot sector; its answer, screen size and firmware log."""
    with tempfile.TemporaryDirectory(prefix="pcitopo-vbe-") as tmp:
        disk, log, qmp, shot = (Path(tmp) / n for n in ("boot.img", "seabios.log", "qmp", "screen.ppm"))
        disk.write_bytes(BOOT_SECTOR + bytes(1 << 20))
        args = [qemu_binary(topology.machine), *machine_args(topology), "-nodefaults", "-display", "none"]
        args += [
            "-accel",
            "tcg",
            "-chardev",
            f"file,id=fw,path={log}",
            "-device",
            "isa-debugcon,iobase=0x402,chardev=fw",
        ]
        args += ["-qmp", f"unix:{qmp},server=on,wait=off"]
        args += ["-drive", f"file={disk},format=raw,if=none,id=d0", "-device", "ide-hd,drive=d0,bus=ide.0"]
        process = subprocess.Popen([*args, *qemu_args(topology)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            text = ""
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and process.poll() is None:
                text = log.read_text(encoding="utf-8", errors="replace") if log.exists() else ""
                if "Booting from Hard Disk" in text and text.rstrip().endswith(("Y", "N")):
                    break
                time.sleep(0.2)
            else:
                assert process.stderr is not None
                raise AssertionError(f"the boot sector did not answer: {process.stderr.read().decode()[-500:]}")
            with socket.socket(socket.AF_UNIX) as s:
                s.connect(str(qmp))
                f = s.makefile("rw")
                f.readline()
                for command in (
                    {"execute": "qmp_capabilities"},
                    {"execute": "screendump", "arguments": {"filename": str(shot)}},
                ):
                    f.write(json.dumps(command) + "\n")
                    f.flush()
                    f.readline()
            screen = shot.read_bytes().split(b"\n", 3)[1].decode()
        finally:
            process.kill()
            process.wait()
        return Boot(text.rstrip().endswith("Y"), screen, text)


def request(machine: str) -> Topology:
    """NICs first, then the primary VGA and a second (non-VGA) video: the video is not the first device."""
    devices = [Device(f"net{i}", "virtio-net") for i in range(3)] + [Device("net3", "e1000")]
    devices += [Device("video0", "vga"), Device("video1", "virtio-gpu")]
    return Topology.build(machine, devices=devices)


def test_the_default_policy_puts_the_primary_vga_where_vbe_modes_work() -> None:
    """The hotplug policy integrates the primary vga on q35, and there the guest sets a 1024x768 VBE mode."""
    plan = solve(request("q35"), "hotplug")
    where = plan.topology.device("video0").address
    assert where is not None
    assert where.bus == 0
    assert [s.met for s in plan.soft if s.name == "primary-video"] == [True]
    seen = boot(plan.topology)
    assert f"PCI: Using {str(where)[5:]} for primary VGA" in seen.log
    assert (seen.vbe_set, seen.screen, NO_VBE in seen.log) == (True, "1024 768", False)


def _behind(machine: str, kind: str) -> Topology:
    if machine == "q35":
        port = Controller(1, "pcie-root-port", address=PciAddress(slot=2), chassis=1, port=0x10)
        return Topology.build(machine, controllers=[port], devices=[Device("v", kind, address=PciAddress(bus=1))])
    bridge = Controller(1, "pci-bridge", address=PciAddress(slot=3), chassis_nr=1)
    return Topology.build(machine, controllers=[bridge], devices=[Device("v", kind, address=PciAddress(bus=1, slot=1))])


@pytest.mark.parametrize(("machine", "kind"), [("q35", "vga"), ("pc", "qxl")])
def test_a_bochs_vbe_vga_behind_a_bridge_has_no_vbe_modes(machine: str, kind: str) -> None:
    """Behind a root port (q35) or a pci-bridge (pc) SeaBIOS routes VGA there, but VBE is gone: text mode only."""
    seen = boot(_behind(machine, kind))
    assert "for primary VGA" in seen.log
    assert (seen.vbe_set, seen.screen, NO_VBE in seen.log) == (False, "720 400", True)


def test_cirrus_behind_a_root_port_keeps_its_vbe_modes() -> None:
    """cirrus reaches its modes through the VGA range, which the root port forwards: no primary-video term for it."""
    seen = boot(_behind("q35", "cirrus"))
    assert (seen.vbe_set, seen.screen) == (True, "1024 768")
