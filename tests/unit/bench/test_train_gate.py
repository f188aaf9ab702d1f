"""The gate refit on SQuAD and business dev rows (bench/train_gate.py)."""

from __future__ import annotations

import random
from typing import Any

import pytest

from bench.train_gate import business_rows, fit, squad_shares
from service.answer.grounding import GATE_FEATURES, Logistic

pytest.importorskip("sklearn")


def _rows(n: int, source: str, rng: random.Random, shift: float = 0.0) -> list[dict[str, Any]]:
    """Rows whose answerability follows ``p1`` (plus noise); ``shift`` moves ``cos1``."""
    rows = []
    for i in range(n):
        answerable = i % 2 == 0
        feats = {f: rng.random() for f in GATE_FEATURES}
        feats["p1"] = (0.6 if answerable else 0.3) + rng.gauss(0, 0.15)
        feats["cos1"] = shift + rng.random() * 0.1
        rows.append({"question": f"q{i}", "answerable": answerable, "stage": "gate",
                     "features": feats, "source": source,
                     "group": f"{i % 10:02d}" if source == "squad" else "business"})
    return rows


def _abstained(gate: dict[str, Any], rows: list[dict[str, Any]]) -> float:
    model = Logistic.from_dict(gate)
    impossible = [r for r in rows if not r["answerable"]]
    return sum(r["stage"] != "gate" or model.prob(r["features"]) < model.threshold
               for r in impossible) / len(impossible)


def test_the_threshold_keeps_squads_share_of_abstentions() -> None:
    rng = random.Random(3)
    squad = _rows(400, "squad", rng)
    squad += [{"question": "x", "answerable": False, "stage": "qualifier", "source": "squad",
               "group": "00"} for _ in range(20)]  # abstained before the gate
    gate = fit(squad + _rows(40, "business", rng), 5.0, 0.6)
    assert gate["features"] == list(GATE_FEATURES)
    assert gate["info"]["squad_oof_impossible_abstained"] == 0.6
    # out-of-fold at fitting time, in-sample here: close to the share asked for
    assert abs(_abstained(gate, squad) - 0.6) < 0.08


def test_business_rows_weigh_more_with_their_weight() -> None:
    """Business rows that SQuAD never shows (here: answerable ones with a low ``cos1``)
    move the gate only as far as their weight lets them."""
    rng = random.Random(5)
    squad = _rows(400, "squad", rng, shift=0.5)
    biz = [r for r in _rows(60, "business", rng, shift=0.0) if r["answerable"]]
    probe = biz[0]["features"]
    light = Logistic.from_dict(fit(squad + biz, 0.1, 0.5))
    heavy = Logistic.from_dict(fit(squad + biz, 10.0, 0.5))
    assert heavy.prob(probe) > light.prob(probe)


def test_the_business_test_split_is_never_collected() -> None:
    with pytest.raises(ValueError, match="never trained"):
        business_rows(None, "biz", "test")


def test_where_lost_names_the_place_and_what_the_check_did() -> None:
    from bench.where_lost import outcome, place, summarise

    assert [place(r) for r in (None, 0, 3, 7)] == ["none", "first", "top5", "deeper"]
    assert outcome(None, 0) == "check passed none"
    assert outcome(2, 2) == "check passed it" and outcome(0, 2) == "check passed another"
    rows = [{"answerable": True, "place": "first", "check": "check passed it", "stage": "gate"},
            {"answerable": True, "place": "top5", "check": "check passed none",
             "stage": "check"},
            {"answerable": False, "place": "first", "check": None, "stage": "answered"}]
    got = summarise(rows)
    assert got["answerable"] == 2 and got["gate_refused_right_unit"] == 1
    assert got["check"] == {"first: check passed it": 1, "top5: check passed none": 1}
    assert got["stage_near_misses"] == {"answered": 1}


def test_squad_shares_count_abstentions_before_and_at_the_gate() -> None:
    """Unanswerable: one stopped at the check, one refused by the gate, one let through;
    answerable: one refused, one let through. Business rows are not SQuAD's."""
    gate = {"features": ["p1"], "mean": [0.0], "scale": [1.0], "coef": [10.0],
            "intercept": -5.0, "threshold": 0.5}  # passes p1 > 0.5

    def row(answerable: bool, p1: float | None, source: str = "squad") -> dict[str, Any]:
        if p1 is None:
            return {"answerable": answerable, "stage": "qualifier", "source": source}
        return {"answerable": answerable, "stage": "gate", "features": {"p1": p1},
                "source": source}

    rows = [row(False, None), row(False, 0.2), row(False, 0.9), row(True, 0.1),
            row(True, 0.8), row(True, 0.1, "business")]
    assert squad_shares(rows, gate) == {"impossible_abstained": round(2 / 3, 4),
                                        "false_abstention": 0.5}
