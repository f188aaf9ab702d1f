"""The typed client against canned answers (httpx.MockTransport): the SSE parser, the two
streaming methods, the mapping of error answers and the 429 handling (wait for Retry-After
and send again, within a budget). The real stack's streams are checked by the integration
tests that use these methods."""

from __future__ import annotations

import enum
import json
import os
import subprocess
import sys
import typing
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from service.client import (
    AdminClient,
    DocqaAPIError,
    DocqaClient,
    ServerSentEvent,
    SSEDecoder,
    StreamEvent,
)

Handler = Callable[[httpx.Request], httpx.Response]
SSE = {"content-type": "text/event-stream; charset=utf-8"}


def client(handler: Handler, wait_on_429_s: float = 0.0) -> DocqaClient:
    return DocqaClient("http://docqa.test", "k", transport=httpx.MockTransport(handler),
                       wait_on_429_s=wait_on_429_s)


def parse(*chunks: bytes | str) -> list[ServerSentEvent]:
    decoder = SSEDecoder()
    return [e for c in chunks for e in decoder.feed(c)]


def sse(event: str, data: Any) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data)}\n\n".encode()


def stream(*chunks: bytes) -> Iterator[bytes]:
    yield from chunks


def problem(status: int, detail: str, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.Response(status, headers={"content-type": "application/problem+json",
                                           **(headers or {})},
                          json={"type": "about:blank", "title": "t", "status": status,
                                "detail": detail})


def doc(status: str, stage: str, done: int = 0, total: int = 0, unit: str = "") -> dict[str, Any]:
    return {"id": "d1", "status": status,
            "progress": {"stage": stage, "done": done, "total": total, "unit": unit}}


# ---------------------------------------------------------------- the SSE parser


def test_multi_line_data_is_joined_with_newlines() -> None:
    assert parse("event: token\ndata: a\ndata:b\ndata:  c\n\n") == [
        ServerSentEvent("token", "a\nb\n c")]


def test_comments_are_ignored_and_dispatch_nothing() -> None:
    assert parse(": keep-alive\n\n:another\ndata: x\n: mid-event comment\n\n") == [
        ServerSentEvent("message", "x")]


def test_crlf_and_lone_cr_end_lines() -> None:
    assert parse("event: a\r\ndata: 1\r\n\r\nevent: b\rdata: 2\r\r") == [
        ServerSentEvent("a", "1"), ServerSentEvent("b", "2")]


def test_crlf_split_between_chunks_is_one_line_end() -> None:
    # the CR ends one chunk, the LF starts the next: no extra blank line (no early dispatch)
    assert parse("data: 1\r", "\ndata: 2\r\n\r", "\n") == [ServerSentEvent("message", "1\n2")]


def test_an_event_without_data_dispatches_nothing() -> None:
    assert parse("event: ping\n\nevent: x\ndata\n\n") == [ServerSentEvent("x", "")]


def test_events_split_anywhere_across_chunks_and_utf8_sequences() -> None:
    body = sse("token", {"text": "Göteborg — ✓"}) + sse("final", {"status": "answered"})
    one = parse(body)
    assert [e.event for e in one] == ["token", "final"]
    assert json.loads(one[0].data) == {"text": "Göteborg — ✓"}
    assert parse(*(body[i:i + 1] for i in range(len(body)))) == one  # byte by byte
    assert parse(body[:7], body[7:40], body[40:]) == one


def test_field_without_space_unknown_fields_bom_and_unterminated_event() -> None:
    assert parse("\ufeffdata:x\nid: 7\nretry: 10\nfoo: bar\n\ndata: never dispatched\n") == [
        ServerSentEvent("message", "x")]


def test_data_with_unicode_line_separators_stays_one_line() -> None:
    # str.splitlines() would cut at U+2028; the SSE spec only knows CR and LF
    assert parse("data: a\u2028b\x85c\n\n") == [ServerSentEvent("message", "a\u2028b\x85c")]


# ---------------------------------------------------------------- ask_stream


def test_ask_stream_sends_stream_true_and_yields_tokens_then_final() -> None:
    final = {"status": "answered", "answer": "Marta [1].", "citations": [], "timings": {}}
    seen: list[dict[str, Any]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(json.loads(request.content))
        assert request.headers["accept"] == "text/event-stream"
        return httpx.Response(200, headers=SSE, content=stream(
            sse("token", {"text": "Mar"})[:10], sse("token", {"text": "Mar"})[10:],
            b": keep-alive\n\n", sse("token", {"text": "ta"}), sse("final", final)))

    events = list(client(handler).ask_stream("Who?", top_k=3, filename="a.txt"))
    assert seen == [{"question": "Who?", "top_k": 3, "filters": {"filename": "a.txt"},
                     "stream": True}]
    assert events == [StreamEvent("token", {"text": "Mar"}), StreamEvent("token", {"text": "ta"}),
                      StreamEvent("final", final)]


def test_ask_stream_error_before_the_stream_raises_with_status_and_headers() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return problem(429, "too many questions", {"Retry-After": "7", "X-Request-ID": "r1"})

    with pytest.raises(DocqaAPIError) as err:
        list(client(handler).ask_stream("Who?"))
    e = err.value
    assert (e.status, e.detail, e.retry_after, e.request_id) == (429, "too many questions", 7.0,
                                                                "r1")


def test_ask_stream_error_event_raises_after_the_tokens_before_it() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, headers=SSE, content=stream(
            sse("token", {"text": "draft"}),
            sse("error", {"status": 503, "title": "Service unavailable",
                          "detail": "the generator stopped"})))

    got: list[StreamEvent] = []
    with pytest.raises(DocqaAPIError) as err:
        for event in client(handler).ask_stream("Who?"):
            got.append(event)
    assert got == [StreamEvent("token", {"text": "draft"})]
    assert err.value.status == 503 and err.value.detail == "the generator stopped"
    assert err.value.title == "Service unavailable"


def test_ask_stream_without_final_or_with_bad_json_raises() -> None:
    for body in (sse("token", {"text": "x"}), b"event: token\ndata: {not json\n\n"):
        def handler(request: httpx.Request, body: bytes = body) -> httpx.Response:
            return httpx.Response(200, headers=SSE, content=stream(body))

        with pytest.raises(DocqaAPIError) as err:
            list(client(handler).ask_stream("Who?"))
        assert err.value.status == 200 and err.value.detail


def test_a_json_answer_where_a_stream_was_asked_for_is_an_error() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"status": "answered"})

    with pytest.raises(DocqaAPIError, match="text/event-stream"):
        list(client(handler).ask_stream("Who?"))


