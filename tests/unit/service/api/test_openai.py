"""OpenAI-compatible routes and the streaming /v1/ask, in-process (fast; the real stack is
covered by tests/integration/test_openai_compat.py and test_ask_stream.py).

The real Litestar app, guards, error mapping, audit log and answer pipeline run on a
hash embedder, a store holding three fixed passages and, for generative mode, a generator
that streams a fixed reply (it records whether it was closed and whether its slot is free).
"""

from __future__ import annotations

import base64
import json
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from litestar.testing import TestClient

from core.errors import TransientError
from ingest.embedding import HashEmbedder
from service.answer import AnswerPipeline, AnswerResult, DraftToken
from service.answer.followup import follow_up_questions
from service.api.ask import ask_event_stream
from service.api.openai import NOT_FOUND_MESSAGE
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


# ---------------------------------------------------------------- the pipeline


def test_follow_ups_carry_the_topic_of_the_turn_they_point_back_to() -> None:
    assert follow_up_questions("When was it founded?", []) == ["When was it founded?"]
    assert follow_up_questions("When was it founded?", ["Tell me about Kestrel Corp"]) == [
        "When was it founded? (Kestrel Corp)"]
    # a second follow-up still finds the topic two turns back
    assert follow_up_questions("Who founded it?", ["Tell me about Kestrel Corp",
                                                   "When was it founded?"]) == [
        "Who founded it? (Kestrel Corp)"]
    # a question that stands alone is asked as it is first (a change of subject stays one)
    assert follow_up_questions("What does the canteen serve?", ["Tell me about Kestrel Corp"]) \
        == ["What does the canteen serve?", "What does the canteen serve? (Kestrel Corp)"]


def test_extractive_events_are_just_the_result_and_equal_ask(tmp_path: Path) -> None:
    emb = HashEmbedder()
    p = AnswerPipeline(settings_for(tmp_path), emb, FakeStore(PASSAGES, emb),  # type: ignore[arg-type]
                       None, model=False)
    events = list(p.ask_events("t", "When did the Acme plant open?", 5))
    assert len(events) == 1 and isinstance(events[0], AnswerResult)
    plain = p.ask("t", "When did the Acme plant open?", 5)
    assert (events[0].status, events[0].answer, events[0].citations) == (
        plain.status, plain.answer, plain.citations)


def test_generative_events_stream_the_draft_then_the_verified_result(tmp_path: Path) -> None:
    emb = HashEmbedder()
    gen = StreamingFake("It opened in 2014 [1]")
    p = AnswerPipeline(settings_for(tmp_path, "generative"), emb,
                       FakeStore(PASSAGES, emb), gen, model=False)  # type: ignore[arg-type]
    events = list(p.ask_events("t", "When did the Acme plant open?", 5))
    tokens = [e.text for e in events if isinstance(e, DraftToken)]
    final = events[-1]
    assert len(tokens) > 1 and "".join(tokens) == "It opened in 2014 [1]"
    assert isinstance(final, AnswerResult) and final.status == "answered"
    assert final.answer == p.ask("t", "When did the Acme plant open?", 5).answer
    assert final.trace["draft"] == "It opened in 2014 [1]"


# ---------------------------------------------------------------- /v1/ask streaming


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


# ---------------------------------------------------------------- chat completions


def chat(c: Any, *messages: tuple[str, str], **extra: Any) -> httpx.Response:
    return c.post("/v1/chat/completions", headers=AUTH, json={
        "model": "docqa", "messages": [{"role": r, "content": t} for r, t in messages], **extra})


def test_chat_completion_answers_with_citations_and_usage(tmp_path: Path) -> None:
    with TestClient(make_app(tmp_path)) as c:
        resp = chat(c, ("system", "Be brief."), ("user", "When did the Acme plant open?"),
                    temperature=0.2, max_tokens=50)
        plain = c.post("/v1/ask", json={"question": "When did the Acme plant open?"},
                       headers=AUTH).json()
    body = resp.json()
    assert resp.status_code == 200, body
    assert body["object"] == "chat.completion" and body["model"] == "docqa"
    choice = body["choices"][0]
    assert choice["message"] == {"role": "assistant", "content": plain["answer"]}
    assert choice["finish_reason"] == "stop" and body["docqa_status"] == "answered"
    assert body["citations"] == plain["citations"]
    u = body["usage"]
    assert u["prompt_tokens"] > 0 and u["total_tokens"] == u["prompt_tokens"] + u[
        "completion_tokens"]


def test_chat_not_found_is_a_fixed_message(tmp_path: Path) -> None:
    with TestClient(make_app(tmp_path)) as c:
        body = chat(c, ("user", "zebra xylophone quasar")).json()
    assert body["choices"][0]["message"]["content"] == NOT_FOUND_MESSAGE
    assert body["docqa_status"] == "not_found" and body["citations"] == []


def test_chat_stream_is_openai_chunks_ending_with_citations(tmp_path: Path) -> None:
    with TestClient(make_app(tmp_path)) as c:
        whole = chat(c, ("user", "When did the Acme plant open?")).json()
        resp = chat(c, ("user", "When did the Acme plant open?"), stream=True,
                    stream_options={"include_usage": True})
    assert resp.headers["content-type"].startswith("text/event-stream")
    datas = [block.removeprefix("data: ") for block in resp.text.strip().split("\n\n")]
    assert datas[-1] == "[DONE]"
    chunks = [json.loads(d) for d in datas[:-1]]
    assert all(ch["object"] == "chat.completion.chunk" for ch in chunks)
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    content = "".join(ch["choices"][0]["delta"].get("content", "") for ch in chunks
                      if ch["choices"])
    assert content == whole["choices"][0]["message"]["content"]
    last = chunks[-2]
    assert last["choices"][0]["finish_reason"] == "stop"
    assert last["citations"] == whole["citations"]
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["total_tokens"] > 0


