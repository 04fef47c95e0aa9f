"""libvirt's controller identity numbers and bus-number regions, in one place.

QEMU tells PCI controllers apart by numbers in libvirt's ``<target>``: a PCIe
root or downstream port by ``chassis``/``port``, a pci-bridge by
``chassisNr``, an expander bus by the first guest bus number ``busNr`` it owns,
a pseries host bridge by its ``index``. When the domain leaves one unset,
libvirt 9.0 (``qemuDomainAssignPCIAddresses``) fills it in:

- a ``pcie-root-port``: chassis = its controller index, port = its devfn
  (slot·8 + function);
- a ``pcie-switch-downstream-port``: chassis = its index, port = its slot;
- a ``pci-bridge``: chassisNr = its index;
- an expander bus (``pci-expander-bus``, ``pcie-expander-bus``): busNr = the
  lowest busNr any controller has (256 when none has one) minus 2, in controller
  order; when that lowest is 2 or less there is none to give, and libvirt
  refuses the domain;
- a pseries host bridge: the lowest target index in 1..30 not taken by a host
  bridge of lower controller index (libvirt does not look at later ones, so it
  can hand out a duplicate, which the validator reports); when every one is
  taken libvirt hands out 31 and refuses it as out of range. The default host
  bridge (index 0) gets 0.

Every reader, writer, exporter, solver and strategy takes these facts from
here. When a number runs out, the validator reports a violation
(:func:`shortages`, :func:`defaults` raises :class:`~pcitopo.errors.InvalidTopology`)
and planning raises :class:`~pcitopo.errors.Unsatisfiable` naming the budget
(:func:`fill`, :func:`fresh_chassis`, ...).

The ranges libvirt 9.0 accepts (``virDomainControllerDefParseXML``, messages
pinned in ``tests/integration/test_libvirt_identity.py``):

>>> CHASSIS, PORT, CHASSIS_NR, BUS_NR, TARGET_INDEX
(range(0, 256), range(0, 256), range(1, 256), range(1, 255), range(0, 31))

>>> from pcitopo.address import PciAddress
>>> from pcitopo.devices import Controller
>>> from pcitopo.topology import Topology
>>> t = Topology.build("q35", [
...     Controller(1, "pcie-root-port", address=PciAddress.parse("00:02.3")),
...     Controller(2, "pcie-expander-bus", address=PciAddress.parse("00:05.0")),
...     Controller(3, "pcie-expander-bus", address=PciAddress.parse("00:06.0")),
... ])
>>> defaults(t)
{0: {}, 1: {'chassis': 1, 'port': 19}, 2: {'bus_nr': 254}, 3: {'bus_nr': 252}}

Bus numbers of PCI domain 0: the root bus owns those below the lowest busNr,
each expander bus those from its busNr up to the next one:

>>> for r in bus_regions(t.replace(controllers=list(filled(t).values()))):
...     print(r)
bus 0: 0..251 (2 used)
bus 3: 252..253 (1 used)
bus 2: 254..255 (1 used)
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from typing import Any

import attrs

from pcitopo.address import PciAddress
from pcitopo.devices import Controller
from pcitopo.errors import InvalidTopology, Unsatisfiable
from pcitopo.legality.catalog import Connect, ControllerModel
from pcitopo.topology import Topology
from pcitopo.violation import Violation

__all__ = [
    "BUS_NR",
    "CHASSIS",
    "CHASSIS_NR",
    "PORT",
    "TARGET_INDEX",
    "BusRegion",
    "Shortage",
    "bus_regions",
    "default_port",
    "defaults",
    "effective",
    "effective_chassis",
    "fill",
    "filled",
    "fresh_chassis",
    "fresh_chassis_nr",
    "fresh_target_index",
    "next_bus_nr",
    "next_target_index",
    "shortages",
]


def __dir__() -> list[str]:
    return __all__


CHASSIS = range(256)
"""``chassis`` of a PCIe root or downstream port: libvirt "must be 0-255" (QEMU: a uint8)."""
PORT = range(256)
"""``port`` of a PCIe root or downstream port: libvirt "must be 0-255"."""
CHASSIS_NR = range(1, 256)
"""``chassisNr`` of a pci-bridge: libvirt "must be 1-255" (QEMU refuses 0 too)."""
BUS_NR = range(1, 255)
"""``busNr`` of an expander bus: libvirt "must be 1-254"."""
TARGET_INDEX = range(31)
"""``index`` of a pseries host bridge: libvirt "must be 0-30"; 0 is the default host bridge's."""

