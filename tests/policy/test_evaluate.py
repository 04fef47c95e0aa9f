"""The scorer: each soft term on hand-built topologies, completion checks, and the rules it reports."""

from __future__ import annotations

import importlib
from typing import Any

import attrs
import pytest

import pcitopo
from pcitopo.address import PciAddress
from pcitopo.devices import Controller, Device, HotplugNeed, Needs
from pcitopo.errors import InvalidInput
from pcitopo.policy import Policy, evaluate
from pcitopo.policy.evaluate import spare_ports
from pcitopo.topology import Topology


def _a(text: str) -> PciAddress:
    return PciAddress.parse(text)


def _port(index: int, address: str, *, hotplug: bool | None = None) -> Controller:
    return Controller(
        index, "pcie-root-port", address=_a(address), chassis=index, port=0x10 + index - 1, hotplug=hotplug
    )


def _terms(e: pcitopo.Evaluation) -> list[tuple[str, bool, int, str | None]]:
    return [(s.name, s.met, s.cost, s.subject) for s in e.soft]


def test_evaluate_is_public_at_the_package_root() -> None:
    """``pcitopo.evaluate`` is the scorer of :mod:`pcitopo.policy.evaluate`."""
    assert pcitopo.evaluate is evaluate
    assert "evaluate" in pcitopo.__all__


def test_preferred_hotplug_is_met_on_a_root_port_and_missed_on_the_root_bus() -> None:
    """A device preferring hotplug costs the hotplug weight when integrated on pcie.0, nothing behind a port."""
    net = Device("net0", "virtio-net", needs=Needs(hotplug=HotplugNeed.PREFERRED))
    request = Topology.build("q35", devices=[net])
    policy = Policy.named("minimal")
    on_port = request.replace(controllers=[_port(1, "00:01.0")], devices=[net.placed_at(_a("01:00.0"))])
    on_root = request.replace(devices=[net.placed_at(_a("00:03.0"))])
    assert _terms(evaluate(request, on_port, policy)) == [
        ("hotplug", True, 0, "net0"),
        ("integrated", False, 5, "net0"),
        ("fewer-controllers", False, 1, None),
    ]
    assert _terms(evaluate(request, on_root, policy)) == [
        ("hotplug", False, 100, "net0"),
        ("integrated", True, 0, "net0"),
        ("fewer-controllers", True, 0, None),
    ]


def test_required_hotplug_from_the_policy_is_a_violation_not_a_term() -> None:
    """Under a policy that requires hotplug, a device on the non-hotpluggable root bus breaks the hotplug rule."""
    request = Topology.build("q35", devices=[Device("net0", "virtio-net")])
    result = request.replace(devices=[Device("net0", "virtio-net", address=_a("00:03.0"))])
    e = evaluate(request, result, Policy.from_mapping({"hotplug": "required"}))
    assert not e.legal
    assert [(v.rule, v.devices) for v in e.violations] == [("hotplug", ("net0",))]
    assert [s.name for s in e.soft] == ["spare-ports", "fewer-controllers"]


def test_the_default_policy_prefers_hotplug() -> None:
    """Under the default ``hotplug`` policy the same placement is legal and costs the hotplug weight."""
    request = Topology.build("q35", devices=[Device("net0", "virtio-net")])
    result = request.replace(devices=[Device("net0", "virtio-net", address=_a("00:03.0"))])
    e = evaluate(request, result, "hotplug")
    assert e.legal
    assert next((s.name, s.met, s.cost) for s in e.soft) == ("hotplug", False, 100)


def test_policy_needs_apply_only_to_devices_the_plan_placed() -> None:
    """A pinned device on the root bus is the request's business, not a violation of the policy's hotplug need."""
    pinned = Device("net0", "virtio-net", address=_a("00:03.0"))
    request = Topology.build("q35", devices=[pinned])
    assert evaluate(request, request, "hotplug").violations == ()