@pytest.mark.parametrize(("payload", "status", "says"), [
    ({"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}, 404, "gpt-4o"),
    ({"model": "docqa", "messages": [{"role": "user", "content": "hi"},
                                     {"role": "assistant", "content": "hello"}]}, 400, "last"),
    ({"model": "docqa", "messages": [{"role": "user", "content": "   "}]}, 400, "empty"),
    ({"model": "docqa", "messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "x"}}]}]}, 400, "image_url"),
    ({"model": "docqa", "messages": []}, 400, "messages"),
    ({"model": "docqa", "messages": [{"role": "user", "content": "x" * 4001}]}, 400, "4000"),
    ({"model": "docqa", "n": 2, "messages": [{"role": "user", "content": "hi"}]}, 400, "n"),
])
def test_chat_bad_requests_are_problems(tmp_path: Path, payload: dict[str, Any], status: int,
                                        says: str) -> None:
    with TestClient(make_app(tmp_path)) as c:
        resp = c.post("/v1/chat/completions", headers=AUTH, json=payload)
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"].startswith("application/problem+json")
    assert says in resp.json()["detail"]
    # OpenAI's error object too, which OpenAI clients put into their exception's message
    assert resp.json()["error"]["message"] == resp.json()["detail"]


def test_chat_content_parts_of_text_are_read(tmp_path: Path) -> None:
    with TestClient(make_app(tmp_path)) as c:
        body = c.post("/v1/chat/completions", headers=AUTH, json={"model": "docqa", "messages": [
            {"role": "user", "content": [{"type": "text", "text": "When did the Acme plant "},
                                         {"type": "text", "text": "open?"}]}]}).json()
    assert "2014" in body["choices"][0]["message"]["content"]


# ---------------------------------------------------------------- models and embeddings


def test_models_list_docqa_and_the_embedder(tmp_path: Path) -> None:
    with TestClient(make_app(tmp_path)) as c:
        listed = c.get("/v1/models", headers=AUTH).json()
        one = c.get("/v1/models/docqa", headers=AUTH)
        missing = c.get("/v1/models/gpt-4o", headers=AUTH)
        anonymous = c.get("/v1/models")
    assert listed["object"] == "list"
    assert [m["id"] for m in listed["data"]] == ["docqa", "all-MiniLM-L6-v2"]
    assert one.json()["id"] == "docqa" and missing.status_code == 404
    assert anonymous.status_code == 401
    assert anonymous.json()["error"]["type"] == "authentication_error"


def test_embeddings_float_and_base64_agree(tmp_path: Path) -> None:
    with TestClient(make_app(tmp_path)) as c:
        req = {"model": "all-MiniLM-L6-v2", "input": ["plant opened", "lunch at noon"]}
        as_float = c.post("/v1/embeddings", headers=AUTH, json=req).json()
        as_b64 = c.post("/v1/embeddings", headers=AUTH,
                        json={**req, "encoding_format": "base64"}).json()
        single = c.post("/v1/embeddings", headers=AUTH,
                        json={**req, "input": "plant opened"}).json()
    assert [d["index"] for d in as_float["data"]] == [0, 1]
    vectors = [d["embedding"] for d in as_float["data"]]
    assert len(vectors[0]) == HashEmbedder().dimension
    decoded = [list(struct.unpack(f"<{len(vectors[0])}f", base64.b64decode(d["embedding"])))
               for d in as_b64["data"]]
    for a, b in zip(vectors, decoded, strict=True):
        assert a == pytest.approx(b, abs=1e-6)
    assert single["data"][0]["embedding"] == pytest.approx(vectors[0])
    assert as_float["usage"]["prompt_tokens"] > 0 and as_float["model"] == "all-MiniLM-L6-v2"


@pytest.mark.parametrize(("payload", "status", "says"), [
    ({"model": "all-MiniLM-L6-v2", "input": [1, 2, 3]}, 400, "token arrays"),
    ({"model": "all-MiniLM-L6-v2", "input": [[1, 2], [3]]}, 400, "token arrays"),
    ({"model": "all-MiniLM-L6-v2", "input": ""}, 400, "input"),
    ({"model": "all-MiniLM-L6-v2", "input": ["ok"] * 257}, 400, "input"),
    ({"model": "all-MiniLM-L6-v2", "input": "x" * 8001}, 400, "input"),
    ({"model": "all-MiniLM-L6-v2", "input": "ok", "dimensions": 7}, 400, "dimensions"),
    ({"model": "text-embedding-3-small", "input": "ok"}, 404, "text-embedding-3-small"),
])
def test_embeddings_bad_requests_are_problems(tmp_path: Path, payload: dict[str, Any],
                                              status: int, says: str) -> None:
    with TestClient(make_app(tmp_path)) as c:
        resp = c.post("/v1/embeddings", headers=AUTH, json=payload)
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"].startswith("application/problem+json")
    assert says in resp.json()["detail"]


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
