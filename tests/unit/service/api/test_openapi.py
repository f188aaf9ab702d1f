"""The OpenAPI document and the /schema page (service/api/openapi.py)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from litestar.testing import TestClient

from service.api.errors import ProblemType
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


def _schema(tmp_path: Path) -> dict[str, Any]:
    app, _ = make_app(tmp_path, admin_key="unit-admin-key-" + "x" * 24)  # /admin mounted
    with TestClient(app) as client:
        schema: dict[str, Any] = client.get("/schema/openapi.json").json()
    return schema


def test_every_problem_type_is_documented_and_every_route_declares_its_problems(
    tmp_path: Path,
) -> None:
    """Every error was ``about:blank`` and no route declared one: a generated client could
    only guess. The types are an enum in the schema, described in its introduction, and each
    /v1 and /admin operation lists its error statuses as problem+json."""
    schema = _schema(tmp_path)
    comps = schema["components"]["schemas"]
    assert set(comps["ProblemType"]["enum"]) == {k.value for k in ProblemType}
    assert comps["Problem"]["properties"]["type"] == {"$ref": "#/components/schemas/ProblemType"}
    assert set(comps["Problem"]["required"]) == {"type", "title", "status", "detail"}
    assert comps["FieldError"]["required"] == ["field", "location", "message"]
    assert all(k.value in schema["info"]["description"] for k in ProblemType)
    ops = {(path, method): op for path, item in schema["paths"].items()
           for method, op in item.items() if isinstance(op, dict) and "responses" in op}
    guarded = {k: op for k, op in ops.items() if k[0].startswith(("/v1/", "/admin/"))}
    assert len(guarded) >= 14 and ('/admin/keys', 'post') in guarded
    for (path, method), op in guarded.items():
        for status in ("400", "401", "500"):
            content = op["responses"][status]["content"]
            assert list(content) == ["application/problem+json"], (path, method, status)
            assert content["application/problem+json"]["schema"]["$ref"].endswith(
                "Problem"), (path, method, status)
    upload = ops[("/v1/documents", "post")]["responses"]
    assert {"409", "413", "415", "422", "429", "503"} <= set(upload)
    assert "urn:docqa:problem:unparseable-document" in upload["422"]["description"]
    assert "404" in ops[("/v1/documents/{doc_id}", "get")]["responses"]
    chat = ops[("/v1/chat/completions", "post")]["responses"]["404"]["content"]
    assert chat["application/problem+json"]["schema"]["$ref"].endswith("/OpenAIProblem")


def test_status_fields_are_enums_in_the_schema(tmp_path: Path) -> None:
    comps = _schema(tmp_path)["components"]["schemas"]

    def enum(schema: dict[str, Any]) -> list[str]:
        if "$ref" in schema:
            schema = comps[schema["$ref"].rsplit("/", 1)[1]]
        return list(schema["enum"])

    doc = comps["DocumentOut"]["properties"]
    assert enum(doc["status"]) == ["queued", "processing", "ready", "failed"]
    assert enum(doc["kind"]) == ["pdf", "docx", "html", "markdown", "text", "csv"]
    assert enum(comps["UploadAccepted"]["properties"]["status"]) == enum(doc["status"])
    progress = comps["ProgressOut"]["properties"]
    assert "embedding" in enum(progress["stage"]) and enum(progress["unit"]) == [
        "pages", "chunks", ""]
    assert enum(comps["AskResponse"]["properties"]["status"]) == ["answered", "not_found"]
    assert enum(comps["ChatCompletion"]["properties"]["docqa_status"]) == ["answered",
                                                                           "not_found"]
    assert enum(comps["Readiness"]["properties"]["status"]) == ["ready", "not ready"]


def test_the_upload_declares_its_location_header(tmp_path: Path) -> None:
    accepted = _schema(tmp_path)["paths"]["/v1/documents"]["post"]["responses"]["202"]
    assert accepted["headers"]["Location"]["schema"] == {"type": "string"}
    assert accepted["headers"]["Location"]["required"] is True
