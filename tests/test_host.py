"""The host read from sysfs: each reference host's tree, this machine's /sys, and ``pcitopo host-scan``."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from pcitopo.address import PciAddress
from pcitopo.cli import main
from pcitopo.errors import InvalidInput, UnknownName
from pcitopo.formats.host_json import loads
from pcitopo.host import Bar, Host, HostDevice
from tests.support.hosts import HOSTS, write_host

A = PciAddress.parse


@pytest.fixture(scope="module")
def trees(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("sysfs")
    return {name: write_host(name, base / name) for name in HOSTS}


@pytest.fixture(scope="module")
def hosts(trees: dict[str, Path]) -> dict[str, Host]:
    return {name: Host.from_sysfs(path) for name, path in trees.items()}


def test_dgx_has_eight_gpus_and_eight_nics_behind_four_switches(hosts: dict[str, Host]) -> None:
    """The DGX A100 tree reads as 8 GPUs and 8 HCAs, two of each behind each of 4 switches, 2 switches a node."""
    h = hosts["dgx-a100"]
    gpus = [d for d in h.devices if d.is_gpu]
    nics = [d for d in h.devices if d.is_nic]
    assert (len(gpus), len(nics)) == (8, 8)
    by_switch: dict[PciAddress, list[HostDevice]] = {}
    for d in gpus + nics:
        upstream_port = h.switch_of(d.address)
        assert upstream_port is not None
        by_switch.setdefault(upstream_port.address, []).append(d)
    assert sorted(str(a) for a in by_switch) == ["0000:01:00.0", "0000:41:00.0", "0000:81:00.0", "0000:c1:00.0"]
    for switch_address, members in by_switch.items():
        assert sum(m.is_gpu for m in members) == 2
        assert sum(m.is_nic for m in members) == 2
        assert {m.numa_node for m in members} == {0 if switch_address.bus < 0x80 else 1}
    gpu = h.device("0000:03:00.0")
    assert [str(u.address) for u in h.upstream(gpu.address)] == ["0000:02:00.0", "0000:01:00.0", "0000:00:01.1"]
    assert [u.port_type for u in h.upstream(gpu.address)] == ["downstream-port", "upstream-port", "root-port"]
    assert [str(b) for b in gpu.bars] == [
        "BAR0 mem32 16M",
        "BAR1 mem64 prefetchable 64G",
        "BAR3 mem64 prefetchable 32M",
    ]
    assert len(h.group_members(gpu.address)) == 1


def test_r750xa_gpus_sit_straight_on_root_ports(hosts: dict[str, Host]) -> None:
    """Each R750xa GPU's only upstream function is a root port on its own root bus, two GPUs a NUMA node."""
    h = hosts["r750xa"]
    gpus = [d for d in h.devices if d.is_gpu]
    assert len(gpus) == 4
    for g in gpus:
        (port,) = h.upstream(g.address)
        assert port.port_type == "root-port"
        assert port.parent is None
    assert [g.numa_node for g in gpus] == [0, 0, 1, 1]


def test_workstation_gpu_and_audio_share_a_slot_and_a_group_with_the_root_port(hosts: dict[str, Host]) -> None:
    """The RTX 3080's VGA and HDMI audio functions are one slot, and the PEG port without ACS joins their group."""
    h = hosts["workstation"]
    vga, audio = h.device("01:00.0"), h.device("01:00.1")
    assert (vga.class_code, audio.class_code) == (0x030000, 0x040300)
    assert [str(d.address) for d in h.group_members(vga.address)] == ["0000:00:01.0", "0000:01:00.0", "0000:01:00.1"]
    assert h.device("00:01.0").acs is None
    assert h.device("00:01.0").is_bridge
    assert vga.numa_node is None
    assert Bar(5, 128, "io") in vga.bars


def test_sriov_nic_links_pf_and_eight_vfs(hosts: dict[str, Host]) -> None:
    """The X710's PF lists 8 VFs at 3b:02.0-7 and each VF names the PF, in its own group."""
    h = hosts["sriov-nic"]
    pf = h.device("3b:00.0")
    assert pf.sriov_totalvfs == 8
    assert [str(v) for v in pf.virtfns] == [f"0000:3b:02.{i}" for i in range(8)]
    for v in pf.virtfns:
        vf = h.device(v)
        assert (vf.physfn, vf.device, vf.is_virtfn) == (pf.address, 0x154C, True)
        assert h.group_members(v) == (vf,)
    assert [str(b) for b in pf.bars][-1] == "VF BAR0 mem64 prefetchable 512K"


