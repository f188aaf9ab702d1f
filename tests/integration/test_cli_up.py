"""`docqa up` on real processes: starts everything, prints a key, stops cleanly."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from service.cli.processes import free_port
from service.client import DocqaClient
from tests.integration.conftest import NETGUARD, ONNX_CACHE, REDIS_URL

pytestmark = pytest.mark.integration


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOCQA_")}
    # db 11: never shared with the session stack's worker (db 13)
    redis_url = os.environ.get("DOCQA_TEST_UP_REDIS_URL", REDIS_URL.rsplit("/", 1)[0] + "/11")
    env.update({"DOCQA_REDIS_URL": redis_url, "DOCQA_NETGUARD_LOG": str(tmp_path / "net.log"),
                "DOCQA_MODELS__ONNX_CACHE_DIR": ONNX_CACHE,
                "PYTHONPATH": os.pathsep.join([str(NETGUARD),
                                               str(Path(__file__).resolve().parents[2])])})
    env.update(extra)
    return env


def test_up_says_how_to_start_redis_when_it_is_unreachable(tmp_path: Path) -> None:
    port = free_port()  # nothing listens here
    proc = subprocess.run(
        [sys.executable, "-m", "service.cli", "up", "--data-dir", str(tmp_path)],
        env=_env(tmp_path, DOCQA_REDIS_URL=f"redis://127.0.0.1:{port}/0"),
        capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 2
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "Redis is not reachable" in lines[0] and "redis-server" in lines[0]


def test_up_starts_everything_prints_a_key_and_stops_on_sigterm(tmp_path: Path) -> None:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "service.cli", "up", "--port", str(port), "--data-dir", str(tmp_path)],
        env=_env(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True,
    )
    out: list[str] = []
    key = None
    try:
        deadline = time.monotonic() + 300
        assert proc.stdout is not None
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            out.append(line)
            if "API key for tenant 'default'" in line:
                key = line.rsplit(" ", 1)[-1].strip()
            if "Press Ctrl-C" in line:
                break
        assert key and key.startswith("dq_"), "".join(out)
        url = f"http://127.0.0.1:{port}"
        with DocqaClient(url, key, timeout=5) as client:
            assert client.readyz()["status"] == "ready"
            listing = client.documents()
            assert client.last_response.status_code == 200 and listing["total"] == 0
    finally:
        proc.send_signal(signal.SIGTERM)
        rest = proc.communicate(timeout=90)[0]
    assert proc.returncode == 0, "".join(out) + rest
    assert "docqa stopped." in rest
    # no child survives: chroma, worker and API were all stopped
    leftovers = subprocess.run(["pgrep", "-f", str(tmp_path)], capture_output=True, text=True)
    assert leftovers.stdout.strip() == "", leftovers.stdout
