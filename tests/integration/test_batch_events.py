"""Waiting for many documents on the real stack (API, worker, Redis pub/sub, Chroma): one
event stream for a batch (``POST /v1/documents/events``) reports each document's end exactly
once, batch status and counts agree with it, and another tenant learns nothing."""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import httpx
import pytest

from tests.integration.conftest import KEYS, Stack, raw

pytestmark = pytest.mark.integration

N_DOCS = 30

Event = tuple[str, dict[str, Any]]


def _auth(tenant: str = "acme") -> dict[str, str]:
    return {"Authorization": f"Bearer {KEYS[tenant]}"}


def _stream(stack: Stack, ids: list[str], tenant: str = "acme") -> list[Event]:
    """Every event of a batch stream until the server closes it (comments skipped)."""
    events: list[Event] = []
    name, data = "message", list[str]()
    with httpx.stream("POST", f"{stack.url}/v1/documents/events", json={"ids": ids},
                      headers=_auth(tenant), timeout=httpx.Timeout(60.0, read=300.0),
                      trust_env=False) as resp:
        assert resp.status_code == 200, resp.read()
        assert resp.headers["content-type"].startswith("text/event-stream")
        for line in resp.iter_lines():
            if line == "":
                if data:
                    events.append((name, json.loads("\n".join(data))))
                name, data = "message", []
            elif not line.startswith(":"):
                field, _, value = line.partition(":")
                if field == "event":
                    name = value.strip()
                elif field == "data":
                    data.append(value.removeprefix(" "))
    return events


def _upload_batch(stack: Stack, tag: str) -> list[str]:
    ids = []
    for i in range(N_DOCS):
        text = (f"{tag} note {i}. The depot number {i} at the {tag} harbour holds {i * 3} "
                f"crates of spare parts, counted on day {i} of the spring inventory.")
        resp = raw(stack, "POST", "/v1/documents", headers=_auth(),
                   files={"file": (f"{tag}-{i}.txt", text.encode())})
        assert resp.status_code == 202, resp.text
        ids.append(resp.json()["id"])
    return ids


def test_one_stream_reports_each_document_ready_exactly_once(stack: Stack) -> None:
    globex_before = raw(stack, "GET", "/v1/documents/counts", headers=_auth("globex")).json()
    ids = _upload_batch(stack, "batch")
    events = _stream(stack, [*ids, "no-such-document"])

    assert events[0] == ("missing", {"ids": ["no-such-document"]})
    assert events[-1] == ("end", {"ready": N_DOCS, "failed": 0, "missing": 1})
    done = [d for e, d in events if e == "done"]
    assert Counter(d["id"] for d in done) == Counter(ids)  # each once, none other
    assert all(d["status"] == "ready" and d["chunks"] >= 1 for d in done)
    for doc_id in ids:  # a document's events: progress in stage order, done last
        mine = [(e, d) for e, d in events if e in ("progress", "done") and d["id"] == doc_id]
        assert mine[-1][0] == "done" and all(e == "progress" for e, _ in mine[:-1])
        assert all(d["status"] != "ready" for _, d in mine[:-1])

    status = raw(stack, "POST", "/v1/documents/status", headers=_auth(),
                 json={"ids": ids}).json()
    assert [d["id"] for d in status["items"]] == ids and status["missing"] == []
    assert {d["id"]: d for d in status["items"]} == {d["id"]: d for d in done}
    counts = raw(stack, "GET", "/v1/documents/counts", headers=_auth()).json()
    assert counts["ready"] >= N_DOCS and counts["total"] == sum(
        counts[s] for s in ("queued", "processing", "ready", "failed"))

    # another tenant: every id is missing, nothing about the documents is sent
    theirs = _stream(stack, ids, tenant="globex")
    assert theirs == [("missing", {"ids": ids}),
                      ("end", {"ready": 0, "failed": 0, "missing": N_DOCS})]
    not_theirs = raw(stack, "POST", "/v1/documents/status", headers=_auth("globex"),
                     json={"ids": ids}).json()
    assert not_theirs == {"items": [], "missing": ids}
    assert raw(stack, "GET", "/v1/documents/counts",
               headers=_auth("globex")).json() == globex_before


def test_the_client_waits_for_a_batch_and_a_deleted_document_is_missing(stack: Stack) -> None:
    ids = _upload_batch(stack, "client")
    with stack.client() as acme:
        final = acme.wait_ready(ids, timeout=600)
        assert set(final) == set(ids) and {d["status"] for d in final.values()} == {"ready"}
        acme.delete(ids[0])
        news = [(ev.event, ev.id) for ev in acme.follow(ids[:3], timeout=120)]
    assert news == [("missing", ids[0]), ("done", ids[1]), ("done", ids[2])]


def test_a_batch_stream_needs_a_key_and_a_bounded_list(stack: Stack) -> None:
    assert raw(stack, "POST", "/v1/documents/events", json={"ids": ["x"]}).status_code == 401
    too_many = raw(stack, "POST", "/v1/documents/events", headers=_auth(),
                   json={"ids": [f"id-{i}" for i in range(1001)]})
    assert too_many.status_code == 400
    assert too_many.headers["content-type"].startswith("application/problem+json")
