"""The exhaustive enumerator of legal completions, the solver's independent optimality oracle (issue 9, item 5).

The last tests run the solver against it on drawn requests and policies
(:func:`tests.support.optimality.check_against_the_enumerator`): 40 examples
in the default run, 400 in the slow one; requests it once got wrong are kept
as fixed cases.

:func:`tests.support.enumerate.minimum` shares no code with the solver: it
builds every completion, checks it with :func:`pcitopo.evaluate` and keeps
the least cost. These cases pin it to minima worked out by hand.
"""

from __future__ import annotations

from collections.abc import Sequence

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pcitopo.address import PciAddress
from pcitopo.devices import Controller, Device, HotplugNeed, Needs
from pcitopo.errors import Unsatisfiable
from pcitopo.policy import Override, Policy, evaluate
from pcitopo.topology import Topology
from tests.support.enumerate import minimum
from tests.support.firmware import ovmf_e1000e_ports
from tests.support.optimality import (
    POLICIES,
    check_against_the_enumerator,
    check_status_against_the_enumerator,
    grown_requests,
    small_requests,
    with_overrides,
)

PREFERRED = Needs(hotplug=HotplugNeed.PREFERRED)


@pytest.mark.parametrize(
    ("case", "request_", "policy", "cost"),
    [
        (
            # the root bus of q35 is not hotpluggable: a root port for the NIC, and one spare port
            "one NIC needing hotplug on q35: its root port and a spare one",
            Topology.build("q35", devices=[Device("n", "virtio-net")]),
            Policy.named("hotplug"),
            2,
        ),
        (
            # functions of one port's slot are not hot-plugged one by one, so each device needs its own port
            "two devices needing hotplug on q35: two root ports and a spare one",
            Topology.build("q35", devices=[Device("n", "virtio-net"), Device("d", "virtio-blk")]),
            Policy.named("hotplug"),
            3,
        ),
        (
            "minimal on q35: both devices integrated on pcie.0, nothing added",
            Topology.build("q35", devices=[Device("n", "virtio-net"), Device("d", "virtio-blk")]),
            Policy.named("minimal"),
            0,
        ),
        (
            "hotplug on pc: the root bus is hotpluggable and has free slots to spare",
            Topology.build("pc", devices=[Device("n", "e1000"), Device("d", "virtio-blk")]),
            Policy.named("hotplug"),
            0,
        ),
        (
            # issue 9: the port of a device that prefers hotplug keeps it; the spare port costs 1 more
            "hotplug-off-occupied leaves hotplug on under a device that prefers it",
            Topology.build("q35", devices=[Device("n", "virtio-net", needs=PREFERRED)]),
            attrs.evolve(Policy.named("hotplug"), hotplug_off_occupied=True),
            2,
        ),
        (
            # a strict node needs the pxb of node 0; its bus is not hotpluggable, a pci-bridge under it is
            "pc: a device on NUMA node 0 that prefers hotplug goes on a pci-bridge under the node's pxb",
            Topology.build(
                "pc",
                devices=[
                    Device("g", "virtio-gpu", needs=Needs(hotplug=HotplugNeed.PREFERRED, numa_node=0, numa_strict=True))
                ],
                numa_nodes=1,
            ),
            attrs.evolve(Policy.named("ordered"), spare_ports=0),
            2,
        ),
        (
            # issue 9: the ac97 are conventional PCI needing hotplug: a pcie-to-pci-bridge behind a root port under
            # node 0's pxb takes both, in order (3 controllers), and a spare root port makes 4
            "ordered on q35 with one NUMA node: two ac97, one preferring node 0",
            Topology.build(
                "q35", devices=[Device("a", "ac97", needs=Needs(numa_node=0)), Device("b", "ac97")], numa_nodes=1
            ),
            Policy.named("ordered"),
            4,
        ),
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_the_enumerator_agrees_with_minima_worked_out_by_hand(
    case: str, request_: Topology, policy: Policy, cost: int
) -> None:
    """On small fixed requests the enumerated minimum is the one reasoned out by hand, and proven."""
    found = minimum(request_, policy)
    assert (found.cost, found.complete) == (cost, True)
    assert found.best is not None
    scored = evaluate(request_, found.best, policy)
    assert (scored.legal, scored.cost) == (True, cost)


def test_the_enumerator_finds_nothing_when_no_completion_exists() -> None:
    """A device that requires NUMA node 0 of a guest without NUMA nodes has no legal completion."""
    request = Topology.build("q35", devices=[Device("n", "virtio-net", needs=Needs(numa_node=0, numa_strict=True))])
    found = minimum(request, Policy.named("hotplug"), max_added=3)
    assert (found.cost, found.best, found.completions) == (None, None, 0)
    assert found.candidates > 0


def test_the_enumerator_imports_nothing_from_the_solver() -> None:
    """The oracle shares no code with what it checks: no import of pcitopo.solver."""
    import ast
    from pathlib import Path

    source = Path(__file__).parents[1] / "support" / "enumerate.py"
    tree = ast.parse(source.read_text(encoding="utf-8"))
    imported = [n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
    imported += [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
    assert [m for m in imported if m and m.startswith("pcitopo.solver")] == []


def test_a_spent_candidate_budget_leaves_the_result_unproven() -> None:
    """With ``max_candidates`` spent before the bound closes, the result is not ``complete``."""
    request = Topology.build(
        "q35", devices=[Device("a", "ac97", needs=Needs(numa_node=0)), Device("b", "ac97")], numa_nodes=1
    )
    found = minimum(request, Policy.named("ordered"), max_candidates=10)
    assert (found.complete, found.candidates) == (False, 11)


# -- the solver against the oracle ----------------------------------------------------------------

_SMALL = [
    Topology.build("q35", devices=[Device("n", "virtio-net")]),
    Topology.build("q35", devices=[Device("n", "virtio-net"), Device("d", "virtio-blk")]),
    Topology.build("q35", devices=[Device("w", "i6300esb")]),
    Topology.build("pc", devices=[Device("n", "e1000"), Device("d", "virtio-blk")]),
    Topology.build("aarch64-virt", devices=[Device("n", "virtio-net")]),
    Topology.build("q35", devices=[Device("a", "ac97", needs=Needs(numa_node=0)), Device("b", "ac97")], numa_nodes=1),
]


@pytest.mark.parametrize("policy_name", ["hotplug", "minimal", "numa", "ordered"])
@pytest.mark.parametrize("request_", _SMALL, ids=lambda t: f"{t.machine.name}-{len(t.devices)}")
def test_an_optimal_plan_costs_what_the_enumerator_finds(request_: Topology, policy_name: str) -> None:
    """When the solver says optimal, no legal completion the enumerator builds is cheaper; its cost is evaluate's."""
    from pcitopo.solver import Status, solve

    policy = Policy.named(policy_name)
    plan = solve(request_, policy)
    assert plan.cost == evaluate(request_, plan.topology, policy).cost
    found = minimum(request_, policy, max_added=4)
    assert found.cost is not None
    if plan.status is Status.OPTIMAL and found.complete:
        assert plan.cost <= found.cost


# -- counterexamples the Hypothesis probe found, each fixed in the model ------------------------------

_STRICT_0 = Needs(hotplug=HotplugNeed.PREFERRED, numa_node=0, numa_strict=True)

_MINIMAL = Policy.named("minimal")
_MINIMAL_NUMA = Policy.named("minimal+numa")
_DEAR_CONTROLLERS = attrs.evolve(_MINIMAL_NUMA, weights={**_MINIMAL_NUMA.weights, "fewer-controllers": 5})
"""No hotplug need, strict NUMA nodes, and a controller weighing 5: the enumerator's bound proves its minimum
after 3 or 4 controllers."""

_OFF_OCCUPIED = attrs.evolve(
    _MINIMAL,
    hotplug_off_occupied=True,
    weights={**_MINIMAL.weights, "fewer-controllers": 5, "hotplug-off-occupied": 30},
)
_PREFERRED = Needs(hotplug=HotplugNeed.PREFERRED)
_DRAWN_WEIGHTS = attrs.evolve(
    Policy.named("ordered+hotplug"),
    hotplug_off_occupied=True,
    weights={
        "hotplug": 110,
        "numa": 37,
        "order": 71,
        "spare-ports": 51,
        "hotplug-off-occupied": 2,
        "integrated": 74,
        "fewer-controllers": 67,
    },
)
"""Weights Hypothesis drew: a controller (67) costs more than half a device's hotplug (110)."""


def _low_expander(machine: str, kind: str) -> Topology:
    """An expander bus a user numbered ``busNr='1'`` (the main root keeps no bus number for another), and a device
    preferring NUMA node 0, which only a new expander bus has: it takes the numbers its neighbour leaves unused."""
    root, expander = ("pcie-root", "pcie-expander-bus") if machine == "q35" else ("pci-root", "pci-expander-bus")
    return Topology.build(
        machine,
        controllers=[Controller(0, root), Controller(1, expander, address=PciAddress.parse("0000:00:06.0"), bus_nr=1)],
        devices=[Device("r2", kind, needs=Needs(numa_node=0))],
        numa_nodes=2,
    )


_COUNTEREXAMPLES = [
    *(
        (
            # found by Hypothesis (a grown request refused although libvirt's policy planned it): the model offered
            # new expander buses only the numbers below the lowest existing one, and an empty one still claimed its
            # own bus there, so even the plan without it was refused ("does not fit, even on its own"); the spare
            # port a hotplug policy wants went only to the main root, which has no number for it
            f"{machine} {policy}: a new expander bus above one numbered busNr='1'",
            _low_expander(machine, kind),
            Policy.named(policy),
            cost,
        )
        for machine, kind, cost in (("pc", "ac97", 2), ("q35", "e1000e", 3))
        for policy in ("hotplug", "numa")
    ),
    (
        # found by the enumerator on grown requests: the empty root port was filled first "at no cost", though
        # minimal prefers the device integrated and hotplug off where it sits (solver 15, enumerator 0)
        "aarch64 minimal: a new device integrated beside a pinned empty root port, not put in it",
        Topology.build(
            "aarch64-virt-highmem-off",
            controllers=[
                Controller(0, "pcie-root"),
                Controller(1, "pcie-root-port", address=PciAddress.parse("0000:00:11.0"), chassis=1, port=0x88),
            ],
            devices=[
                Device("d0", "nvme", address=PciAddress.parse("0000:00:01.0"), needs=Needs(integrated=True)),
                Device("r0", "bochs"),
            ],
            numa_nodes=2,
        ),
        Policy.named("minimal"),
        0,
    ),
    (
        # the new pxb's slots are not hotpluggable: the device that prefers hotplug takes a pci-bridge's slot
        # below it, where the model used to leave it on the pxb (solver 101, enumerator 2)
        "pc: a device preferring hotplug on NUMA node 0 goes on a pci-bridge under the node's pxb",
        Topology.build(
            "pc", devices=[Device("r0", "virtio-input-host", needs=_STRICT_0), Device("r1", "ich9")], numa_nodes=1
        ),
        Policy.named("ordered"),
        2,
    ),
    (
        # solver 201, enumerator 2: both share the bridge
        "pc: two NICs preferring hotplug on NUMA node 0 share a pci-bridge under the node's pxb",
        Topology.build(
            "pc",
            devices=[Device("r0", "ne2k_pci", needs=_STRICT_0), Device("r1", "ne2k_pci", needs=_STRICT_0)],
            numa_nodes=2,
        ),
        Policy.named("hotplug"),
        2,
    ),
    (
        # a dmi-to-pci-bridge under the pxb-pcie hosts a conventional device with no hotplug need: one controller
        # where a root port and a pcie-to-pci-bridge are two (solver 20, enumerator 15)
        "q35: a conventional device with no hotplug need on NUMA node 0 goes on a dmi-to-pci-bridge under the pxb",
        Topology.build("q35", devices=[Device("a", "ac97", needs=Needs(numa_node=0))], numa_nodes=1),
        _DEAR_CONTROLLERS,
        15,
    ),
    (
        # solver 20, enumerator 15: aarch64-virt's pxb-pcie takes a dmi-to-pci-bridge as well
        "aarch64-virt: a conventional device with no hotplug need on NUMA node 0 goes on a dmi-to-pci-bridge",
        Topology.build("aarch64-virt", devices=[Device("a", "ac97", needs=Needs(numa_node=0))], numa_nodes=1),
        _DEAR_CONTROLLERS,
        15,
    ),
    (
        # two endpoints with no hotplug need share one root port as functions 0 and 1 (solver 25, enumerator 20)
        "q35: two PCI Express devices with no hotplug need on NUMA node 0 share a root port under the pxb",
        Topology.build(
            "q35",
            devices=[
                Device("a", "virtio-net", needs=Needs(numa_node=0)),
                Device("b", "virtio-blk", needs=Needs(numa_node=0)),
            ],
            numa_nodes=1,
        ),
        _DEAR_CONTROLLERS,
        20,
    ),
    (
        # hotplug-off-occupied was not in the model; pc's root slots are all hotpluggable, a node-less pxb's are
        # not (solver 30, enumerator 10: the pxb and the integrated term)
        "pc with hotplug-off-occupied: a device with no hotplug need goes on a node-less pxb",
        Topology.build("pc", devices=[Device("r0", "virtio-net-transitional")]),
        _OFF_OCCUPIED,
        10,
    ),
    (
        # last-resort integration took the PCIe device first; the conventional one saves a root port and a
        # pcie-to-pci-bridge (solver 252, enumerator 228)
        "q35: the conventional device is integrated as a last resort before the PCI Express one",
        Topology.build(
            "q35", devices=[Device("r0", "e1000e", needs=_PREFERRED), Device("r1", "vmpvscsi", needs=_PREFERRED)]
        ),
        _DRAWN_WEIGHTS,
        228,
    ),
    (
        # the dmi-to-pci-bridge is there for the device with no hotplug need: a pci-bridge below it gives the one
        # requiring hotplug a slot for one controller, not two (a root port and a pcie-to-pci-bridge); solver 13
        # (hotplug-off-occupied was not in the model either), enumerator 3
        "aarch64-virt: a pci-bridge under the node's dmi-to-pci-bridge for a device that requires hotplug",
        Topology.build(
            "aarch64-virt",
            devices=[
                Device("r0", "lsisas1068", needs=Needs(numa_node=1)),
                Device("r1", "i6300esb", needs=Needs(hotplug=HotplugNeed.REQUIRED, numa_node=1, numa_strict=True)),
            ],
            numa_nodes=2,
        ),
        attrs.evolve(Policy.named("numa+hotplug"), hotplug_off_occupied=True, spare_ports=0),
        3,
    ),
    (
        # a controller (86) costs more than a device's hotplug (61): the USB controller takes function 1 of the root
        # port whose function 0 is the pcie-to-pci-bridge, not a root port of its own (solver 344, enumerator 319)
        "q35: a PCI Express device shares the slot of the root port that holds the node's pcie-to-pci-bridge",
        Topology.build(
            "q35",
            devices=[
                Device("r0", "nec-xhci", needs=Needs(numa_node=0)),
                Device(
                    "r1",
                    "virtio-serial-transitional",
                    needs=Needs(hotplug=HotplugNeed.REQUIRED, numa_node=0, numa_strict=True),
                ),
            ],
            numa_nodes=1,
        ),
        attrs.evolve(
            Policy.named("numa"),
            spare_ports=0,
            weights={**Policy.named("numa").weights, "fewer-controllers": 86, "hotplug": 61},
        ),
        319,
    ),
    (
        # the catalog's ich9-ehci1 is not hot-pluggable (QEMU 7.2), and the model dropped the device's own
        # preference as it drops the policy's default, while evaluate scores it (solver 101, enumerator 2)
        "pc: a kind QEMU does not hot-add keeps its own preference for a hotpluggable slot",
        Topology.build("pc", devices=[Device("r0", "ich9-ehci1", needs=_STRICT_0)], numa_nodes=2),
        Policy.named("hotplug"),
        2,
    ),
    (
        # a shared-port option came out with -1 units preferring hotplug, so the passthrough device never went
        # beside the bridge; and that port's hotplug must be off for it (solver 80, enumerator 60)
        "aarch64: a passthrough device with no hotplug need beside the node's pcie-to-pci-bridge, hotplug off",
        Topology.build(
            "aarch64-virt-highmem-off",
            devices=[
                Device("r0", "virtio-scsi-transitional", needs=Needs(hotplug=HotplugNeed.PREFERRED, numa_node=0)),
                Device("r1", "vfio-pci", needs=Needs(numa_node=0, numa_strict=True)),
            ],
            numa_nodes=1,
        ),
        attrs.evolve(
            Policy.named("minimal+hotplug"),
            hotplug_off_occupied=True,
            spare_ports=0,
            weights={
                "order": 104,
                "hotplug": 67,
                "fewer-controllers": 20,
                "hotplug-off-occupied": 116,
                "numa": 84,
                "spare-ports": 93,
                "integrated": 0,
            },
        ),
        60,
    ),
    (
        # pcie.0 has one free slot: the three go there as its functions 0..2 (integrated, nothing added), where the
        # model used to integrate one and put two on a dmi-to-pci-bridge (solver 17, enumerator 0)
        "minimal on q35 with one free root slot: three conventional devices packed as its functions",
        Topology.build(
            "q35",
            devices=[
                *(Device(f"p{s}", "ich9", address=PciAddress(bus=0, slot=s)) for s in range(1, 30)),
                *(Device(f"o{i}", "pci-ohci") for i in range(3)),
            ],
        ),
        _MINIMAL,
        0,
    ),
    (
        # a unit that must not be hot-plugged was never integrated unless the policy preferred integration, and
        # got a root port with hotplug off (solver 1, enumerator 0)
        "aarch64: a device that must not be hot-plugged is integrated on pcie.0, no root port",
        Topology.build("aarch64-virt", devices=[Device("r0", "qemu-xhci", needs=Needs(hotplug=HotplugNeed.FORBIDDEN))]),
        attrs.evolve(Policy.named("hotplug"), spare_ports=0),
        0,
    ),
    (
        # an override softening a never-hotpluggable kind's own requirement was ignored: Unsatisfiable
        # (found with a virtio-vga, which qemu-system-aarch64 does not have: rule qemu-driver since; virtio-gpu is
        # never hot-pluggable too)
        "aarch64: an override makes a virtio-gpu's own required hotplug a preference",
        Topology.build(
            "aarch64-virt",
            devices=[
                Device("r0", "virtio-gpu", needs=Needs(hotplug=HotplugNeed.REQUIRED)),
                Device("r1", "ac97"),
            ],
        ),
        attrs.evolve(
            Policy.named("hotplug"), spare_ports=0, overrides=(Override("r0", hotplug=HotplugNeed.PREFERRED),)
        ),
        # a root port for the virtio-gpu (a hotpluggable slot meets its preference), one and a bridge for the ac97
        3,
    ),
    (
        # the final check validated the device's own required hotplug, evaluate the override: InternalError
        "aarch64: an override forbidding an ac97's own required hotplug wins, as evaluate scores it",
        Topology.build("aarch64-virt", devices=[Device("r0", "ac97", needs=Needs(hotplug=HotplugNeed.REQUIRED))]),
        attrs.evolve(
            Policy.named("hotplug"), spare_ports=0, overrides=(Override("r0", hotplug=HotplugNeed.FORBIDDEN),)
        ),
        0,
    ),
    (
        # an ac97 that must not be hot-plugged and found no root slot it could keep in order went into the bridge
        # tree of the other (InternalError); and the dmi-to-pci-bridge comes after that tree, keeping the order
        "q35 ordered: one ac97 preferring hotplug in a tree, the next one that must not be hot-plugged on a dmi bridge",
        Topology.build(
            "q35",
            devices=[
                Device("r0", "ac97", needs=Needs(hotplug=HotplugNeed.PREFERRED)),
                Device("r1", "ac97", needs=Needs(hotplug=HotplugNeed.FORBIDDEN)),
            ],
        ),
        attrs.evolve(Policy.named("hotplug+ordered"), spare_ports=0),
        3,
    ),
    (
        # the context's local choice (_layout._decide_pcie) hung the tree from the dmi-to-pci-bridge (2 controllers),
        # whose own bus the guest numbers first: the solver now searches ordered plans without that too (12 -> 3)
        "aarch64 ordered, hotplug-off-occupied: the ac97 preferring hotplug in a tree before the other's dmi bridge",
        Topology.build(
            "aarch64-virt",
            devices=[Device("r0", "ac97", needs=Needs(hotplug=HotplugNeed.PREFERRED)), Device("r1", "ac97")],
            numa_nodes=1,
        ),
        attrs.evolve(Policy.named("hotplug+ordered"), spare_ports=0, hotplug_off_occupied=True),
        3,
    ),
    (
        # the primary-video search forced the vga onto pci.0, every slot of which is hot-pluggable: InternalError
        "pc: a vga and an e1000 that must not be hot-plugged go on a pxb, the vga off the root bus",
        Topology.build(
            "pc",
            devices=[
                Device("r0", "vga", needs=Needs(hotplug=HotplugNeed.FORBIDDEN)),
                Device("r1", "e1000", needs=Needs(hotplug=HotplugNeed.FORBIDDEN)),
            ],
        ),
        # the primary-video term as dear as a controller, so that four added controllers bound the enumeration
        attrs.evolve(
            Policy.named("hotplug"),
            spare_ports=0,
            weights={**Policy.named("hotplug").weights, "primary-video": 1, "fewer-controllers": 1},
        ),
        2,
    ),
    (
        # the spare-ports term counts empty hot-pluggable ports anywhere: the pxb-pcie's second empty root port is
        # the spare, where the model wanted one of pcie.0's own and added it (cost 1)
        "aarch64 hotplug: a spare port left empty below a pinned pxb-pcie counts, none added on pcie.0",
        Topology.build(
            "aarch64-virt",
            numa_nodes=1,
            controllers=[
                Controller(0, "pcie-root"),
                Controller(1, "pcie-expander-bus", address=PciAddress.parse("0000:00:07.0"), bus_nr=85, numa_node=0),
                Controller(2, "pcie-root-port", address=PciAddress.parse("0000:01:1c.0"), chassis=2, port=224),
                Controller(3, "pcie-root-port", address=PciAddress.parse("0000:01:0b.0"), chassis=3, port=88),
            ],
            devices=[Device("r0", "virtio-scsi", needs=Needs(numa_node=0))],
        ),
        Policy.named("hotplug"),
        0,
    ),
]


@pytest.mark.parametrize(
    ("case", "request_", "policy", "cost"), _COUNTEREXAMPLES, ids=lambda v: v if isinstance(v, str) else ""
)
def test_the_solver_finds_the_enumerated_minimum_of_a_former_counterexample(
    case: str, request_: Topology, policy: Policy, cost: int
) -> None:
    """A request the solver once planned dearer than a legal completion now costs the proven enumerated minimum."""
    from pcitopo.solver import Status, solve

    found = minimum(request_, policy)
    assert (found.cost, found.complete) == (cost, True)
    plan = solve(request_, policy)
    assert (plan.cost, evaluate(request_, plan.topology, policy).cost) == (cost, cost)
    # with an order term scored the solver may claim no proof (solve._finish), and finds the minimum all the same
    if not any(s.name == "order" and s.weight for s in plan.soft):
        assert plan.status is Status.OPTIMAL


@pytest.mark.parametrize(
    ("machine", "kinds", "policy_name"),
    [
        ("q35", ["e1000", "e1000"], "ordered"),
        ("q35", ["ac97", "ac97"], "ordered"),
        ("q35", ["virtio-net", "virtio-net"], "hotplug+ordered"),
        ("pc", ["e1000", "e1000", "e1000"], "ordered"),
    ],
)
def test_an_ordered_plan_is_proven_optimal_when_no_scored_assignment_could_hide_a_cheaper_order(
    machine: str, kinds: list[str], policy_name: str
) -> None:
    """Ordered plans that keep every order, where no assignment the search scored has a bound below their cost, are
    claimed optimal, and the enumerator finds no cheaper completion (they were never claimed optimal before)."""
    from pcitopo.solver import Status, solve

    request = Topology.build(machine, devices=[Device(f"n{i}", kind) for i, kind in enumerate(kinds)])
    policy = Policy.named(policy_name)
    plan = solve(request, policy)
    found = minimum(request, policy, max_added=4, max_candidates=3000)
    assert found.complete
    assert (plan.status, plan.cost, plan.bound) == (Status.OPTIMAL, found.cost, found.cost)
    assert all(s.met for s in plan.soft if s.name == "order")


@pytest.mark.parametrize("machine", ["pseries", "pc"])
def test_an_integrated_device_that_must_not_be_hot_plugged_on_an_all_hotplug_root_is_refused(machine: str) -> None:
    """pvpanic-pci must sit on the root bus; where every root slot is hot-pluggable and it must not be: no completion.

    The solver ended in InternalError (its plan broke the hotplug rule); the
    enumerator finds no completion, and the solver now says Unsatisfiable.
    """
    from pcitopo.solver import solve

    request = Topology.build(machine, devices=[Device("r0", "pvpanic-pci")])
    policy = attrs.evolve(
        Policy.named("hotplug"), spare_ports=0, overrides=(Override("r0", hotplug=HotplugNeed.FORBIDDEN),)
    )
    assert minimum(request, policy).completions == 0
    with pytest.raises(Unsatisfiable, match="must not be hot-pluggable and must sit integrated on the root bus"):
        solve(request, policy)


def test_ordered_e1000_names_keep_their_order() -> None:
    """Ordered, hotplug-off-occupied, two e1000 on q35: both under a node-less pxb-pcie (path names in bus order,
    the dmi-to-pci-bridge on the slot after the root port's), cost 4 as enumerated (main's solver: 13)."""
    from pcitopo.solver import solve

    request_ = Topology.build(
        "q35", devices=[Device("r0", "e1000", needs=Needs(hotplug=HotplugNeed.PREFERRED)), Device("r1", "e1000")]
    )
    policy = attrs.evolve(Policy.named("ordered"), spare_ports=0, hotplug_off_occupied=True)
    found = minimum(request_, policy)
    assert (found.cost, found.complete) == (4, True)
    assert solve(request_, policy).cost == 4


# -- the primary-video term: the solver searches both sides of it, and the enumerator agrees --------------

_MIN = Policy.named("minimal")


def _off_occupied(primary_video: int) -> Policy:
    """pc's root bus is hotpluggable: hotplug-off-occupied makes a VGA there cost 10, on a pxb 3 + the term."""
    weights = {**_MIN.weights, "fewer-controllers": 3, "integrated": 0, "primary-video": primary_video}
    return attrs.evolve(_MIN, hotplug_off_occupied=True, weights=weights)


_HOT = Policy.named("hotplug")
_VIDEO_CASES = [
    (
        "q35 hotplug: the vga is integrated, the NIC on a root port",
        Topology.build("q35", devices=[Device("n", "virtio-net"), Device("v", "vga")]),
        _HOT,
        2,
        True,
    ),
    (
        # the override reverted in 3afd0f2 forced bus 0 here whatever the weights (solver 10, a pxb completion 1)
        "pc hotplug-off-occupied, primary-video 5: the vga goes on a node-less pxb (3 + 5 < 10)",
        Topology.build("pc", devices=[Device("v", "vga")]),
        _off_occupied(5),
        8,
        False,
    ),
    (
        "pc hotplug-off-occupied, primary-video 50: the vga stays on the root bus (10 < 3 + 50)",
        Topology.build("pc", devices=[Device("v", "vga")]),
        _off_occupied(50),
        10,
        True,
    ),
    (
        "q35: a vga preferring hotplug itself is integrated when two controllers cost more than the term",
        Topology.build("q35", devices=[Device("v", "vga", needs=_PREFERRED)]),
        attrs.evolve(_HOT, spare_ports=0, weights={**_HOT.weights, "fewer-controllers": 40}),
        100,
        True,
    ),
    (
        # drawn weights: the model alone integrates the e1000 as a last resort and leaves the vga behind the
        # bridge (122); the search with the vga required on bus 0 finds 112
        "q35: the vga, not the e1000, is integrated beside a bridge for a device requiring hotplug",
        Topology.build(
            "q35",
            devices=[
                Device("d0", "e1000", needs=_PREFERRED),
                Device("v", "vga", needs=_PREFERRED),
                Device("d1", "rtl8139", needs=Needs(hotplug=HotplugNeed.REQUIRED)),
            ],
        ),
        attrs.evolve(
            _HOT,
            hotplug_off_occupied=True,
            spare_ports=0,
            weights={
                "hotplug": 10,
                "numa": 17,
                "spare-ports": 118,
                "fewer-controllers": 51,
                "integrated": 47,
                "order": 119,
                "hotplug-off-occupied": 92,
                "primary-video": 81,
            },
        ),
        112,
        True,
    ),
]


@pytest.mark.parametrize(
    ("case", "request_", "policy", "cost", "on_root"), _VIDEO_CASES, ids=lambda v: v if isinstance(v, str) else ""
)
def test_the_primary_video_term_is_the_enumerated_minimum(
    case: str, request_: Topology, policy: Policy, cost: int, on_root: bool
) -> None:
    """The solver puts the primary VGA where the enumerated minimum does: on bus 0 or, when cheaper, off it."""
    from pcitopo.solver import Status, solve

    found = minimum(request_, policy)
    assert (found.cost, found.complete) == (cost, True)
    plan = solve(request_, policy)
    assert (plan.status, plan.cost, evaluate(request_, plan.topology, policy).cost) == (Status.OPTIMAL, cost, cost)
    video = plan.topology.device("v").address
    assert video is not None
    assert (video.bus == 0) is on_root


# -- the property: the solver against the enumerator on drawn requests and policies ------------------


@settings(max_examples=40)
@given(small_requests(max_devices=2), POLICIES)
def test_the_solver_cost_is_the_enumerated_minimum(request_: Topology, policy: Policy) -> None:
    """On drawn small requests and policies the solver's cost is the enumerated minimum, never beaten when optimal."""
    check_against_the_enumerator(request_, policy)


@pytest.mark.slow
@settings(max_examples=400)
@given(small_requests(max_devices=2), POLICIES)
def test_the_solver_cost_is_the_enumerated_minimum_on_hundreds(request_: Topology, policy: Policy) -> None:
    """The same on 400 drawn requests and policies (issue 9, item 5: hundreds of examples in the slow suite)."""
    check_against_the_enumerator(request_, policy)


@settings(max_examples=30)
@given(small_requests(max_devices=2), POLICIES, st.data())
def test_the_solver_cost_is_the_enumerated_minimum_with_overrides(
    request_: Topology, policy: Policy, data: st.DataObject
) -> None:
    """With ``[[device]]`` overrides naming some devices by id, the solver's cost is still the enumerated minimum."""
    check_against_the_enumerator(request_, data.draw(with_overrides(request_, policy)))


@settings(max_examples=40)
@given(grown_requests(max_devices=2), POLICIES)
def test_a_grown_request_s_plan_is_called_optimal_only_when_nothing_beats_it(
    request_: Topology, policy: Policy
) -> None:
    """On drawn grown requests (pinned controllers with free slots) a plan called optimal is never beaten by a
    completion the enumerator builds (found by it: 'optimal' plans costing 240 where 193 exists, the model not
    searching the free slots of existing buses), and a refusal comes only when no completion exists. Their cost is
    not asserted to be the minimum: the model pools devices into those free slots, and lets new bridges take them,
    without searching every way (several poolings and realisations, the cheapest kept). Measured 2026-12-04 with
    cost equality asserted: each dearer plan found in some 20,000 draws (up to 3 new devices) is a fixed case
    above, but they keep coming at about 1 in 1,000 draws of 3 devices (an ordered riscv64 plan of 69 where 0
    exists is open), too often to assert equality here; the fix is the free slots as contexts of the model."""
    check_status_against_the_enumerator(request_, policy)


def test_a_plan_whose_device_took_the_only_spare_port_is_not_called_optimal() -> None:
    """aarch64 with an empty hot-pluggable root port, hotplug weighing nothing: pooling the new device into that
    port costs a new spare port (1), while leaving it spare and integrating the device costs 0 (the enumerated
    minimum). Found by the slow property test in CI: the plan was called optimal because every device had gone to
    a free slot at no cost of its own."""
    from pcitopo.solver import Status, solve

    request = Topology.build(
        "aarch64-virt",
        controllers=[
            Controller(0, "pcie-root"),
            Controller(
                1, "pcie-root-port", address=PciAddress.parse("0000:00:01.0"), chassis=1, port=8, multifunction=True
            ),
            Controller(2, "pcie-root-port", address=PciAddress.parse("0000:00:01.1"), chassis=2, port=9, hotplug=False),
        ],
        devices=[
            Device("d0", "virtio-net-transitional", address=PciAddress.parse("0000:00:02.0")),
            Device("d1", "virtio-net-transitional", address=PciAddress.parse("0000:00:03.0")),
            Device("r0", "nec-xhci"),
        ],
    )
    weights = dict.fromkeys(Policy.named("hotplug").weights, 0)
    policy = attrs.evolve(Policy.named("hotplug"), weights={**weights, "spare-ports": 1, "fewer-controllers": 1})
    found = minimum(request, policy)
    assert (found.cost, found.complete) == (0, True)
    plan = solve(request, policy)
    assert plan.cost == evaluate(request, plan.topology, policy).cost
    assert plan.status is not Status.OPTIMAL or plan.cost == found.cost, f"'optimal' at {plan.cost}"
    # and the minimum is found: the pooling that puts only devices that cost nothing at all in free slots leaves
    # an empty hot-pluggable port alone where the policy wants spare ports (it cost 1 before)
    assert (plan.cost, plan.status) == (0, Status.OPTIMAL)


def _weights(**some: int) -> dict[str, int]:
    """Every weight 0 but those given (drawn weights of the kind that found these cases)."""
    return {**dict.fromkeys(Policy.named("hotplug").weights, 0), **{k.replace("_", "-"): v for k, v in some.items()}}


def _port(index: int, address: str, port: int, *, hotplug: bool | None = None) -> Controller:
    return Controller(
        index, "pcie-root-port", address=PciAddress.parse(address), chassis=index, port=port, hotplug=hotplug
    )


_PINNED = PciAddress.parse
_REUSE_CASES_DMI_PXB = Topology.build(
    "aarch64-virt-highmem-off",
    numa_nodes=1,
    controllers=[
        Controller(0, "pcie-root"),
        Controller(1, "dmi-to-pci-bridge", address=_PINNED("0000:00:17.0")),
        Controller(2, "pcie-expander-bus", address=_PINNED("0000:00:19.0"), bus_nr=3),
    ],
    devices=[
        Device("d0", "virtio-scsi-non-transitional", address=_PINNED("0000:00:10.0")),
        Device("d1", "virtio-serial", address=_PINNED("0000:00:16.0")),
        Device("d2", "nvme", address=_PINNED("0000:00:12.0"), needs=Needs(hotplug=HotplugNeed.FORBIDDEN)),
        Device("r0", "vmpvscsi", needs=Needs(hotplug=HotplugNeed.PREFERRED, numa_strict=True)),
        Device("r1", "virtio-rng"),
    ],
)
"""A pinned dmi-to-pci-bridge with free slots on pcie.0, whose one bus number left below a pxb-pcie a pci-bridge
there can take (a root port and its bridge could not), and two devices to place (found by the enumerator)."""
_REUSE_CASES = [
    (
        "aarch64, hotplug: the new pcie-to-pci-bridge in the pinned empty hot-pluggable port (2 controllers before)",
        Topology.build(
            "aarch64-virt-highmem-off",
            controllers=[Controller(0, "pcie-root"), _port(1, "0000:00:01.0", 8)],
            devices=[Device("r0", "ahci", needs=PREFERRED)],
        ),
        attrs.evolve(Policy.named("hotplug"), spare_ports=0),
        1,
    ),
    (
        "q35, numa: two uhci share one bridge in the node-0 expander's empty port (a tree each, 2, before)",
        Topology.build(
            "q35",
            numa_nodes=1,
            controllers=[
                Controller(0, "pcie-root"),
                _port(1, "0000:00:0b.0", 88, hotplug=False),
                Controller(2, "pcie-expander-bus", address=_PINNED("0000:00:05.0"), bus_nr=175, numa_node=0),
                _port(3, "0000:02:1a.0", 208, hotplug=False),
            ],
            devices=[
                Device("d0", "vhost-scsi-transitional", address=_PINNED("0000:00:1a.0")),
                Device("r0", "piix4-uhci"),
                Device("r1", "piix4-uhci", needs=Needs(numa_node=0, numa_strict=True)),
            ],
        ),
        attrs.evolve(Policy.named("numa"), spare_ports=0),
        1,
    ),
    (
        "aarch64, minimal: a pci-bridge in a pinned dmi-to-pci-bridge's free slot for the ivshmem that prefers "
        "hotplug (100 before: integrated, not hot-pluggable)",
        Topology.build(
            "aarch64-virt",
            numa_nodes=2,
            controllers=[
                Controller(0, "pcie-root"),
                _port(1, "0000:00:0b.0", 88),
                Controller(2, "dmi-to-pci-bridge", address=_PINNED("0000:00:19.0")),
                Controller(3, "dmi-to-pci-bridge", address=_PINNED("0000:00:01.0")),
            ],
            devices=[
                Device(
                    "d0",
                    "virtio-input-host",
                    address=_PINNED("0000:00:05.0"),
                    needs=Needs(numa_node=1, integrated=True),
                ),
                Device("d1", "cirrus", address=_PINNED("0000:00:1d.0"), needs=Needs(numa_node=1, integrated=True)),
                Device("d2", "virtio-input-host", address=_PINNED("0000:01:00.0")),
                Device("r0", "rtl8139", needs=Needs(numa_strict=True)),
                Device("r1", "ivshmem-doorbell", needs=Needs(hotplug=HotplugNeed.PREFERRED, numa_strict=True)),
            ],
        ),
        # drawn weights: a controller (58) dearer than a miss of integration (31), cheaper than one of hotplug (100)
        attrs.evolve(
            Policy.named("minimal"),
            weights={
                "hotplug": 100,
                "integrated": 31,
                "spare-ports": 36,
                "hotplug-off-occupied": 70,
                "fewer-controllers": 58,
                "numa": 62,
                "io-reserve-off": 33,
                "primary-video": 114,
                "order": 0,
            },
        ),
        89,
    ),
    (
        "aarch64, hotplug: the bridge in the main root's empty port, whose region has one bus number left (the "
        "model had no room for a new root port and its bridge there, and put both on the pxb-pcie: 2)",
        Topology.build(
            "aarch64-virt-highmem-off",
            numa_nodes=1,
            controllers=[
                Controller(0, "pcie-root"),
                Controller(1, "pcie-expander-bus", address=_PINNED("0000:00:05.0"), bus_nr=4),
                Controller(
                    2, "pcie-root-port", address=_PINNED("0000:00:02.0"), chassis=2, port=16, multifunction=True
                ),
                Controller(3, "pcie-root-port", address=_PINNED("0000:00:02.5"), chassis=3, port=21),
            ],
            devices=[
                Device("d0", "virtio-net-transitional", address=_PINNED("0000:00:01.0")),
                Device("d1", "virtio-net-transitional", address=_PINNED("0000:00:03.0")),
                Device("r0", "ac97"),
            ],
        ),
        attrs.evolve(Policy.named("hotplug"), spare_ports=0),
        1,
    ),
    (
        "aarch64, a hotplug miss as dear as a controller: two ac97 on a pcie-to-pci-bridge in the pinned empty port "
        "(2 before: the layout packed them on pcie.0, a tie with a new root port and its bridge)",
        Topology.build(
            "aarch64-virt",
            controllers=[Controller(0, "pcie-root"), _port(1, "0000:00:01.0", 8)],
            devices=[Device("a0", "ac97"), Device("a1", "ac97")],
        ),
        attrs.evolve(Policy.named("hotplug"), weights=_weights(hotplug=1, fewer_controllers=1), spare_ports=0),
        1,
    ),
    (
        "aarch64, numa+minimal: the ich6 that must be on node 0 on a bridge in the node-0 pxb-pcie's empty port "
        "(203 before: integrated on the pxb-pcie, a hotplug miss, and a new controller all the same)",
        Topology.build(
            "aarch64-virt-highmem-off",
            numa_nodes=2,
            controllers=[
                Controller(0, "pcie-root"),
                Controller(1, "pcie-expander-bus", address=_PINNED("0000:00:16.0"), bus_nr=6, numa_node=0),
                Controller(2, "pcie-root-port", address=_PINNED("0000:01:00.0"), chassis=2, port=0),
            ],
            devices=[Device("r0", "ich6", needs=Needs(hotplug=HotplugNeed.PREFERRED, numa_node=0, numa_strict=True))],
        ),
        attrs.evolve(
            Policy.named("numa+minimal"),
            weights=_weights(
                hotplug=72,
                fewer_controllers=86,
                io_reserve_off=114,
                spare_ports=28,
                order=34,
                hotplug_off_occupied=50,
                integrated=45,
                numa=120,
                primary_video=93,
            ),
        ),
        86 + 45,
    ),
    (
        "aarch64, hotplug+numa: the vmpvscsi on a pci-bridge in the pinned dmi-to-pci-bridge's free slot, which takes "
        "pcie.0's last bus number below the pxb-pcie (3 before: the model had no room there for a root port and its "
        "bridge, and put both on the pxb-pcie)",
        _REUSE_CASES_DMI_PXB,
        attrs.evolve(Policy.named("hotplug+numa"), spare_ports=0),
        2,
    ),
    (
        "aarch64, hotplug+numa: as above, with the spare port the policy wants on the pxb-pcie, where pcie.0 has no "
        "bus number left for it (4 before: the model offered spare ports on pcie.0 only, so the bridge went on the "
        "pxb-pcie behind a root port of its own)",
        _REUSE_CASES_DMI_PXB,
        Policy.named("hotplug+numa"),
        3,
    ),
    (
        "aarch64, hotplug: the ac97's pcie-to-pci-bridge in the pxb-pcie's empty port, the vhost-scsi preferring "
        "node 0 beside it at function 1, pcie.0's empty port left spare (2 before: a layout with units beside a "
        "tree's bridge took no empty port)",
        Topology.build(
            "aarch64-virt",
            numa_nodes=1,
            controllers=[
                Controller(0, "pcie-root"),
                Controller(1, "pcie-expander-bus", address=_PINNED("0000:00:04.0"), bus_nr=3, numa_node=0),
                _port(2, "0000:00:05.0", 40),
                Controller(3, "pcie-root-port", address=_PINNED("0000:01:00.0"), chassis=3, port=0),
            ],
            devices=[
                Device("d0", "virtio-net", address=_PINNED("0000:00:01.0")),
                Device("d1", "virtio-net", address=_PINNED("0000:00:02.0")),
                Device("d2", "virtio-net", address=_PINNED("0000:00:03.0")),
                Device("r0", "vhost-scsi", needs=Needs(numa_node=0)),
                Device("r1", "ac97", needs=Needs(hotplug=HotplugNeed.REQUIRED)),
            ],
        ),
        attrs.evolve(
            Policy.named("hotplug"),
            spare_ports=1,
            weights=_weights(numa=1, spare_ports=1, fewer_controllers=1),
        ),
        1,
    ),
]


@pytest.mark.parametrize(
    ("case", "request_", "policy", "cost"), _REUSE_CASES, ids=lambda v: v if isinstance(v, str) else ""
)
def test_a_grown_request_s_new_bridges_take_its_empty_ports_and_free_bridge_slots(
    case: str, request_: Topology, policy: Policy, cost: int
) -> None:
    """Grown requests whose plans were dearer than the enumerator's (found by drawing grown requests against it): the
    model counts a new root port for every new bridge tree or switch, where the request already has an empty port
    or a conventional bus with a free slot for a pci-bridge. The plan now costs the enumerated minimum; it is not
    called optimal unless it costs nothing (the model does not search those positions, it only realises them)."""
    from pcitopo.solver import Status, solve

    found = minimum(request_, policy)
    assert (found.cost, found.complete) == (cost, True)
    plan = solve(request_, policy)
    assert (plan.cost, evaluate(request_, plan.topology, policy).cost) == (cost, cost)
    assert plan.status is Status.FEASIBLE


def _dmi_tree(root_port: bool) -> list[Controller]:
    """A pinned dmi-to-pci-bridge at 00:02.0 with a pci-bridge in its slot 0 (free hot-pluggable slots), and a root
    port at 00:03.0."""
    out = [
        Controller(0, "pcie-root"),
        Controller(1, "dmi-to-pci-bridge", address=_PINNED("0000:00:02.0")),
        Controller(2, "pci-bridge", address=_PINNED("0000:01:00.0"), chassis_nr=2),
    ]
    return out + (
        [Controller(3, "pcie-root-port", address=_PINNED("0000:00:03.0"), chassis=3, port=24)] if root_port else []
    )


def _dmi_tree_request() -> Topology:
    return Topology.build(
        "aarch64-virt",
        numa_nodes=1,
        controllers=_dmi_tree(root_port=True),
        devices=[
            Device("d0", "virtio-net", address=_PINNED("0000:00:01.0")),
            Device("d1", "virtio-net", address=_PINNED("0000:00:04.0")),
            Device("r0", "ac97", needs=Needs(numa_node=0)),
        ],
    )


_POOLING_CASES = [
    (
        "the ac97 preferring node 0 in the pinned pci-bridge's free slot, its node missed at weight 1 (integrated, "
        "node and hotplug missed, before: 2)",
        _dmi_tree_request(),
        attrs.evolve(Policy.named("hotplug"), spare_ports=0, weights=_weights(hotplug=1, numa=1, fewer_controllers=1)),
        1,
    ),
    (
        "the same at NUMA weight 0: the free slot costs nothing (before: 1, integrated without hotplug)",
        _dmi_tree_request(),
        attrs.evolve(Policy.named("hotplug"), spare_ports=0, weights=_weights(hotplug=1, fewer_controllers=1)),
        0,
    ),
    (
        "minimal, hotplug weighing nothing: the ac97 that must be hot-pluggable takes the pinned bridge's slot (it "
        "cannot be integrated on pcie.0), the other ac97 is integrated (before: both in the bridge, 2)",
        Topology.build(
            "aarch64-virt",
            controllers=[
                Controller(0, "pcie-root"),
                Controller(1, "pcie-root-port", address=_PINNED("0000:00:01.0"), chassis=1, port=8, multifunction=True),
                Controller(2, "pcie-to-pci-bridge", address=_PINNED("0000:01:00.0")),
                Controller(3, "pcie-root-port", address=_PINNED("0000:00:01.1"), chassis=3, port=9),
            ],
            devices=[
                Device("d0", "virtio-net-transitional", address=_PINNED("0000:00:02.0")),
                Device("d1", "virtio-net", address=_PINNED("0000:00:03.0")),
                Device("d2", "virtio-net", address=_PINNED("0000:00:04.0")),
                Device("r0", "ac97"),
                Device("r1", "ac97", needs=Needs(hotplug=HotplugNeed.REQUIRED)),
            ],
        ),
        attrs.evolve(Policy.named("minimal"), weights=_weights(fewer_controllers=1, integrated=1)),
        1,
    ),
    (
        "minimal: the ac97 preferring hotplug and node 0 takes the free slot of the dmi-to-pci-bridge on the node-0 "
        "pxb-pcie, hotplug and integration missed, its node met (before: integrated on pcie.0, node missed, 118)",
        Topology.build(
            "aarch64-virt",
            numa_nodes=1,
            controllers=[
                Controller(0, "pcie-root"),
                Controller(1, "pcie-expander-bus", address=_PINNED("0000:00:0c.0"), bus_nr=231, numa_node=0),
                Controller(2, "pcie-expander-bus", address=_PINNED("0000:00:05.0"), bus_nr=245),
                Controller(3, "dmi-to-pci-bridge", address=_PINNED("0000:01:08.0")),
            ],
            devices=[
                Device("d0", "pcnet", address=_PINNED("0000:00:19.0"), needs=Needs(hotplug=HotplugNeed.FORBIDDEN)),
                Device("r0", "rtl8139", needs=Needs(numa_strict=True)),
                Device("r1", "ac97", needs=Needs(hotplug=HotplugNeed.PREFERRED, numa_node=0)),
                Device("r2", "ahci"),
            ],
        ),
        attrs.evolve(
            Policy.named("minimal"),
            weights=_weights(
                hotplug=40,
                spare_ports=74,
                io_reserve_off=53,
                hotplug_off_occupied=5,
                fewer_controllers=68,
                order=36,
                numa=78,
                primary_video=89,
                integrated=54,
            ),
        ),
        40 + 54,
    ),
    (
        "ordered+minimal: the virtio-net that must be hot-pluggable takes the pinned empty root port, a spare port "
        "(39) less, where a new port costs 57; the others are integrated (before: 67, or 69 all pooled)",
        Topology.build(
            "riscv64-virt",
            controllers=[
                Controller(0, "pcie-root"),
                Controller(1, "dmi-to-pci-bridge", address=_PINNED("0000:00:18.0")),
                Controller(2, "pci-bridge", address=_PINNED("0000:01:14.0"), chassis_nr=2),
                Controller(3, "pcie-root-port", address=_PINNED("0000:00:1e.0"), chassis=3, port=240),
            ],
            devices=[
                Device("r0", "virtio-net", needs=Needs(hotplug=HotplugNeed.REQUIRED, numa_strict=True)),
                Device("r1", "lsilogic", needs=Needs(numa_strict=True)),
                Device("r2", "ich9-ehci1", needs=Needs(numa_strict=True)),
            ],
        ),
        attrs.evolve(
            Policy.named("ordered+minimal"),
            spare_ports=1,
            weights=_weights(
                primary_video=117,
                spare_ports=39,
                hotplug_off_occupied=107,
                integrated=10,
                fewer_controllers=57,
                order=66,
                numa=18,
                io_reserve_off=105,
            ),
        ),
        10 + 39,
    ),
    (
        "hotplug+numa: the ahci with no NUMA preference that must be hot-pluggable takes the free slot of the pinned "
        "pci-bridge below the node-0 pxb-pcie (before: a pci-bridge of its own, 183: no pooling put a device without "
        "a node on a node's bus)",
        Topology.build(
            "aarch64-virt",
            numa_nodes=2,
            controllers=[
                Controller(0, "pcie-root"),
                Controller(1, "pcie-expander-bus", address=_PINNED("0000:00:1d.0"), bus_nr=174, numa_node=0),
                Controller(2, "dmi-to-pci-bridge", address=_PINNED("0000:01:16.0")),
                Controller(3, "pci-bridge", address=_PINNED("0000:02:01.0"), chassis_nr=3),
            ],
            devices=[
                Device("d0", "virtio-9p-transitional", address=_PINNED("0000:00:15.0")),
                Device("r0", "ahci", needs=Needs(hotplug=HotplugNeed.REQUIRED)),
            ],
        ),
        attrs.evolve(
            Policy.named("hotplug+numa"),
            weights=_weights(
                io_reserve_off=40,
                spare_ports=67,
                order=90,
                fewer_controllers=116,
                hotplug_off_occupied=84,
                integrated=118,
                numa=24,
                primary_video=48,
            ),
        ),
        67,
    ),
    (
        "minimal+numa: pcie.0's two empty hot-pluggable ports are the spare port the policy wants, though its bus "
        "numbers below the pxb-pcie are spent (before: a spare port added on the pxb-pcie, 1)",
        Topology.build(
            "aarch64-virt-highmem-off",
            numa_nodes=1,
            controllers=[
                Controller(0, "pcie-root"),
                Controller(1, "pcie-expander-bus", address=_PINNED("0000:00:19.0"), bus_nr=3),
                _port(2, "0000:00:01.0", 8),
                _port(3, "0000:00:0e.0", 112),
            ],
            devices=[Device("r0", "virtio-input-host", needs=Needs(numa_strict=True))],
        ),
        attrs.evolve(Policy.named("minimal+numa"), spare_ports=1),
        0,
    ),
    (
        "hotplug, hotplug off on occupied positions: the two vfio-pci with no hotplug need share the pinned cold port "
        "as functions 0 and 1 (before: one there, the other on a new port, 1)",
        Topology.build(
            "aarch64-virt-highmem-off",
            numa_nodes=2,
            controllers=[
                Controller(0, "pcie-root"),
                _port(1, "0000:00:03.0", 24),
                Controller(2, "pcie-expander-bus", address=_PINNED("0000:00:16.0"), bus_nr=9),
                _port(3, "0000:00:0a.0", 80, hotplug=False),
            ],
            devices=[
                Device("d0", "vhost-user-fs", address=_PINNED("0000:00:01.0"), needs=Needs(integrated=True)),
                Device(
                    "d1",
                    "virtio-gpu",
                    address=_PINNED("0000:00:02.0"),
                    needs=Needs(hotplug=HotplugNeed.FORBIDDEN, integrated=True),
                ),
                Device("d2", "piix4-uhci", address=_PINNED("0000:00:18.0"), needs=Needs(integrated=True)),
                Device("r0", "vfio-pci", needs=Needs(numa_strict=True)),
                Device("r1", "vfio-pci", needs=Needs(numa_strict=True)),
            ],
        ),
        attrs.evolve(Policy.named("hotplug"), spare_ports=0, hotplug_off_occupied=True),
        0,
    ),
    (
        "ordered, no ACPI: the virtio-9p integrated and the pinned cold port left to the pci-serial's bridge (before: "
        "the virtio-9p pooled there, the bridge behind a new root port, 2)",
        Topology.build(
            "aarch64-virt",
            acpi=False,
            controllers=[Controller(0, "pcie-root"), _port(1, "0000:00:02.0", 16, hotplug=False)],
            devices=[Device("r0", "pci-serial", needs=Needs(hotplug=HotplugNeed.PREFERRED)), Device("r1", "virtio-9p")],
        ),
        attrs.evolve(Policy.named("ordered"), spare_ports=0, hotplug_off_occupied=True),
        1,
    ),
]


def test_a_layout_that_lacks_a_bus_number_moves_its_tree_to_a_dmi_to_pci_bridge() -> None:
    """aarch64 virt without high ECAM has 16 buses: a pinned pxb-pcie at bus 14 on node 0 has one number left, and an
    ahci preferring node 0 fits there only on a dmi-to-pci-bridge (one number), not behind a root port and a
    pcie-to-pci-bridge (two). The layout tried the moves that lower its bus numbers only when it fitted without
    them, so the plan added a second pxb-pcie for it (8) and was called optimal where 7 exists (found by the
    enumerator on drawn grown requests)."""
    from pcitopo.solver import Status, solve

    request = Topology.build(
        "aarch64-virt-highmem-off",
        numa_nodes=2,
        acpi=False,
        controllers=[
            Controller(0, "pcie-root"),
            Controller(1, "pcie-expander-bus", address=_PINNED("0000:00:05.0"), bus_nr=14, numa_node=0),
        ],
        devices=[Device("r0", "ahci", needs=Needs(numa_node=0))],
    )
    policy = attrs.evolve(Policy.named("hotplug+minimal"), spare_ports=1)
    found = minimum(request, policy)  # not complete: 5 controllers at weight 1 could still undercut 7
    assert found.cost == 7
    plan = solve(request, policy)
    assert (plan.cost, plan.status) == (7, Status.OPTIMAL)
    (dmi,) = [c for c in plan.added if c.model == "dmi-to-pci-bridge"]
    assert dmi.address is not None
    assert dmi.address.bus == 1


@pytest.mark.parametrize(
    ("case", "request_", "policy", "cost"), _POOLING_CASES, ids=lambda v: v if isinstance(v, str) else ""
)
def test_a_grown_request_s_free_slots_go_to_the_devices_they_cost_least(
    case: str, request_: Topology, policy: Policy, cost: int
) -> None:
    """Grown requests whose plans were dearer than the enumerator's (found by it on drawn grown requests): a device
    kept out of a free slot of an existing bus because its NUMA node differs, where missing the node costs less than
    anything the model has for it (now searched as a third pooling), because it prefers hotplug the slot lacks,
    where what the model has for it costs more (a fourth), or because the policy prefers it integrated, where it
    must be hot-pluggable and pcie.0 is not, or because it would take a spare port, where a new port costs more
    (a fifth), or kept out of an empty port a new bridge could take (a sixth), or out of the free functions of a
    slot a pooled device took (a seventh); and spare ports counted where the main root's empty ones already are the
    spare ports wanted."""
    from pcitopo.solver import solve

    found = minimum(request_, policy)
    assert (found.cost, found.complete) == (cost, True)
    plan = solve(request_, policy)
    assert (plan.cost, evaluate(request_, plan.topology, policy).cost) == (cost, cost)


def test_a_device_preferring_a_node_no_bus_can_have_takes_a_free_bridge_slot() -> None:
    """riscv64 virt has no expander bus, so a device preferring NUMA node 0 misses it wherever it goes: it takes the
    pinned pcie-to-pci-bridge's free hot-pluggable slot (cost 50: the NUMA miss), where it was left out of the free
    slots for its node and integrated (51: no hotplug either, one controller fewer). Found by the enumerator on drawn
    grown requests; it builds a completion of 50 here (its candidate budget spent before it proves the least)."""
    from pcitopo.solver import solve

    request = Topology.build(
        "riscv64-virt",
        numa_nodes=1,
        controllers=[
            Controller(0, "pcie-root"),
            Controller(1, "pcie-root-port", address=_PINNED("0000:00:0d.0"), chassis=1, port=104, hotplug=False),
            Controller(2, "pcie-to-pci-bridge", address=_PINNED("0000:01:00.0")),
        ],
        devices=[Device("r0", "pci-ohci", needs=Needs(hotplug=HotplugNeed.PREFERRED, numa_node=0))],
    )
    policy = attrs.evolve(Policy.named("hotplug"), spare_ports=0)
    found = minimum(request, policy)
    assert found.cost == 50
    plan = solve(request, policy)
    assert (plan.cost, evaluate(request, plan.topology, policy).cost) == (50, 50)
    assert plan.topology.device("r0").address == _PINNED("0000:02:01.0")


@pytest.mark.slow
@settings(max_examples=300)
@given(grown_requests(max_devices=2), POLICIES)
def test_a_grown_request_s_plan_is_called_optimal_only_when_nothing_beats_it_on_hundreds(
    request_: Topology, policy: Policy
) -> None:
    """The same on 300 drawn grown requests and policies."""
    check_status_against_the_enumerator(request_, policy)


def test_conventional_devices_beside_a_root_port_as_its_slot_s_functions() -> None:
    """q35 with one free root slot, three pci-ohci, hotplug: the spare root port at function 0 and the three at
    functions 1..3 of its slot (one controller) is the enumerated minimum."""
    from pcitopo.solver import solve

    request = Topology.build(
        "q35",
        devices=[
            *(Device(f"p{s}", "ich9", address=PciAddress(bus=0, slot=s)) for s in range(1, 30)),
            *(Device(f"o{i}", "pci-ohci") for i in range(3)),
        ],
    )
    policy = Policy.named("hotplug")
    found = minimum(request, policy)
    assert (found.cost, found.complete) == (1, True)
    assert solve(request, policy).cost == 1


@st.composite
def _short_root_buses(draw: st.DrawFn) -> Topology:
    """q35 with one or two free root slots (the others pinned to ICH9 audio) and 1..3 conventional devices, some
    with an IO BAR (ac97: packed on the root bus only, :func:`test_an_io_bar_device_beside_another_on_a_root_slot`)."""
    free = draw(st.integers(1, 2))
    kinds = draw(st.lists(st.sampled_from(["pci-ohci", "ich9", "ac97"]), min_size=1, max_size=3))
    hot = st.sampled_from([HotplugNeed.ANY, HotplugNeed.PREFERRED])
    return Topology.build(
        "q35",
        devices=[
            *(Device(f"p{s}", "ich9", address=PciAddress(bus=0, slot=s)) for s in range(1, 31 - free)),
            *(Device(f"d{i}", kind, needs=Needs(hotplug=draw(hot))) for i, kind in enumerate(kinds)),
        ],
    )


# 2000 draws pass (10 minutes each, 2026-12-02, with and without ac97); 40 here cost about 15 s
@settings(max_examples=40)
@given(_short_root_buses(), POLICIES)
def test_a_short_root_bus_s_port_slots_are_enumerated_alike(request_: Topology, policy: Policy) -> None:
    """On q35 with one or two free root slots the solver's cost is the enumerated minimum (devices beside ports)."""
    check_against_the_enumerator(request_, policy)


def test_a_device_the_tree_leaves_goes_integrated_beside_the_tree_s_root_port() -> None:
    """q35 with one free root slot, a pci-ohci preferring hotplug and one without a need, minimal: the first on a
    pcie-to-pci-bridge behind a root port at 00:1e.0, the second integrated at 00:1e.1 beside it (cost 7: two
    controllers and the first's integrated term), the enumerated minimum; the solver once left the second on the
    tree and called 12 optimal (its layout choice did not count the integrated term)."""
    from pcitopo.solver import solve

    request = Topology.build(
        "q35",
        devices=[
            *(Device(f"p{s}", "ich9", address=PciAddress(bus=0, slot=s)) for s in range(1, 30)),
            Device("d0", "pci-ohci", needs=PREFERRED),
            Device("d1", "pci-ohci", needs=Needs(hotplug=HotplugNeed.ANY)),
        ],
    )
    policy = Policy.named("minimal")
    found = minimum(request, policy, max_added=6)  # 7 added controllers would cost more than 7: proven
    assert (found.cost, found.complete) == (7, True)
    plan = solve(request, policy)
    assert (plan.cost, str(plan.topology.device("d1").address)) == (7, "0000:00:1e.1")


def test_an_io_bar_device_beside_another_on_a_root_slot() -> None:
    """q35 with one free root slot, a pci-ohci and an ac97 (an IO BAR), hotplug-off-occupied, no spare port: the two
    as functions 0 and 1 of the free slot cost 0 (the enumerated minimum; the root bus needs no IO window)."""
    from pcitopo.solver import solve

    request = Topology.build(
        "q35",
        devices=[
            *(Device(f"p{s}", "ich9", address=PciAddress(bus=0, slot=s)) for s in range(1, 30)),
            Device("d0", "pci-ohci", needs=Needs(hotplug=HotplugNeed.ANY)),
            Device("d1", "ac97", needs=Needs(hotplug=HotplugNeed.ANY)),
        ],
    )
    policy = attrs.evolve(Policy.named("hotplug"), spare_ports=0, hotplug_off_occupied=True)
    found = minimum(request, policy)
    assert (found.cost, found.complete) == (0, True)
    assert solve(request, policy).cost == 0


# -- io-reserve=0 under OVMF (issue 11) -----------------------------------------------------------


@pytest.mark.parametrize(
    ("case", "request_", "policy", "cost"),
    [
        (
            # a port for the NIC and a spare port make 10 windows of 9: io-reserve=0 on the NIC's port (2)
            "8 e1000e ports, a virtio-net: its port and a spare, one io-reserve=0",
            ovmf_e1000e_ports(8, Device("v", "virtio-net")),
            "hotplug",
            2 + 2,
        ),
        (
            # nothing is short: io-reserve is never set gratuitously
            "8 e1000e ports, a virtio-net under minimal: integrated, nothing added",
            ovmf_e1000e_ports(8, Device("v", "virtio-net")),
            "minimal",
            0,
        ),
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_io_reserve_off_is_the_enumerated_minimum_under_ovmf(
    case: str, request_: Topology, policy: str, cost: int
) -> None:
    """Near OVMF's 9 IO windows the enumerated minimum (worked out by hand) sets io-reserve=0, as the solver does."""
    found = minimum(request_, Policy.named(policy))
    assert (found.cost, found.complete) == (cost, True)
    check_against_the_enumerator(request_, Policy.named(policy))


def test_a_port_with_hotplug_off_gives_its_window_back_where_io_reserve_costs_more() -> None:
    """9 e1000e ports fill OVMF's windows; a vfio-pci to place, io-reserve-off weighing more than a hotplug miss:
    its port with hotplug off (no window either) beats io-reserve=0, as enumerated.

    Found by the drawn test below (seed 2479250051739021208237979531830200164): the solver tried io-reserve=0 only.
    """
    policy = Policy.from_mapping(
        {"base": "hotplug", "weights": {"io-reserve-off": 64, "hotplug": 24, "fewer-controllers": 41}}
    )
    request = ovmf_e1000e_ports(9, Device("r0", "vfio-pci"))
    check_against_the_enumerator(request, policy)
    from pcitopo.solver import solve

    plan = solve(request, policy)
    placed = plan.topology.device("r0").address
    assert placed is not None
    port = plan.topology.controller(placed.bus)
    # a hotplug miss (24), one port added (41), no spare port (20); with io-reserve=0 instead the solver paid 125
    assert (port.hotplug, port.io_reserve, plan.cost) == (False, None, 24 + 41 + 20)


def test_under_ordered_the_enumerator_tries_new_slots_after_the_pinned_ones() -> None:
    """7 pinned e1000e ports on 00:02.0..00:08.0, an e1000 to place, the NIC names' order dearer than a controller:
    a dmi-to-pci-bridge after them puts it on bus 8, named after the pinned NICs (cost 1). The enumerator put new
    items on the first empty slot only (00:01.0: bus 1, before them), so it found 2 and the drawn test below
    failed with the solver cheaper than its minimum; it now deals items out to the runs of empty slots."""
    policy = Policy.from_mapping({"base": "ordered", "weights": _weights(order=2, fewer_controllers=1)})
    request = ovmf_e1000e_ports(7, Device("r0", "e1000"))
    found = minimum(request, policy)
    assert (found.cost, found.complete) == (1, True)
    assert found.best is not None
    (bridge,) = [c.address for c in found.best.controllers if c.model == "dmi-to-pci-bridge"]
    assert bridge is not None
    assert bridge.slot > 8
    check_against_the_enumerator(request, policy)


@settings(max_examples=20, deadline=None)
@given(st.integers(7, 9), POLICIES, st.data())
def test_the_solver_cost_is_the_enumerated_minimum_near_ovmfs_io_budget(
    pinned: int, policy: Policy, data: st.DataObject
) -> None:
    """q35 under OVMF with 7..9 of its 9 IO windows taken by pinned e1000e ports and one drawn device to place:
    the enumerator tries io-reserve=0 on every new port, and the solver's cost is still its minimum."""
    from pcitopo.strategies import device_requests

    (device,) = data.draw(
        device_requests(machine="q35", min_devices=1, max_devices=1, taken=[f"e{i}" for i in range(9)])
    )
    request = ovmf_e1000e_ports(pinned, device)
    check_against_the_enumerator(request, policy)


# -- the 32-bit MMIO hole (issue 11) -------------------------------------------------------------------------------


def _near_the_hole(firmware: str, extra: Sequence[int], *devices: Device) -> Topology:
    """q35 with bochs-displays pinned on pcie.0 (64 MiB each, then ``extra`` MiB) that leave 3..12 MiB of the
    firmware's 32-bit hole, and ``devices`` to place: each port the plan adds takes 1-2 MiB of what is left."""
    sizes = [64] * (15 if firmware == "seabios" else 14) + list(extra)
    pinned = [
        Device(f"p{i:02}", "bochs", address=PciAddress.parse(f"00:{1 + i:02x}.0"), memory=mib << 20)
        for i, mib in enumerate(sizes)
    ]
    return Topology.build("q35", devices=[*pinned, *devices], firmware=firmware)


@settings(max_examples=20, deadline=None)
@given(
    st.sampled_from(
        [
            ("seabios", (32,)),
            ("seabios", (32, 4)),
            ("seabios", (32, 8)),
            ("ovmf", (32, 16, 8)),
            ("ovmf", (32, 16, 8, 4)),
        ]
    ),
    POLICIES,
    st.data(),
)
def test_the_solver_cost_is_the_enumerated_minimum_near_the_32_bit_hole(
    layout: tuple[str, tuple[int, ...]], policy: Policy, data: st.DataObject
) -> None:
    """q35 with 3..12 MiB of the firmware's 32-bit MMIO hole left and 1-2 drawn devices to place: the enumerator
    (validate's mmio-space rule on every completion) and the solver agree on the cheapest plan that fits."""
    from pcitopo.strategies import device_requests

    firmware, extra = layout
    devices = data.draw(
        device_requests(machine="q35", min_devices=1, max_devices=2, taken=[f"p{i:02}" for i in range(20)])
    )
    check_against_the_enumerator(_near_the_hole(firmware, extra, *devices), policy)


def test_a_port_without_hotplug_makes_a_plan_fit_the_32_bit_hole() -> None:
    """q35 under SeaBIOS with 1 MiB of the 32-bit hole left, a qemu-xhci that must be hot-pluggable and a vfio-pci
    (which pcitopo never integrates): each on a hotplug root port, SeaBIOS's 2 MiB reservations overflow the hole,
    and the solver refused the request (found by Hypothesis). With hotplug off on the vfio-pci's port the plan fits,
    at the 100 its preference costs: the enumerated minimum."""
    request = _near_the_hole(
        "seabios",
        (32, 8),
        Device("r0", "qemu-xhci", needs=Needs(hotplug=HotplugNeed.REQUIRED)),
        Device("r1", "vfio-pci"),
    )
    policy = attrs.evolve(Policy.named("hotplug"), spare_ports=0)
    found = minimum(request, policy)
    assert found.cost == 102
    from pcitopo.solver import solve

    plan = solve(request, policy)
    assert evaluate(request, plan.topology, policy).legal
    assert plan.cost == found.cost
    assert [(c.name, c.hotplug) for c in plan.added] == [("pci.1", None), ("pci.2", False)]
