"""Ingest throughput of three systems in one run, and ask latency, against a running docqa.

    python -m bench.ingest --url http://127.0.0.1:8080 --api-key KEY
        [--corpus squad2|scifact] [--squad FILE] [--scifact DIR] [--limit N]
        [--questions 50] [--no-baseline] [--json OUT]

The documents: every SQuAD 2.0 dev paragraph (1,204), or every SciFact abstract (5,183: the
title, a blank line, the text), each one text document.

Phase 1 (raw encode, before): the documents' chunk texts (the service's own chunker and
settings) through ``SentenceTransformer.encode`` (torch, batch 32) in this process, one
untimed warm-up call first: the bar the service must reach.
Phase 2 (service), after one small warm-up document of its own (untimed, like the raw
encode's warm-up call): wall time from the first upload until every document is ``ready`` or
``failed`` (8 upload threads, then ``wait_ready``): parse, chunk, embed the chunks and their
sentence units, store, verify.
Phase 3 (raw encode, after): phase 1 again. The machine is shared, so the raw figure is
the two runs together (their documents over their seconds); both are reported.
Phase 4 (baseline): the llama-index baseline's ingest of the same texts (bench/baseline.py:
``VectorStoreIndex.from_documents`` with its HuggingFace MiniLM into a fresh collection of
the same Chroma server, dropped afterwards).
Phase 5 (ask): wall time of ``/v1/ask`` for N answerable questions (SQuAD only) chosen with
``random.Random(7)``.

One JSON object goes to stdout (and to ``--json OUT``) with ``ratio_service_to_raw`` and
``ratio_service_to_baseline``; progress goes to stderr. Only ratios within one run mean
anything on a shared machine. Use a fresh tenant: uploads of bytes the tenant already has
come back as duplicates and finish instantly.
"""

from __future__ import annotations

from core.settings import Settings, apply_offline_env
from ingest.embedding import SentenceTransformerEmbedder

apply_offline_env()  # before anything that could import huggingface / chromadb

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import platform  # noqa: E402
import random  # noqa: E402
import secrets  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from concurrent.futures import ThreadPoolExecutor, as_completed  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402
from urllib.parse import urlsplit  # noqa: E402

import httpx  # noqa: E402

from bench.evalkit import percentile  # noqa: E402
from core.domain import Page  # noqa: E402
from ingest.chunking import chunk_pages  # noqa: E402
from service.client import DocqaAPIError, DocqaClient, UploadAccepted  # noqa: E402

EVAL_DIR = Path(os.environ.get("DOCQA_EVAL_DIR")
                or Path(__file__).resolve().parents[2] / "shared" / "eval")
DEFAULT_SQUAD = EVAL_DIR / "squad2" / "dev-v2.0.json"
DEFAULT_SCIFACT = EVAL_DIR / "scifact"
UPLOAD_WORKERS = 8
ENCODE_BATCH = 32
WARMUP_TEXTS = 8
QUESTION_SEED = 7


def log(msg: str) -> None:
    sys.stderr.write(f"[bench.ingest] {msg}\n")
    sys.stderr.flush()


@dataclass
class Paragraph:
    article: int
    paragraph: int
    title: str
    context: str
    questions: list[str] = field(default_factory=list)  # answerable ones only

    @property
    def filename(self) -> str:
        return f"{self.article:02d}-{self.paragraph:03d}.txt"

    @property
    def metadata(self) -> dict[str, Any]:
        return {"title": self.title, "article": self.article, "paragraph": self.paragraph}


def load_squad(path: Path, limit: int | None = None) -> list[Paragraph]:
    """Read SQuAD 2.0 JSON; a question is answerable when it has a non-empty ``answers`` list
    (and ``is_impossible``, when present, is not true)."""
    raw = json.loads(path.read_text(encoding="utf-8"))
    out: list[Paragraph] = []
    for i, article in enumerate(raw["data"]):
        for j, para in enumerate(article["paragraphs"]):
            questions = [
                qa["question"] for qa in para.get("qas", [])
                if qa.get("answers") and not qa.get("is_impossible", False)
            ]
            out.append(Paragraph(i, j, article.get("title", ""), para["context"], questions))
            if limit is not None and len(out) >= limit:
                return out
    return out


def load_scifact(root: Path, limit: int | None = None) -> list[Paragraph]:
    """SciFact abstracts as bench/scifact.py uploads them (title, blank line, text)."""
    out: list[Paragraph] = []
    with (root / "corpus.jsonl").open(encoding="utf-8") as fh:
        for i, line in enumerate(fh):
            row = json.loads(line)
            text = f"{row.get('title', '').strip()}\n\n{row.get('text', '').strip()}".strip()
            out.append(Paragraph(i, 0, str(row["_id"]), text))
            if limit is not None and len(out) >= limit:
                break
    return out


