"""Policies: built-in, composable, loadable from TOML.

A policy says what the owner wants beyond legality. The built-in ones:

``hotplug`` (the default)
    every endpoint on a hotpluggable position where one exists (a strong
    preference, not a requirement), plus ``spare_ports`` empty hotpluggable
    ports (per NUMA node with ``spare_ports_per_node``);
    ``hotplug_off_occupied`` turns hotplug off on occupied ports (Windows
    guests otherwise offer "safely remove" for every device).
``minimal``
    the fewest added controllers; endpoints integrated on the root bus where
    legal (libguestfs: every controller costs boot time).
``numa``
    every device with a NUMA node goes under an expander bus of that node.
``ordered``
    devices of one kind get increasing addresses in definition order, and
    the NICs' guest names in NIC order (``acpi_index``, a policy-file key,
    numbers them ``eno1``, ``eno2``, ... where the machine lets it).
``libvirt``
    libvirt's own choices (first fit by device class, root ports packed 8 per
    slot, one spare root port for a new pcie-root guest).

Compose them with ``+``: ``Policy.named("hotplug+numa+ordered")``.

>>> p = Policy.named("hotplug+ordered")
>>> p.name, p.hotplug.value, p.ordered, p.spare_ports
('hotplug+ordered', 'preferred', True, 1)
>>> Policy.named("minimal").hotplug.value
'any'
>>> Policy.named("fastest")
Traceback (most recent call last):
  ...
pcitopo.errors.UnknownName: unknown policy 'fastest'; known: hotplug, libvirt, minimal, numa, ordered
"""

from __future__ import annotations

import fnmatch
import functools
import os
from collections.abc import Iterable, Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Literal

import attrs

from pcitopo._frozen import FrozenDict
from pcitopo.devices import Device, HotplugNeed, Needs
from pcitopo.errors import InvalidPolicy, UnknownName

if TYPE_CHECKING:
    from pathlib import Path

__all__ = ["BUILTIN_POLICIES", "SOFT_CONSTRAINTS", "Override", "Policy"]


def __dir__() -> list[str]:
    return __all__


SOFT_CONSTRAINTS: Mapping[str, str] = {
    "hotplug": "an endpoint whose hotplug is preferred sits on a hotpluggable position",
    "numa": "an endpoint whose NUMA node is preferred sits under an expander bus of that node",
    "spare-ports": "the requested number of empty hotpluggable ports exists",
    "fewer-controllers": "each controller added costs guest boot time",
    "integrated": "an endpoint sits directly on the root bus when the policy prefers it",
    "order": "devices of one kind get increasing addresses, and NICs increasing guest names, in definition order",
    "hotplug-off-occupied": "an endpoint without a hotplug need sits on a position with hotplug off",
    "primary-video": "the primary VGA sits on the main root bus, where the guest's BIOS finds its VBE modes",
    "io-reserve-off": "each port or bridge given io-reserve=0 (no IO window kept for a device hot-plugged later)",
}
"""The soft constraints a plan reports on, with what each means."""

DEFAULT_WEIGHTS: Mapping[str, int] = {
    "hotplug": 100,
    "numa": 50,
    "spare-ports": 20,
    "order": 10,
    "integrated": 5,
    "fewer-controllers": 1,
    "hotplug-off-occupied": 10,
    "primary-video": 50,
    "io-reserve-off": 2,
}


def _weights(value: Mapping[str, int]) -> Mapping[str, int]:
    return FrozenDict(value)


def _field_names(value: Iterable[str]) -> frozenset[str]:
    return frozenset(value)


@attrs.frozen
class Override:
    """Needs for the devices whose id matches ``match`` (a shell-style pattern)."""

    match: str
    hotplug: HotplugNeed | None = None
    numa_node: int | None = None
    numa_strict: bool | None = None
    integrated: bool | None = None

    def applies_to(self, device: Device) -> bool:
        return fnmatch.fnmatchcase(device.id, self.match)


PortPacking = Literal["multifunction", "single"]


