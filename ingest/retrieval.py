"""Retrieval over the vector store's two indexes: dense, keyword (BM25) and their fusion.

The store (``ingest/store.py``) answers the two primitive questions, the nearest chunks
to a vector and the chunk ids a keyword query ranks; this module combines them. Every
hit's ``score`` is its cosine similarity to the query, whichever mode found it (keyword-
only hits are fetched with their vectors), so the answer engine's gates see one scale.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from core.domain import ChunkHit
from core.errors import ConfigurationError
from core.ports import VectorStore
from core.settings import RetrievalSettings
from core.threads import ProcessThreads

MODES = ("hybrid", "dense", "keyword")
# spare hits for collapsed duplicates, not 2x: each keyword-only hit costs a vector fetch
SPARE_HITS = 10

# the query's vector, or what computes it: hybrid search ranks its keywords meanwhile
Embedding = Sequence[float] | Callable[[], Sequence[float]]


def _vector(embedding: Embedding) -> Sequence[float]:
    return embedding() if callable(embedding) else embedding


def retrieve(store: VectorStore, tenant: str, embedding: Embedding, text: str,
             top_k: int, document_ids: Sequence[str] | None, mode: str | None,
             settings: RetrievalSettings) -> list[ChunkHit]:
    """``top_k`` chunks of ``tenant`` (within ``document_ids`` when given). ``mode``:
    ``hybrid`` (dense and keyword fused), ``dense`` or ``keyword``; None = the configured
    default (hybrid when enabled). Hybrid falls back to dense without a keyword index.
    A callable ``embedding`` is called once, in every mode."""
    mode = mode or ("hybrid" if settings.hybrid else "dense")
    if mode == "keyword" and store.has_keywords:
        return keyword_search(store, tenant, embedding, text, top_k, document_ids)
    if mode == "hybrid" and store.has_keywords:
        return hybrid_search(store, tenant, embedding, text, top_k, document_ids,
                             settings.keyword_candidates, settings.rrf_k, settings.keyword_weight)
    if mode in ("dense", "hybrid"):
        return store.query(tenant, _vector(embedding), top_k, document_ids)
    raise ConfigurationError("keyword search needs the keyword index")


def keyword_search(store: VectorStore, tenant: str, embedding: Embedding, text: str,
                   top_k: int, document_ids: Sequence[str] | None = None) -> list[ChunkHit]:
    """Keyword (BM25) hits in BM25 order, each scored by its cosine to ``embedding``."""
    pending = _KEYWORDS.get().submit(store.keyword_ids, tenant, text, top_k + SPARE_HITS,
                                     document_ids)
    vector = _vector(embedding)
    order = pending.result()
    by_id = {h.chunk_id: h for h in store.get_chunks(tenant, order, vector)}
    return collapse([by_id[c] for c in order if c in by_id])[:top_k]


def hybrid_search(store: VectorStore, tenant: str, embedding: Embedding, text: str,
                  top_k: int, document_ids: Sequence[str] | None = None, candidates: int = 30,
                  rrf_k: float = 60, keyword_weight: float = 1.0) -> list[ChunkHit]:
    """Dense and keyword candidates fused by reciprocal rank; near-duplicates collapsed."""
    n = max(candidates, top_k)
    # the keyword index (SQLite or PostgreSQL, the GIL released while it ranks) is asked
    # while the query is embedded and the shards are asked: at 100,000 chunks its ranking
    # is the longest part of a search (docs/capacity.md "Search over 16 shards")
    pending = (_KEYWORDS.get().submit(store.keyword_ids, tenant, text, n, document_ids)
               if store.has_keywords else None)
    embedding = _vector(embedding)
    dense = store.nearest(tenant, embedding, n, document_ids)
    keyword = pending.result() if pending is not None else []
    fused: dict[str, float] = {}
    for rank, (cid, _score) in enumerate(dense):
        fused[cid] = fused.get(cid, 0.0) + 1.0 / (rrf_k + rank + 1)
    for rank, cid in enumerate(keyword):
        fused[cid] = fused.get(cid, 0.0) + keyword_weight / (rrf_k + rank + 1)
    order = sorted(fused, key=lambda c: -fused[c])
    # the records of the fused best alone are read, each shard asked for its own: the first
    # top_k, then as many more as duplicates (or chunks deleted meanwhile) left out, up to
    # SPARE_HITS more. A dense candidate keeps its score from the index, a keyword-only one
    # is scored by its vector.
    wanted = order[: top_k + SPARE_HITS]
    scores = dict(dense)
    by_id: dict[str, ChunkHit] = {}
    read = 0
    while read < len(wanted):
        kept = collapse([by_id[c] for c in wanted[:read] if c in by_id])
        if len(kept) >= top_k:
            break
        more = wanted[read:read + top_k - len(kept)]
        by_id.update((h.chunk_id, h) for h in store.get_chunks(tenant, more, embedding, scores))
        read += len(more)
    return collapse([by_id[c] for c in wanted[:read] if c in by_id])[:top_k]


_KEYWORDS = ProcessThreads(4, "keywords")


def collapse(hits: Sequence[ChunkHit]) -> list[ChunkHit]:
    """Drop hits whose text repeats an earlier hit's (same words, case and spacing aside)."""
    seen: set[str] = set()
    out = []
    for h in hits:
        key = " ".join(h.text.lower().split())
        if key in seen:
            continue
        seen.add(key)
        out.append(h)
    return out
