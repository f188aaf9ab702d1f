"""Reading a document back on the real stack: ``GET /v1/documents/{id}/text`` (a citation in
its context, from the sealed chunks in the Chroma server) and ``GET /v1/documents/{id}/file``
(the original, out of the encrypted vault), both scoped to the key's tenant and gone once
the document is deleted."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from core.domain import DocumentKind
from ingest.readers import full_text, read_document
from service.client import DocqaAPIError, DocqaClient
from tests.factories import make_pdf
from tests.integration.conftest import KEYS, Stack, raw

pytestmark = pytest.mark.integration

MANUAL = make_pdf([
    "Pump maintenance manual. " + " ".join(
        f"Step {i}: inspect valve {i} and record its pressure in the log." for i in range(40)),
    "Safety. The emergency stop for the Ostrava line is the red lever behind panel K7. "
    "Operators test it every Monday before the first shift.",
])
NOTES = ("Field notes, week 12.\n\n" + "\n".join(
    f"- Site {i}: soil sample {i} taken at depth {i * 10} cm." for i in range(60))
    + "\n\nThe drilling permit number is DP-90417.\n").encode()


@pytest.fixture(scope="module")
def docs(stack: Stack) -> Iterator[dict[str, str]]:
    with stack.client("acme") as c:
        ids = {name: c.upload_bytes(name, data)["id"]
               for name, data in (("pump manual.pdf", MANUAL), ("field-notes.md", NOTES))}
        final = c.wait_ready(list(ids.values()), timeout=300)
    assert {d["status"] for d in final.values()} == {"ready"}, final
    yield ids


def extracted(data: bytes, kind: DocumentKind, tmp_path: Path) -> str:
    path = tmp_path / f"doc.{kind.value}"
    path.write_bytes(data)
    return full_text(read_document(path, kind))


def test_a_citation_shown_in_its_context(acme: DocqaClient, docs: dict[str, str],
                                         tmp_path: Path) -> None:
    result = acme.ask("Where is the emergency stop for the Ostrava line?")
    assert result["status"] == "answered", result
    cit = result["citations"][0]
    assert cit["document_id"] == docs["pump manual.pdf"] and cit["page"] == 2
    got = acme.document_text(cit["document_id"], cit["start"], cit["end"], context=300)
    assert got["document_id"] == cit["document_id"] and got["filename"] == "pump manual.pdf"
    assert got["start"] == max(0, cit["start"] - 300)
    # the quoted span sits at its offsets inside the returned window
    at = cit["start"] - got["start"]
    assert got["text"][at:at + cit["end"] - cit["start"]] == cit["quote"]
    # and the window is the document's extracted text, read back from the sealed chunks
    text = extracted(MANUAL, DocumentKind.PDF, tmp_path)
    assert got["text"].split() == text[got["start"]:got["end"]].split()
    assert got["page"] == (1 if got["start"] < text.index("Safety.") else 2)


def test_a_search_hit_spans_exactly_its_text(acme: DocqaClient, docs: dict[str, str]) -> None:
    hit = acme.search("drilling permit number", top_k=1,
                      document_ids=[docs["field-notes.md"]])["results"][0]
    got = acme.document_text(hit["document_id"], hit["start"], hit["end"])
    assert (got["start"], got["end"], got["text"]) == (hit["start"], hit["end"], hit["text"])
    assert "DP-90417" in got["text"]


def test_the_whole_text_comes_back_and_ranges_are_bounded(
    stack: Stack, acme: DocqaClient, docs: dict[str, str], tmp_path: Path,
) -> None:
    doc_id = docs["field-notes.md"]
    text = extracted(NOTES, DocumentKind.MARKDOWN, tmp_path)
    whole = acme.document_text(doc_id, 0, len(text) + 1000)
    assert whole["end"] == len(text.rstrip()) and whole["text"].split() == text.split()
    auth = {"Authorization": f"Bearer {KEYS['acme']}"}
    for params, says in [({"start": 9, "end": 3}, "after end"),
                         ({"start": 0, "end": 25_000}, "20000"),
                         ({"start": len(text) + 50, "end": len(text) + 60}, "past the end")]:
        resp = raw(stack, "GET", f"/v1/documents/{doc_id}/text", headers=auth, params=params)
        assert resp.status_code == 400 and says in resp.json()["detail"], resp.text
    bad = raw(stack, "GET", f"/v1/documents/{doc_id}/text", headers=auth,
              params={"start": "x", "end": 4})
    assert bad.status_code == 400 and bad.json()["errors"][0]["field"] == "start", bad.text


def test_the_original_file_as_uploaded(acme: DocqaClient, docs: dict[str, str],
                                       tmp_path: Path) -> None:
    with acme.document_file(docs["pump manual.pdf"]) as resp:
        body = resp.read()
        headers = resp.headers
    assert hashlib.sha256(body).digest() == hashlib.sha256(MANUAL).digest()
    assert headers["content-type"] == "application/pdf"
    assert headers["content-length"] == str(len(MANUAL))
    assert headers["content-disposition"].startswith('attachment; filename="pump manual.pdf"')
    saved = acme.download(docs["field-notes.md"], tmp_path)
    assert saved == tmp_path / "field-notes.md" and saved.read_bytes() == NOTES


def _status(call: Any) -> int:
    try:
        call()
    except DocqaAPIError as exc:
        return exc.status
    return 200


def test_another_tenant_gets_404_for_text_and_file(
    acme: DocqaClient, globex: DocqaClient, docs: dict[str, str], tmp_path: Path,
) -> None:
    doc_id = docs["pump manual.pdf"]
    assert _status(lambda: globex.document_text(doc_id, 0, 100)) == 404
    assert _status(lambda: globex.download(doc_id, tmp_path / "stolen.pdf")) == 404
    assert not (tmp_path / "stolen.pdf").exists()
    assert "Ostrava" not in str(globex.last_response.read())
    # globex reads its own
    own = globex.upload_bytes("globex.txt", b"Globex keeps its spare keys in locker 31.\n")
    assert globex.wait_ready([own["id"]], timeout=120)[own["id"]]["status"] == "ready"
    assert "locker 31" in globex.document_text(own["id"], 0, 200)["text"]
    assert _status(lambda: acme.document_text(own["id"], 0, 200)) == 404
    assert _status(lambda: acme.download(own["id"], tmp_path / "x.txt")) == 404


def test_after_delete_text_and_file_are_404(acme: DocqaClient, tmp_path: Path) -> None:
    doc = acme.upload_bytes("short-lived.txt", b"The short-lived memo names project ORCHID-5.\n")
    assert acme.wait_ready([doc["id"]], timeout=120)[doc["id"]]["status"] == "ready"
    assert "ORCHID-5" in acme.document_text(doc["id"], 0, 100)["text"]
    assert acme.download(doc["id"], tmp_path).read_bytes().startswith(b"The short-lived")
    acme.delete(doc["id"])
    assert _status(lambda: acme.document_text(doc["id"], 0, 100)) == 404
    assert _status(lambda: acme.download(doc["id"], tmp_path / "again.txt")) == 404
    assert acme.last_response.headers["content-type"].startswith("application/problem+json")
