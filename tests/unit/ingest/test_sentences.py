"""Sentence spans and vectors computed for each chunk at ingest (no I/O)."""

from core.sentcodec import unpack
from ingest.embedding import HashEmbedder
from ingest.sentences import chunk_sentence_metadata, split_sentences


def test_sentences_do_not_break_on_single_newlines() -> None:
    text = "The outage began on a Sunday\nnight. Root cause was a pump.\n\nNew para"
    spans = [text[s:e] for s, e in split_sentences(text)]
    assert spans == ["The outage began on a Sunday\nnight.", "Root cause was a pump.", "New para"]


def test_chunk_metadata_matches_the_ask_time_split() -> None:
    texts = ["The pump failed. The seal cracked.", "", "One sentence only"]
    emb = HashEmbedder()
    meta = chunk_sentence_metadata(texts, emb.embed)
    assert meta[1] == {}
    spans, vecs = unpack(meta[0])  # type: ignore[misc]
    assert spans == split_sentences(texts[0]) and len(vecs) == 2
