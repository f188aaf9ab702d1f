"""A search's reads of a sharded tenant on a real Chroma server: over plain HTTP from the
store's threads (ingest/chromahttp.py) they find what the ``chromadb`` client finds asking
one shard after the other, and the search of before (every record read through the
client, bench/search_baseline.py) gives the same top 10; a shard rebuilt and swapped in
between a search's two rounds (an erasure's compaction) is found again by its name."""

from __future__ import annotations

import random
import secrets
import subprocess
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from bench.search_baseline import BaselineStore
from bench.search_baseline import hybrid_search as hybrid_before
from core.domain import Chunk, ChunkHit, chunk_id
from core.keystore import SqliteKeyStore
from core.textcrypt import TextCipher, term_key
from ingest.keywords import KeywordIndex
from ingest.retrieval import hybrid_search, keyword_search
from ingest.store import ChromaStore, shard_name
from service.cli.processes import chroma_command, free_port, wait_http

TENANT = "acme"
WORDS = ("invoice supplier warranty clause renewal payment audit outage backup restore "
         "budget forecast committee deadline delivery lighthouse harbour glacier orchard "
         "quarry meadow canyon").split()
DIM = 32


class OneByOneClientStore(ChromaStore):
    """Every read through the ``chromadb`` client, one collection after the other."""

    def _connect(self) -> Any:
        client = super()._connect()
        self._reads = None
        return client

    def _map(self, calls: Sequence[tuple[str, Any]]) -> list[tuple[str, Any]]:
        done = [(name, self._on(name, op)) for name, op in calls]
        return [(name, res) for name, res in done if res is not None]


class Tenant:
    def __init__(self, root: Path, port: int) -> None:
        master = secrets.token_bytes(32)
        self.cipher = TextCipher(master, SqliteKeyStore(root / "keys.sqlite3"))
        self.keywords = KeywordIndex(root / "keywords.sqlite3", term_key(master))
        self.port = port

    def store(self, cls: type[ChromaStore] = ChromaStore) -> ChromaStore:
        return cls("127.0.0.1", self.port, self.keywords, cipher=self.cipher, shards=16)


def _unit(rng: np.random.Generator, n: int) -> np.ndarray:
    v = rng.standard_normal((n, DIM)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def tenant(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Tenant]:
    root = tmp_path_factory.mktemp("shard-reads")
    port = free_port()
    proc = subprocess.Popen(chroma_command(root / "chroma", "127.0.0.1", port),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        assert wait_http(f"http://127.0.0.1:{port}/api/v2/heartbeat", 60, [proc])
        t = Tenant(root, port)
        store = t.store()
        rng, r = np.random.default_rng(3), random.Random(3)  # noqa: S311 - test data
        for d in range(120):  # 120 documents of 3 chunks over 16 shards
            doc = f"doc{d:03d}{secrets.token_hex(4)}"
            texts = [" ".join(r.choice(WORDS) for _ in range(30)) for _ in range(3)]
            if d % 10 == 0:  # exact duplicates across documents: collapsed by the search
                texts[0] = "lighthouse harbour glacier " * 5
            key = t.cipher.chunk_id_key(doc)
            chunks = [Chunk(chunk_id(doc, s, i, key), doc, i, s, 1, 0, len(s))
                      for i, s in enumerate(texts)]
            store.upsert(TENANT, chunks, _unit(rng, 3).tolist(), {"filename": f"{doc}.txt"})
        yield t
    finally:
        proc.terminate()
        proc.wait(timeout=60)


def _queries() -> list[tuple[list[float], str]]:
    rng, r = np.random.default_rng(11), random.Random(11)  # noqa: S311 - test data
    return [(v, " ".join(r.choice(WORDS) for _ in range(3))) for v in _unit(rng, 12).tolist()]


def _view(hits: list[ChunkHit]) -> list[tuple[str, str, float, str]]:
    return [(h.chunk_id, h.document_id, h.score, h.text) for h in hits]


def test_reads_over_http_find_what_the_client_finds_one_shard_at_a_time(
        tenant: Tenant) -> None:
    now, one_by_one = tenant.store(), tenant.store(OneByOneClientStore)
    before = tenant.store(BaselineStore)
    assert now.layout(TENANT).shards == 16
    for vec, text in _queries():
        found = hybrid_search(now, TENANT, vec, text, 10)
        assert len(found) == 10
        assert _view(found) == _view(hybrid_search(one_by_one, TENANT, vec, text, 10))
        # the top 10 of the search of before (the dense side read whole), scores included
        assert _view(found) == _view(hybrid_before(before, TENANT, vec, text, 10))
        assert _view(now.query(TENANT, vec, 30)) == _view(one_by_one.query(TENANT, vec, 30))
        assert now.nearest(TENANT, vec, 30) == one_by_one.nearest(TENANT, vec, 30)
        assert [(h.chunk_id, h.score) for h in now.query(TENANT, vec, 30)] == [
            (cid, round(s, 6)) for cid, s in now.nearest(TENANT, vec, 30)]
        kw = keyword_search(now, TENANT, vec, text, 10)
        assert kw and _view(kw) == _view(keyword_search(before, TENANT, vec, text, 10))


def test_get_chunks_finds_an_id_that_does_not_name_its_document(tenant: Tenant) -> None:
    store = tenant.store()
    rng = np.random.default_rng(5)
    doc = "odd" + secrets.token_hex(4)
    text = "quarry meadow canyon orchard"
    store.upsert(TENANT, [Chunk("no-document-prefix-" + doc, doc, 0, text, 1, 0, len(text))],
                 _unit(rng, 1).tolist(), {"filename": "odd.txt"})
    got = store.get_chunks(TENANT, ["no-document-prefix-" + doc, "missing:0:00"],
                           _unit(rng, 1)[0].tolist())
    assert [(h.chunk_id, h.document_id, h.text) for h in got] == [
        ("no-document-prefix-" + doc, doc, text)]
    store.delete_document(TENANT, doc)


class SwapBetweenRounds(ChromaStore):
    """After the dense round, before the records are read: every shard holding a candidate
    is rebuilt and swapped under its name by another process's store (an erasure's
    compaction), so this store's cached handles name collections that are gone."""

    other: ChromaStore
    swapped: list[str]

    def nearest(self, tenant: str, embedding: Sequence[float], top_k: int,
                document_ids: Sequence[str] | None = None) -> list[tuple[str, float]]:
        found = super().nearest(tenant, embedding, top_k, document_ids)
        lay = self.layout(tenant)
        from ingest.store import shard_of

        for name in sorted({shard_name(tenant, shard_of(cid.split(":", 1)[0], lay.shards))
                            for cid, _s in found[:10]}):
            self.other.compact_collection(tenant, name)
            self.swapped.append(name)
        return found


def test_a_shard_swapped_between_a_searchs_two_rounds_still_answers(tenant: Tenant) -> None:
    vec, text = _queries()[0]
    expected = _view(hybrid_search(tenant.store(), TENANT, vec, text, 10))
    store = tenant.store(SwapBetweenRounds)
    assert isinstance(store, SwapBetweenRounds)
    store.other, store.swapped = tenant.store(), []
    client = store._connect()
    ids_before = {c.name: c.id for c in client.list_collections()}
    store.query(TENANT, vec, 10)  # the handles of every shard cached
    got = _view(hybrid_search(store, TENANT, vec, text, 10))
    assert store.swapped  # the records were read from rebuilt collections
    ids_after = {c.name: c.id for c in client.list_collections()}
    assert all(ids_after[n] != ids_before[n] for n in store.swapped)
    assert got == expected
