"""``POST /v1/documents`` and the document JSON (service/api/documents.py): the
``redact_pii`` form field and the tenant setting over HTTP, the ``pii`` field of a document."""

from __future__ import annotations

import json
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


ACME = {"Authorization": "Bearer unit-key-acme-0123456789"}
GLOBEX = {"Authorization": "Bearer unit-key-globex-0123456789"}
REPORT = ("Quarterly report.\n\n" + " ".join(
    f"Item {i}: the depot in town {i} shipped {100 + i} crates." for i in range(80))
    + "\n\nThe end.\n")


def _ready(client: TestClient[Any], env: Env, data: bytes, name: str = "report.txt") -> str:
    resp = client.post("/v1/documents", files={"file": (name, data, "text/plain")},
                       headers=ACME)
    assert resp.status_code == 202, resp.text
    doc_id: str = resp.json()["id"]
    assert env.ingest(doc_id).status.value == "ready"
    return doc_id


def test_the_text_around_a_span_comes_from_the_stored_chunks(
    http: tuple[TestClient[Any], Env],
) -> None:
    client, env = http
    doc_id = _ready(client, env, REPORT.encode())
    assert len(env.store.chunk_ids("acme", doc_id)) > 2  # spans cross chunk boundaries
    span = REPORT.index("the depot in town 41")
    got = client.get(f"/v1/documents/{doc_id}/text", headers=ACME,
                     params={"start": span, "end": span + 20, "context": 30})
    assert got.status_code == 200, got.text
    body = got.json()
    assert body == {"document_id": doc_id, "filename": "report.txt", "page": 1,
                    "start": span - 30, "end": span + 50,
                    "text": REPORT[span - 30:span + 50]}
    whole = client.get(f"/v1/documents/{doc_id}/text", headers=ACME,
                       params={"start": 0, "end": len(REPORT) + 100}).json()
    assert whole["text"].split() == REPORT.split() and whole["end"] == len(REPORT.rstrip())


def test_the_text_route_refuses_bad_ranges_clearly(http: tuple[TestClient[Any], Env]) -> None:
    client, env = http
    doc_id = _ready(client, env, REPORT.encode())
    url = f"/v1/documents/{doc_id}/text"

    def problem(params: dict[str, Any], status: int = 400) -> dict[str, Any]:
        resp = client.get(url, headers=ACME, params=params)
        assert resp.status_code == status, resp.text
        assert resp.headers["content-type"].startswith("application/problem+json")
        body: dict[str, Any] = resp.json()
        return body

    assert "after end" in problem({"start": 50, "end": 10})["detail"]
    assert "20000" in problem({"start": 0, "end": 20_001})["detail"]
    assert "20000" in problem({"start": 100, "end": 19_900, "context": 200})["detail"]
    assert "past the end" in problem({"start": 10**6, "end": 10**6 + 5})["detail"]
    missing = problem({"start": 5})
    assert missing["type"] == "urn:docqa:problem:invalid-request"
    assert missing["errors"] == [{"location": "query", "field": "end", "message": "required"}]
    assert problem({"start": -1, "end": 3})["errors"][0]["field"] == "start"
    assert client.get(url, headers=ACME, params={"start": 7, "end": 7}).json()["text"] == ""
    queued = client.post("/v1/documents", files={"file": ("q.txt", b"not ingested yet")},
                         headers=ACME).json()["id"]
    not_ready = client.get(f"/v1/documents/{queued}/text", headers=ACME,
                           params={"start": 0, "end": 5})
    assert not_ready.status_code == 409 and "queued" in not_ready.json()["detail"]


def test_text_and_file_are_the_tenants_own(http: tuple[TestClient[Any], Env]) -> None:
    client, env = http
    doc_id = _ready(client, env, REPORT.encode())
    for path in (f"/v1/documents/{doc_id}/text?start=0&end=10", f"/v1/documents/{doc_id}/file"):
        other = client.get(path, headers=GLOBEX)
        assert other.status_code == 404 and "Quarterly" not in other.text, path
        assert client.get(path, headers=ACME).status_code == 200, path


