"""Per-key request limits counted in Redis, so every API process shares one count.

Sliding-window counter: each (key id, limit) is one Redis hash holding the request count of
the current and the previous fixed window (field = window number). A request is allowed
when ``previous * (share of the previous window still inside the sliding window) + current
+ cost <= limit``, where a request's cost is 1, or its size for a limit on size (characters
to embed). That smooths the burst a plain fixed window allows at its edges (up to twice
the limit), at the cost of a hash per key and limit (at most three small fields, expiring
two windows after the key's last request).

One Lua script checks every limit of a request and, only when all allow it, counts it in
all of them: atomic across processes, one round trip, and refused requests are not counted
(a client hammering at its limit is back as soon as its window slides on). Time is Redis's
own clock (``TIME``), so API machines with skewed clocks still agree.

Redis unreachable: ``fail_open=True`` (the default) lets requests through uncounted and logs
a warning; ``False`` refuses them with a ``TransientError`` (503). After a failure the
limiter does not try Redis again for ``backoff_s`` seconds, so an outage costs one timeout,
not one per request.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from core.errors import TransientError

log = logging.getLogger("docqa.ratelimit")

# KEYS[i]: a hash per (key id, limit), fields: window number -> requests counted in it.
# ARGV[1]: the time in seconds ("" = Redis's clock); ARGV[2]: what an allowed request
# counts (1 for a request; a weighed one, such as characters to embed, more), "0" only to
# ask whether one would be allowed; ARGV[2i+1], ARGV[2i+2]: limit and window (seconds) of
# KEYS[i]. Returns {0, "0"} when allowed (and counted), else {i of the
# first limit refusing, seconds until every refusing limit would allow one more request (a
# string: Redis would truncate a Lua number to an integer)}.
_SCRIPT = """
local now
if ARGV[1] ~= '' then
  now = tonumber(ARGV[1])
else
  local t = redis.call('TIME')
  now = tonumber(t[1]) + tonumber(t[2]) / 1000000
end
local cost = math.max(1, tonumber(ARGV[2]))
local wait, refused, current = 0, 0, {}
for i = 1, #KEYS do
  local limit, window = tonumber(ARGV[2 * i + 1]), tonumber(ARGV[2 * i + 2])
  local w = math.floor(now / window)
  current[i] = w
  local got = redis.call('HMGET', KEYS[i], string.format('%d', w), string.format('%d', w - 1))
  local c, p = tonumber(got[1]) or 0, tonumber(got[2]) or 0
  local elapsed = now - w * window
  if p * (1 - elapsed / window) + c + cost > limit then
    local t
    if c + cost > limit then
      -- not in this window; in the next one this window's count is the previous one's
      t = (window - elapsed) + window * (1 - (limit - cost) / c)
    else
      t = window * (1 - (limit - cost - c) / p) - elapsed
    end
    if t > wait then wait = t end
    if refused == 0 then refused = i end
  end
end
if refused > 0 then
  return {refused, string.format('%.3f', wait)}
end
if ARGV[2] == '0' then
  return {0, '0'}
end
for i = 1, #KEYS do
  local window = tonumber(ARGV[2 * i + 2])
  local w = current[i]
  redis.call('HINCRBY', KEYS[i], string.format('%d', w), cost)
  for _, field in ipairs(redis.call('HKEYS', KEYS[i])) do
    if tonumber(field) < w - 1 then redis.call('HDEL', KEYS[i], field) end
  end
  redis.call('EXPIRE', KEYS[i], 2 * window + 1)
