"""The validation rules of issue 10 against the running libvirt 9.0 and QEMU 7.2.

Each domain libvirt refuses is refused with libvirt's exact message, and
pcitopo's validator reports the rule; each domain libvirt accepts validates
without that rule. The per-model ``<model name>`` and ``<target>`` options of
the catalog are checked option by option against ``virsh define``; endpoints a
user addresses on q35's pcie.0 are checked kind by kind.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from pcitopo.address import PciAddress
from pcitopo.devices import Controller, Device
from pcitopo.errors import InvalidDomainXML
from pcitopo.formats.libvirt import LibvirtDomain
from pcitopo.legality.catalog import TARGET_OPTIONS, Catalog
from pcitopo.legality.machine import Machine
from pcitopo.legality.rules import validate
from pcitopo.qemu import QemuError, verify
from pcitopo.qemu.probe import probe_facts
from pcitopo.topology import Topology
from tests.support.libvirt import URI, LibvirtError, define_and_dump

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("qemu", "libvirtd")]

A = PciAddress.parse
EMULATORS = {"q35": ("x86_64", "qemu-system-x86_64"), "pc": ("x86_64", "qemu-system-x86_64")}
EMULATORS["pseries"] = ("ppc64", "qemu-system-ppc64")


def domain(machine: str, devices: str) -> str:
    arch, emulator = EMULATORS[machine]
    return (
        f"<domain type='qemu'><name>rules</name><memory unit='MiB'>256</memory>"
        f"<os><type arch='{arch}' machine='{machine}'>hvm</type></os>"
        f"<devices><emulator>/usr/bin/{emulator}</emulator>{devices}</devices></domain>"
    )


def pci(index: int, model: str, inner: str = "") -> str:
    return f"<controller type='pci' index='{index}' model='{model}'>{inner}</controller>"


def at(slot: int, bus: int = 0, function: int = 0, multifunction: bool = False) -> str:
    multi = " multifunction='on'" if multifunction else ""
    return (
        f"<address type='pci' domain='0x0000' bus='0x{bus:02x}' slot='0x{slot:02x}' function='0x{function:x}'{multi}/>"
    )


def refusal(xml: str) -> str | None:
    """libvirt's error text for a domain, or None when it accepts it."""
    try:
        define_and_dump(xml)
    except LibvirtError as exc:
        return str(exc)
    return None


def rules_of(xml: str) -> list[str]:
    """The rules pcitopo's validator reports for the domain, as read from the XML."""
    return sorted({v.rule for v in validate(LibvirtDomain.from_string(xml).topology)})


UNSUPPORTED = "unsupported configuration: "

REFUSED = [
    (
        "pci-root with an address",
        domain("pc", pci(0, "pci-root", at(5))),
        UNSUPPORTED + "pci-root and pcie-root controllers should not have an address",
        "root-address",
    ),
    (
        "pcie-root with an address",
        domain("q35", pci(0, "pcie-root", at(5))),
        UNSUPPORTED + "pci-root and pcie-root controllers should not have an address",
        "root-address",
    ),
    (
        "an ich9-uhci1 companion without its master",
        domain("q35", "<controller type='usb' index='0' model='ich9-uhci1'/>"),
        "No master USB controller specified",
        "usb-master",
    ),
    (
        "ich9-uhci companions of two USB indexes, no EHCI",
        domain(
            "q35",
            "<controller type='usb' index='0' model='ich9-uhci1'><master startport='0'/></controller>"
            "<controller type='usb' index='1' model='ich9-uhci2'><master startport='2'/></controller>",
        ),
        "No master USB controller specified",
        "usb-master",
    ),
    (
        "x3130-upstream as a pcie-root-port's model name",
        domain("q35", pci(1, "pcie-root-port", "<model name='x3130-upstream'/>")),
        UNSUPPORTED + "Option 'modelName' has invalid value for PCI controller with index '1', model "
        "'pcie-root-port' and modelName 'x3130-upstream'",
        "controller-options",
    ),
    (
        "busNr on a root port",
        domain("q35", pci(1, "pcie-root-port", "<target busNr='5'/>")),
        UNSUPPORTED + "Option 'busNr' is not valid for PCI controller with index '1', model 'pcie-root-port' "
        "and modelName 'pcie-root-port'",
        "controller-options",
    ),
    (
        "hotplug on a pcie-to-pci-bridge",
        domain("q35", pci(1, "pcie-root-port") + pci(2, "pcie-to-pci-bridge", "<target hotplug='off'/>")),
        UNSUPPORTED + "Option 'hotplug' is not valid for PCI controller with index '2', model 'pcie-to-pci-bridge' "
        "and modelName 'pcie-pci-bridge'",
        "controller-options",
    ),
]


