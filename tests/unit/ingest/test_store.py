"""The Chroma store adapter (ingest/store.py) on an in-process Chroma: compaction of a
tenant's collection (with writes racing it), and chunk text kept only sealed
(core/textcrypt.py), older plain records sealed by compaction."""

from __future__ import annotations

import contextlib
import secrets
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from core.domain import Chunk
from core.keystore import SqliteKeyStore
from core.textcrypt import TEXT_KEY, TextCipher
from ingest.keywords import KeywordIndex
from ingest.retrieval import keyword_search
from ingest.store import ChromaStore, shard_name, shard_of, tenant_get
from tests.local_chroma import LocalChromaStore
from tests.unit.conftest import doc_chunks as _doc_chunks
from tests.unit.conftest import grep_tree as _grep
from tests.unit.conftest import random_vectors as _vectors

CANARY = "SEALEDCANARY" + secrets.token_hex(6).upper()
TOKEN = "zorblaxifunderous"  # noqa: S105 - a word of the test text


# ---------------------------------------------------------------- compaction








def _records(store: ChromaStore, tenant: str) -> dict[str, tuple[str, dict[str, Any], list[float]]]:
    got = tenant_get(store._connect(), tenant, include=["documents", "metadatas", "embeddings"])
    return {i: (d, m, [round(float(x), 5) for x in e]) for i, d, m, e in
            zip(got["ids"], got["documents"], got["metadatas"], got["embeddings"], strict=True)}


@pytest.fixture
def store(tmp_path: Path) -> Iterator[LocalChromaStore]:
    s = LocalChromaStore(tmp_path / "chroma", KeywordIndex(tmp_path / "keywords.sqlite3"))
    yield s
    with contextlib.suppress(Exception):
        s._connect().clear_system_cache()


def _fill(store: ChromaStore, tenant: str = "acme") -> None:
    keep = _doc_chunks("keep", [f"keeper paragraph {i} about lighthouses" for i in range(40)])
    secret = _doc_chunks("secret", [f"secret memo {CANARY} {TOKEN} part {i}" for i in range(5)])
    store.upsert(tenant, keep, _vectors(len(keep), 1), {"filename": "keep.txt"},
                 [{"extra": i} for i in range(len(keep))])
    store.upsert(tenant, secret, _vectors(len(secret), 2), {"filename": "secret.txt"})


def test_compaction_keeps_every_live_record_and_drops_the_deleted(store: LocalChromaStore,
                                                                  tmp_path: Path) -> None:
    _fill(store)
    _fill(store, "globex")
    store.delete_document("acme", "secret")
    before = _records(store, "acme")
    assert CANARY not in str(before) and len(before) == 40
    assert _grep(tmp_path / "chroma", CANARY)  # deleted, yet still in Chroma's files
    stats = store.compact("acme")
    assert stats["chunks"] == 40
    assert _records(store, "acme") == before  # ids, text, metadata and vectors
    assert len(store.query("acme", _vectors(1, 1)[0], 5)) == 5  # the cached handle is renewed
    globex_ids = store.chunk_ids("globex", "secret")
    assert len(globex_ids) == 5  # another tenant is not touched
    names = [c.name for c in store._connect().list_collections()]
    assert sorted(names) == sorted(shard_name(t, i) for t in ("acme", "globex")
                                   for i in range(store.shards))


class RacingLock:
    """A lock whose first acquisition by ``compact`` (its catch-up) is preceded by writes
    that landed in the old collection after it was copied."""

    def __init__(self, store: LocalChromaStore) -> None:
        self.store = store
        self.fired = False
        self.inner = threading.RLock()

    @contextlib.contextmanager
    def __call__(self, collection: str) -> Iterator[None]:
        with self.inner:
            if not self.fired and threading.current_thread().name == "compactor":
                self.fired = True
                coll = self.store._connect().get_collection(collection, embedding_function=None)
                coll.upsert(ids=["late:0"], embeddings=_vectors(1, 9), documents=["late arrival"],
                            metadatas=[{"document_id": "late"}])
                coll.delete(ids=["keep:0"])
            yield


def test_compaction_catches_up_with_writes_made_while_it_copied(tmp_path: Path) -> None:
    store = LocalChromaStore(tmp_path / "chroma")
    store.lock = RacingLock(store)
    _fill(store)
    result: dict[str, Any] = {}
    # the shard "keep" is in (the lock's writes go to the collection being compacted)
    t = threading.Thread(target=lambda: result.update(store.compact("acme", "keep")),
                         name="compactor")
    t.start()
    t.join()
    ids = set(_records(store, "acme"))
    assert "late:0" in ids and "keep:0" not in ids and len(ids) == 40 + 5
    same = shard_of("secret", store.shards) == shard_of("keep", store.shards)
    assert result["chunks"] == 40 + (5 if same else 0) and result["collections"] == 1


