"""Per-key rate limits (service/api/limits.py) through the real Litestar app (its guards,
handlers and error mapping), on a SQLite registry and a real Redis (database 9, own key
prefix, cleaned up). The routes used here only touch the registry (``/v1/ask`` with an empty
``document_ids`` filter answers ``not_found`` before retrieval)."""

from __future__ import annotations

import gc
import hashlib
import os
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
import uvicorn
from litestar.testing import TestClient

from core.domain import DocumentKind, DocumentStatus
from core.errors import RateLimitedError
from core.keys import create_key
from core.ratelimit import RateLimiter
from core.registry import SqliteDocumentRepository
from core.settings import Settings
from ingest.embedding import HashEmbedder
from service.answer import AnswerPipeline
from service.api.limits import StreamSlots
from service.cli.processes import free_port
from service.documents import DocumentService
from tests.private_redis import session_redis_url
from tests.unit.conftest import FakeStore, RecordingQueue, bearer, is_problem
from tests.unit.conftest import make_app as shared_make_app

STATIC = "static-acme-key-0123456789"
# the shared app (tests/unit/conftest.py) with this file's static key
make_app = partial(shared_make_app, api_keys=f"acme:{STATIC}")
REDIS_URL = os.environ.get("DOCQA_TEST_RATELIMIT_REDIS_URL") or session_redis_url(9)


@pytest.fixture
def prefix() -> Iterator[str]:
    p = f"docqa-test:api:{secrets.token_hex(4)}:"
    yield p
    r = redis.Redis.from_url(REDIS_URL)
    keys = list(r.scan_iter(match=p + "*"))
    if keys:
        r.delete(*keys)
    r.close()


def limiter(prefix: str, url: str = REDIS_URL, **kw: Any) -> RateLimiter:
    return RateLimiter.from_url(url, prefix=prefix, **kw)


def test_429_with_retry_after_per_key(tmp_path: Path, prefix: str) -> None:
    app, repo = make_app(tmp_path, limiter=limiter(prefix),
                         rate_limit={"requests_per_minute": 3, "ask_per_minute": 2})
    key, other = create_key(repo, "acme"), create_key(repo, "globex")
    with TestClient(app) as client:
        assert [client.get("/v1/documents", headers=bearer(key)).status_code
                for _ in range(3)] == [200, 200, 200]
        limited = client.get("/v1/documents", headers=bearer(key))
        assert is_problem(limited, 429), limited.text
        assert 1 <= int(limited.headers["retry-after"]) <= 120
        assert "3 requests per 60 s" in limited.json()["detail"]
        assert client.get("/v1/documents", headers=bearer(other)).status_code == 200
        assert client.get("/v1/documents", headers=bearer(STATIC)).status_code == 200
        for path in ("/healthz", "/schema/openapi.json"):  # never limited
            assert all(client.get(path).status_code == 200 for _ in range(5))
        assert is_problem(client.get("/v1/documents", headers=bearer("nope")), 401)


def test_ask_has_its_own_lower_limit(tmp_path: Path, prefix: str) -> None:
    app, repo = make_app(tmp_path, limiter=limiter(prefix),
                         rate_limit={"requests_per_minute": 10, "ask_per_minute": 2})
    key = create_key(repo, "acme")
    question = {"question": "anything?", "filters": {"document_ids": []}}
    with TestClient(app) as client:
        for _ in range(2):
            ok = client.post("/v1/ask", headers=bearer(key), json=question)
            assert ok.status_code == 200 and ok.json()["status"] == "not_found", ok.text
        limited = client.post("/v1/ask", headers=bearer(key), json=question)
        assert is_problem(limited, 429) and int(limited.headers["retry-after"]) >= 1
        assert "2 questions per 60 s" in limited.json()["detail"]
        # other routes still have room: 2 questions + 8 requests = 10; the refused one is free
        assert [client.get("/v1/documents", headers=bearer(key)).status_code
                for _ in range(9)] == [200] * 8 + [429]


