"""Logs, request ids, metrics and readiness without the real stack: the JSON and text
formatters, the redaction filter, the Celery context signals, ingest stage timing, the
``/metrics``, ``/readyz`` and ``X-Request-ID`` behaviour of the real Litestar app on fake
dependencies, and multiprocess collection across a fork (in a subprocess, so this test
process keeps its in-memory metrics)."""

from __future__ import annotations

import io
import json
import logging
import re
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import TestClient
from prometheus_client import REGISTRY

from core import logging as dqlog
from core import metrics
from core.domain import DocumentKind, DocumentStatus
from core.settings import Settings
from tests.unit.conftest import API_KEY, BrokenRepo, FakeAnswers, make_app

KEY = API_KEY  # make_app's static key
DQ_KEY = "dq_" + "A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8S9t0U1v"


def capture(log_format: str = "json",
            secrets: tuple[str, ...] = ()) -> tuple[logging.Logger, io.StringIO]:
    buf = io.StringIO()
    logger = logging.getLogger(f"docqa.test.{log_format}.{time.monotonic_ns()}")
    logger.handlers = [dqlog.make_handler(log_format, secrets, stream=buf)]  # type: ignore[arg-type]
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    return logger, buf


def lines(buf: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in buf.getvalue().splitlines()]


# ---------------------------------------------------------------- formatter


def test_json_lines_carry_the_fields_and_the_context() -> None:
    logger, buf = capture()
    logger.info("outside")
    with dqlog.log_context(request_id="req-1", job_id="job-9", document_id="doc-3"):
        logger.warning("document %s: %d chunks", "doc-3", 4, extra={"stage": "embed", "n": 2,
                                                                       "blob": {"x": 1}})
    first, second = lines(buf)
    assert set(first) >= {"ts", "level", "logger", "message", "request_id"}
    assert first["request_id"] is None and "job_id" not in first and "document_id" not in first
    assert first["ts"].endswith("Z") and first["level"] == "INFO"
    assert second["message"] == "document doc-3: 4 chunks"
    assert (second["request_id"], second["job_id"], second["document_id"]) == (
        "req-1", "job-9", "doc-3")
    assert second["stage"] == "embed" and second["n"] == 2
    assert "blob" not in second  # only plain-typed extras


def test_an_exception_stays_on_one_line() -> None:
    logger, buf = capture()
    try:
        raise ValueError("boom\nsecond line")
    except ValueError:
        logger.exception("failed")
    assert len(buf.getvalue().splitlines()) == 1
    (entry,) = lines(buf)
    assert "ValueError: boom" in entry["exc_info"] and entry["level"] == "ERROR"


def test_text_format_is_for_people() -> None:
    logger, buf = capture("text")
    with dqlog.log_context(request_id="req-7"):
        logger.info("hello %s", "there")
    line = buf.getvalue().strip()
    assert line.endswith("[request_id=req-7] hello there") and " INFO " in line
    with pytest.raises(json.JSONDecodeError):
        json.loads(line)


# ---------------------------------------------------------------- redaction


@pytest.mark.parametrize("text, secret", [
    (f"key {DQ_KEY} rejected", DQ_KEY),
    ("header Authorization: Bearer abc.def-ghi_123 seen", "abc.def-ghi_123"),
    ("bearer tok3n", "tok3n"),
    ("redis://:s3cretpass@127.0.0.1:6379/0", "s3cretpass"),
    ("postgresql://docqa:pg-pass-1@db:5432/docqa", "pg-pass-1"),
    (f"configured {KEY} here", KEY),
])
def test_credentials_are_redacted(text: str, secret: str) -> None:
    logger, buf = capture(secrets=(KEY,))
    logger.info("%s", text)
    (entry,) = lines(buf)
    assert secret not in entry["message"] and dqlog.REDACTED in entry["message"]


def test_redaction_covers_exceptions_extras_and_text_format() -> None:
    for fmt in ("json", "text"):
        logger, buf = capture(fmt)
        try:
            raise RuntimeError(f"auth failed for {DQ_KEY}")
        except RuntimeError:
            logger.exception("request with Bearer %s", DQ_KEY, extra={"header": f"Bearer {DQ_KEY}"})
        out = buf.getvalue()
        assert DQ_KEY not in out and DQ_KEY[3:20] not in out, out
        assert "dq_[REDACTED]" in out


