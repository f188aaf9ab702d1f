"""The OpenAI-compatible API on the real stack, driven by the official ``openai`` client."""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import openai
import pytest

from tests.integration.conftest import KEYS, Stack

pytestmark = pytest.mark.integration

# Two companies with the same kind of fact, so a follow-up ("When was it founded?") can only
# be answered right from the conversation's earlier turn.
DOCS = {
    "quillon.txt": (
        b"Quillon Aerodynamics builds glider wings for rescue drones.\n\n"
        b"Quillon Aerodynamics was founded in 1987 in Tromso by Ingrid Vale.\n\n"
        b"The Quillon wind tunnel in Bodo is 46 metres long.\n"
    ),
    "brannock.txt": (
        b"Brannock Textiles weaves sailcloth for racing yachts.\n\n"
        b"Brannock Textiles was founded in 1932 in Leeds by Arthur Penhale.\n"
    ),
}
UNANSWERABLE = "What is the airspeed velocity of an unladen swallow in furlongs?"


@pytest.fixture(scope="module")
def docs(stack: Stack) -> dict[str, str]:
    with stack.client("acme") as c:
        ids = {c.upload_bytes(name, data)["id"]: name for name, data in DOCS.items()}
        final = c.wait_ready(list(ids), timeout=300)
    assert {d["status"] for d in final.values()} == {"ready"}, final
    return {name: doc_id for doc_id, name in ids.items()}


def open_client(stack: Stack, key: str) -> openai.OpenAI:
    """The official client, without proxies from the environment (nothing leaves the host)."""
    return openai.OpenAI(base_url=stack.url + "/v1", api_key=key, max_retries=0,
                         http_client=openai.DefaultHttpxClient(trust_env=False, timeout=180))


@pytest.fixture
def client(stack: Stack) -> Iterator[openai.OpenAI]:
    with open_client(stack, KEYS["acme"]) as c:
        yield c


def extra(obj: Any) -> dict[str, Any]:
    """The fields OpenAI's types do not declare (docqa's ``citations``, ``docqa_status``)."""
    return dict(obj.model_extra or {})


def ask(client: openai.OpenAI, *turns: tuple[str, str]) -> Any:
    return client.chat.completions.create(
        model="docqa", messages=[{"role": r, "content": t} for r, t in turns])  # type: ignore[misc]


def test_models_list_docqa_and_the_embedder(client: openai.OpenAI) -> None:
    ids = [m.id for m in client.models.list()]
    assert "docqa" in ids and "all-MiniLM-L6-v2" in ids
    assert client.models.retrieve("docqa").id == "docqa"
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("gpt-4o")


def test_chat_answers_the_fact_with_citations(client: openai.OpenAI, docs: dict[str, str],
                                              stack: Stack) -> None:
    completion = ask(client, ("system", "You are a helpful assistant."),
                     ("user", "Who founded Quillon Aerodynamics?"))
    content = completion.choices[0].message.content
    assert completion.model == "docqa" and completion.choices[0].finish_reason == "stop"
    assert "Ingrid Vale" in content, content
    fields = extra(completion)
    assert fields["docqa_status"] == "answered"
    assert fields["citations"] and fields["citations"][0]["document_id"] == docs["quillon.txt"]
    assert "Ingrid Vale" in fields["citations"][0]["quote"]
    # the same grounding as /v1/ask
    with stack.client("acme") as c:
        plain = c.ask("Who founded Quillon Aerodynamics?")
    assert (content, fields["citations"]) == (plain["answer"], plain["citations"])
    assert completion.usage is not None and completion.usage.total_tokens == (
        completion.usage.prompt_tokens + completion.usage.completion_tokens)


