"""``/metrics`` of the real Litestar app on fake dependencies (service/api/metrics.py):
the document and queue gauges, the scrape token, a scrape that survives dead sources."""

from __future__ import annotations

import re
from pathlib import Path

from litestar.testing import TestClient

from core.domain import DocumentKind, DocumentStatus
from core.tasks import INGEST_QUEUE, PRIORITY_SEP
from tests.unit.conftest import API_KEY, BrokenRepo, FakeRedis, make_app

KEY = API_KEY  # make_app's static key


def test_count_by_status_and_the_metrics_page(tmp_path: Path) -> None:
    # jobs wait in the queue's list of each priority level (core/tasks.py): all are counted
    app, repo = make_app(tmp_path, redis=FakeRedis(lists={
        INGEST_QUEUE: [b"{}"] * 4, INGEST_QUEUE + PRIORITY_SEP + "9": [b"{}"] * 2}))
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
                 'docqa_queue_depth{queue="docqa.ingest"} 6.0',
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
