"""Guest firmware descriptions: how SeaBIOS, OVMF and edk2 on aarch64 give bridges IO and memory windows.

A plan that QEMU starts but the guest firmware cannot enumerate or map is
not legal: the device is dead in the guest. Each firmware's resource rules
are data (``pcitopo/legality/data/firmware/*.toml``); every number there was
measured in QEMU 7.2 with Debian 12's firmware packages by
``benchmarks/calibrate_firmware.py``, and a comment beside it names the
experiment.

>>> seabios = Firmware.named("seabios")
>>> seabios.efi, seabios.io_window
(False, 4096)
>>> seabios.io_window_budget("q35", acpi=True), seabios.io_window_budget("q35", acpi=False)
(14, 9)
>>> seabios.reserves_io("pcie-to-pci-bridge"), seabios.reserves_io("pcie-root-port")
(True, False)
>>> Firmware.named("ovmf").reserves_io("pcie-root-port")
True
>>> sorted(firmwares())
['edk2-aarch64', 'ovmf', 'seabios']
>>> Firmware.for_loader("/usr/share/OVMF/OVMF_CODE_4M.fd").name
'ovmf'
"""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import attrs

from pcitopo.errors import InvalidDescription, UnknownName
from pcitopo.legality._toml import DATA_DIR, Table, load_packaged, load_path

if TYPE_CHECKING:
    from pathlib import Path

__all__ = ["Firmware", "FirmwareMachine", "firmwares"]


def __dir__() -> list[str]:
    return __all__


