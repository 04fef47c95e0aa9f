"""Reading the firmware's work from query-pci: unmapped BARs, BARs outside a bridge's window, firmware options."""

from __future__ import annotations

from typing import Any

import pytest

from pcitopo.errors import InvalidInput, UnknownName
from pcitopo.legality.firmware import Firmware
from pcitopo.qemu.verify import _choose_firmware, _numbered, _read_bars, _Seen, _walk, firmware_args
from pcitopo.topology import Topology


def bridge(qdev: str, devices: list[dict[str, Any]], *, io: tuple[int, int], mem: tuple[int, int]) -> dict[str, Any]:
    """A query-pci entry for a bridge at 00:02.0 with these windows (base, limit)."""
    return {
        "bus": 0,
        "slot": 2,
        "function": 0,
        "qdev_id": qdev,
        "regions": [],
        "pci_bridge": {
            "bus": {
                "number": 0,
                "secondary": 1,
                "subordinate": 1,
                "io_range": {"base": io[0], "limit": io[1]},
                "memory_range": {"base": mem[0], "limit": mem[1]},
                "prefetchable_range": {"base": 0xFFF00000, "limit": 0xFFFFF},
            },
            "devices": devices,
        },
    }


def endpoint(qdev: str, *regions: dict[str, Any]) -> dict[str, Any]:
    return {"bus": 1, "slot": 0, "function": 0, "qdev_id": qdev, "regions": list(regions)}


IO_BAR = {"bar": 2, "type": "io", "address": 0xC000, "size": 32}
MEM_BAR = {"bar": 0, "type": "memory", "address": 0xFE800000, "size": 0x20000, "prefetch": False}
ROM = {"bar": 6, "type": "memory", "address": -1, "size": 0x40000, "prefetch": False}


def walk(devices: list[dict[str, Any]]) -> dict[str, _Seen]:
    seen: dict[str, _Seen] = {}
    _walk(devices, 0, seen)
    return seen


def test_bars_inside_the_windows_are_fine_and_roms_do_not_count() -> None:
    """A device whose BARs lie in its bridge's IO and memory windows is fine; an unmapped ROM is ignored."""
    seen = walk(
        [bridge("rp1", [endpoint("nic", IO_BAR, MEM_BAR, ROM)], io=(0xC000, 0xCFFF), mem=(0xFE800000, 0xFE9FFFFF))]
    )
    assert seen["nic"] == _Seen(1, 0, 0, "rp1", (), ())


def test_unmapped_and_outside_bars_are_reported() -> None:
    """An unmapped BAR is listed with its type and size; a mapped one outside the bridge's window is named."""
    unmapped = dict(MEM_BAR, address=-1)
    seen = walk([bridge("rp1", [endpoint("nic", IO_BAR, unmapped)], io=(0xD000, 0xDFFF), mem=(0xFE800000, 0xFE9FFFFF))])
    assert seen["nic"].unmapped == ("BAR0 (memory, 131072 bytes)",)
    assert seen["nic"].outside == ("BAR2 (IO 0xc000-0xc01f) outside the IO windows of rp1",)


def test_numbered_needs_every_bridge_numbered() -> None:
    """Enumeration has not happened while a bridge still has secondary bus 0."""
    numbered = bridge("rp1", [], io=(0, 0), mem=(0, 0))
    fresh = bridge("rp2", [], io=(0, 0), mem=(0, 0))
    fresh["pci_bridge"]["bus"]["secondary"] = 0
    assert _numbered([numbered])
    assert not _numbered([numbered, fresh])


def test_firmware_args() -> None:
    """SeaBIOS is QEMU's default; OVMF boots from Debian's pflash images with a throw-away variable store."""
    assert firmware_args(Firmware.named("seabios")) == []
    assert (
        firmware_args(Firmware.named("ovmf"))[-1]
        == "if=pflash,format=raw,unit=1,snapshot=on,file=/usr/share/OVMF/OVMF_VARS.fd"
    )


def test_firmware_is_refused_where_no_firmware_is_known() -> None:
    """An x86 firmware on ARM, or any firmware on pseries, is refused before QEMU starts; ARM boots edk2 when asked."""
    with pytest.raises(UnknownName, match=r"unknown firmware 'ovmf' \(machine aarch64-virt\); known: edk2-aarch64"):
        _choose_firmware(Topology.default("aarch64-virt"), "ovmf")
    with pytest.raises(InvalidInput, match="pcitopo knows no firmware that boots pseries"):
        _choose_firmware(Topology.default("pseries"), True)
    assert _choose_firmware(Topology.default("aarch64-virt"), None) is None
    assert _choose_firmware(Topology.default("aarch64-virt"), True) == Firmware.named("edk2-aarch64")
    assert _choose_firmware(Topology.default("q35", firmware="ovmf"), True) == Firmware.named("ovmf")


class _Ecam:
    """A QMP stand-in answering ``xp`` at the ECAM addresses with the dwords given per device."""

    def __init__(self, ecam: int, bars: dict[tuple[int, int], list[int]]) -> None:
        self.ecam = ecam
        self.bars = bars
        self.asked: list[str] = []

    def execute(self, command: str, **kwargs: Any) -> str:
        assert command == "human-monitor-command"
        line = kwargs["command-line"]
        self.asked.append(line)
        where = int(line.split()[-1], 16) - self.ecam - 0x10
        words = self.bars[(where >> 20, (where >> 15) & 0x1F)]
        words = words + [0] * (12 - len(words))
        return "\n".join(
            f"{where + 16 * i:016x}: " + " ".join(f"{w:#010x}" for w in words[4 * i : 4 * i + 4]) for i in range(3)
        )


