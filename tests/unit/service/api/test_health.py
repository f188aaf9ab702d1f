"""``/readyz`` and ``/healthz`` of the real Litestar app on fake dependencies
(service/api/health.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from litestar.testing import TestClient

from tests.unit.conftest import BrokenRepo, FakeAnswers, make_app


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
