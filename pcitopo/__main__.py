"""``python -m pcitopo``: the command line (see :mod:`pcitopo.cli`)."""

from __future__ import annotations

from pcitopo.cli import main_exit

if __name__ == "__main__":
    main_exit()
