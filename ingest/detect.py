"""Decide a document's kind from its name and its first bytes (never from the client's word)."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path
from typing import Any

from core.domain import DocumentKind
from core.errors import UnsupportedMediaError
from core.settings import LimitSettings
from ingest.limits import check_zip

_TEXT_SUFFIXES = {
    ".txt": DocumentKind.TEXT,
    ".text": DocumentKind.TEXT,
    ".md": DocumentKind.MARKDOWN,
    ".markdown": DocumentKind.MARKDOWN,
    ".html": DocumentKind.HTML,
    ".htm": DocumentKind.HTML,
    ".csv": DocumentKind.CSV,
}
_BINARY_MAGIC = (
    b"\x7fELF", b"MZ", b"\xca\xfe\xba\xbe", b"\xcf\xfa\xed\xfe", b"#!",
    b"\x1f\x8b", b"BZh", b"\xfd7zXZ", b"Rar!", b"7z\xbc\xaf",
)


def sniff_kind(
    filename: str, head: bytes, path: Path | None = None, limits: Any = None
) -> DocumentKind:
    """Return the document kind, checking that the bytes agree with the name.

    Args:
        filename: the client's filename (used only for its suffix).
        head: the first few KiB of the upload.
        path: the staged file, needed to look inside ZIP containers (DOCX).
        limits: ``core.settings.LimitSettings`` for the ZIP central-directory checks
            (default: the defaults).

    Raises:
        UnsupportedMediaError: unknown type, executable content, or bytes that
            contradict the filename.
        ParseError: a ZIP over the member, size or ratio limits, or with odd member
            names (ingest/limits.check_zip; read from the central directory only).
    """
    suffix = Path(filename).suffix.lower()
    if head.startswith(b"%PDF-"):
        if suffix not in ("", ".pdf"):
            raise UnsupportedMediaError(f"content is a PDF but the name ends in {suffix!r}")
        return DocumentKind.PDF
    if head.startswith(b"PK\x03\x04"):
        if suffix not in ("", ".docx"):
            raise UnsupportedMediaError(
                f"content is a ZIP container but the name ends in {suffix!r}; "
                "only .docx is accepted"
            )
        if path is not None:
            if limits is None:
                limits = LimitSettings()
            check_zip(path, limits)  # before anything builds objects for every member
            if not _is_docx(path):
                raise UnsupportedMediaError("ZIP file is not a Word document (.docx)")
        return DocumentKind.DOCX
    if any(head.startswith(m) for m in _BINARY_MAGIC) or b"\x00" in head:
        raise UnsupportedMediaError(
            "binary or executable content is not accepted; upload PDF, DOCX, HTML, Markdown, "
            "text or CSV"
        )
    if suffix == ".pdf":
        raise UnsupportedMediaError("file is named .pdf but is not a PDF")
    if suffix == ".docx":
        raise UnsupportedMediaError("file is named .docx but is not a Word document")
    if suffix in _TEXT_SUFFIXES:
        return _TEXT_SUFFIXES[suffix]
    if not suffix:
        stripped = head.lstrip().lower()
        if stripped.startswith((b"<!doctype html", b"<html")):
            return DocumentKind.HTML
        return DocumentKind.TEXT
    raise UnsupportedMediaError(
        f"files ending in {suffix!r} are not supported; "
        "upload PDF, DOCX, HTML, Markdown, text or CSV"
    )


def _is_docx(path: Path) -> bool:
    try:
        with zipfile.ZipFile(path) as zf:
            return "word/document.xml" in zf.namelist()
    except (zipfile.BadZipFile, OSError):
        return False


def sniff_bytes(filename: str, data: bytes) -> DocumentKind:
    """Convenience for in-memory content (tests, small files)."""
    if data.startswith(b"PK\x03\x04"):
        try:
            with zipfile.ZipFile(io.BytesIO(data)) as zf:
                if "word/document.xml" not in zf.namelist():
                    raise UnsupportedMediaError("ZIP file is not a Word document (.docx)")
        except zipfile.BadZipFile as exc:
            raise UnsupportedMediaError("damaged ZIP/DOCX file") from exc
    return sniff_kind(filename, data[:8192])
