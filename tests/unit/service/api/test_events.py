"""Live ingest progress as server-sent events (service/api/events.py): the event stream's
generator on a scripted registry and clock, and a real server whose client goes away."""

from __future__ import annotations

import json
import secrets
import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any

import anyio
import httpx
import uvicorn
from litestar import Litestar, get
from litestar.response import ServerSentEvent

from core.changes import ChangePublisher
from core.domain import Document, DocumentKind, DocumentStatus, Progress
from service.api.events import ChangeHub, Subscription, batch_events, document_events, throttled
from service.cli.processes import free_port
from tests.private_redis import session_redis_url


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


# ---------------------------------------------------------------- a batch of documents


def _bdoc(doc_id: str, status: str = "processing", stage: str = "embedding", done: int = 0,
          total: int = 4, deleting: bool = False) -> Document:
    doc = _doc(status, stage, done, total)
    doc.id = doc_id
    doc.deleting = deleting
    return doc


class _Registry:
    """Documents by id; records which ids each read asked for."""

    def __init__(self, *docs: Document) -> None:
        self.docs = {d.id: d for d in docs}
        self.reads: list[list[str]] = []

    def set(self, doc: Document) -> None:
        self.docs[doc.id] = doc

    def lookup(self, ids: Sequence[str]) -> list[Document]:
        self.reads.append(list(ids))
        return [self.docs[i] for i in ids if i in self.docs]


class _Notices:
    """A scripted subscription: each wait returns the next (ids, resync) and lets
    ``seconds`` pass on the clock, after running ``then`` (the registry changing)."""

    def __init__(self, steps: Sequence[tuple[set[str], bool, float, Any]]) -> None:
        self.steps = iter(steps)
        self.now = 0.0
        self.timeouts: list[float] = []

    async def wait(self, timeout: float) -> tuple[set[str], bool]:
        self.timeouts.append(timeout)
        ids, resync, seconds, then = next(self.steps)
        if then is not None:
            then()
        self.now += seconds
        return ids, resync

    def clock(self) -> float:
        return self.now


def _batch(ids: list[str], reg: _Registry, notices: _Notices, **kw: Any
           ) -> list[tuple[str | None, Any]]:
    async def collect() -> list[tuple[str | None, Any]]:
        out: list[tuple[str | None, Any]] = []
        async for msg in batch_events(ids, reg.lookup, notices.wait, clock=notices.clock, **kw):
            data = json.loads(str(msg.data)) if msg.data is not None else None
            out.append((msg.event, data) if msg.comment is None else (":" + msg.comment, None))
        return out

    return anyio.run(collect)


def test_a_batch_reads_only_what_notices_name_and_reports_each_document_once() -> None:
    reg = _Registry(_bdoc("a"), _bdoc("b"), _bdoc("c", "ready", "ready", 4, 4))
    notices = _Notices([
        ({"a"}, False, 1.0, lambda: reg.set(_bdoc("a", done=2))),
        ({"a", "zz"}, False, 1.0, lambda: reg.set(_bdoc("a", "ready", "ready", 4, 4))),
        ({"a", "b"}, False, 1.0, lambda: reg.set(_bdoc("b", "failed", "failed"))),
    ])
    events = _batch(["a", "b", "c", "gone"], reg, notices, safety_poll_s=3600.0)
    assert [(e, d.get("id") or d.get("ids")) for e, d in events[:-1]] == [
        ("missing", ["gone"]), ("progress", "a"), ("progress", "b"), ("done", "c"),
        ("progress", "a"), ("done", "a"), ("done", "b")]
    assert events[-1] == ("end", {"ready": 2, "failed": 1, "missing": 1})
    # the first read is the whole batch; then only the pending ids a notice named
    assert reg.reads == [["a", "b", "c", "gone"], ["a"], ["a"], ["b"]]


def test_without_notices_the_safety_poll_reads_every_pending_document() -> None:
    reg = _Registry(_bdoc("a"), _bdoc("b"))
    notices = _Notices([
        (set(), False, 2.0, None),  # nothing said, poll not due: no read
        (set(), False, 3.0, lambda: reg.set(_bdoc("b", "ready", "ready", 4, 4))),
        (set(), True, 0.0, lambda: reg.set(_bdoc("a", "ready", "ready", 4, 4))),  # resync
    ])
    events = _batch(["a", "b"], reg, notices, safety_poll_s=5.0, keepalive_s=1000.0)
    assert [(e, d["id"]) for e, d in events[:-1]] == [
        ("progress", "a"), ("progress", "b"), ("done", "b"), ("done", "a")]
    assert reg.reads == [["a", "b"], ["a", "b"], ["a"]]
    assert notices.timeouts[:2] == [5.0, 3.0]  # the wait ends when the poll is due


