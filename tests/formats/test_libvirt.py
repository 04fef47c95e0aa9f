"""libvirt domain XML import and export (pcitopo.formats.libvirt)."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from lxml import etree

from pcitopo.address import PciAddress
from pcitopo.devices import Controller
from pcitopo.errors import DuplicateId, InternalError, InvalidDomainXML, InvalidInput, InvalidTopology
from pcitopo.formats import LibvirtDomain
from pcitopo.formats._xmltext import Edit, scan, splice
from pcitopo.solver import solve

DATA = Path(__file__).parent / "data"

_MACHINES = {
    "q35": ("x86_64", "pc-q35-7.2"),
    "pc": ("x86_64", "pc-i440fx-7.2"),
    "virt": ("aarch64", "virt"),
    "pseries": ("ppc64le", "pseries"),
    "riscv": ("riscv64", "virt"),
}


def domain_xml(devices: str, machine: str = "q35", extra: str = "") -> str:
    arch, machine_type = _MACHINES[machine]
    return (
        "<domain type='kvm'>\n  <name>t</name>\n"
        f"  <os>\n    <type arch='{arch}' machine='{machine_type}'>hvm</type>\n  </os>\n{extra}"
        f"  <devices>\n{devices}\n  </devices>\n</domain>\n"
    )


def load(devices: str, machine: str = "q35", extra: str = "") -> LibvirtDomain:
    return LibvirtDomain.from_string(domain_xml(devices, machine, extra))


def kinds(domain: LibvirtDomain) -> list[tuple[str, str]]:
    """The devices the document lists (not those libvirt would add)."""
    return [(d.id, d.kind) for d in domain.topology.devices if d.id not in domain.implicit]


# -- classification ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("machine", "element", "kind"),
    [
        ("q35", "<disk type='file'><target dev='vda' bus='virtio'/></disk>", "virtio-blk"),
        ("q35", "<disk type='file'><target dev='vdb'/></disk>", "virtio-blk"),
        (
            "q35",
            "<disk type='file' model='virtio-transitional'><target dev='vda' bus='virtio'/></disk>",
            "virtio-blk-transitional",
        ),
        ("q35", "<disk type='file'><target dev='sda' bus='sata'/></disk>", None),
        ("q35", "<disk type='file'><target dev='sda' bus='scsi'/></disk>", None),
        ("q35", "<interface type='user'><model type='virtio'/></interface>", "virtio-net"),
        (
            "q35",
            "<interface type='user'><model type='virtio-non-transitional'/></interface>",
            "virtio-net-non-transitional",
        ),
        ("q35", "<interface type='user'><model type='e1000e'/></interface>", "e1000e"),
        ("q35", "<interface type='user'/>", "rtl8139"),
        ("virt", "<interface type='user'/>", "virtio-net"),
        ("pseries", "<interface type='user'/>", "rtl8139"),
        ("pseries", "<interface type='user'><model type='spapr-vlan'/></interface>", None),
        ("q35", "<interface type='hostdev'><source><address type='pci' bus='3'/></source></interface>", "vfio-pci"),
        ("q35", "<controller type='usb' index='1' model='qemu-xhci'/>", "qemu-xhci"),
        ("q35", "<controller type='usb' index='1'/>", "piix3-uhci"),
        ("virt", "<controller type='usb' index='1'/>", "qemu-xhci"),
        ("pseries", "<controller type='usb' index='1'/>", "qemu-xhci"),
        ("q35", "<controller type='usb' model='none'/>", None),
        ("q35", "<controller type='usb' index='1' model='ich9-uhci2'/>", "ich9-uhci2"),
        ("q35", "<controller type='scsi' model='virtio-scsi'/>", "virtio-scsi"),
        ("q35", "<controller type='scsi' model='virtio-transitional'/>", "virtio-scsi-transitional"),
        ("q35", "<controller type='scsi'/>", "lsilogic"),
        ("pseries", "<controller type='scsi'/>", None),
        ("q35", "<controller type='virtio-serial'/>", "virtio-serial"),
        ("q35", "<controller type='sata' index='1'/>", "ahci"),
        ("q35", "<controller type='fdc'/>", None),
        ("q35", "<controller type='ccid'/>", None),
        ("q35", "<sound model='ich9'/>", "ich9"),
        ("q35", "<sound model='pcspk'/>", None),
        ("q35", "<video><model type='qxl'/></video>", "qxl"),
        ("q35", "<video><model type='virtio'/></video>", "virtio-vga"),
        ("virt", "<video><model type='virtio'/></video>", "virtio-gpu"),
        ("q35", "<video/>", "cirrus"),
        ("pseries", "<video/>", "vga"),
        ("q35", "<video><model type='none'/></video>", None),
        ("q35", "<hostdev mode='subsystem' type='pci'><source><address bus='1'/></source></hostdev>", "vfio-pci"),
        ("q35", "<hostdev mode='subsystem' type='mdev' model='vfio-pci'/>", "vfio-pci"),
        ("q35", "<hostdev mode='subsystem' type='mdev' model='vfio-ccw'/>", None),
        ("q35", "<hostdev mode='subsystem' type='scsi_host'><source protocol='vhost'/></hostdev>", "vhost-scsi"),
        ("q35", "<hostdev mode='subsystem' type='usb'/>", None),
        ("q35", "<rng model='virtio'><backend model='random'/></rng>", "virtio-rng"),
        ("q35", "<watchdog model='i6300esb'/>", "i6300esb"),
        ("q35", "<watchdog model='itco'/>", None),
        ("q35", "<memballoon model='virtio-transitional'/>", "virtio-balloon-transitional"),
        ("q35", "<memballoon model='none'/>", None),
        ("q35", "<shmem name='s'><model type='ivshmem-plain'/></shmem>", "ivshmem-plain"),
        ("q35", "<input type='tablet' bus='virtio'/>", "virtio-tablet"),
        (
            "q35",
            "<input type='passthrough' bus='virtio'><source evdev='/dev/input/event1'/></input>",
            "virtio-input-host",
        ),
        ("q35", "<input type='mouse' bus='ps2'/>", None),
        ("q35", "<vsock model='virtio'/>", "vhost-vsock"),
        ("q35", "<filesystem type='mount'><source dir='/a'/><target dir='t'/></filesystem>", "virtio-9p"),
        ("q35", "<filesystem type='mount'><driver type='virtiofs'/></filesystem>", "vhost-user-fs"),
        ("q35", "<filesystem type='file'><driver type='loop'/></filesystem>", None),
        ("q35", "<serial type='pty'><target type='pci-serial'/></serial>", "pci-serial"),
        ("q35", "<serial type='pty'><target type='isa-serial'/></serial>", None),
        ("q35", "<iommu model='virtio'/>", "virtio-iommu"),
        ("q35", "<iommu model='intel'/>", None),
        ("virt", "<panic model='pvpanic'/>", "pvpanic-pci"),
        ("q35", "<panic model='isa'/>", None),
        ("q35", "<crypto model='virtio' type='qemu'><backend model='builtin'/></crypto>", "virtio-crypto"),
        ("q35", "<memory model='virtio-mem'><target><size unit='GiB'>1</size></target></memory>", "virtio-mem"),
        ("q35", "<memory model='dimm'/>", None),
        ("q35", "<tpm model='tpm-crb'/>", None),
        ("q35", "<disk type='file'><target dev='vda' bus='virtio'/><address type='ccw'/></disk>", None),
        ("virt", "<disk type='file'><target dev='vda' bus='virtio'/><address type='virtio-mmio'/></disk>", None),
    ],
)
def test_device_elements_map_to_catalog_kinds(machine: str, element: str, kind: str | None) -> None:
    """Each device element becomes the catalog kind of libvirt's §2 table, or no device when it does not use PCI."""
    domain = load(f"    {element}", machine)
    found = [k for _, k in kinds(domain)]
    assert found == ([] if kind is None else [kind])


def test_only_the_first_virtio_video_is_virtio_vga() -> None:
    """On x86 the primary virtio video is virtio-vga and the others are virtio-gpu, as libvirt starts them."""
    domain = load("    <video><model type='virtio'/></video>\n    <video><model type='virtio'/></video>")
    assert kinds(domain) == [("video0", "virtio-vga"), ("video1", "virtio-gpu")]


def test_only_the_primary_qxl_is_qxl_vga() -> None:
    """A qxl video that is not the primary is QEMU's "qxl" (qxl-secondary), as libvirt starts it."""
    domain = load("    <video><model type='qxl'/></video>\n    <video><model type='qxl'/></video>")
    assert kinds(domain) == [("video0", "qxl"), ("video1", "qxl-secondary")]


