"""Span picking with the packaged GGUF: llama.cpp parses the grammars, the model's reply
always maps back to an exact substring of the unit, and the deadline falls back."""

from __future__ import annotations

from typing import Literal

import pytest

from core.settings import Settings
from service.answer.generator import LlamaGenerator
from service.answer.span import (
    NOT_FOUND,
    Tagged,
    build_grammar,
    build_messages,
    pick_span,
    tagged_from_doc,
)

pytestmark = pytest.mark.integration

UNITS = [
    ("When was Velmora founded?",
     "Velmora Pumps GmbH was founded in 1987 in Graz, Austria, by Ingrid Hofer.", ""),
    ("What was the EBIT margin in Q3 2024?", "Q3 2024 | 41.2 | 8.1%",
     "Quarter | Revenue (EUR m) | EBIT margin"),
    ("Which path holds the backups?",
     'Backups go to "\\\\nas01\\backup" (path: C:\\data\\) every night\tat 02:00 — über-safe.',
     "IT policy > Backups"),
    ("Who chairs the board?", "The board is chaired by Zoë Ångström 😀 since\nMarch 2021.", ""),
]


@pytest.fixture(scope="module")
def generator() -> LlamaGenerator:
    return LlamaGenerator(Settings().models.resolved_generator_path(), n_ctx=1024, n_threads=2,
                          queue_size=1, timeout_s=20)


@pytest.mark.parametrize(("question", "unit", "context"), UNITS)
def test_llama_cpp_parses_the_grammars(generator: LlamaGenerator, question: str, unit: str,
                                       context: str) -> None:
    assert generator._compile_grammar(build_grammar(unit)) is not None
    assert generator._compile_grammar(build_grammar(unit, allow_not_found=False)) is not None


def test_an_unparsable_grammar_is_refused_before_sampling(generator: LlamaGenerator) -> None:
    with pytest.raises(ValueError, match="could not parse"):
        generator._compile_grammar('root ::= "unclosed')


@pytest.mark.parametrize(("question", "unit", "context"), UNITS)
def test_the_reply_is_an_exact_substring_or_not_found(generator: LlamaGenerator, question: str,
                                                      unit: str, context: str) -> None:
    pick = pick_span(generator, question, unit, context, deadline_s=600)
    assert pick.reason in ("ok", "not_found"), pick
    if pick.text is not None:
        assert unit[pick.start:pick.end] == pick.text and pick.text.strip()


def test_choose_returns_one_of_the_replies_with_its_probability(
        generator: LlamaGenerator) -> None:
    unit = "Velmora Pumps GmbH was founded in 1987 in Graz, Austria, by Ingrid Hofer."
    replies = [NOT_FOUND, "Velmora Pumps GmbH", "1987", "Graz", "Austria", "Ingrid Hofer"]
    for question in ("When was Velmora founded?", "Who founded Velmora?"):
        index, prob = generator.choose(build_messages(question, unit), replies, 600)
        assert 0 <= index < len(replies) and 0.0 < prob <= 1.0
    # one reply: nothing to choose, and the chat path still works on the shared cache
    assert generator.choose(build_messages("Why?", unit), ["Graz"], 600) == (0, 1.0)
    assert generator.chat([{"role": "user", "content": "Say hello."}], max_tokens=4)
    with pytest.raises(ValueError, match="no replies"):
        generator.choose(build_messages("Why?", unit), [], 600)


@pytest.mark.parametrize("decode", ["choose", "grammar"])
def test_candidate_picking_returns_one_of_the_candidates(generator: LlamaGenerator,
                                                         decode: Literal["choose", "grammar"]
                                                         ) -> None:
    unit = "Velmora Pumps GmbH was founded in 1987 in Graz, Austria, by Ingrid Hofer."
    spans = [(0, 18), (34, 38), (42, 46), (48, 55), (60, 72)]
    tagged = Tagged(tokens=(), entities=tuple((s, e, "X") for s, e in spans))
    pick = pick_span(generator, "When was Velmora founded?", unit, tagged=tagged,
                     typed=False, deadline_s=600, decode=decode)
    assert pick.reason in ("ok", "not_found"), pick
    assert pick.not_found or (pick.start, pick.end) in spans


def test_the_deadline_falls_back_to_the_unit(generator: LlamaGenerator) -> None:
    question, unit, context = UNITS[0]
    pick = pick_span(generator, question, unit, context, deadline_s=0.0)
    assert pick.text is None and pick.reason == "timeout"
    tagged = Tagged(tokens=(), entities=((34, 38, "DATE"), (60, 72, "PERSON")))
    pick = pick_span(generator, question, unit, context, tagged=tagged, deadline_s=0.0)
    assert pick.text is None and pick.reason == "timeout"


def test_a_busy_generator_past_the_deadline_falls_back(generator: LlamaGenerator) -> None:
    question, unit, context = UNITS[0]
    with generator._lock:  # another answer is generating
        pick = pick_span(generator, question, unit, context, deadline_s=0.05)
    assert pick.text is None and pick.reason == "timeout"
    # the lock is free again and the next pick works
    assert pick_span(generator, question, unit, context, deadline_s=600).reason in (
        "ok", "not_found")


def test_choose_shares_gives_every_reply_its_branch_of_the_models_mass(
        generator: LlamaGenerator) -> None:
    unit = "Velmora Pumps GmbH was founded in 1987 in Graz, Austria, by Ingrid Hofer."
    replies = [NOT_FOUND, "Velmora Pumps GmbH", "Velmora", "1987", "Graz", "Ingrid Hofer"]
    messages = build_messages("Who founded Velmora?", unit)
    index, prob, shares = generator.choose_shares(messages, replies, 600)
    assert (index, prob) == generator.choose(messages, replies, 600)  # the same greedy walk
    assert len(shares) == len(replies) and shares[index] == prob
    assert all(0.0 < s <= 1.0 for s in shares)
    if index not in (1, 2):  # both left the walk at their shared first token: one branch
        assert shares[1] == shares[2]
    # the branches of one walk hold at most the whole mass (one reply per branch here)
    assert sum(shares[i] for i in (0, 1, 3, 4, 5)) <= 1.0 + 1e-9


@pytest.mark.parametrize("rank", ["model", "features"])
@pytest.mark.parametrize(("question", "unit", "context"), UNITS)
def test_a_ranked_pick_is_an_exact_substring_and_the_deadline_falls_back(
        generator: LlamaGenerator, rank: Literal["model", "features"], question: str,
        unit: str, context: str) -> None:
    from ingest import tagger

    doc = tagger.parse(unit)
    assert doc is not None, "the spaCy pipeline is packaged with the service"
    tagged = tagged_from_doc(doc)
    for min_confidence, cover in ((0.0, 0), (0.99, 3), (0.99, 0)):
        pick = pick_span(generator, question, unit, context, tagged=tagged, rank=rank,
                         deadline_s=600, min_confidence=min_confidence, cover=cover)
        assert pick.reason in ("ok", "cover", "unsure", "not_found", "no_candidates"), pick
        if pick.text is not None:
            assert unit[pick.start:pick.end] == pick.text and pick.text.strip()
    if rank == "model":
        pick = pick_span(generator, question, unit, context, tagged=tagged, rank=rank,
                         deadline_s=0.0)
        assert pick.text is None and pick.reason in ("timeout", "no_candidates")
