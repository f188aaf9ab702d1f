"""A small typed client for the docqa HTTP API (used by the CLI, benchmarks and tests).

Responses are ``TypedDict``s that mirror ``service/api/schemas.py`` (and ``service/api/admin.py``):
at run time they are the plain decoded JSON dicts, so callers index them as before, while
mypy knows every field. Streams (``text/event-stream``) are parsed by one small incremental
parser, :class:`SSEDecoder`, after the WHATWG HTML "server-sent events" rules.

Exceptions::

    DocqaAPIError    the API answered an error: a non-2xx response (problem+json: status,
                     title, detail; headers kept for Retry-After and X-Request-ID), an
                     ``event: error`` inside a stream, or a stream that broke the contract
    TimeoutError     document_events / follow / wait_ready: not finished within the timeout
    httpx.HTTPError  transport failures (connection refused, read timeout...) pass through
"""

from __future__ import annotations

import codecs
import copy
import json
import re
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Self, TypedDict, cast
from urllib.parse import unquote

import httpx

# ---------------------------------------------------------------- response bodies

# the values of the schema's enums (the server's DocumentStatus, DocumentKind...)
DocumentStatus = Literal["queued", "processing", "ready", "failed"]
DocumentKind = Literal["pdf", "docx", "html", "markdown", "text", "csv"]
ProgressStage = Literal["queued", "parsing", "chunking", "embedding", "indexing", "ready",
                        "failed"]
ProgressUnit = Literal["pages", "chunks", ""]
AnswerStatus = Literal["answered", "not_found"]



class Progress(TypedDict):
    stage: ProgressStage
    done: int
    total: int
    unit: ProgressUnit  # "pages" while parsing, "chunks" while embedding/indexing


class Pii(TypedDict):
    redacted: bool
    counts: dict[str, int] | None  # per type found; null until a redacted ingest finished


class Document(TypedDict):
    id: str
    filename: str
    kind: DocumentKind
    status: DocumentStatus
    progress: Progress
    chunks: int
    pages: int
    error: str | None
    sha256: str
    size: int
    metadata: dict[str, Any]
    created_at: str
    updated_at: str
    pii: Pii


class DocumentList(TypedDict):
    items: list[Document]
    total: int
    limit: int
    offset: int


class DocumentStatuses(TypedDict):
    items: list[Document]  # the documents found, in the order asked
    missing: list[str]  # ids of no document of the caller's (unknown, erased, another tenant's)


class DocumentCounts(TypedDict):
    queued: int
    processing: int
    ready: int
    failed: int
    total: int


class UploadAccepted(TypedDict):
    id: str
    status: DocumentStatus
    duplicate: bool
    pii_redacted: bool


class DocumentText(TypedDict):
    document_id: str
    filename: str
    page: int  # the page `start` is on
    start: int
    end: int  # clipped to the end of the text
    text: str


class SearchResult(TypedDict):
    chunk_id: str
    document_id: str
    filename: str
    page: int
    start: int
    end: int
    text: str
    score: float


class SearchResponse(TypedDict):
    results: list[SearchResult]


class Citation(TypedDict):
    n: int
    document_id: str
    filename: str
    page: int
    start: int
    end: int
    quote: str
    score: float


class AskResponse(TypedDict):
    status: AnswerStatus
    answer: str
    citations: list[Citation]
    timings: dict[str, float]


class Readiness(TypedDict):
    status: Literal["ready", "not ready"]
    checks: dict[str, str]
    failed: list[str]
    registry_backend: Literal["sqlite", "postgresql"]


class ApiKey(TypedDict):
    id: str
    tenant: str
    name: str
    created_at: str
    revoked_at: str | None
    active: bool


class ApiKeyCreated(TypedDict):
    id: str
    tenant: str
    name: str
    created_at: str
    key: str  # the API key itself: shown this once only


class ApiKeyList(TypedDict):
    items: list[ApiKey]


@dataclass(frozen=True)
class StreamEvent:
    """One event of ``POST /v1/ask`` with ``"stream": true``: ``token`` (data ``{"text"}``)
    or ``final`` (data = the non-streaming /v1/ask body, see :class:`AskResponse`)."""

    event: str
    data: dict[str, Any]