def test_the_video_marked_primary_comes_first_and_is_video0() -> None:
    """libvirt moves the video whose model says primary='yes' to the front: it is video0 and the VGA one."""
    domain = load(
        "    <video><model type='qxl'/></video>\n"
        "    <video><model type='qxl' primary='yes'/></video>\n"
        "    <video><model type='virtio'/></video>"
    )
    assert kinds(domain) == [("video0", "qxl"), ("video1", "qxl-secondary"), ("video2", "virtio-gpu")]


# -- ids --------------------------------------------------------------------------------------------


def test_ids_come_from_aliases_or_element_position() -> None:
    """Aliases name devices; else the element name and its position, controllers by type and index."""
    domain = load(
        "    <disk type='file'><target dev='sda' bus='sata'/></disk>\n"
        "    <disk type='file'><target dev='vda' bus='virtio'/></disk>\n"
        "    <disk type='file'><target dev='vdb' bus='virtio'/><alias name='ua-data'/></disk>\n"
        "    <controller type='scsi' index='2' model='virtio-scsi'/>\n"
        "    <interface type='user'><model type='virtio'/></interface>"
    )
    assert kinds(domain) == [
        ("disk1", "virtio-blk"),
        ("ua-data", "virtio-blk"),
        ("scsi2", "virtio-scsi"),
        ("interface0", "virtio-net"),
    ]
    assert domain.path("ua-data") == "/domain/devices/disk[3]"


def running(devices: str) -> LibvirtDomain:
    """A running domain's document (``<domain id>``, as ``virsh dumpxml`` of a running domain writes it)."""
    return LibvirtDomain.from_string(domain_xml(devices).replace("<domain type='kvm'>", "<domain type='kvm' id='7'>"))


def test_a_generated_id_taken_by_an_alias_gets_a_suffix() -> None:
    """In a running domain's document a generated id that an alias already uses gets -2 appended instead of clashing."""
    domain = running(
        "    <interface type='user'><model type='virtio'/></interface>\n"
        "    <interface type='user'><model type='virtio'/><alias name='interface0'/></interface>"
    )
    assert [i for i, _ in kinds(domain)] == ["interface0-2", "interface0"]


USB0_ON_A_NIC = (
    "    <controller type='usb' index='0' model='qemu-xhci'/>\n"
    "    <interface type='user'><model type='virtio'/><alias name='usb0'/></interface>\n"
    "    <controller type='pci' index='1' model='pcie-root-port'><alias name='net0'/></controller>\n"
    "    <rng model='virtio'><alias name='ua-rng'/></rng>"
)


def test_a_definition_names_devices_only_by_user_aliases() -> None:
    """In a definition a non-ua alias (virsh define drops it) is no id: NIC interface0, USB controller usb0."""
    domain = load(USB0_ON_A_NIC)
    assert [i for i, _ in kinds(domain)] == ["usb0", "interface0", "ua-rng"]
    assert [(c.index, c.id, c.name) for c in domain.topology.controllers] == [(0, None, "pcie.0"), (1, None, "pci.1")]
    assert domain.path("interface0") == "/domain/devices/interface"


def test_a_running_domain_keeps_libvirts_aliases_as_ids() -> None:
    """In a running domain's document libvirt's own aliases are the ids (usb0 on the NIC, net0 on the root port)."""
    domain = running(USB0_ON_A_NIC)
    assert [i for i, _ in kinds(domain)] == ["usb0-2", "usb0", "ua-rng"]
    assert domain.topology.controllers[1].name == "net0"


def test_a_definition_keeps_aliases_that_are_not_ids_as_written() -> None:
    """Aliases that are not ids stay in the exported definition character for character (no element is dropped)."""
    domain = load(USB0_ON_A_NIC)
    out = domain.with_topology(solve(domain.topology)).to_string()
    for alias in ("<alias name='usb0'/>", "<alias name='net0'/>", "<alias name='ua-rng'/>"):
        assert out.count(alias) == 1, alias


def test_repeated_aliases_without_ua_are_no_clash_in_a_definition() -> None:
    """Two elements with one non-ua alias are accepted in a definition, as libvirt accepts them (it drops both)."""
    domain = load(
        "    <interface type='user'><model type='virtio'/><alias name='net0'/></interface>\n"
        "    <rng model='virtio'><alias name='net0'/></rng>"
    )
    assert [i for i, _ in kinds(domain)] == ["interface0", "rng0"]


def test_duplicate_aliases_are_rejected_naming_both_elements() -> None:
    """Two elements with one alias are an error that names both."""
    with pytest.raises(DuplicateId) as info:
        load(
            "    <interface type='user'><alias name='ua-x'/></interface>\n"
            "    <rng model='virtio'><alias name='ua-x'/></rng>"
        )
    assert str(info.value) == "<string>:8: id 'ua-x' is used by /domain/devices/interface and /domain/devices/rng"
    assert (info.value.name, info.value.source, info.value.line) == ("ua-x", "<string>", 8)


# -- addresses and controllers ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("attrs", "expected"),
    [
        ("domain='0x0000' bus='0x01' slot='0x02' function='0x3'", "0000:01:02.3"),
        ("bus='1' slot='10' function='7'", "0000:01:0a.7"),
        ("bus='010' slot='0x1f'", "0000:08:1f.0"),
        ("", None),
        ("domain='0' bus='0' slot='0' multifunction='on'", None),
    ],
)
def test_pci_addresses_are_read_like_libvirt(attrs: str, expected: str | None) -> None:
    """Hex, decimal and octal numbers as strtoul reads them; an all-zero address asks for one."""
    domain = load(f"    <rng model='virtio'><address type='pci' {attrs}/></rng>")
    address = domain.topology.device("rng0").address
    assert (None if address is None else str(address)) == expected


@pytest.mark.parametrize(
    ("attrs", "message"),
    [
        ("bus='0x100' slot='1'", "Invalid PCI address bus='0x100', must be <= 0xFF"),
        ("slot='0x20'", "Invalid PCI address slot='0x20', must be <= 0x1F"),
        ("slot='1' function='8'", "Invalid PCI address function=0x8, must be <= 7"),
        ("slot='one'", "slot='one' is not a number"),
        ("slot='1' multifunction='yes'", "multifunction must be 'on' or 'off' (got 'yes')"),
    ],
)
def test_bad_pci_addresses_name_the_element(attrs: str, message: str) -> None:
    """An address out of range or unreadable is rejected with the element's line and path and libvirt's reason."""
    with pytest.raises(InvalidDomainXML) as info:
        load(f"    <rng model='virtio'><address type='pci' {attrs}/></rng>")
    assert str(info.value) == f"<string>:7: /domain/devices/rng/address: {message}"
    assert (info.value.element, info.value.line, info.value.reason) == ("/domain/devices/rng/address", 7, message)


def test_acpi_index_is_read_and_written_back_before_the_address() -> None:
    """``<acpi index>`` becomes Device.acpi_index; a new one is written before the address, a dropped one removed."""
    domain = load(
        "    <interface type='user'><model type='virtio'/><acpi index='3'/></interface>\n"
        "    <interface type='user'>\n"
        "      <model type='e1000e'/>\n"
        "      <address type='pci' domain='0x0000' bus='0x00' slot='0x04' function='0x0'/>\n"
        "    </interface>"
    )
    t = domain.topology
    assert [d.acpi_index for d in t.devices[:2]] == [3, None]
    changed = t.replace(
        devices=[d.with_acpi_index({"interface0": None, "interface1": 5}.get(d.id, d.acpi_index)) for d in t.devices]
    )
    text = domain.with_topology(changed).to_string()
    assert "<model type='virtio'/></interface>" in text
    assert (
        "      <model type='e1000e'/>\n      <acpi index='5'/>\n"
        "      <address type='pci' domain='0x0000' bus='0x00' slot='0x04' function='0x0'/>"
    ) in text
    assert [d.acpi_index for d in LibvirtDomain.from_string(text).topology.devices[:2]] == [None, 5]


def test_a_bad_acpi_index_names_the_element() -> None:
    """An index that is not a decimal number is rejected with the element's path."""
    with pytest.raises(InvalidDomainXML) as info:
        load("    <interface type='user'><acpi index='0x3'/></interface>")
    assert str(info.value) == (
        "<string>:7: /domain/devices/interface/acpi: index must be a decimal number from 0 to 4294967295 (got '0x3')"
    )


