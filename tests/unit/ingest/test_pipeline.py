"""PII redaction wired into ingest: the pipeline step (before chunking, per page), the
document record, the upload's opt-in and the tenant setting, and how de-duplication treats
the same bytes with and without redaction (service/documents.py).

Real parsing (sandboxed child process), chunking and SQLite registry; a fake vector store
and the hashing embedder. The real stack is in tests/integration/test_pii_redaction.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import TestClient

from core.domain import DocumentStatus, Page
from core.errors import ConflictError, TransientError
from ingest.embedding import HashEmbedder
from ingest.pii import redact_pages
from ingest.pipeline import ingest_document, stored_file
from service.api.schemas import DocumentOut
from tests.unit.conftest import COUNTS, PII, TEXT, Env, assert_no_pii, make_app


# ---------------------------------------------------------------- the pipeline step


def test_pages_are_redacted_one_by_one_and_offsets_follow_the_redacted_text() -> None:
    sep = "\n\n"
    raw = [f"Mail {PII['EMAIL']} today.", "No personal data here.", f"Call {PII['PHONE']}."]
    pages, offset = [], 0
    for n, text in enumerate(raw, start=1):
        pages.append(Page(n, text, offset))
        offset += len(text) + len(sep)
    out, counts = redact_pages(pages)
    assert counts == {"EMAIL": 1, "PHONE": 1}
    assert [p.number for p in out] == [1, 2, 3]
    assert [p.text for p in out] == ["Mail [EMAIL] today.", raw[1], "Call [PHONE]."]
    full = sep.join(p.text for p in out)
    assert all(full[p.offset:p.offset + len(p.text)] == p.text for p in out)
    assert redact_pages([]) == ([], {})


def test_a_redacted_ingest_stores_only_placeholders_counts_them_and_drops_the_original(
    env: Env,
) -> None:
    doc, created = env.upload(TEXT, redact=True)
    assert created and doc.redact_pii and doc.pii_counts is None
    original = stored_file(env.settings, doc.id)
    assert original.exists()

    done = env.ingest(doc.id)
    assert done.status is DocumentStatus.READY and done.chunks >= 1
    assert done.redact_pii and done.pii_counts == COUNTS
    texts = env.store.texts(doc.id)
    assert_no_pii(texts)
    joined = "\n".join(texts)
    for kind in COUNTS:
        assert f"[{kind}]" in joined
    assert "Anna Berg" in joined  # names are not a detected type
    assert not original.exists()  # no unredacted copy is kept

    # citations index the redacted text: start/end give back the chunk
    chunks = [c for _t, d, c in env.store.chunks.values() if d == doc.id]
    redacted = TEXT.decode().replace(PII["EMAIL"], "[EMAIL]")
    for kind in ("PHONE", "IBAN", "CARD", "SE_PIN", "US_SSN"):
        redacted = redacted.replace(PII[kind], f"[{kind}]")
    assert all(redacted[c.start:c.end] == c.text for c in chunks)

    out = DocumentOut.from_domain(done)
    assert (out.pii.redacted, out.pii.counts) == (True, COUNTS)

    # a redelivered task finds it ready and changes nothing
    assert ingest_document(env.deps, doc.id) == "ready"
    assert env.repo.get(doc.id) == done


def test_without_redaction_the_text_is_stored_as_it_was(env: Env) -> None:
    doc, _ = env.upload(TEXT)
    done = env.ingest(doc.id)
    assert done.status is DocumentStatus.READY and not done.redact_pii and done.pii_counts is None
    joined = "\n".join(env.store.texts(doc.id))
    assert all(value in joined for value in PII.values())
    assert stored_file(env.settings, doc.id).exists()
    out = DocumentOut.from_domain(done)
    assert (out.pii.redacted, out.pii.counts) == (False, None)


def test_a_document_without_personal_data_is_redacted_with_empty_counts(env: Env) -> None:
    doc, _ = env.upload(b"The plant opened in 2014 and employs 10 engineers.\n", redact=True)
    done = env.ingest(doc.id)
    assert done.status is DocumentStatus.READY and done.redact_pii and done.pii_counts == {}
    assert DocumentOut.from_domain(done).pii.counts == {}


def test_the_worker_applies_a_forced_tenant_even_if_the_record_does_not_say_so(
    tmp_path: Path,
) -> None:
    api = Env(tmp_path)  # an API process configured without the tenant setting
    doc, _ = api.upload(TEXT, tenant="globex")
    assert not doc.redact_pii
    worker = Env(tmp_path, tenants="globex")
    worker.store = api.store
    worker.deps.store = api.store  # type: ignore[assignment]
    done = worker.ingest(doc.id)
    assert done.redact_pii and done.pii_counts == COUNTS  # recorded by the worker
    assert_no_pii(api.store.texts(doc.id))


def test_a_redacted_document_that_fails_to_parse_keeps_no_original(env: Env) -> None:
    doc, _ = env.upload(b"   \n\n   \n", redact=True)
    done = env.ingest(doc.id)
    assert done.status is DocumentStatus.FAILED and done.error
    assert not stored_file(env.settings, doc.id).exists()
    # the same bytes again: the upload brings the file back for the retry
    again, created = env.upload(b"   \n\n   \n")
    assert created and again.id == doc.id and again.status is DocumentStatus.QUEUED
    assert stored_file(env.settings, doc.id).exists() and env.queue.enqueued[-1] == doc.id


def test_reingest_after_the_original_was_dropped_fails_cleanly_without_a_partial_index(
    env: Env,
) -> None:
    doc, _ = env.upload(TEXT, redact=True)
    env.ingest(doc.id)
    env.store.chunks.pop(next(iter(env.store.chunk_ids("acme", doc.id))))  # a chunk was lost
    done = env.ingest(doc.id)  # e.g. a redelivered task: the count no longer matches
    assert done.status is DocumentStatus.FAILED
    assert done.error is not None and "upload it again" in done.error
    assert env.store.chunk_ids("acme", doc.id) == []
    # uploading the bytes again ingests them again, redacted
    again, created = env.upload(TEXT)
    assert created and again.id == doc.id and again.redact_pii
    done = env.ingest(doc.id)
    assert done.status is DocumentStatus.READY and done.pii_counts == COUNTS
    assert_no_pii(env.store.texts(doc.id))


def test_an_unredacted_run_never_finishes_once_redaction_was_turned_on(env: Env) -> None:
    doc, _ = env.upload(TEXT)
    real_upsert = env.store.upsert

    def upsert_then_flip(*args: Any, **kwargs: Any) -> None:
        real_upsert(*args, **kwargs)
        with env.repo._connect() as db:  # what enable_redaction does, mid-run
            db.execute("UPDATE documents SET redact_pii=1 WHERE id=?", (doc.id,))

    env.store.upsert = upsert_then_flip  # type: ignore[method-assign]
    with pytest.raises(TransientError, match="redaction"):
        ingest_document(env.deps, doc.id)
    assert env.repo.get(doc.id).status is DocumentStatus.PROCESSING  # type: ignore[union-attr]
    env.store.upsert = real_upsert  # type: ignore[method-assign]
    done = env.ingest(doc.id)  # the retry runs redacted and cleans the unredacted chunks up
    assert done.status is DocumentStatus.READY and done.pii_counts == COUNTS
    assert_no_pii(env.store.texts(doc.id))


# ---------------------------------------------------------------- opt-in and de-duplication


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


# ---------------------------------------------------------------- the HTTP edge


@pytest.fixture
def http(tmp_path: Path) -> Iterator[tuple[TestClient[Any], Env]]:
    from service.answer import AnswerPipeline

    env = Env(tmp_path, "acme:unit-key-acme-0123456789,globex:unit-key-globex-0123456789",
              tenants="globex")
    app, _ = make_app(settings=env.settings, repo=env.repo, store=env.store,
                      documents=env.service,
                      answers=AnswerPipeline(env.settings, HashEmbedder(), env.store, None,  # type: ignore[arg-type]
                                             model=False))
    with TestClient(app) as client:
        yield client, env


def _post(client: TestClient[Any], tenant: str, data: bytes, form: dict[str, str]) -> Any:
    return client.post("/v1/documents", files={"file": ("r.txt", data, "text/plain")}, data=form,
                       headers={"Authorization": f"Bearer unit-key-{tenant}-0123456789"})


def test_the_form_field_and_the_tenant_setting_over_http(
    http: tuple[TestClient[Any], Env],
) -> None:
    client, env = http
    resp = _post(client, "acme", TEXT, {"redact_pii": "true"})
    assert resp.status_code == 202 and resp.json()["pii_redacted"] is True
    doc_id = resp.json()["id"]
    env.ingest(doc_id)
    auth = {"Authorization": "Bearer unit-key-acme-0123456789"}
    got = client.get(f"/v1/documents/{doc_id}", headers=auth).json()
    assert got["pii"] == {"redacted": True, "counts": COUNTS}
    listed = client.get("/v1/documents", headers=auth).json()["items"]
    assert [d["pii"] for d in listed] == [{"redacted": True, "counts": COUNTS}]

    plain = _post(client, "acme", b"plain text, no personal data", {})
    assert plain.status_code == 202 and plain.json()["pii_redacted"] is False
    got = client.get(f"/v1/documents/{plain.json()['id']}", headers=auth).json()
    assert got["pii"] == {"redacted": False, "counts": None}

    off = _post(client, "acme", b"another file", {"redact_pii": "false"})
    assert off.status_code == 202 and off.json()["pii_redacted"] is False
    forced = _post(client, "globex", TEXT, {"redact_pii": "false"})
    assert forced.status_code == 202 and forced.json()["pii_redacted"] is True

    bad = _post(client, "acme", b"x", {"redact_pii": "maybe"})
    assert bad.status_code == 400 and "redact_pii" in bad.text

    # same bytes, redaction asked for while the unredacted ingest is queued: 409
    dup = _post(client, "acme", b"another file", {"redact_pii": "true"})
    assert dup.status_code == 409 and dup.headers["content-type"].startswith(
        "application/problem+json")
