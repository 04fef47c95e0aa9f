"""Generate the benchmark inputs in ``benchmarks/data/`` once, from a fixed seed.

The inputs are kept in the repository; this script documents how they were
made and can recreate them byte for byte (``python benchmarks/make_data.py``).
Each JSON file describes one planning problem::

    {"name": ..., "description": ..., "machine": "q35", "numa_nodes": 4,
     "policy": "hotplug+numa", "series": null,
     "devices": [{"id": "nvme17", "kind": "nvme", "hotplug": "required",
                  "numa_node": 2, "numa_strict": true}, ...]}

``hotplug``, ``numa_node`` and ``numa_strict`` are left out where a device does
not say. ``assign-q35-150.xml`` is a libvirt domain without PCI addresses for
the end-to-end ``assign`` benchmark and for ``virsh define`` beside it;
``start-q35-9.xml`` and ``start-q35-171.xml`` are the domains of the start-up
benchmarks (whole processes: ``pcitopo assign`` against ``virsh define``).
``fleet-q35-15/`` holds 250 small guests (15 PCI devices each) for fleet mode.

Device kinds are chosen without IO BARs on purpose: on x86 every bridge or
port with an IO-BAR device below it takes a 4 KiB window of a 64 KiB budget
(about 14 windows with ACPI), so 800 conventional devices with IO BARs cannot
be planned at all. That is a property of the hardware, documented in
``benchmarks/README.md``, not something a benchmark should trip over.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

DATA = Path(__file__).resolve().parent / "data"
SEED = 20240607

PCIE_KINDS = ("virtio-net", "virtio-blk", "nvme", "vfio-pci")
"""PCI Express endpoints without an IO BAR behind a PCIe port (virtio is modern-only there)."""
CONVENTIONAL_KINDS = ("i6300esb", "ich9", "virtio-crypto", "pci-ohci")
"""Conventional PCI endpoints without an IO BAR."""
PSERIES_KINDS = ("virtio-net", "virtio-blk", "virtio-scsi", "i6300esb")

GROWTH_SIZES = (10, 20, 50, 100, 200, 500, 1000, 2000)


def _device(
    ident: str, kind: str, *, hotplug: str | None = None, numa_node: int | None = None, strict: bool = False
) -> dict[str, Any]:
    d: dict[str, Any] = {"id": ident, "kind": kind}
    if hotplug is not None:
        d["hotplug"] = hotplug
    if numa_node is not None:
        d["numa_node"] = numa_node
        d["numa_strict"] = strict
    return d


def _kinds(rng: random.Random, pool: tuple[str, ...], n: int) -> list[str]:
    """``n`` kinds drawn from ``pool``, every kind at least once when ``n`` allows."""
    kinds = [pool[i % len(pool)] for i in range(n)]
    rng.shuffle(kinds)
    return kinds


def _ids(kinds: list[str], prefix: str = "") -> list[str]:
    counts: dict[str, int] = {}
    out = []
    for k in kinds:
        counts[k] = counts.get(k, 0) + 1
        out.append(f"{prefix}{k}-{counts[k] - 1}")
    return out


def hotplug_pcie(rng: random.Random, n: int, numa_nodes: int) -> list[dict[str, Any]]:
    """``n`` hotpluggable PCIe endpoints, spread evenly over the NUMA nodes (strict) if any."""
    kinds = _kinds(rng, PCIE_KINDS, n)
    nodes = [i % numa_nodes for i in range(n)] if numa_nodes else [None] * n
    rng.shuffle(nodes)
    return [
        _device(ident, kind, hotplug="required", numa_node=node, strict=node is not None)
        for ident, kind, node in zip(_ids(kinds), kinds, nodes, strict=True)
    ]


def mixed(rng: random.Random, n_pcie: int, n_conventional: int) -> list[dict[str, Any]]:
    """Hotpluggable PCIe endpoints and conventional PCI endpoints (policy default needs), interleaved."""
    pcie_kinds = _kinds(rng, PCIE_KINDS, n_pcie)
    conv_kinds = _kinds(rng, CONVENTIONAL_KINDS, n_conventional)
    pcie = [_device(i, k, hotplug="required") for i, k in zip(_ids(pcie_kinds), pcie_kinds, strict=True)]
    conv = [_device(i, k) for i, k in zip(_ids(conv_kinds), conv_kinds, strict=True)]
    devices = pcie + conv
    rng.shuffle(devices)
    return devices


def conventional(rng: random.Random, n: int, pool: tuple[str, ...], numa_nodes: int = 0) -> list[dict[str, Any]]:
    kinds = _kinds(rng, pool, n)
    nodes = [i % numa_nodes for i in range(n)] if numa_nodes else [None] * n
    rng.shuffle(nodes)
    return [
        _device(ident, kind, numa_node=node, strict=node is not None)
        for ident, kind, node in zip(_ids(kinds), kinds, nodes, strict=True)
    ]


def cases() -> list[dict[str, Any]]:
    rng = random.Random(SEED)
    out: list[dict[str, Any]] = []

    def case(name: str, description: str, machine: str, devices: list[dict[str, Any]], **kw: Any) -> None:
        out.append(
            {
                "name": name,
                "description": description,
                "machine": machine,
                "numa_nodes": kw.get("numa_nodes", 0),
                "policy": kw.get("policy", "hotplug"),
                "series": kw.get("series"),
                "target_ms": kw.get("target_ms"),
                "devices": devices,
            }
        )

    case(
        "q35-numa4-240",
        "q35, 4 NUMA nodes, 240 hotpluggable PCIe endpoints, 60 per node (strict): the tightest packing",
        "q35",
        hotplug_pcie(rng, 240, 4),
        numa_nodes=4,
        policy="hotplug+numa",
        target_ms=20,
    )
    case(
        "q35-numa1-240",
        "q35, 1 NUMA node, 240 hotpluggable PCIe endpoints on node 0 (strict)",
        "q35",
        hotplug_pcie(rng, 240, 1),
        numa_nodes=1,
        policy="hotplug+numa",
    )
    case("q35-240", "q35, no NUMA, 240 hotpluggable PCIe endpoints", "q35", hotplug_pcie(rng, 240, 0))
    case(
        "q35-mixed-1000",
        "q35, 1,000 endpoints: 200 hotpluggable PCIe + 800 conventional PCI behind bridges",
        "q35",
        mixed(rng, 200, 800),
        target_ms=30,
    )
    for n in GROWTH_SIZES:
        case(
            f"growth-1to4-{n}",
            f"q35, {n} endpoints, 1 hotpluggable PCIe : 4 conventional PCI (the mix of q35-mixed-1000)",
            "q35",
            mixed(rng, n // 5, n - n // 5),
            series="growth 1:4",
        )
    for n in GROWTH_SIZES:
        case(
            f"growth-1to19-{n}",
            f"q35, {n} endpoints, 1 hotpluggable PCIe : 19 conventional PCI (fits 256 bus numbers at 2,000)",
            "q35",
            mixed(rng, n // 20, n - n // 20),
            series="growth 1:19",
        )
    for n in (100, 500):
        case(
            f"pc-bridges-{n}",
            f"pc (i440fx), {n} conventional PCI endpoints without IO BARs, pci-bridges past 31",
            "pc",
            conventional(rng, n, CONVENTIONAL_KINDS),
        )
    case(
        "pseries-numa4-200",
        "pseries, 4 NUMA nodes, 200 virtio and conventional endpoints, one PHB set per node",
        "pseries",
        conventional(rng, 200, PSERIES_KINDS, numa_nodes=4),
        numa_nodes=4,
        policy="hotplug+numa",
    )
    for n in (100, 500):
        case(
            f"pseries-{n}",
            f"pseries, {n} virtio and conventional endpoints, no NUMA",
            "pseries",
            conventional(rng, n, PSERIES_KINDS),
        )
    # aarch64 virt has no x86 IO-port budget, so 1,000 and 2,000 mixed endpoints fit there, where on
    # q35 SeaBIOS's 14 IO windows (one for every SHPC bridge) stop the bridge trees at about 480
    # conventional endpoints. Drawn last, so that the files above stay byte for byte what they were.
    case(
        "virt-mixed-1000",
        "aarch64 virt, 1,000 endpoints: 200 hotpluggable PCIe + 800 conventional PCI behind bridges",
        "aarch64-virt",
        mixed(rng, 200, 800),
        target_ms=30,
    )
    for n in GROWTH_SIZES:
        case(
            f"growth-virt-1to19-{n}",
            f"aarch64 virt, {n} endpoints, 1 hotpluggable PCIe : 19 conventional PCI",
            "aarch64-virt",
            mixed(rng, n // 20, n - n // 20),
            series="growth virt 1:19",
        )
    return out


def assign_domain(n_nics: int = 70, n_disks: int = 70, n_sound: int = 10) -> str:
    """A q35 libvirt domain with ``n_nics + n_disks + n_sound`` PCI devices (150 by default) and no PCI addresses."""
    n = n_nics + n_disks + n_sound
    lines = [
        f"<!-- Generated by benchmarks/make_data.py: a q35 guest with {n} PCI devices and no addresses. -->",
        "<domain type='kvm'>",
        f"  <name>bench-assign-{n}</name>",
        "  <memory unit='GiB'>4</memory>",
        "  <vcpu>2</vcpu>",
        "  <os>",
        "    <type arch='x86_64' machine='pc-q35-7.2'>hvm</type>",
        "  </os>",
        "  <features>",
        "    <acpi/>",
        "  </features>",
        "  <devices>",
        "    <emulator>/usr/bin/qemu-system-x86_64</emulator>",
        "    <controller type='pci' index='0' model='pcie-root'/>",
    ]
    for i in range(n_disks):
        dev = "vd" + (chr(ord("a") + i) if i < 26 else chr(ord("a") + i // 26 - 1) + chr(ord("a") + i % 26))
        lines += [
            "    <disk type='file' device='disk'>",
            "      <driver name='qemu' type='raw'/>",
            f"      <source file='/var/lib/libvirt/images/bench-{i}.raw'/>",
            f"      <target dev='{dev}' bus='virtio'/>",
            f"      <alias name='ua-disk{i}'/>",
            "    </disk>",
        ]
    for i in range(n_nics):
        lines += [
            "    <interface type='user'>",
            f"      <mac address='52:54:00:00:{i // 256:02x}:{i % 256:02x}'/>",
            "      <model type='virtio'/>",
            f"      <alias name='ua-net{i}'/>",
            "    </interface>",
        ]
    for i in range(n_sound):
        lines += [
            "    <sound model='ich9'>",
            f"      <alias name='ua-sound{i}'/>",
            "    </sound>",
        ]
    lines += [
        "    <memballoon model='none'/>",
        "  </devices>",
        "</domain>",
        "",
    ]
    return "\n".join(lines)


FLEET_DOMAINS = 250
"""Distinct domains in ``data/fleet-q35-15/``; the fleet benchmark copies them to make a larger fleet."""


def fleet_domain(rng: random.Random, n: int) -> str:
    """A small libvirt guest with 15 PCI devices and no PCI addresses (q35 mostly, some pc).

    Always a USB controller, a memballoon, a virtio RNG and a video device;
    then 11 more drawn from virtio disks, virtio and e1000e NICs, virtio-scsi
    controllers, ICH9 sound cards and virtio tablets, as a host's fleet of
    ordinary guests would have.
    """
    machine = "pc-q35-7.2" if rng.random() < 0.8 else "pc-i440fx-7.2"
    q35 = machine.startswith("pc-q35")
    lines = [
        "<!-- Generated by benchmarks/make_data.py: a fleet guest with 15 PCI devices and no addresses. -->",
        "<domain type='kvm'>",
        f"  <name>fleet-{n:04d}</name>",
        f"  <memory unit='GiB'>{rng.choice((1, 2, 4, 8))}</memory>",
        f"  <vcpu>{rng.choice((1, 2, 4))}</vcpu>",
        "  <os>",
        f"    <type arch='x86_64' machine='{machine}'>hvm</type>",
        "  </os>",
        "  <devices>",
        "    <emulator>/usr/bin/qemu-system-x86_64</emulator>",
        f"    <controller type='pci' index='0' model='{'pcie-root' if q35 else 'pci-root'}'/>",
        f"    <controller type='usb' index='0' model='{'qemu-xhci' if q35 else 'piix3-uhci'}'/>",
    ]
    disks = nics = scsi = 0
    for kind in sorted(rng.choices(("disk", "nic", "nic-e1000e", "scsi", "sound", "tablet"), k=11)):
        if kind == "disk":
            lines += [
                "    <disk type='file' device='disk'>",
                "      <driver name='qemu' type='qcow2'/>",
                f"      <source file='/var/lib/libvirt/images/fleet-{n:04d}-{disks}.qcow2'/>",
                f"      <target dev='vd{chr(ord('a') + disks)}' bus='virtio'/>",
                "    </disk>",
            ]
            disks += 1
        elif kind.startswith("nic"):
            model = "e1000e" if kind == "nic-e1000e" else "virtio"
            lines += [
                "    <interface type='network'>",
                f"      <mac address='52:54:00:{n // 256:02x}:{n % 256:02x}:{nics:02x}'/>",
                "      <source network='default'/>",
                f"      <model type='{model}'/>",
                "    </interface>",
            ]
            nics += 1
        elif kind == "scsi":
            lines.append(f"    <controller type='scsi' index='{scsi}' model='virtio-scsi'/>")
            scsi += 1
        elif kind == "sound":
            lines.append("    <sound model='ich9'/>")
        else:
            lines.append("    <input type='tablet' bus='virtio'/>")
    lines += [
        "    <video>",
        "      <model type='virtio' heads='1' primary='yes'/>",
        "    </video>",
        "    <memballoon model='virtio'/>",
        "    <rng model='virtio'>",
        "      <backend model='random'>/dev/urandom</backend>",
        "    </rng>",
        "  </devices>",
        "</domain>",
        "",
    ]
    return "\n".join(lines)


def small_domain() -> str:
    """A q35 server guest with 9 PCI devices and no PCI addresses, as a person would write it."""
    return """<!-- Generated by benchmarks/make_data.py: a small q35 guest with 9 PCI devices and no addresses. -->
