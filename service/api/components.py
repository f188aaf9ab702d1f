"""The API's components, built once in the app's lifespan and handed to handlers by ``Provide``.

Heavy things (the embedding model, the GGUF generator, clients) are built here, never at
import time.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import redis

from core.audit import AuditLog, open_audit
from core.changes import ChangePublisher, NotifyingRepository
from core.errors import DocqaError
from core.ports import DocumentRepository
from core.ratelimit import RateLimiter
from core.registry import open_repository
from core.settings import Settings
from core.vault import encrypt_legacy_files
from ingest.embedding import make_embedder
from ingest.store import ChromaStore, open_store
from service.answer import AnswerPipeline
from service.answer.generator import LlamaGenerator
from service.answer.reader import SpanReader
from service.api.events import ChangeHub
from service.api.limits import StreamSlots
from service.documents import DocumentService, TaskQueue

log = logging.getLogger("docqa.api")


@dataclass
class Components:
    settings: Settings
    repo: DocumentRepository
    store: ChromaStore
    documents: DocumentService
    answers: AnswerPipeline
    redis: Any  # redis.Redis: readiness and the queue-depth metrics
    audit: AuditLog | None = None  # None: audit.enabled=false
    limiter: RateLimiter | None = None  # None: no rate limits (service/api/limits.py)
    changes: ChangeHub | None = None  # None: event streams poll slowly, hear no notices
    streams: StreamSlots = field(init=False)  # open event streams (service/api/limits.py)

    def __post_init__(self) -> None:
        self.streams = StreamSlots.for_settings(self.settings.rate_limit)


def build_components(settings: Settings) -> Components:
    # a DELETE tells the event streams at once (core/changes.py); workers tell them the rest
    repo = NotifyingRepository(open_repository(settings), ChangePublisher(settings.redis_url))
    store = open_store(settings)
    keywords = store.keywords
    try:  # the keyword index is derived data: rebuild it from Chroma when it is missing
        if keywords is not None and not keywords.existed:
            n = store.rebuild_keywords()
            keywords.mark_complete()
            log.info("keyword index %s built from Chroma: %d chunks", keywords.describe(), n)
    except DocqaError as exc:
        log.warning("keyword index not rebuilt (Chroma or its database unavailable: %s)", exc)
    embedder = make_embedder(settings)  # the workers' own backend: one vector space
    generator = None
    if settings.load_generator:
        m = settings.models
        generator = LlamaGenerator(
            m.resolved_generator_path(), n_ctx=m.n_ctx, n_threads=m.n_threads,
            queue_size=m.generation_queue_size, timeout_s=m.generation_timeout_s,
            retry_after_s=m.retry_after_s,
        )
    reader = None
    if settings.retrieval.short_answer == "reader" or settings.retrieval.reader_rerank_weight:
        r = settings.retrieval
        reader = SpanReader(settings.models.resolved_embedding_path(), settings.onnx_cache_dir,
                            min_confidence=r.reader_min_confidence,
                            cover_mass=r.reader_cover_mass)
    documents = DocumentService(settings, repo, store, TaskQueue(settings))
    encrypt_legacy_files(documents.vault, settings.files_dir)  # originals of older versions
    return Components(
        settings=settings, repo=repo, store=store, documents=documents,
        answers=AnswerPipeline(settings, embedder, store, generator,
                               live=lambda tenant, ids: repo.find_ids(tenant, ids=ids),
                               reader=reader),
        redis=redis.Redis.from_url(settings.redis_url, socket_timeout=2, socket_connect_timeout=2),
        audit=open_audit(settings),
        limiter=RateLimiter.from_url(settings.redis_url, fail_open=settings.rate_limit.fail_open),
        changes=ChangeHub(settings.redis_url),
    )
