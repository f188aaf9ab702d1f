"""Where the CPU of an ingest goes: CPU time per document of each process of the stack,
against the CPU time of a raw encode of the same chunk texts, in one run.

    python -m bench.ingest_cpu [--limit 400] [--corpus squad2|scifact] [--data DIR]
        [--env NAME=VALUE ...] [--json OUT]

Wall-clock rates on this shared two-core machine move with the load; CPU seconds move far
less. A service that spends more CPU per document than the raw encode cannot ingest as fast
as the raw encode on the same cores, so the ratio ``raw_cpu / service_cpu`` is the ceiling of
``ratio_service_to_raw`` (bench/ingest.py) on a machine the ingest has to itself, and the
split by process says which part of the stack a speed-up must come from.

Starts its own stack (bench/stack.py: a private redis-server, the Chroma server, one Celery
worker, the API; loopback only; ``--env`` adds settings such as
``DOCQA_WORKER__BATCH_SIZE=8``) on a fresh data directory, and reads, before the uploads
and after the last document is ``ready``, the CPU time (user + system, from
``/proc/PID/stat``) of each process's tree: every live descendant's own time plus the time
of the children each has reaped (a document's parse child is counted in its zygote's). The
client's own CPU (uploading, waiting) is this process's and is reported apart.

The raw encode is phase 1 of bench/ingest.py (torch ``SentenceTransformer.encode``, batch 32,
one uncounted warm-up), after the stack has stopped, timed by this process's CPU time (all
its threads) and wall time.
One JSON object goes to stdout (and ``--json OUT``); progress to stderr.
"""

from __future__ import annotations

from core.settings import apply_offline_env

apply_offline_env()  # before anything that could import huggingface / chromadb

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import resource  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

from bench.ingest import (  # noqa: E402
    DEFAULT_SCIFACT,
    DEFAULT_SQUAD,
    ENCODE_BATCH,
    WARMUP_TEXTS,
    bench_service,
    chunk_texts,
    load_raw_encoder,
    load_scifact,
    load_squad,
    log,
    warm_service,
)
from bench.stack import local_stack, tree_pids, tree_rss_mb  # noqa: E402
from service.client import DocqaClient  # noqa: E402

_TICK = os.sysconf("SC_CLK_TCK")


def tree_cpu_s(pid: int) -> float:
    """CPU seconds of a process and all its descendants, live or reaped: each live one's
    own time plus that of the children it has reaped."""
    total = 0.0
    for p in tree_pids(pid):
        try:
            raw = Path(f"/proc/{p}/stat").read_text()
        except OSError:  # ended meanwhile: its parent counts it once reaped
            continue
        fields = raw[raw.rindex(")") + 2:].split()  # after "pid (comm) "
        total += sum(int(x) for x in fields[11:15]) / _TICK  # utime stime cutime cstime
    return total


def self_cpu_s() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def run(limit: int | None, corpus: str, data: Path, env: dict[str, str]) -> dict[str, Any]:
    from tests.private_redis import PrivateRedis

    paras = (load_squad(DEFAULT_SQUAD, limit) if corpus == "squad2"
             else load_scifact(DEFAULT_SCIFACT, limit))
    texts = chunk_texts(paras)
    n = len(paras)
    redis = PrivateRedis()
    try:
        with local_stack(data, redis.url + "/0", extra_env=env) as st:
            pids = {**{name: st.pid(name) for name in ("api", "worker", "chroma")},
                    "redis": redis.proc.pid}
            client = DocqaClient(st.url, st.key, timeout=120)
            warm_service(client)  # counted from a warm worker child, as bench.ingest times it
            before = {name: tree_cpu_s(pid) for name, pid in pids.items()}
            client_before = self_cpu_s()
            service = bench_service(client, paras, ready_timeout=6 * 3600.0)
            after = {name: tree_cpu_s(pid) for name, pid in pids.items()}
            rss = {name: tree_rss_mb(pid) for name, pid in pids.items()}
            client_cpu = self_cpu_s() - client_before
    finally:
        redis.stop()
    embedder, info = load_raw_encoder()
    embedder.embed(texts[:WARMUP_TEXTS])  # warm-up, uncounted
    log(f"raw encode: {len(texts)} chunk texts (torch, batch {ENCODE_BATCH})")
    cpu0, wall0 = time.process_time(), time.perf_counter()
    embedder.embed(texts)
    raw_cpu, raw_wall = time.process_time() - cpu0, time.perf_counter() - wall0
    ready = service["ready"] or 1
    per_doc = {name: round(1000 * (after[name] - before[name]) / ready, 1) for name in pids}
    total = round(sum(per_doc.values()), 1)
    raw_ms = round(1000 * raw_cpu / n, 1)
    return {
        "documents": n,
        "chunks": len(texts),
        "service": service,
        "cpu_ms_per_doc": {**per_doc, "total": total},
        "rss_mb_after": rss,
        "client_cpu_ms_per_doc": round(1000 * client_cpu / ready, 1),
        "raw": {"seconds": round(raw_wall, 3), "docs_per_s": round(n / raw_wall, 4),
                "batch_size": ENCODE_BATCH, "cpu_ms_per_doc": raw_ms, **info},
        "ratio_raw_cpu_to_service_cpu": round(raw_ms / total, 3) if total else None,
        "ratio_service_to_raw_wall": (round(service["docs_per_s"] * raw_wall / n, 3)
                                      if service["docs_per_s"] else None),
        "env": env,
        "load_average": os.getloadavg(),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.ingest_cpu", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--limit", type=int, default=400, help="documents (default 400)")
    ap.add_argument("--corpus", choices=("squad2", "scifact"), default="squad2")
    ap.add_argument("--data", type=Path, default=None,
                    help="fresh data directory (default: a temporary one)")
    ap.add_argument("--env", action="append", default=[], metavar="NAME=VALUE",
                    help="a setting for the stack, e.g. DOCQA_WORKER__BATCH_SIZE=8")
    ap.add_argument("--json", type=Path, default=None, dest="json_out")
    args = ap.parse_args(argv)
    env = dict(item.split("=", 1) for item in args.env)
    with tempfile.TemporaryDirectory(prefix="docqa-ingest-cpu-") as tmp:
        result = run(args.limit, args.corpus, args.data or Path(tmp), env)
    out = json.dumps(result, indent=2)
    sys.stdout.write(out + "\n")
    if args.json_out:
        args.json_out.write_text(out + "\n")
    log(f"cpu ms/doc {result['cpu_ms_per_doc']}, raw {result['raw']['cpu_ms_per_doc']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
