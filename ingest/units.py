"""Evidence units: the sentences, list items and table rows of a text, with their context.

The unit is what an answer scores, quotes and cites. Prose splits into sentences exactly as
``split_sentences`` splits it; a list item and a table row are one unit each; a heading is
never part of a unit but names the section of the units below it. Each unit carries its
context (:class:`core.domain.UnitContext`: section path, list lead-in, table header), which
is embedded with an item or a row and kept for the answer step, but is never part of the
quote: a unit's span is exactly the text it quotes.

Where the structure comes from, line by line (a line: the text between two ``"\\n"``):

* the marks of a reader that saw it (``Page.marks``: Markdown, HTML, DOCX and CSV mark their
  headings, list items and table rows);
* otherwise the text itself (PDF, plain text, and paragraphs of any format): a line opening
  with a bullet (``•``, ``-``, ``*``, ``1.``, ``a)`` …) is a list item; a line ending in ``:``
  followed by short lines that open with a capital or a digit is a lead-in and those lines
  are its items; a line opening in lower case continues the item above it (a wrapped line).

At ingest the document's pages are read once, in order (the section path runs on from page
to page), and each chunk's units are split from the chunk's own text with the context in
force where the chunk starts, so a chunk that opens inside a list still knows its lead-in.
"""

from __future__ import annotations

import re
from bisect import bisect_left, bisect_right
from collections.abc import Sequence
from dataclasses import dataclass, replace

from core.domain import Chunk, LineKind, LineMark, Page
from core.units import Unit, UnitContext, UnitKind
from ingest.sentences import split_sentences

__all__ = ["Line", "chunk_units", "classify_lines", "split_units"]

# Line kinds: the reader's (heading, item, row) and the text's own
TEXT, BLANK, HEADING, ITEM, MORE, ROW = "text", "blank", "heading", "item", "more", "row"

# A bullet opening an unmarked line: a symbol (including the private-use glyphs PDF fonts
# map bullets to), then a space and some text ...
_BULLET = re.compile(r"[•●○◦▪▫■□‣∙►▸➢➤✓✔\uf0b7\uf0a7\uf076\uf0d8\uf0fc*+\-–][ \t]+(?=\S)")
# ... or a number or letter, "1." / "1)" / "(1)" / "a)" / "(a)", which opens an item only
# where a sentence may start: "(O\n3) is ozone" is a wrapped formula, not a list
_NUMBERED = re.compile(r"(?:\(?\d{1,2}[.)]|\(?[A-Za-z]\))[ \t]+(?=\S)")
_SENTENCE_DONE = (".", "!", "?", ":", ";")
_SECTION_NUMBER = re.compile(r"\d{1,3}(?:\.\d{1,3})*\.?[ \t]+")
TITLE_WORDS = 10  # a guessed heading (plain text, PDF) has at most this many words
SHORT_LINE_WORDS = 12  # an unbulleted line under a lead-in is an item only if this short
_MAX_CONTEXT = 300  # characters kept of one heading, lead-in or header


@dataclass(frozen=True, slots=True)
class Line:
    """One line of a text and what it is. Offsets index that text."""

    start: int
    end: int
    kind: str  # text | blank | heading | item | more (continues the item above) | row
    body: int  # where its content starts (after a list marker)
    level: int = 0  # heading level, list nesting depth
    header: str = ""  # table row: the header cells
    title: str = ""  # heading: its whole text (a chunk may hold only part of the line)


def classify_lines(text: str, marks: Sequence[LineMark] = ()) -> list[Line]:
    """Every line of ``text`` with its kind: from ``marks`` where a reader gave one, else
    from the text (bullets, lead-ins, wrapped item lines)."""
    by_line = {m.line: m for m in marks}
    lines: list[Line] = []
    pos = 0
    for i, raw in enumerate(text.split("\n")):
        start, end = pos, pos + len(raw)
        pos = end + 1
        mark = by_line.get(i)
        if mark is not None and raw.strip():
            if mark.kind is LineKind.HEADING:
                lines.append(Line(start, end, HEADING, start, max(1, mark.level),
                                  title=_clip(raw)))
            elif mark.kind is LineKind.ITEM:
                lines.append(Line(start, end, ITEM, start + min(max(0, mark.marker), len(raw)),
                                  max(0, mark.level)))
            else:
                lines.append(Line(start, end, ROW, start, header=_clip(mark.header)))
        elif not raw.strip():
            lines.append(Line(start, end, BLANK, start))
        elif (bullet := _BULLET.match(raw)) is not None:
            lines.append(Line(start, end, ITEM, start + bullet.end()))
        else:
            lines.append(Line(start, end, TEXT, start))
    lines = _guess_items(text, lines, {m.line for m in marks})
    if not any(m.kind is LineKind.HEADING for m in marks):  # the reader saw no headings
        lines = _guess_headings(text, lines, {m.line for m in marks})
    return lines


