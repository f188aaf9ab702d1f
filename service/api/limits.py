"""Rate limits of the API, counted in Redis (``core.ratelimit``).

Per API key: every /v1 request counts against ``rate_limit.requests_per_minute``; a handler
marked with ``opt={"rate_limit": "ask"}`` (``/v1/ask``) also against
``rate_limit.ask_per_minute``. That guard runs after ``require_api_key``, which leaves the
key's id in ``connection.state``.

Per client address (keys can be guessed only by trying them): a key presented and refused,
on /v1 or /admin, counts against ``rate_limit.auth_failures_per_minute``; once past it,
every request from that address is answered 429 with ``Retry-After`` before its key is even
looked at, so a guess cannot be confirmed while throttled. Every /admin request also counts
against ``rate_limit.admin_per_minute``. The address is the peer uvicorn reports (behind a
proxy on this machine, the forwarded one: uvicorn trusts 127.0.0.1's ``X-Forwarded-For``).
/healthz, /readyz and /schema have no guard and are never limited.
"""

from __future__ import annotations

from typing import Any

import anyio
from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler

from core.errors import RateLimitedError
from core.ratelimit import Limit
from core.settings import RateLimitSettings

WINDOW_S = 60
ASK = "ask"
AUTH_FAILURES = "auth_failures"
ADMIN = "admin"


def limits_for(settings: RateLimitSettings, kind: str | None) -> list[Limit]:
    limits = [Limit("requests", settings.requests_per_minute, WINDOW_S)]
    if kind == ASK:
        limits.append(Limit(ASK, settings.ask_per_minute, WINDOW_S))
    return limits


async def enforce_rate_limit(
    connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler
) -> None:
    comps = connection.app.state.components
    limiter = getattr(comps, "limiter", None)
    key_id = connection.state.get("key_id")
    if limiter is None or key_id is None:
        return
    limits = limits_for(comps.settings.rate_limit, (handler.opt or {}).get("rate_limit"))
    decision = await anyio.to_thread.run_sync(limiter.hit, key_id, limits)
    if not decision.allowed:
        lim = decision.refused_by
        what = "questions" if lim is not None and lim.name == ASK else "requests"
        per = f"{lim.limit} {what} per {lim.window_s} s" if lim is not None else "its limit"
        raise RateLimitedError(
            f"this API key is limited to {per}; retry after {decision.retry_after} s",
            retry_after=decision.retry_after,
        )


def _address(connection: ASGIConnection[Any, Any, Any, Any]) -> str:
    client = connection.client
    return f"addr:{client.host if client is not None else 'unknown'}"


def _auth_failures(connection: ASGIConnection[Any, Any, Any, Any]) -> tuple[Any, list[Limit]]:
    comps = connection.app.state.components
    limiter = getattr(comps, "limiter", None)
    n = comps.settings.rate_limit.auth_failures_per_minute
    return limiter, [Limit(AUTH_FAILURES, n, WINDOW_S)]


async def refuse_throttled_address(connection: ASGIConnection[Any, Any, Any, Any]) -> None:
    """429 when the client's address is past its failed-authentication limit; nothing is
    counted here (only failures count: :func:`count_auth_failure`)."""
    limiter, limits = _auth_failures(connection)
    if limiter is None:
        return
    decision = await anyio.to_thread.run_sync(limiter.peek, _address(connection), limits)
    if not decision.allowed:
        raise RateLimitedError(
            f"too many refused keys from this address (at most {limits[0].limit} per "
            f"{WINDOW_S} s); retry after {decision.retry_after} s",
            retry_after=decision.retry_after)


async def count_auth_failure(connection: ASGIConnection[Any, Any, Any, Any]) -> None:
    limiter, limits = _auth_failures(connection)
    if limiter is not None:
        await anyio.to_thread.run_sync(limiter.hit, _address(connection), limits)


async def enforce_admin_limit(connection: ASGIConnection[Any, Any, Any, Any]) -> None:
    """Every /admin request counts against the client address's admin limit."""
    comps = connection.app.state.components
    limiter = getattr(comps, "limiter", None)
    if limiter is None:
        return
    limits = [Limit(ADMIN, comps.settings.rate_limit.admin_per_minute, WINDOW_S)]
    decision = await anyio.to_thread.run_sync(limiter.hit, _address(connection), limits)
    if not decision.allowed:
        raise RateLimitedError(
            f"admin requests are limited to {limits[0].limit} per {WINDOW_S} s per address; "
            f"retry after {decision.retry_after} s", retry_after=decision.retry_after)
