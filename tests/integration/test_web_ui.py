"""The web page at ``/`` in a real browser (Debian's chromium driven by Playwright) against
the real stack: sign in, upload (file picker and drag and drop), ingest progress through one
event stream, the paged and filtered document list, a conversation with follow-ups, asking
and searching within ticked documents, a cited passage in its context, hostile text shown
and never run, errors, delete, sign out.

The browser is the system's ``chromium`` (``scripts/test.sh`` installs the Debian package);
``playwright install`` is never run, it would download a browser build. Without chromium
or Playwright these tests fail with a message saying what to install: they never skip.
Every request the page makes is recorded, and must go to the stack's own URL (the page
works offline and loads nothing from outside). The documents most tests ask about are
uploaded once for the module (``corpus``).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
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
EVENTS = "/v1/documents/events"

# the 415 case: ELF magic, refused by ingest/detect.py before anything is stored
EXECUTABLE = b"\x7fELF\x02\x01\x01\x00" + bytes(56) + b"\x00" * 200
# what must stay text: markup in a document's words and in its name
HOSTILE_MARKUP = '<img src=x onerror="window.__pwned=1"><script>window.__pwned=2</script>'
HOSTILE_NAME = "<img src=x onerror=window.__pwned=3>"


def _chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        pytest.fail("the web page tests need Debian's chromium: `apt-get install chromium` "
                    "(scripts/test.sh installs it); they never download a browser")
    return path


@dataclass
class Sent:
    """A request the page made: its method, URL and JSON body (None when it has none)."""

    method: str
    url: str
    body: Any


@dataclass
class Browser:
    """One browser page plus every request it made, and the event streams it holds open."""

    page: Any
    stack: Stack
    requests: list[str] = field(default_factory=list)
    sent: list[Sent] = field(default_factory=list)
    console: list[str] = field(default_factory=list)  # the page's console, for failure messages
    open_streams: int = 0  # batch event streams requested and not yet finished or failed
    most_streams: int = 0  # the most that were open at once

    def on_request(self, request: Any) -> None:
        self.requests.append(request.url)
        body = None
        if "application/json" in (request.headers.get("content-type") or ""):
            body = json.loads(request.post_data or "null")
        self.sent.append(Sent(request.method, request.url, body))
        if self._is_stream(request):
            self.open_streams += 1
            self.most_streams = max(self.most_streams, self.open_streams)

    def on_request_over(self, request: Any) -> None:
        if self._is_stream(request):
            self.open_streams -= 1

    def _is_stream(self, request: Any) -> bool:
        return bool(request.method == "POST" and request.url == self.stack.url + EVENTS)

    def wait_until(self, condition: Any, what: str, bound_s: float = 60) -> None:
        """Until ``condition()`` holds: the browser's events are taken in while it waits.
        ``bound_s`` only keeps a broken page from hanging the run."""
        for _ in range(int(bound_s * 10)):
            if condition():
                return
            self.page.wait_for_timeout(100)
        pytest.fail(f"the page never got to: {what}; requests: {self.sent}")

    def bodies(self, method: str, path: str) -> list[Any]:
        return [s.body for s in self.sent if s.method == method and s.url == self.stack.url + path]

    def open(self) -> None:
        resp = self.page.goto(self.stack.url + "/")
        assert resp is not None and resp.status == 200
        assert "default-src 'self'" in resp.headers["content-security-policy"]

    def sign_in(self, key: str) -> None:
        self.page.get_by_label("API key").fill(key)
        self.page.get_by_role("button", name="Sign in").click()

    def start(self) -> None:
        self.open()
        self.sign_in(KEYS["acme"])
        self.page.locator("#workspace").wait_for(state="visible")

    def turn(self, n: int) -> Any:
        """The thread's n-th question and answer (from 1)."""
        return self.page.locator(f"#thread > li:nth-child({n})")

    def ask(self, question: str) -> str:
        """Ask through the form; the text of the turn's answer once the page has it."""
        n = self.page.locator("#thread > li").count() + 1
        self.page.get_by_role("textbox", name="Question", exact=True).fill(question)
        self.page.get_by_role("button", name="Ask", exact=True).click()
        self.page.locator(f"#thread > li:nth-child({n}):not([data-state='asking'])").wait_for(
            timeout=ANSWER_TIMEOUT_MS)
        return str(self.turn(n).locator(".answer-text").inner_text())

    def filter_list(self, name: str, page_size: int | None = None) -> None:
        if page_size is not None:
            self.page.get_by_label("Per page").select_option(str(page_size))
        self.page.get_by_role("searchbox", name="Name contains").fill(name)
        self.page.get_by_role("button", name="Filter", exact=True).click()

    def state(self) -> str:
        """What the page shows, for assertion messages."""
        return (f"message={self.page.locator('#message').inner_text()!r} "
                f"thread={self.page.locator('#thread').inner_text()!r} console={self.console}")

    def row(self, filename: str) -> Any:
        return self.page.locator("#document-rows tr", has_text=filename)

    def assert_nothing_ran(self) -> None:
        """Document text and names were shown as text: no element made from them, nothing
        they carry ran."""
        assert self.page.evaluate("window.__pwned") is None
        made = self.page.evaluate(
            "document.querySelectorAll('main img, main script, dialog img, dialog script')"
            ".length")
        assert made == 0

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
    page.on("request", b.on_request)
    page.on("requestfinished", b.on_request_over)
    page.on("requestfailed", b.on_request_over)
    page.on("console", lambda msg: b.console.append(f"{msg.type}: {msg.text}"))
    try:
        yield b
    finally:
        context.close()


