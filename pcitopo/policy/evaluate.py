"""The scorer: what a complete topology costs under a policy.

:func:`evaluate` is *the* definition of every soft constraint of a policy. It
scores any complete topology for a request — pcitopo's plan, libvirt's, one
made by hand — so plans from anywhere can be compared, and the solver reports
exactly these results and this cost in ``plan.soft`` and ``plan.cost``.

The terms (``policy.weights[name]`` is the cost of each one not met):

``hotplug``
    one per endpoint the plan placed whose hotplug need is *preferred*: met
    when its (bus, slot) is hotpluggable and it is alone in that slot (libvirt
    hot-plugs only function 0 of a single-function slot). *Required* and
    *forbidden* needs are rules, not terms. The policy's default need applies
    only to kinds that can be hot-plugged at all and not to members of a slot
    group (functions of one slot are never hot-plugged one by one); a device's
    own need or a ``[[device]]`` rule always applies.
``numa``
    one per endpoint the plan placed that prefers a NUMA node (``numa_node``
    without ``numa_strict``, under a policy without ``numa``): met when its bus
    is under that node. A strict node, or any node under the ``numa`` policy,
    is a rule.
``spare-ports``
    with ``spare_ports`` > 0: that many empty hotpluggable ports (PCIe
    machines: root and downstream ports with nothing below them; others: free
    hotpluggable slots of buses that take endpoints) anywhere; each one missing
    costs the weight. With ``spare_ports_per_node`` there is one such term per
    guest NUMA node (the ports under that node) and the first term counts the
    ports under no node.
``fewer-controllers``
    each controller the result has and the request had not costs the weight.
``integrated``
    with ``prefer_integrated``: one per endpoint the plan placed whose kind may
    sit on the main root bus: met when it does (bus 0).
``order``
    with ``ordered``: one per kind with two devices or more, at least one
    placed by the plan: met when their addresses increase in definition order
    (a device's ``needs.order``, when given, stands in for its position); and
    one for the NICs (every kind of class ``net``) when there are two or more,
    at least one placed by the plan: met when the names a Linux guest gives
    them (:mod:`pcitopo.naming`) increase in natural order (``sort -V``) in
    NIC order, so path names follow the guest's enumeration order.
``hotplug-off-occupied``
    with ``hotplug_off_occupied``: one per endpoint the plan placed whose
    hotplug need is *any* (the policy's default is set aside): met when its
    position is not hotpluggable. A device that prefers or requires hotplug is
    not asked to give it up.
``primary-video``
    one when the plan placed the primary video (:func:`primary_video`: the
    first VGA-compatible device, as libvirt's first ``<video>``) and the
    guest's firmware finds that kind's VBE only on the main root bus
    (:func:`vbe_needs_root_bus`; SeaBIOS with ``vga``, ``qxl``, ``virtio-vga``
    or ``vmvga``): met when it sits on bus 0. Behind a bridge or root port the
    BIOS console still shows, but in text mode only: no VBE graphics modes
    for the boot loader or an OS that uses them.

``io-reserve-off``
    one term when the plan sets ``io-reserve=0`` on ports or bridges the
    request did not: never met, it costs the weight for each of them. The
    solver does so, on root ports it adds, only where the firmware honours it
    (OVMF) and its IO windows run out otherwise: such a port keeps no IO window for a device
    with an IO BAR hot-plugged there later.

Terms are about what the plan decides: devices pinned in the request add
nothing (their needs are checked by the rules only if they are their own).

>>> from pcitopo.devices import Device
>>> from pcitopo.topology import Topology
>>> from pcitopo.solver import solve
>>> request = Topology.build("q35", devices=[Device("net0", "virtio-net")])
>>> plan = solve(request, "hotplug")
>>> e = evaluate(request, plan.topology, "hotplug")
>>> e.cost, e.legal
(2, True)
>>> for term in e.soft:
...     print(term)
hotplug: 'net0' alone on a hotpluggable slot: met
spare-ports: 1 empty hotpluggable port(s) (have 1): met
fewer-controllers: 2 controller(s) added: not met (cost 2)

A request device missing from the result is refused:

>>> evaluate(request, Topology.default("q35"), "hotplug")
Traceback (most recent call last):
  ...
pcitopo.errors.InvalidInput: device 'net0': is in the request but not in the result; a plan places every device
"""

