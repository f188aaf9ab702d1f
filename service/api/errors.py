"""Errors → HTTP, in one place: every error is an RFC 9457 problem+json response.

Services raise domain errors (``core/errors.py``: each carries its status code and title);
Litestar's own HTTP errors (bad bodies, unknown routes, oversized requests) and anything
unexpected are mapped here too, so no handler builds an error response itself.
"""

from __future__ import annotations

import logging
from typing import Any

from litestar import Request, Response
from litestar.exceptions import HTTPException
from litestar.types import ExceptionHandlersMap

from core.errors import DocqaError, RateLimitedError, TransientError, UnauthorizedError

log = logging.getLogger("docqa.api")
PROBLEM_JSON = "application/problem+json"
HTTP_TITLES = {400: "Bad request", 404: "Not found", 405: "Method not allowed",
               413: "Payload too large", 415: "Unsupported media type"}


def problem(status: int, title: str, detail: str,
            headers: dict[str, str] | None = None) -> Response[Any]:
    return Response(
        {"type": "about:blank", "title": title, "status": status, "detail": detail},
        status_code=status, media_type=PROBLEM_JSON, headers=headers,
    )


def docqa_error_handler(_: Request[Any, Any, Any], exc: DocqaError) -> Response[Any]:
    headers: dict[str, str] = {}
    if isinstance(exc, TransientError | RateLimitedError):
        headers["Retry-After"] = str(exc.retry_after)
    if isinstance(exc, UnauthorizedError):
        headers["WWW-Authenticate"] = 'Bearer realm="docqa"'
    if exc.status_code >= 500 and not isinstance(exc, TransientError):
        log.error("internal error: %s", exc)
    return problem(exc.status_code, exc.title, exc.detail, headers)


def http_error_handler(_: Request[Any, Any, Any], exc: HTTPException) -> Response[Any]:
    detail = exc.detail
    extra = getattr(exc, "extra", None)
    if extra:
        detail = f"{detail}: {extra}"
    title = HTTP_TITLES.get(exc.status_code, "Error")
    return problem(exc.status_code, title, str(detail), dict(exc.headers or {}))


def undecodable_body_handler(_: Request[Any, Any, Any], exc: UnicodeDecodeError) -> Response[Any]:
    """A JSON body that is not UTF-8 fails inside Litestar's decoder: the client's fault."""
    return problem(400, "Bad request", f"the request body is not valid UTF-8 ({exc.reason} at "
                   f"byte {exc.start})")


def internal_error_handler(_: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    log.exception("unhandled error", exc_info=exc)
    return problem(500, "Internal error", "an unexpected error occurred; see the server log")


def error_response(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    """The problem+json response of any exception (route-level handlers build on it)."""
    if isinstance(exc, DocqaError):
        return docqa_error_handler(request, exc)
    if isinstance(exc, HTTPException):
        return http_error_handler(request, exc)
    if isinstance(exc, UnicodeDecodeError):
        return undecodable_body_handler(request, exc)
    return internal_error_handler(request, exc)


EXCEPTION_HANDLERS: ExceptionHandlersMap = {
    DocqaError: docqa_error_handler,
    HTTPException: http_error_handler,
    UnicodeDecodeError: undecodable_body_handler,
    Exception: internal_error_handler,
}
