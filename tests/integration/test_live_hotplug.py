"""Live hotplug plans against QEMU 7.2: attach's positions take device_add, and its refusals are QEMU's too.

Live domains come from a seeded generator: a libvirt domain with a few
devices, planned by a policy (the running VM), then devices attached one at a
time, as ``virsh attach-device`` would, with each placement added to the
domain before the next. QEMU runs paused (``-S``): ``device_add`` and
``device_del`` answer without a guest.
"""

from __future__ import annotations

import random
import shutil

import attrs
import pytest

from pcitopo.errors import Unsatisfiable
from pcitopo.formats.libvirt import LibvirtDomain
from pcitopo.live import attach, detach
from pcitopo.policy.policy import Policy
from pcitopo.qemu._qmp import Qemu, QmpCommandError
from pcitopo.qemu.args import device_specs, machine_args, qemu_args
from pcitopo.solver import solve
from pcitopo.topology import Topology

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("qemu")]

DEVICES = {
    "virtio-net": "<interface type='user'><model type='virtio'/></interface>",
    "e1000e": "<interface type='user'><model type='e1000e'/></interface>",
    "e1000": "<interface type='user'><model type='e1000'/></interface>",
    "virtio-rng": "<rng model='virtio'><backend model='random'>/dev/urandom</backend></rng>",
}
MACHINES = {"q35": "pc-q35-7.2", "pc": "pc-i440fx-7.2"}
POLICIES = {
    "hotplug": Policy.named("hotplug"),
    "minimal": Policy.named("minimal"),
    "hotplug-off-occupied": attrs.evolve(Policy.named("hotplug"), name="off", hotplug_off_occupied=True),
}


def _domain(machine: str, body: list[str]) -> str:
    devices = "\n    ".join(body)
    return (
        f"<domain type='qemu'>\n  <name>live</name>\n  <memory>131072</memory>\n"
        f"  <os><type arch='x86_64' machine='{MACHINES[machine]}'>hvm</type></os>\n"
        f"  <features><acpi/></features>\n  <devices>\n    {devices}\n  </devices>\n</domain>\n"
    )


def _with_device(live: LibvirtDomain, xml: str) -> LibvirtDomain:
    text = live.to_string()
    at = text.rindex("</devices>")
    return LibvirtDomain.from_string(text[:at] + "  " + xml + "\n  " + text[at:], source=live.source)


def _start(topology: Topology) -> Qemu:
    binary = shutil.which(topology.machine.qemu_binary)
    assert binary is not None
    args = [*machine_args(topology), "-nodefaults", "-display", "none", "-S", "-accel", "tcg"]
    return Qemu(binary, args + qemu_args(topology))


def _device_add(vm: Qemu, topology: Topology, ident: str) -> None:
    (spec,) = [s for s in device_specs(topology) if s.id == ident]
    vm.execute("device_add", driver=spec.driver, **dict(spec.properties))


def _where(vm: Qemu, ident: str) -> tuple[str, int]:
    """The QEMU bus and devfn a device sits at."""
    path = f"/machine/peripheral/{ident}"
    bus = str(vm.execute("qom-get", path=path, property="parent_bus")).rsplit("/", 1)[-1]
    return bus, int(vm.execute("qom-get", path=path, property="addr"))


def _empty_legal_positions(topology: Topology, kind: str) -> list[tuple[str, int]]:
    probe = topology.catalog.device(kind)
    usage = topology.slot_usage()
    out = []
    for c in topology.controllers:
        if topology.root_of(c.index) is None or topology.placement_problem(c.index, kind=probe) is not None:
            continue
        for slot in topology.model(c).slot_range():
            if not usage.get((0, c.index, slot)):
                out.append((topology.bus_name(c.index), slot))
    return out


CASES = [(m, p, seed) for m in MACHINES for p in POLICIES for seed in (1, 2)]


@pytest.mark.parametrize(("machine", "policy", "seed"), CASES, ids=[f"{m}-{p}-{s}" for m, p, s in CASES])
def test_attach_and_detach_agree_with_qemu(machine: str, policy: str, seed: int) -> None:
    """Each planned attach is accepted at its place; a refused one has no empty legal slot QEMU takes; detach too."""
    rng = random.Random(f"live-{machine}-{policy}-{seed}")
    kinds = [rng.choice(["virtio-net", "e1000e", "virtio-rng", "e1000"]) for _ in range(rng.randint(1, 4))]
    request = LibvirtDomain.from_string(_domain(machine, [DEVICES[k] for k in kinds]))
    plan = solve(request.topology, POLICIES[policy])
    live = request.with_topology(plan)
    attached = refused = 0
    with _start(live.topology) as vm:
        for n in range(rng.randint(2, 5)):
            kind = rng.choice(["virtio-net", "e1000e", "virtio-rng", "e1000"])
            try:
                (placed,) = attach(live, DEVICES[kind], POLICIES[policy])
            except Unsatisfiable as exc:
                conflict = exc.conflicts[0]
                refused += 1
                assert "no empty hot-pluggable slot" in conflict, conflict
                for bus, slot in _empty_legal_positions(live.topology, kind):
                    driver = live.topology.catalog.device(kind).qemu_device
                    with pytest.raises(QmpCommandError, match="does not support hotplugging"):
                        vm.execute("device_add", driver=driver, id=f"probe{n}", bus=bus, addr=f"{slot:#x}")
                continue
            live = _with_device(live, placed.xml)
            assert live.topology.device(placed.device).address == placed.address
            _device_add(vm, live.topology, placed.device)
            assert _where(vm, placed.device) == (placed.bus, placed.address.devfn)
            attached += 1
        for d in live.topology.devices:
            if d.address is not None and live.topology.machine.builtin_at(d.address) is not None:
                continue  # q35's SATA controller 0 is the chipset's own AHCI: QEMU knows it by no id
            answer = detach(live, d.id)
            hotplug_reason = any("hotplug" in r for r in answer.reasons)
            if answer.possible:
                vm.execute("device_del", id=d.id)
            elif hotplug_reason:
                with pytest.raises(QmpCommandError, match="does not support hotplugging"):
                    vm.execute("device_del", id=d.id)
    assert attached + refused > 0


def test_q35_without_spare_ports_refuses_and_names_the_cold_change() -> None:
    """A q35 domain planned with no spare port cannot take a NIC live; the error says which ports to add."""
    request = LibvirtDomain.from_string(_domain("q35", [DEVICES["virtio-net"]]))
    live = request.with_topology(solve(request.topology, "minimal"))
    with pytest.raises(Unsatisfiable) as info:
        attach(live, DEVICES["e1000e"], "hotplug")
    assert info.value.conflicts == (
        "'interface1' (e1000e) has no empty hot-pluggable slot that takes a PCI Express device",
    )
    assert info.value.suggestions == (
        "at least 1 more empty hot-pluggable pcie-root-port or switch downstream port",
        "add 2 pcie-root-ports to the persistent definition (what policy 'hotplug' plans for these devices, its "
        "spare ports included); they take effect at the next boot",
    )
    with (
        _start(live.topology) as vm,
        pytest.raises(QmpCommandError, match=r"Bus 'pcie\.0' does not support hotplugging"),
    ):
        vm.execute("device_add", driver="e1000e", id="x", bus="pcie.0", addr="0x5")