@dataclass
class Corpus:
    """Documents uploaded once for the module's questions, all ready: their ids by name."""

    tag: str
    ids: dict[str, str]

    def name(self, stem: str) -> str:
        return f"{stem}-{self.tag}.txt"


@pytest.fixture(scope="module")
def corpus(stack: Stack) -> Corpus:
    tag = uuid.uuid4().hex[:6]
    texts = {
        "kestrel": (f"Project Kestrel{tag} is led by Astrid Vennberg.\n"
                    f"The Kestrel{tag} budget for 2026 is 7.5 million kronor.\n"),
        "heron": (f"Project Heron{tag} is led by Mikael Strand.\n"
                  f"The Heron{tag} budget for 2026 is 3.2 million kronor.\n"),
        "north": f"The north depot{tag} stores 40 pallets of timber.\n",
        "south": f"The south depot{tag} stores 75 pallets of timber.\n",
        HOSTILE_NAME: (f"The parrot{tag} was bought in 2019 {HOSTILE_MARKUP} at a shop in "
                       "Oslo.\n"),
    }
    with stack.client("acme") as acme:
        ids = {f"{stem}-{tag}.txt": acme.upload_bytes(f"{stem}-{tag}.txt", text.encode())["id"]
               for stem, text in texts.items()}
        done = acme.wait_ready(list(ids.values()), timeout=INGEST_TIMEOUT_MS / 1000)
    assert {d["status"] for d in done.values()} == {"ready"}, done
    return Corpus(tag, ids)


