"""Span picking: whatever the generator writes, the span is an exact substring of the unit
or nothing (the caller then answers with the unit). The real model: tests/integration/
test_span.py."""

from __future__ import annotations

import re

import pytest

from core.errors import OverloadedError
from service.answer import span
from service.answer.span import (
    NOT_FOUND,
    Tagged,
    build_grammar,
    build_messages,
    candidate_spans,
    candidates_grammar,
    locate,
    pick_span,
    rank_spans,
    span_features,
    tokenize,
    wanted_labels,
)

UNIT = 'Velmora was founded in 1987 in Graz,\n  Austria, by "Ingrid Hofer"; revenue rose 8.1%.'


class FakeGenerator:
    """Writes a fixed reply or chooses a fixed one (or raises), and records what it was
    asked."""

    def __init__(self, reply: str = "", error: Exception | None = None,
                 confidence: float = 0.9) -> None:
        self.reply, self.error, self.confidence = reply, error, confidence
        self.calls: list[tuple[list[dict[str, str]], str, int, float]] = []
        self.choices: list[list[str]] = []
        self.shares: dict[str, float] = {}

    def choose(self, messages: list[dict[str, str]], replies: list[str],
               deadline_s: float) -> tuple[int, float]:
        self.choices.append(list(replies))
        if self.error is not None:
            raise self.error
        # the fixed reply if offered, else an index out of the model's mind (garbage)
        return (replies.index(self.reply) if self.reply in replies else 0), self.confidence

    def choose_shares(self, messages: list[dict[str, str]], replies: list[str],
                      deadline_s: float) -> tuple[int, float, list[float]]:
        """The fixed reply chosen; the others share what is left of the probability, the
        ones in ``self.shares`` (by text) taking their given share."""
        index, prob = self.choose(messages, replies, deadline_s)
        rest = (1 - prob) / max(1, len(replies) - 1)
        return index, prob, [prob if i == index else self.shares.get(r, rest)
                             for i, r in enumerate(replies)]

    def complete_constrained(self, messages: list[dict[str, str]], grammar: str,
                             max_tokens: int, deadline_s: float) -> str:
        self.calls.append((messages, grammar, max_tokens, deadline_s))
        if self.error is not None:
            raise self.error
        return self.reply


def _runs(unit: str) -> list[str]:
    """Every reply the free grammar allows, written as the model would (single spaces)."""
    toks = tokenize(unit)
    texts = [unit[t.start:t.end] for t in toks]
    out = []
    for i in range(len(toks)):
        if texts[i] in span._NO_START:
            continue
        reply = texts[i]
        for j in range(i, len(toks)):
            if j > i:
                reply += (" " if toks[j].space_before else "") + texts[j]
            if j == len(toks) - 1 or texts[j] not in span._NO_END:
                out.append(reply)
    return out


def test_every_reply_the_grammar_allows_maps_back_to_an_exact_substring() -> None:
    replies = _runs(UNIT)
    assert "1987" in replies and "Graz, Austria" in replies and "8.1%" in replies
    for reply in replies:
        found = locate(reply, UNIT)
        assert found is not None, reply
        start, end = found
        assert " ".join(UNIT[start:end].split()) == reply


def test_grammar_has_one_chained_rule_per_token_and_not_found() -> None:
    grammar = build_grammar(UNIT)
    lines = grammar.strip().split("\n")
    root = lines[0]
    assert root.startswith('root ::= "NOT FOUND" | t0 |')
    assert len(lines) == 1 + len(tokenize(UNIT))
    # a quote in the unit is escaped inside its literal; "%" may end a reply, "," may not start
    assert r't11 ::= "\"" t12' in grammar
    assert re.search(r'^t\d+ ::= "%" \(t\d+\)\?$', grammar, re.M)
    comma = [i for i, t in enumerate(tokenize(UNIT)) if UNIT[t.start:t.end] == ","]
    assert all(f" t{i} " not in root + " " for i in comma)
    assert "NOT FOUND" not in build_grammar(UNIT, allow_not_found=False)


