"""The keyword (BM25) index in PostgreSQL: the shared engine when the registry is there.

SQLite FTS5 (``ingest/keywords.py``) is a file in one machine's data directory; API and
workers on several machines cannot share it (SQLite's WAL is unsafe on a network file
system). With ``DOCQA_DATABASE_URL`` set, the index lives in the same PostgreSQL database as
the registry, and every process on every machine reads and writes the same rows.

Same terms, same privacy: text is split, folded and Porter-stemmed by
:func:`ingest.keywords.terms` and each term replaced by a keyed hash, different per tenant;
PostgreSQL stores neither the text nor its words. A chunk is one row holding a ``tsvector``
of its hashed terms, in which a term's positions are 1..tf (its count in the chunk, at most
256): positions carry term frequencies, not word order, as BM25 needs no more. A GIN index
on it finds the chunks holding any query term.

Ranking is Okapi BM25 computed in SQL with FTS5's constants and formula (k1=1.2, b=0.75;
idf ``ln((N - df + 0.5) / (df + 0.5))``, at least 1e-6): N and the average length are the
tenant's own rows, df is counted over the chunks matching the query, so another tenant's
documents never change a tenant's ranking, as with FTS5's per-tenant tables. PostgreSQL's
own ``ts_rank``/``ts_rank_cd`` have no inverse document frequency (measured: far below
BM25 on SciFact, ``bench/keyword_pg.py``).

Tenant scoping: every statement names its collection (the tenant's, from
``ingest.store.collection_name``) in its ``WHERE``. Row-level security on the table adds a
second guarantee for any role that is not a superuser: each transaction declares its
collection (``docqa.collection``) and sees and writes only that collection's rows. (A
superuser, or the table's owner without ``FORCE``, bypasses row-level security; the table
is created with ``FORCE``, so only a superuser does.)

User text never becomes SQL or query syntax: terms are ``[^\\W_]+`` words, hashed, quoted
into a ``tsquery`` value that is passed as a bound parameter.
"""

from __future__ import annotations

import os
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

import psycopg

from core.errors import TransientError
from core.registry.postgres import _checked_dsn, _Pool, _redacted
from ingest.keywords import FORMAT, TermHasher, query_terms, terms

T = TypeVar("T")
Conn = psycopg.Connection[dict[str, Any]]  # what the pool hands out (dict rows, autocommit)

_MAX_TF = 256  # a tsvector keeps at most 256 positions per lexeme
_MAX_PLAIN_TERM = 255  # unhashed terms only (tools, tests): tsvector lexemes are < 2 KiB
_SCHEMA_LOCK = 0x646F6B7731  # pg_advisory_xact_lock key ("dokw1"): one schema creator

_SCHEMA = """
CREATE TABLE IF NOT EXISTS keyword_chunks (
    collection TEXT COLLATE "C" NOT NULL,
    chunk_id TEXT COLLATE "C" NOT NULL,
    document_id TEXT COLLATE "C" NOT NULL,
    length INTEGER NOT NULL,
    terms TSVECTOR NOT NULL,
    PRIMARY KEY (collection, chunk_id)
);
CREATE INDEX IF NOT EXISTS keyword_chunks_document ON keyword_chunks (collection, document_id);
CREATE INDEX IF NOT EXISTS keyword_chunks_terms ON keyword_chunks USING gin (terms);
CREATE TABLE IF NOT EXISTS keyword_meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
ALTER TABLE keyword_chunks ENABLE ROW LEVEL SECURITY;
ALTER TABLE keyword_chunks FORCE ROW LEVEL SECURITY;
DO $$ BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_policies WHERE tablename = 'keyword_chunks'
                   AND policyname = 'keyword_chunks_collection'
                   AND schemaname = current_schema()) THEN
        CREATE POLICY keyword_chunks_collection ON keyword_chunks
            USING (collection = current_setting('docqa.collection', true))
            WITH CHECK (collection = current_setting('docqa.collection', true));
    END IF;
END $$;
"""

_SCOPE = "SELECT set_config('docqa.collection', %s, true)"