def test_pci_controllers_become_controllers_with_their_target() -> None:
    """Model, model name, chassis, port, busNr, hotplug, NUMA node and alias are read from a PCI controller."""
    domain = load(
        "    <controller type='pci' index='0' model='pcie-root'/>\n"
        "    <controller type='pci' index='1' model='pcie-root-port'>\n"
        "      <model name='ioh3420'/><target chassis='3' port='0x10' hotplug='off'/>\n"
        "      <alias name='ua-port'/>\n"
        "      <address type='pci' domain='0x0000' bus='0x00' slot='0x02' function='0x0' multifunction='on'/>\n"
        "    </controller>\n"
        "    <controller type='pci' index='2' model='pcie-expander-bus'><target busNr='254'><node>1</node></target>"
        "</controller>",
        extra="  <cpu><numa><cell id='0'/><cell id='1'/></numa></cpu>\n",
    )
    port, pxb = domain.topology.controller(1), domain.topology.controller(2)
    assert (port.id, port.qemu_model, port.chassis, port.port, port.hotplug, port.multifunction) == (
        "ua-port",
        "ioh3420",
        3,
        16,
        False,
        True,
    )
    assert str(port.address) == "0000:00:02.0"
    assert (pxb.bus_nr, pxb.numa_node) == (254, 1)
    assert domain.topology.numa_nodes == 2
    assert domain.topology.acpi is False


def test_pseries_extra_pci_roots_are_host_bridges() -> None:
    """On pseries a pci-root with index > 0 is an spapr-pci-host-bridge with its target index."""
    domain = load(
        "    <controller type='pci' index='1' model='pci-root'><model name='spapr-pci-host-bridge'/>"
        "<target index='1'/></controller>",
        "pseries",
    )
    phb = domain.topology.controller(1)
    assert (phb.model, phb.target_index) == ("spapr-pci-host-bridge", 1)


def test_unindexed_controllers_get_the_lowest_free_index() -> None:
    """A controller without an index gets the lowest unused one of its type, as libvirt gives it."""
    domain = load(
        "    <controller type='pci' index='0' model='pcie-root'/>\n"
        "    <controller type='pci' index='2' model='pcie-root-port'/>\n"
        "    <controller type='pci' model='pcie-root-port'/>\n"
        "    <controller type='pci' model='pcie-root-port'/>"
    )
    assert [c.index for c in domain.topology.controllers] == [0, 1, 2, 3]


@pytest.mark.parametrize(
    ("machine", "element", "address"),
    [
        ("q35", "<controller type='sata' index='0'/>", "0000:00:1f.2"),
        ("pc", "<controller type='ide' index='0'/>", "0000:00:01.1"),
        ("pc", "<controller type='usb' index='0'/>", "0000:00:01.2"),
        ("pc", "<controller type='usb' index='0' model='qemu-xhci'/>", None),
    ],
)
def test_chipset_controllers_sit_where_libvirt_forces_them(machine: str, element: str, address: str | None) -> None:
    """SATA 0 on q35, IDE 0 and PIIX3 USB 0 on pc get their fixed chipset address."""
    device = load(f"    {element}", machine).topology.devices[0]
    assert (None if device.address is None else str(device.address)) == address


# -- bad input ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("<domain><devices>", "<string>:1: malformed XML: "),
        (
            "<network><name>x</name></network>",
            "<string>:1: /network: not a libvirt domain: the root element is <network>",
        ),
        (
            domain_xml("    <interface type='user'><model type='virtio-fancy'/></interface>"),
            "<string>:7: /domain/devices/interface: unknown interface model 'virtio-fancy'",
        ),
        (
            domain_xml("    <controller type='usb' model='ehci'/>"),
            "<string>:7: /domain/devices/controller: unknown USB controller model 'ehci'",
        ),
        (
            domain_xml("    <controller type='pci' index='1' model='pcie-rot-port'/>"),
            "<string>:7: /domain/devices/controller: unknown PCI controller model 'pcie-rot-port';"
            " did you mean 'pcie-root-port'?",
        ),
        (
            domain_xml("    <controller type='pci' index='0' model='pci-root'/>"),
            "<string>:7: /domain/devices/controller: The PCI controller with index='0' must be model='pcie-root'"
            " for this machine type, but model='pci-root' was found instead",
        ),
        (
            domain_xml("    <input type='mouse' bus='ps2'><address type='pci' bus='1'/></input>"),
            "<string>:7: /domain/devices/input: a <input> of this type or model does not use PCI but has a PCI address",
        ),
        (
            domain_xml("    <controller type='sata' index='0'><address type='pci' slot='3'/></controller>"),
            "<string>:7: /domain/devices/controller: Primary SATA controller must have PCI address 0:0:1f.2",
        ),
        (
            domain_xml("    <controller type='pci' index='256' model='pcie-root-port'/>"),
            "<string>:7: /domain/devices/controller: PCI controller index 256 too high, maximum is 255",
        ),
        (
            domain_xml("    <controller type='ide' index='0'/>"),
            "<string>:7: /domain/devices/controller: IDE controllers are unsupported for this QEMU binary or"
            " machine type",
        ),
    ],
)
def test_bad_documents_are_rejected_naming_element_and_reason(text: str, message: str) -> None:
    """Malformed XML, other documents, unknown models and impossible addresses raise InvalidDomainXML."""
    with pytest.raises(InvalidDomainXML) as info:
        LibvirtDomain.from_string(text)
    assert str(info.value).startswith(message)


def test_machines_without_pci_are_rejected() -> None:
    """s390-ccw has no PCI bus pcitopo can place devices on."""
    text = "<domain><os><type arch='s390x' machine='s390-ccw-virtio'>hvm</type></os></domain>"
    with pytest.raises(InvalidDomainXML) as info:
        LibvirtDomain.from_string(text)
    assert str(info.value).startswith(
        "<string>:1: /domain/os/type: machine type 's390-ccw-virtio' on arch 's390x' has no PCI bus"
        " pcitopo can place devices on"
    )


def test_an_unreadable_file_is_invalid_input(tmp_path: Path) -> None:
    """A missing file raises InvalidInput naming it, not OSError."""
    with pytest.raises(InvalidDomainXML) as info:
        LibvirtDomain.from_path(tmp_path / "missing.xml")
    assert str(info.value) == f"{tmp_path / 'missing.xml'}: cannot read: No such file or directory"


# -- export -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name", ["q35-mixed.xml", "libvirt-q35-defined.xml", "libvirt-q35-stripped.xml", "q35-mixed.out.xml"]
)
def test_a_round_trip_without_changes_returns_the_input_byte_for_byte(name: str) -> None:
    """Import then export of the same topology changes nothing, XML declaration and all."""
    path = DATA / name
    domain = LibvirtDomain.from_path(path)
    assert domain.with_topology(domain.topology).to_bytes() == path.read_bytes()


def test_export_fills_addresses_and_adds_controllers_like_the_golden_file() -> None:
    """Addresses and new controllers are spliced into the document; everything else stays byte for byte."""
    domain = LibvirtDomain.from_path(DATA / "q35-mixed.xml")
    t = domain.topology
    placed = {"ua-root": "02:00.0", "interface0": "03:00.0", "memballoon0": "04:00.0", "rng0": "05:01.0"}
    solved = t.replace(
        controllers=[
            t.controller(0),
            t.controller(1).placed_at(PciAddress.parse("00:01.0")),
            Controller(2, "pcie-root-port", address=PciAddress.parse("00:02.0"), multifunction=True),
            Controller(3, "pcie-root-port", address=PciAddress.parse("00:02.1")),
            Controller(4, "pcie-root-port", address=PciAddress.parse("00:02.2"), hotplug=False),
            Controller(5, "pcie-to-pci-bridge", address=PciAddress.parse("00:03.0")),
            Controller(6, "pcie-expander-bus", address=PciAddress.parse("00:04.0"), numa_node=1),
        ],
        devices=[d.placed_at(PciAddress.parse(placed[d.id])) if d.id in placed else d for d in t.devices],
    )
    result = domain.with_topology(solved)
    assert result.to_bytes() == (DATA / "q35-mixed.out.xml").read_bytes()
    assert result.topology.device("rng0").address == PciAddress.parse("05:01.0")


def test_export_of_libvirts_own_plan_reproduces_virsh_dumpxml() -> None:
    """Writing libvirt's addresses into the unaddressed document gives libvirt's own text, controllers included."""
    defined = LibvirtDomain.from_path(DATA / "libvirt-q35-defined.xml")
    stripped = LibvirtDomain.from_path(DATA / "libvirt-q35-stripped.xml")
    result = stripped.with_topology(defined.topology)
    assert result.to_string() == defined.to_string()


def test_export_rewrites_a_changed_address_in_place() -> None:
    """A device whose address changes gets its <address> replaced where it was, nothing else touched."""
    domain = load("    <rng model='virtio'>\n      <address type=\"pci\" slot=\"3\"/>\n      <rate bytes='10'/></rng>")
    moved = domain.topology.replace(devices=[domain.topology.device("rng0").placed_at(PciAddress.parse("00:04.0"))])
    text = domain.with_topology(moved).to_string()
    assert (
        "    <rng model='virtio'>\n"
        "      <address type='pci' domain='0x0000' bus='0x00' slot='0x04' function='0x0'/>\n"
        "      <rate bytes='10'/></rng>"
    ) in text


