"""Live attach and detach on running domains: positions, policy needs, refusals and the CLI."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from pcitopo.cli import main
from pcitopo.errors import InvalidInput, UnknownName, Unsatisfiable
from pcitopo.formats.libvirt import LibvirtDomain
from pcitopo.live import attach, detach
from pcitopo.policy.policy import Policy

LIVE = """<domain type='kvm' id='3'>
  <name>v</name>
  <os><type arch='x86_64' machine='pc-q35-7.2'>hvm</type></os>
  <cpu><numa><cell id='0' cpus='0' memory='1024'/><cell id='1' cpus='1' memory='1024'/></numa></cpu>
  <devices>
    <controller type='pci' index='0' model='pcie-root'><alias name='pcie.0'/></controller>
    <controller type='pci' index='1' model='pcie-root-port'>
      <target chassis='1' port='0x10'/><alias name='pci.1'/>
      <address type='pci' domain='0x0000' bus='0x00' slot='0x02' function='0x0' multifunction='on'/>
    </controller>
    <controller type='pci' index='2' model='pcie-root-port'>
      <target chassis='2' port='0x11' hotplug='off'/><alias name='pci.2'/>
      <address type='pci' domain='0x0000' bus='0x00' slot='0x02' function='0x1'/>
    </controller>
    <controller type='pci' index='3' model='pcie-root-port'>
      <target chassis='3' port='0x12'/><alias name='pci.3'/>
      <address type='pci' domain='0x0000' bus='0x00' slot='0x02' function='0x2'/>
    </controller>
    <controller type='pci' index='4' model='pcie-expander-bus'>
      <target busNr='254'><node>1</node></target><alias name='pci.4'/>
      <address type='pci' domain='0x0000' bus='0x00' slot='0x03' function='0x0'/>
    </controller>
    <controller type='pci' index='5' model='pcie-root-port'>
      <target chassis='5' port='0x0'/><alias name='pci.5'/>
      <address type='pci' domain='0x0000' bus='0x04' slot='0x00' function='0x0'/>
    </controller>
    <interface type='user'><model type='virtio'/><alias name='net0'/>
      <address type='pci' domain='0x0000' bus='0x01' slot='0x00' function='0x0'/></interface>
    <rng model='virtio'><backend model='random'>/dev/urandom</backend><alias name='rng0'/>
      <address type='pci' domain='0x0000' bus='0x02' slot='0x00' function='0x0'/></rng>
    <interface type='user'><model type='e1000e'/><alias name='ua-a'/>
      <address type='pci' domain='0x0000' bus='0x00' slot='0x05' function='0x0' multifunction='on'/></interface>
    <interface type='user'><model type='e1000e'/><alias name='ua-b'/>
      <address type='pci' domain='0x0000' bus='0x00' slot='0x05' function='0x1'/></interface>
  </devices>
