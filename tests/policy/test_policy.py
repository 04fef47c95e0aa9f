"""Policies: built-ins, composition, TOML files, per-device overrides."""

from __future__ import annotations

from pathlib import Path

import pytest

from pcitopo.devices import Device, HotplugNeed, Needs
from pcitopo.errors import InvalidInput, UnknownName
from pcitopo.policy import BUILTIN_POLICIES, Override, Policy


@pytest.mark.parametrize(
    ("name", "hotplug", "spare", "integrated", "numa", "ordered", "libvirt"),
    [
        ("hotplug", "preferred", 1, False, False, False, False),
        ("minimal", "any", 0, True, False, False, False),
        ("numa", "preferred", 1, False, True, False, False),
        ("ordered", "preferred", 1, False, False, True, False),
        ("libvirt", "any", 1, False, False, False, True),
        ("minimal+numa", "any", 0, True, True, False, False),
        ("hotplug+numa+ordered", "preferred", 1, False, True, True, False),
    ],
)
def test_builtin_and_composed_policies(
    name: str, hotplug: str, spare: int, integrated: bool, numa: bool, ordered: bool, libvirt: bool
) -> None:
    """Each built-in sets its own fields; ``+`` keeps what earlier parts set unless a later one changes it."""
    p = Policy.named(name)
    assert (p.name, p.hotplug.value, p.spare_ports, p.prefer_integrated, p.numa, p.ordered, p.libvirt) == (
        name,
        hotplug,
        spare,
        integrated,
        numa,
        ordered,
        libvirt,
    )


def test_unknown_policy_names_the_known_ones() -> None:
    """A typo gets an UnknownName listing the built-ins."""
    with pytest.raises(UnknownName) as info:
        Policy.named("hotplgu")
    assert str(info.value) == "unknown policy 'hotplgu'; did you mean 'hotplug'?"
    assert set(BUILTIN_POLICIES) == {"hotplug", "minimal", "numa", "ordered", "libvirt"}


def test_needs_for_applies_defaults_then_overrides() -> None:
    """A device's own need wins over the default; an override matching its alias wins over both."""
    p = Policy(overrides=(Override("ua-win*", hotplug=HotplugNeed.FORBIDDEN, numa_node=1),))
    plain = Device("ua-net0", "virtio-net")
    own = Device("ua-net1", "virtio-net", needs=Needs(hotplug=HotplugNeed.REQUIRED))
    matched = Device("ua-win0", "virtio-net", needs=Needs(hotplug=HotplugNeed.REQUIRED))
    assert p.needs_for(plain).hotplug is HotplugNeed.PREFERRED
    assert p.needs_for(own).hotplug is HotplugNeed.REQUIRED
    assert (p.needs_for(matched).hotplug, p.needs_for(matched).numa_node) == (HotplugNeed.FORBIDDEN, 1)


def test_policy_file_with_defaults_weights_and_device_rules(tmp_path: Path) -> None:
    """A TOML policy file sets fields, weights and per-device rules on top of a base policy."""
    path = tmp_path / "windows.toml"
    path.write_text(
        """
base = "hotplug"
hotplug = "any"
spare-ports = 4
hotplug-off-occupied = true

[weights]
spare-ports = 500

[[device]]
match = "ua-gpu*"
numa-node = 1
numa-strict = true
""",
        encoding="utf-8",
    )
    p = Policy.from_toml(path)
    assert (p.name, p.hotplug, p.spare_ports, p.hotplug_off_occupied) == ("windows", HotplugNeed.ANY, 4, True)
    assert p.weights["spare-ports"] == 500
    assert p.weights["hotplug"] == 100
    assert p.overrides == (Override("ua-gpu*", numa_node=1, numa_strict=True),)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('base = "fast"', "policy: unknown policy 'fast'; known: hotplug, libvirt, minimal, numa, ordered"),
        ("spare_ports = -1", "policy 'hotplug+custom': spare_ports must be >= 0 (got -1)"),
        ("spare-ports = 'two'", "policy: spare-ports must be a int (got 'two')"),
        ("hotplug = 'maybe'", "policy: hotplug must be one of any, required, preferred, forbidden (got 'maybe')"),
        ("colour = 'blue'", "policy: unknown policy key 'colour'"),
        ("[[device]]\nhotplug = 'any'", 'policy: device[0]: each [[device]] rule needs match = "<alias pattern>"'),
        ("[[device]]\nmatch = 'x'\nnuma = 1", "policy: device[0]: unknown key 'numa'"),
        ("[weights]\nspeed = 3", "policy 'hotplug+custom': unknown soft constraint 'speed' in weights"),
    ],
)
def test_bad_policy_data_is_refused_with_the_key_named(text: str, message: str) -> None:
    """Every mistake in a policy file is an InvalidInput that names the key."""
    import tomllib

    with pytest.raises(InvalidInput) as info:
        Policy.from_mapping(tomllib.loads(text))
    assert str(info.value).startswith(message)


def test_unreadable_policy_file(tmp_path: Path) -> None:
    """A missing file is an InvalidInput naming the path, not an OSError."""
    missing = tmp_path / "nope.toml"
    with pytest.raises(InvalidInput) as info:
        Policy.from_toml(missing)
    assert str(info.value).startswith(f"{missing}: cannot read policy file")
