"""The element tables of libvirt domain XML: model names, what is not PCI, chipset positions (data only)."""

from __future__ import annotations

from pcitopo.address import PciAddress

_ADDRESS_LIMITS = (
    ("domain", 0xFFFF, "Invalid PCI address domain='0x{v:x}', must be <= 0xFFFF"),
    ("bus", 0xFF, "Invalid PCI address bus='0x{v:x}', must be <= 0xFF"),
    ("slot", 0x1F, "Invalid PCI address slot='0x{v:x}', must be <= 0x1F"),
    ("function", 7, "Invalid PCI address function=0x{v:x}, must be <= 7"),
)

_USER_ALIAS_PREFIX = "ua-"
"""libvirt 9.0 keeps on ``virsh define`` only the ``<alias>`` names with this prefix (checked with virsh define)."""


# -- machine defaults (libvirt 9.0 with QEMU 7.2, checked with virsh define) --------------

_VIRT_ARCHES = ("aarch64", "armv7l", "riscv64", "riscv32")
_PPC_ARCHES = ("ppc64", "ppc64le")
_DEFAULT_MACHINE = {
    "x86_64": "pc",
    "i686": "pc",
    "aarch64": "virt",
    "armv7l": "virt",
    "riscv64": "virt",
    "riscv32": "virt",
    "ppc64": "pseries",
    "ppc64le": "pseries",
}
_VIRTIO_MODELS = {"virtio": "", "virtio-transitional": "-transitional", "virtio-non-transitional": "-non-transitional"}


_NIC_MODELS = {
    "e1000": "e1000",
    "e1000e": "e1000e",
    "igb": "igb",
    "rtl8139": "rtl8139",
    "ne2k_pci": "ne2k_pci",
    "pcnet": "pcnet",
    "vmxnet3": "vmxnet3",
}
_NIC_NOT_PCI = ("spapr-vlan", "usb-net", "smc91c111", "lan9118", "lance", "ne2k_isa")


_USB_MODELS = {
    "piix3-uhci": "piix3-uhci",
    "piix4-uhci": "piix4-uhci",
    "ich9-ehci1": "ich9-ehci1",
    "ich9-uhci1": "ich9-uhci1",
    "ich9-uhci2": "ich9-uhci2",
    "ich9-uhci3": "ich9-uhci3",
    "pci-ohci": "pci-ohci",
    "nec-xhci": "nec-xhci",
    "qemu-xhci": "qemu-xhci",
}
_USB_NOT_PCI = ("none", "qusb1", "qusb2", "pxa27x")
_SCSI_MODELS = {
    "lsilogic": "lsilogic",
    "lsisas1068": "lsisas1068",
    "lsisas1078": "lsisas1078",
    "vmpvscsi": "vmpvscsi",
}
_SCSI_NOT_PCI = ("ibmvscsi", "ncr53c90")


_SOUND_MODELS = {"es1370": "es1370", "ac97": "ac97", "ich6": "ich6", "ich9": "ich9"}
_SOUND_NOT_PCI = ("sb16", "pcspk", "usb", "ich7")


_VIDEO_MODELS = {"vga": "vga", "cirrus": "cirrus", "vmvga": "vmvga", "qxl": "qxl", "bochs": "bochs"}
_VIDEO_NOT_PCI = ("none", "ramfb", "gop")


_INPUT_TYPES = {
    "keyboard": "virtio-keyboard",
    "mouse": "virtio-mouse",
    "tablet": "virtio-tablet",
    "passthrough": "virtio-input-host",
}

_NOT_PCI_ADDRESSES = ("ccw", "virtio-mmio", "spapr-vio", "isa", "unassigned", "s390")

_PCI_MODELS = (
    "pci-root",
    "pcie-root",
    "pci-bridge",
    "dmi-to-pci-bridge",
    "pcie-root-port",
    "pcie-switch-upstream-port",
    "pcie-switch-downstream-port",
    "pci-expander-bus",
    "pcie-expander-bus",
    "pcie-to-pci-bridge",
)


_DISK_CONTROLLERS = {"scsi": 7, "ide": 4, "sata": 6}
"""Disk bus → units per controller in libvirt's default drive address (virDomainDiskDefAssignAddress)."""


_USB2_COMPANIONS = frozenset({"ich9-ehci1", "ich9-uhci1", "ich9-uhci2", "ich9-uhci3"})
"""ICH9 USB2 controllers: one set shares one controller index (and one slot)."""


_USB2_FUNCTION = {"ich9-uhci1": 0, "ich9-uhci2": 1, "ich9-uhci3": 2, "ich9-ehci1": 7}


_CHIPSET = {
    ("q35", "sata", "ahci"): PciAddress(slot=0x1F, function=2),
    ("pc", "ide", "piix3-ide"): PciAddress(slot=1, function=1),
    ("pc", "usb", "piix3-uhci"): PciAddress(slot=1, function=2),
}
"""Chipset positions libvirt forces for controller index 0 (machine, type, kind)."""

_CHIPSET_MESSAGES = {
    ("q35", "sata"): "Primary SATA controller must have PCI address 0:0:1f.2",
    ("pc", "ide"): "Primary IDE controller must have PCI address 0:0:1.1",
    ("pc", "usb"): "PIIX3 USB controller at index 0 must have PCI address 0:0:1.2",
}


# -- export -------------------------------------------------------------------------------------

_TARGET_ATTRS = (
    ("chassis_nr", "chassisNr", "{}"),
    ("chassis", "chassis", "{}"),
    ("port", "port", "0x{:x}"),
    ("bus_nr", "busNr", "{}"),
    ("target_index", "index", "{}"),
)
