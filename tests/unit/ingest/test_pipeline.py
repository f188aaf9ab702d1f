"""The ingest job (ingest/pipeline.py) with PII redaction: only placeholders reach the store,
counts go on the document record, the original is dropped; a forced tenant, a failed
parse, a lost chunk and redaction turned on mid-run.

Real parsing (sandboxed child process), chunking and SQLite registry; a fake vector store
and the hashing embedder. The real stack is in tests/integration/test_pii_redaction.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from core.domain import DocumentStatus
from core.errors import TransientError
from ingest.embedding import HashEmbedder
from ingest.originals import stored_file
from ingest.pipeline import ingest_document
from service.api.schemas import DocumentOut
from tests.unit.conftest import COUNTS, PII, TEXT, Env, assert_no_pii


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
    assert "Anna Berg" not in joined  # names are a detected type (pii.names, on by default)
    assert not original.exists()  # no unredacted copy is kept

    # citations index the redacted text: start/end give back the chunk
    chunks = [c for _t, d, c in env.store.chunks.values() if d == doc.id]
    redacted = TEXT.decode().replace(PII["EMAIL"], "[EMAIL]")
    for kind in ("PHONE", "IBAN", "CARD", "SE_PIN", "US_SSN", "PERSON"):
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






# ---------------------------------------------------------------- evidence units


PRICING_MD = (b"# Price list\n\n## Pricing\nThe fee is:\n- Basic plan: EUR 12 per month\n"
              b"- Pro plan: EUR 30 per month\n\n| Plan | Notice |\n|---|---|\n"
              b"| Basic | 30 days |\n\nPrices include VAT.\n")


def test_ingest_stores_each_chunks_units_with_their_context(env: Env) -> None:
    doc, _ = env.upload(PRICING_MD, name="pricing.md")
    assert env.ingest(doc.id).status is DocumentStatus.READY
    (cid,) = env.store.chunk_ids("acme", doc.id)
    hit = env.store._hit(cid, HashEmbedder().embed(["x"])[0])
    decoded = hit.units
    assert decoded is not None
    units, vectors = decoded
    assert len(vectors) == len(units)
    got = [(u.kind.value, hit.text[u.start:u.end], u.context.describe()) for u in units]
    assert got == [
        ("sentence", "The fee is:", "Price list > Pricing"),
        ("item", "Basic plan: EUR 12 per month", "Price list > Pricing · The fee is:"),
        ("item", "Pro plan: EUR 30 per month", "Price list > Pricing · The fee is:"),
        ("row", "Plan: Basic | Notice: 30 days", "Price list > Pricing · Plan | Notice"),
        ("sentence", "Prices include VAT.", "Price list > Pricing"),
    ]
    # the heading is in the chunk's text but in no unit
    assert "Pricing" in hit.text and not any("Pricing" in q for _k, q, _c in got)


# ---------------------------------------------------------------- a DELETE during the ingest


LONG = " ".join(f"Clause {i} of the supplier contract sets the delivery fee to {i} euro."
                for i in range(400)).encode()


class DeletingEnv:
    """``env`` whose ingest embeds two chunks a batch and records the erasures it queues."""

    def __init__(self, env: Env) -> None:
        env.settings.models.embedding_batch_size = 2
        self.env = env
        self.erasures: list[tuple[str, str]] = []
        env.deps.erase_later = lambda tenant, doc_id: self.erasures.append((tenant, doc_id))


def test_a_delete_between_batches_stops_the_ingest_and_leaves_no_chunk(env: Env) -> None:
    de = DeletingEnv(env)
    doc, _ = env.upload(LONG)
    real_embed, calls = env.deps.embedder.embed, []

    def embed_and_delete(texts: Any) -> Any:
        calls.append(1)
        if len(calls) == 5:  # mid-embed: some batches are stored already
            assert env.store.count_document("acme", doc.id) > 0
            env.service.delete("acme", doc.id)  # the API's DELETE, on "another process"
        return real_embed(texts)

    env.deps.embedder.embed = embed_and_delete  # type: ignore[method-assign]
    assert ingest_document(env.deps, doc.id) == "deleted"
    assert env.store.count_document("acme", doc.id) == 0
    assert env.repo.get(doc.id) is None
    assert de.erasures == [("acme", doc.id)]  # it had written: the eraser runs again


def test_a_delete_landing_inside_an_upsert_is_cleaned_up_and_erased_again(env: Env) -> None:
    """The DELETE answers between the run's check and its write: the write lands after the
    DELETE's own clean-up, so the run's next check removes it and queues another erasure."""
    de = DeletingEnv(env)
    doc, _ = env.upload(LONG)
    real_upsert, calls = env.store.upsert, []

    def delete_then_upsert(*args: Any, **kwargs: Any) -> None:
        calls.append(1)
        if len(calls) == 2:
            env.service.delete("acme", doc.id)
        real_upsert(*args, **kwargs)

    env.store.upsert = delete_then_upsert  # type: ignore[method-assign]
    assert ingest_document(env.deps, doc.id) == "deleted"
    assert len(calls) == 2  # no batch after the one that landed late
    assert env.store.count_document("acme", doc.id) == 0
    assert de.erasures == [("acme", doc.id)]


def test_a_begun_delete_stops_the_ingest_before_it_writes(env: Env) -> None:
    """A DELETE that began (the mark) and failed before it removed the row: no ingest
    writes for the document, nothing needs erasing again, and the reconciler leaves it."""
    de = DeletingEnv(env)
    doc, _ = env.upload(LONG)
    real_embed = env.deps.embedder.embed

    def embed_and_mark(texts: Any) -> Any:
        env.repo.mark_deleting(doc.id)
        return real_embed(texts)

    env.deps.embedder.embed = embed_and_mark  # type: ignore[method-assign]
    assert ingest_document(env.deps, doc.id) == "deleted"
    assert env.store.count_document("acme", doc.id) == 0 and de.erasures == []
    assert ingest_document(env.deps, doc.id) == "deleted"  # a redelivery does nothing
    assert env.repo.stale_document_ids(updated_before=2e9) == []
    assert env.repo.find_ids("acme", ids=[doc.id]) == []


def test_a_reingest_gives_the_same_keyed_chunk_ids(env: Env) -> None:
    """Chunk ids are HMACs under the document's key (core/domain.py), deterministic for
    the document: ingesting it again upserts the same ids and leaves no stale chunk."""
    import hashlib

    doc, _ = env.upload(LONG)
    assert env.ingest(doc.id).status is DocumentStatus.READY
    first = sorted(env.store.chunk_ids("acme", doc.id))
    env.repo.set_status(doc.id, DocumentStatus.QUEUED)  # as a retry or re-queue does
    assert env.ingest(doc.id).status is DocumentStatus.READY
    assert sorted(env.store.chunk_ids("acme", doc.id)) == first
    chunk = env.store.chunks[first[0]][2]
    assert first[0].rsplit(":", 1)[1] != hashlib.sha256(chunk.text.encode()).hexdigest()[:16]


# ---------------------------------------------------------------- writes per document


class ProgressLog:
    """The stages the ingest writes to the registry, in order."""

    def __init__(self, env: Env) -> None:
        self.stages: list[str] = []
        real_status, real_progress = env.repo.set_status, env.repo.set_progress

        def set_status(doc_id: str, status: DocumentStatus, **kw: Any) -> None:
            self.stages.append(f"status:{status.value}")
            real_status(doc_id, status, **kw)

        def set_progress(doc_id: str, progress: Any) -> None:
            self.stages.append(progress.stage)
            real_progress(doc_id, progress)

        env.repo.set_status = set_status  # type: ignore[method-assign]
        env.repo.set_progress = set_progress  # type: ignore[method-assign]


def test_a_small_document_goes_from_parsing_to_ready_in_two_writes(env: Env) -> None:
    doc, _ = env.upload(b"Harbour notes. The pier opens in May. Boats moor at the east quay.")
    log = ProgressLog(env)
    assert env.ingest(doc.id).status is DocumentStatus.READY
    assert log.stages == ["status:processing", "status:ready"]


def test_a_long_document_still_reports_chunking_embedding_and_indexing(env: Env) -> None:
    doc, _ = env.upload(LONG)
    log = ProgressLog(env)
    final = env.ingest(doc.id)
    assert final.status is DocumentStatus.READY and final.chunks > 32
    assert log.stages[0] == "status:processing" and log.stages[-1] == "status:ready"
    middle = log.stages[1:-1]
    assert middle[0] == "chunking" and middle[-1] == "indexing"
    # 0 of N, then after every batch but the last (whose progress is "indexing")
    assert set(middle[1:-1]) == {"embedding"} and len(middle) - 2 == 1 + (final.chunks - 1) // 32


def test_the_units_go_to_the_unit_embedder_when_there_is_one(env: Env) -> None:
    seen: list[list[str]] = []

    class Units(HashEmbedder):
        def embed(self, texts: Any) -> list[list[float]]:
            seen.append(list(texts))
            return super().embed(texts)

    env.deps.unit_embedder = Units()
    doc, _ = env.upload(b"First sentence of the note. Second sentence of the note.")
    assert env.ingest(doc.id).status is DocumentStatus.READY
    assert seen == [["First sentence of the note.", "Second sentence of the note."]]


def test_an_ingest_parses_in_the_pooled_child_and_leaves_the_next_one_waiting(
        env: Env) -> None:
    from ingest.sandbox import SandboxPool

    env.deps.parsers = pool = SandboxPool()
    try:
        first, _ = env.upload(b"Alpha document. It talks about alpha.")
        second, _ = env.upload(b"Beta document. It talks about beta.")
        assert env.ingest(first.id).status is DocumentStatus.READY
        spare = pool.spare_pid
        assert spare is not None
        assert env.ingest(second.id).status is DocumentStatus.READY
        assert pool.spare_pid not in (None, spare)  # the spare took the second document
        texts = [c.text for _t, d, c in env.store.chunks.values() if d == second.id]
        assert texts == ["Beta document. It talks about beta."]
    finally:
        pool.close()


def test_the_warm_up_runs_the_chunk_embedder_and_the_unit_embedder_once_each(env: Env) -> None:
    """A worker child warms both models before its first document: the unit embedder (int8
    by default) is a model of its own, whose first run would otherwise fall on a document."""
    from dataclasses import replace

    from ingest.pipeline import warm_up

    calls: dict[str, list[list[str]]] = {"chunks": [], "units": []}

    class Recording(HashEmbedder):
        def __init__(self, name: str) -> None:
            super().__init__()
            self.name = name

        def embed(self, texts: Any) -> list[list[float]]:
            calls[self.name].append(list(texts))
            return super().embed(texts)

    warm_up(replace(env.deps, embedder=Recording("chunks"), unit_embedder=Recording("units")))
    assert len(calls["chunks"]) == 1 and len(calls["units"]) == 1
    # longer than a chunk, so the splitter cuts it and loads its sentence tokenizer
    assert len(calls["chunks"][0]) >= 2 and calls["units"][0]
    assert "first document" in " ".join(calls["units"][0])
