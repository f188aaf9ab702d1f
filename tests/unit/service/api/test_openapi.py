"""The OpenAPI document and the /schema page (service/api/openapi.py)."""

from __future__ import annotations

import re
from pathlib import Path

from litestar.testing import TestClient

from tests.unit.conftest import make_app


def test_the_schema_page_loads_its_files_from_the_service_only(tmp_path: Path) -> None:
    """The default page pulled Redoc from a CDN and fonts from Google: an on-prem service
    told the internet it exists and ran third-party JavaScript on its web page's origin."""
    app, _ = make_app(tmp_path)
    with TestClient(app) as client:
        page = client.get("/schema")
        assert page.status_code == 200 and "text/html" in page.headers["content-type"]
        head = page.text.split("<body", 1)[0]
        urls = re.findall(r"""(?:src|href)=["']([^"']+)["']""", head)
        assert urls and all(u.startswith("/") and not u.startswith("//") for u in urls), urls
        for url in urls:
            asset = client.get(url)
            assert asset.status_code == 200 and asset.content, url
        assert client.get("/schema-assets/index.html").status_code == 404
        assert client.get("/schema-assets/..%2Fpyproject.toml").status_code == 404


def test_the_schema_names_the_service_its_bearer_scheme_and_tags(tmp_path: Path) -> None:
    app, _ = make_app(tmp_path)
    with TestClient(app) as client:
        schema = client.get("/schema/openapi.json").json()
    assert schema["info"]["title"] == "docqa" and schema["info"]["version"]
    assert schema["components"]["securitySchemes"]["apiKey"] == {
        "type": "http", "scheme": "bearer",
        "description": "An API key: `Authorization: Bearer <key>` (`docqa keys create`)"}
    ops = {(path, method): op for path, item in schema["paths"].items()
           for method, op in item.items() if isinstance(op, dict) and "responses" in op}
    v1 = {k: op for k, op in ops.items() if k[0].startswith("/v1/")}
    assert v1 and all(op.get("security") == [{"apiKey": []}] for op in v1.values())
    assert all(op.get("security") is None for k, op in ops.items() if k[0] in ("/healthz",
                                                                                "/readyz"))
    assert ops[("/v1/ask", "post")]["tags"] == ["questions"]
    assert ops[("/v1/documents", "post")]["tags"] == ["documents"]
    assert ops[("/v1/chat/completions", "post")]["tags"] == ["openai"]
    assert {t["name"] for t in schema["tags"]} >= {"documents", "questions", "openai"}
