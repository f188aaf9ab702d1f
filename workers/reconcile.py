"""Reconciler: documents the registry says are waiting, but no message will ever run.

The registry and the broker can disagree: Redis lost its data (restarted without its
append-only file, or the last second of it), the API died between recording an upload and
enqueueing it, a task hit its hard time limit (acknowledged, but the document stays
``processing``). Such a document would stay ``queued``/``processing`` for ever.

At worker start, and then every ``worker.reconcile_interval_s``, the worker lists documents
``queued``/``processing`` with no update for ``worker.reconcile_after_s`` and queues again
those that have no ingest message anywhere in the broker (the queue, or Redis's ``unacked``
set, which holds messages being worked on, waiting for a retry, or of a dead worker that
the visibility timeout will hand out again). The registry row is moved back to ``queued``
with a compare-and-set on its ``updated_at``, so two reconcilers queue a document once, and
one that moved on meanwhile is left alone. A document queued twice anyway (a message in
flight between the queue and ``unacked`` at the moment of the scan) is harmless: ingest is
idempotent, and a ready document's duplicate delivery returns at once. Delivery counting
(workers/deliveries.py) keeps a document that keeps failing this way bounded.
"""

from __future__ import annotations

import base64
import json
import logging
import time
from collections.abc import Callable, Iterable
from typing import Any

import redis
from celery.signals import worker_ready

from core import tasks as names
from core.changes import ChangePublisher, NotifyingRepository
from core.ports import DocumentRepository
from core.registry import open_repository
from core.settings import Settings

log = logging.getLogger("docqa.worker")

UNACKED_KEY = "unacked"  # kombu's Redis transport default (``unacked_key``)


def _doc_id_of(raw: bytes | str) -> str | None:
    """The document id of one stored ingest message (a queue entry, or the first element of
    an ``unacked`` entry), or None for anything else."""
    try:
        payload = json.loads(raw)
        if isinstance(payload, list):  # unacked: [message, exchange, routing key]
            payload = payload[0]
        if payload.get("headers", {}).get("task") != names.INGEST_DOCUMENT:
            return None
        body = payload["body"]
        if payload.get("properties", {}).get("body_encoding") == "base64":
            body = base64.b64decode(body)
        args = json.loads(body)[0]
        return str(args[0]) if args else None
    except (ValueError, KeyError, IndexError, TypeError, AttributeError):
        return None


def enqueued_document_ids(client: Any, queue: str = names.INGEST_QUEUE) -> set[str]:
    """Ids of documents with an ingest message in Redis: waiting in ``queue`` (every
    priority level) or delivered and not yet acknowledged."""
    found: set[str] = set()
    for key in names.queue_keys(queue):
        for raw in client.lrange(key, 0, -1):
            doc_id = _doc_id_of(raw)
            if doc_id:
                found.add(doc_id)
    for raw in client.hvals(UNACKED_KEY):
        doc_id = _doc_id_of(raw)
        if doc_id:
            found.add(doc_id)
    return found


def reconcile(
    repo: DocumentRepository, client: Any, enqueue: Callable[[str], None],
    after_s: float, now: float | None = None,
) -> list[str]:
    """Queue again every document stuck ``queued``/``processing`` for ``after_s`` seconds
    with no message in the broker; returns their ids.

    Args:
        repo: the registry.
        client: a Redis client on the broker's database.
        enqueue: sends the ingest task for one document id.
    """
    before = (time.time() if now is None else now) - after_s
    stale: list[str] = repo.stale_document_ids(before)
    if not stale:
        return []
    present = enqueued_document_ids(client)
    requeued: list[str] = []
    for doc_id in stale:
        if doc_id in present or not repo.requeue_stale(doc_id, before):
            continue
        try:
            enqueue(doc_id)
        except Exception:  # noqa: BLE001 - it is stale again after after_s: next round
            log.exception("reconcile: could not queue document %s again", doc_id)
            continue
        requeued.append(doc_id)
    if requeued:
        log.warning("reconcile: %d document(s) were queued or processing for over %g s with "
                    "no message in the broker; queued again: %s", len(requeued), after_s,
                    _preview(requeued))
    return requeued


def _preview(ids: Iterable[str], n: int = 10) -> str:
    ids = list(ids)
    return ", ".join(ids[:n]) + (f" and {len(ids) - n} more" if len(ids) > n else "")


_repos: dict[int, DocumentRepository] = {}  # one registry handle per settings object


def run_once(app: Any, settings: Settings) -> list[str]:
    """One reconciliation with the worker's Celery app (never raises: it is housekeeping)."""
    if settings.worker.reconcile_after_s <= 0:
        return []
    try:
        repo = _repos.get(id(settings))
        if repo is None:
            repo = _repos[id(settings)] = NotifyingRepository(  # streams hear the requeue
                open_repository(settings), ChangePublisher(settings.redis_url))
        client = redis.Redis.from_url(settings.redis_url, socket_connect_timeout=5,
                                      socket_timeout=10)

        def enqueue(doc_id: str) -> None:
            app.send_task(names.INGEST_DOCUMENT, args=[doc_id], queue=names.INGEST_QUEUE)

        try:
            return reconcile(repo, client, enqueue, settings.worker.reconcile_after_s)
        finally:
            client.close()
    except Exception:  # noqa: BLE001
        log.exception("reconcile: failed; will try again")
        return []


def install(app: Any, settings: Settings) -> None:
    """Run the reconciler when the worker is ready, then every ``reconcile_interval_s`` on
    the worker's own timer (the parent process; no extra thread, nothing before fork)."""
    if settings.worker.reconcile_after_s <= 0:
        return

    def on_ready(sender: Any = None, **_: Any) -> None:
        requeued = run_once(app, settings)
        log.info("reconcile at worker start: %d document(s) queued again", len(requeued))
        interval = settings.worker.reconcile_interval_s
        timer = getattr(sender, "timer", None)
        if interval > 0 and timer is not None:
            timer.call_repeatedly(interval, run_once, (app, settings))

    worker_ready.connect(on_ready, weak=False)
