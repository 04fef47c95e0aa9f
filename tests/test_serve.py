"""``pcitopo serve`` (pcitopo.serve): JSON requests in, one JSON response a line out."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from pcitopo import fleet, serve
from pcitopo.cli import main
from pcitopo.serve import BadRequest, handle, respond
from tests.support.domains import NIC, NIC_AT_3, NIC_AT_4, q35_domain
from tests.support.procs import children

ROOT = Path(__file__).parent.parent
EXAMPLE = (ROOT / "examples" / "q35-server.xml").read_text(encoding="utf-8")


def xml(devices: str) -> str:
    return q35_domain(devices, name="serve", description="café")


class Server:
    """``python -m pcitopo serve`` as a real process, spoken to one line at a time."""

    def __init__(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "pcitopo", "serve"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=ROOT,
        )

    def line(self, data: bytes) -> dict[str, Any]:
        """Send one raw line and wait for its answer (so the server answers before it sees more input)."""
        assert self.process.stdin is not None
        assert self.process.stdout is not None
        self.process.stdin.write(data + b"\n")
        self.process.stdin.flush()
        answer = self.process.stdout.readline()
        assert answer.endswith(b"\n")
        assert answer.isascii()
        result: dict[str, Any] = json.loads(answer)
        return result

    def ask(self, request: object) -> dict[str, Any]:
        return self.line(json.dumps(request).encode())

    def close(self) -> tuple[int, bytes, bytes]:
        out, err = self.process.communicate(timeout=60)
        return self.process.returncode, out, err


@pytest.fixture(scope="module")
def server() -> Any:
    s = Server()
    yield s
    if s.process.poll() is None:
        s.process.kill()
        s.process.wait()


# -- as a process -------------------------------------------------------------------------------


def test_assign_answers_with_the_document_the_cli_prints(server: Server, tmp_path: Path) -> None:
    """The planned XML in the response is the single-file ``pcitopo assign`` output, byte for byte."""
    path = tmp_path / "guest.xml"
    path.write_text(EXAMPLE, encoding="utf-8")
    printed = io.StringIO()
    assert main(["assign", str(path), "--policy", "minimal"], stdout=printed) == 0
    answer = server.ask({"id": 1, "op": "assign", "xml": EXAMPLE, "policy": "minimal"})
    assert (answer["id"], answer["outcome"], answer["exit"]) == (1, "planned", 0)
    assert answer["result"]["xml"] == printed.getvalue()
    assert answer["result"]["policy"] == "minimal"
    assert set(answer["result"]["addresses"]) >= {"ua-root", "ua-data", "ua-net-front"}


def test_inline_toml_policy_is_the_same_as_a_policy_file(server: Server, tmp_path: Path) -> None:
    """``policy_toml`` plans as ``--policy FILE.toml`` with that text does."""
    toml = 'base = "minimal"\nspare_ports = 3\n'
    (tmp_path / "site.toml").write_text(toml, encoding="utf-8")
    (tmp_path / "guest.xml").write_text(EXAMPLE, encoding="utf-8")
    printed = io.StringIO()
    assert main(["assign", str(tmp_path / "guest.xml"), "--policy", str(tmp_path / "site.toml")], stdout=printed) == 0
    answer = server.ask({"id": "t", "op": "assign", "xml": EXAMPLE, "policy_toml": toml})
    assert answer["outcome"] == "planned"
    assert answer["result"]["xml"] == printed.getvalue()


def test_validate_diff_and_unsatisfiable_answer_like_the_cli(server: Server) -> None:
    """Violations exit 1, a moved device exit 1, a plan that cannot exist exit 4 with its conflicts as fields."""
    clash = server.ask({"id": 2, "op": "validate", "xml": xml(NIC_AT_3 + "\n" + NIC_AT_3)})
    assert (clash["outcome"], clash["exit"]) == ("violations", 1)
    assert {v["rule"] for v in clash["result"]["violations"]} == {"unique-address"}
    assert clash["result"]["violations"][0]["elements"] == [
        "/domain/devices/interface[1]",
        "/domain/devices/interface[2]",
    ]
    moved = server.ask({"id": 3, "op": "diff", "old": xml(NIC_AT_3), "new": xml(NIC_AT_4)})
    assert (moved["outcome"], moved["exit"]) == ("moved", 1)
    assert moved["result"]["moved"] == [
        {"id": "interface0", "kind": "e1000e", "old": "0000:00/03.0", "new": "0000:00/04.0"}
    ]
    bare = "    <controller type='usb' index='0' model='none'/>\n    <memballoon model='none'/>\n"  # nothing implicit
    pcie_nic = "    <interface type='user'><model type='e1000e'/></interface>"  # plugs into no conventional bus
    unsat = server.ask({"id": 4, "op": "assign", "xml": xml(bare + "\n".join([pcie_nic] * 600))})
    assert (unsat["outcome"], unsat["exit"], unsat["error"]["class"]) == ("unsatisfiable", 4, "Unsatisfiable")
    assert unsat["error"]["fields"]["conflicts"][0].startswith("600 PCI Express devices (")


def test_evaluate_scores_a_plan_as_the_solver_costed_it(server: Server) -> None:
    """The cost evaluate gives pcitopo's own plan is the cost assign reported for it, with the same terms unmet."""
    for policy in ("hotplug", "minimal", "hotplug+ordered"):
        planned = server.ask({"id": 1, "op": "assign", "xml": EXAMPLE, "policy": policy})
        scored = server.ask(
            {"id": 2, "op": "evaluate", "request": EXAMPLE, "result": planned["result"]["xml"], "policy": policy}
        )
        assert (scored["outcome"], scored["exit"], scored["result"]["legal"]) == ("scored", 0, True)
        assert scored["result"]["policy"] == policy
        assert scored["result"]["cost"] == planned["result"]["cost"]
        # the terms not met agree; plan.soft also lists met order terms for kinds with one device, evaluate does not
        assert [(t["name"], t["subject"]) for t in scored["result"]["soft"] if not t["met"]] == [
            (t["name"], t["subject"]) for t in planned["result"]["soft"] if not t["met"]
        ]


