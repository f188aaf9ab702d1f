"""Live ingest progress as server-sent events (service/api/events.py): the event stream's
generator on a scripted registry and clock, and a real server whose client goes away."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any

import anyio
import httpx
import uvicorn
from litestar import Litestar, get
from litestar.response import ServerSentEvent

from core.domain import Document, DocumentKind, DocumentStatus, Progress
from service.api.events import document_events
from service.cli.processes import free_port


def _doc(status: str = "processing", stage: str = "parsing", done: int = 0,
         total: int = 0) -> Document:
    return Document(id="d1", tenant="acme", filename="a.pdf", kind=DocumentKind.PDF,
                    sha256="0" * 64, size=10, status=DocumentStatus(status),
                    created_at=1.0, updated_at=1.0, progress=Progress(stage, done, total))


class _Script:
    """A registry that answers the next scripted record per poll and a clock that advances
    ``step`` per poll (no real waiting)."""

    def __init__(self, records: Sequence[Document | None], step: float = 1.0) -> None:
        self.records: Iterator[Document | None] = iter(records)
        self.now, self.step = 0.0, step

    def lookup(self) -> Document | None:
        self.now += self.step
        return next(self.records)

    def clock(self) -> float:
        return self.now


def _run(first: Document, script: _Script, **kw: Any) -> list[tuple[str | None, Any]]:
    async def collect() -> list[tuple[str | None, Any]]:
        out: list[tuple[str | None, Any]] = []
        async for msg in document_events(first, script.lookup, poll_s=0, clock=script.clock,
                                         **kw):
            data = json.loads(str(msg.data)) if msg.data is not None else None
            out.append((msg.event, data) if msg.comment is None else (":" + msg.comment, None))
        return out

    return anyio.run(collect)


def test_events_go_out_on_change_only_and_end_with_done() -> None:
    script = _Script([
        _doc(stage="parsing", done=0, total=3),
        _doc(stage="parsing", done=0, total=3),  # unchanged: nothing sent
        _doc(stage="parsing", done=2, total=3),
        _doc(stage="embedding", done=0, total=9),
        _doc(status="ready", stage="ready", done=9, total=9),
    ])
    events = _run(_doc(status="queued", stage="queued"), script)
    assert [e for e, _ in events] == ["progress"] * 4 + ["done"]
    assert [(d["progress"]["stage"], d["progress"]["done"], d["progress"]["unit"])
            for _, d in events] == [("queued", 0, ""), ("parsing", 0, "pages"),
                                    ("parsing", 2, "pages"), ("embedding", 0, "chunks"),
                                    ("ready", 9, "")]
    assert events[-1][1]["status"] == "ready"


def test_a_finished_document_gets_progress_then_done_at_once() -> None:
    failed = _doc(status="failed", stage="failed")
    failed.error = "the PDF is encrypted"
    events = _run(failed, _Script([]))
    assert [e for e, _ in events] == ["progress", "done"]
    assert events[-1][1]["error"] == "the PDF is encrypted"


def test_a_quiet_stream_sends_keep_alive_comments() -> None:
    same = _doc(stage="embedding", done=4, total=9)
    script = _Script([same] * 5 + [_doc(status="ready", stage="ready")], step=8.0)
    events = _run(same, script, keepalive_s=15.0)
    # polls at 8, 16, 24, 32, 40 s: idle 16 s → comment, then idle again from 16 → at 32
    assert [e for e, _ in events] == ["progress", ":keep-alive", ":keep-alive", "done"]


def test_a_deleted_document_ends_the_stream_with_an_error() -> None:
    events = _run(_doc(), _Script([_doc(done=1, total=2), None]))
    assert [e for e, _ in events] == ["progress", "progress", "error"]
    assert events[-1][1]["status"] == 404


def test_an_abandoned_stream_ends_at_its_lifetime() -> None:
    same = _doc(stage="embedding", done=4, total=9)
    script = _Script([same] * 100, step=10.0)
    events = _run(same, script, max_s=30.0, keepalive_s=1000.0)
    assert [e for e, _ in events] == ["progress"]
    assert script.now == 30.0  # three polls, then the lifetime was up


def test_a_client_that_disconnects_ends_the_polling() -> None:
    """A real server (uvicorn, in a thread): once the client has gone, the generator is
    closed and the registry is no longer polled."""
    state = {"polls": 0, "closed": False}

    def lookup() -> Document:
        state["polls"] += 1
        return _doc(stage="embedding", done=int(state["polls"]), total=10**6)

    async def events() -> Any:
        try:
            async for msg in document_events(_doc(), lookup, poll_s=0.02):
                yield msg
        finally:
            state["closed"] = True

    @get("/events")
    async def handler() -> ServerSentEvent:
        return ServerSentEvent(events())

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(Litestar([handler]), host="127.0.0.1", port=port,
                                           log_config=None, lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.05)
        with httpx.stream("GET", f"http://127.0.0.1:{port}/events", trust_env=False) as resp:
            lines = resp.iter_lines()
            got = [next(lines) for _ in range(6)]  # two events
        assert got[0] == "event: progress" and got[3] == "event: progress"
        while not state["closed"] and time.monotonic() < deadline:
            time.sleep(0.05)
        assert state["closed"], "the stream kept running after the client left"
        polls = state["polls"]
        time.sleep(0.2)  # ten poll intervals: none may happen now
        assert state["polls"] == polls
    finally:
        server.should_exit = True
        thread.join(10)
