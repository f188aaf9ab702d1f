"""The web page at ``/`` in a real browser (Debian's chromium driven by Playwright) against
the real stack: sign in, upload (file picker and drag and drop), ingest progress, the
document list, a cited answer, errors, delete, sign out.

The browser is the system's ``chromium`` (``scripts/test.sh`` installs the Debian package);
``playwright install`` is never run, it would download a browser build. Without chromium
or Playwright these tests fail with a message saying what to install: they never skip.
Every request the page makes is recorded, and must go to the stack's own URL (the page
works offline and loads nothing from outside).
"""

from __future__ import annotations

import os
import re
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from service.client import DocqaAPIError
from tests.integration.conftest import KEYS, Stack, raw

pytestmark = pytest.mark.integration

INGEST_TIMEOUT_MS = 300_000  # a bound for a slow shared machine, not an expectation
ANSWER_TIMEOUT_MS = 240_000
UNKNOWN_KEY = "unknown or revoked key"

# the 415 case: ELF magic, refused by ingest/detect.py before anything is stored
EXECUTABLE = b"\x7fELF\x02\x01\x01\x00" + bytes(56) + b"\x00" * 200


def _chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        pytest.fail("the web page tests need Debian's chromium: `apt-get install chromium` "
                    "(scripts/test.sh installs it); they never download a browser")
    return path


@dataclass
class Browser:
    """One browser page plus every URL it requested."""

    page: Any
    stack: Stack
    requests: list[str] = field(default_factory=list)
    console: list[str] = field(default_factory=list)  # the page's console, for failure messages

    def open(self) -> None:
        resp = self.page.goto(self.stack.url + "/")
        assert resp is not None and resp.status == 200
        assert "default-src 'self'" in resp.headers["content-security-policy"]

    def sign_in(self, key: str) -> None:
        self.page.get_by_label("API key").fill(key)
        self.page.get_by_role("button", name="Sign in").click()

    def ask(self, question: str) -> str:
        """Ask through the form; the answer's text once the page has it (the Ask button is
        disabled while a question is in flight)."""
        self.page.get_by_role("textbox", name="Question").fill(question)
        self.page.get_by_role("button", name="Ask").click()
        self.page.locator("#ask-button:enabled").wait_for(timeout=ANSWER_TIMEOUT_MS)
        return str(self.page.locator("#answer-text").inner_text())

    def state(self) -> str:
        """What the page shows, for assertion messages."""
        return (f"message={self.page.locator('#message').inner_text()!r} "
                f"answer={self.page.locator('#answer').inner_text()!r} console={self.console}")

    def row(self, filename: str) -> Any:
        return self.page.locator("#document-rows tr", has_text=filename)

    def assert_only_local_requests(self) -> None:
        assert self.requests, "the page made no request at all"
        outside = [u for u in self.requests if not u.startswith(self.stack.url + "/")]
        assert outside == [], f"the page requested URLs outside the service: {outside}"
        blocked = [m for m in self.console if "Content Security Policy" in m]
        assert blocked == [], f"the page broke its own Content-Security-Policy: {blocked}"


@pytest.fixture(scope="module")
def chromium_browser() -> Iterator[Any]:
    executable = _chromium()
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("the web page tests need Playwright: pip install -e '.[test]'")
    with sync_playwright() as pw:
        # --no-sandbox: the tests run as root, where chromium's sandbox refuses to start
        browser = pw.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def web(chromium_browser: Any, stack: Stack) -> Iterator[Browser]:
    context = chromium_browser.new_context()
    page = context.new_page()
    page.set_default_timeout(30_000)
    b = Browser(page, stack)
    page.on("request", lambda request: b.requests.append(request.url))
    page.on("console", lambda msg: b.console.append(f"{msg.type}: {msg.text}"))
    try:
        yield b
    finally:
        context.close()


def _screenshot(page: Any, tmp_path: Path, name: str) -> Path:
    """Under the test's tmp dir, and copied to $DOCQA_SCREENSHOT_DIR when set (a stable
    path to cite in a review)."""
    shot = tmp_path / name
    page.screenshot(path=str(shot), full_page=True)
    target = os.environ.get("DOCQA_SCREENSHOT_DIR")
    if target:
        Path(target).mkdir(parents=True, exist_ok=True)
        shot = Path(shutil.copy2(shot, Path(target) / name))
    print(f"web page screenshot: {shot}")  # noqa: T201 - the path is the point
    return shot