</domain>
"""
NIC = "<interface type='user'>\n  <model type='e1000e'/>\n</interface>"


@pytest.fixture
def live() -> LibvirtDomain:
    return LibvirtDomain.from_string(LIVE, source="live.xml")


def test_attach_takes_the_free_hotpluggable_port_and_skips_hotplug_off(live: LibvirtDomain) -> None:
    """A NIC goes to the empty port with hotplug on (pci.3), never to pcie.0 or a hotplug-off port."""
    (a,) = attach(live, NIC)
    assert (a.device, a.kind, str(a.address), a.bus, a.numa_node) == (
        "interface3",
        "e1000e",
        "0000:03:00.0",
        "pci.3",
        None,
    )
    assert a.xml == (
        '<interface type="user">\n  <model type="e1000e"/>\n'
        '  <address type="pci" domain="0x0000" bus="0x03" slot="0x00" function="0x0"/>\n</interface>'
    )


def test_attach_follows_a_strict_numa_rule_of_the_policy(live: LibvirtDomain) -> None:
    """A policy rule pinning the device to node 1 puts it on the root port under the node-1 expander bus."""
    policy = Policy.from_mapping({"device": [{"match": "interface*", "numa-node": 1, "numa-strict": True}]})
    (a,) = attach(live, NIC, policy)
    assert (str(a.address), a.bus, a.numa_node) == ("0000:05:00.0", "pci.5", 1)


def test_several_devices_take_distinct_positions_or_all_fail(live: LibvirtDomain) -> None:
    """Two NICs fill both free ports; a third has nowhere to go and the whole attach is refused with facts."""
    two = attach(live, f"<devices>{NIC}{NIC}</devices>")
    assert [str(a.address) for a in two] == ["0000:03:00.0", "0000:05:00.0"]
    with pytest.raises(Unsatisfiable) as info:
        attach(live, f"<devices>{NIC}{NIC}{NIC}</devices>")
    assert info.value.conflicts == (
        "'interface5' (e1000e) has no empty hot-pluggable slot that takes a PCI Express device",
    )
    assert info.value.facts == (
        "the root bus pcie.0 takes no hot-plugged device",
        "4 PCIe ports, 2 empty and hot-pluggable, 1 with hotplug off (pci.2)",
    )


def test_a_given_address_must_be_free_and_hotpluggable(live: LibvirtDomain) -> None:
    """A device that brings its own address on a hotplug-off port is refused with that reason."""
    pinned = NIC.replace("</interface>", "<address type='pci' domain='0' bus='2' slot='0' function='0'/></interface>")
    with pytest.raises(Unsatisfiable) as info:
        attach(live, pinned)
    assert info.value.conflicts == (
        "'interface3' (e1000e) at 0000:02:00.0: bus 2 (pcie-root-port) does not hot-plug slot 0x00",
    )


def test_attach_refuses_bad_device_documents(live: LibvirtDomain) -> None:
    """Malformed XML and devices that do not use PCI are bad input naming the file."""
    with pytest.raises(InvalidInput, match=r"^new.xml: malformed XML: "):
        attach(live, "<interface", source="new.xml")
    with pytest.raises(InvalidInput, match=r"^DEVICE.xml: 1 of its elements \(input\) do not use PCI"):
        attach(live, "<input type='tablet' bus='usb'/>")


def test_attach_needs_a_running_domain() -> None:
    """A domain with unaddressed devices is not a live dumpxml, and attach says so."""
    domain = LibvirtDomain.from_string(LIVE.replace("<address type='pci' domain='0x0000' bus='0x01'", "<x a='0x01'"))
    with pytest.raises(InvalidInput, match=r"is not a running domain: 'net0' has no PCI address"):
        attach(domain, NIC)


@pytest.mark.parametrize(
    ("ident", "possible", "reasons", "with_it"),
    [
        ("net0", True, (), ()),
        ("rng0", False, ("its bus pci.2 (pcie-root-port) has hotplug off",), ()),
        ("pci.3", False, ("a PCI controller cannot be hot-unplugged (libvirt detaches no PCI controller)",), ()),
        (
            "ua-b",
            False,
            (
                "its bus pcie.0 (pcie-root) does not support hotplug",
                "it is a function of the multifunction slot 0000:00:05.0 with 'ua-a': libvirt refuses to hot-unplug "
                "it, and QEMU's device_del of function 0 removes the whole slot",
            ),
            ("ua-a",),
        ),
    ],
)
def test_detach(
    live: LibvirtDomain, ident: str, possible: bool, reasons: tuple[str, ...], with_it: tuple[str, ...]
) -> None:
    """detach answers per device: hotplug off, root bus, controller, multifunction slot, and what goes with it."""
    answer = detach(live, ident)
    assert (answer.possible, answer.reasons, answer.with_it) == (possible, reasons, with_it)


def test_detach_of_the_builtin_sata_controller() -> None:
    """q35's SATA controller 0 is the machine's own: it cannot be unplugged."""
    domain = LibvirtDomain.from_string(
        "<domain><os><type machine='q35'>hvm</type></os><devices>"
        "<controller type='sata' index='0'><address type='pci' domain='0' bus='0' slot='0x1f' function='2'/>"
        "</controller></devices></domain>"
    )
    answer = detach(domain, "sata0")
    assert answer.reasons[0] == "it is the machine's built-in sata0 at 0000:00:1f.2"


def test_detach_of_an_unknown_id_lists_the_known(live: LibvirtDomain) -> None:
    """An id the domain lacks is an UnknownName naming the file."""
    with pytest.raises(UnknownName, match=r"^unknown device 'net9' \(live.xml\); did you mean 'net0'\?$"):
        detach(live, "net9")


def test_cli_attach_and_detach(tmp_path: Path) -> None:
    """The CLI prints the placed XML (exit 0), exit 4 with the cold change when full, and detach's answer."""
    live_file, nic_file = tmp_path / "live.xml", tmp_path / "nic.xml"
    live_file.write_text(LIVE)
    nic_file.write_text(NIC)
    out = io.StringIO()
    assert main(["attach", str(live_file), str(nic_file)], stdout=out) == 0
    assert out.getvalue().startswith("<!-- 'interface3' (e1000e) at 0000:03:00.0 on pci.3 -->\n<interface")
    out = io.StringIO()
    assert main(["attach", str(live_file), str(nic_file), "--json"], stdout=out) == 0
    assert json.loads(out.getvalue())[0]["address"] == "0000:03:00.0"
    nic_file.write_text(f"<devices>{NIC}{NIC}{NIC}</devices>")
    err = io.StringIO()
    assert main(["attach", str(live_file), str(nic_file)], stdout=io.StringIO(), stderr=err) == 4
    assert (
        "would help: at least 1 more empty hot-pluggable pcie-root-port or switch downstream port; " in err.getvalue()
    )
    out = io.StringIO()
    assert main(["detach", str(live_file), "rng0"], stdout=out) == 1
    assert out.getvalue() == "'rng0' cannot be hot-unplugged: its bus pci.2 (pcie-root-port) has hotplug off\n"
    out = io.StringIO()
    assert main(["detach", str(live_file), "ua-a", "--json"], stdout=out) == 1
    assert json.loads(out.getvalue())["with"] == ["ua-b"]


