"""How a chunk's evidence units and their vectors are stored in its metadata.

Written at ingest (``ingest/units.py`` splits, ``ingest/sentences.py`` embeds) and read back
when an answer scores the units of the retrieved chunks (:attr:`core.domain.ChunkHit.units`):
spans as JSON, vectors as base64 int8 with one float32 scale per vector (``Q8_KEY``: 388
bytes per unit for MiniLM), and, when any unit is a list item or a table row or has a
context, one JSON object per unit (``UNITS_KEY``: ``{}`` for a plain sentence, else ``k``
kind, ``s`` section path, ``l`` lead-in, ``h`` table header).

Why int8: Chroma keeps every string of a chunk's metadata twice in ``chroma.sqlite3`` (the
row and its index on string values), and the erasure job's VACUUM of that file grows with
its size (docs/erasure.md). float16 took 768 bytes per unit, 9.2 KB of base64 for a chunk
of nine units; int8 with a per-vector scale takes half, and a unit vector's cosine with
its float16 form stays above 0.999 (measured on MiniLM vectors: tests/unit/core).

Chunks stored before hold float16 vectors under ``VECTORS_KEY`` (and, before units
existed, sentence spans only): they still decode, their units as plain sentences.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence

import numpy as np

from core.units import Unit, UnitContext, UnitKind

SPANS_KEY = "sent_spans"
VECTORS_KEY = "sent_vecs"  # float16, as chunks stored before int8 hold them: read only
Q8_KEY = "sent_q8"
UNITS_KEY = "sent_units"
KEYS = (SPANS_KEY, VECTORS_KEY, Q8_KEY, UNITS_KEY)


def pack(spans: Sequence[tuple[int, int]], vectors: Sequence[Sequence[float]],
         units: Sequence[Unit] | None = None) -> dict[str, str]:
    """Chunk metadata holding the spans, their vectors and (``units``, parallel to ``spans``)
    what the units are; plain sentences without context add nothing beyond spans and vectors."""
    meta = {SPANS_KEY: json.dumps([list(s) for s in spans]),
            Q8_KEY: base64.b64encode(encode_q8(vectors)).decode("ascii")}
    if units is not None and any(u.kind is not UnitKind.SENTENCE or u.context for u in units):
        meta[UNITS_KEY] = json.dumps([_describe(u) for u in units], ensure_ascii=False,
                                     separators=(",", ":"))
    return meta


def encode_q8(vectors: Sequence[Sequence[float]]) -> bytes:
    """n float32 scales (little-endian), then n rows of int8: row i times scale i is vector
    i, each component within half a step (its largest component / 254) of the original."""
    arr = np.asarray(vectors, dtype=np.float32).reshape(len(vectors), -1)
    peak = np.abs(arr).max(axis=1) if arr.size else np.zeros(len(arr), np.float32)
    scale = np.where(peak > 0, peak / 127.0, 1.0).astype("<f4")
    q = np.clip(np.rint(arr / scale[:, None]), -127, 127).astype(np.int8)
    return bytes(scale.tobytes()) + bytes(q.tobytes())


def decode_q8(blob: bytes, n: int) -> np.ndarray | None:
    """The n vectors of :func:`encode_q8` as float32, or None when the sizes do not fit."""
    rest = len(blob) - 4 * n
    if n <= 0 or rest <= 0 or rest % n:
        return None
    scale = np.frombuffer(blob[:4 * n], dtype="<f4")
    q = np.frombuffer(blob[4 * n:], dtype=np.int8).reshape(n, -1)
    return q.astype(np.float32) * scale[:, None]  # type: ignore[no-any-return]


def unpack(meta: dict[str, object]) -> tuple[list[tuple[int, int]], list[list[float]]] | None:
    """The spans and vectors stored by :func:`pack` (int8) or by the float16 format of
    before, or None when absent or damaged."""
    raw_spans = meta.get(SPANS_KEY)
    raw_q8, raw_f16 = meta.get(Q8_KEY), meta.get(VECTORS_KEY)
    if not isinstance(raw_spans, str):
        return None
    try:
        spans = [(int(s), int(e)) for s, e in json.loads(raw_spans)]
        if not spans:
            return None
        if isinstance(raw_q8, str):
            vecs = decode_q8(base64.b64decode(raw_q8, validate=True), len(spans))
        elif isinstance(raw_f16, str):
            flat = np.frombuffer(base64.b64decode(raw_f16), dtype=np.float16)
            vecs = flat.reshape(len(spans), -1).astype(np.float32) if (
                flat.size and flat.size % len(spans) == 0) else None
        else:
            return None
    except (ValueError, TypeError):
        return None
    return (spans, vecs.tolist()) if vecs is not None else None


def unpack_units(meta: dict[str, object]) -> tuple[list[Unit], list[list[float]]] | None:
    """The units stored by :func:`pack` and their vectors, or None when absent or damaged.
    Spans without (readable) unit descriptions, as older chunks hold, are plain sentences."""
    decoded = unpack(meta)
    if decoded is None:
        return None
    spans, vectors = decoded
    described = _read_descriptions(meta.get(UNITS_KEY), len(spans))
    units = [Unit(s, e) if d is None else _unit(s, e, d)
             for (s, e), d in zip(spans, described, strict=True)]
    return units, vectors


def _describe(unit: Unit) -> dict[str, object]:
    d: dict[str, object] = {}
    if unit.kind is not UnitKind.SENTENCE:
        d["k"] = unit.kind.value
    ctx = unit.context
    if ctx.section:
        d["s"] = list(ctx.section)
    if ctx.lead_in:
        d["l"] = ctx.lead_in
    if ctx.header:
        d["h"] = ctx.header
    return d


def _read_descriptions(raw: object, n: int) -> list[dict[str, object] | None]:
    """One description per span; all None when there are none or they do not fit."""
    if not isinstance(raw, str):
        return [None] * n
    try:
        items = json.loads(raw)
    except ValueError:
        return [None] * n
    if not isinstance(items, list) or len(items) != n or not all(
            isinstance(d, dict) for d in items):
        return [None] * n
    return items


def _unit(start: int, end: int, d: dict[str, object]) -> Unit:
    kind = d.get("k", UnitKind.SENTENCE.value)
    section = d.get("s", [])
    lead_in, header = d.get("l", ""), d.get("h", "")
    try:
        unit_kind = UnitKind(str(kind))
    except ValueError:
        unit_kind = UnitKind.SENTENCE
    return Unit(start, end, unit_kind, UnitContext(
        section=tuple(str(x) for x in section) if isinstance(section, list) else (),
        lead_in=lead_in if isinstance(lead_in, str) else "",
        header=header if isinstance(header, str) else ""))
