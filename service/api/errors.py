"""Errors → HTTP, in one place: every error is an RFC 9457 problem+json response.

Services raise domain errors (``core/errors.py``: each carries its status code and title);
Litestar's own HTTP errors (bad bodies, unknown routes, oversized requests) and anything
unexpected are mapped here too, so no handler builds an error response itself.

Every problem names its kind in ``type``, a URN from :class:`ProblemType`
(``urn:docqa:problem:<kind>``): stable, absolute, and never dereferenced, so a client can
switch on it without the service or the internet being reachable. A request that does not
match the schema (``invalid-request``) lists each offending field in ``errors``. A 503 says
which dependency failed in its title but never how: its cause (hosts, ports, driver
messages) goes to the log only.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping
from enum import StrEnum
from typing import Annotated, Any

import msgspec
from litestar import Request, Response
from litestar.exceptions import HTTPException, ValidationException
from litestar.exceptions.http_exceptions import RequestEntityTooLarge
from litestar.openapi.datastructures import ResponseSpec
from litestar.types import ExceptionHandlersMap

from core import errors as core

log = logging.getLogger("docqa.api")
PROBLEM_JSON = "application/problem+json"
PROBLEM_BASE = "urn:docqa:problem:"


class ProblemType(StrEnum):
    """The kind of a problem (RFC 9457 ``type``): one URN per kind, stable across versions.
    Clients should switch on it rather than on ``title`` or ``detail``, which are for people."""

    BAD_REQUEST = PROBLEM_BASE + "bad-request"
    INVALID_REQUEST = PROBLEM_BASE + "invalid-request"
    EMPTY_UPLOAD = PROBLEM_BASE + "empty-upload"
    UNAUTHORIZED = PROBLEM_BASE + "unauthorized"
    FORBIDDEN = PROBLEM_BASE + "forbidden"
    NOT_FOUND = PROBLEM_BASE + "not-found"
    METHOD_NOT_ALLOWED = PROBLEM_BASE + "method-not-allowed"
    CONFLICT = PROBLEM_BASE + "conflict"
    PAYLOAD_TOO_LARGE = PROBLEM_BASE + "payload-too-large"
    UNSUPPORTED_MEDIA_TYPE = PROBLEM_BASE + "unsupported-media-type"
    UNPARSEABLE_DOCUMENT = PROBLEM_BASE + "unparseable-document"
    RATE_LIMITED = PROBLEM_BASE + "rate-limited"
    INTERNAL_ERROR = PROBLEM_BASE + "internal-error"
    SERVICE_UNAVAILABLE = PROBLEM_BASE + "service-unavailable"
    STORE_UNAVAILABLE = PROBLEM_BASE + "store-unavailable"
    QUEUE_UNAVAILABLE = PROBLEM_BASE + "queue-unavailable"
    OVERLOADED = PROBLEM_BASE + "overloaded"


# status, and what the kind means (the schema's documentation of each type)
PROBLEM_KINDS: dict[ProblemType, tuple[int, str]] = {
    ProblemType.BAD_REQUEST: (400, "the request cannot be served as sent; `detail` says why"),
    ProblemType.INVALID_REQUEST: (400, "a parameter or the body does not match the schema; "
                                       "`errors` lists each field"),
    ProblemType.EMPTY_UPLOAD: (400, "the uploaded file has no bytes"),
    ProblemType.UNAUTHORIZED: (401, "no API key, or an unknown or revoked one"),
    ProblemType.FORBIDDEN: (403, "the key may not do this"),
    ProblemType.NOT_FOUND: (404, "no such resource for this key (another tenant's documents "
                                 "are not found either)"),
    ProblemType.METHOD_NOT_ALLOWED: (405, "the path exists but not with this method"),
    ProblemType.CONFLICT: (409, "the resource is not in a state that allows this; retry once "
                                "it is (e.g. a document still being ingested)"),
    ProblemType.PAYLOAD_TOO_LARGE: (413, "the body or file is over the configured limit"),
    ProblemType.UNSUPPORTED_MEDIA_TYPE: (415, "the file type is not accepted"),
    ProblemType.UNPARSEABLE_DOCUMENT: (422, "the file is of an accepted type but cannot be "
                                            "read (corrupt, encrypted, over a ZIP limit)"),
    ProblemType.RATE_LIMITED: (429, "this key's request limit is used up; see Retry-After"),
    ProblemType.INTERNAL_ERROR: (500, "an unexpected error; the server log has the cause "
                                      "under the response's X-Request-ID"),
    ProblemType.SERVICE_UNAVAILABLE: (503, "a dependency is down or busy; see Retry-After"),
    ProblemType.STORE_UNAVAILABLE: (503, "the vector store (Chroma) is unreachable; see "
                                         "Retry-After"),
    ProblemType.QUEUE_UNAVAILABLE: (503, "the job queue (Redis) is unreachable; see "
                                         "Retry-After"),
    ProblemType.OVERLOADED: (503, "too many questions are being answered; see Retry-After"),
}

# docqa's exceptions, most specific first (a subclass not listed takes its parent's kind)
_DOMAIN_KINDS: dict[type[core.DocqaError], ProblemType] = {
    core.EmptyUploadError: ProblemType.EMPTY_UPLOAD,
    core.ParseError: ProblemType.UNPARSEABLE_DOCUMENT,
    core.BadInputError: ProblemType.BAD_REQUEST,
    core.UnsupportedMediaError: ProblemType.UNSUPPORTED_MEDIA_TYPE,
    core.PayloadTooLargeError: ProblemType.PAYLOAD_TOO_LARGE,
    core.UnauthorizedError: ProblemType.UNAUTHORIZED,
    core.NotFoundError: ProblemType.NOT_FOUND,
    core.ConflictError: ProblemType.CONFLICT,
    core.RateLimitedError: ProblemType.RATE_LIMITED,
    core.StoreUnavailableError: ProblemType.STORE_UNAVAILABLE,
    core.QueueUnavailableError: ProblemType.QUEUE_UNAVAILABLE,
    core.OverloadedError: ProblemType.OVERLOADED,
    core.TransientError: ProblemType.SERVICE_UNAVAILABLE,
}
# a status without a more specific kind
_STATUS_KINDS: dict[int, ProblemType] = {}
for _kind, (_status, _) in PROBLEM_KINDS.items():
    _STATUS_KINDS.setdefault(_status, _kind)

# what a 503 tells the client: the kind, never the cause
_UNAVAILABLE_DETAIL = {
    ProblemType.SERVICE_UNAVAILABLE: "a service docqa depends on is unavailable; retry later",
    ProblemType.STORE_UNAVAILABLE: "the vector store is unavailable; retry later",
    ProblemType.QUEUE_UNAVAILABLE: "the job queue is unavailable; retry later",
    ProblemType.OVERLOADED: "too many questions are being answered; retry shortly",
}
HTTP_TITLES = {400: "Bad request", 401: "Unauthorized", 403: "Forbidden", 404: "Not found",
               405: "Method not allowed", 413: "Payload too large",
               415: "Unsupported media type", 429: "Too many requests",
               503: "Service unavailable"}


class FieldError(msgspec.Struct):
    """One reason a request did not match the schema."""

    location: Annotated[str, msgspec.Meta(
        description="where the field is: body, query, path, header or cookie")]
    field: Annotated[str, msgspec.Meta(
        description="the field's name; nested body fields are dotted (filters.filename); "
                    "empty when the body as a whole is wrong")]
    message: str


class Problem(msgspec.Struct, omit_defaults=True):
    """An RFC 9457 problem (``application/problem+json``), the body of every error."""

    type: ProblemType
    title: str
    status: int
    detail: str
    errors: Annotated[list[FieldError], msgspec.Meta(
        description="only with type invalid-request: each field that is wrong")] | None = None


class OpenAIError(msgspec.Struct):
    message: str
    type: str
    code: None = None


class OpenAIProblem(Problem, omit_defaults=True):
    """The problem of an OpenAI-compatible route: ``error`` is OpenAI's error object (an
    RFC 9457 extension member), from which OpenAI's clients build their exceptions."""

    error: OpenAIError | None = None


