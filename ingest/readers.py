"""Readers: turn a stored file into pages of plain text, keeping the structure they see.

``read_document`` returns ``list[Page]``; page offsets index the document's extracted text,
which is the pages joined by ``PAGE_SEPARATOR``.

The text stays plain (no markup is added, so offsets into it are exact), but structured
formats lay it out line by line and say what each line is (``Page.marks``):

* headings on a line of their own (Markdown ``#``/setext, HTML ``h1``-``h6``, DOCX heading
  styles), with their level;
* each list item on a line of its own (Markdown ``-``/``*``/``+``/``1.``, HTML ``li``, DOCX
  list paragraphs), with its nesting depth; bullets are dropped, an ordered item keeps its
  number ("1. ") outside the item;
* each table row on a line of its own (Markdown, HTML and DOCX tables, CSV rows), labelled
  with its header cells where the table has a header ("Plan: Basic | Fee: €12/month");
* DOCX body paragraphs and tables in reading order; paragraphs and blocks apart by a blank
  line, the items of one list and the rows of one table by a single newline.

PDF and plain text mark no headings or lists: ``ingest/units.py`` reads those from their
lines. A PDF table drawn as text in aligned columns is found from where its cells stand and
marked as rows like the others (:func:`_pdf_page`).
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Callable, Sequence
from html.parser import HTMLParser
from pathlib import Path
from typing import Any, NamedTuple

from core.domain import DocumentKind, LineKind, LineMark, Page
from core.errors import ParseError
from ingest.limits import (
    check_text_size,
    check_zip,
    page_content_bytes,
    pdf_limits,
    scan_zip,
    too_much_text,
)

PAGE_SEPARATOR = "\n\n"
PageProgress = Callable[[int, int], None]  # (pages parsed, pages in total)


def _decode(data: bytes) -> str:
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("cp1252", errors="replace")


def _normalise(text: str) -> str:
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\x00", "")
    text = re.sub(r"[ \t\f\v]+", " ", text)
    text = re.sub(r" *\n *", "\n", text)
    return re.sub(r"\n{3,}", "\n\n", text).strip()


def read_pdf(path: Path, limits: Any, on_page: PageProgress | None = None) -> list[str | RawPage]:
    """Text per page, within the page, decompression and text limits (ingest/limits.py);
    a table the page lays out in aligned columns comes out as marked rows (:func:`_pdf_page`).

    ``on_page(done, total)`` is called once the page count is known and after each page.
    """
    # parser libraries load only where a document of their kind is parsed (the sandbox's child)
    from pypdf import PdfReader
    from pypdf.errors import LimitReachedError, PdfReadError

    try:
        with pdf_limits(limits):
            reader = PdfReader(path)
            if reader.is_encrypted:
                raise ParseError("the PDF is encrypted (password-protected); "
                                 "upload an unencrypted copy")
            n_pages = len(reader.pages)
            if n_pages > limits.pdf_max_pages:
                raise ParseError(
                    f"the PDF has {n_pages} pages; the limit is {limits.pdf_max_pages}")
            if on_page:
                on_page(0, n_pages)
            texts: list[str | RawPage] = []
            content = chars = 0
            for page in reader.pages:
                content += page_content_bytes(page)
                if content > limits.pdf_max_content_bytes:
                    raise ParseError(
                        "the PDF's page contents decompress to more than "
                        f"{limits.pdf_max_content_bytes} bytes (limit); refusing a likely PDF bomb")
                extracted = _pdf_page(page)
                chars += len(extracted if isinstance(extracted, str) else extracted.text)
                if chars > limits.max_text_chars:
                    raise too_much_text(limits.max_text_chars)
                texts.append(extracted)
                if on_page:
                    on_page(len(texts), n_pages)
            return texts
    except ParseError:
        raise
    except LimitReachedError as exc:
        raise ParseError(
            "the PDF exceeds a safety limit (likely a PDF bomb; one stream may decompress to at "
            f"most {limits.pdf_max_stream_bytes} bytes): {exc}") from exc
    except (PdfReadError, ValueError, KeyError, TypeError, OSError) as exc:
        raise ParseError(f"the PDF could not be read: {exc}") from exc


# ---------------------------------------------------------------- PDF tables

# a PDF draws a table's cells as text placed at column positions; no ruling lines are needed
# (and many tables have none), so a table is told by its text: two or more lines in a row
# whose pieces of text start at the same two or more x positions
_PDF_SAME_X = 2.0  # points: cells of one column start this close
_PDF_SAME_Y = 1.0  # points: pieces on one line sit this close
_PDF_MIN_GAP = 12.0  # points: columns start at least this far apart
_PDF_MAX_COLUMNS = 12
# two-column prose also starts its lines at two x positions: a table's cells are short
_PDF_MAX_MEAN_CELL_WORDS = 6.0


class _PdfPiece(NamedTuple):
    x: float
    y: float
    bold: bool
    text: str
    size: float = 0.0  # the font size as drawn, in points


_PDF_HEADING_WORDS = 10  # a heading line has at most this many words
_PDF_HEADING_LARGER = 1.5  # points above the body's font size


def _pdf_page(page: Any) -> str | RawPage:
    """One page's text (pypdf's ``extract_text``, read once), with its headings (lines set
    larger or in bold, :func:`_pdf_headings`) marked and the rows of the tables it lays out
    in columns marked and labelled by their header (:func:`_table_rows`); the page's plain
    text where it has neither, or where they cannot be found in that text."""
    pieces: list[_PdfPiece] = []

    def visit(text: str, cm: Any, tm: Any, font: Any, size: Any) -> None:
        if not text.strip():
            return
        x = tm[4] * cm[0] + tm[5] * cm[2] + cm[4]
        y = tm[4] * cm[1] + tm[5] * cm[3] + cm[5]
        name = str(font.get("/BaseFont", "")) if isinstance(font, dict) else ""
        scale = abs(float(tm[3]) * float(cm[3])) or 1.0
        drawn = float(size) * scale if isinstance(size, (int, float)) else 0.0
        pieces.append(_PdfPiece(float(x), float(y), "bold" in name.lower(), text.strip(), drawn))

    text = page.extract_text(visitor_text=visit) or ""
    tables = _pdf_tables(pieces)
    headings = _pdf_headings(pieces, tables)
    return _structured(text, tables, headings) if tables or headings else text


def _pdf_headings(pieces: Sequence[_PdfPiece], tables: list[list[list[_PdfPiece]]]
                  ) -> dict[str, int]:
    """Lines (as squashed text) that are headings → level: short lines outside tables, not
    ending like a sentence, set larger than the body text or all in bold where the body is
    not. Level 1 is set at least 1.4 times the body's size, level 2 at least 1.15 times,
    anything else level 3."""
    weight: dict[float, int] = {}
    for p in pieces:
        weight[round(p.size, 1)] = weight.get(round(p.size, 1), 0) + len(p.text)
    if not weight:
        return {}
    body = max(weight, key=lambda k: weight[k])
    body_bold = sum(len(p.text) for p in pieces if p.bold) * 2 > sum(weight.values())
    in_table = {id(p) for table in tables for line in table for p in line}
    found: dict[str, float] = {}
    for line in _pdf_lines(pieces):
        if any(id(p) in in_table for p in line):
            continue
        words = _squash(" ".join(p.text for p in line))
        size = max(p.size for p in line)
        larger = size >= body + _PDF_HEADING_LARGER
        bold = all(p.bold for p in line) and not body_bold
        if (larger or bold) and 0 < len(words.split()) <= _PDF_HEADING_WORDS \
                and words[:1].isalnum() and not words.endswith((".", ":", ";", ",", "!", "?")):
            found.setdefault(words, size)
    # levels by size against the body text, so that they agree from page to page
    return {w: 1 if v >= body * 1.4 else 2 if v >= body * 1.15 else 3 for w, v in found.items()}


def _pdf_lines(pieces: Sequence[_PdfPiece]) -> list[list[_PdfPiece]]:
    """Pieces on one baseline, in the order drawn, each line left to right."""
    lines: list[list[_PdfPiece]] = []
    for piece in pieces:
        if lines and abs(lines[-1][0].y - piece.y) <= _PDF_SAME_Y:
            lines[-1].append(piece)
        else:
            lines.append([piece])
    return [sorted(line, key=lambda p: p.x) for line in lines]


def _columns(line: list[_PdfPiece]) -> list[float] | None:
    xs = [p.x for p in line]
    if not 2 <= len(xs) <= _PDF_MAX_COLUMNS:
        return None
    if any(b - a < _PDF_MIN_GAP for a, b in zip(xs, xs[1:], strict=False)):
        return None
    return xs


def _pdf_tables(pieces: Sequence[_PdfPiece]) -> list[list[list[_PdfPiece]]]:
    """Runs of two or more lines whose pieces start at the same columns: each a table, as
    its lines of cells."""
    lines = _pdf_lines(pieces)
    tables: list[list[list[_PdfPiece]]] = []
    i = 0
    while i < len(lines):
        cols = _columns(lines[i])
        j = i + 1
        while cols is not None and j < len(lines):
            other = _columns(lines[j])
            if other is None or len(other) != len(cols) or any(
                    abs(a - b) > _PDF_SAME_X for a, b in zip(cols, other, strict=True)):
                break
            j += 1
        run = lines[i:j]
        words = [len(p.text.split()) for line in run for p in line]
        if j - i >= 2 and sum(words) / len(words) <= _PDF_MAX_MEAN_CELL_WORDS:
            tables.append(run)
            i = j
        else:
            i += 1
    return tables


def _pdf_header(table: list[list[_PdfPiece]]) -> bool:
    """Is a table's first line its header? It is set in bold and the rows are not, or it
    is three or more short labels without digits over rows that hold some."""
    first, rest = table[0], table[1:]
    if all(p.bold for p in first) and not all(p.bold for line in rest for p in line):
        return True
    labels = [p.text for p in first]
    return len(labels) >= 3 and all(
        len(c.split()) <= 5 and not any(ch.isdigit() for ch in c) for c in labels) and any(
        ch.isdigit() for line in rest for p in line for ch in p.text)


def _squash(text: str) -> str:
    return " ".join(text.split())


def _structured(text: str, tables: list[list[list[_PdfPiece]]], headings: dict[str, int]
                ) -> str | RawPage:
    """``text`` with each table's lines (found in it in order, whole) replaced by marked rows
    and its heading lines marked, each on a block of its own; ``text`` unchanged if a
    table's lines are not there as they were drawn."""
    lines = _normalise(text).split("\n")
    found: dict[int, tuple[int, list[list[_PdfPiece]]]] = {}  # first line → (lines, table)
    at = 0
    for table in tables:
        want = [_squash(" ".join(p.text for p in line)) for line in table]
        start = next((k for k in range(at, len(lines) - len(want) + 1)
                      if [_squash(x) for x in lines[k:k + len(want)]] == want), None)
        if start is None:
            return text
        found[start] = (len(want), table)
        at = start + len(want)
    out = _Lines()
    k = 0
    while k < len(lines):
        if k in found:
            n, table = found[k]
            rows = [[p.text for p in line] for line in table]
            header = rows[0] if _pdf_header(table) else None
            _table_rows(out, rows[1:] if header else rows, header)
            k += n
            continue
        level = headings.get(_squash(lines[k])) if lines[k] else None
        if level is not None:
            out.gap()
            out.add(lines[k], LineKind.HEADING, level)
            out.gap()
        elif lines[k]:
            out.add(lines[k])
        else:
            out.gap()
        k += 1
    return out.page()