@contextmanager
def worker_held(stack: Stack) -> Iterator[None]:
    """The stack's worker stopped (SIGSTOP, its whole process group): uploads stay queued
    until it goes on (SIGCONT), whatever happens in between.

    Only once it is idle: a worker stopped mid-ingest would hold its write lock on the
    keyword index, and every question would wait on that lock."""
    deadline = time.monotonic() + INGEST_TIMEOUT_MS / 1000
    while True:
        busy = 0
        for tenant in KEYS:
            with stack.client(tenant) as client:
                counts = client.counts()
            busy += counts["queued"] + counts["processing"]
        if not busy:
            break
        if time.monotonic() > deadline:
            pytest.fail(f"the worker never became idle: {busy} documents still ingesting")
        time.sleep(0.5)
    group = stack.procs["worker"].pid
    os.killpg(group, signal.SIGSTOP)
    try:
        yield
    finally:
        os.killpg(group, signal.SIGCONT)


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
    web.start()
    assert page.evaluate("sessionStorage.length") == 1
    # the question comes first: the form is above the upload zone and the document list
    order = page.evaluate("""() => ["ask-form", "drop-zone", "document-table"].map(
        (id) => document.getElementById(id).getBoundingClientRect().top)""")
    assert order == sorted(order), order

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
        upload.and_(page.locator("[data-state='ready']")).wait_for()
        assert re.search(r"ready: [1-9]\d* chunks?, 1 page", upload.inner_text())
    row = web.row(picked).inner_text()
    assert "ready" in row and "done" in row
    # the page followed ingest through the batch event stream
    followed = {i for body in web.bodies("POST", EVENTS) for i in body["ids"]}
    uploaded = {web.row(name).get_attribute("data-id") for name in (picked, dropped)}
    assert uploaded <= followed, web.sent

    answer = web.ask(f"Who leads Project Kestrel{tag}?")
    assert "Vennberg" in answer, web.state()
    first = web.turn(1)
    assert first.locator(".citations li").count() >= 1, web.state()
    details = page.locator("#turn-1-citation-1")
    summary = details.locator("summary").inner_text()
    assert summary.startswith("[1]") and picked in summary, summary
    quote = str(details.locator("blockquote").text_content())  # (the details are closed)

    # a citation marker opens the passage in its context, the cited span marked
    cite = first.locator(".answer-text button.cite").first
    cite.click()
    passage = page.locator("#passage[data-state='shown']")
    passage.wait_for()
    mark = passage.locator("#passage-text mark")
    assert mark.count() == 1 and "Vennberg" in mark.inner_text()
    assert " ".join(mark.inner_text().split()) == " ".join(quote.split())
    context = passage.locator("#passage-text").inner_text()
    assert "7.5 million kronor" in context and context.index(mark.inner_text()) >= 0
    assert picked in page.locator("#passage-title").inner_text()
    shot = _screenshot(page, tmp_path, "docqa-web-answer.png")
    assert shot.stat().st_size > 10_000
    page.keyboard.press("Escape")
    page.locator("#passage").wait_for(state="hidden")
    assert page.evaluate("document.activeElement.classList.contains('cite')")

    # an honest not-found, as the thread's second turn
    answer = web.ask("What colour is the submarine of the Oslo opera choir?")
    assert answer == "Not found in your documents.", web.state()
    assert web.turn(2).locator(".citations li").count() == 0

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
    assert page.locator("#thread > li").count() == 0
    web.assert_only_local_requests()


def test_a_follow_up_sends_the_earlier_questions_and_a_new_conversation_none(
    web: Browser, corpus: Corpus
) -> None:
    web.start()
    first = f"Who leads Project Kestrel{corpus.tag}?"
    assert "Vennberg" in web.ask(first), web.state()
    # "its" is Project Kestrel's (Project Heron has a budget for 2026 too): the thread's
    # first question says so
    second = "What is its budget for 2026?"
    follow_up = web.ask(second)
    assert "7.5 million" in follow_up, web.state()
    assert web.page.locator("#thread > li").count() == 2
    assert second in web.turn(2).locator(".question").inner_text()
    cited = web.turn(2).locator(".citations summary").all_inner_texts()
    assert cited and all(corpus.name("kestrel") in c for c in cited), cited
    asked = web.bodies("POST", "/v1/ask")
    assert [b["history"] for b in asked] == [[], [first]]
    assert [b["question"] for b in asked] == [first, second]

    web.page.get_by_role("button", name="New conversation").click()
    assert web.page.locator("#thread > li").count() == 0
    web.ask(second)
    assert web.page.locator("#thread > li").count() == 1
    assert web.bodies("POST", "/v1/ask")[-1]["history"] == []
    web.assert_only_local_requests()


