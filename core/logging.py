"""Process logging for the API and the workers: one JSON object per line (or plain text).

Every line carries ``ts`` (UTC), ``level``, ``logger``, ``message`` and ``request_id`` (null
outside a request or job), plus ``job_id`` (the Celery task id) and ``document_id`` inside a
worker job. The request id comes from the caller's ``X-Request-ID`` (when it is a plain token,
:func:`core.audit.request_id`) or is generated; the API returns it in its response, and it
travels to the worker in the Celery message headers (``docqa_request_id``), so one id ties
the API's lines, the audit entry and the worker's lines of an upload together.

Nothing here logs document text; as a second line of defence :class:`RedactingFilter` masks
anything that looks like a docqa API key (``dq_…``), a ``Bearer`` credential, the password
of a URL and the configured secrets (static API keys, the admin key, the metrics token) in
every record, its exception text included.

``configure_logging`` is called by ``docqa serve`` and ``docqa worker`` only: the other
commands, the tests and library users keep Python's logging as they set it up.
"""

from __future__ import annotations

import contextvars
import json
import logging
import os
import re
import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, Literal

from core.metrics import setup_multiprocess

request_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "docqa_request_id", default=None)
job_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "docqa_job_id", default=None)
document_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "docqa_document_id", default=None)

CONTEXT_FIELDS = ("request_id", "job_id", "document_id")
_CONTEXT_VARS = {"request_id": request_id_var, "job_id": job_id_var,
                 "document_id": document_id_var}
CELERY_HEADER = "docqa_request_id"  # the request id in a task message's headers
REDACTED = "[REDACTED]"

# the attributes every LogRecord has: anything else was passed as ``extra=``
_STANDARD_ATTRS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message", "asctime", "taskName", *CONTEXT_FIELDS,
    "color_message",  # uvicorn's copy of the message with terminal colours
    "context",  # set by TextFormatter
}
_EXTRA_TYPES = (str, int, float, bool)

_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    # docqa API keys (core/keys.py: "dq_" + 43 URL-safe characters)
    (re.compile(r"dq_[A-Za-z0-9_-]{16,}"), "dq_" + REDACTED),
    # a bearer credential, e.g. an Authorization header that ended up in a message
    (re.compile(r"(?i)\b(bearer)\s+[^\s,;'\"]+"), r"\1 " + REDACTED),
    # the password in a URL (redis://:secret@host, postgresql://user:secret@db)
    (re.compile(r"(\b[a-zA-Z][a-zA-Z0-9+.-]*://[^:/@\s]*:)[^@\s/]+@"), r"\1" + REDACTED + "@"),
)


def looks_secret(text: str) -> bool:
    """Whether ``text`` holds something :class:`RedactingFilter` would mask (a request id
    that does is replaced, not logged)."""
    return any(pattern.search(text) for pattern, _ in _PATTERNS)


def current_request_id() -> str | None:
    return request_id_var.get()


@contextmanager
def log_context(**values: str | None) -> Iterator[None]:
    """Bind ``request_id``/``job_id``/``document_id`` for the lines logged inside."""
    tokens = [(_CONTEXT_VARS[k], _CONTEXT_VARS[k].set(v)) for k, v in values.items()]
    try:
        yield
    finally:
        for var, token in reversed(tokens):
            var.reset(token)


class RedactingFilter(logging.Filter):
    """Masks credentials in a record: its message (arguments merged in), its exception and
    stack text and its string extras. ``secrets`` are literal values to mask as well
    (shorter than 8 characters: ignored, they would mask ordinary words)."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        literal = sorted({s for s in secrets if s and len(s) >= 8}, key=len, reverse=True)
        self._literal = re.compile("|".join(map(re.escape, literal))) if literal else None

    def redact(self, text: str) -> str:
        if self._literal is not None:
            text = self._literal.sub(REDACTED, text)
        for pattern, replacement in _PATTERNS:
            text = pattern.sub(replacement, text)
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a bad format string must not lose the line
            message = f"{record.msg!s} {record.args!r}"
        record.msg, record.args = self.redact(message), None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.redact(record.exc_text)
        if record.stack_info:
            record.stack_info = self.redact(record.stack_info)
        for key, value in list(vars(record).items()):
            if (key not in _STANDARD_ATTRS or key in CONTEXT_FIELDS) and isinstance(value, str):
                setattr(record, key, self.redact(value))
        return True


class ContextFilter(logging.Filter):
    """Puts the current request id, job id and document id on the record (unless the call
    gave its own with ``extra=``)."""

    def filter(self, record: logging.LogRecord) -> bool:
        for key, var in _CONTEXT_VARS.items():
            if getattr(record, key, None) is None:
                setattr(record, key, var.get())
        return True


def _extras(record: logging.LogRecord) -> dict[str, Any]:
    """``extra=`` fields of plain types (a dict or object passed by a library, such as
    Celery's task context, is left out: it could hold anything)."""
    return {k: v for k, v in vars(record).items()
            if k not in _STANDARD_ATTRS and not k.startswith("_") and isinstance(v, _EXTRA_TYPES)}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, message, request_id, then job_id and
    document_id when set, ``extra=`` fields, pid and the exception (``exc_info``)."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", None) or request_id_var.get(),
        }
        for key in ("job_id", "document_id"):
            value = getattr(record, key, None) or _CONTEXT_VARS[key].get()
            if value:
                entry[key] = value
        for key, value in _extras(record).items():
            entry.setdefault(key, value)
        entry["pid"] = record.process
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            entry["exc_info"] = record.exc_text
        if record.stack_info:
            entry["stack_info"] = record.stack_info
        return json.dumps(entry, ensure_ascii=False, default=str)


