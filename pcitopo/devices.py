"""The things placed on PCI buses: controllers (which provide buses) and endpoint devices.

Both are frozen values. A device without an address is a request for one; the
:mod:`pcitopo.solver` fills it in.

>>> from pcitopo.address import PciAddress
>>> nic = Device("net0", "virtio-net", needs=Needs(hotplug=HotplugNeed.REQUIRED))
>>> nic.address is None, str(nic)
(True, "'net0' (virtio-net)")
>>> rp = Controller(1, "pcie-root-port", address=PciAddress.parse("00:02.0"), chassis=1, port=0x10)
>>> rp.name, str(rp)
('pci.1', "'pci.1' (pcie-root-port, index 1)")
"""

from __future__ import annotations

import enum
import re
from collections.abc import Callable, Iterable
from typing import Any

import attrs

from pcitopo.address import PciAddress
from pcitopo.errors import InvalidInput

__all__ = ["Bar", "Controller", "Device", "HotplugNeed", "Needs"]


def __dir__() -> list[str]:
    return __all__


class HotplugNeed(enum.Enum):
    """What a device needs of hotplug at its position."""

    ANY = "any"
    REQUIRED = "required"
    PREFERRED = "preferred"
    FORBIDDEN = "forbidden"


def _optional_int(low: int, high: int) -> Callable[[Any, attrs.Attribute[Any], Any], None]:
    def check(instance: object, attribute: attrs.Attribute[Any], value: Any) -> None:
        if value is None:
            return
        if not isinstance(value, int) or isinstance(value, bool):
            raise InvalidInput(_who(instance), f"{attribute.name} must be an int or None (got {value!r})")
        if not low <= value <= high:
            raise InvalidInput(_who(instance), f"{attribute.name} must be in {low}..{high} (got {value})")

    return check


def _who(instance: object) -> str:
    ident = getattr(instance, "id", None)
    if isinstance(instance, Controller):
        return f"controller index {instance.index}"
    return f"device {ident!r}" if ident else type(instance).__name__


IORESOURCE_IO = 0x100
IORESOURCE_MEM = 0x200
IORESOURCE_PREFETCH = 0x2000
IORESOURCE_MEM_64 = 0x100000
"""The flags of a sysfs ``resource`` line (Linux ``include/linux/ioport.h``)."""


@attrs.frozen(order=True)
class Bar:
    """One memory or IO region of a PCI function: measured in QEMU (the catalog) or read from a host.

    ``index`` is the BAR: 0-5 the BARs, 6 the expansion ROM, 7-12 the SR-IOV VF BARs
    (the lines of a host's sysfs ``resource``).

    >>> str(Bar(0, 16 << 20, "mem64", prefetchable=True))
    'BAR0 mem64 prefetchable 16M'
    """

    index: int
    size: int
    kind: str
    """``io``, ``mem32`` or ``mem64``."""
    prefetchable: bool = False

    @property
    def below_4g(self) -> bool:
        """Whether firmware must map it below 4 GiB: a 32-bit BAR or ROM, or a non-prefetchable 64-bit one.

        A bridge's non-prefetchable window is 32-bit, so a 64-bit BAR goes above
        4 GiB only when it is prefetchable (SeaBIOS and OVMF alike).
        """
        return self.kind == "mem32" or (self.kind == "mem64" and not self.prefetchable)

    def __str__(self) -> str:
        name = "ROM" if self.index == 6 else f"VF BAR{self.index - 7}" if self.index > 6 else f"BAR{self.index}"
        pf = " prefetchable" if self.prefetchable else ""
        return f"{name} {self.kind}{pf} {_human(self.size)}"

    @classmethod
    def from_resource_line(cls, index: int, line: str) -> Bar | None:
        """The region of one ``resource`` line (``None`` when it is unused).

        >>> Bar.from_resource_line(0, "0x00000000f0000000 0x00000000f0ffffff 0x0000000000040200")
        Bar(index=0, size=16777216, kind='mem32', prefetchable=False)
        """
        parts = line.split()
        if len(parts) != 3:
            raise InvalidInput("resource", f"line {index + 1} should have 3 numbers (got {line!r})")
        try:
            start, end, flags = (int(p, 16) for p in parts)
        except ValueError:
            raise InvalidInput("resource", f"line {index + 1} is not hexadecimal numbers: {line!r}") from None
        if (end == 0 and start == 0) or not flags & (IORESOURCE_IO | IORESOURCE_MEM):
            return None
        if end < start:
            raise InvalidInput("resource", f"line {index + 1} ends before it starts: {line!r}")
        kind = "io" if flags & IORESOURCE_IO else "mem64" if flags & IORESOURCE_MEM_64 else "mem32"
        return cls(index, end - start + 1, kind, bool(flags & IORESOURCE_PREFETCH))


