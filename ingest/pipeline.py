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
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from core.domain import Chunk, Document, DocumentStatus, Page, Progress
from core.errors import ParseError, StoreUnavailableError, TransientError
from core.metrics import chunks_embedded, stage
from core.ports import DocumentRepository, Embedder, VectorStore
from core.settings import Settings
from core.textcrypt import TextKeyMissing
from core.units import Unit
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
    # exceptions that end the whole run at once, never caught as one document's failure
    # (the task's soft time limit: workers/batching.py)
    abort_on: tuple[type[Exception], ...] = ()


class DocumentGone(Exception):  # noqa: N818 - a signal inside the job, never raised out of it
    """The document was deleted (or its DELETE began) while this run worked on it."""


@dataclass
class Prepared:
    """A document parsed, (redacted,) chunked and cut into evidence units: what is left is
    to embed, write, verify and mark it ready (:func:`ingest_prepared`)."""

    doc: Document
    redact: bool
    pages: list[Page]
    chunks: list[Chunk]
    units: list[list[Unit]]
    pii_counts: dict[str, int] | None = None
    # filled by the embedding step
    vectors: list[list[float]] = field(default_factory=list)
    sentence_meta: list[dict[str, str]] = field(default_factory=list)
    wrote: bool = False  # from the first upsert on, a DELETE must be followed by an erasure

    @property
    def id(self) -> str:
        return self.doc.id

    @property
    def text_chars(self) -> int:
        return sum(len(p.text) for p in self.pages)


# the outcome of one document of a batch: its final status, or the exception it raised
# (the task layer retries a TransientError and fails the document on anything else)
Outcome = str | Exception


def ingest_document(deps: IngestDeps, doc_id: str) -> str:
    """Run the whole ingest of one document; returns the final status.

    Transient errors (Chroma down) propagate so the task layer can retry;
    ``ParseError`` marks the document ``failed`` with a readable reason.
    """
    prepared = prepare_document(deps, doc_id)
    if isinstance(prepared, str):
        return prepared
    outcome = ingest_prepared(deps, [prepared])[doc_id]
    if isinstance(outcome, Exception):
        raise outcome
    return outcome


def prepare_document(deps: IngestDeps, doc_id: str) -> Prepared | str:
    """Parse, redact, chunk and cut a document into units; a final status instead when
    there is nothing more to do (deleted, already ready, failed to parse). Transient errors
    propagate."""
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
    return Prepared(doc, redact, pages, chunks, [list(u) for u in units], pii_counts)


def ingest_prepared(deps: IngestDeps, prepared: Sequence[Prepared],
                    outcomes: dict[str, Outcome] | None = None) -> dict[str, Outcome]:
    """Embed, write, verify and mark ready prepared documents, sharing the expensive steps:
    documents of one embedding batch or less are embedded in one call for all their chunks
    and one for all their units, and a tenant's are upserted together. A document of more
    chunks goes through its own batches, with its progress.

    Each document ends with its own outcome in ``outcomes`` (returned; filled as documents
    finish, so a caller interrupted by a time limit knows which did): its final status, or
    the exception that stopped it. A step shared by several documents that fails is done
    again document by document, so a document that breaks it fails alone. Exceptions of
    ``deps.abort_on`` (the task's soft time limit) are not caught."""
    out: dict[str, Outcome] = {} if outcomes is None else outcomes
    batch = max(1, deps.settings.models.embedding_batch_size)
    small = [p for p in prepared if len(p.chunks) <= batch]
    for p in prepared:
        if len(p.chunks) > batch:
            _guarded(deps, p, out, partial(_ingest_large, deps, p, batch))
    if not small:
        return out
    if len(small) > 1:
        try:
            _embed(deps, small)
        except deps.abort_on:
            raise
        except Exception:  # noqa: BLE001 - one document's text may break the call: each alone
            log.warning("embedding %d documents together failed; embedding each alone",
                        len(small), exc_info=True)
            for p in small:
                p.vectors, p.sentence_meta = [], []
    for p in small:
        if not p.vectors:
            _guarded(deps, p, out, partial(_embed, deps, [p]))
    embedded = [p for p in small if p.id not in out]
    by_tenant: dict[str, list[Prepared]] = {}
    for p in embedded:
        by_tenant.setdefault(p.doc.tenant, []).append(p)
    for group in by_tenant.values():
        _write_together(deps, group, out)
    for p in embedded:
        if p.id not in out:
            _guarded(deps, p, out, partial(_finish, deps, p))
    return out


def _guarded(deps: IngestDeps, p: Prepared, out: dict[str, Outcome],
             step: Callable[[], str | None]) -> None:
    """Run one document's step; a final status or an exception ends the document."""
    try:
        result = step()
    except deps.abort_on:
        raise
    except (DocumentGone, TextKeyMissing):  # no key may be made for a document going away
        out[p.id] = _abandon(deps, p.doc.tenant, p.id, p.wrote)
        return
    except Exception as exc:  # noqa: BLE001 - the task layer decides: retry or fail
        try:
            gone = p.wrote and _gone(deps.repo, p.id)
        except Exception:  # noqa: BLE001 - the registry is down too: the original error counts
            gone = False
        # a failed write after the DELETE: clean up anyway
        out[p.id] = _abandon(deps, p.doc.tenant, p.id, p.wrote) if gone else exc
        return
    if result is not None:
        out[p.id] = result