def test_libvirt_and_the_reader_refuse_a_size_on_an_ivshmem_doorbell() -> None:
    """libvirt 9.0 refuses <size> on an ivshmem-doorbell (the server sizes its memory) and accepts it without;
    pcitopo's reader refuses it with libvirt's words, and reads the doorbell without it."""
    doorbell = "<shmem name='s1'><model type='ivshmem-doorbell'/>{}<server path='/tmp/pcitopo-ivshmem.sock'/></shmem>"
    sized = domain("q35", doorbell.format("<size unit='M'>4</size>"))
    message = "shmem model 'ivshmem-doorbell' does not support size setting"
    assert refusal(sized) == UNSUPPORTED + message
    with pytest.raises(InvalidDomainXML, match=message):
        LibvirtDomain.from_string(sized)
    plain = domain("q35", doorbell.format(""))
    assert refusal(plain) is None
    assert [d.kind for d in LibvirtDomain.from_string(plain).topology.devices if d.kind.startswith("ivshmem")] == [
        "ivshmem-doorbell"
    ]


@pytest.mark.parametrize(("case", "xml", "message", "rule"), REFUSED, ids=[c[0] for c in REFUSED])
def test_libvirt_refuses_and_the_validator_names_the_rule(case: str, xml: str, message: str, rule: str) -> None:
    """libvirt refuses the domain with its exact message; pcitopo reports the rule for the same XML."""
    assert refusal(xml) == message
    assert rule in rules_of(xml)


ACCEPTED = [
    (
        "an ich9-uhci1 with its EHCI master",
        domain(
            "q35",
            "<controller type='usb' index='0' model='ich9-ehci1'/>"
            "<controller type='usb' index='0' model='ich9-uhci1'><master startport='0'/></controller>",
        ),
        "usb-master",
    ),
    (
        "an ich9-uhci1 beside a qemu-xhci of another index",
        domain(
            "q35",
            "<controller type='usb' index='0' model='qemu-xhci'/><controller type='usb' index='1' model='ich9-uhci1'/>",
        ),
        "usb-master",
    ),
]


@pytest.mark.parametrize(("case", "xml", "rule"), ACCEPTED, ids=[c[0] for c in ACCEPTED])
def test_libvirt_accepts_and_the_validator_does_not_complain(case: str, xml: str, rule: str) -> None:
    """libvirt defines the domain, and pcitopo does not report the rule, for the input or libvirt's output."""
    dumped = define_and_dump(xml)
    assert rule not in rules_of(xml)
    assert rule not in rules_of(dumped)


# -- per-model options, option by option -----------------------------------------------------

# catalog model -> (machine, controllers before it, its libvirt model, its index)
SETUPS = {
    "pci-root": ("pc", "", "pci-root", 0),
    "pcie-root": ("q35", "", "pcie-root", 0),
    "spapr-pci-host-bridge": ("pseries", "", "pci-root", 1),
    "pci-bridge": ("pc", "", "pci-bridge", 1),
    "dmi-to-pci-bridge": ("q35", "", "dmi-to-pci-bridge", 1),
    "pcie-to-pci-bridge": ("q35", pci(1, "pcie-root-port"), "pcie-to-pci-bridge", 2),
    "pcie-root-port": ("q35", "", "pcie-root-port", 1),
    "pcie-switch-upstream-port": ("q35", pci(1, "pcie-root-port"), "pcie-switch-upstream-port", 2),
    "pcie-switch-downstream-port": (
        "q35",
        pci(1, "pcie-root-port") + pci(2, "pcie-switch-upstream-port"),
        "pcie-switch-downstream-port",
        3,
    ),
    "pci-expander-bus": ("pc", "", "pci-expander-bus", 1),
    "pcie-expander-bus": ("q35", "", "pcie-expander-bus", 1),
}
VALUES = {"chassis": "7", "port": "7", "chassisNr": "7", "busNr": "100", "index": "7", "hotplug": "off"}
MODEL_NAMES = sorted({name for m in Catalog.default().controllers.values() for name in m.qemu_devices})


def test_every_catalog_model_is_probed() -> None:
    """The option table covers every controller model of the catalog."""
    assert set(SETUPS) == set(Catalog.default().controllers)


def option_cases() -> list[tuple[str, str, str]]:
    cases = [(model, "target", option) for model in SETUPS for option in TARGET_OPTIONS if option != "node"]
    cases += [(model, "model name", name) for model in SETUPS for name in MODEL_NAMES]
    return cases


