"""Features and learned scorers of the answer pipeline, on hand-made cases (no I/O)."""

import json
import math
from pathlib import Path

import pytest

from core.sentcodec import unpack
from core.units import Unit, UnitContext, UnitKind
from ingest.embedding import HashEmbedder
from ingest.sentences import chunk_sentence_metadata
from service.answer.grounding import (
    GATE_FEATURES,
    SENTENCE_FEATURES,
    Candidate,
    Logistic,
    answer_kind,
    content_stems,
    gate_features,
    has_kind,
    load_model,
    make_candidates,
    salient,
    sentence_features,
    stem,
)


@pytest.mark.parametrize(("question", "kind"), [
    ("When did the plant open?", "year"),
    ("In what year was the contract signed?", "year"),
    ("How many engineers work there?", "number"),
    ("What percentage of staff left?", "number"),
    ("Who approved the budget?", "person"),
    ("Where is the data centre?", "place"),
    ("What caused the outage?", "other"),
])
def test_answer_kind(question: str, kind: str) -> None:
    assert answer_kind(question) == kind


def test_kind_needs_something_new() -> None:
    q = {stem(t) for t in "When did the plant open in 2014".split()}
    assert has_kind("The plant opened in 2014.", "year", set()) is True
    assert has_kind("The plant opened in 2014.", "year", q) is False  # the year is the question's
    assert has_kind("It employs ten engineers.", "number", set()) is True
    assert has_kind("Approved by Maria Lind in March.", "person", set()) is True
    assert has_kind("approved by the board.", "person", set()) is False


def test_salient_words_are_names_and_numbers_not_the_opening_word() -> None:
    assert salient("When did Acme open Plant 7 in Malmo?") == {
        stem("Acme"), stem("Plant"), "7", stem("Malmo")}
    assert stem("Companies") == "company" and stem("pumps") == "pump" and stem("status") == "status"
    assert stem("failed") == stem("fail") and stem("moved") == stem("move") == stem("moving")
    assert "the" not in content_stems("The pump failed")


def _cands(question: str, sentences: list[str], coses: list[float]) -> list[Candidate]:
    cands = [Candidate(0, 0, len(s), s, cos) for s, cos in zip(sentences, coses, strict=True)]
    sentence_features(question, cands, [0.7], [i == 0 for i in range(len(cands))])
    return cands


def test_sentence_features_reward_the_answering_sentence() -> None:
    q = "When did the Acme plant open?"
    a, b = _cands(q, ["The Acme plant opened in 2014.", "The Acme canteen serves lunch."],
                  [0.8, 0.6])
    assert set(a.features) == set(SENTENCE_FEATURES)
    assert a.features["kind_match"] == 1.0 and b.features["kind_match"] == 0.0
    assert a.features["overlap_q"] > b.features["overlap_q"]
    assert a.features["cos_margin"] == 0.0 and b.features["cos_margin"] == pytest.approx(-0.2)


def test_gate_sees_a_swapped_name_the_evidence_lacks() -> None:
    """SQuAD 2.0's typical unanswerable question: the passage's fact with another name."""
    text = "The Acme plant in Lund opened in 2014 and employs 10 engineers."
    ok_q, swapped_q = "When did the Acme plant open?", "When did the Globex plant open?"
    feats = {}
    for q in (ok_q, swapped_q):
        cands = _cands(q, [text], [0.8])
        cands[0].score = 0.9
        feats[q] = gate_features(q, cands, [text], [0.7])
        assert set(feats[q]) == set(GATE_FEATURES)
    assert feats[ok_q]["miss_salient"] == 0.0 and feats[swapped_q]["miss_salient"] > 0
    assert feats[swapped_q]["miss_chunk"] > feats[ok_q]["miss_chunk"]


def test_logistic_prob_is_standardised_and_bounded() -> None:
    m = Logistic(("x",), (1.0,), (2.0,), (3.0,), -1.0, 0.5)
    assert m.prob({"x": 1.0}) == pytest.approx(1 / (1 + math.exp(1.0)))
    assert m.prob({"x": 5.0}) == pytest.approx(1 / (1 + math.exp(-5.0)))
    assert 0.0 < m.prob({"x": -1e9}) < 1e-12


def test_committed_model_matches_the_feature_code() -> None:
    """The JSON was trained on these exact features, in this order (retrain if this fails)."""
    model = load_model()
    assert model is not None, "service/answer/grounding_model.json is missing: run bench.train_grounding"
    assert model.sentence.features == SENTENCE_FEATURES
    assert model.gate.features == GATE_FEATURES
    assert 0.0 < model.gate.threshold < 1.0
    assert "dev" in str(model.info["trained_on"])


