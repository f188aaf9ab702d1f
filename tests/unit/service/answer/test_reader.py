"""The span reader's pure parts: pair encoding, span decoding and the pick policy. The
trained model itself answers in tests/integration/test_reader.py."""

from __future__ import annotations

import numpy as np
import pytest

from core.settings import ModelSettings
from service.answer.reader import (
    MAX_ANSWER_TOKENS,
    Encoded,
    answer_score,
    choose,
    encode_pairs,
    trim_end,
    load_tokenizer,
    top_spans,
    whole_words,
)


@pytest.fixture(scope="module")
def tokenizer() -> object:
    return load_tokenizer(ModelSettings().resolved_embedding_path())


def test_the_unit_mask_covers_the_unit_and_offsets_index_it(tokenizer: object) -> None:
    unit = "Plan: Basic | Fee: EUR 12 per month"
    enc = encode_pairs(tokenizer, ["What is the fee?", "Who signed?"],
                       ["Pricing", ""], [unit, "Anna Berg signed."])
    assert enc.input_ids.shape == enc.unit_mask.shape == enc.token_type_ids.shape
    row = [enc.offsets[0][k] for k in np.flatnonzero(enc.unit_mask[0])]
    words = [unit[s:e] for s, e in row]
    assert "".join(words) == unit.replace(" ", "")
    # the question and its context are the first text, never part of the unit
    first = int(np.flatnonzero(enc.unit_mask[0])[0])
    assert first == len(tokenizer.encode("What is the fee? | Pricing").ids)  # [CLS] .. [SEP]
    assert (enc.token_type_ids[0][enc.unit_mask[0]] == 1).all()
    # padding of the shorter second row is neither attended to nor the unit
    pad = enc.attention_mask[1] == 0
    assert pad.any() and not enc.unit_mask[1][pad].any()


def test_a_gold_span_maps_to_tokens_and_back(tokenizer: object) -> None:
    unit = "The notice period is three months for managers."
    enc = encode_pairs(tokenizer, ["What is the notice period?"], [""], [unit])
    start = unit.index("three months")
    first, last = enc.token_span(0, start, start + len("three months"))
    assert (enc.offsets[0][first][0], enc.offsets[0][last][1]) == (start, start + 12)
    assert enc.token_span(0, len(unit) + 5, len(unit) + 9) == (0, 0)  # not in the unit


def _encoded(n_question: int, n_unit: int) -> Encoded:
    width = 1 + n_question + 1 + n_unit + 1
    unit = np.zeros((1, width), dtype=bool)
    unit[0, 2 + n_question:2 + n_question + n_unit] = True
    offsets = [(0, 0)] * width
    for k in range(n_unit):  # unit token k is characters [3k, 3k + 2)
        offsets[2 + n_question + k] = (3 * k, 3 * k + 2)
    ones = np.ones((1, width), dtype=np.int64)
    return Encoded(ones, ones, ones, unit, [offsets])


def test_top_spans_stay_in_the_unit_best_first_and_bounded() -> None:
    enc = _encoded(3, 40)
    rng = np.random.default_rng(3)
    start, end = rng.normal(size=45), rng.normal(size=45)
    start[0] = end[0] = 50.0  # [CLS] and the question may score high: never a span
    spans = top_spans(enc, 0, start, end, k=30)
    assert len(spans) == 30
    probs = [p for _, _, p in spans]
    assert probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1.0 + 1e-9
    for s, e, _ in spans:
        assert 0 <= s < e <= 3 * 40 and s % 3 == 0 and e % 3 == 2
        assert (e + 1) // 3 - s // 3 <= MAX_ANSWER_TOKENS


def test_a_sharp_start_and_end_give_that_span_with_its_probability() -> None:
    enc = _encoded(2, 10)
    start, end = np.zeros(15), np.zeros(15)
    start[4 + 2], end[4 + 4] = 20.0, 20.0  # unit tokens 2..4
    (s, e, p), *_ = top_spans(enc, 0, start, end)
    assert (s, e) == (6, 14) and p > 0.99


def test_answer_score_is_the_best_span_over_no_answer_in_logits() -> None:
    enc = _encoded(2, 10)
    start, end = np.zeros(15), np.zeros(15)
    start[0], end[0] = 1.0, 2.0  # [CLS]: "no answer" scores 3
    start[6], end[8] = 4.0, 5.0  # unit tokens 2..4: 9
    start[9] = 7.0  # a better start after the best end would be a span backwards: not counted
    assert answer_score(enc, 0, start, end) == pytest.approx(max(9.0, 7.0 + 0.0) - 3.0)
    start[0] = end[0] = 10.0
    assert answer_score(enc, 0, start, end) < 0  # the reader finds no answer here
    # a span longer than MAX_ANSWER_TOKENS is no span
    long = _encoded(1, MAX_ANSWER_TOKENS + 5)
    width = long.unit_mask.shape[1]
    s2, e2 = np.zeros(width), np.zeros(width)
    s2[3], e2[3 + MAX_ANSWER_TOKENS] = 50.0, 50.0
    assert answer_score(long, 0, s2, e2) == pytest.approx(50.0)
    empty = Encoded(enc.input_ids, enc.attention_mask, enc.token_type_ids,
                    np.zeros_like(enc.unit_mask), enc.offsets)
    assert answer_score(empty, 0, start, end) == float("-inf")


