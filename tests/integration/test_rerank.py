"""The span reader reorders the scorer's best units, on the real stack with the real models:
where the sentence scorer prefers the sentence that repeats the question's words, the
reader's answer score brings up the one that answers, and the answer is quoted and cited
from it. The same document and question with the reordering off (and the whole unit as the
answer) quote the other sentence, so the test shows the reader's part, not the scorer's."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest

from tests.integration.conftest import Stack, run_stack
from tests.private_redis import session_redis_url

pytestmark = pytest.mark.integration

REDIS_URL = os.environ.get("DOCQA_TEST_RERANK_REDIS_URL") or session_redis_url(17)

TEXT = (b"Machine park\n\n"
        b"In the Graz plant, old machines are still running in hall 2, the press shop, "
        b"installed in 1987, and in hall 5. The oldest machine is said to have been installed "
        b"in 1962 in the basement of the foundry, which now houses the spare-parts store.\n")
QUESTION = "Where was the oldest machine in the Graz plant installed?"
ANSWERING = "The oldest machine is said to have been installed in 1962"
NEIGHBOUR = "In the Graz plant, old machines are still running in hall 2"


@pytest.fixture(scope="module", params=["reordered", "scorer"])
def stack(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
          ) -> Iterator[Stack]:
    env = {} if request.param == "reordered" else {
        "DOCQA_RETRIEVAL__READER_RERANK_WEIGHT": "0", "DOCQA_RETRIEVAL__SHORT_ANSWER": "off"}
    with run_stack(tmp_path_factory.mktemp(f"docqa-rerank-{request.param}"), REDIS_URL,
                   env) as st:
        yield st


@pytest.fixture(scope="module")
def doc(stack: Stack) -> dict[str, Any]:
    with stack.client("acme") as c:
        d = c.upload_bytes("machines.txt", TEXT)
        final = c.wait_ready([d["id"]], timeout=300)
    assert final[d["id"]]["status"] == "ready", final
    return d


def test_the_reader_brings_up_the_unit_that_answers(stack: Stack, doc: dict[str, Any]) -> None:
    with stack.client("acme") as c:
        res = c.ask(QUESTION, document_ids=[doc["id"]])
    assert res["status"] == "answered", res
    (cite,) = res["citations"]
    assert cite["document_id"] == doc["id"]
    text = TEXT.decode()
    assert text[cite["start"]:cite["end"]] == cite["quote"]  # the exact span of the document
    if stack.env.get("DOCQA_RETRIEVAL__READER_RERANK_WEIGHT") != "0":
        assert cite["quote"].startswith(ANSWERING), res
        assert "basement of the foundry" in res["answer"], res
        assert len(res["answer"]) < len(cite["quote"]), res  # the reader's short answer
        assert "rerank_ms" in res["timings"] and "span_ms" in res["timings"], res
    else:
        # the scorer alone prefers the sentence that shares the question's words
        assert cite["quote"].startswith(NEIGHBOUR), res
        assert "rerank_ms" not in res["timings"], res
