"""``POST /v1/search`` and ``POST /v1/ask`` (plain, or streamed as server-sent events).

Every question takes one path, :func:`answer_events` (``/v1/ask`` streamed or not, and
``/v1/chat/completions``): the filters' scope, the grounded answer, its metric and its audit
record. Streaming ``/v1/ask``: ``event: token`` with ``{"text"}`` zero or more times, then
``event: final`` with exactly the non-streaming body; an error after the stream started is
``event: error`` with a problem (``{type, title, status, detail}``). The synchronous answer
engine runs in worker threads (one ``next()`` at a time), never on the event loop.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Generator, Sequence
from contextlib import suppress
from datetime import UTC, datetime
from functools import partial
from typing import ClassVar

import anyio
from litestar import post
from litestar.di import NamedDependency
from litestar.openapi.spec import Schema
from litestar.params import JSONBody
from litestar.response import Stream
from litestar.status_codes import HTTP_200_OK

from core import metrics as core_metrics
from core.audit import RequestAudit
from core.domain import ChunkHit
from core.errors import DocqaError
from core.settings import Settings
from service.answer import AnswerEvent, AnswerResult, DraftToken, final_result
from service.api.components import Components
from service.api.errors import ProblemType, domain_problem, problem_body, problem_responses
from service.api.limits import ASK
from service.api.schemas import (
    AskRequest,
    AskResponse,
    Filters,
    SearchRequest,
    SearchResponse,
    SearchResult,
    ask_body,
)
from service.api.streaming import (
    EVENT_STREAM,
    STREAM_HEADERS,
    EventStreamOperation,
    event_schema,
    sse,
    text_pieces,
)

log = logging.getLogger("docqa.api")

# (question, top_k, filters, earlier user turns) → draft pieces, then the final AnswerResult.
AnswerStream = Generator[AnswerEvent, None, None]
AnswerEvents = Callable[[str, int | None, Filters | None, Sequence[str]], AnswerStream]


def _top_k(requested: int | None, settings: Settings, cap: int | None = None) -> int:
    return min(requested or settings.retrieval.top_k, cap or settings.retrieval.max_top_k)


def _scope(filters: Filters | None, tenant: str, comps: Components) -> list[str] | None:
    """None = all the tenant's documents; otherwise the ids the filters allow (maybe none).
    Resolved through the registry, which only ever returns this tenant's documents."""
    if filters is None or not any((filters.document_ids is not None, filters.filename,
                                   filters.metadata, filters.uploaded_after,
                                   filters.uploaded_before)):
        return None
    return comps.repo.find_ids(
        tenant, ids=filters.document_ids, filename=filters.filename,
        created_from=_epoch(filters.uploaded_after), created_to=_epoch(filters.uploaded_before),
        metadata=filters.metadata,
    )


def _epoch(moment: datetime | None) -> float | None:
    if moment is None:
        return None
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


def _filter_names(filters: Filters | None) -> list[str]:
    """Which filters a request used (for the audit log: names only, never their values)."""
    if filters is None:
        return []
    return [f for f in filters.__struct_fields__ if getattr(filters, f) is not None]


@post("/search", status_code=HTTP_200_OK, sync_to_thread=True,
      responses=problem_responses(413))
def search(data: JSONBody[SearchRequest], tenant: NamedDependency[str],
           comps: NamedDependency[Components],
           audit: NamedDependency[RequestAudit]) -> SearchResponse:
    asked = {**audit.text("query", data.query), "filters": _filter_names(data.filters),
             "mode": data.mode, "top_k": data.top_k}
    try:
        ids = _scope(data.filters, tenant, comps)
        hits: list[ChunkHit] = []
        if ids != []:
            r = comps.settings.retrieval
            hits, _ = comps.answers.search(tenant, data.query,
                                           _top_k(data.top_k, comps.settings, r.max_search_top_k),
                                           ids, mode=data.mode)
    except DocqaError as exc:
        audit.failed("search", exc, **asked)
        raise
    audit.record("search", status="ok", results=len(hits), **asked,
                 chunk_ids=[h.chunk_id for h in hits],
                 document_ids=list(dict.fromkeys(h.document_id for h in hits)))
    return SearchResponse([
        SearchResult(h.chunk_id, h.document_id, h.filename, h.page, h.start, h.end, h.text, h.score)
        for h in hits
    ])


