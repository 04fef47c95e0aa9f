"""``python -m pcitopo`` and the ``pcitopo`` console script: the command line (see :mod:`pcitopo.cli`)."""

from __future__ import annotations

import gc
from typing import NoReturn


def main() -> NoReturn:
    """Run :func:`pcitopo.cli.main_exit` with the cyclic garbage collector kept off start-up's objects.

    Importing allocates hundreds of thousands of objects (classes, functions,
    the machine descriptions) that live until the process exits, so collecting
    while importing, and once more at exit, only walks them for nothing (about
    8% of a short command's instructions). The collector is off while the
    modules load; what they made is then frozen (``gc.freeze``: left out of
    every later collection) and the collector is back on for the command's
    own garbage. At exit everything is frozen, so the interpreter's final
    collections do not walk it either; output is flushed and closed
    explicitly, so nothing waits on a collection. The methods attrs writes
    for pcitopo's classes come compiled from a cache (:mod:`pcitopo._codecache`).
    """
    gc.disable()
    try:
        from pcitopo import _codecache

        _codecache.install()
        from pcitopo import cli

        gc.freeze()
    finally:
        gc.enable()
    try:
        cli.main_exit()
    finally:
        gc.freeze()


if __name__ == "__main__":
    main()
