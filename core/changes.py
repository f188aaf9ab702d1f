"""Change notices: "document X of tenant T changed", sent over Redis pub/sub.

Whoever writes a document's status or progress (a worker, the reconciler, the API on a
DELETE) publishes the document's id on its tenant's channel; the API's event streams
(service/api/events.py) subscribe and read the registry only when told something changed,
instead of polling it. The registry stays the one source of truth: a notice carries
nothing but the id, and a notice lost (Redis restarting, a subscriber reconnecting) only
delays an event until the stream's slow safety poll.

:class:`NotifyingRepository` wraps a registry so that every write that changes what a
stream shows publishes, without touching the code that writes (ingest/pipeline.py and the
task layer call the same ``set_status``/``set_progress`` as before).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import redis

from core.domain import Document, DocumentKind, DocumentStatus, Progress
from core.ports import DocumentRepository

log = logging.getLogger("docqa.changes")

CHANNEL_PREFIX = "docqa:changes:"

Publish = Callable[[str, str], None]  # (tenant, document id)


def channel(tenant: str) -> str:
    """The tenant's channel: a subscriber hears its own tenant's documents only."""
    return CHANNEL_PREFIX + tenant


def tenant_of_channel(name: str | bytes) -> str:
    text = name.decode() if isinstance(name, bytes) else name
    return text.removeprefix(CHANNEL_PREFIX)


class ChangePublisher:
    """Publishes change notices, best effort: a notice is an optimisation (the streams poll
    slowly anyway), so a Redis failure is logged and never fails the write that caused it.
    After a failure, publishing pauses for ``pause_s`` so an ingest does not wait on a
    connect timeout at every progress write while Redis is down."""

    def __init__(self, redis_url: str, pause_s: float = 5.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._client: Any = redis.Redis.from_url(redis_url, socket_timeout=1,
                                                 socket_connect_timeout=1)
        self._pause_s, self._clock = pause_s, clock
        self._paused_until = 0.0

    def __call__(self, tenant: str, doc_id: str) -> None:
        if self._clock() < self._paused_until:
            return
        try:
            self._client.publish(channel(tenant), doc_id)
        except (redis.RedisError, OSError) as exc:
            self._paused_until = self._clock() + self._pause_s
            log.warning("change notice for document %s not published (streams will see the "
                        "change at their next poll): %s", doc_id, exc)


class NotifyingRepository:
    """A registry that publishes a change notice after each write a stream would show:
    status, progress, queued again, redaction turned on, created, marked for deletion,
    deleted. Everything else passes through to the wrapped registry (``__getattr__``).

    A notice needs the document's tenant, which ``set_status(doc_id, ...)`` does not give:
    the tenants of documents read or written through this wrapper are remembered (a worker
    reads a document before it writes its progress), else looked up once."""

    MAX_REMEMBERED = 10_000

    def __init__(self, inner: DocumentRepository, publish: Publish) -> None:
        self._inner, self._publish = inner, publish
        self._tenants: dict[str, str] = {}
        self._lock = threading.Lock()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    @property
    def inner(self) -> DocumentRepository:
        return self._inner

    def _remember(self, doc: Document) -> None:
        with self._lock:
            self._tenants.pop(doc.id, None)
            self._tenants[doc.id] = doc.tenant
            while len(self._tenants) > self.MAX_REMEMBERED:
                del self._tenants[next(iter(self._tenants))]  # the oldest

    def _tenant(self, doc_id: str) -> str | None:
        with self._lock:
            tenant = self._tenants.get(doc_id)
        if tenant is None:
            doc = self.get(doc_id)
            tenant = doc.tenant if doc is not None else None
        return tenant

    def _changed(self, doc_id: str, tenant: str | None = None) -> None:
        tenant = tenant or self._tenant(doc_id)
        if tenant is not None:
            self._publish(tenant, doc_id)

    def get(self, doc_id: str, tenant: str | None = None) -> Document | None:
        doc = self._inner.get(doc_id, tenant)
        if doc is not None:
            self._remember(doc)
        return doc

    def create(self, *, tenant: str, filename: str, kind: DocumentKind, sha256: str, size: int,
               metadata: dict[str, Any], redact_pii: bool = False) -> tuple[Document, bool]:
        doc, created = self._inner.create(tenant=tenant, filename=filename, kind=kind,
                                          sha256=sha256, size=size, metadata=metadata,
                                          redact_pii=redact_pii)
        self._remember(doc)
        if created:
            self._changed(doc.id, doc.tenant)
        return doc, created

    def set_status(self, doc_id: str, status: DocumentStatus, *, error: str | None = None,
                   chunks: int | None = None, pages: int | None = None,
                   pii_counts: dict[str, int] | None = None) -> None:
        self._inner.set_status(doc_id, status, error=error, chunks=chunks, pages=pages,
                               pii_counts=pii_counts)
        self._changed(doc_id)

    def set_progress(self, doc_id: str, progress: Progress) -> None:
        self._inner.set_progress(doc_id, progress)
        self._changed(doc_id)

    def enable_redaction(self, doc_id: str) -> bool:
        changed = self._inner.enable_redaction(doc_id)
        if changed:
            self._changed(doc_id)
        return changed

    def requeue_stale(self, doc_id: str, updated_before: float) -> bool:
        changed = self._inner.requeue_stale(doc_id, updated_before)
        if changed:
            self._changed(doc_id)
        return changed

    def mark_deleting(self, doc_id: str) -> bool:
        changed = self._inner.mark_deleting(doc_id)
        if changed:
            self._changed(doc_id)
        return changed

    def delete(self, doc_id: str) -> bool:
        tenant = self._tenant(doc_id)  # before the row goes
        deleted = self._inner.delete(doc_id)
        if deleted:
            self._changed(doc_id, tenant)
            with self._lock:
                self._tenants.pop(doc_id, None)
        return deleted