def test_literals_escape_backslashes_and_control_characters() -> None:
    assert span._literal('a\\b"c\td') == r'"a\\b\"c\x09d"'


def test_numbers_keep_their_separators_as_one_token() -> None:
    unit = "Core hours 8:30 to 14:00, 1,200 staff, Q3 margin 41.2."
    texts = [unit[t.start:t.end] for t in tokenize(unit)]
    assert {"8:30", "14:00", "1,200", "Q3", "41.2"} <= set(texts)
    assert texts[-1] == "."


def test_picked_span_is_the_exact_substring_with_the_units_own_white_space() -> None:
    pick = pick_span(FakeGenerator("Graz, Austria"), "Where?", UNIT)
    assert pick.picked and pick.reason == "ok"
    assert pick.text == "Graz,\n  Austria" == UNIT[pick.start:pick.end]


@pytest.mark.parametrize("garbage", ["Vienna", "founded in 1988", "1987 in Paris", "",
                                     "Velmora was founded in 1987 in Graz, Austria, by Ingrid"
                                     " Hofer and friends", "8.1% %"])
def test_a_reply_that_is_not_a_run_of_the_unit_falls_back(garbage: str) -> None:
    pick = pick_span(FakeGenerator(garbage), "When?", UNIT)
    assert pick.text is None and not pick.not_found
    assert pick.reason == "unmapped"


def test_not_found_is_reported_without_a_span() -> None:
    pick = pick_span(FakeGenerator(NOT_FOUND), "Who is the CEO?", UNIT)
    assert pick.not_found and pick.text is None and pick.reason == "not_found"
    # without NOT FOUND in the grammar the same words are just an unmapped reply
    pick = pick_span(FakeGenerator(NOT_FOUND), "Who is the CEO?", UNIT, allow_not_found=False)
    assert not pick.not_found and pick.reason == "unmapped"


@pytest.mark.parametrize(("error", "reason"), [
    (TimeoutError("late"), "timeout"),
    (OverloadedError("full", 2), "overloaded"),
    (RuntimeError("llama.cpp failed"), "error"),
    (ValueError("bad grammar"), "error"),
])
def test_a_failing_generator_falls_back_to_the_unit(error: Exception, reason: str) -> None:
    pick = pick_span(FakeGenerator(error=error), "When?", UNIT, deadline_s=0.25)
    assert pick.text is None and pick.reason == reason and not pick.not_found


def test_no_generator_an_empty_or_overlong_unit_fall_back_without_a_call() -> None:
    fake = FakeGenerator("x")
    assert pick_span(None, "q", UNIT).reason == "no_generator"
    assert pick_span(fake, "q", " ... ").reason == "empty"
    assert pick_span(fake, "q", "word " * (span.MAX_UNIT_TOKENS + 1)).reason == "too_long"
    assert fake.calls == []


def test_the_deadline_and_token_bound_reach_the_generator() -> None:
    fake = FakeGenerator("1987")
    pick_span(fake, "When was Velmora founded?", UNIT, "History", deadline_s=0.4, max_tokens=9)
    messages, grammar, max_tokens, deadline = fake.calls[0]
    assert (max_tokens, deadline) == (9, 0.4)
    assert grammar == build_grammar(UNIT)
    assert messages[-1]["content"] == (
        "Context: History\nPassage: " + " ".join(UNIT.split())
        + "\nQuestion: When was Velmora founded?")


def test_messages_carry_the_examples_before_the_unit() -> None:
    messages = build_messages("What was the margin?", "Q3 2024 | 41.2 | 8.1%",
                              "Quarter | Revenue | EBIT margin")
    assert messages[0]["role"] == "system"
    assert [m["role"] for m in messages[1:-1]] == ["user", "assistant"] * len(span.EXAMPLES)
    assert messages[-1]["content"].startswith("Context: Quarter | Revenue | EBIT margin\n")


