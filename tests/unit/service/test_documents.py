"""The document service (service/documents.py) and PII redaction: the upload's opt-in, the
tenant setting, and how de-duplication treats the same bytes with and without redaction.

Real parsing (sandboxed child process), chunking and SQLite registry; a fake vector store
and the hashing embedder (tests/unit/conftest.py: Env)."""

from __future__ import annotations

import json
import secrets
from pathlib import Path

import pytest
import redis

from core.domain import DocumentStatus
from core.errors import ConflictError
from core.settings import Settings
from core.tasks import INGEST_QUEUE
from ingest.originals import stored_file
from service.documents import TaskQueue
from tests.private_redis import session_redis_url
from tests.unit.conftest import COUNTS, PII, TEXT, Env, RecordingQueue, assert_no_pii


def test_a_forced_tenant_is_redacted_whatever_the_upload_asks(tmp_path: Path) -> None:
    env = Env(tmp_path, tenants="globex, initech")
    forced, _ = env.upload(TEXT, tenant="globex", redact=False)
    assert forced.redact_pii
    free, _ = env.upload(TEXT, tenant="acme")
    assert not free.redact_pii
    asked, _ = env.upload(b"other bytes", tenant="acme", redact=True)
    assert asked.redact_pii
    everyone = Env(tmp_path / "all", redact_all=True)
    assert everyone.upload(TEXT, tenant="anyone")[0].redact_pii


def test_redacted_upload_of_bytes_stored_unredacted_redacts_that_document(env: Env) -> None:
    first, _ = env.upload(TEXT)
    env.ingest(first.id)
    assert any(PII["EMAIL"] in t for t in env.store.texts(first.id))

    again, created = env.upload(TEXT, name="copy.txt", redact=True)
    assert created and again.id == first.id  # one document per (tenant, bytes)
    assert again.redact_pii and again.pii_counts is None
    assert again.status is DocumentStatus.QUEUED and env.queue.enqueued[-1] == first.id
    assert env.store.chunk_ids("acme", first.id) == []  # unredacted chunks gone at once
    done = env.ingest(first.id)
    assert done.status is DocumentStatus.READY and done.pii_counts == COUNTS
    assert_no_pii(env.store.texts(first.id))
    assert not stored_file(env.settings, first.id).exists()


def test_unredacted_upload_of_bytes_stored_redacted_gets_the_redacted_document(env: Env) -> None:
    first, _ = env.upload(TEXT, redact=True)
    env.ingest(first.id)
    again, created = env.upload(TEXT)
    assert not created and again.id == first.id and again.redact_pii
    assert not stored_file(env.settings, first.id).exists()  # the original is not brought back
    assert len(env.queue.enqueued) == 1


def test_redaction_cannot_be_turned_on_while_the_first_ingest_is_in_flight(env: Env) -> None:
    first, _ = env.upload(TEXT)
    with pytest.raises(ConflictError, match="being ingested"):
        env.upload(TEXT, redact=True)
    doc = env.repo.get(first.id)
    assert doc is not None and not doc.redact_pii and env.queue.enqueued == [first.id]
    env.ingest(first.id)
    again, _ = env.upload(TEXT, redact=True)  # once it is ready, it can
    assert again.id == first.id and again.redact_pii


def test_a_failed_unredacted_document_is_retried_redacted(env: Env) -> None:
    empty = b"  \n\n  \n"
    first, _ = env.upload(empty)
    assert env.ingest(first.id).status is DocumentStatus.FAILED
    again, created = env.upload(empty, redact=True)
    assert created and again.id == first.id and again.redact_pii
    assert again.status is DocumentStatus.QUEUED and stored_file(env.settings, first.id).exists()


# ---------------------------------------------------------------- a fair share of the queue


def _drain(settings: Settings) -> list[str]:
    """The ingest jobs in the order a worker takes them off the real broker (kombu's Redis
    transport, with the priority levels core/tasks.py configures)."""
    queue = TaskQueue(settings)
    order: list[str] = []
    with queue.app.connection_for_read() as conn:
        channel = conn.default_channel
        while (msg := channel.basic_get(INGEST_QUEUE, no_ack=True)) is not None:
            order.append(json.loads(msg.body)[0][0])
    return order


def test_each_tenant_gets_a_fair_share_of_the_ingest_queue(tmp_path: Path) -> None:
    """A tenant's n-th waiting document goes in priority level n: another tenant's first
    upload is taken before the first tenant's backlog, not after it (issue 15, point 4)."""
    env = Env(tmp_path)
    env.settings.redis_url = session_redis_url(24)
    client = redis.Redis.from_url(env.settings.redis_url)
    client.flushdb()  # this test's own database
    env.service.queue = TaskQueue(env.settings)
    try:
        backlog = [env.upload(f"acme report {i}".encode(), tenant="acme")[0].id
                   for i in range(3)]
        other = env.upload(b"globex memo", tenant="globex")[0].id
        later = env.upload(b"globex memo two", tenant="globex")[0].id
        assert _drain(env.settings) == [backlog[0], other, backlog[1], later, backlog[2]]

        # ready or failed documents no longer count: only what still waits or runs does
        env.repo.set_status(backlog[0], DocumentStatus.READY, chunks=1, pages=1)
        env.repo.set_status(backlog[1], DocumentStatus.PROCESSING)
        env.repo.set_status(other, DocumentStatus.FAILED, error="x")
        queued = [env.upload(f"more {i}".encode(), tenant=t)[0].id
                  for i, t in enumerate(["acme", "globex", "initech"])]
        # acme has 2 ahead (one running, one waiting), globex 1, initech none
        assert _drain(env.settings) == [queued[2], queued[1], queued[0]]
        # acme now has 3 waiting or running: 12 more go in levels 3 to 9, the last ones
        # all in 9, in order; initech's second document (level 1) is taken before them
        deep = [env.upload(secrets.token_bytes(8).hex().encode(), tenant="acme")[0].id
                for _ in range(12)]
        second = env.upload(b"initech again", tenant="initech")[0].id
        assert _drain(env.settings) == [second, *deep]
    finally:
        client.flushdb()
        client.close()


def test_priorities_follow_the_tenants_backlog(env: Env) -> None:
    env.service.queue = RecordingQueue()
    for i in range(11):
        env.upload(f"acme {i}".encode(), tenant="acme")
    env.upload(b"globex", tenant="globex")
    assert env.service.queue.priorities == [*range(10), 9, 0]
