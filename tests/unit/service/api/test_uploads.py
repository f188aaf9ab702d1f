"""The upload form read as it streams in (service/api/uploads.py): the same contract as the
form Litestar parsed (fields in any order, 400 for a malformed form, 413 over the limit), the
file written only through the encrypting staging writer, and nothing left behind on a refusal.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import TestClient

from core.registry import SqliteDocumentRepository
from core.settings import Settings
from core.vault import Vault
from service.documents import DocumentService
from tests.unit.conftest import API_KEY, FakeStore, RecordingQueue, make_app

AUTH = {"Authorization": f"Bearer {API_KEY}"}
LIMIT = 256 * 1024
BOUNDARY = "docqa-test-boundary"
MULTIPART = {**AUTH, "Content-Type": f"multipart/form-data; boundary={BOUNDARY}"}


class Http:
    def __init__(self, client: TestClient[Any], settings: Settings,
                 repo: SqliteDocumentRepository) -> None:
        self.client, self.settings, self.repo = client, settings, repo

    def left_behind(self) -> tuple[list[str], list[str]]:
        """(files in the staging area, stored file keys): both empty after a refusal."""
        staging = self.settings.files_dir / ".staging"
        keys = [k for k, _ in Vault.for_settings(self.settings).keys.list()]
        return sorted(p.name for p in staging.iterdir()), keys


@pytest.fixture
def http(tmp_path: Path) -> Iterator[Http]:
    settings = Settings(data_dir=tmp_path / "data", load_generator=False,
                        api_keys=f"acme:{API_KEY}", max_upload_bytes=LIMIT)
    repo = SqliteDocumentRepository(settings.registry_path)
    store = FakeStore()
    service = DocumentService(settings, repo, store, RecordingQueue())  # type: ignore[arg-type]
    app, _ = make_app(settings=settings, repo=repo, store=store, documents=service)
    with TestClient(app) as client:
        yield Http(client, settings, repo)


def part(name: str, value: bytes, filename: str | None = None) -> bytes:
    disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
    return (f"--{BOUNDARY}\r\nContent-Disposition: {disposition}\r\n\r\n".encode()
            + value + b"\r\n")


def body(*parts: bytes, end: bool = True) -> bytes:
    return b"".join(parts) + (f"--{BOUNDARY}--\r\n".encode() if end else b"")


def test_fields_after_the_file_are_read(http: Http) -> None:
    data = b"Quarterly numbers, in words. " * 100
    resp = http.client.post("/v1/documents", headers=MULTIPART, content=body(
        part("file", data, "q3.txt"), part("metadata", b'{"team": "finance"}'),
        part("redact_pii", b"true"), part("unknown", b"ignored")))
    assert resp.status_code == 202, resp.text
    doc = http.repo.get(resp.json()["id"])
    assert doc is not None and doc.filename == "q3.txt" and doc.size == len(data)
    assert doc.metadata == {"team": "finance"} and doc.redact_pii
    assert http.left_behind()[0] == []  # moved into place, nothing staged


def test_a_client_form_as_before(http: Http) -> None:
    """What clients send (fields first, the file last) keeps working, duplicates included."""
    form = {"metadata": json.dumps({"n": 1}), "redact_pii": "false"}
    files = {"file": ("a.txt", b"some words", "text/plain")}
    first = http.client.post("/v1/documents", headers=AUTH, data=form, files=files)
    again = http.client.post("/v1/documents", headers=AUTH, data=form, files=files)
    assert first.status_code == 202 and again.status_code == 200, (first.text, again.text)
    assert again.json()["duplicate"] is True and again.json()["id"] == first.json()["id"]


def test_over_the_limit_is_413_and_leaves_nothing(http: Http) -> None:
    resp = http.client.post("/v1/documents", headers=MULTIPART, content=body(
        part("file", b"x" * (LIMIT + 1), "big.txt")))
    assert resp.status_code == 413 and str(LIMIT) in resp.json()["detail"], resp.text
    assert http.left_behind() == ([], [])
    exact = http.client.post("/v1/documents", headers=MULTIPART, content=body(
        part("file", b"y" * LIMIT, "exact.txt")))
    assert exact.status_code == 202, exact.text


BAD_FORMS: dict[str, tuple[dict[str, str], bytes, int, str]] = {
    "no file field": (MULTIPART, body(part("metadata", b"{}")), 400, "no 'file' field"),
    "not multipart": ({**AUTH, "Content-Type": "application/json"}, b'{"file": "x"}', 400,
                      "multipart/form-data"),
    "no boundary": ({**AUTH, "Content-Type": "multipart/form-data"}, b"x", 400, "boundary"),
    "body ends inside the file": (MULTIPART, body(part("file", b"abc", "a.txt"))[:-30], 400,
                                  "multipart"),
    "garbage": (MULTIPART, b"this is not a multipart body at all", 400, "multipart"),
    "two files": (MULTIPART, body(part("file", b"a", "a.txt"), part("file", b"b", "b.txt")),
                  400, "more than one"),
    "metadata after the file is not JSON": (
        MULTIPART, body(part("file", b"words", "a.txt"), part("metadata", b"{nope")), 400,
        "metadata"),
    "metadata is not an object": (
        MULTIPART, body(part("metadata", b"[1]"), part("file", b"words", "a.txt")), 400,
        "object"),
    "redact_pii is not a flag": (
        MULTIPART, body(part("file", b"words", "a.txt"), part("redact_pii", b"maybe")), 400,
        "redact_pii"),
    "empty file": (MULTIPART, body(part("file", b"", "a.txt")), 400, "empty"),
    "huge text field": (MULTIPART, body(part("note", b"n" * (65 * 1024)),
                                        part("file", b"words", "a.txt")), 413, "note"),
}


@pytest.mark.parametrize("case", list(BAD_FORMS))
def test_a_bad_form_is_a_clear_4xx_and_leaves_nothing(http: Http, case: str) -> None:
    headers, content, status, words = BAD_FORMS[case]
    resp = http.client.post("/v1/documents", headers=headers, content=content)
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"].startswith("application/problem+json")
    assert words in resp.json()["detail"], resp.json()
    assert http.left_behind() == ([], [])
    assert http.repo.list("acme", None, 10, 0)[1] == 0


def test_the_schema_still_describes_the_form(http: Http) -> None:
    schema = http.client.get("/schema/openapi.json").json()
    body_spec = schema["paths"]["/v1/documents"]["post"]["requestBody"]
    form = body_spec["content"]["multipart/form-data"]["schema"]
    assert body_spec["required"] is True and form["required"] == ["file"]
    assert form["properties"]["file"]["format"] == "binary"
    assert set(form["properties"]) == {"file", "metadata", "redact_pii"}
