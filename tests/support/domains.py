"""Generated libvirt domain XML for the differential tests against real libvirt.

:func:`random_domain` builds one domain from a seeded :class:`random.Random`:
a machine (q35, pc, aarch64 virt, pseries, riscv64 virt), 1 to 240 devices of many kinds,
and sometimes user-declared controllers (root ports with hotplug off, switches,
bridges, expander buses on NUMA nodes with ``<cpu><numa>``). :func:`domains`
gives a fixed list for a seed; :func:`domain_xml` is the Hypothesis strategy.
Grow cases (an addressed domain plus new devices) and partly pinned domains
are made from libvirt's own output by :func:`grow` and :func:`unpin`; domains
complete but for what libvirt adds on its own by :func:`strip_implicit`.

:func:`q35_domain` and the ``NIC`` lines are the small hand-written q35
domains of the fleet and serve tests.

Every domain lists a USB controller (``model='none'`` counts) and a memory
balloon, and q35 lists SATA controller 0, because libvirt invents those when a
domain lists none: that is domain policy, not placement. Every device carries
a user alias (``ua-...``) so that both sides name it alike. Domains use
``type='qemu'`` and the emulator of the Debian packages.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence

import attrs
from hypothesis import strategies as st
from lxml import etree

__all__ = [
    "ARCH",
    "EMULATOR",
    "MACHINES",
    "NIC",
    "NIC_AT_3",
    "NIC_AT_4",
    "PCIE_NIC",
    "Domain",
    "domain_xml",
    "domains",
    "grow",
    "q35_domain",
    "random_domain",
    "strip_implicit",
    "unpin",
]

MACHINES = ("q35", "pc", "aarch64-virt", "pseries", "riscv64-virt")
ARCH = {
    "q35": ("x86_64", "q35"),
    "pc": ("x86_64", "pc"),
    "aarch64-virt": ("aarch64", "virt"),
    "pseries": ("ppc64", "pseries"),
    "riscv64-virt": ("riscv64", "virt"),
}
EMULATOR = {
    "x86_64": "/usr/bin/qemu-system-x86_64",
    "aarch64": "/usr/bin/qemu-system-aarch64",
    "ppc64": "/usr/bin/qemu-system-ppc64",
    "riscv64": "/usr/bin/qemu-system-riscv64",
}


_Q35 = """<domain type='kvm'>
  <name>{name}</name>
{description}  <os><type arch='x86_64' machine='q35'>hvm</type></os>
  <devices>
    <controller type='pci' index='0' model='pcie-root'/>
{devices}
  </devices>
</domain>
"""
NIC = "    <interface type='user'><model type='virtio'/></interface>"
NIC_AT_3 = "    <interface type='user'><model type='e1000e'/><address type='pci' bus='0' slot='3'/></interface>"
NIC_AT_4 = "    <interface type='user'><model type='e1000e'/><address type='pci' bus='0' slot='4'/></interface>"
PCIE_NIC = "    <interface type='user'><model type='e1000e'/></interface>"


def q35_domain(devices: str, *, name: str, description: str | None = None) -> str:
    """A small q35 domain (``type='kvm'``, a pcie-root) with ``devices`` lines: the fleet and serve tests' own."""
    text = "" if description is None else f"  <description>{description}</description>\n"
    return _Q35.format(name=name, description=text, devices=devices)


@attrs.frozen
class Domain:
    """A generated domain: its XML and how it was made (for test ids and failure messages)."""

    name: str
    machine: str
    xml: str
    recipe: str

    def __str__(self) -> str:
        return f"{self.name} ({self.machine}: {self.recipe})"


