"""Figures for one tenant of N chunks, through the real service on loopback.

    python -m bench.scale --chunks 10000 --json OUT [--data DIR] [--shards S]
        [--queries 50] [--paras-per-doc 1]

Starts its own stack (bench/stack.py: a private redis-server, the Chroma server, one Celery
worker, the API; 127.0.0.1 only) on a fresh data directory and builds one tenant of about N
chunks from the eval corpora's texts (SQuAD 2.0 dev paragraphs and BEIR SciFact abstracts,
../shared/eval/): each pass over the texts varies them (sentences rotated, a reference line
added), so no document or chunk repeats another. Chunks are counted with the service's own
chunker before upload; the report gives the count the service stored.

Phases:

1. ingest: 8 upload threads, then ``DocqaClient.wait_ready`` (the batch event stream, never
   a request per document); ``ingest_docs_per_s`` is documents over the wall time from the
   first upload to the last ``ready``;
2. search: ``/v1/search`` hybrid top 10, and ask: ``/v1/ask``, ``--queries`` of each one at
   a time, with held-out questions (SQuAD questions of the test split and SciFact claims);
3. RSS of the API and of the worker (its process tree) after those, the worker's also
   every 15 s during the ingest (``worker_rss_ingest_max_mb``, ``_median_mb``), and the
   Chroma directory's and the keyword index's bytes per chunk;
4. erasure: one more document carrying a canary is ingested; its stored forms (the canary,
   its sealed chunk texts as Chroma holds them, its wrapped text key) are found on disk;
   then it is deleted. ``erase_s`` is the time from the DELETE's response until the worker
   has logged both the document's erasure job and the Chroma directory scrub after it;
   the data directory is then scanned for every stored form (``canary_found_after_erase``;
   the same scan as tests/integration/test_erasure.py, tests/forensics.py).

One JSON object goes to stdout (and to ``--json OUT``); progress goes to stderr. Bounded:
``--timeout`` caps the ingest wait; the stack is stopped on exit.
"""

from __future__ import annotations

from core.settings import apply_offline_env

apply_offline_env()  # before anything that could import huggingface / chromadb

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import random  # noqa: E402
import re  # noqa: E402
import secrets  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from concurrent.futures import ThreadPoolExecutor  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

from bench.evalkit import percentile  # noqa: E402
from bench.stack import LocalStack, local_stack, tree_rss_mb  # noqa: E402
from service.client import DocqaClient  # noqa: E402
from tests.forensics import files_containing  # noqa: E402

EVAL_DIR = Path(__file__).resolve().parents[2] / "shared" / "eval"
UPLOAD_WORKERS = 8
TENANT = "bench"
_SENTENCE = re.compile(r"(?<=[.!?])\s+")


def log(msg: str) -> None:
    sys.stderr.write(f"[bench.scale] {time.strftime('%H:%M:%S')} {msg}\n")
    sys.stderr.flush()


@dataclass(frozen=True)
class Corpus:
    texts: list[str]  # SQuAD paragraphs and SciFact abstracts, in file order
    questions: list[str]  # held out: SQuAD test-split questions and SciFact claims


def load_corpus(eval_dir: Path = EVAL_DIR) -> Corpus:
    from bench import scifact, squad2

    sq = squad2.load(eval_dir / "squad2" / "dev-v2.0.json")
    sf = scifact.load(eval_dir / "scifact")
    texts = [d.text for d in sq.docs] + [d.text for d in sf.docs]
    rng = random.Random(7)  # noqa: S311 - benchmark sample
    squad_q = [q.question for q in sq.questions["test"] if q.answerable]
    claims = list(sf.queries.values())
    questions = rng.sample(squad_q, min(200, len(squad_q))) + rng.sample(claims, 200)
    rng.shuffle(questions)
    return Corpus(texts, questions)


def variant(text: str, rep: int, serial: int) -> str:
    """Pass ``rep`` over the corpus: the text itself first, then its sentences rotated by
    ``rep`` and a reference line, so no two documents (nor their chunks) are the same."""
    if rep == 0:
        return text
    sentences = _SENTENCE.split(text.strip())
    k = rep % len(sentences)
    body = " ".join(sentences[k:] + sentences[:k])
    return f"Record {rep}-{serial:06d}. {body}\n\nFiled under reference R{rep:03d}/{serial}."