def test_export_refuses_devices_the_document_does_not_list() -> None:
    """A topology with a device that has no element cannot be written."""
    from pcitopo.devices import Device

    domain = load("    <rng model='virtio'/>")
    with pytest.raises(InvalidInput) as info:
        domain.with_topology(domain.topology.with_devices(Device("ua-new", "virtio-net")))
    assert str(info.value).startswith("device 'ua-new': is not in the domain XML")


def test_new_pseries_host_bridges_are_written_as_pci_roots_with_a_target_index() -> None:
    """An added spapr-pci-host-bridge is a pci-root with <model name> and the lowest free target index."""
    domain = load("    <rng model='virtio'/>", "pseries")
    solved = domain.topology.with_controllers(Controller(1, "spapr-pci-host-bridge"))
    assert (
        "    <controller type='pci' index='1' model='pci-root'>\n"
        "      <model name='spapr-pci-host-bridge'/>\n"
        "      <target index='1'/>\n"
        "    </controller>\n"
    ) in domain.with_topology(solved).to_string()


def test_encoding_declarations_are_kept(tmp_path: Path) -> None:
    """A Latin-1 document is read and written back in Latin-1, unchanged."""
    path = tmp_path / "latin1.xml"
    data = domain_xml("    <rng model='virtio'/>").replace("<name>t</name>", "<name>caf\u00e9</name>")
    path.write_bytes(("<?xml version='1.0' encoding='ISO-8859-1'?>\n" + data).encode("latin-1"))
    domain = LibvirtDomain.from_path(path)
    assert domain.with_topology(domain.topology).to_bytes() == path.read_bytes()
    assert LibvirtDomain.from_string(path.read_bytes().decode("latin-1")).topology == domain.topology


# -- the text scanner ---------------------------------------------------------------------------


def test_scan_skips_markup_inside_comments_cdata_and_attributes() -> None:
    """Tags inside comments, CDATA and attribute values are not elements."""
    text = "<a x='<b/>'><!-- <c/> --><![CDATA[<d/>]]><?pi <e/>?><f></f></a>"
    assert [s.name for s in scan(text)] == ["a", "f"]


def test_splice_rejects_overlapping_edits() -> None:
    """Two edits of one span are a bug and say so."""
    with pytest.raises(ValueError, match="overlapping edits at offset 1"):
        splice("abc", [Edit(0, 2, "x"), Edit(1, 3, "y")])


def test_an_ich9_usb2_set_shares_one_index() -> None:
    """EHCI and UHCI companions may share a controller index; an unindexed one joins them; a set is one slot group."""
    text = """<domain type='qemu'><name>u</name><os><type arch='x86_64' machine='q35'>hvm</type></os><devices>
<controller type='usb' index='0' model='ich9-ehci1'/>
<controller type='usb' index='0' model='ich9-uhci1'/>
<controller type='usb' model='ich9-uhci2'/>
</devices></domain>"""
    domain = LibvirtDomain.from_string(text)
    assert kinds(domain) == [
        ("usb0-2", "ich9-uhci1"),
        ("usb0-3", "ich9-uhci2"),
        ("usb0", "ich9-ehci1"),
    ]
    assert {d.needs.slot_group for d in domain.topology.devices if d.kind.startswith("ich9")} == {"usb2-0"}


def test_usb2_sets_listed_out_of_order_stay_in_one_slot_each() -> None:
    """Interleaved companions of two USB indexes: each set in its own slot, UHCI1-3 at .0-.2 and EHCI at .7."""
    from pcitopo.solver import solve

    members = [(1, "ich9-uhci2"), (0, "ich9-uhci3"), (0, "ich9-ehci1"), (1, "ich9-ehci1"), (0, "ich9-uhci1")]
    members += [(1, "ich9-uhci1"), (0, "ich9-uhci2")]
    usb = "".join(f"<controller type='usb' index='{i}' model='{m}'/>" for i, m in members)
    domain = load(usb + "<memballoon model='none'/>", "pc")
    placed = {(d.id, d.kind): str(d.address)[5:] for d in solve(domain.topology, "minimal").topology.devices}
    slots = {
        (index, model): placed[next(k for k in placed if k[1] == model and k[0].startswith(f"usb{index}"))]
        for index, model in members
    }
    for index in (0, 1):
        assert len({a[:5] for (i, _), a in slots.items() if i == index}) == 1
    assert [slots[(0, m)][-1] for m in ("ich9-uhci1", "ich9-uhci2", "ich9-uhci3", "ich9-ehci1")] == list("0127")
    assert [slots[(1, m)][-1] for m in ("ich9-uhci1", "ich9-uhci2", "ich9-ehci1")] == list("017")
    assert slots[(0, "ich9-uhci1")][:5] != slots[(1, "ich9-uhci1")][:5]


def test_two_ordinary_usb_controllers_may_not_share_an_index() -> None:
    """Only USB2 companions share an index; two xHCI controllers with index 0 are refused."""
    text = """<domain type='qemu'><name>u</name><os><type arch='x86_64' machine='q35'>hvm</type></os><devices>
<controller type='usb' index='0' model='qemu-xhci'/>
<controller type='usb' index='0' model='qemu-xhci'/>
</devices></domain>"""
    with pytest.raises(InvalidDomainXML) as info:
        LibvirtDomain.from_string(text)
    assert (
        str(info.value) == "<string>:3: /domain/devices/controller[2]: a usb controller with index 0 is defined twice"
    )


def test_virtio_disks_are_in_libvirt_order() -> None:
    """libvirt sorts disks by target name when it parses a domain, so vda comes before vdb, and vdz before vdaa."""
    text = """<domain type='qemu'><name>u</name><os><type arch='x86_64' machine='q35'>hvm</type></os><devices>
<disk type='file' device='disk'><target dev='vdaa' bus='virtio'/><alias name='ua-aa'/></disk>
<disk type='file' device='disk'><target dev='vdb' bus='virtio'/><alias name='ua-b'/></disk>
<interface type='user'><model type='virtio'/><alias name='ua-nic'/></interface>
<disk type='file' device='disk'><target dev='vdz' bus='virtio'/><alias name='ua-z'/></disk>
<disk type='file' device='disk'><target dev='vda' bus='virtio'/><alias name='ua-a'/></disk>
</devices></domain>"""
    ids = [i for i, _ in kinds(LibvirtDomain.from_string(text))]
    assert ids == ["ua-a", "ua-b", "ua-nic", "ua-z", "ua-aa"]


def test_export_gives_the_same_text_as_with_topology() -> None:
    """``export`` (what ``assign`` writes) is exactly the text ``with_topology`` reads back."""
    from pcitopo.solver import solve

    domain = LibvirtDomain.from_path("examples/q35-server.xml")
    plan = solve(domain.topology)
    assert domain.export(plan.topology) == domain.with_topology(plan.topology).to_string()
    assert domain.export(domain.topology) is domain.to_string()


# -- what libvirt adds on its own ----------------------------------------------------------------

_NONE = "    <controller type='usb' model='none'/>\n    <memballoon model='none'/>\n"
_SCSI_DISK = "<disk type='file' device='disk'><source file='/tmp/a.img'/><target dev='{}' bus='{}'/></disk>"


