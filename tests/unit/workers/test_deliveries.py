"""Fault-tolerance pieces without processes: delivery settings, bounded redelivery
(workers/deliveries.py), the reconciler (workers/reconcile.py and the registry queries it
uses, on both backends) and ``docqa up``'s supervisor (service/cli/supervise.py). The same
behaviour on real processes: tests/integration/test_faults.py."""

from __future__ import annotations

import base64
import json
import time
from dataclasses import dataclass
from typing import Any

import pytest

from core.domain import DocumentKind, DocumentStatus, Progress
from core.ports import DocumentRepository
from core.settings import Settings
from core.tasks import INGEST_DOCUMENT, INGEST_QUEUE, celery_config, soft_time_limit
from service.cli.supervise import Supervisor
from tests.unit.conftest import FakeRedis, MakeRepo
from workers import deliveries, reconcile

# ---------------------------------------------------------------- delivery settings


def test_delivery_settings_reach_the_redis_transport(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCQA_WORKER__VISIBILITY_TIMEOUT_S", "20")
    monkeypatch.setenv("DOCQA_WORKER__TASK_TIME_LIMIT_S", "15")
    monkeypatch.setenv("DOCQA_WORKER__UNACKED_RESTORE_INTERVAL_S", "1")
    monkeypatch.setenv("DOCQA_WORKER__UNACKED_RESTORE_THROTTLE", "1")
    conf = celery_config(Settings())
    assert conf["broker_transport_options"] == {
        "visibility_timeout": 20, "unacked_restore_interval": 1, "unacked_restore_throttle": 1}
    assert conf["task_time_limit"] == 15 and conf["task_soft_time_limit"] == 12
    assert conf["worker_proc_alive_timeout"] >= 60  # a restarted child may load its model


def test_defaults_stay_safe() -> None:
    w = Settings().worker
    assert w.task_time_limit_s < w.visibility_timeout_s
    assert (w.unacked_restore_interval_s, w.unacked_restore_throttle) == (10, 10)  # kombu's
    assert w.reconcile_after_s >= 600
    hooks = Settings().test_hooks
    assert hooks.slow_embed_s == 0 and hooks.crash_worker_on == ""


@pytest.mark.parametrize(("hard", "soft"), [(900, 870), (60, 48), (30, 24), (20, 16), (2, 1)])
def test_soft_time_limit_comes_before_the_hard_one(hard: int, soft: int) -> None:
    assert soft_time_limit(hard) == soft


def test_retry_backoff_stays_below_the_visibility_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    from workers import app as worker_app

    monkeypatch.setattr(worker_app, "_settings", Settings.model_validate(
        {"worker": {"visibility_timeout_s": 50, "task_time_limit_s": 30}}))
    waits = [worker_app._backoff(r) for r in range(10) for _ in range(20)]
    assert max(waits) <= 10 and min(waits) > 0  # (50 - 30) / 2
    monkeypatch.setattr(worker_app, "_settings", Settings())
    assert max(worker_app._backoff(r) for r in range(10) for _ in range(20)) <= 60


# ---------------------------------------------------------------- bounded redelivery


@dataclass
class Deps:
    settings: Settings
    repo: DocumentRepository


def _doc(repo: DocumentRepository, name: str) -> str:
    doc, _ = repo.create(tenant="acme", filename=name, kind=DocumentKind.TEXT,
                         sha256=name.encode().hex().ljust(64, "0")[:64], size=1, metadata={})
    return doc.id


def test_a_document_whose_worker_dies_every_time_fails_after_max_retries_plus_one(
    make_repo: MakeRepo, monkeypatch: pytest.MonkeyPatch  # noqa: F811
) -> None:
    fake = FakeRedis()
    monkeypatch.setattr(deliveries, "_redis", lambda _url: fake)
    repo = make_repo()
    deps = Deps(Settings(), repo)
    doc_id = _doc(repo, "poison.txt")
    repo.set_status(doc_id, DocumentStatus.PROCESSING)
    # attempts 1..6 run (the worker dies in each: nothing clears the count)
    assert [deliveries.admit(deps, doc_id, 0, 6) for _ in range(6)] == [None] * 6
    assert deliveries.admit(deps, doc_id, 0, 6) == "failed"  # the 7th delivery gives up
    doc = repo.get(doc_id)
    assert doc is not None and doc.status is DocumentStatus.FAILED
    assert "died while ingesting this document on each of 6 attempts" in (doc.error or "")

    # a settled document is never failed by a late duplicate delivery
    other = _doc(repo, "fine.txt")
    repo.set_status(other, DocumentStatus.READY, chunks=3)
    for _ in range(10):
        assert deliveries.admit(deps, other, 0, 6) is None
    assert repo.get(other).status is DocumentStatus.READY  # type: ignore[union-attr]
    # a result resets the count
    deliveries.forget("redis://x", other)
    assert deliveries.KEY_PREFIX + other not in fake.values


def test_delivery_counting_fails_open(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(_url: str) -> Any:
        raise ConnectionError("redis is down")

    monkeypatch.setattr(deliveries, "_redis", broken)
    assert deliveries.count("redis://x", "d1") is None
    deliveries.forget("redis://x", "d1")  # no exception


# ---------------------------------------------------------------- reconciler


def _message(doc_id: str, task: str = INGEST_DOCUMENT) -> bytes:
    """A Celery protocol-2 message as kombu's Redis transport stores it."""
    body = base64.b64encode(json.dumps([[doc_id], {}, {"callbacks": None}]).encode()).decode()
    return json.dumps({
        "body": body, "content-encoding": "utf-8", "content-type": "application/json",
        "headers": {"task": task, "id": "t-" + doc_id, "argsrepr": repr([doc_id])},
        "properties": {"body_encoding": "base64",
                       "delivery_info": {"exchange": "", "routing_key": INGEST_QUEUE}},
    }).encode()


def test_enqueued_ids_are_read_from_the_queue_and_the_unacked_set() -> None:
    fake = FakeRedis()
    fake.lists[INGEST_QUEUE] = [_message("a"), _message("x", task="docqa.erase_document")]
    fake.lists[INGEST_QUEUE + reconcile.PRIORITY_SEP + "3"] = [_message("b")]
    fake.hashes[reconcile.UNACKED_KEY] = {
        "tag1": json.dumps([json.loads(_message("c")), "", INGEST_QUEUE]).encode(),
        "tag2": b"not json"}
    assert reconcile.enqueued_document_ids(fake) == {"a", "b", "c"}


def test_reconcile_requeues_only_stale_documents_without_a_message(
    make_repo: MakeRepo  # noqa: F811
) -> None:
    repo = make_repo()
    stuck_q, stuck_p, in_queue, in_unacked, done = (
        _doc(repo, n) for n in ("q", "p", "iq", "iu", "done"))
    repo.set_status(stuck_p, DocumentStatus.PROCESSING)
    repo.set_progress(stuck_p, Progress("embedding", 4, 8))
    repo.set_status(done, DocumentStatus.READY, chunks=2)
    fake = FakeRedis()
    fake.lists[INGEST_QUEUE] = [_message(in_queue)]
    fake.hashes[reconcile.UNACKED_KEY] = {
        "t": json.dumps([json.loads(_message(in_unacked)), "", INGEST_QUEUE]).encode()}
    later = time.time() + 100  # every document above is 100 s old by then ...
    sent: list[str] = []
    requeued = reconcile.reconcile(repo, fake, sent.append, after_s=50, now=later)
    assert sorted(requeued) == sorted(sent) == sorted([stuck_q, stuck_p])
    doc = repo.get(stuck_p)
    assert doc is not None and doc.status is DocumentStatus.QUEUED
    assert doc.progress == Progress("queued", 0, 0)
    # ... and the next round (40 s on) does not queue them again: they were just updated
    assert reconcile.reconcile(repo, fake, sent.append, after_s=50, now=time.time() + 40) == []
    assert len(sent) == 2
    # nothing is stale before the deadline
    assert reconcile.reconcile(repo, fake, sent.append, after_s=500, now=later) == []
    assert done not in sent


def test_registry_stale_queries_and_compare_and_set(make_repo: MakeRepo) -> None:  # noqa: F811
    repo, other = make_repo(), make_repo()
    a, b = _doc(repo, "a"), _doc(repo, "b")
    repo.set_status(b, DocumentStatus.FAILED, error="x")
    cutoff = time.time() + 10
    assert other.stale_document_ids(cutoff) == [a]
    assert other.stale_document_ids(time.time() - 3600) == []
    assert other.requeue_stale(a, cutoff)
    assert not repo.requeue_stale(a, cutoff - 20)  # updated since: left alone
    assert not repo.requeue_stale(b, cutoff)  # failed is not stale


# ---------------------------------------------------------------- docqa up supervision


class FakeProc:
    _next = 100

    def __init__(self) -> None:
        FakeProc._next += 1
        self.pid = FakeProc._next
        self.code: int | None = None

    def poll(self) -> int | None:
        return self.code


def test_supervisor_restarts_dead_children_with_a_growing_backoff() -> None:
    now = [0.0]
    lines: list[str] = []
    procs: dict[str, Any] = {"worker": FakeProc(), "chroma": FakeProc()}
    started: list[str] = []

    def start(name: str) -> Any:
        started.append(name)
        return FakeProc()

    sup = Supervisor(procs, start, lines.append, backoff_min_s=1, backoff_max_s=8,
                     stable_s=60, clock=lambda: now[0])
    first = procs["worker"]
    first.code = -9
    sup.tick()
    assert started == []
    assert any(f"worker (pid {first.pid}) exited with signal SIGKILL; restarting in 1 s" in ln
               for ln in lines)
    now[0] = 1.0
    sup.tick()
    assert started == ["worker"] and procs["worker"] is not first
    assert any("worker restarted (pid" in ln for ln in lines)
    # it crashes again at once: 2 s, then 4 s, then at most 8 s
    delays = []
    for _ in range(4):
        procs["worker"].code = 1
        sup.tick()
        delays.append(float(lines[-1].rsplit("restarting in ", 1)[1].split(" s")[0]))
        now[0] += delays[-1]
        sup.tick()
    assert delays == [2, 4, 8, 8]
    # after a minute up, the next crash waits the minimum again
    now[0] += 61
    sup.tick()
    procs["worker"].code = 1
    sup.tick()
    assert lines[-1].endswith("restarting in 1 s")
    assert procs["chroma"].poll() is None and "chroma" not in started


def test_supervisor_keeps_trying_when_a_start_fails() -> None:
    now = [0.0]
    lines: list[str] = []
    procs: dict[str, Any] = {"chroma": FakeProc()}
    attempts = {"n": 0}

    def start(_name: str) -> Any:
        attempts["n"] += 1
        if attempts["n"] == 1:
            raise OSError("no such file")
        return FakeProc()

    sup = Supervisor(procs, start, lines.append, clock=lambda: now[0])
    procs["chroma"].code = 2
    for t in (0, 1, 2, 3, 4, 5):
        now[0] = t
        sup.tick()
    assert attempts["n"] == 2 and procs["chroma"].poll() is None
    assert any("could not be started (no such file)" in ln for ln in lines)
