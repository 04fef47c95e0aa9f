"""pcitopo: decide where every PCI/PCIe device of a virtual machine goes.

The curated API; everything else lives in its module (:mod:`pcitopo.legality`,
:mod:`pcitopo.policy`, :mod:`pcitopo.solver`, :mod:`pcitopo.formats`,
:mod:`pcitopo.qemu`, :mod:`pcitopo.strategies`).

>>> import pcitopo
>>> request = pcitopo.Topology.build("q35", devices=[pcitopo.Device("nic0", "virtio-net")])
>>> plan = pcitopo.solve(request, "hotplug")
>>> str(plan.assigned["nic0"]), pcitopo.validate(plan.topology)
('0000:01:00.0', ())
"""

from __future__ import annotations

from pcitopo.address import PciAddress
from pcitopo.devices import Controller, Device, HotplugNeed, Needs
from pcitopo.errors import (
    DuplicateId,
    InternalError,
    InvalidAddress,
    InvalidDescription,
    InvalidDomainXML,
    InvalidInput,
    InvalidPolicy,
    InvalidTopology,
    PcitopoError,
    UnknownName,
    Unsatisfiable,
)
from pcitopo.legality.catalog import Catalog
from pcitopo.legality.machine import Machine, machines
from pcitopo.legality.rules import check, validate
from pcitopo.policy import Evaluation, Override, Policy, evaluate
from pcitopo.solver import Plan, SoftResult, Status, solve
from pcitopo.topology import Topology
from pcitopo.violation import Violation

__version__ = "0.1.0"

__all__ = [
    "Catalog",
    "Controller",
    "Device",
    "DuplicateId",
    "Evaluation",
    "HotplugNeed",
    "InternalError",
    "InvalidAddress",
    "InvalidDescription",
    "InvalidDomainXML",
    "InvalidInput",
    "InvalidPolicy",
    "InvalidTopology",
    "Machine",
    "Needs",
    "Override",
    "PciAddress",
    "PcitopoError",
    "Plan",
    "Policy",
    "SoftResult",
    "Status",
    "Topology",
    "UnknownName",
    "Unsatisfiable",
    "Violation",
    "__version__",
    "check",
    "evaluate",
    "machines",
    "solve",
    "validate",
]


def __dir__() -> list[str]:
    return __all__