def _guess_items(text: str, lines: list[Line], marked: set[int]) -> list[Line]:
    """Unmarked text lines that open a numbered item, continue an item, or are the items of
    a lead-in."""
    run: int | None = None  # level of the unbulleted items under a lead-in, while they last
    for i, cur in enumerate(lines):
        if cur.kind != TEXT or i in marked:  # a blank line, a bullet, a mark: no run
            run = None
            continue
        prev = lines[i - 1] if i else None
        line = text[cur.start:cur.end]
        prev_text = text[prev.start:prev.end] if prev is not None else ""
        numbered = _NUMBERED.match(line)
        if numbered is not None and _numbered_heading(lines, i, line):
            run = None  # "4. PADLOCK COLOURS" alone between blank lines: a section's title
        elif numbered is not None and (prev is None or prev.kind != TEXT
                                       or prev_text.endswith(_SENTENCE_DONE)):
            # "1. …" where a sentence may start: "(O\n3) is ozone" is a wrapped formula
            lines[i] = replace(cur, kind=ITEM, body=cur.start + numbered.end())
            run = None
        elif prev is None or i - 1 in marked:  # a reader wrote that item or row whole
            run = None
        elif prev.kind in (ITEM, MORE) and line[:1].islower():
            lines[i] = replace(cur, kind=MORE, level=prev.level)
        elif prev.kind in (TEXT, ITEM, MORE) and _short(line) and prev_text.endswith(":"):
            run = prev.level + 1 if prev.kind in (ITEM, MORE) else 0
            lines[i] = replace(cur, kind=ITEM, level=run)
        elif run is not None and prev.kind in (ITEM, MORE) and _short(line):
            lines[i] = replace(cur, kind=ITEM, level=run)
        else:
            run = None
    return lines


def _numbered_heading(lines: list[Line], i: int, line: str) -> bool:
    """A numbered line in capitals standing alone between blank lines ("4. PADLOCK COLOURS")
    is a section's title, which :func:`_guess_headings` takes, not the item of a list: an
    item is not written in capitals."""
    number = _SECTION_NUMBER.match(line)
    rest = line[number.end():] if number else ""
    letters = [c for c in rest if c.isalpha()]
    alone = (i == 0 or lines[i - 1].kind == BLANK) and i + 1 < len(lines) \
        and lines[i + 1].kind == BLANK
    return alone and len(letters) >= 2 and all(c.isupper() for c in letters) \
        and _title_like(line)


def _guess_headings(text: str, lines: list[Line], marked: set[int]) -> list[Line]:
    """On a page whose reader saw no headings (plain text, PDF, or a Word file that fakes
    them with bold paragraphs): an unmarked line that stands alone between blank lines, with
    text after it, and reads like a title (short, no closing punctuation, no "label: value",
    no figures but a leading section number) is a heading: "Payment terms" over its
    paragraphs. Anything less clear stays text; a heading is never quoted, so a wrong guess
    would hide a line."""
    last_content = max((i for i, ln in enumerate(lines) if ln.kind != BLANK), default=-1)
    for i, cur in enumerate(lines):
        if cur.kind != TEXT or i in marked or i + 1 >= last_content:
            continue
        if (i and lines[i - 1].kind != BLANK) or lines[i + 1].kind != BLANK:
            continue
        if _title_like(text[cur.start:cur.end]):
            lines[i] = replace(cur, kind=HEADING, level=1, title=_clip(text[cur.start:cur.end]))
    return lines


def _title_like(line: str) -> bool:
    number = _SECTION_NUMBER.match(line)
    rest = line[number.end():] if number else line
    return (0 < len(rest.split()) <= TITLE_WORDS and rest[:1].isupper()
            and not rest.endswith((".", "!", "?", ":", ";", ","))
            and not any(c.isdigit() for c in rest) and ": " not in rest)


def _short(line: str) -> bool:
    """Could be an unbulleted item: short, not opening in lower case, not a lead-in itself."""
    return not line[:1].islower() and len(line.split()) <= SHORT_LINE_WORDS and \
        not line.endswith(":")


def _clip(text: str) -> str:
    return " ".join(text.split())[:_MAX_CONTEXT]


@dataclass(frozen=True, slots=True)
class State:
    """The context in force at a point of a document."""

    section: tuple[tuple[int, str], ...] = ()  # (level, title) of the headings above
    last: str = ""  # the last sentence seen: the lead-in of a list that starts next
    lead: str = ""  # the open list's lead-in
    parents: tuple[str, ...] = ()  # the open list's latest item at each level
    in_list: bool = False

    @property
    def path(self) -> tuple[str, ...]:
        return tuple(title for _level, title in self.section)


