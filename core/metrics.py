"""Prometheus metrics recorded by the API and the workers (prometheus-client).

Multiprocess mode: ``docqa serve`` and ``docqa worker`` call :func:`setup_multiprocess`
first thing, which points ``PROMETHEUS_MULTIPROC_DIR`` at ``metrics.multiproc_dir`` (default
``DATA/metrics``). Every process (the API, each worker's main process and its prefork
children) then keeps its counters and histograms in memory-mapped files there, named by
host and pid, and the API's ``/metrics`` (service/api/metrics.py) adds up all the files: a scrape
of the API shows the ingest stage timings and embedded chunks of the workers on the same
machine. Files of processes of this host that no longer run are removed when a process
starts. Workers on other machines keep their own directory; ``metrics.worker_port`` makes
each such worker serve it on a port of its own.

Without :func:`setup_multiprocess` (unit tests, library use) the same metrics count in
process memory. The metric objects are made on first use, after the set-up.
"""

from __future__ import annotations

import contextvars
import functools
import logging
import os
import re
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger("docqa.metrics")

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
INGEST_STAGES = ("parse", "chunk", "embed", "upsert", "verify")
ASK_STATUSES = ("answered", "not_found")
REFUSED_CODES = (429, 503)
# seconds: a parse of a note takes 50 ms, embedding a long PDF minutes
STAGE_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
                 300.0, 600.0)
ASK_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0)


@functools.cache
def _host() -> str:
    """This machine's name as it may appear in a file name (no '_': prometheus-client splits
    its file names on it)."""
    return re.sub(r"[^A-Za-z0-9.-]", "-", socket.gethostname())[:63] or "host"


def process_identifier() -> str:
    return f"{_host()}-{os.getpid()}"


def multiproc_dir() -> Path | None:
    value = os.environ.get(MULTIPROC_ENV)
    return Path(value) if value else None


def setup_multiprocess(path: Path) -> Path:
    """Record this process's metrics (and its children's) in ``path``. Call before any
    metric is used: the values are then kept in files named ``TYPE_HOST-PID.db``. Files of
    this host's processes that are gone are removed first (counters of a process that has
    ended start again from 0 at the next start, which Prometheus reads as a reset)."""
    path = Path(path).resolve()
    path.mkdir(parents=True, exist_ok=True)
    os.environ[MULTIPROC_ENV] = str(path)
    # prometheus_client is imported only once its multiprocess directory is set (here) or
    # the process has none: it chooses how to keep values when it loads
    from prometheus_client import values

    values.ValueClass = values.MultiProcessValue(
        process_identifier=process_identifier)
    clean_dead_files(path)
    return path


def clean_dead_files(path: Path) -> int:
    """Remove the files of processes of this host that no longer run; returns how many."""
    prefix = f"{_host()}-"
    removed = 0
    for f in Path(path).glob("*.db"):
        ident = f.stem.rsplit("_", 1)[-1]
        if not ident.startswith(prefix):
            continue  # another host's (a shared directory): not ours to judge
        pid = ident[len(prefix):]
        if pid.isdigit() and not _alive(int(pid)):
            f.unlink(missing_ok=True)
            removed += 1
    return removed


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@dataclass(frozen=True)
class Metrics:
    ingest_stage_seconds: Any
    chunks_embedded: Any
    ask_seconds: Any
    ask_results: Any
    http_requests: Any
    http_refused: Any


@functools.cache
def metrics() -> Metrics:
    """The metric objects (made once per process, after :func:`setup_multiprocess`)."""
    from prometheus_client import Counter, Histogram  # not at import: see setup_multiprocess

    m = Metrics(
        ingest_stage_seconds=Histogram(
            "docqa_ingest_stage_seconds",
            "Time one document spent in an ingest stage (worker): parse, chunk, embed, "
            "upsert, verify", ["stage"], buckets=STAGE_BUCKETS),
        chunks_embedded=Counter(
            "docqa_chunks_embedded", "Chunks embedded by the workers"),
        ask_seconds=Histogram(
            "docqa_ask_latency_seconds",
            "Time to answer POST /v1/ask (successful responses, answered or not_found)",
            buckets=ASK_BUCKETS),
        ask_results=Counter(
            "docqa_ask_results", "Questions answered by /v1/ask, by outcome", ["status"]),
        http_requests=Counter(
            "docqa_http_requests", "HTTP responses by route template, method and status code",
            ["route", "method", "code"]),
        http_refused=Counter(
            "docqa_http_refused",
            "Requests refused with 429 (rate limited) or 503 (overloaded or a dependency "
            "unavailable), by route template", ["route", "code"]),
    )
    for stage_name in INGEST_STAGES:  # every family and label shows, at 0, from the start
        m.ingest_stage_seconds.labels(stage_name)
    for status in ASK_STATUSES:
        m.ask_results.labels(status)
    for route in ("/v1/ask", "/v1/documents"):
        for code in REFUSED_CODES:
            m.http_refused.labels(route, str(code))
    return m


