"""Session-wide: a private redis-server for every test that needs Redis (tests/private_redis.py).

Started when this file is loaded, which pytest does before it imports any conftest or test
module below ``tests/`` (their Redis URLs are read at import), and stopped at the end of the
session. ``DOCQA_TEST_REDIS_SERVER`` set by the caller (a server of their own) is used
instead.
"""

from __future__ import annotations

import os

import pytest

from tests.private_redis import URL_ENV, PrivateRedis

_server: PrivateRedis | None = None
if not os.environ.get(URL_ENV):
    _server = PrivateRedis()
    os.environ[URL_ENV] = _server.url


def pytest_unconfigure(config: pytest.Config) -> None:
    global _server
    if _server is not None:
        _server.stop()
        os.environ.pop(URL_ENV, None)
        _server = None