from __future__ import annotations

import itertools
import operator
from collections.abc import Callable, Sequence
from collections.abc import Set as AbstractSet

import attrs

from pcitopo.devices import Controller, Device, HotplugNeed, Needs
from pcitopo.errors import InvalidInput
from pcitopo.legality.catalog import Connect, Integrated
from pcitopo.policy.policy import Policy
from pcitopo.topology import Topology
from pcitopo.violation import Violation

__all__ = [
    "Evaluation",
    "SoftResult",
    "effective_needs",
    "evaluate",
    "primary_video",
    "soft_results",
    "spare_ports",
    "vbe_needs_root_bus",
    "with_effective_needs",
]


def __dir__() -> list[str]:
    return __all__


_needs_key: Callable[[Needs], tuple[object, ...]] = operator.attrgetter(
    *(f"{f.name}._value_" if f.name == "hotplug" else f.name for f in attrs.fields(Needs))
)
"""A device's needs as a tuple of their fields' plain values (the hotplug need's by its value): equal exactly when
the needs are equal (tests/policy/test_evaluate.py checks it), a key for the per-(kind, needs) memos of a plan's
thousand devices. Each device holds its own equal Needs: as a key, a Needs costs a Python ``__hash__`` and
``__eq__`` call every look-up; this tuple is made, hashed and compared in C (an enum member's own hash is Python)."""


@attrs.frozen
class SoftResult:
    """One soft constraint of the policy, and whether the plan meets it."""

    name: str
    met: bool
    weight: int
    """What it costs when not met."""
    detail: str
    subject: str | None = None
    """The device, kind or NUMA node it is about, if any."""

    @property
    def cost(self) -> int:
        return 0 if self.met else self.weight

    def __str__(self) -> str:
        mark = "met" if self.met else f"not met (cost {self.weight})"
        return f"{self.name}: {self.detail}: {mark}"


@attrs.frozen
class Evaluation:
    """The score of a topology for a request under a policy, and the rules it breaks."""

    soft: tuple[SoftResult, ...]
    violations: tuple[Violation, ...] = ()
    """Rule violations of the result, the policy's hard needs (required hotplug, strict NUMA) included."""

    @property
    def cost(self) -> int:
        """The summed cost of the soft constraints not met."""
        return sum(s.cost for s in self.soft)

    @property
    def legal(self) -> bool:
        return not self.violations


def _policy(policy: Policy | str | None) -> Policy:
    if policy is None:
        return Policy.named("hotplug")
    if isinstance(policy, str):
        return Policy.named(policy)
    return policy


def evaluate(request: Topology, result: Topology, policy: Policy | str | None = None) -> Evaluation:
    """Score ``result``, a completion of ``request``, under ``policy`` (default ``hotplug``).

    Raises :class:`~pcitopo.errors.InvalidInput` when ``result`` is not a
    completion of ``request``: a device missing, added or without an address,
    a pinned device or controller moved, a controller gone or of another model.
    Rule violations are reported in :attr:`Evaluation.violations`, checked with
    :func:`pcitopo.validate` on the result with the policy's needs applied to
    the devices the plan placed, whose connect type must also be accepted as
    such (no conventional PCI endpoint on a PCIe port: libvirt relaxes that for
    addresses a user gave, never for its own).
    """
    from pcitopo.legality.rules import validate

    policy = _policy(policy)
    soft = soft_results(request, result, policy)
    pending = {d.id for d in request.devices if d.address is None}
    checked = with_effective_needs(request, result, policy)
    return Evaluation(soft=soft, violations=tuple(sorted((*validate(checked), *_strict_placement(checked, pending)))))


