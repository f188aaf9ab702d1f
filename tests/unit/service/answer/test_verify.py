"""Verification of a generated draft against the cited evidence (hand-made cases)."""

import pytest

from core.domain import ChunkHit
from service.answer import Evidence
from service.answer.verify import verify


def ev(n: int, text: str) -> Evidence:
    hit = ChunkHit(f"c{n}", f"d{n}", f"f{n}.txt", text, 1, 0, len(text), 0.9)
    return Evidence(n, hit, text, 0, len(text), 0.9)


EVIDENCE = [ev(1, "The Acme plant opened in 2014 and employs 10 engineers."),
            ev(2, "The canteen serves lunch at noon.")]


@pytest.mark.parametrize("draft", ["2015 [1]", "It employs 11 engineers [1]"])
def test_number_swaps_are_rejected(draft: str) -> None:
    """Pins the observed SmolLM2 failure: 2014 → 2015 and 10 → 11 with the passage in the prompt."""
    assert not verify(draft, EVIDENCE, "When did the Acme plant open?").supported


def test_supported_draft_keeps_its_citation() -> None:
    v = verify("2014 [1]", EVIDENCE, "When did the Acme plant open?")
    assert v.supported and v.cited == [1] and v.answer == "2014"


def test_number_must_be_in_the_cited_passage_not_elsewhere() -> None:
    assert not verify("2014 [2]", EVIDENCE, "When did the Acme plant open?").supported


def test_invented_words_are_rejected_and_declines_detected() -> None:
    assert not verify("A research laboratory for quantum phonons [1]", EVIDENCE, "What is Acme?").supported
    assert verify("NOT FOUND", EVIDENCE, "q").reason == "declined"


def test_off_question_citation_is_rejected() -> None:
    assert not verify("lunch at noon [2]", EVIDENCE, "When did the Acme plant open?").supported