class _Builder:
    def __init__(self, rng: random.Random, machine: str) -> None:
        self.rng = rng
        self.machine = machine
        self.arch, self.machine_type = ARCH[machine]
        self.x86 = self.arch == "x86_64"
        self.pcie = machine in ("q35", "aarch64-virt", "riscv64-virt")
        self.devices: list[str] = []
        self.controllers: list[str] = []
        self.counts: dict[str, int] = {}
        self.base = 0
        self.next_index = 1
        self.numa_nodes = 0
        self.recipe: list[str] = []
        self.disks = 0
        self.ide = 0
        self.once: set[str] = set()
        self.pinned: set[tuple[int, int]] = set()
        self.ports: list[int] = []

    def alias(self, kind: str) -> str:
        n = self.counts.get(kind, self.base)
        self.counts[kind] = n + 1
        return f"<alias name='ua-{kind}{n}'/>"

    # -- devices ----------------------------------------------------------------------

    def net(self) -> str:
        models = ["virtio", "virtio", "virtio-transitional", "virtio-non-transitional", "e1000"]
        if self.x86:
            models += ["e1000e", "rtl8139"]
        model = self.rng.choice(models)
        return f"<interface type='user'><model type='{model}'/>{self.alias('net')}</interface>"

    def disk(self) -> str:
        n = self.disks
        self.disks += 1
        name = "@DISK@"  # named in document order at the end: libvirt sorts disks by target name
        model = self.rng.choice(["", "", "", " model='virtio-transitional'", " model='virtio-non-transitional'"])
        return (
            f"<disk type='file' device='disk'{model}><source file='/var/lib/libvirt/images/pcitopo-{n}.img'/>"
            f"<target dev='{name}' bus='virtio'/>{self.alias('disk')}</disk>"
        )

    def scsi(self) -> str:
        models = ["virtio-scsi", "virtio-scsi"] + (["lsilogic"] if self.x86 else [])
        model = self.rng.choice(models)
        return f"<controller type='scsi' index='@SCSI@' model='{model}'>{self.alias('scsi')}</controller>"

    def serial_controller(self) -> str:
        return f"<controller type='virtio-serial' index='@VSERIAL@'>{self.alias('vserial')}</controller>"

    def sound(self) -> str:
        return f"<sound model='{self.rng.choice(['ich9', 'ich6', 'ac97', 'es1370'])}'>{self.alias('sound')}</sound>"

    def hostdev(self) -> str:
        n = self.counts.get("hostdev", self.base)
        return (
            "<hostdev mode='subsystem' type='pci' managed='yes'><source>"
            f"<address domain='0x0000' bus='0x{0x40 + n // 32:02x}' slot='0x{n % 32:02x}' function='0x0'/>"
            f"</source>{self.alias('hostdev')}</hostdev>"
        )

    def rng_device(self) -> str:
        return f"<rng model='virtio'><backend model='random'>/dev/urandom</backend>{self.alias('rng')}</rng>"

    def shmem(self) -> str:
        n = self.counts.get("shmem", self.base)
        size = "<size unit='M'>4</size>"
        return f"<shmem name='pcitopo{n}'><model type='ivshmem-plain'/>{size}{self.alias('shmem')}</shmem>"

    def input(self) -> str:
        kind = self.rng.choice(["tablet", "keyboard", "mouse"])
        return f"<input type='{kind}' bus='virtio'>{self.alias('input')}</input>"

    def filesystem(self) -> str:
        n = self.counts.get("fs", self.base)
        return (
            "<filesystem type='mount' accessmode='passthrough'><source dir='/tmp'/>"
            f"<target dir='tag{n}'/>{self.alias('fs')}</filesystem>"
        )

    def serial(self) -> str:
        return f"<serial type='pty'><target type='pci-serial'/>{self.alias('serial')}</serial>"

    def watchdog(self) -> str:
        return f"<watchdog model='i6300esb' action='reset'>{self.alias('watchdog')}</watchdog>"

    def vsock(self) -> str:
        return f"<vsock model='virtio'><cid auto='yes'/>{self.alias('vsock')}</vsock>"

    def sdisk(self, bus: str) -> str:
        """A SATA or SCSI disk, named ``sdX`` in document order; libvirt picks (and adds) its controller."""
        n = self.disks
        self.disks += 1
        return (
            f"<disk type='file' device='disk'><source file='/var/lib/libvirt/images/pcitopo-{n}.img'/>"
            f"<target dev='@SDISK@' bus='{bus}'/>{self.alias('sdisk')}</disk>"
        )

    def sata_disk(self) -> str:
        return self.sdisk("sata")

    def scsi_disk(self) -> str:
        return self.sdisk("scsi")

    def ide_disk(self) -> str:
        """An IDE disk (pc only, one controller: at most four, ``hda``..``hdd``)."""
        n = self.disks
        self.disks += 1
        self.ide += 1
        return (
            f"<disk type='file' device='disk'><source file='/var/lib/libvirt/images/pcitopo-{n}.img'/>"
            f"<target dev='@HDISK@' bus='ide'/>{self.alias('hdisk')}</disk>"
        )

    def channel(self) -> str:
        """A virtio channel or console: libvirt adds virtio-serial controller 0 when none is listed."""
        n = self.counts.get("channel", self.base)
        if self.rng.random() < 0.3:
            return f"<console type='pty'><target type='virtio'/>{self.alias('channel')}</console>"
        return f"<channel type='pty'><target type='virtio' name='org.pcitopo.{n}'/>{self.alias('channel')}</channel>"

    def ivshmem_doorbell(self) -> str:
        n = self.counts.get("shmem", self.base)
        return (
            f"<shmem name='pcitopo{n}'><model type='ivshmem-doorbell'/>"
            f"<server path='/tmp/pcitopo-ivshmem{n}.sock'/>{self.alias('shmem')}</shmem>"
        )

    def vhost_scsi(self) -> str:
        n = self.counts.get("vhostscsi", self.base)
        return (
            "<hostdev mode='subsystem' type='scsi_host'>"
            f"<source protocol='vhost' wwpn='naa.5001405{n:09x}'/>{self.alias('vhostscsi')}</hostdev>"
        )

    def iommu(self) -> str:
        return f"<iommu model='virtio'>{self.alias('iommu')}</iommu>"

    def video(self) -> str:
        if self.machine in ("aarch64-virt", "riscv64-virt"):
            model = "virtio"
        elif self.machine == "pseries":
            model = self.rng.choice(["vga", "virtio"])
        else:
            model = self.rng.choice(["vga", "cirrus", "qxl", "virtio", "bochs"])
        return f"<video><model type='{model}'/>{self.alias('video')}</video>"

    def kinds(self) -> list[tuple[Callable[[], str], int, str]]:
        """(maker, weight, once-key) for the random device mix of this machine."""
        table: list[tuple[Callable[[], str], int, str]] = [
            (self.net, 30, ""),
            (self.disk, 25, ""),
            (self.scsi, 3, ""),
            (self.serial_controller, 2, ""),
            (self.hostdev, 6, ""),
            (self.rng_device, 2, ""),
            (self.input, 3, ""),
            (self.filesystem, 3, ""),
            (self.vsock, 1, "vsock"),
            (self.shmem, 2, ""),
        ]
        table += [(self.channel, 2, ""), (self.scsi_disk, 3, ""), (self.ivshmem_doorbell, 1, "")]
        table.append((self.vhost_scsi, 1, ""))
        if self.x86:
            table += [(self.sound, 3, ""), (self.serial, 2, ""), (self.watchdog, 1, "watchdog")]
            table.append((self.sata_disk, 3, ""))
        if self.machine == "q35":
            table.append((self.iommu, 1, "iommu"))
        if self.machine == "pc":
            table.append((self.ide_disk, 2, "ide"))
        return table

    # -- controllers -------------------------------------------------------------------

    def controller(self, model: str, inner: str = "") -> int:
        index = self.next_index
        self.next_index += 1
        self.controllers.append(f"<controller type='pci' index='{index}' model='{model}'>{inner}</controller>")
        return index

    def declare_controllers(self) -> None:
        rng = self.rng
        if self.pcie:
            for _ in range(rng.choice([0, 0, 1, 2, 4, 9])):
                port = self.controller("pcie-root-port", "<target hotplug='off'/>" if rng.random() < 0.3 else "")
                self.ports.append(port)
                self.recipe.append("root-port")
            if rng.random() < 0.3:
                self.controller("pcie-root-port")
                self.controller("pcie-switch-upstream-port")
                for _ in range(rng.randint(1, 4)):
                    self.controller("pcie-switch-downstream-port")
                self.recipe.append("switch")
            if rng.random() < 0.2:
                self.controller("pcie-root-port")
                self.controller("pcie-to-pci-bridge")
                self.recipe.append("pcie-to-pci-bridge")
            if self.machine == "q35" and rng.random() < 0.15:
                self.controller("dmi-to-pci-bridge")
                self.controller("pci-bridge")
                self.recipe.append("dmi+pci-bridge")
            if self.machine != "riscv64-virt" and rng.random() < 0.2:
                self.numa_nodes = rng.randint(1, 3)
                for node in range(self.numa_nodes):
                    self.controller("pcie-expander-bus", f"<target><node>{node}</node></target>")
                self.recipe.append(f"pxb-pcie x{self.numa_nodes}")
        elif self.machine == "pc":
            for _ in range(rng.choice([0, 0, 0, 1, 2])):
                self.controller("pci-bridge")
                self.recipe.append("pci-bridge")
            if rng.random() < 0.2:
                self.numa_nodes = rng.randint(1, 2)
                for node in range(self.numa_nodes):
                    self.controller("pci-expander-bus", f"<target><node>{node}</node></target>")
                self.recipe.append(f"pxb x{self.numa_nodes}")
        elif rng.random() < 0.3:
            for _ in range(rng.randint(1, 2)):
                self.controller("pci-root", "<model name='spapr-pci-host-bridge'/>")
            self.recipe.append("phb")

    # -- the whole domain -------------------------------------------------------------------

    def build(self, name: str, count: int) -> Domain:
        rng = self.rng
        self.declare_controllers()
        if rng.random() < 0.6:
            self.devices.append(self.video())
        kinds = self.kinds()
        makers = list(kinds)
        weights = [w for _, w, _ in kinds]
        while len(self.devices) < count:
            maker, _, once = rng.choices(makers, weights)[0]
            if once and once in self.once:
                continue
            if once and (once != "ide" or self.ide == 3):
                self.once.add(once)
            self.devices.append(maker())
        rng.shuffle(self.devices)
        self.devices.sort(key=lambda d: not d.startswith("<video"))  # the primary video stays first
        self.pin()
        self.add_heads(random.Random(f"{name}-heads"))
        self.recipe.insert(0, f"{len(self.devices)} devices")
        usb = self.usb()
        if (self.machine != "pseries" or "model='none'" not in usb) and rng.random() < 0.3:
            self.devices.append("<graphics type='vnc'/>")  # pseries adds USB input for graphics
            self.recipe.append("graphics")
        balloon = rng.choice(
            [
                "<memballoon model='none'/>",
                f"<memballoon model='virtio'>{self.alias('balloon')}</memballoon>",
                "",  # libvirt adds a virtio one (not on ARM virt)
            ]
        )
        sata = "<controller type='sata' index='0'/>" if self.machine == "q35" and rng.random() < 0.5 else ""
        body = _name_disks("".join([usb, sata, *self.controllers, *self.devices, balloon]), 0)
        return Domain(name, self.machine, self.document(name, body), ", ".join(self.recipe))

    def add_heads(self, rng: random.Random) -> None:
        """Sometimes more video heads on x86 after the primary (libvirt takes qxl and virtio as secondaries).

        A separate random source, so that the rest of every domain stays what
        the seed made it before heads were drawn.
        """
        if not self.x86 or not self.devices or not self.devices[0].startswith("<video") or rng.random() >= 0.5:
            return
        for _ in range(rng.randint(1, 2)):
            model = rng.choice(["qxl", "virtio"])
            self.devices.insert(rng.randint(1, len(self.devices)), f"<video><model type='{model}'/></video>")
        self.recipe.append("heads")

    # -- pinned addresses -------------------------------------------------------------------

    def address(self, bus: int, slot: int, function: int = 0, multifunction: str = "") -> str:
        self.pinned.add((bus, slot))
        multi = f" multifunction='{multifunction}'" if multifunction else ""
        return (
            f"<address type='pci' domain='0x0000' bus='0x{bus:02x}' slot='0x{slot:02x}'"
            f" function='0x{function:x}'{multi}/>"
        )

    def free_root_slot(self) -> int | None:
        """A root bus slot no built-in or pinned device uses (pc: from 3; q35: not the ICH9 functions)."""
        low = {"pc": 3, "q35": 2}.get(self.machine, 1)
        top = 0x1E if self.machine == "q35" else 0x1F
        free = [s for s in range(low, top + 1) if (0, s) not in self.pinned]
        return self.rng.choice(free) if free else None

    def pinned_net(self, address: str) -> str:
        model = self.rng.choice(["virtio", "virtio-non-transitional"])
        return f"<interface type='user'><model type='{model}'/>{self.alias('net')}{address}</interface>"

    def pinned_hostdev(self, address: str) -> str:
        return self.hostdev().replace("</hostdev>", f"{address}</hostdev>")

    def pin(self) -> None:
        """Sometimes add devices the user addressed: single ones, a multifunction group, one on a bus beyond."""
        rng = self.rng
        if len(self.devices) > 150:
            return  # pinned root-bus slots would leave libvirt none for the bridges a big domain needs
        if rng.random() < 0.3:
            for _ in range(rng.randint(1, 4)):
                slot = self.free_root_slot()
                if slot is None:
                    break
                if rng.random() < 0.5:
                    self.devices.append(self.pinned_net(self.address(0, slot)))
                elif not self.pcie:
                    self.devices.append(self.pinned_hostdev(self.address(0, slot)))
                elif self.ports:
                    # on PCI Express machines a host device goes on a root port the user declared (pcitopo
                    # does not yet allow it on the root bus, where libvirt does: issue 10, item 4)
                    self.devices.append(self.pinned_hostdev(self.address(self.ports.pop(), 0)))
            self.recipe.append("pinned")
        if rng.random() < 0.15:
            slot = self.free_root_slot()
            if slot is not None:
                functions = rng.sample(range(1, 8), rng.randint(1, 3))
                multi = rng.choice(["on", ""])  # libvirt sets it on function 0 when the user did not
                group = [self.pinned_net(self.address(0, slot, 0, multi))]
                group += [self.pinned_net(self.address(0, slot, f)) for f in functions]
                rng.shuffle(group)
                self.devices += group
                self.recipe.append(f"multifunction{'' if multi else ' (implied)'}")
        if self.machine in ("pc", "pseries") and rng.random() < 0.1:
            bus = self.next_index + rng.randint(0, 2)
            self.devices.append(self.pinned_net(self.address(bus, 1)))
            self.recipe.append(f"pinned on bus {bus}")

    def usb(self) -> str:
        """USB controller 0: none, a model, none listed (libvirt's default), or ICH9 USB2 companion sets."""
        choices = ["<controller type='usb' index='0' model='none'/>", "", "<controller type='usb' index='0'/>"]
        if self.machine != "pseries":
            choices.append(f"<controller type='usb' index='0' model='qemu-xhci'>{self.alias('usb')}</controller>")
        if self.machine == "pc":
            choices.append(f"<controller type='usb' index='0' model='piix3-uhci'>{self.alias('usb')}</controller>")
        if self.machine == "pseries":
            choices.append(f"<controller type='usb' index='0' model='pci-ohci'>{self.alias('usb')}</controller>")
        if self.x86:
            choices.append("usb2")
        choice = self.rng.choice(choices)
        if choice != "usb2":
            return choice
        sets = self.rng.choice([1, 1, 2])
        members = [
            f"<controller type='usb' index='{i}' model='{model}'>{self.alias('usb')}</controller>"
            for i in range(sets)
            for model in ("ich9-ehci1", "ich9-uhci1", "ich9-uhci2", "ich9-uhci3")
        ]
        self.rng.shuffle(members)  # listed out of order, sets interleaved: libvirt groups them by index
        self.recipe.append(f"usb2 x{sets}")
        return "".join(members)

    def document(self, name: str, body: str) -> str:
        numa = ""
        vcpu = max(1, self.numa_nodes)
        if self.numa_nodes:
            cells = "".join(
                f"<cell id='{n}' cpus='{n}' memory='{262144 // self.numa_nodes}' unit='KiB'/>"
                for n in range(self.numa_nodes)
            )
            numa = f"<cpu><numa>{cells}</numa></cpu>"
        memory = 262144
        features = "<features><acpi/></features>" if self.x86 else ""
        return (
            f"<domain type='qemu'><name>{name}</name><memory unit='KiB'>{memory}</memory><vcpu>{vcpu}</vcpu>"
            f"<os><type arch='{self.arch}' machine='{self.machine_type}'>hvm</type></os>{features}{numa}"
            f"<devices><emulator>{EMULATOR[self.arch]}</emulator>{body}</devices></domain>"
        )


