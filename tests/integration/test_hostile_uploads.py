"""Hostile uploads on the real stack: each gets a clear 4xx at upload or ends ``failed`` with a
reason; the worker survives all of them and the next ordinary upload still becomes ready.

This module runs its own stack (Redis database 8) with tight limits, so that the time and
memory limits are reached by small, real files in seconds.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from service.client import DocqaClient
from tests import hostile as h
from tests.factories import make_docx
from tests.integration.conftest import KEYS, Stack, raw, run_stack
from tests.private_redis import session_redis_url

pytestmark = pytest.mark.integration

REDIS_URL = os.environ.get("DOCQA_TEST_HOSTILE_REDIS_URL") or session_redis_url(8)
MAX_UPLOAD = 8 * 1024 * 1024
LIMITS = {
    "DOCQA_MAX_UPLOAD_BYTES": str(MAX_UPLOAD),
    "DOCQA_LIMITS__PARSE_TIMEOUT_S": "8",
    "DOCQA_LIMITS__PARSE_MEMORY_BYTES": str(384 * 1024 * 1024),
    "DOCQA_LIMITS__PDF_MAX_PAGES": "100",
    "DOCQA_LOAD_GENERATOR": "false",  # no /v1/ask here: save the API the model load
}
AUTH = {"Authorization": f"Bearer {KEYS['acme']}"}


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with run_stack(tmp_path_factory.mktemp("docqa-hostile"), REDIS_URL, LIMITS) as st:
        yield st


@pytest.fixture
def client(hostile: Stack) -> Iterator[DocqaClient]:
    with hostile.client("acme") as c:
        yield c


def _upload(stack: Stack, filename: str, data: bytes) -> Any:
    return raw(stack, "POST", "/v1/documents", headers=AUTH, files={"file": (filename, data)})


# ---------------------------------------------------------------- refused at upload

REFUSED_AT_UPLOAD: dict[str, tuple[str, bytes, int, str]] = {
    "over the size limit": ("big.txt", b"a" * (MAX_UPLOAD + 1), 413, "limit"),
    "empty": ("empty.txt", b"", 400, "empty"),
    "windows executable": ("setup.exe", b"MZ\x90\x00\x03" + b"\x00" * 64, 415, "executable"),
    "ELF named .txt": ("notes.txt", b"\x7fELF\x02\x01\x01" + b"\x00" * 64, 415, "executable"),
    "shell script": ("run.txt", b"#!/bin/sh\nrm -rf /\n", 415, "executable"),
    "PDF named .txt": ("report.txt", b"%PDF-1.4\n...", 415, "PDF"),
    "text named .pdf": ("report.pdf", b"just words", 415, "not a PDF"),
    "ZIP that is not a DOCX": ("a.docx", h.nested_zip(), 415, "not a Word document"),
    "DOCX zip bomb (member ratio)": ("bomb.docx", h.docx_zip_bomb(64), 422, "ZIP bomb"),
    "DOCX zip bomb (overall ratio)": ("bomb2.docx", h.docx_overall_ratio_bomb(), 422, "overall"),
    "DOCX with too many members": ("many.docx", h.docx_many_members(1500), 422, "members"),
    "DOCX member escaping its folder": ("t.docx", h.docx_with_member("../../x.xml"), 422,
                                        "member name"),
    "DOCX with a nested .zip": ("n.docx", h.docx_with_member("word/a.zip", h.nested_zip()), 422,
                                "another archive"),
}


@pytest.mark.parametrize("case", list(REFUSED_AT_UPLOAD))
def test_hostile_upload_is_refused_with_a_clear_4xx(hostile: Stack, case: str) -> None:
    filename, data, status, word = REFUSED_AT_UPLOAD[case]
    resp = _upload(hostile, filename, data)
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert body["status"] == status and word in body["detail"], body
    assert not list((hostile.data_dir / "files" / ".staging").iterdir())  # nothing left behind


def test_malformed_multipart_and_json_get_4xx(hostile: Stack) -> None:
    def post(path: str, body: bytes, ctype: str) -> int:
        return raw(hostile, "POST", path, headers={**AUTH, "content-type": ctype},
                   content=body).status_code

    multipart = "multipart/form-data; boundary=XyZ"
    cases = {
        "no boundary": post("/v1/documents", b"--XyZ\r\n\r\nx", "multipart/form-data"),
        "garbage body": post("/v1/documents", b"\x00\xff not multipart at all", multipart),
        "truncated part": post("/v1/documents", b'--XyZ\r\nContent-Disposition: form-data; '
                               b'name="file"; filename="a.txt"\r\n\r\nunterminated', multipart),
        "no file field": post("/v1/documents", b'--XyZ\r\nContent-Disposition: form-data; '
                              b'name="metadata"\r\n\r\n{}\r\n--XyZ--\r\n', multipart),
        "json as upload": post("/v1/documents", b'{"file": "x"}', "application/json"),
        "broken json": post("/v1/search", b'{"query": ', "application/json"),
        "json of wrong shape": post("/v1/search", b'["query"]', "application/json"),
        "wrong field type": post("/v1/search", b'{"query": 5, "top_k": "many"}',
                                 "application/json"),
        "invalid utf-8": post("/v1/search", b'{"query": "\xff\xfe"}', "application/json"),
    }
    assert all(400 <= code < 500 for code in cases.values()), cases


def test_traversal_and_nul_filenames_are_metadata_only(hostile: Stack, client: DocqaClient) -> None:
    for name in ("../../../../tmp/evil.txt", "..\\..\\windows\\evil.txt", "a\x00b/../../c.txt"):
        doc = client.upload_bytes(name, f"Traversal probe for {name!r}.\n".encode())
        rec = client.document(doc["id"])
        assert "/" not in rec["filename"] and "\\" not in rec["filename"]
        assert "\x00" not in rec["filename"] and ".." not in rec["filename"]
        assert (hostile.data_dir / "files" / doc["id"]).exists()
    assert not Path("/tmp/evil.txt").exists()


# ---------------------------------------------------------------- failed by the worker

FAILED_IN_WORKER: dict[str, tuple[str, bytes, str]] = {
    "DOCX billion laughs": ("laughs.docx", h.docx_with_document_xml(h.BILLION_LAUGHS), "DTD"),
    "DOCX external entity (UTF-16)": ("xxe.docx", h.docx_with_document_xml(h.XXE, "utf-16"),
                                      "DTD"),
    "DOCX DTD in a part named .png": (
        "png.docx", h.docx_with_member("word/media/image1.png", h.XXE.encode()), "DTD"),
    "DOCX zip inside a .png": (
        "inner.docx", h.docx_with_member("word/media/image9.png", h.nested_zip()),
        "another archive"),
    "encrypted PDF": ("locked.pdf", h.encrypted_pdf(), "encrypted"),
    "PDF over the page limit": ("pages.pdf", h.many_pages_pdf(101), "101 pages"),
    "PDF stream bomb": ("bomb.pdf", h.pdf_stream_bomb(100), "PDF bomb"),
    "PDF that takes minutes": ("slow.pdf", h.pdf_slow(20), "exceeded the 8 s time limit"),
    "DOCX that needs GBs": ("fat.docx", h.docx_xml_heavy(1_200_000),
                            "exceeded the 384 MiB memory limit"),
}


def _sandbox_children(worker_pid: int, zygotes_too: bool = False) -> list[int]:
    """Parser processes below this stack's worker: new interpreters (``python -m
    ingest.sandbox``) and the children the parse zygote forked (``ingest.zygote`` under
    ``ingest.zygote``; the zygote itself lives as long as the worker, and is listed only
    with ``zygotes_too``)."""
    parents: dict[int, int] = {}
    zygotes: set[int] = set()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmd = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        pid = int(entry.name)
        parents[pid] = int(stat.rsplit(")", 1)[1].split()[1])
        if b"ingest.sandbox" in cmd:
            found.append(pid)
        elif b"ingest.zygote" in cmd:
            zygotes.add(pid)
    found += [pid for pid in zygotes if parents[pid] in zygotes or zygotes_too]

    def below(pid: int) -> bool:
        for _ in range(10):
            pid = parents.get(pid, 0)
            if pid == worker_pid:
                return True
            if pid <= 1:
                return False
        return False

    return [p for p in found if below(p)]


@pytest.fixture(scope="module")
def worker_outcomes(hostile: Stack) -> dict[str, dict[str, Any]]:
    with hostile.client("acme") as c:
        ids = {}
        for case, (filename, data, _word) in FAILED_IN_WORKER.items():
            resp = c.upload_bytes(filename, data)
            assert resp["status"] == "queued", (case, resp)
            ids[resp["id"]] = case
        final = c.wait_ready(list(ids), timeout=600)
    return {ids[doc_id]: doc for doc_id, doc in final.items()}


@pytest.mark.parametrize("case", list(FAILED_IN_WORKER))
def test_hostile_document_ends_failed_with_a_reason(
    worker_outcomes: dict[str, dict[str, Any]], case: str
) -> None:
    doc = worker_outcomes[case]
    assert doc["status"] == "failed", doc
    assert FAILED_IN_WORKER[case][2] in (doc["error"] or ""), doc["error"]


def test_worker_survives_and_the_next_upload_becomes_ready(
    hostile: Stack, client: DocqaClient, worker_outcomes: dict[str, dict[str, Any]]
) -> None:
    assert len(worker_outcomes) == len(FAILED_IN_WORKER)
    worker = hostile.procs["worker"]
    assert worker.poll() is None, hostile.log("worker")[-3000:]
    log = hostile.log("worker")
    assert "WorkerLostError" not in log and "Process 'ForkPoolWorker" not in log, log[-3000:]
    # killed parsers were reaped, none left running; the one child allowed is the pool's
    # spare (worker.warm_parse_child), started for the next document: it has parsed nothing,
    # so it has used little CPU (a hostile parse runs until its limit kills it)
    left = _sandbox_children(worker.pid)
    assert len(left) <= 1, left
    # the parses went through the worker child's parse zygote (worker.parse_zygote), which
    # outlived every hostile file
    assert len(_sandbox_children(worker.pid, zygotes_too=True)) > len(left)
    for pid in left:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        cpu_s = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        assert cpu_s < 5, (fields[0], cpu_s)
    for name, data in [("after.txt", b"After the hostile files, the worker indexes this note "
                                     b"about the Kestrel project.\n"),
                       ("after.docx", make_docx(["The Kestrel project starts in May."]))]:
        doc = client.upload_bytes(name, data)
        final = client.wait_ready([doc["id"]], timeout=180)[doc["id"]]
        assert final["status"] == "ready", final
    hits = client.search("Kestrel project", top_k=5)["results"]
    assert hits and "Kestrel" in hits[0]["text"]
