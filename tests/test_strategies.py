"""pcitopo.strategies: arguments are checked when a strategy is built, with uniform messages."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis.errors import InvalidArgument

from pcitopo import strategies
from pcitopo.address import PciAddress
from pcitopo.legality.catalog import Catalog, Connect
from pcitopo.legality.machine import Machine
from pcitopo.strategies import device_kinds, illegal_topologies, legal_topologies, machines, pci_addresses

INVALID: list[tuple[Callable[[], object], str]] = [
    (lambda: machines(names=["q35", "vax"]), "names contains unknown machine 'vax'; known: "),
    (lambda: machines(names=[]), "names=[] leaves no machine to draw"),
    (lambda: machines(names="q35"), "names='q35' must be a collection of machine names, not one string"),
    (lambda: pci_addresses(min_slot=2, max_slot=1), "Cannot have max_slot=1 < min_slot=2"),
    (lambda: pci_addresses(max_slot=32), "max_slot=32 must be in 0..31"),
    (lambda: pci_addresses(min_bus=-1), "min_bus=-1 must be in 0..255"),
    (lambda: pci_addresses(max_function=1.5), "max_function=1.5 must be an int (got a float)"),  # type: ignore[arg-type]
    (lambda: device_kinds(machine="vax"), "machine='vax': unknown machine 'vax'"),
    (lambda: device_kinds(connect="pcie"), "connect='pcie' is not a connect type; known: pci-device, "),
    (
        lambda: device_kinds(machine="pc", connect=Connect.PCIE_DEVICE),
        "no device kind connects as a PCI Express device on pc",
    ),
    (lambda: device_kinds(connect="pcie-root-port"), "no device kind connects as a pcie-root-port"),
    (lambda: legal_topologies(min_devices=3, max_devices=2), "Cannot have max_devices=2 < min_devices=3"),
    (lambda: legal_topologies(max_controllers=-1), "max_controllers=-1 must be in 0..254"),
    (lambda: legal_topologies(numa_nodes=True), "numa_nodes=True must be an int (got a bool)"),
    (lambda: legal_topologies(machine=3), "machine=3 must be a Machine, a machine name or None"),  # type: ignore[arg-type]
    (
        lambda: legal_topologies(machine="pc", controller_models=["pcie-root-port"]),
        "controller_models: pc does not offer 'pcie-root-port'",
    ),
    (
        lambda: legal_topologies(controller_models=["pcie-rot-port"]),
        "controller_models: unknown controller model 'pcie-rot-port'; did you mean 'pcie-root-port'?",
    ),
    (
        lambda: strategies.policies(weights=True, min_weight={"speed": 1}),
        "min_weight names 'speed', which is not a soft constraint",
    ),
    (lambda: strategies.policies(max_spare_ports=-1), "max_spare_ports=-1 must be in 0..64"),
    (
        lambda: illegal_topologies(rule="unique-slot"),
        "rule='unique-slot' is not a rule id; known: bus-group, bus-numbers, ",
    ),
]


@pytest.mark.parametrize(("make", "message"), INVALID)
def test_bad_arguments_are_refused_when_the_strategy_is_built(make: Callable[[], object], message: str) -> None:
    """Each bad argument raises InvalidArgument at once, saying what is wrong."""
    with pytest.raises(InvalidArgument) as info:
        make()
    assert str(info.value).startswith(message)


@given(machines(names=["pseries", "pc"]))
def test_machines_draws_only_the_names_given(machine: Machine) -> None:
    """machines(names=...) draws only those shipped machines."""
    assert machine.name in {"pseries", "pc"}


@given(pci_addresses(max_domain=0, min_bus=1, max_bus=3, max_slot=0))
def test_pci_addresses_respect_their_bounds(address: PciAddress) -> None:
    """Every field of a drawn address lies within its bounds."""
    assert address.domain == 0
    assert 1 <= address.bus <= 3
    assert address.slot == 0


@given(device_kinds(machine="q35", connect="pcie-device"))
def test_device_kinds_filter_by_connect_type(kind: str) -> None:
    """device_kinds(connect=...) draws kinds that connect that way on the machine."""
    assert Catalog.default().device(kind).connect_on(pcie=True) is Connect.PCIE_DEVICE


@settings(max_examples=10)
@given(legal_topologies(machine="q35", max_devices=0, max_controllers=6, controller_models=["pcie-root-port"]))
def test_controller_models_limit_what_is_added(topology: object) -> None:
    """controller_models restricts the controllers a legal topology adds, and max_devices=0 adds no device."""
    assert {c.model for c in topology.controllers[1:]} <= {"pcie-root-port"}  # type: ignore[attr-defined]
    assert topology.devices == ()  # type: ignore[attr-defined]


def test_shrinks_toward_the_default_topology() -> None:
    """The smallest legal topology is the machine's default one."""
    from hypothesis import find

    smallest = find(legal_topologies(machine="pc"), lambda t: True)
    assert smallest.devices == ()
    assert [c.model for c in smallest.controllers] == ["pci-root"]


def test_strategies_repr_shows_how_they_were_built() -> None:
    """A strategy's repr names the call that built it."""
    assert repr(legal_topologies(machine="q35", max_devices=3)).startswith("_legal_topologies(machine='q35', ")


def test_public_names() -> None:
    """The module exports its topology strategies (and whatever later strategies list in __all__)."""
    assert dir(strategies) == strategies.__all__
    assert {"device_kinds", "illegal_topologies", "legal_topologies", "machines", "pci_addresses"} <= set(
        dir(strategies)
    )


@settings(max_examples=30)
@given(strategies.policies(weights=True, min_weight={"fewer-controllers": 1}, max_spare_ports=1))
def test_policies_draw_weights_within_their_bounds(policy: object) -> None:
    """With ``weights=True`` every soft constraint gets an integer weight in 0..120, above the floors given."""
    from pcitopo.policy import Policy
    from pcitopo.policy.policy import SOFT_CONSTRAINTS

    assert isinstance(policy, Policy)
    assert set(policy.weights) == set(SOFT_CONSTRAINTS)
    assert all(0 <= w <= 120 for w in policy.weights.values())
    assert policy.weights["fewer-controllers"] >= 1
    assert policy.spare_ports <= 1
