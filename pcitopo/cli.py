"""The ``pcitopo`` command line.

``main(argv)`` runs one command and returns its exit code, so programs and
tests can call it in-process; ``python -m pcitopo`` and the ``pcitopo``
console script (``pcitopo.__main__.main``, then ``main_exit``) do the same from a shell.

Commands (each has ``--help``):

``assign IN.xml [-o OUT.xml] [--policy NAME|FILE.toml] [--json] [--host host.json]``
    fill in every PCI address of a libvirt domain and print (or write) it.
``validate IN.xml [--json] [--host host.json]``
    every rule the domain's addresses break.
``show IN.xml [--format tree|dot|names] [--json]``
    the PCI tree, like ``lspci -tv``, a Graphviz graph, or each NIC's guest name.
``diff OLD.xml NEW.xml [--json]``
    devices added, removed, given an address, and moved between two domains
    (matched by id); non-zero when a device in both moved or lost its address.
``machines [--json]``
    the machine descriptions pcitopo knows.
``qemu-args IN.xml``, ``probe --qemu BINARY --machine NAME [-o FILE]``
    QEMU ``-device`` arguments for a domain; a machine description from a QEMU binary.
``verify IN.xml [--firmware seabios|ovmf|edk2-aarch64] [--no-hotplug] [--json]``
    start the domain's topology in QEMU, let the firmware enumerate it and
    check every device is where planned with every BAR mapped (1 when not).
``attach LIVE.xml DEVICE.xml [--policy NAME|FILE.toml] [--json]``
    free hot-pluggable positions in a running domain for new devices; each device's XML with its address.
``detach LIVE.xml ID [--json]``
    whether a device can be hot-unplugged from a running domain, and what goes with it.
``host-scan [--sysfs DIR] [-o host.json]``
    the host's PCI devices (IOMMU groups, NUMA nodes, switches, BARs, SR-IOV) as JSON.

``assign`` and ``validate`` also take several files or directories, and ``diff``
two directories: fleet mode (:mod:`pcitopo.fleet`), with ``--jobs N``.

``serve``
    answer JSON requests on stdin, one a line (:mod:`pcitopo.serve`).

Exit codes:

== ==========================================================================
0  success
1  the input breaks placement rules (``validate``; ``assign`` when the
   addresses already in the domain are illegal); ``diff``: a device present in
   both domains changed its guest-visible address
2  usage error (bad arguments)
3  bad input: unreadable file, malformed XML, not a domain, unknown model,
   machine without PCI, bad policy
4  no placement satisfies the requirements (the explanation is printed)
5  internal error (a bug in pcitopo: the message, a line asking for a report
   with the input named, no traceback)
== ==========================================================================

When the reader of stdout goes away (``pcitopo show big.xml | head -1``),
pcitopo stops quietly, as Unix tools do: no message, exit status 141 (128 +
SIGPIPE, what a shell reports for ``cat`` killed by SIGPIPE).

Documents are written in the encoding their XML declaration names, to stdout
as to ``-o``: a Latin-1 domain comes out as Latin-1 bytes.

>>> main(["machines"])  # doctest: +ELLIPSIS
aarch64-virt  ...
0
"""

from __future__ import annotations

import argparse
import io
import os
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, BinaryIO, NoReturn, TextIO, cast

from pcitopo._files import write_atomic
from pcitopo.address import PciAddress
from pcitopo.errors import InternalError, InvalidTopology, PcitopoError, Unsatisfiable
from pcitopo.formats.libvirt import LibvirtDomain
from pcitopo.legality.machine import Machine, machines
from pcitopo.policy.policy import Policy
from pcitopo.topology import Topology
from pcitopo.violation import Violation

if TYPE_CHECKING:
    from pcitopo.solver.plan import Plan

__all__ = [
    "EXIT_BAD_INPUT",
    "EXIT_BROKEN_PIPE",
    "EXIT_INTERNAL",
    "EXIT_OK",
    "EXIT_UNSATISFIABLE",
    "EXIT_USAGE",
    "EXIT_VIOLATIONS",
    "main",
    "main_exit",
]


def __dir__() -> list[str]:
    return __all__


# Start-up time is part of every command an orchestrator runs, so modules only
# some commands need (json, shlex, networkx, the QEMU helpers) are imported where
# they are used; benchmarks/run.py times whole processes (``start-*``).


EXIT_OK = 0
EXIT_VIOLATIONS = 1
EXIT_USAGE = 2
EXIT_BAD_INPUT = 3
EXIT_UNSATISFIABLE = 4
EXIT_INTERNAL = 5
EXIT_BROKEN_PIPE = 141
"""128 + SIGPIPE: what a shell reports for a Unix tool whose reader went away."""

_EPILOG = """\
exit codes:
  0  success
  1  rule violations (validate; assign on illegal existing addresses);
     diff: a device in both domains changed its guest-visible address
  2  usage error
  3  bad input (unreadable file, malformed XML, unknown model, machine without PCI, bad policy)
  4  unsatisfiable: no placement meets the requirements (explained)
  5  internal error (a bug in pcitopo; please report it with the input)
  141  the reader of stdout went away (a broken pipe); nothing is printed
"""


