"""pcitopo's libvirt policy against the running libvirt 9.0, over generated and hand-written domains.

For each domain, libvirt's addresses and added controllers (model, index,
address, multifunction, target values) from ``virsh define`` + ``dumpxml`` are
compared with pcitopo's: the same XML imported with
:mod:`pcitopo.formats.libvirt` and completed by the libvirt policy. Where
libvirt refuses a domain, pcitopo must refuse it with libvirt's reason. Grow
cases (libvirt's addressed output plus new devices) and partly pinned domains
are made from libvirt's own output.

"libvirt takes us as final" (the fixpoint): for every generated domain, the
XML pcitopo writes with each built-in policy (and a combination) is accepted
by ``virsh define``, and ``dumpxml --inactive`` moves no address and adds no
PCI controller and no PCI device. A policy that finds a domain unsatisfiable,
or a domain that already breaks a rule, writes nothing and is not checked;
the test is skipped only when no policy writes a plan. Beside pcitopo's
reading of libvirt's output, every PCI ``<address>`` element of the two
documents is compared as text, so that an address or ``multifunction='on'``
libvirt writes where pcitopo's document has none is a change too. The same
holds for domains complete but for what libvirt adds on its own (libvirt's
output of a generated domain without its default USB controller, memballoon,
video, virtio-serial and SCSI controllers, chipset addresses, implied
``multifunction``): pcitopo writes those too, and the libvirt policy where
libvirt puts them.

The run is sized for CI (a few hundred defines at ~5-15 ms each).
"""

from __future__ import annotations

import json
import random
import re
import subprocess
from collections import Counter
from pathlib import Path

import pytest
from lxml import etree

from pcitopo.errors import InvalidTopology, PcitopoError, Unsatisfiable
from pcitopo.formats.libvirt import LibvirtDomain
from pcitopo.legality.rules import validate
from pcitopo.qemu.args import device_specs
from pcitopo.solver import solve
from pcitopo.solver._libvirt import libvirt_assign
from pcitopo.topology import Topology
from tests.support.domains import Domain, domains, grow, strip_implicit, unpin
from tests.support.libvirt import URI, LibvirtError, define_and_dump, define_and_dump_many

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("libvirtd")]

SEED = 20260525
GENERATED = domains(SEED, 160)

Summary = dict[tuple[str, str], tuple[object, ...]]


def summary(t: Topology) -> Summary:
    """What placement decides: every controller's identity and position, every device's address.

    Devices are named alike on both sides: generated ones by their ``ua-``
    alias, the ones libvirt adds (and pcitopo models) by pcitopo's default
    ids, which libvirt's output gives them too.
    """
    out: Summary = {}
    for c in t.controllers:
        out[("controller", str(c.index))] = (
            c.model,
            c.address,
            c.multifunction,
            c.chassis,
            c.port,
            c.chassis_nr,
            c.bus_nr,
            c.target_index,
        )
    for d in t.devices:
        out[("device", d.id)] = (d.kind, d.address, d.multifunction)
    return out


def libvirt_side(xml: str) -> tuple[str | None, Summary | str]:
    """libvirt's output and its summary, or ``(None, error text)`` when libvirt refuses the domain."""
    try:
        dumped = define_and_dump(xml)
    except LibvirtError as exc:
        text = str(exc)
        for prefix in ("internal error: ", "unsupported configuration: ", "XML error: "):
            text = text.removeprefix(prefix)
        return None, text
    return dumped, summary(LibvirtDomain.from_string(dumped).topology)


def pcitopo_side(xml: str) -> Summary | str:
    try:
        return summary(libvirt_assign(LibvirtDomain.from_string(xml).topology))
    except Unsatisfiable as exc:
        return exc.conflicts[0]
    except PcitopoError as exc:
        return str(exc)


def differences(theirs: Summary | str, ours: Summary | str) -> list[str]:
    if isinstance(theirs, str) or isinstance(ours, str):
        if isinstance(theirs, str) and isinstance(ours, str) and theirs in ours:
            return []
        said_libvirt = theirs if isinstance(theirs, str) else "accepted"
        said_pcitopo = ours if isinstance(ours, str) else "placed"
        return [f"libvirt: {said_libvirt}; pcitopo: {said_pcitopo}"]
    return [
        f"{kind} {name}: libvirt {theirs.get((kind, name))}, pcitopo {ours.get((kind, name))}"
        for kind, name in sorted(set(theirs) | set(ours))
        if theirs.get((kind, name)) != ours.get((kind, name))
    ]


def check_same(xml: str, what: str) -> str | None:
    """Assert both sides agree on ``xml``; libvirt's output when it accepted the domain."""
    dumped, theirs = libvirt_side(xml)
    diff = differences(theirs, pcitopo_side(xml))
    assert not diff, f"{what}: " + "; ".join(diff[:8])
    return dumped


