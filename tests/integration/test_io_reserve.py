"""io-reserve=0 under OVMF (issue 11): the solver's plans boot with every BAR mapped and libvirt keeps them.

OVMF gives every hotplug root port a 4 KiB IO window and has room for nine
on q35. 8 e1000e and 3 virtio-net all on hotplug ports with a spare port
need twelve (fourteen with libvirt's implicit USB controller and balloon);
pcitopo plans io-reserve=0 on the ports of the devices without IO BAR
(measured: ``benchmarks/calibrate_firmware.py --facts io-reserve``). These
tests boot that plan under OVMF (TCG, about 20 s) and check what libvirt
9.0 makes of the written domain: define/dumpxml keeps the ``<qemu:override>``
and the aliases, and the QEMU command line it builds carries
``io-reserve=0``. edk2 on aarch64 virt has room for sixteen windows and
honours ``io-reserve=0`` on root ports the same way (``--facts "io-reserve
aarch64"``); one test boots its plan too. SeaBIOS does not honour
``io-reserve=0`` on its SHPC bridges; the last test pins that.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from pcitopo.address import PciAddress
from pcitopo.devices import Controller, Device
from pcitopo.formats.libvirt import LibvirtDomain
from pcitopo.legality.rules import validate
from pcitopo.qemu import verify
from pcitopo.solver import Plan, solve
from pcitopo.topology import Topology
from tests.support.libvirt import URI, define_and_dump
from tests.support.packages import require_packages

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("qemu")]


@pytest.fixture(scope="module")
def ovmf() -> None:
    """Install Debian's ovmf package when missing (CI must run these tests, not skip them)."""
    require_packages(["ovmf"], "ovmf")


NICS = "".join(
    f"    <interface type='user'>\n      <model type='{model}'/>\n"
    f"      <alias name='ua-{name}{i}'/>\n    </interface>\n"
    for model, name, n in (("e1000e", "e", 8), ("virtio", "v", 3))
    for i in range(n)
)

DOMAIN = f"""<domain type='kvm'>
  <name>ioreserve</name>
  <memory unit='MiB'>256</memory>
  <os firmware='efi'>
    <type arch='x86_64' machine='pc-q35-7.2'>hvm</type>
  </os>
  <features><acpi/></features>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
{NICS}  </devices>
</domain>
"""


@pytest.fixture(scope="module")
def aavmf() -> None:
    """Install Debian's qemu-efi-aarch64 package (edk2 for aarch64 virt) when missing."""
    require_packages(["qemu-efi-aarch64"], "edk2")


def _plan() -> tuple[LibvirtDomain, Plan]:
    domain = LibvirtDomain.from_string(DOMAIN)
    assert domain.topology.firmware == "ovmf"
    return domain, solve(domain.topology, "hotplug")


def _io_reserved(plan: Plan) -> dict[str, list[str]]:
    """The aliases of the controllers the plan gives io-reserve=0, with the devices on their buses."""
    t = plan.topology
    return {
        str(c.id): [d.id for d in t.devices if d.address is not None and d.address.bus == c.index]
        for c in t.controllers
        if c.io_reserve == 0
    }


@pytest.mark.usefixtures("ovmf")
def test_ovmf_maps_every_bar_of_the_plan_with_io_reserve() -> None:
    """The plan puts all 11 NICs on hotplug ports, io-reserve=0 on those without IO BAR, and OVMF maps every BAR.

    libvirt's implicit qemu-xhci and virtio balloon take hotplug ports too (no IO BAR either): 14 ports with
    the spare, 9 windows, so 5 ports give theirs back.
    """
    _, plan = _plan()
    reserved = _io_reserved(plan)
    assert sorted(d for ids in reserved.values() for d in ids) == ["memballoon0", "ua-v0", "ua-v1", "ua-v2", "usb0"]
    assert all(d.address is not None and d.address.bus != 0 for d in plan.topology.devices if d.id.startswith("ua-"))
    assert validate(plan.topology) == ()
    report = verify(plan.topology, firmware="ovmf", hotplug=False)
    assert report.ok, str(report)
    booted = " ".join(report.command)
    assert booted.count("io-reserve") == len(reserved) == 5
    assert all(f'"id":"{alias}",' in booted or f"id={alias}," in booted for alias in reserved)


