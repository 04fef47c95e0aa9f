"""Unit tests for pcitopo.qemu.probe: facts to descriptions, descriptions to TOML (no QEMU needed)."""

from __future__ import annotations

import re
import tomllib
from typing import Any

import attrs
import pytest

from pcitopo.address import PciAddress
from pcitopo.legality.machine import Machine, machines
from pcitopo.qemu.probe import ProbedDevice, ProbeFacts, describe, machine_to_toml

A = PciAddress.parse
X86_TYPES = {"pcie-root-port", "ioh3420", "x3130-upstream", "xio3130-downstream", "pcie-pci-bridge"}
X86_TYPES |= {"pci-bridge", "i82801b11-bridge", "pxb", "pxb-pcie", "e1000"}


def q35_facts(**changes: Any) -> ProbeFacts:
    facts = ProbeFacts(
        binary="/usr/bin/qemu-system-x86_64",
        version="7.2.22",
        arch="x86_64",
        machine_type="q35",
        resolved="pc-q35-7.2",
        alias="q35",
        host_bridge="q35-pcihost",
        root_bus_name="pcie.0",
        pcie=True,
        root_hotplug=False,
        builtins=(
            ProbedDevice(A("00:00.0"), "mch"),
            ProbedDevice(A("00:1f.0"), "ICH9-LPC", True),
            ProbedDevice(A("00:1f.2"), "ich9-ahci", True),
            ProbedDevice(A("00:1f.3"), "ICH9-SMB", True),
        ),
        device_types=X86_TYPES,
    )
    return attrs.evolve(facts, **changes)


def _keys(text: str) -> list[str]:
    """Top-level keys and table headers of a TOML text, in order."""
    return [m.group(1) for m in re.finditer(r"^(\[\[?[\w-]+\]\]?|[\w-]+) =?", text, re.MULTILINE)]


@pytest.mark.parametrize("name", sorted(machines()))
def test_toml_round_trip(name: str) -> None:
    """Every shipped description written as TOML reads back equal, preferred addresses included."""
    machine = Machine.named(name)
    back = Machine.from_data("t", tomllib.loads(machine_to_toml(machine)))
    assert back == machine
    assert back.preferred == machine.preferred


@pytest.mark.parametrize("name", sorted(machines()))
def test_toml_has_the_shipped_key_order(name: str) -> None:
    """The written description has the shipped file's keys, in the shipped file's order."""
    machine = Machine.named(name)
    shipped = (
        __import__("importlib.resources", fromlist=["files"])
        .files("pcitopo.legality")
        .joinpath(f"data/machines/{name}.toml")
        .read_text()
    )
    assert _keys(machine_to_toml(machine)) == _keys(shipped)


def test_describe_q35_with_base_equals_shipped() -> None:
    """Probed q35 facts completed by the shipped description give exactly the shipped description."""
    assert describe(q35_facts(), base=Machine.named("q35")) == Machine.named("q35")


def test_describe_q35_without_base() -> None:
    """Without a base, names and budgets are what the probe alone can say."""
    m = describe(q35_facts())
    assert (m.name, m.machine_types, m.arches, m.root_bus_name, m.pcie) == (
        "x86_64-q35",
        ("q35", "pc-q35-7.2"),
        ("x86_64",),
        "pcie.0",
        True,
    )
    assert (m.io_windows, m.preferred, m.root_qemu) == (None, {}, None)
    assert [(str(b.address), b.name, b.qemu_device, b.multifunction) for b in m.builtins] == [
        ("0000:00:00.0", "mch", "mch", False),
        ("0000:00:1f.0", "ich9-lpc", "ICH9-LPC", True),
        ("0000:00:1f.2", "ich9-ahci", "ich9-ahci", True),
        ("0000:00:1f.3", "ich9-smb", "ICH9-SMB", True),
    ]
    assert set(m.controllers) == set(Machine.named("q35").controllers)