def test_compaction_of_a_tenant_without_a_collection_is_a_no_op(store: LocalChromaStore) -> None:
    assert store.compact("nobody")["chunks"] == 0


# ---------------------------------------------------------------- chunk text sealed at rest


def cipher_in(tmp_path: Path, master: bytes | None = None) -> TextCipher:
    return TextCipher(master or secrets.token_bytes(32), SqliteKeyStore(tmp_path / "keys.sqlite3"))


def _chunks(doc: str, texts: list[str]) -> list[Chunk]:
    out, pos = [], 0
    for i, t in enumerate(texts):
        out.append(Chunk(id=f"{doc}-{i}", document_id=doc, index=i, text=t, page=1,
                         start=pos, end=pos + len(t)))
        pos += len(t) + 1
    return out


def _vec(i: int) -> list[float]:
    v = [0.01] * 8
    v[i % 8] = 1.0
    return v


def test_chroma_holds_only_sealed_text_and_search_opens_it(tmp_path: Path) -> None:
    cipher = cipher_in(tmp_path)
    store = LocalChromaStore(tmp_path / "chroma",
                             KeywordIndex(tmp_path / "kw.sqlite3", b"t" * 32), cipher=cipher)
    texts = [f"The settlement codeword is {CANARY}.", "Minutes of the March board meeting."]
    store.upsert("acme", _chunks("d1", texts), [_vec(0), _vec(1)], {"filename": "memo.txt"})
    raw = tenant_get(store._connect(), "acme", include=["documents", "metadatas"])
    assert all(d is None for d in raw["documents"])
    assert all(TEXT_KEY in m and CANARY not in m[TEXT_KEY] for m in raw["metadatas"])
    hits = store.query("acme", _vec(0), 2)
    assert hits[0].text == texts[0] and hits[0].filename == "memo.txt"
    kw = keyword_search(store, "acme", _vec(0), CANARY, 5)
    assert [h.chunk_id for h in kw] == ["d1-0"] and kw[0].text == texts[0]
    assert [(c, t) for _n, c, _d, t in store.all_chunks()] == [
        ("d1-0", texts[0]), ("d1-1", texts[1])]
    # nothing under the data directory holds the text: not Chroma, not the keyword index
    raw_bytes = b"".join(p.read_bytes() for p in tmp_path.rglob("*") if p.is_file())
    assert CANARY.encode() not in raw_bytes and CANARY.lower().encode() not in raw_bytes
    assert b"settlement" not in raw_bytes
    # the key destroyed: its records are never returned, even before they are deleted
    store.destroy_text_key("d1")
    assert store.query("acme", _vec(0), 2) == []
    assert list(store.all_chunks()) == []


def test_compaction_seals_plain_records_of_older_versions(tmp_path: Path) -> None:
    keywords = KeywordIndex(tmp_path / "kw.sqlite3", b"t" * 32)
    old = LocalChromaStore(tmp_path / "chroma", keywords)  # an older version: plain documents
    old.upsert("acme", _chunks("d1", [f"Legacy text {CANARY}."]), [_vec(2)], {"filename": "a"})
    assert tenant_get(old._connect(), "acme", include=["documents"])["documents"] == [
        f"Legacy text {CANARY}."]
    store = LocalChromaStore(tmp_path / "chroma", keywords, cipher=cipher_in(tmp_path))
    assert store.query("acme", _vec(2), 1)[0].text == f"Legacy text {CANARY}."  # still read
    store.compact("acme")
    raw = tenant_get(store._connect(), "acme", include=["documents", "metadatas"])
    assert raw["documents"] == [None] and TEXT_KEY in raw["metadatas"][0]
    assert store.query("acme", _vec(2), 1)[0].text == f"Legacy text {CANARY}."


def test_text_chunks_are_the_sealed_chunks_overlapping_a_range_in_order(tmp_path: Path) -> None:
    """What ``GET /v1/documents/{id}/text`` reads: Chroma's where-filter on the offsets, in
    the tenant's collection only, opened with the document's text key."""
    store = LocalChromaStore(tmp_path / "chroma", cipher=cipher_in(tmp_path))
    texts = ["alpha one.", "bravo two.", "charlie three.", "delta four."]  # 0-10, 11-21, ...
    store.upsert("acme", _chunks("d1", texts), [_vec(i) for i in range(4)], {})
    store.upsert("acme", _chunks("d2", ["other document."]), [_vec(5)], {})
    got = store.text_chunks("acme", "d1", 15, 30)
    assert [(h.chunk_id, h.text, h.start, h.end) for h in got] == [
        ("d1-1", "bravo two.", 11, 21), ("d1-2", "charlie three.", 22, 36)]
    assert store.text_chunks("acme", "d1", 10, 11) == []  # the gap between two chunks
    assert len(store.text_chunks("acme", "d1", 0, 2**62, limit=1)) == 1
    assert store.text_chunks("globex", "d1", 0, 100) == []  # another tenant's collection
    store.destroy_text_key("d1")
    assert store.text_chunks("acme", "d1", 0, 100) == []


