"""The ingest job: parse → (redact PII) → chunk → embed → upsert → verify → ready.

Idempotent: chunk ids are deterministic, vectors are upserted, and stale chunks of the
document are removed by document id, so a redelivered job converges to the same state.

PII redaction (``doc.redact_pii`` or a forced tenant, ``settings.pii``) replaces personal
data page by page (ingest/pii.py) before chunking, so nothing unredacted is embedded or
stored; the counts go on the record and the original file is deleted once the ingest ends.

A DELETE may land at any point of a run, on another process. The run checks the record
(gone, or marked ``deleting``) before every upsert batch and at the end; no text key can
be made for a document that is gone or going (core/textcrypt.py). A run that finds its
document gone after it may have written removes what it wrote and queues another
background erasure (``IngestDeps.erase_later``): the eraser the DELETE queued may have
compacted the store before this run's last write.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from core.domain import DocumentStatus, Page, Progress
from core.errors import ParseError, StoreUnavailableError, TransientError
from core.metrics import chunks_embedded, stage
from core.ports import DocumentRepository, Embedder, VectorStore
from core.settings import Settings
from core.textcrypt import TextKeyMissing
from core.vault import Vault
from ingest.chunking import chunk_pages
from ingest.originals import drop_original, erase_document, stored_file, stored_file_key
from ingest.pii import redact_pages
from ingest.sandbox import SandboxPool, parse_isolated
from ingest.sentences import chunk_sentence_metadata
from ingest.units import chunk_units

log = logging.getLogger("docqa.ingest")
# a document of one page and fewer characters is chunked in milliseconds: its "chunking"
# progress would be one more registry write that nobody could see
CHUNKING_SHOWN_CHARS = 20_000


@dataclass
class IngestDeps:
    settings: Settings
    repo: DocumentRepository
    store: VectorStore
    embedder: Embedder
    vault: Vault  # the stored originals (core/vault.py)
    # queue the background erasure of (tenant, document id) again (workers/app.py)
    erase_later: Callable[[str, str], None] | None = None
    # parse children started ahead, one document each (ingest/sandbox.py); None: one
    # started per parse
    parsers: SandboxPool | None = None
    # embeds the chunks' evidence units when set (models.unit_embedding_backend); else embedder
    unit_embedder: Embedder | None = None


class DocumentGone(Exception):  # noqa: N818 - a signal inside the job, never raised out of it
    """The document was deleted (or its DELETE began) while this run worked on it."""


def ingest_document(deps: IngestDeps, doc_id: str) -> str:
    """Run the whole ingest of one document; returns the final status.

    Transient errors (Chroma down) propagate so the task layer can retry;
    ``ParseError`` marks the document ``failed`` with a readable reason.
    """
    repo, settings = deps.repo, deps.settings
    doc = repo.get(doc_id)
    if doc is None or doc.deleting:
        log.info("document %s was deleted before ingest; nothing to do", doc_id)
        return "deleted"
    # asked for at upload (the record), or forced for the tenant (also checked here)
    redact = doc.redact_pii or settings.pii.forced(doc.tenant)
    if doc.status is DocumentStatus.READY and doc.chunks and (
        not redact or doc.pii_counts is not None
    ) and deps.store.count_document(doc.tenant, doc_id) == doc.chunks:
        if redact:  # a crash may have come between ready and this
            drop_original(settings, deps.vault, doc_id)
        return DocumentStatus.READY.value
    path = stored_file(settings, doc_id)
    # also the progress: parsing, 0 of 0 pages (not counted yet)
    repo.set_status(doc_id, DocumentStatus.PROCESSING)
    pii_counts: dict[str, int] | None = None
    try:
        if not path.exists():
            if redact:  # deleted after an earlier redacted ingest: leave no partial index
                deps.store.delete_document(doc.tenant, doc_id)
                raise ParseError("the original file was deleted after PII redaction; "
                                 "upload it again to ingest it again")
            raise ParseError("the uploaded file is missing from storage")
        with stage("parse"):  # child process under time and memory limits (ingest/sandbox.py)
            pages = parse_isolated(path, doc.kind, settings.limits,
                                   key=stored_file_key(deps.vault, path),  # decrypted in memory
                                   on_progress=_parse_progress(repo, doc_id),
                                   pool=deps.parsers)
        if redact:  # before chunking: nothing unredacted is embedded, indexed or stored
            pages, pii_counts = redact_pages(pages, settings.pii.names)
        if len(pages) > 1 or sum(len(p.text) for p in pages) > CHUNKING_SHOWN_CHARS:
            repo.set_progress(doc_id, Progress("chunking", len(pages), len(pages)))
        try:  # ids keyed per document: made only while it is registered (core/domain.py)
            id_key = deps.store.chunk_id_key(doc_id)
        except TextKeyMissing:
            return _abandon(deps, doc.tenant, doc_id, wrote=False)
        with stage("chunk"):
            chunks = chunk_pages(doc_id, pages, settings.chunking.size, settings.chunking.overlap,
                                 id_key)
            units = chunk_units(pages, chunks)  # sentences, list items, table rows + context
        if not chunks:
            raise ParseError("no text could be extracted (scanned or empty document?)")
    except ParseError as exc:
        repo.set_status(doc_id, DocumentStatus.FAILED, error=exc.detail)
        if redact:  # uploading the same bytes again retries (service/documents.py)
            drop_original(settings, deps.vault, doc_id)
        log.warning("document %s failed to parse: %s", doc_id, exc.detail)
        return DocumentStatus.FAILED.value

    total = len(chunks)
    batch = max(1, settings.models.embedding_batch_size)
    if total > batch:  # one batch: "ready" is the next thing to say
        repo.set_progress(doc_id, Progress("embedding", 0, total))
    base_meta = {"filename": doc.filename, "created_at": int(doc.created_at)}
    wrote = False  # from the first upsert on, a DELETE must be followed by another erasure
    try:
        with stage("embed"):  # the upserts inside are timed as their own stage (core/metrics.py)
            for i in range(0, total, batch):
                part = chunks[i : i + batch]
                vectors = deps.embedder.embed([c.text for c in part])
                # the answer pipeline scores the units: embed them now, not at every question
                sentence_meta = chunk_sentence_metadata(
                    [c.text for c in part], (deps.unit_embedder or deps.embedder).embed,
                    units[i : i + batch])
                chunks_embedded(len(part))
                _still_registered(repo, doc_id)
                wrote = True
                with stage("upsert"):
                    deps.store.upsert(doc.tenant, part, vectors, base_meta, sentence_meta)
                if i + batch < total:  # the last batch's progress is the "indexing" below
                    repo.set_progress(doc_id, Progress("embedding", i + batch, total))

        if total > batch:  # one batch: "ready" follows within milliseconds
            repo.set_progress(doc_id, Progress("indexing", total, total))
        _check_redaction_unchanged(repo, doc_id, redact)  # before removing other chunks
        with stage("verify"):  # stale chunks out, then count what Chroma holds
            stored = deps.store.delete_document(doc.tenant, doc_id, keep=[c.id for c in chunks])
        # one read for both: still registered, and redaction not turned on meanwhile
        _check_redaction_unchanged(repo, doc_id, redact, gone_raises=True)
    except (DocumentGone, TextKeyMissing):  # no key may be made for a document going away
        return _abandon(deps, doc.tenant, doc_id, wrote)
    except Exception:
        if wrote and _gone(repo, doc_id):  # a failed write after the DELETE: clean up anyway
            return _abandon(deps, doc.tenant, doc_id, wrote)
        raise
    if stored != total:
        raise StoreUnavailableError(f"stored {stored} of {total} chunks; will retry")
    repo.set_status(doc_id, DocumentStatus.READY, chunks=total, pages=len(pages),
                    pii_counts=pii_counts)
    if redact:  # keep no unredacted copy: the original goes once its redacted chunks are in
        drop_original(settings, deps.vault, doc_id)
    log.info("document %s ready: %d chunks, %d pages%s", doc_id, total, len(pages),
             f", PII redacted {pii_counts}" if redact else "")
    return DocumentStatus.READY.value


def warm_up(deps: IngestDeps) -> None:
    """What the first document would otherwise pay (seconds on a busy machine): the
    chunker's import (llama-index) and the embedder's first run."""
    c = deps.settings.chunking
    text = "Warm-up. The first document should not pay for imports."
    pages = [Page(1, text, 0)]
    chunks = chunk_pages("warm-up", pages, c.size, c.overlap, b"warm-up")
    chunk_sentence_metadata([ch.text for ch in chunks], deps.embedder.embed,
                            chunk_units(pages, chunks))


def _gone(repo: DocumentRepository, doc_id: str) -> bool:
    current = repo.get(doc_id)
    return current is None or current.deleting


def _still_registered(repo: DocumentRepository, doc_id: str) -> None:
    if _gone(repo, doc_id):
        raise DocumentGone(doc_id)


def _abandon(deps: IngestDeps, tenant: str, doc_id: str, wrote: bool) -> str:
    """The document was deleted while this run worked on it: leave nothing behind. What
    this run may have written goes (chunks, keyword rows, the text key, which it may hold
    in its cache), and, since the eraser the DELETE queued may have compacted the store
    before that write, another background erasure is queued."""
    log.info("document %s was deleted during its ingest; removing what the ingest wrote",
             doc_id)
    erase_document(deps.settings, deps.store, deps.vault, tenant, doc_id)
    if wrote and deps.erase_later is not None:
        deps.erase_later(tenant, doc_id)
    return "deleted"


def _parse_progress(repo: DocumentRepository, doc_id: str) -> Callable[[int, int], None]:
    """Pages parsed so far, as the sandbox relays them (at most ~4 a second), for documents of
    more than one page. Best effort: a registry hiccup here must not fail a parse that is
    going well; the next write says more."""

    def report(done: int, total: int) -> None:
        if total <= 1:  # a one-piece document: "parsing" is all there is to say
            return
        try:
            repo.set_progress(doc_id, Progress("parsing", done, total))
        except Exception as exc:  # noqa: BLE001 - progress is informational
            log.warning("document %s: parse progress not recorded: %s", doc_id, exc)

    return report


def failed_ingest_cleanup(deps: IngestDeps, doc_id: str) -> None:
    """After the task layer marked a document failed: drop the original if it was redacted."""
    doc = deps.repo.get(doc_id)
    if doc is not None and (doc.redact_pii or deps.settings.pii.forced(doc.tenant)):
        drop_original(deps.settings, deps.vault, doc_id)


def _check_redaction_unchanged(repo: DocumentRepository, doc_id: str, redact: bool,
                               gone_raises: bool = False) -> None:
    """Redaction turned on (``enable_redaction``) after this run read the record: never let
    an unredacted run clean up or finish; the retry runs redacted. ``gone_raises``: the same
    read also raises ``DocumentGone`` for a document deleted (or being deleted)."""
    if redact and not gone_raises:
        return
    current = repo.get(doc_id)
    if gone_raises and (current is None or current.deleting):
        raise DocumentGone(doc_id)
    if not redact and current is not None and current.redact_pii:
        raise TransientError("PII redaction was turned on during the ingest; will retry")

