"""The catalog: every controller model and device kind loads; bad catalog files are rejected by key."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import pytest

from pcitopo.errors import InvalidDescription, UnknownName
from pcitopo.legality import catalog as catalog_module
from pcitopo.legality.catalog import Catalog, Connect, Hotplug, Integrated, IoBar

DATA = Path(__file__).parent / "data"
SHIPPED = resources.files("pcitopo.legality").joinpath("data")

ISSUE_MODELS = [
    "pci-root",
    "pcie-root",
    "pci-bridge",
    "dmi-to-pci-bridge",
    "pcie-to-pci-bridge",
    "pcie-root-port",
    "pcie-switch-upstream-port",
    "pcie-switch-downstream-port",
    "pci-expander-bus",
    "pcie-expander-bus",
    "spapr-pci-host-bridge",
]


def test_every_controller_model_of_the_issue_loads() -> None:
    """The shipped catalog has exactly the eleven controller models of libvirt's PCI controllers."""
    assert sorted(Catalog.default().controllers) == sorted(ISSUE_MODELS)


@pytest.mark.parametrize(
    ("model", "qemu", "slots", "hotplug", "bus_numbers", "identity"),
    [
        ("pci-root", None, (1, 31), Hotplug.DEFAULT_ON, 1, ()),
        ("pcie-root", None, (1, 31), Hotplug.NEVER, 1, ()),
        ("pci-bridge", "pci-bridge", (1, 31), Hotplug.ALWAYS, 1, ("chassis-nr",)),
        ("dmi-to-pci-bridge", "i82801b11-bridge", (0, 31), Hotplug.NEVER, 1, ()),
        ("pcie-to-pci-bridge", "pcie-pci-bridge", (1, 31), Hotplug.ALWAYS, 1, ()),
        ("pcie-root-port", "pcie-root-port", (0, 0), Hotplug.DEFAULT_ON, 1, ("chassis", "port")),
        ("pcie-switch-upstream-port", "x3130-upstream", (0, 31), Hotplug.NEVER, 1, ()),
        ("pcie-switch-downstream-port", "xio3130-downstream", (0, 0), Hotplug.DEFAULT_ON, 1, ("chassis", "port")),
        ("pci-expander-bus", "pxb", (0, 31), Hotplug.NEVER, 2, ("bus-nr", "numa-node")),
        ("pcie-expander-bus", "pxb-pcie", (0, 31), Hotplug.NEVER, 1, ("bus-nr", "numa-node")),
        ("spapr-pci-host-bridge", "spapr-pci-host-bridge", (1, 31), Hotplug.ALWAYS, 1, ("target-index", "numa-node")),
    ],
)
def test_controller_model_facts(
    model: str,
    qemu: str | None,
    slots: tuple[int, int],
    hotplug: Hotplug,
    bus_numbers: int,
    identity: tuple[str, ...],
) -> None:
    """Each model carries its QEMU device, usable slots, hotplug, bus numbers and identity properties."""
    m = Catalog.default().controller(model)
    assert (m.qemu_device, m.slots, m.hotplug, m.bus_numbers, m.identity) == (
        qemu,
        slots,
        hotplug,
        bus_numbers,
        identity,
    )
    assert m.functions == 8
    assert str(m) == model


@pytest.mark.parametrize(
    ("bus", "accepts"),
    [
        ("pcie-root", {"pcie-device", "pcie-root-port", "dmi-to-pci-bridge", "pcie-expander-bus"}),
        ("pcie-root-port", {"pcie-device", "pcie-switch-upstream-port", "pcie-to-pci-bridge"}),
        ("pcie-switch-upstream-port", {"pcie-switch-downstream-port"}),
        ("pcie-expander-bus", {"pcie-root-port", "dmi-to-pci-bridge"}),
        ("pci-root", {"pci-device", "pci-bridge", "pci-expander-bus"}),
    ],
)
def test_placement_matrix_rows(bus: str, accepts: set[str]) -> None:
    """What a bus accepts follows libvirt's virDomainPCIAddressBusSetModel (libvirt-rules §1.2)."""
    assert {c.value for c in Catalog.default().controller(bus).accepts} == accepts


ISSUE_KINDS = [
    "virtio-net",
    "virtio-net-transitional",
    "virtio-net-non-transitional",
    "e1000",
    "e1000e",
    "igb",
    "rtl8139",
    "qxl",
    "vga",
    "bochs",
    "virtio-gpu",
    "ich6",
    "ich9",
    "ac97",
    "ahci",
    "lsilogic",
    "virtio-scsi",
    "piix3-uhci",
    "ich9-ehci1",
    "ich9-uhci1",
    "nec-xhci",
    "qemu-xhci",
    "i6300esb",
    "ivshmem-plain",
    "virtio-rng",
    "virtio-balloon",
    "virtio-keyboard",
    "vhost-vsock",
    "virtio-serial",
    "virtio-crypto",
    "virtio-iommu",
    "pvpanic-pci",
    "vfio-pci",
]


