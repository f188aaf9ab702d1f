"""Sentence spans and vectors stored with each chunk at ingest (no I/O)."""

from core.sentcodec import pack, unpack
from ingest.embedding import HashEmbedder
from ingest.sentences import chunk_sentence_metadata, split_sentences
from service.answer.grounding import cosine, make_candidates


def test_pack_round_trips_within_float16_precision() -> None:
    vecs = HashEmbedder().embed(["alpha beta", "gamma delta"])
    spans, back = unpack(pack([(0, 10), (11, 22)], vecs))  # type: ignore[misc]
    assert spans == [(0, 10), (11, 22)]
    assert all(cosine(a, b) > 0.999 for a, b in zip(vecs, back, strict=True))


def test_damaged_or_missing_metadata_is_ignored() -> None:
    assert unpack({}) is None
    assert unpack({"sent_spans": "[[0, 3]]", "sent_vecs": "not base64!"}) is None
    assert unpack({"sent_spans": "[[0, 3], [4, 9]]", "sent_vecs": "AAAA"}) is None  # 2 spans, 3 values


def test_chunk_metadata_matches_the_ask_time_split() -> None:
    texts = ["The pump failed. The seal cracked.", "", "One sentence only"]
    emb = HashEmbedder()
    meta = chunk_sentence_metadata(texts, emb.embed)
    assert meta[1] == {}
    spans, vecs = unpack(meta[0])  # type: ignore[misc]
    assert spans == split_sentences(texts[0]) and len(vecs) == 2


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
