"""``POST /v1/documents`` and the document JSON (service/api/documents.py): the
``redact_pii`` form field and the tenant setting over HTTP, the ``pii`` field of a document."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import TestClient

from ingest.embedding import HashEmbedder
from tests.unit.conftest import COUNTS, TEXT, Env, make_app


@pytest.fixture
def http(tmp_path: Path) -> Iterator[tuple[TestClient[Any], Env]]:
    from service.answer import AnswerPipeline

    env = Env(tmp_path, "acme:unit-key-acme-0123456789,globex:unit-key-globex-0123456789",
              tenants="globex")
    app, _ = make_app(settings=env.settings, repo=env.repo, store=env.store,
                      documents=env.service,
                      answers=AnswerPipeline(env.settings, HashEmbedder(), env.store, None,  # type: ignore[arg-type]
                                             model=False))
    with TestClient(app) as client:
        yield client, env


def _post(client: TestClient[Any], tenant: str, data: bytes, form: dict[str, str]) -> Any:
    return client.post("/v1/documents", files={"file": ("r.txt", data, "text/plain")}, data=form,
                       headers={"Authorization": f"Bearer unit-key-{tenant}-0123456789"})


def test_the_form_field_and_the_tenant_setting_over_http(
    http: tuple[TestClient[Any], Env],
) -> None:
    client, env = http
    resp = _post(client, "acme", TEXT, {"redact_pii": "true"})
    assert resp.status_code == 202 and resp.json()["pii_redacted"] is True
    doc_id = resp.json()["id"]
    env.ingest(doc_id)
    auth = {"Authorization": "Bearer unit-key-acme-0123456789"}
    got = client.get(f"/v1/documents/{doc_id}", headers=auth).json()
    assert got["pii"] == {"redacted": True, "counts": COUNTS}
    listed = client.get("/v1/documents", headers=auth).json()["items"]
    assert [d["pii"] for d in listed] == [{"redacted": True, "counts": COUNTS}]

    plain = _post(client, "acme", b"plain text, no personal data", {})
    assert plain.status_code == 202 and plain.json()["pii_redacted"] is False
    got = client.get(f"/v1/documents/{plain.json()['id']}", headers=auth).json()
    assert got["pii"] == {"redacted": False, "counts": None}

    off = _post(client, "acme", b"another file", {"redact_pii": "false"})
    assert off.status_code == 202 and off.json()["pii_redacted"] is False
    forced = _post(client, "globex", TEXT, {"redact_pii": "false"})
    assert forced.status_code == 202 and forced.json()["pii_redacted"] is True

    bad = _post(client, "acme", b"x", {"redact_pii": "maybe"})
    assert bad.status_code == 400 and "redact_pii" in bad.text

    # same bytes, redaction asked for while the unredacted ingest is queued: 409
    dup = _post(client, "acme", b"another file", {"redact_pii": "true"})
    assert dup.status_code == 409 and dup.headers["content-type"].startswith(
        "application/problem+json")


def test_an_accepted_upload_points_to_its_document(http: tuple[TestClient[Any], Env]) -> None:
    client, _ = http
    auth = {"Authorization": "Bearer unit-key-acme-0123456789"}
    first = _post(client, "acme", b"a file to follow", {})
    assert first.status_code == 202
    location = first.headers["location"]
    assert location == f"/v1/documents/{first.json()['id']}"
    assert client.get(location, headers=auth).json()["id"] == first.json()["id"]
    again = _post(client, "acme", b"a file to follow", {})  # a duplicate: the same document
    assert again.status_code == 200 and again.headers["location"] == location
