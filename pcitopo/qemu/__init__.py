"""QEMU: a topology as a command line, machine descriptions probed from a binary, verification in a real QEMU.

:func:`qemu_args` and :func:`machine_args` export a complete topology,
:func:`probe` and :func:`machine_to_toml` describe a machine from a QEMU
binary, :func:`verify` starts QEMU with a topology and checks that every
device is where it was planned. Each name is imported from its module on
first use (:mod:`pcitopo._lazy`).

>>> from pcitopo.qemu import qemu_args
>>> from pcitopo.topology import Topology
>>> qemu_args(Topology.default("q35"))
[]
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pcitopo._lazy import lazy

if TYPE_CHECKING:
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

_QMP, _ARGS, _PROBE, _VERIFY = "pcitopo.qemu._qmp", "pcitopo.qemu.args", "pcitopo.qemu.probe", "pcitopo.qemu.verify"
__getattr__ = lazy(
    __name__,
    {
        "Check": _VERIFY,
        "DeviceSpec": _ARGS,
        "ProbeFacts": _PROBE,
        "QemuError": _QMP,
        "QmpCommandError": _QMP,
        "VerificationFailed": _VERIFY,
        "VerifyReport": _VERIFY,
        "describe": _PROBE,
        "device_specs": _ARGS,
        "machine_args": _ARGS,
        "machine_to_toml": _PROBE,
        "probe": _PROBE,
        "qemu_args": _ARGS,
        "verify": _VERIFY,
    },
)


def __dir__() -> list[str]:
    return __all__
