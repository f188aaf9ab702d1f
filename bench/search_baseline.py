"""The search as it was before this round's changes, for ``bench/search_scale.py`` to time
beside the current one in the same run: every read through ``chromadb``'s client, the
dense side's 30 records read before fusion, the keyword index asked after the shards (its
matches joined before they are ranked), and a keyword-only hit's record asked of every
shard. ``FullRankIndex``: the keyword ranking of before top-k pruning alone, for the
service's search to be timed with it as a third way."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from core.domain import ChunkHit
from core.ports import VectorStore
from ingest.keywords import KeywordIndex, match_expression
from ingest.retrieval import SPARE_HITS, collapse
from ingest.store import ChromaStore, collection_name


class FullRankIndex(KeywordIndex):
    """The keyword index as it ranked before top-k pruning (``KeywordIndex._pruned``): a new
    connection per search, and FTS5's ``ORDER BY rank`` over every match."""

    def search(self, collection: str, text: str, limit: int,
               document_ids: Sequence[str] | None = None) -> list[tuple[str, str, float]]:
        expr = match_expression(text, self.hasher, collection)
        if document_ids is not None or not expr or limit <= 0:
            return super().search(collection, text, limit, document_ids)
        with self._connect() as db:
            table = self._table(db, collection, create=False)
            if table is None:
                return []
            return [(r[0], r[1], float(r[2])) for r in db.execute(
                f"SELECT k.chunk_id, k.document_id, -t.rank FROM (SELECT rowid, rank "  # noqa: S608
                f"FROM {table} WHERE {table} MATCH ? ORDER BY rank LIMIT ?) t "
                "JOIN kw_chunks k ON k.rowid = t.rowid ORDER BY t.rank", (expr, limit))]


class BaselineStore(ChromaStore):
    def _connect(self) -> Any:
        client = super()._connect()
        self._reads = None  # the client's own query and get
        return client

    def keyword_ids(self, tenant: str, text: str, n: int,
                    document_ids: Sequence[str] | None = None) -> list[str]:
        kw = self.keywords
        if not isinstance(kw, KeywordIndex) or document_ids is not None:
            return super().keyword_ids(tenant, text, n, document_ids)
        coll = collection_name(tenant)
        expr = match_expression(text, kw.hasher, coll)
        if not expr:
            return []
        with kw._connect() as db:
            table = kw._table(db, coll, create=False)
            if table is None:
                return []
            return [str(r[0]) for r in db.execute(
                f"SELECT k.chunk_id FROM {table} f JOIN kw_chunks k "  # noqa: S608
                f"ON k.rowid = f.rowid WHERE {table} MATCH ? ORDER BY f.rank LIMIT ?",
                (expr, n))]

    def get_chunks(self, tenant: str, ids: Sequence[str], embedding: Sequence[float],
                   scores: Mapping[str, float] | None = None) -> list[ChunkHit]:
        if not ids:
            return []
        q = np.asarray(embedding, dtype=np.float32)
        qn = float(np.linalg.norm(q)) or 1.0
        out = []
        for res in self._each(self._names(tenant), lambda coll: coll.get(
                ids=list(ids), include=["documents", "metadatas", "embeddings"])):
            self._prefetch(res["metadatas"])
            for cid, text, meta, emb in zip(res["ids"], res["documents"], res["metadatas"],
                                            res["embeddings"], strict=True):
                v = np.asarray(emb, dtype=np.float32)
                cos = float(v @ q) / ((float(np.linalg.norm(v)) or 1.0) * qn)
                hit = self._hit(cid, text, meta, cos)
                if hit is not None:
                    out.append(hit)
        return out


def hybrid_search(store: VectorStore, tenant: str, embedding: Sequence[float], text: str,
                  top_k: int, document_ids: Sequence[str] | None = None, candidates: int = 30,
                  rrf_k: float = 60, keyword_weight: float = 1.0) -> list[ChunkHit]:
    """``ingest.retrieval.hybrid_search`` before: the dense candidates read whole."""
    n = max(candidates, top_k)
    dense = store.query(tenant, embedding, n, document_ids)
    keyword = store.keyword_ids(tenant, text, n, document_ids)
    fused: dict[str, float] = {}
    for rank, h in enumerate(dense):
        fused[h.chunk_id] = fused.get(h.chunk_id, 0.0) + 1.0 / (rrf_k + rank + 1)
    for rank, cid in enumerate(keyword):
        fused[cid] = fused.get(cid, 0.0) + keyword_weight / (rrf_k + rank + 1)
    order = sorted(fused, key=lambda c: -fused[c])
    by_id = {h.chunk_id: h for h in dense}
    wanted = order[: top_k + SPARE_HITS]
    missing = [cid for cid in wanted if cid not in by_id]
    for h in store.get_chunks(tenant, missing, embedding):
        by_id[h.chunk_id] = h
    return collapse([by_id[c] for c in wanted if c in by_id])[:top_k]