@pytest.mark.parametrize(
    ("machine", "devices", "expected"),
    [
        # each row: what `virsh define` + `dumpxml --inactive` adds on libvirt 9.0 with QEMU 7.2
        (
            "q35",
            "",
            [("usb0", "qemu-xhci", None), ("sata0", "ahci", "00:1f.2"), ("memballoon0", "virtio-balloon", None)],
        ),
        ("pc", "", [("usb0", "piix3-uhci", "00:01.2"), ("memballoon0", "virtio-balloon", None)]),
        ("virt", "", []),
        ("pseries", "", [("usb0", "qemu-xhci", None), ("memballoon0", "virtio-balloon", None)]),
        ("riscv", "", [("memballoon0", "virtio-balloon", None)]),
        ("q35", _NONE, [("sata0", "ahci", "00:1f.2")]),
        (
            "q35",
            _NONE
            + "<graphics type='vnc'/><channel type='pty'><target type='virtio'/></channel>"
            + _SCSI_DISK.format("sda", "scsi"),
            [
                ("sata0", "ahci", "00:1f.2"),
                ("scsi0", "lsilogic", None),
                ("virtio-serial0", "virtio-serial", None),
                ("video0", "cirrus", None),
            ],
        ),
        (
            "pseries",
            "<graphics type='vnc'/>" + _SCSI_DISK.format("sda", "scsi"),
            [("usb0", "qemu-xhci", None), ("video0", "vga", None), ("memballoon0", "virtio-balloon", None)],
        ),
        (
            "virt",
            "<graphics type='vnc'/><console type='pty'><target type='virtio'/></console>",
            [("virtio-serial0", "virtio-serial", None), ("video0", "virtio-gpu", None)],
        ),
        ("virt", "<graphics type='vnc'/><video><model type='none'/></video>", []),
        (
            "q35",
            _NONE + _SCSI_DISK.format("sdh", "scsi") + _SCSI_DISK.format("sdg", "sata"),
            [
                ("sata0", "ahci", "00:1f.2"),
                ("scsi0", "lsilogic", None),
                ("scsi1", "lsilogic", None),
                ("sata1", "ahci", None),
            ],
        ),
        ("pc", _NONE + _SCSI_DISK.format("hdc", "ide"), [("ide0", "piix3-ide", "00:01.1")]),
        ("pc", _NONE + _SCSI_DISK.format("sda", "sata"), [("sata0", "ahci", None)]),
    ],
)
def test_the_devices_libvirt_adds_are_modelled(
    machine: str, devices: str, expected: list[tuple[str, str, str | None]]
) -> None:
    """Each PCI device libvirt 9.0 adds to a domain on its own is in the topology, at libvirt's fixed address if any."""
    domain = load(devices, machine)
    found = [
        (d.id, d.kind, None if d.address is None else str(d.address)[5:])
        for d in domain.topology.devices
        if d.id in domain.implicit
    ]
    assert found == expected


def test_a_written_plan_includes_the_devices_libvirt_would_add() -> None:
    """The export writes the added devices' elements with their addresses; read back, nothing is left to add."""
    from pcitopo.solver._libvirt import libvirt_assign

    domain = load("    <graphics type='vnc'/>\n    <channel type='pty'><target type='virtio'/></channel>", "pc")
    result = domain.with_topology(libvirt_assign(domain.topology))
    text = result.to_string()
    assert (
        "    <graphics type='vnc'/>\n"
        "    <video>\n"
        "      <model type='cirrus'/>\n"
        "      <address type='pci' domain='0x0000' bus='0x00' slot='0x02' function='0x0'/>\n"
        "    </video>\n"
    ) in text
    assert (
        "    <controller type='usb' index='0' model='piix3-uhci'>\n"
        "      <address type='pci' domain='0x0000' bus='0x00' slot='0x01' function='0x2'/>\n"
        "    </controller>\n"
    ) in text
    assert "<memballoon model='virtio'>" in text
    assert result.implicit == frozenset()
    assert sorted((d.id, str(d.address)) for d in result.topology.devices) == [
        ("memballoon0", "0000:00:04.0"),
        ("usb0", "0000:00:01.2"),
        ("video0", "0000:00:02.0"),
        ("virtio-serial0", "0000:00:03.0"),
    ]


@pytest.mark.parametrize(
    ("machine", "devices", "written"),
    [
        (
            "pc",
            "<memballoon model='none'/>",
            "    <controller type='usb' index='0' model='piix3-uhci'>\n"
            "      <address type='pci' domain='0x0000' bus='0x00' slot='0x01' function='0x2'/>\n"
            "    </controller>\n",
        ),
        (
            "q35",
            "<controller type='usb' index='0' model='none'/><controller type='sata' index='0'/>"
            "<memballoon model='none'/>",
            "<controller type='sata' index='0'>"
            "<address type='pci' domain='0x0000' bus='0x00' slot='0x1f' function='0x2'/></controller>",
        ),
        (
            "pc",
            "<controller type='usb' index='0' model='none'/><controller type='ide' index='0'/>"
            "<memballoon model='none'/>",
            "<controller type='ide' index='0'>"
            "<address type='pci' domain='0x0000' bus='0x00' slot='0x01' function='0x1'/></controller>",
        ),
        (
            "pc",
            _NONE
            + "<interface type='user'><model type='virtio'/><address type='pci' slot='5' function='1'/></interface>"
            "<interface type='user'><model type='virtio'/><address type='pci' slot='5' function='0'/></interface>",
            "slot='0x05' function='0x0' multifunction='on'/>",
        ),
    ],
    ids=["pc-usb", "q35-sata", "pc-ide", "multifunction"],
)
def test_a_complete_domain_gets_what_libvirt_adds_at_a_fixed_place(machine: str, devices: str, written: str) -> None:
    """Every device addressed but what libvirt puts at a fixed place missing: a plan that moves nothing writes it."""
    from pcitopo.solver import solve

    domain = load(
        "<interface type='user'><model type='virtio'/><address type='pci' slot='3'/></interface>" + devices, machine
    )
    assert all(d.address is not None for d in domain.topology.devices)
    plan = solve(domain.topology, "minimal")
    assert plan.topology == domain.topology
    assert written in domain.export(plan.topology)
    again = LibvirtDomain.from_string(domain.export(plan.topology))
    assert again.export(again.topology) is again.to_string()


def test_an_incomplete_topology_written_unchanged_keeps_the_document() -> None:
    """A topology with a device still unaddressed is no plan: when nothing changed the document stays as it is."""
    domain = load("<controller type='sata' index='0'/><interface type='user'><model type='virtio'/></interface>")
    assert domain.export(domain.topology) is domain.to_string()


def test_multifunction_is_on_where_libvirt_sets_it() -> None:
    """Function 0 of a slot whose other functions are used gets multifunction on, and a written plan says so."""
    from pcitopo.solver._libvirt import libvirt_assign

    net = "<interface type='user'><model type='virtio'/><address type='pci' slot='5' function='{}'/></interface>"
    domain = load(_NONE + net.format(0) + net.format(2) + "<rng model='virtio'/>", "pc")
    assert [(d.id, d.multifunction) for d in domain.topology.devices] == [
        ("interface0", True),
        ("interface1", None),
        ("rng0", None),
    ]
    text = domain.with_topology(libvirt_assign(domain.topology)).to_string()
    assert "slot='0x05' function='0x0' multifunction='on'/>" in text


def test_multifunction_off_written_by_the_user_is_kept() -> None:
    """libvirt keeps an explicit multifunction='off' (QEMU then refuses the slot): pcitopo reads it as written."""
    net = "<interface type='user'><model type='virtio'/><address type='pci' slot='5' function='{}'{}/></interface>"
    domain = load(_NONE + net.format(0, " multifunction='off'") + net.format(1, ""), "pc")
    assert [d.multifunction for d in domain.topology.devices] == [False, None]


def test_a_bus_beyond_the_last_controller_gets_the_controllers_libvirt_adds() -> None:
    """An address on bus 3 of pc makes libvirt add pci-bridges 1 to 3 (first free slots), as pcitopo writes them."""
    from pcitopo.solver._libvirt import libvirt_assign

    domain = load(
        _NONE + "<interface type='user'><model type='virtio'/><address type='pci' bus='3' slot='1'/></interface>", "pc"
    )
    assert [(c.index, c.model, c.address) for c in domain.topology.controllers[1:]] == [
        (1, "pci-bridge", None),
        (2, "pci-bridge", None),
        (3, "pci-bridge", None),
    ]
    result = domain.with_topology(libvirt_assign(domain.topology))
    assert [str(c.address) for c in result.topology.controllers[1:]] == ["0000:00:02.0", "0000:00:03.0", "0000:00:04.0"]
    assert "<controller type='pci' index='3' model='pci-bridge'>" in result.to_string()


def test_controllers_are_in_libvirt_parse_order() -> None:
    """libvirt keeps controllers of one type together, by index, where the type first appeared; the devices follow."""
    domain = load(
        _NONE + "<controller type='virtio-serial' index='0'/><controller type='scsi' index='1' model='virtio-scsi'/>"
        "<controller type='virtio-serial' index='1'/><controller type='scsi' index='0' model='virtio-scsi'/>"
    )
    assert [i for i, _ in kinds(domain)] == ["virtio-serial0", "virtio-serial1", "scsi0", "scsi1"]


def test_machine_descriptions_say_what_libvirt_adds() -> None:
    """The [libvirt] table of each shipped machine: the default USB controller and whether a balloon is added."""
    from pcitopo.legality.machine import machines

    found = {name: (m.libvirt.usb, m.libvirt.usb_model, m.libvirt.memballoon) for name, m in machines().items()}
    assert found == {
        "aarch64-virt": (None, "qemu-xhci", False),
        "aarch64-virt-highmem-off": (None, "qemu-xhci", False),
        "pc": ("piix3-uhci", "piix3-uhci", True),
        "pseries": ("qemu-xhci", "qemu-xhci", True),
        "q35": ("qemu-xhci", "piix3-uhci", True),
        "riscv64-virt": (None, "piix3-uhci", True),
    }


