"""Violations: text, ordering, JSON form."""

from __future__ import annotations

import pickle

import pytest

from pcitopo import violation
from pcitopo.address import PciAddress
from pcitopo.violation import Violation


def test_str_names_the_rule() -> None:
    """str() is the message followed by the rule id."""
    v = Violation("unique-address", "0000:00:03.0 is wanted by 'net0' and 'disk1'", devices=("net0", "disk1"))
    assert str(v) == "0000:00:03.0 is wanted by 'net0' and 'disk1' (rule: unique-address)"


def test_devices_accept_any_iterable() -> None:
    """The device ids are stored as a tuple whatever iterable came."""
    assert Violation("r", "m", devices=["a", "b"]).devices == ("a", "b")
    assert Violation("r", "m", devices=iter(["c"])).devices == ("c",)


def test_order_ignores_the_address() -> None:
    """Violations sort by rule, then message, then devices; the address does not take part."""
    a = Violation("b-rule", "m", address=PciAddress(slot=1))
    b = Violation("a-rule", "z")
    c = Violation("a-rule", "m", devices=("x",), address=PciAddress(slot=9))
    assert sorted([a, b, c]) == [c, b, a]


def test_as_dict() -> None:
    """as_dict() is JSON-ready: the address as text, devices as a list."""
    v = Violation("port-slot", "m", devices=("net0",), address=PciAddress.parse("01:03.0"))
    assert v.as_dict() == {"rule": "port-slot", "message": "m", "devices": ["net0"], "address": "0000:01:03.0"}
    assert Violation("r", "m").as_dict()["address"] is None


def test_frozen_and_pickles() -> None:
    """A violation is immutable and survives pickling."""
    v = Violation("r", "m", devices=("a",), address=PciAddress(slot=2))
    with pytest.raises(AttributeError):
        v.rule = "other"  # type: ignore[misc]
    assert pickle.loads(pickle.dumps(v)) == v


def test_public_names() -> None:
    """The module exports exactly Violation."""
    assert dir(violation) == ["Violation"]
