"""Legality: what QEMU and libvirt allow, held as data.

``catalog`` reads controller models and device kinds, ``machine`` reads machine
descriptions, ``rules`` checks a topology against both.
"""

from __future__ import annotations

__all__: list[str] = []
