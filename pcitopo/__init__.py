"""pcitopo: decide where every PCI/PCIe device of a virtual machine goes.

The curated API; everything else lives in its module (:mod:`pcitopo.legality`,
:mod:`pcitopo.policy`, :mod:`pcitopo.solver`, :mod:`pcitopo.formats`,
:mod:`pcitopo.qemu`, :mod:`pcitopo.strategies`).

>>> import pcitopo
>>> request = pcitopo.Topology.build("q35", devices=[pcitopo.Device("nic0", "virtio-net")])
>>> plan = pcitopo.solve(request, "hotplug")
>>> str(plan.assigned["nic0"]), pcitopo.validate(plan.topology)
('0000:01:00.0', ())

Each name is imported from its module when first used (PEP 562), so
``import pcitopo`` costs little and a command that does not solve never
imports the solver.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pcitopo._lazy import lazy

if TYPE_CHECKING:
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
    from pcitopo.policy.evaluate import Evaluation, evaluate
    from pcitopo.policy.policy import Override, Policy
    from pcitopo.solver.plan import Plan, SoftResult, Status  # SoftResult is pcitopo.policy.evaluate's
    from pcitopo.solver.solve import solve
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

_ERRORS = "pcitopo.errors"
# where each name of __all__ lives, imported on first access
__getattr__ = lazy(
    __name__,
    {
        "Catalog": "pcitopo.legality.catalog",
        "Controller": "pcitopo.devices",
        "Device": "pcitopo.devices",
        "DuplicateId": _ERRORS,
        "Evaluation": "pcitopo.policy.evaluate",
        "HotplugNeed": "pcitopo.devices",
        "InternalError": _ERRORS,
        "InvalidAddress": _ERRORS,
        "InvalidDescription": _ERRORS,
        "InvalidDomainXML": _ERRORS,
        "InvalidInput": _ERRORS,
        "InvalidPolicy": _ERRORS,
        "InvalidTopology": _ERRORS,
        "Machine": "pcitopo.legality.machine",
        "Needs": "pcitopo.devices",
        "Override": "pcitopo.policy.policy",
        "PciAddress": "pcitopo.address",
        "PcitopoError": _ERRORS,
        "Plan": "pcitopo.solver.plan",
        "Policy": "pcitopo.policy.policy",
        "SoftResult": "pcitopo.policy.evaluate",
        "Status": "pcitopo.solver.plan",
        "Topology": "pcitopo.topology",
        "UnknownName": _ERRORS,
        "Unsatisfiable": _ERRORS,
        "Violation": "pcitopo.violation",
        "check": "pcitopo.legality.rules",
        "evaluate": "pcitopo.policy.evaluate",
        "machines": "pcitopo.legality.machine",
        "solve": "pcitopo.solver.solve",
        "validate": "pcitopo.legality.rules",
    },
)


def __dir__() -> list[str]:
    return __all__