# BM25 (k1 = 1.2, b = 0.75: FTS5's defaults) over the chunks holding any query term:
# ``hits`` is one row per (chunk, query term) with the term's frequency (its positions),
# ``df`` the chunks holding each term. Each chunk's vector is cut down to the query's terms
# before it is unnested (marked with weight A, the only ones kept; stored terms carry the
# default weight D): unnesting whole vectors cost 2.6 times as much on SciFact.
_SEARCH = """
WITH hits AS (
    SELECT k.chunk_id, k.document_id, k.length, t.lexeme, cardinality(t.positions) AS tf
    FROM keyword_chunks k CROSS JOIN LATERAL
         unnest(ts_filter(setweight(k.terms, 'A', %(terms)s::text[]), '{a}'))
         AS t(lexeme, positions, weights)
    WHERE k.collection = %(c)s AND k.terms @@ %(query)s::tsquery
      AND t.lexeme = ANY(%(terms)s::text[])
), df AS (
    SELECT lexeme, count(*)::float8 AS df FROM hits GROUP BY lexeme
), stats AS (
    SELECT count(*)::float8 AS n, greatest(avg(length), 1)::float8 AS avgdl
    FROM keyword_chunks WHERE collection = %(c)s
)
SELECT h.chunk_id, h.document_id,
       sum(greatest(ln((s.n - d.df + 0.5) / (d.df + 0.5)), 1e-6)
           * h.tf * (1.2 + 1) / (h.tf + 1.2 * (1 - 0.75 + 0.75 * h.length / s.avgdl))) AS score
FROM hits h JOIN df d USING (lexeme) CROSS JOIN stats s
WHERE %(docs)s::text[] IS NULL OR h.document_id = ANY(%(docs)s::text[])
GROUP BY h.chunk_id, h.document_id
ORDER BY score DESC, h.chunk_id
LIMIT %(limit)s
"""


def _quote(term: str) -> str:
    """A lexeme as tsvector/tsquery input text (quoted; ``'`` and ``\\`` escaped)."""
    return "'" + term.replace("\\", "\\\\").replace("'", "''") + "'"


def tsvector_text(hashed_terms: Sequence[str]) -> str:
    """``'term':1,2,3 ...``: each distinct term with positions 1..tf (tf capped at 256)."""
    counts = Counter(hashed_terms)
    return " ".join(
        f"{_quote(t)}:{','.join(str(p) for p in range(1, min(n, _MAX_TF) + 1))}"
        for t, n in counts.items())


def tsquery_text(hashed_terms: Sequence[str]) -> str:
    """``'a' | 'b' ...``: any of the terms, each quoted (never query syntax)."""
    return " | ".join(_quote(t) for t in hashed_terms)


