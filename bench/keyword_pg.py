"""The keyword index on PostgreSQL against SQLite FTS5, in one run, on SciFact.

Both engines index the same chunks (the corpus cut by the service's reader and chunker,
``bench.keyword_compare.chunk_corpus``) with the service's hashed terms, and answer the same
queries through the service's retrieval code (``ingest.retrieval.retrieve``) with the
configured fusion settings: ``keyword`` alone and ``hybrid`` (dense and keyword fused).
The corpus and the queries are embedded once (the service's MiniLM); dense retrieval is an
exact cosine search over those vectors, the same for both engines, so the difference
between two engines' hybrid figures is the keyword index's alone. (Chroma's HNSW, which
the service uses, is approximate: the service's absolute figures differ slightly.)

PostgreSQL: a database ``docqa_bench_<random>`` is created through ``--pg-url`` (a role
allowed to create databases) and dropped at the end.

    python -m bench.keyword_pg --json bench/out/keyword_pg.json
"""

from __future__ import annotations

import argparse
import json
import secrets
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, cast

import numpy as np

from bench.evalkit import git_commit, log, percentile
from bench.keyword_compare import chunk_corpus
from bench.scifact import DEFAULT_DIR, SEARCH_TOP_K, SciFact, documents_in_order, evaluate, load
from core.domain import ChunkHit
from core.ports import VectorStore
from core.settings import Settings
from ingest.embedding import SentenceTransformerEmbedder
from ingest.keywords import KeywordIndex, KeywordStore
from ingest.pgkeywords import PostgresKeywordIndex
from ingest.retrieval import retrieve

TENANT = "bench"
TERM_KEY = b"bench-term-key-0123456789abcdef!"
MODES = ("keyword", "hybrid")


class MemoryStore:
    """What retrieval reads of the store port (query, keyword_ids, get_chunks), over
    vectors in memory (exact cosine) and a keyword engine."""

    def __init__(self, rows: Sequence[tuple[str, str, str]], vectors: np.ndarray,
                 keywords: KeywordStore | None) -> None:
        self.rows = list(rows)
        self.index = {cid: i for i, (cid, _d, _t) in enumerate(self.rows)}
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        self.vectors = vectors / np.where(norms == 0, 1.0, norms)
        self.keywords = keywords

    @property
    def has_keywords(self) -> bool:
        return self.keywords is not None

    def _hit(self, i: int, score: float) -> ChunkHit:
        cid, doc, text = self.rows[i]
        return ChunkHit(cid, doc, f"{doc}.txt", text, 1, 0, len(text), round(score, 6))

    def query(self, tenant: str, embedding: Sequence[float], top_k: int,
              document_ids: Sequence[str] | None = None) -> list[ChunkHit]:
        scores = self.vectors @ np.asarray(embedding, dtype=np.float32)
        order = np.argsort(-scores, kind="stable")[:top_k]
        return [self._hit(int(i), float(scores[i])) for i in order]

    def keyword_ids(self, tenant: str, text: str, n: int,
                    document_ids: Sequence[str] | None = None) -> list[str]:
        if self.keywords is None:
            return []
        return [c for c, _d, _s in self.keywords.search(TENANT, text, n, document_ids)]

    def get_chunks(self, tenant: str, ids: Sequence[str],
                   embedding: Sequence[float]) -> list[ChunkHit]:
        q = np.asarray(embedding, dtype=np.float32)
        return [self._hit(self.index[c], float(self.vectors[self.index[c]] @ q))
                for c in ids if c in self.index]


def build(index: KeywordStore, rows: Sequence[tuple[str, str, str]]) -> float:
    """Index the rows one document per call, as the worker writes; seconds taken."""
    by_doc: dict[str, list[tuple[str, str, str]]] = {}
    for r in rows:
        by_doc.setdefault(r[1], []).append(r)
    t0 = time.perf_counter()
    for doc_rows in by_doc.values():
        index.replace_chunks(TENANT, doc_rows)
    return time.perf_counter() - t0


def score(data: SciFact, store: MemoryStore, query_vectors: dict[str, list[float]],
          split: str, modes: Sequence[str]) -> dict[str, Any]:
    settings = Settings().retrieval
    runs: dict[str, dict[str, list[str]]] = {m: {} for m in modes}
    times: dict[str, list[float]] = {m: [] for m in modes}
    for qid in sorted(data.qrels[split], key=int):
        for mode in modes:
            t0 = time.perf_counter()
            hits = retrieve(cast(VectorStore, store), TENANT, query_vectors[qid], data.queries[qid],
                            SEARCH_TOP_K, None, mode, settings)
            times[mode].append((time.perf_counter() - t0) * 1000.0)
            runs[mode][qid] = documents_in_order([h.document_id for h in hits])
    out: dict[str, Any] = {}
    for mode in modes:
        m = evaluate(runs[mode], data.qrels[split])
        out[mode] = {"ndcg@10": round(m["ndcg@10"], 4), "recall@100": round(m["recall@100"], 4),
                     "search_p50_ms": round(percentile(times[mode], 50) or 0.0, 2),
                     "search_p95_ms": round(percentile(times[mode], 95) or 0.0, 2),
                     "queries": m["queries"]}
    return out


