"""What the answer engine hands back: draft pieces while a draft is written, then one result.

A question's path keeps one typed carrier per stage: the store's ``ChunkHit`` → the
grounding module's ``Candidate`` (one unit: a sentence, list item or table row, with its
context) → ``Evidence`` (a ranked unit with its document offsets) → :class:`Citation`,
which the HTTP layer turns into its response body.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

from core.domain import ChunkHit
from core.units import UnitContext, UnitKind


@dataclass(frozen=True)
class Citation:
    """The exact span of a document an answer rests on (``chunk_id``: the audit log's)."""

    n: int
    document_id: str
    filename: str
    page: int
    start: int
    end: int
    quote: str
    score: float
    chunk_id: str


@dataclass(frozen=True)
class Evidence:
    """A ranked unit (sentence, list item, table row) of a retrieved chunk; ``start``/``end``
    are document offsets of exactly ``text``; ``context`` (section path, list lead-in,
    table header) is not part of the quote."""

    n: int
    hit: ChunkHit
    text: str
    start: int
    end: int
    score: float
    kind: UnitKind = UnitKind.SENTENCE
    context: UnitContext = field(default_factory=UnitContext)

    def citation(self, n: int) -> Citation:
        return Citation(n=n, document_id=self.hit.document_id, filename=self.hit.filename,
                        page=self.hit.page, start=self.start, end=self.end, quote=self.text,
                        score=self.score, chunk_id=self.hit.chunk_id)


@dataclass(frozen=True)
class DraftToken:
    """A piece of the generator's draft, streamed as it is written: not verified yet (the
    final :class:`AnswerResult` is authoritative and may say something else)."""

    text: str


AnswerStatus = Literal["answered", "not_found"]


@dataclass
class AnswerResult:
    status: AnswerStatus
    answer: str
    citations: list[Citation]
    timings: dict[str, float] = field(default_factory=dict)
    trace: dict[str, Any] = field(default_factory=dict)  # diagnostics, not part of the API


AnswerEvent = DraftToken | AnswerResult


def final_result(events: Iterable[AnswerEvent]) -> AnswerResult:
    """The result that ends an answer's event stream (draft pieces are dropped)."""
    for event in events:
        if isinstance(event, AnswerResult):
            return event
    raise RuntimeError("the answer pipeline ended without a result")
