"""Reading description files: typed accessors that name the file and key at fault."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, TypeVar

from pcitopo.errors import InvalidDescription

if TYPE_CHECKING:
    from pathlib import Path

T = TypeVar("T")


DATA_DIR = os.path.join(os.path.dirname(__file__), "data")
"""The shipped description files. A plain path: ``importlib.resources`` costs more to import and
call than reading the files takes, and pcitopo is installed as files, not as a zip. A string, not a
:class:`~pathlib.Path`: a command never needs :mod:`pathlib` (about 4% of a short ``assign``'s
instructions to import); :data:`DATA` is the same folder as a ``Path``, made when first asked."""


def __getattr__(name: str) -> Path:
    """``DATA``: :data:`DATA_DIR` as a :class:`~pathlib.Path` (for tools and tests)."""
    if name == "DATA":
        from pathlib import Path

        return Path(DATA_DIR)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def load_packaged(name: str) -> tuple[str, dict[str, Any]]:
    """Load a TOML file shipped in ``pcitopo/legality/data`` (a new dict on every call).

    The parse comes from :mod:`pcitopo.legality._shipped`, made from these
    files when they were last changed (``python -m pcitopo.legality._toml``
    writes it, a test checks it is current): building the dicts there costs a
    small part of importing tomllib and parsing the files. The file is still
    read, and an entry is used only when its text is exactly the one it was
    made from; any other text is parsed as TOML.
    """
    from pcitopo.legality._shipped import FILES

    with open(os.path.join(DATA_DIR, name), encoding="utf-8") as handle:
        text = handle.read()
    entry = FILES.get(name)
    if entry is not None and entry[0] == text:
        return f"<pcitopo>/{name}", entry[1]()
    return _parse(f"<pcitopo>/{name}", text)


def load_path(path: str | Path) -> tuple[str, dict[str, Any]]:
    source = str(path)
    try:
        with open(os.fspath(path), encoding="utf-8") as handle:
            text = handle.read()
    except OSError as exc:
        raise InvalidDescription(source, "", f"cannot read: {exc.strerror or exc}") from None
    return _parse(source, text)


def _parse(source: str, text: str) -> tuple[str, dict[str, Any]]:
    import tomllib  # only for files the parse in _shipped does not cover

    try:
        return source, tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise InvalidDescription(source, "", f"not valid TOML: {exc}") from None


class Table:
    """A TOML table that remembers where it came from and which keys were read."""

    def __init__(self, source: str, key: str, data: Mapping[str, Any]) -> None:
        if not isinstance(data, Mapping):
            raise InvalidDescription(source, key, f"expected a table (got {_kind(data)})")
        self.source = source
        self.key = key
        self.data = data
        self._read: set[str] = set()

    def _path(self, name: str) -> str:
        return f"{self.key}.{name}" if self.key else name

    def get(self, name: str, kind: type[T], default: T | None = None, *, required: bool = False) -> T:
        self._read.add(name)
        if name not in self.data:
            if required:
                raise InvalidDescription(self.source, self._path(name), "required key is missing")
            return default  # type: ignore[return-value]
        value = self.data[name]
        if kind is int and isinstance(value, bool):
            raise InvalidDescription(self.source, self._path(name), f"expected an integer (got {value!r})")
        if not isinstance(value, kind):
            raise InvalidDescription(
                self.source, self._path(name), f"expected {_kind_name(kind)} (got {_kind(value)} {value!r})"
            )
        return value

    def str_list(self, name: str, *, required: bool = False) -> tuple[str, ...]:
        values = self.get(name, list, [], required=required)
        for i, v in enumerate(values):
            if not isinstance(v, str):
                raise InvalidDescription(
                    self.source, f"{self._path(name)}[{i}]", f"expected a string (got {_kind(v)} {v!r})"
                )
        return tuple(values)

    def int_list(self, name: str) -> tuple[int, ...]:
        values = self.get(name, list, [])
        for i, v in enumerate(values):
            if not isinstance(v, int) or isinstance(v, bool):
                raise InvalidDescription(
                    self.source, f"{self._path(name)}[{i}]", f"expected an integer (got {_kind(v)} {v!r})"
                )
        return tuple(values)

    def choice(self, name: str, choices: tuple[str, ...], default: str) -> str:
        value = self.get(name, str, default)
        if value not in choices:
            raise InvalidDescription(
                self.source,
                self._path(name),
                f"expected one of {', '.join(repr(c) for c in choices)} (got {value!r})",
            )
        return value

    def release(self, name: str) -> tuple[int, int] | None:
        """A QEMU release written ``"MAJOR.MINOR"`` (a kind's ``qemu-since``, a machine's ``qemu-version``)."""
        raw = self.get(name, str, None)
        if raw is None:
            return None
        parts = raw.split(".")
        if len(parts) != 2 or not all(p.isdigit() for p in parts):
            raise InvalidDescription(
                self.source, self._path(name), f"expected a QEMU release 'MAJOR.MINOR' (got {raw!r})"
            )
        return (int(parts[0]), int(parts[1]))

    def sub(self, name: str) -> Table:
        self._read.add(name)
        return Table(self.source, self._path(name), self.data.get(name, {}))

    def check_unknown(self) -> None:
        extra = sorted(set(self.data) - self._read)
        if extra:
            raise InvalidDescription(
                self.source,
                self._path(extra[0]),
                f"unknown key (known keys: {', '.join(sorted(self._read))})",
            )


def _kind(value: object) -> str:
    return {
        str: "a string",
        int: "an integer",
        bool: "a boolean",
        list: "an array",
        dict: "a table",
        float: "a float",
    }.get(type(value), type(value).__name__)


def _kind_name(kind: type) -> str:
    return {
        str: "a string",
        int: "an integer",
        bool: "a boolean",
        list: "an array",
        dict: "a table",
    }.get(kind, kind.__name__)


_SHIPPED_HEADER = '''"""The shipped description files, parsed: GENERATED (``python -m pcitopo.legality._toml``).

Each entry of ``FILES`` is a file's text under ``pcitopo/legality/data`` and a
function that builds its parse anew (so no caller shares a mutable dict);
:func:`pcitopo.legality._toml.load_packaged` uses an entry only while the file
still has that text. ``tests/legality/test_toml.py`` checks this module is current.
"""

# fmt: off
# ruff: noqa

from __future__ import annotations

from collections.abc import Callable
from typing import Any

'''


def shipped_source() -> str:
    """The text of :mod:`pcitopo.legality._shipped` for the files now in ``data`` (deterministic)."""
    import tomllib
    from pathlib import Path

    data = Path(DATA_DIR)
    names = sorted(p.relative_to(data).as_posix() for p in data.rglob("*.toml"))
    parts = [_SHIPPED_HEADER]
    entries = []
    for i, name in enumerate(names):
        text = (data / name).read_text(encoding="utf-8")
        parts.append(f"\ndef _{i}() -> dict[str, Any]:\n    return {tomllib.loads(text)!r}\n\n")
        entries.append(f"    {name!r}: ({text!r}, _{i}),\n")
    parts.append("\nFILES: dict[str, tuple[str, Callable[[], dict[str, Any]]]] = {\n" + "".join(entries) + "}\n")
    return "".join(parts)


def _write_shipped() -> None:
    from pathlib import Path

    path = Path(__file__).with_name("_shipped.py")
    path.write_text(shipped_source(), encoding="utf-8")
    print(f"wrote {path}")


if __name__ == "__main__":
    _write_shipped()
