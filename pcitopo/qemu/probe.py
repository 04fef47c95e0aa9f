"""Machine descriptions read from a QEMU binary.

:func:`probe` starts ``BINARY -machine TYPE -nodefaults -S -display none``
and asks it over QMP for what a machine description holds: the root bus
(name, PCI or PCI Express, whether it takes hot-plugged devices), the PCI
devices the machine creates itself (address and QEMU type), the controller
types the binary offers, the architecture and the machine-type alias. What
QEMU cannot say (IO-window budgets, preferred addresses, libvirt's names for
built-ins) comes from an optional ``base`` description.

:func:`machine_to_toml` writes a description in the format of the shipped
files, so ``Machine.from_data`` reads back what was written:

>>> import tomllib
>>> from pcitopo.legality.machine import Machine
>>> q35 = Machine.named("q35")
>>> text = machine_to_toml(q35)
>>> print(text.splitlines()[1])
name = "q35"
>>> Machine.from_data("probe", tomllib.loads(text)) == q35
True

The facts a probe gathered are a value too (:class:`ProbeFacts`), and
:func:`describe` turns them into a :class:`~pcitopo.legality.machine.Machine`
without a QEMU, which is how the rules here are tested.
"""

from __future__ import annotations

import fnmatch
import json
import os
from collections.abc import Iterable, Mapping
from typing import Any

import attrs

from pcitopo.address import PciAddress
from pcitopo.errors import InvalidInput
from pcitopo.legality.catalog import Catalog, Connect
from pcitopo.legality.machine import Builtin, LibvirtDefaults, Machine
from pcitopo.qemu._qmp import Qemu, QemuError, find_binary

__all__ = ["ProbeFacts", "ProbedDevice", "describe", "machine_to_toml", "probe", "probe_facts"]


def __dir__() -> list[str]:
    return __all__


@attrs.frozen
class ProbedDevice:
    """A PCI device the machine created on its root bus."""

    address: PciAddress
    qemu_device: str
    multifunction: bool = False


def _frozen_names(names: Iterable[str]) -> frozenset[str]:
    return frozenset(names)


@attrs.frozen
class ProbeFacts:
    """What one QEMU binary said about one machine type."""

    binary: str
    version: str
    arch: str
    machine_type: str
    """The name it was asked for (``q35``)."""
    resolved: str
    """The versioned machine type it stands for (``pc-q35-7.2``)."""
    alias: str | None
    host_bridge: str
    """The QOM type of the main host bridge (``q35-pcihost``, ``spapr-pci-host-bridge``)."""
    root_bus_name: str
    pcie: bool
    root_hotplug: bool
    builtins: tuple[ProbedDevice, ...]
    device_types: frozenset[str] = attrs.field(converter=_frozen_names, repr=lambda s: f"<{len(s)} device types>")
    """Every non-abstract device type the binary has."""


def probe(
    binary: str,
    machine_type: str,
    *,
    name: str | None = None,
    base: Machine | None = None,
    timeout: float = 30.0,
    catalog: Catalog | None = None,
) -> Machine:
    """Start ``binary`` with ``machine_type`` and describe the machine it creates.

    ``name`` names the description (default: ``base``'s name, else
    ``ARCH-TYPE``); ``base`` supplies what QEMU cannot report. Raises
    :class:`~pcitopo.qemu.QemuError` (with QEMU's message) when the binary
    does not start, for instance for an unknown machine type.
    """
    facts = probe_facts(binary, machine_type, timeout=timeout)
    return describe(facts, name=name, base=base, catalog=catalog)


def probe_facts(binary: str, machine_type: str, *, timeout: float = 30.0) -> ProbeFacts:
    """Start ``binary`` paused with ``machine_type`` and gather :class:`ProbeFacts` over QMP."""
    path = find_binary(binary)
    if path is None:
        raise QemuError(f"no QEMU binary {binary!r} found")
    args = ["-machine", machine_type, "-nodefaults", "-S", "-display", "none", "-accel", "tcg"]
    with Qemu(path, args, timeout=timeout) as vm:
        return _gather(vm, path, machine_type)


def _names(reply: Iterable[Mapping[str, Any]]) -> set[str]:
    return {str(t["name"]) for t in reply}