@dataclass(frozen=True)
class DocumentEvent:
    """News of one document in :meth:`DocqaClient.follow`: ``progress`` (``document`` is its
    current state), ``done`` (ready or failed; once per document, last for it) or
    ``missing`` (the caller has no such document: unknown, another tenant's, or deleted
    meanwhile; ``document`` is None; also once, last)."""

    event: Literal["progress", "done", "missing"]
    id: str
    document: Document | None


# ---------------------------------------------------------------- errors


class DocqaAPIError(Exception):
    """The API refused or failed a request.

    ``status`` is the HTTP status (for an ``event: error`` inside a stream: the status the
    event names), ``body`` the decoded problem+json (or the text when it was not JSON) and
    ``headers`` the response headers (``Retry-After``, ``X-Request-ID``...).
    """

    def __init__(self, status: int, body: Any, headers: Mapping[str, str] | None = None) -> None:
        detail = body.get("detail") if isinstance(body, dict) else body
        super().__init__(f"HTTP {status}: {detail}")
        self.status = status
        self.body = body
        self.headers = httpx.Headers(headers or {})

    @classmethod
    def from_response(cls, resp: httpx.Response) -> DocqaAPIError:
        try:
            body: Any = resp.json()
        except ValueError:
            body = resp.text
        return cls(resp.status_code, body, resp.headers)

    @property
    def title(self) -> str:
        return str(self.body.get("title", "")) if isinstance(self.body, dict) else ""

    @property
    def detail(self) -> str:
        return str(self.body.get("detail", "")) if isinstance(self.body, dict) else str(self.body)

    @property
    def retry_after(self) -> float | None:
        """Seconds the server asked to wait (429, 503), or None."""
        try:
            return float(self.headers["Retry-After"])
        except (KeyError, ValueError):
            return None

    @property
    def request_id(self) -> str | None:
        rid: str | None = self.headers.get("X-Request-ID")
        return rid


# ---------------------------------------------------------------- server-sent events


@dataclass(frozen=True)
class ServerSentEvent:
    """One dispatched event: ``event`` is ``"message"`` when the event named none."""

    event: str
    data: str


_EOL = re.compile(r"\r\n|\r|\n")


class SSEDecoder:
    """Incremental ``text/event-stream`` parser (WHATWG HTML, "Server-sent events").

    Feed it the body in chunks of any size; it returns the events completed so far. Lines
    end in CRLF, LF or CR (a CR at the end of one chunk and an LF at the start of the next
    are one line end); a line starting with ``:`` is a comment; ``field: value`` drops one
    space after the colon; ``data`` lines are joined with ``\\n``; a blank line dispatches
    the event, but only when it had data (an ``event:`` line alone dispatches nothing).
    ``id`` and ``retry`` are ignored (the API sends neither, and this client reconnects on
    its own terms), and an event not ended by a blank line when the stream ends is dropped,
    as the spec says.
    """

    def __init__(self) -> None:
        self._utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._buf = ""
        self._started = False
        self._skip_lf = False
        self._event = ""
        self._data: list[str] = []

    def feed(self, chunk: bytes | str) -> list[ServerSentEvent]:
        text = self._utf8.decode(chunk) if isinstance(chunk, bytes) else chunk
        if not self._started and text:
            self._started = True
            text = text.removeprefix("\ufeff")
        if self._skip_lf and text:
            self._skip_lf = False
            text = text.removeprefix("\n")
        buf = self._buf + text
        events: list[ServerSentEvent] = []
        start = 0
        for m in _EOL.finditer(buf):
            event = self._line(buf[start:m.start()])
            start = m.end()
            if event is not None:
                events.append(event)
        if buf.endswith("\r"):
            self._skip_lf = True  # the LF may come in the next chunk
        self._buf = buf[start:]
        return events

    def _line(self, line: str) -> ServerSentEvent | None:
        if not line:
            return self._dispatch()
        if line.startswith(":"):
            return None
        name, colon, value = line.partition(":")
        if colon and value.startswith(" "):
            value = value[1:]
        if name == "event":
            self._event = value
        elif name == "data":
            self._data.append(value)
        return None

    def _dispatch(self) -> ServerSentEvent | None:
        event, data = self._event or "message", self._data
        self._event, self._data = "", []
        return ServerSentEvent(event, "\n".join(data)) if data else None


