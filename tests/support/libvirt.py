"""Real libvirt as a test oracle: start ``libvirtd`` here and in CI, define domains, read them back.

:func:`ensure_libvirtd` installs the Debian packages (through
:mod:`tests.support.packages`), gives ``libvirtd`` what it needs to run as root
in a container (its directories, ``user``/``group``/``security_driver`` in
``/etc/libvirt/qemu.conf``, the ``libvirt-qemu`` system user), starts it and
waits for its socket. It returns ``None`` when libvirt is ready, else the
reason it cannot be (not root, no apt-get), which a test turns into a failure
or a skip.

:func:`libvirtd` is the session fixture the integration tests that use
libvirt name (``pytest.mark.usefixtures("libvirtd")``; it is re-exported by
``tests/integration/conftest.py``).

:func:`define_and_dump` is the oracle: ``virsh define`` a domain, ``dumpxml
--inactive`` it (libvirt's addresses and added controllers), ``undefine`` it.
All calls share one long-lived ``virsh`` process fed commands on its standard
input, so a call costs libvirt's own work (a few milliseconds) rather than a
process start. Each call defines the domain under a unique name (the
``<name>`` is replaced and any ``<uuid>`` dropped, so that concurrent callers
never clash); the text returned carries the caller's name again.
"""

from __future__ import annotations

import atexit
import fcntl
import itertools
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import pytest
from lxml import etree

from tests.support.packages import ensure_packages

__all__ = [
    "PACKAGES",
    "LibvirtError",
    "Virsh",
    "attach_live",
    "define_and_dump",
    "define_and_dump_many",
    "ensure_libvirtd",
    "libvirtd",
]

PACKAGES = [
    "libvirt-daemon-driver-qemu",
    "libvirt-clients",
    "libvirt-daemon",
    "qemu-system-x86",
    "qemu-system-arm",
    "qemu-system-ppc",
    "qemu-system-misc",
]
URI = "qemu:///system"
SOCKET = Path("/var/run/libvirt/libvirt-sock")
DIRECTORIES = ["/var/log/libvirt", "/var/run/libvirt", "/var/lib/libvirt/qemu", "/var/cache/libvirt/qemu"]
QEMU_CONF = Path("/etc/libvirt/qemu.conf")
QEMU_SETTINGS = {"user": '"root"', "group": '"root"', "security_driver": '"none"'}

_lock = threading.Lock()
_tried = False
_ready: str | None = None  # after a try: None when ready, else why not


class LibvirtError(Exception):
    """libvirt refused a domain; the message is virsh's error text."""


def ensure_libvirtd() -> str | None:
    """Install, configure and start libvirtd if needed; ``None`` when it answers, else why not."""
    global _ready, _tried
    with _lock:
        if not _tried:
            _ready = _start()
            _tried = True
        return _ready


@pytest.fixture(scope="session")
def libvirtd() -> None:
    """libvirtd answering (installed and started when missing); a failure, never a skip, when it cannot be."""
    reason = ensure_libvirtd()
    if reason is not None:
        pytest.fail(f"libvirt is needed and could not be started: {reason}")


def _start() -> str | None:
    reason = ensure_packages(PACKAGES)
    if reason is not None:
        return reason
    if _answers():
        return None
    if os.geteuid() != 0:
        return "libvirtd is not running and cannot be started: not root"
    for d in DIRECTORIES:
        os.makedirs(d, exist_ok=True)
    _configure_qemu()
    if subprocess.run(["id", "libvirt-qemu"], capture_output=True, check=False).returncode != 0:
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", "libvirt-qemu"],
            capture_output=True,
            check=False,
        )
    daemon = shutil.which("libvirtd") or "/usr/sbin/libvirtd"
    started = subprocess.run([daemon, "-d"], capture_output=True, text=True, check=False)
    if started.returncode != 0:
        return f"libvirtd -d failed: {started.stderr.strip()[-500:]}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if SOCKET.exists() and _answers():
            return None
        time.sleep(0.1)
    return f"libvirtd started but {URI} did not answer within 30 s"


