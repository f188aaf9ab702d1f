"""Ingest throughput and ask latency benchmark against a running docqa service.

    python -m bench.ingest --url http://127.0.0.1:8080 --api-key KEY
        [--squad ../shared/eval/squad2/dev-v2.0.json] [--questions 50] [--limit N] [--json OUT]

Every SQuAD 2.0 dev paragraph (1,204 of them) becomes one text document.

Phase 1 (service): wall time from the first upload until every document is ``ready`` or
``failed`` (8 upload threads, then ``wait_ready``).
Phase 2 (raw encode): the same texts through ``SentenceTransformerEmbedder`` in this process
(one untimed warm-up call first) -- the ceiling the service's embedding stage can reach.
Phase 3 (ask): wall time of ``/v1/ask`` for N answerable questions chosen with
``random.Random(7)``.

One JSON object goes to stdout (and to ``--json OUT``); progress goes to stderr. Use a fresh
tenant: uploads of bytes the tenant already has come back as duplicates and finish instantly.
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
import sys  # noqa: E402
import time  # noqa: E402
from concurrent.futures import ThreadPoolExecutor, as_completed  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402
from urllib.parse import urlsplit  # noqa: E402

import httpx  # noqa: E402

from bench.evalkit import percentile  # noqa: E402
from service.client import DocqaAPIError, DocqaClient, UploadAccepted  # noqa: E402

DEFAULT_SQUAD = Path(__file__).resolve().parents[2] / "shared/eval/squad2/dev-v2.0.json"
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


def _rate(n: int, seconds: float) -> float | None:
    return n / seconds if seconds > 0 else None


def _round(x: float | None, digits: int = 4) -> float | None:
    return None if x is None else round(x, digits)


# ---------------------------------------------------------------- phase 1: service


def bench_service(client: DocqaClient, paras: list[Paragraph], ready_timeout: float
                  ) -> dict[str, Any]:
    n = len(paras)
    ids: list[str] = []
    duplicates = 0
    upload_errors: list[str] = []
    done = 0

    def upload(p: Paragraph) -> UploadAccepted:
        return client.upload_bytes(p.filename, p.context.encode("utf-8"), p.metadata)

    log(f"phase 1: uploading {n} documents with {UPLOAD_WORKERS} threads")
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
    log(f"phase 1: waiting for {len(unique_ids)} documents (timeout {ready_timeout:.0f}s)")
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
    log(f"phase 1: {ready} ready, {failed} failed in {seconds:.1f}s")
    return result


# ---------------------------------------------------------------- phase 2: raw encode


def bench_raw_encode(paras: list[Paragraph]) -> tuple[dict[str, Any], dict[str, Any]]:
    model_path = Settings().models.resolved_embedding_path()
    texts = [p.context for p in paras]
    log(f"phase 2: loading {model_path}")
    t = time.perf_counter()
    embedder = SentenceTransformerEmbedder(model_path, batch_size=ENCODE_BATCH)
    load_s = time.perf_counter() - t
    embedder.embed(texts[:WARMUP_TEXTS])  # warm-up, untimed
    log(f"phase 2: encoding {len(texts)} texts (batch {ENCODE_BATCH})")
    t = time.perf_counter()
    vectors = embedder.embed(texts)
    seconds = time.perf_counter() - t
    log(f"phase 2: {seconds:.1f}s")
    info: dict[str, Any] = {"embedding_model": str(model_path), "embedding_dim": embedder.dimension}
    try:
        import sentence_transformers
        import torch

        info.update(torch=torch.__version__, torch_threads=torch.get_num_threads(),
                    sentence_transformers=sentence_transformers.__version__)
    except ImportError:  # pragma: no cover
        pass
    result = {
        "seconds": round(seconds, 3),
        "docs_per_s": _round(_rate(len(vectors), seconds)),
        "batch_size": ENCODE_BATCH,
        "model_load_seconds": round(load_s, 3),
    }
    del embedder
    return result, info


# ---------------------------------------------------------------- phase 3: ask


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
    log(f"phase 3: asking {len(questions)} questions")
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
    log(f"phase 3: {len(latencies)} ok, {errors + unavailable} errors")
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
    ap.add_argument("--squad", type=Path, default=DEFAULT_SQUAD,
                    help=f"SQuAD 2.0 JSON (default: {DEFAULT_SQUAD})")
    ap.add_argument("--questions", type=int, default=50, help="ask-latency sample size")
    ap.add_argument("--limit", type=int, default=None,
                    help="use only the first N paragraphs (quick runs)")
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


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    host = urlsplit(args.url).hostname or ""
    if host not in ("127.0.0.1", "localhost", "::1"):
        log(f"WARNING: {host!r} is not a loopback address")

    paras = load_squad(args.squad, args.limit)
    log(f"{len(paras)} paragraphs from {args.squad}")
    questions = pick_questions(paras, args.questions)

    with DocqaClient(args.url, args.api_key, timeout=300.0, wait_on_429_s=600) as client:
        if not client.healthy():
            log(f"WARNING: {args.url}/readyz is not 200; continuing anyway")
        service = bench_service(client, paras, args.ready_timeout)
        raw, model_info = bench_raw_encode(paras)
        ask = bench_ask(client, questions) if questions else {"n": 0}

    ratio = None
    if service["docs_per_s"] is not None and raw["docs_per_s"]:
        ratio = round(service["docs_per_s"] / raw["docs_per_s"], 4)
    report = {
        "documents": len(paras),
        "service": service,
        "raw_encode": raw,
        "ratio_service_to_raw": ratio,
        "ask": ask,
        "config": {
            "url": args.url,
            "cpu_count": os.cpu_count(),
            "sched_cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
            else None,
            "upload_workers": UPLOAD_WORKERS,
            "squad": str(args.squad),
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
