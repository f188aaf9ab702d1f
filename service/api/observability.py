"""Request ids, access log lines and HTTP metrics of the API (an ASGI middleware plus a
``before_send`` hook; see core/logging.py and core/metrics.py).

* Request id: the caller's ``X-Request-ID`` when it is a plain token of at most 64
  characters (letters, digits, ``._:-``) that does not look like an API key (``dq_…``),
  otherwise a generated one. It is bound to every
  log line of the request (threads included), written to the audit entry, put in the
  Celery message of an upload (the worker's lines carry it) and returned in the
  ``X-Request-ID`` response header of every response, errors and unknown routes included.
* One access line per request (logger ``docqa.access``): method, path (no query string),
  route template, status and duration. Probes and scrapes (/healthz, /readyz, /metrics)
  that succeed are logged at DEBUG.
* ``docqa_http_requests_total{route,method,code}``, ``docqa_http_refused_total{route,code}``
  (429/503) and ``docqa_ask_latency_seconds`` (core/metrics.py), by route template, so
  document ids never become label values.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from core import metrics
from core.audit import request_id as valid_or_new_request_id
from core.logging import looks_secret, request_id_var

log = logging.getLogger("docqa.access")

HEADER = "x-request-id"
_STATE_KEY = "docqa_request_id"
_QUIET_ROUTES = frozenset({"/healthz", "/readyz", "/metrics"})


def scope_request_id(scope: Any) -> str:
    """This request's id (decided once per request, kept in the scope's state)."""
    state = scope.setdefault("state", {})
    rid = state.get(_STATE_KEY)
    if rid is None:
        header = None
        for key, value in scope.get("headers") or ():
            if key.lower() == HEADER.encode():
                header = value.decode("latin-1")
                break
        if header is not None and looks_secret(header):
            header = None  # a key sent as a request id would end up in logs and the audit log
        rid = state[_STATE_KEY] = valid_or_new_request_id(header)
    return str(rid)


class RequestContextMiddleware:
    """Binds the request id for the request's log lines, then writes its access line and
    counts it. Litestar runs app middleware after routing, so ``path_template`` is known."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        token = request_id_var.set(scope_request_id(scope))
        started = time.perf_counter()
        seen = {"code": 500}

        async def observing_send(message: Any) -> None:
            if message["type"] == "http.response.start":
                seen["code"] = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, observing_send)
        finally:
            seconds = time.perf_counter() - started
            route = scope.get("path_template") or "unmatched"
            method, code = scope.get("method", "?"), seen["code"]
            try:
                metrics.http_response(route, method, code, seconds)
            except Exception:  # noqa: BLE001 - metrics never fail a request
                log.debug("HTTP metrics not recorded", exc_info=True)
            level = logging.DEBUG if route in _QUIET_ROUTES and code < 400 else logging.INFO
            log.log(level, "%s %s %d %.1f ms", method, scope.get("path", ""), code,
                    seconds * 1000,
                    extra={"method": method, "path": scope.get("path", ""), "route": route,
                           "status": code, "duration_ms": round(seconds * 1000, 1)})
            request_id_var.reset(token)


async def add_request_id_header(message: Any, scope: Any) -> None:
    """``before_send`` hook: every HTTP response carries ``X-Request-ID``."""
    if message.get("type") != "http.response.start" or scope.get("type") != "http":
        return
    headers = list(message.get("headers") or [])
    if not any(bytes(k).lower() == HEADER.encode() for k, _ in headers):
        headers.append((HEADER.encode(), scope_request_id(scope).encode("latin-1")))
        message["headers"] = headers
