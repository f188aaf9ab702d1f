"""Sentence spans of a chunk and their vectors, computed once at ingest.

The answer pipeline scores every sentence of the retrieved chunks against the question.
Embedding ~50 sentences per question took ~0.7 s of CPU on 2 cores (measured), so the
worker embeds each chunk's sentences when it embeds the chunk and stores them in the
chunk's metadata (encoded by ``core/sentcodec.py``). Deleting a chunk deletes them with it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from core.sentcodec import SPANS_KEY, VECTORS_KEY, pack

# the codec's metadata keys stay importable from here (ingest/store.py reads them here)
__all__ = ["SPANS_KEY", "VECTORS_KEY", "chunk_sentence_metadata", "split_sentences"]

# Sentence ends: punctuation then a capital/digit, or a blank line. A single newline is
# not a boundary (PDF extraction breaks lines mid-sentence).
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


def chunk_sentence_metadata(texts: Sequence[str], embed: object) -> list[dict[str, str]]:
    """Per chunk text: its sentence spans and vectors (one embedding call for all)."""
    spans = [split_sentences(t) for t in texts]
    sentences = [t[s:e] for t, sp in zip(texts, spans, strict=True) for s, e in sp]
    vectors = embed(sentences) if sentences else []  # type: ignore[operator]
    out, k = [], 0
    for sp in spans:
        out.append(pack(sp, vectors[k:k + len(sp)]) if sp else {})
        k += len(sp)
    return out
