"""Ingest progress as server-sent events: one document's (``GET /v1/documents/{id}/events``)
or a batch's (``POST /v1/documents/events`` with ``{"ids": [...]}``, or ``GET`` with
``?ids=a,b``), and the shared pub/sub subscription that wakes them.

The worker writes progress to the registry (ingest/pipeline.py), which stays the one source
of truth; every write also publishes the document's id on its tenant's Redis channel
(core/changes.py). A stream reads the registry only when a notice names one of its
documents (at most once per ``MIN_READ_S``, so a burst of notices is one read), plus a
safety poll every ``SAFETY_POLL_S`` in case a notice was lost (Redis restarting, the
subscription reconnecting): a client may wait a few seconds longer then, never forever.
Each API process holds one pub/sub connection (:class:`ChangeHub`) for all its streams.

One document::

    event: progress   data: <the GET /v1/documents/{id} JSON>   at connect and on each change
                      of status, stage, done or total
    : keep-alive      after ``KEEPALIVE_S`` without an event (proxies drop silent streams)
    event: done       data: <the final JSON>, status ready or failed; then the stream closes

If the document is deleted while watched, an ``event: error`` (404, the shape the streaming
ask uses) ends the stream.

A batch (at most ``MAX_BATCH_IDS`` ids; the caller's own documents only)::

    event: missing    data: {"ids": [...]}   ids the caller has no document for (unknown,
                      another tenant's, or deleted meanwhile): they will never be ready
    event: progress   data: <document JSON>  at connect for each unfinished document, then on
                      each change
    event: done       data: <document JSON>  once per document, when it is ready or failed
                      (at connect already, for those that were)
    : keep-alive
    event: end        data: {"ready": n, "failed": n, "missing": n}  every document settled;
                      then the stream closes

A stream lives at most ``MAX_STREAM_S``: an abandoned one ends (an SSE client reconnects by
itself).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from functools import partial
from typing import Annotated, Any

import anyio
import msgspec
import redis.asyncio as aioredis
from litestar import Request, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath, JSONBody, QueryParameter
from litestar.response import ServerSentEvent, ServerSentEventMessage
from litestar.status_codes import HTTP_200_OK
from redis.exceptions import RedisError

from core.changes import channel, tenant_of_channel
from core.domain import Document, DocumentStatus
from core.errors import BadInputError
from service.api.errors import ProblemType, problem_body, problem_responses
from service.api.limits import holding
from service.api.schemas import MAX_BATCH_IDS, DocumentIds, DocumentOut

log = logging.getLogger("docqa.api.events")

POLL_S = 0.25  # document_events without a subscription (tests): its plain poll
SAFETY_POLL_S = 5.0  # a stream re-reads its documents this often even without a notice
MIN_READ_S = 0.5  # notices arriving faster than this are answered by one registry read
KEEPALIVE_S = 15.0
MAX_STREAM_S = 3600.0
SEP = "\n"  # the contract's framing: "event: NAME\ndata: JSON\n\n"
FINAL = (DocumentStatus.READY, DocumentStatus.FAILED)
STREAM_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}

Lookup = Callable[[], Document | None]
LookupMany = Callable[[Sequence[str]], list[Document]]
# wait(timeout) → (ids named by notices since the last call, re-read everything?)
Wait = Callable[[float], Awaitable[tuple[set[str], bool]]]


# ---------------------------------------------------------------- the pub/sub subscription


class Subscription:
    """What one stream has been told since it last looked: the ids named by notices, and
    whether it must re-read all its documents (the subscription was just made or remade,
    so a change may have come before it; or too many notices piled up)."""

    MAX_IDS = 10_000

    def __init__(self) -> None:
        self._ids: set[str] = set()
        self._resync = False
        self._event = asyncio.Event()

    def notify(self, doc_id: str) -> None:
        if len(self._ids) < self.MAX_IDS:
            self._ids.add(doc_id)
        else:
            self._resync = True
        self._event.set()

    def resync(self) -> None:
        self._resync = True
        self._event.set()

    async def wait(self, timeout: float) -> tuple[set[str], bool]:
        """Wait at most ``timeout`` seconds for a notice; take what came."""
        if not self._event.is_set() and timeout > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._event.wait(), timeout)
        ids, resync = self._ids, self._resync
        self._ids, self._resync = set(), False
        self._event.clear()
        return ids, resync


class ChangeHub:
    """The API process's one Redis pub/sub connection, shared by its event streams: it
    subscribes to a tenant's channel while that tenant has a stream open and hands each
    notice to the tenant's streams. A Redis failure is logged and retried with backoff;
    meanwhile the streams live on their safety poll. ``redis_url`` None: no notices."""

    READ_S = 0.5  # a new subscription waits at most this long for the reader to make it

    def __init__(self, redis_url: str | None) -> None:
        self._url = redis_url
        self._subs: dict[str, set[Subscription]] = {}
        self._task: asyncio.Task[None] | None = None
        self._wake: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    @contextlib.asynccontextmanager
    async def subscribe(self, tenant: str) -> AsyncIterator[Subscription]:
        sub = Subscription()
        if self._url is None:
            yield sub
            return
        self._subs.setdefault(tenant, set()).add(sub)
        self._start()
        try:
            yield sub
        finally:
            subs = self._subs.get(tenant)
            if subs is not None:
                subs.discard(sub)
                if not subs:
                    del self._subs[tenant]
            if self._wake is not None:
                self._wake.set()

    def _start(self) -> None:
        loop = asyncio.get_running_loop()
        if self._loop is not loop:  # first use, or a new event loop (a test's app restarted)
            self._loop, self._wake, self._task = loop, asyncio.Event(), None
        if self._task is None or self._task.done():
            self._task = loop.create_task(self._run(), name="docqa-change-hub")
        assert self._wake is not None
        self._wake.set()

    async def aclose(self) -> None:
        task, self._task = self._task, None
        if task is not None and not task.done() and task.get_loop() is asyncio.get_running_loop():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def _deliver(self, msg: dict[str, Any]) -> None:
        tenant = tenant_of_channel(msg["channel"])
        subs = list(self._subs.get(tenant, ()))
        if msg["type"] == "subscribe":  # notices flow from here on: re-read once
            for sub in subs:
                sub.resync()
        elif msg["type"] == "message":
            data = msg["data"]
            doc_id = data.decode(errors="replace") if isinstance(data, bytes) else str(data)
            for sub in subs:
                sub.notify(doc_id)

    async def _run(self) -> None:
        assert self._url is not None and self._wake is not None
        wake, backoff = self._wake, 0.5
        while True:
            client: Any = aioredis.Redis.from_url(self._url, socket_connect_timeout=2)
            pubsub = client.pubsub()
            listening: set[str] = set()
            try:
                while True:
                    wanted = set(self._subs)
                    if wanted - listening:
                        await pubsub.subscribe(*(channel(t) for t in wanted - listening))
                    if listening - wanted:
                        await pubsub.unsubscribe(*(channel(t) for t in listening - wanted))
                    listening = wanted
                    wake.clear()
                    if not listening:
                        await wake.wait()  # no stream open: nothing to read
                        continue
                    msg = await pubsub.get_message(timeout=self.READ_S)
                    backoff = 0.5
                    if msg is not None:
                        self._deliver(msg)
            except (RedisError, OSError) as exc:
                log.warning("change notices unavailable (streams fall back to their %.0f s "
                            "poll); retrying in %.1f s: %s", SAFETY_POLL_S, backoff, exc)
                await asyncio.sleep(backoff)
                backoff = min(30.0, backoff * 2)
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()
                    await client.aclose()


def throttled(sub: Subscription, *, min_read_s: float = MIN_READ_S,
              clock: Callable[[], float] = time.monotonic) -> Wait:
    """``sub.wait`` that returns at most once per ``min_read_s`` when woken by a notice
    (the notices that come meanwhile are gathered into that one return)."""
    last = [-min_read_s]

    async def wait(timeout: float) -> tuple[set[str], bool]:
        ids, resync = await sub.wait(timeout)
        gap = min_read_s - (clock() - last[0])
        if (ids or resync) and gap > 0:
            await anyio.sleep(gap)
            more, again = await sub.wait(0)
            ids, resync = ids | more, resync or again
        last[0] = clock()
        return ids, resync

    return wait


# ---------------------------------------------------------------- one document


def _message(event: str, data: Any) -> ServerSentEventMessage:
    return ServerSentEventMessage(data=msgspec.json.encode(data).decode(), event=event, sep=SEP)


def _keepalive() -> ServerSentEventMessage:
    return ServerSentEventMessage(data=None, comment="keep-alive", sep=SEP)


def _state(doc: Document) -> tuple[str, str, int, int]:
    """What makes a new progress event: not ``updated_at``, which every write bumps."""
    return doc.status.value, doc.progress.stage, doc.progress.done, doc.progress.total


async def document_events(
    first: Document, lookup: Lookup, *, poll_s: float = POLL_S,
    keepalive_s: float = KEEPALIVE_S, max_s: float = MAX_STREAM_S,
    clock: Callable[[], float] = time.monotonic, wait: Callable[[], Awaitable[Any]] | None = None,
) -> AsyncIterator[ServerSentEventMessage]:
    """The events of one document, from ``first`` (already looked up, so a 404 is a plain
    response) until it is ready or failed, it disappears, or ``max_s`` has passed.

    Between looks it awaits ``wait()`` (the route: a notice about the document, or the
    safety poll), or sleeps ``poll_s`` without one. ``lookup`` runs in a worker thread. A
    client that disconnects cancels the task that drives this generator (Litestar's
    streaming response listens for ``http.disconnect``), which ends it at its next ``await``.
    """
    sent = _state(first)
    start = last_sent = clock()
    yield _message("progress", DocumentOut.from_domain(first))  # always first, even if final
    doc = first
    while doc.status not in FINAL:
        if clock() - start >= max_s:
            return
        await (wait() if wait is not None else anyio.sleep(poll_s))
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
            yield _keepalive()
    yield _message("done", DocumentOut.from_domain(doc))


def _one_document_wait(wait: Wait, doc_id: str) -> Callable[[], Awaitable[None]]:
    """Until a notice names the document (or the subscription was remade), or the safety
    poll is due."""

    async def until_changed() -> None:
        deadline = time.monotonic() + SAFETY_POLL_S
        while (left := deadline - time.monotonic()) > 0:
            ids, resync = await wait(left)
            if resync or doc_id in ids:
                return

    return until_changed


@get("/documents/{doc_id:str}/events", media_type="text/event-stream",
     summary="Live ingest progress (server-sent events)", responses=problem_responses(404))
async def stream_document_events(doc_id: FromPath[str], tenant: NamedDependency[str],
                                 comps: NamedDependency[Any],
                                 request: Request[Any, Any, Any]) -> ServerSentEvent:
    """Live ingest progress of one of the caller's documents (404 for anyone else's); 429
    past the open streams a key, or this server, may have (service/api/limits.py)."""
    first = await anyio.to_thread.run_sync(comps.documents.get, tenant, doc_id)
    lookup = partial(comps.repo.get, first.id, tenant)
    slot = comps.streams.acquire(str(request.state.key_id))

    async def events() -> AsyncIterator[ServerSentEventMessage]:
        async with _hub(comps).subscribe(tenant) as sub:
            async for msg in document_events(
                    first, lookup, wait=_one_document_wait(throttled(sub), first.id)):
                yield msg

    return ServerSentEvent(holding(slot, events()), headers=STREAM_HEADERS)


# ---------------------------------------------------------------- a batch of documents


async def batch_events(
    ids: Sequence[str], lookup: LookupMany, wait: Wait, *,
    safety_poll_s: float = SAFETY_POLL_S, keepalive_s: float = KEEPALIVE_S,
    max_s: float = MAX_STREAM_S, clock: Callable[[], float] = time.monotonic,
) -> AsyncIterator[ServerSentEventMessage]:
    """The events of a batch of documents (``ids``, distinct), until each is ready, failed
    or gone (then ``end``), or ``max_s`` has passed.

    ``lookup(ids)`` reads the caller's documents among ``ids`` (a worker thread runs it);
    ``wait(timeout)`` returns the ids notices named meanwhile: those still pending are read
    again, all pending ones when it asks for a resync or the safety poll is due.
    """
    order = {doc_id: n for n, doc_id in enumerate(ids)}
    pending: set[str] = set(ids)
    sent: dict[str, tuple[str, str, int, int]] = {}
    counts = {"ready": 0, "failed": 0, "missing": 0}

    def settle(found: list[Document], looked_at: set[str]) -> list[ServerSentEventMessage]:
        by_id = {d.id: d for d in found}
        out, gone = [], []
        for doc_id in sorted(looked_at & pending, key=order.__getitem__):
            doc = by_id.get(doc_id)
            if doc is None or doc.deleting:
                gone.append(doc_id)
                pending.discard(doc_id)
                counts["missing"] += 1
            elif doc.status in FINAL:
                out.append(_message("done", DocumentOut.from_domain(doc)))
                pending.discard(doc_id)
                counts[doc.status.value] += 1
            elif sent.get(doc_id) != _state(doc):
                sent[doc_id] = _state(doc)
                out.append(_message("progress", DocumentOut.from_domain(doc)))
        if gone:
            out.insert(0, _message("missing", {"ids": gone}))
        return out

    start = last_sent = last_read = clock()
    for msg in settle(await anyio.to_thread.run_sync(lookup, list(ids)), set(ids)):
        yield msg
    while pending:
        now = clock()
        if now - start >= max_s:
            return
        timeout = min(safety_poll_s - (now - last_read), keepalive_s - (now - last_sent),
                      max_s - (now - start))
        named, resync = await wait(max(0.0, timeout))
        if resync or clock() - last_read >= safety_poll_s:
            look = set(pending)
        else:
            look = named & pending
        if look:
            found = await anyio.to_thread.run_sync(
                lookup, sorted(look, key=order.__getitem__))
            last_read = clock()
            msgs = settle(found, look)
            for msg in msgs:
                yield msg
            if msgs:
                last_sent = clock()
        if pending and clock() - last_sent >= keepalive_s:
            last_sent = clock()
            yield _keepalive()
    yield _message("end", counts)


def _ids_of(values: Sequence[str]) -> list[str]:
    """Distinct ids in the order given (a value may hold several, comma-separated)."""
    ids = list(dict.fromkeys(i.strip() for v in values for i in v.split(",") if i.strip()))
    if not ids:
        raise BadInputError("name the documents to follow: ids")
    if len(ids) > MAX_BATCH_IDS:
        raise BadInputError(f"at most {MAX_BATCH_IDS} documents per stream, got {len(ids)}; "
                              "follow them in several streams")
    if any(len(i) > 128 for i in ids):
        raise BadInputError("a document id is at most 128 characters")
    return ids


def _batch_stream(ids: list[str], tenant: str, comps: Any,
                  request: Request[Any, Any, Any]) -> ServerSentEvent:
    lookup = partial(comps.repo.get_many, tenant)
    # one open stream, whatever its number of documents (service/api/limits.py)
    slot = comps.streams.acquire(str(request.state.key_id))

    async def events() -> AsyncIterator[ServerSentEventMessage]:
        async with _hub(comps).subscribe(tenant) as sub:
            async for msg in batch_events(ids, lookup, throttled(sub)):
                yield msg

    return ServerSentEvent(holding(slot, events()), headers=STREAM_HEADERS)


_BATCH_DOC = ("Events of many documents in one stream: `missing` (ids the caller has no "
              "document for), `progress` (a document's JSON, at connect and on each change), "
              "`done` (once per document, ready or failed), then `end` with the counts. At "
              f"most {MAX_BATCH_IDS} ids; another tenant's ids are `missing`, like unknown ones.")


@post("/documents/events", media_type="text/event-stream", status_code=HTTP_200_OK,
      summary="Live ingest progress of many documents (server-sent events)",
      description=_BATCH_DOC, responses=problem_responses())
async def stream_batch_events(data: JSONBody[DocumentIds], tenant: NamedDependency[str],
                              comps: NamedDependency[Any],
                              request: Request[Any, Any, Any]) -> ServerSentEvent:
    return _batch_stream(_ids_of(data.ids), tenant, comps, request)


@get("/documents/events", media_type="text/event-stream",
     summary="Live ingest progress of many documents (server-sent events; EventSource)",
     description=_BATCH_DOC + " Ids repeated (`?ids=a&ids=b`) or comma-separated; a long "
     "list belongs in the POST form's body.", responses=problem_responses())
async def stream_batch_events_get(
    tenant: NamedDependency[str], comps: NamedDependency[Any],
    ids: Annotated[list[str], QueryParameter(min_items=1)], request: Request[Any, Any, Any],
) -> ServerSentEvent:
    return _batch_stream(_ids_of(ids), tenant, comps, request)


def _hub(comps: Any) -> ChangeHub:
    """The components' hub (an app built on components without one: no notices)."""
    hub = getattr(comps, "changes", None)
    if hub is None:
        hub = comps.changes = ChangeHub(None)
    return hub


route_handlers = [stream_batch_events, stream_batch_events_get, stream_document_events]
