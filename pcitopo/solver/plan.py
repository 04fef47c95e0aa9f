"""The result of solving: a frozen plan.

A :class:`Plan` holds the topology it was asked about, the completed topology
(every device addressed, the controllers added), which soft constraints were
met, and the cost. Every plan has passed :func:`pcitopo.validate` before it is
returned.
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

__all__ = ["Plan", "SoftResult", "Status"]


def __dir__() -> list[str]:
    return __all__


class Status(enum.Enum):
    """How good a plan is known to be."""

    OPTIMAL = "optimal"
    """No plan meets the soft constraints at a lower cost."""
    FEASIBLE = "feasible"
    """Every hard constraint holds; a cheaper plan may exist."""


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