def test_two_apps_share_the_count(tmp_path: Path, prefix: str) -> None:
    limits = {"requests_per_minute": 4}
    app_a, repo = make_app(tmp_path, limiter=limiter(prefix), rate_limit=limits)
    app_b, _ = make_app(tmp_path, limiter=limiter(prefix), rate_limit=limits)
    key = create_key(repo, "acme")
    with TestClient(app_a) as a, TestClient(app_b) as b:
        codes = [c.get("/v1/documents", headers=bearer(key)).status_code
                 for c in (a, b, a, b, a, b)]
    assert codes == [200, 200, 200, 200, 429, 429]


def test_redis_down_fails_open_by_default(tmp_path: Path) -> None:
    dead = f"redis://127.0.0.1:{free_port()}/9"
    app, repo = make_app(tmp_path, limiter=limiter("p:", dead),
                         rate_limit={"requests_per_minute": 1})
    key = create_key(repo, "acme")
    with TestClient(app) as client:
        assert [client.get("/v1/documents", headers=bearer(key)).status_code
                for _ in range(5)] == [200] * 5


def test_redis_down_fails_closed_when_configured(tmp_path: Path) -> None:
    dead = f"redis://127.0.0.1:{free_port()}/9"
    app, repo = make_app(tmp_path, limiter=limiter("p:", dead, fail_open=False),
                         rate_limit={"requests_per_minute": 1, "fail_open": False})
    key = create_key(repo, "acme")
    with TestClient(app) as client:
        resp = client.get("/v1/documents", headers=bearer(key))
        assert is_problem(resp, 503) and int(resp.headers["retry-after"]) > 0
        assert client.get("/healthz").status_code == 200


# ---------------------------------------------------------------- per client address


def from_address(app: Any) -> Any:
    """The app with the client address taken from the test's ``X-Test-Client`` header (the
    test client always says ``testclient``), as uvicorn would report different peers."""

    async def asgi(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] in ("http", "websocket"):
            given = dict(scope["headers"]).get(b"x-test-client", b"testclient").decode()
            scope = {**scope, "client": (given, 50000)}
        await app(scope, receive, send)

    return asgi


def test_refused_keys_throttle_their_address_even_for_a_valid_key(
        tmp_path: Path, prefix: str) -> None:
    """Keys are guessed by trying them: past 3 refused keys a minute the address gets 429
    with Retry-After for everything, so a right guess looks like a wrong one; another
    address is not affected, and a key that is merely missing counts nothing (issue 15,
    point 7)."""
    app, repo = make_app(tmp_path, limiter=limiter(prefix),
                         rate_limit={"auth_failures_per_minute": 3, "requests_per_minute": 0})
    key = create_key(repo, "acme")
    attacker, user = {"X-Test-Client": "203.0.113.7"}, {"X-Test-Client": "198.51.100.2"}
    with TestClient(from_address(app)) as client:
        for _ in range(5):  # no key at all: told to send one, never throttled for it
            assert is_problem(client.get("/v1/documents", headers=attacker), 401)
        for i in range(3):
            guess = client.get("/v1/documents", headers={**attacker, **bearer(f"guess-{i}")})
            assert is_problem(guess, 401)
        for headers in (bearer("guess-3"), bearer(key), bearer(STATIC)):
            refused = client.get("/v1/documents", headers={**attacker, **headers})
            assert is_problem(refused, 429), refused.text
            assert 1 <= int(refused.headers["retry-after"]) <= 120
            assert "refused keys from this address" in refused.json()["detail"]
        assert client.get("/v1/documents", headers={**user, **bearer(key)}).status_code == 200
        assert is_problem(client.get("/v1/documents", headers={**user, **bearer("x")}), 401)


