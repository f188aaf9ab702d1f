"""Short answers on the real stack, picked by the packaged GGUF (``retrieval.short_answer=
span``) and by the trained span reader (``reader``): the answer is a phrase of the cited unit
(never words the unit does not hold), the citation still quotes the whole unit, and the
streamed answer is the same verified one."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest

from tests.integration.conftest import Stack, run_stack
from tests.integration.test_business_answers import ANSWERABLE, FILES, NEAR_MISS
from tests.private_redis import session_redis_url

pytestmark = pytest.mark.integration

# a database of its own: the session stack's worker, on the session database, would take
# this stack's jobs
REDIS_URL = os.environ.get("DOCQA_TEST_SPAN_REDIS_URL") or session_redis_url(16)



@pytest.fixture(scope="module", params=["span", "reader"])
def span_stack(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
               ) -> Iterator[Stack]:
    # a generous deadline: the shared CI machine is slow, and a late pick would only test
    # the fallback
    env = {"DOCQA_RETRIEVAL__SHORT_ANSWER": request.param,
           "DOCQA_RETRIEVAL__SPAN_DEADLINE_S": "30"}
    with run_stack(tmp_path_factory.mktemp(f"docqa-{request.param}"), REDIS_URL, env) as st:
        yield st


@pytest.fixture(scope="module")
def docs(span_stack: Stack) -> dict[str, Any]:
    with span_stack.client("acme") as c:
        ids = {c.upload_bytes(name, data)["id"]: name for name, data in FILES.items()}
        final = c.wait_ready(list(ids), timeout=300)
    assert {d["status"] for d in final.values()} == {"ready"}, final
    return ids


def _body(answer: str) -> str:
    assert answer.endswith(" [1]"), answer
    return answer[: -len(" [1]")]


@pytest.mark.parametrize(("question", "filename", "value", "row"), ANSWERABLE)
def test_the_answer_is_a_short_phrase_of_the_quoted_unit(
        span_stack: Stack, docs: dict[str, Any], question: str, filename: str, value: str,
        row: str) -> None:
    with span_stack.client("acme") as c:
        res = c.ask(question, document_ids=list(docs))
    assert res["status"] == "answered", res
    quote = res["citations"][0]["quote"]
    body = _body(res["answer"])
    assert res["citations"][0]["filename"] == filename and value in quote, res
    assert body in quote, res  # the model can only copy from the unit
    assert len(body) < len(quote), res
    assert "span_ms" in res["timings"], res
    if filename != "parking-policy.md":
        # a table row answers with the cell whose label is what is asked ("Rate per pallet",
        # "Net sales"), whichever picker is set
        assert body == value, res


def test_the_stream_carries_the_same_short_answer(span_stack: Stack,
                                                  docs: dict[str, Any]) -> None:
    question = ANSWERABLE[0][0]
    with span_stack.client("acme") as c:
        plain = c.ask(question, document_ids=list(docs))
        final = [e for e in c.ask_stream(question, document_ids=list(docs))
                 if e.event == "final"]
    assert len(final) == 1 and final[0].data["answer"] == plain["answer"], (final, plain)
    assert final[0].data["citations"][0]["quote"] == plain["citations"][0]["quote"]


def test_a_near_miss_is_still_not_found(span_stack: Stack, docs: dict[str, Any]) -> None:
    with span_stack.client("acme") as c:
        res = c.ask(NEAR_MISS, document_ids=list(docs))
    assert res["status"] == "not_found" and res["citations"] == [], res

