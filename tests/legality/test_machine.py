"""Machine descriptions: every shipped one loads; bad files name the file and the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from pcitopo.address import PciAddress
from pcitopo.errors import InvalidDescription, UnknownName
from pcitopo.legality import machine as machine_module
from pcitopo.legality.machine import Machine, machines
from pcitopo.topology import Topology

DATA = Path(__file__).parent / "data"

SHIPPED = [
    # name, root model, root bus, PCIe, bus numbers, built-in addresses
    ("q35", "pcie-root", "pcie.0", True, 256, ["00:00.0", "00:1f.0", "00:1f.2", "00:1f.3"]),
    ("pc", "pci-root", "pci.0", False, 256, ["00:00.0", "00:01.0", "00:01.1", "00:01.2", "00:01.3"]),
    ("aarch64-virt", "pcie-root", "pcie.0", True, 256, ["00:00.0"]),
    ("aarch64-virt-highmem-off", "pcie-root", "pcie.0", True, 16, ["00:00.0"]),
    ("riscv64-virt", "pcie-root", "pcie.0", True, 256, ["00:00.0"]),
    ("pseries", "pci-root", "pci.0", False, 256, []),
]


@pytest.mark.parametrize(("name", "root", "bus", "pcie", "numbers", "builtins"), SHIPPED)
def test_every_shipped_machine_loads(
    name: str, root: str, bus: str, pcie: bool, numbers: int, builtins: list[str]
) -> None:
    """Each shipped machine has its root bus, PCIe flag, bus-number limit and built-ins (qemu-rules §5)."""
    m = Machine.named(name)
    assert (m.name, m.root_model, m.root_bus_name, m.pcie, m.bus_numbers) == (name, root, bus, pcie, numbers)
    assert [b.address for b in m.builtins] == [PciAddress.parse(a) for a in builtins]
    assert m.root.name == root
    assert all(m.catalog.controller(c) for c in m.controllers)


def test_the_shipped_machines() -> None:
    """machines() lists every shipped description by name."""
    assert sorted(machines()) == sorted(row[0] for row in SHIPPED)


@pytest.mark.parametrize(
    ("name", "offered", "missing"),
    [
        ("q35", "pcie-expander-bus", "pci-expander-bus"),
        ("pc", "pci-expander-bus", "pcie-root-port"),
        ("riscv64-virt", "pcie-root-port", "pcie-expander-bus"),
        ("pseries", "spapr-pci-host-bridge", "pcie-root-port"),
    ],
)
def test_offers(name: str, offered: str, missing: str) -> None:
    """Which controller models a machine offers comes from its file (qemu-rules §1.2 availability)."""
    m = Machine.named(name)
    assert m.offers(offered)
    assert not m.offers(missing)


@pytest.mark.parametrize(
    ("name", "acpi", "budget"),
    [("q35", True, 14), ("q35", False, 9), ("pc", True, 8), ("aarch64-virt", True, 16), ("pseries", True, None)],
)
def test_io_window_budget(name: str, acpi: bool, budget: int | None) -> None:
    """The IO-window budget of the machine's default firmware (x86: by ACPI, qemu-rules §3); pseries has none."""
    assert Machine.named(name).io_window_budget(acpi=acpi) == budget


@pytest.mark.parametrize(
    ("machine_type", "arch", "name"),
    [
        ("pc-q35-7.2", "x86_64", "q35"),
        ("pc-i440fx-7.2", "x86_64", "pc"),
        ("virt-7.2", "aarch64", "aarch64-virt"),
        ("virt", "riscv64", "riscv64-virt"),
        ("pseries-7.1", "ppc64le", "pseries"),
    ],
)
def test_for_machine_type(machine_type: str, arch: str, name: str) -> None:
    """A QEMU machine type on an architecture maps to its description."""
    assert Machine.for_machine_type(machine_type, arch=arch).name == name


def test_for_machine_type_without_pci() -> None:
    """A machine type without PCI raises UnknownName naming the type and the arch."""
    with pytest.raises(UnknownName, match=r"^unknown machine type with PCI 's390-ccw-virtio' \(arch s390x\)"):
        Machine.for_machine_type("s390-ccw-virtio", arch="s390x")


def test_unknown_machine_name() -> None:
    """An unknown shipped machine name suggests a close one."""
    with pytest.raises(UnknownName, match=r"^unknown machine 'q53'; did you mean 'q35'\?$"):
        Machine.named("q53")


