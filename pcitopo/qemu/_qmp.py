"""A small QMP client that owns the QEMU process it talks to.

:class:`Qemu` starts ``BINARY ARGS... -qmp unix:SOCK,server=on,wait=off`` in a
private temporary directory, reads the greeting, negotiates
``qmp_capabilities`` and then runs commands one at a time, skipping the
asynchronous events QEMU sends in between. Leaving the ``with`` block always
kills the process and removes the directory, whatever happened inside.

If QEMU exits before it answers (a bad ``-device``, say), :class:`QemuError`
carries the line QEMU printed on stderr:

>>> import shutil
>>> binary = shutil.which("qemu-system-x86_64")
>>> if binary:  # doctest: +SKIP
...     with Qemu(binary, ["-machine", "q35", "-S", "-nodefaults", "-display", "none"]) as vm:
...         vm.execute("query-target")["arch"]
'x86_64'
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

from pcitopo.errors import PcitopoError

__all__ = ["Qemu", "QemuError", "QmpCommandError", "find_binary"]


def __dir__() -> list[str]:
    return __all__


class QemuError(PcitopoError, RuntimeError):
    """QEMU could not be started, exited early, or stopped answering.

    ``reason`` says what went wrong, ``stderr`` is what QEMU printed (the last
    line is usually the message, like ``-device ...: Bus 10 is already in
    use``), ``command`` the command line.
    """

    def __init__(self, reason: str, *, stderr: str = "", command: Sequence[str] = ()) -> None:
        self.reason = reason
        self.stderr = stderr
        self.command = tuple(command)
        line = self.message_line
        super().__init__(f"{reason}: {line}" if line else reason)

    @property
    def message_line(self) -> str:
        """The last error line QEMU printed (``qemu-system-...: message``, not a warning or a hint), or ``""``."""
        lines = [s.strip() for s in self.stderr.splitlines() if s.strip()]
        errors = [s for s in lines if ": warning: " not in s and not s.startswith("warning: ")]
        prefixed = [s for s in errors if s.startswith("qemu-")]
        return (prefixed or errors or lines or [""])[-1]

    @property
    def qemu_message(self) -> str:
        """The message alone, without QEMU's ``binary: -device opts:`` prefix.

        >>> QemuError("x", stderr="qemu-system-x86_64: -device pxb-pcie,id=a: Bus 10 is already in use\\n").qemu_message
        'Bus 10 is already in use'
        """
        line = self.message_line
        head, sep, rest = line.partition(": ")
        if sep and head.startswith("qemu-system-"):
            line = rest
            if line.startswith("-") and ": " in line:
                line = line.split(": ", 1)[1]
        return line

    def __reduce__(self) -> tuple[object, ...]:
        return (_rebuild, (type(self), self.reason, self.stderr, self.command))


def _rebuild(cls: type[QemuError], reason: str, stderr: str, command: tuple[str, ...]) -> QemuError:
    return cls(reason, stderr=stderr, command=command)


class QmpCommandError(PcitopoError, RuntimeError):
    """A QMP command answered with an error: ``{"error": {"class": ..., "desc": ...}}``."""

    def __init__(self, command: str, error_class: str, desc: str) -> None:
        self.command = command
        self.error_class = error_class
        self.desc = desc
        super().__init__(f"QMP {command} failed: {desc} ({error_class})")

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.command, self.error_class, self.desc))


class Qemu:
    """A running QEMU with a QMP connection; use it as a context manager.

    ``args`` are everything but the binary and ``-qmp``. ``timeout`` bounds
    the start-up and each command, in seconds.
    """

    def __init__(self, binary: str, args: Sequence[str], *, timeout: float = 30.0) -> None:
        self.binary = binary
        self.args = tuple(args)
        self.timeout = timeout
        self.dir: Path | None = None
        self.version: str = ""
        self._process: subprocess.Popen[bytes] | None = None
        self._socket: socket.socket | None = None
        self._file: Any = None
        self._next_id = 0

    @property
    def command(self) -> tuple[str, ...]:
        """The full command line (with the QMP socket once started)."""
        sock = str(self.dir / "qmp.sock") if self.dir is not None else "SOCK"
        return (self.binary, *self.args, "-qmp", f"unix:{sock},server=on,wait=off")

    def __enter__(self) -> Qemu:
        try:
            self._start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()

    def _start(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="pcitopo-qemu-"))
        sock_path = self.dir / "qmp.sock"
        stderr = (self.dir / "stderr").open("wb")
        try:
            self._process = subprocess.Popen(
                self.command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=stderr, cwd=self.dir
            )
        except OSError as exc:
            raise QemuError(f"cannot run {self.binary}: {exc.strerror}", command=self.command) from None
        finally:
            stderr.close()
        deadline = time.monotonic() + self.timeout
        while not sock_path.exists():
            if self._process.poll() is not None:
                raise self._exited("QEMU exited before opening its QMP socket")
            if time.monotonic() > deadline:
                raise QemuError(f"QEMU did not open its QMP socket within {self.timeout:g}s", command=self.command)
            time.sleep(0.02)
        self._socket = self._connect(sock_path, deadline)
        try:
            self._file = self._socket.makefile("rw", encoding="utf-8", newline="\n")
            greeting = self._read()
        except (OSError, QemuError):
            raise self._exited("QEMU closed the QMP connection during start-up") from None
        version = greeting.get("QMP", {}).get("version", {}).get("qemu", {})
        self.version = f"{version.get('major', '?')}.{version.get('minor', '?')}.{version.get('micro', '?')}"
        self.execute("qmp_capabilities")

    def _connect(self, sock_path: Path, deadline: float) -> socket.socket:
        """Connect to the QMP socket, waiting while QEMU has bound it but not yet listens.

        QEMU creates the socket file when it binds, a moment before it calls
        listen(); a connect in between is refused. On a loaded machine that
        moment is long enough to hit, so a refusal is retried until the deadline.
        """
        while True:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(self.timeout)
            try:
                sock.connect(str(sock_path))
                return sock
            except ConnectionRefusedError:
                sock.close()
                if self._process is not None and self._process.poll() is not None:
                    raise self._exited("QEMU exited before accepting a QMP connection") from None
                if time.monotonic() > deadline:
                    raise QemuError(
                        f"QEMU did not accept a QMP connection within {self.timeout:g}s", command=self.command
                    ) from None
                time.sleep(0.02)
            except OSError:
                sock.close()
                raise self._exited("QEMU closed the QMP connection during start-up") from None

    def _exited(self, reason: str) -> QemuError:
        text = ""
        if self._process is None:
            return QemuError(reason, command=self.command)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self._process.wait(timeout=self.timeout)
        if self.dir is not None and (self.dir / "stderr").exists():
            text = (self.dir / "stderr").read_text(errors="replace")
        rc = self._process.returncode
        return QemuError(
            f"{reason} (exit status {rc})" if rc is not None else reason, stderr=text, command=self.command
        )

    def _read(self) -> dict[str, Any]:
        while True:
            try:
                line = self._file.readline()
            except TimeoutError:
                raise QemuError(f"QEMU did not answer within {self.timeout:g}s", command=self.command) from None
            if not line:
                raise QemuError("QEMU closed the QMP connection", command=self.command)
            message: dict[str, Any] = json.loads(line)
            if "event" in message:
                continue
            return message

    def execute(self, command: str, **arguments: Any) -> Any:
        """Run one QMP command and return its ``return`` value.

        Raises :class:`QmpCommandError` when QEMU answers with an error, and
        :class:`QemuError` (with QEMU's stderr) when QEMU went away.
        """
        if self._file is None:
            raise QemuError("QEMU is not running", command=self.command)
        self._next_id += 1
        ident = f"pcitopo-{self._next_id}"
        request: dict[str, Any] = {"execute": command, "id": ident}
        if arguments:
            request["arguments"] = arguments
        try:
            self._file.write(json.dumps(request) + "\n")
            self._file.flush()
            while True:
                reply = self._read()
                if reply.get("id", ident) == ident:
                    break
        except (OSError, QemuError) as exc:
            if self._process is not None:
                # A refused -device makes QEMU exit right after the greeting: give it time to finish.
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self._process.wait(timeout=min(5.0, self.timeout))
            if self._process is not None and self._process.poll() is not None:
                raise self._exited(f"QEMU exited during {command}") from None
            if isinstance(exc, QemuError):
                raise
            raise QemuError(f"QMP connection failed during {command}: {exc}", command=self.command) from None
        if "error" in reply:
            error = reply["error"]
            raise QmpCommandError(command, str(error.get("class", "")), str(error.get("desc", "")))
        return reply.get("return")

    def close(self) -> None:
        """Kill QEMU, wait for it, and remove the temporary directory (idempotent)."""
        if self._file is not None:
            with contextlib.suppress(OSError):
                self._file.close()
            self._file = None
        if self._socket is not None:
            with contextlib.suppress(OSError):
                self._socket.close()
            self._socket = None
        if self._process is not None:
            if self._process.poll() is None:
                self._process.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._process.wait(timeout=10)
            self._process = None
        if self.dir is not None:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None

    @property
    def pid(self) -> int | None:
        """The QEMU process id while it runs."""
        return self._process.pid if self._process is not None else None

    def alive(self) -> bool:
        return self._process is not None and self._process.poll() is None


def find_binary(name: str) -> str | None:
    """The full path of a QEMU binary on ``PATH`` (or ``name`` itself if it is a path to a file)."""
    if os.sep in name:
        return name if os.path.isfile(name) else None
    return shutil.which(name)
