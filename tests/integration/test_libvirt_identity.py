"""libvirt 9.0's identity defaults and ranges, against :mod:`pcitopo.legality.identity`.

Domains whose controllers leave chassis, port, chassisNr, busNr or the host
bridge index unset are defined in the running libvirt; the values it fills in
must be the ones :func:`~pcitopo.legality.identity.filled` computes. The
ranges are pinned by defining each boundary value and the one beyond it, with
libvirt's exact refusal.
"""

from __future__ import annotations

import pytest

from pcitopo.errors import Unsatisfiable
from pcitopo.formats.libvirt import LibvirtDomain
from pcitopo.legality import identity
from pcitopo.solver._libvirt import libvirt_assign
from tests.support.libvirt import LibvirtError, define_and_dump

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("libvirtd")]

EMULATORS = {"q35": ("x86_64", "qemu-system-x86_64"), "pc": ("x86_64", "qemu-system-x86_64")}
EMULATORS["pseries"] = ("ppc64", "qemu-system-ppc64")


def domain(machine: str, controllers: str) -> str:
    arch, emulator = EMULATORS[machine]
    return (
        f"<domain type='qemu'><name>identity</name><memory unit='MiB'>256</memory>"
        f"<os><type arch='{arch}' machine='{machine}'>hvm</type></os>"
        f"<devices><emulator>/usr/bin/{emulator}</emulator>{controllers}</devices></domain>"
    )


def pci(index: int, model: str, address: str = "", target: str = "") -> str:
    where = ""
    if address:
        bus, rest = address.split(":")
        slot, function = rest.split(".")
        multi = " multifunction='on'" if address.endswith(".0") and model == "pcie-root-port" else ""
        where = f"<address type='pci' domain='0x0000' bus='0x{bus}' slot='0x{slot}' function='0x{function}'{multi}/>"
    tgt = f"<target {target}/>" if target else ""
    return f"<controller type='pci' index='{index}' model='{model}'>{tgt}{where}</controller>"


DOMAINS = {
    "q35 ports, switch, expanders": domain(
        "q35",
        pci(1, "pcie-root-port", "00:02.0")
        + pci(2, "pcie-root-port", "00:02.3")
        + pci(3, "pcie-root-port", "00:03.0", "chassis='40'")
        + pci(4, "pcie-switch-upstream-port", "02:00.0")
        + pci(5, "pcie-switch-downstream-port", "04:00.0")
        + pci(6, "pcie-switch-downstream-port", "04:06.0")
        + pci(7, "pcie-expander-bus", "00:05.0")
        + pci(8, "pcie-expander-bus", "00:06.0", "busNr='100'")
        + pci(9, "pcie-expander-bus", "00:07.0")
        + pci(10, "pcie-root-port", "00:04.0", "port='0x33'"),
    ),
    "pc bridges and pxb": domain(
        "pc",
        pci(1, "pci-bridge", "00:05.0")
        + pci(2, "pci-bridge", "01:01.0", "chassisNr='9'")
        + pci(3, "pci-expander-bus", "00:06.0")
        + pci(4, "pci-bridge", "03:01.0"),
    ),
    "pseries host bridges": domain(
        "pseries",
        pci(1, "pci-root") + pci(2, "pci-root", target="index='1'") + pci(3, "pci-root") + pci(4, "pci-root"),
    ),
}


@pytest.mark.parametrize("name", list(DOMAINS))
def test_libvirt_fills_in_what_identity_computes(name: str) -> None:
    """Every identity value libvirt writes for unset ones equals pcitopo's, controller by controller."""
    xml = DOMAINS[name]
    ours = identity.filled(LibvirtDomain.from_string(xml).topology)
    theirs = LibvirtDomain.from_string(define_and_dump(xml)).topology
    fields = ("chassis", "port", "chassis_nr", "bus_nr", "target_index")
    got = {i: tuple(getattr(c, f) for f in fields) for i, c in ours.items()}
    want = {c.index: tuple(getattr(c, f) for f in fields) for c in theirs.controllers if c.index in ours}
    assert got == want
    assert any(v is not None for values in got.values() for v in values)


