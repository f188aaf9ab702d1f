"""OpenAI-compatible routes (chat completions, models, embeddings), in-process (fast; the
real stack is covered by tests/integration/test_openai_compat.py).

The real Litestar app, guards, error mapping, audit log and answer pipeline run on a
hash embedder and a store holding three fixed passages.
"""

from __future__ import annotations

import base64
import json
import struct
from pathlib import Path
from typing import Any

import httpx
import pytest
from litestar.testing import TestClient

from ingest.embedding import HashEmbedder
from service.api.openai import NOT_FOUND_MESSAGE
from tests.unit.conftest import PASSAGES_KEY
from tests.unit.conftest import make_passages_app as make_app

AUTH = {"Authorization": f"Bearer {PASSAGES_KEY}"}


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
