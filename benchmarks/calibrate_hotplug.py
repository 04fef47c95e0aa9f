"""Measure which device kinds QEMU hot-adds, and regenerate the catalog's ``hotpluggable`` flags.

Every driver of ``pcitopo/legality/data/devices.toml`` (the ``virtio-variants``
included) is hot-added with QMP ``device_add`` into an empty slot of a paused
QEMU at each of four positions (``tests/support/hotplug.py``): a q35
``pcie-root-port``, a slot of a q35 ``pcie-pci-bridge``, a slot of pc's root
bus ``pci.0`` and a slot of a pc ``pci-bridge``. Each answer is ``accepted``,
``refused`` ("Parameter 'driver' expects a pluggable device type"),
``backend`` (past the hotplug check, failed for a host resource this machine
lacks), ``absent`` (no such driver in this QEMU) or ``other``.

A kind is hot-pluggable when its drivers are accepted (or fail only for their
backend) at every position, and not when they are refused at every position.
Anything else (a driver refused at one position and taken at another, an
``other`` error) is printed and leaves the flag alone: one flag per kind could
not say it.

Usage::

    python benchmarks/calibrate_hotplug.py                 # measure, print, write results/hotplug.json
    python benchmarks/calibrate_hotplug.py --update-data   # also rewrite devices.toml and _shipped.py

It needs QEMU 7.2 (``qemu-system-x86``) and takes about 15 s.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pcitopo.legality.catalog import Catalog  # noqa: E402
from tests.support.hotplug import POSITIONS, Outcome, measure  # noqa: E402

DATA = ROOT / "pcitopo" / "legality" / "data" / "devices.toml"
RESULTS = ROOT / "benchmarks" / "results" / "hotplug.json"


def verdicts(outcomes: list[Outcome]) -> dict[str, dict[str, Outcome]]:
    """Outcomes by driver, then position."""
    out: dict[str, dict[str, Outcome]] = {}
    for o in outcomes:
        out.setdefault(o.driver, {})[o.position] = o
    return out


def flag(by_position: dict[str, Outcome]) -> bool | None:
    """The ``hotpluggable`` flag the outcomes of one driver decide, or ``None`` when they decide none."""
    seen = {o.verdict for o in by_position.values()}
    if seen and seen <= {"accepted", "backend"}:
        return True
    if seen == {"refused"}:
        return False
    return None


def kind_flags(catalog: Catalog, by_driver: dict[str, dict[str, Outcome]]) -> dict[str, bool | None]:
    """The flag of each table of devices.toml: the one its drivers agree on (absent drivers do not count)."""
    tables: dict[str, set[bool | None]] = {}
    for kind in catalog.devices.values():
        base = kind.name.removesuffix("-non-transitional").removesuffix("-transitional")
        outcomes = by_driver[kind.qemu_device]
        if {o.verdict for o in outcomes.values()} == {"absent"}:
            tables.setdefault(base, set())
            continue
        tables.setdefault(base, set()).add(flag(outcomes))
    return {name: (flags.pop() if len(flags) == 1 else None) for name, flags in tables.items()}


def rewrite(text: str, flags: dict[str, bool | None]) -> str:
    """devices.toml with ``hotpluggable = false`` in exactly the tables whose flag is False (None: unchanged)."""
    out: list[str] = []
    for block in re.split(r"(?m)^(?=\[)", text):
        m = re.match(r"\[([^\]]+)\]\n", block)
        if m is None or flags.get(m.group(1)) is None:
            out.append(block)
            continue
        body = re.sub(r"(?m)^hotpluggable = (true|false)\n", "", block)
        if flags[m.group(1)] is False:
            lines = body.rstrip("\n").split("\n")
            trailing = body[len(body.rstrip("\n")) :]
            body = "\n".join([*lines, "hotpluggable = false"]) + trailing
        out.append(body)
    return "".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--update-data", action="store_true", help="rewrite devices.toml and _shipped.py")
    parser.add_argument("--output", type=Path, default=RESULTS, help="the JSON results file")
    args = parser.parse_args(argv)
    catalog = Catalog.default()
    drivers = sorted({k.qemu_device for k in catalog.devices.values()})
    outcomes: list[Outcome] = []
    for position in POSITIONS:
        outcomes += measure(drivers, position)
    by_driver = verdicts(outcomes)
    undecided = []
    for driver, by_position in sorted(by_driver.items()):
        texts = {f"{o.verdict}{': ' + o.error if o.error else ''}" for o in by_position.values()}
        where = "every position" if len(texts) == 1 else ", ".join(f"{p}={o.verdict}" for p, o in by_position.items())
        print(f"{driver:36} {' | '.join(sorted(texts))}  ({where})")
        if flag(by_position) is None and {o.verdict for o in by_position.values()} != {"absent"}:
            undecided.append(driver)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(
        json.dumps(
            {
                "positions": list(POSITIONS),
                "outcomes": [
                    {"driver": o.driver, "position": o.position, "verdict": o.verdict, "error": o.error}
                    for o in outcomes
                ],
            },
            indent=1,
        )
        + "\n"
    )
    print(f"results: {args.output}")
    if undecided:
        print(f"undecided (flags left alone): {', '.join(undecided)}")
    if args.update_data:
        flags = kind_flags(catalog, by_driver)
        text = DATA.read_text()
        new = rewrite(text, flags)
        if new != text:
            DATA.write_text(new)
            print(f"rewrote {DATA.relative_to(ROOT)}")
        subprocess.run([sys.executable, "-m", "pcitopo.legality._toml"], cwd=ROOT, check=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
