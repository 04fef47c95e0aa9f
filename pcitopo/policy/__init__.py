"""Policy: what the VM owner wants, as defaults, per-device overrides and soft-constraint weights.

Each name is imported from its module on first use (:mod:`pcitopo._lazy`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pcitopo._lazy import lazy

if TYPE_CHECKING:
    from pcitopo.policy.evaluate import Evaluation, SoftResult, evaluate
    from pcitopo.policy.policy import BUILTIN_POLICIES, Override, Policy

__all__ = ["BUILTIN_POLICIES", "Evaluation", "Override", "Policy", "SoftResult", "evaluate"]

_EVALUATE, _POLICY = "pcitopo.policy.evaluate", "pcitopo.policy.policy"
__getattr__ = lazy(
    __name__,
    {
        "BUILTIN_POLICIES": _POLICY,
        "Evaluation": _EVALUATE,
        "Override": _POLICY,
        "Policy": _POLICY,
        "SoftResult": _EVALUATE,
        "evaluate": _EVALUATE,
    },
)


def __dir__() -> list[str]:
    return __all__
