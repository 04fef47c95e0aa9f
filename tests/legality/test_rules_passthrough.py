"""IOMMU groups are all-or-nothing: ``validate_passthrough`` on the reference hosts, and ``--host`` in the CLI."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from pcitopo.address import PciAddress
from pcitopo.cli import main
from pcitopo.devices import Device
from pcitopo.formats.host_json import dumps
from pcitopo.formats.libvirt import LibvirtDomain
from pcitopo.host import Host, HostDevice, hostdev_sources
from pcitopo.legality.rules import HOST_RULES, validate_passthrough
from pcitopo.topology import Topology
from tests.support.hosts import HOSTS, write_host

A = PciAddress.parse


@pytest.fixture(scope="module")
def hosts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Host]:
    base = tmp_path_factory.mktemp("sysfs")
    return {name: Host.from_sysfs(write_host(name, base / name)) for name in HOSTS}


def _check(host: Host, *sources: str) -> list[str]:
    ids = [f"hd{i}" for i in range(len(sources))]
    topology = Topology.build("q35", devices=[Device(i, "vfio-pci") for i in ids])
    return [str(v) for v in validate_passthrough(topology, host, dict(zip(ids, map(A, sources), strict=True)))]


def test_whole_dgx_passes_cleanly(hosts: dict[str, Host]) -> None:
    """Passing all 8 GPUs and 8 HCAs of the DGX, each alone in its group, breaks no rule."""
    h = hosts["dgx-a100"]
    endpoints = [str(d.address) for d in h.devices if not d.is_bridge]
    assert len(endpoints) == 16
    assert _check(h, *endpoints) == []


def test_one_nic_of_a_switch_without_acs_is_refused_naming_the_group(hosts: dict[str, Host]) -> None:
    """One NIC behind the ACS-less switch is an error naming group 7, its bridges and the NIC left behind."""
    assert _check(hosts["switch-no-acs"], "0000:04:00.0") == [
        "IOMMU group 7 is passed only in part: 0000:05:00.0 is not passed (group 7: "
        "0000:02:00.0 (bridge, stays with the host), 0000:03:00.0 (bridge, stays with the host), "
        "0000:03:08.0 (bridge, stays with the host), 0000:04:00.0 by 'hd0', 0000:05:00.0 not passed) "
        "(rule: iommu-group)"
    ]


def test_both_nics_below_a_switch_without_acs_pass_and_the_switch_stays(hosts: dict[str, Host]) -> None:
    """Both endpoints of group 7 together are legal: the switch's ports stay with the host (pcieport)."""
    assert _check(hosts["switch-no-acs"], "0000:04:00.0", "0000:05:00.0") == []


def test_gpu_without_its_audio_function_is_refused(hosts: dict[str, Host]) -> None:
    """The workstation GPU without its HDMI audio function breaks the group; with it, it is fine."""
    h = hosts["workstation"]
    assert _check(h, "0000:01:00.0") == [
        "IOMMU group 1 is passed only in part: 0000:01:00.1 is not passed (group 1: "
        "0000:00:01.0 (bridge, stays with the host), 0000:01:00.0 by 'hd0', 0000:01:00.1 not passed) "
        "(rule: iommu-group)"
    ]
    assert _check(h, "0000:01:00.0", "0000:01:00.1") == []


def test_passing_a_bridge_is_refused(hosts: dict[str, Host]) -> None:
    """A root port as a hostdev source is an error: vfio-pci binds only endpoints."""
    assert _check(hosts["workstation"], "0000:00:01.0", "0000:01:00.0", "0000:01:00.1") == [
        "'hd0' passes host device 0000:00:01.0, a bridge or port (class 060400): vfio-pci binds only "
        "endpoints; pass the functions below it instead (rule: host-device)"
    ]


def test_vfs_pass_one_by_one(hosts: dict[str, Host]) -> None:
    """Three of the X710's eight VFs pass alone: each VF is its own group."""
    assert _check(hosts["sriov-nic"], "0000:3b:02.0", "0000:3b:02.3", "0000:3b:02.7") == []


def test_unknown_and_doubly_passed_sources(hosts: dict[str, Host]) -> None:
    """A source the host lacks and a source passed twice are each named, with the devices at fault."""
    assert _check(hosts["sriov-nic"], "0000:3b:02.0", "0000:3b:02.0", "0000:99:00.0") == [
        "'hd2' passes host device 0000:99:00.0, which the host description does not have (rule: host-device)",
        "host device 0000:3b:02.0 is passed by both 'hd0' and 'hd1' (rule: host-device)",
    ]


