"""The Litestar app factory: components are built once in the lifespan; routes live in one
module per group (documents, ask, OpenAI-compatible, events, admin, web, health, metrics)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
from litestar import Litestar, Router
from litestar.di import Provide

from core.logging import connect_celery_signals
from core.settings import Settings, apply_offline_env
from service.api import ask, documents, events, health, openai, openapi, web
from service.api.admin import admin_router
from service.api.auth import provide_audit, provide_components, provide_tenant, require_api_key
from service.api.components import Components, build_components
from service.api.errors import EXCEPTION_HANDLERS
from service.api.limits import enforce_rate_limit
from service.api.metrics import metrics_routes
from service.api.observability import RequestContextMiddleware, add_request_id_header

log = logging.getLogger("docqa.api")
FORM_MARGIN = 1024 * 1024  # the upload form's fields and part headers around the file


def create_app(settings: Settings | None = None, components: Components | None = None) -> Litestar:
    apply_offline_env()
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        if getattr(app.state, "components", None) is None:
            app.state.components = await anyio.to_thread.run_sync(build_components, settings)
        log.info("docqa API ready")
        try:
            yield
        finally:  # the event streams' pub/sub reader (service/api/events.py)
            hub = getattr(app.state.components, "changes", None)
            if hub is not None:
                await hub.aclose()

    v1 = Router(
        path="/v1",
        guards=[require_api_key, enforce_rate_limit],
        dependencies={"tenant": Provide(provide_tenant, sync_to_thread=False),
                      "audit": Provide(provide_audit, sync_to_thread=False),
                      "answer_events": Provide(ask.provide_answer_events, sync_to_thread=False)},
        security=[{openapi.SECURITY_SCHEME: []}],
        route_handlers=[
            Router(path="/", tags=["documents"], route_handlers=[
                # the one route with a large body: the multipart form streams into the vault,
                # whose writer counts max_upload_bytes itself (the margin is the form's
                # other fields); every other route gets a small JSON limit
                Router(path="/", request_max_body_size=settings.max_upload_bytes + FORM_MARGIN,
                       route_handlers=[documents.upload_document]),
                *(h for h in documents.route_handlers if h is not documents.upload_document),
                *events.route_handlers]),
            Router(path="/", tags=["questions"], route_handlers=ask.route_handlers),
            Router(path="/", tags=["openai"], route_handlers=openai.route_handlers,
                   request_max_body_size=settings.max_openai_json_bytes),
        ],
    )
    admin = admin_router(settings)  # None without an admin key: /admin is then a 404
    connect_celery_signals()  # the request id travels with the jobs an upload queues
    app = Litestar(
        route_handlers=[v1,
                        Router(path="/", tags=["operations"],
                               route_handlers=[*health.route_handlers, *metrics_routes(settings)]),
                        *web.route_handlers,  # the page at /: no key, no /v1 guard
                        *openapi.route_handlers,  # the schema page's own files
                        *([admin] if admin else [])],
        openapi_config=openapi.openapi_config(),
        # request ids, access log lines, HTTP metrics (observability.py); logging itself is
        # set up by `docqa serve` (core/logging.py), not by Litestar
        middleware=[RequestContextMiddleware],
        before_send=[add_request_id_header],
        logging_config=None,
        dependencies={"comps": Provide(provide_components, sync_to_thread=False)},
        lifespan=[lifespan],
        exception_handlers=EXCEPTION_HANDLERS,
        # a body over its route's limit is refused (413) as soon as Content-Length or the
        # bytes read so far pass it: one key cannot make the API buffer 50 MB per question
        request_max_body_size=settings.max_json_bytes,
        debug=False,
    )
    app.state.components = components
    return app
