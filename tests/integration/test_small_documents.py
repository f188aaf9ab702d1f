"""Many small documents in a row on the real stack: each is parsed by a parse child the
worker started ahead (ingest/sandbox.py's pool), one child per document, and each ends
``ready`` exactly once with its own chunks and nobody else's."""

from __future__ import annotations

import json
import os
import re
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from core.settings import MAX_AUTO_CHILDREN, usable_cpus
from tests.integration.conftest import Stack, run_stack
from tests.private_redis import session_redis_url

pytestmark = pytest.mark.integration

N_DOCS = 16
CHILDREN_REDIS_URL = (os.environ.get("DOCQA_TEST_CHILDREN_REDIS_URL")
                      or session_redis_url(28))
RECYCLED_REDIS_URL = session_redis_url(29)


def _text(n: int) -> bytes:
    return (f"Depot note {n}. The gate code of depot {n} is K{n:03d}-{n * 7919 % 10007}. "
            f"Deliveries to depot {n} arrive before noon on weekdays.").encode()


@pytest.fixture(scope="module")
def default_children(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """A stack whose worker starts the default number of children (one per CPU, at most
    four; the other integration stacks pin one)."""
    with run_stack(tmp_path_factory.mktemp("docqa-children"), CHILDREN_REDIS_URL,
                   {"DOCQA_WORKER__CONCURRENCY": "0", "DOCQA_LOAD_GENERATOR": "false"}) as st:
        yield st


@pytest.mark.parametrize("which", ["one child", "default children"])
def test_a_run_of_small_documents_each_ends_ready_once_with_its_own_chunks(
        which: str, request: pytest.FixtureRequest) -> None:
    stack: Stack = request.getfixturevalue(
        "stack" if which == "one child" else "default_children")
    if which == "default children":  # every child loaded its models and took documents
        expected = min(usable_cpus(), MAX_AUTO_CHILDREN)
        deadline = time.monotonic() + 180
        while stack.log("worker").count("worker child ready") < expected:
            assert time.monotonic() < deadline, stack.log("worker")[-3000:]
            time.sleep(0.5)
    with stack.client("acme") as client:
        with ThreadPoolExecutor(max_workers=8) as pool:
            accepted = list(pool.map(
                lambda n: client.upload_bytes(f"depot-{n}.txt", _text(n), None),
                range(N_DOCS)))
        ids = [a["id"] for a in accepted]
        assert len(set(ids)) == N_DOCS
        final = client.wait_ready(ids, timeout=600)
    assert {final[i]["status"] for i in ids} == {"ready"}, final
    for n, doc_id in enumerate(ids):
        assert final[doc_id]["chunks"] == 1 and final[doc_id]["pages"] == 1
        texts = [text for _sealed, text in stack.stored_chunks("acme", doc_id)]
        assert texts == [_text(n).decode()]  # its own text, whole, and nothing else
    # each document became ready once (the worker logs that line once per ready)
    ready = Counter(m for m in re.findall(r"document (\w+) ready:", stack.log("worker"))
                    if m in set(ids))
    assert ready == Counter({i: 1 for i in ids}), ready
    if which == "default children":
        # the documents were ingested by the children side by side: more than one pid
        # logged a ready (each log line carries the child's process id)
        pids = {entry["pid"] for entry in _json_lines(stack.log("worker"))
                if re.match(r"document \w+ ready:", str(entry.get("message", "")))}
        assert len(pids) >= min(2, expected), stack.log("worker")[-3000:]


@pytest.fixture(scope="module", params=["MAX_TASKS_PER_CHILD=2", "MAX_MEMORY_MB=1"])
def recycled(request: pytest.FixtureRequest,
             tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """One worker child, replaced after every two jobs, or after every job by a memory limit
    it always passes."""
    name, value = str(request.param).split("=")
    with run_stack(tmp_path_factory.mktemp("docqa-recycled"), RECYCLED_REDIS_URL,
                   {f"DOCQA_WORKER__{name}": value, "DOCQA_LOAD_GENERATOR": "false"}) as st:
        yield st


def test_a_replaced_child_loses_nothing(recycled: Stack) -> None:
    """``worker.max_tasks_per_child`` and ``worker.max_memory_mb``: a child past either
    finishes its document, is replaced, and the next child takes the next one; each
    document ends ``ready`` once, with its text."""
    n_docs = 4
    with recycled.client("acme") as client:
        ids = [client.upload_bytes(f"depot-{n}.txt", _text(n), None)["id"] for n in range(n_docs)]
        final = client.wait_ready(ids, timeout=600)
        assert {final[i]["status"] for i in ids} == {"ready"}, final
        for n, doc_id in enumerate(ids):
            texts = [text for _sealed, text in recycled.stored_chunks("acme", doc_id)]
            assert texts == [_text(n).decode()]
        found = client.search("Which depot gets deliveries before noon?", top_k=10)
        assert {h["document_id"] for h in found["results"]} <= set(ids) and found["results"]
    log = recycled.log("worker")
    ready = Counter(m for m in re.findall(r"document (\w+) ready:", log) if m in set(ids))
    assert ready == Counter({i: 1 for i in ids}), ready
    # one child at a time (the stack pins one), yet the documents were ingested by several
    pids = {entry["pid"] for entry in _json_lines(log)
            if re.match(r"document \w+ ready:", str(entry.get("message", "")))}
    assert len(pids) >= 2, log[-3000:]


def _json_lines(log: str) -> list[dict[str, object]]:
    out = []
    for line in log.splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict):
            out.append(entry)
    return out
