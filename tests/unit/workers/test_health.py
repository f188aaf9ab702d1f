"""The worker's heartbeat probe (workers/health.py): fresh, stale and missing files."""

from __future__ import annotations

import os
import time
from pathlib import Path

from workers import health


def test_a_fresh_file_passes_and_a_stale_or_missing_one_fails(tmp_path: Path) -> None:
    path = tmp_path / "run" / "worker.heartbeat"
    assert health.age(path) is None and health.main([str(path)]) == 1
    health.beat(path)  # makes its directory
    assert health.is_fresh(path, 60) and health.main([str(path), "--max-age", "60"]) == 0
    old = time.time() - 600
    os.utime(path, (old, old))
    assert not health.is_fresh(path, 60)
    assert health.main([str(path), "--max-age", "60"]) == 1
    assert health.main([str(path), "--max-age", "900"]) == 0


def test_a_heartbeat_that_cannot_be_written_never_raises(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    health.beat(blocker / "worker.heartbeat")  # its "directory" is a file: logged, no error
    assert health.age(blocker / "worker.heartbeat") is None


def test_no_path_installs_nothing() -> None:
    class App:
        steps: dict[str, set[object]] = {"consumer": set()}

    health.install(App(), None, 10)
    assert App.steps["consumer"] == set()
