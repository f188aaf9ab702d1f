"""How a chunk's evidence units and their vectors are stored in its metadata.

Written at ingest (``ingest/units.py`` splits, ``ingest/sentences.py`` embeds) and read back
when an answer scores the units of the retrieved chunks (:attr:`core.domain.ChunkHit.units`):
spans as JSON, vectors as base64 float16 (768 bytes per unit for MiniLM), and, when any
unit is a list item or a table row or has a context, one JSON object per unit (``UNITS_KEY``:
``{}`` for a plain sentence, else ``k`` kind, ``s`` section path, ``l`` lead-in, ``h`` table
header).

The first two keys are the ones chunks stored before units existed hold, with sentence
spans in them: such chunks still decode, their units as plain sentences. A reader that
knows only those two keys reads new chunks as sentences.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence

import numpy as np

from core.units import Unit, UnitContext, UnitKind

SPANS_KEY = "sent_spans"
VECTORS_KEY = "sent_vecs"
UNITS_KEY = "sent_units"
KEYS = (SPANS_KEY, VECTORS_KEY, UNITS_KEY)


def pack(spans: Sequence[tuple[int, int]], vectors: Sequence[Sequence[float]],
         units: Sequence[Unit] | None = None) -> dict[str, str]:
    """Chunk metadata holding the spans, their vectors and (``units``, parallel to ``spans``)
    what the units are; plain sentences without context add nothing to the old format."""
    arr = np.asarray(vectors, dtype=np.float16)
    meta = {SPANS_KEY: json.dumps([list(s) for s in spans]),
            VECTORS_KEY: base64.b64encode(arr.tobytes()).decode("ascii")}
    if units is not None and any(u.kind is not UnitKind.SENTENCE or u.context for u in units):
        meta[UNITS_KEY] = json.dumps([_describe(u) for u in units], ensure_ascii=False,
                                     separators=(",", ":"))
    return meta


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