@pytest.mark.parametrize("domain", GENERATED, ids=lambda d: d.name)
def test_generated_domain_matches_libvirt(domain: Domain) -> None:
    """A generated domain, then it grown by new devices, then it partly unpinned: addresses as libvirt gives them."""
    dumped = check_same(domain.xml, str(domain))
    if dumped is None:
        return
    rng = random.Random(domain.name)
    check_same(grow(dumped, rng, domain.machine, rng.randint(1, 12)), f"{domain} grown")
    check_same(unpin(dumped, rng), f"{domain} partly unpinned")


HAND_WRITTEN = {
    "q35-virtio-and-legacy": "<interface type='user'><model type='virtio'/><alias name='ua-n0'/></interface>"
    "<interface type='user'><model type='e1000'/><alias name='ua-n1'/></interface>",
    "q35-default-devices": "<controller type='usb' index='0' model='qemu-xhci'><alias name='ua-usb'/></controller>",
    "q35-bridge-before-port": "<controller type='pci' index='1' model='pcie-to-pci-bridge'/>"
    "<controller type='pci' index='2' model='pcie-root-port'/>"
    "<interface type='user'><model type='e1000'/><alias name='ua-n0'/></interface>",
    "q35-classic": "<controller type='pci' index='1' model='dmi-to-pci-bridge'/>"
    "<controller type='pci' index='2' model='pci-bridge'/>"
    "<video><model type='qxl'/><alias name='ua-video'/></video><sound model='ich9'><alias name='ua-snd'/></sound>"
    "<rng model='virtio'><backend model='random'>/dev/urandom</backend><alias name='ua-rng'/></rng>",
    # multi-head qxl: libvirt starts "qxl" (no VGA, hot-pluggable) for every qxl but the primary
    "q35-qxl-heads": "<video><model type='qxl'/></video><video><model type='qxl'/></video>"
    "<video><model type='qxl'/></video>",
    # primary='yes' on a later video: libvirt moves it first (video0, 00:01.0)
    "q35-primary-later": "<video><model type='qxl'/></video>"
    "<interface type='user'><model type='e1000'/></interface>"
    "<video><model type='qxl' primary='yes'/></video><video><model type='virtio'/></video>",
    # a pxb-pcie at busNr 3, five NICs: libvirt puts their root ports on pcie.0, whose buses then reach 5
    "q35-pxb-low-busnr": "<controller type='pci' index='1' model='pcie-expander-bus'><target busNr='3'/>"
    "<address type='pci' domain='0' bus='0' slot='2' function='0'/></controller>"
    + "<interface type='user'><model type='e1000e'/></interface>"
    * 5,
}


def q35(devices: str) -> str:
    usb = "" if "type='usb'" in devices else "<controller type='usb' index='0' model='none'/>"
    return (
        "<domain type='qemu'><name>hand</name><memory unit='KiB'>262144</memory>"
        "<os><type arch='x86_64' machine='q35'>hvm</type></os><devices>"
        "<emulator>/usr/bin/qemu-system-x86_64</emulator>"
        f"{usb}<controller type='sata' index='0'/>{devices}<memballoon model='none'/></devices></domain>"
    )


@pytest.mark.parametrize("name", sorted(HAND_WRITTEN))
def test_hand_written_domain_matches_libvirt(name: str) -> None:
    """The reference's verified examples, against the running libvirt."""
    assert check_same(q35(HAND_WRITTEN[name]), name) is not None


@pytest.mark.parametrize("name", ["q35-qxl-heads", "q35-primary-later"])
def test_hand_written_video_domain_is_final_for_every_policy(name: str) -> None:
    """Several videos, the primary not first: what each policy writes, libvirt keeps as it is."""
    problems, _ = final_problems(q35(HAND_WRITTEN[name]))
    assert not problems, "; ".join(problems)


@pytest.mark.parametrize("name", ["q35-qxl-heads", "q35-primary-later"])
def test_qemu_drivers_are_the_ones_libvirt_starts(name: str, tmp_path: Path) -> None:
    """The -device driver of every device of pcitopo's plan is the one libvirt's command line gives it."""
    source = LibvirtDomain.from_string(q35(HAND_WRITTEN[name]))
    planned = solve(source.topology).topology
    path = tmp_path / "planned.xml"
    path.write_text(source.with_topology(planned).to_string())
    argv = subprocess.run(
        ["virsh", "-c", URI, "domxml-to-native", "qemu-argv", str(path)], capture_output=True, text=True, check=True
    ).stdout
    devices = map(json.loads, re.findall(r"-device '(\{[^']*\})'", argv))
    # video and controller ids are libvirt's aliases in both (pcitopo names the interface interface0, libvirt net0)
    theirs = {d["id"]: d["driver"] for d in devices if d["id"].startswith(("video", "pci."))}
    ours = {spec.id: spec.driver for spec in device_specs(planned)}
    assert {i: ours.get(i) for i in theirs} == theirs
    drivers = Counter(theirs.values())
    assert drivers["qxl-vga"] == 1, drivers
    assert drivers["qxl"] >= 1, drivers