def test_a_document_deleted_while_watched_is_missing_and_counts_as_settled() -> None:
    reg = _Registry(_bdoc("a"), _bdoc("b"))
    notices = _Notices([
        ({"a"}, False, 1.0, lambda: reg.set(_bdoc("a", deleting=True))),
        ({"b"}, False, 1.0, lambda: reg.docs.pop("b")),
    ])
    events = _batch(["a", "b"], reg, notices, safety_poll_s=3600.0)
    assert events[2:] == [("missing", {"ids": ["a"]}), ("missing", {"ids": ["b"]}),
                          ("end", {"ready": 0, "failed": 0, "missing": 2})]


def test_a_quiet_batch_keeps_alive_and_ends_at_its_lifetime() -> None:
    reg = _Registry(_bdoc("a"))
    notices = _Notices([(set(), False, 10.0, None)] * 10)
    events = _batch(["a"], reg, notices, safety_poll_s=3600.0, keepalive_s=15.0, max_s=40.0)
    assert [e for e, _ in events] == ["progress", ":keep-alive", ":keep-alive"]
    assert notices.now == 40.0 and reg.reads == [["a"]]


def test_a_subscription_gathers_notices_and_a_burst_is_one_return() -> None:
    async def main() -> None:
        sub = Subscription()
        sub.notify("a")
        sub.notify("b")
        assert await sub.wait(10.0) == ({"a", "b"}, False)
        assert await sub.wait(0) == (set(), False)
        sub.resync()
        assert await sub.wait(0) == (set(), True)
        wait = throttled(sub, min_read_s=0.05)
        sub.notify("a")
        assert await wait(10.0) == ({"a"}, False)  # the first: at once

        async def notice_c() -> None:
            sub.notify("c")

        sub.notify("b")
        async with anyio.create_task_group() as tg:
            tg.start_soon(notice_c)  # runs while wait holds b back for min_read_s
            got = await wait(10.0)
        assert got == ({"b", "c"}, False)  # one return for the burst

    anyio.run(main)


def test_a_stream_wakes_on_a_notice_published_through_redis() -> None:
    """The real hub on the test session's Redis, the safety poll an hour away: a document
    turning ready is reported because its notice arrived, read by id alone; another
    tenant's notice for the same id wakes nothing."""
    url = session_redis_url(0)
    tenant, other = f"t-{secrets.token_hex(4)}", f"o-{secrets.token_hex(4)}"
    reg = _Registry(_bdoc("a"), _bdoc("b"))
    publish = ChangePublisher(url)

    async def main() -> list[tuple[str | None, Any]]:
        hub = ChangeHub(url)
        events: list[tuple[str | None, Any]] = []

        async def follow() -> None:
            async with hub.subscribe(tenant) as sub:
                async for msg in batch_events(["a", "b"], reg.lookup,
                                              throttled(sub, min_read_s=0.05),
                                              safety_poll_s=3600.0):
                    events.append((msg.event, json.loads(str(msg.data))))

        async def reads(n: int) -> None:
            while len(reg.reads) < n:
                await anyio.sleep(0.01)

        with anyio.fail_after(60):  # a guard against hanging, not a timing assertion
            async with anyio.create_task_group() as tg:
                tg.start_soon(follow)
                await reads(2)  # the first read, then the resync once subscribed
                reg.set(_bdoc("a", "ready", "ready", 4, 4))
                reg.set(_bdoc("b", "ready", "ready", 4, 4))
                await anyio.to_thread.run_sync(publish, other, "b")  # not this tenant's
                await anyio.to_thread.run_sync(publish, tenant, "a")
                await reads(3)
                assert reg.reads[2] == ["a"]
                await anyio.to_thread.run_sync(publish, tenant, "b")
        await hub.aclose()
        return events

    events = anyio.run(main)
    assert [(e, d.get("id")) for e, d in events] == [
        ("progress", "a"), ("progress", "b"), ("done", "a"), ("done", "b"), ("end", None)]
    assert reg.reads[2:] == [["a"], ["b"]]
