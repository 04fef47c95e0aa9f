"""``pcitopo serve``: a long-lived process answering JSON requests, one a line.

The ops: ``assign``, ``validate``, ``diff``, ``evaluate`` (score a complete
domain under a policy) and ``ping``.

An orchestrator written in another language starts ``pcitopo serve`` once and
pays Python's start-up once; each request then costs only the work on its
domain. The protocol (``docs/serve.rst`` is the full description):

* each line of standard input is one JSON object: ``{"id": ..., "op": ...,
  ...}``; blank lines are skipped;
* each request gets exactly one line on standard output, in request order: a
  JSON object (ASCII, non-ASCII characters escaped) with the request's ``id``,
  the ``outcome``, the ``exit`` code the CLI would give for it, and a
  ``result`` or a structured ``error`` (``class``, ``message``, ``fields``);
* a request the server cannot read is answered (``"outcome": "bad-request"``,
  ``"exit": 2``) and the server goes on; at the end of input it exits 0.

>>> import io
>>> out = io.StringIO()
>>> serve([b'{"id": 1, "op": "ping"}\\n', b'not json\\n'], out)
0
>>> print(out.getvalue(), end="")  # doctest: +NORMALIZE_WHITESPACE
{"id": 1, "outcome": "ok", "exit": 0,
 "result": {"protocol": 1, "ops": ["assign", "diff", "evaluate", "ping", "validate"]}}
{"id": null, "outcome": "bad-request", "exit": 2, "error": {"class": "BadRequest",
 "message": "line 2: not JSON: Expecting value: line 1 column 1 (char 0)",
 "fields": {"field": null, "reason": "not JSON: Expecting value: line 1 column 1 (char 0)", "line": 2}}}
"""

from __future__ import annotations

import functools
import json
import tomllib
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, TextIO

from pcitopo import fleet
from pcitopo.errors import PcitopoError

if TYPE_CHECKING:
    from pcitopo.formats.libvirt import LibvirtDomain
    from pcitopo.policy.policy import Policy

__all__ = ["OPS", "PROTOCOL", "BadRequest", "handle", "respond", "serve"]


def __dir__() -> list[str]:
    return __all__


PROTOCOL = 1
"""The protocol's version; a change that breaks a client gets a new number (``ping`` tells it)."""


class BadRequest(PcitopoError, ValueError):
    """A request line the server cannot act on: not JSON, not an object, an unknown op or field, a wrong type.

    ``field`` names the request field at fault (``None`` when the line as a
    whole is), ``reason`` says what is wrong, ``line`` is the line number of
    the request on standard input (``None`` outside a stream).
    """

    def __init__(self, field: str | None, reason: str, *, line: int | None = None) -> None:
        self.field = field
        self.reason = reason
        self.line = line
        where = f"line {line}: " if line is not None else ""
        super().__init__(f"{where}{field}: {reason}" if field else f"{where}{reason}")

    def __reduce__(self) -> tuple[object, ...]:
        return (_rebuild_bad_request, (self.field, self.reason, self.line))


def _rebuild_bad_request(field: str | None, reason: str, line: int | None) -> BadRequest:
    return BadRequest(field, reason, line=line)


# -- reading a request -------------------------------------------------------------------------


def _text(request: Mapping[str, Any], field: str, *, required: bool = True) -> str | None:
    value = request.get(field)
    if value is None:
        if required:
            raise BadRequest(field, "missing")
        return None
    if not isinstance(value, str):
        raise BadRequest(field, f"must be a string (got {type(value).__name__})")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:  # JSON can escape a lone surrogate; no document holds one
        raise BadRequest(field, f"not text: a lone surrogate \\u{ord(value[exc.start]):04x} at {exc.start}") from None
    return value


def _domain(request: Mapping[str, Any], field: str) -> LibvirtDomain:
    """The domain XML a field holds; errors about the document name the field as their source."""
    from pcitopo.formats.libvirt import LibvirtDomain

    text = _text(request, field)
    assert text is not None
    return LibvirtDomain.from_string(text, source=field)


@functools.lru_cache(maxsize=32)
def _named_policy(name: str) -> Policy:
    from pcitopo.policy.policy import Policy

    return Policy.named(name)


@functools.lru_cache(maxsize=32)
def _toml_policy(text: str) -> Policy:
    from pcitopo.policy.policy import Policy

    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise BadRequest("policy_toml", f"not valid TOML: {exc}") from None
    return Policy.from_mapping(data, source="policy")


def _policy(request: Mapping[str, Any]) -> Policy | None:
    name = _text(request, "policy", required=False)
    toml = _text(request, "policy_toml", required=False)
    if name is not None and toml is not None:
        raise BadRequest("policy_toml", "give a built-in policy name (policy) or TOML text (policy_toml), not both")
    if toml is not None:
        return _toml_policy(toml)
    return None if name is None else _named_policy(name)


