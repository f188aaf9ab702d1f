"""The worker's heartbeat file on a real worker process (workers/health.py): fresh while
the worker consumes its queues, so the probe passes; gone when the worker stops, so it
fails. This is what the Kubernetes manifests and docker-compose.yml probe."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.private_redis import session_redis_url

REDIS_URL = session_redis_url(11)
ROOT = Path(__file__).resolve().parents[2]
NETGUARD = Path(__file__).parent / "netguard"


def probe(path: Path, max_age: float) -> int:
    return subprocess.run([sys.executable, "-m", "workers.health", str(path), "--max-age",
                           str(max_age)], cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
                          capture_output=True, timeout=60).returncode


def test_the_heartbeat_is_fresh_while_the_worker_consumes_and_gone_after_it_stops(
        tmp_path: Path) -> None:
    beat = tmp_path / "local" / "worker.heartbeat"
    env = {**os.environ, "DOCQA_DATA_DIR": str(tmp_path / "data"),
           "DOCQA_REDIS_URL": REDIS_URL, "DOCQA_WORKER__HEARTBEAT_FILE": str(beat),
           "DOCQA_WORKER__HEARTBEAT_INTERVAL_S": "0.5", "DOCQA_LOG_FORMAT": "text",
           "PYTHONPATH": os.pathsep.join([str(NETGUARD), str(ROOT)])}
    log = (tmp_path / "worker.log").open("wb")
    worker = subprocess.Popen([sys.executable, "-m", "service.cli", "worker"], env=env,
                              stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 180
        while health_age(beat) is None:
            assert worker.poll() is None, (tmp_path / "worker.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "no heartbeat file"
            time.sleep(0.2)
        assert probe(beat, 30) == 0
        first = beat.stat().st_mtime_ns
        while beat.stat().st_mtime_ns == first:  # touched again on the worker's timer
            assert time.monotonic() < deadline, "the heartbeat is not renewed"
            time.sleep(0.2)
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=120) == 0
        assert not beat.exists() and probe(beat, 30) == 1
    finally:
        if worker.poll() is None:
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait()
        log.close()


def health_age(path: Path) -> float | None:
    from workers.health import age

    return age(path)