def _name_disks(text: str, first: int) -> str:
    """Number in document order what libvirt keeps sorted: disk target names, controller indexes per type."""
    for placeholder, name in (
        ("@DISK@", lambda i: "vd" + _letters(first + i)),
        ("@SDISK@", lambda i: "sd" + _letters(first + i)),
        ("@HDISK@", lambda i: "hd" + _letters(i)),
        ("@SCSI@", str),
        ("@VSERIAL@", str),
    ):
        parts = text.split(placeholder)
        out = [parts[0]]
        for i, part in enumerate(parts[1:]):
            out.append(name(i) + part)
        text = "".join(out)
    return text


def _letters(n: int) -> str:
    """Disk name suffixes: a..z, aa..zz."""
    text = ""
    n += 1
    while n:
        n, r = divmod(n - 1, 26)
        text = chr(97 + r) + text
    return text


def random_domain(rng: random.Random, *, name: str = "pcitopo", machine: str | None = None) -> Domain:
    """One random domain; sizes lean small but reach 240 devices."""
    chosen = machine or rng.choice(MACHINES)
    limit = 120 if chosen in ("pc", "pseries") else 240
    count = min(limit, rng.choice([1, 2, 3, 5, 8, 12, 20, 30, 45, 70, 100, 150, 200, 240]))
    return _Builder(rng, chosen).build(name, count)


