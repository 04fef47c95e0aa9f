"""Run pcitopo's benchmarks: ``python benchmarks/run.py [--quick] [--output FILE] [--update-docs]``.

Every case reads a fixed input from ``benchmarks/data/`` (made once by
``make_data.py``), times it repeatedly and reports the median, min and max
wall time and the peak memory Python allocated (``tracemalloc``, in a separate
run so that tracing does not slow the timed runs). Results go to
``benchmarks/results/latest.json`` (or ``--output``) and a Markdown table on
stdout and in ``benchmarks/results/latest.md``; ``--update-docs`` also
rewrites the results section of ``docs/benchmarks.rst``.

Four kinds of benchmark, each a function below with a docstring saying what
it times: :func:`bench_plan` (the solver on one topology),
:func:`bench_assign` (the ``pcitopo assign`` command end to end, in-process),
:func:`bench_virsh_define` (libvirt's own ``virsh define`` of the same file)
and :func:`bench_start` (``pcitopo assign`` and ``virsh define`` as whole
processes, started fresh every run, on the same file).

These are not tests: pytest does not collect them (``testpaths`` is
``tests pcitopo``) and no test asserts a time.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import fnmatch
import gc
import io
import json
import math
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from pcitopo.devices import Device, HotplugNeed, Needs  # noqa: E402
from pcitopo.errors import PcitopoError, Unsatisfiable  # noqa: E402
from pcitopo.policy.policy import Policy  # noqa: E402
from pcitopo.topology import Topology  # noqa: E402

DATA = HERE / "data"
RESULTS = HERE / "results"
DOCS_PAGE = ROOT / "docs" / "benchmarks.rst"
ASSIGN_INPUT = DATA / "assign-q35-150.xml"
START_INPUTS = (DATA / "start-q35-9.xml", DATA / "start-q35-171.xml")
START_TARGET_MS = 100.0
"""The goal for ``pcitopo assign`` on the 9-device domain, as a whole process (issue 10)."""
START_TARGET_RATIO = 1.5
"""The goal on the 171-device domain: at most this times ``virsh define`` of the same file."""
MEMORY_LIMIT_MB = 50.0
"""Issue 9's bound on the memory of one plan (issue 3 had 100 MB)."""
T = TypeVar("T")
BEGIN = ".. BEGIN GENERATED RESULTS (python benchmarks/run.py --update-docs)"
END = ".. END GENERATED RESULTS"


# -- measuring ---------------------------------------------------------------------------------


@dataclass
class Result:
    """The figures of one case."""

    name: str
    kind: str
    description: str
    devices: int
    outcome: str = "ok"
    """``ok``; ``unsatisfiable`` (the solver explained why; the time is the time to explain); ``error``; ``skipped``."""
    message: str = ""
    runs: int = 0
    median_ms: float | None = None
    min_ms: float | None = None
    max_ms: float | None = None
    peak_mb: float | None = None
    target_ms: float | None = None
    series: str | None = None
    facts: dict[str, Any] = field(default_factory=dict)

    @property
    def meets_target(self) -> bool | None:
        if self.target_ms is None or self.median_ms is None or self.outcome != "ok":
            return None
        return self.median_ms <= self.target_ms


@dataclass
class Settings:
    repeats: int
    budget_s: float
    """Stop repeating a case after this much time (at least ``min_repeats`` runs)."""
    min_repeats: int = 3


def measure(fn: Callable[[T], object], settings: Settings, setup: Callable[[], T]) -> tuple[list[float], float]:
    """Wall times (ms) of repeated ``fn(setup())`` after one warm-up, and the peak traced memory (MB) of one.

    ``setup`` runs before the clock starts, every time, so that a run never
    profits from what an earlier one cached on its input.
    """
    fn(setup())  # warm-up: imports, caches of machine descriptions
    times: list[float] = []
    started = time.perf_counter()
    while len(times) < settings.repeats:
        arg = setup()
        gc.collect()
        t0 = time.perf_counter()
        fn(arg)
        times.append((time.perf_counter() - t0) * 1000)
        if len(times) >= settings.min_repeats and time.perf_counter() - started > settings.budget_s:
            break
    arg = setup()
    gc.collect()
    tracemalloc.start()
    try:
        fn(arg)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    return times, peak / 2**20


def _nothing() -> None:
    return None


def _fill(result: Result, times: list[float], peak_mb: float) -> Result:
    result.runs = len(times)
    result.median_ms = statistics.median(times)
    result.min_ms = min(times)
    result.max_ms = max(times)
    result.peak_mb = peak_mb
    return result


# -- inputs ------------------------------------------------------------------------------------


def load_case(path: Path) -> tuple[dict[str, Any], Topology]:
    """A data file and the topology it describes (every device unaddressed)."""
    data = json.loads(path.read_text(encoding="utf-8"))
    devices = [
        Device(
            d["id"],
            d["kind"],
            needs=Needs(
                hotplug=HotplugNeed(d.get("hotplug", "any")),
                numa_node=d.get("numa_node"),
                numa_strict=d.get("numa_strict", False),
            ),
        )
        for d in data["devices"]
    ]
    topology = Topology.build(data["machine"], devices=devices, numa_nodes=data["numa_nodes"])
    return data, topology


# -- the benchmarks ----------------------------------------------------------------------------