@attrs.frozen
class Policy:
    """What the owner wants. Fields not named by a built-in policy keep their defaults."""

    name: str = "hotplug"
    hotplug: HotplugNeed = attrs.field(default=HotplugNeed.PREFERRED, converter=HotplugNeed)
    """The hotplug need of endpoints that do not say: preferred (weight ``hotplug``), so the default
    never fails when a legal plan exists; ``required`` per device or per policy stays available."""
    spare_ports: int = 1
    """Empty hotpluggable ports to leave (PCIe machines) for devices added at run time."""
    spare_ports_per_node: bool = False
    """Leave ``spare_ports`` under every NUMA node's expander bus too."""
    hotplug_off_occupied: bool = False
    """Turn hotplug off on ports that hold a device; spare ports stay hotpluggable.

    Devices that do not themselves require hotplug then get no hotplug
    requirement from the policy (a port with hotplug off cannot meet one).
    """
    port_packing: PortPacking = "multifunction"
    """Root ports 8 per slot as multifunction, or one per slot."""
    allow_switches: bool = True
    """Add PCIe switches when root-bus slots run out."""
    prefer_integrated: bool = False
    """Put endpoints directly on the root bus where legal (fewest controllers)."""
    numa: bool = False
    """Place devices that name a NUMA node under an expander bus of that node."""
    ordered: bool = False
    """Keep devices of one kind in definition order, and the NICs' guest names in NIC order."""
    acpi_index: bool = False
    """Give each NIC the plan places an ``acpi-index`` increasing in NIC order, where it reaches the guest,
    so a Linux guest names them ``eno1``, ``eno2``, ... in that order whatever their addresses."""
    libvirt: bool = False
    """Reproduce libvirt's placement choices exactly."""
    overrides: tuple[Override, ...] = ()
    weights: Mapping[str, int] = attrs.field(factory=lambda: FrozenDict(DEFAULT_WEIGHTS), converter=_weights)
    """Weight of each soft constraint, an integer >= 0 (read-only; build a new policy to change it)."""
    explicit: frozenset[str] = attrs.field(default=frozenset(), converter=_field_names, eq=False, repr=False)
    """Fields this policy sets even where the value is the default (``weights.NAME`` for a weight); see :attr:`sets`."""

    def __attrs_post_init__(self) -> None:
        where = f"policy {self.name!r}"
        if not isinstance(self.spare_ports, int) or isinstance(self.spare_ports, bool):
            raise InvalidPolicy(where, "spare_ports", f"must be an integer >= 0 (got {self.spare_ports!r})")
        if self.spare_ports < 0:
            raise InvalidPolicy(where, "spare_ports", f"must be >= 0 (got {self.spare_ports})")
        for flag in _FLAGS:
            if not isinstance(getattr(self, flag), bool):
                raise InvalidPolicy(where, flag, f"must be true or false (got {getattr(self, flag)!r})")
        if self.port_packing not in ("multifunction", "single"):
            raise InvalidPolicy(
                where,
                "port_packing",
                f"must be 'multifunction' or 'single' (got {self.port_packing!r})",
            )
        for key, value in self.weights.items():
            if key not in SOFT_CONSTRAINTS:
                raise InvalidPolicy(
                    where, f"weights.{key}", f"unknown soft constraint (known: {', '.join(SOFT_CONSTRAINTS)})"
                )
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise InvalidPolicy(where, f"weights.{key}", f"must be an integer >= 0 (got {value!r})")
        missing = [k for k in SOFT_CONSTRAINTS if k not in self.weights]
        if missing:
            object.__setattr__(self, "weights", FrozenDict({**DEFAULT_WEIGHTS, **self.weights}))
        unknown = {
            e for e in self.explicit if e not in _SETTABLE and e.removeprefix("weights.") not in SOFT_CONSTRAINTS
        }
        if unknown:
            raise InvalidPolicy(where, "explicit", f"names no policy field: {sorted(unknown)[0]!r}")

    @property
    def sets(self) -> frozenset[str]:
        """The fields this policy sets: :attr:`explicit` and every one whose value is not the default.

        In ``a + b`` each of them wins over ``a``'s (weights as ``weights.NAME``).

        >>> sorted(Policy.named("hotplug").sets)
        ['hotplug', 'spare_ports']
        >>> sorted(Policy(name="mine", ordered=True, weights={"order": 30}).sets)
        ['ordered', 'weights.order']
        """
        base = _DEFAULT
        changed = {f for f in _SETTABLE if getattr(self, f) != getattr(base, f)}
        changed |= {f"weights.{k}" for k, v in self.weights.items() if DEFAULT_WEIGHTS.get(k) != v}
        return frozenset(self.explicit | changed)

    @classmethod
    def named(cls, name: str) -> Policy:
        """A built-in policy, or several joined with ``+`` (each field a later one sets wins)."""
        parts = [p.strip() for p in name.split("+")]
        policy: Policy | None = None
        for part in parts:
            if part not in BUILTIN_POLICIES:
                raise UnknownName("policy", part, BUILTIN_POLICIES)
            policy = BUILTIN_POLICIES[part] if policy is None else policy.combine(BUILTIN_POLICIES[part])
        assert policy is not None
        return attrs.evolve(policy, name="+".join(parts))

    def combine(self, other: Policy) -> Policy:
        """This policy with every field ``other`` sets (:attr:`sets`), even to the default value.

        Overrides are joined (``other``'s after this one's, so they win).

        >>> minimal = Policy.named("minimal")
        >>> both = minimal.combine(Policy.named("hotplug"))
        >>> both.hotplug.value, both.spare_ports, both.prefer_integrated, both == minimal
        ('preferred', 1, True, False)
        """
        sets = other.sets
        changes: dict[str, Any] = {f: getattr(other, f) for f in _SETTABLE if f in sets}
        weights = dict(self.weights)
        weights.update({k: v for k, v in other.weights.items() if f"weights.{k}" in sets})
        return attrs.evolve(
            self,
            name=f"{self.name}+{other.name}",
            overrides=self.overrides + other.overrides,
            weights=weights,
            explicit=self.sets | sets,
            **changes,
        )

    def __add__(self, other: Policy) -> Policy:
        """``a + b`` is :meth:`combine`."""
        if not isinstance(other, Policy):
            return NotImplemented
        return self.combine(other)

    @classmethod
    def from_toml(cls, path: str | Path) -> Policy:
        """Load a policy file (see ``docs/policies.rst`` for the format)."""
        import tomllib  # here, not at the top: a command with a named policy never needs it

        try:
            with open(os.fspath(path), encoding="utf-8") as handle:
                text = handle.read()
        except OSError as exc:
            raise InvalidPolicy(str(path), "", f"cannot read policy file: {exc.strerror or exc}") from None
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise InvalidPolicy(str(path), "", f"not valid TOML: {exc}") from None
        return cls.from_mapping(data, source=str(path))

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], *, source: str = "policy") -> Policy:
        """Build from a mapping: ``base`` (a built-in name), field values, ``[weights]``, ``[[device]]`` rules."""
        data = dict(data)
        base_name = data.pop("base", "hotplug")
        if not isinstance(base_name, str):
            raise InvalidPolicy(source, "base", f"must be a policy name (got {base_name!r})")
        try:
            base = cls.named(base_name)
        except UnknownName as exc:
            raise InvalidPolicy(source, "base", str(exc)) from None
        changes: dict[str, Any] = {}
        explicit: set[str] = set()
        fields = {f.name: f for f in attrs.fields(Policy)}
        for key, value in data.items():
            if key == "device":
                continue
            attr = key.replace("-", "_")
            if attr == "weights":
                if not isinstance(value, dict):
                    raise InvalidPolicy(source, key, f"must be a table of integers >= 0 (got {value!r})")
                for term, weight in value.items():
                    if term not in SOFT_CONSTRAINTS:
                        terms = ", ".join(SOFT_CONSTRAINTS)
                        raise InvalidPolicy(source, f"{key}.{term}", f"unknown soft constraint (known: {terms})")
                    if not isinstance(weight, int) or isinstance(weight, bool) or weight < 0:
                        raise InvalidPolicy(source, f"{key}.{term}", f"must be an integer >= 0 (got {weight!r})")
                changes["weights"] = {**base.weights, **value}
                explicit |= {f"weights.{term}" for term in value}
                continue
            if attr not in fields or attr in ("name", "overrides", "explicit"):
                known = sorted(k.replace("_", "-") for k in fields if k not in ("name", "overrides", "explicit"))
                raise InvalidPolicy(source, key, f"unknown policy key (known: {', '.join(known)}, device)")
            default = getattr(Policy(), attr)
            if attr == "hotplug":
                try:
                    value = HotplugNeed(value)
                except ValueError:
                    raise InvalidPolicy(
                        source, key, f"must be one of {', '.join(h.value for h in HotplugNeed)} (got {value!r})"
                    ) from None
            elif type(value) is not type(default):
                raise InvalidPolicy(source, key, f"must be {_a(type(default).__name__)} (got {value!r})")
            changes[attr] = value
            explicit.add(attr)
        overrides = []
        rules = data.get("device", [])
        if not isinstance(rules, list):
            raise InvalidPolicy(source, "device", "device rules must be an array of tables: [[device]]")
        for i, rule in enumerate(rules):
            overrides.append(_override(source, i, rule))
        name = os.path.splitext(os.path.basename(source))[0] if source != "policy" else f"{base_name}+custom"
        try:
            return attrs.evolve(
                base,
                name=name,
                overrides=base.overrides + tuple(overrides),
                explicit=base.sets | explicit,
                **changes,
            )
        except InvalidPolicy as exc:  # a value the fields refuse: name the file and the key as written
            written = {k.replace("-", "_"): k for k in data}
            raise InvalidPolicy(source, written.get(exc.key, exc.key), exc.reason) from None

    def needs_for(self, device: Device) -> Needs:
        """The needs a device ends up with: its own, then the policy's defaults and overrides.

        A device's own explicit needs win over the policy default; overrides
        win over both.
        """
        needs = device.needs
        if needs.hotplug is HotplugNeed.ANY:
            default = HotplugNeed.ANY if self.hotplug_off_occupied else self.hotplug
            needs = _with_hotplug(needs, default)
        for o in self.overrides:
            if o.applies_to(device):
                changes: dict[str, Any] = {}
                if o.hotplug is not None:
                    changes["hotplug"] = o.hotplug
                if o.numa_node is not None:
                    changes["numa_node"] = o.numa_node
                if o.numa_strict is not None:
                    changes["numa_strict"] = o.numa_strict
                if o.integrated is not None:
                    changes["integrated"] = o.integrated
                needs = attrs.evolve(needs, **changes)
        return needs

    def __str__(self) -> str:
        return self.name


