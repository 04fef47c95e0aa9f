"""Topologies QEMU 7.2 starts without a word but guests cannot use: pcitopo's validator catches each one.

These are the cases of qemu-rules.md §2.2 (and the issue's list): QEMU accepts
them at start-up, every device sits where it was asked to, yet the guest
never sees a device, or the hardware topology is impossible. The validator
must name the rule each one breaks.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from pcitopo.address import PciAddress
from pcitopo.devices import Controller, Device
from pcitopo.legality.rules import validate
from pcitopo.qemu import QemuError, verify
from pcitopo.topology import Topology

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("qemu")]

A = PciAddress.parse


def _rp(index: int, addr: str, *, multifunction: bool | None = None) -> Controller:
    return Controller(
        index, "pcie-root-port", address=A(addr), chassis=index, port=A(addr).devfn, multifunction=multifunction
    )


SILENT: list[tuple[str, Callable[[], Topology], str]] = [
    (
        "endpoint at slot 1 behind a root port",
        lambda: Topology.build("q35", [_rp(1, "00:02.0")], [Device("net0", "e1000e", address=A("01:01.0"))]),
        "port-slot",
    ),
    (
        "function 1 without function 0",
        lambda: Topology.build("q35", [_rp(1, "00:03.1")]),
        "function-zero",
    ),
    (
        "root port behind a root port",
        lambda: Topology.build("q35", [_rp(1, "00:02.0"), _rp(2, "01:00.0")]),
        "placement",
    ),
    (
        "downstream port directly on a root port",
        lambda: Topology.build(
            "q35",
            [
                _rp(1, "00:02.0"),
                Controller(2, "pcie-switch-downstream-port", address=A("01:00.0"), chassis=2, port=0),
            ],
        ),
        "placement",
    ),
    (
        "pci-bridge directly on pcie.0",
        lambda: Topology.build("q35", [Controller(1, "pci-bridge", address=A("00:05.0"), chassis_nr=1)]),
        "placement",
    ),
    (
        "root port on pc's conventional bus",
        lambda: Topology.build("pc", [_rp(1, "00:05.0")]),
        "machine-model",
    ),
    (
        "overlapping pxb-pcie bus range",
        lambda: Topology.build(
            "q35",
            [
                _rp(1, "00:02.0", multifunction=True),
                _rp(2, "00:02.1"),
                _rp(3, "00:02.2"),
                Controller(4, "pcie-expander-bus", address=A("00:05.0"), bus_nr=2),
                _rp(5, "04:00.0"),
            ],
        ),
        "expander-bus-nr",
    ),
]


@pytest.mark.parametrize(("case", "make", "rule"), SILENT, ids=[c for c, _, _ in SILENT])
def test_qemu_starts_it_but_the_validator_refuses_it(case: str, make: Callable[[], Topology], rule: str) -> None:
    """QEMU starts the topology with everything where asked; the validator names the broken rule."""
    topology = make()
    report = verify(topology, firmware=False, hotplug=False)
    assert report.ok, str(report)
    assert rule in {v.rule for v in validate(topology)}


def test_multifunction_off_is_refused_by_qemu_and_the_validator() -> None:
    """Two functions of one slot without multifunction=on at function 0: QEMU refuses, the validator agrees."""
    topology = Topology.build("q35", [_rp(1, "00:02.0"), _rp(2, "00:02.1")])
    with pytest.raises(QemuError) as info:
        verify(topology, firmware=False, hotplug=False)
    assert info.value.qemu_message == "PCI: single function device can't be populated in function 2.1"
    assert "multifunction" in {v.rule for v in validate(topology)}


def test_an_expander_s_bus_range_inside_the_root_s_buses_loses_devices_under_seabios() -> None:
    """The overlapping pxb-pcie range, with a device on every bus: SeaBIOS numbers pcie.0's root ports 1..3, so the
    pxb's bus 2 is taken twice, and the firmware finds the pxb's root port where pcie.0's second port's NIC belongs
    and never enumerates that NIC. The rule is why the solver and the libvirt policy refuse such plans."""
    topology = {c: m for c, m, _ in SILENT}["overlapping pxb-pcie bus range"]()
    topology = topology.with_devices(
        *(Device(f"n{bus}", "e1000e", address=A(f"{bus:02x}:00.0")) for bus in (1, 2, 3, 5))
    )
    assert [v.rule for v in validate(topology)] == ["expander-bus-nr"]
    report = verify(topology, hotplug=False)
    assert not report.ok
    failed = {c.subject for c in report.failures}
    assert "n2" in failed, str(report)