class InternalError(Exception):
    """Stands in for chromadb.errors.InternalError (matched by its message)."""


def test_a_segment_still_being_written_is_asked_again_then_is_a_503(
        store: LocalChromaStore) -> None:
    from core.errors import StoreUnavailableError

    _fill(store)
    # a shard that holds records (the count below is then positive)
    name = next(c.name for c in store._connect().list_collections() if c.count() > 0)
    calls: list[int] = []

    def flaky(coll: Any) -> int:
        calls.append(1)
        if len(calls) == 1:
            raise InternalError("Error executing plan: Internal error: Error creating hnsw "
                                "segment reader: Nothing found on disk")
        return coll.count()

    assert store._on(name, flaky) > 0 and len(calls) == 2  # asked again once, then answered

    def broken(coll: Any) -> int:
        raise InternalError("Error creating hnsw segment reader: Nothing found on disk")

    with pytest.raises(StoreUnavailableError):  # still failing: a 503, never a 500
        store._on(name, broken)


# ---------------------------------------------------------------- what Chroma keeps on disk


def test_a_chunk_stored_with_float16_vectors_reads_and_loses_them_when_written_again(
        tmp_path: Path) -> None:
    """Chunks stored before the int8 codec still give their units; written again, they hold
    the int8 vectors only (an upsert keeps the metadata keys it does not name)."""
    import base64
    import json

    import numpy as np

    from core.sentcodec import Q8_KEY, SPANS_KEY, VECTORS_KEY, pack

    store = LocalChromaStore(tmp_path / "chroma")
    text = "Leave is 25 days. Requests go to HR."
    chunks = _doc_chunks("d1", [text])
    unit_vecs = np.random.default_rng(3).standard_normal((2, 8)).astype(np.float32)
    old = {SPANS_KEY: json.dumps([[0, 17], [18, 36]]),
           VECTORS_KEY: base64.b64encode(unit_vecs.astype(np.float16).tobytes()).decode()}
    store.upsert("acme", chunks, [_vec(0)], {"filename": "a.txt"}, [old])
    units, vecs = store.query("acme", _vec(0), 1)[0].units  # type: ignore[misc]
    assert [(u.start, u.end) for u in units] == [(0, 17), (18, 36)]
    np.testing.assert_allclose(vecs, unit_vecs, atol=1e-2)
    store.upsert("acme", chunks, [_vec(0)], {"filename": "a.txt"},
                 [pack([(0, 17), (18, 36)], unit_vecs.tolist())])
    meta = tenant_get(store._connect(), "acme", include=["metadatas"])["metadatas"][0]
    assert Q8_KEY in meta and VECTORS_KEY not in meta
    _, again = store.query("acme", _vec(0), 1)[0].units  # type: ignore[misc]
    np.testing.assert_allclose(again, unit_vecs, atol=0.02)


def test_chroma_log_keeps_no_more_than_a_hundred_records_per_shard(tmp_path: Path) -> None:
    """Chroma deletes its log records (``embeddings_queue``: metadata and vector again) only
    once its HNSW files hold them; the store's collections write those every 100 records,
    not every 1,000 (Chroma's default), so a shard of 250 keeps fewer than 150 in its log."""
    import sqlite3
    import time

    store = LocalChromaStore(tmp_path / "chroma")
    texts = [f"Paragraph {i} of the handbook." for i in range(250)]
    chunks = _doc_chunks("d1", texts)  # one document: one shard
    for i in range(0, 250, 10):
        store.upsert("acme", chunks[i:i + 10], _vectors(10, i), {"filename": "h.txt"})

    def logged() -> int:
        db = sqlite3.connect(f"file:{tmp_path / 'chroma' / 'chroma.sqlite3'}?mode=ro", uri=True)
        try:
            return int(db.execute("SELECT count(*) FROM embeddings_queue").fetchone()[0])
        finally:
            db.close()

    deadline = time.monotonic() + 30  # the purge follows each write asynchronously
    while logged() >= 150 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert logged() < 150
    assert len(tenant_get(store._connect(), "acme", include=[])["ids"]) == 250