def _gather(vm: Qemu, binary: str, machine_type: str) -> ProbeFacts:
    arch = str(vm.execute("query-target")["arch"])
    resolved, alias = machine_type, None
    for m in vm.execute("query-machines"):
        if machine_type in (m.get("name"), m.get("alias")):
            resolved, alias = str(m["name"]), m.get("alias")
            break
    host_types = _names(vm.execute("qom-list-types", implements="pci-host-bridge", abstract=False))
    pci_buses = _names(vm.execute("qom-list-types", implements="PCI", abstract=True))
    pcie_buses = _names(vm.execute("qom-list-types", implements="PCIE", abstract=True))
    devices = _names(vm.execute("qom-list-types", implements="device", abstract=False))
    host: tuple[str, str] | None = None
    for container in ("/machine", "/machine/unattached"):
        for child in vm.execute("qom-list", path=container):
            kind = _child_type(child)
            if kind in host_types:
                host = (f"{container}/{child['name']}", kind)
                break
        if host is not None:
            break
    if host is None:
        raise QemuError(f"machine {machine_type!r} of {binary} has no PCI host bridge")
    host_path, host_type = host
    bus: tuple[str, str] | None = None
    for child in vm.execute("qom-list", path=host_path):
        kind = _child_type(child)
        if kind in pci_buses:
            bus = (str(child["name"]), kind)
            break
    if bus is None:
        raise QemuError(f"the host bridge {host_type} of {machine_type!r} has no PCI bus")
    bus_name, bus_type = bus
    bus_path = f"{host_path}/{bus_name}"
    handler = vm.execute("qom-get", path=bus_path, property="hotplug-handler")
    builtins: list[ProbedDevice] = []
    for prop in vm.execute("qom-list", path=bus_path):
        if not (str(prop["name"]).startswith("child[") and str(prop["type"]).startswith("link<")):
            continue
        device = vm.execute("qom-get", path=bus_path, property=prop["name"])
        kind = str(prop["type"])[len("link<") : -1]
        devfn = int(vm.execute("qom-get", path=device, property="addr"))
        multifunction = bool(vm.execute("qom-get", path=device, property="multifunction"))
        builtins.append(ProbedDevice(PciAddress.from_devfn(devfn), kind, multifunction))
    return ProbeFacts(
        binary=binary,
        version=vm.version,
        arch=arch,
        machine_type=machine_type,
        resolved=resolved,
        alias=alias,
        host_bridge=host_type,
        root_bus_name=bus_name,
        pcie=bus_type in pcie_buses,
        root_hotplug=bool(handler),
        builtins=tuple(sorted(builtins, key=lambda b: b.address)),
        device_types=devices,
    )


def _child_type(entry: Mapping[str, Any]) -> str | None:
    kind = str(entry.get("type", ""))
    return kind[len("child<") : -1] if kind.startswith("child<") else None