def test_the_original_file_comes_back_as_uploaded(http: tuple[TestClient[Any], Env]) -> None:
    client, env = http
    data = "Ünïcode and latin-1: caf\xe9".encode("latin-1")  # not UTF-8: no charset is added
    doc_id = _ready(client, env, data, name="Prisliste ø.txt")
    resp = client.get(f"/v1/documents/{doc_id}/file", headers=ACME)
    assert resp.status_code == 200 and resp.content == data
    assert resp.headers["content-type"] == "text/plain"
    assert resp.headers["content-length"] == str(len(data))
    assert resp.headers["content-disposition"] == (
        "attachment; filename=\"Prisliste _.txt\"; filename*=UTF-8''Prisliste%20%C3%B8.txt")
    assert resp.headers["cache-control"] == "no-store"
    assert resp.headers["content-security-policy"] == "sandbox"
    stored = env.settings.files_dir / doc_id
    assert data not in stored.read_bytes()  # decrypted on the way out, not on disk

    assert client.delete(f"/v1/documents/{doc_id}", headers=ACME).status_code == 204
    for path in (f"/v1/documents/{doc_id}/file", f"/v1/documents/{doc_id}/text?start=0&end=5"):
        gone = client.get(path, headers=ACME)
        assert gone.status_code == 404, path
        assert gone.json()["type"] == "urn:docqa:problem:not-found"


def test_a_redacted_documents_original_is_gone_and_its_text_is_redacted(
    http: tuple[TestClient[Any], Env],
) -> None:
    client, env = http
    resp = _post(client, "acme", TEXT, {"redact_pii": "true"})
    doc_id = resp.json()["id"]
    env.ingest(doc_id)
    file = client.get(f"/v1/documents/{doc_id}/file", headers=ACME)
    assert file.status_code == 404 and "redacted" in file.json()["detail"]
    text = client.get(f"/v1/documents/{doc_id}/text", headers=ACME,
                      params={"start": 0, "end": 2000}).json()["text"]
    assert "Anna Berg" in text or "Employee record" in text
    assert "@" not in text  # the e-mail addresses were replaced


# ---------------------------------------------------------------- many documents at once

ACME_KEY, GLOBEX_KEY = "unit-key-acme-0123456789", "unit-key-globex-0123456789"


@pytest.fixture
def batch(tmp_path: Path) -> Iterator[tuple[TestClient[Any], dict[str, str]]]:
    """The real app on a SQLite registry holding acme's q (queued), r (ready) and f
    (failed), and globex's g (ready)."""
    from core.domain import DocumentKind, DocumentStatus

    app, repo = make_app(tmp_path, api_keys=f"acme:{ACME_KEY},globex:{GLOBEX_KEY}")
    ids: dict[str, str] = {}
    for name, tenant in (("q", "acme"), ("r", "acme"), ("f", "acme"), ("g", "globex")):
        doc, _ = repo.create(tenant=tenant, filename=f"{name}.txt", kind=DocumentKind.TEXT,
                             sha256=name.ljust(64, "0"), size=1, metadata={})
        ids[name] = doc.id
    for name in ("r", "g"):
        repo.set_status(ids[name], DocumentStatus.READY, chunks=1, pages=1)
    repo.set_status(ids["f"], DocumentStatus.FAILED, error="unreadable")
    with TestClient(app) as client:
        yield client, ids


def _as(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def test_batch_status_answers_the_callers_documents_in_order_and_hides_the_rest(
    batch: tuple[TestClient[Any], dict[str, str]],
) -> None:
    client, ids = batch
    asked = [ids["f"], ids["g"], ids["q"], "nope", ids["f"], ids["r"]]
    resp = client.post("/v1/documents/status", json={"ids": asked}, headers=_as(ACME_KEY))
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert [(d["id"], d["status"]) for d in body["items"]] == [
        (ids["f"], "failed"), (ids["q"], "queued"), (ids["r"], "ready")]
    assert body["items"][0]["error"] == "unreadable"
    assert body["missing"] == [ids["g"], "nope"]  # globex's document looks like no document
    theirs = client.post("/v1/documents/status", json={"ids": [ids["g"], ids["r"]]},
                         headers=_as(GLOBEX_KEY)).json()
    assert [d["id"] for d in theirs["items"]] == [ids["g"]] and theirs["missing"] == [ids["r"]]


@pytest.mark.parametrize("body", [{"ids": []}, {"ids": ["x"] * 1001}, {"ids": ["x" * 129]},
                                  {"ids": "x"}, {}, {"ids": ["x"], "extra": 1}])
def test_batch_status_refuses_a_bad_list_with_a_400(
    batch: tuple[TestClient[Any], dict[str, str]], body: dict[str, Any],
) -> None:
    client, _ = batch
    resp = client.post("/v1/documents/status", json=body, headers=_as(ACME_KEY))
    assert resp.status_code == 400, resp.text
    assert resp.json()["type"] == "urn:docqa:problem:invalid-request"


def test_counts_are_the_callers_own(batch: tuple[TestClient[Any], dict[str, str]]) -> None:
    client, _ = batch
    assert client.get("/v1/documents/counts", headers=_as(ACME_KEY)).json() == {
        "queued": 1, "processing": 0, "ready": 1, "failed": 1, "total": 3}
    assert client.get("/v1/documents/counts", headers=_as(GLOBEX_KEY)).json() == {
        "queued": 0, "processing": 0, "ready": 1, "failed": 0, "total": 1}
    assert client.get("/v1/documents/counts").status_code == 401


def _sse(text: str) -> list[tuple[str, Any]]:
    events = []
    for block in text.strip().split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line)
        if "data" in lines:
            events.append((lines.get("event", "message"), json.loads(lines["data"])))
    return events


