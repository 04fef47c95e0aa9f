"""QEMU: a topology as a command line, machine descriptions probed from a binary, verification in a real QEMU.

:func:`qemu_args` and :func:`machine_args` export a complete topology,
:func:`probe` and :func:`machine_to_toml` describe a machine from a QEMU
binary, :func:`verify` starts QEMU with a topology and checks that every
device is where it was planned.

>>> from pcitopo.topology import Topology
>>> qemu_args(Topology.default("q35"))
[]
"""

from __future__ import annotations

from pcitopo.qemu._qmp import QemuError, QmpCommandError
from pcitopo.qemu.args import DeviceSpec, device_specs, machine_args, qemu_args
from pcitopo.qemu.probe import ProbeFacts, describe, machine_to_toml, probe
from pcitopo.qemu.verify import Check, VerificationFailed, VerifyReport, verify

__all__ = [
    "Check",
    "DeviceSpec",
    "ProbeFacts",
    "QemuError",
    "QmpCommandError",
    "VerificationFailed",
    "VerifyReport",
    "describe",
    "device_specs",
    "machine_args",
    "machine_to_toml",
    "probe",
    "qemu_args",
    "verify",
]


def __dir__() -> list[str]:
    return __all__