class _Failure(Exception):
    """A command's own way out with an exit code and a message for stderr."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


# -- helpers ------------------------------------------------------------------------------------


def _load(path: str, args: argparse.Namespace | None = None) -> LibvirtDomain:
    machine = None
    machine_file = getattr(args, "machine_file", None)
    if machine_file is not None:
        machine = Machine.from_file(machine_file)
    if path == "-":  # bytes, so the document's own declaration says how to decode it, as for a file
        return LibvirtDomain.from_bytes(sys.stdin.buffer.read(), source="<stdin>", machine=machine)
    return LibvirtDomain.from_path(path, machine=machine)


def _policy(value: str | None) -> Policy | None:
    if value is None:
        return None
    if value.endswith(".toml") or os.sep in value or os.path.isfile(value):
        return Policy.from_toml(value)
    return Policy.named(value)


def _emit(text: str, encoding: str, output: str | None, out: TextIO) -> None:
    """Write a document as ``encoding`` bytes: to ``output`` atomically, or to ``out``.

    On stdout the bytes go to the stream's binary buffer, so the document keeps
    the encoding its declaration names whatever the locale; a stream without
    one (a ``StringIO`` given to :func:`main`) gets the text.
    """
    if output:
        write_atomic(output, text.encode(encoding))
        return
    if not text.endswith("\n"):
        text += "\n"
    buffer = getattr(out, "buffer", None)
    if buffer is None:
        out.write(text)
        return
    out.flush()
    _write_all(buffer, text.encode(encoding))
    buffer.flush()


def _write_all(buffer: BinaryIO, data: bytes) -> None:
    """Write every byte of ``data``, or raise.

    A pipe whose reader goes away (or a signal) can take part of one large
    write: ``write`` then returns a short count and no error, and Python's text
    layer drops the rest silently. Writing the rest raises ``BrokenPipeError``.
    """
    view = memoryview(data)
    while view:
        view = view[buffer.write(view) or 0 :]


class _WholeWrites:
    """Standard output for the commands: text encoded like the stream's, every byte written or an error.

    Only what the commands call (``write``, ``flush``, ``buffer``, ``encoding``).
    """

    def __init__(self, stream: TextIO) -> None:
        stream.flush()
        self.buffer: BinaryIO = stream.buffer
        self.encoding = stream.encoding
        self._errors = stream.errors or "strict"

    def write(self, text: str) -> int:
        _write_all(self.buffer, text.encode(self.encoding, self._errors))
        return len(text)

    def flush(self) -> None:
        self.buffer.flush()


def _json(data: object, out: TextIO) -> None:
    import json

    json.dump(data, out, indent=2, sort_keys=False)
    out.write("\n")


def _address(a: PciAddress | None) -> str | None:
    return None if a is None else str(a)


_CONTROLLER_FIELDS = (
    "qemu_model",
    "chassis",
    "port",
    "chassis_nr",
    "bus_nr",
    "target_index",
    "numa_node",
    "hotplug",
    "io_reserve",
)
"""A controller's optional fields, in the order its JSON form gives those it has."""


def _controller_dict(c: Any) -> dict[str, object]:
    result: dict[str, object] = {"index": c.index, "model": c.model, "name": c.name, "address": _address(c.address)}
    for field in _CONTROLLER_FIELDS:  # a plan adds a hundred controllers and more: a tuple made once
        value = getattr(c, field)
        if value is not None:
            result[field] = value
    return result


# -- commands -----------------------------------------------------------------------------------


def _cmd_assign(args: argparse.Namespace, out: TextIO) -> int:
    domain = _load(args.input, args)
    request = domain.topology
    if args.policy == "mirror":
        request, policy = _mirrored(domain, args.host), _policy("hotplug+numa")
    else:
        policy = _policy(args.policy)
        passthrough = _passthrough_violations(domain, args.host)
        if passthrough:
            raise InvalidTopology(passthrough)
        request = _with_host_bars(domain, args.host)
    from pcitopo.solver import solve

    plan = solve(request, policy, strict=args.strict)
    err: TextIO = getattr(args, "stderr", None) or sys.stderr
    for warning in plan.warnings:
        err.write(f"pcitopo: warning: {warning}\n")
    text = domain.export(plan.topology)
    if args.output or not args.json:
        _emit(text, domain.encoding, args.output, out)
    if args.json:
        _json({**_plan_record(domain, plan, notes=True), "output": args.output}, out)
    return EXIT_OK


def _plan_record(domain: LibvirtDomain, plan: Plan, *, notes: bool) -> dict[str, Any]:
    """The ``assign --json`` fields of a plan (fleet mode's and ``serve``'s too); ``notes``: with its warnings."""
    record: dict[str, Any] = {
        "machine": domain.machine.name,
        "policy": plan.policy.name,
        "status": plan.status.value,
        "cost": plan.cost,
    }
    if notes:
        record["warnings"] = list(plan.warnings)
        record["not_hotpluggable"] = [{"device": d, "why": why} for d, why in plan.not_hotpluggable]
    record.update(
        addresses={d.id: _address(d.address) for d in plan.topology.devices},
        guest_names=_guest_names(domain, plan.topology),
        added_controllers=[_controller_dict(c) for c in plan.added],
        soft=[
            {"name": s.name, "met": s.met, "weight": s.weight, "detail": s.detail, "subject": s.subject}
            for s in plan.soft
        ],
    )
    return record


