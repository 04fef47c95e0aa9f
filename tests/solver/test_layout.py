"""A context's layout (``pcitopo.solver._layout``): the shortcuts of its packing search change no decision."""

from __future__ import annotations

from typing import Any

import pytest

from pcitopo.address import PciAddress
from pcitopo.devices import Device
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
    layouts of one decision) is the layout laid out afresh without one."""
    calls: list[tuple[tuple[Any, ...], object]] = []
    layout = _layout._layout_pcie

    def recorded(*args: Any) -> _layout.Decision | _layout._Laid:
        result = layout(*args)
        if len(args) > 9 and args[9] is not None:
            calls.append((args[:9], _figures(result)))
        return result

    monkeypatch.setattr(_layout, "_layout_pcie", recorded)
    solve(request_, Policy.named(policy))
    assert len(calls) > 20, "the memo was hardly used: this request tests nothing"
    for args, figures in calls:
        assert _figures(layout(*args)) == figures, (args[0].label, args[8])
