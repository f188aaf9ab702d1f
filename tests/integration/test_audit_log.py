"""The audit log on the real stack: who did what, by key id, without keys or text."""

from __future__ import annotations

import json
import shutil
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from core.keys import resolve_key
from core.settings import parse_api_keys
from service.client import DocqaAPIError, DocqaClient
from tests.integration.conftest import KEYS, Stack

pytestmark = pytest.mark.integration

DOC_CANARY = "MARMALADE-QUOKKA-5531"
QUERY_CANARY = "PELICAN-QUERY-7719"
QUESTION = "What is the courier code word for the Uppsala warehouse?"


def _entries(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _cli(stack: Stack, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "service.cli", "audit", *args], env=stack.env,
                          capture_output=True, text=True, timeout=60)


def test_actions_are_audited_by_key_id_without_keys_or_text(
    stack: Stack, acme: DocqaClient, tmp_path: Path
) -> None:
    log = stack.data_dir / "audit.log"
    key_id = resolve_key(KEYS["acme"], parse_api_keys(stack.env["DOCQA_API_KEYS"]), None)  # type: ignore[arg-type]
    assert key_id is not None

    doc = acme.upload_bytes("courier-memo.txt", (
        f"Memo for the Uppsala warehouse. The courier code word is {DOC_CANARY}.\n"
        "Deliveries arrive on Tuesdays before noon.\n").encode())
    assert acme.wait_ready([doc["id"]], timeout=120)[doc["id"]]["status"] == "ready"

    query = f"courier code word {QUERY_CANARY}"
    searcher = acme.with_headers({"X-Request-ID": "it-audit-search"})
    found = searcher.search(query, top_k=5)
    assert searcher.last_response.status_code == 200, searcher.last_response.text
    returned = [h["chunk_id"] for h in found["results"]]
    assert returned

    asker = acme.with_headers({"X-Request-ID": "it-audit-ask"})
    answer = asker.ask(QUESTION)
    assert asker.last_response.status_code == 200, asker.last_response.text
    assert answer["status"] == "answered" and DOC_CANARY in answer["answer"]

    acme.delete(doc["id"])
    with pytest.raises(DocqaAPIError) as again:
        acme.delete(doc["id"])
    assert again.value.status == 404

    entries = _entries(log)
    mine = [e for e in entries if doc["id"] in (e.get("document_ids") or [])
            or e.get("request_id", "").startswith("it-audit-")]
    by_event: dict[str, list[dict[str, Any]]] = {}
    for e in mine:
        by_event.setdefault(e["event"], []).append(e)
        assert e["tenant"] == "acme" and e["key_id"] == key_id.key_id, e
        assert e["request_id"] and e["ts"].endswith("Z")

    (upload,) = by_event["upload"]
    assert upload["status"] == "accepted" and upload["document_ids"] == [doc["id"]]
    assert len(upload["sha256"]) == 64 and upload["bytes"] > 0
    assert "filename" not in upload and upload["filename_chars"] == len("courier-memo.txt")

    (search,) = by_event["search"]
    assert search["request_id"] == "it-audit-search" and search["status"] == "ok"
    assert search["chunk_ids"] == returned and search["results"] == len(returned)
    assert search["query_chars"] == len(query) and "query" not in search

    (ask,) = by_event["ask"]
    assert ask["request_id"] == "it-audit-ask" and ask["status"] == "answered"
    assert ask["chunk_ids"] and all(c.startswith(doc["id"] + ":") for c in ask["chunk_ids"])
    assert ask["document_ids"] == [doc["id"]] and ask["citations"] >= 1
    assert ask["question_chars"] == len(QUESTION) and "question" not in ask

    deleted, refused = by_event["delete"]
    assert deleted["status"] == "deleted"
    assert refused["status"] == "error" and refused["http_status"] == 404

    # the whole file: no plain key, no document text, no query or question text
    text = log.read_text()
    for secret in (*KEYS.values(), DOC_CANARY, "QUOKKA", QUERY_CANARY, QUESTION, "Uppsala",
                   "courier-memo"):
        assert secret not in text, secret
    assert stat.S_IMODE(log.stat().st_mode) == 0o600

    ok = _cli(stack, "verify")
    assert ok.returncode == 0 and ok.stdout.startswith("OK"), ok.stdout + ok.stderr
    tailed = _cli(stack, "tail", "-n", "1")
    assert tailed.returncode == 0 and json.loads(tailed.stdout)["event"] in {"delete", "search",
                                                                             "ask", "upload"}

    # one edited line (a copy: the live log keeps serving the rest of the session)
    copy = tmp_path / "audit.log"
    shutil.copy(log, copy)
    shutil.copy(log.with_name("audit.log.head"), tmp_path / "audit.log.head")
    lines = copy.read_text().splitlines(keepends=True)
    n = next(i for i, line in enumerate(lines) if f'"request_id":"{search["request_id"]}"' in line)
    lines[n] = lines[n].replace('"tenant":"acme"', '"tenant":"acmf"')
    copy.write_text("".join(lines))
    bad = _cli(stack, "verify", "--path", str(copy))
    assert bad.returncode == 1, bad.stdout + bad.stderr
    assert "TAMPERED" in bad.stderr and f"line {n + 1}:" in bad.stderr
