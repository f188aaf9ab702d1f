"""Graceful shutdown on SIGTERM, on real processes: an API request in flight is answered
before the API exits, and a worker finishes the task it is running before it exits."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.integration.conftest import KEYS, Stack, run_stack
from tests.private_redis import session_redis_url

REDIS_URL = os.environ.get("DOCQA_TEST_SHUTDOWN_REDIS_URL") or session_redis_url(2)
# every embedding call in the worker sleeps, so a task is surely running when SIGTERM lands
SLOW = {"DOCQA_TEST_HOOKS__SLOW_EMBED_S": "3"}


@pytest.fixture
def slow_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with run_stack(tmp_path_factory.mktemp("docqa-shutdown"), REDIS_URL, SLOW) as st:
        yield st


def _wait_exit(proc: subprocess.Popen[bytes], seconds: float) -> int | None:
    try:
        return proc.wait(timeout=seconds)
    except subprocess.TimeoutExpired:
        return None


def test_sigterm_lets_the_running_task_and_the_request_in_flight_finish(
    slow_stack: Stack,
) -> None:
    st = slow_stack
    with st.client("acme") as acme:
        doc = acme.upload_bytes("shutdown.txt", b"The shutdown drill happens every second "
                                b"Tuesday at the north gate.\n")
        deadline = time.monotonic() + 120
        while acme.document(doc["id"])["status"] != "processing":
            assert time.monotonic() < deadline, "the worker never started the task"
            time.sleep(0.1)

        # 1. the worker: SIGTERM while the task is inside its (slowed) embedding call
        worker = st.procs["worker"]
        worker.send_signal(signal.SIGTERM)
        code = _wait_exit(worker, 120)
        assert code == 0, f"worker exit {code}:\n{st.log('worker')[-3000:]}"
        final = acme.document(doc["id"])
        assert final["status"] == "ready" and final["chunks"] >= 1, final
        assert "warm shutdown" in st.log("worker").lower()

        # 2. the API: a request whose body is still arriving when SIGTERM lands is answered
        boundary = "docqa-shutdown-test"
        body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; "
                f"filename=\"late.txt\"\r\nContent-Type: text/plain\r\n\r\n"
                "A request that was in flight when the API was told to stop.\n"
                f"\r\n--{boundary}--\r\n").encode()
        url = urlsplit(st.url)
        sock = socket.create_connection((url.hostname, url.port), timeout=60)
        head = (f"POST /v1/documents HTTP/1.1\r\nHost: {url.netloc}\r\n"
                f"Authorization: Bearer {KEYS['acme']}\r\n"
                f"Content-Type: multipart/form-data; boundary={boundary}\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode()
        sock.sendall(head + body[:40])
        time.sleep(1.0)  # the request is now in flight: headers read, body incomplete
        api = st.procs["api"]
        api.send_signal(signal.SIGTERM)
        time.sleep(1.0)
        assert api.poll() is None, "the API exited with a request in flight"
        sock.sendall(body[40:])
        response = b""
        while chunk := sock.recv(65536):
            response += chunk
        sock.close()
        status_line = response.split(b"\r\n", 1)[0]
        assert status_line.split()[1] in (b"200", b"202"), response[:500]
        # uvicorn finishes, then re-raises the SIGTERM it caught: exit by that signal is clean
        assert _wait_exit(api, 60) in (0, -signal.SIGTERM), st.log("api")[-3000:]
        assert "Finished server process" in st.log("api")
        # and nothing new is accepted once it is gone
        with pytest.raises(OSError):
            socket.create_connection((url.hostname, url.port), timeout=5).close()