def test_ask_stream_waits_out_a_429_when_asked_to() -> None:
    calls: list[bytes] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request.read())
        if len(calls) == 1:
            return problem(429, "slow down", {"Retry-After": "0.05"})
        return httpx.Response(200, headers=SSE, content=stream(
            sse("final", {"status": "not_found", "answer": "", "citations": [],
                          "timings": {}})))

    events = list(client(handler, wait_on_429_s=5).ask_stream("Who?"))
    assert [e.event for e in events] == ["final"] and len(calls) == 2
    assert calls[0] == calls[1]


# ---------------------------------------------------------------- document_events


def test_document_events_yield_progress_then_done_last() -> None:
    paths: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        paths.append(request.url.path)
        return httpx.Response(200, headers=SSE, content=stream(
            sse("progress", doc("queued", "queued")),
            b": keep-alive\r\n\r\n",
            sse("progress", doc("processing", "parsing", 3, 12, "pages")),
            sse("progress", doc("processing", "embedding", 40, 96, "chunks")),
            sse("done", doc("ready", "ready")),
            sse("progress", doc("ready", "after the end"))))

    docs = list(client(handler).document_events("d1"))
    assert paths == ["/v1/documents/d1/events"]
    assert [(d["status"], d["progress"]["stage"]) for d in docs] == [
        ("queued", "queued"), ("processing", "parsing"), ("processing", "embedding"),
        ("ready", "ready")]
    assert docs[1]["progress"] == {"stage": "parsing", "done": 3, "total": 12, "unit": "pages"}


