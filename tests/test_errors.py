"""Errors: one root, builtin mixins, messages, and pickling of every class."""

from __future__ import annotations

import pickle

import pytest

from pcitopo import errors
from pcitopo.errors import (
    DuplicateId,
    InternalError,
    InvalidAddress,
    InvalidDescription,
    InvalidDomainXML,
    InvalidInput,
    InvalidPolicy,
    InvalidTopology,
    PcitopoError,
    UnknownName,
    Unsatisfiable,
)
from pcitopo.violation import Violation

V1 = Violation("unique-address", "0000:00:03.0 is wanted by 'a' and 'b'", devices=("a", "b"))
V2 = Violation("port-slot", "'c' at 0000:01:03.0: slot must be 0", devices=("c",))

ERRORS: list[tuple[PcitopoError, type[Exception], str]] = [
    (
        InvalidAddress(
            "invalid PCI address: slot must be in 0x00..0x1f (got 0x20)", field="slot", value=32, minimum=0, maximum=31
        ),
        ValueError,
        "invalid PCI address: slot must be in 0x00..0x1f (got 0x20)",
    ),
    (
        UnknownName("controller model", "pcie-rot-port", ["pcie-root-port", "pci-bridge"]),
        LookupError,
        "unknown controller model 'pcie-rot-port'; did you mean 'pcie-root-port'?",
    ),
    (
        UnknownName("machine", "vax", ["q35", "pc"], where="arch vax"),
        LookupError,
        "unknown machine 'vax' (arch vax); known: pc, q35",
    ),
    (InvalidDescription("my.toml", "builtin[0].address", "bad"), ValueError, "my.toml: builtin[0].address: bad"),
    (InvalidDescription("my.toml", "", "not valid TOML"), ValueError, "my.toml: not valid TOML"),
    (InvalidInput("device 'net0'", "duplicate id"), ValueError, "device 'net0': duplicate id"),
    (InvalidInput("", "no devices"), ValueError, "no devices"),
    (
        InvalidDomainXML("/domain/devices/controller[3]", "a PCI controller needs a model", source="vm.xml", line=12),
        ValueError,
        "vm.xml:12: /domain/devices/controller[3]: a PCI controller needs a model",
    ),
    (InvalidDomainXML("", "malformed XML: bad", source="vm.xml", line=3), ValueError, "vm.xml:3: malformed XML: bad"),
    (InvalidDomainXML("/domain", "no <devices>", source="vm.xml"), ValueError, "vm.xml: /domain: no <devices>"),
    (InvalidDomainXML("/domain", "no <devices>", line=2), ValueError, "line 2: /domain: no <devices>"),
    (InvalidDomainXML("/domain", "no <devices>"), ValueError, "/domain: no <devices>"),
    (
        InvalidPolicy("site.toml", "device[1].hotplug", "must be one of required, preferred, forbidden"),
        ValueError,
        "site.toml: device[1].hotplug: must be one of required, preferred, forbidden",
    ),
    (InvalidPolicy("site.toml", "", "not valid TOML"), ValueError, "site.toml: not valid TOML"),
    (
        DuplicateId("net0", "/domain/devices/interface[1]", "/domain/devices/interface[2]", source="vm.xml", line=9),
        ValueError,
        "vm.xml:9: id 'net0' is used by /domain/devices/interface[1] and /domain/devices/interface[2]",
    ),
    (
        DuplicateId("net0", "device 'net0'", "controller index 3"),
        ValueError,
        "id 'net0' is used by device 'net0' and controller index 3",
    ),
    (
        InternalError("the solver produced a plan that breaks rules", [V2]),
        RuntimeError,
        "internal error: the solver produced a plan that breaks rules\n"
        "  - 'c' at 0000:01:03.0: slot must be 0 (rule: port-slot)",
    ),
    (
        InvalidTopology([V1, V2]),
        ValueError,
        "2 rule violations:\n"
        "  - 0000:00:03.0 is wanted by 'a' and 'b' (rule: unique-address)\n"
        "  - 'c' at 0000:01:03.0: slot must be 0 (rule: port-slot)",
    ),
    (InvalidTopology([V2]), ValueError, "1 rule violation:\n  - 'c' at 0000:01:03.0: slot must be 0 (rule: port-slot)"),
    (
        Unsatisfiable(
            ["'gpu' needs NUMA node 1", "no expander bus is on node 1"],
            facts=["2 nodes"],
            suggestions=["add a pxb-pcie"],
        ),
        ValueError,
        "no placement satisfies these requirements together:\n"
        "  - 'gpu' needs NUMA node 1\n"
        "  - no expander bus is on node 1\n"
        "facts: 2 nodes\n"
        "would help: add a pxb-pcie",
    ),
]


