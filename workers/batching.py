"""Ingest batches that span documents (docs/architecture.md, "Batches that span documents").

Every document is still one Celery message (``docqa.ingest_document(id)``), queued at its
tenant's priority level and acknowledged late, on its own. What changes is how a worker runs
them: instead of handing each message to a pool child as one job, the worker's main process
keeps the ingest messages it has received in a :class:`Gather`, and hands a child up to
``worker.batch_size`` of them as one job as soon as a child is free. A lone upload therefore
starts at once (a child was free); documents that arrive while the children are busy wait
together and go as one job. The child prepares each document in turn (parse, redaction,
chunks, units), embeds all their chunks in one call and all their units in one, upserts each
tenant's in one store call, then verifies and finishes each document on its own
(``ingest.pipeline.ingest_prepared``).

The job returns one action per message, which the main process carries out:

- ``ack``: the document ended (ready, failed, deleted), or a retry message was sent for it
  (a transient error: a new message with ``retries + 1``, its priority and a countdown, as
  ``Task.retry`` sends);
- ``requeue``: reject it back to the queue (a soft time limit caught several documents
  unfinished: each comes back, and runs alone, below);
- ``defer``: not started in this job; it stays with the main process for the next one.

Delivery stays at least once: a child killed mid-job has every message of the job rejected
back to the queue (``task_reject_on_worker_lost``); a worker killed whole leaves them in
Redis's ``unacked`` set, handed out again after the visibility timeout; a worker stopped
cleanly gives back the messages it held. A worker whose broker connection is lost keeps the
messages it holds and the jobs it runs, and settles them through the new connection (a Redis
delivery tag is valid on any channel of that Redis); workers/broker.py keeps the lost
connection's close from killing the worker. A message is acknowledged only after its document
ended or its retry was sent.

Isolation: a document whose earlier delivery did not finish (its count in
``workers/deliveries.py`` shows an attempt that never ended) runs in a job of its own, the
other documents of that job deferred: a document that kills its worker takes its batch
companions down once, then dies alone until it ends ``failed``. A shared step that fails is
done again document by document (ingest/pipeline.py). A job stops taking documents after one
of more than one embedding batch of chunks (it shares nothing: it is embedded in its own
batches, with its progress, and the documents after it stay ``queued`` for the next job), or
once those it took hold a twentieth of ``limits.max_text_chars``, so the soft time limit
that is sized for one document of that size still holds for a job.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from core.domain import DocumentStatus
from core.errors import TransientError
from core.logging import CELERY_HEADER, log_context
from ingest.pipeline import IngestDeps, Outcome, Prepared, ingest_prepared, prepare_document
from workers import deliveries, testhooks

log = logging.getLogger("docqa.worker")

ACK, REQUEUE, DEFER = "ack", "requeue", "defer"
# a job takes no further document once those it took hold this fraction of the text one
# document may have (limits.max_text_chars): the soft time limit, sized for one such
# document, then covers the job's last document however large it is
TEXT_BUDGET_FRACTION = 20


def over_time_limit(limit: int) -> str:
    """The error of a document that alone took longer than a task may: retrying cannot help."""
    return (f"the ingest took longer than the worker's time limit ({limit} s): the document "
            "is too large for this worker; split it into smaller documents, or raise "
            "DOCQA_WORKER__TASK_TIME_LIMIT_S (with the visibility timeout)")


@dataclass(frozen=True)
class Item:
    """One ingest message as a job sees it: ids and counts only, picklable."""

    task_id: str
    doc_id: str
    retries: int = 0
    priority: int | None = None
    request_id: str | None = None


# ---------------------------------------------------------------- the main process


@dataclass(order=True)
class _Entry:
    priority: int
    seq: int
    request: Any = field(compare=False)


class Gather:
    """The ingest messages a worker holds, waiting for a free child: taken lowest priority
    level first (the fair share of core/tasks.py holds among held messages too), in arrival
    order within a level; at most ``size`` per job."""

    def __init__(self, size: int) -> None:
        self.size = max(1, size)
        self._heap: list[_Entry] = []
        self._seq = itertools.count()

    def __len__(self) -> int:
        return len(self._heap)

    def add(self, request: Any, priority: int | None, seq: int | None = None) -> int:
        """Hold ``request``; returns its place in arrival order (give it back to
        :meth:`add` for a deferred request, so it keeps its place)."""
        order = next(self._seq) if seq is None else seq
        heapq.heappush(self._heap, _Entry(priority or 0, order, request))
        return order

    def take(self, share: int = 1) -> list[tuple[Any, int]]:
        """Requests for one job, with their arrival order: up to ``size``, and no more than
        a ``share``-th of those held (several children free: each gets its part)."""
        out: list[tuple[Any, int]] = []
        n = min(self.size, -(-len(self._heap) // max(1, share)))
        while self._heap and len(out) < n:
            entry = heapq.heappop(self._heap)
            out.append((entry.request, entry.seq))
        return out


class Dispatcher:
    """Hands held requests to the pool, one job per free child (``slots`` jobs at once), and
    carries out the actions a job returns. Runs in the worker's main process, on its event
    loop (message handler, pool callbacks)."""

    def __init__(self, size: int, slots: int, submit: Callable[..., Any],
                 live_channel: Callable[[], Any] | None = None) -> None:
        self.gather = Gather(size)
        self.slots = max(1, slots)
        self.running = 0
        # submit(items, on_return, on_error): one pool job
        self._submit = submit
        # the channel the consumer takes messages on now (None while it has none)
        self.live_channel = live_channel
        self._seqs: dict[int, int] = {}

    def add(self, request: Any, priority: int | None) -> None:
        self._seqs[id(request)] = self.gather.add(request, priority)
        self.flush()

    def flush(self) -> None:
        while self.running < self.slots and len(self.gather):
            taken = self.gather.take(self.slots - self.running)
            requests = [r for r, _ in taken]
            seqs = dict(zip((id(r) for r in requests), (s for _, s in taken), strict=True))
            self.running += 1
            try:
                self._submit([item_of(r) for r in requests],
                             lambda result, rs=requests, ss=seqs: self._returned(rs, ss, result),
                             lambda exc, rs=requests: self._failed(rs, exc))
            except Exception:
                self.running -= 1
                for r in requests:  # give them back to the broker rather than hold them
                    self._settle(r, REQUEUE)
                raise

    def _returned(self, requests: Sequence[Any], seqs: dict[int, int], result: Any) -> None:
        self.running -= 1
        actions = list(result) if isinstance(result, list | tuple) else []
        for i, request in enumerate(requests):
            action = actions[i] if i < len(actions) else REQUEUE
            if action == DEFER:
                self.gather.add(request, _priority(request), seqs.get(id(request)))
            else:
                self._settle(request, ACK if action == ACK else REQUEUE)
                self._seqs.pop(id(request), None)
        self.flush()

    def _settle(self, request: Any, action: str) -> None:
        """Acknowledge ``request`` or send it back to the queue, on the channel it came on or,
        when the broker connection was lost since, on the consumer's current one: a Redis
        delivery tag names the message in Redis's ``unacked`` set, whichever channel of that
        Redis settles it. With no channel open (Redis still down) it stays unacknowledged
        and Redis hands it out again after the visibility timeout."""
        message: Any = getattr(request, "message", None)
        channel = getattr(message, "channel", None)
        if channel is not None and getattr(channel, "closed", False):
            live = self.live_channel() if self.live_channel is not None else None
            if live is None or getattr(live, "closed", False):
                log.warning("ingest message %s: its broker connection was lost and no new one "
                            "is open; Redis hands it out again after the visibility timeout",
                            getattr(request, "id", "?"))
                return
            message.channel = live
        if action == ACK:
            _safely(request.acknowledge)
        else:
            _safely(request.reject, requeue=True)

    def _failed(self, requests: Sequence[Any], exc_info: Any) -> None:
        """The job itself failed: its child died (every message back to the queue, as
        ``task_reject_on_worker_lost`` does for one task) or it ran past the hard time limit
        (acknowledged, as Celery does for one task: its documents stay ``processing`` and
        the reconciler queues them again)."""
        from billiard.einfo import ExceptionWithTraceback
        from billiard.exceptions import WorkerLostError

        self.running -= 1
        exc = getattr(exc_info, "exception", exc_info)
        if isinstance(exc, ExceptionWithTraceback):  # how the pool hands it over
            exc = exc.exc
        lost = isinstance(exc, WorkerLostError)
        log.warning("ingest job of %d document(s) failed: %r; %s", len(requests), exc,
                    "each goes back to the queue" if lost else "acknowledged")
        for request in requests:
            self._seqs.pop(id(request), None)
            self._settle(request, REQUEUE if lost else ACK)
        self.flush()


def _safely(fn: Callable[..., Any], **kwargs: Any) -> None:
    try:
        fn(**kwargs)
    except Exception:  # noqa: BLE001 - a lost ack is a redelivery, handled as one
        log.exception("could not settle an ingest message")


def _priority(request: Any) -> int | None:
    info = getattr(request, "delivery_info", None) or {}
    value = info.get("priority")
    return value if isinstance(value, int) else None


def item_of(request: Any) -> Item:
    """The picklable part of a Celery request that a job needs."""
    args = list(request.args or ())
    rid = request.request_dict.get(CELERY_HEADER) if hasattr(request, "request_dict") else None
    return Item(task_id=request.id, doc_id=str(args[0]) if args else "",
                retries=int(request.request_dict.get("retries") or 0),
                priority=_priority(request), request_id=rid if isinstance(rid, str) else None)


def batching_strategy(task: Any, app: Any, consumer: Any, size: int, slots: int,
                      soft_limit: float | None, hard_limit: float | None,
                      job: Callable[[list[Item]], list[str]]) -> Callable[..., None]:
    """A Celery task strategy (what the worker's main process does with each message of the
    task): hold it in a :class:`Dispatcher` instead of giving it to the pool alone."""
    from celery.app import trace as app_trace
    from celery.utils.imports import symbol_by_name
    from celery.worker.request import create_request_cls
    from celery.worker.strategy import hybrid_to_proto2, proto1_to_proto2

    hostname = consumer.hostname
    eventer = consumer.event_dispatcher
    Req = create_request_cls(symbol_by_name(task.Request), task, consumer.pool, hostname,
                             eventer, app=app)
    pool = consumer.pool

    def submit(items: list[Item], on_return: Callable[[Any], None],
               on_error: Callable[[Any], None]) -> None:
        pool.apply_async(job, args=(items,), callback=on_return, error_callback=on_error,
                         soft_timeout=soft_limit, timeout=hard_limit)

    def live_channel() -> Any:
        task_consumer = getattr(consumer, "task_consumer", None)
        return getattr(task_consumer, "channel", None)

    # a consumer restarted after a lost broker connection asks for the strategy again: the
    # requests held and the jobs running stay with the one dispatcher, their documents are
    # ingested, and their messages are settled through the new connection (Dispatcher._settle)
    dispatcher: Dispatcher | None = getattr(task, "_docqa_dispatcher", None)
    if dispatcher is None:
        dispatcher = Dispatcher(size, slots, submit, live_channel)
        task._docqa_dispatcher = dispatcher
    dispatcher._submit = submit
    dispatcher.live_channel = live_channel

    def release(request: Any, qos: Any) -> None:  # an ETA (a retry's countdown) has come
        if consumer.qos is qos:  # a new connection's count never counted it
            qos.decrement_eventually()
        dispatcher.add(request, _priority(request))

    def handler(message: Any, body: Any, ack: Any, reject: Any, callbacks: Any,
                **_: Any) -> None:
        if body is None and "args" not in message.payload:
            body, headers, decoded, utc = (message.body, message.headers, False,
                                           app.uses_utc_timezone())
        elif "args" in message.payload:
            body, headers, decoded, utc = hybrid_to_proto2(message, message.payload)
        else:
            body, headers, decoded, utc = proto1_to_proto2(message, body)
        request = Req(message, on_ack=ack, on_reject=reject, app=app, hostname=hostname,
                      eventer=eventer, task=task, connection_errors=consumer.connection_errors,
                      body=body, headers=headers, decoded=decoded, utc=utc)
        context = {"id": request.id, "name": request.name, "args": request.argsrepr,
                   "kwargs": request.kwargsrepr, "eta": request.eta}
        log.info(app_trace.LOG_RECEIVED, context, extra={"data": context})
        eta = request.eta
        if eta is not None and eta > datetime.now(UTC):
            # held out of the prefetch count until due, as Celery holds an ETA task
            consumer.qos.increment_eventually()
            consumer.timer.call_at(eta.timestamp(), release, (request, consumer.qos), priority=6)
            return
        dispatcher.add(request, _priority(request))

    return handler


# ---------------------------------------------------------------- the pool child


def run_batch(deps: IngestDeps, items: Sequence[Item], *, max_retries: int,
              retry: Callable[[Item, float], None], backoff: Callable[[int], float],
              time_limited: type[Exception] | None = None,
              on_failed: Callable[[str], None] | None = None) -> list[str]:
    """Ingest ``items`` together; one action per item (``ack``/``requeue``/``defer``).

    ``retry(item, countdown)`` sends the item's retry message; ``time_limited`` is the soft
    time limit's exception; ``on_failed(doc_id)`` runs after a document was marked failed
    (a redacted document's original goes)."""
    started = time.perf_counter()
    actions = {it.task_id: DEFER for it in items}
    chosen = _chosen(deps, items)
    log.info("ingest job: %d document(s) given, %d taken in turn", len(items), len(chosen))
    seen: dict[str, Item] = {}
    taken: list[Item] = []
    outcomes: dict[str, Outcome] = {}
    budget = max(1, deps.settings.limits.max_text_chars // TEXT_BUDGET_FRACTION)
    batch = max(1, deps.settings.models.embedding_batch_size)
    chars = 0
    prepared: list[Prepared] = []
    try:
        for it in chosen:
            if it.doc_id in seen:  # the same document twice (a reconciler's message too)
                actions[it.task_id] = ACK
                continue
            if taken and chars >= budget:
                break
            seen[it.doc_id] = it
            taken.append(it)
            with log_context(job_id=it.task_id, document_id=it.doc_id,
                             request_id=it.request_id):
                gave_up = deliveries.admit(deps, it.doc_id, it.retries, max_retries + 1)
                if gave_up is not None:
                    outcomes[it.doc_id] = gave_up
                    if on_failed is not None:
                        on_failed(it.doc_id)
                    continue
                try:
                    p = prepare_document(deps, it.doc_id)
                except deps.abort_on:
                    raise
                except Exception as exc:  # noqa: BLE001 - settled below, per document
                    outcomes[it.doc_id] = exc
                    continue
            if isinstance(p, str):
                outcomes[it.doc_id] = p
            else:
                prepared.append(p)
                chars += p.text_chars
                if len(p.chunks) > batch:  # shares nothing: the job takes no more after it
                    break
        testhooks.before_batch(deps, [p.id for p in prepared])
        parsed = time.perf_counter()
        ingest_prepared(deps, prepared, outcomes)
        log.info("ingest job: %d document(s) prepared in %.2f s, embedded, written and "
                 "verified in %.2f s", len(taken), parsed - started, time.perf_counter() - parsed)
    except Exception as exc:
        if time_limited is None or not isinstance(exc, time_limited):
            raise
        unfinished = [it for it in taken if it.doc_id not in outcomes]
        limit = deps.settings.worker.task_time_limit_s
        if len(unfinished) == 1:  # that document alone is too much for one task
            log.warning("ingest %s: over the task time limit (%d s)", unfinished[0].doc_id,
                        limit)
            outcomes[unfinished[0].doc_id] = _fail(
                deps, unfinished[0].doc_id, on_failed,
                over_time_limit(limit))
        else:  # which one was too much is unknown: each comes back and runs alone
            log.warning("ingest job over the task time limit (%d s) with %d documents "
                        "unfinished: each goes back to the queue", limit, len(unfinished))
            for it in unfinished:
                actions[it.task_id] = REQUEUE
    ended: list[str] = []
    for it in taken:
        outcome = outcomes.get(it.doc_id)
        if outcome is None:
            continue
        with log_context(job_id=it.task_id, document_id=it.doc_id, request_id=it.request_id):
            actions[it.task_id], final = _settle(deps, it, outcome, max_retries, retry,
                                                 backoff, on_failed)
        if final:
            ended.append(it.doc_id)
    deliveries.forget_many(deps.settings.redis_url, ended)
    return [actions[it.task_id] for it in items]


def _chosen(deps: IngestDeps, items: Sequence[Item]) -> list[Item]:
    """All the items, or, when one of them had a delivery that never finished, that one
    alone (the others deferred): a document that kills its worker dies alone."""
    counts = deliveries.peek_many(deps.settings.redis_url, [it.doc_id for it in items])
    for it, n in zip(items, counts, strict=True):
        if n is not None and n >= it.retries + 1:
            if len(items) > 1:
                log.info("ingest %s: an earlier delivery did not finish; it runs alone",
                         it.doc_id)
            return [it]
    return list(items)


def _fail(deps: IngestDeps, doc_id: str, on_failed: Callable[[str], None] | None,
          error: str) -> str:
    deps.repo.set_status(doc_id, DocumentStatus.FAILED, error=error)
    if on_failed is not None:
        on_failed(doc_id)
    return DocumentStatus.FAILED.value


def _settle(deps: IngestDeps, it: Item, outcome: Outcome, max_retries: int,
            retry: Callable[[Item, float], None], backoff: Callable[[int], float],
            on_failed: Callable[[str], None] | None) -> tuple[str, bool]:
    """The message's action for a document's outcome, and whether the document ended."""
    if isinstance(outcome, str):
        return ACK, True
    try:
        if isinstance(outcome, TransientError):
            if it.retries >= max_retries:
                _fail(deps, it.doc_id, on_failed,
                      f"gave up after {max_retries} retries: {outcome.detail}")
                return ACK, True
            log.warning("ingest %s: transient error, retrying: %s", it.doc_id, outcome.detail)
            retry(it, backoff(it.retries))
            return ACK, False  # the retry is another delivery: the count stays
        log.error("ingest %s failed", it.doc_id, exc_info=outcome)
        _fail(deps, it.doc_id, on_failed, f"internal error while ingesting: "
              f"{type(outcome).__name__}: {outcome}")
        return ACK, True
    except Exception:  # noqa: BLE001 - the registry or the broker is down: try it again later
        log.exception("ingest %s: could not settle its outcome; back to the queue", it.doc_id)
        return REQUEUE, False


def jitter_backoff(cap: float) -> Callable[[int], float]:
    def backoff(retries: int) -> float:
        return min(cap, 2.0 ** retries * (0.5 + random.random()))  # noqa: S311 - jitter
    return backoff
