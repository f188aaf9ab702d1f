"""People's names in PII redaction: spaCy's PERSON entities, kept only when they look like a
name, with the same placeholder rules as the other kinds (ingest/pii.py)."""

from __future__ import annotations

import pytest

from ingest import tagger
from ingest.pii import redact, redact_pages
from ingest.readers import Page

pytestmark = pytest.mark.skipif(tagger.pipeline() is None, reason="the pinned tagger is needed")

TEXT = ("Velmora Pumps GmbH was founded in 1987 in Graz by Ingrid Hofer. Karin Berg runs the "
        "Graz plant. The CFO, Andreas Huber, presented the third quarter of 2024.\n"
        "Garage South costs 120 kronor a month. Ask Zoë Ångström's assistant for a permit.")


def test_names_become_person_placeholders_and_the_rest_is_kept() -> None:
    r = redact(TEXT, names=True)
    for name in ("Ingrid Hofer", "Karin Berg", "Andreas Huber", "Zoë Ångström"):
        assert name not in r.text
    assert r.counts["PERSON"] == 4 and r.text.count("[PERSON]") == 4
    # places, organisations, amounts and periods are not names
    for kept in ("Velmora Pumps GmbH", "in Graz", "Garage South costs 120 kronor",
                 "third quarter of 2024", "1987"):
        assert kept in r.text
    assert "[PERSON]'s assistant" in r.text  # the possessive stays outside the finding


def test_without_names_only_the_pattern_kinds_are_redacted() -> None:
    r = redact(TEXT + " Mail karin.berg@velmora.example.", names=False)
    assert "Karin Berg" in r.text and "[EMAIL]" in r.text and "PERSON" not in r.counts


def test_a_second_redaction_changes_nothing() -> None:
    once = redact(TEXT, names=True)
    twice = redact(once.text, names=True)
    assert twice.text == once.text and twice.counts == {}


def test_a_name_never_swallows_another_finding_or_a_line_break() -> None:
    text = "Contact Karin Berg\nkarin.berg@velmora.example or +43 316 555 0123 (Karin Berg)."
    r = redact(text, names=True)
    assert r.text.count("\n") == 1 and "[EMAIL]" in r.text and "[PHONE]" in r.text
    assert "Karin Berg" not in r.text
    for sp in r.spans:
        assert "\n" not in text[sp.start:sp.end]


def test_pages_keep_offsets_consistent_with_redacted_names() -> None:
    pages = [Page(number=1, text="Signed by Ingrid Hofer.", offset=0),
             Page(number=2, text="Approved by Andreas Huber.", offset=24)]
    out, counts = redact_pages(pages, names=True)
    assert counts == {"PERSON": 2}
    assert out[0].text == "Signed by [PERSON]." and out[1].text == "Approved by [PERSON]."
    assert out[1].offset == 24 + len(out[0].text) - len(pages[0].text)


def test_long_text_is_tagged_in_pieces_without_losing_names() -> None:
    filler = "The pump line runs three shifts a day.\n" * 1500  # twice: over one piece
    r = redact(filler + "Karin Berg signed the report.\n" + filler, names=True)
    assert "Karin Berg" not in r.text and r.counts == {"PERSON": 1}
