"""The primary video under SeaBIOS: where each policy puts it, and what SeaVGABIOS finds there.

QEMU 7.2 boots SeaBIOS 1.16.2 with its debug console on I/O port 0x402;
SeaVGABIOS says there whether it found the Bochs VBE interface ("No VBE
DISPI interface detected, falling back to stdvga" when not). Behind a bridge
or root port it does not (the bridge forwards only the legacy VGA ranges, not
the VBE ports 0x1ce/0x1cf), so the guest has plain VGA modes only; on the root
bus, at any slot, it does. libvirt puts the primary video on the root bus, and
so does every pcitopo policy.
"""

from __future__ import annotations

import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from pcitopo.address import PciAddress
from pcitopo.devices import Device
from pcitopo.policy.policy import BUILTIN_POLICIES
from pcitopo.qemu.args import machine_args, qemu_args
from pcitopo.solver import solve
from pcitopo.topology import Topology
from tests.support.qemu import qemu_binary

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("qemu")]

NO_VBE = "No VBE DISPI interface detected, falling back to stdvga"
CONSOLE = "Turning on vga text mode console"


def seabios_log(topology: Topology) -> str:
    """SeaBIOS's debug output for ``topology`` until it tries to boot (no guest: nothing to boot)."""
    with tempfile.TemporaryDirectory(prefix="pcitopo-vga-") as tmp:
        log = Path(tmp) / "seabios.log"
        args = [qemu_binary(topology.machine), *machine_args(topology), "-nodefaults", "-display", "none"]
        args += ["-accel", "tcg", "-chardev", f"file,id=fw,path={log}"]
        args += ["-device", "isa-debugcon,iobase=0x402,chardev=fw", *qemu_args(topology)]
        process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and process.poll() is None:
                text = log.read_text(encoding="utf-8", errors="replace") if log.exists() else ""
                if "Booting from" in text or "No bootable device" in text:
                    return text
                time.sleep(0.2)
            assert process.stderr is not None
            raise AssertionError(f"SeaBIOS did not reach the boot menu: {process.stderr.read().decode()[-500:]}")
        finally:
            process.kill()
            process.wait()


def request(machine: str) -> Topology:
    """NICs first, then the primary VGA and a second (non-VGA) video: the video is not the first device."""
    devices = [Device(f"net{i}", "virtio-net") for i in range(3)] + [Device("net3", "e1000")]
    devices += [Device("video0", "vga"), Device("video1", "virtio-gpu")]
    return Topology.build(machine, devices=devices)


@pytest.mark.parametrize("machine", ["q35", "pc"])
def test_every_policy_puts_the_primary_video_where_seavgabios_finds_vbe(machine: str) -> None:
    """Every built-in policy puts the primary VGA on the root bus, and SeaVGABIOS there finds VBE and starts."""
    plans = {p: solve(request(machine), p).topology for p in sorted(BUILTIN_POLICIES)}
    where = {p: t.device("video0").address for p, t in plans.items()}
    assert all(a is not None and a.bus == 0 for a in where.values()), where
    booted: set[PciAddress | None] = set()
    for policy, topology in plans.items():
        if where[policy] in booted:
            continue  # the same spot boots the same way
        booted.add(where[policy])
        log = seabios_log(topology)
        assert f"PCI: Using {str(where[policy])[5:]} for primary VGA" in log, policy
        assert CONSOLE in log, policy
        assert NO_VBE not in log, policy


def test_a_vga_behind_a_root_port_loses_vbe() -> None:
    """The primary VGA on a free root port (as policies put it before): SeaBIOS routes VGA there, but VBE is lost."""
    plan = solve(request("q35"), "hotplug").topology
    addresses = [d.address for d in plan.devices] + [c.address for c in plan.controllers]
    used = {a.bus for a in addresses if a is not None}
    port = next(c for c in plan.controllers if c.model == "pcie-root-port" and c.index not in used)
    moved = plan.without("video0", "video1").with_devices(Device("video0", "vga", address=PciAddress(bus=port.index)))
    log = seabios_log(moved)
    assert f"PCI: Enabling {port.index:02x}:00.0 for primary VGA" in log
    assert CONSOLE in log
    assert NO_VBE in log