end
return {0, '0'}
"""


@dataclass(frozen=True, slots=True)
class Limit:
    """At most ``limit`` requests per ``window_s`` seconds, counted under ``name``."""

    name: str
    limit: int
    window_s: int = 60


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    retry_after: int = 0  # whole seconds (>= 1) when refused
    refused_by: Limit | None = None
    counted: bool = True  # False: Redis was unreachable and the limiter failed open


class RateLimiter:
    """Shared per-key limits (see the module docstring).

    Args:
        redis_client: a ``redis.Redis`` (thread-safe; its socket timeouts bound a call).
        prefix: Redis key prefix; keys are ``{prefix}{{key_id}}:{limit name}`` (the key id
            is a cluster hash tag, so one request's keys share a slot).
        fail_open: Redis unreachable: allow (True) or raise ``TransientError`` (False).
        backoff_s: after a Redis failure, seconds during which Redis is not tried again.
        clock: seconds since the epoch; None (the default) uses Redis's ``TIME`` (tests pass
            a fake clock).
    """

    def __init__(self, redis_client: Any, *, prefix: str = "docqa:rl:", fail_open: bool = True,
                 backoff_s: float = 2.0, clock: Callable[[], float] | None = None) -> None:
        self._redis = redis_client
        self._script = redis_client.register_script(_SCRIPT)
        self.prefix = prefix
        self.fail_open = fail_open
        self.backoff_s = backoff_s
        self._clock = clock
        self._lock = threading.Lock()
        self._down_until = 0.0

    @classmethod
    def from_url(cls, url: str, *, timeout_s: float = 1.0, **kwargs: Any) -> RateLimiter:
        """A limiter on its own Redis client: short timeouts and a single immediate retry
        (a stale pooled connection), not redis-py's default of three retries with backoff,
        which would hold a request for seconds while Redis is down."""
        # redis-py (~0.25 s to import) loads only here: importing the API does not need it
        import redis
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        client = redis.Redis.from_url(url, socket_timeout=timeout_s,
                                      socket_connect_timeout=timeout_s,
                                      retry=Retry(NoBackoff(), 1))
        return cls(client, **kwargs)

    def redis_key(self, key_id: str, limit: Limit) -> str:
        return f"{self.prefix}{{{key_id}}}:{limit.name}"

    def hit(self, key_id: str, limits: Sequence[Limit], cost: int = 1) -> Decision:
        """Count one request of ``key_id`` against every limit (limits <= 0 are off), or
        refuse it without counting it anywhere. ``cost``: what the request counts (a
        request weighed by its size counts its size); one costing more than a limit is
        never allowed, so callers refuse it themselves with a clearer reason."""
        if cost < 1:
            raise ValueError(f"a request costs at least 1, not {cost}")
        return self._check(key_id, limits, cost)

    def peek(self, key_id: str, limits: Sequence[Limit]) -> Decision:
        """Whether one more request of ``key_id`` would be allowed, counting nothing (a
        request that counts only when it fails, such as a failed authentication)."""
        return self._check(key_id, limits, 0)

    def _check(self, key_id: str, limits: Sequence[Limit], cost: int) -> Decision:
        active = [lim for lim in limits if lim.limit > 0]
        if not active:
            return Decision(True)
        if time.monotonic() < self._down_until:
            return self._unavailable(None)
        args: list[Any] = ["" if self._clock is None else repr(float(self._clock())),
                           str(cost)]
        for lim in active:
            args += [lim.limit, max(1, int(lim.window_s))]
        try:
            refused, wait = self._script(keys=[self.redis_key(key_id, lim) for lim in active],
                                         args=args)
        except Exception as exc:  # noqa: BLE001 - any Redis failure: fail open or closed
            with self._lock:
                self._down_until = time.monotonic() + self.backoff_s
            return self._unavailable(exc)
        refused = int(refused)
        if refused == 0:
            return Decision(True)
        retry_after = max(1, math.ceil(float(wait)))
        return Decision(False, retry_after, active[refused - 1])

    def _unavailable(self, exc: Exception | None) -> Decision:
        if exc is not None:
            log.warning("rate limiter: Redis unavailable (%s: %s); %s for %.0f s",
                        type(exc).__name__, exc,
                        "serving without limits" if self.fail_open else "refusing requests",
                        self.backoff_s)
        if self.fail_open:
            return Decision(True, counted=False)
        raise TransientError("rate limiter unavailable (Redis); retry later", retry_after=5)