def domains(seed: int, count: int) -> list[Domain]:
    """``count`` domains from ``seed``, the same on every run."""
    rng = random.Random(seed)
    return [random_domain(rng, name=f"gen{seed}-{i}") for i in range(count)]


def domain_xml(machines: Sequence[str] = MACHINES) -> st.SearchStrategy[Domain]:
    """Hypothesis strategy: a random domain (shrinks through the seed)."""
    return st.builds(
        lambda seed, machine: random_domain(random.Random(seed), name=f"hyp{seed}", machine=machine),
        st.integers(min_value=0, max_value=2**32 - 1),
        st.sampled_from(list(machines)),
    )


def grow(addressed_xml: str, rng: random.Random, machine: str, count: int) -> str:
    """An addressed domain (libvirt's output) with ``count`` new devices without addresses."""
    root = etree.fromstring(addressed_xml.encode("utf-8"))
    devices = root.find("devices")
    assert devices is not None
    builder = _Builder(rng, machine)
    builder.base = 1000
    builder.disks = 1000
    own_names = (builder.scsi, builder.serial_controller, builder.scsi_disk, builder.sata_disk, builder.ide_disk)
    kinds = [k for k in builder.kinds() if not k[2] and k[0] not in own_names]
    for _ in range(count):
        maker = rng.choices([k[0] for k in kinds], [k[1] for k in kinds])[0]
        devices.append(etree.fromstring(_name_disks(maker(), 26 * 27 + builder.disks)))
    return etree.tostring(root, encoding="unicode")