def test_short_or_ordinary_text_is_left_alone() -> None:
    f = dqlog.RedactingFilter(secrets=("short", "", "a-long-enough-secret"))
    assert f.redact("a short note about dq_ and bearer") == "a short note about dq_ and bearer"
    assert f.redact("http://127.0.0.1:8000/api/v2/heartbeat") == (
        "http://127.0.0.1:8000/api/v2/heartbeat")
    assert f.redact("x a-long-enough-secret y") == "x [REDACTED] y"


def test_configured_secrets_are_collected() -> None:
    s = Settings(api_keys=f"acme:{KEY}", admin_key="admin-key-0123456789",
                 metrics={"token": "metrics-token-0123"})
    assert set(dqlog.configured_secrets(s)) >= {KEY, "admin-key-0123456789", "metrics-token-0123"}


# ---------------------------------------------------------------- Celery context


def test_request_id_travels_in_the_task_headers_and_binds_the_job() -> None:
    headers: dict[str, Any] = {"id": "task-1", "task": "docqa.ingest_document"}
    with dqlog.log_context(request_id="req-42"):
        dqlog._on_publish(sender="docqa.ingest_document", headers=headers,
                          body=(["doc-5"], {}, {}))
    assert headers[dqlog.CELERY_HEADER] == "req-42"

    class Request:
        docqa_request_id = "req-42"
        headers = None

    class Task:
        request = Request()

    dqlog._on_prerun(task_id="task-1", task=Task(), args=["acme", "doc-5"])
    try:
        assert (dqlog.request_id_var.get(), dqlog.job_id_var.get(),
                dqlog.document_id_var.get()) == ("req-42", "task-1", "doc-5")
    finally:
        dqlog._on_postrun(task_id="task-1")
    assert dqlog.request_id_var.get() is None and dqlog.job_id_var.get() is None


# ---------------------------------------------------------------- ingest stages


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_nested_stages_are_recorded_once_per_document_without_double_counting() -> None:
    before = {s: sample("docqa_ingest_stage_seconds_sum", stage=s) for s in ("embed", "upsert")}
    counts = {s: sample("docqa_ingest_stage_seconds_count", stage=s) for s in ("embed", "upsert")}
    with metrics.stage("embed"):
        for _ in range(3):
            time.sleep(0.01)
            with metrics.stage("upsert"):
                time.sleep(0.02)
    embed = sample("docqa_ingest_stage_seconds_sum", stage="embed") - before["embed"]
    upsert = sample("docqa_ingest_stage_seconds_sum", stage="upsert") - before["upsert"]
    assert 0.025 <= embed < 0.055, embed  # 3 x 10 ms, without the upserts
    assert 0.055 <= upsert < 0.09, upsert  # 3 x 20 ms, one observation
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


# ---------------------------------------------------------------- the app


def test_request_id_round_trips_and_is_generated_when_missing_or_invalid(tmp_path: Path) -> None:
    app, _ = make_app(tmp_path)
    with TestClient(app) as client:
        assert client.get("/healthz", headers={"X-Request-ID": "abc-123"}).headers[
            "x-request-id"] == "abc-123"
        for bad in ("has space", "x" * 65, "new\u00e9line".encode(), "a/b", "<script>", DQ_KEY):
            rid = client.get("/healthz", headers={"X-Request-ID": bad}).headers["x-request-id"]
            assert rid != bad and len(rid) == 32
        # errors and unknown routes carry one too
        r = client.get("/v1/documents", headers={"X-Request-ID": "req.401"})
        assert r.status_code == 401 and r.headers["x-request-id"] == "req.401"
        assert client.get("/nowhere").headers["x-request-id"]


def test_count_by_status_on_postgresql(pg_dsn: str) -> None:
    from core.registry.postgres import PostgresDocumentRepository

    repo = PostgresDocumentRepository(pg_dsn)
    try:
        assert repo.count_by_status() == {}
        for n, status in enumerate([DocumentStatus.QUEUED, DocumentStatus.READY,
                                    DocumentStatus.READY]):
            doc, _ = repo.create(tenant=f"t{n % 2}", filename="f.txt", kind=DocumentKind.TEXT,
                                 sha256=f"{n:064x}", size=1, metadata={})
            repo.set_status(doc.id, status)
        assert repo.count_by_status() == {"queued": 1, "ready": 2}
    finally:
        repo.close()


