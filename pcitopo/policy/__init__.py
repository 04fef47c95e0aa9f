"""Policy: what the VM owner wants, as defaults, per-device overrides and soft-constraint weights."""

from __future__ import annotations

from pcitopo.policy.evaluate import Evaluation, SoftResult, evaluate
from pcitopo.policy.policy import BUILTIN_POLICIES, Override, Policy

__all__ = ["BUILTIN_POLICIES", "Evaluation", "Override", "Policy", "SoftResult", "evaluate"]


def __dir__() -> list[str]:
    return __all__
