"""A mirrored 8-GPU guest starts in QEMU 7.2 as planned, with emulated stand-ins for the passed-through devices."""

from __future__ import annotations

from pathlib import Path

import attrs
import pytest

from pcitopo.address import PciAddress
from pcitopo.formats.libvirt import LibvirtDomain
from pcitopo.host import Host, hostdev_sources
from pcitopo.legality.rules import validate
from pcitopo.mirror import MIRROR_POLICY, mirror_request
from pcitopo.qemu import verify
from pcitopo.solver import solve
from tests.support.hosts import write_host
from tests.test_mirror import domain_xml

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("qemu")]


def test_mirrored_dgx_verifies_with_stand_ins(tmp_path: Path) -> None:
    """Every device and controller of the mirrored DGX plan is where planned, and SeaBIOS maps every BAR."""
    host = Host.from_sysfs(write_host("dgx-a100", tmp_path / "dgx"))
    domain = LibvirtDomain.from_string(domain_xml([d.address for d in host.devices if not d.is_bridge], 2))
    plan = solve(mirror_request(domain.topology, host, hostdev_sources(domain)), MIRROR_POLICY)
    # vfio-pci needs a host device: a virtio-rng (PCI Express behind a port, no IO BAR) takes each one's place
    stand_ins = plan.topology.replace(
        devices=[attrs.evolve(d, kind="virtio-rng") if d.kind == "vfio-pci" else d for d in plan.topology.devices]
    )
    assert validate(stand_ins) == ()
    report = verify(stand_ins, hotplug=False)
    assert report.ok, str(report)
    enumerated = {c.subject for c in report.named("enumerated")}
    own = {d.id for d in stand_ins.devices if d.address is None or stand_ins.machine.builtin_at(d.address) is None}
    assert own <= enumerated  # q35's SATA controller 0 is the chipset's AHCI, checked as a built-in


def test_mirrored_nic_ports_without_function_0_verify(tmp_path: Path) -> None:
    """Ports 1 and 3 of the quad NIC become guest functions 0 and 3 of one slot, and QEMU puts them there."""
    host = Host.from_sysfs(write_host("quad-nic", tmp_path / "nic"))
    domain = LibvirtDomain.from_string(
        domain_xml([PciAddress.parse("0000:05:00.1"), PciAddress.parse("0000:05:00.3")], 0)
    )
    plan = solve(mirror_request(domain.topology, host, hostdev_sources(domain)), MIRROR_POLICY)
    stand_ins = plan.topology.replace(
        devices=[attrs.evolve(d, kind="e1000e") if d.kind == "vfio-pci" else d for d in plan.topology.devices]
    )
    passed = sorted(str(d.address) for d in stand_ins.devices if d.kind == "e1000e")
    assert [a[-1] for a in passed] == ["0", "3"]
    report = verify(stand_ins, hotplug=False)
    assert report.ok, str(report)
    assert {c.subject for c in report.named("placement")} >= {"hostdev0", "hostdev1"}