def test_function_without_iommu_group() -> None:
    """A host without an IOMMU cannot pass anything through, and the error says so."""
    host = Host([HostDevice(A("0000:00:03.0"), vendor=0x1AF4, device=0x1041, class_code=0x020000)])
    assert _check(host, "0000:00:03.0") == [
        "'hd0' passes host device 0000:00:03.0, which is in no IOMMU group (the host has no IOMMU, or it is off) "
        "(rule: iommu-group)"
    ]


def test_every_host_rule_is_documented() -> None:
    """HOST_RULES names the two rule ids the checks use, each with a one-line meaning."""
    assert sorted(HOST_RULES) == ["host-device", "iommu-group"]
    assert all("\n" not in text for text in HOST_RULES.values())


_DOMAIN = """<domain type='kvm'>
  <name>p</name>
  <os><type arch='x86_64' machine='pc-q35-7.2'>hvm</type></os>
  <devices>
{devices}
  </devices>
</domain>
"""


def _hostdev(address: str) -> str:
    a = A(address)
    return (
        "    <hostdev mode='subsystem' type='pci' managed='yes'>\n"
        f"      <source><address domain='0x{a.domain:04x}' bus='0x{a.bus:02x}' slot='0x{a.slot:02x}' "
        f"function='0x{a.function:x}'/></source>\n"
        "    </hostdev>"
    )


def _files(tmp_path: Path, host: Host, *sources: str) -> tuple[str, str]:
    xml = tmp_path / "d.xml"
    xml.write_text(_DOMAIN.format(devices="\n".join(_hostdev(s) for s in sources)))
    host_file = tmp_path / "host.json"
    host_file.write_text(dumps(host))
    return str(xml), str(host_file)


def test_hostdev_and_interface_sources_map_to_host_addresses() -> None:
    """Both <hostdev> and <interface type='hostdev'> sources are read, in libvirt's number syntax."""
    domain = LibvirtDomain.from_string(
        _DOMAIN.format(
            devices=_hostdev("0000:3b:02.1") + "\n    <interface type='hostdev' managed='yes'><source>"
            "<address type='pci' domain='0' bus='073' slot='2' function='0x2'/></source></interface>"
            + "\n    <interface type='network'><source network='default'/><model type='virtio'/></interface>"
        )
    )
    assert hostdev_sources(domain) == {"hostdev0": A("0000:3b:02.1"), "interface0": A("0000:3b:02.2")}


def test_cli_validate_with_host_reports_the_group(hosts: dict[str, Host], tmp_path: Path) -> None:
    """``validate --host`` exits 1 and prints the group violation with the element of the device at fault."""
    xml, host_file = _files(tmp_path, hosts["workstation"], "0000:01:00.0")
    out = io.StringIO()
    assert main(["validate", xml, "--host", host_file], stdout=out) == 1
    assert out.getvalue() == (
        "IOMMU group 1 is passed only in part: 0000:01:00.1 is not passed (group 1: 0000:00:01.0 (bridge, stays "
        "with the host), 0000:01:00.0 by 'hostdev0', 0000:01:00.1 not passed) (rule: iommu-group)"
        "  [/domain/devices/hostdev]\n"
        f"{xml}: 1 violation\n"
    )
    assert main(["validate", xml], stdout=io.StringIO()) == 0


def test_cli_assign_with_host_refuses_a_partial_group_and_plans_a_whole_one(
    hosts: dict[str, Host], tmp_path: Path
) -> None:
    """``assign --host`` refuses a partial group (exit 1, nothing written) and places a whole group."""
    xml, host_file = _files(tmp_path, hosts["switch-no-acs"], "0000:04:00.0")
    err = io.StringIO()
    target = tmp_path / "out.xml"
    assert main(["assign", xml, "--host", host_file, "-o", str(target)], stdout=io.StringIO(), stderr=err) == 1
    assert err.getvalue().startswith("pcitopo: 1 rule violation:\n  - IOMMU group 7 is passed only in part:")
    assert not target.exists()
    xml, host_file = _files(tmp_path, hosts["switch-no-acs"], "0000:04:00.0", "0000:05:00.0")
    out = io.StringIO()
    assert main(["assign", xml, "--host", host_file], stdout=out) == 0
    placed = LibvirtDomain.from_string(out.getvalue()).topology
    assert [d.address is not None for d in placed.devices if d.kind == "vfio-pci"] == [True, True]
    assert all(d.address is not None for d in placed.devices)  # with the devices libvirt would add