def _passthrough_violations(domain: LibvirtDomain, host_file: str | None) -> tuple[Violation, ...]:
    """The host-device and IOMMU-group violations of a domain's passed-through devices (none without a host)."""
    if host_file is None:
        return ()
    from pcitopo.formats.host_json import load
    from pcitopo.host import hostdev_sources
    from pcitopo.legality.rules import validate_passthrough

    return validate_passthrough(domain.topology, load(host_file), hostdev_sources(domain))


def _with_host_bars(domain: LibvirtDomain, host_file: str | None) -> Topology:
    """The domain's topology, its passed-through devices carrying their host BARs (unchanged without a host)."""
    if host_file is None:
        return domain.topology
    from pcitopo.formats.host_json import load
    from pcitopo.host import hostdev_sources
    from pcitopo.mirror import with_host_bars

    return with_host_bars(domain.topology, load(host_file), hostdev_sources(domain))


def _mirrored(domain: LibvirtDomain, host_file: str | None) -> Topology:
    """The domain's request with its passed-through devices mirroring the host (``--policy mirror``)."""
    if host_file is None:
        raise _Failure(EXIT_USAGE, "pcitopo assign: error: --policy mirror needs --host host.json")
    from pcitopo.formats.host_json import load
    from pcitopo.host import hostdev_sources
    from pcitopo.mirror import mirror_request

    return mirror_request(domain.topology, load(host_file), hostdev_sources(domain))


def _cmd_validate(args: argparse.Namespace, out: TextIO) -> int:
    domain = _load(args.input, args)
    from pcitopo.legality.rules import validate

    violations = tuple(
        sorted(validate(_with_host_bars(domain, args.host)) + _passthrough_violations(domain, args.host))
    )
    if args.json:
        items = []
        for v in violations:
            item = v.as_dict()
            item["elements"] = [domain.path(d) for d in v.devices if d in domain.elements]
            items.append(item)
        _json({"source": domain.source, "machine": domain.machine.name, "violations": items}, out)
    else:
        for v in violations:
            where = [domain.path(d) for d in v.devices if d in domain.elements]
            out.write(f"{v}{'  [' + ', '.join(where) + ']' if where else ''}\n")
        count = len(violations)
        summary = "no violations" if not count else f"{count} violation{'s' if count != 1 else ''}"
        out.write(f"{domain.source}: {summary}\n")
    return EXIT_VIOLATIONS if violations else EXIT_OK


def _cmd_show(args: argparse.Namespace, out: TextIO) -> int:
    domain = _load(args.input, args)
    if args.json:
        _json({"machine": domain.machine.name, "guest_names": _guest_names(domain, domain.topology)}, out)
        return EXIT_OK
    if args.format == "names":
        out.write(_names_text(_guest_names(domain, domain.topology)))
        return EXIT_OK
    text = _dot(domain.topology) if args.format == "dot" else _tree(domain.topology)
    out.write(text)
    return EXIT_OK


def _guest_names(domain: LibvirtDomain, topology: Topology) -> dict[str, dict[str, object]]:
    """Each NIC's guest name (systemd's predictable naming), JSON-ready."""
    from pcitopo.naming import acpi_indexes, guest_names

    nics = [i for i, el in domain.elements.items() if el.tag == "interface"]
    names = guest_names(topology, acpi_index=acpi_indexes(domain), nics=nics)
    return {ident: n.as_dict() for ident, n in names.items()}


def _names_text(names: dict[str, dict[str, object]]) -> str:
    if not names:
        return "no NICs\n"
    width = max(len(i) for i in names)
    lines = []
    for ident, n in names.items():
        notes = n["notes"]
        extra = "; ".join(str(x) for x in notes) if isinstance(notes, list) and notes else ""
        lines.append(
            f"{ident:<{width}}  {n['name'] or '?'}  ({n['source'] or 'no name'}){'  ' + extra if extra else ''}"
        )
    return "\n".join(lines) + "\n"


def _cmd_diff(args: argparse.Namespace, out: TextIO) -> int:
    old = _load(args.old, args)
    new = _load(args.new, args)
    report = _diff(old.topology, new.topology)
    if args.json:
        _json(report, out)
    else:
        for entry in report["added"]:
            out.write(f"added      {entry['id']} ({entry['kind']}) at {entry['address']}\n")
        for entry in report["removed"]:
            out.write(f"removed    {entry['id']} ({entry['kind']}) from {entry['address']}\n")
        for entry in report["assigned"]:
            out.write(f"assigned   {entry['id']} ({entry['kind']}) at {entry['address']}\n")
        for entry in report["unassigned"]:
            out.write(f"unassigned {entry['id']} ({entry['kind']}) was at {entry['address']}\n")
        for entry in report["moved"]:
            out.write(f"moved      {entry['id']} ({entry['kind']}): {entry['old']} -> {entry['new']}\n")
        for entry in report["renumbered"]:
            out.write(
                f"renumbered {entry['id']} ({entry['kind']}): {entry['old_address']} -> {entry['new_address']}"
                f" (same guest path {entry['path']})\n"
            )
        if not any(report[k] for k in ("added", "removed", "assigned", "unassigned", "moved", "renumbered")):
            out.write("no differences in device placement\n")
    # a device that lost its address will get whatever libvirt picks next: as good as moved
    return EXIT_VIOLATIONS if report["moved"] or report["unassigned"] else EXIT_OK


