"""`docqa up` on real processes: starts everything (its own Redis included), prints a key,
answers, stops cleanly."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis

from service.cli import localredis
from service.cli.processes import free_port
from service.client import DocqaClient
from tests.integration.conftest import NETGUARD, ONNX_CACHE

pytestmark = pytest.mark.integration


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """The test's environment without any DOCQA_ setting: no DOCQA_REDIS_URL, so `docqa up`
    runs a Redis of its own unless ``extra`` gives one."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOCQA_")}
    env.update({"DOCQA_NETGUARD_LOG": str(tmp_path / "net.log"),
                "DOCQA_MODELS__ONNX_CACHE_DIR": ONNX_CACHE,
                "PYTHONPATH": os.pathsep.join([str(NETGUARD),
                                               str(Path(__file__).resolve().parents[2])])})
    env.update(extra)
    return env


def test_a_configured_redis_wins_and_up_says_how_to_start_it(tmp_path: Path) -> None:
    port = free_port()  # nothing listens here
    proc = subprocess.run(
        [sys.executable, "-m", "service.cli", "up", "--data-dir", str(tmp_path)],
        env=_env(tmp_path, DOCQA_REDIS_URL=f"redis://127.0.0.1:{port}/0"),
        capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 2
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "Redis is not reachable" in lines[0] and "redis-server" in lines[0]
    assert not (tmp_path / "redis").exists()  # no private Redis instead of the one configured


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex(("127.0.0.1", port)) == 0


def _redis_pids(port: int) -> list[int]:
    """redis-server processes listening on ``port`` (Redis sets its title to
    ``redis-server 127.0.0.1:PORT``, so its config path is not on its command line)."""
    found = subprocess.run(["pgrep", "-x", "redis-server"], capture_output=True, text=True)
    pids = []
    for pid in found.stdout.split():
        try:
            title = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if f"127.0.0.1:{port}".encode() in title:
            pids.append(int(pid))
    return pids


def test_up_runs_its_own_redis_answers_and_stops_everything_on_sigterm(tmp_path: Path) -> None:
    """Nothing runs beforehand: no DOCQA_REDIS_URL (the session's Redis is on a port of its
    own, which `docqa up` is not told about)."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "service.cli", "up", "--port", str(port),
         "--data-dir", str(tmp_path)],
        env=_env(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True,
    )
    out: list[str] = []
    key = None
    redis_port = None
    config = tmp_path / "redis" / localredis.CONFIG_FILE
    try:
        deadline = time.monotonic() + 300
        assert proc.stdout is not None
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            out.append(line)
            if found := re.search(r"starting Redis on redis://127\.0\.0\.1:(\d+)/0", line):
                redis_port = int(found.group(1))
            if "API key for tenant 'default'" in line:
                key = line.rsplit(" ", 1)[-1].strip()
            if "Press Ctrl-C" in line:
                break
        assert key and key.startswith("dq_") and redis_port, "".join(out)
        assert "requirepass" not in "".join(out)
        redis_pids = _redis_pids(redis_port)
        assert len(redis_pids) == 1, redis_pids
        url = f"http://127.0.0.1:{port}"
        with DocqaClient(url, key, timeout=120) as client:
            assert client.readyz()["status"] == "ready"
            doc = client.upload_bytes("orchard.txt", b"The Halvorsen orchard grows 412 "
                                      b"apple trees.\n\nIts cider press dates from 1911.\n")
            final = client.wait_ready([doc["id"]], timeout=240)
            assert final[doc["id"]]["status"] == "ready", final
            answer = client.ask("How many apple trees does the Halvorsen orchard grow?")
            assert answer["status"] == "answered", answer
            assert "412" in answer["answer"] and answer["citations"][0]["document_id"] == doc["id"]
        # the queue went through the private server (Celery's bindings live there)
        password = next(ln.split()[1] for ln in config.read_text().splitlines()
                        if ln.startswith("requirepass "))
        private = redis.Redis(port=redis_port, password=password, socket_timeout=5)
        assert any(k.startswith(b"_kombu.binding.") for k in private.keys("*"))
        private.close()
    finally:
        proc.send_signal(signal.SIGTERM)
        rest = proc.communicate(timeout=120)[0]
    assert proc.returncode == 0, "".join(out) + rest
    assert "docqa stopped." in rest
    # no child survives: Redis, chroma, worker and API were all stopped, Redis's port closed
    assert not any(Path(f"/proc/{pid}").exists() for pid in redis_pids)
    assert not _port_open(redis_port)
    leftovers = subprocess.run(["pgrep", "-f", str(tmp_path)], capture_output=True, text=True)
    assert leftovers.stdout.strip() == "", leftovers.stdout
    assert any((tmp_path / "redis" / "appendonlydir").iterdir())  # the AOF is kept