@functools.lru_cache(maxsize=4096)
def _with_hotplug(needs: Needs, hotplug: HotplugNeed) -> Needs:
    return attrs.evolve(needs, hotplug=hotplug)


def _a(noun: str) -> str:
    return f"{'an' if noun[0] in 'aeiou' else 'a'} {noun}"


def _override(source: str, i: int, rule: Any) -> Override:
    where = f"device[{i}]"
    if not isinstance(rule, dict) or not isinstance(rule.get("match"), str):
        raise InvalidPolicy(source, where, 'each [[device]] rule needs match = "<alias pattern>"')
    allowed = {"match", "hotplug", "numa-node", "numa-strict", "integrated"}
    extra = set(rule) - allowed
    if extra:
        key = sorted(extra)[0]
        raise InvalidPolicy(source, f"{where}.{key}", f"unknown key (known: {', '.join(sorted(allowed))})")
    try:
        hotplug = HotplugNeed(rule["hotplug"]) if "hotplug" in rule else None
    except ValueError:
        raise InvalidPolicy(
            source,
            f"{where}.hotplug",
            f"must be one of {', '.join(h.value for h in HotplugNeed)} (got {rule['hotplug']!r})",
        ) from None
    node = rule.get("numa-node")
    if node is not None and (not isinstance(node, int) or isinstance(node, bool) or node < 0):
        raise InvalidPolicy(source, f"{where}.numa-node", f"must be an integer >= 0 (got {node!r})")
    for key in ("numa-strict", "integrated"):
        if key in rule and not isinstance(rule[key], bool):
            raise InvalidPolicy(source, f"{where}.{key}", f"must be true or false (got {rule[key]!r})")
    return Override(
        match=rule["match"],
        hotplug=hotplug,
        numa_node=node,
        numa_strict=rule.get("numa-strict"),
        integrated=rule.get("integrated"),
    )