def chunk_texts(paras: list[Paragraph]) -> list[str]:
    """The texts the service embeds as chunks: its own chunker, with its settings."""
    c = Settings().chunking
    return [chunk.text for k, p in enumerate(paras)
            for chunk in chunk_pages(f"bench-{k}", [Page(1, p.context, 0)], c.size, c.overlap,
                                     b"bench")]


def _rate(n: int, seconds: float) -> float | None:
    return n / seconds if seconds > 0 else None


def _round(x: float | None, digits: int = 4) -> float | None:
    return None if x is None else round(x, digits)


# ---------------------------------------------------------------- service


def bench_service(client: DocqaClient, paras: list[Paragraph], ready_timeout: float
                  ) -> dict[str, Any]:
    n = len(paras)
    ids: list[str] = []
    duplicates = 0
    upload_errors: list[str] = []
    done = 0

    def upload(p: Paragraph) -> UploadAccepted:
        return client.upload_bytes(p.filename, p.context.encode("utf-8"), p.metadata)

    log(f"service: uploading {n} documents with {UPLOAD_WORKERS} threads")
    t0 = time.perf_counter()
    with ThreadPoolExecutor(max_workers=UPLOAD_WORKERS) as pool:
        futures = {pool.submit(upload, p): p for p in paras}
        for fut in as_completed(futures):
            p = futures[fut]
            try:
                res = fut.result()
            except (DocqaAPIError, httpx.HTTPError) as exc:
                upload_errors.append(f"{p.filename}: {exc}")
            else:
                ids.append(res["id"])
                duplicates += bool(res.get("duplicate"))
            done += 1
            if done % 200 == 0 or done == n:
                log(f"  uploaded {done}/{n} ({time.perf_counter() - t0:.1f}s)")
    upload_s = time.perf_counter() - t0

    last_report = [0.0]

    def on_progress(finished: int, total: int) -> None:
        now = time.perf_counter()
        if now - last_report[0] >= 5.0 or finished == total:
            last_report[0] = now
            log(f"  finished {finished}/{total} ({now - t0:.1f}s)")

    timed_out = False
    unique_ids = list(dict.fromkeys(ids))  # identical bytes within the run map to one id
    log(f"service: waiting for {len(unique_ids)} documents (timeout {ready_timeout:.0f}s)")
    try:
        final = client.wait_ready(unique_ids, timeout=ready_timeout, on_progress=on_progress)
    except TimeoutError as exc:
        timed_out = True
        log(f"  {exc}")
        final = {}
    seconds = time.perf_counter() - t0
    if timed_out:  # count what did finish
        try:
            final = {d["id"]: d for d in client.statuses(unique_ids)["items"]
                     if d["status"] in ("ready", "failed")}
        except (DocqaAPIError, httpx.HTTPError) as exc:
            log(f"  statuses not read: {exc}")

    statuses = [d["status"] for d in final.values()]
    ready = statuses.count("ready")
    failed = statuses.count("failed")
    result: dict[str, Any] = {
        "seconds": round(seconds, 3),
        "docs_per_s": _round(_rate(ready, seconds)),
        "ready": ready,
        "failed": failed,
        "duplicates": duplicates,
        "upload_seconds": round(upload_s, 3),
        "upload_errors": len(upload_errors),
        "unique_ids": len(unique_ids),
        "timed_out": timed_out,
        "chunks": sum(int(d.get("chunks") or 0) for d in final.values()),
    }
    if upload_errors:
        result["upload_error_samples"] = upload_errors[:5]
    failed_errors = [d.get("error") for d in final.values() if d["status"] == "failed"]
    if failed_errors:
        result["failed_error_samples"] = failed_errors[:5]
    if duplicates and duplicates >= len(ids):
        result["warning"] = ("every upload was a duplicate: nothing was ingested in this run, "
                             "docs_per_s is meaningless; use a fresh tenant")
    elif duplicates:
        result["warning"] = (f"{duplicates} of {len(ids)} uploads were duplicates (already "
                             "ingested in this tenant); docs_per_s is inflated; use a fresh tenant")
    if timed_out:
        result["warning"] = (result.get("warning", "") + "; " if "warning" in result else "") + \
            f"not all documents finished within {ready_timeout:.0f}s"
    if "warning" in result:
        log(f"WARNING: {result['warning']}")
    log(f"service: {ready} ready, {failed} failed in {seconds:.1f}s")
    return result