def _cmd_machines(args: argparse.Namespace, out: TextIO) -> int:
    known = machines()
    if args.json:
        _json(
            [
                {
                    "name": m.name,
                    "description": m.description,
                    "arches": list(m.arches),
                    "machine_types": list(m.machine_types),
                    "root_bus": m.root_bus_name,
                    "root_model": m.root_model,
                    "pcie": m.pcie,
                    "bus_numbers": m.bus_numbers,
                    "controllers": list(m.controllers),
                }
                for m in known.values()
            ],
            out,
        )
        return EXIT_OK
    width = max(len(name) for name in known)
    for m in known.values():
        types = ", ".join(m.machine_types) or "(by description only)"
        out.write(
            f"{m.name:<{width}}  {'/'.join(m.arches)}  {types}  root {m.root_bus_name} ({m.root_model})"
            f"  {m.description}\n"
        )
    return EXIT_OK


def _cmd_qemu_args(args: argparse.Namespace, out: TextIO) -> int:
    domain = _load(args.input, args)
    import shlex

    from pcitopo.qemu.args import qemu_args

    out.write(shlex.join(qemu_args(domain.topology)) + "\n")
    return EXIT_OK


def _cmd_verify(args: argparse.Namespace, out: TextIO) -> int:
    domain = _load(args.input, args)
    from pcitopo.qemu.verify import verify

    topology = domain.topology
    unplaced = [d.id for d in topology.devices if d.address is None]
    if unplaced:
        raise _Failure(
            EXIT_BAD_INPUT,
            f"pcitopo: {domain.source}: {len(unplaced)} device(s) have no PCI address yet "
            f"({', '.join(unplaced[:5])}{', ...' if len(unplaced) > 5 else ''}); run 'pcitopo assign' first",
        )
    firmware: bool | str = args.firmware if args.firmware is not None else True
    if args.no_firmware:
        firmware = False
    report = verify(topology, binary=args.qemu, firmware=firmware, hotplug=not args.no_hotplug)
    if args.json:
        _json(
            {
                "source": domain.source,
                "machine": report.machine,
                "qemu": report.binary,
                "version": report.version,
                "ok": report.ok,
                "checks": [
                    {"name": c.name, "subject": c.subject, "ok": c.ok, "detail": c.detail} for c in report.checks
                ],
            },
            out,
        )
    else:
        out.write(f"{report}\n")
    return EXIT_OK if report.ok else EXIT_VIOLATIONS


def _cmd_probe(args: argparse.Namespace, out: TextIO) -> int:
    from pcitopo.qemu.probe import machine_to_toml, probe

    machine: Machine = probe(args.qemu, args.machine)
    _emit(machine_to_toml(machine), "utf-8", args.output, out)
    return EXIT_OK


def _cmd_attach(args: argparse.Namespace, out: TextIO) -> int:
    from pathlib import Path

    from pcitopo.live import attach

    live = _load(args.live, args)
    text = sys.stdin.read() if args.devices == "-" else Path(args.devices).read_text(encoding="utf-8")
    placed = attach(live, text, _policy(args.policy), source=args.devices)
    if args.json:
        _json(
            [
                {
                    "id": a.device,
                    "kind": a.kind,
                    "address": str(a.address),
                    "bus": a.bus,
                    "numa_node": a.numa_node,
                    "xml": a.xml,
                }
                for a in placed
            ],
            out,
        )
        return EXIT_OK
    for a in placed:
        out.write(f"<!-- {a} -->\n{a.xml}\n")
    return EXIT_OK


def _cmd_detach(args: argparse.Namespace, out: TextIO) -> int:
    from pcitopo.live import detach

    result = detach(_load(args.live, args), args.id)
    if args.json:
        _json(
            {
                "id": result.device,
                "possible": result.possible,
                "reasons": list(result.reasons),
                "with": list(result.with_it),
            },
            out,
        )
    else:
        out.write(f"{result}\n")
        if result.with_it:
            out.write(f"goes with it: {', '.join(result.with_it)}\n")
    return EXIT_OK if result.possible else EXIT_VIOLATIONS


def _cmd_host_scan(args: argparse.Namespace, out: TextIO) -> int:
    from pcitopo.formats.host_json import dumps
    from pcitopo.host import Host

    text = dumps(Host.from_sysfs(args.sysfs))
    if args.output:
        write_atomic(args.output, text.encode("utf-8"))
    else:
        out.write(text)
    return EXIT_OK


_SERVE_GC_THRESHOLD = 10_000
"""The cyclic collector's first threshold in a ``pcitopo serve`` process (Python's default: 700).

An assign request of 150 devices makes thousands of objects that live for a step or two of it, freed by their
reference counts; at 700 the collector still runs about four times a request (its second generation once in
three) to walk those alive at that moment: 2 M instructions, 1.6% of the request's (callgrind), for no
garbage. At 10,000 it runs about once in seven requests. Garbage in cycles is collected as before, at most
ten thousand objects later: a few megabytes at most. Set while the command serves, then put back."""


def _cmd_serve(args: argparse.Namespace, out: TextIO) -> int:
    import gc

    from pcitopo.fleet import default_jobs
    from pcitopo.serve import serve

    # tuned for the time the command serves, and put back: main() runs in a caller's process too
    before = gc.get_threshold()
    gc.set_threshold(_SERVE_GC_THRESHOLD, *before[1:])
    try:
        return serve(sys.stdin.buffer, out, jobs=args.jobs or default_jobs())
    finally:
        gc.set_threshold(*before)


