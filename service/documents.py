"""Upload staging, de-duplication, enqueueing and erasure (no parsing in the request path)."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import uuid
from pathlib import Path
from typing import Any

from core import tasks as names
from core.domain import Document, DocumentStatus
from core.errors import (
    BadInputError,
    EmptyUploadError,
    NotFoundError,
    PayloadTooLargeError,
    QueueUnavailableError,
)
from core.ports import DocumentRepository
from core.settings import Settings
from ingest.detect import sniff_kind
from ingest.pipeline import stored_file
from ingest.store import ChromaStore

log = logging.getLogger("docqa.api")

MAX_FILENAME = 255


class TaskQueue:
    """Enqueues tasks by name (the API never imports worker code)."""

    def __init__(self, settings: Settings) -> None:
        from celery import Celery

        self.app = Celery("docqa-api")
        self.app.conf.update(names.celery_config(settings))
        self.app.conf.broker_connection_retry = False
        self.app.conf.task_publish_retry_policy = {"max_retries": 2, "interval_start": 0.2}

    def enqueue_ingest(self, doc_id: str) -> None:
        try:
            self.app.send_task(names.INGEST_DOCUMENT, args=[doc_id], queue=names.INGEST_QUEUE)
        except Exception as exc:
            raise QueueUnavailableError(f"could not enqueue the ingest job: {exc}") from exc


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
        self, settings: Settings, repo: DocumentRepository, store: ChromaStore, queue: TaskQueue
    ) -> None:
        self.settings = settings
        self.repo = repo
        self.store = store
        self.queue = queue
        settings.files_dir.mkdir(parents=True, exist_ok=True)
        self.staging = settings.files_dir / ".staging"
        self.staging.mkdir(exist_ok=True)

    async def stage(self, upload: Any) -> tuple[Path, str, int]:
        """Stream the upload to a staging file, hashing as we go; enforce the size limit."""
        limit = self.settings.max_upload_bytes
        path = self.staging / uuid.uuid4().hex
        digest, size = hashlib.sha256(), 0
        try:
            with path.open("wb") as out:
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
            path.unlink(missing_ok=True)
            raise EmptyUploadError("the uploaded file is empty")
        return path, digest.hexdigest(), size

    def accept(
        self, tenant: str, staged: Path, sha256: str, size: int, filename: str,
        metadata: dict[str, Any],
    ) -> tuple[Document, bool]:
        """Record and enqueue a staged upload. Returns (document, created)."""
        try:
            with staged.open("rb") as fh:
                head = fh.read(8192)
            kind = sniff_kind(filename, head, staged, self.settings.limits)
            doc, created = self.repo.create(
                tenant=tenant, filename=filename, kind=kind, sha256=sha256, size=size,
                metadata=metadata,
            )
            target = stored_file(self.settings, doc.id)
            if created or not target.exists():
                os.replace(staged, target)
            if created:
                try:
                    self.queue.enqueue_ingest(doc.id)
                except QueueUnavailableError:
                    self.repo.delete(doc.id)
                    target.unlink(missing_ok=True)
                    raise
                return doc, True
            if doc.status is DocumentStatus.FAILED:  # same bytes again: give it another try
                self.repo.set_status(doc.id, DocumentStatus.QUEUED)
                self.queue.enqueue_ingest(doc.id)
                refreshed = self.repo.get(doc.id)
                return (refreshed or doc), True
            return doc, False
        finally:
            staged.unlink(missing_ok=True)

    def get(self, tenant: str, doc_id: str) -> Document:
        doc = self.repo.get(doc_id, tenant)
        if doc is None:
            raise NotFoundError(f"no document {doc_id!r}")
        return doc

    def delete(self, tenant: str, doc_id: str) -> None:
        doc = self.get(tenant, doc_id)
        self.store.delete_document(tenant, doc.id)  # vectors first: a failure here changes nothing
        stored_file(self.settings, doc.id).unlink(missing_ok=True)
        self.repo.delete(doc.id)
        log.info("document %s erased", doc.id)
