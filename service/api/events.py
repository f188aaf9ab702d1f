"""``GET /v1/documents/{id}/events``: a document's ingest progress as server-sent events.

The worker writes progress to the registry (ingest/pipeline.py); this stream polls the
registry in a worker thread every ``POLL_S`` (never blocking the event loop) and sends

    event: progress   data: <the GET /v1/documents/{id} JSON>   at connect and on each change
                      of status, stage, done or total
    : keep-alive      after ``KEEPALIVE_S`` without an event (proxies drop silent streams)
    event: done       data: <the final JSON>, status ready or failed; then the stream closes

Polling, not a pub/sub channel, because the registry is the one source of truth (SQLite or
PostgreSQL, written by any worker) and a quarter-second poll of one row is cheap. A stream
lives at most ``MAX_STREAM_S``: an abandoned one ends (an SSE client reconnects by itself).
If the document is deleted while watched, an ``event: error`` (404, the shape the streaming
ask uses) ends the stream.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from functools import partial
from typing import Any

import anyio
import msgspec
from litestar import get
from litestar.di import NamedDependency
from litestar.params import FromPath
from litestar.response import ServerSentEvent, ServerSentEventMessage

from core.domain import Document, DocumentStatus
from service.api.errors import ProblemType, problem_body, problem_responses
from service.api.schemas import DocumentOut

POLL_S = 0.25
KEEPALIVE_S = 15.0
MAX_STREAM_S = 3600.0
SEP = "\n"  # the contract's framing: "event: NAME\ndata: JSON\n\n"
FINAL = (DocumentStatus.READY, DocumentStatus.FAILED)

Lookup = Callable[[], Document | None]


def _message(event: str, data: Any) -> ServerSentEventMessage:
    return ServerSentEventMessage(data=msgspec.json.encode(data).decode(), event=event, sep=SEP)


def _state(doc: Document) -> tuple[str, str, int, int]:
    """What makes a new progress event: not ``updated_at``, which every write bumps."""
    return doc.status.value, doc.progress.stage, doc.progress.done, doc.progress.total


async def document_events(
    first: Document, lookup: Lookup, *, poll_s: float = POLL_S,
    keepalive_s: float = KEEPALIVE_S, max_s: float = MAX_STREAM_S,
    clock: Callable[[], float] = time.monotonic,
) -> AsyncIterator[ServerSentEventMessage]:
    """The events of one document, from ``first`` (already looked up, so a 404 is a plain
    response) until it is ready or failed, it disappears, or ``max_s`` has passed.

    ``lookup`` runs in a worker thread. A client that disconnects cancels the task that
    drives this generator (Litestar's streaming response listens for ``http.disconnect``),
    which ends it at its next ``await``.
    """
    sent = _state(first)
    start = last_sent = clock()
    yield _message("progress", DocumentOut.from_domain(first))  # always first, even if final
    doc = first
    while doc.status not in FINAL:
        if clock() - start >= max_s:
            return
        await anyio.sleep(poll_s)
        found = await anyio.to_thread.run_sync(lookup)
        if found is None:
            yield _message("error", problem_body(ProblemType.NOT_FOUND, 404, "Not found",
                                                 f"document {first.id!r} was deleted"))
            return
        doc = found
        if doc.status in FINAL:
            break
        if _state(doc) != sent:
            sent, last_sent = _state(doc), clock()
            yield _message("progress", DocumentOut.from_domain(doc))
        elif clock() - last_sent >= keepalive_s:
            last_sent = clock()
            yield ServerSentEventMessage(data=None, comment="keep-alive", sep=SEP)
    yield _message("done", DocumentOut.from_domain(doc))


@get("/documents/{doc_id:str}/events", media_type="text/event-stream",
     summary="Live ingest progress (server-sent events)", responses=problem_responses(404))
async def stream_document_events(doc_id: FromPath[str], tenant: NamedDependency[str],
                                 comps: NamedDependency[Any]) -> ServerSentEvent:
    """Live ingest progress of one of the caller's documents (404 for anyone else's)."""
    first = await anyio.to_thread.run_sync(comps.documents.get, tenant, doc_id)
    lookup = partial(comps.repo.get, first.id, tenant)
    return ServerSentEvent(document_events(first, lookup),
                           headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