_PORT_MODELS = (Connect.PCIE_ROOT_PORT, Connect.PCIE_SWITCH_DOWNSTREAM_PORT)
"""The connect types of PCIe ports: a tuple, not a set: membership by identity in C, where a set calls the
members' Python ``Enum.__hash__`` (a look-up for every controller of every plan validated)."""


# -- one number at a time -------------------------------------------------------------------


def default_port(model: ControllerModel, address: PciAddress) -> int:
    """libvirt's ``port`` for a PCIe port at ``address``: the devfn for a root port, the slot for a downstream port.

    >>> from pcitopo.legality.catalog import Catalog
    >>> cat = Catalog.default()
    >>> a = PciAddress.parse("03:02.1")
    >>> root, downstream = cat.controller("pcie-root-port"), cat.controller("pcie-switch-downstream-port")
    >>> default_port(root, a), default_port(downstream, a)
    (17, 2)
    """
    if model.connect is Connect.PCIE_SWITCH_DOWNSTREAM_PORT:
        return address.slot
    return address.devfn


def effective_chassis(model: ControllerModel, controller: Controller) -> int | None:
    """The chassis QEMU will see for a controller: its own, libvirt's default (its index) for a port, else ``None``.

    >>> from pcitopo.legality.catalog import Catalog
    >>> rp = Catalog.default().controller("pcie-root-port")
    >>> three, four = Controller(3, "pcie-root-port"), Controller(4, "pcie-root-port", chassis=3)
    >>> effective_chassis(rp, three), effective_chassis(rp, four)
    (3, 3)
    """
    if model.connect not in _PORT_MODELS:
        return None
    return controller.index if controller.chassis is None else controller.chassis


def next_bus_nr(taken: Iterable[int]) -> int | None:
    """libvirt's busNr for a new expander bus: 2 below the lowest taken (256 if none), ``None`` when that is < 1.

    libvirt 9.0 (``qemuDomainAddressFindNewBusNr``) gives up when the lowest busNr
    is 2 or less.

    >>> next_bus_nr([]), next_bus_nr([254, 100]), next_bus_nr([3]), next_bus_nr([2])
    (254, 98, 1, None)
    """
    lowest = min(taken, default=256)
    return None if lowest <= 2 else lowest - 2


def next_target_index(taken: Iterable[int]) -> int | None:
    """libvirt's target index for a new pseries host bridge: the lowest free in 1..30, ``None`` when all are taken.

    >>> next_target_index([0]), next_target_index([0, 1, 3]), next_target_index(range(31))
    (1, 2, None)
    """
    used = set(taken)
    return next((i for i in TARGET_INDEX if i != 0 and i not in used), None)


def fresh_chassis(index: int, taken: Collection[int]) -> int:
    """A chassis no other PCIe port has, for a new port: its index if free, else the next free (wrapping).

    Planning only: :class:`~pcitopo.errors.Unsatisfiable` when all 256 are taken.

    >>> fresh_chassis(3, {1, 2}), fresh_chassis(3, {3, 4}), fresh_chassis(255, {255})
    (3, 5, 0)
    >>> fresh_chassis(1, set(range(256)))
    Traceback (most recent call last):
      ...
    pcitopo.errors.Unsatisfiable: no placement satisfies these requirements together:
      - every PCIe port chassis number 0..255 is taken
    facts: QEMU tells PCIe root and downstream ports apart by chassis, 0..255
    would help: use fewer PCIe ports (switches or pcie-to-pci-bridges hold more devices each)
    """
    for step in range(len(CHASSIS)):
        chassis = (index + step) % len(CHASSIS)
        if chassis not in taken:
            return chassis
    raise Unsatisfiable(
        ["every PCIe port chassis number 0..255 is taken"],
        facts=["QEMU tells PCIe root and downstream ports apart by chassis, 0..255"],
        suggestions=["use fewer PCIe ports (switches or pcie-to-pci-bridges hold more devices each)"],
    )


def fresh_chassis_nr(index: int, taken: Collection[int]) -> int:
    """A chassisNr no other pci-bridge has, for a new bridge: its index if free, else the next free in 1..255.

    Planning only: :class:`~pcitopo.errors.Unsatisfiable` when all are taken.

    >>> fresh_chassis_nr(2, {1}), fresh_chassis_nr(255, {255}), fresh_chassis_nr(0, set())
    (2, 1, 1)
    """
    start = index if index in CHASSIS_NR else CHASSIS_NR.start
    for step in range(len(CHASSIS_NR)):
        nr = (start - 1 + step) % len(CHASSIS_NR) + 1
        if nr not in taken:
            return nr
    raise Unsatisfiable(
        ["every pci-bridge chassisNr 1..255 is taken"],
        facts=["libvirt accepts chassisNr 1..255"],
        suggestions=["use fewer pci-bridges"],
    )


