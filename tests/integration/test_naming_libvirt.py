"""The acpi-indexes a naming-order plan writes are ones libvirt 9.0 defines and keeps on the same NICs."""

from __future__ import annotations

import attrs
import pytest

from pcitopo.formats.libvirt import LibvirtDomain
from pcitopo.policy import Policy
from pcitopo.solver import solve
from tests.support.libvirt import define_and_dump

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("libvirtd")]

DOMAIN = """<domain type='qemu'>
  <name>pass2-acpi-names</name>
  <memory unit='MiB'>256</memory>
  <os><type arch='x86_64' machine='pc-q35-7.2'>hvm</type></os>
  <features><acpi/></features>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    <interface type='user'><model type='virtio'/></interface>
    <interface type='user'><model type='e1000'/></interface>
    <interface type='user'><model type='e1000e'/></interface>
  </devices>
</domain>
"""


def test_libvirt_keeps_the_written_acpi_indexes() -> None:
    """libvirt defines the planned domain and dumps each NIC with the acpi-index and address pcitopo wrote."""
    request = LibvirtDomain.from_string(DOMAIN)
    plan = solve(request.topology, attrs.evolve(Policy.named("hotplug+ordered"), acpi_index=True))
    written = request.with_topology(plan)
    theirs = LibvirtDomain.from_string(define_and_dump(written.to_string())).topology
    ours = written.topology
    nics = ["interface0", "interface1", "interface2"]
    assert [ours.device(i).acpi_index for i in nics] == [1, 2, 3]
    assert [(theirs.device(i).acpi_index, theirs.device(i).address) for i in nics] == [
        (ours.device(i).acpi_index, ours.device(i).address) for i in nics
    ]