def test_evaluate_reports_a_result_that_breaks_rules_or_is_no_completion(server: Server) -> None:
    """Two NICs on one slot: violations, exit 1, with the elements; a device gone from the result: invalid, exit 3."""
    # no USB controller or balloon: libvirt would add them, and a result must then place them too
    bare = "    <controller type='usb' index='0' model='none'/>\n    <memballoon model='none'/>\n"
    request = xml(bare + NIC_AT_3 + "\n" + NIC)
    clash = xml(bare + NIC_AT_3 + "\n" + NIC_AT_3.replace("e1000e", "virtio"))
    answer = server.ask({"id": 1, "op": "evaluate", "request": request, "result": clash})
    assert (answer["outcome"], answer["exit"], answer["result"]["legal"]) == ("violations", 1, False)
    assert "unique-address" in {v["rule"] for v in answer["result"]["violations"]}
    gone = server.ask({"id": 2, "op": "evaluate", "request": request, "result": xml(bare + NIC_AT_3)})
    assert (gone["outcome"], gone["exit"], gone["error"]["class"]) == ("invalid", 3, "InvalidInput")
    assert gone["error"]["message"] == (
        "device 'interface1': is in the request but not in the result; a plan places every device"
    )


@pytest.mark.parametrize(
    ("line", "ident", "message"),
    [
        (b"\xff\xfe", None, "not UTF-8: invalid start byte at byte 0"),
        (b"{", None, "not JSON: Expecting property name enclosed in double quotes: line 1 column 2 (char 1)"),
        (b"[1, 2]", None, "a request is a JSON object (got an array)"),
        (b"[" * 100_000, None, "not JSON: nested too deeply"),
        (b'{"id": NaN, "op": "ping"}', None, "not JSON: NaN is not a JSON value"),
        (b'{"id": 1e999, "op": "ping"}', None, "not JSON: 1e999 is too large for a JSON number"),
        (b'{"id": 9}', 9, "op: missing"),
        (b'{"id": [1], "op": 3}', [1], "op: must be a string (got a number)"),
        (
            b'{"id": "x", "op": "evaluat"}',
            "x",
            "op: unknown op 'evaluat' (known: assign, diff, evaluate, ping, validate)",
        ),
        (
            b'{"id": {"k": 1}, "op": "validate", "xml": "<domain/>", "policy": "minimal"}',
            {"k": 1},
            "policy: unknown field for op 'validate' (known: xml)",
        ),
        (b'{"op": "assign"}', None, "xml: missing"),
        (
            b'{"op": "validate", "xml": "<domain>\\ud800</domain>"}',
            None,
            "xml: not text: a lone surrogate \\ud800 at 8",
        ),
        (b'{"op": "assign", "xml": 5}', None, "xml: must be a string (got int)"),
        (
            b'{"op": "assign", "xml": "<domain/>", "policy": "minimal", "policy_toml": ""}',
            None,
            "policy_toml: give a built-in policy name (policy) or TOML text (policy_toml), not both",
        ),
        (
            b'{"op": "assign", "xml": "<domain/>", "policy_toml": "spare_ports ="}',
            None,
            "policy_toml: not valid TOML: Invalid value (at end of document)",
        ),
    ],
)
def test_a_bad_request_is_answered_and_the_server_goes_on(
    server: Server, line: bytes, ident: object, message: str
) -> None:
    """Each unreadable request gets a bad-request answer naming the field; the next request is served."""
    answer = server.line(line)
    assert answer["id"] == ident
    assert (answer["outcome"], answer["exit"], answer["error"]["class"]) == ("bad-request", 2, "BadRequest")
    assert answer["error"]["message"].split(": ", 1)[1] == message
    assert answer["error"]["message"].startswith("line ")
    assert server.ask({"id": "next", "op": "ping"})["outcome"] == "ok"


