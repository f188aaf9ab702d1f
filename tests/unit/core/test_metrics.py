"""Metrics without the real stack (core/metrics.py): ingest stage timing, and multiprocess
collection across a fork (in a subprocess, so this test process keeps its in-memory
metrics)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from core import metrics


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_nested_stages_are_recorded_once_per_document_without_double_counting(
        monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [100.0]  # a clock of our own: what is measured is the bookkeeping, not the machine
    monkeypatch.setattr(metrics.time, "perf_counter", lambda: clock[0])

    def wait(seconds: float) -> None:
        clock[0] += seconds

    before = {s: sample("docqa_ingest_stage_seconds_sum", stage=s) for s in ("embed", "upsert")}
    counts = {s: sample("docqa_ingest_stage_seconds_count", stage=s) for s in ("embed", "upsert")}
    with metrics.stage("embed"):
        for _ in range(3):
            wait(0.01)
            with metrics.stage("upsert"):
                wait(0.02)
    embed = sample("docqa_ingest_stage_seconds_sum", stage="embed") - before["embed"]
    upsert = sample("docqa_ingest_stage_seconds_sum", stage="upsert") - before["upsert"]
    assert embed == pytest.approx(0.03)  # 3 x 10 ms, without the upserts
    assert upsert == pytest.approx(0.06)  # 3 x 20 ms, one observation
    for s in ("embed", "upsert"):
        assert sample("docqa_ingest_stage_seconds_count", stage=s) == counts[s] + 1


def test_a_failing_stage_is_still_timed() -> None:
    n = sample("docqa_ingest_stage_seconds_count", stage="parse")
    with pytest.raises(ValueError), metrics.stage("parse"):
        raise ValueError("bad file")
    assert sample("docqa_ingest_stage_seconds_count", stage="parse") == n + 1


def test_clean_dead_files_keeps_live_and_foreign_processes(tmp_path: Path) -> None:
    host = metrics._host()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True).stdout.strip()
    names = [f"counter_{host}-{dead}.db", f"histogram_{host}-{dead}.db",
             f"counter_{metrics.process_identifier()}.db", f"counter_otherhost-{dead}.db"]
    for name in names:
        (tmp_path / name).write_bytes(b"")
    assert metrics.clean_dead_files(tmp_path) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(names[2:])


def test_worker_children_metrics_are_seen_by_a_scrape(tmp_path: Path) -> None:
    """Like a prefork worker: the parent sets up the directory, a forked child records,
    exits, and the scrape (another process reading the directory) still counts it."""
    script = textwrap.dedent(f"""
        import os
        from pathlib import Path
        from core import metrics
        metrics.setup_multiprocess(Path({str(tmp_path / "m")!r}))
        pid = os.fork()
        if pid == 0:
            with metrics.stage("parse"):
                pass
            metrics.chunks_embedded(7)
            os._exit(0)
        os.waitpid(pid, 0)
    """)
    subprocess.run([sys.executable, "-c", script], check=True, cwd=Path(__file__).parents[3])
    from prometheus_client import generate_latest

    text = generate_latest(metrics.multiprocess_registry(tmp_path / "m")).decode()
    assert "docqa_chunks_embedded_total 7.0" in text
    assert 'docqa_ingest_stage_seconds_count{stage="parse"} 1.0' in text
    assert 'docqa_ingest_stage_seconds_count{stage="embed"} 0.0' in text
