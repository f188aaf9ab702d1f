"""Batches that span documents (workers/batching.py): how the worker's main process gathers
ingest messages and settles each after its job, and what a job does with several documents.

The job runs on the unit environment (real sandboxed parsing, chunking and SQLite registry, the
hashing embedder, an in-memory store); the real stack is tests/integration/test_batches.py.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest
from billiard.einfo import ExceptionInfo, ExceptionWithTraceback
from billiard.exceptions import WorkerLostError
from celery.exceptions import SoftTimeLimitExceeded, TimeLimitExceeded

from core.domain import DocumentStatus
from core.errors import StoreUnavailableError
from ingest.embedding import HashEmbedder
from tests.unit.conftest import Env, FakeRedis
from workers import batching, deliveries
from workers.batching import ACK, DEFER, REQUEUE, Dispatcher, Gather, Item, run_batch

# ---------------------------------------------------------------- the main process


class Req:
    """A held Celery request: what the dispatcher reads of it and does to it."""

    def __init__(self, doc_id: str, priority: int | None = None) -> None:
        self.id = f"task-{doc_id}"
        self.args = [doc_id]
        self.request_dict: dict[str, Any] = {"retries": 0}
        self.delivery_info = {"priority": priority}
        self.settled: list[str] = []

    def acknowledge(self) -> None:
        self.settled.append("ack")

    def reject(self, requeue: bool = False) -> None:
        self.settled.append("requeue" if requeue else "reject")


class Pool:
    """Records the jobs submitted; the test returns or fails them."""

    def __init__(self) -> None:
        self.jobs: list[tuple[list[Item], Any, Any]] = []

    def submit(self, items: list[Item], on_return: Any, on_error: Any) -> None:
        self.jobs.append((items, on_return, on_error))

    def docs(self, job: int) -> list[str]:
        return [it.doc_id for it in self.jobs[job][0]]


def test_gather_takes_the_lowest_priority_level_first_in_arrival_order_up_to_the_size() -> None:
    g = Gather(3)
    for name, prio in [("a1", 0), ("a2", 1), ("b1", 0), ("a3", 2), ("c1", None), ("a4", 1)]:
        g.add(name, prio)
    assert [r for r, _ in g.take()] == ["a1", "b1", "c1"]
    assert [r for r, _ in g.take()] == ["a2", "a4", "a3"]
    assert g.take() == [] and len(g) == 0


def test_a_deferred_request_keeps_its_place() -> None:
    g = Gather(2)
    first = g.add("old", 1)
    g.add("new", 1)
    assert [r for r, _ in g.take()] == ["old", "new"]
    g.add("newer", 1)
    g.add("old", 1, first)  # given back by a job that did not start it
    assert [r for r, _ in g.take()] == ["old", "newer"]


def test_a_lone_document_goes_at_once_and_those_arriving_meanwhile_go_together() -> None:
    pool = Pool()
    d = Dispatcher(size=3, slots=1, submit=pool.submit)
    lone = Req("lone")
    d.add(lone, 0)
    assert pool.docs(0) == ["lone"]  # a free child: no waiting for companions
    waiting = [Req(f"w{i}", 0) for i in range(4)]
    for r in waiting:
        d.add(r, 0)
    assert len(pool.jobs) == 1 and len(d.gather) == 4  # the child is busy: they gather
    pool.jobs[0][1]([ACK])
    assert lone.settled == ["ack"]
    assert pool.docs(1) == ["w0", "w1", "w2"]  # the next job takes up to the batch size
    assert len(d.gather) == 1


def test_each_message_is_settled_by_its_own_action() -> None:
    pool = Pool()
    d = Dispatcher(size=4, slots=1, submit=pool.submit)
    busy = Req("busy")
    d.add(busy, 0)
    reqs = [Req(name, 0) for name in ("done", "again", "later")]
    for r in reqs:
        d.add(r, 0)
    pool.jobs[0][1]([ACK])
    assert pool.docs(1) == ["done", "again", "later"]
    pool.jobs[1][1]([ACK, REQUEUE, DEFER])
    assert reqs[0].settled == ["ack"] and reqs[1].settled == ["requeue"]
    assert reqs[2].settled == [] and pool.docs(2) == ["later"]  # held for the next job
    pool.jobs[2][1](None)  # a job that returned nothing usable: nothing is lost
    assert reqs[2].settled == ["requeue"]


def test_a_child_lost_mid_job_sends_every_message_of_the_job_back_to_the_queue() -> None:
    pool = Pool()
    d = Dispatcher(size=4, slots=1, submit=pool.submit)
    reqs = [Req(f"d{i}", 0) for i in range(3)]
    d.add(reqs[0], 0)
    d.add(reqs[1], 0)
    d.add(reqs[2], 0)
    pool.jobs[0][2](ExceptionInfo_of(WorkerLostError("child killed")))
    assert reqs[0].settled == ["requeue"]
    # the hard limit: acknowledged, as Celery does
    pool.jobs[1][2](ExceptionInfo_of(TimeLimitExceeded(900)))
    assert reqs[1].settled == ["ack"] and reqs[2].settled == ["ack"]
    assert d.running == 0


class Chan:
    def __init__(self, closed: bool = False) -> None:
        self.closed = closed


class Msg:
    def __init__(self, channel: Chan) -> None:
        self.channel = channel


def test_messages_of_a_lost_connection_are_settled_through_the_new_one() -> None:
    pool = Pool()
    live: list[Chan | None] = [None]
    d = Dispatcher(size=4, slots=1, submit=pool.submit, live_channel=lambda: live[0])
    old = Chan()
    reqs = [Req(name, 0) for name in ("running", "held", "deferred", "again")]
    for r in reqs:
        r.message = Msg(old)  # type: ignore[attr-defined]
        d.add(r, 0)
    assert pool.docs(0) == ["running"]
    old.closed = True  # the broker connection was lost with all four unacknowledged
    pool.jobs[0][1]([ACK])  # no new connection yet: left for Redis to hand out again
    assert reqs[0].settled == [] and reqs[0].message.channel is old  # type: ignore[attr-defined]
    live[0] = new = Chan()  # reconnected
    assert pool.docs(1) == ["held", "deferred", "again"]  # held documents still go
    pool.jobs[1][1]([ACK, DEFER, REQUEUE])
    assert reqs[1].settled == ["ack"] and reqs[3].settled == ["requeue"]
    assert all(r.message.channel is new for r in (reqs[1], reqs[3]))  # type: ignore[attr-defined]
    pool.jobs[2][2](ExceptionInfo_of(WorkerLostError("child killed")))
    assert reqs[2].settled == ["requeue"] and reqs[2].message.channel is new  # type: ignore[attr-defined]


def ExceptionInfo_of(exc: BaseException) -> Any:  # noqa: N802
    """What the pool hands the error callback: the exception in an ``ExceptionInfo``, wrapped
    in an ``ExceptionWithTraceback``."""
    try:
        raise exc
    except BaseException:
        info = ExceptionInfo()
    assert isinstance(info.exception, ExceptionWithTraceback)
    return info


def test_two_children_run_two_jobs() -> None:
    pool = Pool()
    d = Dispatcher(size=2, slots=2, submit=pool.submit)
    for i in range(5):
        d.add(Req(f"d{i}", 0), 0)
    assert [pool.docs(j) for j in range(len(pool.jobs))] == [["d0"], ["d1"]]
    pool.jobs[1][1]([ACK])
    assert pool.docs(2) == ["d2", "d3"]


def test_free_children_share_what_is_held() -> None:
    g = Gather(8)
    for i in range(6):
        g.add(f"d{i}", 0)
    assert [r for r, _ in g.take(share=2)] == ["d0", "d1", "d2"]  # half for each free child
    assert [r for r, _ in g.take(share=1)] == ["d3", "d4", "d5"]


# ---------------------------------------------------------------- the job


class CountingEmbedder(HashEmbedder):
    """The hashing embedder, counting calls; raises on a text holding ``poison``."""

    def __init__(self, poison: str = "") -> None:
        super().__init__()
        self.calls: list[int] = []
        self.poison = poison

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        self.calls.append(len(texts))
        if self.poison and any(self.poison in t for t in texts):
            raise ValueError("this text breaks the embedder")
        return super().embed(texts)


@pytest.fixture
def redis(monkeypatch: pytest.MonkeyPatch) -> FakeRedis:
    fake = FakeRedis()
    monkeypatch.setattr(deliveries, "_redis", lambda _url: fake)
    return fake


class Retries:
    def __init__(self) -> None:
        self.sent: list[tuple[str, int, int | None]] = []

    def __call__(self, item: Item, countdown: float) -> None:
        self.sent.append((item.doc_id, item.retries + 1, item.priority))


def _job(env: Env, items: list[Item], retry: Retries | None = None, **kw: Any) -> list[str]:
    return run_batch(env.deps, items, max_retries=2, retry=retry or Retries(),
                     backoff=lambda _r: 0.0, time_limited=SoftTimeLimitExceeded, **kw)


def _upload(env: Env, text: str, tenant: str = "acme", name: str = "a.txt") -> str:
    return env.upload(text.encode(), tenant=tenant, name=name)[0].id


def _items(ids: list[str]) -> list[Item]:
    return [Item(task_id=f"t-{d}", doc_id=d, priority=0) for d in ids]


def test_documents_of_a_job_share_one_embedding_call_and_each_ends_ready_with_its_own_chunks(
        env: Env, redis: FakeRedis) -> None:
    emb = CountingEmbedder()
    env.deps.embedder = emb
    ids = [_upload(env, f"Document {i} says the river number {i} is long.", tenant=t,
                   name=f"d{i}.txt") for i, t in enumerate(["acme", "globex", "acme", "acme"])]
    assert _job(env, _items(ids)) == [ACK] * 4
    assert emb.calls == [4, sum(emb.calls[1:])] and len(emb.calls) == 2  # chunks, then units
    for i, doc_id in enumerate(ids):
        doc = env.repo.get(doc_id)
        assert doc is not None and doc.status is DocumentStatus.READY and doc.chunks == 1
        assert env.store.texts(doc_id) == [f"Document {i} says the river number {i} is long."]
        meta = [m for cid, m in env.store.metadata.items() if m["document_id"] == doc_id]
        assert [m["filename"] for m in meta] == [f"d{i}.txt"]  # its own metadata
    assert env.store.chunks[env.store.chunk_ids("globex", ids[1])[0]][0] == "globex"
    assert redis.values == {}  # every count cleared: each ended


def test_a_document_that_breaks_the_shared_embedding_fails_alone(
        env: Env, redis: FakeRedis) -> None:
    env.deps.embedder = CountingEmbedder(poison="POISON")
    ids = [_upload(env, "A fine document about rivers."),
           _upload(env, "A POISON document about lakes."),
           _upload(env, "An empty-ish document about seas.", name="c.txt")]
    empty = _upload(env, " \n ", name="empty.txt")
    assert _job(env, _items([*ids, empty])) == [ACK] * 4
    statuses = [env.repo.get(d).status for d in [*ids, empty]]  # type: ignore[union-attr]
    assert statuses == [DocumentStatus.READY, DocumentStatus.FAILED, DocumentStatus.READY,
                        DocumentStatus.FAILED]
    assert "ValueError" in (env.repo.get(ids[1]).error or "")  # type: ignore[union-attr]
    assert env.store.count_document("acme", ids[1]) == 0


def test_a_transient_error_retries_only_the_document_that_met_it(
        env: Env, redis: FakeRedis, monkeypatch: pytest.MonkeyPatch) -> None:
    ids = [_upload(env, f"Document number {i} about mountains.") for i in range(3)]
    real = env.store.delete_document
    calls = {"n": 0}

    def flaky(tenant: str, document_id: str, keep: Sequence[str] = ()) -> int:
        if document_id == ids[1] and calls["n"] == 0:  # the verify of one document fails
            calls["n"] += 1
            raise StoreUnavailableError("chroma restarting")
        return real(tenant, document_id, keep)

    monkeypatch.setattr(env.store, "delete_document", flaky)
    retry = Retries()
    assert _job(env, _items(ids), retry) == [ACK] * 3  # the retry message is sent: acked
    assert retry.sent == [(ids[1], 1, 0)]  # retries + 1, the same priority level
    assert [env.repo.get(d).status for d in ids] == [  # type: ignore[union-attr]
        DocumentStatus.READY, DocumentStatus.PROCESSING, DocumentStatus.READY]
    assert redis.values == {deliveries.KEY_PREFIX + ids[1]: 1}  # a retry keeps its count
    # its retry runs: ready
    assert _job(env, [Item(f"t2-{ids[1]}", ids[1], retries=1, priority=0)]) == [ACK]
    assert env.repo.get(ids[1]).status is DocumentStatus.READY  # type: ignore[union-attr]


def test_a_document_whose_earlier_delivery_never_finished_runs_alone(
        env: Env, redis: FakeRedis) -> None:
    ids = [_upload(env, f"Document number {i} about valleys.") for i in range(3)]
    redis.values[deliveries.KEY_PREFIX + ids[1]] = 1  # its worker died on it once
    assert _job(env, _items(ids)) == [DEFER, ACK, DEFER]
    assert [env.repo.get(d).status for d in ids] == [  # type: ignore[union-attr]
        DocumentStatus.QUEUED, DocumentStatus.READY, DocumentStatus.QUEUED]
    assert _job(env, _items([ids[0], ids[2]])) == [ACK, ACK]


def test_a_job_takes_no_more_documents_past_its_text_budget(
        env: Env, redis: FakeRedis) -> None:
    env.settings.limits.max_text_chars = 20 * 100  # a budget of 100 characters per job
    ids = [_upload(env, ("Words about forests. " * 6) + str(i)) for i in range(3)]
    assert _job(env, _items(ids)) == [ACK, DEFER, DEFER]  # the first alone holds 127
    assert _job(env, _items(ids[1:])) == [ACK, DEFER]
    assert env.repo.get(ids[2]).status is DocumentStatus.QUEUED  # type: ignore[union-attr]


def test_a_job_takes_no_more_documents_after_one_of_several_embedding_batches(
        env: Env, redis: FakeRedis) -> None:
    env.settings.models.embedding_batch_size = 2
    env.settings.chunking.size, env.settings.chunking.overlap = 20, 5
    small = _upload(env, "A short note about hills.")
    large = _upload(env, " ".join(f"Sentence {i} about the long road north." for i in range(40)))
    after = _upload(env, "Another short note about plains.")
    assert _job(env, _items([small, large, after])) == [ACK, ACK, DEFER]
    assert env.repo.get(large).chunks > 2  # type: ignore[union-attr]
    assert env.repo.get(after).status is DocumentStatus.QUEUED  # type: ignore[union-attr]


def test_the_soft_time_limit_fails_a_lone_document_and_sends_back_several(
        env: Env, redis: FakeRedis, monkeypatch: pytest.MonkeyPatch) -> None:
    def too_long(*_: Any, **__: Any) -> Any:
        raise SoftTimeLimitExceeded

    monkeypatch.setattr(batching, "ingest_prepared", too_long)
    ids = [_upload(env, f"Document number {i} about deserts.") for i in range(3)]
    failed: list[str] = []
    assert _job(env, _items(ids), on_failed=failed.append) == [REQUEUE] * 3
    assert all(redis.values[deliveries.KEY_PREFIX + d] == 1 for d in ids)  # each runs alone next
    assert _job(env, _items(ids[:1]), on_failed=failed.append) == [ACK]
    doc = env.repo.get(ids[0])
    assert doc is not None and doc.status is DocumentStatus.FAILED and failed == [ids[0]]
    assert "longer than the worker's time limit" in (doc.error or "")


def test_the_same_document_twice_in_a_job_is_ingested_once(env: Env, redis: FakeRedis) -> None:
    doc_id = _upload(env, "Document about oceans.")
    emb = CountingEmbedder()
    env.deps.embedder = emb
    items = [Item("t1", doc_id), Item("t2", doc_id)]
    assert _job(env, items) == [ACK, ACK]
    assert emb.calls == [1, emb.calls[1]] and env.store.count_document("acme", doc_id) == 1