def with_effective_needs(request: Topology, result: Topology, policy: Policy) -> Topology:
    """``result`` with :func:`effective_needs` applied to the devices it placed (those ``request`` left open).

    What the rules check a plan against: a ``[[device]]`` override wins over a device's own needs
    (:meth:`Policy.needs_for`), so the solver's final check and :func:`evaluate` both validate this.
    """
    pending = {d.id for d in request.devices if d.address is None}
    if not pending:
        return result
    # without overrides, a device's effective needs depend on its kind and own needs only: once per pair, with
    # whether they differ from the device's own (equal to the pair's: compared once a pair, not once a device)
    same_needs: dict[tuple[str, tuple[object, ...]], tuple[Needs, bool]] | None = None if policy.overrides else {}
    changed: dict[str, Needs] = {}
    for d in result.devices:
        if d.id in pending:
            if same_needs is None:
                needs = effective_needs(result, policy, d)
                differs = needs != d.needs
            else:
                key = (d.kind, _needs_key(d.needs))
                known = same_needs.get(key)
                if known is None:
                    found = effective_needs(result, policy, d)
                    known = same_needs[key] = (found, found != d.needs)
                needs, differs = known
            if differs:
                changed[d.id] = needs
    # only needs change: what the plan's buses come to (MMIO, IO windows), worked out when it was scored, is kept
    return result.with_needs(changed) if changed else result


def _strict_placement(result: Topology, pending: set[str]) -> list[Violation]:
    """Devices the plan placed where their connect type is not accepted as such.

    :func:`pcitopo.validate` takes libvirt's relaxation for addresses a user
    gave (a bus that takes any endpoint takes conventional and PCIe ones); a
    plan's own placements follow the placement matrix strictly, as libvirt's
    own address assignment does.
    """
    out = []
    for d in result.devices:
        if d.id not in pending or d.address is None or not result.has_bus(d.address.bus):
            continue
        problem = result.placement_problem(d.address.bus, kind=result.kind(d), strict=True)
        if problem is not None and result.placement_problem(d.address.bus, kind=result.kind(d), strict=False) is None:
            out.append(
                Violation(
                    "placement",
                    f"{d.id!r} at {d.address} ({d.kind}): {problem} (a plan does not use libvirt's relaxation "
                    f"for addresses a user gave)",
                    devices=(d.id,),
                    address=d.address,
                )
            )
    return out


def effective_needs(topology: Topology, policy: Policy, device: Device) -> Needs:
    """The needs a device the plan places ends up with under ``policy``.

    The device's own, then the policy's default hotplug need (only for kinds
    that can be hot-plugged on this machine, :meth:`Topology.kind_hotpluggable`,
    and not for members of a slot group), then
    ``[[device]]`` overrides; the ``numa`` policy makes a NUMA node strict.

    >>> from pcitopo.devices import Device
    >>> t = Topology.default("q35")
    >>> effective_needs(t, Policy.named("hotplug"), Device("n", "virtio-net")).hotplug.value
    'preferred'
    >>> effective_needs(t, Policy.named("hotplug"), Device("v", "vga")).hotplug.value
    'any'
    >>> effective_needs(t, Policy.named("hotplug"), Device("p", "pvpanic-pci")).hotplug.value
    'any'
    >>> effective_needs(Topology.default("pc"), Policy.named("hotplug"), Device("p", "pvpanic-pci")).hotplug.value
    'preferred'
    """
    needs = policy.needs_for(device)
    if needs.hotplug in (HotplugNeed.REQUIRED, HotplugNeed.PREFERRED) and device.needs.hotplug is HotplugNeed.ANY:
        from_override = any(o.hotplug is not None and o.applies_to(device) for o in policy.overrides)
        if not from_override and (not topology.kind_hotpluggable(device) or needs.slot_group is not None):
            needs = attrs.evolve(needs, hotplug=HotplugNeed.ANY)
    if policy.numa and needs.numa_node is not None and not needs.numa_strict:
        needs = attrs.evolve(needs, numa_strict=True)
    return needs


