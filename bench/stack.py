"""A docqa stack on loopback for benchmarks: a private redis-server, the Chroma server, a
Celery worker and the API as subprocesses on one data directory (what
tests/integration/conftest.py starts for the tests, without pytest). Nothing listens
beyond 127.0.0.1."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from service.cli.processes import chroma_command, free_port, wait_http

BENCH_KEY = "bench-key-0123456789abcdef"  # noqa: S105 - a loopback stack's own key


@dataclass
class LocalStack:
    url: str
    key: str
    data_dir: Path
    chroma_port: int
    env: dict[str, str]
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def log(self, name: str) -> str:
        path = self.data_dir / "logs" / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def pid(self, name: str) -> int:
        return self.procs[name].pid


def _stop(procs: dict[str, subprocess.Popen[bytes]]) -> None:
    for p in procs.values():
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for p in procs.values():
        try:
            p.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)


@contextmanager
def sigterm_unwinds() -> Iterator[None]:
    """SIGTERM raises SystemExit here, so ``finally`` blocks run. Python's default for it
    ends the process at once: a benchmark killed that way left its whole stack (started
    in sessions of their own) running, and holding its data directory."""
    if threading.current_thread() is not threading.main_thread():
        yield  # only the main thread may set handlers; its own default stays
        return

    def unwind(signum: int, _frame: object) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second one must not cut the cleanup
        raise SystemExit(128 + signum)

    before = signal.signal(signal.SIGTERM, unwind)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, before)


@contextmanager
def local_stack(data: Path, redis_url: str | None = None, tenant: str = "bench",
                extra_env: dict[str, str] | None = None) -> Iterator[LocalStack]:
    """The stack on ``data`` (created), with Redis at ``redis_url`` (flushed first) or a
    private redis-server of its own; one API key, ``BENCH_KEY``, for ``tenant``."""
    with sigterm_unwinds():
        yield from _local_stack(data, redis_url, tenant, extra_env)


def _local_stack(data: Path, redis_url: str | None, tenant: str,
                 extra_env: dict[str, str] | None) -> Iterator[LocalStack]:
    import redis

    private = None
    if redis_url is None:
        from tests.private_redis import PrivateRedis

        private = PrivateRedis()
        redis_url = private.url + "/0"
    redis.Redis.from_url(redis_url, socket_connect_timeout=2).flushdb()
    (data / "logs").mkdir(parents=True, exist_ok=True)
    chroma_port, api_port = free_port(), free_port()
    env = {
        **os.environ,
        "DOCQA_DATA_DIR": str(data),
        "DOCQA_REDIS_URL": redis_url,
        "DOCQA_CHROMA__HOST": "127.0.0.1",
        "DOCQA_CHROMA__PORT": str(chroma_port),
        "DOCQA_HOST": "127.0.0.1",
        "DOCQA_PORT": str(api_port),
        "DOCQA_API_KEYS": f"{tenant}:{BENCH_KEY}",
        "PYTHONPATH": os.pathsep.join([str(Path(__file__).resolve().parents[1]),
                                       os.environ.get("PYTHONPATH", "")]),
        "NO_PROXY": "*",
        # a benchmark's own client makes thousands of requests: not the limits under test
        "DOCQA_RATE_LIMIT__REQUESTS_PER_MINUTE": "0",
        "DOCQA_RATE_LIMIT__ASK_PER_MINUTE": "0",
        **(extra_env or {}),
    }
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY"):
        env.pop(var, None)
    st = LocalStack(f"http://127.0.0.1:{api_port}", BENCH_KEY, data, chroma_port, env)

    def start(name: str, cmd: list[str]) -> None:
        log = (data / "logs" / f"{name}.log").open("ab")
        st.procs[name] = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT,
                                          start_new_session=True)

    try:
        start("chroma", chroma_command(data / "chroma", "127.0.0.1", chroma_port))
        if not wait_http(f"http://127.0.0.1:{chroma_port}/api/v2/heartbeat", 60):
            raise RuntimeError("Chroma did not start:\n" + st.log("chroma")[-2000:])
        start("worker", [sys.executable, "-m", "service.cli", "worker"])
        start("api", [sys.executable, "-m", "service.cli", "serve"])
        if not wait_http(f"{st.url}/readyz", 240, list(st.procs.values())):
            raise RuntimeError("the stack did not become ready:\n" + st.log("api")[-3000:]
                               + st.log("worker")[-3000:])
        # Celery says "ready" before its child has loaded the models (workers/app.py logs
        # "worker child ready" after its warm-up): what is timed must not include that
        deadline = time.monotonic() + 120
        while "worker child ready" not in st.log("worker") and time.monotonic() < deadline:
            time.sleep(0.5)
        yield st
    finally:
        _stop(st.procs)
        if private is not None:
            private.stop()


def tree_pids(pid: int) -> Iterator[int]:
    """A process and its live descendants (one that ends meanwhile is left out)."""
    todo = [pid]
    while todo:
        p = todo.pop()
        try:
            kids = Path(f"/proc/{p}/task/{p}/children").read_text().split()
        except OSError:
            continue
        yield p
        todo += [int(k) for k in kids]


def tree_rss_mb(pid: int) -> float:
    """RSS of a process and its descendants in MB (a worker's model lives in its child)."""
    total = 0
    for p in tree_pids(pid):
        try:
            status = Path(f"/proc/{p}/status").read_text()
        except OSError:
            continue
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1]) * 1024
    return round(total / 2**20, 1)
