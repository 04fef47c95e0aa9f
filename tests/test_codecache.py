"""The cache of attrs' compiled methods: classes built from it are the classes attrs builds without it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from pcitopo._codecache import _canonical, _substitute

# what classes built with or without the cache show: hashes (salted per process; hash(None) is an address in 3.11,
# so the salt is read from __hash__'s constants where a field is None), repr, order and equality
PROBE = """
import sys
if sys.argv[1] == "cached":
    from pcitopo import _codecache
    assert _codecache.install()
from pcitopo.address import PciAddress
from pcitopo.devices import Device, Needs
a, b = PciAddress.parse("0000:00:1f.3"), PciAddress.parse("0000:00:02.0")
d = Device("nic0", "virtio-net")
print(hash(a), [c.__hash__.__code__.co_consts for c in (PciAddress, Device, Needs)])
print(repr(a), repr(d), sorted([a, b]))
print(a == PciAddress.parse("00:1f.3"), d == Device("nic0", "virtio-net"), d == Device("nic1", "virtio-net"))
import attr
f = attr.Factory(list)
print(repr(f), f == attr.Factory(list), [c.__hash__.__code__.co_consts for c in (attr.Factory, attr.Attribute)])
print(type(compile).__name__)  # the built-in compile is back once attrs is imported
"""


def _probe(mode: str, seed: str, prefix: Path) -> str:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env.update(PYTHONHASHSEED=seed, PYTHONPYCACHEPREFIX=str(prefix))
    done = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True, env=env, check=True)
    return done.stdout


def _cache_files(prefix: Path) -> list[Path]:
    return sorted(prefix.rglob("attrs-methods.*.marshal"))


def test_classes_from_the_cache_hash_print_and_compare_as_attrs_makes_them(tmp_path: Path) -> None:
    """A cache written under one hash seed gives, under another, the hashes attrs itself gives there."""
    assert _probe("cached", "1", tmp_path) == _probe("plain", "1", tmp_path)
    [cache] = _cache_files(tmp_path)
    written = cache.stat().st_mtime_ns
    assert _probe("cached", "2", tmp_path) == _probe("plain", "2", tmp_path) != _probe("plain", "1", tmp_path)
    assert cache.stat().st_mtime_ns == written  # every class was found: nothing to write


def test_nothing_is_written_when_bytecode_is_not(tmp_path: Path) -> None:
    """With PYTHONDONTWRITEBYTECODE set, as for .pyc files, no cache file appears."""
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1", "PYTHONPYCACHEPREFIX": str(tmp_path)}
    subprocess.run([sys.executable, "-c", PROBE, "cached"], capture_output=True, env=env, check=True)
    assert _cache_files(tmp_path) == []


def test_an_unreadable_cache_counts_as_empty(tmp_path: Path) -> None:
    """A cache file that is not what it should be is ignored, and replaced."""
    _probe("cached", "1", tmp_path)
    [cache] = _cache_files(tmp_path)
    cache.write_bytes(b"not marshal data")
    assert _probe("cached", "3", tmp_path) == _probe("plain", "3", tmp_path)
    assert cache.read_bytes() != b"not marshal data"


def test_the_salt_goes_into_the_constants_of_nested_functions() -> None:
    """The canonical source compiles to code whose sentinel constant is swapped for this process's salt."""
    salt = hash("<attrs generated hash m.C>")
    source = f"def h(self):\n    return hash(( {salt}, self.x))\n"
    script, found = _canonical(source, "<attrs generated __hash__ m.C>")
    assert found == salt
    assert str(salt) not in script
    namespace: dict[str, object] = {}
    exec(_substitute(compile(script, "<test>", "exec"), 0x5EED_CAFE_F00D_D00D, salt), namespace)
    function = namespace["h"]
    assert salt in function.__code__.co_consts  # type: ignore[attr-defined]


def test_attrs_own_classes_come_from_the_cache_too(tmp_path: Path) -> None:
    """The scripts attrs compiles for its own classes while it is imported are kept in the cache as well."""
    import marshal

    _probe("cached", "1", tmp_path)
    [cache] = _cache_files(tmp_path)
    _, table = marshal.loads(cache.read_bytes())
    names = {filename for filename, _ in table}
    assert "<attrs generated __hash__ attr._make.Factory>" in names
    assert any(" attr.validators." in name for name in names)
