"""Run Debian's ``virtiofsd`` on a socket, the vhost-user backend QEMU's ``vhost-user-fs-pci`` needs to realize.

``vhost-user-fs-pci`` realizes only once a vhost-user backend on its chardev has
answered the handshake (``GET_FEATURES``, ``GET_PROTOCOL_FEATURES``, ...). Debian 12
ships QEMU 7.2's own C ``virtiofsd`` in ``qemu-system-common`` at
``/usr/lib/qemu/virtiofsd``; :func:`running_virtiofsd` starts it sharing an empty
directory and stops it afterwards. It serves one connection and exits.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["find_virtiofsd", "running_virtiofsd"]

_PLACES = ("/usr/lib/qemu/virtiofsd", "/usr/libexec/virtiofsd")


def find_virtiofsd() -> str | None:
    """The ``virtiofsd`` binary (on ``PATH`` or where Debian puts it), or ``None``."""
    found = shutil.which("virtiofsd")
    if found is not None:
        return found
    return next((p for p in _PLACES if Path(p).is_file()), None)


@contextmanager
def running_virtiofsd(directory: Path, binary: str | None = None) -> Iterator[Path]:
    """A running ``virtiofsd`` sharing ``directory/share``; yields its socket (``directory/virtiofsd.sock``)."""
    binary = binary or find_virtiofsd()
    if binary is None:
        raise FileNotFoundError("virtiofsd not found (apt-get install qemu-system-common)")
    share = directory / "share"
    share.mkdir(exist_ok=True)
    sock = directory / "virtiofsd.sock"
    sock.unlink(missing_ok=True)
    args = [binary, f"--socket-path={sock}", "-o", f"source={share}", "-o", "cache=none"]
    process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        for _ in range(100):
            if sock.exists() or process.poll() is not None:
                break
            time.sleep(0.05)
        if not sock.exists():
            _, err = process.communicate(timeout=5) if process.poll() is not None else ("", "")
            raise RuntimeError(f"virtiofsd did not create {sock}: {err.strip()}")
        yield sock
    finally:
        if process.poll() is None:
            process.terminate()
        process.communicate(timeout=10)