def enumerated(*bars: int) -> list[int]:
    """Config space 0x10-0x3f of a device edk2 enumerated: ``bars``, and 0xff in the Interrupt Line (0x3c)."""
    return [*bars, *[0] * (6 - len(bars)), 0, 0, 0, 0, 0, 0x1FF]


def test_read_bars_fills_undecoded_bars_from_the_ecam() -> None:
    """Undecoded BARs are read from the ECAM: a 64-bit one whole, an IO BAR at 0 only inside a window starting at 0."""
    answer: list[dict[str, Any]] = [
        {
            "bus": 0,
            "devices": [
                {
                    "bus": 0,
                    "slot": 2,
                    "function": 0,
                    "regions": [],
                    "pci_bridge": {
                        "bus": {"secondary": 1, "io_range": {"base": 0, "limit": 4095}},
                        "devices": [
                            {
                                "bus": 1,
                                "slot": 0,
                                "function": 0,
                                "regions": [
                                    {"bar": 0, "type": "memory", "address": -1, "mem_type_64": True},
                                    {"bar": 2, "type": "io", "address": -1},
                                ],
                            }
                        ],
                    },
                },
                {"bus": 0, "slot": 3, "function": 0, "regions": [{"bar": 0, "type": "io", "address": -1}]},
            ],
        }
    ]
    vm = _Ecam(0x4010000000, {(1, 0): enumerated(0x1022000C, 0x80, 0x1), (0, 3): enumerated(0x1)})
    _read_bars(vm, answer, 0x4010000000)  # type: ignore[arg-type]
    endpoint = answer[0]["devices"][0]["pci_bridge"]["devices"][0]["regions"]
    assert [r["address"] for r in endpoint] == [0x8010220000, 0]
    assert answer[0]["devices"][1]["regions"][0]["address"] == -1
    assert vm.asked == ["xp /12wx 0x4010018010", "xp /12wx 0x4010100010"]


def _root_io(slot: int) -> dict[str, Any]:
    """A device on the main root bus with one undecoded IO BAR (BAR0)."""
    return {"bus": 0, "slot": slot, "function": 0, "regions": [{"bar": 0, "type": "io", "address": -1}]}


def _root_io_addresses(config: dict[tuple[int, int], list[int]], *extra: dict[str, Any]) -> list[int]:
    devices = [_root_io(slot) for (_, slot) in config]
    answer: list[dict[str, Any]] = [{"bus": 0, "devices": [*devices, *extra]}]
    _read_bars(_Ecam(0x4010000000, config), answer, 0x4010000000)  # type: ignore[arg-type]
    return [d["regions"][0]["address"] for d in devices]


@pytest.mark.parametrize(
    ("config", "addresses"),
    [
        pytest.param({(0, 1): enumerated(0x1)}, [0], id="alone: at port 0"),
        pytest.param({(0, 1): enumerated(0x101), (0, 2): enumerated(0x1)}, [0x100, 0], id="beside port 0x100"),
        pytest.param({(0, 1): enumerated(0x1), (0, 2): enumerated(0x1)}, [-1, -1], id="two read 0"),
        pytest.param({(0, 1): [0x1, 0, 0, 0, 0, 0]}, [-1], id="not enumerated yet"),
    ],
)
def test_an_io_bar_reading_0_on_aarch64_root_bus_is_at_port_0_when_nothing_else_can_be(
    config: dict[tuple[int, int], list[int]], addresses: list[int]
) -> None:
    """edk2 hands the root bus's IO out from port 0: one enumerated IO BAR reading 0 and nothing else there is at 0.

    verify took an rtl8139 alone on aarch64 virt's pcie.0, and an es1370 beside one, as unmapped (edk2 put them at
    port 0: an es1370 reads 0x1 in the ECAM beside an rtl8139 at 0x101, found by booting both).
    """
    assert _root_io_addresses(config) == addresses


def test_an_io_bar_reading_0_is_unassigned_where_a_window_or_a_decoded_bar_holds_port_0() -> None:
    """Port 0 of the root bus is taken by a bridge's IO window starting there, or by a decoded IO BAR at 0."""
    window = bridge("rp1", [], io=(0, 0xFFF), mem=(0x10000000, 0x101FFFFF))
    decoded = {"bus": 0, "slot": 5, "function": 0, "regions": [{"bar": 0, "type": "io", "address": 0}]}
    assert _root_io_addresses({(0, 1): enumerated(0x1)}, window) == [-1]
    assert _root_io_addresses({(0, 1): enumerated(0x1)}, decoded) == [-1]


def test_a_bar_the_firmware_never_assigns_is_left_not_unmapped() -> None:
    """Under edk2 pvpanic-pci's unassigned 2-byte BAR is left to the guest OS; under SeaBIOS it would be unmapped."""
    panic = {"bus": 0, "slot": 1, "function": 0, "qdev_id": "p"}
    panic["regions"] = [{"bar": 0, "type": "memory", "address": -1, "size": 2, "prefetch": False}]
    small = {"bus": 0, "slot": 2, "function": 0, "qdev_id": "w"}
    small["regions"] = [{"bar": 0, "type": "memory", "address": -1, "size": 16, "prefetch": False}]
    edk2: dict[str, _Seen] = {}
    _walk([panic, small], 0, edk2, firmware=Firmware.named("edk2-aarch64"))
    assert (edk2["p"].unmapped, edk2["p"].left) == ((), ("BAR0 (memory, 2 bytes)",))
    assert (edk2["w"].unmapped, edk2["w"].left) == (("BAR0 (memory, 16 bytes)",), ())
    seabios: dict[str, _Seen] = {}
    _walk([panic], 0, seabios, firmware=Firmware.named("seabios"))
    assert (seabios["p"].unmapped, seabios["p"].left) == (("BAR0 (memory, 2 bytes)",), ())
