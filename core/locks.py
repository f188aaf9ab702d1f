"""Locks shared by every process (API and workers) through Redis."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from core.errors import StoreUnavailableError

WRITE_LOCK_TTL_S = 120  # one upsert batch, or compact's catch-up and swap
WRITE_LOCK_WAIT_S = 300


def redis_collection_lock(redis_url: str, ttl_s: float = WRITE_LOCK_TTL_S,
                          wait_s: float = WRITE_LOCK_WAIT_S) -> Callable[[str], Any]:
    """``lock(collection)``: the lock ``ChromaStore`` takes around every write to a tenant's
    collection and ``ChromaStore.compact`` around its swap (ingest/store.py)."""
    import redis  # redis-py (~0.25 s to import) loads only where a lock is made

    client = redis.Redis.from_url(redis_url, socket_timeout=10, socket_connect_timeout=5)

    @contextmanager
    def lock(collection: str) -> Iterator[None]:
        try:
            held = client.lock(f"docqa:lock:write:{collection}", timeout=ttl_s,
                               blocking_timeout=wait_s)
            if not held.acquire():
                raise StoreUnavailableError(
                    f"collection {collection} stayed locked for {wait_s:g} s; will retry")
        except redis.RedisError as exc:
            raise StoreUnavailableError(f"Redis (locks) unavailable: {exc}") from exc
        try:
            yield
        finally:
            try:
                held.release()
            except redis.exceptions.LockError:  # expired: the holder took longer than ttl_s
                pass
            except redis.RedisError:
                pass

    return lock