def problem_kind(exc: Exception) -> ProblemType:
    if isinstance(exc, core.DocqaError):
        for cls in type(exc).__mro__:
            kind = _DOMAIN_KINDS.get(cls)
            if kind is not None and PROBLEM_KINDS[kind][0] == exc.status_code:
                return kind
        return _STATUS_KINDS.get(exc.status_code, ProblemType.INTERNAL_ERROR)
    if isinstance(exc, ValidationException) and _field_errors(exc):
        return ProblemType.INVALID_REQUEST
    if isinstance(exc, HTTPException):
        return _STATUS_KINDS.get(exc.status_code, ProblemType.INTERNAL_ERROR
                                 if exc.status_code >= 500 else ProblemType.BAD_REQUEST)
    return ProblemType.INTERNAL_ERROR


def problem_body(kind: ProblemType, status: int, title: str, detail: str,
                 errors: list[FieldError] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"type": kind.value, "title": title, "status": status,
                            "detail": detail}
    if errors:
        body["errors"] = [msgspec.structs.asdict(e) for e in errors]
    return body


def problem(status: int, title: str, detail: str, headers: dict[str, str] | None = None,
            kind: ProblemType | None = None, errors: list[FieldError] | None = None
            ) -> Response[Any]:
    kind = kind or _STATUS_KINDS.get(status, ProblemType.INTERNAL_ERROR)
    return Response(problem_body(kind, status, title, detail, errors),
                    status_code=status, media_type=PROBLEM_JSON, headers=headers)