SWITCH = (
    "<controller type='pci' index='1' model='pcie-switch-upstream-port'/>"
    "<controller type='pci' index='2' model='pcie-switch-downstream-port'/>"
    "<controller type='pci' index='3' model='pcie-switch-downstream-port'/>"
)


def test_libvirt_plugs_a_switch_into_itself_and_pcitopo_does_not() -> None:
    """libvirt 9.0 puts an unaddressed upstream port on its own downstream port; pcitopo adds a root port instead."""
    xml = q35(SWITCH)
    dumped, _ = libvirt_side(xml)
    assert dumped is not None
    theirs = LibvirtDomain.from_string(dumped).topology
    assert theirs.controller_cycles() == [[1, 2]]
    assert str(theirs.controller(1).address) == "0000:02:00.0"
    ours = libvirt_assign(LibvirtDomain.from_string(xml).topology)
    assert ours.controller_cycles() == []
    assert str(ours.controller(1).address) == "0000:04:00.0"
    assert (ours.controller(4).model, str(ours.controller(4).address)) == ("pcie-root-port", "0000:00:01.0")


POLICIES = ["libvirt", "hotplug", "minimal", "numa", "ordered", "hotplug+numa+ordered"]


def exported(source: LibvirtDomain, policy: str) -> tuple[LibvirtDomain, Topology] | str:
    """pcitopo's output for ``policy``, or why it writes none (unsatisfiable, a rule the input breaks)."""
    try:
        topology = libvirt_assign(source.topology) if policy == "libvirt" else solve(source.topology, policy).topology
    except Unsatisfiable as exc:
        return f"unsatisfiable: {exc.conflicts[0]}"
    except InvalidTopology as exc:
        return f"already breaks a rule: {str(exc).splitlines()[1].strip()}"
    except PcitopoError as exc:
        if "internal error" not in str(exc):
            raise
        return f"internal error: {str(exc).splitlines()[1].strip()}"
    return source.with_topology(topology), topology


def changes(written: LibvirtDomain, dumped: str) -> list[str]:
    """What libvirt moved or added when it defined ``written``: addresses, controllers, PCI devices."""
    mine = written.topology
    back = LibvirtDomain.from_string(dumped).topology
    ours = {d.id for d in mine.devices}
    found = [
        f"moved {d.id}: {d.address} -> {back.device(d.id).address}"
        for d in mine.devices
        if back.device(d.id).address != d.address
    ]
    found += [
        f"moved controller {c.index}: {c.address} -> {back.controller(c.index).address}"
        for c in mine.controllers
        if back.controller(c.index).address != c.address
    ]
    found += [f"added controller {c.index} ({c.model})" for c in back.controllers if not mine.has_bus(c.index)]
    found += [f"added device {d}" for d in back.devices if d.id not in ours]
    if not found:  # the same topology: then the text, which pcitopo's reader completes as libvirt would
        ours_raw, theirs_raw = pci_addresses(written.to_string()), pci_addresses(dumped)
        found += [f"libvirt wrote {e}" for e in sorted(theirs_raw - ours_raw)]
        found += [f"libvirt dropped {e}" for e in sorted(ours_raw - theirs_raw)]
    return found


def pci_addresses(xml: str) -> Counter[str]:
    """Every PCI ``<address>`` of a document's devices as text, with its element: read without pcitopo."""
    root = etree.fromstring(xml.encode("utf-8"))
    found: Counter[str] = Counter()
    for el in root.iterfind("devices/*"):
        address = el.find("address")
        if address is None or address.get("type") != "pci":
            continue
        what = " ".join(f"{k}={el.get(k)}" for k in ("type", "index") if el.get(k) is not None)
        numbers = "{:04x}:{:02x}:{:02x}.{:x}".format(
            *(int(address.get(k, "0"), 0) for k in ("domain", "bus", "slot", "function"))
        )
        multifunction = " multifunction" if address.get("multifunction") == "on" else ""
        found[f"<{el.tag} {what}> at {numbers}{multifunction}"] += 1
    return found


def final_problems(xml: str) -> tuple[list[str], dict[str, tuple[LibvirtDomain, Topology] | str]]:
    """What libvirt changes in the XML each policy writes for ``xml`` (and why a policy wrote none)."""
    source = LibvirtDomain.from_string(xml)
    results = {policy: exported(source, policy) for policy in POLICIES}
    problems: list[str] = []
    for policy, r in results.items():
        if isinstance(r, str) and r.startswith("internal error"):
            problems.append(f"{policy}: {r}")
    written = {p: r for p, r in results.items() if not isinstance(r, str)}
    dumps = define_and_dump_many([w.to_string() for w, _ in written.values()])
    for (policy, (out, _)), dumped in zip(written.items(), dumps, strict=True):
        if isinstance(dumped, LibvirtError):
            problems.append(f"{policy}: libvirt refused it: {dumped}")
        else:
            problems += [f"{policy}: {c}" for c in changes(out, dumped)[:4]]
    return problems, results


