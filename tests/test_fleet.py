"""Fleet mode (pcitopo.fleet): assign, validate and diff over many domains."""

from __future__ import annotations

import io
import json
import os
import pickle
import pty
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from pcitopo import fleet
from pcitopo.cli import main
from pcitopo.errors import (
    InternalError,
    InvalidDomainXML,
    InvalidTopology,
    PcitopoError,
    UnknownName,
    Unsatisfiable,
)
from pcitopo.fleet import Outcome, Summary, Task
from pcitopo.violation import Violation
from tests.support.domains import NIC, NIC_AT_3, NIC_AT_4, PCIE_NIC, q35_domain

ROOT = Path(__file__).parent.parent
EXAMPLES = ROOT / "examples"

TOO_MANY = "\n".join([PCIE_NIC] * 600)
"""600 PCI Express NICs (e1000e plugs into no conventional bus): more than q35's 256 bus numbers hold, unsatisfiable.

(260 virtio NICs were enough while hotplug was required; now that it is only preferred they fit behind bridges.)"""


def domain(directory: Path, name: str, devices: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text(q35_domain(devices, name=Path(name).stem), encoding="utf-8")
    return path


def fleet_dir(tmp_path: Path) -> Path:
    """A directory of five domains: two plannable, one broken, one with a clash, one unsatisfiable."""
    d = tmp_path / "in"
    domain(d, "a-ok.xml", NIC)
    domain(d, "b-ok.xml", NIC + "\n" + NIC)
    (d / "c-broken.xml").write_text("<domain", encoding="utf-8")
    domain(d, "d-clash.xml", NIC_AT_3 + "\n" + NIC_AT_3)
    domain(d, "e-toomany.xml", TOO_MANY)
    return d


def run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(list(argv), stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


# -- inputs -------------------------------------------------------------------------------------


def test_one_file_is_not_fleet_mode_but_many_or_a_directory_is(tmp_path: Path) -> None:
    """One file (or stdin) keeps the single-file command; two paths or any directory is fleet mode."""
    one = domain(tmp_path, "one.xml", NIC)
    assert not fleet.is_fleet([str(one)])
    assert not fleet.is_fleet(["-"])
    assert fleet.is_fleet([str(one), str(one)])
    assert fleet.is_fleet([str(tmp_path)])


def test_a_directory_stands_for_its_xml_files_by_name(tmp_path: Path) -> None:
    """Only ``*.xml`` files directly inside, sorted, hidden ones and subdirectories left out; files keep their order."""
    d = tmp_path / "d"
    for name in ("b.xml", "a.xml", ".a.xml.123.tmp", ".hidden.xml", "notes.txt", "sub/c.xml"):
        (d / name).parent.mkdir(parents=True, exist_ok=True)
        (d / name).write_text("", encoding="utf-8")
    assert fleet.expand([str(tmp_path / "z.xml"), str(d)]) == [
        str(tmp_path / "z.xml"),
        os.path.join(str(d), "a.xml"),
        os.path.join(str(d), "b.xml"),
    ]


def test_diff_pairs_every_name_of_either_directory(tmp_path: Path) -> None:
    """Names on one side only still make a pair, so that the missing side is reported, not skipped."""
    for side, names in (("old", ("a.xml", "b.xml")), ("new", ("b.xml", "c.xml"))):
        for n in names:
            domain(tmp_path / side, n, NIC)
    old, new = str(tmp_path / "old"), str(tmp_path / "new")
    assert fleet.diff_pairs(old, new) == [
        (os.path.join(old, n), os.path.join(new, n)) for n in ("a.xml", "b.xml", "c.xml")
    ]


@pytest.mark.parametrize(
    ("command", "paths", "output", "message"),
    [
        ("assign", ["a/x.xml", "b/x.xml"], "out", "a/x.xml and b/x.xml would both be written to out/x.xml"),
        (
            "assign",
            ["a.xml", "b.xml"],
            None,
            "assign on many domains needs -o DIR (a directory for the planned domains)",
        ),
        ("validate", ["a.xml", "-"], None, "'-' (standard input) cannot be one of many inputs"),
        ("diff", ["a.xml", "b.xml"], None, "diff compares two files, or two directories file by file"),
    ],
)
def test_fleet_command_lines_that_cannot_work_are_refused(
    command: str, paths: list[str], output: str | None, message: str
) -> None:
    """Clashing outputs, a missing -o, stdin among many and a diff of files are refused before any work."""
    with pytest.raises(ValueError) as info:
        fleet.tasks_for(command, paths, output_dir=output)
    assert str(info.value) == message


# -- outcomes and summary ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("exc", "outcome", "code", "cls"),
    [
        (InternalError("the solver produced a plan that breaks rules"), "error", 5, "InternalError"),
        (InvalidTopology([Violation("unique-address", "clash")]), "violations", 1, "InvalidTopology"),
        (Unsatisfiable(["too many"]), "unsatisfiable", 4, "Unsatisfiable"),
        (InvalidDomainXML("", "malformed XML", source="x.xml", line=3), "invalid", 3, "InvalidDomainXML"),
        (UnknownName("policy", "hotplg", ["hotplug"]), "invalid", 3, "UnknownName"),
        (FileNotFoundError(2, "No such file or directory", "x.xml"), "invalid", 3, "FileNotFoundError"),
        (KeyError("oops"), "error", 5, "KeyError"),
    ],
)
def test_each_error_has_the_outcome_and_exit_code_of_the_single_file_command(
    exc: Exception, outcome: str, code: int, cls: str
) -> None:
    """failure() maps an exception to what ``main`` would exit with, and keeps its class."""
    got = fleet.failure(exc)
    assert got[:2] == (outcome, code)
    assert got[2]["class"] == cls
    json.dumps(got[2])  # every field is a JSON value


def test_an_errors_fields_are_kept_as_json_values() -> None:
    """Structured fields survive: the file and line of a bad document, the rule and devices of a violation."""
    _, _, error = fleet.failure(InvalidDomainXML("/domain/devices/disk[1]", "bad", source="x.xml", line=7))
    assert error == {
        "class": "InvalidDomainXML",
        "message": "x.xml:7: /domain/devices/disk[1]: bad",
        "fields": {"source": "x.xml", "line": 7, "element": "/domain/devices/disk[1]", "reason": "bad"},
    }
    _, _, error = fleet.failure(InvalidTopology([Violation("unique-address", "clash", devices=("a", "b"))]))
    assert error["fields"] == {
        "violations": [{"rule": "unique-address", "message": "clash", "devices": ["a", "b"], "address": None}]
    }


def test_the_exit_code_is_the_largest_of_the_domains() -> None:
    """Internal error 5 over unsatisfiable 4 over bad input 3 over violations 1; no domain is 0."""
    codes = {"error": 5, "unsatisfiable": 4, "invalid": 3, "violations": 1, "planned": 0}
    outcomes = [Outcome(f"{o}.xml", o, c) for o, c in codes.items()]
    for n in range(len(outcomes)):
        assert Summary.of("assign", outcomes[n:]).exit_code == max(codes[o.outcome] for o in outcomes[n:])
    assert Summary.of("assign", []).exit_code == 0


def test_the_summary_lists_every_outcome_and_the_rules_broken() -> None:
    """One row per outcome of the command, zeros too; each rule under violations with its number of domains."""
    outcomes = [
        Outcome("a", "valid", 0),
        Outcome("b", "violations", 1, rules=("unique-address", "io-space")),
        Outcome("c", "violations", 1, rules=("unique-address",)),
    ]
    assert Summary.of("validate", outcomes).table() == (
        "validate: 3 domains\n"
        "  valid             1\n"
        "  violations        2\n"
        "    io-space        1\n"
        "    unique-address  2\n"
        "  invalid           0\n"
        "  error             0"
    )


def test_tasks_and_outcomes_cross_process_boundaries() -> None:
    """Tasks and outcomes pickle, as the worker processes need."""
    task = Task("assign", ("a.xml",), output="out/a.xml", policy="minimal")
    assert pickle.loads(pickle.dumps(task)) == task
    outcome = Outcome("a.xml", "planned", 0, {"input": "a.xml"}, pending=("t", "out/a.xml"))
    back = pickle.loads(pickle.dumps(outcome))
    assert (back, back.record, back.pending) == (outcome, {"input": "a.xml"}, ("t", "out/a.xml"))


def test_perform_never_raises_for_a_task_it_cannot_do() -> None:
    """An unknown command is an internal error outcome, not an exception."""
    outcome = fleet.perform(Task("frobnicate", ("a.xml",)))
    assert (outcome.outcome, outcome.exit) == ("error", 5)
    assert outcome.lines[0] == "a.xml: error: internal error: ValueError: unknown fleet command 'frobnicate'"


# -- the commands -------------------------------------------------------------------------------


def test_fleet_assign_writes_each_plannable_domain_and_reports_the_rest(tmp_path: Path) -> None:
    """Planned domains land in -o DIR as the single-file command writes them; the others are reported, exit 4."""
    d = fleet_dir(tmp_path)
    out_dir = tmp_path / "out"
    code, out, err = run("assign", str(d), "-o", str(out_dir))
    _, _, unsat = run("assign", str(d / "e-toomany.xml"))
    _, _, clash = run("assign", str(d / "d-clash.xml"))
    assert unsat.startswith("pcitopo: no placement satisfies these requirements together:\n")

    def indented(text: str) -> str:
        return "\n  ".join(text.removeprefix("pcitopo: ").rstrip("\n").splitlines())

    broken = d / "c-broken.xml"
    assert out == (
        f"{broken}: invalid: {broken}:1: malformed XML: "
        "Couldn't find end of Start Tag domain line 1, line 1, column 8\n"
        f"{d / 'd-clash.xml'}: violations: {indented(clash)}\n"
        f"{d / 'e-toomany.xml'}: unsatisfiable: {indented(unsat)}\n"
        "assign: 5 domains\n"
        "  planned           2\n"
        "  unchanged         0\n"
        "  violations        1\n"
        "    unique-address  1\n"
        "  unsatisfiable     1\n"
        "  invalid           1\n"
        "  error             0\n"
    )
    assert (code, err) == (4, "")
    assert sorted(os.listdir(out_dir)) == ["a-ok.xml", "b-ok.xml"]
    for name in ("a-ok.xml", "b-ok.xml"):
        single = tmp_path / f"single-{name}"
        assert run("assign", str(d / name), "-o", str(single))[0] == 0
        assert (out_dir / name).read_bytes() == single.read_bytes()


def test_fleet_assign_leaves_the_old_output_of_a_failed_domain_alone(tmp_path: Path) -> None:
    """An output file whose domain fails keeps its old content; a planned one is replaced, unchanged ones too."""
    d = fleet_dir(tmp_path)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    (out_dir / "c-broken.xml").write_text("old", encoding="utf-8")
    run("assign", str(d), "-o", str(out_dir))
    assert (out_dir / "c-broken.xml").read_text(encoding="utf-8") == "old"
    code, out, _ = run("assign", str(out_dir / "a-ok.xml"), str(out_dir / "b-ok.xml"), "-o", str(out_dir), "--json")
    assert code == 0
    assert [json.loads(line)["outcome"] for line in out.splitlines()] == ["unchanged", "unchanged"]
    assert not [n for n in os.listdir(out_dir) if n.endswith(".tmp")]


def test_json_lines_come_in_input_order_whatever_the_number_of_jobs(tmp_path: Path) -> None:
    """--json prints one object per domain, the same bytes with one worker or two; the summary goes to stderr."""
    d = fleet_dir(tmp_path)
    runs = [run("validate", str(d), "--json", "--jobs", jobs) for jobs in ("1", "2")]
    assert runs[0] == runs[1]
    code, out, err = runs[0]
    lines = [json.loads(line) for line in out.splitlines()]
    assert [(r["input"], r["outcome"], r["exit"]) for r in lines] == [
        (str(d / "a-ok.xml"), "valid", 0),
        (str(d / "b-ok.xml"), "valid", 0),
        (str(d / "c-broken.xml"), "invalid", 3),
        (str(d / "d-clash.xml"), "violations", 1),
        (str(d / "e-toomany.xml"), "valid", 0),
    ]
    assert lines[2]["error"]["class"] == "InvalidDomainXML"
    assert lines[2]["error"]["fields"]["line"] == 1
    assert {v["rule"] for v in lines[3]["violations"]} == {"unique-address"}
    assert (code, err.splitlines()[0]) == (3, "validate: 5 domains")


def test_fleet_validate_reports_like_the_single_file_command(tmp_path: Path) -> None:
    """Each violation is the single-file line prefixed with the file name; valid domains print nothing."""
    d = fleet_dir(tmp_path)
    clash = d / "d-clash.xml"
    _, single, _ = run("validate", str(clash))
    code, out, _ = run("validate", str(d / "a-ok.xml"), str(clash))
    expected = [f"{clash}: {line}" for line in single.splitlines()[:-1]]
    assert code == 1
    assert out.splitlines()[: len(expected)] == expected
    assert out.splitlines()[len(expected)] == "validate: 2 domains"


def test_fleet_diff_pairs_directories_by_file_name(tmp_path: Path) -> None:
    """A moved device gives exit 1; a file missing on one side is invalid (exit 3 wins)."""
    domain(tmp_path / "old", "moved.xml", NIC_AT_3)
    domain(tmp_path / "new", "moved.xml", NIC_AT_4)
    domain(tmp_path / "old", "same.xml", NIC_AT_3)
    domain(tmp_path / "new", "same.xml", NIC_AT_3)
    domain(tmp_path / "old", "grown.xml", NIC_AT_3)
    domain(tmp_path / "new", "grown.xml", NIC_AT_3 + "\n" + NIC_AT_4)
    code, out, _ = run("diff", str(tmp_path / "old"), str(tmp_path / "new"))
    assert (code, out) == (
        1,
        "moved.xml: moved interface0 (e1000e): 0000:00/03.0 -> 0000:00/04.0\n"
        "diff: 3 domains\n"
        "  unchanged  1\n"
        "  changed    1\n"
        "  moved      1\n"
        "  invalid    0\n"
        "  error      0\n",
    )
    domain(tmp_path / "old", "gone.xml", NIC)
    code, out, _ = run("diff", str(tmp_path / "old"), str(tmp_path / "new"), "--json")
    gone = json.loads(out.splitlines()[0])
    assert (code, gone["input"], gone["outcome"], gone["error"]["class"]) == (
        3,
        "gone.xml",
        "invalid",
        "InvalidDomainXML",
    )
    assert gone["error"]["message"].endswith("gone.xml: cannot read: No such file or directory")


def test_one_file_keeps_the_single_file_behaviour(tmp_path: Path) -> None:
    """``assign IN.xml`` with --jobs still prints the document; a directory of one file is fleet mode."""
    path = domain(tmp_path / "one", "one.xml", NIC)
    code, out, _ = run("assign", str(path), "--jobs", "2")
    assert code == 0
    assert out.startswith("<domain type='kvm'>\n")
    code, out, err = run("assign", str(tmp_path / "one"))
    assert (code, out) == (2, "")
    assert err == "pcitopo assign: error: assign on many domains needs -o DIR (a directory for the planned domains)\n"


def test_a_bad_policy_is_one_error_before_any_domain(tmp_path: Path) -> None:
    """An unknown --policy fails once with exit 3, not once per domain."""
    d = fleet_dir(tmp_path)
    code, out, err = run("assign", str(d), "-o", str(tmp_path / "out"), "--policy", "hotplg")
    assert (code, out) == (3, "")
    assert err.startswith("pcitopo: unknown policy 'hotplg'")
    assert not (tmp_path / "out").exists()


def test_a_bad_machine_file_is_one_error_before_any_domain(tmp_path: Path) -> None:
    """A --machine-file that cannot be read fails once with exit 3, and no domain is reported."""
    d = fleet_dir(tmp_path)
    code, out, err = run("validate", str(d), "--machine-file", str(tmp_path / "missing.toml"))
    assert (code, out) == (3, "")
    assert err.startswith(f"pcitopo: {tmp_path / 'missing.toml'}")
    assert err.count("\n") == 1


@pytest.mark.parametrize(
    ("options", "what"), [(["--host", "host.json"], "--host"), (["--policy", "mirror"], "--policy mirror")]
)
def test_host_checks_are_for_one_domain_at_a_time(tmp_path: Path, options: list[str], what: str) -> None:
    """--host and --policy mirror are refused in fleet mode (exit 2) rather than silently left out."""
    d = fleet_dir(tmp_path)
    code, out, err = run("assign", str(d), "-o", str(tmp_path / "out"), *options)
    assert (code, out) == (2, "")
    assert err == f"pcitopo assign: error: {what} works on one domain at a time, not in fleet mode\n"


def test_output_must_be_a_directory(tmp_path: Path) -> None:
    """-o naming an existing file is a usage error in fleet mode."""
    d = fleet_dir(tmp_path)
    (tmp_path / "file").write_text("", encoding="utf-8")
    code, _, err = run("assign", str(d), "-o", str(tmp_path / "file"))
    assert (code, err) == (2, f"pcitopo assign: error: -o {tmp_path / 'file'}: not a directory\n")


@pytest.mark.parametrize("jobs", ["-1", "two"])
def test_jobs_must_be_a_count(jobs: str) -> None:
    """--jobs takes 0 or more; anything else is a usage error."""
    code, _, err = run("validate", "a.xml", "b.xml", "--jobs", jobs)
    assert code == 2
    assert "--jobs" in err


# -- progress -----------------------------------------------------------------------------------


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_is_drawn_on_a_terminal_and_wiped_at_the_end(tmp_path: Path) -> None:
    """On a terminal stderr gets the bar, the last frame complete, then a line wipe; a pipe gets none."""
    d = fleet_dir(tmp_path)
    out, err = io.StringIO(), _Terminal()
    main(["validate", str(d)], stdout=out, stderr=err)
    frames = err.getvalue().split("\r")
    assert frames[0] == ""
    assert frames[-2].startswith("[##############################] 5/5 domains")
    assert frames[-1] == "\x1b[K"
    assert run("validate", str(d))[2] == ""


def test_progress_line_fills_in_proportion() -> None:
    """The bar is proportional to the domains done and pads the count to the total's width."""
    assert fleet.progress_line(0, 1000, 0.0, width=10) == "[          ]    0/1000 domains"
    assert fleet.progress_line(1000, 1000, 2.0, width=10) == "[##########] 1000/1000 domains  500/s"


def test_a_real_terminal_gets_the_bar_and_a_pipe_does_not(tmp_path: Path) -> None:
    """As a process: stderr on a pseudo-terminal shows the bar; stdout, a pipe, holds only the report."""
    d = fleet_dir(tmp_path)
    primary, secondary = pty.openpty()
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "pcitopo", "validate", str(d), "--jobs", "2"],
            stdout=subprocess.PIPE,
            stderr=secondary,
            cwd=ROOT,
            timeout=120,
            check=False,
        )
        os.close(secondary)
        screen = b""
        while True:
            try:
                chunk = os.read(primary, 4096)
            except OSError:
                break
            if not chunk:
                break
            screen += chunk
    finally:
        os.close(primary)
    assert proc.returncode == 3
    assert b"5/5 domains" in screen
    assert screen.endswith(b"\r\x1b[K")
    assert proc.stdout.decode() == run("validate", str(d))[1]