def domain_problem(exc: core.DocqaError) -> dict[str, Any]:
    """The body for a docqa error (also an event stream's ``error`` event): a 503's cause
    and a 500's message are logged here, not sent."""
    kind = problem_kind(exc)
    detail = exc.detail
    if isinstance(exc, core.TransientError):
        log.warning("%s (%s): %s", exc.title, type(exc).__name__, exc.detail)
        detail = _UNAVAILABLE_DETAIL.get(kind, _UNAVAILABLE_DETAIL[ProblemType.SERVICE_UNAVAILABLE])
    elif exc.status_code >= 500:
        log.error("internal error: %s", exc)
        detail = "an unexpected error occurred; see the server log"
    return problem_body(kind, exc.status_code, exc.title, detail)


def docqa_error_handler(_: Request[Any, Any, Any], exc: core.DocqaError) -> Response[Any]:
    headers: dict[str, str] = {}
    if isinstance(exc, core.TransientError | core.RateLimitedError):
        headers["Retry-After"] = str(exc.retry_after)
    if isinstance(exc, core.UnauthorizedError):
        headers["WWW-Authenticate"] = 'Bearer realm="docqa"'
    return Response(domain_problem(exc), status_code=exc.status_code, media_type=PROBLEM_JSON,
                    headers=headers)


_MISSING = re.compile(r"Missing required (\w+) parameter '([^']*)'")


def _field_errors(exc: ValidationException) -> list[FieldError]:
    """Litestar's validation messages (``extra``: ``{message, key?, source?}`` each) as
    :class:`FieldError`s."""
    extra = exc.extra if isinstance(exc.extra, list) else []
    missing = _MISSING.match(str(exc.detail))  # Litestar words this one in its detail only
    if missing and not extra:
        return [FieldError(location=missing[1], field=missing[2], message="required")]
    out = []
    for item in extra:
        if not isinstance(item, Mapping) or "message" not in item:
            continue
        source = item.get("source")
        location = str(getattr(source, "value", source) or "")
        out.append(FieldError(location=location, field=str(item.get("key") or ""),
                              message=str(item["message"])))
    return out


