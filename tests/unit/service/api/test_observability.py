"""Request ids at the HTTP edge (service/api/observability.py): the real Litestar app on fake
dependencies."""

from __future__ import annotations

from pathlib import Path

from litestar.testing import TestClient

from tests.unit.conftest import make_app

DQ_KEY = "dq_" + "A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8S9t0U1v"


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
