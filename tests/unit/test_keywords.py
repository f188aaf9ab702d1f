"""The FTS5 keyword index: BM25 order, per-collection isolation, replace/delete, safe queries."""

from pathlib import Path

import pytest

from ingest.keywords import KeywordIndex, match_expression


@pytest.fixture
def index(tmp_path: Path) -> KeywordIndex:
    idx = KeywordIndex(tmp_path / "kw.sqlite3")
    idx.replace_chunks("t_a", [
        ("c1", "d1", "Invoice INV-2291 from Nordic Paper AB is overdue."),
        ("c2", "d1", "The canteen serves lunch at noon."),
        ("c3", "d2", "Nordic Paper delivers paper every Monday."),
    ])
    idx.replace_chunks("t_b", [("c9", "d9", "Invoice INV-2291 belongs to tenant B.")])
    return idx


def test_bm25_ranks_the_rare_code_first_and_stays_in_its_collection(index: KeywordIndex) -> None:
    hits = index.search("t_a", "Which invoice is INV-2291?", 10)
    assert hits[0][:2] == ("c1", "d1") and hits[0][2] > 0
    assert "c9" not in {h[0] for h in hits}
    assert [h[0] for h in index.search("t_b", "INV-2291", 10)] == ["c9"]


def test_replace_and_delete_keep_the_index_in_step(index: KeywordIndex) -> None:
    index.replace_chunks("t_a", [("c2", "d1", "The canteen now serves dinner.")])
    assert index.count("t_a") == 3
    assert index.search("t_a", "lunch", 5) == []
    index.delete_document("t_a", "d1", keep=["c2"])
    assert {h[0] for h in index.search("t_a", "invoice canteen paper", 10)} == {"c2", "c3"}
    index.delete_document("t_a", "d1")
    assert index.count("t_a") == 1 and index.count("t_b") == 1


def test_document_filter_narrows(index: KeywordIndex) -> None:
    assert {h[0] for h in index.search("t_a", "Nordic Paper", 10, ["d2"])} == {"c3"}
    assert index.search("t_a", "Nordic Paper", 10, []) == []


@pytest.mark.parametrize("text", ['"', "NEAR(a b)", "a OR", "-x*", "col:val", "^", "AND", ""])
def test_user_text_is_never_fts_syntax(index: KeywordIndex, text: str) -> None:
    index.search("t_a", text, 5)  # must not raise


def test_match_expression_quotes_words_and_drops_stopwords() -> None:
    assert match_expression('What is "INV-2291"?') == '"inv" OR "2291"'
    assert match_expression("the of and") == ""
