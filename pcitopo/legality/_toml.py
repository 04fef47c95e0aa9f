"""Reading description files: typed accessors that name the file and key at fault."""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

from pcitopo.errors import InvalidDescription

T = TypeVar("T")


DATA = Path(__file__).parent / "data"
"""The shipped description files. A plain path: ``importlib.resources`` costs more to import and
call than reading the files takes, and pcitopo is installed as files, not as a zip."""


def load_packaged(name: str) -> tuple[str, dict[str, Any]]:
    """Load a TOML file shipped in ``pcitopo/legality/data``."""
    text = (DATA / name).read_text(encoding="utf-8")
    return _parse(f"<pcitopo>/{name}", text)


def load_path(path: str | Path) -> tuple[str, dict[str, Any]]:
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise InvalidDescription(source, "", f"cannot read: {exc.strerror or exc}") from None
    return _parse(source, text)


def _parse(source: str, text: str) -> tuple[str, dict[str, Any]]:
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

    def choice(self, name: str, choices: tuple[str, ...], default: str) -> str:
        value = self.get(name, str, default)
        if value not in choices:
            raise InvalidDescription(
                self.source,
                self._path(name),
                f"expected one of {', '.join(repr(c) for c in choices)} (got {value!r})",
            )
        return value

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
