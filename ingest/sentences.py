"""Sentence spans of a text, and the evidence units of a chunk with their vectors, computed
once at ingest.

The answer pipeline scores every unit (sentence, list item, table row: ``ingest/units.py``)
of the retrieved chunks against the question. Embedding ~50 sentences per question took
~0.7 s of CPU on 2 cores (measured), so the worker embeds each chunk's units when it embeds
the chunk and stores them, with their kinds and context, in the chunk's metadata (encoded by
``core/sentcodec.py``). Deleting a chunk deletes them with it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from core.sentcodec import KEYS, SPANS_KEY, UNITS_KEY, VECTORS_KEY, pack
from core.units import Unit

# the codec's metadata keys stay importable from here (ingest/store.py reads them here)
__all__ = ["KEYS", "SPANS_KEY", "UNITS_KEY", "VECTORS_KEY", "chunk_sentence_metadata",
           "split_sentences"]

# Sentence ends: punctuation then a capital/digit, or a blank line. A single newline is
# not a boundary (PDF extraction breaks lines mid-sentence): list items, table rows and
# headings, each on a line of its own, are cut apart before this runs (ingest/units.py).
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(\[])|\n\s*\n|(?<=[.!?;:])\n")


def split_sentences(text: str) -> list[tuple[int, int]]:
    """Character spans of the sentences of ``text`` (whitespace trimmed)."""
    spans, pos = [], 0
    for m in _SENTENCE_END.finditer(text):
        spans.append((pos, m.start()))
        pos = m.end()
    spans.append((pos, len(text)))
    out = []
    for s, e in spans:
        while s < e and text[s].isspace():
            s += 1
        while e > s and text[e - 1].isspace():
            e -= 1
        if e - s >= 3:
            out.append((s, e))
    return out


def chunk_sentence_metadata(texts: Sequence[str], embed: object,
                            units: Sequence[Sequence[Unit]] | None = None
                            ) -> list[dict[str, str]]:
    """Per chunk text: its units' spans, vectors and descriptions (one embedding call for
    all). ``units[i]``: chunk i's units (``ingest.units.chunk_units``); without them, each
    text's sentences. A unit is embedded with its context where it needs it
    (:meth:`core.domain.Unit.embedding_text`)."""
    per_text = [list(u) for u in units] if units is not None else [
        [Unit(s, e) for s, e in split_sentences(t)] for t in texts]
    inputs = [u.embedding_text(t) for t, us in zip(texts, per_text, strict=True) for u in us]
    # a sentence in the overlap of two chunks is the same input twice (2% of the SQuAD
    # paragraphs' units, 5% of SciFact's): embedded once
    row = {text: i for i, text in enumerate(dict.fromkeys(inputs))}
    embedded = embed(list(row)) if row else []  # type: ignore[operator]
    vectors = [embedded[row[text]] for text in inputs]
    out, k = [], 0
    for us in per_text:
        out.append(pack([(u.start, u.end) for u in us], vectors[k:k + len(us)], us) if us else {})
        k += len(us)
    return out
