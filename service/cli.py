"""The ``docqa`` command line: the composition root that starts every process.

    docqa up        Chroma server + Celery worker + API on one machine, supervised
    docqa serve     the API only
    docqa worker    a Celery worker only
    docqa keys create --tenant T [--name N]
    docqa keys list [--tenant T] [--json]
    docqa keys revoke KEY_ID
    docqa ingest PATH...
    docqa ask "question"
    docqa audit verify|tail
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Literal

import click

from core.settings import Settings, apply_offline_env


def _settings(**overrides: Any) -> Settings:
    apply_offline_env()
    return Settings(**{k: v for k, v in overrides.items() if v is not None})


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def redis_reachable(url: str) -> str | None:
    """None when Redis answers PING, else a one-line reason."""
    import redis

    try:
        redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=2).ping()
        return None
    except Exception as exc:  # noqa: BLE001
        return f"{type(exc).__name__}: {exc}"


def wait_http(url: str, timeout: float, procs: list[subprocess.Popen[bytes]] | None = None) -> bool:
    import httpx

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


def chroma_command(path: Path, host: str, port: int) -> list[str]:
    exe = Path(sys.executable).with_name("chroma")
    binary = str(exe) if exe.exists() else (shutil.which("chroma") or "chroma")
    return [binary, "run", "--path", str(path), "--host", host, "--port", str(port)]


@click.group()
def main() -> None:
    """docqa: private document question answering."""


@main.command()
@click.option("--host", default=None, help="API bind address")
@click.option("--port", type=int, default=None, help="API port")
def serve(host: str | None, port: int | None) -> None:
    """Run the HTTP API."""
    import uvicorn

    settings = _settings(host=host, port=port)
    _observability(settings, "api")
    from service.app import create_app

    # logging is ours (core/logging.py): uvicorn's lines go through it, and the access lines
    # come from service/observability.py (with the request id)
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port,
                log_level=settings.log_level.lower(), log_config=None, access_log=False,
                timeout_graceful_shutdown=20)


@main.command()
@click.option("--loglevel", default=None, help="default: DOCQA_LOG_LEVEL (INFO)")
def worker(loglevel: str | None) -> None:
    """Run a Celery ingest worker."""
    settings = _settings()
    _observability(settings, "worker")
    from workers.app import run_worker

    if settings.metrics.enabled and settings.metrics.worker_port:
        from core.metrics import serve_worker_metrics

        serve_worker_metrics(settings.metrics.worker_host, settings.metrics.worker_port)
    run_worker(settings, (loglevel or settings.log_level).upper())


def _observability(settings: Settings, role: Literal["api", "worker"]) -> None:
    """Logs (JSON or text, core/logging.py) and metrics files (multiprocess directory,
    core/metrics.py) of a long-running process; before anything records a metric."""
    from core.logging import configure_logging
    from core.metrics import setup_multiprocess

    configure_logging(settings, role)
    if settings.metrics.enabled:
        setup_multiprocess(settings.metrics_dir)


@main.group()
def keys() -> None:
    """Manage API keys (only hashes are stored)."""


@keys.command("create")
@click.option("--tenant", required=True)
@click.option("--name", default="")
@click.option("--data-dir", type=click.Path(path_type=Path), default=None)
def keys_create(tenant: str, name: str, data_dir: Path | None) -> None:
    """Create an API key for TENANT and print it (shown once; only its hash is stored).

    The key goes to stdout alone (for scripts); its id, by which it is listed and revoked,
    to stderr."""
    from core.errors import BadInputError
    from core.keys import issue_key
    from core.registry import open_repository

    settings = _settings(data_dir=data_dir)
    try:
        key_id, key = issue_key(open_repository(settings), tenant, name)
    except BadInputError as exc:
        raise click.UsageError(exc.detail) from None
    _audit_key_event(settings, "key_create", tenant, key_id)
    click.echo(key)
    click.echo(f"created key {key_id} for tenant {tenant!r} (the key is shown only this once)",
               err=True)


@keys.command("list")
@click.option("--tenant", default=None, help="only this tenant's keys")
@click.option("--json", "as_json", is_flag=True, help="print JSON (one array)")
@click.option("--data-dir", type=click.Path(path_type=Path), default=None)
def keys_list(tenant: str | None, as_json: bool, data_dir: Path | None) -> None:
    """List stored API keys (ids, tenants, names, dates; never keys or hashes).

    Keys configured in DOCQA_API_KEYS are not stored, so not listed."""
    import json

    from core.keys import public_record
    from core.registry import open_repository

    records = [public_record(k) for k in open_repository(_settings(data_dir=data_dir))
               .list_keys(tenant)]
    if as_json:
        click.echo(json.dumps(records, indent=2))
        return
    if not records:
        click.echo("no keys", err=True)
        return
    rows = [("ID", "TENANT", "NAME", "CREATED", "STATUS")] + [
        (r["id"], r["tenant"], r["name"], r["created_at"][:19] + "Z",
         "active" if r["active"] else f"revoked {r['revoked_at'][:19]}Z") for r in records
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    for row in rows:
        click.echo("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=False)) + "  " + row[4])


@keys.command("revoke")
@click.argument("key_id")
@click.option("--data-dir", type=click.Path(path_type=Path), default=None)
def keys_revoke(key_id: str, data_dir: Path | None) -> None:
    """Revoke the key KEY_ID (see `docqa keys list`): it stops working at once."""
    from core.keys import valid_key_id
    from core.registry import open_repository

    settings = _settings(data_dir=data_dir)
    repo = open_repository(settings)
    if not valid_key_id(key_id) or not repo.revoke_key(key_id):
        click.echo(f"no API key with id {key_id!r}", err=True)
        sys.exit(1)
    _audit_key_event(settings, "key_revoke",
                     next((k.tenant for k in repo.list_keys() if k.id == key_id), None), key_id)
    click.echo(f"revoked {key_id}")


def _audit_key_event(settings: Settings, event: str, tenant: str | None, key_id: str) -> None:
    """Put a key change made on this machine's command line on the audit record (who:
    ``cli``). Fails closed: a created key is then not shown, a revocation is reported as
    not recorded (exit 1)."""
    from core.audit import AuditUnavailableError, RequestAudit, open_audit, request_id

    try:
        RequestAudit(open_audit(settings), tenant, "cli", request_id(None)).record(
            event, status="ok", target_key_id=key_id)
    except AuditUnavailableError as exc:
        shown = " (not shown; revoke it)" if event == "key_create" else ""
        raise click.ClickException(
            f"{event} {key_id} done{shown} but not on the audit record: {exc.detail}") from None


@main.command()
@click.option("--port", type=int, default=None, help="API port (default 8080)")
@click.option("--data-dir", type=click.Path(path_type=Path), default=None)
def up(port: int | None, data_dir: Path | None) -> None:
    """Start Chroma, a worker and the API; stop them all on Ctrl-C/SIGTERM."""
    settings = _settings(port=port, data_dir=data_dir)
    reason = redis_reachable(settings.redis_url)
    if reason:
        click.echo(
            f"Redis is not reachable at {settings.redis_url} ({reason}). Start it with "
            "'redis-server --daemonize yes' (or set DOCQA_REDIS_URL).", err=True)
        sys.exit(2)
    data = settings.data_dir.resolve()
    (data / "logs").mkdir(parents=True, exist_ok=True)
    from core.crypto import MASTER_KEY_FILE, load_or_create_master_key

    configured = settings.encryption_key.get_secret_value() if settings.encryption_key else None
    if load_or_create_master_key(data, configured)[1]:
        click.echo(f"generated the master key of the stored files: {data / MASTER_KEY_FILE} "
                   "(mode 0600); back it up separately from the data (README: Encryption at rest)")
    # a fixed port when one is configured (so other tools, e.g. `docqa eval --baseline`, can
    # reach this Chroma), otherwise any free one
    chroma_port = settings.chroma.port if "DOCQA_CHROMA__PORT" in os.environ else free_port()
    env = {**os.environ, "DOCQA_DATA_DIR": str(data), "DOCQA_CHROMA__HOST": "127.0.0.1",
           "DOCQA_CHROMA__PORT": str(chroma_port), "DOCQA_PORT": str(settings.port),
           "DOCQA_HOST": settings.host}
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

    def stop_all(*_: Any) -> None:
        for name in ("api", "worker", "chroma"):
            p = procs.get(name)
            if p and p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for name in ("api", "worker", "chroma"):
            p = procs.get(name)
            if p:
                try:
                    p.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    p.kill()
        click.echo("docqa stopped.")

    stopping = {"flag": False}

    def on_signal(signum: int, _frame: Any) -> None:
        stopping["flag"] = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        click.echo(f"starting Chroma on 127.0.0.1:{chroma_port} (data in {data / 'chroma'})")
        start("chroma", chroma_command(data / "chroma", "127.0.0.1", chroma_port))
        if not wait_http(f"http://127.0.0.1:{chroma_port}/api/v2/heartbeat", 60, [procs["chroma"]]):
            raise click.ClickException(f"Chroma did not start; see {data / 'logs' / 'chroma.log'}")
        me = [sys.executable, "-m", "service.cli"]
        click.echo("starting worker and API (loading models)…")
        start("worker", [*me, "worker"])
        start("api", [*me, "serve"])
        url = f"http://{settings.host}:{settings.port}"
        if not wait_http(f"{url}/readyz", 300, list(procs.values())):
            raise click.ClickException(f"the service did not become ready; logs in {data / 'logs'}")
        click.echo(f"docqa is up at {url}  (OpenAPI: {url}/schema, logs: {data / 'logs'})")
        from core.keys import issue_key
        from core.registry import open_repository

        repo = open_repository(settings)
        if not settings.static_api_keys and repo.count_keys() == 0:
            key_id, key = issue_key(repo, "default", "created by docqa up")
            _audit_key_event(settings, "key_create", "default", key_id)
            click.echo(f"API key for tenant 'default' (shown once, store it): {key}")
        click.echo("Press Ctrl-C to stop.")
        from service.supervise import Supervisor

        # a child that dies is started again (backoff, logged); only Ctrl-C/SIGTERM stops
        supervisor = Supervisor(
            procs, lambda name: start(name, commands[name], note=f"restarting {name}"),
            lambda line: click.echo(line, err=True))
        while not stopping["flag"]:
            supervisor.tick()
            time.sleep(0.5)
    finally:
        stop_all()


def _client(url: str | None, api_key: str | None):  # type: ignore[no-untyped-def]
    from service.client import DocqaClient

    base, key = _address(url, api_key)
    return DocqaClient(base, key, wait_on_429_s=120)


def _address(url: str | None, api_key: str | None) -> tuple[str, str]:
    """The API URL and key: flags, then $DOCQA_API_KEY, then the first of DOCQA_API_KEYS."""
    settings = _settings()
    key = api_key or os.environ.get("DOCQA_API_KEY") or next(iter(settings.static_api_keys), "")
    if not key:
        raise click.UsageError("give --api-key, or set DOCQA_API_KEY or DOCQA_API_KEYS")
    return url or f"http://{settings.host}:{settings.port}", key


url_opt = click.option("--url", default=None, help="API URL (default from settings)")
key_opt = click.option("--api-key", default=None, help="API key (default $DOCQA_API_KEY)")


# ---------------------------------------------------------------- ingest progress

FOLLOW_AT_ONCE = 4  # event streams followed at a time (workers take files in upload order)
_FINAL = ("ready", "failed")


def _stage_text(doc: dict[str, Any]) -> str:
    """``parsing 3/12 pages``, ``embedding 40/96 chunks``, ``queued``."""
    p = doc.get("progress") or {}
    stage, total = str(p.get("stage") or doc.get("status", "")), int(p.get("total") or 0)
    if not total or stage in ("queued", *_FINAL):
        return stage
    unit = p.get("unit") or ""
    return f"{stage} {p.get('done', 0)}/{total}" + (f" {unit}" if unit else "")


def _outcome_text(doc: dict[str, Any]) -> str:
    if doc.get("status") == "ready":
        chunks, pages = int(doc.get("chunks") or 0), int(doc.get("pages") or 0)
        return (f"ready ({chunks} chunk{'s' * (chunks != 1)}, "
                f"{pages} page{'s' * (pages != 1)})")
    return f"failed: {doc.get('error') or 'unknown error'}"


def _eta_text(elapsed: float, done: int, total: int) -> str:
    """Files still to come at the pace of those finished so far."""
    if done <= 0 or done >= total:
        return ""
    minutes, seconds = divmod(round(elapsed / done * (total - done)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"ETA {hours}:{minutes:02d}:{seconds:02d}" if hours else f"ETA {minutes}:{seconds:02d}"


class _PlainIngestView:
    """Output for a pipe or a log (no TTY): plain lines, no control codes. A line per file
    when its stage changes (within a stage at most one per ``EVERY_S``), and one per
    finished file with the overall count and ETA."""

    EVERY_S = 2.0

    def __init__(self, names: dict[str, str]) -> None:
        import threading

        self.names, self.lock = names, threading.Lock()
        self.total, self.finished, self.started = len(names), 0, time.monotonic()
        self.last: dict[str, tuple[str, str, float]] = {}  # id → (stage, text, when)

    def begin(self, doc_id: str) -> None:
        pass

    def update(self, doc_id: str, doc: dict[str, Any]) -> None:
        stage, text = str((doc.get("progress") or {}).get("stage")), _stage_text(doc)
        now = time.monotonic()
        with self.lock:
            before = self.last.get(doc_id)
            if before and (before[1] == text or (before[0] == stage
                                                 and now - before[2] < self.EVERY_S)):
                return
            self.last[doc_id] = (stage, text, now)
            click.echo(f"{self.names[doc_id]}: {text}")

    def end(self, doc_id: str, outcome: str) -> None:
        with self.lock:
            self.finished += 1
            eta = _eta_text(time.monotonic() - self.started, self.finished, self.total)
            click.echo(f"{self.names[doc_id]}: {outcome} "
                       f"[{self.finished}/{self.total} files{', ' + eta if eta else ''}]")

    def close(self) -> None:
        pass


class _RichIngestView:
    """Terminal output (``rich``): an overall bar (files finished, ETA) and one bar per file
    being followed (stage, done/total and unit); a finished file leaves a line above."""

    def __init__(self, names: dict[str, str]) -> None:
        import threading

        from rich.progress import (
            BarColumn,
            Progress,
            TaskID,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self.names = names
        self.bars = Progress(TextColumn("{task.description}"), BarColumn(),
                             TextColumn("{task.fields[count]}"), TimeElapsedColumn(),
                             TimeRemainingColumn())
        self.overall = self.bars.add_task("all files", total=len(names),
                                          count=f"0/{len(names)} files")
        self.tasks: dict[str, TaskID] = {}
        self.stages: dict[str, str] = {}
        self.finished = 0
        self.lock = threading.Lock()
        self.bars.start()

    def begin(self, doc_id: str) -> None:
        self.tasks[doc_id] = self.bars.add_task(self.names[doc_id], total=None, count="")

    def update(self, doc_id: str, doc: dict[str, Any]) -> None:
        p = doc.get("progress") or {}
        stage, total = str(p.get("stage")), int(p.get("total") or 0) or None
        task = self.tasks[doc_id]
        count = _stage_text(doc).removeprefix(stage).strip()
        if self.stages.get(doc_id) != stage:  # a new stage starts its own bar (and ETA)
            self.stages[doc_id] = stage
            self.bars.reset(task, total=total, completed=int(p.get("done") or 0))
        self.bars.update(task, description=f"{self.names[doc_id]} · {stage}", total=total,
                         completed=int(p.get("done") or 0), count=count)

    def end(self, doc_id: str, outcome: str) -> None:
        with self.lock:  # the follower threads finish files concurrently
            self.bars.remove_task(self.tasks.pop(doc_id))
            self.finished += 1
            self.bars.console.print(f"{self.names[doc_id]}: {outcome}", highlight=False,
                                    markup=False)
            self.bars.update(self.overall, advance=1,
                             count=f"{self.finished}/{len(self.names)} files")

    def close(self) -> None:
        self.bars.stop()


def _ingest_view(names: dict[str, str]) -> _PlainIngestView | _RichIngestView:
    if not sys.stdout.isatty():
        return _PlainIngestView(names)
    try:
        import rich  # noqa: F401 - present with litestar; plain lines without it
    except ImportError:
        return _PlainIngestView(names)
    return _RichIngestView(names)


def _follow(client: Any, doc_id: str, deadline: float, view: Any) -> dict[str, Any]:
    """The document's events until it is ready or failed (the client reconnects a broken
    stream); polling ``GET`` instead if the server has no events route."""
    from service.client import DocqaAPIError

    try:
        for doc in client.document_events(doc_id, timeout=max(0.0, deadline - time.monotonic())):
            if doc["status"] in _FINAL:
                return dict(doc)
            view.update(doc_id, doc)
    except DocqaAPIError as exc:
        if exc.status != 404:
            raise
        client.document(doc_id)  # 404 again: the document is gone; else an older server
    while True:
        doc = client.document(doc_id)
        if doc["status"] in _FINAL:
            return dict(doc)
        view.update(doc_id, doc)
        if time.monotonic() > deadline:
            raise TimeoutError(f"document {doc_id} not finished")
        time.sleep(1.0)


def _follow_all(client: Any, names: dict[str, str], timeout: float) -> dict[str, dict[str, Any]]:
    """Follow every document's progress, ``FOLLOW_AT_ONCE`` streams at a time in upload
    order (daemon threads: Ctrl-C ends the command without waiting for them)."""
    import queue
    import threading

    import httpx

    from service.client import DocqaAPIError

    todo: queue.SimpleQueue[str] = queue.SimpleQueue()
    for doc_id in names:
        todo.put(doc_id)
    final: dict[str, dict[str, Any]] = {}
    deadline = time.monotonic() + timeout
    view = _ingest_view(names)

    def run() -> None:
        while True:
            try:
                doc_id = todo.get_nowait()
            except queue.Empty:
                return
            view.begin(doc_id)
            try:
                doc = _follow(client, doc_id, deadline, view)
                final[doc_id] = doc
                outcome = _outcome_text(doc)
            except TimeoutError:
                outcome = f"not finished after {timeout:g} s"
            except (DocqaAPIError, httpx.HTTPError) as exc:
                final[doc_id] = {"status": "failed", "error": str(exc)}
                outcome = f"failed: {exc}"
            view.end(doc_id, outcome)

    threads = [threading.Thread(target=run, daemon=True, name=f"follow-{i}")
               for i in range(min(FOLLOW_AT_ONCE, len(names)))]
    try:
        for t in threads:
            t.start()
        for t in threads:
            while t.is_alive():
                t.join(0.5)
    finally:
        view.close()
    return final


@main.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@url_opt
@key_opt
@click.option("--timeout", default=3600.0)
@click.option("--redact-pii", is_flag=True,
              help="replace e-mails, phones, IBANs, cards and ID numbers by placeholders")
def ingest(paths: tuple[Path, ...], url: str | None, api_key: str | None, timeout: float,
           redact_pii: bool) -> None:
    """Upload files or folders and follow each one until it is ready.

    On a terminal: a bar per file being processed (stage, pages or chunks) and an overall
    one (files finished, ETA). Piped: plain progress lines. Exit 1 if any file failed.
    """
    from service.client import DocqaAPIError

    files = [f for p in paths
             for f in ([p] if p.is_file() else sorted(x for x in p.rglob("*") if x.is_file()))]
    client = _client(url, api_key)
    ids: dict[str, Path] = {}
    with click.progressbar(files, label="uploading", show_pos=True) as bar:
        for f in bar:
            try:
                ids[client.upload(f, redact_pii=True if redact_pii else None)["id"]] = f
            except DocqaAPIError as exc:
                click.echo(f"\n{f}: {exc}", err=True)
    final = _follow_all(client, {doc_id: str(path) for doc_id, path in ids.items()}, timeout)
    unfinished = [ids[doc_id] for doc_id in ids if doc_id not in final]
    failed = {k: v for k, v in final.items() if v["status"] == "failed"}
    for doc_id, doc in failed.items():
        click.echo(f"{ids[doc_id]}: failed: {doc['error']}", err=True)
    click.echo(f"{len(final) - len(failed)} ready, {len(failed)} failed"
               + (f", {len(unfinished)} not finished after {timeout:g} s" if unfinished else ""))
    if failed or unfinished:
        sys.exit(1)


@main.command()
@click.argument("question")
@url_opt
@key_opt
@click.option("--json", "as_json", is_flag=True, help="print the raw JSON response")
def ask(question: str, url: str | None, api_key: str | None, as_json: bool) -> None:
    """Ask a question and print the answer with its citations."""
    import json

    result = _client(url, api_key).ask(question)
    if as_json:
        click.echo(json.dumps(result, indent=2))
        return
    if result["status"] == "not_found":
        click.echo("Not found in your documents.")
        return
    click.echo(result["answer"])
    for c in result["citations"]:
        click.echo(f"  [{c['n']}] {c['filename']} p.{c['page']} ({c['start']}-{c['end']}): "
                   f"\"{c['quote']}\"")


@main.group()
def audit() -> None:
    """Check or read the audit log (DATA/audit.log unless DOCQA_AUDIT__PATH)."""


audit_path_opt = click.option("--path", "path", type=click.Path(path_type=Path), default=None,
                              help="audit log file (default from settings)")


@audit.command("verify")
@audit_path_opt
def audit_verify(path: Path | None) -> None:
    """Check the hash chain; exit 0 when intact, 1 when tampered or truncated."""
    from core.audit import verify

    path = path or _settings().audit_path
    if not path.exists() and not Path(str(path) + ".head").exists():
        click.echo(f"no audit log at {path}", err=True)
        sys.exit(2)
    result = verify(path)
    click.echo(result.message(path), err=not result.ok)
    sys.exit(0 if result.ok else 1)


@audit.command("tail")
@audit_path_opt
@click.option("-n", "lines", type=int, default=10, show_default=True)
def audit_tail(path: Path | None, lines: int) -> None:
    """Print the last entries (JSON lines)."""
    from core.audit import tail

    path = path or _settings().audit_path
    if not path.exists():
        raise click.ClickException(f"no audit log at {path}")
    for line in tail(path, lines):
        click.echo(line)


@main.group(name="eval")
def eval_() -> None:
    """Evaluate answer quality against a running service (see bench/)."""


@eval_.command()
@click.option("--split", type=click.Choice(["dev", "test", "all"]), default="test",
              show_default=True, help="dev = even articles (tune), test = odd articles (report)")
@click.option("--n", "n", type=int, default=200, show_default=True,
              help="answerable and unanswerable questions each")
@click.option("--seed", type=int, default=7, show_default=True)
@click.option("--json", "json_out", type=click.Path(path_type=Path), default=None,
              help="write the metrics of both systems as JSON here")
@click.option("--details", "details_out", type=click.Path(path_type=Path), default=None,
              help="write every question's answer and citations as JSON here")
@click.option("--baseline", is_flag=True, help="also run plain llama-index RAG in this process")
@click.option("--data", "data_path", type=click.Path(exists=True, path_type=Path), default=None,
              help="SQuAD 2.0 JSON (default ../shared/eval/squad2/dev-v2.0.json)")
@click.option("--chroma-url", default=None,
              help="Chroma server for the baseline (default from settings: DOCQA_CHROMA__*)")
@url_opt
@key_opt
def squad2(split: str, n: int, seed: int, json_out: Path | None, details_out: Path | None,
           baseline: bool, data_path: Path | None, chroma_url: str | None, url: str | None,
           api_key: str | None) -> None:
    """Grounded answers and abstention on SQuAD 2.0, through the service's own API."""
    from urllib.parse import urlsplit

    from bench import squad2 as bench_squad2

    if chroma_url:
        parts = urlsplit(chroma_url)
        os.environ["DOCQA_CHROMA__HOST"] = parts.hostname or "127.0.0.1"
        os.environ["DOCQA_CHROMA__PORT"] = str(parts.port or 8000)
    base, key = _address(url, api_key)
    bench_squad2.run(base, key, split=split, n=n, seed=seed, baseline=baseline,
                     path=data_path or bench_squad2.DEFAULT_PATH, json_out=json_out,
                     details_out=details_out)


@eval_.command()
@click.option("--split", type=click.Choice(["train", "test"]), default="test",
              show_default=True, help="train qrels (tune) or test qrels (report)")
@click.option("--json", "json_out", type=click.Path(path_type=Path), default=None,
              help="write {hybrid, dense, keyword, config} as JSON here")
@click.option("--top-k", type=int, default=200, show_default=True,
              help="chunks asked per search (documents are ranked by their best chunk)")
@click.option("--data", "data_dir", type=click.Path(exists=True, file_okay=False,
              path_type=Path), default=None,
              help="BEIR SciFact directory (default ../shared/eval/scifact)")
@url_opt
@key_opt
def scifact(split: str, json_out: Path | None, top_k: int, data_dir: Path | None,
            url: str | None, api_key: str | None) -> None:
    """Retrieval quality on BEIR SciFact: dense, keyword and hybrid search in one run."""
    from bench import scifact as bench_scifact

    base, key = _address(url, api_key)
    bench_scifact.run(base, key, split=split, root=data_dir or bench_scifact.DEFAULT_DIR,
                      json_out=json_out, top_k=top_k)


if __name__ == "__main__":
    main()
