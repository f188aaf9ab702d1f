"""Change notices (core/changes.py): the registry wrapper publishes after each write a
stream shows, on the document's tenant's channel; the publisher reaches a real Redis (the
test session's own) and never fails a write when Redis is gone."""

from __future__ import annotations

import secrets
from pathlib import Path

import redis

from core.changes import ChangePublisher, NotifyingRepository, channel, tenant_of_channel
from core.domain import DocumentKind, DocumentStatus, Progress
from core.registry import SqliteDocumentRepository
from tests.private_redis import session_redis_url


def _repo(tmp_path: Path) -> tuple[NotifyingRepository, list[tuple[str, str]]]:
    heard: list[tuple[str, str]] = []
    inner = SqliteDocumentRepository(tmp_path / "registry.sqlite3")
    return NotifyingRepository(inner, lambda t, d: heard.append((t, d))), heard


def _create(repo: NotifyingRepository, tenant: str, sha: str) -> str:
    doc, _ = repo.create(tenant=tenant, filename="a.txt", kind=DocumentKind.TEXT,
                         sha256=sha.ljust(64, "0"), size=3, metadata={})
    return doc.id


def test_every_write_a_stream_shows_is_announced_on_the_tenants_channel(tmp_path: Path) -> None:
    repo, heard = _repo(tmp_path)
    a = _create(repo, "acme", "1")
    g = _create(repo, "globex", "2")
    assert heard == [("acme", a), ("globex", g)]
    heard.clear()
    _create(repo, "acme", "1")  # the same bytes: nothing new
    repo.set_status(a, DocumentStatus.PROCESSING)
    repo.set_progress(a, Progress("embedding", 1, 4))
    repo.set_status(a, DocumentStatus.READY, chunks=4, pages=1)
    repo.set_progress(g, Progress("parsing", 0, 0))
    assert heard == [("acme", a)] * 3 + [("globex", g)]
    heard.clear()
    assert repo.enable_redaction(a) and not repo.enable_redaction(g)  # g is not settled
    assert repo.mark_deleting(g) and repo.delete(g)
    assert not repo.delete(g)  # nothing deleted: nothing to announce
    assert heard == [("acme", a), ("globex", g), ("globex", g)]


def test_a_document_never_read_through_the_wrapper_is_looked_up_once(tmp_path: Path) -> None:
    inner = SqliteDocumentRepository(tmp_path / "registry.sqlite3")
    doc, _ = inner.create(tenant="acme", filename="a.txt", kind=DocumentKind.TEXT,
                          sha256="9" * 64, size=3, metadata={})
    heard: list[tuple[str, str]] = []
    repo = NotifyingRepository(inner, lambda t, d: heard.append((t, d)))  # another process
    repo.set_progress(doc.id, Progress("parsing", 0, 0))
    repo.set_progress("no-such-document", Progress("parsing", 0, 0))  # no tenant: no notice
    assert heard == [("acme", doc.id)]
    assert repo.count_by_status("acme") == {"queued": 1}  # the rest passes through


def test_the_publisher_reaches_subscribers_of_the_tenant_only() -> None:
    url = session_redis_url(0)
    tenant, other = f"t-{secrets.token_hex(4)}", f"o-{secrets.token_hex(4)}"
    client = redis.Redis.from_url(url)
    pubsub = client.pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe(channel(tenant))
    try:
        assert pubsub.get_message(timeout=5) is None  # the confirmation, skipped
        publish = ChangePublisher(url)
        publish(other, "not-for-us")
        publish(tenant, "doc-1")
        msg = None
        while msg is None:
            msg = pubsub.get_message(timeout=5)
        assert msg["data"] == b"doc-1" and tenant_of_channel(msg["channel"]) == tenant
    finally:
        pubsub.close()
        client.close()


def test_redis_down_never_fails_the_write_and_pauses_publishing() -> None:
    now = [0.0]
    publish = ChangePublisher("redis://127.0.0.1:1", pause_s=5.0, clock=lambda: now[0])
    calls = []
    real = publish._client.publish
    publish._client.publish = lambda *a: calls.append(a) or real(*a)
    publish("acme", "d1")  # connection refused: logged, not raised
    publish("acme", "d2")  # paused: not even tried
    now[0] = 6.0
    publish("acme", "d3")
    assert [c[1] for c in calls] == ["d1", "d3"]
