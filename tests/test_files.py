"""Output files: written through a temporary file beside the target, with the target's mode, then renamed."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from pcitopo._files import write_atomic, write_temporary


@pytest.fixture
def umask_022() -> Iterator[None]:
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


@pytest.mark.usefixtures("umask_022")
def test_a_new_file_gets_what_the_umask_allows(tmp_path: Path) -> None:
    """A new output is 0644 under umask 022, as a file the shell's redirection makes would be."""
    write_atomic(tmp_path / "out.xml", b"<domain/>")
    assert (tmp_path / "out.xml").stat().st_mode & 0o7777 == 0o644
    assert [p.name for p in tmp_path.iterdir()] == ["out.xml"]


@pytest.mark.usefixtures("umask_022")
def test_an_existing_file_keeps_its_mode(tmp_path: Path) -> None:
    """Replacing a 0640 file leaves a 0640 file with the new content."""
    target = tmp_path / "out.xml"
    target.write_bytes(b"old")
    target.chmod(0o640)
    write_atomic(target, b"new")
    assert (target.read_bytes(), target.stat().st_mode & 0o7777) == (b"new", 0o640)


@pytest.mark.usefixtures("umask_022")
def test_the_temporary_file_is_hidden_beside_the_target_which_stays_untouched(tmp_path: Path) -> None:
    """``write_temporary`` leaves the target as it was and names its file ``.NAME.PID.N.tmp`` with the final mode."""
    target = tmp_path / "out.xml"
    target.write_bytes(b"old")
    first = write_temporary(target, b"new", fsync=False)
    second = write_temporary(target, b"newer", fsync=True)
    assert target.read_bytes() == b"old"
    assert (first.name, second.name) == (f".out.xml.{os.getpid()}.0.tmp", f".out.xml.{os.getpid()}.1.tmp")
    assert (second.read_bytes(), second.stat().st_mode & 0o7777) == (b"newer", 0o644)


def test_a_failed_rename_leaves_no_temporary_file(tmp_path: Path) -> None:
    """When the target cannot be replaced (it is a directory), the error comes out and nothing is left behind."""
    (tmp_path / "out.xml").mkdir()
    with pytest.raises(IsADirectoryError):
        write_atomic(tmp_path / "out.xml", b"<domain/>")
    assert [p.name for p in tmp_path.iterdir()] == ["out.xml"]
