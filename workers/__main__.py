"""``python -m workers``: run a Celery ingest worker (``docqa worker`` and ``docqa up`` start
it this way, so the command line never imports the worker's code)."""

from __future__ import annotations

import click

from core.logging import configure_process
from core.metrics import serve_worker_metrics
from core.settings import Settings, apply_offline_env
from workers.app import run_worker


@click.command()
@click.option("--loglevel", default=None, help="default: DOCQA_LOG_LEVEL (INFO)")
@click.option("--queues", default=None,
              help="comma-separated queues to consume, e.g. docqa.chroma (default: "
                   "DOCQA_WORKER__QUEUES, else ingest and erasure, plus docqa.chroma where "
                   "the Chroma directory is seen)")
def main(loglevel: str | None, queues: str | None) -> None:
    """Run a Celery ingest worker."""
    apply_offline_env()
    settings = with_queues(Settings(), queues)
    configure_process(settings, "worker")
    if settings.metrics.enabled and settings.metrics.worker_port:
        serve_worker_metrics(settings.metrics.worker_host, settings.metrics.worker_port)
    run_worker(settings, (loglevel or settings.log_level).upper())


def with_queues(settings: Settings, queues: str | None) -> Settings:
    """``settings`` with ``--queues`` (when given) in place of ``worker.queues``."""
    if queues is None:
        return settings
    worker = settings.worker.model_copy(update={"queues": queues})
    return settings.model_copy(update={"worker": worker})


if __name__ == "__main__":
    main()
