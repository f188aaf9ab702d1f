"""A thread pool per process: made on first use, and made again in a forked child, which
inherits the parent's pool object but none of its threads (a Celery prefork child, a
parse zygote's child)."""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor


class ProcessThreads:
    """``get()``: this process's pool of ``workers`` threads named ``name``-N."""

    def __init__(self, workers: int, name: str) -> None:
        self.workers, self.name = workers, name
        self._pool: ThreadPoolExecutor | None = None
        self._pid = 0
        self._lock = threading.Lock()

    def get(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._pool is None or self._pid != os.getpid():
                self._pool = ThreadPoolExecutor(max_workers=self.workers,
                                                thread_name_prefix=self.name)
                self._pid = os.getpid()
            return self._pool