<domain type='kvm'>
  <name>bench-start-9</name>
  <memory unit='GiB'>4</memory>
  <vcpu>2</vcpu>
  <os>
    <type arch='x86_64' machine='pc-q35-7.2'>hvm</type>
  </os>
  <features>
    <acpi/>
  </features>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2'/>
      <source file='/var/lib/libvirt/images/bench-root.qcow2'/>
      <target dev='vda' bus='virtio'/>
    </disk>
    <disk type='file' device='disk'>
      <driver name='qemu' type='raw'/>
      <source file='/var/lib/libvirt/images/bench-data.raw'/>
      <target dev='vdb' bus='virtio'/>
    </disk>
    <controller type='pci' index='0' model='pcie-root'/>
    <controller type='usb' index='0' model='qemu-xhci'/>
    <controller type='sata' index='0'/>
    <controller type='virtio-serial' index='0'/>
    <interface type='user'>
      <mac address='52:54:00:20:00:01'/>
      <model type='virtio'/>
    </interface>
    <channel type='unix'>
      <target type='virtio' name='org.qemu.guest_agent.0'/>
    </channel>
    <graphics type='vnc' port='-1' autoport='yes'/>
    <video>
      <model type='virtio' heads='1' primary='yes'/>
    </video>
    <memballoon model='virtio'/>
    <rng model='virtio'>
      <backend model='random'>/dev/urandom</backend>
    </rng>
  </devices>