def _tagged(unit: str, pos: dict[str, str], ents: list[tuple[str, str]]) -> Tagged:
    """Tokens by white space and marks, POS by word (default VERB), entities by text."""
    toks = tuple((m.start(), m.end(), pos.get(m.group(), "VERB"))
                 for m in re.finditer(r"\d+(?:[.,]\d+)*|\w+|[^\w\s]", unit))
    return Tagged(toks, tuple((unit.index(t), unit.index(t) + len(t), label)
                              for t, label in ents))


SENT = "The plant in Graz employs 420 people and was opened by Ingrid Hofer in 1987."
POS = {"The": "DET", "plant": "NOUN", "Graz": "PROPN", "420": "NUM", "people": "NOUN",
       "Ingrid": "PROPN", "Hofer": "PROPN", "1987": "NUM", "in": "ADP", "by": "ADP"}
ENTS = [("Graz", "GPE"), ("420", "CARDINAL"), ("Ingrid Hofer", "PERSON"), ("1987", "DATE")]


def test_candidates_are_entities_and_phrases_not_repeating_the_question() -> None:
    tagged = _tagged(SENT, POS, ENTS)
    texts = [SENT[s:e] for s, e in candidate_spans("What does the plant in Graz do?", SENT,
                                                   tagged, typed=False)]
    assert "420 people" in texts and "Ingrid Hofer" in texts and "1987" in texts
    assert "plant" not in texts and "Graz" not in texts  # only the question's own words


@pytest.mark.parametrize(("question", "want"), [
    ("How many people work at the Graz plant?", {"420", "420 people"}),  # not the year
    ("In what year was it opened?", {"1987"}),
    ("Who opened the Graz plant?", {"Ingrid Hofer"}),
    ("Where is the plant?", {"Graz"}),
])
def test_typed_candidates_keep_the_kind_the_question_asks_for(question: str,
                                                              want: set[str]) -> None:
    tagged = _tagged(SENT, POS, ENTS)
    texts = {SENT[s:e] for s, e in candidate_spans(question, SENT, tagged)}
    assert texts == want


TAGGED_UNIT = "Opened by  Ingrid\nHofer in 1987."
TAGGED = _tagged(TAGGED_UNIT, {"Ingrid": "PROPN", "Hofer": "PROPN", "1987": "NUM"},
                 [("Ingrid\nHofer", "PERSON"), ("1987", "DATE")])


def test_the_chosen_candidate_maps_to_its_own_offsets() -> None:
    fake = FakeGenerator("Ingrid Hofer", confidence=0.7)
    pick = pick_span(fake, "Who opened it?", TAGGED_UNIT, tagged=TAGGED)
    assert pick.text == "Ingrid\nHofer" == TAGGED_UNIT[pick.start:pick.end]
    assert pick.confidence == 0.7 and pick.reason == "ok"
    assert fake.choices == [[NOT_FOUND, "Ingrid Hofer"]] and fake.calls == []


def test_candidates_with_not_found_chosen_and_without_it() -> None:
    fake = FakeGenerator(NOT_FOUND)
    assert pick_span(fake, "Who opened it?", TAGGED_UNIT, tagged=TAGGED).not_found
    fake = FakeGenerator(NOT_FOUND)  # not offered: the fake picks the first reply
    pick = pick_span(fake, "Who opened it?", TAGGED_UNIT, tagged=TAGGED,
                     allow_not_found=False)
    assert fake.choices == [["Ingrid Hofer"]] and pick.text == "Ingrid\nHofer"


def test_an_unsure_choice_falls_back_to_the_unit() -> None:
    fake = FakeGenerator("Ingrid Hofer", confidence=0.3)
    pick = pick_span(fake, "Who opened it?", TAGGED_UNIT, tagged=TAGGED, min_confidence=0.5)
    assert pick.text is None and pick.reason == "unsure" and pick.confidence == 0.3


