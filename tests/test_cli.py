"""The pcitopo command line (pcitopo.cli)."""

from __future__ import annotations

import argparse
import importlib
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pcitopo.cli import EXIT_VIOLATIONS, main
from pcitopo.formats import LibvirtDomain

ROOT = Path(__file__).parent.parent
EXAMPLES = ROOT / "examples"
DATA = Path(__file__).parent / "formats" / "data"
BENCH_171 = ROOT / "benchmarks" / "data" / "start-q35-171.xml"

DOMAIN = """<domain type='kvm'>
  <name>cli</name>
  <os><type arch='x86_64' machine='q35'>hvm</type></os>
  <devices>
    <controller type='pci' index='0' model='pcie-root'/>
{devices}
  </devices>
</domain>
"""


def write(tmp_path: Path, name: str, devices: str) -> Path:
    path = tmp_path / name
    path.write_text(DOMAIN.format(devices=devices), encoding="utf-8")
    return path


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


NIC_AT_3 = "    <interface type='user'><model type='e1000e'/><address type='pci' bus='0' slot='3'/></interface>"
NIC_AT_4 = "    <interface type='user'><model type='e1000e'/><address type='pci' bus='0' slot='4'/></interface>"
RNG_AT_5 = "    <rng model='virtio'><alias name='ua-rng'/><address type='pci' bus='0' slot='5'/></rng>"


# -- usage ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("command", ["assign", "validate", "show", "diff", "machines", "qemu-args", "probe"])
def test_every_command_has_help_with_the_exit_codes(capsys: pytest.CaptureFixture[str], command: str) -> None:
    """``COMMAND --help`` exits 0 and documents the exit codes."""
    code, out, _ = run(capsys, command, "--help")
    assert code == 0
    assert "4  unsatisfiable" in out


@pytest.mark.parametrize("argv", [[], ["frobnicate"], ["assign"], ["show", "x.xml", "--format", "svg"]])
def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str], argv: list[str]) -> None:
    """Missing or unknown arguments are usage errors with exit code 2 and a message on stderr."""
    code, out, err = run(capsys, *argv)
    assert code == 2
    assert "error:" in err
    assert out == ""


# -- machines ---------------------------------------------------------------------------------------


def test_machines_lists_every_shipped_description(capsys: pytest.CaptureFixture[str]) -> None:
    """``machines --json`` gives name, arches, machine types and root bus of each description."""
    code, out, _ = run(capsys, "machines", "--json")
    assert code == 0
    by_name = {m["name"]: m for m in json.loads(out)}
    assert set(by_name) == {"aarch64-virt", "aarch64-virt-highmem-off", "pc", "pseries", "q35", "riscv64-virt"}
    assert by_name["q35"]["machine_types"] == ["q35", "pc-q35-*"]
    assert by_name["q35"]["root_bus"] == "pcie.0"
    assert by_name["pc"]["pcie"] is False


# -- show ---------------------------------------------------------------------------------------------


def test_show_prints_the_tree_with_ids_kinds_and_addresses(capsys: pytest.CaptureFixture[str]) -> None:
    """The tree puts each device under the controller whose bus it sits on."""
    code, out, _ = run(capsys, "show", str(DATA / "libvirt-q35-defined.xml"))
    assert code == 0
    assert out.startswith("pcie.0 (pcie-root, index 0)\n+- 0000:00:00.0  [built-in] mch (mch)\n")
    assert (
        "+- 0000:00:02.0  pci.1 (pcie-root-port, index 1)\n"
        "|  `- 0000:01:00.0  pci.3 (pcie-to-pci-bridge, index 3)\n"
        "|     +- 0000:03:01.0  interface1 (e1000)\n"
        "|     `- 0000:03:02.0  watchdog0 (i6300esb)\n"
    ) in out
    assert out.endswith("`- 0000:00:1f.3  [built-in] smbus (ICH9-SMB)\n")


def test_show_lists_devices_still_without_an_address(capsys: pytest.CaptureFixture[str]) -> None:
    """Devices that ask for an address are listed apart."""
    code, out, _ = run(capsys, "show", str(EXAMPLES / "q35-server.xml"))
    assert code == 0
    assert "unaddressed:\n   ua-root (virtio-blk)\n   ua-data (virtio-blk)\n" in out


