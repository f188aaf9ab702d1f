"""The trained span reader (``service/answer/reader.py``) with the committed adapter: exported
from the packaged MiniLM into ONNX, it answers with an exact substring of the unit for any
unit (odd characters, tables, long ones), the short value where the unit plainly holds it,
and the export is made once and re-used."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.settings import ModelSettings
from service.answer.reader import ADAPTER, SpanReader, reader_model_file
from tests.integration.conftest import ONNX_CACHE

pytestmark = pytest.mark.integration

# (question, unit, context, the value a right answer holds)
CLEAR = [
    ("When was Velmora founded?",
     "Velmora Pumps GmbH was founded in 1987 in Graz, Austria, by Ingrid Hofer.", "", "1987"),
    ("What is the notice period for managers?",
     "For managers the notice period is three months.", "", "three months"),
    ("What was the EBIT margin in Q3 2024?", "Quarter: Q3 2024 | Revenue (EUR m): 41.2 | "
     "EBIT margin: 8.1%", "Quarterly results", "8.1"),
    ("Who approves purchases over €25,000?", "Order value (net): over €25,000 to €150,000 | "
     "Approved by: Head of Procurement | Competing quotes: three quotes",
     "Procurement Policy > Approval", "Head of Procurement"),
]

ODD = [
    ("Which path holds the backups?",
     'Backups go to "\\\\nas01\\backup" (path: C:\\data\\) every night\tat 02:00 — über-safe.',
     "IT policy > Backups"),
    ("Who chairs the board?", "The board is chaired by Zoë Ångström 😀 since\nMarch 2021.", ""),
    ("What is it?", "x", ""),
    ("What does the long clause say?", " ".join(["The supplier shall deliver the goods"] * 80),
     "Supply agreement > Delivery"),
]


@pytest.fixture(scope="module")
def reader() -> SpanReader:
    return SpanReader(ModelSettings().resolved_embedding_path(), Path(ONNX_CACHE))


@pytest.mark.parametrize(("question", "unit", "context", "value"), CLEAR)
def test_the_best_span_is_the_short_value_and_the_pick_holds_it(
        reader: SpanReader, question: str, unit: str, context: str, value: str) -> None:
    (start, end, p), *_ = reader.spans(question, unit, context)
    assert value in unit[start:end] and len(unit[start:end]) <= len(value) + 4, (unit, p)
    # the default pick: that span when sure, else a covering run of the unit that holds it
    pick = reader.pick(question, unit, context)
    assert pick.picked and pick.text == unit[pick.start:pick.end], pick
    assert value in pick.text, pick


@pytest.mark.parametrize(("question", "unit", "context"), ODD)
def test_any_unit_gives_an_exact_substring(reader: SpanReader, question: str, unit: str,
                                           context: str) -> None:
    pick = reader.pick(question, unit, context)
    assert pick.picked, pick
    assert pick.text == unit[pick.start:pick.end] and pick.text.strip(), pick
    assert pick.reason in ("ok", "cover") and 0 < (pick.confidence or 0) <= 1


def test_every_span_offered_is_inside_the_unit(reader: SpanReader) -> None:
    unit = CLEAR[2][1]
    spans = reader.spans(CLEAR[2][0], unit, CLEAR[2][2])
    assert spans and all(0 <= s < e <= len(unit) for s, e, _ in spans)
    assert sum(p for _, _, p in spans) <= 1.0 + 1e-6


def test_the_export_is_made_once_and_reused(tmp_path: Path) -> None:
    model = ModelSettings().resolved_embedding_path()
    first = reader_model_file(model, tmp_path)
    stamp = first.stat().st_mtime_ns
    assert reader_model_file(model, tmp_path) == first and first.stat().st_mtime_ns == stamp
    # the export is named by the adapter's content, not its path
    other = tmp_path / "copy.npz"
    other.write_bytes(ADAPTER.read_bytes())
    assert reader_model_file(model, tmp_path, other) == first


def test_the_export_scores_as_the_trained_network(reader: SpanReader) -> None:
    import torch

    from service.answer.reader import encode_pairs, load_net

    net = load_net(ModelSettings().resolved_embedding_path(), ADAPTER)
    questions, units, contexts = zip(*[(q, u, c) for q, u, c, _ in CLEAR], strict=True)
    enc = encode_pairs(reader.tokenizer, list(questions), list(contexts), list(units))
    with torch.no_grad():
        start, end = net(torch.from_numpy(enc.input_ids), torch.from_numpy(enc.attention_mask),
                         torch.from_numpy(enc.token_type_ids))
    got = reader.session.run(None, {"input_ids": enc.input_ids,
                                    "attention_mask": enc.attention_mask,
                                    "token_type_ids": enc.token_type_ids})
    mask = enc.attention_mask.astype(bool)
    for want, have in zip((start.numpy(), end.numpy()), got, strict=True):
        assert abs(want[mask] - have[mask]).max() < 1e-3


def test_a_batch_read_gives_each_unit_the_spans_and_pick_of_reading_it_alone(
        reader: SpanReader) -> None:
    questions = {q for q, *_ in CLEAR}
    for question in sorted(questions):
        units = [u for _, u, _, _ in CLEAR]
        contexts = [c for _, _, c, _ in CLEAR]
        reads = reader.read(question, units, contexts)
        for unit, context, got in zip(units, contexts, reads, strict=True):
            assert abs(got.score - reader.read(question, [unit], [context])[0].score) < 1e-3
            alone = reader.spans(question, unit, context)
            # the batch pads the shorter pairs; that moves no span and no probability
            assert [(s, e) for s, e, _ in got.spans] == [(s, e) for s, e, _ in alone]
            assert max(abs(a[2] - b[2]) for a, b in zip(got.spans, alone, strict=True)) < 1e-3
            assert reader.pick(question, unit, context, spans=got.spans).text == \
                reader.pick(question, unit, context).text
