"""A context's layout (``pcitopo.solver._layout``): the shortcuts of its packing search change no decision."""

from __future__ import annotations

import itertools
import random
from typing import Any

import attrs
import pytest

from pcitopo.address import PciAddress
from pcitopo.devices import Device, HotplugNeed, Needs
from pcitopo.errors import PcitopoError
from pcitopo.policy import Policy
from pcitopo.solver import _layout, model, solve
from pcitopo.topology import Topology


def _mixed(machine: str, n: int) -> Topology:
    """``n`` conventional and PCI Express devices in turn (e1000, virtio-net, ich9): trees, ports and packing."""
    kinds = ("e1000", "virtio-net", "ich9")
    return Topology.build(machine, devices=[Device(f"d{i}", kinds[i % 3]) for i in range(n)])


def _short_root(free: int, n: int, kind: str) -> Topology:
    """q35 with ``free`` free root slots (the others pinned to ICH9 audio) and ``n`` devices of ``kind``."""
    pinned = [Device(f"p{s}", "ich9", address=PciAddress(bus=0, slot=s)) for s in range(1, 31 - free)]
    return Topology.build("q35", devices=[*pinned, *(Device(f"d{i}", kind) for i in range(n))])


@pytest.mark.parametrize(
    ("request_", "policy"),
    [
        (_mixed("q35", 300), "hotplug"),
        (_mixed("q35", 300), "minimal"),
        (_mixed("aarch64-virt", 120), "minimal"),
        (_short_root(2, 9, "pci-ohci"), "hotplug"),
        (_short_root(3, 9, "pci-ohci"), "hotplug"),
        (_short_root(5, 40, "pci-ohci"), "hotplug"),
        (_short_root(3, 3, "pci-ohci"), "hotplug"),
    ],
    ids=["q35-300-hotplug", "q35-300-minimal", "virt-120-minimal", "short2", "short3", "short5", "short3-3"],
)
def test_the_root_bus_shortcut_changes_no_decision(
    monkeypatch: pytest.MonkeyPatch, request_: Topology, policy: str
) -> None:
    """Every decision a solve asks for is the same when the packing search also tries the root bus where
    ``_root_takes_no_group`` says no packing can reach it (the layouts it skips); the requests have root buses
    with slots to spare (where packings do reach it) and without."""
    calls: list[tuple[tuple[Any, ...], dict[str, Any], _layout.Decision]] = []
    taken: list[bool] = []
    decide, idle = _layout.decide, _layout._root_takes_no_group

    def recorded(*args: Any, **kwargs: Any) -> _layout.Decision:
        result = decide(*args, **kwargs)
        calls.append((args, kwargs, result))
        return result

    def counted(*args: Any) -> bool:
        taken.append(idle(*args))
        return taken[-1]

    monkeypatch.setattr(model, "decide", recorded)
    monkeypatch.setattr(_layout, "_root_takes_no_group", counted)
    solve(request_, Policy.named(policy))
    assert any(taken), "the shortcut was never taken: this request tests nothing"
    monkeypatch.setattr(_layout, "_root_takes_no_group", lambda *args: False)
    for args, kwargs, result in calls:
        assert decide(*args, **kwargs) == result, (args[0].label, kwargs)


def _figures(laid: _layout.Decision | _layout._Laid) -> object:
    """A layout as a comparable value: a Decision, or a _Laid's figures and the Decision it builds."""
    if isinstance(laid, _layout.Decision):
        return laid
    return (*laid[:5], *laid[6:], laid.decision())