def describe(
    facts: ProbeFacts, *, name: str | None = None, base: Machine | None = None, catalog: Catalog | None = None
) -> Machine:
    """A :class:`Machine` from probed facts, with what QEMU cannot say taken from ``base``.

    The offered controllers are the catalog models whose QEMU device the
    binary has and that can plug, directly or through other offered
    controllers, into the root bus; an extra host bridge is offered when the
    machine's own host bridge is a catalog model (pseries PHBs).
    """
    catalog = catalog or (base.catalog if base is not None else Catalog.default())
    root_model = "pcie-root" if facts.pcie else "pci-root"
    root_qemu = None
    offered: list[str] = []
    for model in catalog.controllers.values():
        if model.root and facts.host_bridge in model.qemu_devices:
            root_qemu = facts.host_bridge
            if facts.host_bridge in facts.device_types:
                offered.append(model.name)
    accepted: set[Connect] = set(catalog.controller(root_model).accepts)
    grew = True
    while grew:
        grew = False
        for model in catalog.controllers.values():
            if model.root or model.name in offered or model.connect not in accepted:
                continue
            if not any(q in facts.device_types for q in model.qemu_devices):
                continue
            offered.append(model.name)
            accepted |= model.accepts
            grew = True
    if base is not None:
        offered = [m for m in base.controllers if m in offered] + [m for m in offered if m not in base.controllers]
    else:
        offered = [m for m in catalog.controllers if m in offered]
    types = [t for t in (facts.alias, facts.resolved) if t]
    if base is not None:
        known = _matches(base.machine_types, types)
        machine_types = list(base.machine_types) + ([] if known else [t for t in types if t not in base.machine_types])
    else:
        machine_types = list(dict.fromkeys(types))
    arches = list(base.arches) if base is not None and facts.arch in base.arches else [facts.arch]
    data: dict[str, Any] = {
        "name": name or (base.name if base is not None else f"{facts.arch}-{facts.alias or facts.resolved}"),
        "description": base.description
        if base is not None
        else f"{facts.resolved} as probed from {os.path.basename(facts.binary)} {facts.version}",
        "arches": arches,
        "machine-types": machine_types,
        "qemu-binary": os.path.basename(facts.binary),
        "pcie": facts.pcie,
        "root-model": root_model,
        "root-bus-name": facts.root_bus_name,
        "root-hotplug": facts.root_hotplug,
        "bus-numbers": base.bus_numbers if base is not None else 256,
        "controllers": offered,
        "unique-bridge-chassis": base.unique_bridge_chassis if base is not None else False,
        "builtin": [_builtin_data(b, base) for b in _builtins(facts, base)],
    }
    if root_qemu is not None:
        data["root-qemu"] = root_qemu
    release = _release(facts.version)
    if release is not None:
        data["qemu-version"] = release
    if base is not None:
        data["max-host-bridges"] = base.max_host_bridges
        if base.io_windows is not None:
            data["io-windows"] = base.io_windows
        if base.io_windows_without_acpi is not None:
            data["io-windows-without-acpi"] = base.io_windows_without_acpi
        if base.firmware_names:
            data["firmware"] = list(base.firmware_names)
        if base.preferred:
            data["preferred"] = {role: [str(a) for a in addrs] for role, addrs in base.preferred.items()}
        if base.libvirt != LibvirtDefaults():
            data["libvirt"] = _libvirt_data(base.libvirt)
        if base.refuses:
            data["refuses"] = dict(base.refuses)
        if base.one_per_guest:
            data["one-per-guest"] = dict(base.one_per_guest)
    return Machine.from_data(f"probe of {facts.machine_type} ({facts.binary})", data, catalog=catalog)


def _release(version: str) -> str | None:
    """QEMU's ``MAJOR.MINOR.MICRO`` (from the QMP greeting) as a description's ``qemu-version``: ``MAJOR.MINOR``.

    >>> _release("7.2.22"), _release("?.?.?")
    ('7.2', None)
    """
    parts = version.split(".")[:2]
    return ".".join(parts) if len(parts) == 2 and all(p.isdigit() for p in parts) else None


def _libvirt_data(defaults: LibvirtDefaults) -> dict[str, Any]:
    """A machine's ``[libvirt]`` table, in the shipped files' key order (libvirt's choices are not probed)."""
    data: dict[str, Any] = {"usb": defaults.usb or ""}
    for key, value in (("usb-model", defaults.usb_model),):
        if value is not None:
            data[key] = value
    data["memballoon"] = defaults.memballoon
    data["sata0"] = defaults.sata0
    for key, value in (("video", defaults.video), ("nic", defaults.nic), ("scsi", defaults.scsi)):
        if value is not None:
            data[key] = value
    return data


def _matches(patterns: Iterable[str], types: Iterable[str]) -> bool:
    return any(fnmatch.fnmatchcase(t, p) for t in types for p in patterns)


def _builtins(facts: ProbeFacts, base: Machine | None) -> list[Builtin | ProbedDevice]:
    """The probed devices, plus the base's optional ones that ``-nodefaults`` left out."""
    result: list[Builtin | ProbedDevice] = list(facts.builtins)
    if base is not None:
        seen = {b.address for b in facts.builtins}
        result += [b for b in base.builtins if b.optional and b.address not in seen]
    return sorted(result, key=lambda b: b.address)


def _builtin_data(item: Builtin | ProbedDevice, base: Machine | None) -> dict[str, Any]:
    if isinstance(item, Builtin):
        known: Builtin | None = item
        qemu, multifunction = item.qemu_device, item.multifunction
    else:
        known = base.builtin_at(item.address) if base is not None else None
        if known is not None and known.qemu_device != item.qemu_device:
            known = None
        qemu, multifunction = item.qemu_device, item.multifunction
    data: dict[str, Any] = {
        "address": str(item.address),
        "name": known.name if known is not None else qemu.lower().replace("_", "-"),
        "qemu": qemu,
        "description": known.description if known is not None else "",
    }
    if multifunction:
        data["multifunction"] = True
    if known is not None and known.stands_for is not None:
        data["stands-for"] = known.stands_for
    if known is not None and known.optional:
        data["optional"] = True
    return data