def bench_plan(path: Path, settings: Settings) -> Result:
    """Times ``pcitopo.solver.solve(topology, policy)`` on the topology of one data file.

    Reading the JSON and building the :class:`~pcitopo.topology.Topology` happen
    before the clock starts, anew for every run (so no run profits from the
    graph an earlier one cached on its input); the time covers the whole
    solve: the input's graph, demand classes,
    the CSP, the layout, the controllers' identities and the validation of the
    plan. A case the solver proves unsatisfiable is timed too (the time to
    explain it).
    """
    data, topology = load_case(path)
    policy = Policy.named(data["policy"])

    def fresh() -> Topology:
        """A new, equal topology: nothing cached on it by an earlier run."""
        return load_case(path)[1]

    from pcitopo.solver import solve

    result = Result(
        name=data["name"],
        kind="plan",
        description=data["description"],
        devices=len(data["devices"]),
        target_ms=data.get("target_ms"),
        series=data.get("series"),
        facts={"machine": data["machine"], "numa_nodes": data["numa_nodes"], "policy": data["policy"]},
    )
    try:
        plan = solve(topology, policy)
    except Unsatisfiable as exc:
        result.outcome = "unsatisfiable"
        result.message = str(exc)

        def explain(t: Topology) -> None:
            with contextlib.suppress(Unsatisfiable):
                solve(t, policy)

        return _fill(result, *measure(explain, settings, fresh))
    except PcitopoError as exc:
        result.outcome = "error"
        result.message = str(exc)
        return result
    counts: dict[str, int] = {}
    for c in plan.added:
        counts[c.model] = counts.get(c.model, 0) + 1
    stats = plan.stats
    result.facts.update(
        added=dict(sorted(counts.items())),
        bus_numbers_used=plan.topology.bus_numbers_used(),
        cost=plan.cost,
        bound=plan.bound,
        status=plan.status.value,
        csp_variables=stats.variables if stats else 0,
        csp_constraints=stats.constraints if stats else 0,
        csp_nodes=stats.nodes if stats else 0,
    )
    return _fill(result, *measure(lambda t: solve(t, policy), settings, fresh))


def bench_assign(path: Path, settings: Settings) -> Result:
    """Times ``pcitopo assign IN.xml -o OUT.xml`` end to end, in-process (:func:`pcitopo.cli.main`).

    Parsing the libvirt XML, planning with the default policy, writing the
    domain back and replacing the output file atomically (with ``fsync``) are
    all inside the clock; starting a Python interpreter is not (about 0.1 s
    more from a shell).
    """
    from pcitopo.cli import main

    result = Result(
        name="assign-q35-150",
        kind="assign",
        description="pcitopo assign: parse a 150-device q35 domain, plan, write it",
        devices=_count_devices(path),
    )
    with tempfile.TemporaryDirectory(prefix="pcitopo-bench-") as tmp:
        out = Path(tmp) / "out.xml"
        sink = io.StringIO()

        def run(_: None = None) -> None:
            code = main(["assign", str(path), "-o", str(out)], stdout=sink, stderr=sink)
            if code != 0:
                raise RuntimeError(f"pcitopo assign exited {code}: {sink.getvalue()[-500:]}")

        try:
            run()
        except RuntimeError as exc:
            result.outcome = "error"
            result.message = str(exc)
            return result
        text = out.read_text(encoding="utf-8")
        result.facts["pcie_root_ports"] = text.count("model='pcie-root-port'")
        return _fill(result, *measure(run, settings, _nothing))


def bench_virsh_define(path: Path, settings: Settings) -> Result:
    """Times libvirt defining the same file: ``define``, ``dumpxml --inactive``, ``undefine``.

    The three commands go to one long-lived ``virsh`` session
    (``tests/support/libvirt.py``), so the time is libvirtd's own work (parse,
    assign addresses, add controllers, save, format) plus the socket round
    trips, not the start of a ``virsh`` process. libvirtd is started (and
    installed) the way the integration tests do it; when that is impossible
    the row says why and is skipped.
    """
    result = _libvirt_row(
        "virsh-define-q35-150",
        "virsh",
        "libvirt: virsh define + dumpxml --inactive + undefine of the same domain",
        path,
    )
    if result.outcome != "ok":
        return result
    from tests.support.libvirt import LibvirtError, define_and_dump

    xml = path.read_text(encoding="utf-8")
    try:
        dumped = define_and_dump(xml)
    except LibvirtError as exc:
        result.outcome = "error"
        result.message = f"libvirt refused the domain: {exc}"
        return result
    result.facts["pcie_root_ports"] = dumped.count("model='pcie-root-port'")
    result.facts["libvirt_version"] = _libvirt_version()
    times, _ = measure(lambda _: define_and_dump(xml), settings, _nothing)
    result = _fill(result, times, 0.0)
    result.peak_mb = None  # the work happens in libvirtd, not in this process
    return result


def bench_virsh_define_process(path: Path, settings: Settings) -> Result:
    """Times ``virsh define FILE`` as a whole process, the way a script calls libvirt once per domain.

    Each run starts ``virsh -c qemu:///system define`` on a copy of the file
    (under a name of its own) and waits for it to exit: the process start,
    the connection to libvirtd and libvirtd's work (parse, assign addresses,
    add controllers, save) are inside the clock. The ``undefine`` after each
    run is outside it. This is the yardstick of ``pcitopo serve``'s
    per-domain cost.
    """
    result = _libvirt_row(
        "virsh-define-process-q35-150",
        "virsh-process",
        "libvirt: one `virsh define FILE` process (start, connect, define), the same domain",
        path,
    )
    if result.outcome != "ok":
        return result
    with tempfile.TemporaryDirectory(prefix="pcitopo-bench-") as tmp:
        define = _VirshDefine(path, Path(tmp))
        try:
            times = _wall_times(lambda _: define.run(), settings, define.undefine)
        except RuntimeError as exc:
            result.outcome, result.message = "error", str(exc)
            return result
        finally:
            define.undefine()
    result.facts["libvirt_version"] = _libvirt_version()
    result = _fill(result, times, 0.0)
    result.peak_mb = None
    return result


def _libvirt_row(name: str, kind: str, description: str, path: Path) -> Result:
    """The row of a libvirt case on ``path``: ``skipped``, saying why, when libvirt cannot be timed here."""
    result = Result(name=name, kind=kind, description=description, devices=_count_devices(path))
    reason = _virsh_ready()
    if reason is not None:
        result.outcome, result.message = "skipped", reason
    return result


class _VirshDefine:
    """``virsh define`` of one domain file as a whole process, under a new name each time; ``undefine`` after.

    The one way every libvirt row starts libvirt's work (:func:`bench_virsh_define_process`,
    :func:`bench_start`): the file is copied into ``directory`` with its ``<name>``
    replaced, so that no run meets the domain an earlier one defined.
    """

    def __init__(self, path: Path, directory: Path) -> None:
        self.text = path.read_text(encoding="utf-8")
        self.original = f"<name>{_domain_name(self.text)}</name>"
        self.directory = directory
        self.size = path.stem.rsplit("-", 1)[1]
        self.runs = 0
        self.defined: str | None = None

    def run(self) -> float:
        """Define a fresh copy; its wall time (ms). Raises ``RuntimeError`` with virsh's message when it fails."""
        self.undefine()
        self.runs += 1
        unique = f"pcitopo-bench-{os.getpid()}-{self.size}-{self.runs}"
        domain = self.directory / f"{unique}.xml"
        domain.write_text(self.text.replace(self.original, f"<name>{unique}</name>", 1), encoding="utf-8")
        self.defined = unique
        wall, _ = _run_process(_virsh("define", str(domain)))
        return wall

    def undefine(self) -> None:
        """Undefine what the last run defined (outside every clock)."""
        if self.defined is not None:
            subprocess.run(_virsh("undefine", self.defined), capture_output=True, check=False)
            self.defined = None


