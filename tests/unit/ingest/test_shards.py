"""A tenant's chunks over several collections (ingest/store.py): searches over every shard
give the same nearest chunks as one collection would, erasing a document rebuilds only its
shard, the shard count is fixed per tenant, and a tenant stored in the single collection
of before shards is still read, written and erased without losing anything."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from ingest.keywords import KeywordIndex
from ingest.store import collection_name, shard_name, shard_of, tenant_get
from tests.local_chroma import LocalChromaStore
from tests.unit.conftest import doc_chunks as _chunks
from tests.unit.conftest import random_vectors as _vectors


@pytest.fixture
def store(tmp_path: Path) -> Iterator[LocalChromaStore]:
    s = LocalChromaStore(tmp_path / "chroma", KeywordIndex(tmp_path / "kw.sqlite3"))
    s.shards = 4
    yield s
    with contextlib.suppress(Exception):
        s._connect().clear_system_cache()


def _fill(store: LocalChromaStore, tenant: str, docs: int, per_doc: int, seed: int) -> None:
    for d in range(docs):
        texts = [f"document {d} paragraph {i} of {tenant}" for i in range(per_doc)]
        store.upsert(tenant, _chunks(f"{tenant}-d{d}", texts), _vectors(per_doc, seed + d), {})


def _cosine_top(store: LocalChromaStore, tenant: str, q: list[float], k: int) -> list[str]:
    got = tenant_get(store._connect(), tenant, include=["embeddings"])
    m = np.asarray(got["embeddings"], dtype=np.float64)
    qv = np.asarray(q, dtype=np.float64)
    sims = m @ qv / (np.linalg.norm(m, axis=1) * np.linalg.norm(qv))
    return [got["ids"][i] for i in np.argsort(-sims)[:k]]


def test_search_over_shards_is_the_top_k_of_the_whole_tenant(store: LocalChromaStore) -> None:
    _fill(store, "acme", 24, 5, 100)
    _fill(store, "globex", 6, 5, 900)
    sizes = [store._named(shard_name("acme", i)).count() for i in range(4)]
    assert sum(sizes) == 120 and sum(1 for s in sizes if s) >= 3  # spread by document
    for q in _vectors(10, 7):
        hits = store.query("acme", q, 10)
        assert [h.chunk_id for h in hits] == _cosine_top(store, "acme", q, 10)
        assert all(h.document_id.startswith("acme-") for h in hits)  # never another tenant
    # a document filter asks only its documents' shards, and still gets their nearest
    docs = ["acme-d3", "acme-d17"]
    hits = store.query("acme", _vectors(1, 5)[0], 10, docs)
    assert len(hits) == 10 and {h.document_id for h in hits} == set(docs)
    # ids of keyword hits are found in whichever shard holds them
    ids = ["acme-d0:1", "acme-d11:4", "acme-d23:0"]
    assert sorted(h.chunk_id for h in store.get_chunks("acme", ids, _vectors(1, 5)[0])) == ids
    assert store.get_chunks("globex", ids, _vectors(1, 5)[0]) == []
    assert store.count_document("acme", "acme-d5") == 5
    assert store.count_document("globex", "acme-d5") == 0


def test_erasing_a_document_rebuilds_its_shard_only(store: LocalChromaStore) -> None:
    _fill(store, "acme", 16, 3, 200)
    client = store._connect()
    before = {c.name: c.id for c in client.list_collections()}
    victim = "acme-d4"
    store.delete_document("acme", victim)
    assert store.erase_collections("acme", victim) == [shard_name("acme", shard_of(victim, 4))]
    stats = store.compact("acme", victim)
    assert stats["collections"] == 1
    after = {c.name: c.id for c in client.list_collections()}
    changed = {n for n in before if before[n] != after.get(n)}
    assert changed == {shard_name("acme", shard_of(victim, 4))}
    assert len(tenant_get(client, "acme", include=[])["ids"]) == 45
    assert store.layout("acme").shards == 4  # shard 0 keeps the count through a rebuild
    store.compact("acme", "acme-d0")  # whichever shard that is, shard 0 included
    fresh = LocalChromaStore(store.path)
    fresh._client = client
    assert fresh.layout("acme").shards == 4


def test_the_shard_count_is_the_tenants_not_the_setting(store: LocalChromaStore) -> None:
    _fill(store, "acme", 8, 2, 300)
    other = LocalChromaStore(store.path)
    other._client = store._connect()
    other.shards = 2
    other.upsert("acme", _chunks("late", ["a late document"]), _vectors(1, 1), {})
    assert other.layout("acme").shards == 4 and other.count_document("acme", "late") == 1
    assert store.count_document("acme", "late") == 1
    other.upsert("newco", _chunks("n1", ["first document of a new tenant"]), _vectors(1, 2), {})
    assert other.layout("newco").shards == 2


def test_a_single_collection_of_before_shards_is_read_written_and_erased(
        store: LocalChromaStore) -> None:
    client = store._connect()
    legacy = client.create_collection(collection_name("acme"), embedding_function=None,
                                      configuration={"hnsw": {"space": "cosine"}},
                                      metadata={"tenant_hash": collection_name("acme")})
    old = _chunks("old", [f"old paragraph {i}" for i in range(6)])
    legacy.upsert(ids=[c.id for c in old], embeddings=_vectors(6, 40),
                  documents=[c.text for c in old],
                  metadatas=[{"document_id": "old", "chunk_index": c.index, "page": 1,
                              "start": c.start, "end": c.end} for c in old])
    gone = _chunks("gone", ["paragraph to be erased"])
    legacy.upsert(ids=[gone[0].id], embeddings=_vectors(1, 41), documents=[gone[0].text],
                  metadatas=[{"document_id": "gone", "page": 1, "start": 0, "end": 22}])
    assert store.layout("acme").legacy and store.layout("acme").shards == 0
    assert store.count_document("acme", "old") == 6
    assert store.query("acme", _vectors(1, 41)[0], 1)[0].chunk_id == "gone:0"
    # new documents go to shards; both are searched
    _fill(store, "acme", 4, 2, 500)
    assert store.layout("acme").shards == 4
    assert {h.document_id for h in store.query("acme", _vectors(1, 41)[0], 20)} >= {
        "old", "gone", "acme-d1"}
    # an old document written again (an ingest retried) moves to its shard: no duplicates
    store.upsert("acme", old[:2], _vectors(2, 40), {})
    assert store.count_document("acme", "old") == 6 and legacy.count() == 5
    # erasing rebuilds the document's shard and the single collection while it has records
    store.delete_document("acme", "gone")
    names = store.erase_collections("acme", "gone")
    assert names == [shard_name("acme", shard_of("gone", 4)), collection_name("acme")]
    store.compact("acme", "gone")
    assert store.count_document("acme", "old") == 6 and store.count_document("acme", "gone") == 0
    # once it is empty it is dropped, and the tenant is all shards
    store.delete_document("acme", "old")
    store.compact("acme", "old")
    names = {c.name for c in client.list_collections()}
    assert collection_name("acme") not in names
    assert not store.layout("acme").legacy
    assert len(store.query("acme", _vectors(1, 500)[0], 20)) == 8


class _NotFoundError(Exception):
    pass


class _Swapped:
    """A shard handle whose collection a compaction replaced: Chroma answers 404."""

    name = "dq_x_s00"

    def get(self, **_: object) -> dict[str, list[str]]:
        raise _NotFoundError("Collection [old-id] does not exist.")


class _Rebuilt:
    name = "dq_x_s00"

    def get(self, **_: object) -> dict[str, list[str]]:
        return {"ids": ["c1"], "metadatas": [{"document_id": "d1"}]}  # type: ignore[dict-item]


class _Client:
    """Lists the shard, then, asked by name, first finds the name free (mid-swap), then the
    rebuilt collection."""

    def __init__(self) -> None:
        self.asked: list[str] = []

    def list_collections(self) -> list[str]:
        return ["dq_x_s00"]

    def get_collection(self, name: str, embedding_function: object = None) -> object:
        self.asked.append(name)
        if len(self.asked) == 1:
            return _Swapped()
        if len(self.asked) == 2:
            raise _NotFoundError(f"Collection {name} does not exist.")
        return _Rebuilt()


def test_a_shard_swapped_between_listing_and_reading_is_read_again_by_name(
        monkeypatch: pytest.MonkeyPatch) -> None:
    import ingest.store as store_mod

    monkeypatch.setattr(store_mod, "collection_name", lambda tenant: "dq_x")
    monkeypatch.setattr(store_mod, "SWAP_RETRY_S", 0.0)
    client = _Client()
    res = tenant_get(client, "x", where={"document_id": "d1"})
    assert res["ids"] == ["c1"]
    assert client.asked == ["dq_x_s00"] * 3


def test_a_chroma_error_that_is_not_a_missing_collection_is_raised(
        monkeypatch: pytest.MonkeyPatch) -> None:
    import ingest.store as store_mod

    class Broken(_Rebuilt):
        def get(self, **_: object) -> dict[str, list[str]]:
            raise RuntimeError("server error")

    class Client(_Client):
        def get_collection(self, name: str, embedding_function: object = None) -> object:
            return Broken()

    monkeypatch.setattr(store_mod, "collection_name", lambda tenant: "dq_x")
    with pytest.raises(RuntimeError, match="server error"):
        tenant_get(Client(), "x")
