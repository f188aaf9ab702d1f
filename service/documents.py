"""Upload staging, de-duplication, enqueueing and erasure (no parsing in the request path), and
reading a document back: its extracted text around a span, and its original file."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from celery import Celery

from core import tasks as names
from core.domain import Document, DocumentStatus
from core.errors import (
    BadInputError,
    ConflictError,
    EmptyUploadError,
    NotFoundError,
    PayloadTooLargeError,
    QueueUnavailableError,
)
from core.ports import DocumentRepository, VectorStore
from core.settings import Settings
from core.vault import MissingKeyError, Vault
from ingest.chunking import text_between
from ingest.originals import erase_document, sniff_stored, stored_file

log = logging.getLogger("docqa.api")

MAX_FILENAME = 255


MAX_TEXT_CHARS = 20_000  # per GET /v1/documents/{id}/text: a citation and its surroundings


@dataclass(frozen=True)
class DocumentText:
    document: Document
    start: int
    end: int
    text: str
    page: int  # the page ``start`` is on


class TaskQueue:
    """Enqueues tasks by name (the API never imports worker code)."""

    def __init__(self, settings: Settings) -> None:
        self.app = Celery("docqa-api")
        self.app.conf.update(names.celery_config(settings))
        self.app.conf.broker_connection_retry = False
        self.app.conf.task_publish_retry_policy = {"max_retries": 2, "interval_start": 0.2}

    def enqueue_ingest(self, doc_id: str, priority: int = 0) -> None:
        """``priority``: the tenant's fair share of the queue (``core.tasks.ingest_priority``)."""
        try:
            self.app.send_task(names.INGEST_DOCUMENT, args=[doc_id], queue=names.INGEST_QUEUE,
                               priority=priority)
        except Exception as exc:
            raise QueueUnavailableError(f"could not enqueue the ingest job: {exc}") from exc

    def enqueue_erase(self, tenant: str, doc_id: str) -> None:
        """The background erasure of a deleted document (ids only, never text)."""
        try:
            self.app.send_task(names.ERASE_DOCUMENT, args=[tenant, doc_id],
                               queue=names.ERASE_QUEUE, countdown=names.ERASE_DELAY_S)
        except Exception as exc:
            raise QueueUnavailableError(f"could not enqueue the erasure job: {exc}") from exc


def clean_filename(name: str | None) -> str:
    """The client's filename is metadata only: strip paths and control characters."""
    base = (name or "").replace("\\", "/").split("/")[-1]
    base = "".join(ch for ch in base if ch.isprintable() and ch not in "\x00")
    base = base.strip().lstrip(".") or "upload"
    return base[:MAX_FILENAME]


def parse_metadata(raw: str | None) -> dict[str, Any]:
    if raw is None or raw.strip() == "":
        return {}
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise BadInputError(f"metadata is not valid JSON: {exc.msg} at position {exc.pos}") from exc
    if not isinstance(value, dict):
        raise BadInputError("metadata must be a JSON object")
    if len(raw) > 16_384:
        raise BadInputError("metadata is larger than 16 KiB")
    return value


