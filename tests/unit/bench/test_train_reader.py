"""bench/train_reader.py's data and measurement helpers (the training itself runs in
docs/span.md's commands; the trained reader is tested in tests/integration/test_reader.py)."""

from __future__ import annotations

import pytest

from bench.train_reader import ReadCase, gold_span, gold_spans, load_cases, sweep
from service.answer.reader import choose


def _case(unit: str, *golds: str) -> ReadCase:
    return ReadCase("q1", "When?", "", unit, golds)


def test_gold_spans_are_distinct_verbatim_occurrences() -> None:
    c = _case("It opened in May 2014, in 2014 exactly.", "May 2014", "2014", "May 2014", "June")
    assert gold_spans(c) == [(13, 21), (17, 21)]
    assert gold_span(c) == (13, 21)
    assert gold_span(_case("It opened in MAY 2014.", "May 2014")) == (13, 21)  # case-blind
    assert gold_span(_case("Nothing here.", "2014")) is None


def test_the_business_test_split_is_never_loaded_for_training() -> None:
    with pytest.raises(SystemExit, match="never trained"):
        load_cases("business:test")
    with pytest.raises(SystemExit, match="unknown"):
        load_cases("wiki:all")


def test_training_company_cases_come_from_its_own_corpus() -> None:
    """``business:train`` reads bench/business/train/: each case a unit holding its gold."""
    cases = load_cases("business:train", negatives=1)
    answers = [c for c in cases if c.golds]
    assert len(answers) >= 100 and all(c.qid.startswith("t") for c in cases)
    assert all(any(g.lower() in c.unit.lower() for g in c.golds) for c in answers)
    assert any(not c.golds for c in cases)  # the hard negatives


def test_sweep_scores_the_window_and_each_policy_per_set() -> None:
    unit = "The plant opened in 2014 and employs ten engineers"
    rows = [{"set": "b", "question": "When did the plant open?", "unit": unit,
             "golds": ["2014"], "top": [(20, 24, 0.95), (0, 9, 0.05)]},
            {"set": "s", "question": "How many engineers?", "unit": unit,
             "golds": ["ten engineers"], "top": [(38, 41, 0.5), (42, 51, 0.3), (0, 3, 0.2)]}]
    out = sweep(rows, choose)
    # the whole unit holds the gold among 8 words ("the" is not counted): F1 2/9
    assert out["business"]["unit"] == {"correct": 1.0, "f1": 0.222}
    assert out["business"]["1.1/0.00"] == {"correct": 1.0, "f1": 1.0}
    # unsure: covering the best two gives "ten engineers", the best alone "ten"
    assert out["squad"]["0.9/0.80"] == {"correct": 1.0, "f1": 1.0}
    assert out["squad"]["0.3/0.80"]["correct"] == 0.0
    assert set(out["squad"]) >= {"mbr/0", "mbr/40"}


def test_the_expected_best_run_trades_f1_for_holding_the_answer() -> None:
    from bench.train_reader import expected_best

    unit = "The plant opened in 2014 and employs ten engineers"
    spans = [(37, 40, 0.7), (41, 50, 0.2), (0, 3, 0.1)]  # "ten", "engineers", "The"
    # F1 alone: the likeliest word; a heavy weight on holding it: the run over all three
    assert expected_best(spans, unit, 0.0) == (37, 40)
    assert expected_best(spans, unit, 40.0) == (0, 50)
    # in between: "ten engineers" holds 0.9 of the mass at a good F1 to both
    assert expected_best(spans, unit, 2.0) == (37, 50)
    assert expected_best([], unit, 1.0) is None


def test_null_auc_is_the_share_of_pairs_the_no_answer_score_orders_right() -> None:
    from bench.train_reader import null_auc

    rows = [{"set": "s", "golds": [], "null": 2.0}, {"set": "s", "golds": [], "null": 0.0},
            {"set": "s", "golds": ["x"], "null": 1.0}, {"set": "s", "golds": ["y"], "null": -1.0},
            {"set": "b", "golds": ["z"], "null": 0.0}]
    # unanswerable above answerable in 3 of 4 pairs; business has no unanswerable case
    assert null_auc(rows) == {"squad": 0.75}


def test_hard_negatives_are_the_passages_other_units_most_like_the_question() -> None:
    from bench.train_reader import hard_negatives
    from ingest.units import split_units

    text = ("The plant opened in 2014. The plant has a canteen. Engineers work in shifts. "
            "The plant in Graz opened later.")
    units = [(u, text[u.start:u.end]) for u in split_units(text)]
    out = hard_negatives("When did the plant in Graz open?", "q7", units, ("2014",), 2)
    # the gold unit is never a negative; most shared words first
    assert [c.unit for c in out] == ["The plant in Graz opened later.", "The plant has a canteen."]
    assert all(c.golds == () for c in out) and [c.qid for c in out] == ["q7~0", "q7~1"]
    assert hard_negatives("When?", "q7", units, ("2014",), 0) == []
    # other passages' units are told apart by their tag, under the same question
    far = hard_negatives("When did the plant in Graz open?", "q7", units, ("2014",), 1, "f")
    assert [c.qid.partition("~") for c in far] == [("q7", "~", "f0")]


def test_unit_ranking_counts_strict_wins_of_the_answering_unit() -> None:
    from bench.train_reader import unit_ranking

    q = "When did the plant open?"
    rows = [{"qid": "a" * 24, "set": "s", "question": q, "unit": "It opened in 2014.",
             "golds": ["2014"], "answer": 3.0},
            {"qid": "a" * 24 + "~0", "set": "s", "question": q, "unit": "The plant is big.",
             "golds": [], "answer": 1.0},
            {"qid": "b" * 24, "set": "s", "question": q, "unit": "It opened in 1999.",
             "golds": ["1999"], "answer": 1.0},
            {"qid": "b" * 24 + "~0", "set": "s", "question": q, "unit": "The plant opened.",
             "golds": [], "answer": 1.0}]
    # the reader wins the first question and ties the second (not a win); "the plant open"
    # words favour the negatives both times
    assert unit_ranking(rows) == {"squad": {"n": 2, "reader": 0.5, "overlap": 0.0}}


def test_squad_folds_split_the_dev_articles() -> None:
    from bench.train_reader import in_fold

    dev = range(0, 36, 2)  # the dev split's article indexes
    a, b, half = ([x for x in dev if in_fold(x, f)] for f in ("A", "B", "A/2"))
    assert sorted(a + b) == list(dev) and not set(a) & set(b)
    assert set(half) < set(a) and len(half) == 5 and all(in_fold(x, "dev") for x in dev)
    with pytest.raises(SystemExit):
        in_fold(0, "C")
