"""Celery app factory and tasks.

Models are loaded per worker child in ``worker_process_init`` — never at import and
never in the parent before fork.
"""

from __future__ import annotations

import logging
import random
from typing import Any

from celery import Celery, Task
from celery.signals import worker_process_init

from core import tasks as names
from core.errors import StoreUnavailableError, TransientError
from core.registry import open_repository
from core.settings import Settings, apply_offline_env
from ingest.embedding import SentenceTransformerEmbedder
from ingest.keywords import KeywordIndex
from ingest.pipeline import IngestDeps, erase_document, ingest_document
from ingest.store import ChromaStore

log = logging.getLogger("docqa.worker")

_deps: IngestDeps | None = None
_settings: Settings | None = None


def build_deps(settings: Settings) -> IngestDeps:
    return IngestDeps(
        settings=settings,
        repo=open_repository(settings),
        store=ChromaStore(settings.chroma.host, settings.chroma.port,
                          KeywordIndex(settings.keywords_path)),
        embedder=SentenceTransformerEmbedder(
            settings.models.resolved_embedding_path(), settings.models.embedding_batch_size
        ),
    )


def get_deps() -> IngestDeps:
    global _deps
    if _deps is None:
        assert _settings is not None, "create_celery_app() must run first"
        _deps = build_deps(_settings)
    return _deps


@worker_process_init.connect
def _warm_up_child(**_: Any) -> None:
    """Load the embedding model once per child, before the first task arrives."""
    if _settings is not None:
        get_deps()
        log.info("worker child ready (embedding model loaded)")


def _backoff(retries: int) -> float:
    return min(60.0, 2.0 ** retries) * (0.5 + random.random())  # noqa: S311 - jitter


def create_celery_app(settings: Settings | None = None) -> Celery:
    global _settings
    apply_offline_env()
    _settings = settings or Settings()
    app = Celery("docqa")
    app.conf.update(names.celery_config(_settings))
    max_retries = _settings.worker.max_retries

    @app.task(name=names.INGEST_DOCUMENT, bind=True, max_retries=max_retries)
    def ingest(self: Task, doc_id: str) -> str:
        deps = get_deps()
        try:
            return ingest_document(deps, doc_id)
        except TransientError as exc:
            if self.request.retries >= max_retries:
                from core.domain import DocumentStatus

                deps.repo.set_status(doc_id, DocumentStatus.FAILED,
                                     error=f"gave up after {max_retries} retries: {exc.detail}")
                return DocumentStatus.FAILED.value
            log.warning("ingest %s: transient error, retrying: %s", doc_id, exc.detail)
            raise self.retry(exc=exc, countdown=_backoff(self.request.retries)) from exc
        except Exception as exc:  # noqa: BLE001 - an unexpected bug fails the document, not the worker
            from core.domain import DocumentStatus

            log.exception("ingest %s failed", doc_id)
            deps.repo.set_status(doc_id, DocumentStatus.FAILED,
                                 error=f"internal error while ingesting: {type(exc).__name__}: {exc}")
            return DocumentStatus.FAILED.value

    @app.task(name=names.ERASE_DOCUMENT, bind=True, max_retries=max_retries)
    def erase(self: Task, tenant: str, doc_id: str) -> None:
        try:
            erase_document(get_deps(), tenant, doc_id)
        except StoreUnavailableError as exc:
            raise self.retry(exc=exc, countdown=_backoff(self.request.retries)) from exc

    return app


def run_worker(settings: Settings, loglevel: str = "INFO") -> None:
    app = create_celery_app(settings)
    app.worker_main([
        "worker", f"--loglevel={loglevel}", f"--concurrency={settings.worker.concurrency}",
        "--pool=prefork", "-Q", names.INGEST_QUEUE, "--without-gossip", "--without-mingle",
        "-n", f"docqa-{__import__('os').getpid()}@%h",
    ])