@pytest.mark.parametrize(("error", "builtin", "message"), ERRORS, ids=[type(e[0]).__name__ for e in ERRORS])
def test_message_and_kind(error: PcitopoError, builtin: type[Exception], message: str) -> None:
    """Every error is a PcitopoError and a builtin of its kind, with its message as str()."""
    assert isinstance(error, PcitopoError)
    assert isinstance(error, builtin)
    assert str(error) == message


@pytest.mark.parametrize(("error", "builtin", "message"), ERRORS, ids=[type(e[0]).__name__ for e in ERRORS])
def test_pickling_round_trip(error: PcitopoError, builtin: type[Exception], message: str) -> None:
    """Every error class pickles and comes back with the same message and structured fields."""
    again = pickle.loads(pickle.dumps(error))
    assert type(again) is type(error)
    assert str(again) == message
    fields = {k: v for k, v in vars(error).items() if not k.startswith("_")}
    assert {k: v for k, v in vars(again).items() if not k.startswith("_")} == fields


def test_unknown_name_lists_known_names_when_nothing_is_close() -> None:
    """Without a close match, an unknown name lists up to twelve known names."""
    error = UnknownName("device kind", "zzz", [f"k{i:02d}" for i in range(14)])
    assert str(error).endswith("; known: k00, k01, k02, k03, k04, k05, k06, k07, k08, k09, k10, k11, ...")
    assert error.known[0] == "k00"


@pytest.mark.parametrize(
    ("name", "hint"),
    [
        ("q53", "'q35'"),  # swapped pair
        ("q3", "'q35'"),  # prefix
        ("pcc", "'pc'"),  # one insertion
    ],
)
def test_unknown_name_suggests_close_names(name: str, hint: str) -> None:
    """A name one edit away from a known one is suggested."""
    assert str(UnknownName("machine", name, ["q35", "pc"])).endswith(f"did you mean {hint}?")


@pytest.mark.parametrize(
    "error",
    [
        InvalidDomainXML("/domain", "x", source="a.xml", line=1),
        InvalidPolicy("p.toml", "k", "x"),
        DuplicateId("a", "b", "c"),
    ],
    ids=lambda e: type(e).__name__,
)
def test_input_errors_are_invalid_input(error: InvalidInput) -> None:
    """The split input errors stay InvalidInput, so older ``except InvalidInput`` clauses still catch them."""
    assert isinstance(error, InvalidInput)
    assert error.reason == "x" or error.reason.startswith("id 'a'")


def test_internal_error_is_not_bad_input() -> None:
    """An internal error is not an input error: nothing catches it as InvalidInput."""
    assert not isinstance(InternalError("x"), InvalidInput)


def test_invalid_topology_as_exception_group() -> None:
    """InvalidTopology converts to an ExceptionGroup with one PcitopoError per violation."""
    group = InvalidTopology([V1, V2]).as_exception_group()
    assert isinstance(group, ExceptionGroup)
    assert [str(e) for e in group.exceptions] == [str(V1), str(V2)]
    assert all(isinstance(e, PcitopoError) for e in group.exceptions)


def test_public_names() -> None:
    """The module exports exactly the error classes."""
    assert dir(errors) == [
        "DuplicateId",
        "InternalError",
        "InvalidAddress",
        "InvalidDescription",
        "InvalidDomainXML",
        "InvalidInput",
        "InvalidPolicy",
        "InvalidTopology",
        "PcitopoError",
        "UnknownName",
        "Unsatisfiable",
    ]
