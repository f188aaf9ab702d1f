"""The worker's tasks (workers/app.py): the retry backoff, and an ingest that runs out of
time."""

from __future__ import annotations

from pathlib import Path

import pytest
from celery.exceptions import SoftTimeLimitExceeded

from core.domain import DocumentKind, DocumentStatus
from core.registry import SqliteDocumentRepository
from core.settings import Settings
from core.tasks import INGEST_DOCUMENT
from core.vault import Vault
from ingest.embedding import HashEmbedder
from ingest.pipeline import IngestDeps
from tests.private_redis import session_redis_url
from tests.unit.conftest import FakeStore


def test_retry_backoff_stays_below_the_visibility_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    from workers import app as worker_app

    monkeypatch.setattr(worker_app, "_settings", Settings.model_validate(
        {"worker": {"visibility_timeout_s": 50, "task_time_limit_s": 30}}))
    waits = [worker_app._backoff(r) for r in range(10) for _ in range(20)]
    assert max(waits) <= 10 and min(waits) > 0  # (50 - 30) / 2
    monkeypatch.setattr(worker_app, "_settings", Settings())
    assert max(worker_app._backoff(r) for r in range(10) for _ in range(20)) <= 60


def test_an_ingest_over_the_time_limit_fails_its_document_with_the_reason(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Celery's soft time limit inside the ingest: the document ends failed, saying it is
    too large for the worker and what to do, not 'internal error'; no retry."""
    from workers import app as worker_app
    from workers import deliveries

    for name in ("_settings", "_app", "_deps"):
        monkeypatch.setattr(worker_app, name, getattr(worker_app, name))
    monkeypatch.setattr(deliveries, "_redis_url", getattr(deliveries, "_redis_url", None))
    settings = Settings(data_dir=tmp_path, redis_url=session_redis_url(24))
    celery = worker_app.create_celery_app(settings)
    repo = SqliteDocumentRepository(settings.registry_path)
    doc, _ = repo.create(tenant="acme", filename="big.txt", kind=DocumentKind.TEXT,
                         sha256="0" * 64, size=1, metadata={})
    monkeypatch.setattr(worker_app, "_deps", IngestDeps(
        settings, repo, FakeStore(), HashEmbedder(), Vault.for_settings(settings)))

    def too_long(*_: object) -> str:
        raise SoftTimeLimitExceeded

    monkeypatch.setattr(worker_app, "ingest_document", too_long)
    assert celery.tasks[INGEST_DOCUMENT].apply(args=[doc.id]).get() == "failed"
    failed = repo.get(doc.id)
    assert failed is not None and failed.status is DocumentStatus.FAILED
    assert "longer than the worker's time limit (900 s)" in str(failed.error)
    assert "split it into smaller documents" in str(failed.error)


@pytest.mark.parametrize(("cpus", "concurrency", "threads", "children", "each"), [
    (2, 0, 0, 2, 1),  # the default on this kind of machine: two children, one thread each
    (1, 0, 0, 1, 0),  # one child keeps every CPU (0: ONNX Runtime's own count)
    (16, 0, 0, 4, 4),  # at most four children by default, the CPUs shared among them
    (8, 2, 0, 2, 4),  # a chosen count
    (8, 0, 3, 4, 3),  # chosen threads are left alone
])
def test_worker_children_and_their_share_of_the_cpus(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path, cpus: int, concurrency: int,
        threads: int, children: int, each: int) -> None:
    from core import settings as settings_module
    from workers import app as worker_app

    monkeypatch.setattr(settings_module.os, "sched_getaffinity", lambda _pid: set(range(cpus)))
    settings = Settings(data_dir=tmp_path, worker={"concurrency": concurrency},
                        models={"embedding_threads": threads})
    assert worker_app.share_cpus(settings) == children
    assert settings.models.embedding_threads == each
