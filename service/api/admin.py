"""Admin API: create, list and revoke tenant API keys, under /admin, behind the admin key.

The admin key comes from the settings (``DOCQA_ADMIN_KEY``, or its SHA-256 as
``DOCQA_ADMIN_KEY_SHA256``) and is compared as a SHA-256 hash in constant time. Without one
the routes are not mounted at all: /admin/... answers 404 like any unknown path. Any other
credential (a tenant key included) gets 401, and the admin key is no tenant key: /v1 routes
answer it 401. Every admin request counts against its client address's admin limit, and a
refused key against the address's failed-authentication limit (service/api/limits.py).
"""

from __future__ import annotations

from functools import partial
from typing import Annotated, Any

import msgspec
from litestar import Response, Router, delete, get, post
from litestar.connection import ASGIConnection
from litestar.di import NamedDependency
from litestar.handlers.base import BaseRouteHandler
from litestar.params import FromPath, FromQuery, JSONBody
from litestar.status_codes import HTTP_201_CREATED, HTTP_204_NO_CONTENT

from core.audit import RequestAudit, request_id
from core.errors import ConfigurationError, NotFoundError, UnauthorizedError
from core.keys import (
    hash_key,
    is_admin_key,
    issue_key,
    public_record,
    valid_key_id,
    validate_tenant,
)
from core.logging import current_request_id
from core.settings import Settings
from service.api.errors import problem_responses
from service.api.limits import count_auth_failure, enforce_admin_limit, refuse_throttled_address
from service.api.openapi import SECURITY_SCHEME

# not rate-limited; a key change that cannot be audited is refused (503)
ADMIN_PROBLEMS = partial(problem_responses, base=(400, 401, 500, 503))


class KeyCreate(msgspec.Struct, forbid_unknown_fields=True):
    tenant: Annotated[str, msgspec.Meta(min_length=1, max_length=63)]
    name: Annotated[str, msgspec.Meta(max_length=200)] = ""


class KeyOut(msgspec.Struct):
    id: str
    tenant: str
    name: str
    created_at: str
    revoked_at: str | None
    active: bool


class KeyCreated(msgspec.Struct):
    id: str
    tenant: str
    name: str
    created_at: str
    key: Annotated[str, msgspec.Meta(description="the API key itself: shown this once only")]


class KeyList(msgspec.Struct):
    items: list[KeyOut]


@post("/keys", status_code=HTTP_201_CREATED, sync_to_thread=True, responses=ADMIN_PROBLEMS(413))
def create_api_key(data: JSONBody[KeyCreate], comps: NamedDependency[Any]) -> Response[KeyCreated]:
    repo = comps.repo
    key_id, key = issue_key(repo, data.tenant, data.name)
    _audit(comps, "key_create", data.tenant, key_id)  # fail closed: the key is then not shown
    rec = repo.key_for_hash(hash_key(key))
    created_at = public_record(rec)["created_at"] if rec else ""
    return Response(KeyCreated(key_id, data.tenant, data.name, created_at, key),
                    status_code=HTTP_201_CREATED, headers={"Cache-Control": "no-store"})


@get("/keys", sync_to_thread=True, responses=ADMIN_PROBLEMS())
def list_api_keys(comps: NamedDependency[Any], tenant: FromQuery[str | None] = None) -> KeyList:
    if tenant is not None:
        validate_tenant(tenant)
    return KeyList([KeyOut(**public_record(k)) for k in comps.repo.list_keys(tenant)])


@delete("/keys/{key_id:str}", status_code=HTTP_204_NO_CONTENT, sync_to_thread=True,
        responses=ADMIN_PROBLEMS(404))
def revoke_api_key(key_id: FromPath[str], comps: NamedDependency[Any]) -> None:
    if not valid_key_id(key_id) or not comps.repo.revoke_key(key_id):
        raise NotFoundError(f"no API key with id {key_id[:64]!r}")
    _audit(comps, "key_revoke",
           next((k.tenant for k in comps.repo.list_keys() if k.id == key_id), None), key_id)


def _audit(comps: Any, event: str, tenant: str | None, key_id: str) -> None:
    """Key changes go on the audit record; who: ``admin`` (the admin key has no id).
    Raises AuditUnavailableError (503) when the entry cannot be written."""
    RequestAudit(getattr(comps, "audit", None), tenant, "admin",
                 request_id(current_request_id())).record(event, status="ok", target_key_id=key_id)


def admin_router(settings: Settings) -> Router | None:
    """The /admin router, or None when no admin key is configured (then /admin is a 404)."""
    expected = settings.admin_key_hash
    if expected is None:
        return None
    if any(is_admin_key(k, expected) for k in settings.static_api_keys):
        raise ConfigurationError("the admin key must not also be a DOCQA_API_KEYS key")

    async def require_admin_key(
        connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler
    ) -> None:
        await refuse_throttled_address(connection)  # too many refused keys: 429 first
        await enforce_admin_limit(connection)
        scheme, _sep, key = connection.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not is_admin_key(key.strip(), expected):
            if key.strip():
                await count_auth_failure(connection)
            raise UnauthorizedError("admin routes need 'Authorization: Bearer <admin-key>'")

    return Router(path="/admin", guards=[require_admin_key], tags=["admin"],
                  security=[{SECURITY_SCHEME: []}],
                  route_handlers=[create_api_key, list_api_keys, revoke_api_key])
