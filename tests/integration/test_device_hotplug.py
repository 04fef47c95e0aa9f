"""Every device kind's ``hotpluggable`` flag is what QEMU 7.2's ``device_add`` answers.

One paused QEMU a machine (plus one a balloon variant: QEMU takes one balloon
a VM) gets a ``device_add`` of every driver of the catalog into an empty slot
of its own (:mod:`tests.support.hotplug`). ``benchmarks/calibrate_hotplug.py``
measures all four positions and rewrites the flags; this pins two of them.
"""

from __future__ import annotations

import pytest

from pcitopo.legality.catalog import Catalog
from pcitopo.legality.machine import Machine
from tests.support.hotplug import HOST_BACKEND, NOT_PLUGGABLE, measure

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("qemu")]

ABSENT = {
    "igb": "'igb' is not a valid device model name",
    "vhost-vsock-pci-transitional": "'vhost-vsock-pci-transitional' is not a valid device model name",
}
"""Catalog drivers QEMU 7.2 does not have: igb came with QEMU 8.0 (``qemu-since``), and vhost-vsock has no
transitional variant (``virtio-variants = ["non-transitional"]``); rule qemu-driver refuses both."""

BACKEND_ERRORS = {
    "vfio-pci": "No provided host device",
    "vhost-scsi-pci": "vhost-scsi: open vhost char device failed: No such file or directory",
    "vhost-scsi-pci-transitional": "vhost-scsi: open vhost char device failed: No such file or directory",
    "vhost-scsi-pci-non-transitional": "vhost-scsi: open vhost char device failed: No such file or directory",
    "vhost-vsock-pci": "vhost-vsock: failed to open vhost device: No such file or directory",
    "vhost-vsock-pci-non-transitional": "vhost-vsock: failed to open vhost device: No such file or directory",
    "vhost-user-fs-pci": "missing chardev",
    "virtio-input-host-pci": "evdev property is required",
    "ivshmem-doorbell": "You must specify a 'chardev'",
}
"""What device_add answers for drivers whose backend this machine lacks: past the hotplug check, in realize."""

REFUSED = {
    "VGA",
    "cirrus-vga",
    "qxl-vga",
    "vmware-svga",
    "virtio-vga",
    "virtio-gpu-pci",
    "virtio-iommu-pci",
    "piix3-ide",
    "pci-ohci",
    "ich9-usb-ehci1",
    "ich9-usb-uhci1",
    "ich9-usb-uhci2",
    "ich9-usb-uhci3",
}
"""The drivers QEMU 7.2 refuses to hot-add, measured on all four positions (written out so a data change shows)."""


def _expected(driver: str, hotpluggable: bool) -> tuple[str, str]:
    if driver in ABSENT:
        return "absent", ABSENT[driver]
    if not hotpluggable:
        return "refused", NOT_PLUGGABLE
    if driver in HOST_BACKEND:
        return "backend", BACKEND_ERRORS[driver]
    return "accepted", ""


@pytest.mark.parametrize("position", ["q35-root-port", "pc-pci-bridge"])
def test_device_add_answers_as_the_catalog_flags_say(position: str) -> None:
    """A kind flagged hot-pluggable is hot-added (or fails only for its host backend); the others are refused."""
    kinds = Catalog.default().devices.values()
    flags = {k.qemu_device: k.hotpluggable for k in kinds}
    got = {o.driver: (o.verdict, o.error) for o in measure(sorted(flags), position)}
    want = {driver: _expected(driver, hot) for driver, hot in flags.items()}
    assert got == want
    assert {d for d, (verdict, _) in got.items() if verdict == "refused"} == REFUSED
    # and the drivers QEMU 7.2 has not are exactly those of the kinds the catalog says it lacks (rule qemu-driver)
    q35 = Machine.named("q35")
    assert {d for d, (verdict, _) in got.items() if verdict == "absent"} == {
        k.qemu_device for k in kinds if not q35.starts(k.name)
    }


def test_pvpanic_pci_is_hot_added_on_pc_root_bus() -> None:
    """pvpanic-pci, which libvirt puts on bus 0, is hot-added on pc's pci.0 (and its catalog flag says so)."""
    (outcome,) = measure(["pvpanic-pci"], "pc-root")
    assert (outcome.verdict, outcome.error) == ("accepted", "")
    assert Catalog.default().device("pvpanic-pci").hotpluggable
