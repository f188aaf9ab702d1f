"""What waiting costs the service: the API process's CPU while N documents are ingested,
with a client waiting for them and with nobody waiting, in one run.

    python -m bench.waiting --url http://127.0.0.1:8080 --api-key KEY [--docs 1000]
        [--api-pid PID] [--legacy] [--json OUT]

Each phase uploads N small distinct texts (8 upload threads; a fresh tag per phase, so none
is a duplicate) and ends when every one is ready or failed:

* ``unattended``: nobody follows the documents; the bench learns the end from
  ``GET /v1/documents/counts`` every 10 s (one query, a cost included in the figure);
* ``batch``: ``DocqaClient.wait_ready``, what ``docqa ingest`` and the benchmarks use (one
  event stream per 1,000 documents, woken by the workers' pub/sub notices);
* ``legacy`` (``--legacy``): the client of before, ``GET /v1/documents/{id}`` for the
  pending documents in upload order every 0.5 s (stopping at the first unfinished one, a
  full sweep every 20 rounds), for comparison.

The API's CPU time (user + system, every thread; ``/proc/PID/stat``) is read at the start,
when the uploads are done and at the end of each phase. The API is found by the port it
listens on (or ``--api-pid``), so the bench runs on the API's machine: loopback only. The
figure the target is about is ``added_cpu_pct``: the API's CPU during the wait, in % of one
core, with the batch client minus unattended (target < 5). One JSON object goes to stdout
(and to ``--json OUT``); progress goes to stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from service.client import DocqaClient

UPLOAD_WORKERS = 8
COUNTS_EVERY_S = 10.0
LEGACY_POLL_S = 0.5
LOOPBACK = ("127.0.0.1", "localhost", "::1")
TICKS = os.sysconf("SC_CLK_TCK")


def log(msg: str) -> None:
    sys.stderr.write(f"[bench.waiting] {msg}\n")
    sys.stderr.flush()


# ---------------------------------------------------------------- the API process


def listening_pid(port: int) -> int:
    """The process that listens on TCP ``port`` (this machine, same user or root)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            f = line.split()
            if int(f[1].rsplit(":", 1)[1], 16) == port and f[3] == "0A":  # 0A: LISTEN
                inodes.add(f[9])
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            for fd in os.listdir(f"/proc/{pid}/fd"):
                link = os.readlink(f"/proc/{pid}/fd/{fd}")
                if link.startswith("socket:[") and link[8:-1] in inodes:
                    return int(pid)
        except OSError:
            continue
    raise SystemExit(f"no process of ours listens on port {port}: pass --api-pid")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of every thread of ``pid`` so far."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2:].split()  # after "pid (comm) "
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime, stime


# ---------------------------------------------------------------- one phase


def texts(n: int, tag: str) -> list[tuple[str, bytes]]:
    return [(f"{tag}-{i:05d}.txt",
             (f"Inventory note {tag}-{i}. Depot {i % 97} holds {i * 7 % 1000} crates of spare "
              f"parts for line {i % 13}; the count was signed by clerk {i % 31} on day "
              f"{i % 28 + 1}. Shipment {i} leaves on the {i % 5 + 1}th dock.").encode())
            for i in range(n)]


def upload_all(client: DocqaClient, docs: list[tuple[str, bytes]]) -> list[str]:
    with ThreadPoolExecutor(max_workers=UPLOAD_WORKERS) as pool:
        accepted = list(pool.map(lambda d: client.upload_bytes(d[0], d[1]), docs))
    dups = sum(bool(a.get("duplicate")) for a in accepted)
    if dups:
        log(f"  {dups} uploads were duplicates (use a fresh tenant for clean figures)")
    return [a["id"] for a in accepted]


