"""Logs without the real stack (core/logging.py): the JSON and text formatters, the
redaction filter and the Celery context signals."""

from __future__ import annotations

import io
import json
import logging
import time
from typing import Any

import pytest

from core import logging as dqlog
from core.settings import Settings

KEY = "test-key-acme-0123456789"
DQ_KEY = "dq_" + "A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8S9t0U1v"


def capture(log_format: str = "json",
            secrets: tuple[str, ...] = ()) -> tuple[logging.Logger, io.StringIO]:
    buf = io.StringIO()
    logger = logging.getLogger(f"docqa.test.{log_format}.{time.monotonic_ns()}")
    logger.handlers = [dqlog.make_handler(log_format, secrets, stream=buf)]  # type: ignore[arg-type]
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    return logger, buf


def lines(buf: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in buf.getvalue().splitlines()]


# ---------------------------------------------------------------- formatter


def test_json_lines_carry_the_fields_and_the_context() -> None:
    logger, buf = capture()
    logger.info("outside")
    with dqlog.log_context(request_id="req-1", job_id="job-9", document_id="doc-3"):
        logger.warning("document %s: %d chunks", "doc-3", 4, extra={"stage": "embed", "n": 2,
                                                                       "blob": {"x": 1}})
    first, second = lines(buf)
    assert set(first) >= {"ts", "level", "logger", "message", "request_id"}
    assert first["request_id"] is None and "job_id" not in first and "document_id" not in first
    assert first["ts"].endswith("Z") and first["level"] == "INFO"
    assert second["message"] == "document doc-3: 4 chunks"
    assert (second["request_id"], second["job_id"], second["document_id"]) == (
        "req-1", "job-9", "doc-3")
    assert second["stage"] == "embed" and second["n"] == 2
    assert "blob" not in second  # only plain-typed extras


def test_an_exception_stays_on_one_line() -> None:
    logger, buf = capture()
    try:
        raise ValueError("boom\nsecond line")
    except ValueError:
        logger.exception("failed")
    assert len(buf.getvalue().splitlines()) == 1
    (entry,) = lines(buf)
    assert "ValueError: boom" in entry["exc_info"] and entry["level"] == "ERROR"


def test_text_format_is_for_people() -> None:
    logger, buf = capture("text")
    with dqlog.log_context(request_id="req-7"):
        logger.info("hello %s", "there")
    line = buf.getvalue().strip()
    assert line.endswith("[request_id=req-7] hello there") and " INFO " in line
    with pytest.raises(json.JSONDecodeError):
        json.loads(line)


# ---------------------------------------------------------------- redaction


@pytest.mark.parametrize("text, secret", [
    (f"key {DQ_KEY} rejected", DQ_KEY),
    ("header Authorization: Bearer abc.def-ghi_123 seen", "abc.def-ghi_123"),
    ("bearer tok3n", "tok3n"),
    ("redis://:s3cretpass@127.0.0.1:6390/0", "s3cretpass"),
    ("postgresql://docqa:pg-pass-1@db:5432/docqa", "pg-pass-1"),
    (f"configured {KEY} here", KEY),
])
def test_credentials_are_redacted(text: str, secret: str) -> None:
    logger, buf = capture(secrets=(KEY,))
    logger.info("%s", text)
    (entry,) = lines(buf)
    assert secret not in entry["message"] and dqlog.REDACTED in entry["message"]


def test_redaction_covers_exceptions_extras_and_text_format() -> None:
    for fmt in ("json", "text"):
        logger, buf = capture(fmt)
        try:
            raise RuntimeError(f"auth failed for {DQ_KEY}")
        except RuntimeError:
            logger.exception("request with Bearer %s", DQ_KEY, extra={"header": f"Bearer {DQ_KEY}"})
        out = buf.getvalue()
        assert DQ_KEY not in out and DQ_KEY[3:20] not in out, out
        assert "dq_[REDACTED]" in out


def test_short_or_ordinary_text_is_left_alone() -> None:
    f = dqlog.RedactingFilter(secrets=("short", "", "a-long-enough-secret"))
    assert f.redact("a short note about dq_ and bearer") == "a short note about dq_ and bearer"
    assert f.redact("http://127.0.0.1:8000/api/v2/heartbeat") == (
        "http://127.0.0.1:8000/api/v2/heartbeat")
    assert f.redact("x a-long-enough-secret y") == "x [REDACTED] y"


def test_configured_secrets_are_collected() -> None:
    s = Settings(api_keys=f"acme:{KEY}", admin_key="admin-key-0123456789",
                 metrics={"token": "metrics-token-0123"})
    assert set(dqlog.configured_secrets(s)) >= {KEY, "admin-key-0123456789", "metrics-token-0123"}


# ---------------------------------------------------------------- Celery context


def test_request_id_travels_in_the_task_headers_and_binds_the_job() -> None:
    headers: dict[str, Any] = {"id": "task-1", "task": "docqa.ingest_document"}
    with dqlog.log_context(request_id="req-42"):
        dqlog._on_publish(sender="docqa.ingest_document", headers=headers,
                          body=(["doc-5"], {}, {}))
    assert headers[dqlog.CELERY_HEADER] == "req-42"

    class Request:
        docqa_request_id = "req-42"
        headers = None

    class Task:
        request = Request()

    dqlog._on_prerun(task_id="task-1", task=Task(), args=["acme", "doc-5"])
    try:
        assert (dqlog.request_id_var.get(), dqlog.job_id_var.get(),
                dqlog.document_id_var.get()) == ("req-42", "task-1", "doc-5")
    finally:
        dqlog._on_postrun(task_id="task-1")
    assert dqlog.request_id_var.get() is None and dqlog.job_id_var.get() is None