class TextFormatter(logging.Formatter):
    """For people: ``2024-05-01 12:00:00,123 INFO docqa.api [request_id=… job_id=…] msg``."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s%(context)s %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        parts = [f"{k}={v}" for k in CONTEXT_FIELDS
                 if (v := getattr(record, k, None) or _CONTEXT_VARS[k].get())]
        parts += [f"{k}={v}" for k, v in _extras(record).items()]
        record.context = f" [{' '.join(parts)}]" if parts else ""
        return super().format(record)


def make_handler(log_format: Literal["json", "text"] = "json",
                 secrets: Iterable[str] = (), stream: Any = None) -> logging.Handler:
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    handler.addFilter(ContextFilter())
    handler.addFilter(RedactingFilter(secrets))
    return handler


def configured_secrets(settings: Any) -> list[str]:
    """The secret values the settings hold, to be masked wherever they would appear."""
    values = list(settings.static_api_keys)
    for secret in (settings.admin_key, getattr(settings.metrics, "token", None),
                   getattr(settings, "encryption_key", None)):
        if secret is not None:
            values.append(secret.get_secret_value())
    return values


def configure_logging(settings: Any, role: Literal["api", "worker"]) -> logging.Handler:
    """Route every logger of this process through one handler on stderr, in
    ``settings.log_format``, at ``settings.log_level``. Returns the handler."""
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")  # no progress bars in logs
    handler = make_handler(settings.log_format, configured_secrets(settings))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(settings.log_level.upper())
    logging.captureWarnings(True)
    # one line per HTTP call to Chroma: debugging detail, not operations
    for noisy in ("httpx", "httpcore", "chromadb.telemetry"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    if role == "worker":
        # loggers that Celery would otherwise give a handler of its own (propagate=False)
        for name in ("celery.task",):
            lg = logging.getLogger(name)
            lg.handlers = [handler]
        try:  # billiard (Celery's process pool) only in workers, which have it
            from billiard.util import get_logger as mp_logger

            mp_logger().handlers = [handler]
        except ImportError:  # pragma: no cover - billiard comes with Celery
            pass
    return handler


# ---------------------------------------------------------------- Celery


def connect_celery_signals() -> None:
    """Carry the request id from the API to the worker, and bind job and document ids there.

    Producer side (``before_task_publish``): the current request id goes into the message
    headers (a retry published by the worker keeps it). Worker side (``task_prerun`` /
    ``task_postrun``): the job id (the task id), the request id from the headers and the
    document id (the task's first argument that is not a tenant) are bound for the task's
    log lines. Idempotent."""
    # Celery (~0.1 s to import) loads only here: importing this module (the API, the CLI)
    # does not need it
    from celery.signals import before_task_publish, task_postrun, task_prerun

    before_task_publish.connect(_on_publish, weak=False, dispatch_uid="docqa-request-id")
    task_prerun.connect(_on_prerun, weak=False, dispatch_uid="docqa-log-context-in")
    task_postrun.connect(_on_postrun, weak=False, dispatch_uid="docqa-log-context-out")


_publish_log = logging.getLogger("docqa.tasks")
_task_tokens: dict[str, list[tuple[contextvars.ContextVar[str | None], Any]]] = {}


def _on_publish(sender: Any = None, headers: dict[str, Any] | None = None,
                body: Any = None, **_: Any) -> None:
    rid = request_id_var.get()
    if headers is None:
        return
    if rid and CELERY_HEADER not in headers:
        headers[CELERY_HEADER] = rid
    args = body[0] if isinstance(body, tuple | list) and body else ()
    task = str(sender or headers.get("task"))
    _publish_log.info("queued job %s (%s)", headers.get("id"), task,
                      extra={"job_id": headers.get("id"), "task": task,
                             "document_id": _document_arg(args)})


def _document_arg(args: Any) -> str | None:
    """Task arguments are ids only (core/tasks.py): ingest(doc_id), erase(tenant, doc_id)."""
    if isinstance(args, list | tuple) and args:
        value = args[-1]
        return value if isinstance(value, str) else None
    return None


def _on_prerun(task_id: str | None = None, task: Any = None, args: Any = None,
               **_: Any) -> None:
    request = getattr(task, "request", None)
    rid = getattr(request, CELERY_HEADER, None) if request is not None else None
    if rid is None and request is not None and isinstance(request.headers, dict):
        rid = request.headers.get(CELERY_HEADER)
    values = {"request_id": rid if isinstance(rid, str) else None, "job_id": task_id,
              "document_id": _document_arg(args)}
    if task_id:
        _task_tokens[task_id] = [(_CONTEXT_VARS[k], _CONTEXT_VARS[k].set(v))
                                 for k, v in values.items()]


def _on_postrun(task_id: str | None = None, **_: Any) -> None:
    for var, token in reversed(_task_tokens.pop(task_id or "", [])):
        try:
            var.reset(token)
        except ValueError:  # set in another context: clear instead
            var.set(None)


# ---------------------------------------------------------------- a long-running process


def configure_process(settings: Any, role: Literal["api", "worker"]) -> None:
    """Logs (JSON or text) and metrics files (the multiprocess directory, core/metrics.py)
    of a long-running process; call it before anything records a metric."""
    configure_logging(settings, role)
    if settings.metrics.enabled:
        setup_multiprocess(settings.metrics_dir)