def test_preferred_numa_node_is_a_term_and_strict_or_numa_policy_is_a_rule() -> None:
    """A preferred node costs the numa weight when missed; ``numa_strict`` or the ``numa`` policy make it a rule."""
    pxb = Controller(1, "pcie-expander-bus", address=_a("00:02.0"), bus_nr=254, numa_node=0)
    dev = Device("net0", "virtio-net", needs=Needs(numa_node=0, hotplug=HotplugNeed.ANY))
    request = Topology.build("q35", devices=[dev], numa_nodes=1)
    off_node = request.replace(controllers=[_port(2, "00:01.0")], devices=[dev.placed_at(_a("02:00.0"))])
    policy = Policy.named("minimal")
    assert ("numa", False, 50, "net0") in _terms(evaluate(request, off_node, policy))
    assert evaluate(request, off_node, policy).violations == ()
    on_node = request.replace(
        controllers=[pxb, Controller(2, "pcie-root-port", address=_a("01:00.0"), chassis=2, port=0x10)],
        devices=[dev.placed_at(_a("02:00.0"))],
    )
    assert ("numa", True, 0, "net0") in _terms(evaluate(request, on_node, policy))
    numa = evaluate(request, off_node, Policy.named("minimal+numa"))
    assert [v.rule for v in numa.violations] == ["numa"]
    assert "numa" not in [s.name for s in numa.soft]


def test_spare_ports_count_empty_hotpluggable_ports_and_each_missing_one_costs() -> None:
    """Two spare ports wanted, one empty port with hotplug on, one with hotplug off: one missing costs 20."""
    request = Topology.default("q35")
    result = request.replace(controllers=[_port(1, "00:01.0"), _port(2, "00:01.1", hotplug=False)])
    policy = attrs.evolve(Policy.named("hotplug"), spare_ports=2)
    assert spare_ports(result) == 1
    assert _terms(evaluate(request, result, policy)) == [
        ("spare-ports", False, 20, None),
        ("fewer-controllers", False, 2, None),
    ]
    three = attrs.evolve(Policy.named("hotplug"), spare_ports=3)
    assert evaluate(request, result, three).cost == 2 * 20 + 2


def test_spare_ports_per_node_is_one_term_per_node_and_one_for_no_node() -> None:
    """With ``spare_ports_per_node`` the ports under node 0 and under no node are counted apart."""
    request = Topology.default("q35", numa_nodes=2)
    result = request.replace(
        controllers=[
            Controller(1, "pcie-expander-bus", address=_a("00:02.0"), bus_nr=254, numa_node=0),
            Controller(2, "pcie-root-port", address=_a("01:00.0"), chassis=2, port=0x10),
        ]
    )
    policy = attrs.evolve(Policy.named("hotplug"), spare_ports_per_node=True)
    assert _terms(evaluate(request, result, policy)) == [
        ("spare-ports", False, 20, "no NUMA node"),
        ("spare-ports", True, 0, "NUMA node 0"),
        ("spare-ports", False, 20, "NUMA node 1"),
        ("fewer-controllers", False, 2, None),
    ]


def test_order_is_one_term_per_kind_in_definition_order_or_by_hint() -> None:
    """Two ac97 in definition order meet ``order``; swapped, they miss it; a hint reverses that."""
    a = Device("a", "ac97", needs=Needs(hotplug=HotplugNeed.ANY))
    b = Device("b", "ac97", needs=Needs(hotplug=HotplugNeed.ANY))
    request = Topology.build("q35", devices=[a, b])
    in_order = request.replace(devices=[a.placed_at(_a("00:03.0")), b.placed_at(_a("00:04.0"))])
    swapped = request.replace(devices=[a.placed_at(_a("00:04.0")), b.placed_at(_a("00:03.0"))])
    policy = attrs.evolve(Policy.named("ordered"), spare_ports=0)
    assert _terms(evaluate(request, in_order, policy))[-1] == ("order", True, 0, "ac97")
    assert _terms(evaluate(request, swapped, policy))[-1] == ("order", False, 10, "ac97")
    hinted = Topology.build("q35", devices=[attrs.evolve(a, needs=Needs(hotplug=HotplugNeed.ANY, order=2)), b])
    swapped_hinted = hinted.replace(
        devices=[d.placed_at(_a("00:04.0" if d.id == "a" else "00:03.0")) for d in hinted.devices]
    )
    assert _terms(evaluate(hinted, swapped_hinted, policy))[-1] == ("order", True, 0, "ac97")