def build_units(text: str, lines: Sequence[Line], state: State = State()
                ) -> tuple[list[Unit], list[State], State]:
    """The units of ``text`` (classified into ``lines``), the state before each line, and
    the state after the last."""
    units: list[Unit] = []
    before: list[State] = []
    i, n = 0, len(lines)
    while i < n:
        line = lines[i]
        if line.kind in (TEXT, BLANK):  # a run of prose: sentences, as split_sentences cuts them
            j = i
            while j + 1 < n and lines[j + 1].kind in (TEXT, BLANK):
                j += 1
            before.extend([state] * (j - i + 1))
            lo = line.start
            spans = [(lo + s, lo + e) for s, e in split_sentences(text[lo:lines[j].end])]
            ctx = UnitContext(section=state.path)
            units.extend(Unit(s, e, UnitKind.SENTENCE, ctx) for s, e in spans)
            if spans:
                state = replace(state, last=_clip(text[spans[-1][0]:spans[-1][1]]),
                                in_list=False)
            i = j + 1
        elif line.kind == HEADING:
            before.append(state)
            title = line.title or _clip(text[line.start:line.end])
            state = State(section=tuple(h for h in state.section if h[0] < line.level)
                          + ((line.level, title),))
            i += 1
        elif line.kind in (ITEM, MORE):  # an item and the lines that continue it
            j = i
            while j + 1 < n and lines[j + 1].kind == MORE:
                j += 1
            before.extend([state] * (j - i + 1))
            if not state.in_list:
                state = replace(state, lead=state.last, parents=(), in_list=True)
            s, e = _trim(text, line.body, lines[j].end)
            if e > s:
                level = min(line.level, len(state.parents))
                lead_in = state.parents[level - 1] if level > 0 else state.lead
                ctx = UnitContext(section=state.path, lead_in=lead_in)
                # an item of several sentences (a paragraph in a list) is scored sentence by
                # sentence, as prose is; each keeps the item's lead-in
                pieces = [(s + a, s + b) for a, b in split_sentences(text[s:e])] or [(s, e)]
                units.extend(Unit(a, b, UnitKind.ITEM, ctx) for a, b in pieces)
                state = replace(state, parents=state.parents[:level] + (_clip(text[s:e]),))
            i = j + 1
        else:  # a table row
            before.append(state)
            s, e = _trim(text, line.body, line.end)
            if e > s:
                units.append(Unit(s, e, UnitKind.ROW,
                                  UnitContext(section=state.path, header=line.header)))
            state = replace(state, in_list=False, last="")  # a list below has no lead-in here
            i += 1
    return units, before, state


def _trim(text: str, start: int, end: int) -> tuple[int, int]:
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return start, end


def split_units(text: str, marks: Sequence[LineMark] = ()) -> list[Unit]:
    """The units of one text on its own (no context from before it). Prose without list or
    table lines gives exactly the spans of ``split_sentences``."""
    return build_units(text, classify_lines(text, marks))[0]


def chunk_units(pages: Sequence[Page], chunks: Sequence[Chunk]) -> list[list[Unit]]:
    """Per chunk, its units (offsets inside the chunk's text), with the context in force
    where each starts: the pages are read in order, then each chunk is split from its own
    text, its lines classified as on its page."""
    analysed: dict[int, tuple[Page, list[Line], list[State], list[int]]] = {}
    state = State()
    for page in pages:
        lines = classify_lines(page.text, page.marks)
        _units, before, state = build_units(page.text, lines, state)
        analysed[page.number] = (page, lines, before, [ln.start for ln in lines])
    out: list[list[Unit]] = []
    for chunk in chunks:
        entry = analysed.get(chunk.page)
        lo = chunk.start - entry[0].offset if entry else -1
        hi = lo + len(chunk.text)
        if entry is None or lo < 0 or entry[0].text[lo:hi] != chunk.text:
            out.append(split_units(chunk.text))  # not a slice of its page: no page context
            continue
        _page, lines, before, starts = entry
        first = bisect_right(starts, lo) - 1
        last = bisect_left(starts, hi)  # lines starting before the chunk's end
        clipped = [_clip_line(line, lo, hi) for line in lines[first:last]]
        out.append(build_units(chunk.text, clipped, before[first])[0])
    return out


def _clip_line(line: Line, lo: int, hi: int) -> Line:
    """``line`` cut to the window [lo, hi) of its text, with offsets inside the window."""
    start, end = max(line.start, lo) - lo, min(line.end, hi) - lo
    return replace(line, start=start, end=max(start, end),
                   body=min(max(line.body, lo) - lo, max(start, end)))
