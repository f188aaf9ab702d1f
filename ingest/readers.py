"""Readers: turn a stored file into pages of plain text.

Each reader returns ``list[Page]``; page offsets index the document's extracted text,
which is the pages joined by ``PAGE_SEPARATOR``.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Callable
from html.parser import HTMLParser
from pathlib import Path

from core.domain import DocumentKind, Page
from core.errors import ParseError

PAGE_SEPARATOR = "\n\n"


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


def read_pdf(path: Path) -> list[str]:
    from pypdf import PdfReader
    from pypdf.errors import PdfReadError

    try:
        reader = PdfReader(path)
        if reader.is_encrypted:
            raise ParseError("the PDF is encrypted; upload an unencrypted copy")
        return [page.extract_text() or "" for page in reader.pages]
    except ParseError:
        raise
    except (PdfReadError, ValueError, KeyError, TypeError, OSError) as exc:
        raise ParseError(f"the PDF could not be read: {exc}") from exc


def read_docx(path: Path) -> list[str]:
    import docx
    from docx.opc.exceptions import PackageNotFoundError

    try:
        document = docx.Document(str(path))
    except (PackageNotFoundError, KeyError, ValueError, OSError) as exc:
        raise ParseError(f"the Word document could not be read: {exc}") from exc
    parts = [p.text for p in document.paragraphs]
    for table in document.tables:
        for row in table.rows:
            parts.append(" | ".join(cell.text.strip() for cell in row.cells))
    return ["\n".join(parts)]


class _TextExtractor(HTMLParser):
    _SKIP = {"script", "style", "noscript", "template", "head"}
    _BLOCK = {"p", "div", "br", "li", "tr", "h1", "h2", "h3", "h4", "h5", "h6", "section",
              "article", "header", "footer", "table", "ul", "ol", "blockquote", "pre", "title"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self._SKIP:
            self._skip += 1
        elif tag in self._BLOCK:
            self.parts.append("\n\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in self._SKIP and self._skip:
            self._skip -= 1
        elif tag in self._BLOCK:
            self.parts.append("\n\n")

    def handle_data(self, data: str) -> None:
        if not self._skip:
            self.parts.append(data)


def read_html(path: Path) -> list[str]:
    parser = _TextExtractor()
    parser.feed(_decode(path.read_bytes()))
    parser.close()
    return ["".join(parser.parts)]


_MD_RULES = [
    (re.compile(r"^```.*$", re.M), ""),
    (re.compile(r"!\[([^\]]*)\]\([^)]*\)"), r"\1"),
    (re.compile(r"\[([^\]]+)\]\([^)]*\)"), r"\1"),
    (re.compile(r"^\s{0,3}#{1,6}\s*", re.M), ""),
    (re.compile(r"^\s*[-*+]\s+", re.M), ""),
    (re.compile(r"^\s*>\s?", re.M), ""),
    (re.compile(r"(\*\*|__)(.+?)\1"), r"\2"),
    (re.compile(r"`([^`]+)`"), r"\1"),
]


def read_markdown(path: Path) -> list[str]:
    text = _decode(path.read_bytes())
    for pattern, repl in _MD_RULES:
        text = pattern.sub(repl, text)
    return [text]


def read_text(path: Path) -> list[str]:
    return [_decode(path.read_bytes())]


def read_csv(path: Path) -> list[str]:
    text = _decode(path.read_bytes())
    try:
        dialect = csv.Sniffer().sniff(text[:4096], delimiters=",;\t|")
    except csv.Error:
        dialect = csv.excel  # type: ignore[assignment]
    rows = list(csv.reader(io.StringIO(text), dialect))
    if not rows:
        return [""]
    header, body = rows[0], rows[1:]
    if not body:
        return [", ".join(header)]
    lines = []
    for row in body:
        cells = [f"{h.strip()}: {v.strip()}" for h, v in zip(header, row, strict=False) if v.strip()]
        if cells:
            lines.append("; ".join(cells) + ".")
    return ["\n".join(lines)]


READERS: dict[DocumentKind, Callable[[Path], list[str]]] = {
    DocumentKind.PDF: read_pdf,
    DocumentKind.DOCX: read_docx,
    DocumentKind.HTML: read_html,
    DocumentKind.MARKDOWN: read_markdown,
    DocumentKind.TEXT: read_text,
    DocumentKind.CSV: read_csv,
}


def read_document(path: Path, kind: DocumentKind) -> list[Page]:
    """Parse ``path`` as ``kind`` into pages with offsets into the extracted text.

    Raises:
        ParseError: the file is damaged, encrypted or holds no text.
    """
    try:
        raw_pages = READERS[kind](path)
    except ParseError:
        raise
    except Exception as exc:  # a reader bug or odd file must fail the document, not the worker
        raise ParseError(f"the {kind.value} file could not be read: {type(exc).__name__}: {exc}") from exc
    pages: list[Page] = []
    offset = 0
    for number, raw in enumerate(raw_pages, start=1):
        text = _normalise(raw)
        pages.append(Page(number=number, text=text, offset=offset))
        offset += len(text) + len(PAGE_SEPARATOR)
    if not any(p.text for p in pages):
        raise ParseError("no text could be extracted (scanned or empty document?)")
    return pages


def full_text(pages: list[Page]) -> str:
    return PAGE_SEPARATOR.join(p.text for p in pages)