def _virsh(*args: str) -> list[str]:
    return ["virsh", "-q", "-c", VIRSH_URI, *args]


def bench_serve(path: Path, settings: Settings) -> Result:
    """Times one ``assign`` request to a running ``pcitopo serve``: the per-domain cost an orchestrator pays.

    One ``pcitopo serve`` process (the installed one, :func:`_installed`) is
    started outside the clock and answers a warm-up request; then each run
    writes one request line with the domain's XML inline and reads the
    response line: JSON in and out, parse, plan, export, all through the
    pipes. Compared with :func:`bench_virsh_define_process` on the same file
    (target ≤ 0.3 of it).
    """
    result = Result(
        name="serve-assign-q35-150",
        kind="serve",
        description="pcitopo serve: one assign request and its response, the same domain, server running",
        devices=_count_devices(path),
    )
    try:
        with _Server(path, jobs=1) as server:
            server.exchange(1)
            cpu_before = _cpu_s(server.pid)
            times, _ = measure(lambda _: server.exchange(1), settings, _nothing)
            # measure() asks len(times) + 2 times (a warm-up and a traced run): the server's CPU per request
            result.facts["server_cpu_ms_per_request"] = round(
                (_cpu_s(server.pid) - cpu_before) * 1000 / (len(times) + 2), 1
            )
    except (RuntimeError, ValueError) as exc:
        result.outcome, result.message = "error", str(exc)
        return result
    result.facts["load_average_1min"] = round(os.getloadavg()[0], 2)
    result = _fill(result, times, 0.0)
    result.peak_mb = None  # the work happens in the server process
    return result


PIPELINED = 20
"""Requests in flight at once in the pipelined serve case."""


def bench_serve_pipelined(path: Path, settings: Settings, jobs: int = 2) -> Result:
    """Times ``pcitopo serve --jobs 2`` answering requests sent ahead: the cost per domain at full throughput.

    Each run writes 20 ``assign`` requests for the same domain at once (from
    a thread, so that neither side blocks on a full pipe) and reads the 20
    responses, in order; the figure is the run's time divided by 20. The
    server (and its workers) are started and warmed up outside the clock.
    """
    result = Result(
        name=f"serve-pipelined-j{jobs}-q35-150",
        kind="serve-pipelined",
        description=f"pcitopo serve --jobs {jobs}: {PIPELINED} assign requests sent ahead, time per request",
        devices=_count_devices(path),
    )
    try:
        with _Server(path, jobs=jobs) as server:
            server.exchange(PIPELINED)
            times, _ = measure(lambda _: server.exchange(PIPELINED), settings, _nothing)
    except (RuntimeError, ValueError) as exc:
        result.outcome, result.message = "error", str(exc)
        return result
    result = _fill(result, [t / PIPELINED for t in times], 0.0)
    result.peak_mb = None
    result.facts["load_average_1min"] = round(os.getloadavg()[0], 2)
    return result


