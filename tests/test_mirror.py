"""The mirror request: each reference host's structure (switches, NUMA nodes, multifunction slots) in the guest plan."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from pcitopo.address import PciAddress
from pcitopo.cli import main
from pcitopo.errors import InvalidInput, InvalidTopology
from pcitopo.formats.host_json import dumps, load
from pcitopo.formats.libvirt import LibvirtDomain
from pcitopo.host import Host, HostDevice, hostdev_sources
from pcitopo.legality.rules import validate
from pcitopo.mirror import mirror_request, with_host_bars
from pcitopo.topology import Topology
from tests.support.hosts import HOSTS, write_host

A = PciAddress.parse


@pytest.fixture(scope="module")
def hosts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Host]:
    base = tmp_path_factory.mktemp("sysfs")
    return {name: Host.from_sysfs(write_host(name, base / name)) for name in HOSTS}


def domain_xml(sources: list[PciAddress], numa_cells: int) -> str:
    """A q35 domain passing these host functions through, with that many NUMA cells and the host's CPU.

    The host's CPU (``host-passthrough``) brings the host's physical address bits: QEMU's default
    CPU has 40, too few for the DGX's eight 64 GiB GPU BARs (see the test of that refusal).
    """
    cells = "".join(f"<cell id='{i}' cpus='{i}' memory='1048576'/>" for i in range(numa_cells))
    numa = f"<cpu mode='host-passthrough'><numa>{cells}</numa></cpu>" if numa_cells else ""
    hostdevs = "".join(
        "<hostdev mode='subsystem' type='pci' managed='yes'><source>"
        f"<address domain='0x{a.domain:04x}' bus='0x{a.bus:02x}' slot='0x{a.slot:02x}' function='0x{a.function:x}'/>"
        "</source></hostdev>\n"
        for a in sources
    )
    return (
        "<domain type='kvm'><name>m</name><memory>2097152</memory>"
        f"<os><type arch='x86_64' machine='pc-q35-7.2'>hvm</type></os>{numa}\n"
        f"<devices>\n{hostdevs}</devices></domain>\n"
    )


def mirrored(
    host: Host, sources: list[PciAddress], numa_cells: int, tmp_path: Path
) -> tuple[Topology, dict[str, PciAddress]]:
    """Run ``pcitopo assign --host --policy mirror`` and read the planned domain back."""
    xml, host_file = tmp_path / "in.xml", tmp_path / "host.json"
    xml.write_text(domain_xml(sources, numa_cells))
    host_file.write_text(dumps(host))
    out = io.StringIO()
    assert main(["assign", str(xml), "--host", str(host_file), "--policy", "mirror"], stdout=out) == 0
    planned = LibvirtDomain.from_string(out.getvalue())
    return planned.topology, hostdev_sources(planned)


def guest_switch(t: Topology, ident: str) -> int | None:
    """The index of the guest switch's upstream port above a device, if any."""
    for c in t.path_to_root(ident):
        if c.model == "pcie-switch-upstream-port":
            return c.index
    return None


def test_dgx_switches_and_numa_nodes_are_mirrored(hosts: dict[str, Host], tmp_path: Path) -> None:
    """Devices share a guest switch exactly when they share a host switch, under the host's NUMA node."""
    host = hosts["dgx-a100"]
    endpoints = [d.address for d in host.devices if not d.is_bridge]
    t, sources = mirrored(host, endpoints, 2, tmp_path)
    for i in sources:
        for j in sources:
            same_host = host.switch_of(sources[i]) == host.switch_of(sources[j])
            assert (guest_switch(t, i) == guest_switch(t, j)) is same_host, (i, j)
        address = t.device(i).address
        assert address is not None
        assert t.numa_node_of_bus(address.bus) == host.device(sources[i]).numa_node
    assert len({guest_switch(t, i) for i in sources}) == 4


def test_workstation_gpu_and_audio_share_one_multifunction_slot(hosts: dict[str, Host], tmp_path: Path) -> None:
    """The GPU's two functions land in one guest slot with the host's function numbers."""
    t, sources = mirrored(hosts["workstation"], [A("0000:01:00.1"), A("0000:01:00.0")], 0, tmp_path)
    placed = {sources[d.id]: d.address for d in t.devices if d.id in sources}
    gpu, audio = placed[A("0000:01:00.0")], placed[A("0000:01:00.1")]
    assert gpu is not None
    assert audio is not None
    assert gpu.slot_address == audio.slot_address
    assert (gpu.function, audio.function) == (0, 1)