def _human(size: int) -> str:
    for unit, shift in (("G", 30), ("M", 20), ("K", 10)):
        if size >= 1 << shift and size % (1 << shift) == 0:
            return f"{size >> shift}{unit}"
    return f"{size}B"


def _bar_tuple_or_none(bars: Iterable[Bar] | None) -> tuple[Bar, ...] | None:
    return None if bars is None else tuple(bars)


_ID = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.:+-]*$")


def _check_id(instance: object, attribute: attrs.Attribute[Any], value: Any) -> None:
    if value is None and isinstance(instance, Controller):
        return
    if not isinstance(value, str) or not _ID.match(value):
        raise InvalidInput(
            type(instance).__name__.lower(),
            f"{attribute.name} must be a non-empty string of letters, digits and _.:+- (got {value!r})",
        )


def _hotplug_need(value: HotplugNeed | str) -> HotplugNeed:
    try:
        return HotplugNeed(value)
    except ValueError:
        known = ", ".join(repr(h.value) for h in HotplugNeed)
        raise InvalidInput("needs", f"hotplug must be one of {known} (got {value!r})") from None


@attrs.frozen(cache_hash=True)  # hashed as a key of the solver's per-kind memos, several times a device a plan
class Needs:
    """What a device asks of its position, beyond legality.

    ``numa_strict`` makes ``numa_node`` a hard requirement (else a preference).
    ``slot_group`` names devices that are functions of one slot (a GPU's VGA
    and audio functions); ``bus_group`` devices that share a bus;
    ``switch_group`` devices behind one PCIe switch. ``order`` is a hint: lower
    comes first among devices of one kind. ``function`` is the function a
    member of a slot group takes in its slot (a mirrored host device keeps its
    host function numbers): the members of a group give one each, 0 among
    them, or none does, and then they take 0, 1, ... in definition order.
    """

    hotplug: HotplugNeed = attrs.field(default=HotplugNeed.ANY, converter=_hotplug_need)
    numa_node: int | None = attrs.field(default=None, validator=_optional_int(0, 255))
    numa_strict: bool = False
    integrated: bool = False
    slot_group: str | None = None
    bus_group: str | None = None
    switch_group: str | None = None
    order: int | None = None
    function: int | None = attrs.field(default=None, validator=_optional_int(0, 7))


@attrs.frozen
class Device:
    """An endpoint device: an id, a kind from the catalog, and maybe an address."""

    id: str = attrs.field(validator=_check_id)
    kind: str
    address: PciAddress | None = None
    multifunction: bool | None = None
    needs: Needs = Needs()
    io_bar: bool | None = None
    """Override the catalog's idea of whether this device has an IO BAR (passthrough devices)."""
    memory: int | None = attrs.field(default=None, validator=_optional_int(1, 1 << 50))
    """Bytes of the device's memory where the domain sets it: ivshmem's shared memory, a display's
    video memory. The kind's memory BAR (:attr:`~pcitopo.legality.catalog.DeviceKind.memory_bar`)
    takes its size, rounded up to a power of two. ``None``: the kind's default."""
    bars: tuple[Bar, ...] | None = attrs.field(default=None, converter=_bar_tuple_or_none)
    """The device's BARs when they are known from elsewhere than the catalog: a passed-through
    host function's, from the host description (``--host``). ``None``: the catalog's."""
    acpi_index: int | None = attrs.field(default=None, validator=_optional_int(0, 2**32 - 1))
    """The device's ``acpi-index`` (libvirt ``<acpi index='N'/>``): a Linux guest names a NIC ``eno<N>`` by it."""

    def __str__(self) -> str:
        return f"{self.id!r} ({self.kind})"

    def placed_at(self, address: PciAddress | None) -> Device:
        """This device at another address."""
        return attrs.evolve(self, address=address)

    def with_acpi_index(self, index: int | None) -> Device:
        """This device with another ``acpi-index``."""
        return attrs.evolve(self, acpi_index=index)

    def with_needs(self, needs: Needs) -> Device:
        """This device asking ``needs``: ``attrs.evolve(self, needs=needs)`` without running the validators
        of the fields it keeps again (they ran when this device was made; ``needs`` has none). The solver
        gives the policy's needs to every device of a plan before validating it, a thousand a plan: a third
        of the cost of ``attrs.evolve``. Each field is set by name (tests/test_devices.py checks they are all
        of Device's)."""
        new = object.__new__(Device)
        _set = object.__setattr__
        _set(new, "id", self.id)
        _set(new, "kind", self.kind)
        _set(new, "address", self.address)
        _set(new, "multifunction", self.multifunction)
        _set(new, "needs", needs)
        _set(new, "io_bar", self.io_bar)
        _set(new, "memory", self.memory)
        _set(new, "bars", self.bars)
        _set(new, "acpi_index", self.acpi_index)
        return new


