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
def main(loglevel: str | None) -> None:
    """Run a Celery ingest worker."""
    apply_offline_env()
    settings = Settings()
    configure_process(settings, "worker")
    if settings.metrics.enabled and settings.metrics.worker_port:
        serve_worker_metrics(settings.metrics.worker_host, settings.metrics.worker_port)
    run_worker(settings, (loglevel or settings.log_level).upper())


if __name__ == "__main__":
    main()
