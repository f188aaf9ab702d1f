"""A small in-memory docqa API (``httpx.MockTransport``) for the client commands, and a
runner that invokes ``docqa`` against it.

The ``api`` fixture puts :class:`FakeAPI` behind every ``DocqaClient`` the commands build
(service/cli/common.py); a test changes its answers through ``api.override`` (a handler
tried first) or its documents. The key is ``good``; any other gets 401. Uploads: empty →
400, bytes starting ``MZ`` (an executable) → 415; a document whose bytes contain ``FAIL``
ends ``failed``, the others ``ready`` at once."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from email.parser import BytesParser
from email.policy import HTTP
from typing import Any

import httpx
import pytest
from click.testing import CliRunner, Result

import service.cli.common
from service.cli import main
from service.client import DocqaClient

URL = "http://docqa.test"
KEY = "good"
ENV = {"DOCQA_URL": URL, "DOCQA_API_KEY": KEY, "DOCQA_API_KEYS": ""}
SSE = {"content-type": "text/event-stream; charset=utf-8"}


def problem(status: int, title: str, detail: str, headers: dict[str, str] | None = None
            ) -> httpx.Response:
    return httpx.Response(status, headers={"content-type": "application/problem+json",
                                           **(headers or {})},
                          json={"type": "about:blank", "title": title, "status": status,
                                "detail": detail})


def sse(*events: tuple[str, Any]) -> httpx.Response:
    body = b"".join(f"event: {e}\ndata: {json.dumps(d)}\n\n".encode() for e, d in events)
    return httpx.Response(200, headers=SSE, content=body)


def multipart(request: httpx.Request) -> dict[str, tuple[str | None, bytes]]:
    """name → (filename, bytes) of a multipart/form-data body."""
    head = f"Content-Type: {request.headers['content-type']}\r\n\r\n".encode()
    message = BytesParser(policy=HTTP).parsebytes(head + request.read())
    parts: dict[str, tuple[str | None, bytes]] = {}
    for part in message.iter_parts():
        payload = part.get_payload(decode=True)
        parts[str(part.get_param("name", header="content-disposition"))] = (
            part.get_filename(), payload if isinstance(payload, bytes) else b"")
    return parts


def document(doc_id: str, filename: str, status: str, metadata: dict[str, Any],
             error: str | None = None) -> dict[str, Any]:
    return {"id": doc_id, "filename": filename, "kind": "text", "status": status,
            "progress": {"stage": status, "done": 0, "total": 0, "unit": ""},
            "chunks": 1 if status == "ready" else 0, "pages": 1 if status == "ready" else 0,
            "error": error, "sha256": "0" * 64, "size": 10, "metadata": metadata,
            "created_at": f"2025-01-01T00:00:{doc_id[-2:]}+00:00",
            "updated_at": "2025-01-01T00:01:00+00:00",
            "pii": {"redacted": False, "counts": None}}


ANSWER = {"status": "answered", "answer": "The stapler is in room 9 [1]",
          "citations": [{"n": 1, "document_id": "doc-01", "filename": "note.md", "page": 1,
                         "start": 0, "end": 30, "quote": "Milton keeps it in room 9.",
                         "score": 0.8}],
          "timings": {"total_ms": 5.0}}


@dataclass
class FakeAPI:
    docs: dict[str, dict[str, Any]] = field(default_factory=dict)
    base_urls: list[str] = field(default_factory=list)  # of the clients built
    requests: list[httpx.Request] = field(default_factory=list)
    bodies: list[dict[str, Any]] = field(default_factory=list)  # JSON bodies of ask/search
    uploads: list[tuple[str | None, dict[str, Any]]] = field(default_factory=list)
    override: Callable[[httpx.Request], httpx.Response | None] | None = None
    answer: dict[str, Any] = field(default_factory=lambda: dict(ANSWER))
    tokens: list[str] | None = None  # streamed pieces; None: the answer's words

    def add(self, filename: str, status: str = "ready", **metadata: Any) -> str:
        doc_id = f"doc-{len(self.docs) + 1:02d}"
        self.docs[doc_id] = document(doc_id, filename, status, metadata)
        return doc_id

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if self.override is not None:
            answer = self.override(request)
            if answer is not None:
                return answer
        if request.headers.get("authorization") != f"Bearer {KEY}":
            return problem(401, "Unauthorized", "unknown or revoked API key")
        path, method = request.url.path, request.method
        if path == "/v1/documents" and method == "POST":
            return self._upload(request)
        if path == "/v1/documents":
            return self._list(request)
        if path in ("/v1/documents/events", "/v1/documents/status") and method == "POST":
            return self._batch(path, json.loads(request.read())["ids"])
        if path.startswith("/v1/documents/"):
            doc_id, _, rest = path.removeprefix("/v1/documents/").partition("/")
            doc = self.docs.get(doc_id)
            if doc is None:
                return problem(404, "Not found", f"no document {doc_id!r}")
            if rest == "events":
                return sse(("done", doc))
            if method == "DELETE":
                del self.docs[doc_id]
                return httpx.Response(204)
            return httpx.Response(200, json=doc)
        if path in ("/v1/ask", "/v1/search"):
            body = json.loads(request.read())
            self.bodies.append(body)
            if path == "/v1/search":
                return httpx.Response(200, json={"results": [
                    {"chunk_id": "c1", "document_id": "doc-01", "filename": "note.md",
                     "page": 2, "start": 0, "end": 20, "text": "Milton keeps\nthe stapler.",
                     "score": 0.61}]})
            if body.get("stream"):
                words = self.tokens if self.tokens is not None else \
                    [w + " " for w in self.answer["answer"].split()]
                return sse(*[("token", {"text": w}) for w in words], ("final", self.answer))
            return httpx.Response(200, json=self.answer)
        return problem(404, "Not found", f"no route {path}")

    def _upload(self, request: httpx.Request) -> httpx.Response:
        parts = multipart(request)
        filename, data = parts["file"]
        metadata = json.loads(parts["metadata"][1]) if "metadata" in parts else {}
        self.uploads.append((filename, metadata))
        if not data:
            return problem(400, "Empty upload", "the file is empty")
        if data.startswith(b"MZ"):
            return problem(415, "Unsupported media type", "executables are not accepted")
        doc_id = self.add(filename or "upload", **metadata)
        if b"FAIL" in data:
            self.docs[doc_id].update(status="failed", error="no text found")
        return httpx.Response(202, json={"id": doc_id, "status": "queued", "duplicate": False,
                                         "pii_redacted": False})

    def _batch(self, path: str, ids: list[str]) -> httpx.Response:
        """Batch status, or a batch stream of documents that are all settled already."""
        found = [self.docs[i] for i in ids if i in self.docs]
        missing = [i for i in ids if i not in self.docs]
        if path.endswith("/status"):
            return httpx.Response(200, json={"items": found, "missing": missing})
        counts = {s: sum(d["status"] == s for d in found) for s in ("ready", "failed")}
        return sse(*([("missing", {"ids": missing})] if missing else []),
                   *[("done", d) for d in found], ("end", {**counts, "missing": len(missing)}))

    def _list(self, request: httpx.Request) -> httpx.Response:
        q = request.url.params
        items = [d for d in self.docs.values()
                 if not q.get("status") or d["status"] == q["status"]]
        limit, offset = int(q.get("limit", 50)), int(q.get("offset", 0))
        return httpx.Response(200, json={"items": items[offset:offset + limit],
                                         "total": len(items), "limit": limit,
                                         "offset": offset})


@pytest.fixture
def api(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeAPI]:
    fake = FakeAPI()

    def client(base_url: str, api_key: str | None, **kwargs: Any) -> DocqaClient:
        fake.base_urls.append(base_url)
        # the commands wait out a 429 for 120 s; here for a moment only
        kwargs["wait_on_429_s"] = min(kwargs.get("wait_on_429_s", 0.0), 0.3)
        return DocqaClient(base_url, api_key, transport=httpx.MockTransport(fake), **kwargs)

    monkeypatch.setattr(service.cli.common, "DocqaClient", client)
    yield fake


def run(*args: str, env: dict[str, str] | None = None) -> Result:
    """``docqa ARGS`` as a script runs it (stdout and stderr apart; stdout is no TTY)."""
    return CliRunner().invoke(main, list(args), env={**ENV, **(env or {})},
                              prog_name="docqa")