def test_show_dot_is_deterministic_graphviz(capsys: pytest.CaptureFixture[str]) -> None:
    """``--format dot`` prints the same digraph twice, with a labelled edge per address."""
    path = str(DATA / "libvirt-q35-defined.xml")
    _, first, _ = run(capsys, "show", path, "--format", "dot")
    _, second, _ = run(capsys, "show", path, "--format", "dot")
    assert first == second
    assert first.startswith("digraph pcitopo {\n")
    assert '  "bus:1" -> "controller:3" [label="00.0"];\n' in first


# -- validate ---------------------------------------------------------------------------------------


def test_validate_a_legal_domain_exits_0(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """A domain whose addresses break no rule prints a summary and exits 0."""
    path = write(tmp_path, "ok.xml", NIC_AT_3)
    code, out, _ = run(capsys, "validate", str(path))
    assert (code, out) == (0, f"{path}: no violations\n")


def test_validate_reports_every_violation_and_exits_1(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """Two devices on one address are a violation naming both elements; the exit code is 1."""
    path = write(tmp_path, "bad.xml", NIC_AT_3 + "\n" + NIC_AT_3)
    code, out, _ = run(capsys, "validate", str(path), "--json")
    assert code == 1
    report = json.loads(out)
    rules = [v["rule"] for v in report["violations"]]
    assert "unique-address" in rules
    clash = report["violations"][rules.index("unique-address")]
    assert clash["devices"] == ["interface0", "interface1"]
    assert clash["elements"] == ["/domain/devices/interface[1]", "/domain/devices/interface[2]"]


def test_validate_refuses_what_libvirt_accepts_but_qemu_7_2_cannot_start(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """A transitional vsock and an igb NIC, which libvirt 9.0 defines, are violations of rule qemu-driver."""
    vsock = "    <vsock model='virtio-transitional'><cid auto='yes'/></vsock>"
    igb = "    <interface type='user'><model type='igb'/></interface>"
    path = write(tmp_path, "new.xml", vsock + "\n" + igb)
    code, out, _ = run(capsys, "validate", str(path))
    assert code == 1
    assert out.splitlines() == [
        "'interface0' (igb) needs QEMU device 'igb', which QEMU 8.0 added; q35 describes QEMU 7.2 (rule: qemu-driver)"
        "  [/domain/devices/interface]",
        "'vsock0' (vhost-vsock-transitional) needs QEMU device 'vhost-vsock-pci-transitional', which no QEMU release "
        "has (libvirt 9.0 accepts the model; QEMU refuses to start); use 'vhost-vsock' or "
        "'vhost-vsock-non-transitional' (rule: qemu-driver)  [/domain/devices/vsock]",
        f"{path}: 2 violations",
    ]


# -- diff -------------------------------------------------------------------------------------------


def test_diff_reports_added_removed_and_moved_devices(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """A device that changed its guest-visible address makes diff exit 1."""
    old = write(tmp_path, "old.xml", NIC_AT_3 + "\n" + RNG_AT_5)
    new = write(tmp_path, "new.xml", NIC_AT_4)
    code, out, _ = run(capsys, "diff", str(old), str(new), "--json")
    assert code == 1
    report = json.loads(out)
    assert report["moved"] == [
        {"id": "interface0", "kind": "e1000e", "old": "0000:00/03.0", "new": "0000:00/04.0"},
    ]
    assert report["removed"] == [{"id": "ua-rng", "kind": "virtio-rng", "address": "0000:00/05.0"}]
    assert report["added"] == []


def test_diff_of_identical_domains_exits_0(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """No differences print one line and exit 0."""
    old = write(tmp_path, "old.xml", NIC_AT_3)
    code, out, _ = run(capsys, "diff", str(old), str(old))
    assert (code, out) == (0, "no differences in device placement\n")


def test_diff_ignores_controller_renumbering_the_guest_cannot_see(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """A device behind a root port whose index changed but whose slot did not is renumbered, not moved."""
    port = (
        "    <controller type='pci' index='{i}' model='pcie-root-port'>"
        "<address type='pci' bus='0' slot='2'/></controller>\n"
        "    <interface type='user'><model type='virtio'/><address type='pci' bus='{i}' slot='0'/></interface>"
    )
    old = write(tmp_path, "old.xml", port.format(i=1))
    new = write(tmp_path, "new.xml", port.format(i=7))
    code, out, _ = run(capsys, "diff", str(old), str(new))
    assert code == 0
    assert out == (
        "renumbered interface0 (virtio-net): 0000:01:00.0 -> 0000:07:00.0 (same guest path 0000:00/02.0/00.0)\n"
    )


# -- bad input ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("<domain><devices>", "malformed XML"),
        ("<network/>", "/network: not a libvirt domain"),
        (
            "<domain><os><type arch='s390x' machine='s390-ccw-virtio'>hvm</type></os></domain>",
            "machine type 's390-ccw-virtio' on arch 's390x' has no PCI bus",
        ),
        (DOMAIN.format(devices="    <sound model='gravis'/>"), "unknown sound model 'gravis'"),
    ],
)
@pytest.mark.parametrize("command", ["assign", "validate", "show"])
def test_bad_input_exits_3_without_a_traceback(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, command: str, content: str, message: str
) -> None:
    """Malformed or unsupported documents exit 3 with one line naming the problem."""
    path = tmp_path / "in.xml"
    path.write_text(content, encoding="utf-8")
    code, out, err = run(capsys, command, str(path))
    assert code == 3
    assert message in err
    assert "Traceback" not in err
    assert out == ""


def test_a_missing_file_exits_3(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """An unreadable input file is bad input."""
    code, _, err = run(capsys, "show", str(tmp_path / "nope.xml"))
    assert code == 3
    assert err == f"pcitopo: {tmp_path / 'nope.xml'}: cannot read: No such file or directory\n"


# -- assign ---------------------------------------------------------------------------------------
# These call pcitopo.solver.solve: they wait for the solver where it is still a stub.


def test_assign_prints_the_domain_with_every_address_filled(capsys: pytest.CaptureFixture[str]) -> None:
    """Every device of the example gets an address, and the output still reads as the same domain."""
    code, out, _ = run(capsys, "assign", str(EXAMPLES / "q35-server.xml"))
    assert code == 0
    domain = LibvirtDomain.from_string(out)
    assert all(d.address is not None for d in domain.topology.devices)
    assert "<qemu:arg value='timestamp=on'/>" in out
    assert "<!-- front-end and back-end networks -->" in out


def test_assign_json_summarises_the_plan(capsys: pytest.CaptureFixture[str]) -> None:
    """``--json`` gives addresses by id, added controllers, soft results and cost."""
    code, out, _ = run(capsys, "assign", str(EXAMPLES / "q35-server.xml"), "--json", "--policy", "hotplug")
    assert code == 0
    summary = json.loads(out)
    assert set(summary) >= {"addresses", "added_controllers", "soft", "cost", "policy", "status"}
    assert summary["policy"] == "hotplug"
    assert summary["addresses"]["sata0"] == "0000:00:1f.2"
    assert all(summary["addresses"][i] for i in ("ua-root", "ua-data", "ua-net-front", "ua-net-back", "ua-rng"))
    assert summary["added_controllers"]


def test_assign_writes_the_output_file_and_nothing_else(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """``-o`` writes the result, prints nothing and leaves no temporary file behind."""
    target = tmp_path / "out.xml"
    code, out, _ = run(capsys, "assign", str(EXAMPLES / "pc-legacy.xml"), "-o", str(target))
    assert (code, out) == (0, "")
    assert [p.name for p in tmp_path.iterdir()] == ["out.xml"]
    domain = LibvirtDomain.from_path(target)
    assert str(domain.topology.device("ua-lan").address) == "0000:00:05.0"


def test_assign_with_a_policy_file(capsys: pytest.CaptureFixture[str]) -> None:
    """A TOML policy file is loaded and named after the file."""
    code, out, _ = run(
        capsys, "assign", str(EXAMPLES / "q35-server.xml"), "--policy", str(EXAMPLES / "policy-windows.toml"), "--json"
    )
    assert code == 0
    assert json.loads(out)["policy"] == "policy-windows"


def test_assign_with_an_unknown_policy_exits_3_and_writes_nothing(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """A bad policy name is bad input: exit 3, and the output file is never created."""
    target = tmp_path / "out.xml"
    code, _, err = run(capsys, "assign", str(EXAMPLES / "q35-server.xml"), "--policy", "fastest", "-o", str(target))
    assert code == 3
    assert "unknown policy 'fastest'" in err
    assert not target.exists()


def test_assign_failure_keeps_an_existing_output_file(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """On bad input an existing ``-o`` file keeps its old content."""
    bad = write(tmp_path, "bad.xml", "    <sound model='gravis'/>")
    target = tmp_path / "out.xml"
    target.write_text("old", encoding="utf-8")
    code, _, _ = run(capsys, "assign", str(bad), "-o", str(target))
    assert code == 3
    assert target.read_text(encoding="utf-8") == "old"


def test_assign_on_illegal_pinned_addresses_exits_1(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """Two devices pinned to one address cannot be planned around: the violations are printed, exit 1."""
    path = write(tmp_path, "clash.xml", NIC_AT_3 + "\n" + NIC_AT_3)
    code, out, err = run(capsys, "assign", str(path))
    assert code == 1
    assert "unique-address" in err
    assert out == ""


def test_python_dash_m_pcitopo_runs_the_cli() -> None:
    """``python -m pcitopo`` is the same command line, with the same exit codes."""
    result = subprocess.run(
        [sys.executable, "-m", "pcitopo", "show", "/nonexistent.xml"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 3
    assert result.stderr == "pcitopo: /nonexistent.xml: cannot read: No such file or directory\n"


def test_a_machine_file_replaces_the_shipped_description(tmp_path: Path) -> None:
    """``--machine-file`` plans for a QEMU build without pcie-to-pci-bridge: conventional devices get a DMI bridge."""
    shipped = Path("pcitopo/legality/data/machines/q35.toml").read_text(encoding="utf-8")
    custom = tmp_path / "q35-nobridge.toml"
    custom.write_text(shipped.replace('"pcie-to-pci-bridge",', ""), encoding="utf-8")
    out = io.StringIO()
    code = main(["assign", "examples/q35-server.xml", "--machine-file", str(custom)], stdout=out)
    assert code == 0
    assert "model='dmi-to-pci-bridge'" in out.getvalue()
    assert "model='pcie-to-pci-bridge'" not in out.getvalue()


def test_an_unreadable_machine_file_is_bad_input(tmp_path: Path) -> None:
    """A machine file that does not exist exits 3 with the path named."""
    err = io.StringIO()
    code = main(["validate", "examples/q35-server.xml", "--machine-file", str(tmp_path / "no.toml")], stderr=err)
    assert code == 3
    assert err.getvalue() == f"pcitopo: {tmp_path / 'no.toml'}: cannot read: No such file or directory\n"


def test_diff_of_an_assignment_reports_assigned_not_moved(tmp_path: Path) -> None:
    """Devices that had no address and got one are 'assigned' (exit 0); the reverse loses addresses (exit 1)."""
    out_xml = tmp_path / "out.xml"
    assert main(["assign", "examples/q35-server.xml", "-o", str(out_xml)], stdout=io.StringIO()) == 0
    forward = io.StringIO()
    assert main(["diff", "examples/q35-server.xml", str(out_xml)], stdout=forward) == 0
    assert forward.getvalue().startswith("assigned   ua-root (virtio-blk) at 0000:00/02.0/00.0\n")
    assert "moved" not in forward.getvalue()
    backward = io.StringIO()
    assert main(["diff", str(out_xml), "examples/q35-server.xml"], stdout=backward) == 1
    assert backward.getvalue().startswith("unassigned ua-root (virtio-blk) was at 0000:00/02.0/00.0\n")


EHCI_AT_1D_7 = (
    "    <controller type='usb' index='0' model='ich9-ehci1'>"
    "<address type='pci' bus='0' slot='0x1d' function='7'/></controller>\n"
    "    <interface type='user'><model type='virtio'/></interface>"
)


def test_assign_keeps_a_pinned_function_zero_defect_with_a_warning(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """A lone ich9-ehci1 at function 7: the NIC is placed, exit 0, and stderr names the rule and the repair."""
    code, out, err = run(capsys, "assign", str(write(tmp_path, "grow.xml", EHCI_AT_1D_7)))
    assert code == 0
    assert all(d.address is not None for d in LibvirtDomain.from_string(out).topology.devices)
    assert err.startswith("pcitopo: warning: 0000:00:1d.0 is empty")
    assert "(rule: function-zero)" in err
    assert "repair: move 'usb0' to function 0 of 0000:00:1d.0" in err


def test_assign_strict_refuses_a_pinned_function_zero_defect(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """``--strict`` turns the same warning into a failure (exit code of a violation), writing nothing."""
    code, out, err = run(capsys, "assign", "--strict", str(write(tmp_path, "grow.xml", EHCI_AT_1D_7)))
    assert (code, out) == (EXIT_VIOLATIONS, "")
    assert "(rule: function-zero)" in err


# -- errors, pipes and encodings ------------------------------------------------------------------


def test_bad_xml_names_the_file_line_and_element(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """A bad element is reported as FILE:LINE: PATH: reason, exit 3."""
    path = write(
        tmp_path, "vm.xml", "    <rng model='virtio'/>\n    <rng model='virtio'><address type='pci' slot='0x20'/></rng>"
    )
    code, out, err = run(capsys, "validate", str(path))
    assert (code, out) == (3, "")
    assert (
        err == f"pcitopo: {path}:7: /domain/devices/rng[2]/address: Invalid PCI address slot='0x20', must be <= 0x1F\n"
    )


def test_a_duplicate_alias_names_both_elements(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """Two elements with one alias: exit 3, naming the file, the line of the second and both paths."""
    path = write(tmp_path, "vm.xml", f"{RNG_AT_5}\n{RNG_AT_5}")
    code, _, err = run(capsys, "show", str(path))
    assert code == 3
    assert err == f"pcitopo: {path}:7: id 'ua-rng' is used by /domain/devices/rng[1] and /domain/devices/rng[2]\n"


def test_a_bad_policy_file_names_the_key(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """A policy file with a bad value: exit 3, naming the file and the key."""
    policy = tmp_path / "site.toml"
    policy.write_text("spare-ports = -1\n", encoding="utf-8")
    code, _, err = run(capsys, "assign", str(EXAMPLES / "q35-server.xml"), "--policy", str(policy))
    assert code == 3
    assert err == f"pcitopo: {policy}: spare-ports: must be >= 0 (got -1)\n"


def test_a_plan_that_fails_its_own_validation_exits_5(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When the solver's plan breaks a rule it is pcitopo's bug: exit 5, the rule, and a request naming the input."""
    from pcitopo.violation import Violation

    steps = importlib.import_module("pcitopo.solver.solve")  # the module (the package exports its function)

    calls: list[object] = []

    def validate_once_then_complain(topology: object) -> tuple[Violation, ...]:
        calls.append(topology)
        if len(calls) == 1:  # the request's pinned part is fine
            return ()
        return (Violation("unique-address", "0000:00:03.0 is wanted by 'a' and 'b'", devices=("a", "b")),)

    monkeypatch.setattr(steps, "_validate", validate_once_then_complain)
    path = write(tmp_path, "vm.xml", "    <rng model='virtio'/>")
    policy = tmp_path / "p.toml"
    policy.write_text('base = "minimal"\n', encoding="utf-8")
    code, out, err = run(capsys, "assign", str(path), "--policy", str(policy))
    assert (code, out) == (5, "")
    assert err == (
        "pcitopo: internal error: the solver produced a plan that breaks rules\n"
        "  - 0000:00:03.0 is wanted by 'a' and 'b' (rule: unique-address)\n"
        f"pcitopo: this is a bug in pcitopo; please report it with the command line and {path}, {policy}\n"
    )


def test_an_unexpected_exception_exits_5_without_a_traceback(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Any other exception is an internal error too: exit 5, one line and the request to report it."""
    from pcitopo.formats.libvirt import _read

    def boom(*args: object, **kwargs: object) -> None:
        raise KeyError("lost")

    monkeypatch.setattr(_read._Reader, "read", boom)
    code, _, err = run(capsys, "show", str(EXAMPLES / "pc-legacy.xml"))
    assert code == 5
    assert err == (
        "pcitopo: internal error: KeyError: 'lost'\n"
        f"pcitopo: this is a bug in pcitopo; please report it with the command line and {EXAMPLES / 'pc-legacy.xml'}\n"
    )


def test_a_closed_pipe_ends_pcitopo_quietly_with_141(tmp_path: Path) -> None:
    """``pcitopo assign big.xml | head -1``: when the reader goes away pcitopo exits 141 and prints nothing."""
    path = write(tmp_path, "big.xml", "    <rng model='virtio'/>")
    text = path.read_text(encoding="utf-8")
    # 1 MB of description: far more than a pipe holds, so pcitopo is still writing when the reader leaves
    path.write_text(
        text.replace("<name>cli</name>", f"<name>cli</name>\n  <description>{'x' * 1_000_000}</description>")
    )
    with subprocess.Popen(
        [sys.executable, "-m", "pcitopo", "assign", str(path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=ROOT,
    ) as process:
        assert process.stdout is not None
        assert process.stderr is not None
        first = process.stdout.readline()
        process.stdout.close()
        err = process.stderr.read()
        code = process.wait()
    assert first.startswith(b"<domain")
    assert (code, err) == (141, b"")


LATIN1 = (
    "<?xml version='1.0' encoding='ISO-8859-1'?>\n"
    "<domain type='kvm'>\n  <name>latin</name>\n  <description>café</description>\n"
    "  <os><type arch='x86_64' machine='q35'>hvm</type></os>\n"
    "  <devices>\n    <rng model='virtio'/>\n  </devices>\n</domain>\n"
)


def test_stdout_keeps_the_declared_encoding(tmp_path: Path) -> None:
    """A Latin-1 domain comes out on stdout as Latin-1 bytes, byte for byte what ``-o`` writes."""
    path = tmp_path / "latin.xml"
    path.write_bytes(LATIN1.encode("latin-1"))
    command = [sys.executable, "-m", "pcitopo", "assign", str(path)]
    env = {"PYTHONIOENCODING": "utf-8", "PATH": "/usr/bin:/bin"}
    printed = subprocess.run(command, capture_output=True, check=True, cwd=ROOT, env=env).stdout
    subprocess.run([*command, "-o", str(tmp_path / "out.xml")], check=True, cwd=ROOT, env=env)
    assert b"<description>caf\xe9</description>" in printed
    assert printed.startswith(b"<?xml version='1.0' encoding='ISO-8859-1'?>\n")
    assert printed == (tmp_path / "out.xml").read_bytes()
    assert LibvirtDomain.from_path(tmp_path / "out.xml").to_string().count("café") == 1


def test_stdin_is_read_in_the_declared_encoding(tmp_path: Path) -> None:
    """``pcitopo assign -`` reads a Latin-1 document by its declaration: the same bytes out as for the file."""
    path = tmp_path / "latin.xml"
    path.write_bytes(LATIN1.encode("latin-1"))
    env = {"PYTHONIOENCODING": "utf-8", "PATH": "/usr/bin:/bin"}
    command = [sys.executable, "-m", "pcitopo", "assign"]
    from_file = subprocess.run([*command, str(path)], capture_output=True, check=True, cwd=ROOT, env=env).stdout
    from_stdin = subprocess.run(
        [*command, "-"], input=path.read_bytes(), capture_output=True, check=True, cwd=ROOT, env=env
    ).stdout
    assert from_stdin == from_file
    assert b"<description>caf\xe9</description>" in from_stdin


def test_the_command_list_names_every_command() -> None:
    """``_COMMANDS`` (the commands whose sub-parser is built alone) is exactly the parser's commands."""
    from pcitopo import cli

    full = cli._parser()
    sub = next(a for a in full._actions if isinstance(a, argparse._SubParsersAction))
    assert tuple(sub.choices) == cli._COMMANDS


@pytest.mark.parametrize("command", ["assign", "validate", "show", "diff", "machines", "qemu-args", "probe"])
def test_a_command_parsed_alone_reads_as_with_every_command(command: str) -> None:
    """Building only the running command's sub-parser gives the same help as building all of them."""
    from pcitopo import cli

    def helps(parser: argparse.ArgumentParser) -> str:
        sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        return str(sub.choices[command].format_help())

    assert helps(cli._parser(command)) == helps(cli._parser())


def test_assign_imports_no_graph_library(tmp_path: Path) -> None:
    """``pcitopo assign`` starts without networkx or the QEMU helpers: only ``show --format dot`` asks for a graph."""
    script = (
        "import runpy, sys\n"
        f"sys.argv = ['pcitopo', 'assign', {str(EXAMPLES / 'q35-server.xml')!r}, '-o', {str(tmp_path / 'o.xml')!r}]\n"
        "try:\n    runpy.run_module('pcitopo', run_name='__main__')\n"
        "except SystemExit as exc:\n    assert exc.code == 0\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'networkx' or m.startswith('pcitopo.qemu')))\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True, cwd=ROOT)
    assert result.stdout == "[]\n"
    dot = subprocess.run(
        [sys.executable, "-m", "pcitopo", "show", str(EXAMPLES / "q35-server.xml"), "--format", "dot"],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    )
    assert dot.stdout.startswith("digraph pcitopo {")


@pytest.mark.parametrize(
    "argv",
    [["show", "--format", "dot"], ["validate", "--json"], ["assign"]],
    ids=["show-dot", "validate-json", "assign"],
)
def test_every_command_ends_quietly_on_a_closed_pipe(tmp_path: Path, argv: list[str]) -> None:
    """A reader that leaves after 100 bytes of a 4 KiB pipe ends pcitopo with 141 and nothing on stderr, text or XML."""
    import fcntl

    # 171 devices, the 80 NICs all pinned to 00:03.0: every command prints far more than the pipe holds
    text = BENCH_171.read_text(encoding="utf-8").replace(
        "<model type='virtio'/>", "<model type='virtio'/><address type='pci' bus='0' slot='3'/>"
    )
    path = tmp_path / "clash.xml"
    path.write_text(text, encoding="utf-8")
    read_end, write_end = os.pipe()
    fcntl.fcntl(write_end, 1031, 4096)  # F_SETPIPE_SZ
    command = [sys.executable, "-m", "pcitopo", argv[0], str(path if argv[0] == "validate" else BENCH_171), *argv[1:]]
    with subprocess.Popen(command, stdout=write_end, stderr=subprocess.PIPE, cwd=ROOT) as process:
        os.close(write_end)
        first = os.read(read_end, 100)
        os.close(read_end)
        assert process.stderr is not None
        err = process.stderr.read()
        code = process.wait()
    assert first
    assert (code, err) == (141, b"")


def test_the_entry_point_runs_the_command_with_the_collector_on_and_start_up_frozen() -> None:
    """The console script (``pcitopo.__main__.main``) runs the command with the GC on and the imports frozen."""
    script = (
        "import gc, sys\n"
        "from pcitopo import __main__ as entry, cli\n"
        "def probe():\n"
        "    print(gc.isenabled(), gc.get_freeze_count() > 10000)\n"
        "    sys.exit(7)\n"
        "cli.main_exit = probe\n"
        "try:\n    entry.main()\n"
        "except SystemExit as exc:\n    print(exc.code)\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True, cwd=ROOT)
    assert result.stdout == "True True\n7\n"
    setup = (ROOT / "setup.cfg").read_text(encoding="utf-8")
    assert "pcitopo = pcitopo.__main__:main" in setup


def test_verify_refuses_a_domain_with_devices_to_place(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """verify needs every address filled in and says which devices lack one, with exit code 3, without starting QEMU."""
    path = write(tmp_path, "in.xml", "    <interface type='user'><model type='e1000e'/></interface>")
    code, out, err = run(capsys, "verify", str(path))
    assert (code, out) == (3, "")
    # usb0 and memballoon0 are what libvirt adds to this q35 domain: assign places them too
    assert err == (
        f"pcitopo: {path}: 3 device(s) have no PCI address yet (interface0, usb0, memballoon0); "
        "run 'pcitopo assign' first\n"
    )


def test_assign_json_shows_the_io_reserve_the_plan_sets(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """Under OVMF with more hotplug ports than IO windows, --json lists the added ports given io-reserve 0."""
    nics = "".join(
        f"<interface type='user'><model type='{m}'/><alias name='ua-{m}{i}'/></interface>"
        for m, n in (("e1000e", 8), ("virtio", 3))
        for i in range(n)
    )
    path = tmp_path / "d.xml"
    path.write_text(
        "<domain type='kvm'><name>d</name><os firmware='efi'><type arch='x86_64' machine='q35'>hvm</type></os>"
        f"<features><acpi/></features><devices>{nics}</devices></domain>"
    )
    code, out, _ = run(capsys, "assign", str(path), "--json", "--policy", "hotplug")
    assert code == 0
    summary = json.loads(out)
    off = [c["name"] for c in summary["added_controllers"] if c.get("io_reserve") == 0]
    assert len(off) == 5
    assert all(name.startswith("ua-pci-") for name in off)
    (term,) = [s for s in summary["soft"] if s["name"] == "io-reserve-off"]
    assert (term["met"], term["weight"]) == (False, 5 * 2)
