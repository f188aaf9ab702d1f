"""Live ingest progress: the sandbox's progress pipe (real child processes), the event
stream's generator (a scripted registry and clock) and the document JSON's ``unit``."""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
import uvicorn
from litestar import Litestar, get
from litestar.response import ServerSentEvent

from core.domain import Document, DocumentKind, DocumentStatus, Progress
from core.errors import ParseError
from core.settings import LimitSettings
from ingest.readers import read_document
from ingest.sandbox import parse_isolated, parse_progress_line
from service.cli.processes import free_port
from service.api.events import document_events
from service.api.schemas import DocumentOut
from tests.factories import make_pdf


def plain_reader(path: Path, kind: DocumentKind, limits: Any) -> list[Any]:
    """A sandbox target without ``on_page`` (like the misbehaving ones in tests/hostile.py)."""
    return read_document(path, kind, limits)


def _write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


# ---------------------------------------------------------------- the sandbox's progress pipe


@pytest.mark.parametrize(("line", "pair"), [
    (b"3 12", (3, 12)), (b"0 0", (0, 0)), (b" 12 12 ", (12, 12)),
    (b"13 12", None), (b"-1 12", None), (b"3", None), (b"3 12 1", None), (b"a b", None),
    (b"1 999999999", None), (b"", None), (b"\xff\xfe 1", None),
])
def test_progress_lines_from_the_child_are_checked(
    line: bytes, pair: tuple[int, int] | None
) -> None:
    assert parse_progress_line(line) == pair


def test_a_pdf_parse_reports_its_pages_to_the_parent(tmp_path: Path) -> None:
    texts = [f"Page {i} says something about topic {i}." for i in range(1, 8)]
    path = _write(tmp_path, "seven.pdf", make_pdf(texts))
    seen: list[tuple[int, int]] = []
    pages = parse_isolated(path, DocumentKind.PDF, LimitSettings(),
                           on_progress=lambda done, total: seen.append((done, total)))
    assert pages == read_document(path, DocumentKind.PDF)
    assert seen, "no progress reached the parent"
    assert seen[-1] == (7, 7)
    assert {total for _, total in seen} == {7}
    assert [done for done, _ in seen] == sorted({done for done, _ in seen})  # rising, no repeats


def test_a_one_piece_format_reports_one_of_one(tmp_path: Path) -> None:
    path = _write(tmp_path, "a.txt", b"Just one page of words.")
    seen: list[tuple[int, int]] = []
    parse_isolated(path, DocumentKind.TEXT, LimitSettings(),
                   on_progress=lambda done, total: seen.append((done, total)))
    assert seen == [(1, 1)]


def test_a_target_without_on_page_still_parses(tmp_path: Path) -> None:
    path = _write(tmp_path, "a.txt", b"Words without progress.")
    seen: list[tuple[int, int]] = []
    pages = parse_isolated(path, DocumentKind.TEXT, LimitSettings(),
                           target="tests.unit.service.api.test_events:plain_reader",
                           on_progress=lambda done, total: seen.append((done, total)))
    assert pages[0].text == "Words without progress." and seen == []


def test_the_time_limit_holds_while_progress_is_watched(tmp_path: Path) -> None:
    path = _write(tmp_path, "x.txt", b"text")
    with pytest.raises(ParseError, match=r"parsing exceeded the 1.5 s time limit"):
        parse_isolated(path, DocumentKind.TEXT,
                       LimitSettings().model_copy(update={"parse_timeout_s": 1.5}),
                       target="tests.hostile:sleep", on_progress=lambda done, total: None)
    pid = int(path.with_suffix(".pid").read_text())
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_refusals_still_arrive_as_parse_errors_with_progress_on(tmp_path: Path) -> None:
    from tests import hostile as h

    path = _write(tmp_path, "enc.pdf", h.encrypted_pdf())
    with pytest.raises(ParseError, match="encrypted"):
        parse_isolated(path, DocumentKind.PDF, LimitSettings(), on_progress=lambda d, t: None)


# ---------------------------------------------------------------- the event stream


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


def test_the_unit_follows_the_stage() -> None:
    units: dict[str, str] = {}
    for stage in ["queued", "parsing", "chunking", "embedding", "indexing", "ready", "failed"]:
        units[stage] = DocumentOut.from_domain(_doc(stage=stage)).progress.unit
    assert units == {"queued": "", "parsing": "pages", "chunking": "", "embedding": "chunks",
                     "indexing": "chunks", "ready": "", "failed": ""}


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