@pytest.mark.parametrize("error", [TimeoutError("late"), OverloadedError("full", 2),
                                   RuntimeError("llama.cpp failed")])
def test_a_failing_choice_falls_back_to_the_unit(error: Exception) -> None:
    pick = pick_span(FakeGenerator(error=error), "Who?", TAGGED_UNIT, tagged=TAGGED)
    assert pick.text is None and pick.reason in ("timeout", "overloaded", "error")


def test_without_candidates_the_free_grammar_is_used() -> None:
    fake = FakeGenerator("the")
    pick_span(fake, "What?", "the the the", tagged=Tagged(()))
    assert fake.calls[0][1] == build_grammar("the the the") and fake.choices == []


def test_a_reply_cut_inside_a_word_keeps_the_whole_words_before_the_cut() -> None:
    pick = pick_span(FakeGenerator("1987 in Gr"), "When and where?", UNIT)
    assert pick.text == "1987 in" == UNIT[pick.start:pick.end]
    assert locate("1987 in Gr", UNIT) is None
    assert locate("1987 in Pa", UNIT, cut=True) is None  # not the unit's next word
    assert locate("19", UNIT, cut=True) is None  # no whole word before the cut


def test_candidates_take_the_currency_join_ranges_and_stop_at_table_cells() -> None:
    unit = "Meal allowance €6.50 | core hours 8:30 to 14:00 | hotel EUR 180"
    pos = {"Meal": "NOUN", "allowance": "NOUN", "6.50": "NUM", "core": "ADJ", "hours": "NOUN",
           "8:30": "NUM", "14:00": "NUM", "hotel": "NOUN", "180": "NUM", "|": "SYM"}
    toks = tuple((m.start(), m.end(), pos.get(m.group(), "ADP"))
                 for m in re.finditer(r"\d+(?:[.:]\d+)*|\w+|[^\w\s]", unit))
    tagged = Tagged(toks, ((unit.index("6.50"), unit.index("6.50") + 4, "MONEY"),
                           (unit.index("180"), unit.index("180") + 3, "MONEY")))
    texts = {unit[s:e] for s, e in candidate_spans("What is it?", unit, tagged, typed=False)}
    assert {"€6.50", "EUR 180", "8:30 to 14:00", "core hours 8:30"} <= texts
    assert not any("|" in t for t in texts)


def test_grammar_decoding_of_candidates_is_limited_to_them() -> None:
    fake = FakeGenerator("Ingrid Hofer")
    pick = pick_span(fake, "Who opened it?", TAGGED_UNIT, tagged=TAGGED, decode="grammar")
    assert pick.text == "Ingrid\nHofer" and pick.confidence is None
    assert fake.calls[0][1] == 'root ::= "NOT FOUND" | "Ingrid Hofer"\n' == candidates_grammar(
        [NOT_FOUND, "Ingrid Hofer"])
    assert pick_span(FakeGenerator("Opened by"), "Who opened it?", TAGGED_UNIT, tagged=TAGGED,
                     decode="grammar").reason == "unmapped"


@pytest.mark.parametrize(("question", "labels"), [
    ("How many people work there?", {"CARDINAL", "QUANTITY"}),
    ("How much is the fee?", {"MONEY", "QUANTITY", "PERCENT", "CARDINAL"}),
    ("In what year was it opened?", {"DATE", "TIME"}),
    ("Who opened the plant?", {"PERSON", "ORG", "NORP"}),
    ("Which city is it in?", {"GPE", "LOC", "FAC"}),
    ("What does the plant make?", set()),
])
def test_the_wh_phrase_names_the_entity_labels_it_asks_for(question: str,
                                                           labels: set[str]) -> None:
    assert wanted_labels(question) == labels