def test_admin_routes_are_limited_per_address_and_count_refused_admin_keys(
        tmp_path: Path, prefix: str) -> None:
    admin = "admin-key-" + "a" * 30
    app, _ = make_app(tmp_path, limiter=limiter(prefix), admin_key=admin,
                      rate_limit={"admin_per_minute": 4, "auth_failures_per_minute": 2})
    one, two, three = ({"X-Test-Client": f"192.0.2.{i}"} for i in (1, 2, 3))
    with TestClient(from_address(app)) as client:
        codes = [client.get("/admin/keys", headers={**one, **bearer(admin)}).status_code
                 for _ in range(5)]
        assert codes == [200, 200, 200, 200, 429]
        limited = client.get("/admin/keys", headers={**one, **bearer(admin)})
        assert is_problem(limited, 429) and int(limited.headers["retry-after"]) >= 1
        assert "4 per 60 s per address" in limited.json()["detail"]
        assert client.get("/admin/keys", headers={**two, **bearer(admin)}).status_code == 200
        # wrong admin keys: 401 twice, then the address is refused, the right key included
        for _ in range(2):
            assert is_problem(client.get("/admin/keys", headers={**three, **bearer("no")}), 401)
        assert is_problem(client.get("/admin/keys", headers={**three, **bearer(admin)}), 429)


# ---------------------------------------------------------------- open event streams


def test_stream_slots_cap_per_key_and_per_process() -> None:
    slots = StreamSlots(per_key=2, per_process=3)
    a1, a2 = slots.acquire("a"), slots.acquire("a")
    with pytest.raises(RateLimitedError) as refused:
        slots.acquire("a")
    assert refused.value.retry_after >= 1 and "2 event streams open" in refused.value.detail
    b1 = slots.acquire("b")  # another key still gets one, up to the process's cap
    with pytest.raises(RateLimitedError) as full:
        slots.acquire("c")
    assert "this server has 3 event streams open" in full.value.detail
    a1.release()
    a1.release()  # twice: counted once
    assert (slots.open_for("a"), slots.total) == (1, 2)
    a3 = slots.acquire("a")
    del a2  # never released: collected, it frees its place
    gc.collect()
    assert (slots.open_for("a"), slots.total) == (1, 2)
    for s in (a3, b1):
        s.release()
    assert slots.total == 0 and StreamSlots(0, 0).acquire("a") is not None  # 0: no cap


class _Server:
    """The real app served by uvicorn in a thread (streams need a real client that can go
    away)."""

    def __init__(self, app: Any) -> None:
        self.port = free_port()
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port,
                                                    log_config=None))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> _Server:
        self.thread.start()
        wait_until(lambda: self.server.started)
        return self

    def __exit__(self, *_: Any) -> None:
        self.server.should_exit = True
        self.thread.join(10)

    def events(self, stack: ExitStack, key: str, doc_id: str, batch: bool = False
               ) -> httpx.Response:
        """Open the document's event stream (``batch``: the many-documents stream, for it
        alone); a 200 has sent its first event."""
        client = stack.enter_context(httpx.Client(trust_env=False, timeout=30))
        path = f"events?ids={doc_id}" if batch else f"{doc_id}/events"
        resp = stack.enter_context(client.stream(
            "GET", f"http://127.0.0.1:{self.port}/v1/documents/{path}", headers=bearer(key)))
        if resp.status_code == 200:
            lines = resp.iter_lines()  # kept: dropping it would close the connection
            stack.callback(lines.close)
            assert next(lines) == "event: progress"
        else:
            resp.read()
        return resp


def wait_until(ready: Callable[[], bool], timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not ready():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.05)


def _processing(repo: SqliteDocumentRepository, tenant: str, name: str) -> str:
    doc, _ = repo.create(tenant=tenant, filename=name, kind=DocumentKind.TEXT,
                         sha256=hashlib.sha256(name.encode()).hexdigest(), size=1, metadata={})
    repo.set_status(doc.id, DocumentStatus.PROCESSING)
    return doc.id