class DocumentService:
    def __init__(
        self, settings: Settings, repo: DocumentRepository, store: VectorStore, queue: TaskQueue
    ) -> None:
        self.settings = settings
        self.repo = repo
        self.store = store
        self.queue = queue
        self.vault = Vault.for_settings(settings)  # originals are encrypted at rest
        settings.files_dir.mkdir(parents=True, exist_ok=True)
        self.staging = settings.files_dir / ".staging"
        self.staging.mkdir(exist_ok=True)

    async def stage(self, upload: Any) -> tuple[Path, str, int]:
        """Stream the upload to a staging file, hashing as we go; enforce the size limit."""
        limit = self.settings.max_upload_bytes
        path = self.staging / uuid.uuid4().hex
        digest, size = hashlib.sha256(), 0
        try:
            with self.vault.create(path) as out:  # encrypted as it streams in
                while True:
                    block = await upload.read(1 << 20)
                    if not block:
                        break
                    size += len(block)
                    if size > limit:
                        raise PayloadTooLargeError(
                            f"the file is larger than the {limit} byte limit"
                        )
                    digest.update(block)
                    out.write(block)
        except BaseException:
            path.unlink(missing_ok=True)
            raise
        if size == 0:
            self.vault.destroy(path)
            raise EmptyUploadError("the uploaded file is empty")
        return path, digest.hexdigest(), size

    def accept(
        self, tenant: str, staged: Path, sha256: str, size: int, filename: str,
        metadata: dict[str, Any], redact_pii: bool = False,
    ) -> tuple[Document, bool]:
        """Record and enqueue a staged upload. Returns (document, created).

        PII redaction: on when the upload asks for it or the tenant is forced
        (``settings.pii``). One document per (tenant, bytes) as before, and redaction is
        sticky: the same bytes uploaded with redaction turn an existing unredacted document
        into a redacted one (same id, ingested again; 409 while its first ingest is still
        queued or running); uploaded without it they get the redacted document, never an
        unredacted copy.
        """
        try:
            kind = sniff_stored(self.vault, filename, staged, self.settings.limits)
            redact = redact_pii or self.settings.pii.forced(tenant)
            doc, created = self.repo.create(
                tenant=tenant, filename=filename, kind=kind, sha256=sha256, size=size,
                metadata=metadata, redact_pii=redact,
            )
            target = stored_file(self.settings, doc.id)
            if doc.deleting:  # a DELETE of it began and failed: it must be repeated first
                raise ConflictError(f"document {doc.id} has the same bytes and is being "
                                    "deleted; repeat its DELETE, then upload again")
            if redact and not doc.redact_pii and not created:
                return self._redact_existing(doc, staged, target), True
            # a redacted document's original is deleted after its ingest: not brought back
            # here unless it is ingested again (failed: retry below)
            if created or (not target.exists() and (
                not doc.redact_pii or doc.status is DocumentStatus.FAILED
            )):
                os.replace(staged, target)
            if created:
                try:
                    self._enqueue_ingest(doc)
                except QueueUnavailableError:
                    self.repo.delete(doc.id)
                    target.unlink(missing_ok=True)
                    raise
                return doc, True
            if doc.status is DocumentStatus.FAILED:  # same bytes again: give it another try
                self.repo.set_status(doc.id, DocumentStatus.QUEUED)
                self._enqueue_ingest(doc)
                refreshed = self.repo.get(doc.id)
                return (refreshed or doc), True
            return doc, False
        finally:
            self.vault.destroy(staged)  # not moved into place: its key goes with it

    def _enqueue_ingest(self, doc: Document) -> None:
        """Queue the ingest of ``doc`` (already queued in the registry) behind its tenant's
        other waiting or running documents only (core/tasks.py: fair share)."""
        waiting = sum(self.repo.list(doc.tenant, status, 1, 0)[1]
                      for status in (DocumentStatus.QUEUED, DocumentStatus.PROCESSING))
        self.queue.enqueue_ingest(doc.id, priority=names.ingest_priority(waiting - 1))

    def _redact_existing(self, doc: Document, staged: Path, target: Path) -> Document:
        """Turn redaction on for the existing unredacted document with these bytes."""
        if doc.status not in (DocumentStatus.READY, DocumentStatus.FAILED):
            raise ConflictError(
                f"document {doc.id} has the same bytes and is being ingested without PII "
                "redaction; upload again with redaction once it is ready or failed")
        if not target.exists():
            os.replace(staged, target)
        # its unredacted chunks go now (a Chroma failure here changes nothing: 503)
        self.store.delete_document(doc.tenant, doc.id)
        if not self.repo.enable_redaction(doc.id):  # another upload got there first
            raise ConflictError(f"document {doc.id} changed while redaction was requested; "
                                "upload again")
        try:
            self._enqueue_ingest(doc)
        except QueueUnavailableError:
            self.repo.set_status(doc.id, DocumentStatus.FAILED,
                                 error="the redacted ingest could not be queued; upload again")
            raise
        log.info("document %s: PII redaction turned on, ingest queued again", doc.id)
        return self.repo.get(doc.id) or doc

    def get(self, tenant: str, doc_id: str) -> Document:
        doc = self.repo.get(doc_id, tenant)
        if doc is None:
            raise NotFoundError(f"no document {doc_id!r}")
        return doc

    def text(self, tenant: str, doc_id: str, start: int, end: int, context: int = 0
             ) -> DocumentText:
        """Characters ``[start - context, end + context)`` of a ready document's extracted
        text, put back together from its chunks (decrypted as they are read; a redacted
        document's text is the redacted one), for showing a citation in its context."""
        if start > end:
            raise BadInputError(f"start ({start}) is after end ({end})")
        lo, hi = max(0, start - context), end + context
        if hi - lo > MAX_TEXT_CHARS:
            raise BadInputError(f"the range with its context is {hi - lo} characters long; "
                                f"at most {MAX_TEXT_CHARS} are returned at once")
        doc = self.get(tenant, doc_id)
        if doc.status is not DocumentStatus.READY:
            raise ConflictError(f"document {doc.id} is {doc.status.value}: its text can be "
                                "read once it is ready")
        chunks = self.store.text_chunks(tenant, doc.id, lo, hi) if hi > lo else []
        if not chunks and hi > lo and not self.store.text_chunks(tenant, doc.id, lo, 2**62,
                                                                  limit=1):
            raise BadInputError(f"start ({lo}) is past the end of document {doc.id}'s text")
        text, clipped = text_between(chunks, lo, hi)
        return DocumentText(doc, lo, clipped, text, chunks[0].page if chunks else 1)

    def original(self, tenant: str, doc_id: str) -> tuple[Document, Iterator[bytes]]:
        """The uploaded file's bytes, decrypted as they are read (never whole in memory)."""
        doc = self.get(tenant, doc_id)
        try:
            return doc, self.vault.open_plaintext(stored_file(self.settings, doc.id))
        except (FileNotFoundError, MissingKeyError):
            if doc.redact_pii:
                raise NotFoundError(f"the original of document {doc.id} was deleted once its "
                                    "personal data was redacted") from None
            raise NotFoundError(f"the original of document {doc.id} is not stored") from None

    def delete(self, tenant: str, doc_id: str) -> None:
        doc = self.get(tenant, doc_id)
        # the background eraser (ingest/erasure.py) is queued first: no queue, no delete (503)
        enqueue_erase = getattr(self.queue, "enqueue_erase", None)  # test queues may lack it
        if enqueue_erase is not None:
            enqueue_erase(tenant, doc.id)
        # from here no search returns it, no ingest writes for it and no text key can be
        # made for it: an ingest running on a worker stops at its next batch (ingest/pipeline.py)
        self.repo.mark_deleting(doc.id)
        # chunks, text key, file (ingest/originals.py); the row goes last: after a failure
        # there the document is still listed and the DELETE can be repeated
        erase_document(self.settings, self.store, self.vault, tenant, doc.id)
        self.repo.delete(doc.id)
        log.info("document %s erased", doc.id)
