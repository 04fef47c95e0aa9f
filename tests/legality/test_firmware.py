"""Firmware descriptions: the shipped numbers, lookup by machine and loader, clear errors, the IO budget they give."""

from __future__ import annotations

from pathlib import Path

import pytest

from pcitopo.address import PciAddress
from pcitopo.devices import Controller, Device
from pcitopo.errors import InvalidDescription, UnknownName
from pcitopo.legality.firmware import Firmware, firmwares
from pcitopo.legality.machine import Machine
from pcitopo.legality.rules import validate
from pcitopo.topology import Topology
from tests.support.firmware import port_order

A = PciAddress.parse


def ports(n: int, *, first: int = 1, hotplug: bool | None = None) -> list[Controller]:
    """N pcie-root-ports on pcie.0 from slot 2, indexes from ``first``."""
    return [
        Controller(first + i, "pcie-root-port", address=A(f"00:{2 + i:02x}.0"), chassis=first + i, hotplug=hotplug)
        for i in range(n)
    ]


def empty_bridges(n: int, **kw: object) -> Topology:
    """N root ports, each holding an empty pcie-to-pci-bridge (the issue's 14/15/16 layouts)."""
    bridges = [Controller(100 + i, "pcie-to-pci-bridge", address=A(f"{1 + i:02x}:00.0")) for i in range(n)]
    return Topology.build("q35", [*ports(n), *bridges], **kw)  # type: ignore[arg-type]


def e1000e_ports(n: int, *, empty: int = 0, **kw: object) -> Topology:
    """N root ports each holding an e1000e (an IO BAR), then ``empty`` empty root ports."""
    devices = [Device(f"n{i}", "e1000e", address=A(f"{1 + i:02x}:00.0")) for i in range(n)]
    return Topology.build("q35", ports(n + empty), devices, **kw)  # type: ignore[arg-type]


def rules_of(t: Topology) -> list[str]:
    return [v.rule for v in validate(t)]


def test_shipped_firmwares() -> None:
    """SeaBIOS, OVMF and edk2 for aarch64 ship, each with its efi flag and measured budgets."""
    fws = firmwares()
    assert sorted(fws) == ["edk2-aarch64", "ovmf", "seabios"]
    budgets = {
        (name, m, acpi): fw.io_window_budget(m, acpi=acpi)
        for name, fw in fws.items()
        for m in ("q35", "pc", "aarch64-virt")
        for acpi in (True, False)
    }
    assert budgets[("edk2-aarch64", "aarch64-virt", True)] == 16
    assert budgets[("edk2-aarch64", "q35", True)] is None
    assert budgets[("seabios", "aarch64-virt", True)] is None
    assert budgets[("seabios", "q35", True)] == 14
    assert budgets[("seabios", "q35", False)] == 9
    assert budgets[("seabios", "pc", True)] == 8
    assert budgets[("ovmf", "q35", True)] == 9
    assert (fws["seabios"].efi, fws["ovmf"].efi, fws["edk2-aarch64"].efi) == (False, True, True)
    assert not fws["edk2-aarch64"].bars_decoded


def test_reservations_differ_by_firmware() -> None:
    """SeaBIOS reserves IO only for SHPC bridges; OVMF also for hotplug PCIe ports, with 2 MiB and 512 MiB memory."""
    seabios, ovmf = Firmware.named("seabios"), Firmware.named("ovmf")
    assert [
        seabios.reserves_io(m) for m in ("pci-bridge", "pcie-to-pci-bridge", "pcie-root-port", "dmi-to-pci-bridge")
    ] == [
        True,
        True,
        False,
        False,
    ]
    assert ovmf.reserves_io("pcie-root-port")
    assert ovmf.reserves_io("pcie-switch-downstream-port")
    assert (ovmf.mem_reserve, ovmf.pref64_reserve, ovmf.mmio64_knob) == (2 << 20, 512 << 20, "opt/ovmf/X-PciMmio64Mb")


