"""The CSP backend (``pcitopo.solver.backends``): the hotplug-off trial's bound skips only trials it cannot take."""

from __future__ import annotations

from typing import Any

import attrs

from pcitopo.devices import Controller, Device
from pcitopo.policy import Policy
from pcitopo.solver import backends, solve
from pcitopo.topology import Topology
from tests.support.firmware import ovmf_e1000e_ports


def _mixed(machine: str, n: int, **kwargs: Any) -> Topology:
    """``n`` e1000, virtio-net and ich9 in turn: more ports than the firmware has IO windows for."""
    kinds = ("e1000", "virtio-net", "ich9")
    return Topology.build(machine, devices=[Device(f"d{i}", kinds[i % 3]) for i in range(n)], **kwargs)


def test_the_hotplug_off_bound_changes_no_trial() -> None:
    """Each hotplug-off trial run by a solve returns the same plan and score without the bound on what a port's
    hotplug can save, on requests where the bound skips trials and where a trial is taken, ordered policies among
    them."""
    cheap_hotplug = Policy.from_mapping(
        {"base": "hotplug", "weights": {"io-reserve-off": 64, "hotplug": 24, "fewer-controllers": 41}}
    )
    requests = [
        (ovmf_e1000e_ports(9, Device("r0", "vfio-pci")), cheap_hotplug),
        (ovmf_e1000e_ports(8, Device("r0", "vfio-pci"), Device("v0", "virtio-net")), cheap_hotplug),
        (ovmf_e1000e_ports(8, Device("r0", "vfio-pci"), Device("v0", "virtio-net")), Policy.named("hotplug")),
        (_mixed("aarch64-virt", 60), Policy.named("hotplug")),
        (_mixed("q35", 120, firmware="ovmf"), Policy.named("minimal")),
        (_mixed("q35", 60, firmware="ovmf"), attrs.evolve(Policy.named("hotplug"), spare_ports=0)),
        # ordered: the NIC names' order term may move with a port's hotplug, by its weight at most
        (_mixed("q35", 60, firmware="ovmf"), Policy.named("hotplug+ordered")),
        (_mixed("q35", 120, firmware="ovmf"), Policy.named("minimal+ordered")),
    ]
    original: Any = backends._hotplug_off_where_cheaper
    calls: list[tuple[tuple[Any, ...], tuple[Topology, int | None]]] = []
    skipped = {False: 0, True: 0}  # by whether the policy is ordered
    ordered = [False]

    def recorded(*args: Any) -> tuple[Topology, int | None]:
        gain = args[-1]
        assert gain is not None

        def counted(best: Topology, port: Controller) -> int | None:
            most: int | None = gain(best, port)
            skipped[ordered[0]] += most is not None and most <= 0
            return most

        result: tuple[Topology, int | None] = original(*args[:-1], counted)
        calls.append((args, result))
        return result

    backends._hotplug_off_where_cheaper = recorded  # type: ignore[assignment]
    try:
        for request, policy in requests:
            ordered[0] = policy.ordered
            solve(request, policy)
    finally:
        backends._hotplug_off_where_cheaper = original
    taken = 0
    for args, (topology, scored) in calls:
        unfitted, fitted, keep, required, score, _gain = args
        taken += topology is not fitted
        assert original(unfitted, fitted, keep, required, score, None) == (topology, scored)
    assert skipped[False], "the bound skipped no trial"
    assert skipped[True], "the bound skipped no trial under an ordered policy"
    assert taken, "no trial was taken"