def _summary(errors: Iterable[FieldError]) -> str:
    parts = [f"{e.field or e.location or 'request'}: {e.message}" for e in errors]
    more = f" (and {len(parts) - 3} more)" if len(parts) > 3 else ""
    return "the request does not match the schema: " + "; ".join(parts[:3]) + more


def _body_limit(request: Request[Any, Any, Any]) -> int | None:
    try:
        return request.route_handler.resolve_request_max_body_size()
    except Exception:  # noqa: BLE001 - no route (a 404's 413 cannot happen): say less
        return None


def http_error_handler(request: Request[Any, Any, Any], exc: HTTPException) -> Response[Any]:
    title = HTTP_TITLES.get(exc.status_code, "Error")
    headers = dict(exc.headers or {})
    kind = problem_kind(exc)
    if kind is ProblemType.INVALID_REQUEST:
        assert isinstance(exc, ValidationException)
        errors = _field_errors(exc)
        return problem(exc.status_code, title, _summary(errors), headers, kind, errors)
    if isinstance(exc, RequestEntityTooLarge):  # Litestar's body limit (service/api/app.py)
        limit = _body_limit(request)
        return problem(413, title, "the request body is larger than this route accepts"
                       + (f" ({limit} bytes)" if limit else ""), headers, kind)
    detail = str(exc.detail)
    if exc.status_code >= 500:  # Litestar's own 5xx: its text may name internals
        log.error("HTTP %s: %s %s", exc.status_code, exc.detail, exc.extra or "")
        detail = "an unexpected error occurred; see the server log"
    elif exc.extra:
        detail = f"{detail}: {exc.extra}"
    return problem(exc.status_code, title, detail, headers, kind)


def undecodable_body_handler(_: Request[Any, Any, Any], exc: UnicodeDecodeError) -> Response[Any]:
    """A JSON body that is not UTF-8 fails inside Litestar's decoder: the client's fault."""
    return problem(400, "Bad request", f"the request body is not valid UTF-8 ({exc.reason} at "
                   f"byte {exc.start})")


def internal_error_handler(_: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    log.exception("unhandled error", exc_info=exc)
    return problem(500, "Internal error", "an unexpected error occurred; see the server log")


def error_response(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    """The problem+json response of any exception (route-level handlers build on it)."""
    if isinstance(exc, core.DocqaError):
        return docqa_error_handler(request, exc)
    if isinstance(exc, HTTPException):
        return http_error_handler(request, exc)
    if isinstance(exc, UnicodeDecodeError):
        return undecodable_body_handler(request, exc)
    return internal_error_handler(request, exc)


EXCEPTION_HANDLERS: ExceptionHandlersMap = {
    core.DocqaError: docqa_error_handler,
    HTTPException: http_error_handler,
    UnicodeDecodeError: undecodable_body_handler,
    Exception: internal_error_handler,
}


# ---------------------------------------------------------------- the schema

# what any route behind the /v1 guards can answer: bad parameters, auth, the rate limit (and
# its Redis being down), bugs
V1_ERRORS = (400, 401, 429, 500, 503)


def problem_responses(*statuses: int, base: Iterable[int] = V1_ERRORS,
                      container: type[Problem] = Problem) -> dict[int, ResponseSpec]:
    """A route's error responses for the OpenAPI document: each status as problem+json,
    described by the problem types it can carry."""
    out: dict[int, ResponseSpec] = {}
    for status in sorted({*base, *statuses}):
        kinds = [k for k, (s, _) in PROBLEM_KINDS.items() if s == status]
        desc = "; ".join(f"`{k.value}`: {PROBLEM_KINDS[k][1]}" for k in kinds)
        out[status] = ResponseSpec(data_container=container, media_type=PROBLEM_JSON,
                                   description=desc or "a problem", generate_examples=False)
    return out


def problem_types_description() -> str:
    """Markdown list of every problem type, for the schema's description."""
    return "\n".join(f"- `{k.value}` ({status}): {what}"
                     for k, (status, what) in PROBLEM_KINDS.items())
