"""The keyword ranking alone at a tenant size the full search bench takes long to build:
FTS5 ranking every match (as before top-k pruning) against ``KeywordIndex.search``
(pruned), on the same index, query by query interleaved.

    python -m bench.keyword_prune --chunks 100000 --data DIR [--queries 60] [--json OUT]

Builds (or reuses) in ``DIR`` a keyword index only, no Chroma: the chunks
``bench/search_scale.py`` would store (the same document generator and chunker, so the
same texts and terms, hashed with a term key), in minutes rather than the hour the full
build takes at 100,000 chunks. Then times the held-out questions of ``bench/scale.py``
(the first ``--queries``), top 30 as a hybrid search asks: "full_rank" (a new connection,
FTS5's ``ORDER BY rank`` over every match, ``bench/search_baseline.py`` ``FullRankIndex``)
and "pruned" (the service's ``KeywordIndex``), and compares their top 30s. One JSON object
on stdout (and ``--json OUT``).
"""

from __future__ import annotations

import json
import secrets
import time
from pathlib import Path
from typing import Any

import click

from bench.evalkit import percentile
from bench.scale import EVAL_DIR, chunking, load_corpus
from bench.search_baseline import FullRankIndex
from bench.search_scale import documents, load, log
from core.domain import Page
from core.textcrypt import term_key
from ingest.chunking import chunk_pages
from ingest.keywords import KeywordIndex
from ingest.store import collection_name

COLLECTION = collection_name("bench")
LIMIT = 30


def build(index: KeywordIndex, target: int) -> int:
    """Fill ``index`` up to ``target`` chunks (a larger target adds to a smaller index)."""
    have = index.count(COLLECTION)
    if have >= target:
        return have
    size, overlap = chunking(None)
    batch: list[tuple[str, str, str]] = []
    n = 0
    for doc, text, _rep in documents(load_corpus(EVAL_DIR).texts):
        if n >= target:
            break
        for c in chunk_pages(doc, [Page(1, text, 0)], size, overlap, doc.encode()):
            n += 1
            if n > have and n <= target:
                batch.append((c.id, doc, c.text))
        if len(batch) >= 2000 or (n >= target and batch):
            index.replace_chunks(COLLECTION, batch)
            batch = []
            log(f"{n} chunks (load {load()})")
    return index.count(COLLECTION)


@click.command()
@click.option("--chunks", default=100000, type=int)
@click.option("--data", type=click.Path(path_type=Path), required=True)
@click.option("--queries", default=60, type=int)
@click.option("--json", "json_out", type=click.Path(path_type=Path), default=None)
def main(chunks: int, data: Path, queries: int, json_out: Path | None) -> None:
    data.mkdir(parents=True, exist_ok=True)
    key_path = data / "master.key"
    if not key_path.exists():
        key_path.write_bytes(secrets.token_bytes(32))
    key = term_key(key_path.read_bytes())
    pruned = KeywordIndex(data / "keywords.sqlite3", key)
    full = FullRankIndex(data / "keywords.sqlite3", key)
    have = build(pruned, chunks)
    qs = load_corpus(EVAL_DIR).questions[:queries]
    ways = {"full_rank": full, "pruned": pruned}
    for idx in ways.values():  # first-call costs aside
        idx.search(COLLECTION, qs[-1], LIMIT)
    pruned.plans.clear()
    times: dict[str, list[float]] = {n: [] for n in ways}
    tops: dict[str, list[list[str]]] = {n: [] for n in ways}
    load_start = load()
    for i, q in enumerate(qs):
        for name in (list(ways) if i % 2 == 0 else list(reversed(ways))):
            t = time.perf_counter()
            hits = ways[name].search(COLLECTION, q, LIMIT)
            times[name].append((time.perf_counter() - t) * 1000)
            tops[name].append([h[0] for h in hits])
    shares = [len(set(a) & set(b)) / len(a)
              for a, b in zip(tops["full_rank"], tops["pruned"], strict=True) if a]
    out: dict[str, Any] = {
        "chunks": have, "queries": len(qs), "load_before": load_start, "load_after": load(),
        "same_top30": sum(a == b for a, b in zip(tops["full_rank"], tops["pruned"],
                                                 strict=True)),
        "top30_overlap": round(sum(shares) / len(shares), 4) if shares else 1.0,
        "plans": dict(pruned.plans),
    }
    for name, v in times.items():
        out[name] = {"p50_ms": round(float(percentile(v, 50) or 0), 1),
                     "p95_ms": round(float(percentile(v, 95) or 0), 1)}
    out["p50_ratio"] = round(out["pruned"]["p50_ms"] / out["full_rank"]["p50_ms"], 3)
    out["p95_ratio"] = round(out["pruned"]["p95_ms"] / out["full_rank"]["p95_ms"], 3)
    text = json.dumps(out, indent=2)
    click.echo(text)
    if json_out:
        json_out.write_text(text + "\n")


if __name__ == "__main__":
    main()
