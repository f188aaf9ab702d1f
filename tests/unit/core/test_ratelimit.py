"""The Redis rate limiter (core/ratelimit.py) against a real Redis, database 9.

Every test uses its own key prefix and deletes its keys afterwards (the database is never
flushed). Redis is the test session's own server (tests/private_redis.py), or
``DOCQA_TEST_RATELIMIT_REDIS_URL``; when it cannot be reached these tests fail, not skip.
"""

from __future__ import annotations

import os
import secrets
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
import redis

from core.errors import TransientError
from core.ratelimit import Limit, RateLimiter
from service.cli.processes import free_port
from tests.private_redis import session_redis_url

REDIS_URL = os.environ.get("DOCQA_TEST_RATELIMIT_REDIS_URL") or session_redis_url(9)
T0 = 1_800_000_000.0  # a multiple of 60: the start of a minute window


class Clock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def client() -> Iterator[redis.Redis]:
    r = redis.Redis.from_url(REDIS_URL, socket_timeout=2, socket_connect_timeout=2)
    try:
        r.ping()
    except redis.RedisError as exc:
        pytest.fail(f"the rate limiter tests need Redis at {REDIS_URL}: {exc}", pytrace=False)
    yield r
    r.close()


@pytest.fixture
def prefix(client: redis.Redis) -> Iterator[str]:
    p = f"docqa-test:rl:{secrets.token_hex(4)}:"
    yield p
    keys = list(client.scan_iter(match=p + "*"))
    if keys:
        client.delete(*keys)


def limiter(client: redis.Redis, prefix: str, clock: Clock | None = None,
            **kw: object) -> RateLimiter:
    return RateLimiter(client, prefix=prefix, clock=clock, **kw)  # type: ignore[arg-type]


MINUTE3 = Limit("requests", 3, 60)


def test_allows_the_limit_then_refuses_with_the_wait(client: redis.Redis, prefix: str) -> None:
    clock = Clock(T0 + 1)
    rl = limiter(client, prefix, clock)
    assert [rl.hit("k1", [MINUTE3]).allowed for _ in range(3)] == [True] * 3
    refused = rl.hit("k1", [MINUTE3])
    assert not refused.allowed and refused.refused_by == MINUTE3
    # 3 counted 1 s into the window: in the next window they weigh 3 * (1 - e/60), which
    # leaves room for one more at e = 20 s, i.e. 79 s from now
    assert refused.retry_after == 79
    clock.now = T0 + 79.9
    assert not rl.hit("k1", [MINUTE3]).allowed
    clock.now = T0 + 1 + refused.retry_after
    assert rl.hit("k1", [MINUTE3]).allowed


def test_refused_requests_are_not_counted(client: redis.Redis, prefix: str) -> None:
    clock = Clock(T0 + 1)
    rl = limiter(client, prefix, clock)
    for _ in range(3):
        rl.hit("k1", [MINUTE3])
    for _ in range(50):  # hammering while refused does not push the wait further out
        assert rl.hit("k1", [MINUTE3]).retry_after == 79
    clock.now = T0 + 80
    assert rl.hit("k1", [MINUTE3]).allowed


def test_peek_counts_nothing_and_says_what_hit_would(client: redis.Redis, prefix: str) -> None:
    """Failed authentications count only when they fail: the API peeks first, then hits
    on a failure (service/api/limits.py)."""
    clock = Clock(T0 + 1)
    rl = limiter(client, prefix, clock)
    assert all(rl.peek("k1", [MINUTE3]).allowed for _ in range(10))
    for _ in range(3):
        assert rl.hit("k1", [MINUTE3]).allowed
    peeked = rl.peek("k1", [MINUTE3])
    assert not peeked.allowed and peeked.retry_after == 79 and peeked.refused_by == MINUTE3
    assert rl.peek("k2", [MINUTE3]).allowed


def test_the_window_slides_over_the_previous_minute(client: redis.Redis, prefix: str) -> None:
    clock = Clock(T0 + 50)
    rl = limiter(client, prefix, clock)
    lim = Limit("requests", 10, 60)
    for _ in range(10):
        assert rl.hit("k", [lim]).allowed
    # a fixed window would allow 10 more at T0 + 60; the sliding one counts 10 * 5/6 of them
    clock.now = T0 + 70
    allowed = sum(rl.hit("k", [lim]).allowed for _ in range(10))
    assert allowed == 1  # 10 * (1 - 10/60) = 8.33, + 1 = 9.33 <= 10; + 2 > 10
    wait = rl.hit("k", [lim])
    # current 1, previous 10: room for one more when 10 * (1 - e/60) <= 8, i.e. e >= 12
    assert not wait.allowed and wait.retry_after == 2
    clock.now = T0 + 72
    assert rl.hit("k", [lim]).allowed


def test_keys_and_limits_are_counted_apart(client: redis.Redis, prefix: str) -> None:
    rl = limiter(client, prefix, Clock(T0 + 1))
    general, ask = Limit("requests", 5, 60), Limit("ask", 2, 60)
    assert rl.hit("k1", [general, ask]).allowed and rl.hit("k1", [general, ask]).allowed
    refused = rl.hit("k1", [general, ask])
    assert not refused.allowed and refused.refused_by == ask
    # the refused question counted nowhere: 3 more general requests fit, not 4
    assert [rl.hit("k1", [general]).allowed for _ in range(4)] == [True, True, True, False]
    assert rl.hit("k2", [general, ask]).allowed  # another key has its own counts
    keys = {k.decode() for k in client.scan_iter(match=prefix + "*")}
    assert keys == {prefix + "{k1}:requests", prefix + "{k1}:ask", prefix + "{k2}:requests",
                    prefix + "{k2}:ask"}
    assert all(0 < client.ttl(k) <= 121 for k in keys)


