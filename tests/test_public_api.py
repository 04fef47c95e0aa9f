"""Every public module declares exactly what is public, and the package root re-exports a curated API."""

from __future__ import annotations

import importlib
import pkgutil
import types

import pytest

import pcitopo

PUBLIC_MODULES = sorted(
    name
    for _, name, _ in pkgutil.walk_packages(pcitopo.__path__, "pcitopo.")
    if not any(part.startswith("_") for part in name.split("."))
)


@pytest.mark.parametrize("name", PUBLIC_MODULES)
def test_all_is_a_literal_list_of_existing_names(name: str) -> None:
    """``__all__`` exists, names only things that exist, and ``dir()`` shows exactly it."""
    module = importlib.import_module(name)
    assert isinstance(module.__all__, list)
    missing = [n for n in module.__all__ if not hasattr(module, n)]
    assert missing == []
    assert sorted(dir(module)) == sorted(module.__all__)


@pytest.mark.parametrize("name", [n for n in PUBLIC_MODULES if n.count(".") >= 1])
def test_everything_a_module_defines_publicly_is_in_all(name: str) -> None:
    """A public class or function defined in a module is listed in its ``__all__``."""
    module = importlib.import_module(name)
    defined = {
        n
        for n, v in vars(module).items()
        if not n.startswith("_")
        and isinstance(v, type | types.FunctionType)
        and getattr(v, "__module__", None) == module.__name__
    }
    assert defined - set(module.__all__) == set()


def test_the_package_root_reexports_the_curated_api() -> None:
    """``import pcitopo`` gives the values, the errors, validate and solve."""
    for name in ("PciAddress", "Topology", "Device", "Controller", "Policy", "solve", "validate", "Unsatisfiable"):
        assert name in pcitopo.__all__
    assert pcitopo.solve.__module__ == "pcitopo.solver.solve"


def test_importing_the_package_imports_no_module_until_a_name_is_used() -> None:
    """A fresh ``import pcitopo`` loads no pcitopo module, attrs or lxml; using a name loads its module."""
    import subprocess
    import sys

    code = (
        "import sys, pcitopo\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('pcitopo', 'attrs', 'attr', 'lxml', 'tomllib')))\n"
        "pcitopo.PciAddress\n"
        "print(sorted(m for m in sys.modules if m.startswith('pcitopo.')))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    before, after = result.stdout.splitlines()
    assert before == "['pcitopo', 'pcitopo._lazy']"
    assert after == "['pcitopo._lazy', 'pcitopo.address', 'pcitopo.errors']"


@pytest.mark.parametrize("package", ["pcitopo", "pcitopo.legality", "pcitopo.formats"])
def test_lazy_names_are_the_objects_their_modules_define(package: str) -> None:
    """Each lazily re-exported name, even after every submodule is imported, is the object its module defines."""
    for name in PUBLIC_MODULES:  # a submodule named like a re-export would shadow it once imported
        importlib.import_module(name)
    module = importlib.import_module(package)
    for name in module.__all__:
        value = getattr(module, name)
        assert not isinstance(value, types.ModuleType), name
        if isinstance(value, type | types.FunctionType):
            assert getattr(importlib.import_module(value.__module__), name) is value
    with pytest.raises(AttributeError, match=f"module '{package}' has no attribute 'no_such_name'"):
        module.no_such_name  # noqa: B018


@pytest.mark.parametrize("package", ["pcitopo.policy", "pcitopo.qemu"])
def test_a_package_with_a_submodule_named_like_a_function_imports_it_eagerly(package: str) -> None:
    """``pcitopo.policy.evaluate`` and ``pcitopo.qemu.probe``/``verify`` are the functions, not the submodules."""
    for name in PUBLIC_MODULES:
        importlib.import_module(name)
    module = importlib.import_module(package)
    assert [n for n in module.__all__ if isinstance(getattr(module, n), types.ModuleType)] == []