@attrs.frozen
class Controller:
    """A PCI controller: a device on one bus that provides another (or a root bus).

    ``index`` is libvirt's controller index, which is also the ``bus`` of the
    addresses of everything plugged into it. The target properties are those of
    libvirt's ``<target>``: ``chassis``/``port`` for PCIe ports, ``chassis_nr``
    for pci-bridges, ``bus_nr`` and ``numa_node`` for expander buses,
    ``target_index`` and ``numa_node`` for pseries host bridges, ``hotplug``
    for ports and the i440fx root.
    """

    index: int = attrs.field(validator=_optional_int(0, 255))
    model: str
    address: PciAddress | None = None
    id: str | None = attrs.field(default=None, validator=_check_id)
    qemu_model: str | None = None
    chassis: int | None = attrs.field(default=None, validator=_optional_int(0, 255))
    port: int | None = attrs.field(default=None, validator=_optional_int(0, 255))
    chassis_nr: int | None = attrs.field(default=None, validator=_optional_int(0, 255))
    bus_nr: int | None = attrs.field(default=None, validator=_optional_int(0, 255))
    target_index: int | None = attrs.field(default=None, validator=_optional_int(0, 255))
    numa_node: int | None = attrs.field(default=None, validator=_optional_int(0, 255))
    hotplug: bool | None = None
    multifunction: bool | None = None
    io_reserve: int | None = attrs.field(default=None, validator=_optional_int(0, 2**64 - 2))
    """QEMU's ``io-reserve`` property, in bytes (libvirt: a ``<qemu:override>`` of the controller's alias):
    what a firmware that reads it (OVMF) gives the port or bridge as IO window when nothing below needs more;
    0 takes its hotplug reservation away. ``None``: QEMU's default, the firmware's own choice."""

    @property
    def name(self) -> str:
        """The controller's id: its alias, or libvirt's default ``pci.N``."""
        if self.id is not None:
            return self.id
        return "pcie.0" if self.model == "pcie-root" else f"pci.{self.index}"

    def __str__(self) -> str:
        """The controller's name, model and index, and its ``io-reserve`` when set.

        >>> str(Controller(3, "pcie-root-port", io_reserve=0))
        "'pci.3' (pcie-root-port, index 3, io-reserve 0)"
        """
        reserve = "" if self.io_reserve is None else f", io-reserve {self.io_reserve}"
        return f"{self.name!r} ({self.model}, index {self.index}{reserve})"

    def placed_at(self, address: PciAddress | None) -> Controller:
        """This controller at another address."""
        return attrs.evolve(self, address=address)

    def with_io_reserve(self, value: int | None) -> Controller:
        """This controller with QEMU's ``io-reserve`` set (``None``: QEMU's default), and a user alias if it had none.

        libvirt sets the property through a ``<qemu:override>`` of the
        controller's alias, and keeps on ``virsh define`` only aliases that
        start ``ua-``.

        >>> Controller(3, "pcie-root-port").with_io_reserve(0).name
        'ua-pci-3'
        """
        alias = self.id if self.id is not None or value is None else f"ua-pci-{self.index}"
        return attrs.evolve(self, io_reserve=value, id=alias)
