"""Policies: built-ins, composition, TOML files, per-device overrides."""

from __future__ import annotations

from pathlib import Path

import pytest

from pcitopo.devices import Device, HotplugNeed, Needs
from pcitopo.errors import InvalidPolicy, UnknownName
from pcitopo.policy import BUILTIN_POLICIES, Override, Policy


@pytest.mark.parametrize(
    ("name", "hotplug", "spare", "integrated", "numa", "ordered", "libvirt"),
    [
        ("hotplug", "required", 1, False, False, False, False),
        ("minimal", "any", 0, True, False, False, False),
        ("numa", "required", 1, False, True, False, False),
        ("ordered", "required", 1, False, False, True, False),
        ("libvirt", "any", 1, False, False, False, True),
        ("minimal+numa", "any", 0, True, True, False, False),
        ("hotplug+numa+ordered", "required", 1, False, True, True, False),
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
    own = Device("ua-net1", "virtio-net", needs=Needs(hotplug=HotplugNeed.PREFERRED))
    matched = Device("ua-win0", "virtio-net", needs=Needs(hotplug=HotplugNeed.REQUIRED))
    assert p.needs_for(plain).hotplug is HotplugNeed.REQUIRED
    assert p.needs_for(own).hotplug is HotplugNeed.PREFERRED
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
    ("text", "key", "message"),
    [
        (
            'base = "fast"',
            "base",
            "policy: base: unknown policy 'fast'; known: hotplug, libvirt, minimal, numa, ordered",
        ),
        ("spare_ports = -1", "spare_ports", "policy: spare_ports: must be >= 0 (got -1)"),
        ("spare-ports = -1", "spare-ports", "policy: spare-ports: must be >= 0 (got -1)"),
        ("spare-ports = 'two'", "spare-ports", "policy: spare-ports: must be an int (got 'two')"),
        ("numa = 1", "numa", "policy: numa: must be a bool (got 1)"),
        (
            "hotplug = 'maybe'",
            "hotplug",
            "policy: hotplug: must be one of any, required, preferred, forbidden (got 'maybe')",
        ),
        ("colour = 'blue'", "colour", "policy: colour: unknown policy key (known: "),
        (
            "[[device]]\nhotplug = 'any'",
            "device[0]",
            'policy: device[0]: each [[device]] rule needs match = "<alias pattern>"',
        ),
        ("[[device]]\nmatch = 'x'\nnuma = 1", "device[0].numa", "policy: device[0].numa: unknown key (known: "),
        ("[[device]]\nmatch = 'x'\nnuma-node = -1", "device[0].numa-node", "policy: device[0].numa-node: must be an"),
        ("[weights]\nspeed = 3", "weights.speed", "policy: weights.speed: unknown soft constraint (known: "),
        ("[weights]\nnuma = -5", "weights.numa", "policy: weights.numa: must be an integer >= 0 (got -5)"),
        ("[weights]\nnuma = 2.5", "weights.numa", "policy: weights.numa: must be an integer >= 0 (got 2.5)"),
        ("[weights]\nnuma = true", "weights.numa", "policy: weights.numa: must be an integer >= 0 (got True)"),
        ("weights = 3", "weights", "policy: weights: must be a table of integers >= 0 (got 3)"),
    ],
)
def test_bad_policy_data_is_refused_with_the_key_named(text: str, key: str, message: str) -> None:
    """Every mistake in a policy file is an InvalidPolicy that names the file and the key."""
    import tomllib

    with pytest.raises(InvalidPolicy) as info:
        Policy.from_mapping(tomllib.loads(text))
    assert str(info.value).startswith(message)
    assert (info.value.source, info.value.key) == ("policy", key)


def test_a_bad_key_in_a_policy_file_names_the_file(tmp_path: Path) -> None:
    """A policy file's mistake names the file, the key and the reason."""
    path = tmp_path / "site.toml"
    path.write_text("[[device]]\nmatch = 'ua-*'\nhotplug = 'sometimes'\n", encoding="utf-8")
    with pytest.raises(InvalidPolicy) as info:
        Policy.from_toml(path)
    assert str(info.value) == (
        f"{path}: device[0].hotplug: must be one of any, required, preferred, forbidden (got 'sometimes')"
    )


def test_a_bad_policy_built_in_code_names_the_policy() -> None:
    """A Policy built with a bad field value names the policy and the field."""
    with pytest.raises(InvalidPolicy) as info:
        Policy(name="mine", spare_ports=-2)
    assert str(info.value) == "policy 'mine': spare_ports: must be >= 0 (got -2)"


def test_unreadable_policy_file(tmp_path: Path) -> None:
    """A missing file is an InvalidPolicy naming the path, not an OSError."""
    missing = tmp_path / "nope.toml"
    with pytest.raises(InvalidPolicy) as info:
        Policy.from_toml(missing)
    assert str(info.value).startswith(f"{missing}: cannot read policy file")


# -- the algebra: a + b ---------------------------------------------------------------------


def test_a_later_policy_wins_even_where_it_sets_the_default_value() -> None:
    """``minimal+hotplug`` takes hotplug and spare ports (the defaults) from ``hotplug``: it is not ``minimal``."""
    minimal = Policy.named("minimal")
    both = Policy.named("minimal+hotplug")
    assert both != minimal
    assert (both.hotplug, both.spare_ports, both.prefer_integrated) == (HotplugNeed.REQUIRED, 1, True)
    back = Policy.named("hotplug+minimal")
    assert (back.hotplug, back.spare_ports, back.prefer_integrated) == (HotplugNeed.ANY, 0, True)


def test_the_plus_operator_is_combine() -> None:
    """``a + b`` on policies gives what ``a.combine(b)`` gives, and the name says both."""
    a, b = BUILTIN_POLICIES["minimal"], BUILTIN_POLICIES["hotplug"]
    assert a + b == a.combine(b)
    assert (a + b).name == "minimal+hotplug"


def test_a_weight_set_to_its_default_value_wins() -> None:
    """A file that sets ``numa = 50`` (the default) overrides the ``numa = 7`` of the policy it is added to."""
    cheap = Policy.from_mapping({"weights": {"numa": 7}}, source="cheap.toml")
    default_again = Policy.from_mapping({"weights": {"numa": 50}}, source="default.toml")
    untouched = Policy.from_mapping({"ordered": True}, source="ordered.toml")
    assert (cheap + default_again).weights["numa"] == 50
    assert (cheap + untouched).weights["numa"] == 7
    assert "weights.numa" in default_again.sets
    assert "weights.numa" not in untouched.sets


def test_a_field_a_policy_file_names_wins_even_at_its_default() -> None:
    """A file with ``spare-ports = 1`` (the default) brings ``minimal``'s 0 back to 1 when added to it."""
    one = Policy.from_mapping({"spare-ports": 1}, source="one.toml")
    assert (Policy.named("minimal") + one).spare_ports == 1
    assert "spare_ports" in one.sets


def test_what_each_builtin_policy_sets() -> None:
    """Each built-in names the fields it sets; ``+`` carries exactly those over."""
    assert {name: sorted(p.sets) for name, p in BUILTIN_POLICIES.items()} == {
        "hotplug": ["hotplug", "spare_ports"],
        "minimal": ["allow_switches", "hotplug", "prefer_integrated", "spare_ports"],
        "numa": ["numa"],
        "ordered": ["ordered"],
        "libvirt": ["hotplug", "libvirt"],
    }


@pytest.mark.parametrize(
    ("weights", "message"),
    [
        ({"numa": -1}, "policy 'mine': weights.numa: must be an integer >= 0 (got -1)"),
        ({"numa": 1.5}, "policy 'mine': weights.numa: must be an integer >= 0 (got 1.5)"),
        ({"numa": True}, "policy 'mine': weights.numa: must be an integer >= 0 (got True)"),
        ({"speed": 1}, "policy 'mine': weights.speed: unknown soft constraint (known: "),
    ],
)
def test_weights_are_integers_at_least_zero(weights: dict[str, object], message: str) -> None:
    """A negative, fractional, boolean or unknown weight is an InvalidPolicy naming the weight."""
    with pytest.raises(InvalidPolicy) as info:
        Policy(name="mine", weights=weights)  # type: ignore[arg-type]
    assert str(info.value).startswith(message)


def test_a_negative_weight_in_a_file_names_the_file_and_key(tmp_path: Path) -> None:
    """``[weights] numa = -3`` in a file is refused with the path and ``weights.numa``."""
    path = tmp_path / "bad.toml"
    path.write_text("[weights]\nnuma = -3\n", encoding="utf-8")
    with pytest.raises(InvalidPolicy) as info:
        Policy.from_toml(path)
    assert str(info.value) == f"{path}: weights.numa: must be an integer >= 0 (got -3)"
    assert (info.value.source, info.value.key) == (str(path), "weights.numa")


def test_partial_weights_are_completed_with_the_defaults() -> None:
    """A policy given one weight has every soft constraint's weight, the rest at their defaults."""
    p = Policy(name="mine", weights={"order": 30})
    assert p.weights["order"] == 30
    assert p.weights["hotplug"] == 100
    assert p != Policy(name="mine")


# -- shared values cannot be changed ------------------------------------------------------


def test_builtin_policies_cannot_be_changed_by_a_caller() -> None:
    """The table of built-ins, each policy and its weights refuse changes."""
    import attrs

    with pytest.raises(TypeError):
        BUILTIN_POLICIES["hotplug"] = Policy(name="evil")  # type: ignore[index]
    with pytest.raises(TypeError):
        BUILTIN_POLICIES["hotplug"].weights["hotplug"] = 0  # type: ignore[index]
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        BUILTIN_POLICIES["hotplug"].spare_ports = 9  # type: ignore[misc]
    assert Policy.named("hotplug").weights["hotplug"] == 100


def test_the_python_constraint2_pin_covers_the_installed_version() -> None:
    """setup.cfg pins python-constraint2 to a range that holds the version the tests run with."""
    import configparser
    from importlib.metadata import version

    from packaging.requirements import Requirement

    config = configparser.ConfigParser()
    config.read(Path(__file__).parents[2] / "setup.cfg")
    lines = [line.strip() for line in config["options"]["install_requires"].splitlines() if line.strip()]
    requirement = next(Requirement(line) for line in lines if line.startswith("python-constraint2"))
    assert str(requirement.specifier) == "<2.10,>=2.9"
    assert version("python-constraint2") in requirement.specifier