def test_a_batch_stream_of_settled_documents_reports_each_once_and_ends(
    batch: tuple[TestClient[Any], dict[str, str]],
) -> None:
    client, ids = batch
    asked = [ids["r"], ids["g"], ids["f"], ids["r"]]
    resp = client.post("/v1/documents/events", json={"ids": asked}, headers=_as(ACME_KEY))
    assert resp.status_code == 200 and resp.headers["content-type"].startswith(
        "text/event-stream")
    events = _sse(resp.text)
    assert events == [("missing", {"ids": [ids["g"]]}),
                      ("done", events[1][1]), ("done", events[2][1]),
                      ("end", {"ready": 1, "failed": 1, "missing": 1})]
    assert [(d["id"], d["status"]) for _, d in events[1:3]] == [(ids["r"], "ready"),
                                                              (ids["f"], "failed")]
    by_get = client.get(f"/v1/documents/events?ids={ids['f']},{ids['g']}", headers=_as(GLOBEX_KEY))
    assert [e for e, _ in _sse(by_get.text)] == ["missing", "done", "end"]  # globex's view


@pytest.mark.parametrize("query", ["", "?ids=", "?ids=" + ",".join(f"x{i}" for i in range(1001))])
def test_a_batch_stream_without_ids_or_with_too_many_is_a_400(
    batch: tuple[TestClient[Any], dict[str, str]], query: str,
) -> None:
    client, _ = batch
    resp = client.get(f"/v1/documents/events{query}", headers=_as(ACME_KEY))
    assert resp.status_code == 400, resp.text
    too_many = client.post("/v1/documents/events", json={"ids": ["x"] * 1001},
                           headers=_as(ACME_KEY))
    assert too_many.status_code == 400


def test_the_list_filters_by_name_and_pages_newest_first(tmp_path: Path) -> None:
    from core.domain import DocumentKind

    app, repo = make_app(tmp_path, api_keys=f"acme:{ACME_KEY},globex:{GLOBEX_KEY}")
    names = ["Budget-2026.pdf", "minutes.txt", "BUDGET notes.md", "Årsbudget.txt"]
    ids = {}
    for n, name in enumerate(names):
        doc, _ = repo.create(tenant="acme", filename=name, kind=DocumentKind.TEXT,
                             sha256=str(n).ljust(64, "0"), size=1, metadata={})
        ids[name] = doc.id
    repo.create(tenant="globex", filename="budget.txt", kind=DocumentKind.TEXT,
                sha256="g".ljust(64, "0"), size=1, metadata={})
    with TestClient(app) as client:
        def listed(query: str, key: str = ACME_KEY) -> Any:
            resp = client.get(f"/v1/documents?{query}", headers=_as(key))
            assert resp.status_code == 200, resp.text
            return resp.json()

        budget = listed("filename_contains=budget")
        assert budget["total"] == 3  # another tenant's budget.txt is not counted
        assert [d["filename"] for d in budget["items"]] == [
            "Budget-2026.pdf", "BUDGET notes.md", "Årsbudget.txt"]
        newest = listed("filename_contains=BUDGET&order=newest&limit=2")
        assert newest["total"] == 3
        assert [d["filename"] for d in newest["items"]] == ["Årsbudget.txt", "BUDGET notes.md"]
        second = listed("filename_contains=BUDGET&order=newest&limit=2&offset=2")
        assert [d["filename"] for d in second["items"]] == ["Budget-2026.pdf"]
        assert [d["filename"] for d in listed("filename_contains=årsb")["items"]] == [
            "Årsbudget.txt"]
        assert listed("filename_contains=%25")["total"] == 0  # no wildcard: a literal "%"
        assert listed("order=newest")["items"][0]["id"] == ids["Årsbudget.txt"]
        assert listed("filename_contains=budget", GLOBEX_KEY)["total"] == 1
        for bad in ("order=sideways", "filename_contains=", "filename_contains=" + "x" * 256):
            resp = client.get(f"/v1/documents?{bad}", headers=_as(ACME_KEY))
            assert resp.status_code == 400, (bad, resp.text)
