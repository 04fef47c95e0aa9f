"""Solving: turn a topology with unaddressed devices into a complete, legal plan.

:func:`solve` is the entry point; :class:`Plan` its result. The CSP engine
(python-constraint2) is confined to ``search.py``.
"""

from __future__ import annotations

from pcitopo.solver.plan import Plan, SoftResult, Status
from pcitopo.solver.solve import solve

__all__ = ["Plan", "SoftResult", "Status", "solve"]


def __dir__() -> list[str]:
    return __all__