def test_r750xa_gpus_sit_under_their_nodes_without_switches(hosts: dict[str, Host], tmp_path: Path) -> None:
    """GPUs straight on host root ports get no guest switch, and each sits under its host node's expander."""
    host = hosts["r750xa"]
    t, sources = mirrored(host, [d.address for d in host.devices if d.is_gpu], 2, tmp_path)
    for ident, a in sources.items():
        assert guest_switch(t, ident) is None
        address = t.device(ident).address
        assert address is not None
        assert t.numa_node_of_bus(address.bus) == host.device(a).numa_node


def test_partial_group_and_missing_numa_cell_are_refused(hosts: dict[str, Host]) -> None:
    """mirror checks the IOMMU groups first, and a host node the guest lacks is an error naming the device."""
    t = LibvirtDomain.from_string(domain_xml([A("0000:04:00.0")], 0))
    with pytest.raises(InvalidTopology, match="IOMMU group 7 is passed only in part"):
        mirror_request(t.topology, hosts["switch-no-acs"], hostdev_sources(t))
    t = LibvirtDomain.from_string(domain_xml([A("0000:c3:00.0")], 1))
    with pytest.raises(InvalidInput) as info:
        mirror_request(t.topology, hosts["dgx-a100"], hostdev_sources(t))
    assert str(info.value) == (
        "mirror: 'hostdev0' (vfio-pci) passes 0000:c3:00.0 on host NUMA node 1, but the guest declares 1 NUMA cell"
    )


def test_mirror_needs_a_host(tmp_path: Path) -> None:
    """``--policy mirror`` without ``--host`` is a usage error."""
    xml = tmp_path / "in.xml"
    xml.write_text(domain_xml([A("0000:01:00.0")], 0))
    err = io.StringIO()
    assert main(["assign", str(xml), "--policy", "mirror"], stdout=io.StringIO(), stderr=err) == 2
    assert err.getvalue() == "pcitopo assign: error: --policy mirror needs --host host.json\n"


def test_single_function_host_device_gets_no_slot_group() -> None:
    """A host function passed alone needs no multifunction slot and no switch."""
    host = Host([HostDevice(A("0000:01:00.0"), vendor=1, device=2, class_code=0x020000, iommu_group=3)])
    t = LibvirtDomain.from_string(domain_xml([A("0000:01:00.0")], 0))
    (d,) = [x for x in mirror_request(t.topology, host, hostdev_sources(t)).devices if x.id not in t.implicit]
    assert (d.needs.slot_group, d.needs.switch_group, d.needs.numa_node) == (None, None, None)


DOCS = Path(__file__).resolve().parent.parent / "docs" / "examples"


def test_docs_example_is_the_reference_host_and_a_true_mirror(hosts: dict[str, Host]) -> None:
    """docs/examples/dgx-host.json is the DGX tree's scan, and dgx-mirrored.xml keeps its switches and nodes."""
    committed = load(DOCS / "dgx-host.json")
    assert committed.devices == hosts["dgx-a100"].devices
    planned = LibvirtDomain.from_path(DOCS / "dgx-mirrored.xml")
    t, sources = planned.topology, hostdev_sources(planned)
    assert len(sources) == 16
    for i in sources:
        address = t.device(i).address
        assert address is not None
        assert t.numa_node_of_bus(address.bus) == committed.device(sources[i]).numa_node
        for j in sources:
            same_host = committed.switch_of(sources[i]) == committed.switch_of(sources[j])
            assert (guest_switch(t, i) == guest_switch(t, j)) is same_host


def _placed(t: Topology, sources: dict[str, PciAddress]) -> dict[str, tuple[str, bool | None]]:
    """Each passed host function's guest address and multifunction flag, by host address."""
    return {str(sources[d.id]): (str(d.address), d.multifunction) for d in t.devices if d.id in sources}


@pytest.mark.parametrize(
    ("passed", "guest"),
    [
        # the host's function 0 is not passed: the lowest passed one takes guest function 0, port 2 keeps 2
        (
            ["0000:05:00.1", "0000:05:00.2"],
            {"0000:05:00.1": ("0000:01:00.0", True), "0000:05:00.2": ("0000:01:00.2", None)},
        ),
        (
            ["0000:05:00.3", "0000:05:00.2"],
            {"0000:05:00.2": ("0000:01:00.0", True), "0000:05:00.3": ("0000:01:00.3", None)},
        ),
        # function 0 passed: every function keeps its host number, gaps included
        (
            ["0000:05:00.2", "0000:05:00.0"],
            {"0000:05:00.0": ("0000:01:00.0", True), "0000:05:00.2": ("0000:01:00.2", None)},
        ),
        (["0000:05:00.3"], {"0000:05:00.3": ("0000:01:00.0", None)}),
    ],
)
def test_host_functions_without_function_0_still_get_a_legal_guest_slot(
    hosts: dict[str, Host], tmp_path: Path, passed: list[str], guest: dict[str, tuple[str, bool | None]]
) -> None:
    """Ports of the quad NIC share one guest slot with function 0 present and as many host numbers kept as fit."""
    t, sources = mirrored(hosts["quad-nic"], [A(a) for a in passed], 0, tmp_path)
    assert _placed(t, sources) == guest


