"""The private Redis of ``docqa up``: started when no Redis URL is configured, so nothing
has to run before the service does.

It lives in ``DATA/redis`` with its append-only file on (queued and unacknowledged ingest
messages survive a restart of ``docqa up``), listens on the loopback only, on a free TCP
port and nowhere else (no Unix socket, no TLS port), in protected mode, and needs a random
password that only the config file (mode 0600) and the environment of ``docqa up``'s own
children hold: other users of the machine can reach the port but not the data.
``docqa up`` supervises it like the Chroma server and stops it last.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import redis

CONFIG_FILE = "redis.conf"


@dataclass(frozen=True)
class LocalRedis:
    """Where the private Redis keeps its files and how it is reached."""

    dir: Path
    port: int
    password: str

    @property
    def url(self) -> str:
        return f"redis://:{self.password}@127.0.0.1:{self.port}/0"

    @property
    def display_url(self) -> str:
        """The URL without its password, for messages."""
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def config_path(self) -> Path:
        return self.dir / CONFIG_FILE


def config_text(server: LocalRedis) -> str:
    """The redis.conf of the private server. Values are quoted: the directory may hold
    spaces."""
    directory = str(server.dir.resolve()).replace("\\", "\\\\").replace('"', '\\"')
    return "\n".join([
        "# written by `docqa up` at every start (service/cli/localredis.py); edits are lost",
        "bind 127.0.0.1",
        f"port {server.port}",
        "protected-mode yes",
        # no `unixsocket` and no `tls-port` line: Redis opens neither unless told to
        f"requirepass {server.password}",
        f'dir "{directory}"',
        "appendonly yes",
        "appendfsync everysec",
        # the queue must not lose messages to eviction; the AOF is the persistence
        "maxmemory-policy noeviction",
        'save ""',
        "daemonize no",
        'logfile ""',  # stdout: docqa up puts it in DATA/logs/redis.log
        "",
    ])


def prepare(data_dir: Path, port: int) -> LocalRedis:
    """Write the config of a private Redis in ``data_dir/redis`` on ``port``, with a fresh
    password; the directory is made 0700 and the config 0600 (it holds the password)."""
    directory = (data_dir / "redis").resolve()
    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o700)
    server = LocalRedis(directory, port, secrets.token_urlsafe(24))
    path = server.config_path
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(config_text(server))
    path.chmod(0o600)  # an older file keeps its mode through O_CREAT
    return server


def binary() -> str | None:
    return shutil.which("redis-server")


def command(server: LocalRedis, exe: str) -> list[str]:
    return [exe, str(server.config_path)]


def wait_ready(server: LocalRedis, proc: subprocess.Popen[bytes], timeout: float) -> bool:
    """True once the server answers PING; False if it exits or the time runs out (loading a
    large append-only file takes a while)."""
    client = redis.Redis(host="127.0.0.1", port=server.port, password=server.password,
                         socket_connect_timeout=1, socket_timeout=2)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                return False
            try:
                if client.ping():
                    return True
            except redis.RedisError:  # refused while it starts, or busy loading its AOF
                pass
            time.sleep(0.1)
        return False
    finally:
        client.close()
