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

``/v1/embeddings`` costs what it embeds: besides the request, its inputs' characters count
against the key's ``rate_limit.embedding_chars_per_minute`` (:func:`charge_embedding`), so
256 inputs of 8,000 characters are not one request among 600 a minute.

Open event streams (``/v1/documents/{id}/events`` and ``/v1/documents/events``) are counted
in this process, per key and in all (:class:`StreamSlots`): each one holds a connection, a
share of the pub/sub reader and registry reads for up to an hour, so past
``rate_limit.streams_per_key`` or ``rate_limit.streams_per_process`` a new one
gets 429 with ``Retry-After``. A stream gives its slot back when it ends, when its client
goes away, and, should the response never start, when its generator is collected. The count
is per process because what a stream costs is this process's.
"""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator
from typing import Any, TypeVar

import anyio
from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler

from core.errors import PayloadTooLargeError, RateLimitedError
from core.ratelimit import Limit
from core.settings import RateLimitSettings

T = TypeVar("T")

WINDOW_S = 60
ASK = "ask"
AUTH_FAILURES = "auth_failures"
ADMIN = "admin"
EMBEDDING_CHARS = "embedding_chars"
STREAM_RETRY_AFTER_S = 5


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


def charge_embedding(comps: Any, key_id: str, chars: int) -> None:
    """Count ``chars`` characters to embed against the key's per-minute budget: 429 with
    ``Retry-After`` past it, 413 for a request larger than the whole budget (it would never
    pass). Runs in a worker thread (the route is synchronous)."""
    limiter = getattr(comps, "limiter", None)
    budget = comps.settings.rate_limit.embedding_chars_per_minute
    if limiter is None or budget <= 0 or chars <= 0:
        return
    if chars > budget:
        raise PayloadTooLargeError(
            f"the inputs have {chars} characters; this API key may embed at most {budget} "
            f"per {WINDOW_S} s: send fewer or shorter inputs per request")
    lim = Limit(EMBEDDING_CHARS, budget, WINDOW_S)
    decision = limiter.hit(key_id, [lim], cost=chars)
    if not decision.allowed:
        raise RateLimitedError(
            f"this API key may embed {budget} characters per {WINDOW_S} s and has used them "
            f"up; these {chars} fit again after {decision.retry_after} s",
            retry_after=decision.retry_after)


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


class StreamSlot:
    """One open stream's place in :class:`StreamSlots`; :meth:`release` is idempotent."""

    def __init__(self, slots: StreamSlots, key_id: str) -> None:
        self._slots, self.key_id, self._held = slots, key_id, True

    def release(self) -> None:
        if self._held:
            self._held = False
            self._slots._release(self.key_id)

    def __del__(self) -> None:  # a response that never started its stream still frees it
        self.release()


class StreamSlots:
    """Open streams of this process: at most ``per_key`` per key and ``per_process`` in all
    (0: no cap). Thread-safe (a slot may be collected on any thread)."""

    def __init__(self, per_key: int, per_process: int) -> None:
        self.per_key, self.per_process = per_key, per_process
        # reentrant: a slot collected by the garbage collector inside acquire() releases
        self._lock = threading.RLock()
        self._open: dict[str, int] = {}
        self.total = 0

    @classmethod
    def for_settings(cls, settings: RateLimitSettings) -> StreamSlots:
        return cls(settings.streams_per_key, settings.streams_per_process)

    def open_for(self, key_id: str) -> int:
        with self._lock:
            return self._open.get(key_id, 0)

    def acquire(self, key_id: str) -> StreamSlot:
        """A slot for one more stream of ``key_id``, or :class:`RateLimitedError` (429)."""
        with self._lock:
            mine = self._open.get(key_id, 0)
            if self.per_key > 0 and mine >= self.per_key:
                raise RateLimitedError(
                    f"this API key has {mine} event streams open, the most it may; close one "
                    f"or retry after {STREAM_RETRY_AFTER_S} s",
                    retry_after=STREAM_RETRY_AFTER_S)
            if self.per_process > 0 and self.total >= self.per_process:
                raise RateLimitedError(
                    f"this server has {self.total} event streams open, the most it serves; "
                    f"retry after {STREAM_RETRY_AFTER_S} s", retry_after=STREAM_RETRY_AFTER_S)
            self._open[key_id] = mine + 1
            self.total += 1
        return StreamSlot(self, key_id)

    def _release(self, key_id: str) -> None:
        with self._lock:
            left = self._open.get(key_id, 0) - 1
            if left > 0:
                self._open[key_id] = left
            else:
                self._open.pop(key_id, None)
            self.total = max(0, self.total - 1)


async def holding(slot: StreamSlot, events: AsyncIterator[T]) -> AsyncIterator[T]:
    """``events``, with ``slot`` released when they end or the client goes away (Litestar
    cancels the streaming task then, which closes this generator)."""
    try:
        async for event in events:
            yield event
    finally:
        slot.release()