@pytest.mark.parametrize("kind", ISSUE_KINDS)
def test_every_device_kind_of_the_issue_loads(kind: str) -> None:
    """Each device kind the issue names is in the catalog with a QEMU driver and a class."""
    k = Catalog.default().device(kind)
    assert k.qemu_device
    assert k.device_class


@pytest.mark.parametrize(
    ("kind", "on_pcie", "on_pci", "io_behind_port", "io_elsewhere", "integrated"),
    [
        ("virtio-net", Connect.PCIE_DEVICE, Connect.PCI_DEVICE, False, True, Integrated.ALLOWED),
        ("virtio-net-transitional", Connect.PCI_DEVICE, Connect.PCI_DEVICE, True, True, Integrated.ALLOWED),
        ("virtio-net-non-transitional", Connect.PCIE_DEVICE, Connect.PCI_DEVICE, False, False, Integrated.ALLOWED),
        ("e1000", Connect.PCI_DEVICE, Connect.PCI_DEVICE, True, True, Integrated.ALLOWED),
        ("e1000e", Connect.PCIE_DEVICE, Connect.PCI_DEVICE, True, True, Integrated.ALLOWED),
        ("bochs", Connect.PCIE_DEVICE, Connect.PCI_DEVICE, False, False, Integrated.ALLOWED),
        ("virtio-crypto", Connect.PCI_DEVICE, Connect.PCI_DEVICE, False, False, Integrated.ALLOWED),
        ("vfio-pci", Connect.PCIE_DEVICE, Connect.PCI_DEVICE, False, False, Integrated.FORBIDDEN),
        ("pvpanic-pci", Connect.PCI_DEVICE, Connect.PCI_DEVICE, False, False, Integrated.REQUIRED),
        ("virtio-iommu", Connect.PCIE_DEVICE, Connect.PCI_DEVICE, False, False, Integrated.REQUIRED),
    ],
)
def test_device_kind_classification(
    kind: str,
    on_pcie: Connect,
    on_pci: Connect,
    io_behind_port: bool,
    io_elsewhere: bool,
    integrated: Integrated,
) -> None:
    """Connect types per machine family, IO BARs behind a port or not, and integration follow libvirt §2."""
    k = Catalog.default().device(kind)
    assert k.connect_on(pcie=True) is on_pcie
    assert k.connect_on(pcie=False) is on_pci
    assert k.has_io_bar(behind_pcie_port=True) is io_behind_port
    assert k.has_io_bar(behind_pcie_port=False) is io_elsewhere
    assert k.integrated is integrated


def test_virtio_variants_are_derived() -> None:
    """virtio-variants defines a transitional (PCI, IO BAR) and a non-transitional (no IO BAR) kind."""
    cat = Catalog.default()
    assert cat.device("virtio-blk-transitional").qemu_device == "virtio-blk-pci-transitional"
    assert cat.device("virtio-blk-transitional").io_bar is IoBar.ALWAYS
    assert cat.device("virtio-blk-non-transitional").io_bar_size == 0


def test_vhost_vsock_is_modern_only_with_no_transitional_driver() -> None:
    """QEMU 7.2 forces vhost-vsock-pci to virtio 1: no IO BAR anywhere, and its transitional variant is no driver."""
    cat = Catalog.default()
    base, trans, non = (
        cat.device(n) for n in ("vhost-vsock", "vhost-vsock-transitional", "vhost-vsock-non-transitional")
    )
    assert [k.has_io_bar(behind_pcie_port=False) for k in (base, trans, non)] == [False, False, False]
    assert [k.in_qemu for k in (base, trans, non)] == [True, False, True]
    assert [(b.index, b.size, b.kind, b.prefetchable) for b in base.bars] == [
        (1, 4096, "mem32", False),
        (4, 16384, "mem64", True),
    ]
    assert non.bars == base.bars


def test_qemu_since_is_read_and_inherited() -> None:
    """igb carries the release that added it (8.0); other kinds and every virtio variant carry none."""
    cat = Catalog.default()
    assert cat.device("igb").qemu_since == (8, 0)
    assert {k.name for k in cat.devices.values() if k.qemu_since is not None} == {"igb"}
    assert {k.name for k in cat.devices.values() if not k.in_qemu} == {"vhost-vsock-transitional"}