@pytest.mark.parametrize(
    ("missing", "gone"),
    [
        # no pxb-pcie in the binary: no PCIe expander bus
        ({"pxb-pcie"}, {"pcie-expander-bus"}),
        # no root ports at all: nothing that hangs below them either
        (
            {"pcie-root-port", "ioh3420"},
            {"pcie-root-port", "pcie-switch-upstream-port", "pcie-switch-downstream-port", "pcie-to-pci-bridge"},
        ),
        # ioh3420 alone still makes root ports available
        ({"pcie-root-port"}, set()),
        # without the DMI bridge, pci-bridge is still reachable through pcie-pci-bridge
        ({"i82801b11-bridge"}, {"dmi-to-pci-bridge"}),
    ],
)
def test_offered_controllers_follow_the_binary(missing: set[str], gone: set[str]) -> None:
    """A controller is offered when the binary has its device and it can plug in below the root bus."""
    m = describe(q35_facts(device_types=X86_TYPES - missing))
    assert set(Machine.named("q35").controllers) - set(m.controllers) == gone


def test_conventional_root_offers_no_pcie_ports() -> None:
    """On a PCI root bus, PCIe ports are not offered even when the binary has them (pc)."""
    facts = q35_facts(
        machine_type="pc",
        resolved="pc-i440fx-7.2",
        alias="pc",
        host_bridge="i440FX-pcihost",
        root_bus_name="pci.0",
        pcie=False,
        root_hotplug=True,
        builtins=(
            ProbedDevice(A("00:00.0"), "i440FX"),
            ProbedDevice(A("00:01.0"), "PIIX3", True),
            ProbedDevice(A("00:01.1"), "piix3-ide"),
            ProbedDevice(A("00:01.3"), "PIIX4_PM"),
        ),
    )
    assert describe(facts, base=Machine.named("pc")) == Machine.named("pc")
    assert describe(facts).controllers == ("pci-bridge", "pci-expander-bus")


def test_pseries_host_bridge_is_the_root_and_offered() -> None:
    """A host bridge that is a catalog model becomes root-qemu and is offered as an extra controller."""
    facts = q35_facts(
        binary="/usr/bin/qemu-system-ppc64",
        arch="ppc64",
        machine_type="pseries",
        resolved="pseries-7.2",
        alias="pseries",
        host_bridge="spapr-pci-host-bridge",
        root_bus_name="pci.0",
        pcie=False,
        root_hotplug=True,
        builtins=(),
        device_types=(X86_TYPES - {"pxb", "pxb-pcie"}) | {"spapr-pci-host-bridge"},
    )
    assert describe(facts, base=Machine.named("pseries")) == Machine.named("pseries")
    m = describe(facts)
    assert (m.root_qemu, m.controllers) == ("spapr-pci-host-bridge", ("spapr-pci-host-bridge", "pci-bridge"))


def test_optional_builtins_come_from_base() -> None:
    """A base's optional built-in that -nodefaults left out is kept, and marked as not probed."""
    facts = q35_facts(
        machine_type="pc",
        resolved="pc-i440fx-7.2",
        alias="pc",
        host_bridge="i440FX-pcihost",
        root_bus_name="pci.0",
        pcie=False,
        root_hotplug=True,
        builtins=(ProbedDevice(A("00:00.0"), "i440FX"),),
    )
    base = Machine.named("pc")
    m = describe(facts, base=base)
    assert [b.name for b in m.builtins] == ["i440fx", "usb"]
    assert "optional = true  # from base pc.toml, not probed" in machine_to_toml(m, base=base)


def test_unknown_machine_type_pattern_is_added() -> None:
    """A resolved machine type the base's patterns miss is appended to machine-types."""
    m = describe(q35_facts(alias=None, resolved="q35-custom", machine_type="q35-custom"), base=Machine.named("q35"))
    assert m.machine_types == ("q35", "pc-q35-*", "q35-custom")


def test_values_from_base_are_marked() -> None:
    """With a base, every value the probe cannot know carries a comment saying so."""
    base = Machine.named("q35")
    text = machine_to_toml(describe(q35_facts(), base=base), base=base, header="probed from qemu 7.2.22")
    lines = text.splitlines()
    assert lines[0] == "# probed from qemu 7.2.22"
    marked = sorted(line.split(" ")[0] for line in lines if line.endswith("# from base q35.toml, not probed"))
    assert marked == sorted(
        [
            "bus-numbers",
            "description",
            "description",
            "description",
            "description",
            "description",
            "firmware",
            "name",
            "name",
            "name",
            "name",
            "stands-for",
            "unique-bridge-chassis",
            "[preferred]",
            "[libvirt]",
            "[one-per-guest]",
        ]
    )
    assert 'root-bus-name = "pcie.0"' in lines