def fresh_target_index(taken: Collection[int]) -> int:
    """The target index for a new pseries host bridge (:func:`next_target_index`), or Unsatisfiable naming 1..30.

    >>> fresh_target_index({0, 1})
    2
    >>> fresh_target_index(set(range(31)))
    Traceback (most recent call last):
      ...
    pcitopo.errors.Unsatisfiable: no placement satisfies these requirements together:
      - every pseries host bridge target index 1..30 is taken
    facts: libvirt accepts target indexes 0..30, and 0 is the default host bridge's
    would help: use fewer host bridges
    """
    free = next_target_index(taken)
    if free is None:
        raise Unsatisfiable(
            [_TARGET_SHORT],
            facts=["libvirt accepts target indexes 0..30, and 0 is the default host bridge's"],
            suggestions=["use fewer host bridges"],
        )
    return free


_TARGET_SHORT = "every pseries host bridge target index 1..30 is taken"


# -- a whole topology -------------------------------------------------------------------------


@attrs.frozen
class Shortage:
    """A controller left without an identity number because libvirt has none left to give it."""

    index: int
    controller: str
    """The controller's name (``pci.3``)."""
    model: str
    field: str
    """``bus_nr`` or ``target_index``."""
    reason: str
    """Why none is left, naming the budget."""
    address: PciAddress | None = None
    """Where the controller is (host bridges have no address)."""

    @property
    def rule(self) -> str:
        """The validator's rule id for this shortage."""
        return "expander-bus-nr" if self.field == "bus_nr" else "phb-index"

    def __str__(self) -> str:
        what = "bus_nr" if self.field == "bus_nr" else "target index"
        return f"{self.controller!r} ({self.model}) has no {what}, and libvirt has none left to give it: {self.reason}"

    def violation(self) -> Violation:
        """This shortage as a rule violation."""
        return Violation(self.rule, str(self), devices=(self.controller,), address=self.address)

    def unsatisfiable(self) -> Unsatisfiable:
        """This shortage as the reason a plan is impossible, with the budget and the way out."""
        what = "bus_nr" if self.field == "bus_nr" else "target index"
        budget = (
            f"libvirt gives a new expander bus the busNr 2 below the lowest one, within {BUS_NR.start}..{BUS_NR[-1]}"
            if self.field == "bus_nr"
            else f"libvirt gives a new host bridge the lowest free target index in 1..{TARGET_INDEX[-1]}"
        )
        return Unsatisfiable(
            [str(self)], facts=[budget], suggestions=[f"set the {what} of {self.controller!r} by hand"]
        )


_NUMBERED = frozenset({"bus-nr", "target-index"})
"""The identity numbers libvirt can run out of (a shortage); chassis, port and chassisNr follow the index."""


def _compute(topology: Topology, indexes: Collection[int] | None) -> tuple[dict[int, dict[str, int]], list[Shortage]]:
    controllers = sorted(topology.controllers, key=lambda c: c.index)
    bus_nrs = [c.bus_nr for c in controllers if c.bus_nr is not None]
    # libvirt looks only at the host bridges before this one (and 0, the default one's)
    targets = {0}
    numbered_roots = any(
        "target-index" in topology.catalog.controller(m).identity for m in topology.machine.controllers
    )
    values: dict[int, dict[str, int]] = {}
    short: list[Shortage] = []
    for c in controllers:
        found: dict[str, int] = {}
        if c.index == 0:
            if numbered_roots and c.target_index is None:
                found["target_index"] = 0
            if indexes is None or 0 in indexes:
                values[0] = found
            continue
        model = topology.model(c)
        identity = model.identity
        if "chassis" in identity and c.chassis is None:
            found["chassis"] = c.index
        if "port" in identity and c.port is None and c.address is not None:
            found["port"] = default_port(model, c.address)
        if "chassis-nr" in identity and c.chassis_nr is None:
            found["chassis_nr"] = c.index
        if "bus-nr" in identity and c.bus_nr is None:
            nr = next_bus_nr(bus_nrs)
            if nr is None:
                lowest = min(bus_nrs)
                short.append(
                    Shortage(
                        c.index,
                        c.name,
                        c.model,
                        "bus_nr",
                        f"the lowest busNr is {lowest}, and a new one goes 2 below it, within "
                        f"{BUS_NR.start}..{BUS_NR[-1]}",
                        c.address,
                    )
                )
            else:
                bus_nrs.append(nr)
                found["bus_nr"] = nr
        if c.target_index is not None:
            targets.add(c.target_index)
        elif "target-index" in identity:
            target = next_target_index(targets)
            if target is None:
                short.append(
                    Shortage(
                        c.index, c.name, c.model, "target_index", "every target index in 1..30 is taken", c.address
                    )
                )
            else:
                targets.add(target)
                found["target_index"] = target
        if indexes is None or c.index in indexes:
            values[c.index] = found
    return values, [s for s in short if indexes is None or s.index in indexes]


