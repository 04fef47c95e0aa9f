"""The shipped description files: the generated parse in ``_shipped`` is current, and stale text is parsed anew."""

from __future__ import annotations

import shutil
import tomllib
from pathlib import Path

import pytest

from pcitopo.legality import _shipped, _toml

SHIPPED = sorted(p.relative_to(_toml.DATA).as_posix() for p in _toml.DATA.rglob("*.toml"))


def test_the_generated_module_is_current() -> None:
    """``_shipped.py`` is what ``python -m pcitopo.legality._toml`` writes for the files now shipped."""
    assert Path(_shipped.__file__).read_text(encoding="utf-8") == _toml.shipped_source(), (
        "pcitopo/legality/data changed: run python -m pcitopo.legality._toml"
    )


@pytest.mark.parametrize("name", SHIPPED)
def test_a_shipped_file_loads_as_tomllib_parses_it(name: str) -> None:
    """``load_packaged`` gives exactly tomllib's parse of the file, under the ``<pcitopo>/`` source name."""
    assert name in _shipped.FILES
    text = (_toml.DATA / name).read_text(encoding="utf-8")
    assert _toml.load_packaged(name) == (f"<pcitopo>/{name}", tomllib.loads(text))


def test_every_load_is_a_new_dict() -> None:
    """Changing what one call returned changes nothing for the next caller."""
    _, first = _toml.load_packaged("machines/q35.toml")
    first["name"] = "changed"
    first["builtin"].clear()
    _, second = _toml.load_packaged("machines/q35.toml")
    assert second["name"] == "q35"
    assert second["builtin"]


def test_a_file_whose_text_changed_is_parsed_not_taken_from_the_generated_module(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A shipped file edited after ``_shipped`` was made is read as it is now (and bad TOML is an error naming it)."""
    data = tmp_path / "data"
    shutil.copytree(_toml.DATA, data)
    q35 = data / "machines" / "q35.toml"
    q35.write_text(q35.read_text(encoding="utf-8").replace('name = "q35"', 'name = "q35-edited"'), encoding="utf-8")
    monkeypatch.setattr(_toml, "DATA_DIR", str(data))
    assert _toml.load_packaged("machines/q35.toml")[1]["name"] == "q35-edited"
    q35.write_text("name = ", encoding="utf-8")
    with pytest.raises(Exception, match=r"<pcitopo>/machines/q35.toml: not valid TOML"):
        _toml.load_packaged("machines/q35.toml")
