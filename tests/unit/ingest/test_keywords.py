"""The keyword index on both engines, SQLite FTS5 (embedded) and PostgreSQL (shared): BM25
order, per-tenant isolation and statistics, replace/delete, safe queries, term hashing, the
rebuild from Chroma. Engine-specific tests follow the shared ones.

The PostgreSQL variants use the session database of ``tests/unit/conftest.py`` (created and
dropped by the tests) and a fresh schema per test; they fail, with the reason, when
PostgreSQL is unreachable, as the registry's do."""

from __future__ import annotations

import random
import secrets
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest
from psycopg import conninfo, sql

from ingest import keywords
from ingest.keywords import (
    KeywordIndex,
    KeywordStore,
    _averages,
    _doc_freqs,
    fts_table,
    match_expression,
)
from ingest.pgkeywords import PostgresKeywordIndex, tsquery_text, tsvector_text
from ingest.store import collection_name
from tests.local_chroma import LocalChromaStore
from tests.unit.conftest import doc_chunks, random_vectors

MakeIndex = Callable[..., KeywordStore]  # (term_key=None) -> another handle on one index

HOSTILE = ['"', "NEAR(a b)", "a OR", "-x*", "col:val", "^", "AND", "", "'", "\\", "a & b",
           "!x | y", "a <-> b", "x:*", "'; DROP TABLE keyword_chunks; --", "%s %(c)s",
           "kw_chunks) --", "\x00", "' OR collection <> '", "NOT", "(((", "a:*A & !b"]