def test_writing_an_expander_libvirt_cannot_number_is_a_violation() -> None:
    """A new expander bus with no busNr left for libvirt (the lowest is 2) is not written silently without one."""
    domain = load("<controller type='pci' index='1' model='pcie-expander-bus'><target busNr='2'/></controller>")
    new = Controller(2, "pcie-expander-bus", address=PciAddress.parse("00:06.0"))
    with pytest.raises(InvalidTopology) as info:
        domain.with_topology(domain.topology.with_controllers(new)).to_string()
    assert [(v.rule, v.devices) for v in info.value.violations] == [("expander-bus-nr", ("pci.2",))]


def test_a_new_controller_without_numbers_is_written_with_libvirts() -> None:
    """A controller a topology adds bare gets libvirt's model name and target numbers in the text, as if filled."""
    from pcitopo.legality import identity

    domain = load(_NONE + "<interface type='user'><model type='virtio'/></interface>")
    t = domain.topology
    bare = Controller(1, "pcie-root-port", address=PciAddress.parse("00:02.0"))
    placed = [d.placed_at(PciAddress.parse("01:00.0")) if d.address is None else d for d in t.devices]
    grown = t.replace(controllers=[*t.controllers, bare], devices=placed)
    filled = grown.replace(controllers=[*t.controllers, identity.filled(grown, {1})[1]])
    text = domain.export(grown)
    assert (
        "    <controller type='pci' index='1' model='pcie-root-port'>\n"
        "      <model name='pcie-root-port'/>\n"
        "      <target chassis='1' port='0x10'/>\n"
        "      <address type='pci' domain='0x0000' bus='0x00' slot='0x02' function='0x0'/>\n"
        "    </controller>\n"
    ) in text
    assert text == domain.export(filled)


@pytest.mark.parametrize(
    ("os_element", "machine", "firmware"),
    [
        ("<os firmware='efi'><type arch='x86_64' machine='pc-q35-7.2'>hvm</type></os>", "q35", "ovmf"),
        ("<os firmware='bios'><type arch='x86_64' machine='pc-q35-7.2'>hvm</type></os>", "q35", "seabios"),
        (
            "<os><type arch='x86_64' machine='pc-i440fx-7.2'>hvm</type>"
            "<loader readonly='yes' type='pflash'>/usr/share/OVMF/OVMF_CODE_4M.fd</loader></os>",
            "pc",
            "ovmf",
        ),
        ("<os><type arch='x86_64' machine='pc-q35-7.2'>hvm</type></os>", "q35", None),
        ("<os firmware='efi'><type arch='aarch64' machine='virt'>hvm</type></os>", "aarch64-virt", "edk2-aarch64"),
        (
            "<os><type arch='aarch64' machine='virt'>hvm</type>"
            "<loader readonly='yes' type='pflash'>/usr/share/AAVMF/AAVMF_CODE.fd</loader></os>",
            "aarch64-virt",
            "edk2-aarch64",
        ),
        ("<os firmware='efi'><type arch='ppc64' machine='pseries'>hvm</type></os>", "pseries", None),
    ],
    ids=["efi", "bios", "ovmf-loader", "default", "aarch64-efi", "aavmf-loader", "pseries-efi-not-modelled"],
)
def test_firmware_comes_from_os(os_element: str, machine: str, firmware: str | None) -> None:
    """<os firmware='efi'> or an OVMF/AAVMF <loader> means the machine's EFI firmware; nothing means its default."""
    xml = f"<domain type='kvm'><name>t</name>{os_element}<devices/></domain>"
    topology = LibvirtDomain.from_string(xml).topology
    assert (topology.machine.name, topology.firmware) == (machine, firmware)


# -- memory sizes and the firmware's 64-bit window -------------------------------------------------


def test_shmem_size_and_video_vram_become_the_devices_memory() -> None:
    """<shmem><size> (bytes unless a unit says otherwise) and <model vram> (KiB) size the devices' memory BARs."""
    domain = load(
        "    <shmem name='a'><model type='ivshmem-plain'/><size unit='G'>256</size></shmem>\n"
        "    <shmem name='b'><model type='ivshmem-plain'/><size>4194304</size></shmem>\n"
        "    <shmem name='c'><model type='ivshmem-plain'/></shmem>\n"
        "    <video><model type='vga' vram='65536'/></video>\n"
        "    <video><model type='qxl' vram='65536'/></video>"
    )
    memory = {d.id: d.memory for d in domain.topology.devices if d.kind in ("ivshmem-plain", "vga", "qxl-secondary")}
    assert memory == {"shmem0": 256 << 30, "shmem1": 4 << 20, "shmem2": None, "video0": 64 << 20, "video1": None}


def test_a_size_on_an_ivshmem_doorbell_is_refused_as_libvirt_refuses_it() -> None:
    """The doorbell's memory is its server's to size: libvirt 9.0 refuses <size> on it at define (pinned in
    tests/integration/test_libvirt_rules.py), so the reader does too, naming the line and the element."""
    with pytest.raises(InvalidDomainXML) as info:
        load("    <shmem name='d'><model type='ivshmem-doorbell'/><size unit='M'>4</size></shmem>")
    assert "shmem model 'ivshmem-doorbell' does not support size setting" in str(info.value)
    assert info.value.line is not None
    plain = load("    <shmem name='d'><model type='ivshmem-doorbell'/></shmem>")
    assert [(d.kind, d.memory) for d in plain.topology.devices if d.kind.startswith("ivshmem")] == [
        ("ivshmem-doorbell", None)
    ]


def test_the_ovmf_knob_and_the_cpus_address_bits_are_read() -> None:
    """-fw_cfg opt/ovmf/X-PciMmio64Mb in <qemu:commandline> is the 64-bit window; <maxphysaddr> the CPU's bits."""
    text = domain_xml(
        "",
        extra="  <cpu><maxphysaddr mode='emulate' bits='46'/></cpu>\n",
    ).replace("<os>", "<os firmware='efi'>")
    text = text.replace(
        "<domain type='kvm'>", "<domain type='kvm' xmlns:q='http://libvirt.org/schemas/domain/qemu/1.0'>"
    )
    text = text.replace(
        "</domain>",
        "<q:commandline><q:arg value='-fw_cfg'/><q:arg value='name=opt/ovmf/X-PciMmio64Mb,string=65536'/>"
        "</q:commandline></domain>",
    )
    t = LibvirtDomain.from_string(text).topology
    assert (t.firmware, t.mmio64, t.phys_bits) == ("ovmf", 64 << 30, 46)
    assert load("", extra="  <cpu mode='host-passthrough'/>\n").topology.phys_bits is None
    assert load("").topology.phys_bits == 40


def test_export_writes_the_ovmf_knob_as_qemu_arguments_once() -> None:
    """A plan's 64-bit window under OVMF becomes <qemu:commandline> -fw_cfg; exporting it again changes nothing."""
    domain = LibvirtDomain.from_string(domain_xml("").replace("<os>", "<os firmware='efi'>"))
    text = domain.with_topology(domain.topology.replace(mmio64=512 << 30)).to_string()
    assert text.startswith("<domain type='kvm' xmlns:qemu='http://libvirt.org/schemas/domain/qemu/1.0'>\n")
    assert text.endswith(
        "  </devices>\n"
        "  <qemu:commandline>\n"
        "    <qemu:arg value='-fw_cfg'/>\n"
        "    <qemu:arg value='name=opt/ovmf/X-PciMmio64Mb,string=524288'/>\n"
        "  </qemu:commandline>\n</domain>\n"
    )
    again = LibvirtDomain.from_string(text)
    assert again.topology.mmio64 == 512 << 30
    assert again.with_topology(again.topology).to_string() == text
    bigger = again.with_topology(again.topology.replace(mmio64=1 << 39 | 1 << 38)).to_string()
    assert "string=786432'/>" in bigger
    assert bigger.count("-fw_cfg") == 1


# -- io-reserve as <qemu:override> (issue 11) ------------------------------------------------------

_PORT = (
    "    <controller type='pci' index='0' model='pcie-root'/>\n"
    "    <controller type='pci' index='1' model='pcie-root-port'>\n"
    "      <model name='pcie-root-port'/>\n"
    "      <target chassis='1' port='0x10'/>\n"
    "      <address type='pci' domain='0x0000' bus='0x00' slot='0x02' function='0x0'/>\n"
    "    </controller>"
)
_QEMU = "http://libvirt.org/schemas/domain/qemu/1.0"


def _with_io_reserve(domain: LibvirtDomain, value: int | None) -> str:
    t = domain.topology
    port = t.controller(1).with_io_reserve(value)
    return domain.export(t.replace(controllers=[c if c.index != 1 else port for c in t.controllers]))


