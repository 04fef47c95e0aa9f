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

import attrs

__all__ = ["Edit", "ElementSpan", "indent_before", "scan", "splice"]


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


_START_TAG = re.compile(
    r"""<(?P<name>[^\s/>!?]+)(?:\s+[^\s=/>]+\s*=\s*(?:"[^"]*"|'[^']*'))*\s*(?P<close>/?)>""",
)
_END_TAG = re.compile(r"</(?P<name>[^\s>]+)\s*>")
_SKIP = (
    ("<!--", "-->"),
    ("<![CDATA[", "]]>"),
    ("<?", "?>"),
)
_DOCTYPE = re.compile(r"<!DOCTYPE[^\[>]*(?:\[.*?\])?\s*>", re.DOTALL)


class ScanError(ValueError):
    """The text is not what lxml parsed (a bug, not a user error)."""


def scan(text: str) -> list[ElementSpan]:
    """Every element of ``text`` in document order (the order of ``lxml``'s ``iter()``)."""
    found: list[list[int | str]] = []
    stack: list[int] = []
    pos = 0
    length = len(text)
    while True:
        pos = text.find("<", pos)
        if pos < 0 or pos >= length:
            break
        for opener, closer in _SKIP:
            if text.startswith(opener, pos):
                close = text.find(closer, pos + len(opener))
                if close < 0:
                    raise ScanError(f"unterminated {opener!r} at offset {pos}")
                pos = close + len(closer)
                break
        else:
            if text.startswith("<!", pos):
                match = _DOCTYPE.match(text, pos)
                if match is None:
                    raise ScanError(f"unreadable declaration at offset {pos}")
                pos = match.end()
                continue
            if text.startswith("</", pos):
                match = _END_TAG.match(text, pos)
                if match is None or not stack:
                    raise ScanError(f"unexpected end tag at offset {pos}")
                entry = found[stack.pop()]
                if entry[0] != match["name"]:
                    raise ScanError(f"end tag {match['name']!r} at offset {pos} closes {entry[0]!r}")
                entry[3] = pos
                entry[4] = match.end()
                pos = match.end()
                continue
            match = _START_TAG.match(text, pos)
            if match is None:
                raise ScanError(f"unreadable start tag at offset {pos}")
            end = match.end()
            if match["close"]:
                found.append([match["name"], pos, end, end, end])
            else:
                stack.append(len(found))
                found.append([match["name"], pos, end, -1, -1])
            pos = end
    if stack:
        raise ScanError(f"element {found[stack[-1]][0]!r} is never closed")
    return [ElementSpan(str(n), int(a), int(b), int(c), int(d)) for n, a, b, c, d in found]


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
