"""A worker's health, as a file: for liveness and readiness probes (Kubernetes, compose).

With ``DOCQA_WORKER__HEARTBEAT_FILE`` set, the worker's consumer touches that file every
``heartbeat_interval_s`` on the worker's own event loop, from the moment it consumes its
queues; the file is removed when the worker shuts down. A fresh file therefore says: the
main process runs its loop and is connected to the broker (while Celery reconnects, the
loop does not run and the file ages). A hung main process, or one cut off from Redis for
longer than the probe allows, goes stale.

The probe is ``python -m workers.health FILE --max-age SECONDS`` (exit 0 fresh, 1 stale or
missing): no broker round trip and no Celery import, unlike ``celery inspect ping``, which
loads the app and asks every worker over Redis.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path
from typing import Any

log = logging.getLogger("docqa.worker")


def age(path: Path) -> float | None:
    """Seconds since the heartbeat file was touched; None when there is none."""
    try:
        return max(0.0, time.time() - path.stat().st_mtime)
    except OSError:  # missing, or a path that cannot be (a file where a directory should be)
        return None


def is_fresh(path: Path, max_age_s: float) -> bool:
    seconds = age(path)
    return seconds is not None and seconds <= max_age_s


def beat(path: Path) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch()
    except OSError as exc:  # a full or read-only disk must not stop the consumer
        log.warning("worker heartbeat %s not written: %s", path, exc)


def install(app: Any, path: Path | None, interval_s: float) -> None:
    """Add the heartbeat to the app's consumer (nothing without a path)."""
    if path is None:
        return
    heartbeat_file: Path = path
    from celery import bootsteps  # the probe (main below) never imports Celery

    class Heartbeat(bootsteps.StartStopStep):  # type: ignore[misc]
        """Starts with the consumer's task consumption, stops with it."""

        requires = ("celery.worker.consumer.tasks:Tasks",)

        def __init__(self, c: Any, **kwargs: Any) -> None:
            super().__init__(c, **kwargs)
            self.tref: Any = None

        def start(self, c: Any) -> None:
            beat(heartbeat_file)
            self.tref = c.timer.call_repeatedly(interval_s, beat, (heartbeat_file,),
                                                priority=10)

        def stop(self, c: Any) -> None:
            if self.tref is not None:
                self.tref.cancel()
                self.tref = None

        def shutdown(self, c: Any) -> None:
            self.stop(c)
            heartbeat_file.unlink(missing_ok=True)

    app.steps["consumer"].add(Heartbeat)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="exit 0 when the worker's heartbeat file is fresh")
    ap.add_argument("file", type=Path)
    ap.add_argument("--max-age", type=float, default=60.0, help="seconds (default 60)")
    args = ap.parse_args(argv)
    seconds = age(args.file)
    if seconds is None:
        sys.stderr.write(f"no heartbeat file {args.file}\n")
        return 1
    if seconds > args.max_age:
        sys.stderr.write(f"heartbeat {seconds:.0f} s old (at most {args.max_age:.0f})\n")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
