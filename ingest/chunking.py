"""Sentence-aware chunking with character offsets and a page per chunk.

Uses llama-index's ``SentenceSplitter`` (sentence boundaries, overlap) behind this small
function, with a local word tokenizer so llama-index never needs tiktoken data, and
without touching llama-index's global ``Settings``.
"""

from __future__ import annotations

import importlib.abc
import re
import sys
from collections.abc import Sequence
from functools import lru_cache

from core.domain import Chunk, ChunkHit, Page, chunk_id

_WORD = re.compile(r"\S+")


def word_tokenize(text: str) -> list[str]:
    """Local tokenizer: whitespace-separated words (chunk sizes are counted in words)."""
    return _WORD.findall(text)


# nltk (the splitter's sentence tokenizer) imports these where it finds them, each for a
# feature the splitter never uses (metrics, classifiers); every import is optional there
_NLTK_OPTIONAL = ("scipy", "sklearn")


class _Absent(importlib.abc.MetaPathFinder):
    def find_spec(self, name: str, path: object = None, target: object = None) -> None:
        if name.partition(".")[0] in _NLTK_OPTIONAL:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None


def _import_nltk_lean() -> None:
    """nltk imported without scipy and scikit-learn: about 100 MB less in every process
    that chunks (each worker child; docs/capacity.md "Worker memory"). A module already
    imported stays as it is, and nothing is blocked once this returns."""
    finder = _Absent()
    sys.meta_path.insert(0, finder)
    try:
        # what llama-index's tokenizer loads, kept in sys.modules for good
        import nltk.corpus  # type: ignore[import-untyped]  # noqa: F401
        import nltk.tokenize  # type: ignore[import-untyped]  # noqa: F401
    finally:
        sys.meta_path.remove(finder)


@lru_cache(maxsize=8)
def _splitter(size: int, overlap: int):  # type: ignore[no-untyped-def]
    # llama-index is heavy to import: only a process that chunks loads it
    _import_nltk_lean()
    from llama_index.core.node_parser import SentenceSplitter

    return SentenceSplitter(
        chunk_size=size,
        chunk_overlap=overlap,
        tokenizer=word_tokenize,
        paragraph_separator="\n\n",
        include_metadata=False,
        include_prev_next_rel=False,
    )


def chunk_pages(document_id: str, pages: list[Page], size: int, overlap: int,
                id_key: bytes) -> list[Chunk]:
    """Split pages into chunks; ``start``/``end`` index the document's extracted text.

    Args:
        document_id: the owning document (part of each chunk id).
        pages: pages with offsets, from ``ingest.readers.read_document``.
        size: target chunk size in words.
        overlap: overlap between neighbouring chunks in words.
        id_key: the document's chunk-id key (``core.domain.chunk_id``).

    Returns:
        Chunks in document order with deterministic ids.
    """
    splitter = _splitter(size, overlap)
    chunks: list[Chunk] = []
    for page in pages:
        if not page.text.strip():
            continue
        cursor = 0
        for piece in splitter.split_text(page.text):
            piece = piece.strip()
            if not piece:
                continue
            local = page.text.find(piece, cursor)
            if local < 0:
                local = page.text.find(piece)
            if local < 0:  # the splitter altered whitespace: keep the text, locate its start
                local = page.text.find(piece[:40], cursor)
                local = max(local, 0)
            else:
                cursor = local + 1
            start = page.offset + local
            index = len(chunks)
            chunks.append(
                Chunk(
                    id=chunk_id(document_id, piece, index, id_key),
                    document_id=document_id,
                    index=index,
                    text=piece,
                    page=page.number,
                    start=start,
                    end=start + len(piece),
                )
            )
    return chunks


def text_between(chunks: Sequence[Chunk | ChunkHit], start: int, end: int) -> tuple[str, int]:
    """Characters ``[start, end)`` of a document's extracted text, put back together from
    its chunks (what the store keeps of it); returns (text, end), ``end`` clipped to the last
    character a chunk covers.

    Chunks overlap and keep the text exactly at their offsets; what no chunk covers is the
    whitespace the splitter dropped between them: a line break where the page changes (the
    page separator), else a space.
    """
    pieces: list[str] = []
    cursor, last_page = start, None
    for c in sorted(chunks, key=lambda c: c.start):
        lo, hi = max(c.start, cursor), min(c.end, end)
        if hi <= lo:
            continue
        if lo > cursor:
            gap = "\n" if last_page is not None and last_page != c.page else " "
            pieces.append(gap * (lo - cursor))
        # a chunk whose whitespace the splitter changed can be a little shorter than its span
        pieces.append(c.text[lo - c.start:hi - c.start].ljust(hi - lo))
        cursor, last_page = hi, c.page
    return "".join(pieces), max(cursor, start)
