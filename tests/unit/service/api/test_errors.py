"""Domain errors map to RFC 9457 problem+json once, at the edge (tiny inline app)."""

import pytest
from litestar import Litestar, get
from litestar.exceptions import HTTPException
from litestar.testing import TestClient

from core import errors
from service.api.errors import docqa_error_handler, http_error_handler, internal_error_handler


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
