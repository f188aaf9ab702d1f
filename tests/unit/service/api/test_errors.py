"""Domain errors map to RFC 9457 problem+json once, at the edge (tiny inline app)."""

import logging
import re
from typing import Annotated

import msgspec
import pytest
from litestar import Litestar, get, post
from litestar.exceptions import HTTPException
from litestar.params import JSONBody, QueryParameter
from litestar.testing import TestClient

from core import errors
from service.api.errors import (
    EXCEPTION_HANDLERS,
    PROBLEM_KINDS,
    ProblemType,
    docqa_error_handler,
    domain_problem,
    http_error_handler,
    internal_error_handler,
)


@pytest.mark.parametrize(
    ("exc", "status"),
    [(errors.NotFoundError("x"), 404), (errors.UnauthorizedError("x"), 401),
     (errors.PayloadTooLargeError("x"), 413), (errors.UnsupportedMediaError("x"), 415),
     (errors.BadInputError("x"), 400), (errors.OverloadedError("x", 7), 503),
     (errors.StoreUnavailableError("x"), 503), (RuntimeError("boom"), 500)],
)
def test_errors_become_problem_details(exc: Exception, status: int) -> None:
    @get("/")
    async def boom() -> None:
        raise exc

    app = Litestar([boom], exception_handlers={
        errors.DocqaError: docqa_error_handler, HTTPException: http_error_handler,
        Exception: internal_error_handler})
    with TestClient(app) as client:
        resp = client.get("/")
    assert resp.status_code == status
    assert resp.headers["content-type"].startswith("application/problem+json")
    body = resp.json()
    assert body["status"] == status and body["title"] and body["detail"]
    if status == 503:
        assert resp.headers["retry-after"] == ("7" if isinstance(exc, errors.OverloadedError) else "5")
    if status == 500:
        assert "boom" not in body["detail"]  # internals are logged, not leaked


def _app_raising(exc: Exception) -> Litestar:
    @get("/")
    async def boom() -> None:
        raise exc

    return Litestar([boom], exception_handlers=EXCEPTION_HANDLERS, logging_config=None)


@pytest.mark.parametrize(
    ("exc", "kind"),
    [(errors.EmptyUploadError("x"), "empty-upload"),
     (errors.ParseError("x"), "unparseable-document"),
     (errors.BadInputError("x"), "bad-request"),
     (errors.ConflictError("x"), "conflict"),
     (errors.RateLimitedError("x"), "rate-limited"),
     (errors.StoreUnavailableError("x"), "store-unavailable"),
     (errors.QueueUnavailableError("x"), "queue-unavailable"),
     (errors.OverloadedError("x"), "overloaded"),
     (errors.TransientError("x"), "service-unavailable"),
     (errors.ConfigurationError("x"), "internal-error"),
     (RuntimeError("x"), "internal-error"),
     (HTTPException(status_code=405), "method-not-allowed")],
)
def test_each_error_kind_has_its_own_stable_type(exc: Exception, kind: str) -> None:
    with TestClient(_app_raising(exc)) as client:
        body = client.get("/").json()
    assert body["type"] == f"urn:docqa:problem:{kind}"
    assert ProblemType(body["type"]) in PROBLEM_KINDS
    assert PROBLEM_KINDS[ProblemType(body["type"])][0] == body["status"]


def test_every_problem_type_is_a_urn_with_one_status() -> None:
    assert set(PROBLEM_KINDS) == set(ProblemType)
    assert all(re.fullmatch(r"urn:docqa:problem:[a-z]+(-[a-z]+)*", k.value) for k in ProblemType)


def test_a_503_says_which_dependency_but_not_where_it_lives(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Issue 15: the raw exception text (driver messages with internal hosts and ports) went
    to the client. It goes to the log; the client gets the kind and Retry-After."""
    cause = "could not enqueue the ingest job: Error 111 connecting to 10.20.30.40:6380."
    with caplog.at_level(logging.WARNING, "docqa.api"), TestClient(
            _app_raising(errors.QueueUnavailableError(cause))) as client:
        resp = client.get("/")
    body = resp.json()
    assert resp.status_code == 503 and resp.headers["retry-after"] == "5"
    assert body["type"] == "urn:docqa:problem:queue-unavailable"
    assert body["title"] == "Job queue unavailable" and body["detail"]
    assert "10.20.30.40" not in resp.text and "6380" not in resp.text
    assert "10.20.30.40:6380" in caplog.text


def test_a_stream_error_event_is_the_same_problem_without_the_cause() -> None:
    body = domain_problem(errors.StoreUnavailableError("Chroma server unavailable: "
                                                      "ConnectError: chroma.internal:8000"))
    assert body["type"] == "urn:docqa:problem:store-unavailable" and body["status"] == 503
    assert "chroma.internal" not in str(body)


def test_validation_errors_are_a_list_of_fields_not_a_python_repr() -> None:
    class Body(msgspec.Struct, forbid_unknown_fields=True):
        name: Annotated[str, msgspec.Meta(min_length=1)]
        size: int = 0

    @post("/items")
    async def create(data: JSONBody[Body],
                     limit: Annotated[int, QueryParameter(ge=1)] = 1) -> None:
        return None

    app = Litestar([create], exception_handlers=EXCEPTION_HANDLERS)
    with TestClient(app) as client:
        body_err = client.post("/items", json={"name": "a", "size": "big"})
        query_err = client.post("/items?limit=0", json={"name": "a"})
        malformed = client.post("/items", content=b"{nope",
                                headers={"content-type": "application/json"})
    assert body_err.status_code == 400
    assert body_err.headers["content-type"].startswith("application/problem+json")
    problem = body_err.json()
    assert problem["type"] == "urn:docqa:problem:invalid-request"
    assert problem["errors"] == [{"location": "body", "field": "size",
                                  "message": "Expected `int`, got `str`"}]
    assert "size" in problem["detail"] and "[{" not in problem["detail"]
    assert query_err.json()["errors"] == [{"location": "query", "field": "limit",
                                           "message": "Expected `int` >= 1"}]
    # a body that is no JSON at all names no field: a plain bad request, no `errors`
    assert malformed.status_code == 400
    assert malformed.json()["type"] == "urn:docqa:problem:bad-request"
    assert "errors" not in malformed.json()