# ---------------------------------------------------------------- structured text


class RawPage(NamedTuple):
    """A reader's page: its text and the structure it saw (``LineMark``: line numbers of
    that text, which must come out of ``_normalise`` unchanged for the marks to hold)."""

    text: str
    marks: tuple[LineMark, ...] = ()


_INLINE_SPACE = re.compile(r"[ \t\f\v]+")


class _Lines:
    """A page written line by line: paragraphs apart by a blank line, the lines of one block
    (a list's items, a table's rows, a paragraph's breaks) by a single newline, each line
    already normalised as ``_normalise`` would leave it, with the marks of its headings,
    list items and table rows."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.marks: list[LineMark] = []
        self._gap = False

    def gap(self) -> None:
        """A blank line before the next line (a new paragraph or block)."""
        self._gap = True

    def add(self, text: str, kind: LineKind | None = None, level: int = 0, prefix: str = "",
            header: str = "") -> None:
        """One line (line breaks inside ``text`` become spaces); ``prefix`` (a list item's
        number, "1. ") is kept in the text but not in the item."""
        text = _INLINE_SPACE.sub(" ", text.replace("\x00", "").replace("\r", " ")
                                 .replace("\n", " ")).strip()
        if not text:
            return
        if self._gap and self.lines:
            self.lines.append("")
        self._gap = False
        if kind is not None:
            self.marks.append(LineMark(len(self.lines), kind, level,
                                       len(prefix) if kind is LineKind.ITEM else 0, header))
        self.lines.append(prefix + text)

    def extend_last(self, text: str) -> None:
        """Continue the last line (a list item's wrapped or lazy line)."""
        text = _INLINE_SPACE.sub(" ", text.replace("\x00", "")).strip()
        if text and self.lines:
            self.lines[-1] += " " + text
        elif text:
            self.add(text)

    def mark_last(self, kind: LineKind, level: int) -> None:
        """The last line is a heading after all (a Markdown setext underline)."""
        if self.lines:
            n = len(self.lines) - 1
            self.marks = [m for m in self.marks if m.line != n]
            self.marks.append(LineMark(n, kind, level))

    def page(self) -> RawPage:
        return RawPage("\n".join(self.lines), tuple(self.marks))


def _cell(text: str) -> str:
    return " ".join(text.split())


def _table_rows(out: _Lines, rows: list[list[str]], header: list[str] | None) -> None:
    """A table, one row per line. With a header, each row is labelled with its header cells
    ("Plan: Basic | Fee: €12/month", as CSV rows are) and carries them in its mark; without
    one, its cells are joined by " | "."""
    out.gap()
    head = " | ".join(h for h in header if h) if header else ""
    for row in rows:
        cells = [_cell(c) for c in row]
        if not any(cells):
            continue
        if header:
            labels = header + [""] * (len(cells) - len(header))
            text = " | ".join(f"{h}: {v}" if h else v for h, v in zip(labels, cells, strict=False)
                              if v)
        else:
            text = " | ".join(cells)
        out.add(text, LineKind.ROW, header=head)
    out.gap()


# ---------------------------------------------------------------- DOCX


def read_docx(path: Path, limits: Any) -> list[str | RawPage]:
    """Paragraphs, headings, list items and tables in reading order, after the ZIP and DTD
    checks of ingest/limits.py (python-docx parses with lxml, ``resolve_entities=False`` and
    no network, as a second line)."""
    # parser libraries load only where a document of their kind is parsed (the sandbox's child)
    import docx
    from docx.opc.exceptions import PackageNotFoundError
    from docx.oxml.ns import qn
    from docx.table import Table
    from docx.text.paragraph import Paragraph

    check_zip(path, limits)
    scan_zip(path, limits)
    try:
        document = docx.Document(str(path))
    except (PackageNotFoundError, KeyError, ValueError, OSError) as exc:
        raise ParseError(f"the Word document could not be read: {exc}") from exc
    out = _Lines()
    in_list = False
    for child in document.element.body.iterchildren():
        if child.tag == qn("w:p"):
            paragraph = Paragraph(child, document)
            text = paragraph.text
            if not text.strip():
                continue
            level = _docx_heading_level(paragraph, qn)
            depth = None if level else _docx_list_depth(paragraph, qn)
            if depth is not None:
                if not in_list:
                    out.gap()
                out.add(text, LineKind.ITEM, depth)
                in_list = True
                continue
            out.gap()
            if level:
                out.add(text, LineKind.HEADING, level)
            else:
                out.add(text)
            in_list = False
        elif child.tag == qn("w:tbl"):
            table = Table(child, document)
            rows = _docx_table(table)
            header = rows[0] if len(rows) > 1 and _docx_has_header(table, rows, qn) else None
            _table_rows(out, rows[1:] if header else rows, header)
            in_list = False
    return [out.page()]


_HEADING_STYLE = re.compile(r"^heading\s*([1-9])$", re.I)
_LIST_STYLE_LEVEL = re.compile(r"^list\b.*?\s([2-9])$", re.I)


def _docx_heading_level(paragraph: Any, qn: Any) -> int:
    """1-6 for a heading (its style is a heading, or says the outline level), else 0."""
    style = paragraph.style
    seen = 0
    while style is not None and seen < 10:  # the style and the styles it is based on
        name = style.name or ""
        if name.lower() == "title":
            return 1
        m = _HEADING_STYLE.match(name) or _HEADING_STYLE.match(style.style_id or "")
        if m:
            return min(int(m.group(1)), 6)
        p_pr = style.element.find(qn("w:pPr"))
        outline = p_pr.find(qn("w:outlineLvl")) if p_pr is not None else None
        if outline is not None:
            value = outline.get(qn("w:val"), "")
            return min(int(value) + 1, 6) if value.isdigit() and int(value) < 9 else 0
        style, seen = style.base_style, seen + 1
    p_pr = paragraph._p.pPr
    outline = p_pr.find(qn("w:outlineLvl")) if p_pr is not None else None
    value = outline.get(qn("w:val"), "") if outline is not None else ""
    return min(int(value) + 1, 6) if value.isdigit() and int(value) < 9 else 0


def _docx_list_depth(paragraph: Any, qn: Any) -> int | None:
    """The nesting depth of a list paragraph (numbered or bulleted, directly or by its
    style), or None for any other paragraph."""
    p_pr = paragraph._p.pPr
    num_pr = p_pr.find(qn("w:numPr")) if p_pr is not None else None
    style = paragraph.style
    if num_pr is None and style is not None:
        s_pr = style.element.find(qn("w:pPr"))
        num_pr = s_pr.find(qn("w:numPr")) if s_pr is not None else None
        if num_pr is None and not (style.name or "").lower().startswith("list"):
            return None
    # "List Bullet 2", "List Number 3": Word's styles for nested levels
    by_name = _LIST_STYLE_LEVEL.search(style.name or "") if style is not None else None
    fallback = int(by_name.group(1)) - 1 if by_name else 0
    if num_pr is None:
        return fallback
    num_id = num_pr.find(qn("w:numId"))
    if num_id is not None and num_id.get(qn("w:val")) == "0":  # numbering switched off
        return None
    ilvl = num_pr.find(qn("w:ilvl"))
    value = ilvl.get(qn("w:val"), "") if ilvl is not None else ""
    return min(int(value), 8) if value.isdigit() else fallback


def _docx_table(table: Any) -> list[list[str]]:
    """Cell texts per row; a merged cell once (python-docx repeats it for each grid column)."""
    rows = []
    for row in table.rows:
        cells, seen = [], set()
        for cell in row.cells:
            if id(cell._tc) in seen:
                continue
            seen.add(id(cell._tc))
            cells.append(_cell(cell.text))
        rows.append(cells)
    return rows


def _docx_has_header(table: Any, rows: list[list[str]], qn: Any) -> bool:
    """Is the first row a header? Word says so (repeat as header row), or all its text is
    bold, or it looks like one: three or more columns of short labels without digits (a
    two-column table is more often a list of "name | value" pairs)."""
    first = table.rows[0]
    tr_pr = first._tr.trPr
    if tr_pr is not None and tr_pr.find(qn("w:tblHeader")) is not None:
        return True
    runs = [r for cell in first.cells for p in cell.paragraphs for r in p.runs if r.text.strip()]
    if runs and all(r.bold for r in runs):
        return True
    cells = rows[0]
    return len(cells) >= 3 and all(
        c and len(c.split()) <= 5 and not any(ch.isdigit() for ch in c) for c in cells)


# ---------------------------------------------------------------- HTML


_HEADINGS = {"h1": 1, "h2": 2, "h3": 3, "h4": 4, "h5": 5, "h6": 6}


class _TextExtractor(HTMLParser):
    """Headings, paragraphs, list items (with their nesting) and table rows of an HTML page,
    each block on lines of its own. Whitespace inside a block is collapsed (only ``<br>``
    and ``<pre>`` break lines); a list item, a heading and a table cell stay on one line."""

    _SKIP = {"script", "style", "noscript", "template", "head"}
    _BLOCK = {"p", "div", "br", "li", "tr", "h1", "h2", "h3", "h4", "h5", "h6", "section",
              "article", "header", "footer", "table", "ul", "ol", "blockquote", "pre", "title",
              "dl", "dt", "dd", "main", "nav", "aside", "figure", "figcaption", "address",
              "hr", "form", "fieldset", "details", "summary", "caption"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.out = _Lines()
        self.buf: list[str] = []
        self._skip = 0
        self._pre = 0
        self._heading = 0  # level of the heading being read
        self._lists = 0  # open ul/ol
        self._items: list[int] = []  # depths of the open list items, outermost first
        self._tables = 0  # open tables (a nested table is read into its outer cell)
        self._rows: list[list[str]] = []
        self._header_rows: set[int] = set()  # rows of th cells, or in thead
        self._row: list[str] | None = None
        self._row_th: list[bool] = []
        self._cell_open = False
        self._in_head = False

    @property
    def _item(self) -> int | None:
        return self._items[-1] if self._items else None

    def _inline(self) -> bool:
        """Inside a heading or a list item: blocks and breaks are spaces there."""
        return bool(self._heading) or bool(self._items)

    # ------------------------------------------------------------ text

    def _flush(self) -> None:
        """Write what was read since the last block boundary."""
        text = "".join(self.buf)
        self.buf.clear()
        if self._heading:
            self.out.add(text, LineKind.HEADING, self._heading)
        elif self._item is not None:
            self.out.add(text, LineKind.ITEM, self._item)
        else:
            for line in text.split("\n"):  # <br>, or the lines of <pre>
                self.out.add(line)

    def handle_data(self, data: str) -> None:
        if self._skip:
            return
        if not self._pre or self._inline() or self._tables:
            data = data.replace("\n", " ")
        self.buf.append(data)

    # ------------------------------------------------------------ tags

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self._SKIP:
            self._skip += 1
        elif self._skip:
            return
        elif self._tables:
            self._table_start(tag)
        elif tag == "table":
            self._flush()
            self._tables, self._rows, self._header_rows = 1, [], set()
        elif tag in ("ul", "ol"):
            self._flush()  # the text of the item this list is nested in
            if not self._lists:
                self.out.gap()
            self._lists += 1
        elif tag == "li":
            self._flush()
            depth = max(0, self._lists - 1)
            while self._items and self._items[-1] >= depth:  # an unclosed sibling
                self._items.pop()
            self._items.append(depth)
        elif tag in _HEADINGS and not self._inline():
            self._flush()
            self.out.gap()
            self._heading = _HEADINGS[tag]
        elif tag == "br":
            self.buf.append(" " if self._inline() else "\n")
        elif tag == "pre" and not self._inline():
            self._flush()
            self.out.gap()
            self._pre += 1
        elif tag in self._BLOCK:
            self._block_boundary()

    def handle_endtag(self, tag: str) -> None:
        if tag in self._SKIP:
            self._skip = max(0, self._skip - 1)
        elif self._skip:
            return
        elif self._tables:
            self._table_end(tag)
        elif tag in ("ul", "ol"):
            self._flush()
            self._lists = max(0, self._lists - 1)
            while self._items and self._items[-1] >= self._lists:  # this list's items
                self._items.pop()
            if not self._lists:
                self.out.gap()
        elif tag == "li":
            self._flush()
            if self._items:
                self._items.pop()
        elif tag in _HEADINGS and self._heading:
            self._flush()
            self._heading = 0
            self.out.gap()
        elif tag == "pre" and self._pre:
            self._flush()
            self._pre -= 1
            self.out.gap()
        elif tag in self._BLOCK:
            self._block_boundary()

    def _block_boundary(self) -> None:
        if self._inline():
            self.buf.append(" ")
        else:
            self._flush()
            self.out.gap()

    # ------------------------------------------------------------ tables

    def _table_start(self, tag: str) -> None:
        if tag == "table":
            self._tables += 1
            self.buf.append(" ")
        elif self._tables > 1:  # a nested table's tags: its text goes into the outer cell
            self.buf.append(" ")
        elif tag == "tr":
            self._end_row()
            self._row, self._row_th = [], []
        elif tag in ("td", "th"):
            self._end_cell()
            if self._row is None:
                self._row, self._row_th = [], []
            self._row_th.append(tag == "th" or self._in_head)
            self.buf.clear()
            self._cell_open = True
        elif tag == "thead":
            self._in_head = True
        elif tag in ("tbody", "tfoot"):
            self._in_head = False
        else:
            self.buf.append(" ")

    def _table_end(self, tag: str) -> None:
        if tag == "table" and self._tables > 1:
            self._tables -= 1
            self.buf.append(" ")
        elif tag == "table":
            self._end_table()
        elif self._tables > 1:
            self.buf.append(" ")
        elif tag in ("td", "th"):
            self._end_cell()
        elif tag == "tr":
            self._end_row()
        elif tag == "thead":
            self._in_head = False
        elif tag == "caption" and not self._cell_open:  # the table's title, above its rows
            self.out.gap()
            self.out.add("".join(self.buf))
            self.buf.clear()
        else:
            self.buf.append(" ")

    def _end_cell(self) -> None:
        if self._cell_open and self._row is not None:
            self._row.append(_cell("".join(self.buf)))
        self._cell_open = False
        self.buf.clear()

    def _end_row(self) -> None:
        self._end_cell()
        if self._row:
            if all(self._row_th[:len(self._row)]):
                self._header_rows.add(len(self._rows))
            self._rows.append(self._row)
        self._row, self._row_th = None, []

    def _end_table(self) -> None:
        """A header row (th cells, or thead) labels the rows below it."""
        self._end_row()
        self._tables, self._in_head = 0, False
        rows = self._rows
        header = rows[0] if len(rows) > 1 and 0 in self._header_rows else None
        _table_rows(self.out, rows[1:] if header else rows, header)
        self.buf.clear()

    def close(self) -> None:
        super().close()
        if self._tables:  # a table left open at the end of the file
            self._tables = 1
            self._end_table()
        self._flush()


def read_html(path: Path, limits: Any = None) -> list[str | RawPage]:
    """Stdlib ``HTMLParser``: no DTD processing, no external entities, no fetches; only the
    fixed HTML character references are decoded."""
    parser = _TextExtractor()
    parser.feed(_decode(path.read_bytes()))
    parser.close()
    return [parser.out.page()]


# ---------------------------------------------------------------- Markdown

# Linear-time patterns: no class that can run across lines or brackets, so a hostile file
# ("[" or blank lines repeated a million times) cannot make them backtrack quadratically.
_MD_INLINE = [
    (re.compile(r"!\[([^\[\]\n]{0,1000})\]\([^()\n]{0,2000}\)"), r"\1"),
    (re.compile(r"\[([^\[\]\n]{1,1000})\]\([^()\n]{0,2000}\)"), r"\1"),
    (re.compile(r"(\*\*|__)(.+?)\1"), r"\2"),
    (re.compile(r"`([^`]+)`"), r"\1"),
]
_MD_FENCE = re.compile(r"^[ \t]{0,3}(```|~~~)")
_MD_HEADING = re.compile(r"^[ \t]{0,3}(#{1,6})(?:[ \t]+|$)")
_MD_CLOSING_HASHES = re.compile(r"[ \t]+#+[ \t]*$")
_MD_SETEXT = re.compile(r"^[ \t]{0,3}(=+|-+)[ \t]*$")
_MD_RULE = re.compile(r"^[ \t]{0,3}([-*_])(?:[ \t]*\1){2,}[ \t]*$")
_MD_QUOTE = re.compile(r"^[ \t]{0,3}>[ \t]?")
_MD_ITEM = re.compile(r"^([ \t]*)([-*+]|\d{1,9}[.)])[ \t]+(?=\S)")
_MD_TABLE_DELIMITER = re.compile(r"^[ \t]*\|?[ \t]*:?-+:?[ \t]*(?:\|[ \t]*:?-+:?[ \t]*)*\|?[ \t]*$")
_MD_PIPE = re.compile(r"(?<!\\)\|")


def _md_inline(text: str) -> str:
    for pattern, repl in _MD_INLINE:
        text = pattern.sub(repl, text)
    return text


def _md_cells(line: str) -> list[str]:
    line = line.strip()
    if line.startswith("|"):
        line = line[1:]
    if line.endswith("|") and not line.endswith("\\|"):
        line = line[:-1]
    return [_md_inline(c.strip().replace("\\|", "|")) for c in _MD_PIPE.split(line)]


def _md_indent(spaces: str) -> int:
    return len(spaces.replace("\t", "    "))


def read_markdown(path: Path, limits: Any = None) -> list[str | RawPage]:
    """Headings (ATX and setext) on their own line, list items one per line (a wrapped or
    lazy line joins its item), tables as header-labelled rows; links, emphasis and code
    marks removed, as are bullets, quote marks, fences and rules."""
    src = _decode(path.read_bytes()).replace("\r\n", "\n").replace("\r", "\n").split("\n")
    out = _Lines()
    fenced = False
    prev = "blank"  # what the last line was: blank, para, item, heading, table, code
    indents: list[int] = []  # the open list's item indents, outermost first
    i = 0
    while i < len(src):
        line = src[i]
        i += 1
        if _MD_FENCE.match(line):
            fenced = not fenced
            out.gap()
            prev = "code" if fenced else "blank"
            continue
        if fenced:
            out.add(line)
            continue
        quoted = False
        while (q := _MD_QUOTE.match(line)) is not None:
            line, quoted = line[q.end():], True
        if not line.strip():
            out.gap()
            prev = "blank"
            continue
        if (h := _MD_HEADING.match(line)) is not None:
            out.gap()
            title = _MD_CLOSING_HASHES.sub("", line[h.end():])
            out.add(_md_inline(title), LineKind.HEADING, len(h.group(1)))
            out.gap()
            prev, indents = "heading", []
            continue
        if prev == "para" and not quoted and (u := _MD_SETEXT.match(line)) is not None:
            out.mark_last(LineKind.HEADING, 1 if u.group(1)[0] == "=" else 2)
            out.gap()
            prev, indents = "heading", []
            continue
        if _MD_RULE.match(line):
            out.gap()
            prev = "blank"
            continue
        if "|" in line and i < len(src) and _MD_TABLE_DELIMITER.match(src[i]) and "|" in (
                line + src[i]) and len(_md_cells(line)) == len(_md_cells(src[i])):
            header = _md_cells(line)
            i += 1
            rows = []
            while i < len(src) and "|" in src[i] and src[i].strip():
                rows.append(_md_cells(src[i]))
                i += 1
            _table_rows(out, rows, header) if rows else _table_rows(out, [header], None)
            prev, indents = "blank", []
            continue
        if (m := _MD_ITEM.match(line)) is not None:
            indent = _md_indent(m.group(1))
            while indents and indents[-1] > indent:
                indents.pop()
            if not indents or indent > indents[-1]:
                indents.append(indent)
            marker = m.group(2)
            prefix = f"{marker} " if marker[0].isdigit() else ""
            out.add(_md_inline(line[m.end():]), LineKind.ITEM, len(indents) - 1, prefix)
            prev = "item"
            continue
        if prev == "item" and not quoted:  # a wrapped or lazy line of the item above
            out.extend_last(_md_inline(line))
            continue
        if prev == "blank" and not line[:1].isspace():
            indents = []  # a paragraph after a blank line ends the list
        out.add(_md_inline(line))
        prev = "para"
    return [out.page()]


def read_text(path: Path, limits: Any = None) -> list[str | RawPage]:
    return [_decode(path.read_bytes())]


def read_csv(path: Path, limits: Any = None) -> list[str | RawPage]:
    """One line per row, each value labelled with its column ("name: Anna; badge: B-1."),
    marked as a table row with the header cells."""
    text = _decode(path.read_bytes())
    try:
        dialect = csv.Sniffer().sniff(text[:4096], delimiters=",;\t|")
    except csv.Error:
        dialect = csv.excel
    rows = list(csv.reader(io.StringIO(text), dialect))
    if not rows:
        return [""]
    header, body = rows[0], rows[1:]
    if not body:
        return [", ".join(header)]
    out = _Lines()
    head = " | ".join(_cell(h) for h in header if h.strip())
    for row in body:
        cells = [f"{h.strip()}: {v.strip()}"
                 for h, v in zip(header, row, strict=False) if v.strip()]
        if cells:
            out.add("; ".join(cells) + ".", LineKind.ROW, header=head)
    return [out.page()]


Extracted = Sequence[str | RawPage]  # a reader's pages: plain text, or text with marks

READERS: dict[DocumentKind, Callable[[Path, Any], Extracted]] = {
    DocumentKind.PDF: read_pdf,
    DocumentKind.DOCX: read_docx,
    DocumentKind.HTML: read_html,
    DocumentKind.MARKDOWN: read_markdown,
    DocumentKind.TEXT: read_text,
    DocumentKind.CSV: read_csv,
}


# what the readers and their libraries import lazily, and the codecs they look up by name
_LAZY_MODULES = {
    DocumentKind.PDF: ("pypdf", "pypdf.errors", "pypdf.filters", "pypdf.generic"),
    DocumentKind.DOCX: ("docx", "docx.opc.exceptions", "docx.oxml.ns", "docx.table",
                        "docx.text.paragraph"),
}
_CODECS = ("cp1252", "cp437", "latin-1", "ascii", "utf-8-sig", "utf-16", "utf-16-be",
           "utf-16-le", "utf-32", "charmap", "mac-roman")


def preload(kind: DocumentKind | None = None) -> None:
    """Import now what :func:`read_document` would import on first use for ``kind`` (None:
    every kind): the parse sandbox's child calls this before it isolates itself, after which
    no module file can be opened. Only the kind's libraries: pypdf and python-docx together
    cost a text file's parse about 100 ms."""
    import codecs
    import importlib

    for k, modules in _LAZY_MODULES.items():
        if kind is None or k is kind:
            for name in modules:
                importlib.import_module(name)
    for codec in _CODECS:
        codecs.lookup(codec)


def read_document(
    path: Path, kind: DocumentKind, limits: Any = None, on_page: PageProgress | None = None,
) -> list[Page]:
    """Parse ``path`` as ``kind`` into pages with offsets into the extracted text.

    Args:
        limits: ``core.settings.LimitSettings`` or an object with its attributes; default:
            the defaults. This runs in-process: the worker calls it through
            ``ingest.sandbox.parse_isolated`` (child process, time and memory limits).
        on_page: told (pages parsed, pages in total): page by page for PDFs, once at the end
            for the formats read in one piece (the sandbox relays it to the worker).

    Raises:
        ParseError: the file is damaged, encrypted, holds no text or breaks a limit.
    """
    if limits is None:
        # not at the top: the sandbox's child imports this module and passes its limits, and
        # must not load pydantic (ingest/limits.py)
        from core.settings import LimitSettings

        limits = LimitSettings()
    try:
        extracted: Extracted
        if kind is DocumentKind.PDF:  # the one format read page by page
            extracted = read_pdf(path, limits, on_page)
        else:
            extracted = READERS[kind](path, limits)
        raw_pages = [p if isinstance(p, RawPage) else RawPage(p) for p in extracted]
        check_text_size([p.text for p in raw_pages], limits)
    except (ParseError, MemoryError):  # MemoryError: the sandbox reports the memory limit
        raise
    except Exception as exc:  # a reader bug or odd file must fail the document, not the worker
        raise ParseError(f"the {kind.value} file could not be read: "
                         f"{type(exc).__name__}: {exc}") from exc
    pages: list[Page] = []
    offset = 0
    for number, raw in enumerate(raw_pages, start=1):
        text = _normalise(raw.text)
        # the marks name lines of the reader's text: only valid if normalising changed nothing
        marks = raw.marks if text == raw.text else ()
        pages.append(Page(number=number, text=text, offset=offset, marks=marks))
        offset += len(text) + len(PAGE_SEPARATOR)
    if not any(p.text for p in pages):
        raise ParseError("no text could be extracted (scanned or empty document?)")
    if on_page:
        on_page(len(pages), len(pages))
    return pages


def full_text(pages: list[Page]) -> str:
    return PAGE_SEPARATOR.join(p.text for p in pages)
