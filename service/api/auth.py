"""Who is asking: the /v1 guard resolves a bearer key to its tenant, and the providers hand
the tenant, the components and the request's audit record to handlers."""

from __future__ import annotations

from typing import Any

from litestar import Request
from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler

from core.audit import RequestAudit
from core.errors import UnauthorizedError
from core.keys import resolve_key
from service.api.components import Components
from service.api.observability import scope_request_id


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
