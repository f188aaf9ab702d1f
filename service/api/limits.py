"""Rate-limit guard of the /v1 routes: per API key, counted in Redis (``core.ratelimit``).

Every /v1 request counts against ``rate_limit.requests_per_minute``; a handler marked with
``opt={"rate_limit": "ask"}`` (``/v1/ask``) also against ``rate_limit.ask_per_minute``. The
guard runs after ``require_api_key``, which leaves the key's id in ``connection.state``.
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