def test_count_by_status_and_the_metrics_page(tmp_path: Path) -> None:
    app, repo = make_app(tmp_path)
    for n, status in enumerate([DocumentStatus.READY, DocumentStatus.READY,
                                DocumentStatus.FAILED]):
        doc, _ = repo.create(tenant="acme", filename=f"f{n}.txt", kind=DocumentKind.TEXT,
                             sha256=f"{n:064x}", size=1, metadata={})
        repo.set_status(doc.id, status)
    assert repo.count_by_status() == {"ready": 2, "failed": 1}
    with TestClient(app) as client:
        client.get("/v1/documents", headers={"Authorization": "Bearer nope"})
        r = client.get("/metrics")
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
        body = r.text
    for line in ('docqa_documents{status="ready"} 2.0', 'docqa_documents{status="failed"} 1.0',
                 'docqa_documents{status="queued"} 0.0',
                 'docqa_queue_depth{queue="docqa.ingest"} 4.0',
                 'docqa_scrape_errors{source="redis"} 0.0'):
        assert line in body, line
    for family, kind in (("docqa_ingest_stage_seconds", "histogram"),
                         ("docqa_chunks_embedded", "counter"),
                         ("docqa_ask_latency_seconds", "histogram"),
                         ("docqa_ask_results", "counter"), ("docqa_http_refused", "counter"),
                         ("docqa_http_requests", "counter")):
        assert re.search(rf"^# TYPE {family}(_total)? {kind}$", body, re.M), family
    assert 'docqa_http_refused_total{code="429",route="/v1/ask"} ' in body  # from the start
    assert 'docqa_http_requests_total{code="401",method="GET",route="/v1/documents"}' in body


def test_metrics_token_disable_and_not_in_the_schema(tmp_path: Path) -> None:
    app, _ = make_app(tmp_path / "a", metrics={"token": "scrape-token-0123"})
    with TestClient(app) as client:
        assert client.get("/metrics").status_code == 401
        assert client.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert client.get("/metrics", headers={"Authorization": f"Bearer {KEY}"}).status_code == 401
        ok = client.get("/metrics", headers={"Authorization": "Bearer scrape-token-0123"})
        assert ok.status_code == 200
        assert "/metrics" not in client.get("/schema/openapi.json").json()["paths"]
    app, _ = make_app(tmp_path / "b", metrics={"enabled": False})
    with TestClient(app) as client:
        assert client.get("/metrics").status_code == 404


def test_scrape_survives_a_dead_registry_and_redis(tmp_path: Path) -> None:
    app, _ = make_app(tmp_path, repo=BrokenRepo(), redis_up=False)
    with TestClient(app) as client:
        body = client.get("/metrics").text
    assert "docqa_documents{" not in body and "docqa_queue_depth{" not in body
    assert 'docqa_scrape_errors{source="registry"} 1.0' in body
    assert 'docqa_scrape_errors{source="redis"} 1.0' in body


@pytest.mark.parametrize("broken", ["redis", "chroma", "registry"])
def test_readyz_names_the_failing_dependency(tmp_path: Path, broken: str) -> None:
    app, _ = make_app(tmp_path, repo=BrokenRepo() if broken == "registry" else None,
                      redis_up=broken != "redis", chroma_up=broken != "chroma")
    with TestClient(app) as client:
        r = client.get("/readyz")
        assert client.get("/healthz").status_code == 200  # liveness: no dependencies
    assert r.status_code == 503
    body = r.json()
    assert body["failed"] == [broken] and body["checks"][broken].startswith("unavailable")
    assert body["registry_backend"] == "sqlite"


def test_readyz_ok_and_generator_only_required_when_loaded(tmp_path: Path) -> None:
    app, _ = make_app(tmp_path)
    with TestClient(app) as client:
        r = client.get("/readyz")
    assert r.status_code == 200 and r.json()["failed"] == []
    FakeAnswers.generator = None
    try:
        app, _ = make_app(tmp_path / "g", load_generator=False)
        with TestClient(app) as client:
            assert client.get("/readyz").status_code == 200
        app, _ = make_app(tmp_path / "h")
        with TestClient(app) as client:
            assert client.get("/readyz").json()["failed"] == ["generator"]
    finally:
        FakeAnswers.generator = object()
