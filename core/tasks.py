"""Celery task names and broker configuration shared by the API (producer) and workers.

The API enqueues by name and never imports worker code; only ids travel in messages.
"""

from __future__ import annotations

from typing import Any

from core.errors import ConfigurationError
from core.settings import Settings

INGEST_DOCUMENT = "docqa.ingest_document"
ERASE_DOCUMENT = "docqa.erase_document"
INGEST_QUEUE = "docqa.ingest"
# erasure jobs have their own queue (every worker consumes both; a worker started with
# ``--queues docqa.erase`` keeps erasure within its deadline while long ingests run)
ERASE_QUEUE = "docqa.erase"
ERASE_DELAY_S = 1.0  # the API removes the registry row right after enqueueing
# the Chroma directory scrub that follows an erasure runs where the Chroma server's files
# are: only workers that see them consume this queue (ingest/erasure.py)
SCRUB_CHROMA = "docqa.scrub_chroma_dir"
CHROMA_QUEUE = "docqa.chroma"
QUEUES = (INGEST_QUEUE, ERASE_QUEUE, CHROMA_QUEUE)

# A fair share of the ingest queue for every tenant. Redis lists are first in, first out, so
# one tenant's backlog of large uploads would hold every other tenant's upload behind it.
# kombu's Redis transport keeps one list per priority level and always takes from the lowest
# level that has a message (0 first), in order within a level. An ingest job goes in the
# level of how many documents its tenant already has waiting or being ingested: each
# tenant's first document is taken before any tenant's second, its second before any third,
# and so on (round robin over the tenants), up to the last level, where a deep backlog waits
# in order. Erasure jobs carry no priority: level 0. The registry is the count, so nothing
# extra is kept in Redis and nothing can drift; messages keep their level when they are
# retried or handed out again.
PRIORITY_LEVELS = 10  # kombu's Redis priorities 0..9
PRIORITY_SEP = "\x06\x16"  # kombu's key of a queue's level > 0: name + sep + level


def ingest_priority(ahead: int) -> int:
    """The priority of an ingest job whose tenant has ``ahead`` other documents waiting or
    being ingested (0, taken first, for a tenant with none)."""
    return max(0, min(PRIORITY_LEVELS - 1, ahead))


def queue_keys(queue: str) -> list[str]:
    """The Redis lists that hold ``queue``'s waiting messages, one per priority level."""
    return [queue, *(f"{queue}{PRIORITY_SEP}{p}" for p in range(1, PRIORITY_LEVELS))]


def soft_time_limit(hard_s: int) -> int:
    """The soft limit (the task fails its document cleanly) ahead of the hard kill: 30 s
    before it, or a fifth of it for short limits (a 20 s limit gives 16 s, not 1 s)."""
    return max(1, hard_s - min(30, max(1, hard_s // 5)))


def celery_config(settings: Settings) -> dict[str, Any]:
    """Celery configuration for at-least-once delivery (see docs/architecture.md).

    ``task_time_limit`` stays below the Redis ``visibility_timeout`` so that a slow
    task is never redelivered while it still runs.
    """
    w = settings.worker
    if w.task_time_limit_s >= w.visibility_timeout_s:
        raise ConfigurationError(
            "worker.task_time_limit_s must be below worker.visibility_timeout_s")
    return {
        "broker_url": settings.redis_url,
        "result_backend": settings.redis_url,
        "task_serializer": "json",
        "result_serializer": "json",
        "accept_content": ["json"],
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        # one message per child, or, with batches (workers/batching.py), room for a job
        # running and the next one gathering while it runs
        "worker_prefetch_multiplier": 1 if w.batch_size <= 1 else 2 * w.batch_size,
        # a child started after a crash loads the embedding model before it reports up
        "worker_proc_alive_timeout": w.child_start_timeout_s,
        "worker_max_tasks_per_child": w.max_tasks_per_child or None,
        # billiard checks a child's peak RSS (ru_maxrss, in KiB) after each task
        "worker_max_memory_per_child": w.max_memory_mb * 1024 or None,
        "task_time_limit": w.task_time_limit_s,
        "task_soft_time_limit": soft_time_limit(w.task_time_limit_s),
        "task_default_queue": INGEST_QUEUE,
        "task_ignore_result": True,
        # a message whose worker died is handed out again once it has been unacked for
        # visibility_timeout; the worker looks for such messages every interval * throttle s
        "broker_transport_options": {
            "visibility_timeout": w.visibility_timeout_s,
            "unacked_restore_interval": w.unacked_restore_interval_s,
            "unacked_restore_throttle": w.unacked_restore_throttle,
            "priority_steps": list(range(PRIORITY_LEVELS)),  # fair ingest (above)
        },
        "result_backend_transport_options": {"visibility_timeout": w.visibility_timeout_s},
        "broker_connection_retry_on_startup": True,
        "worker_hijack_root_logger": False,
        "worker_send_task_events": False,
    }
