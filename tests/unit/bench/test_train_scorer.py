"""The record scorer and the sentence scorer's refit on business units
(bench/train_scorer.py)."""

from __future__ import annotations

import random
from typing import Any

import pytest

from bench.train_scorer import fit, holds, refit_sentence, top_holds
from service.answer.grounding import SENTENCE_FEATURES

pytest.importorskip("sklearn")


def test_a_unit_holds_an_answer_by_the_evaluations_normalisation() -> None:
    assert holds("Notice period: Three months.", ("three months",))
    assert holds("The fee is EUR 1,480 per pallet", ("1,480",))
    assert not holds("The fee is EUR 14,800 per pallet", ("1,480",))
    assert not holds("anything at all", ())


def _question(rng: random.Random, split: str, kind: str, signal: str,
              answerable: bool = True) -> dict[str, Any]:
    """Four units of ``kind``, the first of them the answer's; ``signal`` is the one feature
    that tells it (the others are noise)."""
    units = []
    for i in range(4):
        feats = {f: rng.random() for f in SENTENCE_FEATURES}
        feats[signal] = (0.9 if i == 0 else 0.1) + rng.gauss(0, 0.05)
        units.append({"kind": kind, "features": feats, "label": answerable and i == 0})
    rng.shuffle(units)
    return {"split": split, "group": f"{rng.randrange(10):02d}", "answerable": answerable,
            "units": units}


def _sentence_scorer(signal: str) -> dict[str, Any]:
    """A scorer that follows ``signal`` alone (standardised around 0.5)."""
    return {"features": list(SENTENCE_FEATURES), "mean": [0.5] * len(SENTENCE_FEATURES),
            "scale": [0.3] * len(SENTENCE_FEATURES), "intercept": -3.0,
            "coef": [4.0 if f == signal else 0.0 for f in SENTENCE_FEATURES]}


def test_the_record_scorer_learns_what_the_prose_scorer_cannot() -> None:
    """Prose answers follow ``overlap_q``, the records' ``chunk_salient_q``: the record
    scorer, fitted on dev and train alone, ranks dev2's records right; dev2's prose stays
    with the sentence scorer, and dev2 is never fitted on."""
    rng = random.Random(7)
    sentence = _sentence_scorer("overlap_q")
    rows = [_question(rng, split, "row", "chunk_salient_q")
            for split in ("dev", "train", "dev2") for _ in range(30)]
    prose = [_question(rng, "dev2", "sentence", "overlap_q") for _ in range(10)]
    record = fit(rows + prose, sentence)
    dev2 = [r for r in rows + prose if r["split"] == "dev2"]
    figures = record.pop("info")["top_unit_holds_answer"]
    assert record["features"] == list(SENTENCE_FEATURES)
    assert figures["sentence_scorer_alone"]["dev2"] < 0.6
    assert figures["with_record_scorer"]["dev2"] == top_holds(sentence, record, dev2) > 0.95
    assert figures["record_scorer_fitted_on_dev_only_on_train"] > 0.9
    flipped = [{**r, "units": [{**u, "label": not u["label"]} for u in r["units"]]}
               if r["split"] == "dev2" else r for r in rows]
    assert fit(flipped + prose, sentence)["coef"] == record["coef"]


def test_the_sentence_refit_weighs_business_units_by_their_weight() -> None:
    """SQuAD's answers follow ``overlap_q``, the business ones ``chunk_salient_q``; with
    more weight the business questions pull the refit their way."""
    rng = random.Random(11)
    rows = [_question(rng, "squad", "sentence", "overlap_q") for _ in range(200)]
    rows += [_question(rng, "squad", "sentence", "overlap_q", answerable=False)
             for _ in range(50)]
    rows += [_question(rng, split, "row", "chunk_salient_q")
             for split in ("dev", "train", "dev2") for _ in range(20)]
    sentence = _sentence_scorer("overlap_q")
    light = refit_sentence(rows, sentence, 0.01)
    heavy = refit_sentence(rows, sentence, 50.0)
    at = SENTENCE_FEATURES.index("chunk_salient_q")
    assert heavy["coef"][at] > light["coef"][at]
    figures = heavy["info"]["top_unit_holds_answer"]
    assert figures["committed"]["squad"] > 0.95 and figures["committed"]["dev2"] < 0.6
    assert figures["refit"]["dev2"] > light["info"]["top_unit_holds_answer"]["refit"]["dev2"]