@pytest.mark.parametrize(
    ("path", "name"),
    [
        ("/usr/share/OVMF/OVMF_CODE.fd", "ovmf"),
        ("/usr/share/OVMF/OVMF_CODE_4M.secboot.fd", "ovmf"),
        ("/usr/share/edk2/ovmf/OVMF_CODE.fd", "ovmf"),
        ("/usr/share/seabios/bios-256k.bin", "seabios"),
        ("/usr/share/AAVMF/AAVMF_CODE.fd", "edk2-aarch64"),
        ("/usr/share/edk2/aarch64/QEMU_EFI-pflash.raw", "edk2-aarch64"),
    ],
)
def test_for_loader(path: str, name: str) -> None:
    """A libvirt <loader> path names its firmware by the image's name."""
    assert Firmware.for_loader(path).name == name


def test_unknown_loader_and_name() -> None:
    """An unknown loader or firmware name raises UnknownName listing the known ones."""
    with pytest.raises(
        UnknownName, match=r"unknown firmware loader '/opt/u-boot\.bin'; known: edk2-aarch64, ovmf, seabios"
    ):
        Firmware.for_loader("/opt/u-boot.bin")
    with pytest.raises(UnknownName, match="unknown firmware 'slof'"):
        Firmware.named("slof")


def test_bad_file_names_file_and_key(tmp_path: Path) -> None:
    """A firmware file with a wrong type names the file and the key."""
    text = (Path(__file__).parents[2] / "pcitopo/legality/data/firmware/seabios.toml").read_text()
    bad = tmp_path / "fw.toml"
    bad.write_text(text.replace("io-windows = 14", 'io-windows = "14"'))
    with pytest.raises(InvalidDescription) as info:
        Firmware.from_file(bad)
    assert str(info.value) == f"{bad}: machines.q35.io-windows: expected an integer (got a string '14')"
    bad.write_text(text.replace("io-window = 4096", "io-window = 3000"))
    with pytest.raises(InvalidDescription, match="io-window: must be a power of two"):
        Firmware.from_file(bad)
    bad.write_text(text.replace("io-window = 4096", 'io-window = 4096\nnever-assigned-mem-bars = [2, "4"]'))
    with pytest.raises(InvalidDescription) as info:
        Firmware.from_file(bad)
    assert str(info.value) == f"{bad}: never-assigned-mem-bars[1]: expected an integer (got a string '4')"


def test_only_edk2_never_assigns_a_2_byte_memory_bar() -> None:
    """OVMF and edk2 on aarch64 leave a 2-byte memory BAR (pvpanic-pci's) unassigned; SeaBIOS maps it, as any size."""
    fws = firmwares()
    assert {name: fw.never_assigned_mem_bars for name, fw in fws.items()} == {
        "edk2-aarch64": (2,),
        "ovmf": (2,),
        "seabios": (),
    }
    assert all(fw.assigns_mem_bar(16) for fw in fws.values())


def test_machine_default_firmware_is_libvirts() -> None:
    """q35 and pc boot SeaBIOS, aarch64 virt edk2, unless told otherwise, as libvirt does; pseries has none modelled."""
    machines = ("q35", "pc", "aarch64-virt", "pseries")
    assert [Machine.named(m).default_firmware for m in machines] == ["seabios", "seabios", "edk2-aarch64", None]
    assert Topology.default("q35").firmware_model == Firmware.named("seabios")
    assert Topology.default("q35", firmware="ovmf").io_window_budget() == 9


def test_unknown_firmware_for_machine() -> None:
    """Asking for a firmware that does not boot the machine names the machine and the choices."""
    with pytest.raises(UnknownName) as info:
        Topology.default("q35", firmware="slof")
    assert str(info.value) == "unknown firmware 'slof' (machine q35); known: ovmf, seabios"
    with pytest.raises(UnknownName, match=r"unknown firmware 'ovmf' \(machine aarch64-virt\)"):
        Topology.default("aarch64-virt", firmware="ovmf")


@pytest.mark.parametrize(("n", "ok"), [(14, True), (15, False), (16, False)])
def test_seabios_empty_bridges(n: int, ok: bool) -> None:
    """Measured: 14 empty pcie-to-pci-bridges behind root ports boot under SeaBIOS (q35, ACPI); 15 and 16 do not."""
    assert rules_of(empty_bridges(n)) == ([] if ok else ["io-space"])


def test_seabios_message_counts_reservations() -> None:
    """The io-space message says how many windows SeaBIOS reserved for hotplug and names the firmware."""
    (v,) = validate(empty_bridges(15))
    assert "15 of them reserved by seabios for hotplug" in v.message
    assert v.message.endswith("but q35 with ACPI under seabios has room for 14")


