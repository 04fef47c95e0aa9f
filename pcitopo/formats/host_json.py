"""The host description as a versioned JSON document (what ``pcitopo host-scan`` writes).

The schema is documented in ``docs/host.rst``. :func:`dumps` is a pure
function of the :class:`~pcitopo.host.Host` (keys in a fixed order, devices
by address), and :func:`loads` reads it back to an equal value, refusing
unknown versions, unknown keys and wrong types with the path of the field.

>>> from pcitopo.address import PciAddress
>>> from pcitopo.host import Host, HostDevice
>>> host = Host([HostDevice(PciAddress.parse("0000:3b:00.0"), vendor=0x10de, device=0x20b0, class_code=0x030200)])
>>> text = dumps(host)
>>> print(text[:61])
{
  "format": "pcitopo-host",
  "version": 1,
  "source": "",
>>> loads(text) == host
True
>>> loads('{"format": "pcitopo-host", "version": 2, "devices": []}', source="h.json")
Traceback (most recent call last):
  ...
pcitopo.errors.InvalidInput: h.json: version: this pcitopo reads version 1 (got 2)
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from pcitopo.address import PciAddress
from pcitopo.errors import InvalidAddress, InvalidInput
from pcitopo.host import Bar, Host, HostDevice

__all__ = ["FORMAT", "VERSION", "dumps", "load", "loads"]


def __dir__() -> list[str]:
    return __all__


FORMAT = "pcitopo-host"
VERSION = 1

_T = TypeVar("_T")


def _device_dict(d: HostDevice) -> dict[str, object]:
    return {
        "address": str(d.address),
        "vendor": f"0x{d.vendor:04x}",
        "device": f"0x{d.device:04x}",
        "class": f"0x{d.class_code:06x}",
        "numa_node": d.numa_node,
        "iommu_group": d.iommu_group,
        "parent": None if d.parent is None else str(d.parent),
        "bars": [{"index": b.index, "size": b.size, "kind": b.kind, "prefetchable": b.prefetchable} for b in d.bars],
        "physfn": None if d.physfn is None else str(d.physfn),
        "virtfns": [str(a) for a in d.virtfns],
        "sriov_totalvfs": d.sriov_totalvfs,
        "driver": d.driver,
        "port_type": d.port_type,
        "acs": None if d.acs is None else f"0x{d.acs:04x}",
    }


def dumps(host: Host) -> str:
    """The JSON text of a host description (ends with a newline)."""
    doc = {
        "format": FORMAT,
        "version": VERSION,
        "source": host.source,
        "devices": [_device_dict(d) for d in host.devices],
    }
    return json.dumps(doc, indent=2) + "\n"


def load(path: str | Path) -> Host:
    """Read a host description from a file."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise InvalidInput(str(path), f"cannot read: {reason}") from None
    return loads(text, source=str(path))


class _Reader:
    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, key: str, reason: str) -> InvalidInput:
        return InvalidInput(f"{self.source}: {key}" if key else self.source, reason)

    def get(
        self, obj: dict[str, Any], key: str, path: str, kind: type[_T] | tuple[type, ...], *, optional: bool
    ) -> Any:
        where = f"{path}.{key}" if path else key
        if key not in obj:
            if optional:
                return None
            raise self.fail(where, "is missing")
        value = obj[key]
        if value is None and optional:
            return None
        if not isinstance(value, kind) or (isinstance(value, bool) and kind is int):
            names = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
            raise self.fail(where, f"must be {_article(names)} (got {json.dumps(value)})")
        return value

    def convert(self, value: Any, where: str, parse: Callable[[str], _T], what: str) -> _T:
        try:
            return parse(value)
        except (ValueError, InvalidAddress):
            raise self.fail(where, f"must be {what} (got {json.dumps(value)})") from None


def _article(names: str) -> str:
    return ("an " if names[0] in "aeiou" else "a ") + names.replace("str", "string").replace("int", "integer")


_DEVICE_KEYS = frozenset(
    {
        "address",
        "vendor",
        "device",
        "class",
        "numa_node",
        "iommu_group",
        "parent",
        "bars",
        "physfn",
        "virtfns",
        "sriov_totalvfs",
        "driver",
        "port_type",
        "acs",
    }
)
_BAR_KINDS = ("io", "mem32", "mem64")