def test_io_reserve_is_written_as_an_override_of_a_user_alias_and_read_back() -> None:
    """io-reserve=0 becomes a ua- alias on the controller and a <qemu:override> of it; reading gives it back."""
    domain = LibvirtDomain.from_string(domain_xml(_PORT).replace("<os>", "<os firmware='efi'>"))
    text = _with_io_reserve(domain, 0)
    assert text.startswith(f"<domain type='kvm' xmlns:qemu='{_QEMU}'>\n")
    assert "      <target chassis='1' port='0x10'/>\n      <alias name='ua-pci-1'/>\n      <address" in text
    assert text.endswith(
        "  </devices>\n"
        "  <qemu:override>\n"
        "    <qemu:device alias='ua-pci-1'>\n"
        "      <qemu:frontend>\n"
        "        <qemu:property name='io-reserve' type='unsigned' value='0'/>\n"
        "      </qemu:frontend>\n"
        "    </qemu:device>\n"
        "  </qemu:override>\n</domain>\n"
    )
    again = LibvirtDomain.from_string(text)
    assert str(again.topology.controller(1)) == "'ua-pci-1' (pcie-root-port, index 1, io-reserve 0)"
    assert again.export(again.topology) == text


def test_io_reserve_keeps_every_other_override_and_commandline_where_they_are() -> None:
    """An existing override of the alias gets the property beside its own; other overrides and arguments stay."""
    port = _PORT.replace(
        "<target chassis='1' port='0x10'/>", "<target chassis='1' port='0x10'/>\n      <alias name='ua-p'/>"
    )
    qemu = (
        "  <q:commandline>\n    <q:arg value='-S'/>\n  </q:commandline>\n"
        "  <q:override>\n"
        "    <q:device alias='ua-other'>\n      <q:frontend>\n"
        "        <q:property name='x-foo' type='bool' value='true'/>\n      </q:frontend>\n    </q:device>\n"
        "    <q:device alias='ua-p'>\n      <q:frontend>\n"
        "        <q:property name='mem-reserve' type='unsigned' value='0'/>\n      </q:frontend>\n    </q:device>\n"
        "  </q:override>\n"
    )
    text = domain_xml(port).replace("<domain type='kvm'>", f"<domain type='kvm' xmlns:q='{_QEMU}'>")
    text = text.replace("</domain>", qemu + "</domain>")
    written = _with_io_reserve(LibvirtDomain.from_string(text), 0)
    expected = text.replace(
        "        <q:property name='mem-reserve' type='unsigned' value='0'/>\n",
        "        <q:property name='mem-reserve' type='unsigned' value='0'/>\n"
        "        <q:property name='io-reserve' type='unsigned' value='0'/>\n",
    )
    assert written[written.index("  <q:commandline>") :] == expected[expected.index("  <q:commandline>") :]
    assert LibvirtDomain.from_string(written).topology.controller(1).io_reserve == 0


def test_io_reserve_unset_is_written_as_a_removed_property() -> None:
    """Back to QEMU's default: the property becomes type='remove' (no element dropped), read as no io-reserve."""
    domain = LibvirtDomain.from_string(domain_xml(_PORT))
    again = LibvirtDomain.from_string(_with_io_reserve(domain, 0))
    text = _with_io_reserve(again, None)
    assert "<qemu:property name='io-reserve' type='remove'/>" in text
    assert LibvirtDomain.from_string(text).topology.controller(1).io_reserve is None


def test_a_bad_io_reserve_override_is_refused_naming_it() -> None:
    """An io-reserve that is no number of bytes is an error naming the property's element."""
    text = domain_xml(
        _PORT.replace("<address type='pci' domain", "<alias name='ua-p'/>\n      <address type='pci' domain")
    )
    text = text.replace("<domain type='kvm'>", f"<domain type='kvm' xmlns:qemu='{_QEMU}'>").replace(
        "</domain>",
        "<qemu:override><qemu:device alias='ua-p'><qemu:frontend>"
        "<qemu:property name='io-reserve' type='string' value='4k'/></qemu:frontend></qemu:device></qemu:override>"
        "</domain>",
    )
    with pytest.raises(InvalidDomainXML) as info:
        LibvirtDomain.from_string(text)
    assert "io-reserve must be an unsigned number of bytes (got 'string' '4k')" in str(info.value)
    assert "property" in str(info.value)


def test_io_reserve_without_a_user_alias_is_refused() -> None:
    """A controller with io-reserve but an alias libvirt would drop cannot be written: the error says why."""
    domain = LibvirtDomain.from_string(domain_xml(_PORT))
    t = domain.topology
    port = Controller(1, "pcie-root-port", t.controller(1).address, id="p1", io_reserve=0)
    with pytest.raises(InvalidInput) as info:
        domain.export(t.replace(controllers=[t.controller(0), port]))
    assert "libvirt keeps only aliases that start with 'ua-'" in str(info.value)


def test_child_is_find_for_every_element_and_tag() -> None:
    """``_child`` gives the element ``el.find(tag)`` gives, for every element and child tag of real domains."""
    from lxml import etree

    from pcitopo.formats.libvirt._read import _child

    root_dir = Path(__file__).parents[2]
    paths = sorted([*root_dir.glob("examples/*.xml"), *root_dir.glob("docs/examples/*.xml"), *DATA.glob("*.xml")])
    checked = 0
    for path in paths:
        root = etree.parse(str(path)).getroot()
        for el in root.iter():
            if not isinstance(el.tag, str):
                continue
            tags = {c.tag for c in el if isinstance(c.tag, str)} | {"address", "alias", "nothing-here"}
            for tag in sorted(tags):
                assert _child(el, tag) is el.find(tag), (path.name, root.getroottree().getpath(el), tag)
                checked += 1
    assert checked > 1000


def test_a_domains_child_index_is_find_for_every_element_and_tag() -> None:
    """A domain's index of first children gives the element ``el.find(tag)`` gives, for every element and child tag
    of real domains and of one with namespaced and repeated children (the first of a tag, in the tag's namespace)."""
    root_dir = Path(__file__).parents[2]
    paths = sorted([*root_dir.glob("examples/*.xml"), *root_dir.glob("docs/examples/*.xml"), *DATA.glob("*.xml")])
    texts = [path.read_text(encoding="utf-8") for path in paths]
    texts.append(
        domain_xml(
            "    <interface type='network'><q:model xmlns:q='urn:q' type='e1000'/><model type='virtio'/>"
            "<model type='rtl8139'/><alias xmlns='urn:x' name='x'/></interface>",
            extra="  <metadata><model xmlns='urn:m'/></metadata>\n",
        )
    )
    checked = 0
    for text in texts:
        domain = LibvirtDomain.from_string(text)
        for el in domain._root.iter(etree.Element):
            tags = {c.tag for c in el if isinstance(c.tag, str)} | {"address", "alias", "model", "nothing-here"}
            for tag in sorted(tags):
                assert domain._child(el, tag) is el.find(tag), (domain._root.getroottree().getpath(el), tag)
                checked += 1
    assert checked > 1000


def test_writer_evolve_is_attrs_evolve_checking_the_changed_fields() -> None:
    """The writer's controller copy gives what attrs.evolve gives (every field of Controller, the changed ones new),
    still refuses an out-of-range changed value, and refuses a name that is no field."""
    import attrs

    from pcitopo.formats.libvirt._write import _evolve

    c = Controller(5, "pcie-root-port", address=PciAddress(bus=0, slot=2, function=1), id="ua-p5", hotplug=False)
    changes: dict[str, Any] = {"chassis": 5, "port": 17, "qemu_model": "pcie-root-port"}
    assert _evolve(c, changes) == attrs.evolve(c, **changes)
    assert _evolve(c, {}) == c
    with pytest.raises(InvalidInput) as raised:
        attrs.evolve(c, chassis=256)
    with pytest.raises(InvalidInput) as ours:
        _evolve(c, {"chassis": 256})
    assert str(ours.value) == str(raised.value)
    with pytest.raises(TypeError):
        _evolve(c, {"chasis": 1})