def effective(topology: Topology) -> dict[int, Controller]:
    """Every controller by index, with libvirt's defaults where it has one to give (none where numbers ran out).

    What QEMU will be told, for the validator's uniqueness rules. Unlike
    :func:`filled`, it never raises: :func:`shortages` reports what is missing.

    >>> t = Topology.build("pseries", [
    ...     Controller(1, "spapr-pci-host-bridge"),
    ...     Controller(2, "spapr-pci-host-bridge", target_index=1),
    ... ])
    >>> {i: c.target_index for i, c in effective(t).items()}  # libvirt's own duplicate
    {0: 0, 1: 1, 2: 1}
    """
    values, _ = _compute(topology, None)
    return {c.index: _evolve(c, values.get(c.index, {})) for c in topology.controllers}


def shortages(topology: Topology) -> tuple[Violation, ...]:
    """The controllers libvirt cannot give a default identity number, as violations (for the validator).

    >>> from pcitopo.devices import Controller
    >>> t = Topology.build("q35", [
    ...     Controller(1, "pcie-expander-bus", address=PciAddress.parse("00:05.0"), bus_nr=2),
    ...     Controller(2, "pcie-expander-bus", address=PciAddress.parse("00:06.0")),
    ... ])
    >>> for v in shortages(t):
    ...     print(v)  # doctest: +NORMALIZE_WHITESPACE
    'pci.2' (pcie-expander-bus) has no bus_nr, and libvirt has none left to give it:
    the lowest busNr is 2, and a new one goes 2 below it, within 1..254 (rule: expander-bus-nr)
    """
    # only a busNr or a target index can run out: without a controller (but the default root) whose model takes
    # one, there is no shortage to find, and no need to work out every controller's defaults (the validator asks
    # of every plan, whose hundred root ports take a chassis and a port)
    first: dict[str, Controller] = {}
    for c in topology.controllers:
        if c.index != 0 and c.model not in first:
            first[c.model] = c
    if not any(_NUMBERED & set(topology.model(c).identity) for c in first.values()):
        return ()
    return tuple(s.violation() for s in _compute(topology, None)[1])


def defaults(topology: Topology, indexes: Collection[int] | None = None) -> dict[int, dict[str, int]]:
    """libvirt's values for the identity numbers each controller leaves unset (of ``indexes``, else all).

    Keys are :class:`~pcitopo.devices.Controller` field names (``chassis``,
    ``port``, ``chassis_nr``, ``bus_nr``, ``target_index``); the default root
    (index 0) gets target index 0 on machines with numbered host bridges.
    Raises :class:`~pcitopo.errors.InvalidTopology` when libvirt has no number
    left to give (rules ``expander-bus-nr``, ``phb-index``).

    >>> t = Topology.build("pc", [
    ...     Controller(1, "pci-bridge", address=PciAddress.parse("00:05.0")),
    ...     Controller(2, "pci-expander-bus", address=PciAddress.parse("00:06.0"), bus_nr=100),
    ...     Controller(3, "pci-expander-bus", address=PciAddress.parse("00:07.0")),
    ... ])
    >>> defaults(t)
    {0: {}, 1: {'chassis_nr': 1}, 2: {}, 3: {'bus_nr': 98}}
    >>> defaults(t, {3})
    {3: {'bus_nr': 98}}
    """
    values, short = _compute(topology, indexes)
    if short:
        raise InvalidTopology([s.violation() for s in short])
    return values