def test_bad_documents_and_policies_carry_their_error_class_and_fields(server: Server) -> None:
    """Malformed XML names the field and line; a bad policy names the key; both exit 3."""
    broken = server.ask({"id": 5, "op": "validate", "xml": "<domain>\n<devices>\n</domain>"})
    assert (broken["outcome"], broken["exit"], broken["error"]["class"]) == ("invalid", 3, "InvalidDomainXML")
    assert broken["error"]["fields"]["source"] == "xml"
    assert broken["error"]["message"].startswith("xml:3: malformed XML: ")
    policy = server.ask({"id": 6, "op": "assign", "xml": EXAMPLE, "policy_toml": "spare_ports = -1"})
    assert (policy["outcome"], policy["exit"], policy["error"]["class"]) == ("invalid", 3, "InvalidPolicy")
    assert policy["error"]["fields"]["key"] == "spare_ports"
    unknown = server.ask({"id": 7, "op": "assign", "xml": EXAMPLE, "policy": "hotplg"})
    assert (unknown["error"]["class"], unknown["error"]["fields"]["name"]) == ("UnknownName", "hotplg")


def test_non_ascii_text_is_escaped_and_comes_back_intact(server: Server) -> None:
    """Responses are ASCII JSON; the document's 'café' survives the round trip."""
    answer = server.ask({"id": "é", "op": "assign", "xml": xml(NIC)})
    assert answer["id"] == "é"
    assert "<description>café</description>" in answer["result"]["xml"]


