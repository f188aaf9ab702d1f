"""Live ingest progress on the real stack: ``GET /v1/documents/{id}/events`` read with raw
httpx streaming, and ``docqa ingest`` following it (tests/integration/conftest.py)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests import hostile as h
from tests.factories import make_pdf
from tests.integration.conftest import KEYS, Stack, raw

pytestmark = pytest.mark.integration

STAGE_ORDER = {"queued": 0, "parsing": 1, "chunking": 2, "embedding": 3, "indexing": 4,
               "ready": 5, "failed": 5}
N_PAGES = 12

Event = tuple[str, dict[str, Any]]


def _auth(tenant: str = "acme") -> dict[str, str]:
    return {"Authorization": f"Bearer {KEYS[tenant]}"}


def read_events(stack: Stack, doc_id: str, tenant: str = "acme") -> tuple[list[Event], str]:
    """Every event of the stream until the server closes it, and the raw text (for the
    framing checks). Comments (keep-alives) are skipped as an SSE client skips them."""
    events: list[Event] = []
    lines: list[str] = []
    name, data = "message", list[str]()
    with httpx.stream("GET", f"{stack.url}/v1/documents/{doc_id}/events", headers=_auth(tenant),
                      timeout=httpx.Timeout(60.0, read=120.0), trust_env=False) as resp:
        assert resp.status_code == 200, resp.read()
        assert resp.headers["content-type"].startswith("text/event-stream")
        for line in resp.iter_lines():
            lines.append(line)
            if line == "":
                if data:
                    events.append((name, json.loads("\n".join(data))))
                name, data = "message", []
            elif line.startswith(":"):
                continue
            else:
                field, _, value = line.partition(":")
                value = value.removeprefix(" ")
                if field == "event":
                    name = value
                elif field == "data":
                    data.append(value)
    return events, "\n".join(lines)


def _upload(stack: Stack, name: str, data: bytes) -> str:
    resp = raw(stack, "POST", "/v1/documents", headers=_auth(), files={"file": (name, data)})
    assert resp.status_code == 202, resp.text
    return str(resp.json()["id"])


def _pdf_pages(tag: str) -> list[str]:
    return [f"{tag} page {i}: the committee reviewed budget line {i} for the harbor project, "
            f"noting {i * 7} open items, a contractor named Firm{i} and a deadline in week {i}. "
            "Further discussion covered staffing, energy costs and the garden renovation plan."
            for i in range(1, N_PAGES + 1)]


def check_stream(events: list[Event], status: str) -> dict[str, Any]:
    """The contract's guarantees for one document's stream; returns the final document."""
    assert events, "no events"
    assert events[0][0] == "progress"
    assert [e for e, _ in events[:-1]] == ["progress"] * (len(events) - 1)
    assert events[-1][0] == "done"
    final = events[-1][1]
    assert final["status"] == status
    ranks = [STAGE_ORDER[d["progress"]["stage"]] for _, d in events]
    assert ranks == sorted(ranks), [d["progress"] for _, d in events]
    for (_, before), (_, after) in zip(events, events[1:], strict=False):
        if before["progress"]["stage"] == after["progress"]["stage"]:
            assert after["progress"]["done"] >= before["progress"]["done"]
    return final


def _progress(events: list[Event], stage: str) -> list[dict[str, Any]]:
    return [d["progress"] for _, d in events if d["progress"]["stage"] == stage]


def test_a_pdf_streams_pages_then_chunks_then_done(stack: Stack) -> None:
    doc_id = _upload(stack, "minutes.pdf", make_pdf(_pdf_pages("Minutes")))
    events, text = read_events(stack, doc_id)
    final = check_stream(events, "ready")
    assert final["id"] == doc_id and final["pages"] == N_PAGES and final["chunks"] > 0
    assert final == raw(stack, "GET", f"/v1/documents/{doc_id}", headers=_auth()).json()
    for p in _progress(events, "parsing"):
        assert p["unit"] == "pages"
        assert p["total"] == N_PAGES or (p["total"], p["done"]) == (0, 0)  # 0: not counted yet
        assert p["done"] <= p["total"]
    for stage in ("embedding", "indexing"):
        for p in _progress(events, stage):
            assert p["unit"] == "chunks" and p["total"] == final["chunks"]
    for p in _progress(events, "queued") + _progress(events, "chunking"):
        assert p["unit"] == ""
    # the framing of the contract: "event: NAME\ndata: JSON\n\n"
    assert re.search(r"^event: done\ndata: \{", text, re.M)


def test_a_text_file_streams_to_ready(stack: Stack) -> None:
    doc_id = _upload(stack, "notes.txt", b"Harbor notes. The pier opens in May 2031 after "
                     b"the survey of the northern breakwater. " * 20)
    events, _ = read_events(stack, doc_id)
    final = check_stream(events, "ready")
    assert final["pages"] == 1
    for p in _progress(events, "parsing"):
        assert p["unit"] == "pages" and p["total"] in (0, 1)


def test_a_failed_document_ends_with_done_failed_and_its_error(stack: Stack) -> None:
    doc_id = _upload(stack, "locked.pdf", h.encrypted_pdf("progress-events"))
    events, _ = read_events(stack, doc_id)
    final = check_stream(events, "failed")
    assert "encrypted" in final["error"]


def test_a_finished_document_gives_its_state_then_done(stack: Stack) -> None:
    doc_id = _upload(stack, "short.txt", b"A short note about the eastern lighthouse keeper.")
    read_events(stack, doc_id)  # until it finished
    events, _ = read_events(stack, doc_id)
    assert [e for e, _ in events] == ["progress", "done"]
    assert events[0][1] == events[1][1] and events[1][1]["status"] == "ready"


def test_events_are_tenant_scoped_and_need_a_key(stack: Stack) -> None:
    doc_id = _upload(stack, "private.txt", b"Only acme may watch this ingest of the west wing.")
    other = raw(stack, "GET", f"/v1/documents/{doc_id}/events", headers=_auth("globex"))
    assert other.status_code == 404
    assert other.headers["content-type"].startswith("application/problem+json")
    unknown = raw(stack, "GET", "/v1/documents/no-such-doc/events", headers=_auth())
    assert unknown.status_code == 404 and unknown.json()["status"] == 404
    anonymous = raw(stack, "GET", f"/v1/documents/{doc_id}/events")
    assert anonymous.status_code == 401
    read_events(stack, doc_id)  # and the owner can


def test_docqa_ingest_shows_progress_per_file_and_overall(stack: Stack, tmp_path: Path) -> None:
    pdf = tmp_path / "report.pdf"
    pdf.write_bytes(make_pdf(_pdf_pages("Report")))
    txt = tmp_path / "memo.txt"
    txt.write_bytes(b"Memo. The northern depot closes on 3 June 2032 for inspection. " * 30)
    done = subprocess.run(
        [sys.executable, "-m", "service.cli", "ingest", str(pdf), str(txt),
         "--url", stack.url, "--api-key", KEYS["acme"]],
        env=stack.env, capture_output=True, text=True, timeout=900, check=False)
    out = done.stdout
    assert done.returncode == 0, out + done.stderr
    assert "\x1b" not in out and "\r" not in out  # not a TTY: plain lines, no control codes
    stages = "|".join(s for s in STAGE_ORDER if s not in ("ready", "failed"))
    # The twelve-page report is uploaded first and is still being worked on when the stream
    # opens, so its own stages show. The two-chunk memo may go from queued to ready between
    # two reads of its state (the stream reports states, not every transition), so only its
    # outcome line is certain.
    assert re.search(rf"^{re.escape(str(pdf))}: ({stages})\b", out, re.M), out
    for path in (pdf, txt):
        name = re.escape(str(path))
        assert re.search(rf"^{name}: ready \(\d+ chunks?, \d+ pages?\) \[[12]/2 files", out,
                         re.M), out
    assert re.search(r"\[1/2 files(, ETA \d+:\d\d)?\]", out), out  # the overall count
    assert "[2/2 files]" in out
    assert out.rstrip().endswith("2 ready, 0 failed")
