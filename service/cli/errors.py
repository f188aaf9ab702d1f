"""The exit codes of ``docqa`` and the one place where errors become them.

    0  done
    1  some documents failed, were refused at upload, or were not found (404)
    2  usage or authentication: bad flags or arguments (click's own code), no API key, a key
       the API refuses (401, 403), or a request it refuses as invalid (400, 409, 413, 415,
       422); the same command will fail again
    3  the service is unreachable or unavailable: connection refused, unknown host, timeouts,
       a connection broken mid-answer, any 5xx (503: a dependency is down or the model's
       queue is full), and 429 once the client has waited out ``Retry-After`` for 120 s;
       the same command may succeed later

Commands raise :class:`service.client.DocqaAPIError` and httpx's errors as they come;
:class:`service.cli.LazyGroup` turns them into a one-line message on stderr and the code
above (:func:`cli_error`). An upload the API refuses is no error of the command:
``docqa ingest`` counts it, names the file, and goes on (exit 1 at the end).
"""

from __future__ import annotations

import click
import httpx
import pydantic

from core.errors import ConfigurationError
from service.client import DocqaAPIError

OK = 0
FAILED = 1  # some documents failed, were rejected or not found
USAGE = 2  # usage or auth: retrying the same command will not help
UNAVAILABLE = 3  # service unreachable or unavailable: retrying later may help

AUTH_STATUSES = frozenset({401, 403})
# the API refused the request itself (as an upload: that file is rejected, the others go on)
REFUSED_STATUSES = frozenset({400, 409, 413, 415, 422})

HANDLED = (DocqaAPIError, httpx.HTTPError, httpx.InvalidURL, ConfigurationError,
           pydantic.ValidationError)


class CliError(click.ClickException):
    """A one-line ``Error: ...`` on stderr, exit 1 (documents failed or not found)."""

    exit_code = FAILED

    def __init__(self, message: str) -> None:
        super().__init__(one_line(message))


class UsageOrAuthError(CliError):
    exit_code = USAGE


class ServiceUnavailableError(CliError):
    exit_code = UNAVAILABLE


_BY_CODE: dict[int, type[CliError]] = {
    FAILED: CliError, USAGE: UsageOrAuthError, UNAVAILABLE: ServiceUnavailableError}


def _error(message: str, code: int) -> CliError:
    return _BY_CODE[code](message)


def one_line(text: str) -> str:
    return " ".join(str(text).split())


def _origin(exc: httpx.HTTPError) -> str:
    try:
        url = exc.request.url
    except RuntimeError:  # an error raised without its request
        return "the docqa API"
    return f"the docqa API at {url.scheme}://{url.netloc.decode()}"


def api_error_text(exc: DocqaAPIError) -> str:
    """``HTTP 415 Unsupported media type: <detail>``."""
    title = f" {exc.title}" if exc.title else ""
    detail = exc.detail
    return f"HTTP {exc.status}{title}" + (f": {detail}" if detail and detail != exc.title else "")


def exit_code_of(exc: DocqaAPIError) -> int:
    if exc.status == 404:
        return FAILED
    if exc.status in AUTH_STATUSES or exc.status in REFUSED_STATUSES:
        return USAGE
    if exc.status == 429 or exc.status >= 500:
        return UNAVAILABLE
    return USAGE  # another 4xx: the request, not the service


def cli_error(exc: BaseException) -> CliError:
    """The message and exit code for an error a command let through (one of ``HANDLED``)."""
    if isinstance(exc, DocqaAPIError):
        code, text = exit_code_of(exc), api_error_text(exc)
        if exc.status in AUTH_STATUSES:
            return _error(f"the API refused the key ({text}); check --api-key or "
                          "DOCQA_API_KEY", code)
        if exc.status == 404:
            return _error(f"not found ({text})", code)
        if code == UNAVAILABLE:
            wait = exc.retry_after
            later = f"; retry after {wait:g} s" if wait is not None else "; retry later"
            return _error(f"the service is unavailable ({text}){later}", code)
        return _error(f"the API refused the request ({text})", code)
    if isinstance(exc, httpx.UnsupportedProtocol | httpx.InvalidURL):
        return _error(f"invalid API URL ({exc}); give --url or DOCQA_URL as "
                      "http://HOST:PORT", USAGE)
    if isinstance(exc, httpx.TimeoutException):
        return _error(f"{_origin(exc)} did not answer in time ({type(exc).__name__})",
                      UNAVAILABLE)
    if isinstance(exc, httpx.HTTPError):
        return _error(f"cannot reach {_origin(exc)} ({type(exc).__name__}: {exc})",
                      UNAVAILABLE)
    if isinstance(exc, pydantic.ValidationError):
        errors = exc.errors()
        if errors:
            where = ".".join(str(p) for p in errors[0]["loc"])
            return _error(f"invalid settings ({where}: {errors[0]['msg']})", USAGE)
        return _error(f"invalid settings ({exc})", USAGE)
    return _error(f"invalid settings ({exc})", USAGE)
