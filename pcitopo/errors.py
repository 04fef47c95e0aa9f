"""Every error pcitopo raises, under one root.

Each error subclasses :class:`PcitopoError` and a builtin that says what kind of
mistake it is (``ValueError`` for bad values, ``LookupError`` for unknown names),
keeps the offending parts as attributes, and pickles::

    PcitopoError
    ├── InvalidAddress        a PCI address that cannot be parsed or is out of range
    ├── UnknownName           a name not in a catalog (model, device kind, machine, policy)
    ├── InvalidDescription    a machine description or catalog file (file, key)
    ├── InvalidInput          bad input; raised as itself for a bad API argument
    │   ├── InvalidDomainXML  a libvirt document (file, line, element)
    │   ├── InvalidPolicy     a policy file or policy fields (file, key)
    │   └── DuplicateId       one id on two things
    ├── InvalidTopology       placement rules broken (every violation)
    ├── Unsatisfiable         no plan meets every hard requirement (explained)
    └── InternalError         pcitopo broke its own rules: a bug to report

The command line exits 3 for the input errors, 1 for :class:`InvalidTopology`,
4 for :class:`Unsatisfiable` and 5 for :class:`InternalError`.

>>> from pcitopo.address import PciAddress
>>> try:
...     PciAddress.parse("0000:00:20.0")
... except PcitopoError as exc:
...     print(exc)
invalid PCI address '0000:00:20.0': slot must be in 0x00..0x1f (got 0x20)
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pcitopo.violation import Violation

__all__ = [
    "DuplicateId",
    "InternalError",
    "InvalidAddress",
    "InvalidDescription",
    "InvalidDomainXML",
    "InvalidInput",
    "InvalidPolicy",
    "InvalidTopology",
    "PcitopoError",
    "UnknownName",
    "Unsatisfiable",
]


def __dir__() -> list[str]:
    return __all__


class PcitopoError(Exception):
    """The root of every error pcitopo raises on purpose."""


class InvalidAddress(PcitopoError, ValueError):
    """A PCI address that cannot be parsed, or a field outside its range.

    ``text`` is the input (or ``None`` when built from fields), ``field`` the
    field at fault (``domain``, ``bus``, ``slot``, ``function``, or ``None`` for
    a syntax error), ``value`` the value that came, ``minimum``/``maximum`` the
    allowed range.
    """

    def __init__(
        self,
        message: str,
        *,
        text: str | None = None,
        field: str | None = None,
        value: int | None = None,
        minimum: int | None = None,
        maximum: int | None = None,
    ) -> None:
        super().__init__(message)
        self.text = text
        self.field = field
        self.value = value
        self.minimum = minimum
        self.maximum = maximum

    def __reduce__(self) -> tuple[object, ...]:
        return (
            _rebuild,
            (
                type(self),
                (str(self),),
                {
                    "text": self.text,
                    "field": self.field,
                    "value": self.value,
                    "minimum": self.minimum,
                    "maximum": self.maximum,
                },
            ),
        )


class UnknownName(PcitopoError, LookupError):
    """A name that is not in a catalog: a controller model, a device kind, a machine.

    ``what`` says which catalog (``"controller model"``), ``name`` is the
    unknown name and ``known`` the names that would have been accepted.
    """

    def __init__(self, what: str, name: str, known: Iterable[str] = (), *, where: str = "") -> None:
        self.what = what
        self.name = name
        self.known = tuple(sorted(known))
        self.where = where
        hint = ""
        if self.known:
            close = [k for k in self.known if _similar(k, name)]
            if close:
                hint = f"; did you mean {', '.join(repr(c) for c in close[:3])}?"
            else:
                shown = ", ".join(self.known[:12]) + (", ..." if len(self.known) > 12 else "")
                hint = f"; known: {shown}"
        location = f" ({where})" if where else ""
        super().__init__(f"unknown {what} {name!r}{location}{hint}")

    def __str__(self) -> str:  # LookupError/KeyError would repr() the message
        return str(self.args[0])

    def __reduce__(self) -> tuple[object, ...]:
        return (
            _rebuild_unknown,
            (type(self), self.what, self.name, self.known, self.where),
        )


class InvalidDescription(PcitopoError, ValueError):
    """A machine description or catalog file that is not well formed.

    ``source`` names the file, ``key`` the dotted key at fault.
    """

    def __init__(self, source: str, key: str, reason: str) -> None:
        self.source = source
        self.key = key
        self.reason = reason
        where = f"{source}: {key}" if key else source
        super().__init__(f"{where}: {reason}")

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.source, self.key, self.reason))


class InvalidInput(PcitopoError, ValueError):
    """Input that pcitopo cannot use; the base of the input errors below.

    ``element`` names where (an XML element, a device id, a file), ``reason``
    says what is wrong. Raised as itself for a bad argument to the API (a
    value out of range, an unknown id in ``extra``); a document, a policy or
    a duplicate id raise the subclasses, so ``except InvalidInput`` catches
    every kind of bad input.
    """

    def __init__(self, element: str, reason: str) -> None:
        self.element = element
        self.reason = reason
        super().__init__(f"{element}: {reason}" if element else reason)

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.element, self.reason))


class InvalidDomainXML(InvalidInput):
    """A libvirt domain document pcitopo cannot read, with where in it.

    ``source`` names the document (a file name, ``<stdin>``; ``""`` when not
    known), ``line`` is the line of the element at fault (lxml's
    ``sourceline``; ``None`` when not known), ``element`` its path
    (``/domain/devices/controller[3]``; ``""`` for the whole document) and
    ``reason`` what is wrong. The message reads like a compiler's:

    >>> print(InvalidDomainXML("/domain/devices/controller[3]", "a PCI controller needs a model",
    ...                        source="vm.xml", line=12))
    vm.xml:12: /domain/devices/controller[3]: a PCI controller needs a model
    """

    def __init__(self, element: str, reason: str, *, source: str = "", line: int | None = None) -> None:
        self.source = source
        self.line = line
        super().__init__(element, reason)
        where = _where(source, line)
        text = f"{element}: {reason}" if element else reason
        self.args = (f"{where}: {text}" if where else text,)

    def __reduce__(self) -> tuple[object, ...]:
        return (
            _rebuild_fields,
            (type(self), (self.element, self.reason), {"source": self.source, "line": self.line}),
        )


class InvalidPolicy(InvalidInput):
    """A policy that cannot be used: a TOML file or policy fields with a bad key or value.

    ``source`` names the file (or ``policy 'NAME'`` for a policy built in
    code), ``key`` the dotted key at fault (``spare_ports``,
    ``device[1].hotplug``; ``""`` for the whole file) and ``reason`` what is
    wrong.

    >>> print(InvalidPolicy("site.toml", "device[1].hotplug", "must be one of required, preferred, forbidden"))
    site.toml: device[1].hotplug: must be one of required, preferred, forbidden
    """

    def __init__(self, source: str, key: str, reason: str) -> None:
        self.source = source
        self.key = key
        super().__init__(f"{source}: {key}" if key and source else key or source, reason)

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.source, self.key, self.reason))


class DuplicateId(InvalidInput):
    """One id (a device alias, a controller name) given to two things.

    ``name`` is the id, ``first`` and ``second`` say which two things have it
    (an XML path or ``device 'x'``), ``source`` names the document (``""``
    when not from one) and ``line`` the line of the second (``None`` when not
    known).

    >>> print(DuplicateId("net0", "device 'net0'", "controller index 3"))
    id 'net0' is used by device 'net0' and controller index 3
    """

    def __init__(self, name: str, first: str, second: str, *, source: str = "", line: int | None = None) -> None:
        self.name = name
        self.first = first
        self.second = second
        self.source = source
        self.line = line
        super().__init__("", f"id {name!r} is used by {first} and {second}")
        where = _where(source, line)
        if where:
            self.args = (f"{where}: {self.reason}",)

    def __reduce__(self) -> tuple[object, ...]:
        return (
            _rebuild_fields,
            (type(self), (self.name, self.first, self.second), {"source": self.source, "line": self.line}),
        )


class InternalError(PcitopoError, RuntimeError):
    """A bug in pcitopo: it produced something that fails its own checks.

    Raised when a plan breaks the rules that :func:`pcitopo.validate` checks,
    or an export loses what it should keep; never for bad input. ``reason``
    says what went wrong and ``violations`` lists the broken rules, if any.
    The command line exits 5 on it and asks for a report with the input.

    >>> print(InternalError("devices left without an address: 'net0'"))
    internal error: devices left without an address: 'net0'
    """

    def __init__(self, reason: str, violations: Sequence[Violation] = ()) -> None:
        self.reason = reason
        self.violations = tuple(violations)
        lines = [f"internal error: {reason}"] + [f"  - {v}" for v in self.violations]
        super().__init__("\n".join(lines))

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.reason, self.violations))


class InvalidTopology(PcitopoError, ValueError):
    """A topology that breaks one or more rules; ``violations`` lists them all."""

    def __init__(self, violations: Sequence[Violation]) -> None:
        self.violations = tuple(violations)
        count = len(self.violations)
        lines = [f"{count} rule violation{'s' if count != 1 else ''}:"]
        lines += [f"  - {v}" for v in self.violations]
        super().__init__("\n".join(lines))

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.violations,))

    def as_exception_group(self) -> ExceptionGroup[PcitopoError]:
        """The violations as an :class:`ExceptionGroup`, one exception each."""
        return ExceptionGroup("invalid topology", [_ViolationError(v) for v in self.violations])


class _ViolationError(PcitopoError, ValueError):
    def __init__(self, violation: Violation) -> None:
        self.violation = violation
        super().__init__(str(violation))


class Unsatisfiable(PcitopoError, ValueError):
    """No plan meets every hard requirement.

    ``conflicts`` is the smallest set of requirements found that cannot hold
    together (each a sentence a VM owner understands), ``facts`` the numbers
    behind it, ``suggestions`` what would make the request feasible.
    """

    def __init__(
        self,
        conflicts: Sequence[str],
        *,
        facts: Sequence[str] = (),
        suggestions: Sequence[str] = (),
    ) -> None:
        self.conflicts = tuple(conflicts)
        self.facts = tuple(facts)
        self.suggestions = tuple(suggestions)
        lines = ["no placement satisfies these requirements together:"]
        lines += [f"  - {c}" for c in self.conflicts]
        if self.facts:
            lines.append("facts: " + "; ".join(self.facts))
        if self.suggestions:
            lines.append("would help: " + "; ".join(self.suggestions))
        super().__init__("\n".join(lines))

    def __reduce__(self) -> tuple[object, ...]:
        return (
            _rebuild_unsat,
            (type(self), self.conflicts, self.facts, self.suggestions),
        )


def _similar(a: str, b: str) -> bool:
    a, b = a.lower(), b.lower()
    if a.startswith(b) or b.startswith(a):
        return True
    # one edit apart (insert, delete, substitute) or a swapped pair
    if abs(len(a) - len(b)) > 1:
        return False
    if len(a) == len(b):
        diff = [i for i in range(len(a)) if a[i] != b[i]]
        return len(diff) == 1 or (
            len(diff) == 2 and diff[1] == diff[0] + 1 and a[diff[0]] == b[diff[1]] and a[diff[1]] == b[diff[0]]
        )
    short, long_ = (a, b) if len(a) < len(b) else (b, a)
    return any(long_[:i] + long_[i + 1 :] == short for i in range(len(long_)))


def _rebuild(cls: type[InvalidAddress], args: tuple[str], fields: dict[str, object]) -> InvalidAddress:
    return cls(args[0], **fields)  # type: ignore[arg-type]


def _where(source: str, line: int | None) -> str:
    """``vm.xml:12``, ``vm.xml``, ``line 12`` or ``""``: where in a document, as a compiler says it."""
    if line is None:
        return source
    return f"{source}:{line}" if source else f"line {line}"


def _rebuild_fields(cls: type[PcitopoError], args: tuple[object, ...], fields: dict[str, object]) -> PcitopoError:
    return cls(*args, **fields)


def _rebuild_unknown(cls: type[UnknownName], what: str, name: str, known: tuple[str, ...], where: str) -> UnknownName:
    return cls(what, name, known, where=where)


def _rebuild_unsat(
    cls: type[Unsatisfiable],
    conflicts: tuple[str, ...],
    facts: tuple[str, ...],
    suggestions: tuple[str, ...],
) -> Unsatisfiable:
    return cls(conflicts, facts=facts, suggestions=suggestions)