def test_hotplug_off_occupied_charges_devices_without_a_need_on_hotpluggable_positions() -> None:
    """A device with no hotplug need on a port with hotplug on costs the weight; one preferring hotplug does not."""
    disk = Device("disk0", "virtio-blk")
    net = Device("net0", "virtio-net", needs=Needs(hotplug=HotplugNeed.PREFERRED))
    request = Topology.build("q35", devices=[disk, net])
    policy = attrs.evolve(Policy.named("hotplug"), hotplug_off_occupied=True, spare_ports=0)
    all_on = request.replace(
        controllers=[_port(1, "00:01.0"), _port(2, "00:01.1")],
        devices=[disk.placed_at(_a("01:00.0")), net.placed_at(_a("02:00.0"))],
    )
    assert _terms(evaluate(request, all_on, policy)) == [
        ("hotplug-off-occupied", False, 10, "disk0"),
        ("hotplug", True, 0, "net0"),
        ("fewer-controllers", False, 2, None),
    ]
    disk_off = all_on.replace(controllers=[_port(1, "00:01.0", hotplug=False), _port(2, "00:01.1")])
    assert evaluate(request, disk_off, policy).cost == 2


def test_the_policy_default_hotplug_need_skips_kinds_that_cannot_be_hot_plugged() -> None:
    """A pvpanic-pci under ``hotplug`` has no hotplug need: integrated on pcie.0 it is legal and costs nothing."""
    request = Topology.build("q35", devices=[Device("panic", "pvpanic-pci")])
    result = request.replace(devices=[Device("panic", "pvpanic-pci", address=_a("00:03.0"))])
    e = evaluate(request, result, attrs.evolve(Policy.named("hotplug"), spare_ports=0))
    assert (e.legal, e.cost) == (True, 0)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            lambda r: r.replace(devices=[]),
            "device 'net0': is in the request but not in the result; a plan places every device",
        ),
        (
            lambda r: r.replace(devices=[Device("net0", "virtio-net", address=_a("00:04.0")), *r.devices[1:]]),
            "device 'net0': is pinned at 0000:00:03.0 in the request but at 0000:00:04.0 in the result; "
            "a plan never moves it",
        ),
        (
            lambda r: r.with_devices(Device("extra", "virtio-net", address=_a("00:06.0"))),
            "device 'extra': is in the result but not in the request",
        ),
        (
            lambda r: r.replace(devices=[*r.devices[:1], Device("disk0", "virtio-blk")]),
            "device 'disk0': has no address in the result; a plan places every device",
        ),
        (
            lambda r: r.replace(devices=[*r.devices[:1], Device("disk0", "virtio-net", address=_a("00:05.0"))]),
            "device 'disk0': is a virtio-blk in the request but a virtio-net in the result",
        ),
        (
            lambda r: Topology.default("pc"),
            "result: is a pc topology, but the request is for q35",
        ),
    ],
)
def test_a_result_that_is_not_a_completion_is_refused(change: object, message: str) -> None:
    """Scoring needs a completion: every request device, pins where they were, nothing extra, all addressed."""
    request = Topology.build(
        "q35", devices=[Device("net0", "virtio-net", address=_a("00:03.0")), Device("disk0", "virtio-blk")]
    )
    good = request.replace(devices=[request.devices[0], Device("disk0", "virtio-blk", address=_a("00:05.0"))])
    evaluate(request, good, "minimal")
    assert callable(change)
    with pytest.raises(InvalidInput) as info:
        evaluate(request, change(good), "minimal")
    assert str(info.value) == message


