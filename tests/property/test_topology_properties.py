"""Properties of topologies built by pcitopo.strategies: legal steps validate, one break is caught."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pcitopo.legality.rules import RULES, validate
from pcitopo.strategies import illegal_topologies, legal_topologies, machines
from pcitopo.topology import Topology


@settings(max_examples=60)
@given(legal_topologies())
def test_a_topology_built_only_from_legal_steps_validates(topology: Topology) -> None:
    """Every topology the legal-steps strategy builds passes the validator on every machine."""
    assert validate(topology) == ()


@settings(max_examples=15)
@given(st.data())
@pytest.mark.parametrize("name", ["q35", "pc", "pseries", "aarch64-virt-highmem-off"])
def test_legal_topologies_per_machine_with_numa(name: str, data: st.DataObject) -> None:
    """On each machine family, with NUMA nodes declared, legal steps give a valid topology of that machine."""
    topology = data.draw(legal_topologies(machine=name, max_devices=12, max_controllers=8, numa_nodes=2))
    assert topology.machine.name == name
    assert validate(topology) == ()


@settings(max_examples=20)
@given(legal_topologies(min_devices=4, max_devices=6))
def test_legal_topologies_respect_the_device_count(topology: Topology) -> None:
    """min_devices/max_devices bound the number of endpoints, all of them addressed."""
    assert 4 <= len(topology.devices) <= 6
    assert all(d.address is not None for d in topology.devices)


@settings(max_examples=10)
@given(st.data())
@pytest.mark.parametrize("rule", sorted(RULES))
def test_one_deliberate_break_is_reported_as_that_rule_only(rule: str, data: st.DataObject) -> None:
    """A legal topology with one deliberate break of a rule yields violations of that rule and no other."""
    topology, broken = data.draw(illegal_topologies(rule=rule))
    assert broken == rule
    assert {v.rule for v in validate(topology)} == {rule}


@settings(max_examples=20)
@given(illegal_topologies())
def test_any_break_is_caught(case: tuple[Topology, str]) -> None:
    """Without a rule named, the strategy breaks some rule, and validation reports it."""
    topology, rule = case
    assert rule in {v.rule for v in validate(topology)}


@settings(max_examples=10)
@given(machines())
def test_default_topologies_validate(machine: object) -> None:
    """The default topology of any shipped machine validates."""
    assert validate(Topology.default(machine)) == ()  # type: ignore[arg-type]