@attrs.frozen
class FirmwareMachine:
    """What one firmware does on one machine type.

    ``io_windows`` / ``io_windows_without_acpi``: how many 4 KiB bridge IO
    windows fit (with and without ACPI). ``idle_reservations_harmless``: when no
    bridge needs IO for a device below it, the firmware drops reservations it
    has no room for and still maps every BAR. ``mmio64_window``: bytes of the
    default 64-bit MMIO window (``None``: the firmware sizes it to fit);
    ``largest_bar64``: the largest 64-bit BAR measured to map by default.
    """

    machine: str
    root_model: str
    io_windows: int
    io_windows_without_acpi: int
    idle_reservations_harmless: bool = False
    mmio64_window: int | None = None
    largest_bar64: int | None = None
    requires_acpi: bool = False
    """Without ACPI the firmware leaves even the built-in devices' BARs unmapped."""
    ecam: int | None = None
    """Guest-physical address of the ECAM, where BARs are read when the firmware leaves decoding off."""
    root_io: int | None = None
    """Bytes of IO BAR that endpoints on the root buses may take beside ``io_windows`` full windows.

    The firmware allocates the root buses' IO BARs and the bridges' windows from
    one aperture, so past these bytes each started 4 KiB of root-bus IO costs a
    window. ``None``: not measured (root-bus IO is not counted).
    """
    expander_io_windows: bool = False
    """Each expander bus is a root bridge of its own: the IO BARs directly on it take started 4 KiB windows of
    their own, not a share of ``root_io`` (OVMF on pc: measured, see ``ovmf.toml``)."""
    bridge_sibling_crash: tuple[str, ...] = ()
    """Device kinds that crash QEMU during this firmware's PCI setup on a bus other than the main root bus that
    also holds a pci-bridge (OVMF, QEMU 7.2: an lsilogic; measured, see ``ovmf.toml``)."""

    def root_io_windows(self, root_bytes: int) -> int:
        """How many windows ``root_bytes`` of IO BARs on the root buses take from the budget.

        >>> m = FirmwareMachine("pc", "pci-root", 8, 8, root_io=4064)
        >>> m.root_io_windows(4064), m.root_io_windows(4065), m.root_io_windows(8160), m.root_io_windows(8161)
        (0, 1, 1, 2)
        """
        if self.root_io is None or root_bytes <= self.root_io:
            return 0
        return -(-(root_bytes - self.root_io) // 4096)

    mmio32_hole: int | None = None
    """Bytes of the 32-bit MMIO hole the firmware maps BARs in below 4 GiB (``None``: not measured)."""
    mmio64_max: int | None = None
    """The largest 64-bit window the firmware's knob (``mmio64_knob``) gives, measured (``None``: no knob)."""
    mmio64_top: int | None = None
    """For a firmware that sizes its 64-bit window to fit: the address the window must end below."""

    def __str__(self) -> str:
        return self.machine


@attrs.frozen
class Firmware:
    """What pcitopo knows of one guest firmware."""

    name: str
    description: str
    arches: tuple[str, ...]
    efi: bool
    io_window: int
    """Bytes of one bridge IO window (the allocation granularity)."""
    io_reserve: tuple[str, ...]
    """Controller models given an IO window even when nothing below them has an IO BAR."""
    io_reserve_property: bool
    """Whether a port's QEMU ``io-reserve`` property larger than its needs is honoured (it gets that much IO)."""
    mem_reserve: int
    """Bytes of 32-bit memory window given to each hotplug port (0: none beyond its needs)."""
    pref64_reserve: int
    """Bytes of 64-bit prefetchable window given to each hotplug port (0: none beyond its needs)."""
    mmio64_knob: str | None
    """The fw_cfg file that sizes the 64-bit window, in MiB (``None``: no such knob)."""
    loader_patterns: tuple[str, ...]
    """Substrings of a libvirt ``<loader>`` path that mean this firmware."""
    code_path: str | None
    """The pflash code image QEMU boots (``None``: QEMU's built-in default, SeaBIOS)."""
    vars_path: str | None
    """The variable-store template for the second pflash (``None``: none)."""
    machines: Mapping[str, FirmwareMachine] = attrs.field(eq=False)
    source: str = attrs.field(eq=False, repr=False, default="")
    bars_decoded: bool = True
    """Whether the firmware turns decoding on for every device (else QEMU shows programmed BARs as unmapped)."""
    mem_window: int = 1 << 20
    """The granularity of a bridge's memory windows, in bytes."""
    mem_reserve_models: tuple[str, ...] = ()
    """Controller models given ``mem_reserve`` and ``pref64_reserve`` when hotplug-capable."""
    phys_bits: int = 40
    """The guest CPU physical address width the 64-bit numbers were measured under (QEMU's default x86 CPU)."""
    io_reserve_off: tuple[str, ...] = ()
    """Controller models whose IO reservation QEMU's ``io-reserve=0`` removes, measured: nothing below them needing
    IO, they get no window (OVMF reads QEMU's reservation capability; SeaBIOS only ever raises its own)."""
    vbe_root_bus_only: tuple[str, ...] = ()
    """The VBE interfaces (a device kind's ``vga``) this firmware's video BIOS finds only on the main root bus."""
    never_assigned_mem_bars: tuple[int, ...] = ()
    """Sizes in bytes of the memory BARs this firmware never assigns, wherever the device sits.

    edk2 (OVMF and edk2 on aarch64) reads a memory BAR's type from the value the BAR answers when sized, and QEMU
    lets a 2-byte BAR (pvpanic-pci's BAR0) answer ``0xfffffffe``: its type bits read as reserved, and PciBusDxe
    (``PciParseBar``) records it as an unknown BAR, which it never allocates. SeaBIOS reads the type from the
    value before sizing and maps it. No placement changes this; the BAR is left to the guest OS to assign.
    """

    @classmethod
    def named(cls, name: str) -> Firmware:
        """A shipped firmware description by name (``seabios``, ``ovmf``)."""
        return _shipped(name)

    @classmethod
    def from_file(cls, path: str | Path) -> Firmware:
        """Load a firmware description from a TOML file in the shipped format."""
        source, data = load_path(path)
        return cls.from_data(source, data)

    @classmethod
    def for_loader(cls, path: str) -> Firmware:
        """The shipped firmware a libvirt ``<loader>`` path names (``.../OVMF_CODE.fd`` is OVMF).

        Raises :class:`UnknownName` when no shipped firmware claims the path.
        """
        lowered = path.lower()
        for name in _shipped_names():
            fw = _shipped(name)
            if any(p in lowered for p in fw.loader_patterns):
                return fw
        raise UnknownName("firmware loader", path, _shipped_names())

    @classmethod
    def from_data(cls, source: str, data: Mapping[str, Any]) -> Firmware:
        """Build from parsed TOML data; ``source`` names it in errors."""
        t = Table(source, "", data)
        machines_table = t.sub("machines")
        machines = {
            name: _machine(source, name, machines_table.get(name, dict, required=True))
            for name in list(machines_table.data)
        }
        fw = cls(
            name=t.get("name", str, required=True),
            description=t.get("description", str, ""),
            arches=t.str_list("arches", required=True),
            efi=t.get("efi", bool, required=True),
            io_window=t.get("io-window", int, required=True),
            io_reserve=t.str_list("io-reserve"),
            io_reserve_property=t.get("io-reserve-property", bool, False),
            io_reserve_off=t.str_list("io-reserve-off"),
            mem_reserve=t.get("mem-reserve", int, 0),
            pref64_reserve=t.get("pref64-reserve", int, 0),
            mmio64_knob=t.get("mmio64-knob", str, None),
            mem_window=t.get("mem-window", int, 1 << 20),
            mem_reserve_models=t.str_list("mem-reserve-models"),
            phys_bits=t.get("phys-bits", int, 40),
            loader_patterns=tuple(p.lower() for p in t.str_list("loader-patterns")),
            code_path=t.get("code-path", str, None),
            vars_path=t.get("vars-path", str, None),
            machines=machines,
            source=source,
            bars_decoded=t.get("bars-decoded", bool, True),
            vbe_root_bus_only=t.str_list("vbe-root-bus-only"),
            never_assigned_mem_bars=t.int_list("never-assigned-mem-bars"),
        )
        t.check_unknown()
        if fw.io_window <= 0 or fw.io_window & (fw.io_window - 1):
            raise InvalidDescription(source, "io-window", f"must be a power of two (got {fw.io_window})")
        return fw

    def for_machine(self, machine: str, root_model: str = "") -> FirmwareMachine | None:
        """This firmware's numbers for a machine (by name, else by its root bus model); ``None``: unknown."""
        if machine in self.machines:
            return self.machines[machine]
        same_root = [m for m in self.machines.values() if root_model and m.root_model == root_model]
        return same_root[0] if len(same_root) == 1 else None

    def io_window_budget(self, machine: str, *, acpi: bool = True, root_model: str = "") -> int | None:
        """How many IO windows this firmware fits on a machine (``None``: not known)."""
        m = self.for_machine(machine, root_model)
        if m is None:
            return None
        return m.io_windows if acpi else m.io_windows_without_acpi

    def reserves_mem(self, model: str) -> bool:
        """Whether a hotplug-capable ``model`` gets ``mem_reserve`` and ``pref64_reserve`` with nothing below it."""
        return model in self.mem_reserve_models

    def reserves_io(self, model: str) -> bool:
        """Whether a controller of ``model`` gets an IO window with nothing below it needing one."""
        return model in self.io_reserve

    def honours_io_reserve_off(self, model: str) -> bool:
        """Whether ``io-reserve=0`` on a controller of ``model`` takes away the IO window this firmware reserves it.

        >>> Firmware.named("ovmf").honours_io_reserve_off("pcie-root-port")
        True
        >>> Firmware.named("seabios").honours_io_reserve_off("pci-bridge")
        False
        """
        return model in self.io_reserve_off and self.reserves_io(model)

    def assigns_mem_bar(self, size: int) -> bool:
        """Whether this firmware assigns a memory BAR of ``size`` bytes (it may still run out of room for it).

        >>> Firmware.named("ovmf").assigns_mem_bar(2), Firmware.named("ovmf").assigns_mem_bar(16)
        (False, True)
        >>> Firmware.named("seabios").assigns_mem_bar(2)
        True
        """
        return size not in self.never_assigned_mem_bars

    def __str__(self) -> str:
        return self.name

    def __repr__(self) -> str:
        return f"<Firmware {self.name!r}>"


def firmwares() -> dict[str, Firmware]:
    """Every shipped firmware description, by name."""
    return {name: _shipped(name) for name in _shipped_names()}


def _machine(source: str, name: str, data: Any) -> FirmwareMachine:
    t = Table(source, f"machines.{name}", data)
    m = FirmwareMachine(
        machine=name,
        root_model=t.get("root-model", str, required=True),
        io_windows=t.get("io-windows", int, required=True),
        io_windows_without_acpi=t.get("io-windows-without-acpi", int, required=True),
        idle_reservations_harmless=t.get("idle-reservations-harmless", bool, False),
        mmio64_window=t.get("mmio64-window", int, None),
        largest_bar64=t.get("largest-bar64", int, None),
        requires_acpi=t.get("requires-acpi", bool, False),
        root_io=t.get("root-io", int, None),
        expander_io_windows=t.get("expander-io-windows", bool, False),
        bridge_sibling_crash=t.str_list("bridge-sibling-crash"),
        ecam=t.get("ecam", int, None),
        mmio32_hole=t.get("mmio32-hole", int, None),
        mmio64_max=t.get("mmio64-max", int, None),
        mmio64_top=t.get("mmio64-top", int, None),
    )
    t.check_unknown()
    for key, value in (("io-windows", m.io_windows), ("io-windows-without-acpi", m.io_windows_without_acpi)):
        if value < 0:
            raise InvalidDescription(source, f"machines.{name}.{key}", f"must be >= 0 (got {value})")
    return m


@functools.cache
def _shipped_names() -> tuple[str, ...]:
    names = os.listdir(os.path.join(DATA_DIR, "firmware"))  # plain files: importlib.resources costs more
    return tuple(sorted(n[: -len(".toml")] for n in names if n.endswith(".toml")))


@functools.cache
def _shipped(name: str) -> Firmware:
    if name not in _shipped_names():
        raise UnknownName("firmware", name, _shipped_names())
    source, data = load_packaged(f"firmware/{name}.toml")
    fw = Firmware.from_data(source, data)
    if fw.name != name:
        raise InvalidDescription(source, "name", f"must match the file name {name!r} (got {fw.name!r})")
    return fw
