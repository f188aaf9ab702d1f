"""Which BM25 for the keyword index: SQLite FTS5 (what docqa uses) against ``bm25s``.

Both index the same chunks — the SciFact corpus cut by the service's own reader and
chunker with the configured sizes — and answer the same queries (train and test qrels).
Printed as JSON: per engine nDCG@10 and recall@100 per split, query p50/p95 (ms), the time
to build the index from scratch and the time to add one document to a full index (FTS5:
one transaction; bm25s has no incremental update, so it re-indexes everything). Times are
from one run on one machine; compare them as ratios.

Since extracted text is encrypted at rest, the service's index stores keyed hashes of
Python-stemmed terms (``ingest/keywords.py``); the FTS5 engines here are that index with and
without the term key, and the earlier design (FTS5's own porter tokenizer over the plain
text) as the baseline. ``sealing`` times sealing every chunk's text and opening the 200
texts of a search (``core/textcrypt.py``), against that search's own time.

    python -m bench.keyword_compare --json bench/out/keyword_compare.json
"""

from __future__ import annotations

import argparse
import json
import secrets
import sqlite3
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from bench.evalkit import log, percentile
from bench.scifact import DEFAULT_DIR, SPLITS, SciFact, documents_in_order, evaluate, load
from core.domain import Page
from core.keystore import SqliteKeyStore
from core.settings import Settings
from core.textcrypt import TextCipher
from ingest.chunking import chunk_pages
from ingest.keywords import _STOP, _WORD, KeywordIndex
from ingest.readers import _normalise

TOP_CHUNKS = 200
ADD_SAMPLES = 5


BENCH_ID_KEY = b"bench chunk ids"  # ids only name chunks here; any fixed key will do


def chunk_corpus(data: SciFact) -> list[tuple[str, str, str]]:
    """(chunk_id, corpus id, text) as the worker would store them."""

    c = Settings().chunking
    rows = []
    for d in data.docs:
        for ch in chunk_pages(d.key, [Page(number=1, text=_normalise(d.text), offset=0)],
                              c.size, c.overlap, BENCH_ID_KEY):
            rows.append((ch.id, d.key, ch.text))
    return rows


Query = Callable[[str], list[str]]  # query -> chunk's corpus ids, best first


def score_engine(data: SciFact, query: Query) -> dict[str, Any]:
    out: dict[str, Any] = {}
    times: list[float] = []
    for split in SPLITS:
        runs = {}
        for qid in data.qrels[split]:
            t0 = time.perf_counter()
            runs[qid] = documents_in_order(query(data.queries[qid]))
            times.append((time.perf_counter() - t0) * 1000.0)
        m = evaluate(runs, data.qrels[split])
        out[split] = {"ndcg@10": round(m["ndcg@10"], 4), "recall@100": round(m["recall@100"], 4)}
    out["query_p50_ms"] = round(percentile(times, 50) or 0.0, 2)
    out["query_p95_ms"] = round(percentile(times, 95) or 0.0, 2)
    return out


class PorterPlainIndex:
    """The keyword index before text was encrypted at rest (baseline): FTS5's porter
    tokenizer over the plain chunk text, queried with the same stop words and term cap."""

    def __init__(self, path: Path) -> None:
        self.db = sqlite3.connect(path, isolation_level=None)
        self.db.execute("CREATE VIRTUAL TABLE t USING fts5(text, chunk_id UNINDEXED, "
                        "tokenize = 'porter unicode61 remove_diacritics 2')")

    def replace_chunks(self, _collection: str, rows: Sequence[tuple[str, str, str]]) -> None:
        self.db.execute("BEGIN")
        self.db.executemany("INSERT INTO t (text, chunk_id) VALUES (?, ?)",
                            [(text, cid) for cid, _d, text in rows])
        self.db.execute("COMMIT")

    def search(self, _collection: str, text: str, limit: int) -> list[tuple[str, str, float]]:
        words = [w for w in dict.fromkeys(w.lower() for w in _WORD.findall(text))
                 if w not in _STOP][:32]
        if not words:
            return []
        expr = " OR ".join(f'"{w}"' for w in words)
        return [(r[0], "", float(r[1])) for r in self.db.execute(
            "SELECT chunk_id, -rank FROM t WHERE t MATCH ? ORDER BY rank LIMIT ?", (expr, limit))]


def fts5(data: SciFact, rows: Sequence[tuple[str, str, str]], workdir: Path,
         variant: str = "hashed") -> dict[str, Any]:

    by_doc: dict[str, list[tuple[str, str, str]]] = {}
    for r in rows:
        by_doc.setdefault(r[1], []).append(r)
    t0 = time.perf_counter()
    index: Any
    if variant == "porter-plain":
        index = PorterPlainIndex(workdir / f"fts5-{variant}.sqlite3")
    else:
        index = KeywordIndex(workdir / f"fts5-{variant}.sqlite3",
                             term_key=b"bench-term-key-0123456789abcdef!" if variant == "hashed"
                             else None)
    for doc_rows in by_doc.values():  # one transaction per document, as the worker writes
        index.replace_chunks("bench", doc_rows)
    build = time.perf_counter() - t0
    doc_of = {r[0]: r[1] for r in rows}
    result = score_engine(
        data, lambda q: [doc_of[c] for c, _d, _s in index.search("bench", q, TOP_CHUNKS)])
    adds = []
    for doc_rows in list(by_doc.values())[:ADD_SAMPLES]:
        renamed = [(f"new-{c}", d, t) for c, d, t in doc_rows]
        t0 = time.perf_counter()
        index.replace_chunks("bench", renamed)
        adds.append(time.perf_counter() - t0)
    result.update(build_s=round(build, 2), add_one_document_ms=round(
        (percentile(adds, 50) or 0.0) * 1000.0, 2))
    return result