def test_the_server_answers_each_line_before_the_next_and_exits_0_at_end_of_input() -> None:
    """Answers come one per request as they are sent; blank lines are skipped; EOF ends it with 0 and no stderr."""
    s = Server()
    assert s.ask({"id": 1, "op": "ping"}) == {
        "id": 1,
        "outcome": "ok",
        "exit": 0,
        "result": {"protocol": 1, "ops": ["assign", "diff", "evaluate", "ping", "validate"]},
    }
    assert s.process.stdin is not None
    s.process.stdin.write(b"\n   \n" + json.dumps({"id": 2, "op": "ping"}).encode() + b"\n")
    code, out, err = s.close()
    assert (code, err) == (0, b"")
    assert [json.loads(line)["id"] for line in out.splitlines()] == [2]


def test_a_client_that_stops_reading_ends_the_server_quietly(tmp_path: Path) -> None:
    """When stdout's reader is gone the server exits 141 with nothing on stderr, like the other commands."""
    requests = tmp_path / "requests"
    requests.write_bytes((json.dumps({"op": "assign", "xml": EXAMPLE}) + "\n").encode() * 50)
    with requests.open("rb") as stdin:
        process = subprocess.Popen(
            [sys.executable, "-m", "pcitopo", "serve"],
            stdin=stdin,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=ROOT,
        )
        assert process.stdout is not None
        assert process.stderr is not None
        first = process.stdout.readline()
        process.stdout.close()
        err = process.stderr.read()
        code = process.wait(timeout=120)
    assert json.loads(first)["outcome"] == "planned"
    assert (code, err) == (141, b"")


# -- in-process units ---------------------------------------------------------------------------


@pytest.mark.parametrize("ident", ["a", 7, 1.5, None, True, {"trace": [1, 2]}])
def test_any_json_id_is_echoed(ident: object) -> None:
    """The id comes back as sent, whatever JSON value it is."""
    assert handle({"id": ident, "op": "ping"})["id"] == ident


def test_a_missing_id_is_null() -> None:
    """A request without an id is answered with ``"id": null``."""
    assert handle({"op": "ping"})["id"] is None


def test_an_internal_error_is_an_answer_not_a_crash(monkeypatch: pytest.MonkeyPatch) -> None:
    """A bug while answering gives outcome error, exit 5 and the exception's class; the server keeps going."""

    def broken(*args: object) -> object:
        raise KeyError("surprise")

    monkeypatch.setattr(fleet, "validate_record", broken)
    answer = handle({"id": 1, "op": "validate", "xml": xml(NIC)})
    assert answer == {
        "id": 1,
        "outcome": "error",
        "exit": 5,
        "error": {"class": "KeyError", "message": "'surprise'", "fields": {}},
    }


def test_respond_numbers_the_line_of_a_bad_request() -> None:
    """A bad request's message and fields carry its line number on standard input."""
    answer = respond(b'{"op": "nope"}\n', 12)
    assert (
        answer["error"]["message"] == "line 12: op: unknown op 'nope' (known: assign, diff, evaluate, ping, validate)"
    )
    assert answer["error"]["fields"] == {
        "field": "op",
        "reason": "unknown op 'nope' (known: assign, diff, evaluate, ping, validate)",
        "line": 12,
    }


def test_serve_writes_one_line_per_request_in_order() -> None:
    """Three requests, three lines, in request order, then exit 0."""
    out = io.StringIO()
    lines = [json.dumps({"id": i, "op": "ping"}).encode() + b"\n" for i in range(3)]
    assert serve.serve(lines, out) == 0
    assert [json.loads(line)["id"] for line in out.getvalue().splitlines()] == [0, 1, 2]


def test_bad_request_pickles_with_its_fields() -> None:
    """BadRequest keeps field, reason and line through pickling, like every pcitopo error."""
    import pickle

    exc = pickle.loads(pickle.dumps(BadRequest("op", "missing", line=3)))
    assert (exc.field, exc.reason, exc.line, str(exc)) == ("op", "missing", 3, "line 3: op: missing")


