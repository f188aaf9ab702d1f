"""Litestar app factory: lifespan builds components once; handlers stay thin."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from typing import Annotated, Any

import anyio
from litestar import Litestar, Request, Response, Router, delete, get, post
from litestar.connection import ASGIConnection
from litestar.di import Provide
from litestar.enums import RequestEncodingType
from litestar.exceptions import HTTPException
from litestar.handlers.base import BaseRouteHandler
from litestar.params import Body, Parameter
from litestar.status_codes import HTTP_200_OK, HTTP_202_ACCEPTED, HTTP_204_NO_CONTENT

from core import metrics as core_metrics
from core.audit import AuditLog, RequestAudit, open_audit
from core.domain import DocumentStatus
from core.errors import DocqaError, RateLimitedError, TransientError, UnauthorizedError
from core.keys import resolve_key
from core.logging import connect_celery_signals
from core.ports import DocumentRepository
from core.ratelimit import RateLimiter
from core.registry import open_repository
from core.settings import Settings, apply_offline_env
from core.vault import encrypt_legacy_files
from ingest.store import ChromaStore, open_store
from service.admin import admin_router
from service.answer import AnswerPipeline, AnswerResult
from service.documents import DocumentService, TaskQueue, clean_filename, parse_metadata
from service.events import stream_document_events
from service.health import readiness
from service.limits import ASK, enforce_rate_limit
from service.metrics import metrics_routes
from service.observability import (
    RequestContextMiddleware,
    add_request_id_header,
    scope_request_id,
)
from service.openai_compat import (
    AnswerEvents,
    AnswerStream,
    AskEventsOperation,
    ask_body,
    ask_event_stream,
    final_result,
    openai_handlers,
)
from service.schemas import (
    AskRequest,
    AskResponse,
    DocumentList,
    DocumentOut,
    Filters,
    SearchRequest,
    SearchResponse,
    SearchResult,
    UploadAccepted,
    UploadForm,
)
from service.web import web_routes

log = logging.getLogger("docqa.api")
PROBLEM_JSON = "application/problem+json"


@dataclass
class Components:
    settings: Settings
    repo: DocumentRepository
    store: ChromaStore
    documents: DocumentService
    answers: AnswerPipeline
    redis: Any
    audit: AuditLog | None = None  # None: audit.enabled=false
    limiter: RateLimiter | None = None  # None: no rate limits (service/limits.py)


# ---------------------------------------------------------------- errors → HTTP (one place)


def problem(status: int, title: str, detail: str, headers: dict[str, str] | None = None) -> Response[Any]:
    return Response(
        {"type": "about:blank", "title": title, "status": status, "detail": detail},
        status_code=status, media_type=PROBLEM_JSON, headers=headers,
    )


def docqa_error_handler(_: Request[Any, Any, Any], exc: DocqaError) -> Response[Any]:
    headers: dict[str, str] = {}
    if isinstance(exc, TransientError | RateLimitedError):
        headers["Retry-After"] = str(exc.retry_after)
    if isinstance(exc, UnauthorizedError):
        headers["WWW-Authenticate"] = 'Bearer realm="docqa"'
    if exc.status_code >= 500 and not isinstance(exc, TransientError):
        log.error("internal error: %s", exc)
    return problem(exc.status_code, exc.title, exc.detail, headers)


def http_error_handler(_: Request[Any, Any, Any], exc: HTTPException) -> Response[Any]:
    detail = exc.detail
    extra = getattr(exc, "extra", None)
    if extra:
        detail = f"{detail}: {extra}"
    title = {400: "Bad request", 404: "Not found", 405: "Method not allowed",
             413: "Payload too large", 415: "Unsupported media type"}.get(exc.status_code, "Error")
    return problem(exc.status_code, title, str(detail), dict(exc.headers or {}))


def undecodable_body_handler(_: Request[Any, Any, Any], exc: UnicodeDecodeError) -> Response[Any]:
    """A JSON body that is not UTF-8 fails inside Litestar's decoder: the client's fault."""
    return problem(400, "Bad request", f"the request body is not valid UTF-8 ({exc.reason} at "
                   f"byte {exc.start})")


def internal_error_handler(_: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    log.exception("unhandled error", exc_info=exc)
    return problem(500, "Internal error", "an unexpected error occurred; see the server log")


# ---------------------------------------------------------------- auth


def require_api_key(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    comps: Components = connection.app.state.components
    header = connection.headers.get("authorization", "")
    scheme, _sep, key = header.partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        raise UnauthorizedError("send 'Authorization: Bearer <api-key>'")
    resolved = resolve_key(key.strip(), comps.settings.static_api_keys, comps.repo)
    if resolved is None:
        raise UnauthorizedError("unknown or revoked API key")
    connection.state.tenant = resolved.tenant
    connection.state.key_id = resolved.key_id  # the audit log's "who" (never the key)


def provide_tenant(request: Request[Any, Any, Any]) -> str:
    return str(request.state.tenant)


def provide_components(request: Request[Any, Any, Any]) -> Components:
    return request.app.state.components  # type: ignore[no-any-return]


def provide_audit(request: Request[Any, Any, Any]) -> RequestAudit:
    comps: Components = request.app.state.components
    return RequestAudit(comps.audit, str(request.state.tenant), str(request.state.key_id),
                        scope_request_id(request.scope))  # the X-Request-ID of the response


# ---------------------------------------------------------------- /v1 handlers


@post("/documents", status_code=HTTP_202_ACCEPTED)
async def upload_document(
    data: Annotated[UploadForm, Body(media_type=RequestEncodingType.MULTI_PART)],
    tenant: str,
    comps: Components,
    audit: RequestAudit,
) -> Response[UploadAccepted]:
    svc = comps.documents
    name = clean_filename(data.file.filename)
    try:
        metadata = parse_metadata(data.metadata)
        staged, sha256, size = await svc.stage(data.file)
        doc, created = await anyio.to_thread.run_sync(
            partial(svc.accept, tenant, staged, sha256, size, name, metadata,
                    redact_pii=data.redact_pii)
        )
    except DocqaError as exc:
        await anyio.to_thread.run_sync(partial(audit.failed, "upload", exc, **audit.text(
            "filename", name)))
        raise
    await anyio.to_thread.run_sync(partial(
        audit.record, "upload", status="accepted" if created else "duplicate",
        document_ids=[doc.id], sha256=sha256, bytes=size, redact_pii=doc.redact_pii,
        **audit.text("filename", name)))
    code = HTTP_202_ACCEPTED if created else HTTP_200_OK
    return Response(UploadAccepted(doc.id, doc.status.value, duplicate=not created,
                                   pii_redacted=doc.redact_pii), status_code=code)


@get("/documents", sync_to_thread=True)
def list_documents(
    tenant: str,
    comps: Components,
    status: DocumentStatus | None = None,
    limit: Annotated[int, Parameter(ge=1, le=500)] = 50,
    # bounded: past SQL's 64-bit integers an offset was a 500 (OverflowError); 2**53 - 1 is
    # the largest a JSON client (and the schema's float maximum) represents exactly
    offset: Annotated[int, Parameter(ge=0, le=2**53 - 1)] = 0,
) -> DocumentList:
    docs, total = comps.repo.list(tenant, status, limit, offset)
    return DocumentList([DocumentOut.from_domain(d) for d in docs], total, limit, offset)


@get("/documents/{doc_id:str}", sync_to_thread=True)
def get_document(doc_id: str, tenant: str, comps: Components) -> DocumentOut:
    return DocumentOut.from_domain(comps.documents.get(tenant, doc_id))


@delete("/documents/{doc_id:str}", status_code=HTTP_204_NO_CONTENT, sync_to_thread=True)
def delete_document(doc_id: str, tenant: str, comps: Components, audit: RequestAudit) -> None:
    try:
        comps.documents.delete(tenant, doc_id)
    except DocqaError as exc:
        audit.failed("delete", exc, document_ids=[doc_id[:128]])
        raise
    audit.record("delete", status="deleted", document_ids=[doc_id])


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


@post("/search", status_code=HTTP_200_OK, sync_to_thread=True)
def search(data: SearchRequest, tenant: str, comps: Components,
           audit: RequestAudit) -> SearchResponse:
    asked = {**audit.text("query", data.query), "filters": _filter_names(data.filters),
             "mode": data.mode, "top_k": data.top_k}
    try:
        ids = _scope(data.filters, tenant, comps)
        hits: list[Any] = []
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
    """Every question's one path (/v1/ask, streamed or not, and /v1/chat/completions): the
    filters' scope, the grounded answer, its metric and its audit record. Draft pieces
    (generative mode) come first and the result last, after its audit record is written;
    a caller that stops mid-draft (a client gone) is on record as ``abandoned``."""
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
                 chunk_ids=result.chunk_ids,
                 document_ids=list(dict.fromkeys(c["document_id"] for c in result.citations)))
    yield result


def provide_answer_events(tenant: str, comps: Components, audit: RequestAudit) -> AnswerEvents:
    return partial(answer_events, tenant=tenant, comps=comps, audit=audit)


@post("/ask", status_code=HTTP_200_OK, sync_to_thread=True, opt={"rate_limit": ASK},
      operation_class=AskEventsOperation)
def ask(data: AskRequest, answer_events: AnswerEvents) -> AskResponse:
    events = answer_events(data.question, data.top_k, data.filters, ())
    if data.stream:  # text/event-stream: `token` events, then this same body as `final`
        return ask_event_stream(events)  # type: ignore[return-value]
    return ask_body(final_result(events))


# ---------------------------------------------------------------- health


@get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@get("/readyz", sync_to_thread=True)
def readyz(comps: Components) -> Response[dict[str, Any]]:
    """Redis, Chroma, the registry database and the models (service/health.py)."""
    ready, body = readiness(comps)
    return Response(body, status_code=200 if ready else 503)


# ---------------------------------------------------------------- factory


def build_components(settings: Settings) -> Components:
    import redis

    from ingest.embedding import SentenceTransformerEmbedder
    from service.generator import LlamaGenerator

    repo = open_repository(settings)
    store = open_store(settings)
    keywords = store.keywords
    if keywords is not None and not keywords.existed:
        try:  # the keyword index is derived data: rebuild it from Chroma when it is missing
            n = store.rebuild_keywords()
            keywords.mark_complete()
            log.info("keyword index %s built from Chroma: %d chunks", settings.keywords_path, n)
        except DocqaError as exc:
            log.warning("keyword index not rebuilt (Chroma unavailable: %s)", exc)
    embedder = SentenceTransformerEmbedder(
        settings.models.resolved_embedding_path(), settings.models.embedding_batch_size
    )
    generator = None
    if settings.load_generator:
        m = settings.models
        generator = LlamaGenerator(
            m.resolved_generator_path(), n_ctx=m.n_ctx, n_threads=m.n_threads,
            queue_size=m.generation_queue_size, timeout_s=m.generation_timeout_s,
            retry_after_s=m.retry_after_s,
        )
    documents = DocumentService(settings, repo, store, TaskQueue(settings))
    encrypt_legacy_files(documents.vault, settings.files_dir)  # originals of older versions
    return Components(
        settings=settings, repo=repo, store=store, documents=documents,
        answers=AnswerPipeline(settings, embedder, store, generator),
        redis=redis.Redis.from_url(settings.redis_url, socket_timeout=2, socket_connect_timeout=2),
        audit=open_audit(settings),
        limiter=RateLimiter.from_url(settings.redis_url, fail_open=settings.rate_limit.fail_open),
    )


def create_app(settings: Settings | None = None, components: Components | None = None) -> Litestar:
    apply_offline_env()
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        if getattr(app.state, "components", None) is None:
            app.state.components = await anyio.to_thread.run_sync(build_components, settings)
        log.info("docqa API ready")
        yield

    v1 = Router(
        path="/v1",
        guards=[require_api_key, enforce_rate_limit],
        dependencies={"tenant": Provide(provide_tenant, sync_to_thread=False),
                      "audit": Provide(provide_audit, sync_to_thread=False),
                      "answer_events": Provide(provide_answer_events, sync_to_thread=False)},
        signature_namespace={"Components": Components},  # service/openai_compat.py's handlers
        route_handlers=[upload_document, list_documents, get_document, delete_document, search, ask,
                        stream_document_events, *openai_handlers],
    )
    admin = admin_router(settings)  # None without an admin key: /admin is then a 404
    connect_celery_signals()  # the request id travels with the jobs an upload queues
    app = Litestar(
        route_handlers=[v1, healthz, readyz, *metrics_routes(settings),
                        *web_routes(),  # the page at / (service/web.py): no key, no /v1 guard
                        *([admin] if admin else [])],
        # request ids, access log lines, HTTP metrics (service/observability.py); logging
        # itself is set up by `docqa serve` (core/logging.py), not by Litestar
        middleware=[RequestContextMiddleware],
        before_send=[add_request_id_header],
        logging_config=None,
        dependencies={"comps": Provide(provide_components, sync_to_thread=False)},
        lifespan=[lifespan],
        exception_handlers={
            DocqaError: docqa_error_handler,
            HTTPException: http_error_handler,
            UnicodeDecodeError: undecodable_body_handler,
            Exception: internal_error_handler,
        },
        request_max_body_size=settings.max_upload_bytes + 1024 * 1024,
        debug=False,
    )
    app.state.components = components
    return app
