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


def test_bm25_statistics_are_per_tenant(tmp_path: Path) -> None:
    idx = KeywordIndex(tmp_path / "kw.sqlite3")
    idx.replace_chunks("t_a", [("a1", "d1", "Quarterly budget review for the paper mill."),
                               ("a2", "d2", "Budget meeting moved to Friday.")])
    before = idx.search("t_a", "budget paper", 5)
    # another tenant floods the index with the same words: tenant A's scores do not move
    idx.replace_chunks("t_b", [(f"b{i}", f"e{i}", "paper paper budget") for i in range(50)])
    assert idx.search("t_a", "budget paper", 5) == before
    assert len(idx.search("t_b", "budget", 100)) == 50


def test_an_index_from_the_shared_table_era_is_dropped_for_a_rebuild(tmp_path: Path) -> None:
    import sqlite3

    path = tmp_path / "kw.sqlite3"
    db = sqlite3.connect(path)
    db.execute("CREATE VIRTUAL TABLE chunk_text USING fts5(text, collection UNINDEXED, "
               "document_id UNINDEXED, chunk_id UNINDEXED)")
    db.execute("INSERT INTO chunk_text VALUES ('old text', 't_a', 'd1', 'c1')")
    db.commit()
    db.close()
    idx = KeywordIndex(path)
    assert idx.existed is False  # the API rebuilds it from Chroma
    assert idx.search("t_a", "old text", 5) == [] and idx.count("t_a") == 0
    assert KeywordIndex(path).existed is False  # until a rebuild says it is complete
    idx.mark_complete()
    assert KeywordIndex(path).existed is True


def test_an_index_of_plain_text_or_another_term_key_is_dropped_for_a_rebuild(
        tmp_path: Path) -> None:
    import sqlite3

    path = tmp_path / "kw.sqlite3"
    # the previous format: per-tenant FTS5 tables holding the chunk text itself
    db = sqlite3.connect(path)
    db.executescript("""
        CREATE TABLE kw_chunks (rowid INTEGER PRIMARY KEY, collection TEXT NOT NULL,
            chunk_id TEXT NOT NULL, document_id TEXT NOT NULL, UNIQUE (collection, chunk_id));
        CREATE TABLE kw_tables (collection TEXT PRIMARY KEY, fts TEXT NOT NULL);
        CREATE VIRTUAL TABLE fts_0123456789abcdef01234567 USING fts5(text);
        INSERT INTO kw_tables VALUES ('t_a', 'fts_0123456789abcdef01234567');
        INSERT INTO kw_chunks VALUES (1, 't_a', 'c1', 'd1');
        INSERT INTO fts_0123456789abcdef01234567 (rowid, text) VALUES (1, 'plain words');
    """)
    db.close()
    idx = KeywordIndex(path, term_key=b"k" * 32)
    assert idx.existed is False and idx.count("t_a") == 0
    idx.replace_chunks("t_a", [("c2", "d2", "Budget approved")])
    idx.mark_complete()
    assert KeywordIndex(path, term_key=b"k" * 32).existed is True
    other = KeywordIndex(path, term_key=b"x" * 32)  # another master key: hashes differ
    assert other.existed is False and other.count("t_a") == 0


def test_hashed_terms_rank_like_plain_terms_and_no_word_reaches_the_file(
        tmp_path: Path) -> None:
    rows = [("c1", "d1", "The Kestrel budget was approved by the board in March."),
            ("c2", "d2", "Budgets, budgeting and budgeted amounts: the budget office."),
            ("c3", "d3", "Crème brûlée recipes from the cafétéria."),
            ("c4", "d4", "Nothing relevant here at all.")]
    plain = KeywordIndex(tmp_path / "plain.sqlite3")
    hashed = KeywordIndex(tmp_path / "hashed.sqlite3", term_key=b"secret-term-key!" * 2)
    for idx in (plain, hashed):
        idx.replace_chunks("t_a", rows)
    for q in ("budget", "approved budgets", "creme brulee", "KESTREL board", "cafeteria"):
        assert hashed.search("t_a", q, 10) == plain.search("t_a", q, 10), q
    assert [h[0] for h in hashed.search("t_a", "budgeting", 10)][:1] == ["c2"]
    hashed.delete_document("t_a", "d1")
    from ingest.erasure import scrub_keywords

    scrub_keywords(hashed.path, "t_a")
    raw = b"".join(p.read_bytes() for p in tmp_path.glob("hashed.sqlite3*"))
    for word in (b"kestrel", b"budget", b"board", b"approv", b"recip", b"brul", b"creme"):
        assert word not in raw.lower(), word
    assert b"kestrel" in b"".join(p.read_bytes() for p in tmp_path.glob("plain.sqlite3*"))


def test_many_replacements_keep_one_row_per_chunk(index: KeywordIndex) -> None:
    for i in range(5):
        index.replace_chunks("t_a", [("c1", "d1", f"Invoice version {i} of INV-2291.")])
    assert index.count("t_a") == 3
    assert [h[0] for h in index.search("t_a", "INV-2291", 10)] == ["c1"]
    assert index.search("t_a", "version", 10)[0][0] == "c1"


def test_a_hashed_index_is_never_dropped_by_an_open_without_the_key(tmp_path: Path) -> None:
    path = tmp_path / "kw.sqlite3"
    KeywordIndex(path, term_key=b"k" * 32).replace_chunks("t_a", [("c1", "d1", "Budget")])
    with pytest.raises(ValueError, match="hashed terms"):
        KeywordIndex(path)
    assert KeywordIndex(path, term_key=b"k" * 32).count("t_a") == 1
