"""Import less at start-up: PEP 562 lazy re-exports, and the engine without its process pool.

A package names what it offers, and each name is imported on first use.

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

import contextlib
import importlib
import sys
import types
from collections.abc import Callable, Iterator, Mapping
from typing import Any


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


@contextlib.contextmanager
def without_process_pools() -> Iterator[None]:
    """Import a module that names ``concurrent.futures``' executors without importing them.

    python-constraint2 imports ``ProcessPoolExecutor`` and ``ThreadPoolExecutor``
    at its top for a parallel solver pcitopo never uses, and with them
    ``multiprocessing``, ``socket``, ``pickle`` and ``logging``: about a third
    of the instructions of importing pcitopo's solver. Inside this block
    ``concurrent.futures`` is a stand-in whose two names are functions that
    import the real executor when called, and afterwards the real module is
    imported as usual by whoever asks for it. When ``concurrent.futures`` is
    already imported, nothing is changed. (Another thread that imports
    ``concurrent.futures`` for the first time while this block runs would
    get the stand-in; pcitopo enters it once, when its solver is imported.)
    """
    if "concurrent.futures" in sys.modules:
        yield
        return
    import concurrent

    stand_in = types.ModuleType("concurrent.futures", "pcitopo's stand-in while importing python-constraint2")
    stand_in.ProcessPoolExecutor = _process_pool  # type: ignore[attr-defined]
    stand_in.ThreadPoolExecutor = _thread_pool  # type: ignore[attr-defined]
    sys.modules["concurrent.futures"] = stand_in
    try:
        yield
    finally:
        if sys.modules.get("concurrent.futures") is stand_in:
            del sys.modules["concurrent.futures"]
        if getattr(concurrent, "futures", None) is stand_in:
            del concurrent.futures


def _process_pool(*args: Any, **kwargs: Any) -> Any:
    from concurrent.futures import ProcessPoolExecutor

    return ProcessPoolExecutor(*args, **kwargs)


def _thread_pool(*args: Any, **kwargs: Any) -> Any:
    from concurrent.futures import ThreadPoolExecutor

    return ThreadPoolExecutor(*args, **kwargs)
