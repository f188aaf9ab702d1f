"""How a chunk's sentence spans and their vectors are stored in its metadata.

Written at ingest (``ingest/sentences.py`` splits and embeds) and read back when an answer
scores the sentences of the retrieved chunks (:attr:`core.domain.ChunkHit.sentences`):
spans as JSON, vectors as base64 float16 (768 bytes per sentence for MiniLM).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence

import numpy as np

SPANS_KEY = "sent_spans"
VECTORS_KEY = "sent_vecs"


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
