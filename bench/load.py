"""Load test: concurrent askers while documents are being ingested (loopback only).

    python -m bench.load --url http://127.0.0.1:8080 --api-key KEY
        [--askers 16] [--duration 60] [--baseline 10] [--seed-docs 100] [--ingest-docs 200]
        [--json OUT]

1. Seed: the first ``--seed-docs`` SQuAD 2.0 paragraphs are uploaded and awaited; their
   questions (answerable and not) are what the askers ask.
2. Baseline: one asker for ``--baseline`` seconds (the same run's reference point).
3. Load: ``--askers`` threads ask in a loop for ``--duration`` seconds while another thread
   uploads the next ``--ingest-docs`` paragraphs.
4. Drain: every document uploaded during the load must end ``ready`` or ``failed``; one
   that is missing or still pending after ``--drain`` seconds counts as lost.

Prints JSON: throughput, p50/p95/p99 latency under load, their ratio to the baseline,
the share of 503s (and whether each carried ``Retry-After``), any other 5xx, 429s, and
the documents' fate. The run is bounded: askers stop at the deadline, requests time out.
Rate limits count against the key: run the service with ``DOCQA_RATE_LIMIT__*=0`` or a
high limit, or the 429 share measures the limiter, not the service.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

from bench.evalkit import EvalDoc, ingest, log, percentile
from bench.squad2 import DEFAULT_PATH, load
from service.client import DocqaAPIError, DocqaClient

LOOPBACK = {"127.0.0.1", "localhost", "::1"}
REQUEST_TIMEOUT_S = 60.0


@dataclass
class Tally:
    latencies: list[float] = field(default_factory=list)
    codes: Counter[int] = field(default_factory=Counter)
    no_retry_after_503: int = 0
    errors: Counter[str] = field(default_factory=Counter)  # transport errors by type
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, code: int, seconds: float, retry_after: bool) -> None:
        with self.lock:
            self.codes[code] += 1
            if code == 200:
                self.latencies.append(seconds)
            if code == 503 and not retry_after:
                self.no_retry_after_503 += 1

    def summary(self, wall_s: float) -> dict[str, Any]:
        total = sum(self.codes.values()) + sum(self.errors.values())
        ok = self.codes.get(200, 0)

        def ms(p: float) -> float | None:
            v = percentile(self.latencies, p)
            return None if v is None else round(v * 1000.0, 1)

        return {
            "requests": total,
            "ok": ok,
            "throughput_per_s": round(ok / wall_s, 2) if wall_s > 0 else None,
            "p50_ms": ms(50), "p95_ms": ms(95), "p99_ms": ms(99),
            "share_503": round(self.codes.get(503, 0) / total, 4) if total else None,
            "503_without_retry_after": self.no_retry_after_503,
            "other_5xx": sum(n for c, n in self.codes.items() if c >= 500 and c != 503),
            "429": self.codes.get(429, 0),
            "other_4xx": sum(n for c, n in self.codes.items()
                             if 400 <= c < 500 and c != 429),
            "status_codes": {str(c): n for c, n in sorted(self.codes.items())},
            "transport_errors": dict(self.errors),
        }


def ask_loop(url: str, key: str, questions: list[str], deadline: float, tally: Tally,
             seed: int) -> None:
    rng = random.Random(seed)
    # one client per thread (last_response is per client); no 429 waiting inside the
    # client: the loop counts every refusal and backs off itself
    with DocqaClient(url, key, timeout=REQUEST_TIMEOUT_S) as client:
        while time.monotonic() < deadline:
            t0 = time.perf_counter()
            try:
                client.ask(rng.choice(questions))
            except DocqaAPIError:
                pass  # counted below by its status
            except httpx.HTTPError as exc:
                with tally.lock:
                    tally.errors[type(exc).__name__] += 1
                continue
            resp = client.last_response
            tally.add(resp.status_code, time.perf_counter() - t0,
                      "retry-after" in resp.headers)
            if resp.status_code in (429, 503):  # a polite client backs off as told
                try:
                    wait = float(resp.headers.get("Retry-After", "1"))
                except ValueError:
                    wait = 1.0
                time.sleep(min(wait, max(0.0, deadline - time.monotonic())))


def run_askers(url: str, key: str, questions: list[str], n: int, seconds: float
               ) -> dict[str, Any]:
    tally = Tally()
    deadline = time.monotonic() + seconds
    threads = [threading.Thread(target=ask_loop, args=(url, key, questions, deadline, tally, i),
                                daemon=True) for i in range(n)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join(seconds + REQUEST_TIMEOUT_S + 5)
    return {"askers": n, "seconds": seconds, **tally.summary(time.perf_counter() - t0)}


def upload_during(url: str, key: str, docs: list[EvalDoc], stop: threading.Event,
                  out: dict[str, Any]) -> None:
    """Upload ``docs`` one by one until done or ``stop``; records accepted ids and refusals."""
    accepted: dict[str, str] = {}
    refused: Counter[str] = Counter()
    with DocqaClient(url, key, timeout=REQUEST_TIMEOUT_S) as client:
        for d in docs:
            if stop.is_set():
                break
            try:
                accepted[client.upload_bytes(d.filename, d.text.encode())["id"]] = d.key
            except DocqaAPIError as exc:
                refused[str(exc.status)] += 1
            except httpx.HTTPError as exc:
                refused[type(exc).__name__] += 1
    out.update(accepted=accepted, refused=dict(refused))


def drain(url: str, key: str, ids: list[str], timeout: float) -> dict[str, int]:
    """Final status of every accepted upload; pending or missing ones after ``timeout`` are
    lost."""
    fate: Counter[str] = Counter()
    with DocqaClient(url, key, timeout=REQUEST_TIMEOUT_S, wait_on_429_s=120) as client:
        final: dict[str, str] = {}
        try:
            for ev in client.follow(ids, timeout=timeout):
                if ev.event != "progress":
                    final[ev.id] = ev.document["status"] if ev.document else "lost (missing)"
        except TimeoutError:
            pass
        left = client.statuses([i for i in ids if i not in final])
        final.update({d["id"]: f"lost ({d['status']} after drain)" for d in left["items"]})
        final.update({i: "lost (missing)" for i in left["missing"]})
        fate.update(final[doc_id] for doc_id in ids)
    return dict(fate)


def run(url: str, key: str, askers: int = 16, duration: float = 60.0, baseline: float = 10.0,
        seed_docs: int = 100, ingest_docs: int = 200, drain_s: float = 600.0,
        squad: Path = DEFAULT_PATH) -> dict[str, Any]:
    host = urlsplit(url).hostname or ""
    if host not in LOOPBACK:
        raise SystemExit(f"bench.load only talks to loopback, not {host!r}")
    data = load(squad)
    seed, extra = data.docs[:seed_docs], data.docs[seed_docs:seed_docs + ingest_docs]
    keys = {d.key for d in seed}
    questions = [q.question for split in data.questions.values() for q in split
                 if set(q.doc_keys) & keys]
    log(f"seeding {len(seed)} documents ({len(questions)} questions)")
    with DocqaClient(url, key, timeout=REQUEST_TIMEOUT_S, wait_on_429_s=120) as client:
        ingest(client, seed)
    log(f"baseline: 1 asker for {baseline:.0f}s")
    base = run_askers(url, key, questions, 1, baseline)
    log(f"load: {askers} askers for {duration:.0f}s while uploading {len(extra)} documents")
    uploads: dict[str, Any] = {}
    stop = threading.Event()
    uploader = threading.Thread(target=upload_during, args=(url, key, extra, stop, uploads))
    t0 = time.monotonic()
    uploader.start()
    loaded = run_askers(url, key, questions, askers, duration)
    stop.set()
    uploader.join(REQUEST_TIMEOUT_S + 5)
    accepted = list(uploads.get("accepted", {}))
    log(f"draining {len(accepted)} uploads")
    fate = drain(url, key, accepted, drain_s)
    ingest_s = time.monotonic() - t0

    def ratio(a: float | None, b: float | None) -> float | None:
        return round(a / b, 2) if a and b else None

    return {
        "baseline": base,
        "load": loaded,
        "ratios": {
            "p50_load_over_baseline": ratio(loaded["p50_ms"], base["p50_ms"]),
            "p95_load_over_baseline": ratio(loaded["p95_ms"], base["p95_ms"]),
            "throughput_load_over_baseline": ratio(loaded["throughput_per_s"],
                                                   base["throughput_per_s"]),
        },
        "documents": {
            "uploaded": len(accepted), "refused": uploads.get("refused", {}),
            "fate": fate,
            "lost": sum(n for s, n in fate.items() if s.startswith("lost")),
            "upload_to_all_done_s": round(ingest_s, 1),
        },
        "config": {"askers": askers, "duration_s": duration, "baseline_s": baseline,
                   "seed_docs": len(seed), "questions": len(questions), "url": url},
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--url", required=True)
    ap.add_argument("--api-key", required=True)
    ap.add_argument("--askers", type=int, default=16)
    ap.add_argument("--duration", type=float, default=60.0)
    ap.add_argument("--baseline", type=float, default=10.0)
    ap.add_argument("--seed-docs", type=int, default=100)
    ap.add_argument("--ingest-docs", type=int, default=200)
    ap.add_argument("--drain", type=float, default=600.0)
    ap.add_argument("--squad", type=Path, default=DEFAULT_PATH)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    result = run(args.url, args.api_key, args.askers, args.duration, args.baseline,
                 args.seed_docs, args.ingest_docs, args.drain, args.squad)
    text = json.dumps(result, indent=2)
    print(text)  # noqa: T201 - the script's output
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(text + "\n")
    bad = result["load"]["other_5xx"] + result["load"]["503_without_retry_after"] \
        + result["documents"]["lost"]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