def test_mixed_device_document_names_only_the_elements_without_pci(live: LibvirtDomain) -> None:
    """A <devices> with a NIC and a USB tablet is refused, naming the tablet's element and the file."""
    with pytest.raises(InvalidInput) as info:
        attach(live, f"<devices>{NIC}<input type='tablet' bus='usb'/></devices>", source="two.xml")
    assert str(info.value) == "two.xml: 1 of its elements (input) do not use PCI; attach places PCI devices only"


PC_LIVE = """<domain type='kvm'><name>p</name><os><type arch='x86_64' machine='pc-i440fx-7.2'>hvm</type></os>
  <features><acpi/></features><devices>
  <controller type='pci' index='0' model='pci-root'/>
  <video><model type='cirrus'/><address type='pci' domain='0x0000' bus='0x00' slot='0x02' function='0x0'/></video>
  </devices></domain>"""


@pytest.mark.parametrize(
    ("xml", "ident", "kind", "driver"),
    [
        ("<video><model type='vga'/></video>", "video1", "vga", "VGA"),
        ("<video><model type='virtio'/></video>", "video1", "virtio-gpu", "virtio-gpu-pci"),
        ("<controller type='usb' model='pci-ohci'/>", "usb0", "pci-ohci", "pci-ohci"),
        ("<controller type='usb' model='ich9-ehci1'/>", "usb0", "ich9-ehci1", "ich9-usb-ehci1"),
    ],
)
def test_attach_offers_no_kind_qemu_cannot_hot_add(xml: str, ident: str, kind: str, driver: str) -> None:
    """A kind whose driver QEMU 7.2 refuses in device_add gets no position, even with free pc root-bus slots."""
    with pytest.raises(Unsatisfiable) as info:
        attach(LibvirtDomain.from_string(PC_LIVE), xml)
    (conflict,) = info.value.conflicts
    assert conflict == f"'{ident}' ({kind}) cannot be hot-plugged at all (QEMU refuses to hot-add a {driver})"


def test_attach_places_a_secondary_qxl_head() -> None:
    """A qxl beside the primary video is QEMU's "qxl", which device_add takes: attach offers a root-bus slot."""
    (placed,) = attach(LibvirtDomain.from_string(PC_LIVE), "<video><model type='qxl'/></video>")
    assert (placed.kind, str(placed.address), placed.bus) == ("qxl-secondary", "0000:00:03.0", "pci.0")


def test_attach_places_a_pvpanic_on_pc_root_bus() -> None:
    """QEMU hot-adds pvpanic-pci on pc's pci.0, so attach offers the first free root-bus slot."""
    (placed,) = attach(LibvirtDomain.from_string(PC_LIVE), "<panic model='pvpanic'/>")
    assert (str(placed.address), placed.bus) == ("0000:00:03.0", "pci.0")


def test_detach_of_a_video_device_says_qemu_cannot_unplug_it() -> None:
    """A cirrus VGA on pc's hotpluggable root bus still cannot be unplugged: its kind is not hot-pluggable."""
    answer = detach(LibvirtDomain.from_string(PC_LIVE), "video0")
    assert answer.reasons == ("a cirrus cannot be hot-unplugged",)
