"""BEIR SciFact as a retrieval benchmark (see ../shared/eval/README.md).

Each abstract is one document (``<_id>.txt``: the title, a blank line, the text), uploaded
through the service's own API. Every test query is sent to ``/v1/search`` once per retrieval
mode (dense, keyword, hybrid) in the same run. Results are chunks; a document's rank is the
rank of its first chunk (max-pooling), as BEIR scores documents. Metrics are BEIR's: nDCG@10
with graded relevance from the qrels, and recall@100. ``train`` qrels are for tuning,
``test`` for reporting.
"""

from __future__ import annotations

import json
import math
import os
import platform
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.evalkit import EvalDoc, git_commit, ingest, log, percentile, table, write_json
from bench.squad2 import EVAL_DIR, _redacted
from core.settings import Settings
from service.client import DocqaClient

DEFAULT_DIR = EVAL_DIR / "scifact"
SPLITS = ("train", "test")
MODES = ("dense", "keyword", "hybrid")
METRICS = ("ndcg@10", "recall@100", "search_p50_ms", "search_p95_ms",
           "queries_with_fewer_than_100_documents")
# chunks asked per query: abstracts are 1-3 chunks, so 200 chunks cover >= 100 documents
SEARCH_TOP_K = 200

TARGETS = {
    "ndcg@10": (">=", 0.70),
    "recall@100": (">=", 0.93),
    "search_p50_ms": ("<=", 100.0),
}


@dataclass(frozen=True)
class SciFact:
    docs: list[EvalDoc]
    queries: dict[str, str]  # query id -> claim
    qrels: dict[str, dict[str, dict[str, int]]]  # split -> query id -> corpus id -> grade


def load(root: Path = DEFAULT_DIR) -> SciFact:
    docs = []
    with (root / "corpus.jsonl").open(encoding="utf-8") as fh:
        for line in fh:
            row = json.loads(line)
            key = str(row["_id"])
            text = f"{row.get('title', '').strip()}\n\n{row.get('text', '').strip()}".strip()
            docs.append(EvalDoc(key, f"{key}.txt", text, {"corpus_id": key}))
    queries = {}
    with (root / "queries.jsonl").open(encoding="utf-8") as fh:
        for line in fh:
            row = json.loads(line)
            queries[str(row["_id"])] = row["text"]
    qrels: dict[str, dict[str, dict[str, int]]] = {}
    for split in SPLITS:
        rel: dict[str, dict[str, int]] = {}
        with (root / "qrels" / f"{split}.tsv").open(encoding="utf-8") as fh:
            next(fh)  # header
            for line in fh:
                qid, cid, grade = line.rstrip("\n").split("\t")
                rel.setdefault(qid, {})[cid] = int(grade)
        qrels[split] = rel
    return SciFact(docs, queries, qrels)


# ------------------------------------------------------------------ metrics (BEIR/pytrec_eval)


def ndcg_at(ranked: Sequence[str], relevant: dict[str, int], k: int = 10) -> float:
    dcg = sum(relevant.get(d, 0) / math.log2(i + 2) for i, d in enumerate(ranked[:k]))
    ideal = sorted(relevant.values(), reverse=True)[:k]
    idcg = sum(g / math.log2(i + 2) for i, g in enumerate(ideal))
    return dcg / idcg if idcg > 0 else 0.0


def recall_at(ranked: Sequence[str], relevant: dict[str, int], k: int = 100) -> float:
    wanted = {d for d, g in relevant.items() if g > 0}
    if not wanted:
        return 0.0
    return len(wanted & set(ranked[:k])) / len(wanted)


def documents_in_order(chunk_docs: Sequence[str]) -> list[str]:
    """Chunk-level result → document ranking (a document ranks where its best chunk does)."""
    return list(dict.fromkeys(chunk_docs))