def iter_sse(chunks: Iterator[bytes] | Iterator[str]) -> Iterator[ServerSentEvent]:
    """The events of a stream given as chunks (``httpx.Response.iter_bytes()``)."""
    decoder = SSEDecoder()
    for chunk in chunks:
        yield from decoder.feed(chunk)


def _json_data(sse: ServerSentEvent, resp: httpx.Response) -> dict[str, Any]:
    try:
        data = json.loads(sse.data)
    except ValueError:
        data = None
    if not isinstance(data, dict):
        raise DocqaAPIError(resp.status_code, {
            "title": "Malformed event stream",
            "detail": f"event {sse.event!r} does not carry a JSON object: {sse.data[:200]!r}"},
            resp.headers)
    return data


def _attachment_name(disposition: str, fallback: str) -> str:
    """The file name of a ``Content-Disposition`` (``filename*`` first), reduced to a plain
    name: never a path."""
    star = re.search(r"filename\*=UTF-8''([^;]+)", disposition, re.IGNORECASE)
    plain = re.search(r'filename="([^"]*)"', disposition)
    name = unquote(star.group(1)) if star else plain.group(1) if plain else ""
    name = name.replace("\\", "/").split("/")[-1].strip().lstrip(".")
    return name or fallback


# ---------------------------------------------------------------- transport


class _WaitOn429(httpx.BaseTransport):
    """Re-sends a request the API refused with 429, after its ``Retry-After``, until
    ``budget_s`` of waiting is spent; then the 429 is returned to the caller. Streamed
    responses pass through unread (only a 429's body is read, to reuse the connection)."""

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


# ---------------------------------------------------------------- the client

# a progress stream sends a keep-alive comment after ~15 s without change: this long
# without a byte means the connection is dead, and document_events connects again
_STREAM_IDLE_S = 60.0
_RECONNECT_PAUSE_S = 1.0


def _wait_out_stream_cap(exc: DocqaAPIError, deadline: float) -> None:
    """A stream refused with 429 (the key, or the server, has as many open as it may):
    wait its ``Retry-After`` (within the deadline) and let the caller connect again; any
    other error is raised."""
    if exc.status != 429:
        raise exc
    time.sleep(max(0.0, min(exc.retry_after or _RECONNECT_PAUSE_S,
                            deadline - time.monotonic())))
MAX_BATCH_IDS = 1000  # ids per batch status request or batch event stream (the server's cap)