def refusal(xml: str) -> str | None:
    """libvirt's error text for a domain, or None when it accepts it."""
    try:
        define_and_dump(xml)
    except LibvirtError as exc:
        return str(exc)
    return None


RANGES = [
    ("chassis", identity.CHASSIS, "q35", "pcie-root-port", "chassis"),
    ("port", identity.PORT, "q35", "pcie-root-port", "port"),
    ("chassisNr", identity.CHASSIS_NR, "pc", "pci-bridge", "chassisNr"),
    ("busNr", identity.BUS_NR, "q35", "pcie-expander-bus", "busNr"),
    ("target index", identity.TARGET_INDEX, "pseries", "pci-root", "index"),
]


@pytest.mark.parametrize(("what", "span", "machine", "model", "attr"), RANGES, ids=[r[0] for r in RANGES])
def test_ranges_are_libvirts(what: str, span: range, machine: str, model: str, attr: str) -> None:
    """The first and last value of each range are accepted; one beyond either end is refused as out of range."""
    first, last = span[0], span[-1]
    index = 1

    def xml(value: int) -> str:
        return domain(machine, pci(index, model, target=f"{attr}='{value}'"))

    if what == "target index":  # 0 is the default host bridge's own
        assert refusal(xml(first)) == (
            "unsupported configuration: Only the PCI controller with index 0 can have target index 0, and vice versa"
        )
        assert refusal(xml(first + 1)) is None
    else:
        assert refusal(xml(first)) is None
    assert refusal(xml(last)) is None
    message = f"unsupported configuration: PCI controller {what} '{{}}' out of range - must be {first}-{last}"
    assert refusal(xml(last + 1)) == message.format(last + 1)
    if first > 0:
        assert refusal(xml(first - 1)) == message.format(first - 1)


def test_thirty_one_unnumbered_host_bridges_run_out_in_libvirt_too() -> None:
    """libvirt hands the 31st extra host bridge index 31 and refuses it; pcitopo reports the shortage, and its
    libvirt policy refuses with libvirt's words."""
    xml = domain("pseries", "".join(pci(i, "pci-root") for i in range(1, 32)))
    message = "PCI controller target index '31' out of range - must be 0-30"
    assert refusal(xml) == "unsupported configuration: " + message
    topology = LibvirtDomain.from_string(xml).topology
    assert [v.rule for v in identity.shortages(topology)] == ["phb-index"]
    with pytest.raises(Unsatisfiable) as info:
        libvirt_assign(topology)
    assert info.value.conflicts == (message,)


def test_libvirt_policy_numbers_host_bridges_as_libvirt() -> None:
    """The libvirt policy gives unnumbered host bridges the target indexes libvirt gives (looking only backwards)."""
    xml = DOMAINS["pseries host bridges"]
    ours = libvirt_assign(LibvirtDomain.from_string(xml).topology)
    theirs = LibvirtDomain.from_string(define_and_dump(xml)).topology
    assert {c.index: c.target_index for c in ours.controllers} == {c.index: c.target_index for c in theirs.controllers}


def test_bus_nr_runs_out_below_two_in_libvirt_too() -> None:
    """With a busNr of 2 taken, libvirt cannot number another expander bus; with 3 it gives 1."""
    low = domain("q35", pci(1, "pcie-expander-bus", "00:05.0", "busNr='2'") + pci(2, "pcie-expander-bus", "00:06.0"))
    assert refusal(low) == (
        "unsupported configuration: No free busNr lower than current lowest busNr is available to auto-assign "
        "to bus 0. Must be manually assigned"
    )
    assert [v.rule for v in identity.shortages(LibvirtDomain.from_string(low).topology)] == ["expander-bus-nr"]
    ok = low.replace("busNr='2'", "busNr='3'")
    assert identity.filled(LibvirtDomain.from_string(ok).topology)[2].bus_nr == 1
    assert LibvirtDomain.from_string(define_and_dump(ok)).topology.controller(2).bus_nr == 1