@pytest.mark.usefixtures("libvirtd")
def test_libvirt_keeps_the_io_reserve_plan_and_passes_it_to_qemu(tmp_path: Path) -> None:
    """define/dumpxml keeps every address, alias and override of the plan; libvirt's QEMU command has io-reserve 0."""
    domain, plan = _plan()
    planned = domain.export(plan)
    dumped = LibvirtDomain.from_string(define_and_dump(planned))
    assert {d.id: d.address for d in dumped.topology.devices} == {d.id: d.address for d in plan.topology.devices}
    assert {c.index: (c.id, c.io_reserve) for c in dumped.topology.controllers} == {
        c.index: (c.id, c.io_reserve) for c in plan.topology.controllers
    }
    path = tmp_path / "planned.xml"
    path.write_text(planned)
    argv = subprocess.run(
        ["virsh", "-c", URI, "domxml-to-native", "qemu-argv", str(path)], capture_output=True, text=True, check=True
    ).stdout
    for alias in _io_reserved(plan):
        assert f'"id":"{alias}",' in argv
        device = argv[argv.index(f'"id":"{alias}",') :]
        assert '"io-reserve":0}' in device[: device.index("}") + 1], device[:200]


@pytest.mark.usefixtures("aavmf")
def test_edk2_aarch64_maps_every_bar_of_the_plan_with_io_reserve() -> None:
    """16 e1000e and 3 virtio-net on aarch64 virt: every NIC on a hotplug port, edk2 maps every BAR.

    edk2 has room for 16 IO windows: the e1000e take them all, so the virtio-net ports and the spare
    port get io-reserve=0 (before, 4 e1000e went onto pcie.0, not hot-pluggable: cost 435, now 28).
    """
    devices = [Device(f"e{i}", "e1000e") for i in range(16)] + [Device(f"v{i}", "virtio-net") for i in range(3)]
    plan = solve(Topology.build("aarch64-virt", devices=devices, firmware="edk2-aarch64"), "hotplug")
    reserved = _io_reserved(plan)
    assert sorted(d for ids in reserved.values() for d in ids) == ["v0", "v1", "v2"]
    assert len(reserved) == 4  # the spare port too
    assert all(d.address is not None and d.address.bus != 0 for d in plan.topology.devices)
    assert plan.cost == 28, [str(s) for s in plan.soft if not s.met]
    report = verify(plan.topology, firmware="edk2-aarch64", hotplug=False)
    assert report.ok, str(report)
    assert " ".join(report.command).count("io-reserve") == 4


def test_seabios_ignores_io_reserve_zero_on_an_shpc_bridge() -> None:
    """SeaBIOS gives an empty pci-bridge with io-reserve=0 its window anyway: 9 bridges on pc run out (io-space)."""
    bridges = [
        Controller(1 + i, "pci-bridge", PciAddress.parse(f"00:{3 + i:02x}.0"), chassis_nr=1 + i) for i in range(9)
    ]
    bridges[8] = bridges[8].with_io_reserve(0)
    nics = [Device(f"n{i}", "e1000", address=PciAddress.parse(f"{1 + i:02x}:01.0")) for i in range(8)]
    t = Topology.build("pc", bridges, nics, firmware="seabios")
    assert [v.rule for v in validate(t)] == ["io-space"]
    report = verify(t, firmware="seabios", hotplug=False)
    assert "io-reserve=0" in " ".join(report.command)
    assert report.named("firmware")[0].detail == "PCI: out of I/O address space"
    assert not report.ok
