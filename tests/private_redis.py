"""A redis-server of the test session's own: a free port, a temporary directory, no
persistence. Tests never touch the machine's Redis on 6379 (other work on the machine uses
it, and two test runs would wipe each other's databases)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import redis

URL_ENV = "DOCQA_TEST_REDIS_SERVER"  # redis://127.0.0.1:PORT of the session's server


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PrivateRedis:
    def __init__(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("the tests need the redis-server binary (Debian package "
                               "redis-server; scripts/test.sh installs it)")
        self.dir = Path(tempfile.mkdtemp(prefix="docqa-test-redis-"))
        self.port = _free_port()
        self.proc = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.dir),
             "--save", "", "--appendonly", "no", "--databases", "32"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        self.url = f"redis://127.0.0.1:{self.port}"
        client = redis.Redis(port=self.port, socket_connect_timeout=1)
        deadline = time.monotonic() + 30
        while True:
            try:
                client.ping()
                break
            except redis.RedisError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError("the test session's redis-server did not start") from None
                time.sleep(0.05)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        shutil.rmtree(self.dir, ignore_errors=True)


def session_redis_url(db: int) -> str:
    """Database ``db`` of the session's redis-server (started by tests/conftest.py)."""
    base = os.environ.get(URL_ENV)
    if not base:
        raise RuntimeError(f"{URL_ENV} is not set: run the tests with pytest from the "
                           "repository root (tests/conftest.py starts the server)")
    return f"{base}/{db}"