# ---------------------------------------------------------------- ingest stages

_open_stage: contextvars.ContextVar[_Stage | None] = contextvars.ContextVar(
    "docqa_ingest_stage", default=None)


class _Stage:
    def __init__(self, name: str, parent: _Stage | None) -> None:
        self.name = name
        self.parent = parent
        self.nested: dict[str, float] = {}  # time in stages opened inside this one


@contextmanager
def stage(name: str) -> Iterator[None]:
    """Time an ingest stage of one document (``docqa_ingest_stage_seconds{stage}``).

    Stages may nest: ``with stage("embed"):`` around the batch loop and ``with
    stage("upsert"):`` around each store call inside it record the embed time without the
    upserts, and the upserts' total as one observation, when the outer stage ends. Recorded
    whether the stage succeeds or raises."""
    parent = _open_stage.get()
    current = _Stage(name, parent)
    token = _open_stage.set(current)
    started = time.perf_counter()
    try:
        yield
    finally:
        elapsed = time.perf_counter() - started
        _open_stage.reset(token)
        try:
            if parent is not None:
                parent.nested[name] = parent.nested.get(name, 0.0) + elapsed
                for inner, seconds in current.nested.items():  # bubble up, not re-counted
                    parent.nested[inner] = parent.nested.get(inner, 0.0) + seconds
                parent.nested[name] -= sum(current.nested.values())
            else:
                h = metrics().ingest_stage_seconds
                h.labels(name).observe(max(0.0, elapsed - sum(current.nested.values())))
                for inner, seconds in current.nested.items():
                    h.labels(inner).observe(max(0.0, seconds))
        except Exception:  # noqa: BLE001 - metrics never fail an ingest
            log.debug("ingest stage %s not recorded", name, exc_info=True)


def chunks_embedded(n: int) -> None:
    try:
        metrics().chunks_embedded.inc(n)
    except Exception:  # noqa: BLE001
        log.debug("chunks embedded not recorded", exc_info=True)


def ask_result(status: str) -> None:
    try:
        metrics().ask_results.labels(status).inc()
    except Exception:  # noqa: BLE001
        log.debug("ask result not recorded", exc_info=True)


def http_response(route: str, method: str, code: int, seconds: float) -> None:
    """One HTTP response of the API (service/api/observability.py)."""
    m = metrics()
    m.http_requests.labels(route, method, str(code)).inc()
    if code in REFUSED_CODES:
        m.http_refused.labels(route, str(code)).inc()
    if route == "/v1/ask" and method == "POST" and 200 <= code < 300:
        m.ask_seconds.observe(seconds)


# ---------------------------------------------------------------- exposition


def multiprocess_registry(path: Path | None = None) -> Any:
    """A registry adding up the metric files in ``path`` (default: this process's
    multiprocess directory); an in-process registry when there is none."""
    # not at import: see setup_multiprocess
    from prometheus_client import REGISTRY, CollectorRegistry
    from prometheus_client.multiprocess import MultiProcessCollector

    path = path or multiproc_dir()
    if path is None:
        return REGISTRY
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(path))
    return registry


def serve_worker_metrics(host: str, port: int) -> None:
    """Serve the multiprocess directory's metrics on ``host:port`` (``metrics.worker_port``;
    a worker whose directory the API does not read)."""
    from prometheus_client import start_http_server  # not at import: see setup_multiprocess

    start_http_server(port, addr=host, registry=multiprocess_registry())
    log.info("worker metrics on http://%s:%d/metrics", host, port)
