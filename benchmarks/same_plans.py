"""Check that two checkouts of pcitopo plan alike: ``python benchmarks/same_plans.py OTHER [--random N]``.

A change meant only to make the solver faster must not change a single plan.
This solves the same requests with this checkout and with the one at
``OTHER`` (a directory holding another ``pcitopo/``, say ``git archive main``
unpacked), each in a process of its own, and compares what came out: the
status, cost and bound, every soft result, every controller (its ``str``) and
every device's address, or the error's type and text. It prints each
difference and a count, and exits 1 when any plan differs.

The requests: every data file of ``benchmarks/data/`` under its own policy and
every other built-in one (the largest, past 600 devices, under ``minimal``
and ``hotplug`` only), then ``--random`` requests drawn once with
``pcitopo.strategies`` (derandomized, so the same ones each run) in three
thirds: small requests on every shipped machine with drawn policies, weights
and ``[[device]]`` overrides (as the optimality test draws them), requests of
8..60 devices, and legal topologies with some devices unaddressed. A request
that takes longer than ``--timeout`` seconds on either side is counted as
skipped, not compared.

Not a test (pytest does not collect ``benchmarks/``): it takes minutes, and
two runs of the same code always agree.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

Case = tuple[str, Any, Any]
"""A label, a request (a Topology, or a data file's path) and a policy (or a built-in policy's name)."""


def draw_requests(n: int) -> list[Case]:
    """``n`` requests and policies drawn with this checkout's strategies (derandomized)."""
    import attrs
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis import strategies as st

    from pcitopo.legality.machine import machines as shipped
    from pcitopo.strategies import device_requests, legal_topologies, machines, policies
    from pcitopo.topology import Topology
    from tests.support.optimality import POLICIES, small_requests, with_overrides

    out: list[Case] = []
    common: dict[str, Any] = {
        "database": None,
        "phases": [Phase.generate],
        "deadline": None,
        "suppress_health_check": list(HealthCheck),
        "derandomize": True,
        "max_examples": max(1, n // 3),
    }

    @settings(**common)
    @given(st.data())
    def small(data: st.DataObject) -> None:
        request = data.draw(small_requests(max_devices=4))
        policy = data.draw(with_overrides(request, data.draw(POLICIES)))
        out.append((f"small{len(out)}", request, policy))

    @settings(**common)
    @given(st.data())
    def larger(data: st.DataObject) -> None:
        machine = data.draw(machines(names=sorted(shipped())))
        nodes = data.draw(st.integers(0, 4))
        devices = data.draw(device_requests(machine=machine, min_devices=8, max_devices=60, numa_nodes=nodes))
        request = Topology.build(machine, devices=devices, numa_nodes=nodes)
        policy = data.draw(with_overrides(request, data.draw(policies(max_spare_ports=3) | POLICIES)))
        out.append((f"larger{len(out)}", request, policy))

    @settings(**common)
    @given(st.data())
    def partly_placed(data: st.DataObject) -> None:
        request = data.draw(legal_topologies(max_devices=12))
        open_ = data.draw(st.integers(0, len(request.devices)))
        devices = [attrs.evolve(d, address=None) if i < open_ else d for i, d in enumerate(request.devices)]
        out.append((f"placed{len(out)}", request.replace(devices=devices), data.draw(policies(max_spare_ports=2))))

    small()
    larger()
    partly_placed()
    return out


def benchmark_cases() -> list[Case]:
    """Every data file under its own policy and the other built-in ones."""
    from pcitopo.policy import BUILTIN_POLICIES

    out: list[Case] = []
    for path in sorted((HERE / "data").glob("*.json")):
        data = json.loads(path.read_text(encoding="utf-8"))
        names = [data["policy"], *sorted(BUILTIN_POLICIES)]
        if len(data["devices"]) > 600:
            names = [data["policy"], "minimal", "hotplug"]
        out += [(f"{path.stem}:{name}", str(path), name) for name in dict.fromkeys(names)]
    return out


def _outcome(solve: Callable[[], Any]) -> str:
    """What one solve gave, as text: the plan's every figure and address, or the error."""
    try:
        plan = solve()
    except TimeoutError:
        return "TIMEOUT"
    except Exception as e:  # every error is an outcome to compare
        return f"{type(e).__name__}: {e}"
    t = plan.topology
    controllers = "; ".join(str(c) for c in t.controllers)
    devices = "; ".join(f"{d.id}@{d.address}" for d in t.devices)
    soft = [str(s) for s in plan.soft]
    return f"{plan.status} cost={plan.cost} bound={plan.bound} soft={soft} C[{controllers}] D[{devices}]"


def worker(cases_file: str, out_file: str, timeout: int) -> None:
    """Solve every case with the pcitopo on ``sys.path``; one JSON line per case."""
    sys.path.insert(0, str(HERE))
    import run

    from pcitopo.policy.policy import Policy
    from pcitopo.solver import solve

    def alarm(signum: int, frame: FrameType | None) -> None:
        raise TimeoutError

    signal.signal(signal.SIGALRM, alarm)
    with open(cases_file, "rb") as f:
        cases: list[Case] = pickle.load(f)  # written by this script just before
    with open(out_file, "w", encoding="utf-8") as out:
        for label, request, policy in cases:
            topology = run.load_case(Path(request))[1] if isinstance(request, str) else request
            chosen = Policy.named(policy) if isinstance(policy, str) else policy
            signal.alarm(timeout)
            try:
                outcome = _outcome(lambda: solve(topology, chosen))  # noqa: B023 -- called at once
            finally:
                signal.alarm(0)
            out.write(json.dumps([label, outcome]) + "\n")
            out.flush()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("other", type=Path, help="a directory holding the other checkout's pcitopo/")
    parser.add_argument("--random", type=int, default=450, help="random requests (default 450)")
    parser.add_argument("--timeout", type=int, default=120, help="seconds a request may take (default 120)")
    parser.add_argument("--no-benchmarks", action="store_true", help="only the random requests")
    parser.add_argument("--worker", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker(args.worker[0], args.worker[1], args.timeout)
        return 0
    sys.path.insert(0, str(ROOT))
    cases = ([] if args.no_benchmarks else benchmark_cases()) + draw_requests(args.random)
    with tempfile.TemporaryDirectory() as tmp:
        cases_file = os.path.join(tmp, "cases.pickle")
        with open(cases_file, "wb") as f:
            pickle.dump(cases, f)
        results = []
        for side, root in (("this", ROOT), ("other", args.other.resolve())):
            out_file = os.path.join(tmp, f"{side}.jsonl")
            env = {**os.environ, "PYTHONPATH": f"{root}{os.pathsep}{ROOT}"}
            command = [sys.executable, __file__, str(args.other), "--timeout", str(args.timeout)]
            subprocess.run([*command, "--worker", cases_file, out_file], env=env, check=True, cwd=root)
            with open(out_file, encoding="utf-8") as f:
                results.append(dict(json.loads(line) for line in f))
    mine, theirs = results
    same = skipped = 0
    differ = []
    for label, outcome in mine.items():
        if "TIMEOUT" in (outcome, theirs[label]):
            skipped += 1
        elif outcome == theirs[label]:
            same += 1
        else:
            differ.append(label)
            print(f"{label} differs:\n  this:  {outcome}\n  other: {theirs[label]}")
    print(f"{len(mine)} requests: {same} planned alike, {len(differ)} differ, {skipped} timed out (not compared)")
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main())