def loads(text: str, *, source: str = "<string>") -> Host:
    """Read a host description from its JSON text; ``source`` names it in errors."""
    r = _Reader(source)
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise r.fail("", f"not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    if not isinstance(doc, dict):
        raise r.fail("", "must be a JSON object")
    if doc.get("format") != FORMAT:
        raise r.fail("format", f"must be {FORMAT!r} (got {json.dumps(doc.get('format'))})")
    version = doc.get("version")
    if version != VERSION:
        raise r.fail("version", f"this pcitopo reads version {VERSION} (got {json.dumps(version)})")
    unknown = sorted(set(doc) - {"format", "version", "source", "devices"})
    if unknown:
        raise r.fail(unknown[0], "is not a key of a host description")
    host_source = r.get(doc, "source", "", str, optional=True) or ""
    items = r.get(doc, "devices", "", list, optional=False)

    def address(value: Any, where: str) -> PciAddress:
        if not isinstance(value, str):
            raise r.fail(where, f"must be a PCI address string (got {json.dumps(value)})")
        return r.convert(value, where, PciAddress.parse, "a PCI address like 0000:3b:00.0")

    def hex_number(obj: dict[str, Any], key: str, path: str, *, optional: bool = False) -> int | None:
        value = r.get(obj, key, path, str, optional=optional)
        if value is None:
            return None
        return r.convert(value, f"{path}.{key}", lambda v: int(v, 16), "a hexadecimal string like '0x10de'")

    devices: list[HostDevice] = []
    for i, item in enumerate(items):
        path = f"devices[{i}]"
        if not isinstance(item, dict):
            raise r.fail(path, "must be an object")
        extra = sorted(set(item) - _DEVICE_KEYS)
        if extra:
            raise r.fail(f"{path}.{extra[0]}", "is not a key of a host device")
        bars: list[Bar] = []
        for j, b in enumerate(r.get(item, "bars", path, list, optional=True) or []):
            bpath = f"{path}.bars[{j}]"
            if not isinstance(b, dict):
                raise r.fail(bpath, "must be an object")
            kind = r.get(b, "kind", bpath, str, optional=False)
            if kind not in _BAR_KINDS:
                raise r.fail(f"{bpath}.kind", f"must be one of {', '.join(_BAR_KINDS)} (got {json.dumps(kind)})")
            size = r.get(b, "size", bpath, int, optional=False)
            if size <= 0:
                raise r.fail(f"{bpath}.size", f"must be a positive number of bytes (got {size})")
            index = r.get(b, "index", bpath, int, optional=False)
            if not 0 <= index <= 12:
                raise r.fail(f"{bpath}.index", f"must be in 0..12 (got {index})")
            bars.append(Bar(index, size, kind, bool(r.get(b, "prefetchable", bpath, bool, optional=True))))
        parent = r.get(item, "parent", path, str, optional=True)
        physfn = r.get(item, "physfn", path, str, optional=True)
        vendor = hex_number(item, "vendor", path)
        device = hex_number(item, "device", path)
        class_code = hex_number(item, "class", path)
        assert vendor is not None
        assert device is not None
        assert class_code is not None
        devices.append(
            HostDevice(
                address(item.get("address"), f"{path}.address"),
                vendor=vendor,
                device=device,
                class_code=class_code,
                numa_node=r.get(item, "numa_node", path, int, optional=True),
                iommu_group=r.get(item, "iommu_group", path, int, optional=True),
                parent=None if parent is None else address(parent, f"{path}.parent"),
                bars=bars,
                physfn=None if physfn is None else address(physfn, f"{path}.physfn"),
                virtfns=[
                    address(v, f"{path}.virtfns[{k}]")
                    for k, v in enumerate(r.get(item, "virtfns", path, list, optional=True) or [])
                ],
                sriov_totalvfs=r.get(item, "sriov_totalvfs", path, int, optional=True),
                driver=r.get(item, "driver", path, str, optional=True),
                port_type=r.get(item, "port_type", path, str, optional=True),
                acs=hex_number(item, "acs", path, optional=True),
            )
        )
    try:
        return Host(devices, source=host_source)
    except InvalidInput as exc:
        raise r.fail(exc.element, exc.reason) from None