def test_asking_and_searching_within_the_ticked_documents(
    web: Browser, corpus: Corpus
) -> None:
    page = web.page
    north, south = corpus.name("north"), corpus.name("south")
    web.start()
    web.filter_list(corpus.tag)
    web.row(north).wait_for()
    page.get_by_role("checkbox", name=f"Ask within {south}").check()
    assert south in page.locator("#scope").inner_text()

    question = f"How many pallets does the depot{corpus.tag} store?"
    answer = web.ask(question)
    assert "75" in answer, web.state()
    cited = web.turn(1).locator(".citations summary").all_inner_texts()
    assert cited and all(south in c for c in cited), cited
    assert web.bodies("POST", "/v1/ask")[-1]["filters"] == {
        "document_ids": [corpus.ids[south]]}

    # the search tab, in the same scope
    page.get_by_role("tab", name="Search").click()
    assert page.locator("#ask").is_hidden()
    page.get_by_role("searchbox", name="Search for").fill(f"pallets of timber depot{corpus.tag}")
    page.get_by_role("button", name="Search", exact=True).click()
    hits = page.locator("#search-results > li")
    hits.first.wait_for()
    sources = page.locator("#search-results .hit-source").all_inner_texts()
    assert sources and all(south in s and "page 1" in s for s in sources), sources
    assert "75 pallets" in hits.first.locator(".snippet").inner_text()
    assert web.bodies("POST", "/v1/search")[-1]["filters"] == {
        "document_ids": [corpus.ids[south]]}
    # a hit opens in its context too
    hits.first.get_by_role("button", name=re.compile("Show in context")).click()
    page.locator("#passage[data-state='shown'] mark", has_text="75 pallets").wait_for()
    page.get_by_role("button", name="Close").click()

    # all documents again: both depots are found
    page.get_by_role("button", name="Use all documents").click()
    assert not page.get_by_role("checkbox", name=f"Ask within {south}").is_checked()
    page.get_by_role("button", name="Search", exact=True).click()
    page.locator("#search-results .hit-source", has_text=north).first.wait_for()
    assert "filters" not in web.bodies("POST", "/v1/search")[-1]
    # the tabs work from the keyboard
    page.get_by_role("tab", name="Search").focus()
    page.keyboard.press("ArrowLeft")
    assert page.locator("#ask").is_visible() and page.locator("#search").is_hidden()
    web.assert_only_local_requests()


def test_the_list_pages_and_filters_by_name(web: Browser, stack: Stack) -> None:
    tag = uuid.uuid4().hex[:6]
    names = [f"paged-{tag}-{i}.txt" for i in range(6)]
    with stack.client("acme") as acme:
        for i, name in enumerate(names):
            acme.upload_bytes(name, f"Paged note {i} of {tag}.\n".encode())
    page = web.page
    web.start()
    web.filter_list(f"PAGED-{tag}", page_size=5)
    info = page.locator("#page-info")
    info.get_by_text("Documents 1–5 of 6").wait_for()
    shown = page.locator("#document-rows td:nth-child(2)")
    assert shown.all_inner_texts() == names[::-1][:5]  # newest first
    assert page.get_by_role("button", name="Previous page").is_disabled()
    page.get_by_role("button", name="Next page").click()
    info.get_by_text("Documents 6–6 of 6").wait_for()
    assert shown.all_inner_texts() == [names[0]]
    assert page.get_by_role("button", name="Next page").is_disabled()
    page.get_by_role("button", name="Previous page").click()
    info.get_by_text("Documents 1–5 of 6").wait_for()
    listed = [u for u in web.requests if "/v1/documents?" in u]
    assert all("limit=5" in u for u in listed[-3:]) and "offset=5" in listed[-2], listed
    assert not any("limit=500" in u for u in listed)

    web.filter_list(f"no-such-{tag}")
    page.locator("#no-documents").get_by_text("No document matches.").wait_for()
    assert page.locator("#document-rows tr").count() == 0
    web.assert_only_local_requests()


