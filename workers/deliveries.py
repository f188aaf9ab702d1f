"""Bounded redelivery: a document whose worker dies on it every time ends ``failed``.

Delivery is at-least-once: a worker child killed mid-task (OOM killer, segfault in a
native library, ``kill -9``) has its message requeued at once (``task_reject_on_worker_lost``),
and a whole worker that dies leaves its message in Redis's ``unacked`` set, handed out again
after the visibility timeout. Neither carries a count, so a document that always kills its
worker would loop for ever and hold a worker child each time.

So every start of an ingest counts itself in Redis (``docqa:deliveries:<doc id>``, kept a
week) before any work; the count is removed when the task ends with a result (ready,
failed, deleted), and kept across a ``self.retry`` (a transient failure: the retry is another
delivery). A delivery past ``max_retries + 1`` attempts does not run the document again: it
is marked ``failed`` with the reason, its message is acknowledged, and the queue moves on.
Counting fails open: when Redis cannot be reached for the count, the ingest still runs.
"""

from __future__ import annotations

import logging
from typing import Any

import redis
from celery.signals import task_postrun

from core import tasks as names
from core.domain import DocumentStatus

log = logging.getLogger("docqa.worker")

KEY_PREFIX = "docqa:deliveries:"
KEY_TTL_S = 7 * 24 * 3600

_clients: dict[str, Any] = {}
# the Redis whose counts an ingest that returned resets, in this process: set by
# :func:`configure` (``workers.app.create_celery_app``); None until then
_redis_url: str | None = None


def configure(redis_url: str) -> None:
    """Count deliveries in ``redis_url``'s Redis (the worker's broker) from now on."""
    global _redis_url
    _redis_url = redis_url


def _redis(url: str) -> Any:
    client = _clients.get(url)
    if client is None:
        client = redis.Redis.from_url(url, socket_connect_timeout=5, socket_timeout=5)
        _clients[url] = client
    return client


def count(redis_url: str, doc_id: str) -> int | None:
    """Count this delivery of ``doc_id``; returns the number of deliveries so far (this one
    included), or None when Redis could not be asked."""
    try:
        pipe = _redis(redis_url).pipeline()
        pipe.incr(KEY_PREFIX + doc_id)
        pipe.expire(KEY_PREFIX + doc_id, KEY_TTL_S)
        n, _ = pipe.execute()
        return int(n)
    except Exception as exc:  # noqa: BLE001 - fail open: never block an ingest on the count
        log.warning("ingest %s: could not count the delivery (%s); running it anyway",
                    doc_id, exc)
        return None


def forget(redis_url: str, doc_id: str) -> None:
    """The task ended with a result: the next delivery of ``doc_id`` starts from 1."""
    try:
        _redis(redis_url).delete(KEY_PREFIX + doc_id)
    except Exception as exc:  # noqa: BLE001 - the key expires on its own
        log.warning("ingest %s: could not clear the delivery count: %s", doc_id, exc)


def peek_many(redis_url: str, doc_ids: list[str]) -> list[int | None]:
    """The deliveries counted so far for each of ``doc_ids`` (0 for none), without counting
    one; None for each when Redis could not be asked (counting fails open)."""
    if not doc_ids:
        return []
    try:
        values = _redis(redis_url).mget([KEY_PREFIX + d for d in doc_ids])
        return [int(v) if v is not None else 0 for v in values]
    except Exception as exc:  # noqa: BLE001 - fail open
        log.warning("could not read the delivery counts (%s)", exc)
        return [None] * len(doc_ids)


def forget_many(redis_url: str, doc_ids: list[str]) -> None:
    """These documents' ingests ended: their next deliveries start from 1."""
    if not doc_ids:
        return
    try:
        _redis(redis_url).delete(*(KEY_PREFIX + d for d in doc_ids))
    except Exception as exc:  # noqa: BLE001 - the keys expire on their own
        log.warning("could not clear the delivery counts of %d documents: %s",
                    len(doc_ids), exc)


def admit(deps: Any, doc_id: str, retries: int, max_attempts: int) -> str | None:
    """Count this delivery; None: go on with the ingest. Past ``max_attempts`` deliveries of
    a document still ``queued``/``processing``: mark it ``failed`` and return that status
    (the caller returns it, so the message is acknowledged and not delivered again).

    Args:
        deps: the worker's ``IngestDeps`` (settings and registry).
        retries: ``task.request.retries`` (transient retries so far, to tell them apart
            from deliveries whose worker died).
        max_attempts: ``max_retries + 1``.
    """
    n = count(deps.settings.redis_url, doc_id)
    if n is None or n <= 1:
        return None
    if n > retries + 1:
        log.warning("ingest %s: delivery %d (at most %d): an earlier attempt did not finish "
                    "(its worker died, or its message was lost)", doc_id, n, max_attempts)
    if n <= max_attempts:
        return None
    doc = deps.repo.get(doc_id)
    if doc is None or doc.status not in (DocumentStatus.QUEUED, DocumentStatus.PROCESSING):
        return None  # settled meanwhile (e.g. ready): the ingest's own checks decide
    error = (f"the worker process died while ingesting this document on each of "
             f"{n - 1} attempts; giving up")
    deps.repo.set_status(doc_id, DocumentStatus.FAILED, error=error)
    log.error("ingest %s: %s", doc_id, error)
    return DocumentStatus.FAILED.value


@task_postrun.connect  # type: ignore[untyped-decorator]
def _forget_on_result(sender: Any = None, args: Any = None, state: str | None = None,
                      **_: Any) -> None:
    """An ingest that returned (any final status) resets its document's count; a retry
    (state ``RETRY``) or an exception keeps it."""
    if getattr(sender, "name", None) != names.INGEST_DOCUMENT or state != "SUCCESS" or not args:
        return
    if _redis_url is not None:
        forget(_redis_url, str(args[0]))