def test_seabios_gives_empty_root_ports_no_io() -> None:
    """Empty root ports take no IO under SeaBIOS (measured: 28 boot)."""
    assert rules_of(Topology.build("q35", ports(28))) == []


@pytest.mark.parametrize(
    ("t", "ok"),
    [
        (e1000e_ports(9, firmware="ovmf"), True),
        (e1000e_ports(10, firmware="ovmf"), False),
        (e1000e_ports(9, empty=1, firmware="ovmf"), False),
        (e1000e_ports(1, empty=12, firmware="ovmf"), False),  # OVMF maps it; counted all the same
        (Topology.build("q35", ports(28), firmware="ovmf"), True),
        (empty_bridges(16, firmware="ovmf"), True),
        (e1000e_ports(14), True),
    ],
    ids=[
        "9-e1000e-ports",
        "10-e1000e-ports",
        "9-e1000e-ports-and-an-empty-one",
        "1-e1000e-port-and-12-empty-ones",
        "28-empty-ports",
        "16-empty-bridges",
        "14-e1000e-ports-under-seabios",
    ],
)
def test_ovmf_io_windows(t: Topology, ok: bool) -> None:
    """OVMF fits 9 IO windows on q35, counting a window per empty hotplug port once a device needs IO."""
    assert rules_of(t) == ([] if ok else ["io-space"])


def test_ovmf_ports_without_hotplug_reserve_nothing() -> None:
    """Ports with hotplug off get no OVMF reservation: 9 e1000e ports fit beside 10 of them, not beside 1 hot one."""
    devices = [Device(f"n{i}", "e1000e", address=A(f"{1 + i:02x}:00.0")) for i in range(9)]
    cold = [
        Controller(10 + i, "pcie-root-port", address=A(f"00:{11 + i:02x}.0"), chassis=10 + i, hotplug=False)
        for i in range(10)
    ]
    assert rules_of(Topology.build("q35", [*ports(9), *cold], devices, firmware="ovmf")) == []
    hot = Controller(10, "pcie-root-port", address=A("00:0b.0"), chassis=10)
    assert rules_of(Topology.build("q35", [*ports(9), hot], devices, firmware="ovmf")) == ["io-space"]


@pytest.mark.parametrize(("extra", "ok"), [([], True), (["vmvga"], False)])
def test_root_bus_io_takes_windows_past_root_io(extra: list[str], ok: bool) -> None:
    """Measured on pc: 8 e1000 bridges beside 4064 bytes of IO BARs on pci.0 map; 16 bytes more do not."""
    bridges = [Controller(1 + i, "pci-bridge", address=A(f"00:{3 + i:02x}.0")) for i in range(8)]
    devices = [Device(f"n{i}", "e1000", address=A(f"{1 + i:02x}:01.0")) for i in range(8)]
    root = ["rtl8139"] * 15 + ["e1000"] * 3 + ["e1000e", *extra]
    devices += [Device(f"r{i}", kind, address=A(f"00:{11 + i:02x}.0")) for i, kind in enumerate(root)]
    t = Topology.build("pc", bridges, devices)
    assert t.root_io_bytes() == 4064 + 16 * len(extra)
    assert t.io_window_budget() == (8 if ok else 7)
    violations = validate(t)
    if ok:
        assert violations == ()
    else:
        assert [v.rule for v in violations] == ["io-space"]
        assert str(violations[0]).endswith(
            "but pc with ACPI under seabios has room for 7 beside 4080 bytes of IO BARs on the root buses "
            "(rule: io-space)"
        )


@pytest.mark.parametrize(
    ("layout", "short"),
    [("E9", 0), ("P20", 0), ("E8 P2", 1), ("P2 E8", 1), ("E8 P6", 5), ("E9 P1", 1), ("P1 E9", 1), ("E10", 1)],
)
def test_ovmf_counts_reservations_when_devices_need_io(layout: str, short: int) -> None:
    """OVMF's reservations count into its 9 windows once any device needs IO (some such layouts map, not all)."""
    t = port_order(layout)
    assert t.io_windows_short() == short
    assert rules_of(t) == ([] if short == 0 else ["io-space"])