# -- show and diff ------------------------------------------------------------------------------


def _tree(topology: Topology) -> str:
    """The PCI tree as text: each root bus, then what sits on it, like ``lspci -tv``."""
    lines: list[str] = []
    children: dict[int, list[tuple[PciAddress, str, int | None]]] = {}
    for b in topology.builtins():
        children.setdefault(b.address.bus, []).append((b.address, f"[built-in] {b.name} ({b.qemu_device})", None))
    for c in topology.controllers:
        if c.address is not None:
            text = f"{c.name} ({c.model}, index {c.index})"
            children.setdefault(c.address.bus, []).append((c.address, text, c.index))
    for d in topology.devices:
        if d.address is not None:
            children.setdefault(d.address.bus, []).append((d.address, f"{d.id} ({d.kind})", None))
    shown: set[int] = set()

    def walk(bus: int, prefix: str) -> None:
        shown.add(bus)
        entries = sorted(children.get(bus, []), key=lambda e: (e[0], e[1]))
        for i, (address, text, below) in enumerate(entries):
            last = i == len(entries) - 1
            lines.append(f"{prefix}{'`-' if last else '+-'} {address}  {text}")
            if below is not None and below not in shown:
                walk(below, prefix + ("   " if last else "|  "))

    for c in topology.controllers:
        if topology.model(c).root:
            lines.append(f"{topology.bus_name(c.index)} ({c.model}, index {c.index})")
            walk(c.index, "")
    for c in topology.controllers:
        if c.index not in shown:
            where = "no address" if c.address is None else f"its bus {c.address.bus} does not reach a root bus"
            lines.append(f"detached: {c.name} ({c.model}, index {c.index}): {where}")
            walk(c.index, "")
    stray = [d for d in topology.devices if d.address is not None and not topology.has_bus(d.address.bus)]
    if stray:
        lines.append("on buses that do not exist:")
        lines += [f"   {d.id} ({d.kind}) at {d.address}" for d in stray]
    pending = [d for d in topology.devices if d.address is None]
    if pending:
        lines.append("unaddressed:")
        lines += [f"   {d.id} ({d.kind})" for d in pending]
    return "\n".join(lines) + "\n"


def _dot_id(node: tuple[str, int | str]) -> str:
    import json

    return json.dumps(f"{node[0]}:{node[1]}")


def _dot(topology: Topology) -> str:
    """The topology as a Graphviz digraph, nodes and edges in a fixed order."""
    import json

    graph = topology.graph
    lines = ["digraph pcitopo {", "  rankdir=LR;", "  node [shape=box, fontname=monospace];"]

    def key(node: tuple[str, int | str]) -> tuple[str, str]:
        kind, name = node
        return (kind, f"{name:>8}" if isinstance(name, int) else str(name))

    for node in sorted(graph.nodes, key=key):
        data = graph.nodes[node]
        kind = data.get("kind", node[0])
        if kind == "bus":
            label, shape = f"bus {node[1]}\\n{data.get('name', '')}", "ellipse"
        elif kind == "controller":
            label, shape = f"{data.get('name')}\\n{data.get('model')}", "box"
        elif kind == "builtin":
            label, shape = f"{node[1]}\\n{data.get('qemu')}", "box3d"
        else:
            label, shape = f"{node[1]}\\n{data.get('device_kind')}", "component"
        lines.append(f"  {_dot_id(node)} [label={json.dumps(label).replace(chr(92) * 2, chr(92))}, shape={shape}];")
    for u, v in sorted(graph.edges, key=lambda e: (key(e[0]), key(e[1]))):
        address = graph.edges[u, v].get("address")
        label = f" [label={json.dumps(f'{address.slot:02x}.{address.function:x}')}]" if address is not None else ""
        lines.append(f"  {_dot_id(u)} -> {_dot_id(v)}{label};")
    lines.append("}")
    return "\n".join(lines) + "\n"


def _guest_path(topology: Topology, address: PciAddress | None) -> str | None:
    """Where the guest sees a device: its root (domain:bus) and the slot.function of each hop below it."""
    if address is None:
        return None
    hops = [f"{address.slot:02x}.{address.function:x}"]
    bus = address.bus
    seen: set[int] = set()
    while True:
        if not topology.has_bus(bus) or bus in seen:
            return f"?bus{bus}/" + "/".join(reversed(hops))
        seen.add(bus)
        c = topology.controller(bus)
        model = topology.model(c)
        if model.root:
            domain = c.target_index if c.model == "spapr-pci-host-bridge" and c.target_index is not None else 0
            return f"{domain:04x}:00/" + "/".join(reversed(hops))
        if model.expander:
            return f"0000:{c.bus_nr if c.bus_nr is not None else 0:02x}/" + "/".join(reversed(hops))
        if c.address is None:
            return f"?{c.name}/" + "/".join(reversed(hops))
        hops.append(f"{c.address.slot:02x}.{c.address.function:x}")
        bus = c.address.bus


