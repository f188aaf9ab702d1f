"""``POST /v1/ask`` and ``POST /v1/search`` in-process (the real stack:
tests/integration/test_ask_stream.py).

``/v1/ask`` streamed as server-sent events: the real app, audit log and answer pipeline
over three fixed passages with a hash embedder and, for generative mode, a generator that
streams a fixed reply (it records whether it was closed and whether its slot is free).
``/v1/search`` on the audit record: ids, never text; no record, no answer.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
from litestar.testing import TestClient

from core.audit import AuditLog
from core.domain import ChunkHit
from core.errors import TransientError
from core.settings import Settings
from ingest.embedding import HashEmbedder
from service.answer import AnswerPipeline
from service.api.ask import ask_event_stream
from tests.unit.conftest import (
    PASSAGES,
    PASSAGES_KEY,
    FakeAnswers,
    FakeStore,
    StreamingFake,
    settings_for,
)
from tests.unit.conftest import make_app as shared_make_app
from tests.unit.conftest import make_passages_app as make_app

AUTH = {"Authorization": f"Bearer {PASSAGES_KEY}"}


def sse_events(text: str) -> list[tuple[str, Any]]:
    out = []
    for block in text.strip().split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.splitlines())
        out.append((lines["event"], json.loads(lines["data"])))
    return out


def without_timings(body: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in body.items() if k != "timings"}


def test_streaming_ask_ends_with_the_plain_answer(tmp_path: Path) -> None:
    with TestClient(make_app(tmp_path)) as c:
        body = {"question": "When did the Acme plant open?"}
        plain = c.post("/v1/ask", json=body, headers=AUTH).json()
        resp = c.post("/v1/ask", json={**body, "stream": True}, headers=AUTH)
    assert resp.status_code == 200 and resp.headers["content-type"].startswith(
        "text/event-stream")
    events = sse_events(resp.text)
    assert [name for name, _ in events][-1] == "final"
    assert {name for name, _ in events[:-1]} == {"token"}
    assert "".join(d["text"] for _, d in events[:-1]) == plain["answer"]
    assert without_timings(events[-1][1]) == without_timings(plain)
    assert plain["status"] == "answered" and "2014" in plain["answer"]


def test_streaming_ask_full_queue_is_a_503_before_the_stream(tmp_path: Path) -> None:
    gen = StreamingFake("2014 [1]")
    assert gen.slot.acquire(blocking=False)  # someone else is generating
    with TestClient(make_app(tmp_path, gen, "generative")) as c:
        resp = c.post("/v1/ask", json={"question": "When did the Acme plant open?",
                                       "stream": True}, headers=AUTH)
    assert resp.status_code == 503 and resp.headers["content-type"].startswith(
        "application/problem+json")
    assert resp.headers["retry-after"] == "3" and resp.json()["status"] == 503


def test_streaming_ask_in_generative_mode_sends_the_draft(tmp_path: Path) -> None:
    gen = StreamingFake("The plant opened in 2015 [1]")  # a wrong draft: final must differ
    with TestClient(make_app(tmp_path, gen, "generative")) as c:
        resp = c.post("/v1/ask", json={"question": "When did the Acme plant open?",
                                       "stream": True}, headers=AUTH)
    events = sse_events(resp.text)
    assert "".join(d["text"] for n, d in events if n == "token") == "The plant opened in 2015 [1]"
    final = events[-1][1]
    assert events[-1][0] == "final" and "2014" in final["answer"] and "2015" not in final["answer"]
    assert gen.slot.acquire(blocking=False)  # the slot was given back


class FailingFake(StreamingFake):
    """Streams one piece, then fails (a transient error of the model's process)."""

    def chat_stream(self, messages: list[dict[str, str]], max_tokens: int) -> Iterator[str]:
        yield "The plant "
        raise TransientError("the model went away", 2)


def test_a_failure_after_the_stream_started_is_an_error_event(tmp_path: Path) -> None:
    with TestClient(make_app(tmp_path, FailingFake(""), "generative")) as c:
        resp = c.post("/v1/ask", json={"question": "When did the Acme plant open?",
                                       "stream": True}, headers=AUTH)
    assert resp.status_code == 200
    events = sse_events(resp.text)
    assert events[0] == ("token", {"text": "The plant "})
    # the same problem a plain response would carry: its type, and no cause (logged)
    assert events[-1] == ("error", {"type": "urn:docqa:problem:service-unavailable",
                                    "status": 503, "title": "Service unavailable",
                                    "detail": "a service docqa depends on is unavailable; "
                                              "retry later"})
    assert "final" not in {name for name, _ in events}


def test_a_client_that_leaves_mid_draft_frees_the_generator(tmp_path: Path) -> None:
    """The response's iterator is closed when the client disconnects: the pipeline (and the
    generator's queue slot and lock) must be released then, not when generation ends."""
    gen = StreamingFake("It opened in 2014 and employs 10 engineers [1]")
    emb = HashEmbedder()
    p = AnswerPipeline(settings_for(tmp_path, "generative"), emb,
                       FakeStore(PASSAGES, emb), gen, model=False)  # type: ignore[arg-type]
    events = p.ask_events("t", "When did the Acme plant open?", 5)
    stream = ask_event_stream(events)  # type: ignore[arg-type]

    async def first_then_leave() -> bytes:
        body: Any = stream.iterator
        first = await body.__anext__()
        await body.aclose()
        return bytes(first)

    assert anyio.run(first_then_leave).startswith(b"event: token\n")
    assert gen.closed and gen.slot.acquire(blocking=False)


# ---------------------------------------------------------------- /v1/search on the audit record


SEARCH_HITS = [ChunkHit(f"d{n}:0:aa", f"d{n}", "f.txt", "SECRET TEXT", 1, 0, 5, 0.5)
               for n in (1, 2)]


def _client(tmp_path: Path) -> tuple[TestClient[Any], Path]:
    settings = Settings(data_dir=tmp_path, api_keys="acme:plain-key-acme-1", load_generator=False)
    app, _ = shared_make_app(settings=settings, answers=FakeAnswers(SEARCH_HITS),
                             audit=AuditLog(settings.audit_path))
    return TestClient(app), settings.audit_path


def test_search_is_audited_with_key_id_and_chunk_ids_but_no_text(tmp_path: Path) -> None:
    client, path = _client(tmp_path)
    auth = {"Authorization": "Bearer plain-key-acme-1", "X-Request-ID": "trace-42"}
    with client:
        resp = client.post("/v1/search", json={"query": "canary question ZZQ"}, headers=auth)
    assert resp.status_code == 200, resp.text
    raw = path.read_text()
    assert "plain-key-acme-1" not in raw and "ZZQ" not in raw and "SECRET" not in raw
    entry = json.loads(raw)
    assert entry["event"] == "search" and entry["key_id"] == "static-1"
    assert entry["tenant"] == "acme" and entry["request_id"] == "trace-42"
    assert entry["chunk_ids"] == ["d1:0:aa", "d2:0:aa"] and entry["document_ids"] == ["d1", "d2"]
    assert entry["query_chars"] == len("canary question ZZQ") and entry["results"] == 2


def test_search_fails_closed_when_the_audit_log_cannot_be_written(tmp_path: Path) -> None:
    client, path = _client(tmp_path)
    path.write_bytes(b"{torn")
    with client:
        resp = client.post("/v1/search", json={"query": "q"},
                           headers={"Authorization": "Bearer plain-key-acme-1"})
    assert resp.status_code == 503, resp.text
    assert resp.json()["title"] == "Audit log unavailable" and "SECRET" not in resp.text
    assert resp.headers.get("retry-after")


def test_a_follow_up_takes_its_subject_from_the_history(tmp_path: Path) -> None:
    """``history``: the earlier questions, as the web page's thread sends them. "it" alone
    names nothing; after a question about Kestrel Corp it is Kestrel Corp."""
    with TestClient(make_app(tmp_path)) as c:
        follow_up = {"question": "Who founded it?"}
        alone = c.post("/v1/ask", json=follow_up, headers=AUTH).json()
        threaded = c.post("/v1/ask", json={**follow_up, "history": ["Tell me about Kestrel Corp"]},
                          headers=AUTH).json()
        streamed = c.post("/v1/ask", json={**follow_up, "stream": True,
                                           "history": ["Tell me about Kestrel Corp"]},
                          headers=AUTH)
        too_long = c.post("/v1/ask", json={**follow_up, "history": ["q"] * 9}, headers=AUTH)
        not_text = c.post("/v1/ask", json={**follow_up, "history": [{"role": "user"}]},
                          headers=AUTH)
    assert alone["status"] == "not_found", alone
    assert threaded["status"] == "answered" and "Ingrid Vale" in threaded["answer"], threaded
    assert threaded["citations"][0]["quote"].startswith("Kestrel Corp")
    assert without_timings(sse_events(streamed.text)[-1][1]) == without_timings(threaded)
    for refused in (too_long, not_text):
        assert refused.status_code == 400, refused.text
        assert "history" in refused.json()["detail"]
