"""ingest/retrieval.py: a query vector given as a callable is computed while the keyword
index ranks, once, and retrieves what the vector itself retrieves."""

from __future__ import annotations

import threading
from collections.abc import Sequence

import pytest

from core.domain import ChunkHit
from core.settings import RetrievalSettings
from ingest.retrieval import retrieve

VECTOR = [1.0, 0.0]
WAIT_S = 5.0


def _hit(cid: str, score: float) -> ChunkHit:
    return ChunkHit(cid, cid.split("_")[0], "f.txt", f"text of {cid}", 1, 0, 9, score)


class OverlapStore:
    """A store whose keyword ranking waits (bounded) for the query's embedding to begin, and
    records whether it saw it: ranked one after the other, it would not."""

    has_keywords = True

    def __init__(self) -> None:
        self.embedding_started = threading.Event()
        self.keywords_started = threading.Event()
        self.keywords_saw_embedding = False
        self.vectors: list[Sequence[float]] = []

    def keyword_ids(self, tenant: str, text: str, n: int,
                    document_ids: Sequence[str] | None = None) -> list[str]:
        self.keywords_started.set()
        self.keywords_saw_embedding = self.embedding_started.wait(WAIT_S)
        return ["d2_0", "d1_0", "d3_0"][:n]

    def nearest(self, tenant: str, embedding: Sequence[float], top_k: int,
                document_ids: Sequence[str] | None = None) -> list[tuple[str, float]]:
        self.vectors.append(embedding)
        return [("d1_0", 0.9), ("d4_0", 0.8)][:top_k]

    def query(self, tenant: str, embedding: Sequence[float], top_k: int,
              document_ids: Sequence[str] | None = None) -> list[ChunkHit]:
        self.vectors.append(embedding)
        return [_hit("d1_0", 0.9), _hit("d4_0", 0.8)][:top_k]

    def get_chunks(self, tenant: str, ids: Sequence[str], embedding: Sequence[float],
                   scores: dict[str, float] | None = None) -> list[ChunkHit]:
        self.vectors.append(embedding)
        return [_hit(c, (scores or {}).get(c, 0.5)) for c in ids]


class CountingEmbed:
    def __init__(self, store: OverlapStore) -> None:
        self.store, self.calls = store, 0
        self.saw_keywords = False

    def __call__(self) -> list[float]:
        self.calls += 1
        self.store.embedding_started.set()
        self.saw_keywords = self.store.keywords_started.wait(WAIT_S)
        return VECTOR


def _view(hits: list[ChunkHit]) -> list[tuple[str, float]]:
    return [(h.chunk_id, h.score) for h in hits]


@pytest.mark.parametrize("mode", ["hybrid", "keyword"])
def test_keyword_ranking_runs_while_the_query_is_embedded(mode: str) -> None:
    store = OverlapStore()
    embed = CountingEmbed(store)
    hits = retrieve(store, "t", embed, "q", 3, None, mode, RetrievalSettings())  # type: ignore[arg-type]
    assert embed.calls == 1
    assert embed.saw_keywords and store.keywords_saw_embedding
    assert hits and all(v == VECTOR for v in store.vectors)


@pytest.mark.parametrize("mode", ["hybrid", "keyword", "dense"])
def test_a_callable_retrieves_what_its_vector_does(mode: str) -> None:
    plain = OverlapStore()
    plain.embedding_started.set()  # a vector given: no embedding to wait for
    by_vector = retrieve(plain, "t", VECTOR, "q", 3, None, mode,  # type: ignore[arg-type]
                         RetrievalSettings())
    store = OverlapStore()
    store.keywords_started.set()  # dense mode ranks no keywords
    embed = CountingEmbed(store)
    by_callable = retrieve(store, "t", embed, "q", 3, None, mode,  # type: ignore[arg-type]
                           RetrievalSettings())
    assert embed.calls == 1
    assert _view(by_callable) == _view(by_vector) and by_vector