# -- with worker processes --------------------------------------------------------------------------


def test_workers_answer_pipelined_requests_in_request_order(tmp_path: Path) -> None:
    """``serve --jobs 2`` writes the same bytes as ``--jobs 1`` for requests sent ahead, bad lines included."""
    requests = [{"id": i, "op": "assign", "xml": xml("\n".join([NIC] * (1 + i % 4)))} for i in range(12)]
    lines = [json.dumps(r).encode() for r in requests]
    lines[5:5] = [b"not json", b"", json.dumps({"id": "v", "op": "validate", "xml": EXAMPLE}).encode()]
    data = b"\n".join(lines) + b"\n"
    outputs = [
        subprocess.run(
            [sys.executable, "-m", "pcitopo", "serve", "--jobs", jobs],
            input=data,
            capture_output=True,
            cwd=ROOT,
            timeout=300,
            check=True,
        )
        for jobs in ("1", "2")
    ]
    assert outputs[0].stdout == outputs[1].stdout
    assert outputs[1].stderr == b""
    ids = [json.loads(line)["id"] for line in outputs[1].stdout.splitlines()]
    assert ids == [0, 1, 2, 3, 4, None, "v", *range(5, 12)]


def _workers(pid: int) -> list[int]:
    """The worker processes of a server: the children of its fork server (from /proc)."""
    below = children()
    servers = [c for c in below.get(pid, []) if b"forkserver" in Path(f"/proc/{c}/cmdline").read_bytes()]
    return [w for server in servers for w in below.get(server, [])]


def test_a_worker_that_dies_costs_at_most_its_requests() -> None:
    """Killing a worker of ``serve --jobs 2`` never stops the server: requests are answered, soon normally again."""
    import signal

    s = Server.__new__(Server)
    s.process = subprocess.Popen(
        [sys.executable, "-m", "pcitopo", "serve", "--jobs", "2"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=ROOT,
    )
    try:
        assert s.ask({"id": 0, "op": "validate", "xml": xml(NIC)})["outcome"] == "valid"
        workers = _workers(s.process.pid)
        assert workers, "no worker process found"
        os.kill(workers[-1], signal.SIGKILL)
        answers = [s.ask({"id": i, "op": "validate", "xml": xml(NIC)}) for i in range(1, 6)]
        for a in answers:
            assert a["outcome"] == "valid" or (a["outcome"], a["error"]["class"]) == ("error", "BrokenProcessPool")
        assert [a["id"] for a in answers] == [1, 2, 3, 4, 5]
        assert answers[-1]["outcome"] == "valid"
        code, _, err = s.close()
        assert (code, err) == (0, b"")
    finally:
        if s.process.poll() is None:
            s.close()


def test_workers_do_not_outlive_a_killed_server() -> None:
    """An orchestrator that kills ``serve --jobs 2`` (even with SIGKILL) leaves no worker process behind."""
    import time

    process = subprocess.Popen(
        [sys.executable, "-m", "pcitopo", "serve", "--jobs", "2"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        cwd=ROOT,
    )
    assert process.stdin is not None
    assert process.stdout is not None
    process.stdin.write(json.dumps({"op": "validate", "xml": xml(NIC)}).encode() + b"\n")
    process.stdin.flush()
    assert json.loads(process.stdout.readline())["outcome"] == "valid"
    workers = _workers(process.pid)
    assert workers
    process.kill()
    process.wait()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and any(Path(f"/proc/{w}").exists() for w in workers):
        time.sleep(0.2)
    assert not [w for w in workers if Path(f"/proc/{w}").exists()]


def test_serve_has_help_with_the_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    """``serve --help`` exits 0, names the protocol page and the exit codes."""
    assert main(["serve", "--help"]) == 0
    out = capsys.readouterr().out
    assert "The protocol is in docs/serve.rst." in out
    assert "4  unsatisfiable" in out