def test_features_see_type_nearness_and_the_questions_own_words() -> None:
    tagged = _tagged(SENT, POS, ENTS)
    spans = [(SENT.index(t), SENT.index(t) + len(t))
             for t in ("Ingrid Hofer", "1987", "420 people", "The plant in Graz")]
    feats = dict(zip(("person", "year", "count", "plant"),
                     span_features("Who opened the plant?", SENT, tagged, spans,
                                   [0.5, 0.2, 0.2, 0.1], greedy=0), strict=True))
    assert feats["person"]["type"] == 1.0 and feats["year"]["type"] == 0.0
    assert feats["person"]["entity"] == 1.0 and feats["count"]["entity"] == 0.0
    assert feats["person"]["greedy"] == 1.0 and feats["year"]["greedy"] == 0.0
    # "opened" stands right before "by Ingrid Hofer": one token between them
    assert feats["person"]["near"] == 1 / 2 > feats["count"]["near"]
    assert feats["plant"]["qover"] == 0.5  # "plant" is asked, "Graz" is not
    assert feats["person"]["lm"] > feats["plant"]["lm"]
    # without the model the model's features are zero
    assert span_features("Who?", SENT, tagged, spans)[0]["lm"] == 0.0


def test_ranking_is_a_distribution_best_first() -> None:
    feats = [{"lm": -2.0, "near": 0.0}, {"lm": -0.1, "near": 1.0}, {"lm": -1.0, "near": 0.5}]
    ranked = rank_spans(feats, {"lm": 1.0, "near": 1.0})
    assert [i for i, _ in ranked] == [1, 2, 0]
    assert abs(sum(p for _, p in ranked) - 1) < 1e-9
    assert ranked[0][1] > ranked[1][1] > ranked[2][1]
    # a weight can overturn the model: far from the question's words loses
    assert rank_spans(feats, {"lm": 0.1, "near": -5.0})[0][0] == 0
    assert rank_spans([]) == []


UNITS = [SENT, UNIT, TAGGED_UNIT, "Meal allowance €6.50 | core hours 8:30 to 14:00 | hotel EUR 180"]


@pytest.mark.parametrize("unit", UNITS)
@pytest.mark.parametrize("seed", range(5))
def test_a_ranked_pick_is_always_an_exact_substring_of_the_unit(unit: str, seed: int) -> None:
    import random

    rng = random.Random(seed)  # noqa: S311 - test data, not secrets
    pos = {w: rng.choice(["NOUN", "PROPN", "NUM", "ADJ", "VERB", "DET"])
           for w in re.findall(r"\w+", unit)}
    tagged = _tagged(unit, pos, [])
    spans = candidate_spans("Who made what and when?", unit, tagged, typed=False)
    texts = [" ".join(unit[s:e].split()) for s, e in spans]
    fake = FakeGenerator(rng.choice(texts) if texts else "", confidence=rng.random())
    fake.shares = {t: rng.random() / len(texts) for t in texts}
    for min_confidence in (0.0, 0.5):
        pick = pick_span(fake, "Who made what and when?", unit, tagged=tagged, rank="model",
                         min_confidence=min_confidence)
        if pick.picked:
            assert pick.text == unit[pick.start:pick.end] and pick.reason == "ok"
            assert pick.confidence is not None and pick.confidence >= min_confidence
        else:
            assert pick.reason in ("unsure", "not_found")


