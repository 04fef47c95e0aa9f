"""The methods attrs writes for pcitopo's classes, compiled once and kept beside pcitopo's ``.pyc`` files.

attrs writes the source of ``__init__``, ``__repr__``, ``__eq__`` and
``__hash__`` for every class it decorates and compiles it when the class is
defined, each time a process imports the module: for the three dozen classes
a short ``pcitopo assign`` defines, that compiling is about a sixth of the
command's instructions. :func:`install` (the command line calls it first)
makes attrs take the compiled code from a cache instead; a class missing
from the cache is compiled as before, and at exit the cache is written anew.
When attrs is not imported yet, :func:`install` imports it with the cache in
place too, so that attrs' own classes (its validators, converters, ``Attribute``:
some thirty scripts, about 6% of a short ``pcitopo assign``'s instructions) come
from it as well.

The cache is one file in ``pcitopo/__pycache__`` (where Python writes
pcitopo's own bytecode, ``PYTHONPYCACHEPREFIX`` respected), keyed by the
exact source and file name attrs compiles, so a changed class or another
attrs version misses and is compiled; the file also names the interpreter's
bytecode version. As for ``.pyc`` files, nothing is written when
``sys.dont_write_bytecode`` is set or the directory is read-only, and an
unreadable cache counts as empty. A code object read back with
:mod:`marshal` is the one ``compile`` returns: the classes do not change.
"""

from __future__ import annotations

import atexit
import builtins
import contextlib
import importlib.util
import marshal
import os
import sys
from collections.abc import Callable
from types import CodeType
from typing import Any

__all__: list[str] = []

_Key = tuple[str, str]
"""(file name, source) of one compiled script."""

LIMIT = 400
"""Entries past which a write keeps only what this process used (classes edited away do not pile up)."""

_installed = False

_COMPILE = builtins.compile
"""The built-in ``compile``, whatever :func:`_import_attrs` puts in its place for a while."""


def path() -> str:
    """Where the cache lives: beside the ``.pyc`` of pcitopo's ``__init__``."""
    init = os.path.join(os.path.dirname(os.path.abspath(__file__)), "__init__.py")
    pycache = os.path.dirname(importlib.util.cache_from_source(init))
    return os.path.join(pycache, f"attrs-methods.{sys.implementation.cache_tag}.marshal")


def _read(file: str) -> dict[_Key, CodeType]:
    try:
        with open(file, "rb") as handle:
            data = handle.read()  # marshal.load(handle) reads object by object: ten times the instructions
        magic, table = marshal.loads(data)
    except (OSError, EOFError, ValueError, TypeError):
        return {}
    if magic != importlib.util.MAGIC_NUMBER or not isinstance(table, dict):
        return {}
    return table


def _write(file: str, table: dict[_Key, CodeType]) -> None:
    if sys.dont_write_bytecode:
        return
    tmp = f"{file}.{os.getpid()}.tmp"
    try:
        os.makedirs(os.path.dirname(file), exist_ok=True)
        with open(tmp, "wb") as handle:
            handle.write(marshal.dumps((importlib.util.MAGIC_NUMBER, table)))
        os.replace(tmp, file)
    except OSError:
        with contextlib.suppress(OSError):
            os.unlink(tmp)


_SENTINEL = 0x5EED_CAFE_F00D_D00D
"""Stands in the cached source for the number attrs mixes into a class's ``__hash__``."""


def _canonical(script: str, filename: str) -> tuple[str, int | None]:
    """The source with the class's hash salt replaced by :data:`_SENTINEL`, and the salt (``None``: none in it).

    attrs salts a class's ``__hash__`` with ``hash()`` of a name, which
    differs from process to process (``PYTHONHASHSEED``); the cache keeps one
    compiled form and puts the salt of this process back into its constants.

    >>> salt = hash("<attrs generated hash m.C>")
    >>> _canonical(f"h = ( {salt}, 1)", "<attrs generated methods m.C>") == (f"h = ( {_SENTINEL}, 1)", salt)
    True
    """
    prefix = "<attrs generated "
    if not filename.startswith(prefix) or " " not in filename[len(prefix) :]:
        return script, None
    salt = hash(f"{prefix}hash {filename[len(prefix) :].split(' ', 1)[1]}")
    text = f" {salt},"
    if text not in script:
        return script, None
    return script.replace(text, f" {_SENTINEL},"), salt


def _substitute(code: CodeType, old: int, new: int) -> CodeType:
    """``code`` with the integer constant ``old`` replaced by ``new``, in nested functions too."""
    consts = tuple(
        new if type(c) is int and c == old else _substitute(c, old, new) if isinstance(c, CodeType) else c
        for c in code.co_consts
    )
    return code.replace(co_consts=consts)


def install() -> bool:
    """Make attrs use the cache for the rest of this process; whether it could (attrs as expected).

    Meant for the command line's own process, before it imports pcitopo's
    modules; calling it again does nothing.
    """
    global _installed
    if _installed:
        return True
    file = path()
    table = _read(file)
    compiled: dict[_Key, CodeType] = {}
    used: set[_Key] = set()

    def cached(script: str, filename: str) -> CodeType:
        """What ``compile(script, filename, "exec")`` gives, from the cache when it is there."""
        script, type_hash = _canonical(script, filename)
        key = (filename, script)
        used.add(key)
        bytecode = table.get(key)
        if bytecode is None:
            bytecode = _COMPILE(script, filename, "exec")
            if not compiled:
                atexit.register(_save)
            compiled[key] = bytecode
        if type_hash is not None:
            bytecode = _substitute(bytecode, _SENTINEL, type_hash)
        return bytecode

    def _save() -> None:
        kept = table if len(table) + len(compiled) <= LIMIT else {k: v for k, v in table.items() if k in used}
        _write(file, {**kept, **compiled})

    make: Any = _import_attrs(cached) if "attr._make" not in sys.modules else sys.modules["attr._make"]
    original = getattr(make, "_compile_and_eval", None)
    code = getattr(original, "__code__", None)
    if code is None or code.co_varnames[:4] != ("script", "globs", "locs", "filename"):
        return False  # another attrs: leave it alone

    def compile_and_eval(script: str, globs: dict[str, Any] | None, locs: Any = None, filename: str = "") -> None:
        """attrs' own ``_compile_and_eval``, with the compiled code looked up first."""
        eval(cached(script, filename), globs, locs)  # attrs' own generated code, run as attrs runs it

    make._compile_and_eval = compile_and_eval
    _installed = True
    return True


def _import_attrs(cached: Callable[[str, str], CodeType]) -> Any:
    """Import ``attr._make`` (and with it attrs) with ``compile`` of attrs' generated scripts served by ``cached``.

    attrs' own classes are made while its modules are imported, by
    ``_compile_and_eval`` calling the built-in ``compile``: before
    :func:`install` can replace the function. For the time of the import,
    the built-in ``compile`` hands a script whose file name is one attrs gives
    its generated code (``<attrs generated ...>``) to ``cached``; any other
    call is the built-in's own.
    """

    def compile_(source: Any, filename: Any, mode: str, *args: Any, **kwargs: Any) -> Any:
        if (
            mode == "exec"
            and not args
            and not kwargs
            and type(source) is str
            and type(filename) is str
            and filename.startswith("<attrs generated ")
        ):
            return cached(source, filename)
        return _COMPILE(source, filename, mode, *args, **kwargs)

    builtins.compile = compile_
    try:
        import attr._make as make
    finally:
        builtins.compile = _COMPILE
    return make