def test_reader_child_paths_are_lxml_getpath() -> None:
    """The XPaths the reader writes for the device elements (for its errors) are lxml's getpath of each: a tag's
    position only where the tag repeats, comments not counted, a namespaced child's path from lxml."""
    from pcitopo.formats.libvirt._read import _child_paths

    domain = LibvirtDomain.from_string(
        "<domain type='kvm'><name>x</name><os><type machine='q35'>hvm</type></os><devices>"
        "<!-- a comment --><interface type='network'><source network='default'/><model type='virtio'/></interface>"
        "<disk type='file'><target dev='vda' bus='virtio'/></disk><controller type='pci' model='pcie-root'/>"
        "<interface type='network'><source network='default'/><model type='virtio'/></interface>"
        "<x:thing xmlns:x='urn:x'/><video><model type='vga'/></video>"
        "<interface type='network'><source network='default'/><model type='e1000'/></interface>"
        "</devices></domain>"
    )
    devices = domain._root.find("devices")
    assert devices is not None
    children = [c for c in devices if isinstance(c.tag, str)]
    tree = domain._root.getroottree()
    assert _child_paths(domain, devices, children) == [tree.getpath(c) for c in children]
    assert _child_paths(domain, devices, children)[3] == "/domain/devices/interface[2]"
    assert _child_paths(domain, devices, children)[1] == "/domain/devices/disk"


def test_reader_address_and_target_paths_are_lxml_getpath() -> None:
    """The XPath the reader gives a device's or PCI controller's address and a controller's target (for its errors)
    is lxml's getpath of the element: ``[1]`` where a sibling of the same tag follows, and the errors name it."""
    from pcitopo.formats.libvirt._read import _child, _child_paths, _first_child_path

    text = (
        "<domain type='kvm'><name>x</name><os><type machine='q35'>hvm</type></os><devices>"
        "<controller type='pci' index='0' model='pcie-root'/>"
        "<controller type='pci' index='1' model='pcie-root-port'><target chassis='1' port='0x8'/>"
        "<address type='pci' domain='0' bus='0' slot='1' function='0'/></controller>"
        "<interface type='network'><source network='default'/><model type='virtio'/>"
        "<address type='pci' domain='0' bus='1' slot='0' function='0'/><!-- c -->"
        "<address type='pci' domain='0' bus='1' slot='0' function='0'/></interface>"
        "<interface type='network'><source network='default'/><model type='virtio'/>"
        "<address type='pci' domain='0' bus='0' slot='2' function='0'/></interface>"
        "</devices></domain>"
    )
    domain = LibvirtDomain.from_string(text)
    devices = domain._root.find("devices")
    assert devices is not None
    children = [c for c in devices if isinstance(c.tag, str)]
    tree = domain._root.getroottree()
    checked = []
    for el, where in zip(children, _child_paths(domain, devices, children), strict=True):
        for tag in ("address", "target"):
            child = _child(el, tag)
            if child is not None:
                path = _first_child_path(where, child)
                assert path == tree.getpath(child)
                assert path.line == child.sourceline  # type: ignore[attr-defined]
                checked.append(str(path))
    assert "/domain/devices/interface[1]/address[1]" in checked
    assert "/domain/devices/interface[2]/address" in checked
    assert "/domain/devices/controller[2]/target" in checked
    with pytest.raises(InvalidDomainXML) as info:
        LibvirtDomain.from_string(text.replace("slot='2'", "slot='0x20'"))
    assert info.value.element == "/domain/devices/interface[2]/address"
    with pytest.raises(InvalidDomainXML) as info:
        LibvirtDomain.from_string(text.replace("port='0x8'", "port='x'"))
    assert info.value.element == "/domain/devices/controller[2]/target"


def test_the_reader_s_address_limits_are_pci_address_s_ranges() -> None:
    """The reader builds each ``<address>`` unchecked once libvirt's limits pass: they must be PciAddress's ranges
    (from 0), so that an address it builds is one PciAddress would accept, and one past a limit is refused."""
    from pcitopo.address import _RANGES
    from pcitopo.formats.libvirt._tables import _ADDRESS_LIMITS

    assert {name: (0, limit) for name, limit, _ in _ADDRESS_LIMITS} == _RANGES
    text = (
        "<domain type='kvm'><name>x</name><os><type arch='x86_64' machine='q35'>hvm</type></os><devices>"
        "<interface type='user'><model type='virtio'/>"
        "<address type='pci' domain='0x0000' bus='0x00' slot='0x1f' function='0x7'/></interface>"
        "</devices></domain>"
    )
    (device,) = [d for d in LibvirtDomain.from_string(text).topology.devices if d.kind == "virtio-net"]
    assert device.address == PciAddress(bus=0, slot=0x1F, function=7)
    with pytest.raises(InvalidDomainXML, match="slot='0x20', must be <= 0x1F"):
        LibvirtDomain.from_string(text.replace("slot='0x1f'", "slot='0x20'"))


# -- the export's check: a broken document is never written -----------------------------------------

_DOCUMENTS = {
    # each takes a path of the check: nodes counted in the text; a comment holding markup; a CDATA section (a tree)
    "plain": "",
    "comment with markup": "  <!-- was: <interface type='user'/> -->\n",
    "cdata": "  <description><![CDATA[<interface type='user'/>]]></description>\n",
}

_CORRUPTIONS: dict[str, Callable[[str], str]] = {
    # how a faulty writer could break the text
    "an element left open": lambda t: t.replace("</devices>", "", 1),
    "an undeclared namespace prefix": lambda t: t.replace("</devices>", "<qemu:arg value='-s'/></devices>", 1),
    "an attribute given twice": lambda t: t.replace("<address type='pci'", "<address type='pci' type='pci'", 1),
    "an element lost": lambda t: t.replace("<model type='virtio'/>", "", 1),
    "a comment lost": lambda t: re.sub(r"<!--.*?-->", "", t, count=1, flags=re.DOTALL),
}


@pytest.mark.parametrize(
    ("name", "document"),
    [(n, d) for n in sorted(_CORRUPTIONS) for d in _DOCUMENTS if n != "a comment lost" or "<!--" in _DOCUMENTS[d]],
)
def test_export_refuses_a_broken_text(name: str, document: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Whatever the writer's bug, ``export`` raises rather than return a text libxml2 refuses or with fewer nodes.

    libxml2 (lxml's tree parser) is the judge: it refuses the broken text (``InvalidDomainXML``), or reads fewer
    nodes from it than from the document (``InternalError``).
    """
    devices = (
        "    <interface type='user'><model type='virtio'/><address type='pci' slot='2'/></interface>\n"
        "    <rng model='virtio'><address type='pci' slot='3'/></rng>"
    )
    domain = load(devices, extra=_DOCUMENTS[document])
    # one address changed: the export adds no node, so the loss of any is a loss for the check too
    moved = domain.topology.replace(devices=[domain.topology.device("rng0").placed_at(PciAddress.parse("00:04.0"))])
    good = domain.export(moved)
    assert good != domain.to_string()
    corrupt = _CORRUPTIONS[name]
    broken = corrupt(good)
    assert broken != good
    parser = etree.XMLParser(resolve_entities=False)
    error: type[Exception]
    try:
        tree = etree.fromstring(broken.encode(), parser)
    except etree.XMLSyntaxError:
        error = InvalidDomainXML
    else:
        error = InternalError
        assert sum(1 for _ in tree.iter()) < sum(1 for _ in etree.fromstring(domain.to_bytes(), parser).iter())
    monkeypatch.setattr("pcitopo.formats.libvirt.splice", lambda text, edits: corrupt(splice(text, edits)))
    with pytest.raises(error):
        domain.export(moved)


_NODE_TEXTS = [
    "<a/>",
    "<?xml version='1.0' encoding='UTF-8'?>\n<!-- <a> </a> -->\n"
    "<a x='&lt;/b&gt;'><b/><?pi <c></c> ?>t &lt; u<!----></a>\n<!-- </z> -->",
    "<a><b><c/></b><!-- - < - --><d>x</d></a><?after <e/>?>",
]


@pytest.mark.parametrize(
    "path", sorted([*Path("examples").glob("*.xml"), *DATA.glob("*.xml"), Path("benchmarks/data/assign-q35-150.xml")])
)
def test_the_nodes_counted_in_a_text_are_those_libxml2_reads(path: Path) -> None:
    """The export's check counts a document's nodes in its text: as many as lxml reads, in each document and export."""
    import contextlib

    from pcitopo.errors import PcitopoError
    from pcitopo.formats.libvirt import _nodes

    domain = LibvirtDomain.from_path(path)
    texts = [*_NODE_TEXTS, domain.to_string()]
    with contextlib.suppress(PcitopoError):  # a document that breaks a rule on purpose: its own text is counted
        texts.append(domain.export(solve(domain.topology).topology))
    for text in texts:
        if "<!DOCTYPE" in text or "<![CDATA[" in text:
            continue
        root = etree.fromstring(text.encode(), etree.XMLParser(remove_comments=False, remove_pis=False))
        outside = [*root.itersiblings(preceding=True), *root.itersiblings()]
        declaration = 1 if text.startswith("<?xml") else 0
        assert _nodes(text) == sum(1 for _ in root.iter()) + len(outside) + declaration