def test_a_plan_made_elsewhere_is_scored_like_pcitopos() -> None:
    """A hand-made plan with one root port per device costs its 3 controllers, like pcitopo's."""
    devices = [Device("net0", "virtio-net"), Device("disk0", "virtio-blk")]
    request = Topology.build("q35", devices=devices)
    by_hand = request.replace(
        controllers=[_port(1, "00:01.0"), _port(2, "00:02.0"), _port(3, "00:03.0")],
        devices=[devices[0].placed_at(_a("01:00.0")), devices[1].placed_at(_a("02:00.0"))],
    )
    e = evaluate(request, by_hand)
    assert (e.legal, e.cost) == (True, 3)
    plan = pcitopo.solve(request)
    assert evaluate(request, plan.topology).cost == plan.cost == 3


def test_a_device_sharing_its_slot_is_not_on_a_hotpluggable_position() -> None:
    """Two devices preferring hotplug as functions of one port's slot miss ``hotplug`` (no multifunction hotplug)."""
    a = Device("a", "virtio-net", needs=Needs(hotplug=HotplugNeed.PREFERRED))
    b = Device("b", "virtio-blk", needs=Needs(hotplug=HotplugNeed.PREFERRED))
    request = Topology.build("q35", devices=[a, b])
    shared = request.replace(
        controllers=[_port(1, "00:01.0")],
        devices=[attrs.evolve(a.placed_at(_a("01:00.0")), multifunction=True), b.placed_at(_a("01:00.1"))],
    )
    e = evaluate(request, shared, "minimal")
    assert e.legal
    assert [(s.name, s.met) for s in e.soft if s.name == "hotplug"] == [("hotplug", False), ("hotplug", False)]


def test_the_policy_hotplug_default_skips_slot_group_members() -> None:
    """Functions of a slot group are never hot-plugged one by one: ``hotplug`` does not require it of them."""
    group = Needs(slot_group="gpu")
    devices = [Device("vga", "vfio-pci", needs=group), Device("audio", "vfio-pci", needs=group)]
    request = Topology.build("q35", devices=devices)
    result = request.replace(
        controllers=[_port(1, "00:01.0")],
        devices=[
            attrs.evolve(devices[0].placed_at(_a("01:00.0")), multifunction=True),
            devices[1].placed_at(_a("01:00.1")),
        ],
    )
    assert evaluate(request, result, attrs.evolve(Policy.named("hotplug"), spare_ports=0)).violations == ()


def test_a_plan_may_not_put_a_conventional_device_on_a_pcie_port() -> None:
    """validate takes an ac97 behind a root port (libvirt relaxes given addresses); a plan's own placement may not."""
    request = Topology.build("q35", devices=[Device("snd", "ac97", needs=Needs(hotplug=HotplugNeed.ANY))])
    result = request.replace(controllers=[_port(1, "00:01.0")], devices=[Device("snd", "ac97", address=_a("01:00.0"))])
    assert pcitopo.validate(result) == ()
    e = evaluate(request, result, "minimal")
    assert [(v.rule, v.devices) for v in e.violations] == [("placement", ("snd",))]
    assert "a plan does not use libvirt's relaxation for addresses a user gave" in e.violations[0].message
    assert evaluate(result, result, "minimal").violations == ()


def test_a_pvpanic_on_pc_root_bus_meets_the_hotplug_term() -> None:
    """QEMU hot-adds pvpanic-pci on pc's pci.0, so ``hotplug`` asks for it there and a root-bus slot meets it."""
    request = Topology.build("pc", devices=[Device("panic", "pvpanic-pci")])
    result = request.replace(devices=[Device("panic", "pvpanic-pci", address=_a("00:03.0"))])
    e = evaluate(request, result, attrs.evolve(Policy.named("hotplug"), spare_ports=0))
    assert _terms(e) == [("hotplug", True, 0, "panic"), ("fewer-controllers", True, 0, None)]


