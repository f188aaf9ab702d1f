"""``docqa ask`` and ``docqa search`` against a fake API: the text and JSON outputs,
``--filter``/``--top-k``/``--mode`` as the API's request, and ``--stream``."""

from __future__ import annotations

import json

import pytest

from service.cli.common import parse_filters
from tests.unit.service.cli.conftest import ANSWER, FakeAPI, run


def test_ask_prints_the_answer_and_its_citations(api: FakeAPI) -> None:
    result = run("ask", "Where is the stapler?")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [
        "The stapler is in room 9 [1]",
        '  [1] note.md p.1 (0-30): "Milton keeps it in room 9."']
    assert api.bodies == [{"question": "Where is the stapler?"}]


def test_ask_json_is_the_apis_json(api: FakeAPI) -> None:
    result = run("ask", "Where is the stapler?", "--json")
    assert result.exit_code == 0 and json.loads(result.stdout) == ANSWER


def test_not_found_is_an_answer(api: FakeAPI) -> None:
    api.answer = {"status": "not_found", "answer": "", "citations": [], "timings": {}}
    result = run("ask", "What is the airspeed of a swallow?")
    assert result.exit_code == 0 and result.stdout == "Not found in your documents.\n"


def test_filters_and_top_k_become_the_request(api: FakeAPI) -> None:
    result = run("ask", "q", "--top-k", "5", "--filter", "filename=*.pdf", "--filter", "id=d1",
                 "--filter", "id=d2", "--filter", "team=legal", "--filter", "year:=2024",
                 "--filter", "uploaded_after=2025-01-01", "--filter", "meta.filename=x")
    assert result.exit_code == 0, result.output
    assert api.bodies == [{"question": "q", "top_k": 5, "filters": {
        "filename": "*.pdf", "document_ids": ["d1", "d2"], "uploaded_after": "2025-01-01",
        "metadata": {"team": "legal", "year": 2024, "filename": "x"}}}]


def test_out_of_range_options_are_usage_errors(api: FakeAPI) -> None:
    assert run("ask", "q", "--top-k", "51").exit_code == 2
    assert run("search", "q", "--top-k", "0").exit_code == 2
    assert run("search", "q", "--mode", "fuzzy").exit_code == 2
    assert run("ask", "q", "--filter", "novalue").exit_code == 2
    assert api.requests == []


def test_parse_filters_keeps_values_as_strings_unless_json() -> None:
    assert parse_filters(("v=1.10", "n:=1.5", "ok:=true", "eq=a=b")) == {
        "metadata": {"v": "1.10", "n": 1.5, "ok": True, "eq": "a=b"}}
    assert parse_filters(()) == {}


def test_ask_stream_prints_tokens_then_citations(api: FakeAPI) -> None:
    result = run("ask", "Where is the stapler?", "--stream")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [
        "The stapler is in room 9 [1] ",
        '  [1] note.md p.1 (0-30): "Milton keeps it in room 9."']
    assert api.bodies == [{"question": "Where is the stapler?", "stream": True}]
    assert result.stderr == ""


def test_ask_stream_shows_the_verified_answer_when_the_draft_was_not_kept(api: FakeAPI) -> None:
    api.tokens = ["Room ", "12, ", "probably."]
    result = run("ask", "Where is the stapler?", "--stream")
    assert result.exit_code == 0
    assert result.stdout.splitlines()[:2] == ["Room 12, probably.",
                                              "The stapler is in room 9 [1]"]
    assert "not kept" in result.stderr


@pytest.mark.parametrize("tokens", [["Maybe ", "room 12."], []])
def test_ask_stream_not_found(api: FakeAPI, tokens: list[str]) -> None:
    api.answer = {"status": "not_found", "answer": "", "citations": [], "timings": {}}
    api.tokens = tokens
    result = run("ask", "q", "--stream")
    assert result.exit_code == 0
    assert result.stdout.splitlines()[-1] == "Not found in your documents."


def test_ask_stream_json_is_one_line_per_event(api: FakeAPI) -> None:
    result = run("ask", "q", "--stream", "--json")
    events = [json.loads(line) for line in result.stdout.splitlines()]
    assert [e["event"] for e in events] == ["token"] * 7 + ["final"]
    assert events[-1]["data"] == ANSWER


def test_search_text_and_json(api: FakeAPI) -> None:
    text = run("search", "stapler", "--top-k", "3", "--mode", "keyword", "--filter", "team=x")
    assert text.exit_code == 0
    assert text.stdout.splitlines() == ["  1. 0.610  note.md p.2  (doc-01)",
                                        "     Milton keeps the stapler."]
    as_json = run("search", "stapler", "--json")
    assert json.loads(as_json.stdout)["results"][0]["chunk_id"] == "c1"
    assert api.bodies == [{"query": "stapler", "top_k": 3, "mode": "keyword",
                           "filters": {"metadata": {"team": "x"}}}, {"query": "stapler"}]