@pytest.fixture(params=["fts5", "postgres"])
def engine(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def make_index(engine: str, tmp_path: Path, request: pytest.FixtureRequest
               ) -> Iterator[MakeIndex]:
    """Opens the one index of this test (a file, or a schema of the session database) as
    another process would; ``term_key`` as ``ingest.store.open_store`` passes it."""
    made: list[KeywordStore] = []
    dsn = request.getfixturevalue("pg_dsn") if engine == "postgres" else ""

    def make(term_key: bytes | None = None) -> KeywordStore:
        idx: KeywordStore = (PostgresKeywordIndex(dsn, term_key) if dsn else
                             KeywordIndex(tmp_path / "kw.sqlite3", term_key))
        made.append(idx)
        return idx

    yield make
    for idx in made:
        if isinstance(idx, PostgresKeywordIndex):
            idx.close()


@pytest.fixture
def index(make_index: MakeIndex) -> KeywordStore:
    idx = make_index()
    idx.replace_chunks("t_a", [
        ("c1", "d1", "Invoice INV-2291 from Nordic Paper AB is overdue."),
        ("c2", "d1", "The canteen serves lunch at noon."),
        ("c3", "d2", "Nordic Paper delivers paper every Monday."),
    ])
    idx.replace_chunks("t_b", [("c9", "d9", "Invoice INV-2291 belongs to tenant B.")])
    return idx


# ---------------------------------------------------------------- both engines


def test_bm25_ranks_the_rare_code_first_and_stays_in_its_collection(index: KeywordStore) -> None:
    hits = index.search("t_a", "Which invoice is INV-2291?", 10)
    assert hits[0][:2] == ("c1", "d1") and hits[0][2] > 0
    assert "c9" not in {h[0] for h in hits}
    assert [h[0] for h in index.search("t_b", "INV-2291", 10)] == ["c9"]
    assert index.search("t_c", "INV-2291", 10) == [] and index.count("t_c") == 0


def test_replace_and_delete_keep_the_index_in_step(index: KeywordStore) -> None:
    index.replace_chunks("t_a", [("c2", "d1", "The canteen now serves dinner.")])
    assert index.count("t_a") == 3
    assert index.search("t_a", "lunch", 5) == []
    index.delete_document("t_a", "d1", keep=["c2"])
    assert {h[0] for h in index.search("t_a", "invoice canteen paper", 10)} == {"c2", "c3"}
    index.delete_document("t_a", "d1")
    assert index.count("t_a") == 1 and index.count("t_b") == 1
    index.delete_document("t_b", "d2")  # another tenant's document id: nothing of t_a goes
    assert index.count("t_a") == 1


def test_a_tenant_never_deletes_or_replaces_another_tenants_rows(index: KeywordStore) -> None:
    index.delete_document("t_b", "d1")  # t_a's document id, asked in t_b
    assert index.count("t_a") == 3
    index.replace_chunks("t_b", [("c1", "d1", "tenant B's own chunk c1 about apples")])
    assert [h[0] for h in index.search("t_a", "INV-2291", 5)] == ["c1"]
    assert index.search("t_a", "apples", 5) == []
    assert [h[0] for h in index.search("t_b", "apples", 5)] == ["c1"]


def test_document_filter_narrows(index: KeywordStore) -> None:
    assert {h[0] for h in index.search("t_a", "Nordic Paper", 10, ["d2"])} == {"c3"}
    assert index.search("t_a", "Nordic Paper", 10, []) == []
    assert index.search("t_a", "Nordic Paper", 10, ["d9"]) == []  # t_b's document


@pytest.mark.parametrize("text", HOSTILE)
def test_user_text_is_never_query_or_sql_syntax(index: KeywordStore, text: str) -> None:
    assert index.search("t_a", text, 5) == []  # no word of the chunks: nothing, no error
    assert index.search("t_a", f"{text} invoice", 5)[0][0] == "c1"
    assert index.count("t_a") == 3 and index.count("t_b") == 1  # nothing dropped


def test_bm25_statistics_are_per_tenant(make_index: MakeIndex) -> None:
    idx = make_index()
    idx.replace_chunks("t_a", [("a1", "d1", "Quarterly budget review for the paper mill."),
                               ("a2", "d2", "Budget meeting moved to Friday.")])
    before = idx.search("t_a", "budget paper", 5)
    # another tenant floods the index with the same words: tenant A's scores do not move
    idx.replace_chunks("t_b", [(f"b{i}", f"e{i}", "paper paper budget") for i in range(50)])
    assert idx.search("t_a", "budget paper", 5) == before
    assert len(idx.search("t_b", "budget", 100)) == 50


def test_many_replacements_keep_one_row_per_chunk(index: KeywordStore) -> None:
    for i in range(5):
        index.replace_chunks("t_a", [("c1", "d1", f"Invoice version {i} of INV-2291.")])
    assert index.count("t_a") == 3
    assert [h[0] for h in index.search("t_a", "INV-2291", 10)] == ["c1"]
    assert index.search("t_a", "version", 10)[0][0] == "c1"


def test_a_new_index_is_incomplete_until_a_rebuild_marks_it(make_index: MakeIndex) -> None:
    idx = make_index(b"k" * 32)
    assert idx.existed is False  # the API rebuilds it from Chroma
    assert make_index(b"k" * 32).existed is False
    idx.mark_complete()
    assert make_index(b"k" * 32).existed is True


def test_an_index_of_another_term_key_is_dropped_for_a_rebuild(make_index: MakeIndex) -> None:
    idx = make_index(b"k" * 32)
    idx.replace_chunks("t_a", [("c2", "d2", "Budget approved")])
    idx.mark_complete()
    assert make_index(b"k" * 32).existed is True
    other = make_index(b"x" * 32)  # another master key: hashes differ
    assert other.existed is False and other.count("t_a") == 0


def test_a_hashed_index_is_never_dropped_by_an_open_without_the_key(
        make_index: MakeIndex) -> None:
    make_index(b"k" * 32).replace_chunks("t_a", [("c1", "d1", "Budget")])
    with pytest.raises(ValueError, match="hashed terms"):
        make_index().count("t_a")
    assert make_index(b"k" * 32).count("t_a") == 1


ROWS = [("c1", "d1", "The Kestrel budget was approved by the board in March."),
        ("c2", "d2", "Budgets, budgeting and budgeted amounts: the budget office."),
        ("c3", "d3", "Crème brûlée recipes from the cafétéria."),
        ("c4", "d4", "Nothing relevant here at all.")]
QUERIES = ("budget", "approved budgets", "creme brulee", "KESTREL board", "cafeteria")


def test_hashed_terms_rank_like_plain_terms(tmp_path: Path, make_index: MakeIndex) -> None:
    plain = KeywordIndex(tmp_path / "plain.sqlite3")  # the reference: FTS5, plain terms
    hashed = make_index(b"secret-term-key!" * 2)
    for idx in (plain, hashed):
        idx.replace_chunks("t_a", ROWS)
    for q in QUERIES:
        got, want = hashed.search("t_a", q, 10), plain.search("t_a", q, 10)
        assert [h[:2] for h in got] == [h[:2] for h in want], q
        assert [h[2] for h in got] == pytest.approx([h[2] for h in want], rel=1e-9), q
    assert [h[0] for h in hashed.search("t_a", "budgeting", 10)][:1] == ["c2"]


def test_deleted_chunks_leave_no_rows_and_the_scrub_keeps_the_index_working(
        make_index: MakeIndex) -> None:
    kw = make_index(b"t" * 32)
    coll = collection_name("acme")
    kw.replace_chunks(coll, [(f"k{i}", "keep", f"keeper text number {i}") for i in range(50)])
    kw.replace_chunks(coll, [("s0", "secret", "memo zorblaxifunderous")])
    kw.delete_document(coll, "secret")
    assert kw.scrub(coll) is True
    assert kw.search(coll, "zorblaxifunderous", 5) == [] and kw.count(coll) == 50
    assert [r[0] for r in kw.search(coll, "keeper number 7", 1)] == ["k7"]


def test_the_store_writes_the_index_with_chroma_and_rebuilds_it_from_chroma(
        tmp_path: Path, make_index: MakeIndex, engine: str,
        request: pytest.FixtureRequest) -> None:
    store = LocalChromaStore(tmp_path / "chroma", make_index())
    store.upsert("acme", doc_chunks("d1", ["Purchase order PO-77123-KESTREL, 400 chairs.",
                                           "Delivery to the Oslo office."]),
                 random_vectors(2, 1), {"filename": "po.txt"})
    store.upsert("globex", doc_chunks("g1", ["Globex orders PO-77123 too."]),
                 random_vectors(1, 2), {"filename": "g.txt"})
    assert store.keyword_ids("acme", "PO-77123-KESTREL", 5)[:1] == ["d1:0"]
    assert store.keyword_ids("globex", "PO-77123", 5) == ["g1:0"]
    assert store.delete_document("acme", "d1", keep=["d1:1"]) == 1
    assert store.keyword_ids("acme", "PO-77123-KESTREL office", 5) == ["d1:1"]
    # the index lost (a new file, a new schema): rebuilt from Chroma, all tenants
    fresh: KeywordStore
    if engine == "postgres":
        dsn = _new_schema(request.getfixturevalue("pg_database"))
        fresh, reopen = PostgresKeywordIndex(dsn), lambda: PostgresKeywordIndex(dsn)
    else:
        fresh, reopen = (KeywordIndex(tmp_path / "fresh.sqlite3"),
                         lambda: KeywordIndex(tmp_path / "fresh.sqlite3"))
    assert fresh.existed is False
    rebuilt = LocalChromaStore(tmp_path / "chroma", fresh)
    assert rebuilt.rebuild_keywords() == 2
    fresh.mark_complete()
    assert reopen().existed is True
    assert fresh.count(collection_name("acme")) == 1 and fresh.count(collection_name("globex")) == 1
    assert rebuilt.keyword_ids("acme", "Oslo", 5) == ["d1:1"]
    assert rebuilt.keyword_ids("globex", "Oslo", 5) == []


def test_the_erasure_compaction_scrubs_the_engine_the_store_writes(
        tmp_path: Path, make_index: MakeIndex) -> None:
    from ingest.erasure import Eraser

    store = LocalChromaStore(tmp_path / "chroma", make_index())
    store.upsert("acme", doc_chunks("d1", ["memo about lighthouses"]), random_vectors(1, 1), {})
    store.delete_document("acme", "d1")
    eraser = Eraser.__new__(Eraser)
    eraser.store = store
    assert store.compact("acme", "d1")["collections"] == 1
    assert eraser._scrub_keywords(collection_name("acme")) is True
    assert store.keyword_ids("acme", "lighthouses", 5) == []


def test_the_service_keeps_the_index_in_postgresql_when_the_registry_is_there(
        tmp_path: Path) -> None:
    from core.settings import Settings
    from ingest.store import open_keywords

    pg = open_keywords(Settings(data_dir=tmp_path, database_url="postgresql://db/docqa"), None)
    assert isinstance(pg, PostgresKeywordIndex)  # opened lazily: no connection made here
    assert not (tmp_path / "keywords.sqlite3").exists()
    embedded = open_keywords(Settings(data_dir=tmp_path, database_url=None), None)
    assert isinstance(embedded, KeywordIndex) and (tmp_path / "keywords.sqlite3").exists()


def _new_schema(database: str) -> str:
    schema = f"t_{secrets.token_hex(6)}"
    with psycopg.connect(database, autocommit=True) as db:
        db.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    return conninfo.make_conninfo(database, options=f"-csearch_path={schema}")


# ---------------------------------------------------------------- SQLite FTS5 only


def test_match_expression_quotes_words_and_drops_stopwords() -> None:
    assert match_expression('What is "INV-2291"?') == '"inv" OR "2291"'
    assert match_expression("the of and") == ""


def test_an_index_from_the_shared_table_era_is_dropped_for_a_rebuild(tmp_path: Path) -> None:
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


def test_an_index_of_plain_text_is_dropped_for_a_rebuild(tmp_path: Path) -> None:
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


def test_no_word_reaches_the_fts5_file(tmp_path: Path) -> None:
    plain = KeywordIndex(tmp_path / "plain.sqlite3")
    hashed = KeywordIndex(tmp_path / "hashed.sqlite3", term_key=b"secret-term-key!" * 2)
    for idx in (plain, hashed):
        idx.replace_chunks("t_a", ROWS)
    hashed.delete_document("t_a", "d1")
    hashed.scrub("t_a")
    raw = b"".join(p.read_bytes() for p in tmp_path.glob("hashed.sqlite3*"))
    for word in (b"kestrel", b"budget", b"board", b"approv", b"recip", b"brul", b"creme"):
        assert word not in raw.lower(), word
    assert b"kestrel" in b"".join(p.read_bytes() for p in tmp_path.glob("plain.sqlite3*"))


def _fts5_top(idx: KeywordIndex, collection: str, text: str,
              limit: int) -> list[tuple[str, str, float]]:
    """FTS5's own ranking of every match (the query of before pruning): the reference."""
    table = fts_table(collection)
    with idx._connect() as db:
        return [(r[0], r[1], float(r[2])) for r in db.execute(
            f"SELECT k.chunk_id, k.document_id, -t.rank FROM (SELECT rowid, rank FROM {table} "
            f"WHERE {table} MATCH ? ORDER BY rank LIMIT ?) t JOIN kw_chunks k "
            "ON k.rowid = t.rowid ORDER BY t.rank", (match_expression(text, idx.hasher,
                                                                      collection), limit))]


def _zipf_index(path: Path, term_key: bytes | None) -> tuple[KeywordIndex, random.Random]:
    """1,500 chunks of words drawn with Zipf frequencies (a few very common words, many
    rare), lengths 3 to 80, every seventh chunk twice (exactly tied scores)."""
    rng = random.Random(7)
    vocab = [f"w{i}x" for i in range(300)]
    weights = [1 / (i + 1) for i in range(len(vocab))]
    rows = []
    for i in range(1500):
        rows.append((f"c{i}", f"d{i // 3}",
                     " ".join(rng.choices(vocab, weights, k=rng.randint(3, 80)))))
        if i % 7 == 0:
            rows.append((f"c{i}b", f"d{i // 3}", rows[-1][2]))
    idx = KeywordIndex(path, term_key)
    idx.replace_chunks("t_a", rows)
    return idx, rng


def test_the_row_count_token_total_and_document_frequencies_are_fts5s(
        tmp_path: Path) -> None:
    idx, rng = _zipf_index(tmp_path / "kw.sqlite3", b"k" * 32)
    table = fts_table("t_a")
    with idx._connect() as db:
        rows, tokens = db.execute(f"SELECT COUNT(*), SUM(LENGTH(text) - LENGTH(REPLACE("
                                  f"text, ' ', '')) + 1) FROM {table}").fetchone()
        assert _averages(db, table) == (rows, tokens) and rows > 1500
        query = [idx.hasher("t_a", f"w{i}x") for i in (0, 3, 40, 299)] + ["absent"]
        df = _doc_freqs(db, table, query)
        assert df["absent"] == 0 and df[query[0]] > df[query[3]] > 0
        for t in query:
            assert df[t] == db.execute(f"SELECT COUNT(*) FROM {table} WHERE {table} "
                                       "MATCH ?", (f'"{t}"',)).fetchone()[0]


@pytest.mark.parametrize("term_key", [None, b"k" * 32], ids=["plain", "hashed"])
def test_the_pruned_top_k_is_fts5s_exact_ranking(tmp_path: Path, term_key: bytes | None,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(keywords, "PRUNE_MIN_POSTINGS", 0)  # prune however small
    idx, rng = _zipf_index(tmp_path / "kw.sqlite3", term_key)
    vocab = [f"w{i}x" for i in range(300)]
    weights = [1 / (i + 1) for i in range(len(vocab))]
    for n in range(300):
        text = " ".join(rng.choices(vocab, weights, k=rng.randint(2, 9)))
        limit = (1, 5, 10, 30)[n % 4]
        got, exact = idx.search("t_a", text, limit), _fts5_top(idx, "t_a", text, limit)
        assert [h[:2] for h in got] == [h[:2] for h in exact], text
        # the terms' parts added in another order: a score's last bits may differ
        assert [h[2] for h in got] == pytest.approx([h[2] for h in exact], rel=1e-12)
    # most answers above were pruned ones (the fallback: below)
    assert idx.plans["pruned"] >= 150, idx.plans


def test_a_chunk_of_frequent_terms_alone_is_not_pruned_out_of_the_top_k(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """'zeta' is rare and 'alpha' frequent: the chunks holding 'zeta' (three) are ranked
    first, but a short chunk saying only 'alpha' outscores two of them. Returning the best
    of the rare term's chunks without the bound would give z1, z2."""
    monkeypatch.setattr(keywords, "PRUNE_MIN_POSTINGS", 0)
    filler = " ".join(f"f{i}" for i in range(200))
    rows = [("z1", "d1", "zeta"), ("z2", "d2", f"zeta {filler}"), ("z3", "d3", f"zeta {filler}"),
            ("a1", "d4", "alpha " * 20)]
    rows += [(f"a{i}", f"d{i}", f"alpha {filler}") for i in range(5, 45)]
    rows += [(f"o{i}", f"o{i}", "other words here") for i in range(160)]
    idx = KeywordIndex(tmp_path / "kw.sqlite3", b"k" * 32)
    idx.replace_chunks("t_a", rows)
    top2 = idx.search("t_a", "zeta alpha", 2)
    assert [h[0] for h in top2] == ["z1", "a1"] and top2 == _fts5_top(idx, "t_a", "zeta alpha", 2)
    assert idx.plans == {"fallback": 1, "exact": 1}
    top1 = idx.search("t_a", "zeta alpha", 1)  # z1's score beats any chunk left out
    assert [h[0] for h in top1] == ["z1"] and idx.plans["pruned"] == 1
    assert top1[0][2] == pytest.approx(_fts5_top(idx, "t_a", "zeta alpha", 1)[0][2], rel=1e-12)


# ---------------------------------------------------------------- PostgreSQL only


def test_tsvector_and_tsquery_text_quote_every_term() -> None:
    assert tsvector_text(["b", "a", "b"]) == "'b':1,2 'a':1"
    assert tsvector_text(["x"] * 300) == "'x':" + ",".join(str(i) for i in range(1, 257))
    assert tsquery_text(["it's", "a\\b"]) == "'it''s' | 'a\\\\b'"


def test_no_word_reaches_postgresql(pg_dsn: str) -> None:
    hashed = PostgresKeywordIndex(pg_dsn, b"secret-term-key!" * 2)
    hashed.replace_chunks("t_a", ROWS)
    with psycopg.connect(pg_dsn) as db:
        stored = " ".join(str(v) for row in db.execute(
            "SELECT collection, chunk_id, document_id, length, terms::text FROM keyword_chunks")
            for v in row).lower()
    assert "c1" in stored  # the query read the rows
    for word in ("kestrel", "budget", "board", "approv", "recip", "brul", "creme"):
        assert word not in stored, word
    hashed.close()


def test_row_level_security_confines_a_role_to_the_declared_tenant(pg_dsn: str) -> None:
    """A role that is not a superuser (as a deployment's should be) sees and writes only
    the rows of the collection its transaction declares, even in a query without the
    collection in its WHERE."""
    idx = PostgresKeywordIndex(pg_dsn)
    idx.replace_chunks("t_a", [("a1", "d1", "alpha")])
    idx.replace_chunks("t_b", [("b1", "d2", "beta"), ("b2", "d2", "beta")])
    role = f"docqa_kw_{secrets.token_hex(4)}"
    schema = conninfo.conninfo_to_dict(pg_dsn)["options"].split("=", 1)[1]
    with psycopg.connect(pg_dsn, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(role)))
        try:
            admin.execute(sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(
                sql.Identifier(schema), sql.Identifier(role)))
            admin.execute(sql.SQL("GRANT SELECT, INSERT, UPDATE, DELETE ON keyword_chunks, "
                                  "keyword_meta TO {}").format(sql.Identifier(role)))
            app = PostgresKeywordIndex(conninfo.make_conninfo(pg_dsn, user=role))
            assert [h[0] for h in app.search("t_b", "beta", 5)] == ["b1", "b2"]
            assert app.count("t_a") == 1
            with psycopg.connect(conninfo.make_conninfo(pg_dsn, user=role)) as db:
                assert db.execute("SELECT count(*) FROM keyword_chunks").fetchone() == (0,)
                db.execute("SELECT set_config('docqa.collection', 't_b', true)")
                assert db.execute("SELECT count(*) FROM keyword_chunks").fetchone() == (2,)
                assert db.execute("DELETE FROM keyword_chunks").rowcount == 2  # t_b's only
                with pytest.raises(psycopg.errors.InsufficientPrivilege):
                    db.execute("INSERT INTO keyword_chunks VALUES ('t_a', 'x', 'd', 1, 'x')")
                db.rollback()
            app.close()
        finally:
            admin.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
            admin.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))
    assert idx.count("t_a") == 1 and idx.count("t_b") == 2  # the DELETE was rolled back
    idx.close()


def test_a_keyword_index_locked_past_its_timeout_is_a_503_not_a_crash(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from core.errors import StoreUnavailableError

    idx = KeywordIndex(tmp_path / "kw.sqlite3")
    idx.replace_chunks("c", [("c1", "d1", "the notice period is three months")])
    # an exclusive lock is only had while no other connection is open: this thread's kept
    # one goes first (the blocker stands for a process that took the file before the index)
    idx._connections.close()
    blocker = sqlite3.connect(tmp_path / "kw.sqlite3", isolation_level=None)
    blocker.execute("PRAGMA locking_mode=EXCLUSIVE")
    blocker.execute("BEGIN EXCLUSIVE")  # a writer stuck holding the lock (a stopped worker)
    real = idx._connect

    @contextmanager
    def impatient() -> Iterator[sqlite3.Connection]:  # the service waits 30 s; a test need not
        with real() as db:
            db.execute("PRAGMA busy_timeout=50")
            yield db

    monkeypatch.setattr(idx, "_connect", impatient)
    try:
        with pytest.raises(StoreUnavailableError, match="keyword index"):
            idx.search("c", "notice period", 5)
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    monkeypatch.undo()
    assert [r[0] for r in idx.search("c", "notice period", 5)] == ["c1"]
