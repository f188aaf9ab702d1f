"""A parse sandbox target whose child is slow to start reading its stdin (its ``preload``
sleeps), so the worker has to keep writing a large document after its first wait for the
child has timed out (tests/unit/ingest/test_sandbox.py)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from core.domain import Page


def preload() -> None:
    time.sleep(1.0)  # longer than the parent's progress slice (PROGRESS_INTERVAL_S)


def size(path: Path, kind: Any, limits: Any) -> list[Page]:
    data = path.read_bytes()
    return [Page(number=1, text=f"{len(data)} {data[-16:].decode()}", offset=0)]
