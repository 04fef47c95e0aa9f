"""Guest NIC names against a booted Linux guest: what its kernel shows in sysfs gives systemd's names.

Each case boots Debian's cloud kernel with a busybox initramfs (about 15 s
under TCG; :mod:`tests.support.guest`), reads every function's
``acpi_index`` and every hotplug slot, and derives systemd's name for each NIC
from those sysfs facts (a derivation written from systemd's source apart from
:mod:`pcitopo.naming`, which works from the plan alone).
"""

from __future__ import annotations

import os
import shutil

import attrs
import pytest

from pcitopo.address import PciAddress
from pcitopo.devices import Device
from pcitopo.naming import acpi_index_problem, guest_bus_numbers, guest_names, name_key
from pcitopo.policy import Policy
from pcitopo.qemu.args import machine_args, qemu_args
from pcitopo.solver import solve
from pcitopo.topology import Topology
from tests.support.guest import guest_pci, kernel, systemd_name
from tests.support.qemu import TOPOLOGIES

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("qemu")]

A = PciAddress.parse


def _q35() -> tuple[Topology, dict[str, int]]:
    t = TOPOLOGIES["q35"]().with_devices(
        Device("net4", "e1000e", address=A("00:05.0")),  # on pcie.0: no hotplug slot
        Device("net5", "e1000", address=A("06:03.0")),  # behind the pci-bridge: slot 3 is the pcie-to-pci-bridge's
        Device("net6", "e1000", address=A("05:04.0")),  # on the pcie-to-pci-bridge: its slot 4
    )
    return t, {"net0": 10, "net3": 13, "net4": 14, "rng0": 15, "serial0": 16, "usb0": 17}


def _pc() -> tuple[Topology, dict[str, int]]:
    t = TOPOLOGIES["pc"]().with_devices(
        Device("net3", "e1000", address=A("00:06.0")),  # root slot 6
        Device("net4", "e1000", address=A("01:06.0")),  # bridge slot 6: the root bus named slot 6 first
        Device("net5", "e1000", address=A("01:02.0")),  # bridge slot 2: the root's slot 2 is the VGA
    )
    return t, {"net3": 7, "net2": 8, "video0": 9, "rng0": 11}


@pytest.mark.parametrize("case", [_q35, _pc], ids=["q35", "pc"])
def test_predicted_names_are_the_guests(case: object) -> None:
    """acpi-index reaches the guest exactly where pcitopo says, and every NIC's name is the one sysfs implies."""
    found = kernel()
    if isinstance(found, str):
        if os.environ.get("CI"):
            pytest.fail(f"CI must boot the guest, but: {found}")
        pytest.skip(found)
    topology, indexes = case()  # type: ignore[operator]
    extra = {ident: {"acpi-index": index} for ident, index in indexes.items()}
    qemu = shutil.which(topology.machine.qemu_binary)
    assert qemu is not None
    guest = guest_pci(qemu, machine_args(topology), qemu_args(topology, extra=extra))
    predicted = guest_names(topology, acpi_index=indexes)
    shown = {index for _, _, index in guest.functions.values() if index is not None}
    for ident, index in indexes.items():
        works = acpi_index_problem(topology, ident, index) is None
        assert (index in shown) is works, (ident, index, acpi_index_problem(topology, ident, index))
    nics = [a for a, (cls, _, _) in guest.functions.items() if cls >> 16 == 0x02]
    assert sorted(systemd_name(guest, a) for a in nics) == sorted(str(n.name) for n in predicted.values())


ORDER_KINDS = ["virtio-net", "e1000", "e1000e", "virtio-net", "rtl8139"]


@pytest.mark.parametrize(
    ("machine", "policy", "names"),
    [
        (
            "q35",
            attrs.evolve(Policy.named("hotplug+ordered"), acpi_index=True),
            ["eno1", "eno2", "eno3", "eno4", "eno5"],
        ),
        ("pc", Policy.named("ordered"), ["ens2", "ens3", "ens4", "ens5", "ens6"]),
    ],
    ids=["q35-acpi-index", "pc-slots"],
)
def test_ordered_plans_name_the_nics_in_nic_order(machine: str, policy: Policy, names: list[str]) -> None:
    """NICs of mixed kinds planned by ``ordered`` get, in the booted guest, names that sort in NIC order."""
    found = kernel()
    if isinstance(found, str):
        if os.environ.get("CI"):
            pytest.fail(f"CI must boot the guest, but: {found}")
        pytest.skip(found)
    request = Topology.build(machine, devices=[Device(f"nic{i}", k) for i, k in enumerate(ORDER_KINDS)])
    plan = solve(request, policy)
    assert [s.met for s in plan.soft if s.subject == "nic-names"] == [True]
    topology = plan.topology
    qemu = shutil.which(topology.machine.qemu_binary)
    assert qemu is not None
    guest = guest_pci(qemu, machine_args(topology), qemu_args(topology))
    numbers = guest_bus_numbers(topology)
    shown = []
    for i in range(len(ORDER_KINDS)):
        a = topology.device(f"nic{i}").address
        assert a is not None
        shown.append(systemd_name(guest, f"0000:{numbers[a.bus]:02x}:{a.slot:02x}.{a.function}"))
    assert shown == names
    assert shown == sorted(shown, key=name_key)
