"""The host JSON document: a round trip of every reference host, and exact errors for bad documents."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pcitopo.errors import InvalidInput
from pcitopo.formats.host_json import dumps, load, loads
from pcitopo.host import Host
from tests.support.hosts import HOSTS, write_host


@pytest.mark.parametrize("name", sorted(HOSTS))
def test_round_trip(name: str, tmp_path: Path) -> None:
    """Every reference host read from sysfs comes back equal from its JSON, and the text is stable."""
    host = Host.from_sysfs(write_host(name, tmp_path / name))
    text = dumps(host)
    assert loads(text) == host
    assert dumps(loads(text)) == text


def _doc(**device: object) -> str:
    base: dict[str, object] = {"address": "0000:01:00.0", "vendor": "0x10de", "device": "0x2206", "class": "0x030000"}
    base.update(device)
    return json.dumps({"format": "pcitopo-host", "version": 1, "devices": [base]})


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[1", "h.json: not JSON: Expecting ',' delimiter at line 1 column 3"),
        ("[]", "h.json: must be a JSON object"),
        ('{"format": "x", "version": 1}', "h.json: format: must be 'pcitopo-host' (got \"x\")"),
        ('{"format": "pcitopo-host", "version": 1}', "h.json: devices: is missing"),
        (
            '{"format": "pcitopo-host", "version": 1, "devices": [], "extra": 1}',
            "h.json: extra: is not a key of a host description",
        ),
        (_doc(vendor=4318), "h.json: devices[0].vendor: must be a string (got 4318)"),
        (_doc(vendor="nv"), "h.json: devices[0].vendor: must be a hexadecimal string like '0x10de' (got \"nv\")"),
        (_doc(address="01:00"), 'h.json: devices[0].address: must be a PCI address like 0000:3b:00.0 (got "01:00")'),
        (_doc(numa_node=True), "h.json: devices[0].numa_node: must be an integer (got true)"),
        (_doc(colour=1), "h.json: devices[0].colour: is not a key of a host device"),
        (
            _doc(bars=[{"index": 0, "size": 0, "kind": "mem32"}]),
            "h.json: devices[0].bars[0].size: must be a positive number of bytes (got 0)",
        ),
        (
            _doc(bars=[{"index": 0, "size": 4, "kind": "rom"}]),
            'h.json: devices[0].bars[0].kind: must be one of io, mem32, mem64 (got "rom")',
        ),
        (_doc(parent="0000:00:01.0"), "h.json: host device 0000:01:00.0: its parent 0000:00:01.0 is not a host device"),
    ],
)
def test_bad_documents_say_where(text: str, message: str) -> None:
    """Each malformed document is refused with the path of the field at fault and what was expected."""
    with pytest.raises(InvalidInput) as info:
        loads(text, source="h.json")
    assert str(info.value) == message


def test_load_of_a_missing_file_names_it(tmp_path: Path) -> None:
    """A host file that does not exist is an InvalidInput naming the file."""
    with pytest.raises(InvalidInput, match=r"nope\.json: cannot read: No such file or directory$"):
        load(tmp_path / "nope.json")
