"""bench/rerank_eval.py's replay of the unit choice and the gate (the rows themselves come
from a running stack; docs/evaluation.md has the run)."""

from __future__ import annotations

from typing import Any

from bench.rerank_eval import figures, replay


def _cand(score: float, reader: float, ok: bool = True, holds: bool = False,
          gate: float = 0.9, other: bool = False, place: str = "a.md") -> dict[str, Any]:
    return {"score": score, "reader": reader, "ok": ok, "holds": holds, "gate": gate,
            "threshold": 0.5, "other": other, "place": [place, []]}


def _row(*cands: dict[str, Any], answerable: bool = True) -> dict[str, Any]:
    return {"answerable": answerable, "stage": "ranked", "cands": list(cands)}


def test_weight_zero_is_the_scorers_order_and_a_weight_lets_the_reader_choose() -> None:
    row = _row(_cand(0.6, -5.0), _cand(0.5, 6.0, holds=True))
    assert replay(row, 0.0) == (True, False)
    assert replay(row, 0.3) == (True, True)  # logit gap 0.41 < 0.3 x 11


def test_the_check_the_floor_and_the_gate_are_replayed() -> None:
    # the first unit fails the check; the second scores under the floor: nothing answers
    assert replay(_row(_cand(0.6, 0.0, ok=False), _cand(0.01, 0.0, holds=True)),
                  0.0) == (False, False)
    # ... unless the first stated another value in the same place (a table's other rows)
    assert replay(_row(_cand(0.6, 0.0, ok=False, other=True), _cand(0.01, 0.0, holds=True)),
                  0.0) == (True, True)
    # the chosen unit's gate below its threshold abstains, as does a reader floor
    assert replay(_row(_cand(0.6, 0.0, gate=0.4, holds=True)), 0.0) == (False, False)
    assert replay(_row(_cand(0.6, -3.0, holds=True)), 0.0, -2.0) == (False, False)
    assert replay({"answerable": True, "stage": "retrieval", "cands": []}, 0.3) == \
        (False, False)


def test_figures_count_like_the_evals() -> None:
    rows = [_row(_cand(0.6, 1.0, holds=True)),  # right
            _row(_cand(0.6, 1.0)),  # answered wrong
            _row(_cand(0.6, 1.0, gate=0.1)),  # refused
            _row(_cand(0.6, 1.0), answerable=False),  # near miss answered: wrong
            _row(_cand(0.6, 1.0, ok=False), answerable=False)]  # abstained
    assert figures(rows, 0.0) == {"correct": 0.333, "false_abstention": 0.333,
                                        "abstained": 0.5, "answered_wrong": 0.4, "n": [3, 2]}


def test_a_record_the_reordering_read_passes_a_doubting_gate_as_in_the_service() -> None:
    row = _row({**_cand(0.6, 3.0, gate=0.4, holds=True), "kind": "row"})
    assert replay(row, 0.3) == (False, False)  # the record pass off (the default here)
    assert replay(row, 0.3, record_pass=2.0) == (True, True)
    assert replay(row, 0.0, record_pass=2.0) == (False, False)  # weight 0: never read
    prose = _row({**_cand(0.6, 3.0, gate=0.4, holds=True), "kind": "sentence"})
    assert replay(prose, 0.3, record_pass=2.0) == (False, False)
