"""Evidence units: what an answer scores, quotes and cites (a sentence, a list item or a
table row), with the context it stands in.

Split at ingest by ``ingest/units.py``, stored with each chunk by ``core/sentcodec.py``, read
back by the answer engine (``service/answer/grounding.py``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class UnitKind(StrEnum):
    """The kinds of evidence unit that are scored, quoted and cited."""

    SENTENCE = "sentence"
    ITEM = "item"  # a list item
    ROW = "row"  # a table row


@dataclass(slots=True, frozen=True)
class UnitContext:
    """Where a unit stands in its document: never part of its quote.

    ``section``: the path of headings above it; ``lead_in``: the line that introduces its
    list (or, in a nested list, its parent item); ``header``: its table's header cells,
    joined by " | "."""

    section: tuple[str, ...] = ()
    lead_in: str = ""
    header: str = ""

    def __bool__(self) -> bool:
        return bool(self.section or self.lead_in or self.header)

    def describe(self) -> str:
        """One line for people and for matching: "Pricing > Fees · The fee is: · Plan | Fee"."""
        parts = [" > ".join(self.section), self.lead_in, self.header]
        return " · ".join(p for p in parts if p)


@dataclass(slots=True, frozen=True)
class Unit:
    """An evidence unit of a text: a sentence, a list item or a table row.

    ``start``/``end`` index the text it was split from (a chunk's text, once stored) and
    cover exactly what is quoted: never a heading, a list marker or context."""

    start: int
    end: int
    kind: UnitKind = UnitKind.SENTENCE
    context: UnitContext = field(default_factory=UnitContext)

    def embedding_text(self, text: str) -> str:
        """What is embedded for this unit of ``text``: a sentence as it stands (prose is
        embedded exactly as before units existed); a list item or a table row, which
        rarely say what they are about, with their section and lead-in."""
        body = text[self.start:self.end]
        if self.kind is UnitKind.SENTENCE:
            return body
        ctx = self.context
        head = " > ".join(ctx.section)
        lead = f"{ctx.lead_in} {body}" if self.kind is UnitKind.ITEM and ctx.lead_in else body
        return f"{head}: {lead}" if head else lead