@pytest.mark.parametrize(("company", "year", "doc"), [
    ("Quillon Aerodynamics", "1987", "quillon.txt"),
    ("Brannock Textiles", "1932", "brannock.txt"),
])
def test_a_follow_up_uses_the_earlier_turns(client: openai.OpenAI, docs: dict[str, str],
                                            company: str, year: str, doc: str) -> None:
    completion = ask(client, ("user", f"Tell me about {company}"),
                     ("assistant", "Happy to help with that."),
                     ("user", "When was it founded?"))
    content = completion.choices[0].message.content
    assert year in content, content
    assert [c["document_id"] for c in extra(completion)["citations"]] == [docs[doc]]


def test_stream_deltas_join_to_the_answer_and_end_with_citations(
    client: openai.OpenAI, docs: dict[str, str]
) -> None:
    whole = ask(client, ("user", "How long is the Quillon wind tunnel?"))
    chunks = list(client.chat.completions.create(
        model="docqa", stream=True,
        messages=[{"role": "user", "content": "How long is the Quillon wind tunnel?"}]))
    assert chunks[0].choices[0].delta.role == "assistant"
    content = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
    assert content == whole.choices[0].message.content and "46 metres" in content
    last = chunks[-1]
    assert last.choices[0].finish_reason == "stop"
    assert extra(last)["citations"] == extra(whole)["citations"]
    assert extra(last)["citations"][0]["document_id"] == docs["quillon.txt"]


def test_unanswerable_question_is_the_not_found_message(client: openai.OpenAI,
                                                        docs: dict[str, str]) -> None:
    completion = ask(client, ("user", UNANSWERABLE))
    assert completion.choices[0].message.content == "Not found in your documents."
    assert extra(completion)["citations"] == [] and extra(completion)["docqa_status"] == "not_found"


def test_another_tenant_gets_nothing_from_acmes_documents(stack: Stack,
                                                          docs: dict[str, str]) -> None:
    with open_client(stack, KEYS["globex"]) as globex:
        completion = ask(globex, ("user", "Who founded Quillon Aerodynamics?"))
    assert "Ingrid Vale" not in (completion.choices[0].message.content or "")
    assert all(c["document_id"] not in docs.values() for c in extra(completion)["citations"])


def test_wrong_api_key_is_an_authentication_error(stack: Stack) -> None:
    with open_client(stack, "not-a-key") as bad:
        with pytest.raises(openai.AuthenticationError):
            ask(bad, ("user", "Who founded Quillon Aerodynamics?"))
        with pytest.raises(openai.AuthenticationError):
            bad.models.list()


def test_unknown_model_is_not_found(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="gpt-4o",
                                       messages=[{"role": "user", "content": "hi"}])


def test_embeddings_in_base64_and_float_agree(client: openai.OpenAI) -> None:
    texts = ["Quillon builds glider wings.", "Sailcloth for racing yachts."]
    default = client.embeddings.create(model="all-MiniLM-L6-v2", input=texts)  # base64 on the wire
    floats = client.embeddings.create(model="all-MiniLM-L6-v2", input=texts,
                                      encoding_format="float")
    assert [d.index for d in default.data] == [0, 1] == [d.index for d in floats.data]
    for a, b in zip(default.data, floats.data, strict=True):
        assert len(a.embedding) == len(b.embedding) == 384
        assert a.embedding == pytest.approx(b.embedding, abs=1e-6)
        assert math.sqrt(sum(x * x for x in b.embedding)) == pytest.approx(1.0, abs=1e-4)
    assert default.data[0].embedding != pytest.approx(default.data[1].embedding, abs=1e-3)
    single = client.embeddings.create(model="all-MiniLM-L6-v2", input=texts[0],
                                      encoding_format="float")
    assert single.data[0].embedding == pytest.approx(floats.data[0].embedding, abs=1e-5)
    assert floats.usage.prompt_tokens > 0


def test_token_array_embedding_input_is_a_clear_400(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as err:
        client.embeddings.create(model="all-MiniLM-L6-v2", input=[[101, 2023, 102]])
    assert "token arrays" in str(err.value)