class _Server:
    """A running ``pcitopo serve [--jobs N]`` and a client that sends it the same ``assign`` request."""

    def __init__(self, path: Path, *, jobs: int) -> None:
        self.request = (json.dumps({"id": 0, "op": "assign", "xml": path.read_text(encoding="utf-8")}) + "\n").encode()
        command, env = _pcitopo()
        self.process = subprocess.Popen(
            [*command, "serve", "--jobs", str(jobs)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env
        )
        assert self.process.stdin is not None
        assert self.process.stdout is not None
        self.stdin, self.stdout = self.process.stdin, self.process.stdout
        self.pid = self.process.pid

    def __enter__(self) -> _Server:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stdin.close()
        self.process.wait(timeout=60)

    def exchange(self, count: int) -> None:
        """Send ``count`` requests (several from a thread: neither side blocks on a full pipe); read the answers."""
        import threading

        def send() -> None:
            self.stdin.write(self.request * count)
            self.stdin.flush()

        sender = threading.Thread(target=send)
        if count > 1:
            sender.start()
        else:
            send()
        for _ in range(count):
            answer = json.loads(self.stdout.readline())
            if answer["outcome"] != "planned":
                raise RuntimeError(f"serve answered {answer['outcome']}: {answer.get('error')}")
        if count > 1:
            sender.join()


FLEET_DOMAINS = 1000
"""Domains in the fleet benchmark: the 250 of ``data/fleet-q35-15/``, four times over."""


def bench_fleet(settings: Settings, jobs: int) -> Result:
    """Times ``pcitopo assign DIR -o OUT --jobs N`` on 1,000 15-device domains, as a whole process.

    The 250 fixed guests of ``data/fleet-q35-15/`` are copied four times (under
    four prefixes) into a temporary directory, outside the clock. Each run is
    one ``pcitopo`` process (the installed one, :func:`_installed`): start-up, the worker processes, reading,
    planning, writing every output (durably, in batches) and the summary. The
    figure that matters is domains per second (target ≥ 100 on 2 cores).
    """
    result = Result(
        name=f"fleet-assign-1000-j{jobs}",
        kind="fleet",
        description=f"pcitopo assign over 1,000 15-device domains, --jobs {jobs}, whole process",
        devices=15,
        target_ms=FLEET_DOMAINS / 100 * 1000 if jobs == 2 else None,
    )
    pcitopo, env = _pcitopo()
    fleet_settings = Settings(repeats=min(settings.repeats, 5), budget_s=settings.budget_s * 3, min_repeats=1)
    with tempfile.TemporaryDirectory(prefix="pcitopo-bench-fleet-") as tmp:
        inputs = Path(tmp) / "in"
        inputs.mkdir()
        sources = sorted((DATA / "fleet-q35-15").glob("*.xml"))
        for copy in range(FLEET_DOMAINS // len(sources)):
            for source in sources:
                shutil.copyfile(source, inputs / f"r{copy}-{source.name}")
        command = [*pcitopo, "assign", str(inputs), "-o", str(Path(tmp) / "out"), "--jobs", str(jobs)]

        def clean() -> None:
            shutil.rmtree(Path(tmp) / "out", ignore_errors=True)

        cpu: list[float] = []

        def run(_: None = None) -> None:
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            with subprocess.Popen(
                command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, text=True
            ) as process:
                below: dict[int, float] = {}  # CPU seen so far of each process under it (workers, fork server)
                while process.poll() is None:
                    for pid in _descendants(process.pid):
                        with contextlib.suppress(OSError, ValueError, IndexError):
                            below[pid] = max(below.get(pid, 0.0), _cpu_s(pid))
                    time.sleep(0.2)
                output = process.stdout.read() if process.stdout else ""
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpu.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime + sum(below.values()))
            written = len(list((Path(tmp) / "out").glob("*.xml")))
            if process.returncode != 0 or written != FLEET_DOMAINS:
                raise RuntimeError(f"exit {process.returncode}, {written} written: {output[-300:]}")

        try:
            times = _wall_times(run, fleet_settings, clean)
        except RuntimeError as exc:
            result.outcome = "error"
            result.message = str(exc)
            return result
    result = _fill(result, times, 0.0)
    result.peak_mb = None  # the work happens in the worker processes
    assert result.median_ms is not None
    result.facts.update(
        domains=FLEET_DOMAINS,
        jobs=jobs,
        domains_per_s=round(FLEET_DOMAINS / (result.median_ms / 1000), 1),
        load_average_1min=round(os.getloadavg()[0], 2),
    )
    # CPU of the whole run: the pcitopo process (RUSAGE_CHILDREN) and what /proc showed of its workers,
    # sampled every 0.2 s (the last fraction of a second of each worker may be missed)
    result.facts["cpu_s"] = round(statistics.median(cpu), 2)
    result.facts["domains_per_cpu_s"] = round(FLEET_DOMAINS / statistics.median(cpu), 1)
    return result


def _wall_times(fn: Callable[[None], object], settings: Settings, setup: Callable[[], None]) -> list[float]:
    """:func:`measure` without its traced run, for cases whose work happens in other processes."""
    setup()
    fn(None)  # warm-up: page cache, .pyc files
    times: list[float] = []
    started = time.perf_counter()
    while len(times) < settings.repeats:
        setup()
        t0 = time.perf_counter()
        fn(None)
        times.append((time.perf_counter() - t0) * 1000)
        if len(times) >= settings.min_repeats and time.perf_counter() - started > settings.budget_s:
            break
    return times


def _descendants(pid: int) -> list[int]:
    """Every process below ``pid``, from ``/proc``."""
    from tests.support.procs import children

    below = children()
    found, todo = [], [pid]
    while todo:
        for child in below.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _cpu_s(pid: int) -> float:
    """CPU seconds (user + system) a running process has used, from ``/proc/PID/stat``."""
    fields = Path(f"/proc/{pid}/stat").read_text(encoding="utf-8").rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _run_process(command: Sequence[str], *, env: dict[str, str] | None = None) -> tuple[float, float]:
    """Wall and CPU time (ms) of one fresh process; raises ``RuntimeError`` when it fails."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run(
        command,
        cwd=ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        check=False,
    )
    wall = (time.perf_counter() - t0) * 1000
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} exited {proc.returncode}: {proc.stderr.decode()[-500:]}")
    cpu = (after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime) * 1000
    return wall, cpu


_INSTALLED: dict[str, tuple[Path | None, str]] = {}


def _installed() -> tuple[Path | None, str]:
    """A fresh virtual environment with this checkout installed as users install it: its directory, or why not.

    ``python -m venv`` (no system site-packages) and ``pip install .``: a
    regular install, not an editable one, with the dependencies from the
    package index and the ``.pyc`` files pip compiles. So the whole-process
    rows count what a user's ``pcitopo`` pays, and neither an editable
    install's import hook nor the ``.pth`` files of this machine's own
    site-packages. Made once per run, in a temporary directory removed at exit.
    """
    if "venv" not in _INSTALLED:
        import atexit

        root = Path(tempfile.mkdtemp(prefix="pcitopo-bench-venv-"))
        atexit.register(shutil.rmtree, root, ignore_errors=True)
        venv = root / "venv"
        steps = [
            [sys.executable, "-m", "venv", str(venv)],
            [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", str(ROOT)],
        ]
        reason = ""
        for step in steps:
            done = subprocess.run(step, capture_output=True, text=True, check=False, cwd=root)
            if done.returncode != 0:
                reason = f"{' '.join(step[:4])} failed: {(done.stderr or done.stdout).strip()[-300:]}"
                break
        _INSTALLED["venv"] = (None if reason else venv, reason)
    return _INSTALLED["venv"]


def _pcitopo() -> tuple[list[str], dict[str, str]]:
    """The command that runs pcitopo as a user would, and its environment.

    The installed ``pcitopo`` script of :func:`_installed`; when no virtual
    environment can be made (no package index), ``python -m pcitopo`` from
    the checkout, as a fallback the results name (``facts.pcitopo``). The
    environment never has ``PYTHONDONTWRITEBYTECODE`` (an installed pcitopo
    has its ``.pyc`` files; this sandbox sets the variable).
    """
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONDONTWRITEBYTECODE", "PYTHONPATH")}
    venv, _ = _installed()
    if venv is not None:
        return [str(venv / "bin" / "pcitopo")], env
    return [sys.executable, "-m", "pcitopo"], {**env, "PYTHONPATH": str(ROOT)}


DEPENDENCIES_ONLY = """\
import attrs
from lxml import etree
from pcitopo._lazy import without_process_pools
with without_process_pools():
    import constraint
"""
"""What every ``pcitopo assign`` imports that is not pcitopo: the floor under its start-up.

``pcitopo._lazy`` is imported for the stand-in that keeps python-constraint2's
process pool out, as the solver does (``import pcitopo`` itself imports
nothing else: its names are lazy)."""

FLOORS = ("start-python", "start-dependencies")
"""The rows of :func:`bench_start` that are not a command on a domain."""


def bench_start(path: Path, settings: Settings) -> list[Result]:
    """Times ``pcitopo assign IN.xml -o OUT.xml`` and ``virsh define IN.xml`` as whole processes.

    Every run starts a fresh process and the clock covers all of it, from
    ``fork`` to exit: for pcitopo the Python interpreter, its ``site`` start-up,
    every import, reading the machine descriptions, planning and writing the
    file (with ``fsync``); for libvirt the ``virsh`` process, its connection to
    the running libvirtd and libvirtd's own work (parse, assign addresses, add
    controllers, save the definition). The domain gets a unique name for each
    ``virsh define`` and is undefined after the clock stops. The runs of the
    commands alternate, so that both see the same load on a shared machine.

    Rows: ``start-assign-*`` is the ``pcitopo`` script of a fresh virtual
    environment with the checkout installed (:func:`_installed`),
    ``start-virsh-define-*`` libvirt, ``start-python`` the same
    environment's interpreter doing nothing (``python -c pass``), and
    ``start-dependencies`` it importing pcitopo's dependencies and nothing
    else (:data:`DEPENDENCIES_ONLY`): the floors under the pcitopo rows. The median and min CPU time of the pcitopo
    processes are in the facts: steadier than wall time on a busy machine.
    """
    n = _count_devices(path)
    size = path.stem.rsplit("-", 1)[1]
    out_dir = Path(tempfile.mkdtemp(prefix="pcitopo-bench-start-"))
    pcitopo, env = _pcitopo()
    how = "installed in a fresh venv" if len(pcitopo) == 1 else "python -m pcitopo from the checkout: no venv"
    commands: dict[str, tuple[list[str], str]] = {
        f"start-assign-q35-{size}": (
            [*pcitopo, "assign", str(path), "-o", str(out_dir / "out.xml")],
            f"pcitopo assign as a whole process ({how}), {n}-device q35 domain",
        ),
    }
    if size == "9":
        python = str(Path(pcitopo[0]).with_name("python")) if len(pcitopo) == 1 else sys.executable
        commands["start-python"] = ([python, "-c", "pass"], "python -c pass: the same interpreter doing nothing")
        commands["start-dependencies"] = (
            [python, "-c", DEPENDENCIES_ONLY],
            "the same interpreter importing pcitopo's dependencies and nothing else (attrs, lxml.etree, "
            "python-constraint2 as pcitopo imports it)",
        )
    virsh_name = f"start-virsh-define-q35-{size}"
    results = {
        name: Result(name=name, kind="start", description=description, devices=0 if name in FLOORS else n)
        for name, (_, description) in commands.items()
    }
    virsh = Result(
        name=virsh_name,
        kind="start",
        description=f"virsh define of the same file as a whole process, against the running libvirtd ({n} devices)",
        devices=n,
    )
    walls: dict[str, list[float]] = {name: [] for name in [*commands, virsh_name]}
    cpus: dict[str, list[float]] = {name: [] for name in commands}
    virsh_reason = _virsh_ready()
    if virsh_reason is not None:
        virsh.outcome, virsh.message = "skipped", virsh_reason
    define = _VirshDefine(path, out_dir)
    try:
        for name, (command, _) in commands.items():  # warm-up: page cache
            try:
                _run_process(command, env=env)
            except RuntimeError as exc:
                results[name].outcome, results[name].message = "error", str(exc)
        started = time.perf_counter()
        for i in range(settings.repeats):
            for name, (command, _) in commands.items():
                if results[name].outcome == "ok":
                    wall, cpu = _run_process(command, env=env)
                    walls[name].append(wall)
                    cpus[name].append(cpu)
            if virsh.outcome == "ok":
                try:
                    walls[virsh_name].append(define.run())
                except RuntimeError as exc:
                    virsh.outcome, virsh.message = "error", str(exc)
                finally:
                    define.undefine()
            if i + 1 >= settings.min_repeats and time.perf_counter() - started > 8 * settings.budget_s:
                break
    finally:
        shutil.rmtree(out_dir, ignore_errors=True)
    for name, result in [*results.items(), (virsh_name, virsh)]:
        if walls[name]:
            _fill(result, walls[name], 0.0)
            result.peak_mb = None
        if cpus.get(name):
            result.facts["cpu_median_ms"] = round(statistics.median(cpus[name]), 1)
            result.facts["cpu_min_ms"] = round(min(cpus[name]), 1)
        result.facts["load_average_1min"] = round(os.getloadavg()[0], 2)
    if size == "9":
        results[f"start-assign-q35-{size}"].target_ms = START_TARGET_MS
    elif virsh.median_ms is not None:
        results[f"start-assign-q35-{size}"].target_ms = round(START_TARGET_RATIO * virsh.median_ms, 1)
    return [*results.values(), virsh]


VIRSH_URI = "qemu:///system"


def _virsh_ready() -> str | None:
    """``None`` when ``virsh define`` can be timed against a running libvirtd, else why not."""
    try:
        from tests.support.libvirt import URI, ensure_libvirtd
    except ImportError as exc:
        return f"tests/support/libvirt.py cannot be imported: {exc}"
    assert URI == VIRSH_URI
    reason = ensure_libvirtd()
    return None if reason is None else f"libvirt is not available: {reason}"


def _domain_name(text: str) -> str:
    start = text.index("<name>") + len("<name>")
    return text[start : text.index("</name>", start)]


def _count_devices(path: Path) -> int:
    from pcitopo.formats.libvirt import LibvirtDomain

    return len(LibvirtDomain.from_path(path).topology.devices)


# -- growth ------------------------------------------------------------------------------------


def loglog_slope(points: Sequence[tuple[float, float]]) -> float:
    """The least-squares slope of log(y) over log(x).

    >>> round(loglog_slope([(10, 1.0), (100, 100.0), (1000, 10000.0)]), 6)
    2.0
    """
    xs = [math.log(x) for x, _ in points]
    ys = [math.log(y) for _, y in points]
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    sxx = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sxx


def growth(results: Iterable[Result]) -> list[dict[str, Any]]:
    """For each series: the fitted exponent over its solved sizes, beside the exponent n·log n has there."""
    series: dict[str, list[Result]] = {}
    for r in results:
        if r.series is not None:
            series.setdefault(r.series, []).append(r)
    out = []
    for name, rows in series.items():
        rows = sorted(rows, key=lambda r: r.devices)
        solved = [(float(r.devices), r.median_ms) for r in rows if r.outcome == "ok" and r.median_ms]
        entry: dict[str, Any] = {
            "series": name,
            "sizes": [r.devices for r in rows],
            "solved": [int(n) for n, _ in solved],
            "not_solved": {str(r.devices): r.outcome for r in rows if r.outcome != "ok"},
        }
        if len(solved) >= 3:
            slope = loglog_slope(solved)
            reference = loglog_slope([(n, n * math.log(n)) for n, _ in solved])
            large = [(n, t) for n, t in solved if n >= 100]
            entry.update(
                slope=round(slope, 3),
                nlogn_slope=round(reference, 3),
                within_nlogn=slope <= reference,
                slope_from_100=round(loglog_slope(large), 3) if len(large) >= 3 else None,
                nlogn_slope_from_100=round(loglog_slope([(n, n * math.log(n)) for n, _ in large]), 3)
                if len(large) >= 3
                else None,
                ms_per_device_first=round(solved[0][1] / solved[0][0], 4),
                ms_per_device_last=round(solved[-1][1] / solved[-1][0], 4),
            )
        out.append(entry)
    return out


# -- reporting ---------------------------------------------------------------------------------


def _ms(value: float | None) -> str:
    if value is None:
        return "–"
    return f"{value:.1f}" if value >= 10 else f"{value:.2f}"


def _outcome(r: Result) -> str:
    if r.outcome == "ok":
        if r.meets_target is None:
            return "ok"
        return f"ok, target ≤ {r.target_ms:g} ms {'met' if r.meets_target else 'MISSED'}"
    first = r.message.strip().splitlines()[0] if r.message.strip() else ""
    if r.outcome == "unsatisfiable":
        return "unsatisfiable (time to explain)"
    return f"{r.outcome}: {first[:110]}"


def rows(results: Sequence[Result]) -> list[list[str]]:
    head = [
        "case",
        "devices",
        "median ms",
        "min ms",
        "max ms",
        "runs",
        "peak MB",
        "CSP vars / cons / nodes",
        "status (cost)",
        "outcome",
    ]
    body = [
        [
            r.name,
            str(r.devices),
            _ms(r.median_ms),
            _ms(r.min_ms),
            _ms(r.max_ms),
            str(r.runs),
            "–" if r.peak_mb is None else f"{r.peak_mb:.1f}",
            _csp(r),
            f"{r.facts['status']} ({r.facts['cost']})" if "status" in r.facts else "–",
            _outcome(r),
        ]
        for r in results
    ]
    return [head, *body]


def _csp(r: Result) -> str:
    """The search behind a plan: CSP variables, constraints and nodes (partial assignments checked)."""
    if "csp_variables" not in r.facts:
        return "–"
    return f"{r.facts['csp_variables']} / {r.facts['csp_constraints']} / {r.facts['csp_nodes']}"


def summary_lines(report: dict[str, Any]) -> list[str]:
    """The figures a reader wants first, as sentences."""
    out = []
    by_name = {r["name"]: r for r in report["results"]}
    for name in ("q35-numa4-240", "q35-mixed-1000", "virt-mixed-1000"):
        r = by_name.get(name)
        if r and r["median_ms"] is not None:
            verdict = "met" if r["median_ms"] <= (r["target_ms"] or math.inf) else "missed"
            out.append(
                f"{name}: median {_ms(r['median_ms'])} ms (target ≤ {r['target_ms']} ms: {verdict}), "
                f"peak {r['peak_mb']:.1f} MB"
            )
    for g in report["growth"]:
        if "slope" in g:
            verdict = "within" if g["within_nlogn"] else "worse than"
            out.append(
                f"{g['series']}: time grows as n^{g['slope']:.2f} over {g['solved'][0]}–{g['solved'][-1]} devices "
                f"({verdict} n·log n, whose slope there is {g['nlogn_slope']:.2f}"
                + (
                    f"; from 100 devices up n^{g['slope_from_100']:.2f} against {g['nlogn_slope_from_100']:.2f})"
                    if g.get("slope_from_100") is not None
                    else ")"
                )
                + (
                    f"; not solved: {', '.join(f'{k} ({v})' for k, v in g['not_solved'].items())}"
                    if g["not_solved"]
                    else ""
                )
            )
    peaks = [r["peak_mb"] for r in report["results"] if r["peak_mb"] is not None]
    if peaks:
        verdict = "under" if max(peaks) < MEMORY_LIMIT_MB else "OVER"
        rss = report["environment"].get("max_rss_mb")
        out.append(
            f"largest peak memory of one case: {max(peaks):.1f} MB allocated by Python "
            f"({verdict} {MEMORY_LIMIT_MB:g} MB)"
            + (f"; the whole benchmark process peaked at {rss:.0f} MB resident" if rss else "")
        )
    for f in report.get("fleet", []):
        verdict = "met" if f["domains_per_s"] >= 100 else "missed"
        out.append(
            f"fleet: {f['domains']} 15-device domains with --jobs {f['jobs']} in {f['median_s']:.2f} s as one process: "
            f"{f['domains_per_s']:.0f} domains/s"
            + (f" (target ≥ 100 on 2 cores: {verdict})" if f["jobs"] == 2 else "")
            + f"; load average {f['load_average_1min']}"
            + (
                f"; {f['domains_per_cpu_s']:.0f} domains per CPU second, whole run included"
                f" (at most about {min(2, f['jobs']) * f['domains_per_cpu_s']:.0f}/s"
                f" on {min(2, f['jobs'])} idle core{'s' if f['jobs'] > 1 else ''})"
                if "domains_per_cpu_s" in f
                else ""
            )
        )
    sv = report.get("serve_vs_libvirt")
    if sv is not None:
        parts = [
            f"serve: one assign request on the 150-device domain {_ms(sv['serve_ms'])} ms "
            f"({sv['server_cpu_ms']} ms of the server's CPU)"
        ]
        if sv["ratio_to_process"] is not None:
            verdict = "met" if sv["ratio_to_process"] <= sv["target_ratio"] else "missed"
            parts.append(
                f"vs a `virsh define` process {_ms(sv['virsh_process_ms'])} ms: ratio {sv['ratio_to_process']:.2f} "
                f"(target ≤ {sv['target_ratio']}: {verdict})"
            )
        if sv.get("pipelined_ms") is not None:
            parts.append(
                f"with --jobs 2 and requests sent ahead {_ms(sv['pipelined_ms'])} ms a domain"
                + (
                    f" (ratio {sv['pipelined_ratio_to_process']:.2f} to the virsh process)"
                    if sv.get("pipelined_ratio_to_process") is not None
                    else ""
                )
            )
        if sv["ratio_to_session"] is not None:
            parts.append(
                f"vs define + dumpxml in a virsh session {_ms(sv['virsh_session_ms'])} ms: "
                f"ratio {sv['ratio_to_session']:.2f}"
            )
        out.append("; ".join(parts))
    for size in ("9", "171"):
        a, v = by_name.get(f"start-assign-q35-{size}"), by_name.get(f"start-virsh-define-q35-{size}")
        if a and v and a["median_ms"] is not None and v["median_ms"] is not None:
            goal = f"≤ {START_TARGET_MS:g} ms" if size == "9" else f"≤ {START_TARGET_RATIO:g}x virsh define"
            verdict = "met" if a["meets_target"] else "missed"
            out.append(
                f"start-up, {a['devices']}-device q35 domain, whole processes, pcitopo installed in a fresh venv: "
                f"pcitopo assign {_ms(a['median_ms'])} ms (min {_ms(a['min_ms'])}; CPU median "
                f"{_ms(a['facts'].get('cpu_median_ms'))}, min {_ms(a['facts'].get('cpu_min_ms'))}) vs virsh define "
                f"{_ms(v['median_ms'])} ms (min {_ms(v['min_ms'])}), ratio {a['median_ms'] / v['median_ms']:.2f} "
                f"(goal {goal}: {verdict}); load average {a['facts'].get('load_average_1min')}"
            )
    base = by_name.get("start-python")
    if base and base["median_ms"] is not None:
        out.append(
            f"the venv's interpreter doing nothing (python -c pass) takes {_ms(base['median_ms'])} ms here "
            f"(min {_ms(base['min_ms'])})"
        )
    deps, virsh = by_name.get("start-dependencies"), by_name.get("start-virsh-define-q35-171")
    if deps and deps["median_ms"] is not None:
        line = (
            f"the same interpreter importing pcitopo's dependencies and nothing else (attrs, lxml.etree, "
            f"python-constraint2) takes {_ms(deps['median_ms'])} ms (min {_ms(deps['min_ms'])})"
        )
        if virsh and virsh["median_ms"] is not None:
            line += (
                f": {deps['median_ms'] / virsh['median_ms']:.2f}x virsh define of the 171-device domain, "
                f"before pcitopo's first line runs"
            )
        out.append(line)
    ratio = report.get("assign_vs_libvirt")
    if ratio is not None:
        out.append(
            f"assign end to end vs libvirt define on the same 150-device domain: "
            f"{_ms(ratio['assign_ms'])} ms vs {_ms(ratio['libvirt_ms'])} ms (ratio {ratio['ratio']:.2f})"
        )
    return out


def markdown(report: dict[str, Any], results: Sequence[Result]) -> str:
    table = rows(results)
    lines = ["| " + " | ".join(table[0]) + " |", "|" + "|".join("---" for _ in table[0]) + "|"]
    lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in table[1:]]
    lines += ["", _measured(report), ""]
    lines += [f"- {s}" for s in summary_lines(report)]
    return "\n".join(lines) + "\n"


def rst(report: dict[str, Any], results: Sequence[Result]) -> str:
    table = rows(results)
    lines = [BEGIN, "", ".. list-table::", "   :header-rows: 1", ""]
    for row in table:
        lines.append("   * - " + _rst_cell(row[0]))
        lines += [f"     - {_rst_cell(cell)}" for cell in row[1:]]
    lines += ["", _rst_cell(_measured(report)), ""]
    lines += [f"* {_rst_cell(s)}" for s in summary_lines(report)]
    lines += ["", END]
    return "\n".join(lines)


def _measured(report: dict[str, Any]) -> str:
    env = report["environment"]
    text = (
        f"Measured {env['date']} on {env['cpu']} ({env['cpus']} CPUs), Python {env['python']}, pcitopo {env['commit']}"
    )
    load = env.get("load_average")
    if load:
        text += f", load average {load} on entry"
    earlier = report.get("earlier")
    if not earlier:
        return text + "."
    new = [r["name"] for r in report["results"] if r["name"] not in earlier["cases"]]
    return f"{text}: rows {', '.join(new)}. The other rows are from {earlier['date']}, pcitopo {earlier['commit']}."


def _rst_cell(text: str) -> str:
    return text.replace("*", "\\*").replace("`", "\\`").replace("|", "\\|") or "\\ "


def update_docs(text: str) -> None:
    page = DOCS_PAGE.read_text(encoding="utf-8")
    if BEGIN not in page or END not in page:
        raise SystemExit(f"{DOCS_PAGE}: the markers {BEGIN!r} and {END!r} are missing")
    head, rest = page.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    DOCS_PAGE.write_text(head + text + tail, encoding="utf-8")


def environment() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    commit = "unknown"
    if shutil.which("git"):
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "pcitopo"], cwd=ROOT, capture_output=True, text=True
        )
        if head.returncode == 0:
            commit = head.stdout.strip() + (" + uncommitted changes" if dirty.stdout.strip() else "")
    return {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": cpu,
        "cpus": os.cpu_count(),
        "commit": commit,
        "load_average": " ".join(f"{x:.1f}" for x in os.getloadavg()),
    }


def _libvirt_version() -> str | None:
    if shutil.which("virsh") is None:
        return None
    out = subprocess.run(["virsh", "--version"], capture_output=True, text=True, check=False)
    return out.stdout.strip() or None


# -- main --------------------------------------------------------------------------------------


def plan_cases() -> list[Path]:
    """Every plan data file, in a fixed order: the targets first, then the growth series by size."""

    def key(p: Path) -> tuple[int, str, int]:
        stem = p.stem
        order = (
            "q35-numa4",
            "q35-numa1",
            "q35-240",
            "q35-mixed",
            "virt-mixed",
            "growth-1to4",
            "growth-1to19",
            "growth-virt",
            "pc-",
            "pseries",
        )
        rank = next((i for i, prefix in enumerate(order) if stem.startswith(prefix)), len(order))
        size = int(stem.rsplit("-", 1)[1]) if stem.rsplit("-", 1)[1].isdigit() else 0
        return (rank, stem.rsplit("-", 1)[0], size)

    return sorted(DATA.glob("*.json"), key=key)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run pcitopo's benchmarks on the inputs in benchmarks/data/.")
    parser.add_argument("--quick", action="store_true", help="5 runs per case at most (default 21)")
    parser.add_argument("--output", metavar="FILE", type=Path, default=RESULTS / "latest.json", help="the JSON results")
    parser.add_argument("--update-docs", action="store_true", help="rewrite the results table in docs/benchmarks.rst")
    parser.add_argument(
        "--case", metavar="GLOB", action="append", help="only the cases whose name matches (repeatable)"
    )
    args = parser.parse_args(argv)
    settings = Settings(repeats=5, budget_s=2.0) if args.quick else Settings(repeats=21, budget_s=8.0)

    def wanted(name: str) -> bool:
        return not args.case or any(fnmatch.fnmatchcase(name, g) for g in args.case)

    results: list[Result] = []
    for path in plan_cases():
        if wanted(path.stem):
            results.append(_progress(bench_plan(path, settings)))
    if wanted("assign-q35-150"):
        results.append(_progress(bench_assign(ASSIGN_INPUT, settings)))
    if wanted("virsh-define-q35-150"):
        results.append(_progress(bench_virsh_define(ASSIGN_INPUT, settings)))
    if wanted("virsh-define-process-q35-150"):
        results.append(_progress(bench_virsh_define_process(ASSIGN_INPUT, settings)))
    if wanted("serve-assign-q35-150"):
        results.append(_progress(bench_serve(ASSIGN_INPUT, settings)))
    if wanted("serve-pipelined-j2-q35-150"):
        results.append(_progress(bench_serve_pipelined(ASSIGN_INPUT, settings)))
    for jobs in (1, 2):
        if wanted(f"fleet-assign-1000-j{jobs}"):
            results.append(_progress(bench_fleet(settings, jobs)))
    for path in START_INPUTS:
        size = path.stem.rsplit("-", 1)[1]
        names = [f"start-assign-q35-{size}", f"start-virsh-define-q35-{size}"]
        if any(wanted(n) for n in names + (list(FLOORS) if size == "9" else [])):
            results += [_progress(r) for r in bench_start(path, settings)]

    earlier: dict[str, Any] | None = None
    if args.case and args.output.exists():
        # only some cases ran: keep the other rows of the last run, and say when they were measured
        previous = json.loads(args.output.read_text(encoding="utf-8"))
        ran = {r.name for r in results}
        kept = [_from_dict(r) for r in previous["results"] if r["name"] not in ran]
        if kept:
            earlier = {**previous["environment"], "cases": [r.name for r in kept]}
            results = _merge(kept, results)
    report: dict[str, Any] = {
        "environment": environment(),
        "earlier": earlier,
        "settings": {"repeats": settings.repeats, "budget_s": settings.budget_s, "quick": args.quick},
        "results": [_as_dict(r) for r in results],
        "growth": growth(results),
    }
    by_kind = {r.kind: r for r in results}
    a, v = by_kind.get("assign"), by_kind.get("virsh")
    if a and v and a.median_ms and v.median_ms:
        report["assign_vs_libvirt"] = {
            "assign_ms": a.median_ms,
            "libvirt_ms": v.median_ms,
            "ratio": a.median_ms / v.median_ms,
        }
    s, vp = by_kind.get("serve"), by_kind.get("virsh-process")
    sp = by_kind.get("serve-pipelined")
    if s and s.median_ms:
        report["serve_vs_libvirt"] = {
            "pipelined_ms": sp.median_ms if sp else None,
            "pipelined_ratio_to_process": sp.median_ms / vp.median_ms
            if sp and sp.median_ms and vp and vp.median_ms
            else None,
            "serve_ms": s.median_ms,
            "virsh_process_ms": vp.median_ms if vp else None,
            "ratio_to_process": s.median_ms / vp.median_ms if vp and vp.median_ms else None,
            "virsh_session_ms": v.median_ms if v else None,
            "ratio_to_session": s.median_ms / v.median_ms if v and v.median_ms else None,
            "target_ratio": 0.3,
            "server_cpu_ms": s.facts.get("server_cpu_ms_per_request"),
        }
    report["fleet"] = [
        {"name": r.name, **r.facts, "median_s": r.median_ms / 1000}
        for r in results
        if r.kind == "fleet" and r.median_ms
    ]
    report["environment"]["max_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    text = markdown(report, results)
    if args.output.suffix == ".json":
        args.output.with_suffix(".md").write_text(text, encoding="utf-8")
    sys.stdout.write("\n" + text)
    if args.update_docs:
        update_docs(rst(report, results))
    return 0


def _from_dict(d: dict[str, Any]) -> Result:
    """A result read back from ``latest.json`` (the inverse of :func:`_as_dict`)."""
    fields = {k: v for k, v in d.items() if k != "meets_target"}
    return Result(**fields)


def _merge(kept: list[Result], new: list[Result]) -> list[Result]:
    """The earlier rows with the new ones in their place; new cases where their kind's rows end."""
    by_name = {r.name: r for r in new}
    merged = list(kept)
    for r in new:
        after = max((i for i, k in enumerate(merged) if k.kind == r.kind), default=len(merged) - 1)
        merged.insert(after + 1, by_name[r.name])
    return merged


def _as_dict(r: Result) -> dict[str, Any]:
    return {
        "name": r.name,
        "kind": r.kind,
        "description": r.description,
        "devices": r.devices,
        "series": r.series,
        "outcome": r.outcome,
        "message": r.message,
        "runs": r.runs,
        "median_ms": r.median_ms,
        "min_ms": r.min_ms,
        "max_ms": r.max_ms,
        "peak_mb": r.peak_mb,
        "target_ms": r.target_ms,
        "meets_target": r.meets_target,
        "facts": r.facts,
    }


def _progress(r: Result) -> Result:
    print(f"{r.name:<24} {r.devices:>5} devices  median {_ms(r.median_ms):>8} ms  {_outcome(r)}", file=sys.stderr)
    return r


if __name__ == "__main__":
    sys.exit(main())