def filled(topology: Topology, indexes: Collection[int] | None = None) -> dict[int, Controller]:
    """The controllers (of ``indexes``, else all) with libvirt's :func:`defaults` filled in, by index.

    >>> t = Topology.build("q35", [Controller(1, "pcie-root-port", address=PciAddress.parse("00:02.0"))])
    >>> port = filled(t)[1]
    >>> port.chassis, port.port
    (1, 16)
    """
    values = defaults(topology, indexes)
    return {c.index: _evolve(c, values[c.index]) for c in topology.controllers if c.index in values}


def fill(topology: Topology, controller: Controller, address: PciAddress | None = None) -> Controller:
    """``controller``, about to join ``topology`` at ``address``, with libvirt's defaults for what it leaves unset.

    Planning: :class:`~pcitopo.errors.Unsatisfiable` naming the budget when no number is left.

    >>> t = Topology.build("q35", [Controller(1, "pcie-expander-bus", address=PciAddress.parse("00:05.0"), bus_nr=3)])
    >>> fill(t, Controller(2, "pcie-expander-bus"), PciAddress.parse("00:06.0")).bus_nr
    1
    >>> t = t.replace(controllers=[*t.controllers[:1], attrs.evolve(t.controllers[1], bus_nr=2)])
    >>> fill(t, Controller(2, "pcie-expander-bus"), PciAddress.parse("00:06.0"))  # doctest: +NORMALIZE_WHITESPACE
    Traceback (most recent call last):
      ...
    pcitopo.errors.Unsatisfiable: no placement satisfies these requirements together:
      - 'pci.2' (pcie-expander-bus) has no bus_nr, and libvirt has none left to give it:
        the lowest busNr is 2, and a new one goes 2 below it, within 1..254
    facts: libvirt gives a new expander bus the busNr 2 below the lowest one, within 1..254
    would help: set the bus_nr of 'pci.2' by hand
    """
    placed = attrs.evolve(controller, address=address if address is not None else controller.address)
    others = [c for c in topology.controllers if c.index != controller.index]
    trial = topology.replace(controllers=[*others, placed])
    values, short = _compute(trial, {controller.index})
    if short:
        raise short[0].unsatisfiable()
    return _evolve(placed, values.get(controller.index, {}))


def _evolve(c: Controller, values: Mapping[str, int]) -> Controller:
    """``c`` with ``values``; ``c`` itself when there are none (a frozen value: an equal copy would only cost)."""
    if not values:
        return c
    changes: dict[str, Any] = dict(values)
    return attrs.evolve(c, **changes)


# -- bus-number regions -------------------------------------------------------------------------


@attrs.frozen
class BusRegion:
    """The guest bus numbers ``first..end-1`` of PCI domain 0 owned by one root bus, of which ``used`` are in use.

    The default root bus (index 0) owns those below the lowest expander busNr;
    each expander bus those from its busNr up to the next expander's (or the
    machine's last bus number).
    """

    owner: int
    """Controller index of the root or expander bus."""
    first: int
    end: int
    """One past the last bus number of the region."""
    used: int
    """Bus numbers its own bus and the buses below it take."""

    @property
    def free(self) -> int:
        """Bus numbers of the region left over (negative when the buses below need more than it has)."""
        return self.end - self.first - self.used

    def __str__(self) -> str:
        return f"bus {self.owner}: {self.first}..{self.end - 1} ({self.used} used)"


def bus_regions(topology: Topology) -> tuple[BusRegion, ...]:
    """The bus-number regions of PCI domain 0, lowest first: the root bus's, then each expander's with a busNr.

    Expanders without a busNr are left out (libvirt gives them one, :func:`defaults`);
    two expanders with one busNr (rule ``expander-bus-nr``) each get the whole region.

    >>> t = Topology.build("pc", [Controller(1, "pci-expander-bus", address=PciAddress.parse("00:06.0"), bus_nr=100)])
    >>> [str(r) for r in bus_regions(t)]
    ['bus 0: 0..99 (1 used)', 'bus 1: 100..255 (2 used)']
    >>> bus_regions(t)[1].free
    154
    """
    top = topology.machine.bus_numbers
    expanders = sorted(
        (c.bus_nr, c.index) for c in topology.controllers if topology.model(c).expander and c.bus_nr is not None
    )
    starts = sorted({nr for nr, _ in expanders})
    regions = [BusRegion(0, 0, starts[0] if starts else top, topology.subtree_bus_numbers(0))]
    for nr, index in expanders:
        end = next((s for s in starts if s > nr), top)
        regions.append(BusRegion(index, nr, end, topology.subtree_bus_numbers(index)))
    return tuple(regions)
