"""The QMP client's start-up: connecting to a socket QEMU has bound but not yet listens on."""

from __future__ import annotations

import socket
import tempfile
import threading
import time
from pathlib import Path

import pytest

from pcitopo.qemu._qmp import Qemu, QemuError


def _bound_socket(path: Path) -> socket.socket:
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))  # the file exists now, but a connect is refused until listen()
    return server


def test_connect_waits_for_listen_after_bind() -> None:
    """A socket bound now and listening 0.2 s later is connected to, not reported as QEMU closing it."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "qmp.sock"
        server = _bound_socket(path)
        timer = threading.Timer(0.2, server.listen)
        timer.start()
        try:
            qemu = Qemu("qemu-system-x86_64", [], timeout=5.0)
            sock = qemu._connect(path, time.monotonic() + 5.0)
            sock.close()
        finally:
            timer.join()
            server.close()


def test_connect_gives_up_at_the_deadline() -> None:
    """A socket that never listens is reported once the deadline passes, with the time waited."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "qmp.sock"
        server = _bound_socket(path)
        try:
            qemu = Qemu("qemu-system-x86_64", [], timeout=0.3)
            with pytest.raises(QemuError, match=r"did not accept a QMP connection within 0\.3s"):
                qemu._connect(path, time.monotonic() + 0.3)
        finally:
            server.close()
