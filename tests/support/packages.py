"""Install Debian packages the integration tests need, when they are missing.

Tests run as root on Debian; CI must run the QEMU and libvirt tests, not skip
them. :func:`ensure_packages` installs what is missing (``apt-get update``
first) and returns ``None``, or returns the reason it could not (not root, no
apt-get), which a test turns into a skip with that reason.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import threading

__all__ = ["ensure_packages", "missing_packages", "require_packages"]

_lock = threading.Lock()
_updated = False


def missing_packages(packages: list[str]) -> list[str]:
    """The packages of ``packages`` that dpkg does not report as installed."""
    if shutil.which("dpkg-query") is None:
        return list(packages)
    missing = []
    for name in packages:
        result = subprocess.run(["dpkg-query", "-W", "-f=${Status}", name], capture_output=True, text=True, check=False)
        if "install ok installed" not in result.stdout:
            missing.append(name)
    return missing


def ensure_packages(packages: list[str]) -> str | None:
    """Install the missing ones; ``None`` on success, else why it was impossible."""
    global _updated
    with _lock:
        missing = missing_packages(packages)
        if not missing:
            return None
        if shutil.which("apt-get") is None:
            return f"cannot install {', '.join(missing)}: no apt-get on this machine"
        if os.geteuid() != 0:
            return f"cannot install {', '.join(missing)}: not root"
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        if not _updated:
            update = subprocess.run(["apt-get", "update"], capture_output=True, text=True, env=env, check=False)
            if update.returncode != 0:
                return f"apt-get update failed: {update.stderr.strip()[-500:]}"
            _updated = True
        install = subprocess.run(
            ["apt-get", "install", "-y", "--no-install-recommends", *missing],
            capture_output=True,
            text=True,
            env=env,
            check=False,
        )
        if install.returncode != 0:
            return f"apt-get install {' '.join(missing)} failed: {install.stderr.strip()[-500:]}"
        still = missing_packages(missing)
        if still:
            return f"installed but still missing: {', '.join(still)}"
        return None


def require_packages(packages: list[str], what: str) -> None:
    """Install ``packages`` for the ``what`` tests when missing; skip with the reason when impossible (fail in CI)."""
    import pytest

    reason = ensure_packages(packages)
    if reason is not None:
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the {what} tests, but: {reason}")
        pytest.skip(reason)