def test_builtin_lookup() -> None:
    """builtin_at finds the built-in device at an address."""
    q35 = Machine.named("q35")
    lpc = q35.builtin_at(PciAddress.parse("00:1f.0"))
    assert lpc is not None
    assert (lpc.name, lpc.multifunction) == ("lpc", True)
    assert q35.builtin_at(PciAddress.parse("00:02.0")) is None


def test_user_machine_file() -> None:
    """A user's own description loads: q35 from a QEMU build without pcie-pci-bridge."""
    m = Machine.from_file(DATA / "q35-without-pcie-to-pci-bridge.toml")
    assert m.name == "q35-without-pcie-to-pci-bridge"
    assert not m.offers("pcie-to-pci-bridge")
    assert Topology.default(m).free_positions("pcie-to-pci-bridge") == ()


BAD = [
    (
        "typo-key.toml",
        "root-hotplugg",
        "unknown key (known keys: arches, builtin, bus-numbers, controllers, description, firmware, io-windows, "
        "io-windows-without-acpi, libvirt, machine-types, max-host-bridges, name, one-per-guest, pcie, preferred, "
        "qemu-binary, qemu-version, refuses, root-bus-name, root-hotplug, root-model, root-qemu, "
        "unique-bridge-chassis)",
    ),
    ("wrong-type.toml", "bus-numbers", "expected an integer (got a string '256')"),
    (
        "unknown-model.toml",
        "controllers[4]",
        "unknown controller model 'pcie-to-pci-brige'; did you mean 'pcie-to-pci-bridge'?",
    ),
    (
        "bad-address.toml",
        "builtin[1].address",
        "invalid PCI address '0000:00:20.0': slot must be in 0x00..0x1f (got 0x20)",
    ),
]


@pytest.mark.parametrize(("file", "key", "reason"), BAD)
def test_bad_machine_file_names_file_and_key(file: str, key: str, reason: str) -> None:
    """A typo'd key, a wrong type, an unknown controller model or a bad address is named with file and key."""
    path = DATA / file
    with pytest.raises(InvalidDescription) as info:
        Machine.from_file(path)
    assert str(info.value) == f"{path}: {key}: {reason}"
    assert (info.value.source, info.value.key, info.value.reason) == (str(path), key, reason)


def test_missing_and_malformed_files(tmp_path: Path) -> None:
    """A missing file and a file that is not TOML are InvalidDescription errors naming the file."""
    missing = tmp_path / "nope.toml"
    with pytest.raises(InvalidDescription, match=r"nope\.toml: cannot read: No such file or directory$"):
        Machine.from_file(missing)
    broken = tmp_path / "broken.toml"
    broken.write_text("name = \n")
    with pytest.raises(InvalidDescription, match=r"broken\.toml: not valid TOML: "):
        Machine.from_file(broken)


@pytest.mark.parametrize(
    ("change", "key", "reason"),
    [
        ({"root-model": "pcie-root-port"}, "root-model", "'pcie-root-port' is not a root bus model"),
        ({"controllers": ["pci-root"]}, "controllers[0]", "'pci-root' is a root bus, not an addable controller"),
        ({"bus-numbers": 300}, "bus-numbers", "must be in 1..256 (got 300)"),
        ({"pcie": None}, "pcie", "required key is missing"),
    ],
)
def test_bad_machine_data(change: dict[str, object], key: str, reason: str) -> None:
    """Semantic errors in a description name the key: a non-root root model, a root bus offered, a bad limit."""
    base: dict[str, object] = {
        "name": "m",
        "arches": ["x86_64"],
        "pcie": True,
        "root-model": "pcie-root",
        "root-bus-name": "pcie.0",
        "controllers": ["pcie-root-port"],
    }
    data = {k: v for k, v in {**base, **change}.items() if v is not None}
    with pytest.raises(InvalidDescription) as info:
        Machine.from_data("mine.toml", data)
    assert str(info.value) == f"mine.toml: {key}: {reason}"


def test_public_names() -> None:
    """The module exports Builtin, LibvirtDefaults, Machine and machines."""
    assert dir(machine_module) == ["Builtin", "LibvirtDefaults", "Machine", "machines"]


def test_a_cached_machine_description_cannot_be_changed_by_a_caller() -> None:
    """``Machine.named`` returns a shared value: its preferred addresses refuse changes."""
    machine = Machine.named("q35")
    with pytest.raises(TypeError):
        machine.preferred["primary-video"] = ()  # type: ignore[index]
    assert Machine.named("q35").preferred["primary-video"] == (PciAddress.parse("00:01.0"),)