_SETTABLE = (
    "hotplug",
    "spare_ports",
    "spare_ports_per_node",
    "hotplug_off_occupied",
    "port_packing",
    "allow_switches",
    "prefer_integrated",
    "numa",
    "ordered",
    "acpi_index",
    "libvirt",
)
"""The fields ``+`` carries over (name, overrides and weights are joined their own way)."""

_FLAGS = (
    "spare_ports_per_node",
    "hotplug_off_occupied",
    "allow_switches",
    "prefer_integrated",
    "numa",
    "ordered",
    "acpi_index",
    "libvirt",
)

_DEFAULT = Policy()

BUILTIN_POLICIES: Mapping[str, Policy] = MappingProxyType(
    {
        "hotplug": Policy(name="hotplug", explicit={"hotplug", "spare_ports"}),
        "minimal": Policy(
            name="minimal",
            hotplug=HotplugNeed.ANY,
            spare_ports=0,
            prefer_integrated=True,
            allow_switches=True,
            explicit={"hotplug", "spare_ports", "prefer_integrated", "allow_switches"},
        ),
        "numa": Policy(name="numa", numa=True, explicit={"numa"}),
        "ordered": Policy(name="ordered", ordered=True, explicit={"ordered"}),
        "libvirt": Policy(name="libvirt", hotplug=HotplugNeed.ANY, libvirt=True, explicit={"hotplug", "libvirt"}),
    }
)
"""The built-in policies by name (read-only, like the policies themselves)."""
