"""The solver's entry point (work in progress: see issue 3)."""

from __future__ import annotations

from pcitopo.policy.policy import Policy
from pcitopo.solver.plan import Plan
from pcitopo.topology import Topology

__all__ = ["solve"]


def solve(topology: Topology, policy: Policy | str | None = None) -> Plan:
    """Place every unaddressed device of ``topology`` by ``policy`` (default ``hotplug``).

    Adds the controllers needed, never moves an addressed device or controller,
    and returns a frozen :class:`Plan` that has passed validation. Raises
    :class:`~pcitopo.errors.Unsatisfiable` when no plan meets every hard
    requirement, and :class:`~pcitopo.errors.InvalidTopology` when the pinned
    part is already illegal.
    """
    raise NotImplementedError("the solver is being written")
