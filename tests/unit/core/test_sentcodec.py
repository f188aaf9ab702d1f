"""The sentence codec: a chunk's sentence spans and vectors packed into its metadata (no I/O)."""

from core.sentcodec import pack, unpack
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