def _diff(old: Topology, new: Topology) -> dict[str, Any]:
    before = {d.id: d for d in old.devices}
    after = {d.id: d for d in new.devices}
    report: dict[str, Any] = {
        "added": [],
        "removed": [],
        "assigned": [],
        "unassigned": [],
        "moved": [],
        "renumbered": [],
        "unchanged": 0,
    }
    for d in new.devices:
        if d.id not in before:
            report["added"].append({"id": d.id, "kind": d.kind, "address": _guest_path(new, d.address)})
    for d in old.devices:
        if d.id not in after:
            report["removed"].append({"id": d.id, "kind": d.kind, "address": _guest_path(old, d.address)})
            continue
        n = after[d.id]
        old_path, new_path = _guest_path(old, d.address), _guest_path(new, n.address)
        if d.address is None and n.address is not None:
            # it had no guest-visible address yet: it got one, nothing moved
            report["assigned"].append({"id": d.id, "kind": n.kind, "address": new_path})
        elif d.address is not None and n.address is None:
            report["unassigned"].append({"id": d.id, "kind": n.kind, "address": old_path})
        elif old_path != new_path:
            report["moved"].append({"id": d.id, "kind": n.kind, "old": old_path, "new": new_path})
        elif d.address != n.address:
            report["renumbered"].append(
                {
                    "id": d.id,
                    "kind": n.kind,
                    "old_address": _address(d.address),
                    "new_address": _address(n.address),
                    "path": new_path,
                }
            )
        else:
            report["unchanged"] += 1
    return report


# -- the parser ---------------------------------------------------------------------------------


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        raise _Failure(EXIT_USAGE, f"{self.prog}: error: {message}")

    def _get_formatter(self) -> argparse.HelpFormatter:
        # argparse builds a formatter for every add_argument and sizes it with shutil.get_terminal_size;
        # the same width without importing shutil (and bz2, lzma, fnmatch): 1.4% of a short assign
        formatter = cast(type[argparse.HelpFormatter], self.formatter_class)
        return formatter(prog=self.prog, width=_columns() - 2)


def _columns() -> int:
    """The terminal's width as ``shutil.get_terminal_size`` gives it: ``$COLUMNS``, stdout's terminal, or 80."""
    try:
        columns = int(os.environ["COLUMNS"])
    except (KeyError, ValueError):
        columns = 0
    if columns <= 0:
        try:
            columns = os.get_terminal_size(sys.__stdout__.fileno()).columns  # type: ignore[union-attr]
        except (AttributeError, ValueError, OSError):
            columns = 0
    return columns if columns > 0 else 80


_COMMANDS = (
    "assign",
    "validate",
    "show",
    "diff",
    "machines",
    "qemu-args",
    "probe",
    "attach",
    "detach",
    "host-scan",
    "verify",
    "serve",
)


def _options(
    p: argparse.ArgumentParser,
    run: Callable[[argparse.Namespace, TextIO], int],
    *,
    json: str | None = None,
    machine_file: bool = True,
    host: bool = False,
    jobs: str | None = None,
) -> None:
    """The options several commands share, always in this order, and the function that runs the command."""
    if json is not None:
        p.add_argument("--json", action="store_true", help=json)
    if machine_file:
        p.add_argument(
            "--machine-file",
            metavar="FILE.toml",
            help="use this machine description instead of the shipped one for the domain's machine type",
        )
    if host:
        p.add_argument(
            "--host",
            metavar="host.json",
            help="a host description (pcitopo host-scan): check the <hostdev>s against its IOMMU groups",
        )
    if jobs is not None:
        p.add_argument("--jobs", "-j", type=_jobs, default=1, metavar="N", help=jobs)
    p.set_defaults(run=run)


_FLEET_JOBS = "fleet mode: worker processes (default 1; 0: one per CPU); output order does not depend on it"
_POLICY = "a built-in policy (hotplug, minimal, numa, ordered, libvirt; join with +) or a TOML policy file"


