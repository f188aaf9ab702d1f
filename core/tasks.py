"""Celery task names and broker configuration shared by the API (producer) and workers.

The API enqueues by name and never imports worker code; only ids travel in messages.
"""

from __future__ import annotations

from typing import Any

from core.settings import Settings

INGEST_DOCUMENT = "docqa.ingest_document"
ERASE_DOCUMENT = "docqa.erase_document"
INGEST_QUEUE = "docqa.ingest"


def celery_config(settings: Settings) -> dict[str, Any]:
    """Celery configuration for at-least-once delivery (see DESIGN.md).

    ``task_time_limit`` stays below the Redis ``visibility_timeout`` so that a slow
    task is never redelivered while it still runs.
    """
    w = settings.worker
    if w.task_time_limit_s >= w.visibility_timeout_s:
        from core.errors import ConfigurationError

        raise ConfigurationError("worker.task_time_limit_s must be below worker.visibility_timeout_s")
    return {
        "broker_url": settings.redis_url,
        "result_backend": settings.redis_url,
        "task_serializer": "json",
        "result_serializer": "json",
        "accept_content": ["json"],
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        "task_time_limit": w.task_time_limit_s,
        "task_soft_time_limit": max(1, w.task_time_limit_s - 30),
        "task_default_queue": INGEST_QUEUE,
        "task_ignore_result": True,
        "broker_transport_options": {"visibility_timeout": w.visibility_timeout_s},
        "result_backend_transport_options": {"visibility_timeout": w.visibility_timeout_s},
        "broker_connection_retry_on_startup": True,
        "worker_hijack_root_logger": False,
        "worker_send_task_events": False,
    }