def wait_unattended(client: DocqaClient, ids: list[str], timeout: float) -> None:
    """Nobody follows the documents; the tenant's counts tell when the queue is empty."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        time.sleep(COUNTS_EVERY_S)
        c = client.counts()
        log(f"  counts: {c}")
        if c["queued"] == 0 and c["processing"] == 0:
            return
    raise TimeoutError(f"documents not finished after {timeout}s")


def wait_batch(client: DocqaClient, ids: list[str], timeout: float) -> None:
    client.wait_ready(ids, timeout=timeout)


def wait_legacy(client: DocqaClient, ids: list[str], timeout: float) -> None:
    """The one-document-at-a-time poll the client used before the batch stream."""
    pending, rounds = list(dict.fromkeys(ids)), 0
    deadline = time.monotonic() + timeout
    while pending:
        rounds += 1
        for doc_id in list(pending):
            if client.document(doc_id)["status"] in ("ready", "failed"):
                pending.remove(doc_id)
            elif rounds % 20:
                break
        if pending:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(pending)} documents not finished after {timeout}s")
            time.sleep(LEGACY_POLL_S)


WAITS: dict[str, Callable[[DocqaClient, list[str], float], None]] = {
    "unattended": wait_unattended, "batch": wait_batch, "legacy": wait_legacy}


def run_phase(client: DocqaClient, pid: int, name: str, n: int, timeout: float
              ) -> dict[str, Any]:
    tag = f"{name}-{secrets.token_hex(3)}"
    log(f"phase {name}: uploading {n} documents")
    cpu0, t0 = cpu_seconds(pid), time.monotonic()
    ids = upload_all(client, texts(n, tag))
    cpu1, t1 = cpu_seconds(pid), time.monotonic()
    log(f"phase {name}: uploaded in {t1 - t0:.1f} s; waiting")
    WAITS[name](client, ids, timeout)
    cpu2, t2 = cpu_seconds(pid), time.monotonic()
    statuses = client.statuses(ids)
    ready = sum(d["status"] == "ready" for d in statuses["items"])
    out = {
        "documents": n, "ready": ready,
        "upload_s": round(t1 - t0, 2), "upload_api_cpu_s": round(cpu1 - cpu0, 2),
        "wait_s": round(t2 - t1, 2), "wait_api_cpu_s": round(cpu2 - cpu1, 2),
        "wait_api_cpu_pct": round(100 * (cpu2 - cpu1) / (t2 - t1), 2),
        "total_api_cpu_pct": round(100 * (cpu2 - cpu0) / (t2 - t0), 2),
    }
    log(f"phase {name}: {out}")
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.waiting", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--url", required=True, help="service base URL (loopback)")
    ap.add_argument("--api-key", required=True, help="API key of a fresh tenant")
    ap.add_argument("--docs", type=int, default=1000, help="documents per phase")
    ap.add_argument("--api-pid", type=int, default=None,
                    help="the API's process id (default: the one listening on the URL's port)")
    ap.add_argument("--legacy", action="store_true",
                    help="also measure the old one-document-at-a-time poll")
    ap.add_argument("--timeout", type=float, default=7200.0, help="seconds per phase")
    ap.add_argument("--json", type=Path, default=None, dest="json_out")
    args = ap.parse_args(argv)
    parts = urlsplit(args.url)
    if parts.hostname not in LOOPBACK:
        raise SystemExit(f"bench.waiting reads the API's CPU on this machine: a loopback URL, "
                         f"not {parts.hostname!r}")
    pid = args.api_pid or listening_pid(parts.port or 80)
    log(f"API process {pid}")
    phases = ["unattended", "batch", *(["legacy"] if args.legacy else [])]
    with DocqaClient(args.url, args.api_key, timeout=300.0, wait_on_429_s=600) as client:
        results = {name: run_phase(client, pid, name, args.docs, args.timeout)
                   for name in phases}
    base = results["unattended"]["wait_api_cpu_pct"]
    report: dict[str, Any] = {
        "documents_per_phase": args.docs, "api_pid": pid, "cpu_count": os.cpu_count(),
        "phases": results,
        # what following the documents adds to the API, in % of one core, during the wait
        "added_cpu_pct": {name: round(r["wait_api_cpu_pct"] - base, 2)
                          for name, r in results.items() if name != "unattended"},
        "ratio_to_unattended": {
            name: round(r["wait_api_cpu_pct"] / base, 3) if base else None
            for name, r in results.items() if name != "unattended"},
        "target_added_cpu_pct": 5.0,
    }
    text = json.dumps(report, indent=2)
    sys.stdout.write(text + "\n")
    if args.json_out:
        args.json_out.parent.mkdir(parents=True, exist_ok=True)
        args.json_out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