def primary_video(topology: Topology) -> Device | None:
    """The primary video: the first device in definition order whose kind is VGA-compatible (catalog ``vga``).

    libvirt makes its first ``<video>`` the primary one (and only that one a
    VGA model); SeaBIOS takes the first VGA device it finds, root bus first.

    >>> from pcitopo.devices import Device
    >>> t = Topology.build("q35", devices=[Device("g", "virtio-gpu"), Device("v", "vga"), Device("c", "cirrus")])
    >>> primary_video(t).id
    'v'
    """
    return topology.primary_video


def vbe_needs_root_bus(topology: Topology) -> Device | None:
    """The primary video when the topology's firmware finds its VBE only on the main root bus, else ``None``.

    This decides the ``primary-video`` term, for :func:`evaluate` and the solver alike.

    >>> from pcitopo.devices import Device
    >>> vbe_needs_root_bus(Topology.build("q35", devices=[Device("v", "vga")])).id
    'v'
    >>> vbe_needs_root_bus(Topology.build("q35", devices=[Device("v", "cirrus")])) is None
    True
    >>> vbe_needs_root_bus(Topology.build("q35", devices=[Device("v", "vga")], firmware="ovmf")) is None
    True
    """
    return topology.vbe_video


_FUNCTION_ZERO: AbstractSet[int] = frozenset({0})
"""The functions of a slot holding one device alone at function 0 (compared equal to a set of them)."""


def soft_results(request: Topology, result: Topology, policy: Policy) -> tuple[SoftResult, ...]:
    """The soft constraints of ``policy`` for ``result`` (see the module docstring), without the rule check.

    Raises :class:`~pcitopo.errors.InvalidInput` when ``result`` is not a completion of ``request``.
    """
    _check_completion(request, result)
    weights = policy.weights
    out: list[SoftResult] = []
    pending = {d.id for d in request.devices if d.address is None}
    usage = result.slot_usage()
    # without overrides, a device's effective needs depend on its kind and own needs only: once per pair
    same_needs: dict[tuple[str, tuple[object, ...]], Needs] | None = None if policy.overrides else {}
    # what every device's terms look at, read once: a plan places a thousand devices
    hotpluggable, preferred, anyhow = result.is_hotpluggable, HotplugNeed.PREFERRED, HotplugNeed.ANY
    integrated, off_occupied = policy.prefer_integrated, policy.hotplug_off_occupied
    hotplug_weight, numa_weight = weights["hotplug"], weights["numa"]
    for d in result.devices:
        a = d.address
        if a is None or d.id not in pending:
            continue
        if same_needs is None:
            needs = effective_needs(result, policy, d)
        else:
            key = (d.kind, _needs_key(d.needs))
            found = same_needs.get(key)
            needs = found if found is not None else same_needs.setdefault(key, effective_needs(result, policy, d))
        bus, slot = a.bus, a.slot
        hotplug = needs.hotplug
        hot = hotpluggable(bus, slot)  # asked of every device: an unknown bus raises, as evaluate() says
        if hotplug is preferred:
            # a constant to compare with rather than two new sets a device (a missing slot is not {0} either)
            alone = usage.get((a.domain, bus, slot)) == _FUNCTION_ZERO and a.function == 0
            out.append(
                SoftResult("hotplug", hot and alone, hotplug_weight, f"{d.id!r} alone on a hotpluggable slot", d.id)
            )
        if needs.numa_node is not None and not needs.numa_strict:
            node = result.numa_node_of_bus(bus)
            out.append(
                SoftResult(
                    "numa",
                    node == needs.numa_node,
                    numa_weight,
                    f"{d.id!r} under NUMA node {needs.numa_node}",
                    d.id,
                )
            )
        if integrated and result.kind(d).integrated is not Integrated.FORBIDDEN:
            out.append(
                SoftResult("integrated", bus == 0, weights["integrated"], f"{d.id!r} integrated on the root bus", d.id)
            )
        if off_occupied and hotplug is anyhow:
            out.append(
                SoftResult(
                    "hotplug-off-occupied",
                    not hot,
                    weights["hotplug-off-occupied"],
                    f"{d.id!r} on a position with hotplug off",
                    d.id,
                )
            )
    video = vbe_needs_root_bus(request)
    if video is not None and video.id in pending:
        placed = result.device(video.id).address
        out.append(
            SoftResult(
                "primary-video",
                placed is not None and placed.bus == 0,
                weights["primary-video"],
                f"{video.id!r}, the primary VGA, on {result.bus_name(0)}",
                video.id,
            )
        )
    if policy.spare_ports:
        out.extend(_spare_results(result, policy))
    before = {c.index for c in request.controllers}
    added = [c for c in result.controllers if c.index not in before]
    out.append(
        SoftResult(
            "fewer-controllers",
            not added,
            weights["fewer-controllers"] * len(added),
            f"{len(added)} controller(s) added",
        )
    )
    reserved = {c.index: c.io_reserve for c in request.controllers}
    off = [c for c in result.controllers if c.io_reserve == 0 and reserved.get(c.index) != 0]
    if off:
        names = ", ".join(repr(c.name) for c in off)
        out.append(
            SoftResult(
                "io-reserve-off",
                False,
                weights["io-reserve-off"] * len(off),
                f"io-reserve=0 on {len(off)} controller(s) ({names})",
            )
        )
    if policy.ordered:
        out.extend(_order_results(result, policy, pending))
        out.extend(_name_order_results(result, policy, pending))
    return tuple(out)


