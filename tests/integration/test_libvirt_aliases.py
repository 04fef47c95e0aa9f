"""libvirt 9.0's ``<alias>`` handling on ``virsh define``, and device identities that survive it.

libvirt keeps a user alias only when it starts ``ua-``; any other alias in a
definition is dropped on ``virsh define`` (a running domain's aliases are
libvirt's own). pcitopo therefore names devices of a definition by ``ua-``
aliases only, so each device keeps its id through libvirt's round trip.
"""

from __future__ import annotations

import re

import pytest

from pcitopo.errors import DuplicateId
from pcitopo.formats.libvirt import LibvirtDomain
from pcitopo.solver import solve
from tests.support.libvirt import LibvirtError, define_and_dump

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("libvirtd")]


def domain(devices: str) -> str:
    return (
        "<domain type='qemu'><name>aliases</name><memory unit='MiB'>256</memory>"
        "<os><type arch='x86_64' machine='pc-q35-7.2'>hvm</type></os>"
        f"<devices><emulator>/usr/bin/qemu-system-x86_64</emulator>{devices}</devices></domain>"
    )


CLASH = domain(
    "<controller type='usb' index='0' model='qemu-xhci'/>"
    "<interface type='user'><model type='virtio'/><alias name='usb0'/></interface>"
    "<controller type='pci' index='1' model='pcie-root-port'><alias name='net0'/></controller>"
    "<interface type='user'><model type='e1000e'/><alias name='ua-nic'/></interface>"
    "<rng model='virtio'><backend model='random'>/dev/urandom</backend><alias name='rng0'/></rng>"
    "<rng model='virtio'><backend model='random'>/dev/urandom</backend><alias name='rng0'/></rng>"
)


def aliases(xml: str) -> list[str]:
    return re.findall(r"<alias name='([^']*)'/>", xml)


def test_define_keeps_only_ua_aliases() -> None:
    """virsh define drops usb0, net0 and a repeated rng0 without complaint and keeps ua-nic."""
    assert aliases(define_and_dump(CLASH)) == ["ua-nic"]


def test_a_repeated_ua_alias_is_refused_by_libvirt_and_pcitopo() -> None:
    """Two elements aliased ua-x: libvirt refuses the definition, and pcitopo reads it as a DuplicateId."""
    twice = CLASH.replace("'rng0'", "'ua-x'")
    with pytest.raises(LibvirtError, match=r"^unsupported configuration: non unique alias detected: ua-x$"):
        define_and_dump(twice)
    with pytest.raises(DuplicateId, match="id 'ua-x' is used by"):
        LibvirtDomain.from_string(twice)


def test_every_device_keeps_its_id_through_libvirts_round_trip() -> None:
    """pcitopo's plan defined in libvirt and read back: the same ids, each at the same address."""
    planned = LibvirtDomain.from_string(CLASH)
    out = planned.with_topology(solve(planned.topology))
    back = LibvirtDomain.from_string(define_and_dump(out.to_string()))
    before = {d.id: d.address for d in out.topology.devices}
    after = {d.id: d.address for d in back.topology.devices}
    assert before == after
    assert {"usb0", "interface0", "ua-nic", "rng0", "rng1"} <= before.keys()
