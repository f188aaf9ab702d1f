"""Streaming /v1/ask (text/event-stream) on the real stack, read with raw httpx streaming.

The generative-mode test starts a second API process in generative mode beside the session
stack (same Chroma, registry and Redis; own port, audit log and metrics directory), so the
GGUF model's draft is really streamed token by token before the verified ``final`` event.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from service.cli.processes import free_port, wait_http
from tests.integration.conftest import KEYS, Stack

pytestmark = pytest.mark.integration

DOC = (b"The Orvane observatory stands on Mount Teide.\n\n"
       b"The Orvane telescope mirror is 3.8 metres wide and was cast in 2009.\n")
QUESTION = "How wide is the Orvane telescope mirror?"
UNANSWERABLE = "What is the airspeed velocity of an unladen swallow in furlongs?"
AUTH = {"Authorization": f"Bearer {KEYS['acme']}"}


@pytest.fixture(scope="module")
def doc_id(stack: Stack) -> str:
    with stack.client("acme") as c:
        new = c.upload_bytes("orvane.txt", DOC)
        final = c.wait_ready([new["id"]], timeout=300)[new["id"]]
    assert final["status"] == "ready", final
    return str(new["id"])


def read_events(resp: httpx.Response) -> list[tuple[str, dict[str, Any]]]:
    """Parse ``event:``/``data:`` blocks as they arrive (no SSE library)."""
    events: list[tuple[str, dict[str, Any]]] = []
    data: list[str] = []
    name = "message"
    for line in resp.iter_lines():
        if line == "":
            if data:
                events.append((name, json.loads("\n".join(data))))
            name, data = "message", []
        elif line.startswith("event:"):
            name = line[6:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].strip())
    return events


def stream_ask(url: str, body: dict[str, Any], headers: dict[str, str] | None = None,
               ) -> tuple[httpx.Response, list[tuple[str, dict[str, Any]]]]:
    with httpx.Client(trust_env=False, timeout=180) as http, http.stream(
        "POST", url + "/v1/ask", json={**body, "stream": True},
        headers=AUTH if headers is None else headers,
    ) as resp:
        if resp.headers["content-type"].startswith("text/event-stream"):
            return resp, read_events(resp)
        resp.read()
    return resp, []


def plain_ask(url: str, question: str) -> dict[str, Any]:
    resp = httpx.post(url + "/v1/ask", json={"question": question}, headers=AUTH,
                      trust_env=False, timeout=180)
    assert resp.status_code == 200, resp.text
    return resp.json()  # type: ignore[no-any-return]


def same_answer(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return all(a[k] == b[k] for k in ("status", "answer", "citations"))


def test_token_events_then_a_final_equal_to_the_plain_answer(stack: Stack, doc_id: str) -> None:
    resp, events = stream_ask(stack.url, {"question": QUESTION})
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("text/event-stream")
    names = [n for n, _ in events]
    assert names[-1] == "final" and names.count("final") == 1
    assert len(names) > 2 and set(names[:-1]) == {"token"}
    final = events[-1][1]
    assert set(final) == {"status", "answer", "citations", "timings"}
    assert final["status"] == "answered" and "3.8 metres" in final["answer"]
    assert final["citations"][0]["document_id"] == doc_id
    assert "".join(d["text"] for n, d in events if n == "token") == final["answer"]
    assert same_answer(final, plain_ask(stack.url, QUESTION))


def test_not_found_streams_only_a_final(stack: Stack, doc_id: str) -> None:
    resp, events = stream_ask(stack.url, {"question": UNANSWERABLE})
    assert resp.status_code == 200 and [n for n, _ in events] == ["final"]
    final = events[0][1]
    assert (final["status"], final["answer"], final["citations"]) == ("not_found", "", [])
    assert same_answer(final, plain_ask(stack.url, UNANSWERABLE))


def test_without_a_key_is_a_401_problem(stack: Stack) -> None:
    resp, events = stream_ask(stack.url, {"question": QUESTION}, headers={})
    assert resp.status_code == 401 and events == []
    assert resp.headers["content-type"].startswith("application/problem+json")
    assert resp.json()["status"] == 401


@pytest.mark.parametrize("body", [{"question": ""}, {"question": QUESTION, "stream": "yes"},
                                  {"question": QUESTION, "top_k": 0}])
def test_a_bad_body_is_a_400_problem_not_a_stream(stack: Stack, body: dict[str, Any]) -> None:
    """The API answers every malformed body with 400 (not 422), streaming or not."""
    with httpx.Client(trust_env=False, timeout=60) as http:
        resp = http.post(stack.url + "/v1/ask", json={"stream": True, **body}, headers=AUTH)
    assert resp.status_code == 400, resp.text
    assert resp.headers["content-type"].startswith("application/problem+json")
    assert resp.json()["detail"]


def test_another_tenant_streams_not_found(stack: Stack, doc_id: str) -> None:
    _, events = stream_ask(stack.url, {"question": QUESTION},
                           headers={"Authorization": f"Bearer {KEYS['globex']}"})
    final = events[-1][1]
    assert events[-1][0] == "final"
    assert all(c["document_id"] != doc_id for c in final["citations"])


# ---------------------------------------------------------------- generative mode


@pytest.fixture(scope="module")
def generative_api(stack: Stack) -> Iterator[str]:
    port = free_port()
    env = {**stack.env, "DOCQA_PORT": str(port), "DOCQA_RETRIEVAL__ANSWER_MODE": "generative",
           "DOCQA_AUDIT__PATH": str(stack.data_dir / "audit-generative.log"),
           "DOCQA_METRICS__MULTIPROC_DIR": str(stack.data_dir / "metrics-generative")}
    log = (stack.data_dir / "logs" / "api-generative.log").open("ab")
    proc = subprocess.Popen([sys.executable, "-m", "service.cli", "serve"], env=env, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        if not wait_http(f"{url}/readyz", 240, [proc]):
            pytest.fail("generative API did not start:\n" + stack.log("api-generative")[-3000:])
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def test_generative_mode_streams_the_draft_then_the_verified_answer(
    generative_api: str, doc_id: str
) -> None:
    resp, events = stream_ask(generative_api, {"question": QUESTION})
    assert resp.status_code == 200
    names = [n for n, _ in events]
    assert names[-1] == "final" and names.count("final") == 1 and "error" not in names
    tokens = [d["text"] for n, d in events if n == "token"]
    assert tokens and "".join(tokens).strip()  # the model's own words, before verification
    final = events[-1][1]
    assert "generate_ms" in final["timings"]  # the generator really drafted this answer
    assert final["status"] == "answered" and final["citations"][0]["document_id"] == doc_id
    # deterministic decoding: the plain answer is the same verified answer
    assert same_answer(final, plain_ask(generative_api, QUESTION))