def test_event_streams_are_capped_and_give_their_slot_back(tmp_path: Path) -> None:
    """Past a key's open streams, and past the process's, 429 with Retry-After; a client
    that goes away and a stream that ends (its document ready) free their slots."""
    settings = Settings(data_dir=tmp_path, api_keys=f"acme:{STATIC}",
                        rate_limit={"streams_per_key": 2, "streams_per_process": 3})
    repo = SqliteDocumentRepository(settings.registry_path)
    docs = DocumentService(settings, repo, FakeStore(), RecordingQueue())  # type: ignore[arg-type]
    app, _ = make_app(settings=settings, repo=repo, documents=docs)
    slots = app.state.components.streams
    other = create_key(repo, "globex")
    mine, theirs = _processing(repo, "acme", "a.txt"), _processing(repo, "globex", "b.txt")
    with _Server(app) as server, ExitStack() as outer:
        first = ExitStack()
        assert server.events(first, STATIC, mine).status_code == 200
        with ExitStack() as second:
            assert server.events(second, STATIC, mine).status_code == 200
            refused = server.events(outer, STATIC, mine)
            assert is_problem(server.events(outer, STATIC, mine, batch=True), 429)
            assert is_problem(refused, 429) and int(refused.headers["retry-after"]) >= 1
            assert "event streams open" in refused.json()["detail"]
            assert server.events(outer, other, theirs).status_code == 200  # another key
            full = server.events(outer, other, theirs)  # 3 open: the process's cap
            assert is_problem(full, 429) and "this server" in full.json()["detail"]
        wait_until(lambda: slots.total == 2)  # the client that left gave its slot back
        assert server.events(outer, STATIC, mine, batch=True).status_code == 200
        first.close()
        wait_until(lambda: slots.total == 2)
        repo.set_status(theirs, DocumentStatus.READY, chunks=1, pages=1)  # its stream ends
        wait_until(lambda: slots.total == 1)
        # acme's one stream is open: one more, then its cap again
        assert server.events(outer, STATIC, mine).status_code == 200
        assert is_problem(server.events(outer, STATIC, mine), 429)


# ---------------------------------------------------------------- embeddings by input size


def test_embeddings_count_their_characters(tmp_path: Path, prefix: str) -> None:
    """10,000 characters a minute: four requests of 2,000 pass, a fifth of 3,000 waits
    (429, Retry-After), another key has its own budget, and one request larger than the
    whole budget is 413, whatever is left."""
    settings = Settings(data_dir=tmp_path, api_keys=f"acme:{STATIC}", rate_limit={
        "embedding_chars_per_minute": 10_000, "requests_per_minute": 600})
    emb = HashEmbedder()
    app, repo = make_app(settings=settings, limiter=limiter(prefix),
                         answers=AnswerPipeline(settings, emb, FakeStore(), None, model=False))
    other = create_key(repo, "globex")

    def embed(key: str, *sizes: int) -> Any:
        return client.post("/v1/embeddings", headers=bearer(key), json={
            "model": "all-MiniLM-L6-v2", "input": ["w" * n for n in sizes]})

    with TestClient(app) as client:
        assert [embed(STATIC, 1000, 1000).status_code for _ in range(4)] == [200] * 4
        waits = embed(STATIC, 1500, 1500)
        assert is_problem(waits, 429), waits.text
        assert int(waits.headers["retry-after"]) >= 1
        assert "10000 characters per 60 s" in waits.json()["detail"]
        assert waits.json()["error"]["type"] == "rate_limit_error"
        assert embed(STATIC, 1000, 1000).status_code == 200  # the refused one was not counted
        assert embed(other, 1500, 1500).status_code == 200
        whole = embed(other, 6000, 5000)
        assert is_problem(whole, 413), whole.text
        assert "11000 characters" in whole.json()["detail"]
        # a short request is still only a request: the key's general limit is not touched
        assert client.get("/v1/documents", headers=bearer(STATIC)).status_code == 200
