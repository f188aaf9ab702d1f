"""Sentence spans of a chunk and their vectors, computed once at ingest.

The answer pipeline scores every sentence of the retrieved chunks against the question.
Embedding ~50 sentences per question took ~0.7 s of CPU on 2 cores (measured), so the
worker embeds each chunk's sentences when it embeds the chunk and stores them in the
chunk's metadata: spans as JSON, vectors as base64 float16 (768 bytes per sentence for
MiniLM). Deleting a chunk deletes them with it.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Sequence

import numpy as np

# Sentence ends: punctuation then a capital/digit, or a blank line. A single newline is
# not a boundary (PDF extraction breaks lines mid-sentence).
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(\[])|\n\s*\n|(?<=[.!?;:])\n")

SPANS_KEY = "sent_spans"
VECTORS_KEY = "sent_vecs"


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


def pack(spans: Sequence[tuple[int, int]], vectors: Sequence[Sequence[float]]) -> dict[str, str]:
    """Chunk metadata holding the sentence spans and their vectors."""
    arr = np.asarray(vectors, dtype=np.float16)
    return {SPANS_KEY: json.dumps([list(s) for s in spans]),
            VECTORS_KEY: base64.b64encode(arr.tobytes()).decode("ascii")}


def unpack(meta: dict[str, object]) -> tuple[list[tuple[int, int]], list[list[float]]] | None:
    """The spans and vectors stored by :func:`pack`, or None when absent or damaged."""
    raw_spans, raw_vecs = meta.get(SPANS_KEY), meta.get(VECTORS_KEY)
    if not isinstance(raw_spans, str) or not isinstance(raw_vecs, str):
        return None
    try:
        spans = [(int(s), int(e)) for s, e in json.loads(raw_spans)]
        flat = np.frombuffer(base64.b64decode(raw_vecs), dtype=np.float16)
    except (ValueError, TypeError):
        return None
    if not spans or flat.size % len(spans):
        return None
    return spans, flat.reshape(len(spans), -1).astype(np.float32).tolist()


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
