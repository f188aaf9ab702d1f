"""``POST /v1/ask`` streamed as server-sent events, in-process (the real stack:
tests/integration/test_ask_stream.py): the real app, audit log and answer pipeline over
three fixed passages with a hash embedder and, for generative mode, a generator that streams
a fixed reply (it records whether it was closed and whether its slot is free).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
from litestar.testing import TestClient

from core.errors import TransientError
from ingest.embedding import HashEmbedder
from service.answer import AnswerPipeline
from service.api.ask import ask_event_stream
from tests.unit.conftest import (
    PASSAGES,
    PASSAGES_KEY,
    FakeStore,
    StreamingFake,
    settings_for,
)
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
    assert events[-1] == ("error", {"status": 503, "title": "Service unavailable",
                                    "detail": "the model went away"})
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