def test_ordered_reports_the_nic_names_in_nic_order() -> None:
    """On q35 an e1000 between two virtio-nets on pcie.0 gets a slot name that sorts after both: the NIC term is not
    met (the hotplug policy's plan); the ordered policy's plan puts the e1000 under an expander bus, all path names."""
    request = Topology.build(
        "q35", devices=[Device("n0", "virtio-net"), Device("n1", "e1000"), Device("n2", "virtio-net")]
    )
    hot = pcitopo.solve(request, "hotplug")
    (term,) = [s for s in evaluate(request, hot.topology, "ordered").soft if s.subject == "nic-names"]
    assert str(term) == ("order: NIC names in NIC order: enp1s0 (n0) < ens1 (n1) < enp2s0 (n2): not met (cost 10)")
    plan = pcitopo.solve(request, "ordered")
    (term,) = [s for s in plan.soft if s.subject == "nic-names"]
    assert str(term) == ("order: NIC names in NIC order: enp1s0 (n0) < enp130s1 (n1) < enp131s0 (n2): met")
    named = pcitopo.solve(request, attrs.evolve(Policy.named("ordered"), acpi_index=True))
    assert [named.topology.device(i).acpi_index for i in ("n0", "n1", "n2")] == [1, 2, 3]
    assert [s.met for s in named.soft if s.subject == "nic-names"] == [True]


# -- primary-video ---------------------------------------------------------------------------------


def _video_request(*devices: Device, machine: str = "q35", firmware: str | None = None) -> Topology:
    return Topology.build(machine, devices=list(devices), firmware=firmware)


def test_the_primary_vga_costs_the_weight_behind_a_root_port_and_nothing_on_the_root_bus() -> None:
    """A planned vga on a root port misses primary-video (50); integrated on pcie.0 it meets it."""
    request = _video_request(Device("v", "vga"))
    behind = request.replace(controllers=[_port(1, "00:01.0")], devices=[Device("v", "vga", address=_a("01:00.0"))])
    on_root = request.replace(devices=[Device("v", "vga", address=_a("00:05.0"))])
    assert ("primary-video", False, 50, "v") in _terms(evaluate(request, behind, "hotplug"))
    assert ("primary-video", True, 0, "v") in _terms(evaluate(request, on_root, "hotplug"))


def test_only_the_first_vga_compatible_device_is_the_primary_video() -> None:
    """A virtio-gpu before it is not VGA-compatible; a second VGA after it is not primary: one term, for 'v'."""
    request = _video_request(Device("g", "virtio-gpu"), Device("v", "qxl"), Device("w", "vga"))
    result = request.replace(
        controllers=[_port(1, "00:01.0"), _port(2, "00:01.1")],
        devices=[
            Device("g", "virtio-gpu", address=_a("01:00.0")),
            Device("v", "qxl", address=_a("00:05.0")),
            Device("w", "vga", address=_a("02:00.0")),
        ],
    )
    assert [t for t in _terms(evaluate(request, result, "hotplug")) if t[0] == "primary-video"] == [
        ("primary-video", True, 0, "v")
    ]


@pytest.mark.parametrize(
    ("kind", "firmware"),
    [("cirrus", None), ("bochs", None), ("virtio-gpu", None), ("vga", "ovmf")],
)
def test_no_primary_video_term_where_the_firmware_finds_vbe_behind_a_bridge(kind: str, firmware: str | None) -> None:
    """cirrus (its own VBE), bochs-display and virtio-gpu (no VGA) under SeaBIOS, and any VGA under OVMF: no term."""
    request = _video_request(Device("v", kind), firmware=firmware)
    result = request.replace(controllers=[_port(1, "00:01.0")], devices=[Device("v", kind, address=_a("01:00.0"))])
    assert "primary-video" not in [s.name for s in evaluate(request, result, "hotplug").soft]


