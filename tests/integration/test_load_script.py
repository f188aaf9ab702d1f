"""bench/load.py against the real stack, scaled down: concurrent askers while documents are
being ingested give no 5xx other than 503-with-Retry-After, and no upload is lost."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.conftest import Stack, run_stack
from tests.private_redis import session_redis_url

# its own stack with rate limits off: the load test measures the service, not the limiter
# (with the default 60 asks/min a fast baseline alone spends a key's minute)
REDIS_URL = os.environ.get("DOCQA_TEST_LOAD_REDIS_URL") or session_redis_url(10)
NO_LIMITS = {"DOCQA_RATE_LIMIT__REQUESTS_PER_MINUTE": "0", "DOCQA_RATE_LIMIT__ASK_PER_MINUTE": "0"}


@pytest.fixture(scope="module")
def load_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with run_stack(tmp_path_factory.mktemp("docqa-load"), REDIS_URL, NO_LIMITS) as st:
        yield st


def _mini_squad(path: Path, n: int) -> None:
    paragraphs = [
        {"context": f"Depot {i} in Harbour Street stores {10 + i} pallets of blue tiles and "
                    f"opens at {6 + i % 4} in the morning.",
         "qas": [{"id": f"q{i}", "question": f"How many pallets does depot {i} store?",
                  "answers": [{"text": str(10 + i), "answer_start": 0}], "is_impossible": False}]}
        for i in range(n)
    ]
    path.write_text(json.dumps({"data": [{"title": "Depots", "paragraphs": paragraphs}]}))


def test_load_script_reports_and_loses_nothing(load_stack: Stack, tmp_path: Path) -> None:
    stack = load_stack
    key = subprocess.run([sys.executable, "-m", "service.cli", "keys", "create", "--tenant",
                          "loadtest"], env=stack.env, capture_output=True, text=True,
                         check=True).stdout.strip()
    squad = tmp_path / "mini.json"
    _mini_squad(squad, 16)
    out = tmp_path / "load.json"
    proc = subprocess.run(
        [sys.executable, "-m", "bench.load", "--url", stack.url, "--api-key", key,
         "--askers", "4", "--duration", "6", "--baseline", "2", "--seed-docs", "6",
         "--ingest-docs", "10", "--drain", "240", "--squad", str(squad), "--json", str(out)],
        env=stack.env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(out.read_text())
    load = result["load"]
    assert load["ok"] > 0 and load["p50_ms"] is not None and load["p99_ms"] >= load["p50_ms"], result
    assert load["other_5xx"] == 0 and load["503_without_retry_after"] == 0
    assert not load["transport_errors"]
    docs = result["documents"]
    assert docs["uploaded"] == 10 and docs["lost"] == 0 and docs["fate"] == {"ready": 10}
    assert result["ratios"]["p50_load_over_baseline"] is not None


def test_load_script_refuses_a_remote_target() -> None:
    proc = subprocess.run([sys.executable, "-m", "bench.load", "--url", "http://192.0.2.1:8080",
                           "--api-key", "x"], capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0 and "loopback" in proc.stderr
