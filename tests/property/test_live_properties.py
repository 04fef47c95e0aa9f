"""Hot-plug and unplug sequences on a running domain: attach and detach keep it legal and move nothing."""

from __future__ import annotations

from hypothesis import note, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule
from lxml import etree

from pcitopo.errors import Unsatisfiable
from pcitopo.formats.libvirt import LibvirtDomain
from pcitopo.legality.rules import validate
from pcitopo.live import attach, detach
from pcitopo.solver import solve

DEVICES = {
    "virtio-net": "<interface type='user'><model type='virtio'/></interface>",
    "e1000e": "<interface type='user'><model type='e1000e'/></interface>",
    "e1000": "<interface type='user'><model type='e1000'/></interface>",
    "virtio-rng": "<rng model='virtio'><backend model='random'>/dev/urandom</backend></rng>",
    "vga": "<video><model type='vga'/></video>",
}
MACHINES = {"q35": "pc-q35-7.2", "pc": "pc-i440fx-7.2"}


def _domain(machine: str, body: list[str]) -> str:
    return (
        f"<domain type='kvm'><name>p</name><os><type arch='x86_64' machine='{MACHINES[machine]}'>hvm</type></os>"
        f"<devices>{''.join(body)}</devices></domain>"
    )


class HotplugSequence(RuleBasedStateMachine):
    """A running VM that devices are hot-plugged into and unplugged from, one at a time."""

    def __init__(self) -> None:
        super().__init__()
        self.live: LibvirtDomain | None = None

    @rule(
        machine=st.sampled_from(sorted(MACHINES)),
        kinds=st.lists(st.sampled_from(["virtio-net", "e1000", "virtio-rng"]), min_size=1, max_size=4),
        policy=st.sampled_from(["hotplug", "minimal"]),
    )
    @precondition(lambda self: self.live is None)
    def boot(self, machine: str, kinds: list[str], policy: str) -> None:
        """Start from a planned domain."""
        request = LibvirtDomain.from_string(_domain(machine, [DEVICES[k] for k in kinds]))
        self.live = request.with_topology(solve(request.topology, policy))

    @rule(kind=st.sampled_from(sorted(DEVICES)))
    @precondition(lambda self: self.live is not None)
    def hot_plug(self, kind: str) -> None:
        """Attach a device: it lands on an empty hot-pluggable slot and every other address stays."""
        assert self.live is not None
        before = {d.id: d.address for d in self.live.topology.devices}
        try:
            (placed,) = attach(self.live, DEVICES[kind])
        except Unsatisfiable as exc:
            note(f"{kind} does not fit: {exc.conflicts[0]}")
            return
        assert placed.address not in self.live.topology.occupants()
        assert self.live.topology.is_hotpluggable(placed.address.bus, placed.address.slot)
        root = etree.fromstring(self.live.to_bytes())
        devices = root.find("devices")
        assert devices is not None
        devices.append(etree.fromstring(placed.xml))
        self.live = LibvirtDomain.from_string(etree.tostring(root, encoding="unicode"))
        for ident, address in before.items():
            assert self.live.topology.device(ident).address == address
        assert self.live.topology.device(placed.device).address == placed.address

    @rule(pick=st.integers(min_value=0))
    @precondition(lambda self: self.live is not None and bool(self.live.topology.devices))
    def unplug(self, pick: int) -> None:
        """Detach a device detach allows: it sat on a hot-pluggable slot, alone in it."""
        assert self.live is not None
        devices = [d for d in self.live.topology.devices if d.id not in self.live.implicit]  # as the VM runs
        victim = devices[pick % len(devices)]
        answer = detach(self.live, victim.id)
        if not answer.possible:
            note(f"{victim.id} stays: {'; '.join(answer.reasons)}")
            return
        assert victim.address is not None
        assert self.live.topology.is_hotpluggable(victim.address.bus, victim.address.slot)
        assert answer.with_it == ()
        root = etree.fromstring(self.live.to_bytes())
        path = self.live.path(victim.id)
        result = root.getroottree().xpath(path)
        assert isinstance(result, list)
        found = [el for el in result if isinstance(el, etree._Element)]
        assert len(found) == 1, path
        parent = found[0].getparent()
        assert parent is not None
        parent.remove(found[0])
        self.live = LibvirtDomain.from_string(etree.tostring(root, encoding="unicode"))

    @invariant()
    def legal(self) -> None:
        """The running VM breaks no rule after any hot-plug or unplug."""
        if self.live is not None:
            assert validate(self.live.topology) == ()


HotplugSequence.TestCase.settings = settings(max_examples=25, stateful_step_count=12, deadline=None)
TestHotplugSequence = HotplugSequence.TestCase
