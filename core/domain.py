"""Domain types shared by the API and the workers."""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from core.units import Unit


class DocumentStatus(StrEnum):
    QUEUED = "queued"
    PROCESSING = "processing"
    READY = "ready"
    FAILED = "failed"


class DocumentKind(StrEnum):
    PDF = "pdf"
    DOCX = "docx"
    HTML = "html"
    MARKDOWN = "markdown"
    TEXT = "text"
    CSV = "csv"


@dataclass(slots=True)
class Progress:
    stage: str = "queued"
    done: int = 0
    total: int = 0


@dataclass(slots=True)
class Document:
    id: str
    tenant: str
    filename: str
    kind: DocumentKind
    sha256: str
    size: int
    status: DocumentStatus
    created_at: float
    updated_at: float
    progress: Progress = field(default_factory=Progress)
    chunks: int = 0
    pages: int = 0
    error: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    # PII redaction at ingest (ingest/pii.py): asked for at upload or forced for the tenant;
    # pii_counts (findings per type) is None until a redacted ingest has finished
    redact_pii: bool = False
    pii_counts: dict[str, int] | None = None
    # a DELETE has begun (``DocumentRepository.mark_deleting``): the document is never
    # searched again, no ingest writes for it and no text key is made for it
    deleting: bool = False


class LineKind(StrEnum):
    """What a reader knows a line of a page to be (``LineMark``)."""

    HEADING = "heading"
    ITEM = "item"
    ROW = "row"


@dataclass(slots=True, frozen=True)
class LineMark:
    """Structure a reader saw on one line of a page's text (the text split at ``"\n"``).

    Readers of structured formats (Markdown, HTML, DOCX, CSV) mark their headings, list
    items and table rows; the extracted text itself stays plain, so offsets into it stay
    exact. ``ingest/units.py`` turns the marks into evidence units and their context.
    """

    line: int  # index of the line in the page's text
    kind: LineKind
    level: int = 0  # heading: 1-6; list item: nesting depth (0 = top level)
    marker: int = 0  # list item: leading characters that are its marker ("1. "), not content
    header: str = ""  # table row: its table's header cells, joined by " | "


@dataclass(slots=True, frozen=True)
class Page:
    """Text of one page (or the whole document for formats without pages).

    ``offset`` is where this page's text starts in the document's extracted text;
    ``marks`` is the structure its reader saw (none for PDF and plain text).
    """

    number: int
    text: str
    offset: int
    marks: tuple[LineMark, ...] = ()


@dataclass(slots=True, frozen=True)
class Chunk:
    id: str
    document_id: str
    index: int
    text: str
    page: int
    start: int
    end: int


@dataclass(slots=True, frozen=True)
class ChunkHit:
    chunk_id: str
    document_id: str
    filename: str
    text: str
    page: int
    start: int
    end: int
    score: float
    # the chunk's stored metadata holding its sentence spans and vectors (computed at
    # ingest), decoded only when ``sentences`` is read: a search returning 200 chunks
    # should not pay for decoding 200 sets of vectors it never uses
    sentence_meta: dict[str, object] | None = None

    @property
    def sentences(self) -> tuple[list[tuple[int, int]], list[list[float]]] | None:
        """Unit spans (inside ``text``) and their vectors; None if absent or damaged."""
        if not self.sentence_meta:
            return None
        # the codec needs numpy (~0.1 s to import): the registry and the CLI, which import
        # this module but never read sentences, do without it
        from core.sentcodec import unpack

        return unpack(self.sentence_meta)

    @property
    def units(self) -> tuple[list[Unit], list[list[float]]] | None:
        """The evidence units stored at ingest (inside ``text``) and their vectors; chunks
        stored before units had kinds and context come back as plain sentences. None if
        absent or damaged."""
        if not self.sentence_meta:
            return None
        from core.sentcodec import unpack_units

        return unpack_units(self.sentence_meta)


def chunk_id(document_id: str, text: str, index: int, key: bytes) -> str:
    """Deterministic chunk id from (document id, chunk index, keyed hash of the text).

    Re-running an ingest of the same document yields the same ids, so upserts are
    idempotent and a redelivered task cannot duplicate vectors. The text's hash is an HMAC
    under the document's chunk-id key (``TextCipher.chunk_id_key``, derived from its text
    key): ids sit in Chroma, the keyword index and the append-only audit log, and an
    unkeyed hash would let anyone holding one confirm a guessed short chunk ("salary:
    85000") even after the document is erased. Erasure destroys the key, and with it any
    way to test a guess.

    Args:
        document_id: the owning document.
        text: the chunk text.
        index: the chunk's position in the document.
        key: the document's chunk-id key.

    Returns:
        A stable id of the form ``<document_id>:<index>:<hmac16>``.
    """
    digest = hmac.new(key, text.encode("utf-8"), hashlib.sha256).hexdigest()[:16]
    return f"{document_id}:{index}:{digest}"


@dataclass(slots=True, frozen=True)
class ApiKey:
    """A stored API key's public record: never the key itself, nor its hash."""

    id: str
    tenant: str
    name: str
    created_at: float
    revoked_at: float | None = None

    @property
    def active(self) -> bool:
        return self.revoked_at is None
