"""Celery app factory and tasks.

Models are loaded per worker child in ``worker_process_init`` — never at import and
never in the parent before fork.
"""

from __future__ import annotations

import logging
import os
import random
from typing import Any

from celery import Celery, Task
from celery.exceptions import SoftTimeLimitExceeded
from celery.signals import worker_process_init

from core import tasks as names
from core.changes import ChangePublisher, NotifyingRepository
from core.domain import DocumentStatus
from core.errors import ConfigurationError, TransientError
from core.logging import connect_celery_signals
from core.ports import DocumentRepository
from core.registry import open_repository
from core.settings import Settings, apply_offline_env, usable_cpus
from core.vault import Vault
from ingest.embedding import make_chunk_embedder, make_unit_embedder
from ingest.erasure import Eraser, NotDeletedYet, build_eraser, sees_chroma_dir
from ingest.pipeline import IngestDeps, failed_ingest_cleanup, ingest_document, warm_up
from ingest.sandbox import SandboxPool
from ingest.store import ChromaStore, open_store
from workers import batching, broker, deliveries, health, reconcile, testhooks

log = logging.getLogger("docqa.worker")

_deps: IngestDeps | None = None
_store: ChromaStore | None = None  # the ingest job's store, which the eraser also compacts
_repo: DocumentRepository | None = None
_warm_up = True  # load the embedding model per child: off where no ingest queue is consumed
_settings: Settings | None = None
_eraser: Eraser | None = None
_app: Celery | None = None  # the app whose tasks run here: an ingest queues erasures with it
ERASE_MAX_RETRIES = 30
PARSE_SPARES = 4  # parse children started ahead when batching (ingest/sandbox.py SandboxPool)


def notifying_repository(settings: Settings) -> DocumentRepository:
    """The registry, whose every status and progress write also tells the API's event
    streams (core/changes.py)."""
    return NotifyingRepository(open_repository(settings), ChangePublisher(settings.redis_url))


def build_deps(settings: Settings, store: ChromaStore,
               repo: DocumentRepository | None = None) -> IngestDeps:
    return IngestDeps(
        settings=settings,
        repo=repo or notifying_repository(settings),
        store=store,
        # the chunks' embedder itself unless DOCQA_TEST_HOOKS__* (tests only) are set
        embedder=testhooks.hooked_embedder(settings, make_chunk_embedder(settings)),
        vault=Vault.for_settings(settings),
        erase_later=queue_erase,
        # a batching worker parses a job's documents one after another: spares boot together
        parsers=SandboxPool(
            depth=min(PARSE_SPARES, settings.worker.batch_size)
            if settings.worker.warm_parse_child else 0,
            zygote=settings.worker.parse_zygote)
        if settings.worker.warm_parse_child or settings.worker.parse_zygote else None,
        unit_embedder=make_unit_embedder(settings),
        abort_on=(SoftTimeLimitExceeded,),  # ends the job; the task layer settles it
    )


def queue_erase(tenant: str, doc_id: str) -> None:
    """Queue the background erasure of a document again: an ingest found it deleted after
    it had written chunks, maybe after the DELETE's own eraser compacted the store."""
    if _app is None:  # pragma: no cover - create_celery_app always runs first
        raise RuntimeError("create_celery_app() must run first")
    _app.send_task(names.ERASE_DOCUMENT, args=[tenant, doc_id], queue=names.ERASE_QUEUE,
                   countdown=names.ERASE_DELAY_S)
    log.info("document %s: deleted during its ingest; erasure queued again", doc_id)


def queue_chroma_scrub() -> None:
    """Queue the scrub of the Chroma server's directory for a worker that sees it (this one
    too, when it does): the server's files may be on another machine."""
    if _app is None:  # pragma: no cover - create_celery_app always runs first
        raise RuntimeError("create_celery_app() must run first")
    _app.send_task(names.SCRUB_CHROMA, queue=names.CHROMA_QUEUE)


def get_eraser() -> Eraser:
    global _eraser
    if _eraser is None:
        # no embedding model: a worker that only erases or scrubs never loads it
        assert _settings is not None, "create_celery_app() must run first"
        _eraser = build_eraser(_settings, get_repo(), get_store(), queue_chroma_scrub)
    return _eraser


