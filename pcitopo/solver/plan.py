"""The result of solving: a frozen plan.

A :class:`Plan` holds the topology it was asked about, the completed topology
(every device addressed, the controllers added), which soft constraints were
met, and the cost. Every plan has passed the rules before it is returned, with
the needs that won for each placed device: a policy's ``[[device]]`` override
wins over a device's own needs (:meth:`Policy.needs_for
<pcitopo.policy.Policy.needs_for>`). ``pcitopo.evaluate(plan.request,
plan.topology, plan.policy).violations`` checks exactly that and is empty;
``pcitopo.validate(plan.topology)`` alone checks the devices' own needs, which
an override may have set aside on purpose.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping

import attrs

from pcitopo.address import PciAddress
from pcitopo.devices import Controller
from pcitopo.policy.evaluate import SoftResult, soft_results
from pcitopo.policy.policy import Policy
from pcitopo.topology import Topology

__all__ = ["Plan", "SearchStats", "SoftResult", "Status"]


def __dir__() -> list[str]:
    return __all__


class Status(enum.Enum):
    """How good a plan is known to be."""

    OPTIMAL = "optimal"
    """Proven: no plan the model describes meets the soft constraints at a lower cost."""
    FEASIBLE = "feasible"
    """Every hard constraint holds; a cheaper plan may exist (``Plan.bound`` says how much cheaper at most)."""
    REPRODUCED = "reproduced"
    """libvirt's own placement, reproduced; no claim about its cost."""


@attrs.frozen
class SearchStats:
    """The size of the search behind a plan (all zero for a backend that does not search)."""

    backend: str
    variables: int = 0
    constraints: int = 0
    nodes: int = 0


@attrs.frozen(repr=False)
class Plan:
    """Where every device goes and which controllers were added."""

    request: Topology
    topology: Topology
    policy: Policy
    added: tuple[Controller, ...]
    soft: tuple[SoftResult, ...] = attrs.field(
        default=attrs.Factory(lambda plan: soft_results(plan.request, plan.topology, plan.policy), takes_self=True)
    )
    """The policy's soft constraints as :func:`pcitopo.policy.evaluate` scores them (the default)."""
    status: Status = Status.FEASIBLE
    bound: int | None = None
    """A lower bound of the cost of every plan (equal to the cost when optimal; ``None``: unknown)."""
    stats: SearchStats | None = None
    warnings: tuple[str, ...] = ()
    """What the plan keeps but a careful owner should repair (rules of the pinned part QEMU does not enforce)."""
    not_hotpluggable: tuple[tuple[str, str], ...] = ()
    """Devices that prefer hotplug but could not get it, each with the reason."""

    @property
    def cost(self) -> int:
        """The summed weight of the soft constraints not met."""
        return sum(s.cost for s in self.soft)

    @property
    def assigned(self) -> Mapping[str, PciAddress]:
        """Every device's address by id (pinned ones included)."""
        return {d.id: d.address for d in self.topology.devices if d.address is not None}

    @property
    def new_addresses(self) -> Mapping[str, PciAddress]:
        """The addresses this plan gave, by device or controller id (not the pinned ones)."""
        before = {d.id: d.address for d in self.request.devices}
        result: dict[str, PciAddress] = {
            d.id: d.address for d in self.topology.devices if d.address is not None and before.get(d.id) is None
        }
        before_c = {c.index: c.address for c in self.request.controllers}
        for c in self.topology.controllers:
            if c.address is not None and before_c.get(c.index) is None:
                result[c.name] = c.address
        return result

    def __repr__(self) -> str:
        return (
            f"<Plan {self.policy.name} on {self.topology.machine.name}: {len(self.topology.devices)} devices, "
            f"{len(self.added)} controllers added, cost {self.cost} ({self.status.value})>"
        )

    def summary(self) -> str:
        """A few lines for people: what was added and what the policy did not get."""
        lines = [
            f"policy {self.policy.name}: {len(self.topology.devices)} devices, "
            f"{len(self.added)} controllers added, cost {self.cost} ({self.status.value})"
        ]
        lines += [f"  soft {s}" for s in self.soft if not s.met]
        return "\n".join(lines)