# -- TOML -------------------------------------------------------------------------------

_FROM_BASE = frozenset(
    {
        "description",
        "bus-numbers",
        "max-host-bridges",
        "io-windows",
        "io-windows-without-acpi",
        "firmware",
        "unique-bridge-chassis",
    }
)


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise InvalidInput("machine description", f"cannot write {value!r} as TOML")


def machine_to_toml(machine: Machine, *, base: Machine | None = None, header: str = "") -> str:
    """A machine description in the format of the shipped files (same keys, same order).

    With ``base``, every value QEMU cannot report (the description, bus-number
    and IO-window budgets, bridge-chassis uniqueness, host-bridge count,
    preferred addresses, built-in names) is marked ``# from base`` so a
    reader knows it was not probed. ``header`` is written as a leading comment.
    """
    mark = f"  # from base {os.path.basename(base.source) or base.name}, not probed" if base is not None else ""
    lines = [f"# {line}".rstrip() for line in (header or f"Machine description {machine.name}.").splitlines()]

    def put(key: str, value: object) -> None:
        lines.append(f"{key} = {_toml_value(value)}{mark if key in _FROM_BASE else ''}")

    put("name", machine.name)
    put("description", machine.description)
    put("arches", list(machine.arches))
    put("machine-types", list(machine.machine_types))
    put("qemu-binary", machine.qemu_binary)
    if machine.qemu_version is not None:
        put("qemu-version", "{}.{}".format(*machine.qemu_version))
    put("pcie", machine.pcie)
    put("root-model", machine.root_model)
    if machine.root_qemu is not None:
        put("root-qemu", machine.root_qemu)
    put("root-bus-name", machine.root_bus_name)
    put("root-hotplug", machine.root_hotplug)
    put("bus-numbers", machine.bus_numbers)
    if machine.max_host_bridges != 1:
        put("max-host-bridges", machine.max_host_bridges)
    if machine.io_windows is not None:
        put("io-windows", machine.io_windows)
    if machine.io_windows_without_acpi is not None:
        put("io-windows-without-acpi", machine.io_windows_without_acpi)
    if machine.firmware_names:
        put("firmware", list(machine.firmware_names))
    inline = f"controllers = {_toml_value(list(machine.controllers))}"
    if len(inline) <= 100:
        lines.append(inline)
    else:
        lines.append("controllers = [")
        lines += [f"  {_toml_value(c)}," for c in machine.controllers]
        lines.append("]")
    put("unique-bridge-chassis", machine.unique_bridge_chassis)
    for b in machine.builtins:
        lines += ["", "[[builtin]]"]
        put("address", str(b.address))
        lines.append(f"name = {_toml_value(b.name)}{mark}")
        put("qemu", b.qemu_device)
        if b.description:
            lines.append(f"description = {_toml_value(b.description)}{mark}")
        if b.multifunction:
            put("multifunction", True)
        if b.stands_for is not None:
            lines.append(f"stands-for = {_toml_value(b.stands_for)}{mark}")
        if b.optional:
            lines.append(f"optional = true{mark}")
    if machine.preferred:
        lines += ["", f"[preferred]{mark}"]
        for role, addresses in machine.preferred.items():
            lines.append(
                f"{json.dumps(role) if not role.replace('-', '').isalnum() else role} = "
                f"{_toml_value([str(a) for a in addresses])}"
            )
    if machine.libvirt != LibvirtDefaults():
        lines += ["", f"[libvirt]{mark}"]
        lines += [f"{key} = {_toml_value(value)}" for key, value in _libvirt_data(machine.libvirt).items()]
    for table, messages in (("refuses", machine.refuses), ("one-per-guest", machine.one_per_guest)):
        if messages:
            lines += ["", f"[{table}]{mark}"]
            lines += [f"{kind} = {_toml_value(message)}" for kind, message in messages.items()]
    return "\n".join(lines) + "\n"