def test_the_ranking_can_prefer_another_candidate_than_the_models(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(span, "WEIGHTS", {"lm": 1.0, "type": 2.0, "near": 1.0})
    tagged = _tagged(SENT, POS, ENTS)
    fake = FakeGenerator("420 people", confidence=0.35)
    fake.shares = {"Ingrid Hofer": 0.3, "1987": 0.2}
    pick = pick_span(fake, "Who opened the plant?", SENT, tagged=tagged, rank="model",
                     typed=False)
    # the person's type and its place next to "opened" outweigh a small lead
    assert pick.text == "Ingrid Hofer" and pick.reason == "ok"
    assert pick.confidence is not None and 0 < pick.confidence < 1


@pytest.mark.parametrize("error", [TimeoutError("late"), OverloadedError("full", 2),
                                   RuntimeError("llama.cpp failed")])
def test_a_ranked_pick_past_its_deadline_or_failing_falls_back_to_the_unit(
        error: Exception) -> None:
    pick = pick_span(FakeGenerator(error=error), "Who?", TAGGED_UNIT, tagged=TAGGED, rank="model",
                     deadline_s=0.01)
    assert pick.text is None and not pick.not_found
    assert pick.reason in ("timeout", "overloaded", "error")


def test_not_found_chosen_by_the_model_stays_not_found_when_ranked() -> None:
    pick = pick_span(FakeGenerator(NOT_FOUND), "Who opened it?", TAGGED_UNIT, tagged=TAGGED,
                     rank="model")
    assert pick.not_found and pick.text is None


def test_an_unsure_ranked_pick_can_answer_the_run_covering_the_best_two(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(span, "WEIGHTS", {"lm": 1.0})
    tagged = _tagged(SENT, POS, ENTS)
    fake = FakeGenerator("Ingrid Hofer", confidence=0.4)
    fake.shares = {"1987": 0.35}
    pick = pick_span(fake, "Who opened the plant?", SENT, tagged=tagged, rank="model",
                     typed=False, min_confidence=0.9, cover=2)
    assert pick.reason == "cover" and pick.text == "Ingrid Hofer in 1987"
    assert pick.text == SENT[pick.start:pick.end]
    # without cover the same unsure pick is the unit
    pick = pick_span(fake, "Who opened the plant?", SENT, tagged=tagged, rank="model",
                     typed=False, min_confidence=0.9)
    assert pick.reason == "unsure" and pick.text is None


def test_the_features_ranking_needs_no_model_and_still_falls_back(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(span, "WEIGHTS_NO_MODEL", {"type": 3.0, "near": 1.0})
    tagged = _tagged(SENT, POS, ENTS)
    pick = pick_span(None, "Who opened the plant?", SENT, tagged=tagged, rank="features",
                     typed=False)
    assert pick.text == "Ingrid Hofer" == SENT[pick.start:pick.end] and pick.reason == "ok"
    pick = pick_span(None, "Who opened the plant?", SENT, tagged=tagged, rank="features",
                     typed=False, min_confidence=0.99)
    assert pick.text is None and pick.reason == "unsure"
    pick = pick_span(None, "Who opened the plant?", SENT, tagged=tagged, rank="features",
                     typed=False, min_confidence=0.99, cover=2)
    assert pick.reason == "cover" and pick.text == SENT[pick.start:pick.end]
    assert "Ingrid Hofer" in pick.text
    # without a tagging there is nothing to rank and no model to ask
    assert pick_span(None, "Who?", SENT, rank="features").reason == "no_generator"


def test_a_figure_in_the_unit_the_question_states_is_its_condition_not_its_answer() -> None:
    unit = "50 to 199 units: 8% discount;"
    pos = {"50": "NUM", "199": "NUM", "units": "NOUN", "8": "NUM", "%": "NOUN",
           "discount": "NOUN"}
    tagged = _tagged(unit, pos, [("50 to 199 units", "CARDINAL"), ("8%", "PERCENT")])
    asked = "What volume discount does a customer get for an order of 60 units?"
    texts = {unit[s:e] for s, e in candidate_spans(asked, unit, tagged, typed=False)}
    assert "8%" in texts and not any("units" in t for t in texts)
    # asked for the units themselves, or with only a year in the question, they stay
    for question in ("How many units earn an 8% discount?",
                     "What volume discount applied in 2024?"):
        texts = {unit[s:e] for s, e in candidate_spans(question, unit, tagged, typed=False)}
        assert "50 to 199 units" in texts, question
