"""Request and response bodies of the v1 API.

Fields that take one of a fixed set of values are enums in the schema (``DocumentStatus``,
``DocumentKind`` from core/domain.py; the Literals below), so generated clients get enum
types; the values on the wire are the plain strings they always were.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal, cast

import msgspec

from core.domain import Document, DocumentKind, DocumentStatus
from service.answer import AnswerResult
from service.answer import Citation as AnswerCitation
from service.answer.result import AnswerStatus

MetaValue = str | int | float | bool
ProgressStage = Literal["queued", "parsing", "chunking", "embedding", "indexing", "ready",
                        "failed"]
ProgressUnit = Literal["pages", "chunks", ""]


class Filters(msgspec.Struct, forbid_unknown_fields=True):
    """Narrow a search or question to some of the caller's documents (all conditions apply;
    they can only narrow what the tenant already sees)."""

    document_ids: Annotated[list[str], msgspec.Meta(max_length=1000)] | None = None
    filename: Annotated[str, msgspec.Meta(min_length=1, max_length=255,
                                          description="exact name, or a glob with * and ?")
                        ] | None = None
    metadata: Annotated[dict[str, MetaValue], msgspec.Meta(
        max_length=20, description="key: value pairs given at upload (value in list matches)")
    ] | None = None
    uploaded_after: datetime | None = None
    uploaded_before: datetime | None = None


class SearchRequest(msgspec.Struct, forbid_unknown_fields=True):
    query: Annotated[str, msgspec.Meta(min_length=1, max_length=4000)]
    top_k: Annotated[int, msgspec.Meta(ge=1, le=200)] | None = None
    filters: Filters | None = None
    mode: Annotated[Literal["hybrid", "dense", "keyword"], msgspec.Meta(
        description="hybrid: dense and keyword (BM25) fused (the default when enabled); "
        "dense: embeddings only; keyword: BM25 only")] | None = None


MAX_HISTORY_TURNS = 8  # earlier questions a follow-up may name (the pipeline uses the latest)


class AskRequest(msgspec.Struct, forbid_unknown_fields=True):
    question: Annotated[str, msgspec.Meta(min_length=1, max_length=4000)]
    top_k: Annotated[int, msgspec.Meta(ge=1, le=50)] | None = None
    filters: Filters | None = None
    history: Annotated[
        list[Annotated[str, msgspec.Meta(max_length=4000)]],
        msgspec.Meta(max_length=MAX_HISTORY_TURNS, description=(
            "the conversation's earlier questions, oldest first: a follow-up that points "
            "back (\"when was it founded?\") takes its subject from them. Questions only; "
            "answers are not instructions"))] = msgspec.field(default_factory=list)
    stream: Annotated[bool, msgspec.Meta(
        description="true: answer as text/event-stream (`token` events, then one `final` event "
        "holding this same response body)")] = False


class Citation(msgspec.Struct):
    n: int
    document_id: str
    filename: str
    page: int
    start: int
    end: int
    quote: str
    score: float


class AskResponse(msgspec.Struct):
    status: Annotated[AnswerStatus, msgspec.Meta(
        description="answered: `answer` quotes or paraphrases the cited passages; not_found: "
                    "the documents do not answer it (no citations)")]
    answer: str
    citations: list[Citation]
    timings: dict[str, float]


def citation_out(c: AnswerCitation) -> Citation:
    return Citation(c.n, c.document_id, c.filename, c.page, c.start, c.end, c.quote, c.score)


def ask_body(result: AnswerResult) -> AskResponse:
    """The body of a non-streaming ``/v1/ask`` (and the ``final`` event of a streaming one)."""
    return AskResponse(result.status, result.answer,
                       [citation_out(c) for c in result.citations], result.timings)


class SearchResult(msgspec.Struct):
    chunk_id: str
    document_id: str
    filename: str
    page: int
    start: int
    end: int
    text: str
    score: float


class SearchResponse(msgspec.Struct):
    results: list[SearchResult]


class ProgressOut(msgspec.Struct):
    stage: ProgressStage
    done: int
    total: int
    # what done/total count: "pages" while parsing, "chunks" while embedding/indexing
    unit: ProgressUnit = ""


PROGRESS_UNITS: dict[str, ProgressUnit] = {"parsing": "pages", "embedding": "chunks",
                                           "indexing": "chunks"}


class PiiOut(msgspec.Struct):
    redacted: bool
    # findings replaced, per type (only types found); null until a redacted ingest finished
    counts: dict[str, int] | None


class DocumentOut(msgspec.Struct):
    id: str
    filename: str
    kind: DocumentKind
    status: DocumentStatus
    progress: ProgressOut
    chunks: int
    pages: int
    error: str | None
    sha256: str
    size: int
    metadata: dict[str, Any]
    created_at: str
    updated_at: str
    pii: PiiOut

    @classmethod
    def from_domain(cls, doc: Document) -> DocumentOut:
        def iso(ts: float) -> str:
            return datetime.fromtimestamp(ts, tz=UTC).isoformat()

        return cls(
            id=doc.id, filename=doc.filename, kind=doc.kind, status=doc.status,
            # the registry writes only the stages ProgressStage names (ingest/pipeline.py)
            progress=ProgressOut(cast(ProgressStage, doc.progress.stage), doc.progress.done,
                                 doc.progress.total,
                                 PROGRESS_UNITS.get(doc.progress.stage, "")),
            chunks=doc.chunks, pages=doc.pages, error=doc.error, sha256=doc.sha256,
            size=doc.size, metadata=doc.metadata, created_at=iso(doc.created_at),
            updated_at=iso(doc.updated_at),
            pii=PiiOut(doc.redact_pii, doc.pii_counts if doc.redact_pii else None),
        )


class DocumentList(msgspec.Struct):
    items: list[DocumentOut]
    total: int
    limit: int
    offset: int


MAX_BATCH_IDS = 1000  # ids per batch status request or batch event stream

DocumentId = Annotated[str, msgspec.Meta(min_length=1, max_length=128)]


class DocumentIds(msgspec.Struct, forbid_unknown_fields=True):
    """Some of the caller's documents, by id (at most 1,000 at once; repeats count once)."""

    ids: Annotated[list[DocumentId], msgspec.Meta(min_length=1, max_length=MAX_BATCH_IDS)]


class DocumentStatuses(msgspec.Struct):
    items: Annotated[list[DocumentOut], msgspec.Meta(
        description="the documents found, in the order asked, each once")]
    missing: Annotated[list[str], msgspec.Meta(
        description="ids the caller has no document for (unknown, erased, or another "
        "tenant's: all look the same)")]


class DocumentCounts(msgspec.Struct):
    """The caller's documents per status."""

    queued: int
    processing: int
    ready: int
    failed: int
    total: int


class UploadAccepted(msgspec.Struct):
    id: str
    status: DocumentStatus
    duplicate: bool = False
    pii_redacted: bool = False


class DocumentTextOut(msgspec.Struct):
    """Characters ``start`` to ``end`` of a document's extracted text (the offsets citations
    and search results use)."""

    document_id: str
    filename: str
    page: Annotated[int, msgspec.Meta(description="the page `start` is on")]
    start: int
    end: Annotated[int, msgspec.Meta(
        description="the end asked for, or the end of the text when that comes first")]
    text: str
