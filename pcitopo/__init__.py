"""pcitopo: decide where every PCI/PCIe device of a virtual machine goes."""

from __future__ import annotations

__version__ = "0.1.0"
__all__: list[str] = ["__version__"]
