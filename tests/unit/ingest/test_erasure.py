"""Erasure building blocks (ingest/erasure.py) on real Chroma (in-process) and SQLite files:
the Chroma directory scrub, the FTS5 scrub, and the Redis-coordinated batching of erasure
runs. Compaction, which the scrub follows, is in test_store.py."""

from __future__ import annotations

from pathlib import Path

from ingest.erasure import Eraser, scrub_chroma_dir, scrub_keywords
from ingest.keywords import KeywordIndex
from ingest.store import collection_name
from tests.local_chroma import LocalChromaStore
from tests.unit.conftest import FakeRedis
from tests.unit.conftest import doc_chunks as _chunks
from tests.unit.conftest import grep_tree as _grep
from tests.unit.conftest import random_vectors as _vectors

CANARY = "QZXERASECANARY42"
TOKEN = "zorblaxifunderous"  # noqa: S105 - a word of the test text








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
