"""``GET /metrics``: Prometheus text exposition of the API and the workers (core/metrics.py).

What a scrape shows:

* recorded by the API and the workers (added up over ``metrics.multiproc_dir``):
  ``docqa_ingest_stage_seconds{stage}`` (parse, chunk, embed, upsert, verify; histogram, per
  document), ``docqa_chunks_embedded_total``, ``docqa_ask_latency_seconds`` (histogram),
  ``docqa_ask_results_total{status}`` (answered, not_found),
  ``docqa_http_requests_total{route,method,code}`` and ``docqa_http_refused_total{route,code}``
  (429 and 503);
* read at scrape time: ``docqa_documents{status}`` (one grouped count in the registry,
  SQLite or PostgreSQL) and ``docqa_queue_depth{queue}`` (length of the Celery queues' Redis
  lists: jobs waiting, not those a worker holds). A dependency that does not answer leaves
  its family out of that scrape (and ``docqa_scrape_errors{source}`` says which).

No API key: ``/metrics`` is outside ``/v1``, not rate limited and not in the OpenAPI schema.
``DOCQA_METRICS__ENABLED=false`` removes it (404); ``DOCQA_METRICS__TOKEN`` requires
``Authorization: Bearer <token>`` (401 otherwise).
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Iterator
from typing import Any

from litestar import Request, Response, get
from litestar.handlers import HTTPRouteHandler
from prometheus_client import REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector

from core import metrics as core_metrics
from core import tasks as names
from core.domain import DocumentStatus
from core.errors import UnauthorizedError
from core.settings import Settings

log = logging.getLogger("docqa.metrics")

QUEUES = (names.INGEST_QUEUE, names.ERASE_QUEUE)
CONTENT_TYPE = "text/plain; version=0.0.4"


class ScrapeTimeCollector:
    """Gauges computed when scraped: documents by status and queue depth."""

    def __init__(self, repo: Any, redis_client: Any, queues: tuple[str, ...] = QUEUES) -> None:
        self.repo = repo
        self.redis = redis_client
        self.queues = queues

    def collect(self) -> Iterator[Any]:
        errors: list[str] = []
        counts = self._documents(errors)
        if counts is not None:
            docs = GaugeMetricFamily("docqa_documents", "Documents in the registry by status",
                                     labels=["status"])
            for status in DocumentStatus:
                docs.add_metric([status.value], counts.get(status.value, 0))
            yield docs
        depths = self._queue_depths(errors)
        if depths is not None:
            queue = GaugeMetricFamily(
                "docqa_queue_depth", "Jobs waiting in a Celery queue (Redis list length)",
                labels=["queue"])
            for name, depth in depths.items():
                queue.add_metric([name], depth)
            yield queue
        failed = GaugeMetricFamily("docqa_scrape_errors",
                                   "1 when a source of this scrape did not answer",
                                   labels=["source"])
        for source in ("registry", "redis"):
            failed.add_metric([source], 1 if source in errors else 0)
        yield failed

    def _documents(self, errors: list[str]) -> dict[str, int] | None:
        count = getattr(self.repo, "count_by_status", None)
        if count is None:
            return None
        try:
            return dict(count())
        except Exception as exc:  # noqa: BLE001 - a scrape reports, it does not fail
            log.warning("metrics: registry unavailable: %s", type(exc).__name__)
            errors.append("registry")
            return None

    def _queue_depths(self, errors: list[str]) -> dict[str, int] | None:
        if self.redis is None:
            return None
        try:
            pipe = self.redis.pipeline(transaction=False)
            keys = {name: names.queue_keys(name) for name in self.queues}  # every level
            for name in self.queues:
                for key in keys[name]:
                    pipe.llen(key)
            counts = iter(pipe.execute())
            return {name: sum(int(next(counts)) for _ in keys[name]) for name in self.queues}
        except Exception as exc:  # noqa: BLE001
            log.warning("metrics: Redis unavailable: %s", type(exc).__name__)
            errors.append("redis")
            return None


class _InProcess:
    """This process's own registry (no multiprocess directory: tests, library use)."""

    def collect(self) -> Iterator[Any]:
        yield from REGISTRY.collect()


def exposition(repo: Any, redis_client: Any) -> bytes:
    """The text a scrape gets."""
    core_metrics.metrics()  # this process's families exist even before their first use
    registry = CollectorRegistry()
    path = core_metrics.multiproc_dir()
    if path is not None:
        MultiProcessCollector(registry, path=str(path))
    else:
        registry.register(_InProcess())
    registry.register(ScrapeTimeCollector(repo, redis_client))
    return bytes(generate_latest(registry))


def check_token(settings: Settings, authorization: str | None) -> None:
    token = settings.metrics.token
    if token is None or not token.get_secret_value():
        return
    scheme, _, given = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(
            given.strip().encode(), token.get_secret_value().encode()):
        raise UnauthorizedError("/metrics needs 'Authorization: Bearer <metrics token>'")


def metrics_routes(settings: Settings) -> list[HTTPRouteHandler]:
    """``[GET /metrics]``, or nothing when ``metrics.enabled`` is false."""
    if not settings.metrics.enabled:
        return []

    @get("/metrics", include_in_schema=False, sync_to_thread=True)
    def scrape(request: Request[Any, Any, Any]) -> Response[bytes]:
        comps = request.app.state.components
        check_token(comps.settings, request.headers.get("authorization"))
        body = exposition(comps.repo, comps.redis)
        # Prometheus text format 0.0.4 (Litestar adds "; charset=utf-8")
        return Response(body, media_type=CONTENT_TYPE)

    return [scrape]