@pytest.mark.parametrize(("model", "what", "option"), option_cases(), ids=lambda x: str(x))
def test_model_options_match_libvirt(model: str, what: str, option: str) -> None:
    """libvirt refuses an option exactly when the catalog says the model does not take it (rule controller-options).

    A target index on a root bus is rule phb-index's (libvirt: only index 0 has target index 0).
    """
    machine, before, libvirt_model, index = SETUPS[model]
    inner = f"<target {option}='{VALUES[option]}'/>" if what == "target" else f"<model name='{option}'/>"
    xml = domain(machine, before + pci(index, libvirt_model, inner))
    refused = refusal(xml)
    found = rules_of(xml)
    if refused is None:
        assert "controller-options" not in found
        assert "phb-index" not in found
    elif "Only the PCI controller with index 0 can have target index 0" in refused:
        assert "phb-index" in found or "controller-options" in found
    else:
        assert refused.startswith(UNSUPPORTED + "Option '")
        assert "controller-options" in found


# -- endpoints the user addresses on pcie.0 -----------------------------------------------------

ON_PCIE_ROOT = {
    "hostdev": "<hostdev mode='subsystem' type='pci' managed='yes'><source>"
    "<address domain='0x0000' bus='0x03' slot='0x00' function='0x0'/></source>{at}</hostdev>",
    "e1000e": "<interface type='user'><model type='e1000e'/>{at}</interface>",
    "e1000": "<interface type='user'><model type='e1000'/>{at}</interface>",
    "rtl8139": "<interface type='user'><model type='rtl8139'/>{at}</interface>",
    "virtio-net": "<interface type='user'><model type='virtio'/>{at}</interface>",
    "virtio-net-transitional": "<interface type='user'><model type='virtio-transitional'/>{at}</interface>",
    "ich9 sound": "<sound model='ich9'>{at}</sound>",
    "ac97": "<sound model='ac97'>{at}</sound>",
    "qemu-xhci": "<controller type='usb' index='0' model='qemu-xhci'>{at}</controller>",
    "nec-xhci": "<controller type='usb' index='0' model='nec-xhci'>{at}</controller>",
    "piix3-uhci": "<controller type='usb' index='0' model='piix3-uhci'>{at}</controller>",
    "virtio-scsi": "<controller type='scsi' index='0' model='virtio-scsi'>{at}</controller>",
    "lsilogic": "<controller type='scsi' index='0' model='lsilogic'>{at}</controller>",
    "virtio-serial": "<controller type='virtio-serial' index='0'>{at}</controller>",
    "bochs": "<video><model type='bochs'/>{at}</video>",
    "vga": "<video><model type='vga'/>{at}</video>",
    "virtio-rng": "<rng model='virtio'><backend model='random'>/dev/urandom</backend>{at}</rng>",
    "i6300esb": "<watchdog model='i6300esb'>{at}</watchdog>",
    "virtio-tablet": "<input type='tablet' bus='virtio'>{at}</input>",
    "ivshmem-plain": "<shmem name='pcitopo'><model type='ivshmem-plain'/><size unit='M'>4</size>{at}</shmem>",
    "vhost-vsock": "<vsock model='virtio'><cid auto='yes'/>{at}</vsock>",
}


@pytest.mark.parametrize("kind", list(ON_PCIE_ROOT))
def test_libvirt_accepts_any_endpoint_the_user_addresses_on_pcie_root(kind: str) -> None:
    """libvirt keeps the endpoint at 00:05.0 on q35, and pcitopo reports no integrated or placement problem there."""
    xml = domain("q35", ON_PCIE_ROOT[kind].format(at=at(5)))
    dumped = define_and_dump(xml)
    topology = LibvirtDomain.from_string(dumped).topology
    placed = [d for d in topology.devices if d.address == A("00:05.0")]
    assert len(placed) == 1
    problems = [v for v in validate(topology) if v.address == A("00:05.0")]
    assert problems == []


def test_passthrough_on_pcie_root_validates() -> None:
    """A vfio-pci hostdev at 00:05.0 (libvirt accepts it above) is read as vfio-pci and breaks no rule."""
    xml = domain("q35", ON_PCIE_ROOT["hostdev"].format(at=at(5)))
    topology = LibvirtDomain.from_string(xml).topology
    assert [d.kind for d in topology.devices if d.address == A("00:05.0")] == ["vfio-pci"]
    assert validate(topology) == ()


def test_qemu_takes_pcie_endpoints_as_integrated_on_pcie_root() -> None:
    """QEMU starts PCIe endpoints placed directly on pcie.0 (they become integrated endpoints) where planned."""
    kinds = ["e1000e", "qemu-xhci", "virtio-net-non-transitional", "virtio-rng", "ich9"]
    topology = Topology.build(
        "q35", devices=[Device(f"d{i}", k, address=A(f"00:{5 + i:02x}.0")) for i, k in enumerate(kinds)]
    )
    assert validate(topology) == ()
    report = verify(topology, firmware=False, hotplug=False)
    assert report.ok, [str(c) for c in report.checks if not c.ok]


# -- chassis defaults in QEMU --------------------------------------------------------------------