def test_document_events_connect_again_when_a_stream_ends_early(
    monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("service.client._RECONNECT_PAUSE_S", 0.0)
    calls = {"n": 0}

    def handler(request: httpx.Request) -> httpx.Response:
        calls["n"] += 1
        if calls["n"] == 1:  # e.g. the API restarted: closed without a done event
            return httpx.Response(200, headers=SSE,
                                  content=stream(sse("progress", doc("processing", "parsing"))))
        return httpx.Response(200, headers=SSE, content=stream(
            sse("progress", doc("processing", "embedding")), sse("done", doc("failed", "failed"))))

    docs = list(client(handler).document_events("d1", timeout=30))
    assert calls["n"] == 2
    assert [d["progress"]["stage"] for d in docs] == ["parsing", "embedding", "failed"]


def test_document_events_unknown_id_is_a_404_error() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return problem(404, "no document with id 'nope'", {"X-Request-ID": "rid-9"})

    with pytest.raises(DocqaAPIError) as err:
        next(client(handler).document_events("nope"))
    assert err.value.status == 404 and err.value.request_id == "rid-9"
    assert err.value.headers["content-type"] == "application/problem+json"


def test_document_events_time_out() -> None:
    def handler(request: httpx.Request) -> httpx.Response:  # progress, never done
        return httpx.Response(200, headers=SSE, content=stream(
            *(sse("progress", doc("processing", "embedding", i, 9)) for i in range(3))))

    with pytest.raises(TimeoutError):
        list(client(handler).document_events("d1", timeout=0.01))


# ---------------------------------------------------------------- many documents


def bdoc(doc_id: str, status: str, stage: str = "embedding") -> dict[str, Any]:
    return {**doc(status, stage), "id": doc_id}


def test_follow_yields_each_documents_news_and_one_last_event_each() -> None:
    bodies: list[Any] = []

    def handler(request: httpx.Request) -> httpx.Response:
        bodies.append(json.loads(request.read()))
        assert request.url.path == "/v1/documents/events" and request.method == "POST"
        return httpx.Response(200, headers=SSE, content=stream(
            sse("missing", {"ids": ["x"]}),
            sse("progress", bdoc("a", "processing")),
            b": keep-alive\n\n",
            sse("done", bdoc("b", "failed", "failed")),
            sse("progress", bdoc("zz", "processing")),  # not asked for: ignored
            sse("done", bdoc("a", "ready", "ready")),
            sse("end", {"ready": 1, "failed": 1, "missing": 1})))

    events = list(client(handler).follow(["a", "b", "x", "a"]))
    assert bodies == [{"ids": ["a", "b", "x"]}]
    assert [(e.event, e.id) for e in events] == [
        ("missing", "x"), ("progress", "a"), ("done", "b"), ("done", "a")]
    assert events[0].document is None and events[3].document["status"] == "ready"


def test_follow_connects_again_for_the_documents_not_settled(
    monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("service.client._RECONNECT_PAUSE_S", 0.0)
    bodies: list[Any] = []

    def handler(request: httpx.Request) -> httpx.Response:
        bodies.append(json.loads(request.read())["ids"])
        if len(bodies) == 1:  # the API restarted: closed before the end
            return httpx.Response(200, headers=SSE, content=stream(
                sse("progress", bdoc("a", "processing")), sse("done", bdoc("b", "ready"))))
        return httpx.Response(200, headers=SSE, content=stream(
            sse("progress", bdoc("a", "processing")), sse("done", bdoc("b", "ready")),
            sse("done", bdoc("a", "ready")), sse("end", {})))

    events = list(client(handler).follow(["a", "b"], timeout=30))
    assert bodies == [["a", "b"], ["a"]]
    assert [(e.event, e.id) for e in events] == [
        ("progress", "a"), ("done", "b"), ("progress", "a"), ("done", "a")]


def test_follow_waits_out_a_stream_cap_and_raises_other_errors(
    monkeypatch: pytest.MonkeyPatch
) -> None:
    """429: the key holds as many streams as it may (service/api/limits.py): wait its
    Retry-After and connect again; any other error answer is raised."""
    slept: list[float] = []
    monkeypatch.setattr("service.client.time.sleep", slept.append)
    calls: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        if len(calls) == 1:
            return problem(429, "this API key has 8 event streams open", {"Retry-After": "5"})
        return httpx.Response(200, headers=SSE, content=stream(
            sse("done", bdoc("a", "ready")), sse("end", {})))

    events = list(client(handler).follow(["a"], timeout=30))
    assert [(e.event, e.id) for e in events] == [("done", "a")] and slept == [5.0]

    def refused(request: httpx.Request) -> httpx.Response:
        return problem(401, "unknown or revoked API key")

    with pytest.raises(DocqaAPIError) as err:
        list(client(refused).follow(["a"], timeout=30))
    assert err.value.status == 401


def test_follow_takes_a_thousand_ids_per_stream_and_statuses_per_request() -> None:
    asked: list[tuple[str, int]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        ids = json.loads(request.read())["ids"]
        asked.append((request.url.path, len(ids)))
        if request.url.path == "/v1/documents/status":
            return httpx.Response(200, json={"items": [bdoc(i, "ready") for i in ids[1:]],
                                             "missing": ids[:1]})
        return httpx.Response(200, headers=SSE, content=stream(
            *(sse("done", bdoc(i, "ready")) for i in ids), sse("end", {})))

    ids = [f"d{i}" for i in range(2500)]
    final = client(handler).wait_ready(ids)
    assert list(final) == ids and asked == [("/v1/documents/events", 1000),
                                            ("/v1/documents/events", 1000),
                                            ("/v1/documents/events", 500)]
    asked.clear()
    out = client(handler).statuses(ids)
    assert out["missing"] == ["d0", "d1000", "d2000"] and len(out["items"]) == 2497
    assert [n for _, n in asked] == [1000, 1000, 500]


def test_wait_ready_reports_progress_and_a_missing_document_is_a_404() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, headers=SSE, content=stream(
            sse("done", bdoc("a", "ready")), sse("missing", {"ids": ["b"]}), sse("end", {})))

    seen: list[tuple[int, int]] = []
    with pytest.raises(DocqaAPIError) as err:
        client(handler).wait_ready(["a", "b"], on_progress=lambda d, t: seen.append((d, t)))
    assert err.value.status == 404 and "'b'" in err.value.detail and seen == [(1, 2)]


def test_follow_times_out_and_an_error_event_raises() -> None:
    def never(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, headers=SSE, content=stream(
            *(sse("progress", bdoc("a", "processing")) for _ in range(3))))

    with pytest.raises(TimeoutError):
        list(client(never).follow(["a"], timeout=0.01))

    def broken(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, headers=SSE, content=stream(
            sse("error", {"status": 503, "title": "t", "detail": "registry down"})))

    with pytest.raises(DocqaAPIError) as err:
        list(client(broken).follow(["a"]))
    assert err.value.status == 503


def test_counts() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/v1/documents/counts"
        return httpx.Response(200, json={"queued": 1, "processing": 0, "ready": 2,
                                         "failed": 0, "total": 3})

    assert client(handler).counts()["ready"] == 2


# ---------------------------------------------------------------- plain calls


def test_problem_json_maps_to_an_error_with_status_detail_and_headers() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return problem(503, "the generation queue is full",
                       {"Retry-After": "2", "X-Request-ID": "abc"})

    c = client(handler)
    with pytest.raises(DocqaAPIError) as err:
        c.ask("Who?")
    e = err.value
    assert e.status == 503 and e.body["status"] == 503 and e.title == "t"
    assert e.detail == "the generation queue is full" and str(e) == f"HTTP 503: {e.detail}"
    assert e.retry_after == 2.0 and e.request_id == "abc"
    assert c.last_response.status_code == 503


def test_a_non_json_error_body_is_kept_as_text() -> None:
    c = client(lambda request: httpx.Response(502, text="Bad Gateway"))
    with pytest.raises(DocqaAPIError) as err:
        c.documents()
    assert err.value.body == "Bad Gateway" and err.value.detail == "Bad Gateway"
    assert err.value.retry_after is None and err.value.title == ""


def test_bodies_paths_and_headers_of_plain_calls() -> None:
    sent: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        request.read()
        if request.method == "DELETE":
            return httpx.Response(204)
        if request.url.path == "/v1/search":
            return httpx.Response(200, json={"results": []})
        return httpx.Response(200, json={"id": "d1", "status": "ready", "duplicate": True,
                                         "pii_redacted": False})

    c = client(handler)
    traced = c.with_headers({"X-Request-ID": "it-1"})
    assert traced.search("q", top_k=5, mode="keyword", document_ids=["d1"]) == {"results": []}
    assert traced.last_response.status_code == 200
    up = c.upload_bytes("a.txt", b"hello", {"team": "hr"}, redact_pii=True)
    assert up["duplicate"] is True and c.last_response.status_code == 200
    c.delete("d1")
    search, upload, delete = sent
    assert search.headers["x-request-id"] == "it-1"
    assert search.headers["authorization"] == "Bearer k"
    assert json.loads(search.content) == {"query": "q", "top_k": 5, "mode": "keyword",
                                          "filters": {"document_ids": ["d1"]}}
    assert "x-request-id" not in upload.headers  # the view's headers stay in the view
    assert b'name="redact_pii"' in upload.content and b'{"team": "hr"}' in upload.content
    assert (delete.method, delete.url.path) == ("DELETE", "/v1/documents/d1")


def test_iter_documents_walks_every_page() -> None:
    offsets: list[str] = []
    ids = [f"d{i}" for i in range(5)]

    def handler(request: httpx.Request) -> httpx.Response:
        offsets.append(request.url.params["offset"])
        off, lim = int(request.url.params["offset"]), int(request.url.params["limit"])
        return httpx.Response(200, json={"items": [{"id": i} for i in ids[off:off + lim]],
                                         "total": len(ids), "limit": lim, "offset": off})

    assert [d["id"] for d in client(handler).iter_documents(page_size=2)] == ids
    assert offsets == ["0", "2", "4"]


def test_readyz_returns_the_report_for_503_too_and_metrics_text() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/metrics":
            assert request.headers["authorization"] == "Bearer scrape-token"
            return httpx.Response(200, text="docqa_up 1\n",
                                  headers={"content-type": "text/plain; version=0.0.4"})
        return httpx.Response(503, json={"status": "not ready", "checks": {"chroma": "x"},
                                         "failed": ["chroma"], "registry_backend": "sqlite"})

    c = client(handler)
    assert c.readyz()["failed"] == ["chroma"] and c.last_response.status_code == 503
    assert c.metrics(token="scrape-token") == "docqa_up 1\n"  # noqa: S106 - not a secret


def test_admin_client_calls_the_key_routes() -> None:
    seen: list[tuple[str, str, bytes]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append((request.method, str(request.url), request.read()))
        assert request.headers["authorization"] == "Bearer admin-key"
        if request.method == "POST":
            return httpx.Response(201, json={"id": "k_1", "tenant": "t", "name": "ci",
                                             "created_at": "", "key": "dq_x"})
        if request.method == "DELETE":
            return httpx.Response(204)
        return httpx.Response(200, json={"items": []})

    admin = AdminClient("http://docqa.test", "admin-key", transport=httpx.MockTransport(handler))
    assert admin.create_key("t", "ci")["key"] == "dq_x"
    assert admin.keys(tenant="t") == {"items": []}
    admin.revoke_key("k_1")
    assert [(m, u) for m, u, _ in seen] == [
        ("POST", "http://docqa.test/admin/keys"), ("GET", "http://docqa.test/admin/keys?tenant=t"),
        ("DELETE", "http://docqa.test/admin/keys/k_1")]
    assert json.loads(seen[0][2]) == {"tenant": "t", "name": "ci"}


def test_document_text_and_download(tmp_path: Path) -> None:
    seen: list[str] = []
    disposition = "attachment; filename=\"r_sum_.pdf\"; filename*=UTF-8''..%2Fr%C3%A9sum%C3%A9.pdf"

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        if request.url.path.endswith("/text"):
            return httpx.Response(200, json={"document_id": "d1", "text": "x"})
        if request.url.path == "/v1/documents/d1/file":
            return httpx.Response(200, headers={"content-type": "application/pdf",
                                                "content-disposition": disposition},
                                  content=stream(b"%PDF-", b"1.7 rest"))
        return problem(404, "no document 'gone'")

    c = client(handler)
    assert c.document_text("d1", 10, 20, context=5)["text"] == "x"
    assert seen[-1] == "http://docqa.test/v1/documents/d1/text?start=10&end=20&context=5"
    saved = c.download("d1", tmp_path)
    assert saved == tmp_path / "résumé.pdf"  # the name, never its path
    assert saved.read_bytes() == b"%PDF-1.7 rest"
    assert c.download("d1", tmp_path / "mine.pdf") == tmp_path / "mine.pdf"
    with pytest.raises(DocqaAPIError) as err:
        c.download("gone", tmp_path / "x.pdf")
    assert err.value.status == 404 and not (tmp_path / "x.pdf").exists()
    assert not list(tmp_path.glob(".*.part"))


def mirrored_types() -> list[tuple[Any, Any]]:
    """(the client's TypedDict, the server's struct) of every body the client reads."""
    from service import client
    from service.api import admin, health, schemas

    return [(client.Progress, schemas.ProgressOut), (client.Pii, schemas.PiiOut),
            (client.Document, schemas.DocumentOut), (client.DocumentList, schemas.DocumentList),
            (client.UploadAccepted, schemas.UploadAccepted),
            (client.SearchResult, schemas.SearchResult),
            (client.SearchResponse, schemas.SearchResponse),
            (client.Citation, schemas.Citation), (client.AskResponse, schemas.AskResponse),
            (client.Readiness, health.Readiness),
            (client.DocumentText, schemas.DocumentTextOut),
            (client.ApiKey, admin.KeyOut), (client.ApiKeyCreated, admin.KeyCreated),
            (client.ApiKeyList, admin.KeyList),
            (client.DocumentStatuses, schemas.DocumentStatuses),
            (client.DocumentCounts, schemas.DocumentCounts)]


def test_the_clients_types_name_exactly_the_fields_the_server_sends() -> None:
    """The client mirrors the wire format without importing the server's schemas; this keeps
    the two from drifting apart."""
    for typed, struct in mirrored_types():
        assert set(typed.__annotations__) == set(struct.__struct_fields__), typed.__name__


def _enum_values(tp: Any) -> set[Any] | None:
    """The values an enum or Literal type allows (None: not one)."""
    origin = typing.get_origin(tp)
    if origin is typing.Annotated:
        return _enum_values(typing.get_args(tp)[0])
    if origin is typing.Literal:
        return set(typing.get_args(tp))
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return {m.value for m in tp}
    return None


def test_the_clients_enums_allow_exactly_the_values_the_server_sends() -> None:
    """The schema's enums (document status and kind, progress stage and unit, answer status,
    readiness) are Literals in the client with the same values."""
    checked = 0
    for typed, struct in mirrored_types():
        ours = typing.get_type_hints(typed)
        for name, tp in typing.get_type_hints(struct, include_extras=True).items():
            server = _enum_values(tp)
            if server is not None:
                assert _enum_values(ours[name]) == server, (typed.__name__, name)
                checked += 1
    assert checked >= 7


# ---------------------------------------------------------------- 429: wait, send again


def _client(responses: list[int], budget: float, seen: list[bytes]) -> DocqaClient:
    queue = list(responses)

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.read())
        code = queue.pop(0) if queue else 200
        if code == 429:
            return httpx.Response(429, headers={"Retry-After": "0.05"},
                                  json={"detail": "slow down"})
        return httpx.Response(202, json={"id": "d1", "status": "queued"})

    return DocqaClient("http://docqa.test", "k", transport=httpx.MockTransport(handler),
                       wait_on_429_s=budget)


def test_a_refused_upload_is_sent_again_with_the_same_body() -> None:
    seen: list[bytes] = []
    out = _client([429, 429], budget=5.0, seen=seen).upload_bytes("a.txt", b"hello")
    assert out["id"] == "d1" and len(seen) == 3
    assert seen[0] == seen[2] and b"hello" in seen[2]


def test_the_429_reaches_the_caller_when_the_budget_is_spent() -> None:
    seen: list[bytes] = []
    with pytest.raises(DocqaAPIError) as err:
        _client([429] * 50, budget=0.12, seen=seen).upload_bytes("a.txt", b"x")
    assert err.value.status == 429 and 2 <= len(seen) < 50


def test_the_client_imports_without_the_servers_heavy_libraries() -> None:
    """``service.client`` is for scripts and other services: importing it and making a
    client must not pull in torch, chromadb or llama-cpp (nor the embedding library)."""
    blocked = ("torch", "chromadb", "llama_cpp", "sentence_transformers")
    code = f"""
import sys
from importlib.abc import MetaPathFinder

class Block(MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {blocked!r}:
            raise ImportError("blocked: " + name)
        return None

sys.meta_path.insert(0, Block())
from service.client import DocqaClient
with DocqaClient("http://127.0.0.1:9", "key") as client:
    pass
print(sorted(m for m in sys.modules if m.split(".")[0] in {blocked!r}))
"""
    root = Path(__file__).resolve().parents[3]
    out = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True,
                         text=True, timeout=60, env={**os.environ, "PYTHONPATH": str(root)})
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "[]"


def test_the_document_list_passes_its_name_filter_and_order() -> None:
    seen: list[httpx.URL] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.url)
        return httpx.Response(200, json={"items": [], "total": 0, "limit": 5, "offset": 0})

    with client(handler) as c:
        c.documents(limit=5, filename_contains="Policy", order="newest")
        c.documents()
    first, default = (dict(u.params) for u in seen)
    assert first == {"limit": "5", "offset": "0", "order": "newest",
                     "filename_contains": "Policy"}
    assert default == {"limit": "50", "offset": "0", "order": "oldest"}
