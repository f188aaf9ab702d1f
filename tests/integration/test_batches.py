"""Batches that span documents on the real stack (workers/batching.py): documents that wait
while the worker is busy go to its child as one job; each ends ``ready`` exactly once with its
own chunks, and a bad document among them fails alone: one that yields no text, and one that
kills the worker child in the job's shared embedding call (a poison document, test hook), whose
companions come back from the queue and end ready.

Its own stack on Redis database 27."""

from __future__ import annotations

import os
import re
import signal
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.conftest import Stack, run_stack
from tests.private_redis import session_redis_url

pytestmark = pytest.mark.integration

N_DOCS = 10


def _text(n: int) -> bytes:
    return (f"Harbour note {n}. Berth {n} takes ships of up to {n * 37 + 100} metres. "
            f"The pilot for berth {n} is called on channel {n + 10}.").encode()


@pytest.fixture(scope="module")
def batch_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    env = {"DOCQA_TEST_HOOKS__CRASH_WORKER_ON": "poison",  # kills the child that embeds it
           "DOCQA_WORKER__MAX_RETRIES": "1",  # so the poison document fails after 2 deaths
           "DOCQA_WORKER__BATCH_SIZE": "8"}
    with run_stack(Path(tmp_path_factory.mktemp("docqa-batches")), session_redis_url(27),
                   extra_env=env) as st:
        yield st


def _hold_worker(stack: Stack, sig: signal.Signals) -> None:
    """Stop or resume the whole worker (main process and child: its own process group)."""
    os.killpg(os.getpgid(stack.procs["worker"].pid), sig)


def test_documents_waiting_together_go_as_one_job_and_each_ends_ready_once(
        batch_stack: Stack) -> None:
    stack = batch_stack
    with stack.client("acme") as acme, stack.client("globex") as globex:
        _hold_worker(stack, signal.SIGSTOP)  # the uploads wait in the queue together
        try:
            ids = [(acme if n % 3 else globex).upload_bytes(f"harbour-{n}.txt", _text(n),
                                                             None)["id"]
                   for n in range(N_DOCS)]
            empty = acme.upload_bytes("blank.txt", b" \n\n \n", None)["id"]
            poison = acme.upload_bytes("poison-harbour.txt", _text(99), None)["id"]
        finally:
            _hold_worker(stack, signal.SIGCONT)
        final = {**acme.wait_ready([i for n, i in enumerate(ids) if n % 3] + [empty, poison],
                                   timeout=900),
                 **globex.wait_ready([i for n, i in enumerate(ids) if not n % 3], timeout=900)}
    log = stack.log("worker")
    jobs = [int(n) for n in re.findall(r"ingest job: (\d+) document\(s\) given", log)]
    assert max(jobs) > 1, jobs  # documents that waited together went to the child together
    assert all(n <= 8 for n in jobs), jobs  # never more than the batch size
    assert {final[i]["status"] for i in ids} == {"ready"}, final
    assert final[empty]["status"] == "failed" and "no text" in final[empty]["error"]
    assert final[poison]["status"] == "failed", final[poison]
    assert "died while ingesting this document" in final[poison]["error"]
    for n, doc_id in enumerate(ids):
        tenant = "acme" if n % 3 else "globex"
        assert final[doc_id]["chunks"] == 1
        texts = [text for _sealed, text in stack.stored_chunks(tenant, doc_id)]
        assert texts == [_text(n).decode()]  # its own text, whole, and nothing else
    assert stack.stored_chunks("acme", poison) == [] and stack.stored_chunks("acme", empty) == []
    # the poison document killed the child at least once in a job with others, which came
    # back from the queue: still, each became ready exactly once
    assert log.count("TEST HOOK: killing this worker child") >= 2
    ready = Counter(m for m in re.findall(r"document (\w+) ready:", log) if m in set(ids))
    assert ready == Counter({i: 1 for i in ids}), ready