def evaluate(runs: dict[str, list[str]], qrels: dict[str, dict[str, int]]) -> dict[str, float]:
    qids = [q for q in qrels if q in runs]
    n = len(qids) or 1
    return {
        "ndcg@10": sum(ndcg_at(runs[q], qrels[q]) for q in qids) / n,
        "recall@100": sum(recall_at(runs[q], qrels[q]) for q in qids) / n,
        "queries": len(qids),
    }


# ------------------------------------------------------------------ run


Searcher = Callable[[str, str], tuple[list[str], float]]  # (query, mode) -> (corpus ids, ms)


def api_searcher(client: Any, id_to_key: dict[str, str], top_k: int = SEARCH_TOP_K) -> Searcher:
    def search(query: str, mode: str) -> tuple[list[str], float]:
        t0 = time.perf_counter()
        res = client.search(query, top_k=top_k, mode=mode)
        ms = (time.perf_counter() - t0) * 1000.0
        keys = [id_to_key.get(r["document_id"], "?") for r in res["results"]]
        return documents_in_order(keys), ms

    return search


def search_all(data: SciFact, split: str, searcher: Searcher,
               modes: Sequence[str] = MODES) -> dict[str, dict[str, Any]]:
    """Every query of the split through every mode; modes interleaved per query so that
    machine noise falls on all three alike."""

    qrels = data.qrels[split]
    runs: dict[str, dict[str, list[str]]] = {m: {} for m in modes}
    times: dict[str, list[float]] = {m: [] for m in modes}
    short: dict[str, int] = {m: 0 for m in modes}
    t0 = time.perf_counter()
    for i, qid in enumerate(sorted(qrels, key=int), start=1):
        for mode in modes:
            ranked, ms = searcher(data.queries[qid], mode)
            runs[mode][qid] = ranked
            times[mode].append(ms)
            short[mode] += len(ranked) < 100
        if i % 50 == 0 or i == len(qrels):
            log(f"{split}: {i}/{len(qrels)} queries ({time.perf_counter() - t0:.0f}s)")
    out: dict[str, dict[str, Any]] = {}
    for mode in modes:
        m = evaluate(runs[mode], qrels)
        out[mode] = {
            "ndcg@10": round(m["ndcg@10"], 4),
            "recall@100": round(m["recall@100"], 4),
            "search_p50_ms": round(percentile(times[mode], 50) or 0.0, 1),
            "search_p95_ms": round(percentile(times[mode], 95) or 0.0, 1),
            "queries": m["queries"],
            "queries_with_fewer_than_100_documents": short[mode],
        }
    return out


def run(url: str, api_key: str, split: str = "test", root: Path = DEFAULT_DIR,
        json_out: Path | None = None, top_k: int = SEARCH_TOP_K) -> dict[str, Any]:
    """Ingest the corpus through the service, search every query in every mode, score."""

    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}")
    settings = Settings()
    data = load(root)
    log(f"scifact: {len(data.docs)} documents, {len(data.qrels[split])} {split} queries")
    with DocqaClient(url, api_key, timeout=300.0, wait_on_429_s=600) as client:
        id_to_key = ingest(client, data.docs)
        systems = search_all(data, split, api_searcher(client, id_to_key, top_k))
    commit = git_commit()
    r = settings.retrieval
    result: dict[str, Any] = {
        **systems,
        "config": {
            "benchmark": "scifact", "split": split, "documents": len(data.docs),
            "search_top_k_chunks": top_k, "url": url, "commit": commit,
            "keyword_index": "sqlite fts5 bm25 (porter)",
            "fusion": f"reciprocal rank, k={r.rrf_k}, keyword weight {r.keyword_weight}",
            "embedding": "/".join(Path(settings.models.resolved_embedding_path()).parts[-2:]),
            "chunk_words": settings.chunking.size, "chunk_overlap": settings.chunking.overlap,
            "cpus": os.cpu_count(), "python": platform.python_version(),
            "argv": _redacted(sys.argv[1:]),
        },
    }
    print(table(systems, TARGETS, METRICS))  # noqa: T201 - the CLI's output
    write_json(json_out, result)
    return result