@pytest.mark.parametrize(
    ("request_", "policy"),
    [
        (_mixed("q35", 300), "hotplug"),
        (_mixed("aarch64-virt", 120), "minimal"),
        (_short_root(3, 9, "pci-ohci"), "hotplug"),
        (_short_root(5, 40, "pci-ohci"), "hotplug"),
    ],
    ids=["q35-300-hotplug", "virt-120-minimal", "short3", "short5"],
)
def test_the_memo_of_a_decision_changes_no_layout(
    monkeypatch: pytest.MonkeyPatch, request_: Topology, policy: str
) -> None:
    """Every layout the packing search lays out with its memo (preparations and arrangements shared by the
    layouts of one decision) is the layout laid out afresh without one; every decision of the model is asked
    for (a solve lays out only those its bound cannot rule out)."""
    calls: list[tuple[tuple[Any, ...], object]] = []
    layout = _layout._layout_pcie

    def recorded(*args: Any) -> _layout.Decision | _layout._Laid:
        result = layout(*args)
        if len(args) > 9 and args[9] is not None:
            calls.append((args[:9], _figures(result)))
        return result

    monkeypatch.setattr(_layout, "_layout_pcie", recorded)
    chosen = Policy.named(policy)
    problem = model.formulate(request_, chosen, model.build_units(request_, chosen))
    names = [v.name for v in problem.variables]
    for combo in itertools.islice(itertools.product(*(v.domain for v in problem.variables)), 200):
        values = dict(zip(names, combo, strict=True))
        for ctx_id in problem.context_variables:
            problem.decision(ctx_id, values)
    assert len(calls) > 20, "the memo was hardly used: this request tests nothing"
    for args, figures in calls:
        assert _figures(layout(*args)) == figures, (args[0].label, args[8])


def _random_request(rng: random.Random) -> tuple[Topology, Policy]:
    """A random mix of PCI Express and conventional endpoints, each with a random hotplug need, on q35 (some with
    pinned root slots or NUMA nodes) or aarch64-virt, under a random policy."""
    machine = rng.choice(("q35", "q35", "aarch64-virt"))
    kinds = ["virtio-net", "nvme", "virtio-blk", "e1000e", "pci-ohci", "i6300esb", "virtio-crypto"]
    kinds += ["e1000", "ich9"] if machine == "q35" else []
    needs = list(HotplugNeed)
    numa = rng.choice((0, 0, 2)) if machine == "q35" else 0
    pinned = rng.choice((0, 0, 10, 24)) if machine == "q35" else 0
    devices = [Device(f"p{s}", "ich9", address=PciAddress(bus=0, slot=s)) for s in range(1, 1 + pinned)]
    for i in range(rng.choice((5, 40, 120, 400))):
        hotplug = rng.choice(needs)
        node = rng.randrange(numa) if numa and rng.random() < 0.5 else None
        devices.append(Device(f"d{i}", rng.choice(kinds), needs=Needs(hotplug=hotplug, numa_node=node)))
    policy = Policy.named(rng.choice(("hotplug", "minimal", "hotplug+ordered", "hotplug+numa")))
    changes: dict[str, Any] = {
        "prefer_integrated": rng.random() < 0.3,
        "port_packing": rng.choice(("multifunction", "multifunction", "single")),
        "allow_switches": rng.random() < 0.8,
    }
    return Topology.build(machine, devices=devices, numa_nodes=numa), attrs.evolve(policy, **changes)


def test_the_pcie_cost_floor_never_exceeds_a_layouts_cost() -> None:
    """The floor of a PCI Express context's cost (hotplug misses, spare ports and the controllers' relaxation,
    ``_layout.pcie_cost_floor``) is at most the cost of the layout ``decide`` makes, for every context's
    decisions of random requests: the search prunes assignments by it without laying them out, so a floor above
    a layout's cost would lose a plan (and the proof of optimality with it)."""
    rng = random.Random(20261203)
    checked = tight = above_misses = 0
    for _ in range(200):
        request, policy = _random_request(rng)
        try:
            problem = model.formulate(request, policy, model.build_units(request, policy))
        except PcitopoError:
            continue
        names = [v.name for v in problem.variables]
        domains = [v.domain for v in problem.variables]
        for _ in range(40):
            values = {name: rng.choice(domain) for name, domain in zip(names, domains, strict=True)}
            for ctx_id in problem.context_variables:
                key = problem._scope_key(ctx_id, values)
                if key is None or problem.contexts[ctx_id].root_kind is not _layout.RootKind.PCIE:
                    continue
                decision = problem.decision(ctx_id, values)
                if decision is None or not decision.feasible:
                    continue
                floor = problem._context_floor(ctx_id, values, key)
                cost = problem.context_cost(ctx_id, decision, values)
                assert floor <= cost, (request.machine.name, policy.name, values, ctx_id, floor, cost)
                checked += 1
                tight += floor == cost
                above_misses += floor > problem._context_floor(ctx_id, values, key, refined=False)
    # the floor bounds the controllers too, not just the misses: above the misses' floor in most layouts, and
    # the cost itself in some
    assert checked > 2000, checked
    assert above_misses > checked // 2, (checked, above_misses)
    assert tight > checked // 20, (checked, tight)
