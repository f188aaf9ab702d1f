"""The sentence codec: a chunk's unit spans, vectors, kinds and context packed into its
metadata, and chunks stored before units existed still read (no I/O)."""

from core.sentcodec import SPANS_KEY, UNITS_KEY, VECTORS_KEY, pack, unpack, unpack_units
from core.units import Unit, UnitContext, UnitKind
from ingest.embedding import HashEmbedder
from service.answer.grounding import cosine


def test_pack_round_trips_within_float16_precision() -> None:
    vecs = HashEmbedder().embed(["alpha beta", "gamma delta"])
    spans, back = unpack(pack([(0, 10), (11, 22)], vecs))  # type: ignore[misc]
    assert spans == [(0, 10), (11, 22)]
    assert all(cosine(a, b) > 0.999 for a, b in zip(vecs, back, strict=True))


def test_damaged_or_missing_metadata_is_ignored() -> None:
    assert unpack({}) is None
    assert unpack({"sent_spans": "[[0, 3]]", "sent_vecs": "not base64!"}) is None
    assert unpack({"sent_spans": "[[0, 3], [4, 9]]", "sent_vecs": "AAAA"}) is None  # 2 spans, 3 values


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
    assert set(plain) == {SPANS_KEY, VECTORS_KEY}  # nothing added for prose
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
