"""PEP 562 lazy re-exports: a package names what it offers, and each name is imported on first use.

Start-up time is part of every command an orchestrator runs, so a package
``__init__`` does not import its modules: ``import pcitopo`` stays cheap, and a
command that never solves never imports the solver.

>>> getattr_ = lazy("pcitopo", {"PciAddress": "pcitopo.address"})
>>> getattr_("PciAddress").parse("00:01.0")
<PciAddress('0000:00:01.0')>
>>> getattr_("nothing")
Traceback (most recent call last):
  ...
AttributeError: module 'pcitopo' has no attribute 'nothing'
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping


def lazy(package: str, names: Mapping[str, str]) -> Callable[[str], object]:
    """A module ``__getattr__`` for ``package`` that imports ``name`` from ``names[name]`` when first asked.

    The value is then stored in the package, so later lookups do not come back
    here; importing is thread-safe (Python's import lock) and storing the same
    object twice is harmless.
    """

    def __getattr__(name: str) -> object:
        module = names.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        setattr(sys.modules[package], name, value)
        return value

    return __getattr__
