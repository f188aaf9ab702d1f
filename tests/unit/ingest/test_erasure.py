"""Erasure building blocks on real Chroma (in-process) and SQLite files: compaction of a
tenant's collection (with writes racing it), the Chroma directory scrub, the FTS5 scrub,
and the Redis-coordinated batching of erasure runs."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from core.domain import Chunk
from ingest.erasure import Eraser, scrub_chroma_dir, scrub_keywords
from ingest.keywords import KeywordIndex
from ingest.store import ChromaStore, collection_name
from tests.local_chroma import LocalChromaStore
from tests.unit.conftest import FakeRedis

CANARY = "QZXERASECANARY42"
TOKEN = "zorblaxifunderous"  # noqa: S105 - a word of the test text


def _chunks(doc: str, texts: list[str]) -> list[Chunk]:
    return [Chunk(f"{doc}:{i}", doc, i, t, 1, 0, len(t)) for i, t in enumerate(texts)]


def _vectors(n: int, seed: int) -> list[list[float]]:
    return np.random.default_rng(seed).random((n, 8)).astype(float).tolist()


def _grep(root: Path, *needles: str) -> list[str]:
    found = []
    for p in root.rglob("*"):
        if p.is_file():
            data = p.read_bytes()
            if any(n.encode() in data for n in needles):
                found.append(str(p.relative_to(root)))
    return found


def _records(store: ChromaStore, tenant: str) -> dict[str, tuple[str, dict[str, Any], list[float]]]:
    coll = store._connect().get_collection(collection_name(tenant), embedding_function=None)
    got = coll.get(include=["documents", "metadatas", "embeddings"])
    return {i: (d, m, [round(float(x), 5) for x in e]) for i, d, m, e in
            zip(got["ids"], got["documents"], got["metadatas"], got["embeddings"], strict=True)}


@pytest.fixture
def store(tmp_path: Path) -> Iterator[LocalChromaStore]:
    s = LocalChromaStore(tmp_path / "chroma", KeywordIndex(tmp_path / "keywords.sqlite3"))
    yield s
    with contextlib.suppress(Exception):
        s._connect().clear_system_cache()


def _fill(store: ChromaStore, tenant: str = "acme") -> None:
    keep = _chunks("keep", [f"keeper paragraph {i} about lighthouses" for i in range(40)])
    secret = _chunks("secret", [f"secret memo {CANARY} {TOKEN} part {i}" for i in range(5)])
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
    assert sorted(names) == sorted([collection_name("acme"), collection_name("globex")])


def test_chroma_dir_scrub_removes_dropped_segments_and_freed_pages(tmp_path: Path) -> None:
    store = LocalChromaStore(tmp_path / "chroma")
    keep = _chunks("keep", [f"keeper {i}" for i in range(30)])
    store.upsert("acme", keep, _vectors(30, 1), {})
    store.upsert("acme", _chunks("secret", [f"memo {CANARY}"]), _vectors(1, 2), {})
    store.delete_document("acme", "secret")
    store.compact("acme")
    report = scrub_chroma_dir(tmp_path / "chroma")
    assert _grep(tmp_path / "chroma", CANARY) == []
    assert "vacuum_seconds" in report
    live = {p.name for p in (tmp_path / "chroma").iterdir() if p.is_dir()}
    import sqlite3

    segs = {r[0] for r in sqlite3.connect(tmp_path / "chroma" / "chroma.sqlite3").execute(
        "SELECT id FROM segments")}
    assert live <= segs
    assert len(store.query("acme", _vectors(1, 1)[0], 3)) == 3  # Chroma still works after
    store.upsert("acme", _chunks("later", ["added after the scrub"]), _vectors(1, 3), {})
    assert store.count_document("acme", "later") == 1


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
    t = threading.Thread(target=lambda: result.update(store.compact("acme")), name="compactor")
    t.start()
    t.join()
    ids = set(_records(store, "acme"))
    assert "late:0" in ids and "keep:0" not in ids and len(ids) == 40 + 5
    assert result["chunks"] == 45


def test_compaction_of_a_tenant_without_a_collection_is_a_no_op(store: LocalChromaStore) -> None:
    assert store.compact("nobody")["chunks"] == 0


def test_keyword_scrub_removes_deleted_terms_from_the_file(tmp_path: Path) -> None:
    path = tmp_path / "keywords.sqlite3"
    kw = KeywordIndex(path)
    coll = collection_name("acme")
    kw.replace_chunks(coll, [(f"k{i}", "keep", f"keeper text number {i}") for i in range(50)])
    kw.replace_chunks(coll, [("s0", "secret", f"memo {CANARY} about {TOKEN}")])
    kw.delete_document(coll, "secret")
    stem = TOKEN[:9]  # the index holds Porter stems
    assert _grep(tmp_path, stem)  # FTS5 keeps the terms after a delete
    assert scrub_keywords(path, coll)
    assert _grep(tmp_path, stem, CANARY.lower(), CANARY) == []
    assert [r[0] for r in kw.search(coll, "keeper number 7", 1)] == ["k7"]


def test_an_erasure_run_covers_every_deletion_counted_before_it_started() -> None:
    eraser = Eraser.__new__(Eraser)
    eraser.redis = FakeRedis()
    eraser.settings = type("S", (), {"worker": type("W", (), {"task_time_limit_s": 10})()})()
    runs: list[str] = []
    first, second = eraser._ticket("k"), eraser._ticket("k")  # two deletes, one worker busy
    assert eraser._run("k", second, lambda: runs.append("second") or "ran") == "ran"
    assert eraser._run("k", first, lambda: runs.append("first")) == "covered by an earlier run"
    third = eraser._ticket("k")  # a delete after that run began needs a run of its own
    assert eraser._run("k", third, lambda: runs.append("third") or "ran") == "ran"
    assert runs == ["second", "third"]
