"""An upload's plaintext never touches the disk (docs/encryption.md: originals are encrypted at rest).

Litestar's ``UploadFile`` spooled every file part over 1 MiB to ``$TMPDIR`` before the upload
was encrypted (an unnamed ``O_TMPFILE``, so only a process's open files show it). Here the
whole stack (API, worker and its parse sandbox, Chroma) runs with ``TMPDIR`` pointed at a
directory the test watches, and a 5 MB PDF carrying a canary is uploaded and ingested, then
one over the size limit is refused. While that happens and after it, every file under
``TMPDIR`` and the data directory, and every file that a process holds open there (deleted
or not), is read and searched for the canary.
"""

from __future__ import annotations

import os
import secrets
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.docbuild import PDF_HEADER
from tests.factories import make_pdf
from tests.integration.conftest import KEYS, Stack, raw, run_stack
from tests.private_redis import session_redis_url

pytestmark = pytest.mark.integration

REDIS_URL = os.environ.get("DOCQA_TEST_PLAINTEXT_REDIS_URL") or session_redis_url(11)
MAX_UPLOAD = 6 * 1024 * 1024
AUTH = {"Authorization": f"Bearer {KEYS['acme']}"}
CANARY = f"zqcanary{secrets.token_hex(8)}"


class Watch:
    """Reads every file under ``roots`` and every file a process holds open under them, over
    and over in a thread, and keeps the paths that held the canary."""

    def __init__(self, roots: list[Path], canary: bytes) -> None:
        self.roots = [str(r.resolve()) for r in roots]
        self.canary = canary
        self.hits: set[str] = set()
        self.scans = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _holds_canary(self, path: str) -> bool:
        try:
            with open(path, "rb") as fh:
                tail = b""
                while block := fh.read(1 << 20):
                    if self.canary in tail + block:
                        return True
                    tail = block[-len(self.canary):]
        except OSError:  # gone meanwhile, a socket, a directory
            pass
        return False

    def _open_files(self) -> Iterator[tuple[str, str]]:
        """(a /proc path that opens the file, the path it was opened at) of files that any
        process holds open under the roots; deleted and unnamed (O_TMPFILE) ones included."""
        for pid in os.listdir("/proc"):
            if not pid.isdigit():
                continue
            fd_dir = f"/proc/{pid}/fd"
            try:
                fds = os.listdir(fd_dir)
            except OSError:
                continue
            for fd in fds:
                try:
                    target = os.readlink(f"{fd_dir}/{fd}")
                except OSError:
                    continue
                if any(target.startswith(root) for root in self.roots):
                    yield f"{fd_dir}/{fd}", target

    def scan(self) -> None:
        for root in self.roots:
            for folder, _dirs, names in os.walk(root):
                for name in names:
                    path = os.path.join(folder, name)
                    if os.path.isfile(path) and self._holds_canary(path):
                        self.hits.add(path)
        for proc_path, target in self._open_files():
            if self._holds_canary(proc_path):
                self.hits.add(f"{target} (open in {proc_path})")
        self.scans += 1

    def _run(self) -> None:
        while not self._stop.is_set():
            self.scan()
            self._stop.wait(0.02)

    def __enter__(self) -> Watch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.scan()  # and once more after everything is done


@pytest.fixture(scope="module")
def watched(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Stack, Path]]:
    tmpdir = tmp_path_factory.mktemp("docqa-tmpdir")
    env = {"TMPDIR": str(tmpdir), "DOCQA_MAX_UPLOAD_BYTES": str(MAX_UPLOAD),
           "DOCQA_LOAD_GENERATOR": "false"}  # no /v1/ask here: save the API the model load
    with run_stack(tmp_path_factory.mktemp("docqa-plaintext"), REDIS_URL, env) as st:
        yield st, tmpdir


def canary_pdf(size: int) -> bytes:
    """A PDF of about ``size`` bytes that carries the canary on its page and all through a
    comment after its header (so every block of the file holds it)."""
    filler = f"% {CANARY} {'-' * 60}\n".encode()
    return make_pdf([f"The audit found {CANARY} in the ledger of the third quarter."],
                    PDF_HEADER + filler * (size // len(filler)))


def _file_keys(stack: Stack) -> int:
    with sqlite3.connect(stack.data_dir / "registry.sqlite3") as db:
        return int(db.execute("SELECT count(*) FROM file_keys").fetchone()[0])


def test_a_5mb_upload_never_reaches_the_disk_in_plaintext(watched: tuple[Stack, Path]) -> None:
    stack, tmpdir = watched
    data = canary_pdf(5 * 1000 * 1000)
    assert len(data) >= 5_000_000 and data.count(CANARY.encode()) > 50_000
    with Watch([tmpdir, stack.data_dir], CANARY.encode()) as watch:
        resp = raw(stack, "POST", "/v1/documents", headers=AUTH,
                   files={"file": ("ledger.pdf", data, "application/pdf")})
        assert resp.status_code == 202, resp.text
        with stack.client("acme") as client:
            final = client.wait_ready([resp.json()["id"]], timeout=300)[resp.json()["id"]]
    assert final["status"] == "ready", final.get("error")
    assert watch.scans >= 2 and watch.hits == set(), sorted(watch.hits)
    # the scan would see it: the text did arrive, sealed, in Chroma
    assert any(CANARY in text for _sealed, text in stack.stored_chunks("acme", final["id"]))


def test_an_upload_over_the_limit_leaves_nothing(watched: tuple[Stack, Path]) -> None:
    stack, tmpdir = watched
    keys_before = _file_keys(stack)
    data = canary_pdf(MAX_UPLOAD + 960 * 1024)  # under the route's own limit (+1 MiB)
    with Watch([tmpdir, stack.data_dir], CANARY.encode()) as watch:
        resp = raw(stack, "POST", "/v1/documents", headers=AUTH,
                   files={"file": ("big.pdf", data, "application/pdf")})
    assert resp.status_code == 413 and str(MAX_UPLOAD) in resp.json()["detail"], resp.text
    assert watch.hits == set(), sorted(watch.hits)
    assert list((stack.data_dir / "files" / ".staging").iterdir()) == []
    assert _file_keys(stack) == keys_before
