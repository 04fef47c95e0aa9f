"""The PCI layout QEMU 7.2 gives the device kinds that need a host resource or a server is the catalog's.

vhost-vsock-pci: no IO BAR on any bus, and the memory BARs measured. The test
machine has no ``/dev/vhost-vsock`` (and no ``vhost_vsock`` module to load), so
QEMU starts the device with the ``LD_PRELOAD`` stub of
:mod:`tests.support.vhost_stub`, which answers the vhost ioctls QEMU makes
before the guest runs; the guest never runs (``-S``) and the BARs are QEMU's
own. On both positions (``pc``'s conventional ``pci.0``, ``q35``'s root bus)
a transitional virtio device has its legacy IO BAR: a ``virtio-net-pci``
measured the same way shows that one would be seen. The same stub fakes
``/dev/vhost-scsi`` (vhost-scsi-pci and its two variants) and an evdev node
(virtio-input-host-pci); ivshmem-doorbell talks to
:mod:`tests.support.ivshmem_server`, vhost-user-fs-pci to Debian's virtiofsd.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from pcitopo.devices import Device
from pcitopo.legality.catalog import Catalog
from pcitopo.qemu._qmp import Qemu, QemuError, find_binary
from pcitopo.topology import Topology
from tests.support.ivshmem_server import IvshmemServer
from tests.support.packages import require_packages
from tests.support.vhost_stub import EVDEV, build, preloaded
from tests.support.virtiofsd import find_virtiofsd, running_virtiofsd

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


MACHINES = [("pc", "pci.0"), ("q35", "pcie.0")]
"""Where each device is measured: pc's conventional root bus and q35's PCIe root bus (neither behind a PCIe port)."""
MIB = 1 << 20


def regions(stub: Path, machine: str, bus: str, device: str, options: tuple[str, ...] = ()) -> list[Region]:
    """The regions QEMU 7.2 gives ``device`` (its -device options) at slot 5 of ``bus``, paused, stub preloaded."""
    qemu = find_binary("qemu-system-x86_64")
    assert qemu is not None
    binary, prefix = preloaded(qemu, stub)
    args = [*prefix, "-machine", machine, "-m", "128", "-nodefaults", "-display", "none", "-S", "-accel", "tcg"]
    with Qemu(binary, [*args, *options, "-device", f"{device},id=dut,bus={bus},addr=0x5"]) as vm:
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


@pytest.mark.parametrize(("machine", "bus"), MACHINES)
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


def catalogued(kind: str, memory: int | None = None) -> list[Region]:
    """The regions the catalog gives ``kind`` on a root bus: its IO BAR (BAR0) where it has one, then its BARs."""
    k = Catalog.default().device(kind)
    io: list[Region] = [("io", 0, k.io_bar_size, "", False)] if k.has_io_bar(behind_pcie_port=False) else []
    bars = Topology.build("q35", devices=[Device("dut", kind, memory=memory)]).bars("dut")
    return io + [("memory", b.index, b.size, b.kind, b.prefetchable) for b in bars]


@pytest.mark.parametrize(("machine", "bus"), MACHINES)
@pytest.mark.parametrize("kind", ["vhost-scsi", "vhost-scsi-transitional", "vhost-scsi-non-transitional"])
def test_vhost_scsi_has_the_catalog_s_bars(stub: Path, kind: str, machine: str, bus: str) -> None:
    """QEMU 7.2's three vhost-scsi drivers, /dev/vhost-scsi stubbed, have the catalog's IO BAR and memory BARs."""
    driver = Catalog.default().device(kind).qemu_device
    assert regions(stub, machine, bus, f"{driver},wwpn=naa.5001405000000001") == catalogued(kind)


@pytest.mark.parametrize(("machine", "bus"), MACHINES)
def test_virtio_input_host_has_the_catalog_s_bars(stub: Path, machine: str, bus: str) -> None:
    """QEMU 7.2's virtio-input-host-pci, its evdev node stubbed, has no IO BAR and the catalog's memory BARs."""
    found = regions(stub, machine, bus, f"virtio-input-host-pci,evdev={EVDEV}")
    assert found == catalogued("virtio-input-host")


@pytest.mark.parametrize(
    ("machine", "bus", "memory"), [*((m, b, None) for m, b in MACHINES), ("q35", "pcie.0", 64 * MIB)]
)
def test_ivshmem_doorbell_has_the_catalog_s_bars(
    stub: Path, tmp_path: Path, machine: str, bus: str, memory: int | None
) -> None:
    """ivshmem-doorbell has the catalog's BARs, BAR2 sized by the server's memory (4 MiB: ivshmem-server's default)."""
    with IvshmemServer(tmp_path / "ivshmem.sock", memory or 4 * MIB) as server:
        options = ("-chardev", f"socket,id=iv,path={server.path}")
        found = regions(stub, machine, bus, "ivshmem-doorbell,chardev=iv", options)
    assert found == catalogued("ivshmem-doorbell", memory)


@pytest.mark.parametrize(("machine", "bus"), MACHINES)
def test_vhost_user_fs_has_the_catalog_s_bars(stub: Path, tmp_path: Path, machine: str, bus: str) -> None:
    """QEMU 7.2's vhost-user-fs-pci, against Debian's virtiofsd, has no IO BAR and the catalog's memory BARs."""
    if find_virtiofsd() is None:
        require_packages(["qemu-system-common"], "vhost-user-fs BAR")
    with running_virtiofsd(tmp_path) as sock:
        options = ("-chardev", f"socket,id=fs,path={sock}")
        found = regions(stub, machine, bus, "vhost-user-fs-pci,chardev=fs,tag=pcitopo", options)
    assert found == catalogued("vhost-user-fs")
