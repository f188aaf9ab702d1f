"""The ingest job: parse → chunk → embed → upsert → verify → ready.

Idempotent: chunk ids are deterministic, vectors are upserted, and stale chunks of the
document are removed by document id, so a redelivered job converges to the same state.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from core.domain import DocumentStatus, Progress
from core.errors import ParseError
from core.ports import DocumentRepository, Embedder
from core.settings import Settings
from ingest.chunking import chunk_pages
from ingest.sandbox import parse_isolated
from ingest.sentences import chunk_sentence_metadata
from ingest.store import ChromaStore

log = logging.getLogger("docqa.ingest")


@dataclass
class IngestDeps:
    settings: Settings
    repo: DocumentRepository
    store: ChromaStore
    embedder: Embedder


def stored_file(settings: Settings, doc_id: str) -> Path:
    """Uploads live under generated ids only; the client's filename is metadata."""
    return settings.files_dir / doc_id


def ingest_document(deps: IngestDeps, doc_id: str) -> str:
    """Run the whole ingest of one document; returns the final status.

    Transient errors (Chroma down) propagate so the task layer can retry;
    ``ParseError`` marks the document ``failed`` with a readable reason.
    """
    repo, settings = deps.repo, deps.settings
    doc = repo.get(doc_id)
    if doc is None:
        log.info("document %s was deleted before ingest; nothing to do", doc_id)
        return "deleted"
    if doc.status is DocumentStatus.READY and doc.chunks and (
        deps.store.count_document(doc.tenant, doc_id) == doc.chunks
    ):
        return DocumentStatus.READY.value
    path = stored_file(settings, doc_id)
    repo.set_status(doc_id, DocumentStatus.PROCESSING)
    repo.set_progress(doc_id, Progress("parsing", 0, 1))
    try:
        if not path.exists():
            raise ParseError("the uploaded file is missing from storage")
        # child process under time and memory limits (ingest/sandbox.py)
        pages = parse_isolated(path, doc.kind, settings.limits)
        repo.set_progress(doc_id, Progress("chunking", len(pages), len(pages)))
        chunks = chunk_pages(doc_id, pages, settings.chunking.size, settings.chunking.overlap)
        if not chunks:
            raise ParseError("no text could be extracted (scanned or empty document?)")
    except ParseError as exc:
        repo.set_status(doc_id, DocumentStatus.FAILED, error=exc.detail)
        log.warning("document %s failed to parse: %s", doc_id, exc.detail)
        return DocumentStatus.FAILED.value

    total = len(chunks)
    batch = max(1, settings.models.embedding_batch_size)
    repo.set_progress(doc_id, Progress("embedding", 0, total))
    base_meta = {"filename": doc.filename, "created_at": int(doc.created_at)}
    for i in range(0, total, batch):
        part = chunks[i : i + batch]
        vectors = deps.embedder.embed([c.text for c in part])
        # the answer pipeline scores sentences: embed them now, not at every question
        sentence_meta = chunk_sentence_metadata([c.text for c in part], deps.embedder.embed)
        deps.store.upsert(doc.tenant, part, vectors, base_meta, sentence_meta)
        repo.set_progress(doc_id, Progress("embedding", min(i + batch, total), total))

    repo.set_progress(doc_id, Progress("indexing", total, total))
    stored = deps.store.delete_document(doc.tenant, doc_id, keep=[c.id for c in chunks])
    if repo.get(doc_id) is None:  # deleted while we worked: leave nothing behind
        deps.store.delete_document(doc.tenant, doc_id)
        return "deleted"
    if stored != total:
        from core.errors import StoreUnavailableError

        raise StoreUnavailableError(f"stored {stored} of {total} chunks; will retry")
    repo.set_status(doc_id, DocumentStatus.READY, chunks=total, pages=len(pages))
    log.info("document %s ready: %d chunks, %d pages", doc_id, total, len(pages))
    return DocumentStatus.READY.value


def erase_document(deps: IngestDeps, tenant: str, doc_id: str) -> None:
    """Remove a document's vectors and stored file (the registry row goes first, in the API)."""
    deps.store.delete_document(tenant, doc_id)
    stored_file(deps.settings, doc_id).unlink(missing_ok=True)
