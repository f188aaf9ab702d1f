"""Sentence spans, and the units and vectors computed for each chunk at ingest (no I/O)."""

from core.domain import LineKind, LineMark
from core.sentcodec import unpack, unpack_units
from core.units import UnitKind
from ingest.embedding import HashEmbedder
from ingest.sentences import chunk_sentence_metadata, split_sentences
from ingest.units import split_units


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


def test_units_are_stored_with_their_context_and_embedded_with_it() -> None:
    text = "Pricing\nThe fee is:\nBasic: EUR 12"
    units = split_units(text, (LineMark(0, LineKind.HEADING, 1), LineMark(2, LineKind.ITEM)))
    asked: list[str] = []

    def embed(batch: list[str]) -> list[list[float]]:
        asked.extend(batch)
        return HashEmbedder().embed(batch)

    (meta,) = chunk_sentence_metadata([text], embed, [units])
    assert asked == ["The fee is:", "Pricing: The fee is: Basic: EUR 12"]
    back, vecs = unpack_units(meta)  # type: ignore[misc]
    assert back == units and len(vecs) == 2
    assert [text[u.start:u.end] for u in back] == ["The fee is:", "Basic: EUR 12"]
    assert back[1].kind is UnitKind.ITEM and back[1].context.lead_in == "The fee is:"


def test_prose_paragraphs_store_exactly_what_they_stored_before() -> None:
    texts = ["The pump failed. The seal cracked.\nIt was replaced on 3 May.",
             "Dr. Smith arrived at 9 a.m. on 3 March. He left at noon."]
    emb = HashEmbedder()
    new = chunk_sentence_metadata(texts, emb.embed, [split_units(t) for t in texts])
    assert new == chunk_sentence_metadata(texts, emb.embed)  # sentences, as before units


def test_a_sentence_in_two_chunks_is_embedded_once_and_stored_in_both() -> None:
    texts = ["The pump failed. The seal cracked.", "The seal cracked. It was replaced."]
    asked: list[str] = []

    def embed(batch: list[str]) -> list[list[float]]:
        asked.extend(batch)
        return HashEmbedder().embed(batch)

    first, second = chunk_sentence_metadata(texts, embed)
    assert asked == ["The pump failed.", "The seal cracked.", "It was replaced."]
    (_, vecs_1), (_, vecs_2) = unpack(first), unpack(second)  # type: ignore[misc]
    assert vecs_1[1] == vecs_2[0]  # the shared sentence's vector, in both chunks
    (_, alone), = [unpack(m) for m in chunk_sentence_metadata(texts[1:], HashEmbedder().embed)]
    assert vecs_2 == alone  # what the chunk stores when embedded on its own
