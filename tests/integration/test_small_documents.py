"""Many small documents in a row on the real stack: each is parsed by a parse child the
worker started ahead (ingest/sandbox.py's pool), one child per document, and each ends
``ready`` exactly once with its own chunks and nobody else's."""

from __future__ import annotations

import re
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.integration.conftest import Stack

pytestmark = pytest.mark.integration

N_DOCS = 16


def _text(n: int) -> bytes:
    return (f"Depot note {n}. The gate code of depot {n} is K{n:03d}-{n * 7919 % 10007}. "
            f"Deliveries to depot {n} arrive before noon on weekdays.").encode()


def test_a_run_of_small_documents_each_ends_ready_once_with_its_own_chunks(
        stack: Stack) -> None:
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
