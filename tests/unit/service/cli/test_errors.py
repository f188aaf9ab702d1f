"""``docqa``'s exit codes and one-line errors (service/cli/errors.py), through the command
line against a fake API: 0 ok, 1 not found, 2 usage or auth, 3 service unreachable or
unavailable; never a traceback."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from click.testing import Result

from service.cli.errors import FAILED, UNAVAILABLE, USAGE, cli_error
from service.client import DocqaAPIError
from tests.unit.service.cli.conftest import URL, FakeAPI, problem, run, sse


def one_error_line(result: Result) -> str:
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.output and lines[0].startswith("Error: ")
    return lines[0]


@pytest.mark.parametrize(("status", "code", "says"), [
    (400, USAGE, "refused the request"),
    (401, USAGE, "refused the key"),
    (403, USAGE, "refused the key"),
    (404, FAILED, "not found"),
    (409, USAGE, "refused the request"),
    (413, USAGE, "refused the request"),
    (415, USAGE, "refused the request"),
    (422, USAGE, "refused the request"),
    (429, UNAVAILABLE, "unavailable"),
    (500, UNAVAILABLE, "unavailable"),
    (503, UNAVAILABLE, "unavailable"),
])
def test_an_api_error_is_one_line_with_its_exit_code(api: FakeAPI, status: int, code: int,
                                                     says: str) -> None:
    api.override = lambda _req: problem(status, "Some title", "what went\nwrong",
                                        {"Retry-After": "1"})
    result = run("ask", "Where is the stapler?")
    assert result.exit_code == code
    line = one_error_line(result)
    assert says in line and f"HTTP {status} Some title: what went wrong" in line
    assert result.stdout == ""


def test_a_wrong_key_exits_2_and_says_which_setting_to_check(api: FakeAPI) -> None:
    result = run("documents", "list", env={"DOCQA_API_KEY": "wrong"})
    assert result.exit_code == 2
    assert "DOCQA_API_KEY" in one_error_line(result)


def test_a_missing_key_exits_2_in_one_line(api: FakeAPI) -> None:
    result = run("search", "q", env={"DOCQA_API_KEY": "", "DOCQA_API_KEYS": ""})
    assert result.exit_code == 2 and "no API key" in one_error_line(result)
    assert api.requests == []


def test_a_rate_limit_is_waited_out_before_exit_3(api: FakeAPI) -> None:
    api.override = lambda _req: problem(429, "Too many requests", "slow down",
                                        {"Retry-After": "0.1"})
    result = run("search", "q")
    assert result.exit_code == 3 and "retry after 0.1 s" in one_error_line(result)
    assert len(api.requests) > 1  # sent again after Retry-After before giving up


def test_an_unreachable_service_exits_3_naming_its_url(api: FakeAPI) -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("[Errno 111] Connection refused", request=request)

    api.override = refuse
    for args in (["ask", "q"], ["ask", "q", "--stream"], ["search", "q", "--json"],
                 ["documents", "list"], ["documents", "get", "x"], ["documents", "delete", "x"]):
        result = run(*args)
        assert result.exit_code == 3, args
        assert f"cannot reach the docqa API at {URL}" in one_error_line(result)


def test_a_timeout_exits_3(api: FakeAPI) -> None:
    def slow(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("timed out", request=request)

    api.override = slow
    result = run("ask", "q")
    assert result.exit_code == 3 and "did not answer in time" in one_error_line(result)


def test_a_url_without_scheme_is_a_usage_error() -> None:
    result = run("ask", "q", "--url", "localhost:8080")
    assert result.exit_code == 2 and "DOCQA_URL" in one_error_line(result)


def test_bad_settings_are_a_usage_error(api: FakeAPI) -> None:
    result = run("ask", "q", env={"DOCQA_PORT": "eighty"})
    assert result.exit_code == 2 and "invalid settings (port" in one_error_line(result)


def test_an_error_event_inside_a_stream_is_mapped_too(api: FakeAPI) -> None:
    api.override = lambda req: sse(("token", {"text": "The "}), (
        "error", {"status": 503, "title": "Unavailable", "detail": "vector store down"})
    ) if req.url.path == "/v1/ask" else None
    result = run("ask", "q", "--stream")
    assert result.exit_code == 3 and "vector store down" in one_error_line(result)
    assert result.stdout == "The "


def test_version_and_the_documented_exit_codes() -> None:
    version = run("--version")
    assert version.exit_code == 0 and version.stdout.startswith("docqa ")
    helped = run("--help")
    assert helped.exit_code == 0
    for line in ("Exit codes:", "0  done", "1  some documents failed", "2  usage or auth",
                 "3  service unreachable", "DOCQA_URL", "DOCQA_API_KEY"):
        assert line in helped.stdout


def test_url_comes_from_the_flag_then_docqa_url(api: FakeAPI) -> None:
    assert run("documents", "list").exit_code == 0
    assert run("documents", "list", "--url", URL + "/").exit_code == 0
    assert api.base_urls == [URL, URL + "/"]


def test_up_takes_a_host_like_serve() -> None:
    assert "--host" in run("up", "--help").stdout


def test_other_client_errors_keep_their_own_code() -> None:
    assert cli_error(DocqaAPIError(418, {"title": "Teapot"})).exit_code == USAGE
    assert cli_error(httpx.RemoteProtocolError("peer closed")).exit_code == UNAVAILABLE


@pytest.mark.parametrize("command", ["serve", "up"])
@pytest.mark.parametrize("setting", ["DOCQA_API_KEYS", "DOCQA_ADMIN_KEY"])
def test_serve_and_up_refuse_a_key_shorter_than_24_characters(
        command: str, setting: str, tmp_path: Path) -> None:
    """Before anything starts (no Redis is reachable here, no port is bound): exit 2, one
    line that names what to fix and never shows the key (issue 15, point 7)."""
    value = "acme:change-me" if setting == "DOCQA_API_KEYS" else "change-me-admin"
    result = run(command, env={setting: value, "DOCQA_DATA_DIR": str(tmp_path / "data"),
                               "DOCQA_REDIS_URL": "redis://127.0.0.1:1/0"})
    assert result.exit_code == USAGE
    line = one_error_line(result)
    assert "24 characters" in line and "change-me" not in line
    assert ("'acme'" if setting == "DOCQA_API_KEYS" else "DOCQA_ADMIN_KEY") in line
    assert not (tmp_path / "data").exists()  # nothing was started or written
