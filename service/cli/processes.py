"""Commands that start processes: ``serve`` (the API), ``worker`` (a Celery worker, in its
own package: started as ``python -m workers``), and ``up`` (a private Redis unless one is
configured, Chroma, a worker and the API on one machine, supervised)."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import click
import httpx
import redis
import uvicorn

from core.crypto import MASTER_KEY_FILE, load_or_create_master_key
from core.keys import issue_key
from core.logging import configure_process
from core.registry import open_repository
from core.settings import Settings
from service.api.app import create_app
from service.cli import localredis
from service.cli.common import settings_from
from service.cli.keys import audit_key_event
from service.cli.supervise import Supervisor


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def redis_reachable(url: str) -> str | None:
    """None when Redis answers PING, else a one-line reason."""
    try:
        redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=2).ping()
        return None
    except Exception as exc:  # noqa: BLE001
        return f"{type(exc).__name__}: {exc}"


def wait_http(url: str, timeout: float, procs: list[subprocess.Popen[bytes]] | None = None) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if procs and any(p.poll() is not None for p in procs):
            return False
        try:
            if httpx.get(url, timeout=2, trust_env=False).status_code == 200:
                return True
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    return False


def reachable_host(bind: str) -> str:
    """Where this machine reaches a server bound to ``bind``: a wildcard bind (all
    interfaces) on the loopback, an IPv6 address in brackets."""
    if bind in ("", "0.0.0.0"):  # noqa: S104 - compared, not bound
        return "127.0.0.1"
    if bind == "::":
        return "[::1]"
    return f"[{bind}]" if ":" in bind else bind


def chroma_command(path: Path, host: str, port: int) -> list[str]:
    exe = Path(sys.executable).with_name("chroma")
    binary = str(exe) if exe.exists() else (shutil.which("chroma") or "chroma")
    return [binary, "run", "--path", str(path), "--host", host, "--port", str(port)]


@click.command()
@click.option("--host", default=None, help="API bind address")
@click.option("--port", type=int, default=None, help="API port")
def serve(host: str | None, port: int | None) -> None:
    """Run the HTTP API."""
    settings = settings_from(host=host, port=port)
    settings.check_key_strength()  # a short or example key is refused before anything starts
    configure_process(settings, "api")
    # logging is ours (core/logging.py): uvicorn's lines go through it, and the access lines
    # come from service/api/observability.py (with the request id)
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port,
                log_level=settings.log_level.lower(), log_config=None, access_log=False,
                timeout_graceful_shutdown=20)


WORKER_COMMAND = [sys.executable, "-m", "workers"]


@click.command()
@click.option("--loglevel", default=None, help="default: DOCQA_LOG_LEVEL (INFO)")
@click.option("--queues", default=None,
              help="comma-separated queues to consume, e.g. docqa.chroma beside the Chroma "
                   "server (default: DOCQA_WORKER__QUEUES, else every queue this machine can "
                   "serve)")
def worker(loglevel: str | None, queues: str | None) -> None:
    """Run a Celery ingest worker (the same as ``python -m workers``)."""
    argv = [*WORKER_COMMAND, *(["--loglevel", loglevel] if loglevel else []),
            *(["--queues", queues] if queues else [])]
    sys.stdout.flush()
    sys.stderr.flush()
    # this process becomes the worker: same pid, signals and exit code for its supervisor
    os.execv(argv[0], argv)  # noqa: S606 - argv is ours (this interpreter), no shell


def redis_configured(settings: Settings) -> bool:
    """Whether a Redis URL was given (``DOCQA_REDIS_URL``), as opposed to the default that
    ``docqa up`` replaces with a private server of its own."""
    return "redis_url" in settings.model_fields_set and bool(settings.redis_url.strip())


@click.command()
@click.option("--host", default=None, help="API bind address (default 127.0.0.1)")
@click.option("--port", type=int, default=None, help="API port (default 8080)")
@click.option("--data-dir", type=click.Path(path_type=Path), default=None)
def up(host: str | None, port: int | None, data_dir: Path | None) -> None:
    """Start Chroma, a worker and the API (and a private Redis in the data directory unless
    DOCQA_REDIS_URL is set); stop them all on Ctrl-C/SIGTERM."""
    settings = settings_from(host=host, port=port, data_dir=data_dir)
    settings.check_key_strength()  # before any process starts
    private_redis = not redis_configured(settings)
    redis_exe = localredis.binary() if private_redis else None
    if private_redis and redis_exe is None:
        click.echo("redis-server is not installed: install Debian's 'redis-server' package "
                   "(scripts/setup.sh does), or set DOCQA_REDIS_URL to a running Redis.",
                   err=True)
        sys.exit(2)
    if not private_redis:
        reason = redis_reachable(settings.redis_url)
        if reason:
            click.echo(
                f"Redis is not reachable at DOCQA_REDIS_URL ({reason}). Start that Redis "
                "(e.g. 'redis-server'), or unset DOCQA_REDIS_URL and docqa up runs a "
                "private one.", err=True)
            sys.exit(2)
    data = settings.data_dir.resolve()
    chroma_dir = settings.chroma_dir.resolve()  # where the worker scrubs it after erasures
    (data / "logs").mkdir(parents=True, exist_ok=True)

    configured = settings.encryption_key.get_secret_value() if settings.encryption_key else None
    if load_or_create_master_key(data, configured)[1]:
        click.echo(f"generated the master key of the stored files: {data / MASTER_KEY_FILE} "
                   "(mode 0600); back it up separately from the data (docs/encryption.md)")
    # a fixed port when one is configured (so other tools, e.g. the llama-index baseline of
    # `python -m bench squad2 --baseline`, can reach this Chroma), otherwise any free one
    chroma_port = settings.chroma.port if "DOCQA_CHROMA__PORT" in os.environ else free_port()
    env = {**os.environ, "DOCQA_DATA_DIR": str(data), "DOCQA_CHROMA__HOST": "127.0.0.1",
           "DOCQA_CHROMA__PORT": str(chroma_port), "DOCQA_CHROMA__DATA_DIR": str(chroma_dir),
           "DOCQA_PORT": str(settings.port),
           "DOCQA_HOST": settings.host}
    local: localredis.LocalRedis | None = None
    if private_redis:
        # the worker and API it starts read this; its password never reaches the output
        local = localredis.prepare(data, free_port())
        env["DOCQA_REDIS_URL"] = local.url
    procs: dict[str, subprocess.Popen[bytes]] = {}
    commands: dict[str, list[str]] = {}

    def start(name: str, cmd: list[str], note: str = "") -> subprocess.Popen[bytes]:
        commands[name] = cmd
        with (data / "logs" / f"{name}.log").open("ab") as log:
            if note:
                log.write(f"--- docqa up: {note} ---\n".encode())
                log.flush()
            procs[name] = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT,
                                           start_new_session=True)
        return procs[name]

    def stop(names: tuple[str, ...]) -> None:
        for name in names:
            p = procs.get(name)
            if p and p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for name in names:
            p = procs.get(name)
            if p:
                try:
                    p.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()

    def stop_all(*_: Any) -> None:
        stop(("api", "worker", "chroma"))
        # Redis last: the worker acknowledges or requeues its task and the API finishes its
        # requests while their broker still answers; SIGTERM makes Redis fsync its AOF
        stop(("redis",))
        click.echo("docqa stopped.")

    stopping = {"flag": False}

    def on_signal(signum: int, _frame: Any) -> None:
        stopping["flag"] = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        if local is not None and redis_exe is not None:
            click.echo(f"starting Redis on {local.display_url} (data in {local.dir})")
            start("redis", localredis.command(local, redis_exe))
            if not localredis.wait_ready(local, procs["redis"], 120):
                raise click.ClickException(
                    f"Redis did not start; see {data / 'logs' / 'redis.log'}")
        click.echo(f"starting Chroma on 127.0.0.1:{chroma_port} (data in {chroma_dir})")
        start("chroma", chroma_command(chroma_dir, "127.0.0.1", chroma_port))
        if not wait_http(f"http://127.0.0.1:{chroma_port}/api/v2/heartbeat", 60, [procs["chroma"]]):
            raise click.ClickException(f"Chroma did not start; see {data / 'logs' / 'chroma.log'}")
        click.echo("starting worker and API (loading models)…")
        start("worker", WORKER_COMMAND)
        start("api", [sys.executable, "-m", "service.cli", "serve"])
        url = f"http://{reachable_host(settings.host)}:{settings.port}"
        if not wait_http(f"{url}/readyz", 300, list(procs.values())):
            raise click.ClickException(f"the service did not become ready; logs in {data / 'logs'}")
        click.echo(f"docqa is up at {url}  (OpenAPI: {url}/schema, logs: {data / 'logs'})")

        repo = open_repository(settings)
        if not settings.static_api_keys and repo.count_keys() == 0:
            key_id, key = issue_key(repo, "default", "created by docqa up")
            audit_key_event(settings, "key_create", "default", key_id)
            click.echo(f"API key for tenant 'default' (shown once, store it): {key}")
        click.echo("Press Ctrl-C to stop.")

        # a child that dies is started again (backoff, logged); only Ctrl-C/SIGTERM stops
        supervisor = Supervisor(
            procs, lambda name: start(name, commands[name], note=f"restarting {name}"),
            lambda line: click.echo(line, err=True))
        while not stopping["flag"]:
            supervisor.tick()
            time.sleep(0.5)
    finally:
        stop_all()