def test_sriov_vfs_at_odd_functions_each_get_a_slot_of_their_own(hosts: dict[str, Host], tmp_path: Path) -> None:
    """VFs 3b:02.1, .3 and .5 of one host slot are three guest devices at function 0, not a multifunction slot."""
    t, sources = mirrored(hosts["sriov-nic"], [A("0000:3b:02.1"), A("0000:3b:02.3"), A("0000:3b:02.5")], 0, tmp_path)
    placed = _placed(t, sources)
    assert {a for a, _ in placed.values()} == {"0000:01:00.0", "0000:02:00.0", "0000:03:00.0"}
    assert {m for _, m in placed.values()} == {None}


def test_a_vf_passed_with_its_pf_in_the_pf_slot_is_not_a_function_of_it() -> None:
    """A VF whose routing ID lands in its PF's slot (offset 1) gets no slot group with the PF."""
    pf, vf = A("0000:06:00.0"), A("0000:06:00.1")
    host = Host(
        [
            HostDevice(pf, vendor=0x8086, device=0x1572, class_code=0x020000, iommu_group=1, virtfns=(vf,)),
            HostDevice(vf, vendor=0x8086, device=0x154C, class_code=0x020000, iommu_group=2, physfn=pf),
        ]
    )
    t = LibvirtDomain.from_string(domain_xml([pf, vf], 0))
    needs = [d.needs for d in mirror_request(t.topology, host, hostdev_sources(t)).devices if d.id not in t.implicit]
    assert [(n.slot_group, n.function) for n in needs] == [(None, None), (None, None)]


def test_dgx_gpu_bars_do_not_fit_the_default_cpus_address_space(hosts: dict[str, Host], tmp_path: Path) -> None:
    """Eight A100s' 64 GiB BARs (with four switches' windows) pass 2^40: refused with why, under QEMU's default CPU."""
    host = hosts["dgx-a100"]
    xml, host_file = tmp_path / "in.xml", tmp_path / "host.json"
    text = domain_xml(
        [d.address for d in host.devices if not d.is_bridge],
        2,
    )
    xml.write_text(text.replace("<cpu mode='host-passthrough'>", "<cpu>"))
    host_file.write_text(dumps(host))
    err = io.StringIO()
    code = main(["assign", str(xml), "--host", str(host_file), "--policy", "mirror"], stdout=io.StringIO(), stderr=err)
    assert code == 4
    assert "past the guest CPU's 40 physical address bits (0x10000000000); give the guest CPU more physical " in (
        err.getvalue()
    )


def test_r750xa_gpus_under_ovmf_get_a_64_bit_window_that_holds_their_bars(
    hosts: dict[str, Host], tmp_path: Path
) -> None:
    """Four A100s (64 GiB BARs) need more than OVMF's 128 GiB default: the plan sets X-PciMmio64Mb to hold them."""
    host = hosts["r750xa"]
    xml, host_file = tmp_path / "in.xml", tmp_path / "host.json"
    text = domain_xml([d.address for d in host.devices if not d.is_bridge], 2)
    xml.write_text(text.replace("<os>", "<os firmware='efi'>"))
    host_file.write_text(dumps(host))
    out = io.StringIO()
    assert main(["assign", str(xml), "--host", str(host_file), "--policy", "mirror"], stdout=out) == 0
    domain = LibvirtDomain.from_string(out.getvalue())
    planned = with_host_bars(domain.topology, host, hostdev_sources(domain))  # the XML does not carry host BARs
    assert planned.mmio is not None
    assert 512 << 30 < planned.mmio.above_4g <= 1 << 40  # 4 GPU windows of 128 GiB and the ports' reservations
    assert planned.mmio64 == 1 << 40  # the next power of two: the host's CPU, so not capped at 40 bits' 512 GiB
    assert validate(planned) == ()
    assert "<qemu:arg value='name=opt/ovmf/X-PciMmio64Mb,string=1048576'/>" in out.getvalue()
