"""Who is asking: the /v1 guard resolves a bearer key to its tenant, and the providers hand
the tenant, the components and the request's audit record to handlers."""

from __future__ import annotations

from typing import Any

import anyio
from litestar import Request
from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler

from core.audit import RequestAudit
from core.errors import UnauthorizedError
from core.keys import resolve_key
from service.api.components import Components
from service.api.limits import count_auth_failure, refuse_throttled_address
from service.api.observability import scope_request_id


async def require_api_key(connection: ASGIConnection[Any, Any, Any, Any],
                          _: BaseRouteHandler) -> None:
    comps: Components = connection.app.state.components
    # an address refused too many keys: 429 before this key is looked at (service/api/limits.py)
    await refuse_throttled_address(connection)
    header = connection.headers.get("authorization", "")
    scheme, _sep, key = header.partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        raise UnauthorizedError("send 'Authorization: Bearer <api-key>'")
    resolved = await anyio.to_thread.run_sync(
        resolve_key, key.strip(), comps.settings.static_api_keys, comps.repo)
    if resolved is None:
        await count_auth_failure(connection)
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
