"""bench/scale.py scaled down (about 400 short chunks: CI time; the full runs are in
docs/capacity.md): it builds one tenant through its
own real stack (Chroma server, Celery worker, API, on the session's redis-server), and its
report has the promised shape: every document ready, percentiles in order, a positive
DELETE-to-erased time and no byte of the erased document left on disk. No timing is
asserted (the machine may be busy); the benchmark itself states the figures."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench.scale import EVAL_DIR
from tests.integration.conftest import NETGUARD
from tests.private_redis import session_redis_url

pytestmark = pytest.mark.integration

REDIS_URL = os.environ.get("DOCQA_TEST_SCALE_REDIS_URL") or session_redis_url(15)
KEYS = {"chunks", "ingest_docs_per_s", "search_p50_ms", "search_p95_ms", "ask_p50_ms",
        "ask_p95_ms", "api_rss_mb", "worker_rss_mb", "erase_s", "canary_found_after_erase"}


@pytest.mark.skipif(not (EVAL_DIR / "squad2" / "dev-v2.0.json").exists()
                    or not (EVAL_DIR / "scifact" / "corpus.jsonl").exists(),
                    reason="the eval corpora (../shared/eval) are not on this machine")
def test_scale_bench_at_four_hundred_chunks(tmp_path: Path) -> None:
    out, netlog = tmp_path / "scale.json", tmp_path / "netguard.log"
    repo = Path(__file__).resolve().parents[2]
    env = {**os.environ, "DOCQA_NETGUARD_LOG": str(netlog),
           "PYTHONPATH": os.pathsep.join([str(NETGUARD), str(repo),
                                          os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run(
        [sys.executable, "-m", "bench.scale", "--chunks", "400", "--paras-per-doc", "10",
         "--chunk-words", "60", "--queries", "10", "--shards", "4",
         "--redis-url", REDIS_URL, "--data", str(tmp_path / "data"), "--json", str(out),
         "--timeout", "1500"],
        cwd=repo, env=env, capture_output=True, text=True, timeout=2400, check=False)
    assert proc.returncode == 0, proc.stderr[-4000:]
    report = json.loads(out.read_text())
    assert json.loads(proc.stdout) == report
    assert KEYS <= set(report)
    assert report["documents_ready"] == report["documents"] > 0
    assert report["chunks"] >= 360 and report["shards"] == 4  # the chunker's count, about
    assert report["ingest_docs_per_s"] > 0
    assert 0 < report["search_p50_ms"] <= report["search_p95_ms"]
    assert 0 < report["ask_p50_ms"] <= report["ask_p95_ms"]
    assert report["api_rss_mb"] > 0 and report["worker_rss_mb"] > 0
    assert report["worker_rss_ingest_samples"] >= 1
    assert report["worker_rss_ingest_max_mb"] >= report["worker_rss_ingest_median_mb"] > 0
    assert report["chroma_bytes_per_chunk"] > 0 and report["keyword_bytes_per_chunk"] > 0
    # the erasure: seen on disk before, then gone everywhere
    assert report["canary_seen_before_erase"] is True
    assert isinstance(report["erase_s"], float) and report["erase_s"] > 0
    assert report["canary_found_after_erase"] is False, report["canary_files"]
    assert not netlog.exists() or netlog.read_text() == "", netlog.read_text()