def test_many_ingesting_documents_share_one_event_stream_and_ask_still_works(
    web: Browser, stack: Stack, corpus: Corpus
) -> None:
    """Seven uploads ingesting at once: the page follows them with one stream (a browser
    has six connections per server; a stream each left none for asking or deleting)."""
    tag = uuid.uuid4().hex[:6]
    names = [f"busy-{tag}-{i}.txt" for i in range(7)]
    page = web.page
    web.start()
    with worker_held(stack):
        page.get_by_label("Choose files").set_input_files(files=[
            {"name": name, "mimeType": "text/plain",
             "buffer": f"Busy note {i} of {tag}.\n".encode()} for i, name in enumerate(names)])
        for name in names:
            web.row(name).and_(page.locator("[data-status='queued']")).wait_for()
        ids = {web.row(name).get_attribute("data-id") for name in names}
        # one stream names all seven, and none other is open
        web.wait_until(lambda: web.open_streams == 1 and set(
            (web.bodies("POST", EVENTS) or [{"ids": []}])[-1]["ids"]) >= ids,
            "one open event stream for the seven uploads")
        assert web.most_streams <= 2, web.most_streams

        # asking and deleting are not stuck behind the ingest
        assert "Vennberg" in web.ask(f"Who leads Project Kestrel{corpus.tag}?"), web.state()
        page.once("dialog", lambda d: d.accept())
        web.row(names[0]).get_by_role("button", name=f"Delete {names[0]}").click()
        web.row(names[0]).wait_for(state="detached")
        assert web.open_streams == 1

    for name in names[1:]:
        web.row(name).and_(page.locator("[data-status='ready']")).wait_for(
            timeout=INGEST_TIMEOUT_MS)
    assert web.most_streams <= 2, web.most_streams
    assert len(web.bodies("POST", EVENTS)) <= 4, web.bodies("POST", EVENTS)
    assert not [u for u in web.requests if re.search(r"/v1/documents/[^/]+/events$", u)]
    web.assert_only_local_requests()


def test_hostile_document_text_is_shown_as_text_and_never_runs(
    web: Browser, corpus: Corpus
) -> None:
    page = web.page
    hostile = corpus.name(HOSTILE_NAME)
    web.start()
    web.filter_list(corpus.tag)
    assert web.row(hostile).locator("td:nth-child(2)").inner_text() == hostile
    page.get_by_role("checkbox", name=f"Ask within {hostile}").check()
    assert hostile in page.locator("#scope").inner_text()

    answer = web.ask(f"When was the parrot{corpus.tag} bought?")
    assert web.turn(1).get_attribute("data-state") == "answered", web.state()
    quote = str(web.turn(1).locator(".citations blockquote").first.text_content())
    assert "<img src=x" in answer + quote, (answer, quote)
    web.turn(1).locator("button.cite").first.click()
    context = page.locator("#passage[data-state='shown'] #passage-text")
    context.wait_for()
    assert "<script>window.__pwned=2</script>" in context.inner_text()
    page.keyboard.press("Escape")

    page.get_by_role("tab", name="Search").click()
    page.get_by_role("searchbox", name="Search for").fill(f"parrot{corpus.tag} bought")
    page.get_by_role("button", name="Search", exact=True).click()
    hit = page.locator("#search-results > li", has_text=hostile).first
    hit.wait_for()
    assert HOSTILE_MARKUP in hit.locator(".snippet").inner_text()
    hit.get_by_role("button", name=re.compile("Show in context")).click()
    page.locator("#passage[data-state='shown'] mark", has_text=HOSTILE_MARKUP).wait_for()
    web.assert_nothing_ran()
    web.assert_only_local_requests()


def test_without_the_event_stream_the_page_polls_until_ready(web: Browser, stack: Stack) -> None:
    """A server without POST /v1/documents/events (404 on the route): the page reads the
    status of the documents it follows, all in one request a second. Only that one route is
    answered by the browser; the rest is the real stack."""
    name = f"polled-{uuid.uuid4().hex[:6]}.txt"
    page = web.page
    refused: list[str] = []

    def no_such_route(route: Any) -> None:
        refused.append(route.request.url)
        route.fulfill(status=404, content_type="application/problem+json",
                      body='{"status": 404, "title": "Not found", "detail": "Not Found"}')

    page.route(f"**{EVENTS}", no_such_route)
    web.start()
    page.get_by_label("Choose files").set_input_files(files=[{
        "name": name, "mimeType": "text/plain", "buffer": b"Polling still finds the end.\n"}])
    web.row(name).and_(page.locator("[data-status='ready']")).wait_for(timeout=INGEST_TIMEOUT_MS)
    upload = page.locator("#uploads li", has_text=name)
    upload.and_(page.locator("[data-state='ready']")).wait_for()
    doc_id = web.row(name).get_attribute("data-id")
    assert refused, web.requests
    polls = web.bodies("POST", "/v1/documents/status")
    assert any(doc_id in body["ids"] for body in polls), polls
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