def test_default_chassis_clash_is_refused_by_qemu_and_the_validator() -> None:
    """Root port index 3 without chassis (libvirt: 3) beside one with chassis 3: QEMU refuses, validate reports it."""
    topology = Topology.build(
        "q35",
        [
            Controller(3, "pcie-root-port", address=A("00:02.0")),
            Controller(4, "pcie-root-port", address=A("00:03.0"), chassis=3),
        ],
    )
    assert [v.rule for v in validate(topology)] == ["unique-chassis-port"]
    with pytest.raises(QemuError) as info:
        verify(topology, firmware=False, hotplug=False)
    assert info.value.qemu_message == "Can't add chassis slot, error -16"
    fixed = topology.replace(
        controllers=[*topology.controllers[:2], Controller(4, "pcie-root-port", address=A("00:03.0"), chassis=9)]
    )
    assert validate(fixed) == ()
    assert verify(fixed, firmware=False, hotplug=False).ok


def test_default_chassis_clash_is_refused_through_libvirt_xml() -> None:
    """libvirt defines the same ports (it checks no chassis), so only QEMU and pcitopo catch the clash."""
    xml = domain(
        "q35",
        pci(3, "pcie-root-port", at(2)) + pci(4, "pcie-root-port", "<target chassis='3'/>" + at(3)),
    )
    dumped = define_and_dump(xml)
    chassis = {c.index: c.chassis for c in LibvirtDomain.from_string(dumped).topology.controllers if c.index in (3, 4)}
    assert chassis == {3: 3, 4: 3}
    assert "unique-chassis-port" in rules_of(xml)


def test_default_target_index_duplicate_is_defined_by_libvirt_and_refused_by_qemu() -> None:
    """libvirt gives host bridge 1 target index 1 although bridge 2 has it; QEMU refuses; validate reports it."""
    xml = domain("pseries", pci(1, "pci-root") + pci(2, "pci-root", "<target index='1'/>"))
    dumped = LibvirtDomain.from_string(define_and_dump(xml)).topology
    assert {c.index: c.target_index for c in dumped.controllers} == {0: 0, 1: 1, 2: 1}
    request = LibvirtDomain.from_string(xml)
    topology = request.topology.without(*request.implicit)  # the USB controller and balloon libvirt adds: unplaced
    assert [v.rule for v in validate(topology)] == ["phb-index"]
    with pytest.raises(QemuError) as info:
        verify(topology, firmware=False, hotplug=False)
    assert info.value.qemu_message == "PHB 1 already attached"


# -- drivers QEMU 7.2 does not have ------------------------------------------------------------

LACKING = {
    "igb": ("<interface type='user'><model type='igb'/></interface>", "igb", "pcie-root-port"),
    "vhost-vsock-transitional": (
        "<vsock model='virtio-transitional'><cid auto='no' address='3'/></vsock>",
        "vhost-vsock-pci-transitional",
        "pcie-to-pci-bridge",
    ),
}
"""Device elements libvirt 9.0 defines on q35, the QEMU driver it asks for, and the bus model it picks."""


@pytest.mark.parametrize("kind", list(LACKING))
def test_libvirt_defines_a_driver_qemu_7_2_lacks_and_validate_refuses_it(kind: str, tmp_path: Path) -> None:
    """libvirt 9.0 defines the device and asks QEMU for a driver QEMU 7.2 lacks; pcitopo reads it, rule qemu-driver."""
    element, driver, bus_model = LACKING[kind]
    dumped = define_and_dump(domain("q35", element))
    topology = LibvirtDomain.from_string(dumped).topology
    (device,) = [d for d in topology.devices if d.kind == kind]
    assert device.address is not None
    assert topology.controller(device.address.bus).model == bus_model
    path = tmp_path / "dumped.xml"
    path.write_text(dumped)
    argv = subprocess.run(
        ["virsh", "-c", URI, "domxml-to-native", "qemu-argv", str(path)], capture_output=True, text=True, check=True
    ).stdout
    assert f'{{"driver":"{driver}",' in argv
    facts = probe_facts("qemu-system-x86_64", "q35")
    assert facts.version.startswith("7.2.")
    assert driver not in facts.device_types
    assert [(v.rule, v.devices) for v in validate(topology)] == [("qemu-driver", (device.id,))]


def test_the_catalog_marks_exactly_the_drivers_qemu_7_2_lacks() -> None:
    """The kinds q35 (qemu-version 7.2) does not start are those whose driver the running QEMU 7.2 does not have."""
    q35 = Machine.named("q35")
    facts = probe_facts(q35.qemu_binary, "q35")
    assert (q35.qemu_version, facts.version.rsplit(".", 1)[0]) == ((7, 2), "7.2")
    kinds = q35.catalog.devices.values()
    lacking = {k.name for k in kinds if k.qemu_device not in facts.device_types}
    assert lacking == {k.name for k in kinds if not q35.starts(k.name)} == {"igb", "vhost-vsock-transitional"}