def _configure_qemu() -> None:
    text = QEMU_CONF.read_text(encoding="utf-8") if QEMU_CONF.exists() else ""
    present = {
        line.split("=", 1)[0].strip() for line in text.splitlines() if "=" in line and not line.lstrip().startswith("#")
    }
    missing = [f"{k} = {v}" for k, v in QEMU_SETTINGS.items() if k not in present]
    if missing:
        QEMU_CONF.parent.mkdir(parents=True, exist_ok=True)
        tail = "" if not text or text.endswith("\n") else "\n"
        QEMU_CONF.write_text(text + tail + "\n".join(missing) + "\n", encoding="utf-8")


def _answers() -> bool:
    virsh = shutil.which("virsh")
    if virsh is None:
        return False
    result = subprocess.run([virsh, "-q", "-c", URI, "uri"], capture_output=True, text=True, check=False, timeout=60)
    return result.returncode == 0


class Virsh:
    """One ``virsh`` process fed commands on stdin; thread-safe, reused across calls."""

    _names = itertools.count()

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._dir = Path(tempfile.mkdtemp(prefix="pcitopo-virsh-"))
        self._proc = subprocess.Popen(
            ["virsh", "-q", "-c", URI],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        assert self._proc.stderr is not None
        fd = self._proc.stderr.fileno()
        fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) | os.O_NONBLOCK)

    def close(self) -> None:
        if self._proc.poll() is None:
            assert self._proc.stdin is not None
            try:
                self._proc.stdin.close()
                self._proc.wait(timeout=10)
            except (OSError, subprocess.TimeoutExpired):
                self._proc.kill()
        shutil.rmtree(self._dir, ignore_errors=True)

    def define_and_dump(self, xml: str) -> str:
        """Define ``xml`` under a unique name, return ``dumpxml --inactive``, undefine it."""
        root = etree.fromstring(xml.encode("utf-8"))
        name_el = root.find("name")
        original = name_el.text if name_el is not None and name_el.text else "domain"
        unique = f"pcitopo-{os.getpid()}-{next(self._names)}"
        if name_el is None:
            name_el = etree.SubElement(root, "name")
            root.insert(0, name_el)
        name_el.text = unique
        for uuid in root.findall("uuid"):
            root.remove(uuid)
        path = self._dir / f"{unique}.xml"
        path.write_bytes(etree.tostring(root))
        try:
            out, err = self._run([f"define {path}", f"dumpxml --inactive {unique}", f"undefine {unique}"])
        finally:
            path.unlink(missing_ok=True)
        dumped = _section(out, "dumpxml")
        if err.strip() or not dumped.strip():
            raise LibvirtError(_error_text(err) or "virsh printed no domain")
        return dumped.replace(f"<name>{unique}</name>", f"<name>{original}</name>", 1)

    def _run(self, commands: list[str]) -> tuple[str, str]:
        with self._lock:
            proc = self._proc
            assert proc.stdin is not None
            assert proc.stdout is not None
            n = next(self._names)
            # virsh echoes each command line; quoting makes the echoed command
            # differ from the echo's output, which is all we wait for.
            marker = f"@@pcitopo-{n}@@".encode()
            proc.stdin.write(("\n".join([*commands, f'echo "@@pcitopo-""{n}@@"']) + "\n").encode("utf-8"))
            proc.stdin.flush()
            data = b""
            fd = proc.stdout.fileno()
            while marker not in data:
                chunk = os.read(fd, 65536)
                if not chunk:
                    raise LibvirtError(f"virsh exited (status {proc.poll()}): {self._drain_err()}")
                data += chunk
            out = data[: data.index(marker)]
            return out.decode("utf-8"), self._drain_err()

    def _drain_err(self) -> str:
        assert self._proc.stderr is not None
        data = b""
        while True:
            try:
                chunk = os.read(self._proc.stderr.fileno(), 65536)
            except BlockingIOError:
                break
            if not chunk:
                break
            data += chunk
        return data.decode("utf-8", "replace")


def _section(out: str, command: str) -> str:
    """The output of the command ``command`` in an interactive virsh transcript."""
    lines = out.splitlines(keepends=True)
    result: list[str] = []
    inside = False
    for line in lines:
        if line.startswith("virsh # "):
            inside = line[len("virsh # ") :].startswith(command)
            continue
        if inside:
            result.append(line)
    return "".join(result).rstrip("\n") + "\n"