UNIT = "abcd efghi jklmn opqrs tuvwx yz012 34567 89"  # words start at 0, 5, 11, 17, ...


def test_choose_takes_a_sure_best_span() -> None:
    spans = [(11, 16, 0.7), (0, 4, 0.2), (23, 34, 0.1)]
    assert choose(spans, UNIT, 0.5, 0.9) == (11, 16, "ok", 0.7)


def test_choose_covers_the_best_spans_up_to_the_mass_when_unsure() -> None:
    spans = [(11, 16, 0.4), (17, 22, 0.15), (0, 4, 0.1), (35, 40, 0.1)]
    assert choose(spans, UNIT, 0.5, 0.5) == (11, 22, "cover", 0.4)
    assert choose(spans, UNIT, 0.5, 0.6) == (0, 22, "cover", 0.4)
    # mass never reached: everything offered is covered
    assert choose(spans, UNIT, 0.5, 0.99) == (0, 40, "cover", 0.4)
    assert choose(spans, UNIT, 0.5, 0.0) == (11, 16, "cover", 0.4)


def test_a_word_piece_is_widened_to_its_whole_word() -> None:
    assert choose([(13, 15, 0.9)], UNIT, 0.5, 0.6) == (11, 16, "ok", 0.9)
    assert whole_words("EUR 12,50 net", 4, 6) == (4, 6)  # "12" then "," is not a letter
    assert whole_words("über-safe", 1, 4) == (0, 4)


def test_a_redaction_placeholder_is_never_cut() -> None:
    unit = "Maja Ek's number is [SE_PIN], her mail [EMAIL]."
    i = unit.index("SE_PIN")
    assert unit[slice(*whole_words(unit, i, i + 6))] == "[SE_PIN]"
    j = unit.index("PIN]")
    assert unit[slice(*whole_words(unit, j, j + 3))] == "[SE_PIN]"
    k = unit.index("her")
    assert unit[slice(*whole_words(unit, k, k + 10))] == "her mail [EMAIL]"
    # brackets that are no placeholder are left as they are
    assert whole_words("see [note] here", 5, 9) == (5, 9)


def test_an_answer_ends_before_closing_punctuation() -> None:
    unit = "It runs in hall 5, hall 6; and hall 7."
    for piece, want in (("hall 5,", "hall 5"), ("hall 6;", "hall 6"), ("hall 7.", "hall 7"),
                        ("hall 7", "hall 7"), (",", ",")):
        i = unit.index(piece)
        assert unit[i:trim_end(unit, i, i + len(piece))] == want
    # a full stop inside the unit may belong to the answer ("No. 5", "U.S. Steel")
    unit = "Plant No. 5 opened."
    assert trim_end(unit, 6, 9) == 9
    assert choose([(0, 19, 0.95)], unit, 0.9, 0.95) == (0, 18, "ok", 0.95)


def test_choose_without_spans_is_nothing() -> None:
    assert choose([], UNIT, 0.5, 0.6) is None


def test_a_pick_past_its_deadline_gives_way_to_the_unit(monkeypatch: pytest.MonkeyPatch
                                                        ) -> None:
    import time

    from service.answer.reader import SpanReader

    reader = SpanReader.__new__(SpanReader)  # the policy only; no model needed
    reader.min_confidence, reader.cover_mass = 0.9, 0.95

    def slow(question: str, unit: str, context: str = "") -> list[tuple[int, int, float]]:
        time.sleep(0.05)
        return [(0, 4, 0.99)]

    monkeypatch.setattr(reader, "spans", slow)
    late = reader.pick("q?", "abcd efgh", deadline_s=0.01)
    assert not late.picked and late.reason == "timeout"
    on_time = reader.pick("q?", "abcd efgh", deadline_s=5)
    assert on_time.text == "abcd" and on_time.reason == "ok"

    def broken(question: str, unit: str, context: str = "") -> list[tuple[int, int, float]]:
        raise RuntimeError("onnxruntime failed")

    monkeypatch.setattr(reader, "spans", broken)
    assert reader.pick("q?", "abcd efgh").reason == "error"


def test_a_pick_handed_the_units_spans_does_not_read_it_again(monkeypatch: pytest.MonkeyPatch
                                                               ) -> None:
    from service.answer.reader import SpanReader

    reader = SpanReader.__new__(SpanReader)  # the policy only; no model needed
    reader.min_confidence, reader.cover_mass = 0.9, 0.95

    def unread(question: str, unit: str, context: str = "") -> list[tuple[int, int, float]]:
        raise AssertionError("the unit was read again")

    monkeypatch.setattr(reader, "spans", unread)
    pick = reader.pick("q?", "abcd efgh", spans=((5, 9, 0.97), (0, 4, 0.02)))
    assert pick.text == "efgh" and pick.reason == "ok" and pick.confidence == 0.97
    # no spans at all: the unit answers, as for a unit the reader found nothing in
    assert reader.pick("q?", "abcd efgh", spans=()).reason == "empty"