def _embed(deps: IngestDeps, group: Sequence[Prepared]) -> None:
    """One embedding call for all the chunks of ``group``, one for all their units."""
    texts = [c.text for p in group for c in p.chunks]
    with stage("embed"):
        vectors = deps.embedder.embed(texts)
        # the answer pipeline scores the units: embed them now, not at every question
        meta = chunk_sentence_metadata(texts, (deps.unit_embedder or deps.embedder).embed,
                                       [u for p in group for u in p.units])
    chunks_embedded(len(texts))
    k = 0
    for p in group:
        n = len(p.chunks)
        p.vectors, p.sentence_meta = vectors[k:k + n], meta[k:k + n]
        k += n


def _base_meta(p: Prepared) -> dict[str, Any]:
    return {"filename": p.doc.filename, "created_at": int(p.doc.created_at)}


def _write_together(deps: IngestDeps, group: list[Prepared], out: dict[str, Outcome]) -> None:
    """Upsert one tenant's documents in one store call (the store splits it by shard), each
    checked still registered first; a failed call is made again document by document."""
    ready: list[Prepared] = []
    for p in group:
        _guarded(deps, p, out, partial(_still_registered, deps.repo, p.id))
        if p.id not in out:
            ready.append(p)
    if len(ready) > 1:
        try:
            for p in ready:
                p.wrote = True
            with stage("upsert"):
                deps.store.upsert(
                    ready[0].doc.tenant, [c for p in ready for c in p.chunks],
                    [v for p in ready for v in p.vectors], {},
                    [{**_base_meta(p), **m} for p in ready for m in p.sentence_meta])
            return
        except deps.abort_on:
            raise
        except Exception:  # noqa: BLE001 - one document may break the call: each alone
            log.warning("writing %d documents together failed; writing each alone",
                        len(ready), exc_info=True)
    for p in ready:
        _guarded(deps, p, out, partial(_write_one, deps, p))


def _write_one(deps: IngestDeps, p: Prepared) -> None:
    p.wrote = True
    with stage("upsert"):
        deps.store.upsert(p.doc.tenant, p.chunks, p.vectors, _base_meta(p), p.sentence_meta)


def _ingest_large(deps: IngestDeps, p: Prepared, batch: int) -> str:
    """A document of several embedding batches: each embedded and written in turn, with its
    progress, checked still registered before each write."""
    repo, doc_id, chunks, total = deps.repo, p.id, p.chunks, len(p.chunks)
    repo.set_progress(doc_id, Progress("embedding", 0, total))
    with stage("embed"):  # the upserts inside are timed as their own stage (core/metrics.py)
        for i in range(0, total, batch):
            part = chunks[i : i + batch]
            vectors = deps.embedder.embed([c.text for c in part])
            sentence_meta = chunk_sentence_metadata(
                [c.text for c in part], (deps.unit_embedder or deps.embedder).embed,
                p.units[i : i + batch])
            chunks_embedded(len(part))
            _still_registered(repo, doc_id)
            p.wrote = True
            with stage("upsert"):
                deps.store.upsert(p.doc.tenant, part, vectors, _base_meta(p), sentence_meta)
            if i + batch < total:  # the last batch's progress is the "indexing" below
                repo.set_progress(doc_id, Progress("embedding", i + batch, total))
    repo.set_progress(doc_id, Progress("indexing", total, total))
    return _finish(deps, p)


def _finish(deps: IngestDeps, p: Prepared) -> str:
    """Stale chunks out, count what the store holds, ready only if all are there."""
    repo, settings, doc_id, total = deps.repo, deps.settings, p.id, len(p.chunks)
    _check_redaction_unchanged(repo, doc_id, p.redact)  # before removing other chunks
    with stage("verify"):  # stale chunks out, then count what Chroma holds
        stored = deps.store.delete_document(p.doc.tenant, doc_id, keep=[c.id for c in p.chunks])
    # one read for both: still registered, and redaction not turned on meanwhile
    _check_redaction_unchanged(repo, doc_id, p.redact, gone_raises=True)
    if stored != total:
        raise StoreUnavailableError(f"stored {stored} of {total} chunks; will retry")
    repo.set_status(doc_id, DocumentStatus.READY, chunks=total, pages=len(p.pages),
                    pii_counts=p.pii_counts)
    if p.redact:  # keep no unredacted copy: the original goes once its redacted chunks are in
        drop_original(settings, deps.vault, doc_id)
    log.info("document %s ready: %d chunks, %d pages%s", doc_id, total, len(p.pages),
             f", PII redacted {p.pii_counts}" if p.redact else "")
    return DocumentStatus.READY.value


def warm_up(deps: IngestDeps) -> None:
    """What the first document would otherwise pay (seconds on a busy machine): the
    chunker's import (llama-index) and the first run of each embedder (chunks, units)."""
    c = deps.settings.chunking
    # longer than a chunk: the splitter imports its sentence tokenizer (nltk, seconds of
    # CPU) only for a text it has to cut
    text = " ".join(f"Warm-up sentence {i}. The first document should not pay for imports."
                    for i in range(c.size // 4 + 1))
    pages = [Page(1, text, 0)]
    chunks = chunk_pages("warm-up", pages, c.size, c.overlap, b"warm-up")
    deps.embedder.embed([ch.text for ch in chunks])
    chunk_sentence_metadata([ch.text for ch in chunks],
                            (deps.unit_embedder or deps.embedder).embed,
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