def _name_order_results(result: Topology, policy: Policy, pending: set[str]) -> list[SoftResult]:
    """The NICs' guest names in NIC order (natural order: ``eno1`` < ``eno2``, ``enp1s0`` < ``enp10s0``)."""
    from pcitopo.naming import names_in_order, nic_order

    nics = nic_order(result)
    if len(nics) < 2 or not any(d.id in pending for d in nics):
        return []
    ok, names = names_in_order(result, nics)
    shown = " < ".join(f"{n} ({d.id})" for n, d in zip(names, nics, strict=True))
    return [SoftResult("order", ok, policy.weights["order"], f"NIC names in NIC order: {shown}", "nic-names")]


def _spare_results(result: Topology, policy: Policy) -> list[SoftResult]:
    want = policy.spare_ports
    weight = policy.weights["spare-ports"]
    scopes: list[tuple[str | None, int]] = []
    if policy.spare_ports_per_node:
        scopes.append(("no NUMA node", spare_ports(result, node=None)))
        scopes += [(f"NUMA node {n}", spare_ports(result, node=n)) for n in range(result.numa_nodes)]
    else:
        scopes.append((None, spare_ports(result)))
    out = []
    for scope, have in scopes:
        missing = max(0, want - have)
        where = f" under {scope}" if scope is not None else ""
        out.append(
            SoftResult(
                "spare-ports",
                missing == 0,
                weight * max(1, missing),
                f"{want} empty hotpluggable port(s){where} (have {have})",
                scope,
            )
        )
    return out


_ANYWHERE = -1


def spare_ports(topology: Topology, *, node: int | None = _ANYWHERE) -> int:
    """Empty hotpluggable ports: anywhere, or (``node=``) under that NUMA node (``None``: under none).

    On PCIe machines a spare is a root or downstream port with nothing below
    it and hotplug on; on others a free hotpluggable slot of a bus that takes
    endpoints.

    >>> spare_ports(Topology.default("q35")), spare_ports(Topology.default("pc"))
    (0, 30)
    """

    def counted(bus: int) -> bool:
        return node == _ANYWHERE or topology.numa_node_of_bus(bus) == node

    if topology.machine.pcie:
        occupied = {c.address.bus for c in topology.controllers if c.address is not None}
        occupied |= {d.address.bus for d in topology.devices if d.address is not None}
        by_name = topology._models_by_name  # what Topology.model finds first for a controller, without the call
        return sum(
            1
            for c in topology.controllers
            if (by_name.get(c.model) or topology.model(c)).port
            and c.index not in occupied
            and topology.is_hotpluggable(c.index, 0)
            and counted(c.index)
        )
    usage = topology.slot_usage()
    free = 0
    for c in topology.controllers:
        m = topology.model(c)
        if not ({Connect.PCI_DEVICE, Connect.PCIE_DEVICE} & m.accepts) or not counted(c.index):
            continue
        for s in m.slot_range():
            if (0, c.index, s) not in usage and topology.is_hotpluggable(c.index, s):
                free += 1
    return free