def test_switch_without_acs_puts_everything_below_in_one_group(hosts: dict[str, Host]) -> None:
    """Below the ACS-less PEX 8747, the switch ports and both NICs are IOMMU group 7; the root port is apart."""
    h = hosts["switch-no-acs"]
    assert h.iommu_groups() == {
        6: (A("0000:00:03.0"),),
        7: (A("0000:02:00.0"), A("0000:03:00.0"), A("0000:03:08.0"), A("0000:04:00.0"), A("0000:05:00.0")),
    }
    assert h.device("00:03.0").acs == 0x1D
    assert [str(d.address) for d in h.below(A("0000:02:00.0"))] == [
        "0000:03:00.0",
        "0000:03:08.0",
        "0000:04:00.0",
        "0000:05:00.0",
    ]


def test_this_machine_real_sysfs_reads_and_round_trips() -> None:
    """This machine's /sys reads without error, lists what lspci would, and survives JSON both ways."""
    sysfs = Path("/sys/bus/pci/devices")
    if not sysfs.is_dir():
        pytest.skip("no /sys/bus/pci on this machine")
    h = Host.from_sysfs("/sys")
    assert sorted(str(d.address) for d in h.devices) == sorted(p.name for p in sysfs.iterdir())
    for d in h.devices:
        assert d.vendor == int((sysfs / str(d.address) / "vendor").read_text(), 16)
    out = io.StringIO()
    assert main(["host-scan"], stdout=out) == 0
    assert loads(out.getvalue()) == h


def test_host_scan_writes_the_json_file(trees: dict[str, Path], tmp_path: Path) -> None:
    """``host-scan --sysfs DIR -o FILE`` writes the document atomically and prints nothing."""
    out = io.StringIO()
    target = tmp_path / "host.json"
    assert main(["host-scan", "--sysfs", str(trees["sriov-nic"]), "-o", str(target)], stdout=out) == 0
    assert out.getvalue() == ""
    doc = json.loads(target.read_text())
    assert (doc["format"], doc["version"]) == ("pcitopo-host", 1)
    assert len(doc["devices"]) == 10
    assert doc["devices"][2]["physfn"] == "0000:3b:00.0"


def test_host_scan_of_a_directory_without_pci_is_bad_input(tmp_path: Path) -> None:
    """A directory that is no sysfs tree gives exit 3 and a message naming it, no traceback."""
    err = io.StringIO()
    assert main(["host-scan", "--sysfs", str(tmp_path)], stdout=io.StringIO(), stderr=err) == 3
    assert err.getvalue() == f"pcitopo: {tmp_path}: has no bus/pci/devices directory: not a sysfs tree with PCI\n"


def test_bad_files_in_a_tree_name_the_file(trees: dict[str, Path], tmp_path: Path) -> None:
    """A vendor file that is not hexadecimal is an error naming that file."""
    root = write_host("workstation", tmp_path / "ws")
    vendor = (root / "bus/pci/devices/0000:01:00.0/vendor").resolve()
    vendor.write_text("nvidia\n")
    with pytest.raises(InvalidInput) as info:
        Host.from_sysfs(root)
    assert str(info.value) == f"{root}/bus/pci/devices/0000:01:00.0/vendor: is not a hexadecimal number: 'nvidia'"


def test_unknown_host_address_lists_what_exists(hosts: dict[str, Host]) -> None:
    """Asking for a function the host lacks names it and a close known one."""
    with pytest.raises(UnknownName, match=r"^unknown host PCI device '0000:09:00.0'; did you mean '0000:01:00.0'\?$"):
        hosts["workstation"].device("09:00.0")


def test_a_parent_that_is_not_listed_is_refused() -> None:
    """A host description whose function names a parent that is not among its functions is an error."""
    d = HostDevice(A("0000:01:00.0"), vendor=1, device=2, class_code=0x020000, parent=A("0000:00:01.0"))
    with pytest.raises(InvalidInput, match=r"host device 0000:01:00.0: its parent 0000:00:01.0 is not a host device"):
        Host([d])
