"""Fleet mode: ``assign``, ``validate`` and ``diff`` over many domains at once.

``pcitopo assign|validate`` take one file (the single-file commands, exactly as
before) or several files and directories (fleet mode); ``pcitopo diff`` takes
two files or two directories, whose files are paired by name. In fleet mode
every domain is one *task*; :func:`perform` runs a task and never raises: a bad
file becomes an :class:`Outcome` saying why, and the other domains go on.
:func:`run` performs tasks in ``--jobs`` worker processes and hands the outcomes
back **in input order**, whatever the number of workers; :class:`Summary`
counts them.

The pure parts (:func:`assign_record`, :func:`validate_record`,
:func:`diff_record`, :func:`failure`) also answer ``pcitopo serve``'s requests
(:mod:`pcitopo.serve`), so both modes report a domain the same way.

Each domain gets an *outcome* and the exit code the single-file command would
have returned for it:

=============  =====================  ====
outcome        commands               exit
=============  =====================  ====
planned        assign                 0
unchanged      assign, diff           0
valid          validate               0
changed        diff                   0
violations     validate, assign       1
moved          diff                   1
invalid        all                    3
unsatisfiable  assign                 4
error          all                    5
=============  =====================  ====

The command exits with the **largest** exit code of its domains (0 when there
are none): an internal error outranks an unsatisfiable domain, which outranks
bad input, which outranks rule violations and moved devices.

>>> outcomes = [Outcome("a.xml", "planned", 0), Outcome("b.xml", "violations", 1, rules=("unique-address",))]
>>> summary = Summary.of("assign", outcomes)
>>> summary.exit_code
1
>>> print(summary.table())
assign: 2 domains
  planned             1
  unchanged           0
  violations          1
    unique-address    1
  unsatisfiable       0
  invalid             0
  error               0
"""

from __future__ import annotations

import functools
import os
import time
from collections.abc import Generator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

import attrs

from pcitopo.address import PciAddress
from pcitopo.errors import InternalError, InvalidTopology, PcitopoError, Unsatisfiable

if TYPE_CHECKING:
    from pcitopo.formats.libvirt import LibvirtDomain
    from pcitopo.legality.machine import Machine
    from pcitopo.policy.policy import Policy

__all__ = [
    "COMMANDS",
    "OUTCOMES",
    "Outcome",
    "Summary",
    "Task",
    "assign_record",
    "command",
    "commit",
    "default_jobs",
    "diff_pairs",
    "diff_record",
    "expand",
    "failure",
    "is_fleet",
    "perform",
    "pool",
    "progress_line",
    "run",
    "tasks_for",
    "validate_record",
    "write_pending",
]


def __dir__() -> list[str]:
    return __all__


OUTCOMES: Mapping[str, int] = {
    "planned": 0,
    "unchanged": 0,
    "valid": 0,
    "changed": 0,
    "violations": 1,
    "moved": 1,
    "invalid": 3,
    "unsatisfiable": 4,
    "error": 5,
}
"""Every outcome a domain can have, with the exit code it stands for."""

COMMANDS: Mapping[str, tuple[str, ...]] = {
    "assign": ("planned", "unchanged", "violations", "unsatisfiable", "invalid", "error"),
    "validate": ("valid", "violations", "invalid", "error"),
    "diff": ("unchanged", "changed", "moved", "invalid", "error"),
}
"""The outcomes each command can give, in the order the summary lists them."""

_DIFF_KEYS = ("added", "removed", "assigned", "unassigned", "moved", "renumbered")


# -- tasks and outcomes ------------------------------------------------------------------------


@attrs.frozen
class Task:
    """One domain to work on: the command, its input file(s) and the options that shape the work.

    ``inputs`` is one path (``assign``, ``validate``) or two (``diff``: old,
    new); ``output`` is where ``assign`` writes the domain (``None``: nowhere).
    ``policy`` and ``machine_file`` are the command line's ``--policy`` and
    ``--machine-file`` as given; each worker reads them once.
    """

    command: str
    inputs: tuple[str, ...]
    output: str | None = None
    policy: str | None = None
    machine_file: str | None = None

    @property
    def name(self) -> str:
        """How reports name the task: the input path (for ``diff``, the file name both sides share)."""
        return Path(self.inputs[0]).name if self.command == "diff" else self.inputs[0]

    def __str__(self) -> str:
        return f"{self.command} {' '.join(self.inputs)}" + (f" -o {self.output}" if self.output else "")


