"""Integration tests start real QEMU (and libvirt); every test here is marked ``integration``."""

from __future__ import annotations

from tests.support.libvirt import libvirtd
from tests.support.qemu import qemu

__all__ = ["libvirtd", "qemu"]