def warm_service(client: DocqaClient, timeout: float = 600.0) -> None:
    """One small document of its own through the service, untimed, as the raw encode gets
    its warm-up call: a worker child that has just started (or been replaced) finishes
    loading and running its models on it, not on the first timed document."""
    text = f"Warm-up document {secrets.token_hex(8)}. It is not part of the benchmark."
    doc = client.upload_bytes("warm-up.txt", text.encode("utf-8"), {})
    client.wait_ready([doc["id"]], timeout=timeout)


# ---------------------------------------------------------------- raw encode and baseline


def load_raw_encoder() -> tuple[SentenceTransformerEmbedder, dict[str, Any]]:
    model_path = Settings().models.resolved_embedding_path()
    log(f"raw encode: loading {model_path}")
    t = time.perf_counter()
    embedder = SentenceTransformerEmbedder(model_path, batch_size=ENCODE_BATCH)
    info: dict[str, Any] = {"embedding_model": str(model_path),
                            "embedding_dim": embedder.dimension,
                            "model_load_seconds": round(time.perf_counter() - t, 3)}
    try:
        import sentence_transformers
        import torch

        info.update(torch=torch.__version__, torch_threads=torch.get_num_threads(),
                    sentence_transformers=sentence_transformers.__version__)
    except ImportError:  # pragma: no cover
        pass
    return embedder, info


def bench_raw_encode(embedder: SentenceTransformerEmbedder, texts: list[str], documents: int,
                     label: str) -> dict[str, Any]:
    embedder.embed(texts[:WARMUP_TEXTS])  # warm-up, untimed
    log(f"{label}: encoding {len(texts)} chunk texts of {documents} documents "
        f"(torch, batch {ENCODE_BATCH})")
    t = time.perf_counter()
    embedder.embed(texts)
    seconds = time.perf_counter() - t
    log(f"{label}: {seconds:.1f}s")
    return {"seconds": round(seconds, 3), "docs_per_s": _round(_rate(documents, seconds)),
            "chunks": len(texts), "batch_size": ENCODE_BATCH}


def bench_baseline(paras: list[Paragraph]) -> dict[str, Any]:
    """The llama-index baseline's ingest of the same texts (its own embedding and Chroma
    writes), into a collection of its own that is dropped afterwards."""
    from bench.baseline import baseline_ingest

    settings = Settings()
    collection = f"bench_ingest_baseline_{os.getpid()}_{int(time.time())}"
    log(f"baseline: llama-index ingest of {len(paras)} documents into {collection}")
    result = baseline_ingest(settings, [p.context for p in paras], collection, drop=True)
    log(f"baseline: {result['seconds']:.1f}s")
    return {"seconds": round(result["seconds"], 3),
            "docs_per_s": _round(_rate(len(paras), result["seconds"])),
            "nodes": result["nodes"]}


# ---------------------------------------------------------------- ask


def pick_questions(paras: list[Paragraph], n: int) -> list[str]:
    pool = [q for p in paras for q in p.questions]
    rng = random.Random(QUESTION_SEED)  # noqa: S311 - deterministic sample, not crypto
    return rng.sample(pool, min(n, len(pool)))


def bench_ask(client: DocqaClient, questions: list[str]) -> dict[str, Any]:
    latencies: list[float] = []
    server_ms: list[float] = []
    counts = {"answered": 0, "not_found": 0, "other": 0}
    errors = unavailable = 0
    error_samples: list[str] = []
    log(f"ask: asking {len(questions)} questions")
    for k, question in enumerate(questions, 1):
        if k > 1 and (k - 1) % 10 == 0:
            log(f"  {k - 1}/{len(questions)}")
        t = time.perf_counter()
        try:
            res = client.ask(question)
        except DocqaAPIError as exc:
            if exc.status == 503:
                unavailable += 1
            else:
                errors += 1
            error_samples.append(str(exc))
            continue
        except httpx.HTTPError as exc:
            errors += 1
            error_samples.append(f"{type(exc).__name__}: {exc}")
            continue
        latencies.append(time.perf_counter() - t)
        status = res.get("status")
        counts[status if status in counts else "other"] += 1
        total_ms = (res.get("timings") or {}).get("total_ms")
        if isinstance(total_ms, int | float):
            server_ms.append(float(total_ms))
    log(f"ask: {len(latencies)} ok, {errors + unavailable} errors")
    result: dict[str, Any] = {
        "n": len(questions),
        "p50_s": _round(percentile(latencies, 50)),
        "p95_s": _round(percentile(latencies, 95)),
        "mean_s": _round(sum(latencies) / len(latencies) if latencies else None),
        "max_s": _round(max(latencies) if latencies else None),
        "answered": counts["answered"],
        "not_found": counts["not_found"],
        "other_status": counts["other"],
        "errors": errors,
        "http_503": unavailable,
        "server_total_ms_p50": _round(percentile(server_ms, 50), 1),
    }
    if error_samples:
        result["error_samples"] = error_samples[:5]
    return result