def _jobs(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more (got {value})")
    return value


def _fleet_or(
    name: str, single: Callable[[argparse.Namespace, TextIO], int]
) -> Callable[[argparse.Namespace, TextIO], int]:
    """The command for one domain, or fleet mode (:mod:`pcitopo.fleet`) for many files or directories."""

    def run(args: argparse.Namespace, out: TextIO) -> int:
        paths = [args.old, args.new] if name == "diff" else args.inputs
        # what fleet.is_fleet says, without importing fleet mode for one file
        many = any(p != "-" and os.path.isdir(p) for p in paths) or (name != "diff" and len(paths) > 1)
        if not many:
            if name != "diff":
                args.input = paths[0]
            return single(args, out)
        from pcitopo import fleet

        if getattr(args, "host", None) is not None or getattr(args, "policy", None) == "mirror":
            what = "--host" if getattr(args, "host", None) is not None else "--policy mirror"
            raise _Failure(
                EXIT_USAGE, f"pcitopo {name}: error: {what} works on one domain at a time, not in fleet mode"
            )
        try:
            if getattr(args, "policy", None) is not None:
                _policy(args.policy)  # a bad policy is one error, not one per domain
            if args.machine_file is not None:
                Machine.from_file(args.machine_file)  # so is a bad machine description
            tasks = fleet.tasks_for(
                name,
                paths,
                output_dir=getattr(args, "output", None),
                policy=getattr(args, "policy", None),
                machine_file=args.machine_file,
            )
        except ValueError as exc:
            if isinstance(exc, PcitopoError):
                raise
            raise _Failure(EXIT_USAGE, f"pcitopo {name}: error: {exc}") from None
        if name == "assign" and args.output is not None:
            if os.path.exists(args.output) and not os.path.isdir(args.output):
                raise _Failure(EXIT_USAGE, f"pcitopo assign: error: -o {args.output}: not a directory")
            os.makedirs(args.output, exist_ok=True)
        jobs = args.jobs or fleet.default_jobs()
        return fleet.command(name, tasks, jobs=jobs, as_json=args.json, out=out, err=args.stderr)

    return run


def _parser(command: str | None = None) -> argparse.ArgumentParser:
    """The argument parser; given the command about to run, only that command's sub-parser is built.

    Building every sub-parser costs more than some commands take to run;
    with an unknown or no command all are built, so ``--help`` and the
    "invalid choice" error list every command.
    """

    def wanted(name: str) -> bool:
        return command not in _COMMANDS or name == command

    common: dict[str, Any] = {"epilog": _EPILOG, "formatter_class": argparse.RawDescriptionHelpFormatter}
    parser = _Parser(
        prog="pcitopo",
        description="Decide where every PCI/PCIe device of a virtual machine goes.",
        **common,
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=_Parser)

    def add(name: str, help: str, **kwargs: Any) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=help, **common, **kwargs)

    if wanted("assign"):
        p = add("assign", "fill in every PCI address of a libvirt domain")
        p.add_argument(
            "inputs",
            nargs="+",
            metavar="IN.xml|DIR",
            help="libvirt domain XML ('-' for stdin); several files or a directory: fleet mode (see docs/fleet.rst)",
        )
        p.add_argument(
            "-o",
            "--output",
            metavar="OUT.xml|DIR",
            help="write here (atomically) instead of stdout; in fleet mode a directory, one file per input",
        )
        p.add_argument(
            "--policy",
            metavar="NAME|FILE.toml",
            help=f"{_POLICY}, or mirror (with --host: place passed-through devices as they sit on the host)",
        )
        p.add_argument(
            "--strict",
            action="store_true",
            help="refuse a pinned part that breaks any rule, even one QEMU does not enforce (function-zero, port-slot)",
        )
        _options(
            p,
            _fleet_or("assign", _cmd_assign),
            json="print a JSON summary instead of the XML",
            host=True,
            jobs=_FLEET_JOBS,
        )

    if wanted("validate"):
        p = add("validate", "list every placement rule the domain breaks")
        p.add_argument("inputs", nargs="+", metavar="IN.xml|DIR", help="several files or a directory: fleet mode")
        _options(
            p, _fleet_or("validate", _cmd_validate), json="print the violations as JSON", host=True, jobs=_FLEET_JOBS
        )

    if wanted("show"):
        p = add("show", "print the PCI tree of a domain")
        p.add_argument("input", metavar="IN.xml")
        p.add_argument(
            "--format",
            choices=("tree", "dot", "names"),
            default="tree",
            help="a text tree, Graphviz dot, or the name a Linux guest gives each NIC",
        )
        _options(p, _cmd_show, json="print each NIC's guest names as JSON")

    if wanted("diff"):
        p = add("diff", "devices added, removed and moved between two domains")
        p.add_argument("old", metavar="OLD.xml|DIR")
        p.add_argument("new", metavar="NEW.xml|DIR", help="two directories: fleet mode, files paired by name")
        _options(p, _fleet_or("diff", _cmd_diff), json="print the differences as JSON", jobs=_FLEET_JOBS)

    if wanted("machines"):
        p = add("machines", "the machine descriptions pcitopo knows")
        _options(p, _cmd_machines, json="print them as JSON", machine_file=False)

    if wanted("qemu-args"):
        p = add("qemu-args", "QEMU -device arguments for a domain's topology")
        p.add_argument("input", metavar="IN.xml")
        _options(p, _cmd_qemu_args)

    if wanted("probe"):
        p = add("probe", "describe a QEMU machine by asking a QEMU binary")
        p.add_argument("--qemu", required=True, metavar="BINARY", help="the QEMU binary to start")
        p.add_argument("--machine", required=True, metavar="NAME", help="the machine type, like pc-q35-7.2")
        p.add_argument("-o", "--output", metavar="FILE", help="write the TOML description here (atomically)")
        _options(p, _cmd_probe, machine_file=False)

    if wanted("attach"):
        p = add("attach", "place new devices on free hot-pluggable positions of a running domain")
        p.add_argument("live", metavar="LIVE.xml", help="the running domain (virsh dumpxml)")
        p.add_argument(
            "devices", metavar="DEVICE.xml", help="one device element, or several inside <devices> ('-': stdin)"
        )
        p.add_argument("--policy", metavar="NAME|FILE.toml", help=f"{_POLICY} (its NUMA needs and device rules apply)")
        _options(p, _cmd_attach, json="print the placements as JSON")

    if wanted("detach"):
        p = add("detach", "whether a device can be hot-unplugged from a running domain")
        p.add_argument("live", metavar="LIVE.xml", help="the running domain (virsh dumpxml)")
        p.add_argument("id", metavar="ID", help="the device's alias or id")
        _options(p, _cmd_detach, json="print the answer as JSON")

    if wanted("host-scan"):
        p = add("host-scan", "describe the host's PCI devices as JSON, from sysfs")
        p.add_argument("--sysfs", metavar="DIR", default="/sys", help="read DIR as if it were /sys (default: /sys)")
        p.add_argument("-o", "--output", metavar="host.json", help="write here (atomically) instead of stdout")
        _options(p, _cmd_host_scan, machine_file=False)

    if wanted("verify"):
        p = add("verify", "start the domain's topology in QEMU and check it with the firmware")
        p.add_argument("input", metavar="IN.xml", help="libvirt domain XML with every PCI address filled in")
        p.add_argument(
            "--firmware",
            choices=("seabios", "ovmf", "edk2-aarch64"),
            help="boot this firmware (default: the domain's: OVMF for <os firmware='efi'>, else SeaBIOS on x86; "
            "edk2-aarch64 boots aarch64 virt only when asked)",
        )
        p.add_argument("--no-firmware", action="store_true", help="check placement only, without booting a firmware")
        p.add_argument("--no-hotplug", action="store_true", help="do not probe empty slots with device_add")
        p.add_argument("--qemu", metavar="BINARY", help="the QEMU binary (default: the machine's, on PATH)")
        _options(p, _cmd_verify, json="print every check as JSON")

    if wanted("serve"):
        p = add(
            "serve",
            "answer JSON requests (assign, validate, diff, evaluate), one a line on stdin, one a line on stdout",
            description="A long-lived process for orchestrators: each line of stdin is a JSON request\n"
            "(assign, validate, diff, evaluate, ping), each answered by one JSON line on stdout,\n"
            "in request order. Bad requests are answered, never fatal; exits 0 at the end of input.\n"
            "The protocol is in docs/serve.rst.",
        )
        _options(
            p,
            _cmd_serve,
            machine_file=False,
            jobs="answer in N worker processes (0: one per CPU); responses stay in request order (default 1)",
        )
    return parser