@attrs.frozen
class Outcome:
    """What became of one domain.

    ``outcome`` is one of :data:`OUTCOMES`; ``exit`` the exit code the
    single-file command would have returned; ``record`` the JSON object that
    ``--json`` prints for it (one line); ``lines`` what the text report says
    about it (nothing when all went well); ``rules`` the ids of the rules it
    breaks, each once.
    """

    name: str
    outcome: str
    exit: int
    record: Mapping[str, Any] = attrs.field(factory=dict, eq=False)
    lines: tuple[str, ...] = ()
    rules: tuple[str, ...] = ()
    pending: tuple[str, str] | None = attrs.field(default=None, eq=False)
    """``(temporary file, output)`` when ``assign`` wrote the domain and :func:`commit` has yet to rename it."""

    def __str__(self) -> str:
        return f"{self.name}: {self.outcome}"


# -- inputs ------------------------------------------------------------------------------------


def is_fleet(paths: Sequence[str]) -> bool:
    """Whether a command line names many domains: more than one path, or a directory.

    >>> is_fleet(["guest.xml"]), is_fleet(["a.xml", "b.xml"]), is_fleet(["."])
    (False, True, True)
    """
    return len(paths) > 1 or any(p != "-" and os.path.isdir(p) for p in paths)


def _xml_files(directory: str) -> list[str]:
    """The ``*.xml`` files directly in a directory, by name; hidden files are left out."""
    names = sorted(
        entry.name
        for entry in os.scandir(directory)
        if entry.name.endswith(".xml") and not entry.name.startswith(".") and entry.is_file()
    )
    return [os.path.join(directory, name) for name in names]


def expand(paths: Sequence[str]) -> list[str]:
    """The domain files a fleet command works on, in order.

    A directory stands for the ``*.xml`` files directly in it (not in its
    subdirectories; hidden ones left out), sorted by name; any other path is
    taken as given, in the order given, even when it does not exist (its
    domain is then reported as invalid).
    """
    files: list[str] = []
    for p in paths:
        files.extend(_xml_files(p) if os.path.isdir(p) else [p])
    return files


def diff_pairs(old_dir: str, new_dir: str) -> list[tuple[str, str]]:
    """Pairs of files to compare: each ``*.xml`` name found in either directory, by name.

    A name found on one side only still makes a pair: the missing side is
    reported as unreadable (invalid) rather than silently skipped.
    """
    names = sorted({Path(p).name for p in _xml_files(old_dir)} | {Path(p).name for p in _xml_files(new_dir)})
    return [(os.path.join(old_dir, n), os.path.join(new_dir, n)) for n in names]


def tasks_for(
    command: str,
    paths: Sequence[str],
    *,
    output_dir: str | None = None,
    policy: str | None = None,
    machine_file: str | None = None,
) -> list[Task]:
    """The tasks of one fleet command line; raises ``ValueError`` with a usage message when they cannot be made.

    ``assign`` writes each domain to ``output_dir`` under its input's file
    name; two inputs with the same file name would overwrite each other, so
    they are refused before any work starts. ``diff`` takes exactly two
    directories.
    """
    if "-" in paths:
        raise ValueError("'-' (standard input) cannot be one of many inputs")
    if command == "diff":
        if len(paths) != 2 or not all(os.path.isdir(p) for p in paths):
            raise ValueError("diff compares two files, or two directories file by file")
        return [Task("diff", pair, machine_file=machine_file) for pair in diff_pairs(paths[0], paths[1])]
    files = expand(paths)
    if command == "validate":
        return [Task("validate", (f,), machine_file=machine_file) for f in files]
    if output_dir is None:
        raise ValueError("assign on many domains needs -o DIR (a directory for the planned domains)")
    seen: dict[str, str] = {}
    tasks = []
    for f in files:
        target = os.path.join(output_dir, Path(f).name)
        if target in seen:
            raise ValueError(f"{seen[target]} and {f} would both be written to {target}")
        seen[target] = f
        tasks.append(Task("assign", (f,), output=target, policy=policy, machine_file=machine_file))
    return tasks


# -- what a domain comes to: the parts serve shares ---------------------------------------------