def worker_queues(settings: Settings) -> list[str]:
    """The queues of ``worker.queues`` when set (e.g. only ``docqa.chroma``, for a worker
    beside the Chroma server); otherwise ingest and erasure, and the Chroma directory scrub
    when this machine sees it."""
    chosen = list(dict.fromkeys(q.strip() for q in settings.worker.queues.split(",")
                                if q.strip()))
    if chosen:
        unknown = [q for q in chosen if q not in names.QUEUES]
        if unknown:
            raise ConfigurationError(
                f"worker.queues: unknown queue(s) {', '.join(unknown)}; "
                f"known: {', '.join(names.QUEUES)}")
        if names.CHROMA_QUEUE in chosen and not sees_chroma_dir(settings):
            # a sidecar may start before the Chroma server creates its database
            log.warning("this worker consumes queue %s but %s holds no chroma.sqlite3 yet: "
                        "a scrub skips it until it does", names.CHROMA_QUEUE,
                        settings.chroma_dir)
        return chosen
    queues = [names.INGEST_QUEUE, names.ERASE_QUEUE]
    if sees_chroma_dir(settings):
        queues.append(names.CHROMA_QUEUE)
        log.info("this worker sees the Chroma directory %s: it scrubs it after erasures "
                 "(queue %s)", settings.chroma_dir, names.CHROMA_QUEUE)
    else:
        log.info("this worker does not see the Chroma directory (%s): a worker on the Chroma "
                 "server's machine must consume queue %s", settings.chroma_dir,
                 names.CHROMA_QUEUE)
    return queues


def get_store() -> ChromaStore:
    global _store
    if _store is None:
        assert _settings is not None, "create_celery_app() must run first"
        _store = open_store(_settings)
    return _store


def get_repo() -> DocumentRepository:
    global _repo
    if _repo is None:
        assert _settings is not None, "create_celery_app() must run first"
        _repo = notifying_repository(_settings)
    return _repo


def get_deps() -> IngestDeps:
    global _deps
    if _deps is None:
        assert _settings is not None, "create_celery_app() must run first"
        _deps = build_deps(_settings, get_store(), get_repo())
    return _deps


@worker_process_init.connect  # type: ignore[untyped-decorator]
def _warm_up_child(**_: Any) -> None:
    """Load the embedding model once per child, before the first task arrives."""
    if _settings is not None and _warm_up:
        warm_up(get_deps())
        log.info("worker child ready (embedding model loaded)")


def _backoff(retries: int) -> float:
    # a retry waits in this worker as an unacknowledged message: past the visibility timeout
    # Redis would hand it out a second time, so the wait (plus the run) stays well below it
    cap = 60.0
    if _settings is not None:
        w = _settings.worker
        cap = min(cap, max(1.0, (w.visibility_timeout_s - w.task_time_limit_s) / 2))
    return min(cap, 2.0 ** retries * (0.5 + random.random()))  # noqa: S311 - jitter


def _after_failure(deps: IngestDeps, doc_id: str) -> None:
    try:
        failed_ingest_cleanup(deps, doc_id)  # a redacted document's original goes
    except Exception:  # noqa: BLE001 - the document is failed already; log, never raise
        log.exception("ingest %s: clean-up after failure failed", doc_id)


def _send_retry(item: batching.Item, countdown: float) -> None:
    """A batched document's transient failure: its retry message, as ``Task.retry`` sends
    (``retries + 1``, the same priority level, after ``countdown``)."""
    if _app is None:  # pragma: no cover - create_celery_app always runs first
        raise RuntimeError("create_celery_app() must run first")
    _app.send_task(names.INGEST_DOCUMENT, args=[item.doc_id], queue=names.INGEST_QUEUE,
                   priority=item.priority, countdown=countdown, retries=item.retries + 1)


def ingest_batch_job(items: list[batching.Item]) -> list[str]:
    """One pool job: ingest several documents together (workers/batching.py)."""
    assert _settings is not None, "create_celery_app() must run first"
    w = _settings.worker
    return batching.run_batch(
        get_deps(), items, max_retries=w.max_retries, retry=_send_retry, backoff=_backoff,
        time_limited=SoftTimeLimitExceeded, on_failed=lambda d: _after_failure(get_deps(), d))


class IngestTask(Task):  # type: ignore[misc]
    """The ingest task: one message per document; with ``worker.batch_size`` above 1 the
    worker gives a child several documents per job (workers/batching.py)."""

    def Strategy(self, task: Task, app: Celery, consumer: Any) -> Any:  # noqa: N802 - Celery's name
        from celery.worker.strategy import default

        settings = _settings or Settings()
        w = settings.worker
        if w.batch_size <= 1:
            return default(task, app, consumer)
        log.info("ingest batches of up to %d documents per job", w.batch_size)
        return batching.batching_strategy(
            task, app, consumer, size=w.batch_size, slots=w.children(),
            soft_limit=names.soft_time_limit(w.task_time_limit_s),
            hard_limit=w.task_time_limit_s, job=ingest_batch_job)