</domain>
"""


def _dump(case: dict[str, Any]) -> str:
    """JSON with one device a line, so the files diff and read well."""
    head = {k: v for k, v in case.items() if k != "devices"}
    lines = ["{"] + [f"  {json.dumps(k)}: {json.dumps(v)}," for k, v in head.items()] + ['  "devices": [']
    devices = [f"    {json.dumps(d)}" for d in case["devices"]]
    return "\n".join([*lines, ",\n".join(devices), "  ]", "}", ""])


def main() -> None:
    DATA.mkdir(exist_ok=True)
    for c in cases():
        path = DATA / f"{c['name']}.json"
        path.write_text(_dump(c), encoding="utf-8")
    (DATA / "assign-q35-150.xml").write_text(assign_domain(), encoding="utf-8")
    (DATA / "start-q35-9.xml").write_text(small_domain(), encoding="utf-8")
    (DATA / "start-q35-171.xml").write_text(assign_domain(n_nics=80, n_disks=80, n_sound=11), encoding="utf-8")
    fleet = DATA / "fleet-q35-15"
    fleet.mkdir(exist_ok=True)
    for old in fleet.glob("*.xml"):
        old.unlink()
    rng = random.Random(SEED + 15)
    for n in range(FLEET_DOMAINS):
        (fleet / f"fleet-{n:04d}.xml").write_text(fleet_domain(rng, n), encoding="utf-8")


if __name__ == "__main__":
    main()