# ---------------------------------------------------------------- main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m bench.ingest", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--url", required=True, help="service base URL, e.g. http://127.0.0.1:8080")
    ap.add_argument("--api-key", required=True, help="API key of a fresh tenant")
    ap.add_argument("--corpus", choices=("squad2", "scifact"), default="squad2",
                    help="SQuAD 2.0 dev paragraphs or SciFact abstracts (default squad2)")
    ap.add_argument("--squad", type=Path, default=DEFAULT_SQUAD,
                    help=f"SQuAD 2.0 JSON (default: {DEFAULT_SQUAD})")
    ap.add_argument("--scifact", type=Path, default=DEFAULT_SCIFACT,
                    help=f"SciFact folder with corpus.jsonl (default: {DEFAULT_SCIFACT})")
    ap.add_argument("--questions", type=int, default=50,
                    help="ask-latency sample size (SQuAD only)")
    ap.add_argument("--limit", type=int, default=None,
                    help="use only the first N documents (quick runs)")
    ap.add_argument("--no-baseline", action="store_true",
                    help="skip the llama-index baseline (no ratio_service_to_baseline)")
    ap.add_argument("--json", type=Path, default=None, dest="json_out",
                    help="also write the result JSON here")
    ap.add_argument("--ready-timeout", type=float, default=3600.0,
                    help="seconds to wait for all documents to finish (default 3600)")
    args = ap.parse_args(argv)
    if args.limit is not None and args.limit < 1:
        ap.error("--limit must be >= 1")
    if args.questions < 0:
        ap.error("--questions must be >= 0")
    return args


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 4) if a is not None and b else None


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    host = urlsplit(args.url).hostname or ""
    if host not in ("127.0.0.1", "localhost", "::1"):
        log(f"WARNING: {host!r} is not a loopback address")

    if args.corpus == "scifact":
        paras, source = load_scifact(args.scifact, args.limit), args.scifact
    else:
        paras, source = load_squad(args.squad, args.limit), args.squad
    log(f"{len(paras)} documents from {source}")
    questions = pick_questions(paras, args.questions)
    texts = chunk_texts(paras)

    encoder, model_info = load_raw_encoder()
    before = bench_raw_encode(encoder, texts, len(paras), "raw encode (before)")
    with DocqaClient(args.url, args.api_key, timeout=300.0, wait_on_429_s=600) as client:
        if not client.healthy():
            log(f"WARNING: {args.url}/readyz is not 200; continuing anyway")
        warm_service(client)
        service = bench_service(client, paras, args.ready_timeout)
        after = bench_raw_encode(encoder, texts, len(paras), "raw encode (after)")
        del encoder
        baseline = None if args.no_baseline else bench_baseline(paras)
        ask = bench_ask(client, questions) if questions else {"n": 0}

    raw_seconds = before["seconds"] + after["seconds"]
    raw: dict[str, Any] = {
        "docs_per_s": _round(_rate(2 * len(paras), raw_seconds)), "chunks": len(texts),
        "batch_size": ENCODE_BATCH, "before": before, "after": after}
    report = {
        "documents": len(paras),
        "corpus": args.corpus,
        "service": service,
        "raw_encode": raw,
        "baseline": baseline,
        "ratio_service_to_raw": _ratio(service["docs_per_s"], raw["docs_per_s"]),
        "ratio_service_to_baseline": _ratio(service["docs_per_s"],
                                            baseline["docs_per_s"] if baseline else None),
        "ask": ask,
        "config": {
            "url": args.url,
            "cpu_count": os.cpu_count(),
            "sched_cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
            else None,
            "load_average": os.getloadavg(),
            "upload_workers": UPLOAD_WORKERS,
            "source": str(source),
            "limit": args.limit,
            "questions_requested": args.questions,
            "question_seed": QUESTION_SEED,
            "python": platform.python_version(),
            "platform": platform.platform(),
            "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            **model_info,
        },
    }
    text = json.dumps(report, indent=2)
    sys.stdout.write(text + "\n")
    if args.json_out is not None:
        args.json_out.parent.mkdir(parents=True, exist_ok=True)
        args.json_out.write_text(text + "\n", encoding="utf-8")
        log(f"wrote {args.json_out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
