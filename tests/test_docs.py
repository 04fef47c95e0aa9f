"""The documentation builds with warnings as errors, and its examples run.

Both builds start ``sphinx-build`` the way CI and a person would; they are
slow (tens of seconds), so they carry the ``slow`` marker.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.packages import ensure_packages

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"

pytestmark = pytest.mark.slow


def _build(builder: str, out: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run(
        [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-E", "-b", builder, str(DOCS), str(out)],
        capture_output=True,
        text=True,
        env=env,
        check=False,
        timeout=900,
    )


def test_html_builds_without_warnings(tmp_path: Path) -> None:
    """``sphinx-build -W -b html`` succeeds: no broken reference, directive or docstring, every picture drawn."""
    reason = ensure_packages(["graphviz"])
    if reason is not None:
        if os.environ.get("CI"):
            pytest.fail(f"CI must build the docs with their pictures, but: {reason}")
        pytest.skip(reason)
    assert shutil.which("dot"), "Graphviz's dot draws the topology pictures"
    result = _build("html", tmp_path / "html")
    assert result.returncode == 0, result.stderr + result.stdout
    page = (tmp_path / "html" / "quickstart.html").read_text(encoding="utf-8")
    assert page.count("graphviz") >= 2, "the two topology pictures of the quickstart are missing"


def test_doctest_examples_pass(tmp_path: Path) -> None:
    """``sphinx-build -W -b doctest`` runs every example of the pages, and none fails."""
    result = _build("doctest", tmp_path / "doctest")
    report = (tmp_path / "doctest" / "output.txt").read_text(encoding="utf-8")
    assert result.returncode == 0, report + result.stderr
    assert "0 failures in tests" in report
