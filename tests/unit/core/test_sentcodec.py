"""The sentence codec: a chunk's unit spans, vectors, kinds and context packed into its
metadata, and chunks stored before (float16 vectors, or before units existed) still read."""

import base64
import json

import numpy as np
import pytest

from core.sentcodec import (
    Q8_KEY,
    SPANS_KEY,
    UNITS_KEY,
    VECTORS_KEY,
    decode_q8,
    encode_q8,
    pack,
    unpack,
    unpack_units,
)
from core.settings import Settings
from core.units import Unit, UnitContext, UnitKind
from ingest.embedding import HashEmbedder, SentenceTransformerEmbedder
from service.answer.grounding import cosine

SENTENCES = [
    "Employees accrue 25 days of paid annual leave per calendar year.",
    "Invoices are payable within 30 days of receipt, without deduction.",
    "The Eiffel Tower was completed in 1889 for the World's Fair in Paris.",
    "Requests must reach HR seven weeks before the first day of leave.",
    "A short one.",
    "Table: Plan | Fee | Basic | 10 EUR per month",
    "Backups are restored from the secondary site within four hours of an outage.",
    "1. Submit the form. 2. Wait for approval.",
]


def _float16_meta(spans: list[tuple[int, int]], vectors: np.ndarray) -> dict[str, str]:
    """A chunk's metadata as the float16 codec of before wrote it."""
    return {SPANS_KEY: json.dumps([list(s) for s in spans]),
            VECTORS_KEY: base64.b64encode(vectors.astype(np.float16).tobytes()).decode()}


def test_pack_round_trips_within_int8_precision() -> None:
    vecs = HashEmbedder().embed(["alpha beta", "gamma delta"])
    spans, back = unpack(pack([(0, 10), (11, 22)], vecs))  # type: ignore[misc]
    assert spans == [(0, 10), (11, 22)]
    assert all(cosine(a, b) > 0.999 for a, b in zip(vecs, back, strict=True))


def test_int8_agrees_with_float16_on_minilm_vectors() -> None:
    """The packaged MiniLM's unit vectors: int8 with a per-vector scale against the float16
    of before, and the ranking of the units for a question unchanged."""
    st = SentenceTransformerEmbedder(Settings().models.resolved_embedding_path())
    vecs = np.array(st.embed(SENTENCES), dtype=np.float32)
    spans = [(i * 10, i * 10 + 5) for i in range(len(SENTENCES))]
    _, q8 = unpack(pack(spans, vecs.tolist()))  # type: ignore[misc]
    _, f16 = unpack(_float16_meta(spans, vecs))  # type: ignore[misc]
    agreement = [cosine(a, b) for a, b in zip(q8, f16, strict=True)]
    assert min(agreement) >= 0.999, agreement
    question = np.array(st.embed(["How many vacation days do staff get?"])[0])
    assert np.argsort(-np.array(q8) @ question).tolist() == np.argsort(
        -np.array(f16) @ question).tolist()


def test_int8_is_half_the_bytes_of_float16() -> None:
    vecs = np.random.default_rng(1).standard_normal((9, 384)).astype(np.float32)
    q8 = pack([(0, 1)] * 9, vecs.tolist())[Q8_KEY]
    f16 = _float16_meta([(0, 1)] * 9, vecs)[VECTORS_KEY]
    assert len(q8) <= 0.51 * len(f16)


def test_float16_chunks_written_before_still_decode() -> None:
    vecs = np.array(HashEmbedder().embed(["a", "b", "c"]), dtype=np.float32)
    spans = [(0, 3), (4, 9), (10, 12)]
    meta = _float16_meta(spans, vecs)
    back_spans, back = unpack(meta)  # type: ignore[misc]
    assert back_spans == spans
    np.testing.assert_allclose(back, vecs.astype(np.float16).astype(np.float32))
    units, _ = unpack_units(meta)  # type: ignore[misc]
    assert [(u.start, u.end) for u in units] == spans


@pytest.mark.parametrize("vectors", [[[0.0, 0.0, 0.0]], [[5.0, -3.0, 0.001]], [[-1e-6, 2e-6]]])
def test_int8_edge_vectors(vectors: list[list[float]]) -> None:
    back = decode_q8(encode_q8(vectors), len(vectors))
    assert back is not None and back.shape == (1, len(vectors[0]))
    peak = max(abs(x) for x in vectors[0]) or 1.0
    np.testing.assert_allclose(back[0], vectors[0], atol=peak / 254 + 1e-12)


def test_damaged_or_missing_metadata_is_ignored() -> None:
    assert unpack({}) is None
    assert unpack({"sent_spans": "[[0, 3]]", "sent_vecs": "not base64!"}) is None
    # 2 spans, 3 values
    assert unpack({"sent_spans": "[[0, 3], [4, 9]]", "sent_vecs": "AAAA"}) is None
    assert unpack({"sent_spans": "[[0, 3]]", "sent_q8": "not base64!"}) is None
    assert unpack({"sent_spans": "[[0, 3], [4, 9]]", "sent_q8": "AAAAAAAA"}) is None  # 6 bytes
    assert unpack({"sent_spans": "[]", "sent_q8": "AAAAAAAA"}) is None


def test_units_round_trip_with_their_kinds_and_context() -> None:
    units = [Unit(0, 11), Unit(12, 30, UnitKind.ITEM, UnitContext(("Pricing",), "The fee is:")),
             Unit(31, 52, UnitKind.ROW, UnitContext(("Pricing", "Fees"), header="Plan | Fee"))]
    vecs = HashEmbedder().embed(["a", "b", "c"])
    meta = pack([(u.start, u.end) for u in units], vecs, units)
    back, back_vecs = unpack_units(meta)  # type: ignore[misc]
    assert back == units and len(back_vecs) == 3
    assert unpack(meta) is not None  # a reader of the first two keys sees plain spans


def test_plain_sentences_are_stored_as_before_and_old_chunks_read_as_sentences() -> None:
    vecs = HashEmbedder().embed(["a", "b"])
    plain = pack([(0, 3), (4, 9)], vecs, [Unit(0, 3), Unit(4, 9)])
    assert set(plain) == {SPANS_KEY, Q8_KEY}  # nothing added for prose
    old = pack([(0, 3), (4, 9)], vecs)  # written before units existed
    units, _ = unpack_units(old)  # type: ignore[misc]
    assert units == [Unit(0, 3), Unit(4, 9)] and all(u.kind is UnitKind.SENTENCE for u in units)


def test_damaged_unit_descriptions_fall_back_to_sentences() -> None:
    meta = pack([(0, 3), (4, 9)], HashEmbedder().embed(["a", "b"]))
    for bad in ("not json", "[{}]", '[{"k": "item"}, 7]', '[{"k": "poem", "s": "x"}, {}]'):
        units, _ = unpack_units({**meta, UNITS_KEY: bad})  # type: ignore[misc]
        assert [(u.start, u.end) for u in units] == [(0, 3), (4, 9)]
        assert all(u.kind is UnitKind.SENTENCE and not u.context.section for u in units)
    assert unpack_units({}) is None