@contextmanager
def postgres_database(admin_url: str) -> Iterator[str]:
    import psycopg
    from psycopg import conninfo, sql

    name = f"docqa_bench_{secrets.token_hex(4)}"
    with psycopg.connect(admin_url, autocommit=True, connect_timeout=5) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {} TEMPLATE template0 ENCODING 'UTF8'")
                      .format(sql.Identifier(name)))
    try:
        yield conninfo.make_conninfo(admin_url, dbname=name)
    finally:
        with psycopg.connect(admin_url, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)")
                          .format(sql.Identifier(name)))


def analyze(dsn: str) -> None:
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as db:
        db.execute("ANALYZE keyword_chunks")


def embed_all(texts: Sequence[str], cache: Path | None) -> np.ndarray:
    if cache is not None and cache.exists():
        vectors = np.load(cache)
        if len(vectors) == len(texts):
            return np.asarray(vectors, dtype=np.float32)
    settings = Settings()
    embedder = SentenceTransformerEmbedder(settings.models.resolved_embedding_path(),
                                           settings.models.embedding_batch_size)
    out = np.asarray(embedder.embed(list(texts)), dtype=np.float32)
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        np.save(cache, out)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DIR)
    ap.add_argument("--split", default="test", choices=("train", "test"))
    ap.add_argument("--pg-url", default="postgresql://postgres@127.0.0.1:5432/postgres",
                    help="a PostgreSQL role allowed to create (and drop) a database")
    ap.add_argument("--embeddings-cache", type=Path, default=None,
                    help="a .npy file keeping the corpus vectors between runs")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    data = load(args.data)
    rows = chunk_corpus(data)
    qids = sorted(data.qrels[args.split], key=int)
    log(f"{len(data.docs)} documents → {len(rows)} chunks; {len(qids)} {args.split} queries")
    t0 = time.perf_counter()
    vectors = embed_all([r[2] for r in rows], args.embeddings_cache)
    qvecs = embed_all([data.queries[q] for q in qids], None)
    query_vectors = {q: v.tolist() for q, v in zip(qids, qvecs, strict=True)}
    log(f"embedded in {time.perf_counter() - t0:.0f}s")
    result: dict[str, Any] = {
        "dense": score(data, MemoryStore(rows, vectors, None), query_vectors, args.split,
                       ("dense",))["dense"]}
    engines: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        fts5 = KeywordIndex(Path(tmp) / "kw.sqlite3", TERM_KEY)
        build_s = build(fts5, rows)
        engines["sqlite_fts5"] = {**score(data, MemoryStore(rows, vectors, fts5),
                                          query_vectors, args.split, MODES),
                                  "build_s": round(build_s, 2)}
        log("fts5 done")
    with postgres_database(args.pg_url) as dsn:
        pg = PostgresKeywordIndex(dsn, TERM_KEY)
        build_s = build(pg, rows)
        analyze(dsn)  # as autovacuum would soon: the planner knows the table's size
        engines["postgresql"] = {**score(data, MemoryStore(rows, vectors, pg), query_vectors,
                                         args.split, MODES),
                                 "build_s": round(build_s, 2)}
        pg.close()
        log("postgresql done")
    diff = {mode: {m: round(engines["postgresql"][mode][m] - engines["sqlite_fts5"][mode][m], 4)
                   for m in ("ndcg@10", "recall@100")} for mode in MODES}
    r = Settings().retrieval
    result.update(engines=engines, postgresql_minus_fts5=diff, config={
        "benchmark": "scifact", "split": args.split, "documents": len(data.docs),
        "chunks": len(rows), "search_top_k_chunks": SEARCH_TOP_K, "commit": git_commit(),
        "fusion": f"reciprocal rank, k={r.rrf_k}, keyword weight {r.keyword_weight}, "
                  f"{r.keyword_candidates} candidates per retriever",
        "dense": "exact cosine over MiniLM vectors (not Chroma's HNSW)",
        "terms": "hashed with a term key, as the service stores them"})
    text = json.dumps(result, indent=2)
    print(text)  # noqa: T201 - the script's output
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