def assign_record(domain: LibvirtDomain, policy: Policy | None) -> tuple[str, dict[str, Any], str]:
    """Plan a domain: its outcome (``planned`` or ``unchanged``), the ``assign --json`` fields, and the text.

    ``unchanged`` means the domain already had every address and controller:
    the text is the input's. Raises what :func:`~pcitopo.solver.solve` raises.
    """
    from pcitopo.cli import _plan_record
    from pcitopo.solver import solve

    plan = solve(domain.topology, policy)
    text = domain.export(plan.topology)
    record = _plan_record(domain, plan, notes=False)
    return ("unchanged" if text == domain.to_string() else "planned"), record, text


def validate_record(domain: LibvirtDomain) -> tuple[str, dict[str, Any]]:
    """Validate a domain: ``valid`` or ``violations``, and the ``validate --json`` fields."""
    from pcitopo.legality.rules import validate

    items = []
    for v in sorted(validate(domain.topology)):  # in the order the single-file command prints them
        item = v.as_dict()
        item["elements"] = [domain.path(d) for d in v.devices if d in domain.elements]
        items.append(item)
    record = {"source": domain.source, "machine": domain.machine.name, "violations": items}
    return ("violations" if items else "valid"), record


def diff_record(old: LibvirtDomain, new: LibvirtDomain) -> tuple[str, dict[str, Any]]:
    """Compare two domains: ``unchanged``, ``changed`` or ``moved``, and the ``diff --json`` fields.

    ``moved``: a device in both moved or lost its address (exit 1, as
    ``pcitopo diff``); ``changed``: devices were added, removed, given an
    address or renumbered on the same guest path, and none moved.
    """
    from pcitopo.cli import _diff

    report: dict[str, Any] = _diff(old.topology, new.topology)
    if report["moved"] or report["unassigned"]:
        return "moved", report
    return ("changed" if any(report[k] for k in _DIFF_KEYS) else "unchanged"), report


def _jsonable(value: object) -> object:
    if value is None or isinstance(value, str | int | float | bool):
        return value
    if isinstance(value, PciAddress):
        return str(value)
    as_dict = getattr(value, "as_dict", None)
    if callable(as_dict):
        return _jsonable(as_dict())
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        items = [_jsonable(v) for v in value]
        return sorted(items, key=str) if isinstance(value, set | frozenset) else items
    return str(value)


def failure(exc: BaseException) -> tuple[str, int, dict[str, Any]]:
    """The outcome, exit code and structured error for an exception a domain raised.

    The error is ``{"class", "message", "fields"}``: the exception's class
    name, its message, and the fields it keeps (the element, the rule, the
    conflicts, ...) as JSON values.

    >>> from pcitopo.errors import UnknownName
    >>> outcome, code, error = failure(UnknownName("policy", "hotplg", ["hotplug"]))
    >>> outcome, code, error["class"], error["fields"]["name"]
    ('invalid', 3, 'UnknownName', 'hotplg')
    >>> failure(ZeroDivisionError("division by zero"))[:2]
    ('error', 5)
    """
    if isinstance(exc, InternalError):
        outcome = "error"
    elif isinstance(exc, InvalidTopology):
        outcome = "violations"
    elif isinstance(exc, Unsatisfiable):
        outcome = "unsatisfiable"
    elif isinstance(exc, PcitopoError | OSError):
        outcome = "invalid"
    else:
        outcome = "error"
    if isinstance(exc, OSError):
        fields: dict[str, Any] = {"errno": exc.errno, "strerror": exc.strerror, "filename": _jsonable(exc.filename)}
        message = f"{exc.filename}: {exc.strerror}" if exc.filename and exc.strerror else str(exc)
    else:
        fields = {k: _jsonable(v) for k, v in vars(exc).items() if not k.startswith("_")}
        message = str(exc) if isinstance(exc, PcitopoError) else " ".join(str(exc).split()) or "no message"
    return outcome, OUTCOMES[outcome], {"class": type(exc).__name__, "message": message, "fields": fields}


# -- performing one task -----------------------------------------------------------------------


@functools.lru_cache(maxsize=8)
def _policy(spec: str | None) -> Policy | None:
    from pcitopo.cli import _policy

    return _policy(spec)


@functools.lru_cache(maxsize=8)
def _machine(path: str | None) -> Machine | None:
    from pcitopo.legality.machine import Machine

    return None if path is None else Machine.from_file(path)


