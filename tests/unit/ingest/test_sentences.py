"""Sentence spans and vectors computed for each chunk at ingest (no I/O)."""

from ingest.sentences import split_sentences


def test_sentences_do_not_break_on_single_newlines() -> None:
    text = "The outage began on a Sunday\nnight. Root cause was a pump.\n\nNew para"
    spans = [text[s:e] for s, e in split_sentences(text)]
    assert spans == ["The outage began on a Sunday\nnight.", "Root cause was a pump.", "New para"]