@pytest.mark.parametrize("domain", GENERATED, ids=lambda d: d.name)
def test_libvirt_takes_our_xml_as_final(domain: Domain) -> None:
    """For every policy, the XML pcitopo writes is accepted by virsh define, and libvirt moves and adds nothing."""
    problems, results = final_problems(domain.xml)
    if all(isinstance(r, str) for r in results.values()) and not problems:
        pytest.skip(f"{domain}: no policy writes a plan ({results['libvirt']})")
    assert not problems, f"{domain}: " + "; ".join(problems[:12])


COMPLETE = GENERATED[::2]
"""Every second generated domain, as libvirt defines it but without what libvirt adds on its own."""


@pytest.mark.parametrize("domain", COMPLETE, ids=lambda d: d.name)
def test_a_domain_complete_but_for_what_libvirt_adds_gets_it_from_pcitopo(domain: Domain) -> None:
    """All addressed but for libvirt's own additions: pcitopo adds them (libvirt policy: where libvirt does)."""
    dumped, _ = libvirt_side(domain.xml)
    if dumped is None:
        pytest.skip(f"{domain}: libvirt refuses it")
    xml, taken = strip_implicit(dumped, random.Random(f"{domain.name} complete"), domain.machine)
    if not taken:
        pytest.skip(f"{domain}: libvirt adds nothing to it")
    what = f"{domain} without {', '.join(taken)}"
    check_same(xml, what)
    problems, _ = final_problems(xml)
    assert not problems, f"{what}: " + "; ".join(problems[:12])


def _domain(machine: str, devices: str) -> str:
    return (
        "<domain type='qemu'><name>needs</name><memory unit='KiB'>262144</memory>"
        f"<os><type arch='x86_64' machine='{machine}'>hvm</type></os><devices>"
        f"<emulator>/usr/bin/qemu-system-x86_64</emulator>{devices}<memballoon model='none'/></devices></domain>"
    )


@pytest.mark.parametrize(
    ("case", "xml", "device_bus"),
    [
        # the libvirt policy's Unsatisfiable for a virtio-gpu that requires hotplug on q35: libvirt puts the
        # primary video (a virtio-vga) at 00:01.0 of pcie.0, which cannot be hot-plugged
        ("q35 primary video", _domain("q35", "<video><model type='virtio'/></video>"), 0),
        # ... and for a device that requires NUMA node 0 on pc: libvirt adds no pxb, the NIC goes on pci.0
        ("pc NIC", _domain("pc", "<interface type='user'><model type='e1000'/></interface>"), 0),
    ],
    ids=lambda v: v if isinstance(v, str) and len(v) < 30 else "",
)
def test_libvirt_places_where_a_hard_need_is_not_met(case: str, xml: str, device_bus: int) -> None:
    """libvirt 9.0 puts the device on bus 0, so the libvirt policy rightly refuses a hotplug or NUMA requirement."""
    topology = LibvirtDomain.from_string(define_and_dump(xml)).topology
    endpoints = [d for d in topology.devices if d.kind in ("virtio-vga", "e1000")]
    assert [d.address.bus if d.address else None for d in endpoints] == [device_bus]
    assert not [c for c in topology.controllers if topology.model(c).expander]


def test_libvirt_places_root_ports_into_an_expander_s_bus_range() -> None:
    """libvirt 9.0 defines five NICs beside a pxb-pcie at busNr 3 with their root ports on pcie.0 (buses 1..5), so
    its placement breaks expander-bus-nr, and the libvirt policy refuses it saying so (test_solve pins that)."""
    dumped = define_and_dump(q35(HAND_WRITTEN["q35-pxb-low-busnr"]))
    topology = LibvirtDomain.from_string(dumped).topology
    ports = [c for c in topology.controllers if c.model == "pcie-root-port"]
    assert [(c.address.bus if c.address else None) for c in ports] == [0] * 5
    assert topology.controller(1).bus_nr == 3
    assert [v.rule for v in validate(topology)] == ["expander-bus-nr"]


def test_libvirt_refuses_a_pvpanic_pci() -> None:
    """libvirt 9.0 knows no ``pvpanic`` panic model, so the libvirt policy rightly plans no pvpanic-pci."""
    with pytest.raises(LibvirtError, match="unknown panic model 'pvpanic'"):
        define_and_dump(_domain("q35", "<panic model='pvpanic'/>"))