def _error_text(err: str) -> str:
    lines = [ln.removeprefix("error: ").strip() for ln in err.splitlines() if ln.strip()]
    noise = ("Failed to define domain from", "failed to get domain")
    lines = [ln for ln in lines if not any(n in ln for n in noise)]
    return " ".join(lines)


_shared: Virsh | None = None


def _virsh() -> Virsh:
    global _shared
    with _lock:
        if _shared is None:
            _shared = Virsh()
            atexit.register(_shared.close)
        return _shared


def define_and_dump(xml: str) -> str:
    """libvirt's view of a domain: ``virsh define`` then ``dumpxml --inactive``, then ``undefine``.

    Raises :class:`LibvirtError` with virsh's message when libvirt refuses the domain.
    Call :func:`ensure_libvirtd` first.
    """
    return _virsh().define_and_dump(xml)


def define_and_dump_many(xmls: list[str]) -> list[str | LibvirtError]:
    """:func:`define_and_dump` over many domains; a refused domain gives its :class:`LibvirtError`."""
    results: list[str | LibvirtError] = []
    for xml in xmls:
        try:
            results.append(define_and_dump(xml))
        except LibvirtError as exc:
            results.append(exc)
    return results


VIRTLOGD_SOCKET = Path("/run/libvirt/virtlogd-sock")


def _virtlogd_answers() -> bool:
    """Something accepts connections on virtlogd's socket (a socket file left by a dead virtlogd refuses them)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        try:
            probe.connect(str(VIRTLOGD_SOCKET))
        except OSError:
            return False
    return True


def _ensure_virtlogd() -> None:
    """virtlogd answering: libvirt's QEMU driver logs a running domain's console through it.

    A dead virtlogd leaves its socket file behind, and libvirt then fails "Failed to connect socket to
    '/run/libvirt/virtlogd-sock': Connection refused"; so the socket is probed, not looked for."""
    if _virtlogd_answers():
        return
    for stale in (VIRTLOGD_SOCKET, VIRTLOGD_SOCKET.with_name("virtlogd-admin-sock")):
        stale.unlink(missing_ok=True)
    daemon = shutil.which("virtlogd") or "/usr/sbin/virtlogd"
    started = subprocess.run([daemon, "-d"], capture_output=True, text=True, check=False)
    if started.returncode != 0:
        raise LibvirtError(f"virtlogd -d failed: {started.stderr.strip()[-500:]}")
    deadline = time.monotonic() + 10
    while not _virtlogd_answers():
        if time.monotonic() > deadline:
            raise LibvirtError("virtlogd started but its socket did not answer within 10 s")
        time.sleep(0.05)


def attach_live(domain_xml: str, device_xml: str) -> str:
    """libvirt's answer to hot-plugging a device: ``virsh create`` (a transient domain, QEMU started), then
    ``attach-device --live``, then ``destroy``. Returns the running domain's XML after the attach; raises
    :class:`LibvirtError` with virsh's message when libvirt refuses. Call :func:`ensure_libvirtd` first."""
    _ensure_virtlogd()
    name = etree.fromstring(domain_xml.encode()).findtext("name")
    assert name
    with tempfile.TemporaryDirectory() as tmp:
        domain_file, device_file = Path(tmp, "domain.xml"), Path(tmp, "device.xml")
        domain_file.write_text(domain_xml, encoding="utf-8")
        device_file.write_text(device_xml, encoding="utf-8")

        def virsh(*args: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(["virsh", "-c", URI, *args], capture_output=True, text=True, check=False, timeout=120)

        created = virsh("create", str(domain_file))
        if created.returncode != 0:
            raise LibvirtError(_error_text(created.stderr))
        try:
            attached = virsh("attach-device", name, str(device_file), "--live")
            if attached.returncode != 0:
                raise LibvirtError(_error_text(attached.stderr))
            return virsh("dumpxml", name).stdout
        finally:
            virsh("destroy", name)