def test_a_record_scorer_when_present_scores_list_items_and_rows_only(tmp_path: Path) -> None:
    """A model JSON with a "record" scorer scores records with it and sentences with the
    sentence scorer; without one (the committed model) everything is the sentence scorer's."""
    def scorer(coef: float) -> dict[str, object]:
        return {"features": ["cos"], "mean": [0.0], "scale": [1.0], "coef": [coef],
                "intercept": 0.0}

    path = tmp_path / "model.json"
    path.write_text(json.dumps({"sentence": scorer(1.0), "gate": scorer(0.0),
                                "record": scorer(-1.0)}))
    model = load_model(str(path))
    assert model is not None and model.record is not None
    row = Candidate(0, 0, 5, "a | b", kind=UnitKind.ROW, features={"cos": 2.0})
    prose = Candidate(0, 0, 5, "A b.", features={"cos": 2.0})
    assert model.unit_prob(row) == pytest.approx(1 / (1 + math.exp(2.0)))
    assert model.unit_prob(prose) == pytest.approx(1 / (1 + math.exp(-2.0)))
    committed = load_model()
    assert committed is not None and committed.record is None
    row.features = {f: 0.5 for f in SENTENCE_FEATURES}
    assert committed.unit_prob(row) == committed.sentence.prob(row.features)


# ---------------------------------------------------------------- sentence candidates


def test_stored_vectors_are_used_and_only_missing_chunks_are_embedded() -> None:
    emb = HashEmbedder()
    texts = ["The pump failed. The seal cracked.", "Lunch is at noon."]
    stored = [unpack(chunk_sentence_metadata(texts[:1], emb.embed)[0]), None]
    asked: list[list[str]] = []

    def embed(batch: list[str]) -> list[list[float]]:
        asked.append(list(batch))
        return emb.embed(batch)

    q = emb.embed(["why did the pump fail"])[0]
    cands, first = make_candidates(texts, q, embed, stored)
    assert [c.text for c in cands] == ["The pump failed.", "The seal cracked.", "Lunch is at noon."]
    assert asked == [["Lunch is at noon."]] and first == [True, False, True]
    assert cands[0].cos > cands[2].cos


def test_units_become_candidates_with_their_kind_and_context() -> None:
    emb = HashEmbedder()
    text = "Notice for staff:\n30 days\nNotice for contractors:\n30 days"
    ctx = [UnitContext(lead_in="Notice for staff:"), UnitContext(lead_in="Notice for contractors:")]
    units = [Unit(0, 17), Unit(18, 25, UnitKind.ITEM, ctx[0]), Unit(26, 49),
             Unit(50, 57, UnitKind.ITEM, ctx[1])]
    stored = [(units, emb.embed([u.embedding_text(text) for u in units]))]
    cands, first = make_candidates([text], emb.embed(["notice for contractors"])[0],
                                   emb.embed, stored)
    # the same words under two lead-ins are two answers, not one
    assert [(c.text, c.kind, c.context) for c in cands] == [
        ("Notice for staff:", UnitKind.SENTENCE, UnitContext()),
        ("30 days", UnitKind.ITEM, ctx[0]),
        ("Notice for contractors:", UnitKind.SENTENCE, UnitContext()),
        ("30 days", UnitKind.ITEM, ctx[1])]
    assert first == [True, False, False, False]
    assert cands[3].cos > cands[1].cos  # its vector was embedded with its lead-in


def test_chunks_without_stored_units_are_split_into_units_at_ask_time() -> None:
    emb = HashEmbedder()
    asked: list[list[str]] = []

    def embed(batch: list[str]) -> list[list[float]]:
        asked.append(list(batch))
        return emb.embed(batch)

    text = "The fee is:\n- Basic: EUR 12\n- Pro: EUR 30"
    cands, _ = make_candidates([text], emb.embed(["basic fee"])[0], embed)
    assert [(c.text, c.kind) for c in cands] == [
        ("The fee is:", UnitKind.SENTENCE), ("Basic: EUR 12", UnitKind.ITEM),
        ("Pro: EUR 30", UnitKind.ITEM)]
    assert asked == [["The fee is:", "The fee is: Basic: EUR 12", "The fee is: Pro: EUR 30"]]


def test_an_acronym_the_evidence_spells_out_is_scored_as_those_words() -> None:
    from service.answer.grounding import expand_acronyms

    text = "Spending on research and development was EUR 6.3 million in 2023."
    assert expand_acronyms("How much did we spend on R&D in 2023?", [text]) == \
        "How much did we spend on research and development in 2023?"
    assert expand_acronyms("Who is the CISO?", ["Ravi Menon is Chief Information Security "
                                               "Officer."]) == \
        "Who is the Chief Information Security Officer?"
    # the evidence uses the acronym itself, or spells out nothing: the question stays
    assert expand_acronyms("What was EBIT in 2023?", ["EBIT was EUR 14.8 million."]) == \
        "What was EBIT in 2023?"
    assert expand_acronyms("What does NASA fly?", ["The agency flies rockets."]) == \
        "What does NASA fly?"
    # two capitals without "&" are too easily met by chance
    assert expand_acronyms("Is the US large?", ["Under stress, it is."]) == "Is the US large?"
