"""An exhaustive enumerator of the legal completions of small requests: the solver's independent oracle.

:func:`minimum` builds every completion of a request at the concrete level —
every forest of added controllers (any model the machine offers, on any bus
that accepts it), every bus for every device, every layout of each bus's new
children on its slots and functions, the attributes that change a cost
(hotplug off on occupied ports, the NUMA node of new expander buses and host
bridges, ``io-reserve=0`` on new PCIe ports where the firmware honours it)
and, under the ``ordered`` policy, every order of the new
controllers' indexes — checks each with :func:`pcitopo.evaluate` (which runs
:func:`pcitopo.validate` with the policy's hard needs) and returns the least
cost. It imports nothing from :mod:`pcitopo.solver`: only the topology,
legality and policy APIs.

Why the search is complete (each reduction keeps at least one completion of
every cost, so the minimum is the minimum over *all* completions):

* **Controllers added, the bound.** Completions are enumerated by the number
  ``k`` of added controllers, 0, 1, 2, ... Every soft term costs >= 0 and
  ``fewer-controllers`` costs ``k * w`` (``w`` its weight), so once a legal
  completion of cost ``C`` is known, none with ``k * w >= C`` can cost less:
  the search stops there and the result is *proven* (``complete``). With
  ``w == 0`` or when ``max_added`` is reached first the result is the minimum
  over completions with at most ``max_added`` controllers (``complete`` is
  false), and the tests treat it as such.
* **Slots.** A bus's new children go to its empty slots (no built-in, no
  pinned item). Every rule sees a slot only through its range, what else is
  in it and whether it is hotpluggable; the enumerator checks that the empty
  slots of a bus are all alike in hotplug (true of every shipped model), so
  any set of used slots can be mapped in order onto the first ones: the
  enumeration uses, for ``m`` groups, the first ``m`` empty slots, in every
  order of the groups (the ``order`` term compares addresses only relatively).
  Under ``ordered`` the groups' places relative to the bus's occupied slots
  matter too (a device's address against a pinned one's of its kind; the
  guest numbers the buses below a root in slot order, which names the NICs):
  the empty slots fall into runs between occupied ones, and every way of
  dealing the ordered groups out to the runs (each run's first slots) is tried.
  Free functions of slots that hold built-ins are never needed: the requests
  are small and empty slots abound (asserted).
* **Functions.** The items sharing a slot take functions 0, 1, ... in every
  order (function 0 must be used; ``multifunction`` is set on function 0 when
  the slot has more). Any layout maps onto one of these keeping the order of
  addresses.
* **Identity values** (chassis, port, chassis_nr, target_index, bus_nr) change
  no cost; they are chosen unique (chassis = index, port = index) and expander
  ``bus_nr`` packed at the top of the bus-number space, which leaves the most
  room below every root, so a legal choice exists iff this one is legal.
* **Indexes.** New controllers take the indexes after the request's; their
  order matters only to the ``order`` term (a device's bus number is its
  controller's index) and the ``index-order`` rule, so every order is tried
  under ``ordered`` and creation order (parents first) otherwise.
* **Dominated structures are skipped.** A new controller with nothing below it
  that is not a PCIe port (on a PCIe machine, where only ports count as spare)
  can be removed: the cost does not rise (one controller fewer, no term
  needs it) and the rules still hold (it is a leaf; the layouts without it are
  enumerated too). Likewise more empty ports than all spare-port terms want
  together. Forests equal up to the order of siblings are built once.
* **Request items are kept as they are**: a completion never moves, removes
  or changes a controller or device of the request.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence

import attrs

from pcitopo.address import PciAddress
from pcitopo.devices import Controller
from pcitopo.legality.catalog import Connect, ControllerModel, Hotplug
from pcitopo.policy import Policy, evaluate
from pcitopo.policy.evaluate import soft_results
from pcitopo.topology import Topology

__all__ = ["Enumerated", "minimum"]

_ENDPOINTS = frozenset({Connect.PCI_DEVICE, Connect.PCIE_DEVICE})


@attrs.frozen
class Enumerated:
    """The least cost over the legal completions the enumerator built."""

    cost: int | None
    """``None``: no legal completion with at most ``max_added`` added controllers."""
    best: Topology | None
    complete: bool
    """True when the bound proves that no completion with more controllers costs less."""
    completions: int
    """How many legal completions were scored (a candidate that could not beat the best is not checked)."""
    candidates: int
    """How many candidate topologies were built and checked."""


@attrs.frozen
class _New:
    """An added controller of a forest: its model and its parent (a request index, or ``-1 - j`` for new one j)."""

    model: str
    parent: int | None


_FORESTS_PER_CANDIDATE = 20
"""Building a forest costs about a twentieth of checking a candidate: both count against ``max_candidates``."""


def _runs(empty: Sequence[int]) -> list[list[int]]:
    """The empty slots in runs of consecutive slots (the occupied ones between them)."""
    runs: list[list[int]] = []
    for slot in empty:
        if runs and runs[-1][-1] == slot - 1:
            runs[-1].append(slot)
        else:
            runs.append([slot])
    return runs


def _dealt_to_runs(
    runs: Sequence[Sequence[int]], groups: Sequence[list[tuple[str, int]]]
) -> Iterator[list[tuple[int, list[tuple[str, int]]]]]:
    """Every way of putting ``groups``, in this slot order, on the first slots of the runs (as many as fit each)."""
    for picks in itertools.combinations_with_replacement(range(len(runs)), len(groups)):
        taken = dict.fromkeys(range(len(runs)), 0)
        layout: list[tuple[int, list[tuple[str, int]]]] = []
        for run, group in zip(picks, groups, strict=True):
            if taken[run] == len(runs[run]):
                break
            layout.append((runs[run][taken[run]], group))
            taken[run] += 1
        else:
            yield layout


class _Exhausted(Exception):
    """The candidate budget ran out."""


def minimum(request: Topology, policy: Policy, *, max_added: int = 4, max_candidates: int | None = None) -> Enumerated:
    """The least cost of a legal completion of ``request`` under ``policy`` (see the module docstring).

    ``max_candidates`` bounds the work: when that many candidates have been
    built the search stops, and the result is not ``complete``.
    """
    search = _Search(request, policy, max_candidates)
    weight = policy.weights["fewer-controllers"]
    try:
        for k in range(max_added + 1):
            if search.best_cost is not None and weight > 0 and k * weight >= search.best_cost:
                return search.result(complete=True)
            for forest in search.forests(k):
                search.try_forest(forest)
    except _Exhausted:
        return search.result(complete=False)
    done = search.best_cost is not None and weight > 0 and (max_added + 1) * weight >= search.best_cost
    return search.result(complete=done)


class _Search:
    def __init__(self, request: Topology, policy: Policy, max_candidates: int | None) -> None:
        self.max_candidates = max_candidates
        self.request = request
        self.policy = policy
        self.machine = request.machine
        self.catalog = request.catalog
        self.pending = [d for d in request.devices if d.address is None]
        self.first_index = max(c.index for c in request.controllers) + 1
        self.models = [
            m
            for m in self.machine.controllers
            if self.catalog.controller(m).connect is not None or self.catalog.controller(m).root
        ]
        self.best_cost: int | None = None
        self.best: Topology | None = None
        self.forests_built = 0
        self.completions = 0
        self.candidates = 0
        occupied: dict[int, set[int]] = {}
        for address in request.occupants():
            occupied.setdefault(address.bus, set()).add(address.slot)
        self.occupied = occupied
        self.spare_want = policy.spare_ports * ((1 + request.numa_nodes) if policy.spare_ports_per_node else 1)

    def result(self, *, complete: bool) -> Enumerated:
        return Enumerated(self.best_cost, self.best, complete, self.completions, self.candidates)

    # -- forests of added controllers ----------------------------------------------------------

    def _bus_model(self, parent: int, forest: Sequence[_New]) -> ControllerModel:
        if parent >= 0:
            return self.request.model(parent)
        return self.catalog.controller(forest[-1 - parent].model)

    def forests(self, k: int) -> Iterator[tuple[_New, ...]]:
        """Every forest of k added controllers, each plugged where its connect type is accepted, once per shape."""
        seen: set[str] = set()
        for forest in self._grow((), k):
            self.forests_built += 1
            if self.max_candidates is not None and self.forests_built > _FORESTS_PER_CANDIDATE * self.max_candidates:
                raise _Exhausted
            key = self._shape(forest)
            if key not in seen:
                seen.add(key)
                yield forest

    def _grow(self, forest: tuple[_New, ...], k: int) -> Iterator[tuple[_New, ...]]:
        if len(forest) == k:
            yield forest
            return
        parents: list[int | None] = [c.index for c in self.request.controllers]
        parents += [-1 - j for j in range(len(forest))]
        for name in self.models:
            model = self.catalog.controller(name)
            if model.root:
                yield from self._grow((*forest, _New(name, None)), k)
                continue
            for parent in parents:
                assert parent is not None
                bus = self._bus_model(parent, forest)
                if model.connect not in bus.accepts:
                    continue
                if model.expander and parent != 0:
                    continue
                yield from self._grow((*forest, _New(name, parent)), k)

    def _shape(self, forest: Sequence[_New]) -> str:
        def subtree(j: int) -> str:
            kids = sorted(subtree(i) for i, c in enumerate(forest) if c.parent == -1 - j)
            return f"{forest[j].model}({','.join(kids)})"

        return ";".join(
            sorted(f"{c.parent}:{subtree(j)}" for j, c in enumerate(forest) if c.parent is None or c.parent >= 0)
        )

    # -- devices on buses ----------------------------------------------------------------------------

    def try_forest(self, forest: tuple[_New, ...]) -> None:
        k = len(forest)
        weight = self.policy.weights["fewer-controllers"]
        if self.best_cost is not None and weight > 0 and k * weight >= self.best_cost:
            return
        buses = [c.index for c in self.request.controllers] + [-1 - j for j in range(k)]
        endpoint_buses = [b for b in buses if _ENDPOINTS & self._bus_model(b, forest).accepts]
        for parents in itertools.product(endpoint_buses, repeat=len(self.pending)):
            if self._dominated(forest, parents):
                continue
            self._try_placement(forest, parents)

    def _dominated(self, forest: Sequence[_New], parents: Sequence[int]) -> bool:
        used = set(parents) | {c.parent for c in forest}
        empty_ports = 0
        for j, c in enumerate(forest):
            if -1 - j in used:
                continue
            model = self.catalog.controller(c.model)
            if model.port:
                empty_ports += 1
            elif self.machine.pcie:
                return True
        return empty_ports > self.spare_want

    def _try_placement(self, forest: Sequence[_New], parents: Sequence[int]) -> None:
        children: dict[int, list[tuple[str, int]]] = {}
        for j, c in enumerate(forest):
            if c.parent is not None:
                children.setdefault(c.parent, []).append(("c", j))
        for i, bus in enumerate(parents):
            children.setdefault(bus, []).append(("d", i))
        per_bus = [(bus, list(self._layouts(bus, forest, items))) for bus, items in sorted(children.items())]
        if any(not layouts for _, layouts in per_bus):
            return
        for order in self._index_orders(forest, parents):
            for choice in itertools.product(*(layouts for _, layouts in per_bus)):
                where: dict[tuple[str, int], PciAddress] = {}
                multi: set[tuple[str, int]] = set()
                for (bus, _), layout in zip(per_bus, choice, strict=True):
                    index = bus if bus >= 0 else self.first_index + order[-1 - bus]
                    for slot, group in layout:
                        for function, item in enumerate(group):
                            where[item] = PciAddress(bus=index, slot=slot, function=function)
                        if len(group) > 1:
                            multi.add(group[0])
                for attributes in self._attributes(forest, parents):
                    self._score(forest, order, where, multi, attributes)

    def _index_orders(self, forest: Sequence[_New], parents: Sequence[int]) -> Iterator[tuple[int, ...]]:
        """Orders of the new indexes that differ where it can matter: creation order unless ``ordered``.

        A device's address holds its bus's index, so under ``ordered`` the order
        of the indexes of buses that hold devices matters, and so does, for the
        ``index-order`` rule, whether a new controller's index is above its new
        parent's. Nothing else reads an index value.
        """
        k = len(forest)
        if not self.policy.ordered:
            yield tuple(range(k))
            return
        holding = sorted({-1 - p for p in parents if p < 0})
        seen: set[tuple[object, ...]] = set()
        for order in itertools.permutations(range(k)):
            key = (
                tuple(sorted(holding, key=lambda j: order[j])),
                tuple(
                    order[j] > order[-1 - c.parent]
                    for j, c in enumerate(forest)
                    if c.parent is not None and c.parent < 0
                ),
            )
            if key not in seen:
                seen.add(key)
                yield order

    def _layouts(
        self, bus: int, forest: Sequence[_New], items: list[tuple[str, int]]
    ) -> Iterator[list[tuple[int, list[tuple[str, int]]]]]:
        """Every way that can matter to put ``items`` on the first empty slots of ``bus`` (see the module docstring)."""
        model = self._bus_model(bus, forest)
        taken = self.occupied.get(bus, set()) if bus >= 0 else set()
        empty = [s for s in model.slot_range() if s not in taken]
        hot = {self._slot_hot(bus, model, s) for s in empty}
        assert len(hot) <= 1, f"bus {bus}: empty slots differ in hotplug; the slot reduction does not hold"
        grouped = any(kind == "d" and self.pending[i].needs.slot_group is not None for kind, i in items)
        if len(items) <= len(empty) and not grouped:
            # a slot of its own for each item is as legal as any packing (no slot group asks for one) and
            # costs the same; only the relative order of the devices can matter (``order``)
            devices = [item for item in items if item[0] == "d"]
            controllers = [item for item in items if item[0] == "c"]
            if not self.policy.ordered:
                yield [(slot, [item]) for slot, item in zip(empty, [*devices, *controllers], strict=False)]
                return
            for devices_in_order in itertools.permutations(devices):
                sequence = [[item] for item in [*devices_in_order, *controllers]]
                yield from _dealt_to_runs(_runs(empty), sequence)
            return
        seen: set[tuple[tuple[tuple[str, int], ...], ...]] = set()
        for groups in _ordered_partitions(items, model.functions):
            if len(groups) > len(empty):
                continue
            if not self.policy.ordered:
                # the slots are alike: which group takes which slot changes nothing
                key = tuple(sorted(tuple(g) for g in groups))
                if key in seen:
                    continue
                seen.add(key)
                yield list(zip(empty, groups, strict=False))
                continue
            yield from _dealt_to_runs(_runs(empty), groups)

    def _slot_hot(self, bus: int, model: ControllerModel, slot: int) -> bool:
        if bus >= 0:
            return self.request.is_hotpluggable(bus, slot)
        if model.hotplug is Hotplug.NEVER:
            return False
        return model.hotplug_slots is None or model.hotplug_slots[0] <= slot <= model.hotplug_slots[1]

    def _attributes(self, forest: Sequence[_New], parents: Sequence[int]) -> Iterator[dict[int, dict[str, object]]]:
        """Hotplug on or off on each occupied new port that has a switch; each new root or expander's NUMA node;
        QEMU's io-reserve=0 or not on each new PCIe port that takes it, where the firmware honours it and has an
        IO-window budget (what the solver may set: it leaves pci-bridges their reservation)."""
        used = set(parents) | {c.parent for c in forest}
        options: list[list[tuple[int, dict[str, object]]]] = []
        nodes: list[int | None] = [None, *range(self.request.numa_nodes)]
        fw = self.request.firmware_model
        budget = self.request.io_window_budget() is not None
        for j, c in enumerate(forest):
            model = self.catalog.controller(c.model)
            if model.port and model.hotplug is Hotplug.DEFAULT_ON and -1 - j in used:
                options.append([(j, {}), (j, {"hotplug": False})])
            if budget and fw is not None and c.model in fw.io_reserve_off and model.io_reserve_devices and model.port:
                options.append([(j, {}), (j, {"io_reserve": 0})])
            if "numa-node" in model.identity and self.request.numa_nodes:
                options.append([(j, {"numa_node": n}) for n in nodes])
        for combo in itertools.product(*options):
            merged: dict[int, dict[str, object]] = {}
            for j, values in combo:
                merged.setdefault(j, {}).update(values)
            yield merged

    # -- one candidate --------------------------------------------------------------------------------

    def _score(
        self,
        forest: Sequence[_New],
        order: Sequence[int],
        where: dict[tuple[str, int], PciAddress],
        multi: set[tuple[str, int]],
        attributes: dict[int, dict[str, object]],
    ) -> None:
        self.candidates += 1
        if self.max_candidates is not None and self.candidates > self.max_candidates:
            raise _Exhausted
        candidate = self._build(forest, order, where, multi, attributes)
        if self.best_cost is not None:
            # the rules are the slow part: check them only for a candidate that would be the new best
            cost = sum(s.cost for s in soft_results(self.request, candidate, self.policy))
            if cost >= self.best_cost:
                return
        scored = evaluate(self.request, candidate, self.policy)
        if not scored.legal:
            return
        self.completions += 1
        if self.best_cost is None or scored.cost < self.best_cost:
            self.best_cost = scored.cost
            self.best = candidate

    def _build(
        self,
        forest: Sequence[_New],
        order: Sequence[int],
        where: dict[tuple[str, int], PciAddress],
        multi: set[tuple[str, int]],
        attributes: dict[int, dict[str, object]],
    ) -> Topology:
        existing_roots = [c for c in self.request.controllers if self.request.model(c).root and c.index != 0]
        target = 1 + max((c.target_index or 0 for c in existing_roots), default=0)
        added: list[Controller] = []
        for j, c in enumerate(forest):
            model = self.catalog.controller(c.model)
            index = self.first_index + order[j]
            fields: dict[str, object] = {}
            if "chassis" in model.identity:
                fields.update(chassis=index, port=index)
            if "chassis-nr" in model.identity:
                fields["chassis_nr"] = index
            if "target-index" in model.identity:
                fields["target_index"] = target
                target += 1
            fields.update(attributes.get(j, {}))
            added.append(
                Controller(
                    index,
                    c.model,
                    address=where.get(("c", j)),
                    multifunction=True if ("c", j) in multi else None,
                    **fields,  # type: ignore[arg-type]
                )
            )
        devices = []
        pending = iter(range(len(self.pending)))
        for d in self.request.devices:
            if d.address is not None:
                devices.append(d)
                continue
            i = next(pending)
            placed = d.placed_at(where[("d", i)])
            if ("d", i) in multi:
                placed = attrs.evolve(placed, multifunction=True)
            devices.append(placed)
        topology = self.request.replace(controllers=[*self.request.controllers, *added], devices=devices)
        return _with_bus_nr(topology, [c.index for c in added if self.catalog.controller(c.model).expander])


def _with_bus_nr(topology: Topology, expanders: Sequence[int]) -> Topology:
    """Expander bus_nr packed at the top of the bus-number space, in index order."""
    if not expanders:
        return topology
    top = topology.machine.bus_numbers
    end = top
    numbers: dict[int, int] = {}
    for index in sorted(expanders, reverse=True):
        need = topology.subtree_bus_numbers(index)
        nr = min(end - need, min(254, top - 1))
        numbers[index] = nr
        end = nr
    return topology.replace(
        controllers=[
            attrs.evolve(c, bus_nr=numbers[c.index]) if c.index in numbers else c for c in topology.controllers
        ]
    )


def _ordered_partitions(items: Sequence[tuple[str, int]], size: int) -> Iterator[list[list[tuple[str, int]]]]:
    """Every sequence of groups (each an ordered list of at most ``size`` items) that uses every item once."""
    if not items:
        yield []
        return
    n = len(items)
    for perm in itertools.permutations(items):
        # cut the permutation into consecutive groups: 2**(n-1) ways
        for cuts in itertools.product([False, True], repeat=n - 1):
            groups: list[list[tuple[str, int]]] = [[perm[0]]]
            for item, cut in zip(perm[1:], cuts, strict=True):
                if cut:
                    groups.append([item])
                else:
                    groups[-1].append(item)
            if all(len(g) <= size for g in groups):
                yield groups
