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
from typing import Any

from core.domain import DocumentKind, Page
from core.errors import ParseError
from ingest.limits import check_text_size, check_zip, page_content_bytes, pdf_limits, scan_zip

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


def read_pdf(path: Path, limits: Any, on_page: PageProgress | None = None) -> list[str]:
    """Text per page, within the page, decompression and text limits (ingest/limits.py).

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
            texts: list[str] = []
            content = chars = 0
            for page in reader.pages:
                content += page_content_bytes(page)
                if content > limits.pdf_max_content_bytes:
                    raise ParseError(
                        "the PDF's page contents decompress to more than "
                        f"{limits.pdf_max_content_bytes} bytes (limit); refusing a likely PDF bomb")
                text = page.extract_text() or ""
                chars += len(text)
                if chars > limits.max_text_chars:
                    raise ParseError(f"the document holds more than {limits.max_text_chars} "
                                     "characters of text (limit)")
                texts.append(text)
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


def read_docx(path: Path, limits: Any) -> list[str]:
    """Paragraphs and table rows, after the ZIP and DTD checks of ingest/limits.py (python-docx
    parses with lxml, ``resolve_entities=False`` and no network, as a second line)."""
    # parser libraries load only where a document of their kind is parsed (the sandbox's child)
    import docx
    from docx.opc.exceptions import PackageNotFoundError

    check_zip(path, limits)
    scan_zip(path, limits)
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


def read_html(path: Path, limits: Any = None) -> list[str]:
    """Stdlib ``HTMLParser``: no DTD processing, no external entities, no fetches; only the
    fixed HTML character references are decoded."""
    parser = _TextExtractor()
    parser.feed(_decode(path.read_bytes()))
    parser.close()
    return ["".join(parser.parts)]


# Linear-time patterns: no class that can run across lines or brackets, so a hostile file
# ("[" or blank lines repeated a million times) cannot make them backtrack quadratically.
_MD_RULES = [
    (re.compile(r"^```.*$", re.M), ""),
    (re.compile(r"!\[([^\[\]\n]{0,1000})\]\([^()\n]{0,2000}\)"), r"\1"),
    (re.compile(r"\[([^\[\]\n]{1,1000})\]\([^()\n]{0,2000}\)"), r"\1"),
    (re.compile(r"^[ \t]{0,3}#{1,6}[ \t]*", re.M), ""),
    (re.compile(r"^[ \t]*[-*+][ \t]+", re.M), ""),
    (re.compile(r"^[ \t]*>[ \t]?", re.M), ""),
    (re.compile(r"(\*\*|__)(.+?)\1"), r"\2"),
    (re.compile(r"`([^`]+)`"), r"\1"),
]


def read_markdown(path: Path, limits: Any = None) -> list[str]:
    text = _decode(path.read_bytes())
    for pattern, repl in _MD_RULES:
        text = pattern.sub(repl, text)
    return [text]


def read_text(path: Path, limits: Any = None) -> list[str]:
    return [_decode(path.read_bytes())]


def read_csv(path: Path, limits: Any = None) -> list[str]:
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
    lines = []
    for row in body:
        cells = [f"{h.strip()}: {v.strip()}"
                 for h, v in zip(header, row, strict=False) if v.strip()]
        if cells:
            lines.append("; ".join(cells) + ".")
    return ["\n".join(lines)]


READERS: dict[DocumentKind, Callable[[Path, Any], list[str]]] = {
    DocumentKind.PDF: read_pdf,
    DocumentKind.DOCX: read_docx,
    DocumentKind.HTML: read_html,
    DocumentKind.MARKDOWN: read_markdown,
    DocumentKind.TEXT: read_text,
    DocumentKind.CSV: read_csv,
}


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
        if kind is DocumentKind.PDF:  # the one format read page by page
            raw_pages = read_pdf(path, limits, on_page)
        else:
            raw_pages = READERS[kind](path, limits)
        check_text_size(raw_pages, limits)
    except (ParseError, MemoryError):  # MemoryError: the sandbox reports the memory limit
        raise
    except Exception as exc:  # a reader bug or odd file must fail the document, not the worker
        raise ParseError(f"the {kind.value} file could not be read: "
                         f"{type(exc).__name__}: {exc}") from exc
    pages: list[Page] = []
    offset = 0
    for number, raw in enumerate(raw_pages, start=1):
        text = _normalise(raw)
        pages.append(Page(number=number, text=text, offset=offset))
        offset += len(text) + len(PAGE_SEPARATOR)
    if not any(p.text for p in pages):
        raise ParseError("no text could be extracted (scanned or empty document?)")
    if on_page:
        on_page(len(pages), len(pages))
    return pages


def full_text(pages: list[Page]) -> str:
    return PAGE_SEPARATOR.join(p.text for p in pages)