# -- the ops -----------------------------------------------------------------------------------


def _assign(request: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    domain = _domain(request, "xml")
    outcome, result, text = fleet.assign_record(domain, _policy(request))
    result["xml"] = text
    return outcome, result


def _validate(request: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    return fleet.validate_record(_domain(request, "xml"))


def _diff(request: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    return fleet.diff_record(_domain(request, "old"), _domain(request, "new"))


def _evaluate(request: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """Score a complete domain (``result``) for the domain it completes (``request``) under a policy.

    ``scored`` when the result breaks no rule, ``violations`` (exit 1) when it
    does; the cost and every soft term are given either way
    (:func:`pcitopo.evaluate` defines them).
    """
    from pcitopo.policy import evaluate

    before, after = _domain(request, "request"), _domain(request, "result")
    policy = _policy(request)
    evaluation = evaluate(before.topology, after.topology, policy)
    violations = []
    for v in evaluation.violations:
        item = v.as_dict()
        item["elements"] = [after.path(d) for d in v.devices if d in after.elements]
        violations.append(item)
    result = {
        "policy": "hotplug" if policy is None else policy.name,
        "cost": evaluation.cost,
        "legal": evaluation.legal,
        "soft": [
            {"name": s.name, "met": s.met, "weight": s.weight, "cost": s.cost, "detail": s.detail, "subject": s.subject}
            for s in evaluation.soft
        ],
        "violations": violations,
    }
    return ("scored" if evaluation.legal else "violations"), result


def _ping(request: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    return "ok", {"protocol": PROTOCOL, "ops": sorted(OPS)}


_Op = Callable[[Mapping[str, Any]], tuple[str, dict[str, Any]]]

OPS: Mapping[str, tuple[_Op, frozenset[str]]] = {
    "assign": (_assign, frozenset({"xml", "policy", "policy_toml"})),
    "validate": (_validate, frozenset({"xml"})),
    "diff": (_diff, frozenset({"old", "new"})),
    "evaluate": (_evaluate, frozenset({"request", "result", "policy", "policy_toml"})),
    "ping": (_ping, frozenset()),
}
"""Each op: the function that answers it and the fields it takes besides ``id`` and ``op``."""

_EXIT = {**fleet.OUTCOMES, "ok": 0, "scored": 0, "bad-request": 2}

_ENCODER = json.JSONEncoder(check_circular=False)
"""The responses' encoder: ``json.dumps``'s text (ASCII, the same separators), without its check for containers
that hold themselves, which a response built of fresh dicts and lists never has: it costs a dictionary entry for
each of the 443 containers a 150-device assign response holds. An encoder keeps no state between calls."""


def handle(request: object) -> dict[str, Any]:
    """The response to one request (a parsed JSON value); never raises but for ``KeyboardInterrupt``.

    >>> handle({"id": "a", "op": "frobnicate"})["error"]["message"]
    "op: unknown op 'frobnicate' (known: assign, diff, evaluate, ping, validate)"
    """
    ident = request.get("id") if isinstance(request, dict) else None
    try:
        if not isinstance(request, dict):
            raise BadRequest(None, f"a request is a JSON object (got {_json_type(request)})")
        op = request.get("op")
        if not isinstance(op, str):
            raise BadRequest("op", "missing" if op is None else f"must be a string (got {_json_type(op)})")
        if op not in OPS:
            raise BadRequest("op", f"unknown op {op!r} (known: {', '.join(sorted(OPS))})")
        function, fields = OPS[op]
        unknown = sorted(set(request) - fields - {"id", "op"})
        if unknown:
            raise BadRequest(unknown[0], f"unknown field for op {op!r} (known: {', '.join(sorted(fields)) or 'none'})")
        outcome, result = function(request)
    except BadRequest as exc:
        return _error(ident, "bad-request", exc)
    except Exception as exc:
        outcome, _, error = fleet.failure(exc)
        return {"id": ident, "outcome": outcome, "exit": _EXIT[outcome], "error": error}
    return {"id": ident, "outcome": outcome, "exit": _EXIT[outcome], "result": result}


def _error(ident: object, outcome: str, exc: BadRequest) -> dict[str, Any]:
    return {
        "id": ident,
        "outcome": outcome,
        "exit": _EXIT[outcome],
        "error": {
            "class": type(exc).__name__,
            "message": str(exc),
            "fields": {"field": exc.field, "reason": exc.reason, "line": exc.line},
        },
    }


def _json_type(value: object) -> str:
    names = {dict: "an object", list: "an array", str: "a string", bool: "a boolean", type(None): "null"}
    return names.get(type(value), "a number")


def _read(line: bytes, number: int | None) -> tuple[object, dict[str, Any] | None]:
    """A request line as JSON: ``(request, None)``, or ``(None, the bad-request response)``."""
    try:
        text = line.decode("utf-8").rstrip("\r\n")
    except UnicodeDecodeError as exc:
        reason = f"not UTF-8: {exc.reason} at byte {exc.start}"
        return None, _error(None, "bad-request", BadRequest(None, reason, line=number))
    try:
        return json.loads(text, parse_constant=_not_json, parse_float=_finite), None
    except json.JSONDecodeError as exc:
        return None, _error(None, "bad-request", BadRequest(None, f"not JSON: {exc}", line=number))
    except ValueError as exc:  # NaN, Infinity, a number too large for a double
        return None, _error(None, "bad-request", BadRequest(None, f"not JSON: {exc}", line=number))
    except RecursionError:
        return None, _error(None, "bad-request", BadRequest(None, "not JSON: nested too deeply", line=number))


def _not_json(name: str) -> float:
    """Python's JSON reader takes ``NaN`` and ``Infinity``; JSON has neither, and no client could read them back."""
    raise ValueError(f"{name} is not a JSON value")


def _finite(text: str) -> float:
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise ValueError(f"{text} is too large for a JSON number")
    return value


def _answer(request: object, number: int | None) -> dict[str, Any]:
    """:func:`handle`, with the line number in a bad request's error."""
    response = handle(request)
    if response["outcome"] == "bad-request" and number is not None:
        response["error"]["fields"]["line"] = number
        response["error"]["message"] = f"line {number}: {response['error']['message']}"
    return response


def respond(line: bytes, number: int | None = None) -> dict[str, Any]:
    """The response to one request line (its bytes, newline or not); ``number`` is its line number."""
    request, bad = _read(line, number)
    return bad if bad is not None else _answer(request, number)


def serve(lines: Iterable[bytes], out: TextIO, *, jobs: int = 1) -> int:
    """Answer every request line of ``lines`` on ``out``, one line each, flushed; return 0 at the end of input.

    With ``jobs`` > 1 the requests are answered in that many worker
    processes, several at once, and the responses still come in request
    order: a client that sends requests ahead of reading the responses gets
    them up to ``jobs`` times faster; one that waits for each response sees
    no change. A worker that dies (killed, out of memory) makes the requests
    it held answer ``error``; the next ones get a new worker.

    A client that stops reading makes ``out.write`` raise ``BrokenPipeError``,
    which ends the server (the CLI exits 141 then, quietly, as for any
    command whose reader went away).
    """
    if jobs > 1:
        return _serve_parallel(lines, out, jobs)
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        response = respond(line, number)
        out.write(_ENCODER.encode(response) + "\n")
        out.flush()
    return 0


def _serve_parallel(lines: Iterable[bytes], out: TextIO, jobs: int) -> int:
    """:func:`serve` with worker processes: this thread reads and hands out, another writes in order."""
    import concurrent.futures
    import queue
    import threading
    from concurrent.futures.process import BrokenProcessPool

    def new_pool() -> concurrent.futures.ProcessPoolExecutor:
        executor: concurrent.futures.ProcessPoolExecutor = fleet.pool(
            jobs, ["pcitopo.serve", "pcitopo.solver", "pcitopo.formats.libvirt"]
        )
        return executor

    pool = new_pool()
    # at most a few requests per worker in flight: a client far ahead waits on its pipe, not on our memory
    answers: queue.Queue[tuple[object, concurrent.futures.Future[dict[str, Any]] | dict[str, Any]] | None]
    answers = queue.Queue(maxsize=4 * jobs)
    failed: list[BaseException] = []

    def write() -> None:
        try:
            while (item := answers.get()) is not None:
                ident, answer = item
                if isinstance(answer, concurrent.futures.Future):
                    try:
                        answer = answer.result()
                    except BrokenProcessPool:
                        answer = {
                            "id": ident,
                            "outcome": "error",
                            "exit": _EXIT["error"],
                            "error": {
                                "class": "BrokenProcessPool",
                                "message": "the worker process answering this request died",
                                "fields": {},
                            },
                        }
                out.write(_ENCODER.encode(answer) + "\n")
                out.flush()
        except BaseException as exc:  # a broken pipe: stop writing, let the reader stop too
            failed.append(exc)
            while answers.get() is not None:
                pass

    writer = threading.Thread(target=write, name="pcitopo-serve-writer", daemon=True)
    writer.start()
    try:
        for number, line in enumerate(lines, 1):
            if failed:
                break
            if not line.strip():
                continue
            request, bad = _read(line, number)
            if bad is not None:
                answers.put((None, bad))
                continue
            ident = request.get("id") if isinstance(request, dict) else None
            try:
                future = pool.submit(_answer, request, number)
            except BrokenProcessPool:
                pool.shutdown(wait=False, cancel_futures=True)
                pool = new_pool()
                future = pool.submit(_answer, request, number)
            answers.put((ident, future))
    finally:
        answers.put(None)
        writer.join()
        pool.shutdown(wait=True, cancel_futures=True)
    if failed:
        raise failed[0]
    return 0