class DocqaClient:
    """The v1 API with one tenant's key. Methods raise :class:`DocqaAPIError` for any
    non-2xx answer; :attr:`last_response` keeps the raw response of the latest call for
    callers (tests) that look at status codes and headers."""

    def __init__(self, base_url: str, api_key: str | None, timeout: float = 120.0,
                 wait_on_429_s: float = 0.0, transport: httpx.BaseTransport | None = None
                 ) -> None:
        """``wait_on_429_s`` > 0: requests refused by the rate limit are retried after the
        server's ``Retry-After`` (waiting at most that long in total per request).
        ``transport`` replaces the HTTP transport (tests: ``httpx.MockTransport``)."""
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        inner = transport or httpx.HTTPTransport()
        if wait_on_429_s > 0:
            inner = _WaitOn429(inner, wait_on_429_s)
        self.http = httpx.Client(base_url=base_url.rstrip("/"), headers=headers, timeout=timeout,
                                 trust_env=False, transport=inner)
        self._headers: dict[str, str] = {}
        self._last: httpx.Response | None = None

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def with_headers(self, headers: Mapping[str, str]) -> Self:
        """A view of this client that adds ``headers`` (e.g. ``X-Request-ID``) to every
        request. It shares the connection pool: close the original, not the view."""
        view = copy.copy(self)
        view._headers = {**self._headers, **headers}
        view._last = None
        return view

    @property
    def last_response(self) -> httpx.Response:
        """The raw response of this client's latest request (not meaningful when threads
        share one client). For a stream: its response, with the body not read."""
        if self._last is None:
            raise RuntimeError("no request sent yet")
        return self._last

    # ------------------------------------------------------------ plumbing

    def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        headers = {**self._headers, **kwargs.pop("headers", {})}
        resp = self.http.request(method, path, headers=headers, **kwargs)
        self._last = resp
        return resp

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        """The decoded JSON body of a 2xx answer (None for an empty one)."""
        return self._check(self._send(method, path, **kwargs))

    def _check(self, resp: httpx.Response) -> Any:
        if resp.status_code >= 400:
            raise DocqaAPIError.from_response(resp)
        if resp.status_code == 204 or not resp.content:
            return None
        return resp.json()

    @contextmanager
    def _stream(self, method: str, path: str, body: dict[str, Any] | None = None,
                read_timeout: float | None = None) -> Iterator[httpx.Response]:
        """An open ``text/event-stream`` response; an error answer raises before it."""
        timeout: httpx.Timeout | None = None
        if read_timeout is not None:
            t = self.http.timeout
            timeout = httpx.Timeout(connect=t.connect, read=read_timeout, write=t.write,
                                    pool=t.pool)
        headers = {**self._headers, "Accept": "text/event-stream"}
        extra: dict[str, Any] = {"timeout": timeout} if timeout is not None else {}
        with self.http.stream(method, path, json=body, headers=headers, **extra) as resp:
            self._last = resp
            if resp.status_code >= 400:
                resp.read()
                raise DocqaAPIError.from_response(resp)
            ctype = resp.headers.get("content-type", "")
            if not ctype.startswith("text/event-stream"):
                resp.read()
                raise DocqaAPIError(resp.status_code, {
                    "title": "Not an event stream",
                    "detail": f"expected text/event-stream, got {ctype or 'no content type'}"},
                    resp.headers)
            yield resp

    # ------------------------------------------------------------ documents

    def upload_bytes(self, filename: str, data: bytes, metadata: dict[str, Any] | None = None,
                     redact_pii: bool | None = None) -> UploadAccepted:
        """``POST /v1/documents``: 202 queued, or 200 with ``duplicate`` for bytes the tenant
        already has (see ``last_response.status_code``). ``redact_pii`` None sends no choice
        (the server's default); a tenant with redaction forced on gets it either way."""
        form = {"metadata": json.dumps(metadata)} if metadata else {}
        if redact_pii is not None:
            form["redact_pii"] = "true" if redact_pii else "false"
        return cast(UploadAccepted, self._call("POST", "/v1/documents",
                                               files={"file": (filename, data)},
                                               data=form or None))

    def upload(self, path: Path, metadata: dict[str, Any] | None = None,
               redact_pii: bool | None = None) -> UploadAccepted:
        return self.upload_bytes(path.name, path.read_bytes(), metadata, redact_pii)

    def document(self, doc_id: str) -> Document:
        return cast(Document, self._call("GET", f"/v1/documents/{doc_id}"))

    def documents(self, status: str | None = None, limit: int = 50, offset: int = 0,
                  filename_contains: str | None = None,
                  order: Literal["oldest", "newest"] = "oldest") -> DocumentList:
        """One page of the tenant's documents (``limit`` at most 500), oldest first unless
        ``order="newest"``; ``filename_contains``: part of the name, in any letter case."""
        params: dict[str, Any] = {"limit": limit, "offset": offset, "order": order}
        if status:
            params["status"] = status
        if filename_contains:
            params["filename_contains"] = filename_contains
        return cast(DocumentList, self._call("GET", "/v1/documents", params=params))

    def iter_documents(self, status: str | None = None, page_size: int = 500
                       ) -> Iterator[Document]:
        """Every document of the tenant, page by page (a document added or removed while
        paging can shift a page boundary: this is a listing, not a snapshot)."""
        offset = 0
        while True:
            page = self.documents(status, limit=page_size, offset=offset)
            yield from page["items"]
            offset += len(page["items"])
            if not page["items"] or offset >= page["total"]:
                return

    def delete(self, doc_id: str) -> None:
        self._call("DELETE", f"/v1/documents/{doc_id}")

    def document_text(self, doc_id: str, start: int, end: int, context: int = 0
                      ) -> DocumentText:
        """``GET /v1/documents/{id}/text``: characters ``start - context`` to
        ``end + context`` of a ready document's extracted text (a citation's ``start`` and
        ``end`` with some context around it); at most 20,000 characters at once."""
        params = {"start": start, "end": end, "context": context}
        return cast(DocumentText, self._call("GET", f"/v1/documents/{doc_id}/text",
                                             params=params))

    @contextmanager
    def document_file(self, doc_id: str) -> Iterator[httpx.Response]:
        """``GET /v1/documents/{id}/file``: the original file, as an open streamed response
        (``iter_bytes()``; ``headers["content-type"]``, ``headers["content-disposition"]``).
        An error answer raises before it."""
        with self.http.stream("GET", f"/v1/documents/{doc_id}/file",
                              headers=self._headers) as resp:
            self._last = resp
            if resp.status_code >= 400:
                resp.read()
                raise DocqaAPIError.from_response(resp)
            yield resp

    def download(self, doc_id: str, dest: Path) -> Path:
        """Save the original file to ``dest`` (a directory: under the name it was uploaded
        as); returns the path written."""
        with self.document_file(doc_id) as resp:
            if dest.is_dir():
                dest = dest / _attachment_name(resp.headers.get("content-disposition", ""),
                                               doc_id)
            tmp = dest.with_name(f".{dest.name}.part")
            try:
                with open(tmp, "wb") as out:
                    for block in resp.iter_bytes():
                        out.write(block)
                tmp.replace(dest)
            except BaseException:
                tmp.unlink(missing_ok=True)
                raise
        return dest

    def document_events(self, doc_id: str, timeout: float = 600.0) -> Iterator[Document]:
        """Live progress of one document (``GET /v1/documents/{id}/events``).

        Yields the document at connect, at every change of status/stage/done/total, and the
        final one (``ready`` or ``failed``) last; then the iterator ends. A stream that ends
        or breaks before that is opened again (its first event repeats the current state),
        so a caller may see a document twice. Raises TimeoutError when the final state has
        not come after ``timeout`` seconds, DocqaAPIError for an error answer (404: unknown
        id, or another tenant's). Nothing is sent before the first ``next()``.
        """
        deadline = time.monotonic() + timeout
        path = f"/v1/documents/{doc_id}/events"
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"document {doc_id} not finished after {timeout}s")
            try:
                with self._stream("GET", path, read_timeout=min(remaining, _STREAM_IDLE_S)
                                  ) as resp:
                    for sse in iter_sse(resp.iter_bytes()):
                        if sse.event == "error":
                            data = _json_data(sse, resp)
                            raise DocqaAPIError(int(data.get("status", 500)), data, resp.headers)
                        if sse.event in ("progress", "done"):
                            yield cast(Document, _json_data(sse, resp))
                            if sse.event == "done":
                                return
                        if time.monotonic() >= deadline:
                            raise TimeoutError(
                                f"document {doc_id} not finished after {timeout}s")
            except (httpx.ReadTimeout, httpx.ReadError, httpx.RemoteProtocolError):
                pass  # the open stream broke: connect again, below
            except DocqaAPIError as exc:
                _wait_out_stream_cap(exc, deadline)
                continue
            time.sleep(max(0.0, min(_RECONNECT_PAUSE_S, deadline - time.monotonic())))

    def statuses(self, doc_ids: Sequence[str]) -> DocumentStatuses:
        """``POST /v1/documents/status``: many documents' records in one request per 1,000
        ids (repeats count once). Ids of no document of the caller's are in ``missing``."""
        ids = list(dict.fromkeys(doc_ids))
        out: DocumentStatuses = {"items": [], "missing": []}
        for i in range(0, len(ids), MAX_BATCH_IDS):
            part = cast(DocumentStatuses, self._call(
                "POST", "/v1/documents/status", json={"ids": ids[i:i + MAX_BATCH_IDS]}))
            out["items"] += part["items"]
            out["missing"] += part["missing"]
        return out

    def counts(self) -> DocumentCounts:
        """``GET /v1/documents/counts``: the tenant's documents per status."""
        return cast(DocumentCounts, self._call("GET", "/v1/documents/counts"))

    def follow(self, doc_ids: Sequence[str], timeout: float = 3600.0
               ) -> Iterator[DocumentEvent]:
        """Live progress of many documents through ``POST /v1/documents/events``: one stream
        per 1,000 ids (repeats count once), followed one after the other; documents are
        ingested roughly in upload order, so the first streams end first.

        Yields each document's ``progress`` at connect and on every change, then exactly
        one ``done`` (ready or failed) or ``missing`` per document; the iterator ends when
        every document has had its last event. A stream that breaks is opened again for the
        documents not settled yet (their ``progress`` may repeat). Raises TimeoutError when
        some are not settled after ``timeout`` seconds, DocqaAPIError for an error answer.
        Nothing is sent before the first ``next()``.
        """
        ids = list(dict.fromkeys(doc_ids))
        deadline = time.monotonic() + timeout
        for i in range(0, len(ids), MAX_BATCH_IDS):
            yield from self._follow_batch(ids[i:i + MAX_BATCH_IDS], deadline, timeout)

    def _follow_batch(self, ids: list[str], deadline: float, timeout: float
                      ) -> Iterator[DocumentEvent]:
        pending = dict.fromkeys(ids)  # in order: a reconnect asks for what is left
        while pending:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"{len(pending)} documents not finished after {timeout}s")
            try:
                with self._stream("POST", "/v1/documents/events", {"ids": list(pending)},
                                  read_timeout=min(remaining, _STREAM_IDLE_S)) as resp:
                    for sse in iter_sse(resp.iter_bytes()):
                        yield from self._batch_event(sse, resp, pending)
                        if sse.event == "end" or not pending:
                            break
                        if time.monotonic() >= deadline:
                            raise TimeoutError(
                                f"{len(pending)} documents not finished after {timeout}s")
            except (httpx.ReadTimeout, httpx.ReadError, httpx.RemoteProtocolError):
                pass  # the open stream broke: connect again, below
            except DocqaAPIError as exc:
                _wait_out_stream_cap(exc, deadline)
                continue
            if pending:
                time.sleep(max(0.0, min(_RECONNECT_PAUSE_S, deadline - time.monotonic())))

    @staticmethod
    def _batch_event(sse: ServerSentEvent, resp: httpx.Response, pending: dict[str, None]
                     ) -> Iterator[DocumentEvent]:
        if sse.event == "error":
            data = _json_data(sse, resp)
            raise DocqaAPIError(int(data.get("status", 500)), data, resp.headers)
        if sse.event == "missing":
            for doc_id in _json_data(sse, resp).get("ids", []):
                if doc_id in pending:
                    del pending[doc_id]
                    yield DocumentEvent("missing", doc_id, None)
        elif sse.event in ("progress", "done"):
            doc = cast(Document, _json_data(sse, resp))
            if doc.get("id") in pending:
                if sse.event == "done":
                    del pending[doc["id"]]
                yield DocumentEvent(cast(Literal["progress", "done"], sse.event), doc["id"], doc)

    def wait_ready(self, doc_ids: Sequence[str], timeout: float = 600.0,
                   on_progress: Callable[[int, int], object] | None = None
                   ) -> dict[str, Document]:
        """Follow the documents (:meth:`follow`) until every one is ``ready`` or ``failed``;
        returns the final records by id. ``on_progress(finished, total)`` is called as
        documents finish. A document the caller does not have (unknown, another tenant's,
        deleted meanwhile) raises DocqaAPIError 404."""
        total = len(set(doc_ids))
        final: dict[str, Document] = {}
        for ev in self.follow(doc_ids, timeout):
            if ev.event == "missing":
                raise DocqaAPIError(404, {"title": "Not found", "status": 404,
                                          "detail": f"no document {ev.id!r}"})
            if ev.event == "done" and ev.document is not None:
                final[ev.id] = ev.document
                if on_progress:
                    on_progress(len(final), total)
        return final

    # ------------------------------------------------------------ search and ask

    @staticmethod
    def _query(key: str, text: str, top_k: int | None, filters: dict[str, Any]
               ) -> dict[str, Any]:
        body: dict[str, Any] = {key: text}
        if top_k:
            body["top_k"] = top_k
        if filters:
            body["filters"] = filters
        return body

    def search(self, query: str, top_k: int | None = None, mode: str | None = None,
               **filters: Any) -> SearchResponse:
        """``filters``: document_ids, filename, metadata, uploaded_after, uploaded_before."""
        body = self._query("query", query, top_k, filters)
        if mode:
            body["mode"] = mode
        return cast(SearchResponse, self._call("POST", "/v1/search", json=body))

    def ask(self, question: str, top_k: int | None = None, **filters: Any) -> AskResponse:
        return cast(AskResponse, self._call("POST", "/v1/ask",
                                            json=self._query("question", question, top_k,
                                                             filters)))

    def ask_stream(self, question: str, top_k: int | None = None, **filters: Any
                   ) -> Iterator[StreamEvent]:
        """``POST /v1/ask`` with ``"stream": true``: yields ``token`` events (the draft, piece
        by piece) and then the ``final`` one, whose data is the authoritative answer (the
        verified answer may differ from the draft); then the iterator ends.

        An error answer before the stream (401, 422, 429, 503) raises DocqaAPIError, and so
        does an ``event: error`` inside it (``status`` and ``body`` from the event: a caller
        cannot take a broken stream for an answer by forgetting to check the event name),
        and a stream that ends without ``final``. Unknown events are yielded as they come.
        Nothing is sent before the first ``next()``.
        """
        body = {**self._query("question", question, top_k, filters), "stream": True}
        with self._stream("POST", "/v1/ask", body) as resp:
            for sse in iter_sse(resp.iter_bytes()):
                data = _json_data(sse, resp)
                if sse.event == "error":
                    raise DocqaAPIError(int(data.get("status", 500)), data, resp.headers)
                yield StreamEvent(sse.event, data)
                if sse.event == "final":
                    return
            raise DocqaAPIError(resp.status_code, {
                "title": "Incomplete stream",
                "detail": "the answer stream ended without a final event"}, resp.headers)

    # ------------------------------------------------------------ operations

    def healthy(self) -> bool:
        try:
            return self.http.get("/readyz").status_code == 200
        except httpx.HTTPError:
            return False

    def healthz(self) -> dict[str, str]:
        return cast(dict[str, str], self._call("GET", "/healthz"))

    def readyz(self) -> Readiness:
        """The readiness report, for 200 (ready) and 503 (``failed`` names what) alike."""
        resp = self._send("GET", "/readyz")
        if resp.status_code not in (200, 503):
            raise DocqaAPIError.from_response(resp)
        return cast(Readiness, resp.json())

    def metrics(self, token: str | None = None) -> str:
        """The Prometheus text of ``/metrics`` (``token``: DOCQA_METRICS__TOKEN, if set)."""
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        resp = self._send("GET", "/metrics", headers=headers)
        if resp.status_code >= 400:
            raise DocqaAPIError.from_response(resp)
        return resp.text

    def openapi(self) -> dict[str, Any]:
        return cast(dict[str, Any], self._call("GET", "/schema/openapi.json"))


class AdminClient(DocqaClient):
    """The admin API (``/admin/keys``, service/api/admin.py) with the admin key."""

    def __init__(self, base_url: str, admin_key: str, timeout: float = 60.0,
                 transport: httpx.BaseTransport | None = None) -> None:
        super().__init__(base_url, admin_key, timeout=timeout, transport=transport)

    def create_key(self, tenant: str, name: str = "") -> ApiKeyCreated:
        return cast(ApiKeyCreated, self._call("POST", "/admin/keys",
                                              json={"tenant": tenant, "name": name}))

    def keys(self, tenant: str | None = None) -> ApiKeyList:
        params = {"tenant": tenant} if tenant is not None else {}
        return cast(ApiKeyList, self._call("GET", "/admin/keys", params=params))

    def revoke_key(self, key_id: str) -> None:
        self._call("DELETE", f"/admin/keys/{key_id}")