def test_the_primary_video_is_remembered_by_each_topology_value() -> None:
    """vbe_needs_root_bus answers from the topology it is asked of: a copy with another firmware works it out anew."""
    module = importlib.import_module("pcitopo.policy.evaluate")  # the package's ``evaluate`` is the function
    seabios = Topology.build("q35", devices=[Device("v", "vga")])
    video = module.vbe_needs_root_bus(seabios)
    assert video is not None
    assert video.id == "v"
    assert module.vbe_needs_root_bus(seabios) is video  # kept on the topology
    ovmf = attrs.evolve(seabios, firmware="ovmf")  # OVMF finds the VBE behind a bridge too: no term
    assert module.vbe_needs_root_bus(ovmf) is None
    assert module.vbe_needs_root_bus(seabios) is video


def test_a_pinned_primary_video_is_not_scored() -> None:
    """The term is about what the plan decides: a vga the request pins behind a root port adds nothing."""
    pinned = Device("v", "vga", address=_a("01:00.0"))
    request = Topology.build("q35", controllers=[_port(1, "00:01.0")], devices=[pinned])
    assert "primary-video" not in [s.name for s in evaluate(request, request, "hotplug").soft]


def test_the_primary_video_weight_comes_from_the_policy() -> None:
    """A policy file's [weights] primary-video sets what missing the term costs."""
    request = _video_request(Device("v", "vmvga"), machine="pc")
    result = request.replace(
        controllers=[Controller(1, "pci-bridge", address=_a("00:03.0"), chassis_nr=1)],
        devices=[Device("v", "vmvga", address=_a("01:01.0"))],
    )
    policy = Policy.from_mapping({"weights": {"primary-video": 7}})
    assert ("primary-video", False, 7, "v") in _terms(evaluate(request, result, policy))


# -- io-reserve-off ---------------------------------------------------------------------------------


def test_io_reserve_off_costs_its_weight_per_controller_the_plan_sets_it_on() -> None:
    """Two new ports with io-reserve=0 cost 2 x 2; one the request already had so costs nothing more."""
    pinned = Controller(1, "pcie-root-port", PciAddress.parse("00:02.0"), chassis=1, port=16).with_io_reserve(0)
    request = Topology.build("q35", [pinned], firmware="ovmf")
    added = [
        Controller(i, "pcie-root-port", PciAddress.parse(f"00:{i + 1:02x}.0"), chassis=i, port=16 + i).with_io_reserve(
            0
        )
        for i in (2, 3)
    ]
    result = request.replace(controllers=[*request.controllers, *added])
    terms = [t for t in _terms(evaluate(request, result, "hotplug")) if t[0] == "io-reserve-off"]
    assert terms == [("io-reserve-off", False, 4, None)]
    assert "io-reserve-off" not in [s.name for s in evaluate(request, request, "hotplug").soft]
    heavy = Policy.from_mapping({"weights": {"io-reserve-off": 7}})
    assert [s.cost for s in evaluate(request, result, heavy).soft if s.name == "io-reserve-off"] == [14]


def test_needs_key_tells_needs_apart_exactly_as_equality_does() -> None:
    """The memos' key of a device's needs: two needs get one key exactly when they are equal, whichever field
    differs (a field added to Needs and left out of the key would share a memo entry with other needs)."""
    from pcitopo.policy.evaluate import _needs_key

    base = Needs()
    other_values: dict[str, Any] = {
        "hotplug": HotplugNeed.PREFERRED,
        "numa_node": 1,
        "numa_strict": True,
        "integrated": True,
        "slot_group": "g",
        "bus_group": "b",
        "switch_group": "s",
        "order": 2,
        "function": 3,
    }
    assert set(other_values) == {f.name for f in attrs.fields(Needs)}
    variants = [base, *(attrs.evolve(base, **{name: value}) for name, value in other_values.items())]
    variants += [Needs(hotplug=h) for h in HotplugNeed]
    for a in variants:
        for b in variants:
            assert (_needs_key(a) == _needs_key(b)) is (a == b), (a, b)
            if a == b:
                assert hash(_needs_key(a)) == hash(_needs_key(b))
    # a copy of equal needs, not the same object, gets the same key
    assert _needs_key(Needs(numa_node=1, order=2)) == _needs_key(Needs(numa_node=1, order=2))
