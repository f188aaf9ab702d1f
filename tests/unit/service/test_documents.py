"""The document service (service/documents.py) and PII redaction: the upload's opt-in, the
tenant setting, and how de-duplication treats the same bytes with and without redaction.

Real parsing (sandboxed child process), chunking and SQLite registry; a fake vector store
and the hashing embedder (tests/unit/conftest.py: Env)."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.domain import DocumentStatus
from core.errors import ConflictError
from ingest.originals import stored_file
from tests.unit.conftest import COUNTS, PII, TEXT, Env, assert_no_pii


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
