"""vhost-vsock-pci's PCI layout in QEMU 7.2 is the catalog's: no IO BAR on any bus, and the memory BARs measured.

The test machine has no ``/dev/vhost-vsock`` (and no ``vhost_vsock`` module to
load), so QEMU starts the device with the ``LD_PRELOAD`` stub of
:mod:`tests.support.vhost_stub`, which answers the vhost ioctls QEMU makes
before the guest runs; the guest never runs (``-S``) and the BARs are QEMU's
own. On both positions (``pc``'s conventional ``pci.0``, ``q35``'s root bus)
a transitional virtio device has its legacy IO BAR: a ``virtio-net-pci``
measured the same way shows that one would be seen.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from pcitopo.legality.catalog import Catalog
from pcitopo.qemu._qmp import Qemu, QemuError, find_binary
from tests.support.packages import require_packages
from tests.support.vhost_stub import build, preloaded

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("qemu")]

Region = tuple[str, int, int, str, bool]
"""One region as query-pci reports it: io or memory, the BAR, its size, mem32/mem64 (io: ""), prefetchable."""


@pytest.fixture(scope="module")
def stub(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The compiled stub (gcc, installed when missing)."""
    require_packages(["gcc", "libc6-dev"], "vhost-vsock BAR")
    library = build(tmp_path_factory.mktemp("vhost-stub"))
    assert library is not None
    return library


def regions(stub: Path, machine: str, bus: str, device: str) -> list[Region]:
    """The regions QEMU 7.2 gives ``device`` (its -device options) at slot 5 of ``bus``, paused, stub preloaded."""
    qemu = find_binary("qemu-system-x86_64")
    assert qemu is not None
    binary, prefix = preloaded(qemu, stub)
    args = [*prefix, "-machine", machine, "-m", "128", "-nodefaults", "-display", "none", "-S", "-accel", "tcg"]
    with Qemu(binary, [*args, "-device", f"{device},id=dut,bus={bus},addr=0x5"]) as vm:
        answer = vm.execute("query-pci")
    for root in answer:
        for d in root["devices"]:
            if d.get("qdev_id") == "dut":
                return [
                    (
                        r["type"],
                        r["bar"],
                        r["size"],
                        "" if r["type"] == "io" else ("mem64" if r.get("mem_type_64") else "mem32"),
                        bool(r.get("prefetch")),
                    )
                    for r in d["regions"]
                ]
    raise AssertionError(f"{device} is not on {bus} in query-pci")


@pytest.mark.parametrize(("machine", "bus"), [("pc", "pci.0"), ("q35", "pcie.0")])
@pytest.mark.parametrize("kind", ["vhost-vsock", "vhost-vsock-non-transitional"])
def test_vhost_vsock_has_the_catalog_s_bars_and_no_io_bar(stub: Path, kind: str, machine: str, bus: str) -> None:
    """QEMU 7.2's vhost-vsock-pci has no IO BAR where virtio-net-pci has its legacy one, and the catalog's BARs."""
    io_bar_size = Catalog.default().device("virtio-net").io_bar_size
    control = regions(stub, machine, bus, "virtio-net-pci")  # started the same way: the legacy IO BAR is seen
    assert [r for r in control if r[0] == "io"] == [("io", 0, io_bar_size, "", False)]
    k = Catalog.default().device(kind)
    found = regions(stub, machine, bus, f"{k.qemu_device},guest-cid=3")
    assert [r for r in found if r[0] == "io"] == []
    assert not k.has_io_bar(behind_pcie_port=False)
    assert [r[1:] for r in found] == [(b.index, b.size, b.kind, b.prefetchable) for b in k.bars]


def test_qemu_7_2_has_no_transitional_vhost_vsock(stub: Path) -> None:
    """The stub gets past the host check, and QEMU 7.2 still has no vhost-vsock-pci-transitional driver."""
    with pytest.raises(QemuError) as info:
        regions(stub, "pc", "pci.0", "vhost-vsock-pci-transitional,guest-cid=3")
    assert info.value.qemu_message == "'vhost-vsock-pci-transitional' is not a valid device model name"
    assert not Catalog.default().device("vhost-vsock-transitional").in_qemu