class PostgresKeywordIndex:
    """The keyword index in PostgreSQL; the same methods as ``KeywordIndex``."""

    def __init__(self, dsn: str, term_key: bytes | None = None, *, max_idle: int = 4) -> None:
        """``term_key``: terms are stored as keyed hashes (the service passes
        ``core.textcrypt.term_key(master)``); None stores stemmed words (tools, tests)."""
        self.dsn = _checked_dsn(dsn)
        self.hasher = TermHasher(term_key)
        self._existed: bool | None = None
        self._ready_lock = threading.Lock()
        self._pool = _Pool(self.dsn, max_idle, lambda _conn: None)

    def __repr__(self) -> str:
        return f"PostgresKeywordIndex({_redacted(self.dsn)!r})"

    def describe(self) -> str:
        return f"PostgreSQL {_redacted(self.dsn)} (table keyword_chunks)"

    # ------------------------------------------------------------ connections and schema

    def _run(self, work: Callable[[Conn], T]) -> T:
        """``work`` on a pooled connection, once the schema is checked. A reused
        connection found dead is replaced once; an unreachable server is a
        ``TransientError`` (503 in the API, a retry in the workers)."""
        self._ready()
        return self._on_connection(work)

    def _on_connection(self, work: Callable[[Conn], T]) -> T:
        for attempt in (1, 2):
            pid = os.getpid()
            conn, reused = self._pool.take()
            try:
                result = work(conn)
            except psycopg.OperationalError as exc:
                self._pool.give(conn, pid)
                if conn.broken or conn.closed:
                    if reused and attempt == 1:
                        self._pool.discard_idle()
                        continue
                    raise TransientError(f"keyword index database connection lost: {exc}"
                                         ) from exc
                raise
            except BaseException:
                self._pool.give(conn, pid)
                raise
            self._pool.give(conn, pid)
            return result
        raise AssertionError("unreachable")  # pragma: no cover

    def _ready(self) -> bool:
        """Create the tables if needed and check the index's format and term key (once per
        process); True when the index was complete (rebuilt from Chroma and kept since)."""
        if self._existed is not None:
            return self._existed
        with self._ready_lock:
            if self._existed is None:
                self._existed = self._on_connection(self._check)
            return self._existed

    def _check(self, db: Conn) -> bool:
        wanted = {"format": FORMAT, "terms": self.hasher.check_value()}
        with db.transaction():
            db.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK,))
            # a role that does not own the tables (and may not alter them) finds them made
            row = db.execute(
                "SELECT to_regclass('keyword_chunks') IS NOT NULL"
                " AND to_regclass('keyword_meta') IS NOT NULL"
                " AND EXISTS (SELECT 1 FROM pg_policies WHERE tablename = 'keyword_chunks'"
                " AND policyname = 'keyword_chunks_collection'"
                " AND schemaname = current_schema()) AS ok").fetchone()
            if not (row and row["ok"]):
                db.execute(_SCHEMA)
            found = {str(r["name"]): str(r["value"]) for r in
                     db.execute("SELECT name, value FROM keyword_meta").fetchall()}
            complete = found.pop("complete", "0")
            if found.get("terms", "plain") != "plain" and wanted["terms"] == "plain":
                raise ValueError(f"{self.describe()} holds hashed terms: open it with the "
                                 "term key (ingest.store.open_store), not without one")
            if found != wanted:  # new, or another key: emptied, rebuilt from Chroma
                db.execute("TRUNCATE keyword_chunks")  # every tenant's rows, as the key is one
                db.execute("DELETE FROM keyword_meta")
                for name, value in [*wanted.items(), ("complete", "0")]:
                    db.execute("INSERT INTO keyword_meta (name, value) VALUES (%s, %s)",
                               (name, value))
                complete = "0"
        return complete == "1"

    @property
    def existed(self) -> bool:
        """Whether the index holds everything Chroma does (else the API rebuilds it)."""
        return self._ready()

    def mark_complete(self) -> None:
        """Record that the index holds every chunk Chroma has (after a rebuild)."""
        self._run(lambda db: db.execute(
            "UPDATE keyword_meta SET value = '1' WHERE name = 'complete'"))
        self._existed = True

    # ------------------------------------------------------------ writes and reads

    def _hashed(self, collection: str, stems: Iterable[str]) -> list[str]:
        # a word Porter stems to nothing ("s") is no token for FTS5 either
        out = [self.hasher(collection, t) for t in stems if t]
        return out if self.hasher.key else [t[:_MAX_PLAIN_TERM] for t in out]

    def _terms(self, collection: str, text: str) -> list[str]:
        return self._hashed(collection, terms(text))

    def _query_terms(self, collection: str, text: str) -> list[str]:
        return list(dict.fromkeys(self._hashed(collection, query_terms(text))))

    def replace_chunks(self, collection: str, rows: Iterable[tuple[str, str, str]]) -> None:
        """Insert (chunk_id, document_id, text) rows, replacing rows with the same chunk id."""
        latest: dict[str, tuple[str, str, str]] = {}
        for cid, doc, text in rows:
            latest[cid] = (cid, doc, text)
        if not latest:
            return
        params = []
        for cid in sorted(latest):  # one order for every writer: no deadlock between them
            _cid, doc, text = latest[cid]
            hashed = self._terms(collection, text)
            params.append((collection, cid, doc, len(hashed), tsvector_text(hashed)))

        def work(db: Conn) -> None:
            with db.transaction():
                db.execute(_SCOPE, (collection,))
                with db.cursor() as cur:
                    cur.executemany(
                        "INSERT INTO keyword_chunks (collection, chunk_id, document_id, length,"
                        " terms) VALUES (%s, %s, %s, %s, %s::tsvector)"
                        " ON CONFLICT (collection, chunk_id) DO UPDATE SET"
                        " document_id = EXCLUDED.document_id, length = EXCLUDED.length,"
                        " terms = EXCLUDED.terms", params)

        self._run(work)

    def delete_document(self, collection: str, document_id: str, keep: Sequence[str] = ()) -> None:
        def work(db: Conn) -> None:
            with db.transaction():
                db.execute(_SCOPE, (collection,))
                db.execute("DELETE FROM keyword_chunks WHERE collection = %s AND "
                           "document_id = %s AND NOT (chunk_id = ANY(%s::text[]))",
                           (collection, document_id, list(keep)))

        self._run(work)

    def search(self, collection: str, text: str, limit: int,
               document_ids: Sequence[str] | None = None) -> list[tuple[str, str, float]]:
        """(chunk_id, document_id, bm25 score — higher is better), best first."""
        wanted = self._query_terms(collection, text)
        if not wanted or limit <= 0 or (document_ids is not None and not document_ids):
            return []
        args = {"c": collection, "query": tsquery_text(wanted), "terms": wanted,
                "docs": list(document_ids) if document_ids is not None else None,
                "limit": limit}

        def work(db: Conn) -> list[tuple[str, str, float]]:
            with db.transaction():
                db.execute(_SCOPE, (collection,))
                rows = db.execute(_SEARCH, args).fetchall()
            return [(str(r["chunk_id"]), str(r["document_id"]), float(r["score"]))
                    for r in rows]

        return self._run(work)

    def count(self, collection: str) -> int:
        def work(db: Conn) -> int:
            with db.transaction():
                db.execute(_SCOPE, (collection,))
                row = db.execute("SELECT count(*) AS n FROM keyword_chunks "
                                 "WHERE collection = %s", (collection,)).fetchone()
            return int(row["n"]) if row else 0

        return self._run(work)

    def scrub(self, collection: str) -> bool:
        """After deletes: ``VACUUM`` the table, so deleted rows (their hashed terms) leave
        the heap and the GIN index and their space is reused (as ``file_keys``; docs/erasure.md)."""
        self._run(lambda db: db.execute("VACUUM keyword_chunks"))
        return True

    def close(self) -> None:
        """Close this process's idle connections (optional; they also close at exit)."""
        self._pool.discard_idle()