def test_pcitopo_error_is_the_root_of_what_fleet_reports() -> None:
    """Errors pcitopo raises on purpose are invalid input unless they say otherwise; others are internal errors."""
    assert fleet.failure(PcitopoError("x"))[:2] == ("invalid", 3)
    assert fleet.failure(RuntimeError("x"))[:2] == ("error", 5)


def test_the_shipped_examples_plan_as_a_fleet(tmp_path: Path) -> None:
    """Every shipped example is planned with two workers, and writes one file each."""
    out_dir = tmp_path / "out"
    code, out, _ = run("assign", str(EXAMPLES), "-o", str(out_dir), "--jobs", "2", "--json")
    examples = sorted(p.name for p in EXAMPLES.glob("*.xml"))
    assert code == 0
    assert [Path(json.loads(line)["output"]).name for line in out.splitlines()] == examples
    assert sorted(os.listdir(out_dir)) == examples
    shutil.rmtree(out_dir)


def test_an_interrupted_run_leaves_no_temporary_file_and_no_target_touched(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ctrl-C after one domain was written but before its batch was committed: old outputs stay, no .tmp is left."""
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    (out_dir / "a.xml").write_text("old a", encoding="utf-8")
    tasks = [Task("assign", (f"{n}.xml",), output=str(out_dir / f"{n}.xml")) for n in "abc"]

    def interrupted(tasks: list[Task], *, jobs: int) -> Iterator[Outcome]:
        first = fleet.write_pending(str(out_dir / "a.xml"), b"new a")
        yield Outcome("a.xml", "planned", 0, {}, pending=(first, str(out_dir / "a.xml")))
        fleet.write_pending(str(out_dir / "b.xml"), b"new b")  # a worker was writing b when Ctrl-C came
        raise KeyboardInterrupt

    monkeypatch.setattr(fleet, "run", interrupted)
    with pytest.raises(KeyboardInterrupt):
        fleet.command("assign", tasks, jobs=2, as_json=False, out=io.StringIO(), err=io.StringIO())
    assert sorted(os.listdir(out_dir)) == ["a.xml"]
    assert (out_dir / "a.xml").read_text(encoding="utf-8") == "old a"