def create_celery_app(settings: Settings | None = None) -> Celery:
    global _settings, _app
    apply_offline_env()
    _settings = settings or Settings()
    deliveries.configure(_settings.redis_url)  # an ingest that returns resets its count there
    # a worker that held messages when its Redis went must reconnect, not die (workers/broker.py)
    broker.guard_restore_unacked()
    app = _app = Celery("docqa")
    app.conf.update(names.celery_config(_settings))
    connect_celery_signals()  # request id, job id and document id on the tasks' log lines
    max_retries = _settings.worker.max_retries

    @app.task(name=names.INGEST_DOCUMENT, bind=True, max_retries=max_retries, base=IngestTask)  # type: ignore[untyped-decorator]
    def ingest(self: Task, doc_id: str) -> str:
        deps = get_deps()
        # a document whose worker died on it on every attempt ends failed (bounded)
        gave_up = deliveries.admit(deps, doc_id, self.request.retries, max_retries + 1)
        if gave_up is not None:
            _after_failure(deps, doc_id)
            return gave_up
        testhooks.before_ingest(deps, doc_id)  # no-op unless test hooks are set
        try:
            return ingest_document(deps, doc_id)
        except TransientError as exc:
            if self.request.retries >= max_retries:
                deps.repo.set_status(doc_id, DocumentStatus.FAILED,
                                     error=f"gave up after {max_retries} retries: {exc.detail}")
                _after_failure(deps, doc_id)
                return DocumentStatus.FAILED.value
            log.warning("ingest %s: transient error, retrying: %s", doc_id, exc.detail)
            raise self.retry(exc=exc, countdown=_backoff(self.request.retries)) from exc
        except SoftTimeLimitExceeded:  # too much for one task: trying again cannot help
            limit = deps.settings.worker.task_time_limit_s
            log.warning("ingest %s: over the task time limit (%d s)", doc_id, limit)
            deps.repo.set_status(doc_id, DocumentStatus.FAILED,
                                 error=batching.over_time_limit(limit))
            _after_failure(deps, doc_id)
            return DocumentStatus.FAILED.value
        except Exception as exc:  # noqa: BLE001 - an unexpected bug fails the document, not the worker
            log.exception("ingest %s failed", doc_id)
            deps.repo.set_status(
                doc_id, DocumentStatus.FAILED,
                error=f"internal error while ingesting: {type(exc).__name__}: {exc}")
            _after_failure(deps, doc_id)
            return DocumentStatus.FAILED.value

    @app.task(name=names.ERASE_DOCUMENT, bind=True, max_retries=ERASE_MAX_RETRIES)  # type: ignore[untyped-decorator]
    def erase(self: Task, tenant: str, doc_id: str) -> str:
        """Finish a DELETE (ingest/erasure.py): ids in, a status word out, never text."""
        try:
            get_eraser().erase(tenant, doc_id)
            return "erased"
        except NotDeletedYet as exc:  # the API is still at it, or its delete failed (503)
            if self.request.retries >= ERASE_MAX_RETRIES:
                log.info("erase %s: the document is still registered; nothing to erase", doc_id)
                return "not deleted"
            raise self.retry(exc=exc, countdown=1.0) from exc
        except TransientError as exc:
            log.warning("erase %s: transient error, retrying: %s", doc_id, exc.detail)
            raise self.retry(exc=exc, countdown=min(5.0, _backoff(self.request.retries))) from exc

    @app.task(name=names.SCRUB_CHROMA)  # type: ignore[untyped-decorator]
    def scrub_chroma() -> str:
        """Scrub the Chroma server's directory after erasures (ingest/erasure.py)."""
        report = get_eraser().scrub_chroma()
        log.info("Chroma directory scrubbed: %s", report)
        return "scrubbed"

    return app


def share_cpus(settings: Settings) -> int:
    """The worker children to start; with several, and ``embedding_threads`` 0, each
    child's embedder gets its share of the CPUs rather than all of them each (the children
    embed side by side; they fork from this process and its settings)."""
    children = settings.worker.children()
    if settings.models.embedding_threads == 0 and children > 1:
        settings.models.embedding_threads = max(1, usable_cpus() // children)
    return children


def run_worker(settings: Settings, loglevel: str = "INFO") -> None:
    global _warm_up
    queues = worker_queues(settings)
    _warm_up = names.INGEST_QUEUE in queues
    app = create_celery_app(settings)
    reconcile.install(app, settings)  # stuck documents queued again, at start and periodically
    health.install(app, settings.worker.heartbeat_file, settings.worker.heartbeat_interval_s)
    children = share_cpus(settings)
    app.worker_main([
        *(["--quiet"] if settings.log_format == "json" else []),  # no banner among JSON lines
        "worker", f"--loglevel={loglevel}", f"--concurrency={children}",
        "--pool=prefork", "-Q", ",".join(queues),
        "--without-gossip", "--without-mingle",
        "-n", f"docqa-{os.getpid()}@%h",
    ])