def test_two_limiters_share_one_count(client: redis.Redis, prefix: str) -> None:
    """Two API processes: separate clients and limiter objects, one count in Redis."""
    other_client = redis.Redis.from_url(REDIS_URL)
    try:
        clock = Clock(T0 + 1)
        a, b = limiter(client, prefix, clock), limiter(other_client, prefix, clock)
        assert [x.hit("k", [MINUTE3]).allowed for x in (a, b, a)] == [True, True, True]
        assert not b.hit("k", [MINUTE3]).allowed and not a.hit("k", [MINUTE3]).allowed
    finally:
        other_client.close()


def test_concurrent_requests_never_exceed_the_limit(client: redis.Redis, prefix: str) -> None:
    limiters = [limiter(redis.Redis.from_url(REDIS_URL), prefix) for _ in range(4)]
    lim = Limit("requests", 25, 60)
    start = threading.Barrier(8)

    def burst(i: int) -> int:
        start.wait()
        return sum(limiters[i % 4].hit("k", [lim]).allowed for _ in range(20))

    with ThreadPoolExecutor(8) as pool:
        assert sum(pool.map(burst, range(8))) == 25  # 160 tries, exactly the limit allowed


def test_redis_clock_and_real_time(client: redis.Redis, prefix: str) -> None:
    rl = limiter(client, prefix)  # no clock given: Redis's TIME
    lim = Limit("requests", 2, 1)
    assert rl.hit("k", [lim]).allowed and rl.hit("k", [lim]).allowed
    refused = rl.hit("k", [lim])
    assert not refused.allowed and 1 <= refused.retry_after <= 2
    time.sleep(refused.retry_after)
    assert rl.hit("k", [lim]).allowed


def test_a_zero_limit_is_off(client: redis.Redis, prefix: str) -> None:
    rl = limiter(client, prefix, Clock())
    assert all(rl.hit("k", [Limit("requests", 0, 60)]).allowed for _ in range(20))
    assert list(client.scan_iter(match=prefix + "*")) == []


def _dead_redis_url() -> str:
    return f"redis://127.0.0.1:{free_port()}/9"  # nothing listens there


def test_fails_open_when_redis_is_down(caplog: pytest.LogCaptureFixture) -> None:
    rl = RateLimiter.from_url(_dead_redis_url(), fail_open=True, backoff_s=30)
    t = time.monotonic()
    first = rl.hit("k", [MINUTE3])
    assert first.allowed and not first.counted
    assert time.monotonic() - t < 1  # refused connections: no retry backoff, no waiting
    assert "Redis unavailable" in caplog.text and "without limits" in caplog.text
    caplog.clear()
    t = time.monotonic()
    assert all(rl.hit("k", [MINUTE3]).allowed for _ in range(100))  # far over the limit
    assert time.monotonic() - t < 0.5 and caplog.text == ""  # backing off: Redis not tried


def test_fails_closed_when_configured() -> None:
    rl = RateLimiter.from_url(_dead_redis_url(), fail_open=False, backoff_s=30)
    for _ in range(2):  # the first try and the back-off both refuse
        with pytest.raises(TransientError) as err:
            rl.hit("k", [MINUTE3])
        assert err.value.status_code == 503 and err.value.retry_after > 0


def test_tries_redis_again_after_the_back_off(caplog: pytest.LogCaptureFixture) -> None:
    rl = RateLimiter.from_url(_dead_redis_url(), fail_open=True, backoff_s=0.2)
    rl.hit("k", [MINUTE3])
    rl.hit("k", [MINUTE3])
    assert caplog.text.count("Redis unavailable") == 1
    time.sleep(0.25)
    rl.hit("k", [MINUTE3])
    assert caplog.text.count("Redis unavailable") == 2


def test_a_request_weighed_by_its_size_counts_its_size(client: redis.Redis,
                                                       prefix: str) -> None:
    """``cost``: 1,000 characters a minute, as /v1/embeddings counts them."""
    clock = Clock(T0 + 1)
    rl = limiter(client, prefix, clock)
    chars = Limit("embedding_chars", 1000, 60)
    assert rl.hit("k", [chars], cost=600).allowed
    assert rl.peek("k", [chars]).allowed  # 600 + 1 fits
    refused = rl.hit("k", [chars], cost=500)  # 600 + 500 > 1000: refused, not counted
    assert not refused.allowed and refused.refused_by == chars
    # next window: 600 * (1 - e/60) + 500 <= 1000 from e = 10 s, i.e. 69 s from now
    assert refused.retry_after == 69
    assert rl.hit("k", [chars], cost=400).allowed  # what was refused is not counted: 1000
    assert not rl.hit("k", [chars], cost=1).allowed
    clock.now = T0 + 1 + refused.retry_after
    assert rl.hit("k", [chars], cost=500).allowed is False  # 1000 counted, not 600: later
    clock.now = T0 + 60 + 30  # 1000 * (1 - 30/60) + 500 = 1000
    assert rl.hit("k", [chars], cost=500).allowed
    with pytest.raises(ValueError):
        rl.hit("k", [chars], cost=0)