def unpin(addressed_xml: str, rng: random.Random, fraction: float = 0.3) -> str:
    """libvirt's output with the addresses of some endpoint devices removed (the rest stay pinned)."""
    root = etree.fromstring(addressed_xml.encode("utf-8"))
    for el in root.iterfind("devices/*"):
        if el.tag == "controller" and el.get("type") == "pci":
            continue
        if el.tag == "controller" and el.get("type") in ("sata", "ide") and el.get("index") == "0":
            continue
        address = el.find("address")
        if address is not None and address.get("type") == "pci" and rng.random() < fraction:
            el.remove(address)
    return etree.tostring(root, encoding="unicode")


DEFAULT_USB = {"q35": "qemu-xhci", "pc": "piix3-uhci", "pseries": "qemu-xhci"}
"""The USB controller libvirt 9.0 adds as index 0 when a domain lists none (none on ARM and RISC-V virt)."""
BALLOON = ("q35", "pc", "pseries", "riscv64-virt")
"""The machines libvirt 9.0 adds a virtio memballoon to when a domain has no ``<memballoon>``."""


def strip_implicit(addressed_xml: str, rng: random.Random, machine: str) -> tuple[str, list[str]]:
    """libvirt's output without some of what libvirt adds on its own, and what was taken out.

    Every device keeps its address; what goes is what ``virsh define`` would
    add again: the default USB controller 0, the virtio memballoon, the video
    of a domain with graphics and one video, the virtio-serial and SCSI
    controllers channels and disks use, the chipset address of SATA (q35) or
    IDE (pc) controller 0, and ``multifunction='on'`` libvirt sets on function 0.
    """
    root = etree.fromstring(addressed_xml.encode("utf-8"))
    devices = root.find("devices")
    assert devices is not None
    children = list(devices)
    taken: list[str] = []
    # a third of the domains lose only what libvirt puts at a fixed place (nothing is left to place)
    fixed_only = rng.random() < 0.35

    def take(el: etree._Element, what: str, *, fixed: bool = False) -> None:
        if (fixed or not fixed_only) and rng.random() < 0.7:
            devices.remove(el)
            taken.append(what)

    usb = [c for c in children if c.tag == "controller" and c.get("type") == "usb"]
    if len(usb) == 1 and usb[0].get("index") == "0" and usb[0].get("model") == DEFAULT_USB.get(machine):
        take(usb[0], "usb", fixed=machine == "pc")
    balloon = [c for c in children if c.tag == "memballoon"]
    if machine in BALLOON and len(balloon) == 1 and balloon[0].get("model") == "virtio":
        take(balloon[0], "memballoon")
    videos = [c for c in children if c.tag == "video"]
    if len(videos) == 1 and any(c.tag == "graphics" for c in children):
        take(videos[0], "video")
    for c in children:
        ctype = c.get("type")
        if c.tag == "controller" and ctype in ("virtio-serial", "scsi"):
            take(c, f"{ctype} {c.get('index')}")
        chipset = {"q35": "sata", "pc": "ide"}.get(machine)
        address = c.find("address")
        chipset_address = c.tag == "controller" and ctype == chipset and c.get("index") == "0"
        if chipset_address and address is not None and rng.random() < 0.7:
            c.remove(address)
            taken.append(f"{ctype} address")
    for address in root.iterfind("devices/*/address"):
        if address.get("type") == "pci" and address.get("multifunction") == "on" and rng.random() < 0.7:
            del address.attrib["multifunction"]
            taken.append("multifunction")
    return etree.tostring(root, encoding="unicode"), taken
