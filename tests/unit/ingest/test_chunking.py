"""Chunking (ingest/chunking.py): offsets and pages index the extracted text; stable ids."""

from core.domain import Page
from ingest.chunking import chunk_pages
from ingest.readers import full_text

KEY = b"k" * 32  # the document's chunk-id key


def test_chunk_offsets_and_pages_index_the_extracted_text() -> None:
    body = " ".join(f"Sentence {i} is about widget number {i}." for i in range(120))
    pages = [Page(1, body, 0), Page(2, "Second page text. It ends here.", len(body) + 2)]
    chunks = chunk_pages("doc", pages, size=50, overlap=10, id_key=KEY)
    text = full_text(pages)
    assert len(chunks) > 3
    for c in chunks:
        assert text[c.start : c.end] == c.text
    assert chunks[-1].page == 2 and chunks[0].page == 1
    assert [c.index for c in chunks] == list(range(len(chunks)))
    # running twice gives the same ids: re-ingest is a no-op upsert
    assert [c.id for c in chunk_pages("doc", pages, 50, 10, KEY)] == [c.id for c in chunks]
