"""Tune hybrid fusion on SciFact's *train* qrels only (the test split is for reporting).

Fetches each train query's dense and keyword rankings once through ``/v1/search``
(``mode=dense`` / ``mode=keyword``, 200 chunks each), then replays reciprocal rank fusion
offline over a grid: the constant k, the keyword weight and the candidates per retriever.
Prints JSON: every setting's nDCG@10 and recall@100, best first. The corpus must already be
ingested (``python -m bench scifact`` does that).

    python -m bench.tune_fusion --url http://127.0.0.1:8080 --api-key KEY --json OUT
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from pathlib import Path
from typing import Any

from bench.evalkit import log
from bench.scifact import DEFAULT_DIR, documents_in_order, evaluate, load
from service.client import DocqaClient

Ranking = list[tuple[str, str]]  # (chunk id, corpus id), best first


def fuse(dense: Ranking, keyword: Ranking, k: float, w_keyword: float, candidates: int
         ) -> list[str]:
    """The service's reciprocal rank fusion (``ingest.retrieval.hybrid_search``) over chunks,
    returned as corpus ids in fused order."""
    score: dict[str, float] = {}
    doc: dict[str, str] = {}
    for weight, ranking in ((1.0, dense), (w_keyword, keyword)):
        for rank, (cid, key) in enumerate(ranking[:candidates]):
            score[cid] = score.get(cid, 0.0) + weight / (k + rank + 1)
            doc[cid] = key
    return [doc[c] for c in sorted(score, key=lambda c: -score[c])]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--url", required=True)
    ap.add_argument("--api-key", required=True)
    ap.add_argument("--data", type=Path, default=DEFAULT_DIR)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    data = load(args.data)
    qrels = data.qrels["train"]
    rankings: dict[str, dict[str, Ranking]] = {"dense": {}, "keyword": {}}
    with DocqaClient(args.url, args.api_key, timeout=120.0, wait_on_429_s=600) as client:
        for i, qid in enumerate(sorted(qrels, key=int), start=1):
            for mode in rankings:
                res = client.search(data.queries[qid], top_k=200, mode=mode)["results"]
                rankings[mode][qid] = [(r["chunk_id"], Path(r["filename"]).stem) for r in res]
            if i % 100 == 0:
                log(f"train: {i}/{len(qrels)} queries")
    rows: list[dict[str, Any]] = []
    for mode, ranked in rankings.items():
        m = evaluate({q: documents_in_order([d for _c, d in r]) for q, r in ranked.items()}, qrels)
        rows.append({"mode": mode, **{x: round(m[x], 4) for x in ("ndcg@10", "recall@100")}})
    rrf_ks = (1, 5, 10, 20, 40, 60, 100)
    weights = (0.5, 0.75, 1.0, 1.25, 1.5, 2.0)
    for k, w, cand in itertools.product(rrf_ks, weights, (30, 50, 100, 200)):
        runs = {q: documents_in_order(fuse(rankings["dense"][q], rankings["keyword"][q], k, w,
                                           cand)) for q in qrels}
        m = evaluate(runs, qrels)
        rows.append({"mode": "hybrid", "rrf_k": k, "w_keyword": w, "candidates": cand,
                     "ndcg@10": round(m["ndcg@10"], 4), "recall@100": round(m["recall@100"], 4)})
    rows.sort(key=lambda r: (-r["ndcg@10"], -r["recall@100"]))
    text = json.dumps({"split": "train", "queries": len(qrels), "results": rows}, indent=1)
    print(text)  # noqa: T201 - the script's output
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