def sealing(data: SciFact, rows: Sequence[tuple[str, str, str]], workdir: Path
            ) -> dict[str, Any]:
    """Sealing every chunk, and opening a search's 200 texts, against the search itself."""

    master, keys = secrets.token_bytes(32), SqliteKeyStore(workdir / "keys.sqlite3")
    cipher = TextCipher(master, keys)
    docs = list(dict.fromkeys(doc for _c, doc, _t in rows))
    t0 = time.perf_counter()
    for doc in docs:  # the worker makes a document's key once, at its first chunk
        cipher.key(doc, create=True)
    key_ms = (time.perf_counter() - t0) / len(docs) * 1000.0
    t0 = time.perf_counter()
    sealed = {cid: (doc, cipher.seal(doc, cid, text)) for cid, doc, text in rows}
    seal_us = (time.perf_counter() - t0) / len(rows) * 1e6
    index = KeywordIndex(workdir / "sealing.sqlite3", term_key=b"k" * 32)
    index.replace_chunks("bench", rows)
    search_ms: list[float] = []
    open_ms: dict[str, list[float]] = {"warm": [], "cold": []}
    for qid in list(data.qrels["test"])[:200]:
        t0 = time.perf_counter()
        found = index.search("bench", data.queries[qid], TOP_CHUNKS)
        search_ms.append((time.perf_counter() - t0) * 1000.0)
        # cold: a process that has seen none of these documents (one key-store read);
        # warm: keys already cached
        for state, c in (("cold", TextCipher(master, keys)), ("warm", cipher)):
            t0 = time.perf_counter()
            c.prefetch(sealed[cid][0] for cid, _d, _s in found)
            for cid, _d, _s in found:
                doc, blob = sealed[cid]
                c.open(doc, cid, blob)
            open_ms[state].append((time.perf_counter() - t0) * 1000.0)
    s50 = percentile(search_ms, 50) or 0.0
    out: dict[str, Any] = {"create_key_ms_per_document": round(key_ms, 3),
                           "seal_us_per_chunk": round(seal_us, 1),
                           "keyword_search_p50_ms": round(s50, 3)}
    for state, times in open_ms.items():
        o50 = percentile(times, 50) or 0.0
        out[f"open_200_hits_{state}_p50_ms"] = round(o50, 3)
        out[f"open_{state}_over_search"] = round(o50 / s50, 3) if s50 else None
    return out


def bm25s_engine(data: SciFact, rows: Sequence[tuple[str, str, str]], k1: float, b: float
                 ) -> dict[str, Any]:
    import bm25s  # type: ignore[import-untyped]
    import Stemmer  # type: ignore[import-not-found]

    stemmer = Stemmer.Stemmer("english")
    texts = [r[2] for r in rows]

    def build() -> Any:
        retriever = bm25s.BM25(k1=k1, b=b)
        retriever.index(bm25s.tokenize(texts, stopwords="en", stemmer=stemmer,
                                       show_progress=False), show_progress=False)
        return retriever

    t0 = time.perf_counter()
    retriever = build()
    build_s = time.perf_counter() - t0

    def query(q: str) -> list[str]:
        tokens = bm25s.tokenize([q], stopwords="en", stemmer=stemmer, show_progress=False)
        ids, _scores = retriever.retrieve(tokens, k=min(TOP_CHUNKS, len(rows)),
                                          show_progress=False)
        return [rows[int(i)][1] for i in ids[0]]

    result = score_engine(data, query)
    t0 = time.perf_counter()
    build()  # bm25s cannot add one document: the index is rebuilt
    result.update(build_s=round(build_s, 2),
                  add_one_document_ms=round((time.perf_counter() - t0) * 1000.0, 2))
    return result


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DIR)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    data = load(args.data)
    rows = chunk_corpus(data)
    log(f"{len(data.docs)} documents → {len(rows)} chunks")
    engines: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        engines["fts5 hashed terms (the service)"] = fts5(data, rows, Path(tmp), "hashed")
        engines["fts5 plain stemmed terms"] = fts5(data, rows, Path(tmp), "plain")
        engines["fts5 porter tokenizer, plain text (before)"] = fts5(data, rows, Path(tmp),
                                                                    "porter-plain")
        seal = sealing(data, rows, Path(tmp))
    log("fts5 done")
    engines["bm25s (k1=1.2, b=0.75, as FTS5)"] = bm25s_engine(data, rows, 1.2, 0.75)
    engines["bm25s (k1=0.9, b=0.4, Anserini)"] = bm25s_engine(data, rows, 0.9, 0.4)
    result = {"engines": engines, "sealing": seal,
              "config": {"documents": len(data.docs), "chunks": len(rows),
                         "top_chunks": TOP_CHUNKS}}
    text = json.dumps(result, indent=2)
    print(text)  # noqa: T201 - the script's output
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