def _read(path: str, machine_file: str | None) -> LibvirtDomain:
    from pcitopo.formats.libvirt import LibvirtDomain

    return LibvirtDomain.from_path(path, machine=_machine(machine_file))


def write_pending(path: str, data: bytes) -> str:
    """Write ``data`` to a new hidden temporary file beside ``path``; return its name.

    The file gets the mode ``path`` has (or what the umask allows for a new
    file). :func:`commit` later makes it durable and renames it over ``path``;
    until then ``path`` is untouched.
    """
    from pcitopo._files import write_temporary

    return str(write_temporary(path, data, fsync=False))


def commit(pending: Sequence[tuple[str, str]]) -> None:
    """Make written files final: flush them to disk together, rename each over its target, flush the directories.

    ``pending`` holds ``(temporary, target)`` pairs from :func:`write_pending`.
    One ``sync`` for a batch replaces one ``fsync`` per file (milliseconds
    each); a target is replaced only once its new content is on disk, so
    after a crash it holds the old content or the new, never a part.
    """
    if not pending:
        return
    os.sync()
    for tmp, target in pending:
        os.replace(tmp, target)
    for directory in sorted({os.path.dirname(target) or "." for _, target in pending}):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _explain(name: str, outcome: str, message: str) -> tuple[str, ...]:
    """The text report's lines for a failed domain: ``NAME: OUTCOME: message``, more lines indented."""
    if message.startswith(f"{name}: "):
        message = message[len(name) + 2 :]
    first, *rest = message.splitlines() or [""]
    return (f"{name}: {outcome}: {first}", *(f"  {line}" for line in rest))


def _head(task: Task) -> dict[str, Any]:
    """The first keys of a domain's JSON line: ``input`` (and for ``diff`` the ``old`` and ``new`` paths)."""
    if task.command == "diff":
        return {"input": task.name, "old": task.inputs[0], "new": task.inputs[1]}
    return {"input": task.name}


def _perform(task: Task) -> Outcome:
    name = task.name
    head = _head(task)
    if task.command == "assign":
        domain = _read(task.inputs[0], task.machine_file)
        outcome, fields, text = assign_record(domain, _policy(task.policy))
        pending = (
            None if task.output is None else (write_pending(task.output, text.encode(domain.encoding)), task.output)
        )
        record = {**head, "outcome": outcome, "exit": 0, **fields, "output": task.output}
        return Outcome(name, outcome, 0, record, pending=pending)
    if task.command == "validate":
        domain = _read(task.inputs[0], task.machine_file)
        outcome, fields = validate_record(domain)
        code = OUTCOMES[outcome]
        violations = fields["violations"]
        lines = tuple(
            f"{name}: {v['message']} (rule: {v['rule']})" + (f"  [{', '.join(v['elements'])}]" if v["elements"] else "")
            for v in violations
        )
        rules = tuple(sorted({v["rule"] for v in violations}))
        return Outcome(name, outcome, code, {**head, "outcome": outcome, "exit": code, **fields}, lines, rules)
    if task.command == "diff":
        old = _read(task.inputs[0], task.machine_file)
        new = _read(task.inputs[1], task.machine_file)
        outcome, report = diff_record(old, new)
        code = OUTCOMES[outcome]
        lines = tuple(
            [f"{name}: moved {e['id']} ({e['kind']}): {e['old']} -> {e['new']}" for e in report["moved"]]
            + [f"{name}: unassigned {e['id']} ({e['kind']}) was at {e['address']}" for e in report["unassigned"]]
        )
        return Outcome(name, outcome, code, {**head, "outcome": outcome, "exit": code, **report}, lines)
    raise ValueError(f"unknown fleet command {task.command!r}")


def perform(task: Task) -> Outcome:
    """Do one task; never raises (but for ``KeyboardInterrupt``): a failure is an outcome too."""
    try:
        return _perform(task)
    except Exception as exc:
        outcome, code, error = failure(exc)
        name = task.name
        record = {**_head(task), "outcome": outcome, "exit": code, "error": error}
        if task.command == "assign":
            record["output"] = None
        rules: tuple[str, ...] = ()
        if isinstance(exc, InvalidTopology):
            rules = tuple(sorted({v.rule for v in exc.violations}))
        message = error["message"]
        if outcome == "error":
            if not isinstance(exc, InternalError):
                message = f"internal error: {error['class']}: {message}"
            message += (
                f"\nthis is a bug in pcitopo; please report it with the command line and {', '.join(task.inputs)}"
            )
        return Outcome(name, outcome, code, record, _explain(name, outcome, message), rules)


