"""The process tree, read from ``/proc``: for tests and benchmarks that look at worker processes."""

from __future__ import annotations

from pathlib import Path


def children() -> dict[int, list[int]]:
    """Each running process's children, by parent pid (processes that exit while being read are left out)."""
    below: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text(encoding="utf-8")
            except OSError:
                continue
            below.setdefault(int(stat.rsplit(")", 1)[1].split()[1]), []).append(int(entry.name))
    return below