def test_unknown_names_suggest_close_ones() -> None:
    """An unknown model or kind raises UnknownName with a suggestion, not KeyError."""
    with pytest.raises(
        UnknownName, match=r"^unknown controller model 'pcie-rot-port'; did you mean 'pcie-root-port'\?$"
    ):
        Catalog.default().controller("pcie-rot-port")
    with pytest.raises(UnknownName, match=r"^unknown device kind 'e1001'; did you mean 'e1000'\?$"):
        Catalog.default().device("e1001")


def test_catalog_mappings_are_read_only() -> None:
    """The shared default catalog cannot be changed by a caller."""
    with pytest.raises(TypeError, match="read-only"):
        Catalog.default().controllers["x"] = Catalog.default().controller("pci-bridge")  # type: ignore[index]


def test_controllers_accepting() -> None:
    """controllers_accepting lists the models whose bus takes a connect type, in file order."""
    names = [m.name for m in Catalog.default().controllers_accepting(Connect.PCIE_ROOT_PORT)]
    assert names == ["pcie-root", "pcie-expander-bus"]


def test_catalog_from_files_round_trips_the_shipped_files() -> None:
    """Loading the shipped files by path gives a catalog equal to the default."""
    with (
        resources.as_file(SHIPPED.joinpath("controllers.toml")) as c,
        resources.as_file(SHIPPED.joinpath("devices.toml")) as d,
    ):
        loaded = Catalog.from_files(c, d)
    assert dict(loaded.controllers) == dict(Catalog.default().controllers)
    assert dict(loaded.devices) == dict(Catalog.default().devices)


BAD_FILES = [
    (
        "controllers-typo.toml",
        None,
        "controllers-typo.toml: pci-bridge.hotplugg: unknown key (known keys: accepts, aggregate, autoassign, bars, "
        "bus-numbers, connect, description, expander, functions, hotplug, hotplug-slots, identity, io-reserve-devices, "
        "port, qemu, qemu-hotplug, root, slots, target-options)",
        "pci-bridge.hotplugg",
    ),
    (
        "controllers-bad-connect.toml",
        None,
        "controllers-bad-connect.toml: pcie-root-port.connect: unknown connect type 'pcie-root-prot' (known: "
        "dmi-to-pci-bridge, pci-bridge, pci-device, pci-expander-bus, pcie-device, pcie-expander-bus, "
        "pcie-root-port, pcie-switch-downstream-port, pcie-switch-upstream-port, pcie-to-pci-bridge)",
        "pcie-root-port.connect",
    ),
    (
        None,
        "devices-missing-size.toml",
        "devices-missing-size.toml: e1000.io-bar-size: a kind with an IO BAR needs its size in bytes",
        "e1000.io-bar-size",
    ),
    (
        None,
        "devices-wrong-type.toml",
        "devices-wrong-type.toml: e1000.io-bar-size: expected an integer (got a string '64')",
        "e1000.io-bar-size",
    ),
    (
        None,
        "devices-bad-variants.toml",
        "devices-bad-variants.toml: virtio-net.virtio-variants: expected true, false or a list of 'transitional', "
        "'non-transitional' (got ['legacy'])",
        "virtio-net.virtio-variants",
    ),
    (
        None,
        "devices-bad-release.toml",
        "devices-bad-release.toml: igb.qemu-since: expected a QEMU release 'MAJOR.MINOR' (got '8')",
        "igb.qemu-since",
    ),
]


@pytest.mark.parametrize(("controllers", "devices", "message", "key"), BAD_FILES)
def test_bad_catalog_file_is_rejected_naming_file_and_key(
    controllers: str | None, devices: str | None, message: str, key: str
) -> None:
    """A catalog file with a typo'd key, an unknown connect type or a wrong type names the file and the key."""
    with (
        resources.as_file(SHIPPED.joinpath("controllers.toml")) as c,
        resources.as_file(SHIPPED.joinpath("devices.toml")) as d,
    ):
        cpath = DATA / controllers if controllers else c
        dpath = DATA / devices if devices else d
        with pytest.raises(InvalidDescription) as info:
            Catalog.from_files(cpath, dpath)
    bad = DATA / (controllers or devices or "")
    assert str(info.value) == f"{DATA}/{message}"
    assert info.value.source == str(bad)
    assert info.value.key == key


def test_public_names() -> None:
    """The module exports its catalog classes and enums."""
    assert dir(catalog_module) == [
        "Catalog",
        "Connect",
        "ControllerModel",
        "DeviceKind",
        "Hotplug",
        "Integrated",
        "IoBar",
        "TARGET_OPTIONS",
    ]