def test_page_and_assets_are_served_without_a_key_and_with_a_strict_policy(stack: Stack) -> None:
    page = raw(stack, "GET", "/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert page.headers["content-security-policy"].startswith("default-src 'self'")
    assert page.headers["x-content-type-options"] == "nosniff"
    assert '<script src="/web/app.js"' in page.text
    assert "://" not in page.text  # nothing absolute: every asset comes from this server
    for asset, kind in (("app.js", "text/javascript"), ("app.css", "text/css"),
                        ("icon.svg", "image/svg+xml")):
        resp = raw(stack, "GET", f"/web/{asset}")
        assert resp.status_code == 200 and resp.headers["content-type"].startswith(kind), asset
        assert "default-src 'self'" in resp.headers["content-security-policy"]
        if asset != "icon.svg":  # (the SVG's xmlns is a name, not a fetch)
            assert "://" not in resp.text, asset
    for bad in ("/web/nope.js", "/web/..%2F..%2Fapp.py", "/web/__init__.py"):
        resp = raw(stack, "GET", bad)
        assert resp.status_code == 404, bad
        assert resp.headers["content-type"].startswith("application/problem+json")
    # the /v1 API still wants its key
    assert raw(stack, "GET", "/v1/documents").status_code == 401


def test_upload_follow_ingest_ask_and_read_the_cited_passage(
    web: Browser, stack: Stack, tmp_path: Path
) -> None:
    tag = uuid.uuid4().hex[:6]
    picked, dropped = f"kestrel-{tag}.txt", f"harbour-{tag}.txt"
    page = web.page
    web.open()
    web.sign_in(KEYS["acme"])
    page.locator("#workspace").wait_for(state="visible")
    assert page.evaluate("sessionStorage.length") == 1

    # the file picker
    page.get_by_label("Choose files").set_input_files(files=[{
        "name": picked, "mimeType": "text/plain",
        "buffer": (f"Project Kestrel{tag} is led by Astrid Vennberg.\n"
                   f"The Kestrel{tag} budget for 2026 is 7.5 million kronor.\n").encode(),
    }])
    # drag and drop: a DataTransfer carrying a file, dropped on the drop zone
    page.evaluate(
        """([name, text]) => {
            const dt = new DataTransfer();
            dt.items.add(new File([text], name, {type: "text/plain"}));
            const zone = document.getElementById("drop-zone");
            for (const type of ["dragenter", "dragover", "drop"]) {
                zone.dispatchEvent(new DragEvent(type, {dataTransfer: dt, bubbles: true,
                                                        cancelable: true}));
            }
        }""",
        [dropped, f"The harbour{tag} ferry leaves from pier 9 at dawn.\n"],
    )
    for name in (picked, dropped):
        web.row(name).and_(page.locator("[data-status='ready']")).wait_for(
            timeout=INGEST_TIMEOUT_MS)
        upload = page.locator("#uploads li", has_text=name)
        assert upload.get_attribute("data-state") == "ready"
        assert re.search(r"ready: [1-9]\d* chunks?, 1 page", upload.inner_text())
    row = web.row(picked).inner_text()
    assert "ready" in row and "done" in row
    # the page followed ingest: the live event stream, or polling where the server has none
    has_events = "/v1/documents/{doc_id}/events" in raw(stack, "GET", "/schema/openapi.json"
                                                        ).json()["paths"]
    followed = [u for u in web.requests
                if "/v1/documents/" in u and (u.endswith("/events") or not has_events)]
    assert followed, web.requests

    answer = web.ask(f"Who leads Project Kestrel{tag}?")
    assert "Vennberg" in answer, web.state()
    assert page.locator("#citations li").count() >= 1, web.state()

    # a citation marker in the answer opens the quoted passage, its file and page
    details = page.locator("#citation-1")
    assert not details.evaluate("d => d.open")
    page.locator("#answer-text button.cite").first.click()
    assert details.evaluate("d => d.open")
    quote = details.locator("blockquote")
    assert quote.is_visible() and "Vennberg" in quote.inner_text()
    summary = details.locator("summary").inner_text()
    assert summary.startswith("[1]") and picked in summary, summary

    shot = _screenshot(page, tmp_path, "docqa-web-answer.png")
    assert shot.stat().st_size > 10_000

    # an honest not-found
    answer = web.ask("What colour is the submarine of the Oslo opera choir?")
    assert answer == "Not found in your documents.", web.state()
    assert page.locator("#citations li").count() == 0

    # a refused upload shows the server's problem detail
    page.get_by_label("Choose files").set_input_files(files=[{
        "name": "tool.txt", "mimeType": "text/plain", "buffer": EXECUTABLE}])
    failed = page.locator("#uploads li[data-state='failed']", has_text="tool.txt")
    failed.wait_for()
    message = page.locator("#message").inner_text()
    assert "executable" in message and "tool.txt" in message, message
    assert "executable" in failed.inner_text()

    page.get_by_role("button", name="Sign out").click()
    page.get_by_label("API key").wait_for()
    assert page.locator("#workspace").is_hidden()
    assert page.evaluate("sessionStorage.length") == 0
    web.assert_only_local_requests()


def test_without_the_event_stream_the_page_polls_until_ready(web: Browser, stack: Stack) -> None:
    """A server without GET /v1/documents/{id}/events (404 on the route): the page falls back
    to polling the document. Only that one route is answered by the browser; the rest is the
    real stack."""
    name = f"polled-{uuid.uuid4().hex[:6]}.txt"
    page = web.page
    refused: list[str] = []

    def no_such_route(route: Any) -> None:
        refused.append(route.request.url)
        route.fulfill(status=404, content_type="application/problem+json",
                      body='{"status": 404, "title": "Not found", "detail": "Not Found"}')

    page.route("**/v1/documents/*/events", no_such_route)
    web.open()
    web.sign_in(KEYS["acme"])
    page.get_by_label("Choose files").set_input_files(files=[{
        "name": name, "mimeType": "text/plain", "buffer": b"Polling still finds the end.\n"}])
    web.row(name).and_(page.locator("[data-status='ready']")).wait_for(timeout=INGEST_TIMEOUT_MS)
    assert page.locator("#uploads li", has_text=name).get_attribute("data-state") == "ready"
    doc_id = web.row(name).get_attribute("data-id")
    assert f"{stack.url}/v1/documents/{doc_id}/events" in refused, refused
    polls = [u for u in web.requests if u == f"{stack.url}/v1/documents/{doc_id}"]
    assert polls, web.requests
    assert page.locator("#message").inner_text() == ""
    web.assert_only_local_requests()


def test_wrong_key_shows_the_error_and_no_documents(web: Browser, stack: Stack) -> None:
    with stack.client("acme") as acme:
        acme.upload_bytes(f"visible-{uuid.uuid4().hex[:6]}.txt", b"Acme keeps this one.\n")
    page = web.page
    web.open()
    web.sign_in("dq_not-a-key-" + uuid.uuid4().hex)
    error = page.locator("#sign-in-error")
    error.get_by_text(UNKNOWN_KEY).wait_for()
    assert page.locator("#workspace").is_hidden()
    assert page.locator("#document-rows tr").count() == 0
    assert page.evaluate("sessionStorage.length") == 0

    # a key revoked while the page holds it: the next call sends the page back to sign in
    page.evaluate("sessionStorage.setItem('docqa.apiKey', 'revoked-' + Date.now())")
    page.reload()
    error.get_by_text(UNKNOWN_KEY).wait_for()
    assert page.locator("#document-rows tr").count() == 0
    web.assert_only_local_requests()


def test_delete_asks_first_then_removes_the_row(web: Browser, stack: Stack) -> None:
    name = f"scratch-{uuid.uuid4().hex[:6]}.txt"
    with stack.client("acme") as acme:
        doc_id = acme.upload_bytes(name, b"The scratch note says nothing of value.\n")["id"]
        acme.wait_ready([doc_id], timeout=INGEST_TIMEOUT_MS / 1000)
    page = web.page
    web.open()
    web.sign_in(KEYS["acme"])
    row = web.row(name)
    row.wait_for()

    dialogs: list[str] = []

    def answer(dialog: Any, accept: bool) -> None:
        dialogs.append(dialog.message)
        dialog.accept() if accept else dialog.dismiss()

    page.once("dialog", lambda d: answer(d, False))
    row.get_by_role("button", name=f"Delete {name}").click()
    assert len(dialogs) == 1 and name in dialogs[0]
    assert row.count() == 1  # declined: still there

    page.once("dialog", lambda d: answer(d, True))
    row.get_by_role("button", name=f"Delete {name}").click()
    row.wait_for(state="detached")
    page.get_by_text(f"Deleted {name}").wait_for()
    with stack.client("acme") as acme, pytest.raises(DocqaAPIError) as gone:
        acme.document(doc_id)
    assert gone.value.status == 404
    # and it stays gone after a reload
    page.reload()
    page.locator("#workspace").wait_for(state="visible")
    assert web.row(name).count() == 0
    web.assert_only_local_requests()


def test_the_schema_page_renders_and_loads_nothing_from_outside(web: Browser) -> None:
    """``/schema``, which ``docqa up`` tells every user to open, used to pull Redoc from a
    CDN and fonts from Google; now Swagger UI's own files come from the service."""
    resp = web.page.goto(web.stack.url + "/schema")
    assert resp is not None and resp.status == 200
    title = web.page.locator(".swagger-ui .info .title")
    title.wait_for()
    assert "docqa" in title.inner_text()
    web.page.locator(".opblock-summary-path", has_text="/v1/ask").first.wait_for()
    assert any(u.endswith("/schema-assets/swagger-ui-bundle.js") for u in web.requests)
    web.assert_only_local_requests()
