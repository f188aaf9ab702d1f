"""One tenant cannot starve another (issue 15, point 4), on real processes: the API, one
Celery worker (one child), Chroma and Redis.

While the ``acme`` key misbehaves — a backlog of large uploads (and one whose text is over
the limit), as many event streams as it may open and one more, 2 MB JSON bodies sent over
and over, embeddings past its character budget — the ``globex`` tenant uploads a small
document: it becomes ready before acme's backlog has drained (it is queued ahead of acme's
second waiting document, not behind all of them), and its questions are answered.
Embedding is slowed by the TEST-ONLY hook of workers/testhooks.py, so that the backlog is
still there while globex's document goes through. No timing is asserted, only the order and
generous bounds.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from contextlib import ExitStack
from typing import Any

import httpx
import pytest

from tests.integration.conftest import KEYS, Stack, run_stack
from tests.private_redis import session_redis_url

pytestmark = pytest.mark.integration

REDIS_URL = os.environ.get("DOCQA_TEST_FAIR_REDIS_URL") or session_redis_url(22)
WAIT_S = 600.0  # generous: what must merely happen, on a busy 2-core machine
STREAMS_PER_KEY = 3
TEXT_LIMIT = 200_000
ENV = {
    "DOCQA_TEST_HOOKS__SLOW_EMBED_S": "0.3",  # TEST ONLY: acme's backlog stays a while
    "DOCQA_MODELS__EMBEDDING_BATCH_SIZE": "4",
    "DOCQA_CHUNKING__SIZE": "60",
    "DOCQA_CHUNKING__OVERLAP": "10",
    "DOCQA_LOAD_GENERATOR": "false",  # extractive answers need no generator
    "DOCQA_WORKER__CONCURRENCY": "1",
    "DOCQA_RATE_LIMIT__STREAMS_PER_KEY": str(STREAMS_PER_KEY),
    "DOCQA_RATE_LIMIT__STREAMS_PER_PROCESS": "16",
    "DOCQA_RATE_LIMIT__EMBEDDING_CHARS_PER_MINUTE": "20000",
    "DOCQA_LIMITS__MAX_TEXT_CHARS": str(TEXT_LIMIT),
}
BACKLOG = 3
SMALL = ("Globex memo. The vault code of the Globex archive is KESTREL-4471. "
         "The archive opens at nine in the morning. Lunch is served at noon.")


@pytest.fixture(scope="module")
def fair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with run_stack(tmp_path_factory.mktemp("docqa-fair"), REDIS_URL, ENV) as st:
        yield st


def _large(n: int, lines: int = 150) -> bytes:
    return "\n".join(f"Acme ledger {n}, line {i}: the northern depot shipped {i * 7 + n} "
                     f"crates of copper fittings to the harbour warehouse in week {i % 52}."
                     for i in range(lines)).encode()


class Streams:
    """Event streams held open (their line iterators kept: dropping one closes it)."""

    def __init__(self, stack: Stack, exits: ExitStack) -> None:
        self.stack, self.exits = stack, exits
        self.client = exits.enter_context(httpx.Client(trust_env=False, timeout=60))

    def open(self, key: str, doc_id: str) -> httpx.Response:
        resp = self.exits.enter_context(self.client.stream(
            "GET", f"{self.stack.url}/v1/documents/{doc_id}/events",
            headers={"Authorization": f"Bearer {key}"}))
        if resp.status_code == 200:
            lines = resp.iter_lines()
            self.exits.callback(lines.close)
            assert next(lines) == "event: progress"
        else:
            resp.read()
        return resp


class BigBodies(threading.Thread):
    """acme sends 2 MB JSON bodies to /v1/ask until stopped; every answer is kept."""

    def __init__(self, url: str, key: str) -> None:
        super().__init__(daemon=True)
        self.url, self.key = url, key
        self.stop = threading.Event()
        self.answers: list[tuple[int, Any]] = []

    def run(self) -> None:
        body = json.dumps({"question": "what?"}).encode() + b" " * (2 << 20)
        with httpx.Client(trust_env=False, timeout=60) as client:
            while not self.stop.is_set():
                resp = client.post(f"{self.url}/v1/ask", content=body, headers={
                    "Authorization": f"Bearer {self.key}", "Content-Type": "application/json"})
                self.answers.append((resp.status_code, resp.json()))
                self.stop.wait(0.2)


def test_a_misbehaving_key_does_not_starve_another_tenant(fair: Stack) -> None:
    acme_key = KEYS["acme"]
    with fair.client("acme") as acme, fair.client("globex") as globex, ExitStack() as exits:
        # a text over the limit: it fails right after parsing, with the reason
        oversized = acme.upload_bytes("huge.txt", b"word " * (TEXT_LIMIT // 4))["id"]
        backlog = [acme.upload_bytes(f"ledger-{n}.txt", _large(n))["id"]
                   for n in range(BACKLOG)]
        # the other tenant's small upload, while acme's backlog waits (and acme goes on)
        small = globex.upload_bytes("memo.txt", SMALL.encode())["id"]
        streams = Streams(fair, exits)
        held = [streams.open(acme_key, backlog[i % BACKLOG]) for i in range(STREAMS_PER_KEY)]
        assert all(r.status_code == 200 for r in held)
        refused = streams.open(acme_key, backlog[0])
        assert refused.status_code == 429 and int(refused.headers["retry-after"]) >= 1
        bodies = BigBodies(fair.url, acme_key)
        bodies.start()
        embed = {"model": "all-MiniLM-L6-v2", "input": ["copper " * 1100] * 2}  # 15,400 chars
        spent = httpx.post(f"{fair.url}/v1/embeddings", json=embed, trust_env=False,
                           timeout=120, headers={"Authorization": f"Bearer {acme_key}"})
        assert spent.status_code == 200, spent.text
        over = httpx.post(f"{fair.url}/v1/embeddings", json=embed, trust_env=False,
                          timeout=120, headers={"Authorization": f"Bearer {acme_key}"})
        assert over.status_code == 429 and int(over.headers["retry-after"]) >= 1, over.text
        try:
            mine = streams.open(KEYS["globex"], small)  # its own streams are not acme's
            assert mine.status_code == 200
            done = globex.wait_ready([small], timeout=WAIT_S)[small]
            assert done["status"] == "ready", done
            # acme's backlog has not drained: globex's document went ahead of all but the
            # one acme document the worker may already have been running
            states = [acme.document(d)["status"] for d in backlog]
            assert sum(s == "ready" for s in states) <= 1, states
            answer = globex.ask("What is the vault code of the Globex archive?")
            assert answer["status"] == "answered", answer
            assert "KESTREL-4471" in answer["answer"]
            assert {c["document_id"] for c in answer["citations"]} == {small}
        finally:
            bodies.stop.set()
            bodies.join(120)
        # every big body refused unread (413), or before that by the key's question limit,
        # which they count against (429)
        kinds = {body["type"] for _, body in bodies.answers}
        assert "urn:docqa:problem:payload-too-large" in kinds, bodies.answers[:3]
        assert kinds <= {"urn:docqa:problem:payload-too-large",
                         "urn:docqa:problem:rate-limited"}, kinds
        failed = acme.wait_ready([oversized], timeout=WAIT_S)[oversized]
        assert failed["status"] == "failed" and "split it" in str(failed["error"]), failed
        # the backlog still completes: fair, not lost
        final = acme.wait_ready(backlog, timeout=WAIT_S)
        assert all(d["status"] == "ready" for d in final.values()), final
