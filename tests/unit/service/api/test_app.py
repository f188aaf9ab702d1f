"""Body limits per route (service/api/app.py): JSON routes take a small body, the
OpenAI-compatible ones a larger one, and only the upload route the upload limit; over a
route's limit the answer is 413 problem+json, whether the client announced the size or not.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

from litestar.testing import TestClient

from core.audit import open_audit
from core.registry import SqliteDocumentRepository
from ingest.embedding import HashEmbedder
from service.answer import AnswerPipeline
from service.documents import DocumentService
from tests.unit.conftest import (
    PASSAGES,
    PASSAGES_KEY,
    FakeStore,
    RecordingQueue,
    bearer,
    is_problem,
    make_app,
    settings_for,
)

AUTH = bearer(PASSAGES_KEY)
TOO_LARGE = "urn:docqa:problem:payload-too-large"


def _client(tmp: Path, **settings: int) -> TestClient:  # type: ignore[type-arg]
    s = settings_for(tmp)
    for name, value in settings.items():
        setattr(s, name, value)
    emb = HashEmbedder()
    repo = SqliteDocumentRepository(s.registry_path)
    store = FakeStore(PASSAGES, emb)
    app, _ = make_app(settings=s, repo=repo, store=store,
                      answers=AnswerPipeline(s, emb, store, None, model=False),
                      documents=DocumentService(s, repo, store, RecordingQueue()),  # type: ignore[arg-type]
                      audit=open_audit(s))
    return TestClient(app)


def _ask(pad: int) -> bytes:
    """A valid question padded with whitespace (valid JSON) to about ``pad`` bytes."""
    return json.dumps({"question": "When did the Acme plant open?"}).encode() + b" " * pad


def test_a_json_route_refuses_a_body_over_its_limit(tmp_path: Path) -> None:
    with _client(tmp_path) as client:  # the default: 64 KiB
        ok = client.post("/v1/ask", headers=AUTH, content=_ask(60_000))
        assert ok.status_code == 200, ok.text
        big = client.post("/v1/ask", headers=AUTH, content=_ask(70_000))
        assert is_problem(big, 413), big.text
        assert big.json()["type"] == TOO_LARGE
        assert "65536 bytes" in big.json()["detail"]
        # 50 MB announced: refused on the header alone, before a byte of it is read
        sent: list[int] = []

        def body() -> Iterator[bytes]:
            for _ in range(50):
                sent.append(1)
                yield b" " * (1 << 20)

        huge = client.post("/v1/search", headers={**AUTH, "Content-Length": str(50 << 20)},
                           content=body())
        assert is_problem(huge, 413), huge.text
        assert len(sent) <= 1


def test_a_body_without_a_length_is_cut_off_at_the_limit(tmp_path: Path) -> None:
    """Chunked: no Content-Length to refuse on; the bytes are counted as they arrive."""
    with _client(tmp_path, max_json_bytes=4096) as client:
        def body() -> Iterator[bytes]:
            yield b'{"question": "When did the Acme plant open?"}'
            for _ in range(64):
                yield b" " * 1024

        resp = client.post("/v1/ask", headers=AUTH, content=body())
        assert is_problem(resp, 413), resp.text
        assert "4096 bytes" in resp.json()["detail"]
        assert client.post("/v1/ask", headers=AUTH, content=_ask(3000)).status_code == 200


def test_the_openai_routes_have_their_own_limit(tmp_path: Path) -> None:
    """256 inputs of 8,000 characters are a valid embeddings request: over the JSON limit,
    under the OpenAI routes' one; past that one, 413 with OpenAI's error object too."""
    with _client(tmp_path, max_openai_json_bytes=1 << 20) as client:
        inputs = ["word " * 160] * 256  # 800 characters each: 205 KB, over 64 KiB
        ok = client.post("/v1/embeddings", headers=AUTH,
                         json={"model": "all-MiniLM-L6-v2", "input": inputs})
        assert ok.status_code == 200, ok.text
        assert len(ok.json()["data"]) == 256
        big = client.post("/v1/embeddings", headers=AUTH,
                          json={"model": "all-MiniLM-L6-v2", "input": ["w" * 8000] * 256})
        assert is_problem(big, 413), big.text
        assert big.json()["type"] == TOO_LARGE and big.json()["error"]["message"]
        chat = client.post("/v1/chat/completions", headers=AUTH, json={
            "model": "docqa", "messages": [{"role": "user", "content": "w " * 16_000}] * 40})
        assert is_problem(chat, 413), chat.text


def test_the_upload_route_keeps_the_upload_limit(tmp_path: Path) -> None:
    with _client(tmp_path, max_json_bytes=4096, max_upload_bytes=300_000) as client:
        data = b"Quarterly numbers, in words. " * 8000  # 232 KB: far over the JSON limit
        up = client.post("/v1/documents", headers=AUTH, files={"file": ("q.txt", data)})
        assert up.status_code == 202, up.text
        over = client.post("/v1/documents", headers=AUTH,
                           files={"file": ("r.txt", b"more words " * 40_000)})
        assert is_problem(over, 413), over.text
