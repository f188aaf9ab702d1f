"""A small typed client for the docqa HTTP API (used by the CLI, benchmarks and tests)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import httpx


class DocqaAPIError(Exception):
    def __init__(self, status: int, body: Any) -> None:
        detail = body.get("detail") if isinstance(body, dict) else body
        super().__init__(f"HTTP {status}: {detail}")
        self.status = status
        self.body = body


class _WaitOn429(httpx.BaseTransport):
    """Re-sends a request the API refused with 429, after its ``Retry-After``, until
    ``budget_s`` of waiting is spent; then the 429 is returned to the caller."""

    def __init__(self, inner: httpx.BaseTransport, budget_s: float) -> None:
        self.inner, self.budget_s = inner, budget_s

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        request.read()  # buffered, so an upload can be sent again
        waited = 0.0
        while True:
            resp = self.inner.handle_request(request)
            if resp.status_code != 429 or waited >= self.budget_s:
                return resp
            try:
                delay = float(resp.headers.get("Retry-After", "1"))
            except ValueError:
                delay = 1.0
            delay = min(max(delay, 0.1), self.budget_s - waited)
            resp.read()
            resp.close()
            time.sleep(delay)
            waited += delay

    def close(self) -> None:
        self.inner.close()


class DocqaClient:
    def __init__(self, base_url: str, api_key: str | None, timeout: float = 120.0,
                 wait_on_429_s: float = 0.0) -> None:
        """``wait_on_429_s`` > 0: requests refused by the rate limit are retried after the
        server's ``Retry-After`` (waiting at most that long in total per request)."""
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        transport: httpx.BaseTransport = httpx.HTTPTransport()
        if wait_on_429_s > 0:
            transport = _WaitOn429(transport, wait_on_429_s)
        self.http = httpx.Client(base_url=base_url.rstrip("/"), headers=headers, timeout=timeout,
                                 trust_env=False, transport=transport)

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> DocqaClient:
        return self

    def __exit__(self, *_: Any) -> None:
        self.close()

    def _check(self, resp: httpx.Response) -> Any:
        if resp.status_code >= 400:
            try:
                body = resp.json()
            except ValueError:
                body = resp.text
            raise DocqaAPIError(resp.status_code, body)
        if resp.status_code == 204 or not resp.content:
            return None
        return resp.json()

    def upload_bytes(self, filename: str, data: bytes, metadata: dict[str, Any] | None = None,
                     redact_pii: bool = False) -> dict[str, Any]:
        form = {"metadata": json.dumps(metadata)} if metadata else {}
        if redact_pii:
            form["redact_pii"] = "true"
        resp = self.http.post("/v1/documents", files={"file": (filename, data)},
                              data=form or None)
        return self._check(resp)  # type: ignore[no-any-return]

    def upload(self, path: Path, metadata: dict[str, Any] | None = None,
               redact_pii: bool = False) -> dict[str, Any]:
        return self.upload_bytes(path.name, path.read_bytes(), metadata, redact_pii)

    def document(self, doc_id: str) -> dict[str, Any]:
        return self._check(self.http.get(f"/v1/documents/{doc_id}"))  # type: ignore[no-any-return]

    def documents(self, status: str | None = None, limit: int = 50, offset: int = 0) -> dict[str, Any]:
        params: dict[str, Any] = {"limit": limit, "offset": offset}
        if status:
            params["status"] = status
        return self._check(self.http.get("/v1/documents", params=params))  # type: ignore[no-any-return]

    def delete(self, doc_id: str) -> None:
        self._check(self.http.delete(f"/v1/documents/{doc_id}"))

    def search(self, query: str, top_k: int | None = None, mode: str | None = None,
               **filters: Any) -> dict[str, Any]:
        body: dict[str, Any] = {"query": query}
        if top_k:
            body["top_k"] = top_k
        if mode:
            body["mode"] = mode
        if filters:
            body["filters"] = filters
        return self._check(self.http.post("/v1/search", json=body))  # type: ignore[no-any-return]

    def ask(self, question: str, top_k: int | None = None, **filters: Any) -> dict[str, Any]:
        body: dict[str, Any] = {"question": question}
        if top_k:
            body["top_k"] = top_k
        if filters:
            body["filters"] = filters
        return self._check(self.http.post("/v1/ask", json=body))  # type: ignore[no-any-return]

    def wait_ready(self, doc_ids: list[str], timeout: float = 600.0, poll: float = 0.5,
                   on_progress: Any = None) -> dict[str, dict[str, Any]]:
        """Poll until every document is ``ready`` or ``failed``; returns the final records."""
        # Documents are processed roughly in upload order, so each round checks pending
        # ones in that order and stops at the first unfinished one: about one request per
        # poll instead of one per document (polling 1,000 ids would load the API itself).
        pending = list(dict.fromkeys(doc_ids))
        final: dict[str, dict[str, Any]] = {}
        deadline = time.monotonic() + timeout
        sweep_every, rounds = 20, 0
        while pending:
            rounds += 1
            full_sweep = rounds % sweep_every == 0
            for doc_id in list(pending):
                doc = self.document(doc_id)
                if doc["status"] in ("ready", "failed"):
                    final[doc_id] = doc
                    pending.remove(doc_id)
                elif not full_sweep:
                    break
            if on_progress:
                on_progress(len(final), len(doc_ids))
            if not pending:
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(pending)} documents not ready after {timeout}s")
            time.sleep(poll)
        return final

    def healthy(self) -> bool:
        try:
            return self.http.get("/readyz").status_code == 200
        except httpx.HTTPError:
            return False
