"""Where every element of an XML text starts and ends, and edits spliced into that text.

lxml reads the document; this module finds, for each element in document
order, the character offsets of its start tag and end tag, so that an exporter
can change a few elements and leave every other character of the input as it
was: quote style, entity references, attribute spacing, comments, blank lines.

It trusts its input to be well formed (lxml has already said so).

>>> spans = scan("<a x='1'><!-- <b/> --><b/>text</a>")
>>> [(s.name, s.start, s.start_end, s.end_start, s.end) for s in spans]
[('a', 0, 9, 30, 34), ('b', 22, 26, 26, 26)]
>>> splice("<a><b/></a>", [Edit(3, 3, "<c/>")])
'<a><c/><b/></a>'
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import cast

import attrs

__all__ = ["Edit", "ElementSpan", "Offsets", "indent_before", "scan", "scan_offsets", "splice"]


def __dir__() -> list[str]:
    return __all__


@attrs.frozen
class ElementSpan:
    """One element's place in the text.

    ``start``..``start_end`` is the start tag (``<a ...>`` or ``<a .../>``),
    ``end_start``..``end`` the end tag; both end offsets equal ``start_end``
    for an empty-element tag.
    """

    name: str
    start: int
    start_end: int
    end_start: int
    end: int

    @property
    def empty(self) -> bool:
        """Whether the element is written as one empty-element tag ``<a/>``."""
        return self.end == self.start_end


@attrs.frozen(order=True)
class Edit:
    """Replace ``text[start:end]`` by ``text`` (``start == end`` inserts)."""

    start: int
    end: int
    text: str


_TOKEN = re.compile(
    r"""<(?:(?P<name>[^\s/>!?]++)(?:\s++[^\s=/>]++\s*+=\s*+(?:"[^"]*+"|'[^']*+'))*+\s*+(?P<close>/?)>"""
    r"""|/(?P<end>[^\s>]++)\s*+>"""
    r"""|!--.*?-->"""
    r"""|!\[CDATA\[.*?\]\]>"""
    r"""|\?.*?\?>"""
    r"""|(?P<doctype>!DOCTYPE[^\[>]*(?:\[.*?\])?\s*>)"""
    r"""|(?P<bad>))""",
    re.DOTALL,
)
"""Every markup token: start tag, end tag, comment, CDATA, processing instruction, DOCTYPE.

In a well-formed document a ``<`` outside these is always the start of one
(text and attribute values escape it), so the tokens follow one another with
only text between them; a ``<`` that starts none of them is ``bad``. One
expression with the ``<`` in front lets the regular expression engine jump
from one ``<`` to the next: about a quarter of the instructions of a loop
over ``str.find`` trying each kind in turn.

The tag's repeats are possessive (``++``, ``*+``): each part of a tag stops
where the next part must begin (a name at a space, ``=``, ``/`` or ``>``, a
quoted value at its quote), so giving back characters never makes a match
that failed succeed, and the engine keeps no backtracking state for them: a
seventh fewer instructions for the scan of a 150-device domain (callgrind).
"""


class ScanError(ValueError):
    """The text is not what lxml parsed (a bug, not a user error)."""


def scan(text: str) -> list[ElementSpan]:
    """Every element of ``text`` in document order (the order of ``lxml``'s ``iter()``)."""
    return [ElementSpan(*offsets) for offsets in scan_offsets(text)]


Offsets = tuple[str, int, int, int, int]
"""An :class:`ElementSpan`'s fields as a tuple (``ElementSpan(*offsets)``)."""


def scan_offsets(text: str) -> list[Offsets]:
    """:func:`scan` as plain tuples: a reader that looks at a few elements' spans makes only those.

    >>> scan_offsets("<a><b/></a>")
    [('a', 0, 3, 7, 11), ('b', 3, 7, 7, 7)]
    """
    found: list[list[int | str]] = []
    stack: list[int] = []
    for match in _TOKEN.finditer(text):
        kind = match.lastgroup
        if kind is None or kind == "doctype":  # comment, CDATA, processing instruction, DOCTYPE
            continue
        pos = match.start()
        if kind == "end":
            if not stack:
                raise ScanError(f"unexpected end tag at offset {pos}")
            entry = found[stack.pop()]
            if entry[0] != match["end"]:
                raise ScanError(f"end tag {match['end']!r} at offset {pos} closes {entry[0]!r}")
            entry[3] = pos
            entry[4] = match.end()
        elif kind == "bad":
            what = "markup" if text.startswith("<!", pos) else "end tag" if text.startswith("</", pos) else "start tag"
            raise ScanError(f"unreadable {what} at offset {pos}")
        else:
            end = match.end()
            if match["close"]:
                found.append([match["name"], pos, end, end, end])
            else:
                stack.append(len(found))
                found.append([match["name"], pos, end, -1, -1])
    if stack:
        raise ScanError(f"element {found[stack[-1]][0]!r} is never closed")
    # each entry holds a name and four offsets already: made a tuple as it is (converting each value again to please
    # the type checker cost a fifth of the scan)
    return cast("list[Offsets]", list(map(tuple, found)))


def splice(text: str, edits: Iterable[Edit]) -> str:
    """``text`` with every edit applied; edits must not overlap (insertions at one point keep their order)."""
    ordered = sorted(enumerate(edits), key=lambda item: (item[1].start, item[1].end, item[0]))
    parts: list[str] = []
    pos = 0
    for _, edit in ordered:
        if edit.start < pos:
            raise ValueError(f"overlapping edits at offset {edit.start}")
        parts.append(text[pos : edit.start])
        parts.append(edit.text)
        pos = edit.end
    parts.append(text[pos:])
    return "".join(parts)


def indent_before(text: str, pos: int) -> str | None:
    """The whitespace between the start of the line and ``pos``, or ``None`` if other text is there.

    >>> indent_before("<a>\\n    <b/>", 8)
    '    '
    >>> indent_before("<a><b/>", 3) is None
    True
    """
    line_start = text.rfind("\n", 0, pos) + 1
    if line_start == 0:
        return None
    head = text[line_start:pos]
    return head if head.strip() == "" else None