def count_chunks(texts: list[str], size: int, overlap: int) -> list[int]:
    """How many chunks the service makes of each text (its chunker)."""
    from core.domain import Page
    from ingest.chunking import chunk_pages

    return [len(chunk_pages("x", [Page(1, t, 0)], size, overlap, b"k" * 32)) or 1
            for t in texts]


def chunking(chunk_words: int | None) -> tuple[int, int]:
    """(size, overlap) in words: the service's defaults, or ``chunk_words`` with the same
    overlap ratio."""
    from core.settings import Settings

    s = Settings().chunking
    if chunk_words is None:
        return s.size, s.overlap
    return chunk_words, max(1, chunk_words * s.overlap // s.size)


def build_documents(corpus: Corpus, chunks: int, paras_per_doc: int,
                    size: int, overlap: int) -> tuple[list[tuple[str, bytes]], int]:
    """(filename, bytes) of documents holding about ``chunks`` chunks, and their count."""
    docs: list[tuple[str, bytes]] = []
    total, rep, serial = 0, 0, 0
    base = corpus.texts
    while total < chunks:
        for i in range(0, len(base), paras_per_doc):
            batch = [variant(t, rep, serial + j) for j, t in enumerate(base[i:i + paras_per_doc])]
            text = "\n\n".join(batch)
            n = count_chunks([text], size, overlap)[0]
            docs.append((f"r{rep:03d}-{serial:06d}.txt", text.encode()))
            serial += len(batch)
            total += n
            if total >= chunks:
                break
        rep += 1
    return docs, total


# ---------------------------------------------------------------- measurements


def du(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.exists() else 0


def ingest(client: DocqaClient, docs: list[tuple[str, bytes]], timeout: float
           ) -> tuple[dict[str, Any], float]:
    t0 = time.perf_counter()

    def upload(d: tuple[str, bytes]) -> str:
        return str(client.upload_bytes(d[0], d[1])["id"])

    with ThreadPoolExecutor(max_workers=UPLOAD_WORKERS) as pool:
        ids = list(pool.map(upload, docs))
    log(f"uploaded {len(ids)} documents in {time.perf_counter() - t0:.0f} s")
    last = [0.0]

    def progress(done: int, total: int) -> None:
        if time.perf_counter() - last[0] > 30 or done == total:
            last[0] = time.perf_counter()
            log(f"finished {done}/{total} ({last[0] - t0:.0f} s)")

    final = client.wait_ready(ids, timeout=timeout, on_progress=progress)
    return dict(final), time.perf_counter() - t0


class RssSampler:
    """The tree RSS of a process every ``interval`` seconds, in a thread, from entering the
    ``with`` block to leaving it: the worker's peak during the ingest, which its RSS at the
    end does not show (a child may just have been replaced)."""

    def __init__(self, pid: int, interval: float = 15.0) -> None:
        self.pid, self.interval = pid, interval
        self.samples: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def _run(self) -> None:
        while True:
            self.samples.append(tree_rss_mb(self.pid))
            if self._stop.wait(self.interval):
                return

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def report(self, prefix: str) -> dict[str, Any]:
        live = [v for v in self.samples if v > 0]  # 0: the process was gone
        return {f"{prefix}_max_mb": max(live, default=None),
                f"{prefix}_median_mb": round(statistics.median(live), 1) if live else None,
                f"{prefix}_samples": len(live)}


def timed(fn: Any, items: list[str]) -> list[float]:
    out = []
    for q in items:
        t0 = time.perf_counter()
        fn(q)
        out.append((time.perf_counter() - t0) * 1000)
    return out


def _ms(values: list[float], pct: float) -> float | None:
    v = percentile(values, pct)
    return None if v is None else round(v, 1)


def stored_forms(st: LocalStack, doc_id: str) -> list[bytes]:
    """What the disk holds of a document: 40 characters of each sealed chunk text as Chroma
    stores it, and its wrapped text key in the registry."""
    import chromadb
    from chromadb.config import Settings as ChromaClientSettings

    from core.keystore import SqliteKeyStore
    from core.textcrypt import TEXT_KEY, text_key_id
    from ingest.store import tenant_get

    client = chromadb.HttpClient(host="127.0.0.1", port=st.chroma_port,
                                 settings=ChromaClientSettings(anonymized_telemetry=False))
    res = tenant_get(client, TENANT, where={"document_id": doc_id}, include=["metadatas"])
    forms = [str(m[TEXT_KEY])[20:60].encode() for m in res["metadatas"]]
    wrapped = SqliteKeyStore(st.data_dir / "registry.sqlite3").get(text_key_id(doc_id))
    return forms + ([wrapped] if wrapped else [])


def erase(st: LocalStack, client: DocqaClient, timeout: float) -> dict[str, Any]:
    canary = "SCALECANARY" + secrets.token_hex(8).upper()
    token = "zorblaxif" + secrets.token_hex(3)
    text = (f"Confidential settlement memo. The settlement codeword is {canary}.\n"
            f"The {token} programme pays the claimant in three instalments.\n"
            f"Only the legal team may read the {token} file.\n")
    doc = client.upload_bytes("settlement.txt", text.encode())
    status = client.wait_ready([doc["id"]], timeout=600)[doc["id"]]["status"]
    if status != "ready":
        raise RuntimeError(f"the canary document ended {status}")
    needles = [canary.encode(), canary.lower().encode(), token[:9].encode()]
    forms = stored_forms(st, doc["id"])
    seen_before = bool(forms) and bool(files_containing(st.data_dir, forms))
    needles += forms
    worker_log = st.data_dir / "logs" / "worker.log"
    offset = worker_log.stat().st_size
    client.delete(doc["id"])
    t0 = time.monotonic()
    erased_at = scrubbed_at = None
    report = ""
    while time.monotonic() - t0 < timeout and scrubbed_at is None:
        with worker_log.open("rb") as fh:  # what the worker logged since the DELETE
            fh.seek(offset)
            new = fh.read().decode(errors="replace")
        m = re.search(rf"document {doc['id']} erased everywhere: (.*)", new)
        if m and erased_at is None:
            erased_at, report = time.monotonic(), m.group(1)
        if erased_at is not None and "Chroma directory scrubbed" in new:
            scrubbed_at = time.monotonic()
        time.sleep(0.2)
    if scrubbed_at is None:
        return {"erase_s": None, "canary_found_after_erase": None,
                "erase_error": f"not erased within {timeout:.0f} s"}
    left = files_containing(st.data_dir, needles)
    return {"erase_s": round(scrubbed_at - t0, 2),
            "erase_job_s": round((erased_at or scrubbed_at) - t0, 2),
            "canary_found_after_erase": bool(left), "canary_files": sorted(left),
            "canary_seen_before_erase": seen_before, "erase_report": report[:2000]}


def run(chunks: int, data: Path, redis_url: str | None, shards: int | None, queries: int,
        paras_per_doc: int, timeout: float, chunk_words: int | None = None) -> dict[str, Any]:
    corpus = load_corpus()
    size, overlap = chunking(chunk_words)
    docs, planned = build_documents(corpus, chunks, paras_per_doc, size, overlap)
    log(f"{len(docs)} documents, {planned} chunks of {size} words planned")
    extra = {"DOCQA_CHROMA__SHARDS": str(shards)} if shards else {}
    if chunk_words is not None:
        extra |= {"DOCQA_CHUNKING__SIZE": str(size), "DOCQA_CHUNKING__OVERLAP": str(overlap)}
    with local_stack(data, redis_url, TENANT, extra) as st, \
            DocqaClient(st.url, st.key, timeout=300, wait_on_429_s=600) as client:
        with RssSampler(st.pid("worker")) as worker_rss:
            final, seconds = ingest(client, docs, timeout)
        ready = [d for d in final.values() if d["status"] == "ready"]
        stored = sum(int(d.get("chunks") or 0) for d in ready)
        log(f"{len(ready)}/{len(docs)} ready, {stored} chunks, {seconds:.0f} s")
        qs = corpus.questions[:queries]
        asks = corpus.questions[queries:2 * queries] or qs
        client.search(qs[0], top_k=10, mode="hybrid")  # warm: first-call costs aside
        client.ask(asks[0])
        search_ms = timed(lambda q: client.search(q, top_k=10, mode="hybrid"), qs)
        ask_ms = timed(client.ask, asks)
        log(f"search p50 {_ms(search_ms, 50)} ms, ask p50 {_ms(ask_ms, 50)} ms")
        chroma_bytes = du(data / "chroma")
        kw_bytes = sum(p.stat().st_size for p in data.glob("keywords.sqlite3*"))
        report: dict[str, Any] = {
            "chunks": stored,
            "chunks_requested": chunks,
            "documents": len(docs),
            "chunk_words": size,
            "documents_ready": len(ready),
            "ingest_s": round(seconds, 1),
            "ingest_docs_per_s": round(len(ready) / seconds, 2),
            "ingest_chunks_per_s": round(stored / seconds, 2),
            "search_p50_ms": _ms(search_ms, 50),
            "search_p95_ms": _ms(search_ms, 95),
            "ask_p50_ms": _ms(ask_ms, 50),
            "ask_p95_ms": _ms(ask_ms, 95),
            "queries": len(search_ms),
            "api_rss_mb": tree_rss_mb(st.pid("api")),
            "worker_rss_mb": tree_rss_mb(st.pid("worker")),
            **worker_rss.report("worker_rss_ingest"),
            "chroma_rss_mb": tree_rss_mb(st.pid("chroma")),
            "chroma_bytes_per_chunk": round(chroma_bytes / max(stored, 1)),
            "keyword_bytes_per_chunk": round(kw_bytes / max(stored, 1)),
            "chroma_bytes": chroma_bytes,
            "shards": shards or _default_shards(),
            "paras_per_doc": paras_per_doc,
            "chunk_embedding_backend": _chunk_backend(),
            "cpu_count": os.cpu_count(),
        }
        report.update(erase(st, client, timeout=600))
    return report


def _default_shards() -> int:
    from core.settings import Settings

    return Settings().chroma.shards


def _chunk_backend() -> str:
    """The chunks' embedding backend the stack ran with (it inherits this environment)."""
    from core.settings import Settings
    from ingest.embedding import chunk_backend

    return chunk_backend(Settings())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.scale", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--chunks", type=int, required=True, help="chunks in the tenant")
    ap.add_argument("--json", type=Path, default=None, dest="json_out")
    ap.add_argument("--data", type=Path, default=None,
                    help="data directory (fresh; default: a temporary one, removed after)")
    ap.add_argument("--redis-url", default=None,
                    help="a Redis database to use (flushed); default: a private redis-server")
    ap.add_argument("--shards", type=int, default=None, help="DOCQA_CHROMA__SHARDS")
    ap.add_argument("--queries", type=int, default=50, help="searches and asks, each")
    ap.add_argument("--paras-per-doc", type=int, default=1,
                    help="corpus texts per document (fewer, larger documents)")
    ap.add_argument("--chunk-words", type=int, default=None,
                    help="chunk size in words (DOCQA_CHUNKING__SIZE; default: the service's)")
    ap.add_argument("--timeout", type=float, default=6 * 3600.0, help="ingest wait, seconds")
    args = ap.parse_args(argv)
    if args.chunks < 1 or args.queries < 1 or args.paras_per_doc < 1:
        ap.error("--chunks, --queries and --paras-per-doc must be positive")
    if args.data is not None:
        if args.data.exists() and any(args.data.iterdir()):
            ap.error(f"--data {args.data} is not empty")
        report = run(args.chunks, args.data, args.redis_url, args.shards, args.queries,
                     args.paras_per_doc, args.timeout, args.chunk_words)
    else:
        with tempfile.TemporaryDirectory(prefix="docqa-scale-") as tmp:
            report = run(args.chunks, Path(tmp), args.redis_url, args.shards, args.queries,
                         args.paras_per_doc, args.timeout, args.chunk_words)
    text = json.dumps(report, indent=2)
    sys.stdout.write(text + "\n")
    if args.json_out:
        args.json_out.parent.mkdir(parents=True, exist_ok=True)
        args.json_out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