# -- running many ------------------------------------------------------------------------------


def _watch(parent: int) -> None:
    """In a worker: exit as soon as the pcitopo process that started it is gone (killed, even with SIGKILL).

    A worker's parent is the fork server, and it holds both ends of its own
    task pipe, so without this it would wait forever for work from a process
    that no longer exists, and keep the fork server alive too.
    """
    import threading

    def check() -> None:
        while True:
            time.sleep(0.5)
            try:
                os.kill(parent, 0)
            except ProcessLookupError:
                os._exit(1)
            except PermissionError:  # pragma: no cover - the pid was reused by another user's process
                os._exit(1)

    threading.Thread(target=check, name="pcitopo-watch-parent", daemon=True).start()


def pool(jobs: int, preload: Sequence[str]) -> Any:
    """A process pool of ``jobs`` workers started from a fork server that has ``preload`` imported.

    The workers end themselves when this process goes away, however it ends.
    """
    import concurrent.futures
    import multiprocessing

    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(list(preload))
    return concurrent.futures.ProcessPoolExecutor(
        max_workers=jobs, mp_context=context, initializer=_watch, initargs=(os.getpid(),)
    )


def _chunksize(count: int, jobs: int) -> int:
    """Tasks sent to a worker at once: few round trips, yet every worker busy till near the end."""
    return max(1, min(16, count // (jobs * 8)))


def run(tasks: Sequence[Task], *, jobs: int = 1) -> Generator[Outcome, None, None]:
    """Perform every task and yield the outcomes in the order of ``tasks``, whatever ``jobs`` is.

    ``jobs`` is the number of worker processes (1: work in this process). If
    a worker dies (killed, out of memory), the tasks it had not finished
    come back as ``error`` outcomes saying so.
    """
    if jobs <= 1 or len(tasks) <= 1:
        for task in tasks:
            yield perform(task)
        return
    from concurrent.futures.process import BrokenProcessPool

    done = 0
    executor = pool(min(jobs, len(tasks)), ["pcitopo.fleet", "pcitopo.solver", "pcitopo.formats.libvirt"])
    try:
        for result in executor.map(perform, tasks, chunksize=_chunksize(len(tasks), jobs)):
            done += 1
            yield result
    except BrokenProcessPool as exc:
        for task in tasks[done:]:
            outcome, code, error = failure(exc)
            error["message"] = "a worker process died before this domain was done"
            yield Outcome(
                task.name,
                outcome,
                code,
                {**_head(task), "outcome": outcome, "exit": code, "error": error},
                _explain(task.name, outcome, f"internal error: {error['message']}"),
            )
    finally:
        executor.shutdown(wait=True, cancel_futures=True)


@attrs.frozen
class Summary:
    """How many domains came to each outcome, and how many broke each rule."""

    command: str
    counts: Mapping[str, int] = attrs.field(eq=False)
    rules: Mapping[str, int] = attrs.field(eq=False)
    """For each rule id, the number of domains that break it (``violations`` outcomes)."""

    @classmethod
    def of(cls, command: str, outcomes: Sequence[Outcome]) -> Summary:
        """Count the outcomes of one command."""
        counts = dict.fromkeys(COMMANDS[command], 0)
        rules: dict[str, int] = {}
        for o in outcomes:
            counts[o.outcome] = counts.get(o.outcome, 0) + 1
            for rule in o.rules:
                rules[rule] = rules.get(rule, 0) + 1
        return cls(command, counts, dict(sorted(rules.items())))

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    @property
    def exit_code(self) -> int:
        """The command's exit code: the largest of its domains' (0 for none)."""
        return max((OUTCOMES[o] for o, n in self.counts.items() if n), default=0)

    def table(self) -> str:
        """The summary as text: one row per outcome (zeros too), the rule ids indented under ``violations``."""
        rows = []
        for outcome, n in self.counts.items():
            rows.append((f"  {outcome}", n))
            if outcome == "violations":
                rows += [(f"    {rule}", count) for rule, count in self.rules.items()]
        label = max(len(r[0]) for r in rows)
        number = max(len(str(r[1])) for r in rows)
        lines = [f"{self.command}: {self.total} domain{'s' if self.total != 1 else ''}"]
        lines += [f"{text:<{label}}  {n:>{number}}" for text, n in rows]
        return "\n".join(lines)

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready form."""
        return {
            "command": self.command,
            "domains": self.total,
            "outcomes": dict(self.counts),
            "rules": dict(self.rules),
            "exit": self.exit_code,
        }


def progress_line(done: int, total: int, elapsed: float, width: int = 30) -> str:
    """One frame of the progress bar.

    >>> progress_line(25, 100, 0.5)
    '[#######                       ]  25/100 domains  50/s'
    """
    filled = width * done // total if total else width
    rate = f"  {done / elapsed:.0f}/s" if elapsed > 0 and done else ""
    return f"[{'#' * filled}{' ' * (width - filled)}] {done:>{len(str(total))}}/{total} domains{rate}"


class _Progress:
    """A progress bar redrawn in place on a terminal, at most ten times a second; nothing elsewhere."""

    def __init__(self, stream: TextIO, total: int) -> None:
        isatty = getattr(stream, "isatty", None)
        self.on = bool(isatty and isatty())
        self.stream = stream
        self.total = total
        self.started = time.monotonic()
        self.shown = 0.0

    def update(self, done: int) -> None:
        now = time.monotonic()
        if not self.on or (now - self.shown < 0.1 and done < self.total):
            return
        self.shown = now
        self.stream.write("\r" + progress_line(done, self.total, now - self.started))
        self.stream.flush()

    def close(self) -> None:
        if self.on:
            self.stream.write("\r\x1b[K")
            self.stream.flush()


def command(
    name: str,
    tasks: Sequence[Task],
    *,
    jobs: int,
    as_json: bool,
    out: TextIO,
    err: TextIO,
    batch: int = 64,
) -> int:
    """Run a fleet command and report: what the CLI calls. Returns the exit code.

    Text mode writes the lines of each domain that did not go well, in input
    order, then the summary table, to ``out``. ``--json`` writes one JSON
    object per domain to ``out`` (one line each, in input order) and the
    summary table to ``err``. A progress bar is drawn on ``err`` when it is a
    terminal.

    Planned domains are committed (:func:`commit`) ``batch`` at a time, or
    after a second: a domain is reported only once its output file is final.
    If the run stops early (an interrupt, a closed pipe), the workers are
    stopped and the temporary files of the domains not yet committed are
    removed; their targets are not touched.
    """
    import json

    progress = _Progress(err, len(tasks))
    outcomes: list[Outcome] = []
    waiting: list[Outcome] = []
    since = time.monotonic()

    def flush() -> None:
        commit([o.pending for o in waiting if o.pending is not None])
        for o in waiting:
            if as_json:
                out.write(json.dumps(o.record, sort_keys=False) + "\n")
            elif o.lines:
                out.write("\n".join(o.lines) + "\n")
        out.flush()
        waiting.clear()

    results = run(tasks, jobs=jobs)
    finished = False
    try:
        for outcome in results:
            outcomes.append(outcome)
            if not waiting:
                since = time.monotonic()
            waiting.append(outcome)
            if len(waiting) >= batch or time.monotonic() - since >= 1.0:
                flush()
            progress.update(len(outcomes))
        flush()
        finished = True
    finally:
        results.close()  # stops the workers
        for o in waiting:
            if o.pending is not None:
                Path(o.pending[0]).unlink(missing_ok=True)
        if not finished:
            _remove_temporaries(tasks[len(outcomes) :])
        progress.close()
    summary = Summary.of(name, outcomes)
    (err if as_json else out).write(summary.table() + "\n")
    return summary.exit_code


def _remove_temporaries(tasks: Sequence[Task]) -> None:
    """Remove what :func:`write_pending` left for tasks whose outcome never came back (a stopped run)."""
    import glob

    for task in tasks:
        if task.output is not None:
            target = Path(task.output)
            for tmp in target.parent.glob(f".{glob.escape(target.name)}.*.tmp"):
                tmp.unlink(missing_ok=True)


def default_jobs() -> int:
    """The CPUs this process may run on (what ``--jobs 0`` means)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1