def answer_events(question: str, top_k: int | None, filters: Filters | None,
                  history: Sequence[str] = (), *, tenant: str, comps: Components,
                  audit: RequestAudit) -> AnswerStream:
    """Every question's one path. Draft pieces (generative mode) come first and the result
    last, after its audit record is written; a caller that stops mid-draft (a client gone)
    is on record as ``abandoned``."""
    asked = {**audit.text("question", question), "filters": _filter_names(filters),
             "top_k": top_k}
    result = AnswerResult("not_found", "", [], {"total_ms": 0.0})
    try:
        ids = _scope(filters, tenant, comps)
        if ids != []:
            for event in comps.answers.ask_events(tenant, question, _top_k(top_k, comps.settings),
                                                  ids, history):
                if isinstance(event, AnswerResult):
                    result = event
                else:
                    yield event
    except DocqaError as exc:
        audit.failed("ask", exc, **asked)
        raise
    except GeneratorExit:
        with suppress(DocqaError):  # the client is gone: nobody to send a 503 to
            audit.record("ask", status="abandoned", **asked)
        raise
    core_metrics.ask_result(result.status)
    audit.record("ask", status=result.status, citations=len(result.citations), **asked,
                 chunk_ids=[c.chunk_id for c in result.citations],
                 document_ids=list(dict.fromkeys(c.document_id for c in result.citations)))
    yield result


def provide_answer_events(tenant: NamedDependency[str], comps: NamedDependency[Components],
                          audit: NamedDependency[RequestAudit]) -> AnswerEvents:
    return partial(answer_events, tenant=tenant, comps=comps, audit=audit)


class AskEventsOperation(EventStreamOperation):
    """``/v1/ask``'s 200: the JSON body, or (``"stream": true``) its event stream."""

    event_schema: ClassVar[Schema] = event_schema(
        ["token", "final", "error"], "JSON: token {text}; final: the JSON response body; "
        "error: a problem {type, title, status, detail}")


@post("/ask", status_code=HTTP_200_OK, sync_to_thread=True, opt={"rate_limit": ASK},
      operation_class=AskEventsOperation, responses=problem_responses(413))
def ask(data: JSONBody[AskRequest],
        answer_events: NamedDependency[AnswerEvents]) -> AskResponse:
    events = answer_events(data.question, data.top_k, data.filters, data.history)
    if data.stream:  # text/event-stream: `token` events, then this same body as `final`
        return ask_event_stream(events)  # type: ignore[return-value]
    return ask_body(final_result(events))


def ask_event_stream(events: AnswerStream) -> Stream:
    """``/v1/ask`` with ``"stream": true``. Called in the handler's worker thread: the first
    event is computed before the response starts, so a failure up to then (the answer queue
    is full: 503, the vector store is down…) is still an ordinary problem+json response."""
    try:
        first = next(events)
    except StopIteration as exc:  # pragma: no cover - the pipeline always ends with a result
        raise RuntimeError("the answer pipeline ended without a result") from exc
    return Stream(_ask_sse(first, events), media_type=EVENT_STREAM, headers=STREAM_HEADERS)


async def _ask_sse(first: AnswerEvent, events: AnswerStream) -> AsyncIterator[bytes]:
    event: AnswerEvent | None = first
    drafted = False
    try:
        while event is not None:
            if isinstance(event, DraftToken):
                drafted = True
                yield sse("token", {"text": event.text})
            else:
                if not drafted:  # extractive mode has no draft: the answer's words are the tokens
                    for piece in text_pieces(event.answer):
                        yield sse("token", {"text": piece})
                yield sse("final", ask_body(event))
                return
            try:
                event = await anyio.to_thread.run_sync(partial(next, events, None))
            except DocqaError as exc:
                yield sse("error", domain_problem(exc))
                return
            except Exception:
                log.exception("streamed answer failed")
                yield sse("error", problem_body(
                    ProblemType.INTERNAL_ERROR, 500, "Internal error",
                    "an unexpected error occurred; see the server log"))
                return
        yield sse("error", problem_body(ProblemType.INTERNAL_ERROR, 500, "Internal error",
                                        "the answer ended without a result"))
    finally:
        # the client may have left mid-draft: closing the pipeline frees the generator's
        # lock and queue slot at once (and records the question as abandoned)
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(events.close)


route_handlers = [search, ask]