def _inputs(args: argparse.Namespace | None) -> list[str]:
    """The files a command read, to name in a bug report."""
    if args is None:
        return []
    found = [getattr(args, name, None) for name in ("input", "old", "new", "machine_file")]
    policy = getattr(args, "policy", None)
    if policy is not None and (policy.endswith(".toml") or os.sep in policy):
        found.append(policy)
    return [f for f in found if f]


def _report(args: argparse.Namespace | None) -> str:
    """The line after an internal error: ask for a report, naming the input to attach."""
    inputs = _inputs(args)
    if not inputs:
        return "pcitopo: this is a bug in pcitopo; please report it with the command line you ran\n"
    return f"pcitopo: this is a bug in pcitopo; please report it with the command line and {', '.join(inputs)}\n"


def main(argv: Sequence[str] | None = None, *, stdout: TextIO | None = None, stderr: TextIO | None = None) -> int:
    """Run one ``pcitopo`` command; return its exit code (see the module docstring)."""
    out = stdout if stdout is not None else sys.stdout
    if stdout is None and isinstance(getattr(out, "buffer", None), io.BufferedIOBase | io.RawIOBase):
        out = cast(TextIO, _WholeWrites(out))
    err = stderr if stderr is not None else sys.stderr
    args: argparse.Namespace | None = None
    try:
        try:
            arguments = list(argv) if argv is not None else sys.argv[1:]
            command = next((a for a in arguments if not a.startswith("-")), None)
            args = _parser(command).parse_args(arguments)
        except SystemExit as exc:  # --help, --version
            return int(exc.code) if isinstance(exc.code, int) else EXIT_USAGE
        args.stderr = err
        run: Callable[[argparse.Namespace, TextIO], int] = args.run
        args.stderr = err
        code = run(args, out)
        out.flush()  # a reader that went away is noticed here, not when Python exits
        return code
    except _Failure as exc:
        err.write(f"{exc}\n")
        return exc.code
    except BrokenPipeError:
        return EXIT_BROKEN_PIPE
    except InternalError as exc:
        err.write(f"pcitopo: {exc}\n")
        err.write(_report(args))
        return EXIT_INTERNAL
    except InvalidTopology as exc:
        err.write(f"pcitopo: {exc}\n")
        return EXIT_VIOLATIONS
    except Unsatisfiable as exc:
        err.write(f"pcitopo: {exc}\n")
        return EXIT_UNSATISFIABLE
    except PcitopoError as exc:
        err.write(f"pcitopo: {exc}\n")
        return EXIT_BAD_INPUT
    except OSError as exc:
        where = f"{exc.filename}: " if exc.filename else ""
        err.write(f"pcitopo: {where}{exc.strerror or exc}\n")
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        err.write("pcitopo: interrupted\n")
        return 130
    except Exception as exc:
        message = " ".join(str(exc).split()) or "no message"
        err.write(f"pcitopo: internal error: {type(exc).__name__}: {message}\n")
        err.write(_report(args))
        return EXIT_INTERNAL


def main_exit() -> NoReturn:
    """The console script: :func:`main` with ``sys.argv``, then exit with its code.

    Output still buffered is flushed here, so a reader that went away is
    noticed (exit 141, silently) rather than reported by Python at exit.
    """
    code = main()
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        code = EXIT_BROKEN_PIPE
    if code == EXIT_BROKEN_PIPE:
        # Python flushes stdout again at exit; point it at /dev/null so that finds nothing to complain about
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    sys.exit(code)