def _order_results(result: Topology, policy: Policy, pending: set[str]) -> list[SoftResult]:
    by_kind: dict[str, list[tuple[tuple[float, int], Device]]] = {}
    for i, d in enumerate(result.devices):
        hint = d.needs.order
        by_kind.setdefault(d.kind, []).append(((float(i) if hint is None else float(hint), i), d))
    out = []
    for kind, entries in sorted(by_kind.items()):
        if len(entries) < 2 or not any(d.id in pending for _, d in entries):
            continue
        addresses = [d.address for _, d in sorted(entries, key=lambda e: e[0]) if d.address is not None]
        ok = all(a < b for a, b in itertools.pairwise(addresses))
        out.append(SoftResult("order", ok, policy.weights["order"], f"{kind} devices in definition order", kind))
    return out


def _check_completion(request: Topology, result: Topology) -> None:
    if result.machine.name != request.machine.name:
        raise InvalidInput(
            "result", f"is a {result.machine.name} topology, but the request is for {request.machine.name}"
        )
    if (result.numa_nodes, result.acpi) != (request.numa_nodes, request.acpi):
        raise InvalidInput("result", "declares other NUMA nodes or ACPI than the request")
    got = {d.id: d for d in result.devices}
    for d in request.devices:
        r = got.get(d.id)
        if r is None:
            raise InvalidInput(
                f"device {d.id!r}", "is in the request but not in the result; a plan places every device"
            )
        if r.kind != d.kind:
            raise InvalidInput(f"device {d.id!r}", f"is a {d.kind} in the request but a {r.kind} in the result")
        if d.address is not None and r.address != d.address:
            raise InvalidInput(
                f"device {d.id!r}",
                f"is pinned at {d.address} in the request but at {r.address} in the result; a plan never moves it",
            )
        if d.acpi_index is not None and r.acpi_index != d.acpi_index:
            raise InvalidInput(
                f"device {d.id!r}",
                f"has acpi-index {d.acpi_index} in the request but {r.acpi_index} in the result; "
                "a plan never renames it",
            )
        if r.address is None:
            raise InvalidInput(f"device {d.id!r}", "has no address in the result; a plan places every device")
    # every id of the request is in the result (above): it has another exactly when it has more ids, so the ids
    # are listed only then (a thousand a plan scored)
    asked = {d.id for d in request.devices}
    if len(got) != len(asked):
        extra = [d.id for d in result.devices if d.id not in asked]
        raise InvalidInput(f"device {extra[0]!r}", "is in the result but not in the request")
    by_index = {c.index: c for c in result.controllers}
    for c in request.controllers:
        r_c = by_index.get(c.index)
        if r_c is None or r_c.model != c.model:
            found = "missing" if r_c is None else f"a {r_c.model}"
            raise InvalidInput(
                f"controller {c.name!r}", f"is a {c.model} at index {c.index} in the request but {found} in the result"
            )
        if c.address is not None and r_c.address != c.address:
            raise InvalidInput(
                f"controller {c.name!r}",
                f"is pinned at {c.address} in the request but at {r_c.address} in the result; a plan never moves it",
            )
    _check_controllers_placed(result.controllers, result)


def _check_controllers_placed(controllers: Sequence[Controller], result: Topology) -> None:
    for c in controllers:
        if c.address is None and c.index != 0 and not result.model(c).root:
            raise InvalidInput(f"controller {c.name!r}", "has no address in the result; a plan places every controller")
