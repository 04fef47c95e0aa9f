"""Writing output files safely: a temporary file beside the target, with the target's mode, then a rename.

The single-file commands (:func:`write_atomic`) and fleet mode (which
renames a batch at once, :func:`pcitopo.fleet.commit`) share one way of
making the temporary file, so both leave ``.NAME.PID.N.tmp`` names (which an
interrupted fleet run removes) and give the result the same mode.

>>> import tempfile, pathlib
>>> folder = pathlib.Path(tempfile.mkdtemp())
>>> write_atomic(folder / "out.xml", b"<domain/>")
>>> (folder / "out.xml").read_bytes(), [p.name for p in folder.iterdir()]
(b'<domain/>', ['out.xml'])
"""

from __future__ import annotations

import contextlib
import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pathlib import Path

__all__: list[str] = []

# Plain os.path and str names here, not pathlib: a short ``pcitopo assign`` writes one file, and
# importing pathlib (with urllib.parse and ipaddress) costs it more than the writing does.


def _create(directory: str, name: str) -> tuple[int, str]:
    """A new file ``.NAME.PID.N.tmp`` in ``directory``, opened for writing, mode 0600 (like ``mkstemp``).

    Made here rather than with :mod:`tempfile`, whose import (``random``,
    ``shutil``) costs more than a short command's whole write.
    """
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
    for n in range(10_000):
        tmp = os.path.join(directory, f".{name}.{os.getpid()}.{n}.tmp")
        try:
            return os.open(tmp, flags, 0o600), tmp
        except FileExistsError:
            continue
    raise FileExistsError(f"no free temporary file name for {name!r} in {directory}")


def _mode(target: str) -> int:
    """The mode the output gets: the target's when it exists, else what the umask allows a new file."""
    try:
        return os.stat(target).st_mode & 0o7777
    except FileNotFoundError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


def _unlink(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def _temporary(path: str | Path, data: bytes, *, fsync: bool) -> str:
    """:func:`write_temporary` with the temporary file's name as a string."""
    target = os.fspath(path)
    directory, name = os.path.split(target.rstrip(os.sep) or target)  # as Path: 'a/b/' is 'a/b'
    fd, tmp = _create(directory or ".", name)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            if fsync:
                handle.flush()
                os.fsync(handle.fileno())
        os.chmod(tmp, _mode(target))
    except BaseException:
        _unlink(tmp)
        raise
    return tmp


def write_temporary(path: str | Path, data: bytes, *, fsync: bool) -> Path:
    """Write ``data`` to a new hidden temporary file beside ``path``, with the mode ``path`` should get; its name.

    ``path`` itself is untouched; ``fsync`` makes the content durable before
    returning (else the caller flushes a batch at once).
    """
    from pathlib import Path

    return Path(_temporary(path, data, fsync=fsync))


def write_atomic(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` durably, through a temporary file in the same directory and ``os.replace``."""
    tmp = _temporary(path, data, fsync=True)
    try:
        os.replace(tmp, path)
    except BaseException:
        _unlink(tmp)
        raise
