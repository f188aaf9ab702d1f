"""The keyword (BM25) index beside Chroma: SQLite FTS5 in the data directory.

One FTS5 table per tenant collection, so BM25's document frequencies and lengths are the
tenant's own: another tenant's documents never change a tenant's ranking. A plain table
maps (collection, chunk id) to the FTS row id, so replacing or deleting a chunk is an
indexed lookup, not a scan. FTS5 ranks with Okapi BM25 (k1=1.2, b=0.75), updates one
document per transaction, and lets several processes read while one writes (WAL).
Measured against ``bm25s`` on SciFact (``python -m bench.keyword_compare``): equal or
better nDCG@10 and recall@100, and adding a document costs milliseconds where bm25s, which
has no incremental update, re-indexes the whole corpus. Deleted text is overwritten on
disk (``secure_delete``). ``ChromaStore`` writes this index in the same upsert/delete calls
that write Chroma, and rebuilds it from Chroma when the file is missing.

No words at rest: text is split, lowercased, stripped of diacritics and Porter-stemmed here
(:func:`terms`), and with a term key (the service always has one, derived from the master
key: ``core/textcrypt.py``) each term is replaced by a keyed hash, different per tenant,
before it reaches SQLite. BM25 only needs terms to be equal or not, so ranking is the
same; the file holds neither the text nor its words. An index written with another term
key (or by an older version, which stored the text) is dropped and rebuilt from Chroma.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import sqlite3
import threading
import unicodedata
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Protocol

import Stemmer  # type: ignore[import-not-found]

from core.errors import StoreUnavailableError
from core.keystore import checkpoint_truncate

_WORD = re.compile(r"[^\W_]+", re.UNICODE)
# FTS5 ranks every term; very common words only add noise and time
_STOP = frozenset(
    "a an the of to in on at by for with from and or but is are was were be been it its this "
    "that these those as which who whom whose what when where why how do does did has have had "
    "not no can could would should will may might must about into than then there their they "
    "he she his her we our you your i me my".split()
)
MAX_TERMS = 32
FORMAT = "2"  # 1: porter-tokenized plain text; 2: terms from terms(), hashed with a term key
_TERM_BYTES = 8  # 64-bit term hashes: no collision in any vocabulary this index will see

SCHEMA = """
CREATE TABLE IF NOT EXISTS kw_chunks (
    rowid INTEGER PRIMARY KEY,
    collection TEXT NOT NULL,
    chunk_id TEXT NOT NULL,
    document_id TEXT NOT NULL,
    UNIQUE (collection, chunk_id)
);
CREATE INDEX IF NOT EXISTS kw_chunks_doc ON kw_chunks (collection, document_id);
CREATE TABLE IF NOT EXISTS kw_tables (collection TEXT PRIMARY KEY, fts TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS kw_meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
"""
# terms arrive stemmed (and usually hashed): FTS5 only splits them on spaces
FTS_TOKENIZER = "unicode61"
LEGACY_TABLE = "chunk_text"  # before per-tenant tables: one shared FTS5 table
_local = threading.local()


def _stem(word: str) -> str:
    stemmer = getattr(_local, "stemmer", None)
    if stemmer is None:  # PyStemmer objects are not thread-safe: one per thread
        stemmer = _local.stemmer = Stemmer.Stemmer("porter")
    return str(stemmer.stemWord(word))


def _fold(word: str) -> str:
    """Lowercase without diacritics (FTS5's ``remove_diacritics``)."""
    word = word.lower()
    if word.isascii():
        return word
    return "".join(c for c in unicodedata.normalize("NFKD", word) if not unicodedata.combining(c))


def words(text: str) -> list[str]:
    return [w for w in (_fold(m) for m in _WORD.findall(text)) if w]


class TermHasher:
    """Stemmed term -> keyed hash, per collection (one tenant's hashes say nothing about
    another's). Without a key, terms stay as they are (tools and unit tests)."""

    def __init__(self, key: bytes | None) -> None:
        self.key = key
        self._per_collection: dict[str, bytes] = {}
        self._memo: dict[tuple[str, str], str] = {}

    def check_value(self) -> str:
        """Identifies the key (not secret): an index hashed with another key is rebuilt."""
        if self.key is None:
            return "plain"
        return hmac.new(self.key, b"check", hashlib.sha256).hexdigest()[:16]

    def __call__(self, collection: str, term: str) -> str:
        if self.key is None:
            return term
        memo = self._memo.get((collection, term))
        if memo is not None:
            return memo
        ckey = self._per_collection.get(collection)
        if ckey is None:
            ckey = self._per_collection[collection] = hmac.new(
                self.key, collection.encode("utf-8"), hashlib.sha256).digest()
        out = hmac.new(ckey, term.encode("utf-8"), hashlib.sha256).hexdigest()[:2 * _TERM_BYTES]
        if len(self._memo) > 200_000:
            self._memo.clear()
        self._memo[(collection, term)] = out
        return out


def terms(text: str) -> list[str]:
    """The indexed terms of a text, in order: words, folded and Porter-stemmed."""
    return [_stem(w) for w in words(text)]


def query_terms(text: str) -> list[str]:
    """Distinct stemmed terms of a query, stop words left out, at most ``MAX_TERMS``."""
    kept = dict.fromkeys(_stem(w) for w in words(text) if w not in _STOP)
    return list(kept)[:MAX_TERMS]


def match_expression(text: str, hasher: TermHasher | None = None, collection: str = "") -> str:
    """An FTS5 query OR-ing the text's terms, each quoted (user text is never FTS syntax)."""
    hasher = hasher or TermHasher(None)
    return " OR ".join(f'"{hasher(collection, t)}"' for t in query_terms(text))


class KeywordStore(Protocol):
    """What ``ChromaStore`` needs of a keyword index: SQLite FTS5 (:class:`KeywordIndex`,
    embedded) or PostgreSQL (``ingest/pgkeywords.py``, shared by several machines)."""

    @property
    def existed(self) -> bool: ...

    def mark_complete(self) -> None: ...

    def replace_chunks(self, collection: str, rows: Iterable[tuple[str, str, str]]) -> None: ...

    def delete_document(self, collection: str, document_id: str,
                        keep: Sequence[str] = ()) -> None: ...

    def search(self, collection: str, text: str, limit: int,
               document_ids: Sequence[str] | None = None) -> list[tuple[str, str, float]]: ...

    def count(self, collection: str) -> int: ...

    def scrub(self, collection: str) -> bool:
        """After an erasure: make deleted rows unrecoverable from the engine's storage."""
        ...

    def describe(self) -> str: ...


def fts_table(collection: str) -> str:
    """The FTS5 table of a collection (a fixed-shape name: never user text in SQL)."""
    return "fts_" + hashlib.sha256(collection.encode("utf-8")).hexdigest()[:24]


class KeywordIndex:
    def __init__(self, path: Path, term_key: bytes | None = None) -> None:
        """``term_key``: terms are stored as keyed hashes (the service passes
        ``core.textcrypt.term_key(master)``); None stores stemmed words (tools, tests)."""
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self.hasher = TermHasher(term_key)
        with self._connect() as db:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("BEGIN IMMEDIATE")
            try:
                legacy = db.execute("SELECT 1 FROM sqlite_master WHERE name = ?",
                                    (LEGACY_TABLE,)).fetchone()
                if legacy:  # an index from an older version: dropped, rebuilt from Chroma
                    db.execute(f"DROP TABLE {LEGACY_TABLE}")
                for stmt in SCHEMA.split(";"):
                    if stmt.strip():
                        db.execute(stmt)
                wanted = {"format": FORMAT, "terms": self.hasher.check_value()}
                found = dict(db.execute("SELECT name, value FROM kw_meta").fetchall())
                complete = found.pop("complete", "0")
                if found.get("terms", "plain") != "plain" and wanted["terms"] == "plain":
                    raise ValueError(f"{self.path} holds hashed terms: open it with the term "
                                     "key (ingest.store.open_store), not without one")
                if found != wanted:  # new, an older format or another key: rebuilt from Chroma
                    self._drop_all(db)
                    db.execute("DELETE FROM kw_meta")
                    db.executemany("INSERT INTO kw_meta (name, value) VALUES (?, ?)",
                                   [*wanted.items(), ("complete", "0")])
                    complete = "0"
                # whichever process opens the file first (API or worker), the API rebuilds it
                self.existed = complete == "1"
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise

    def mark_complete(self) -> None:
        """Record that the index holds every chunk Chroma has (after a rebuild)."""
        with self._connect() as db:
            db.execute("UPDATE kw_meta SET value = '1' WHERE name = 'complete'")

    @staticmethod
    def _drop_all(db: sqlite3.Connection) -> bool:
        """Drop every tenant table and row; True when there was any."""
        tables = [str(r[0]) for r in db.execute("SELECT fts FROM kw_tables")]
        had = bool(tables) or bool(db.execute("SELECT 1 FROM kw_chunks LIMIT 1").fetchone())
        for t in tables:
            if re.fullmatch(r"fts_[0-9a-f]{24}", t):  # never user text in SQL
                db.execute(f"DROP TABLE IF EXISTS {t}")
        db.execute("DELETE FROM kw_tables")
        db.execute("DELETE FROM kw_chunks")
        return had

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        db.execute("PRAGMA secure_delete=ON")
        try:
            yield db
        finally:
            db.close()

    @staticmethod
    def _table(db: sqlite3.Connection, collection: str, create: bool) -> str | None:
        row = db.execute("SELECT fts FROM kw_tables WHERE collection = ?",
                         (collection,)).fetchone()
        if row:
            return str(row[0])
        if not create:
            return None
        name = fts_table(collection)
        db.execute(f"CREATE VIRTUAL TABLE IF NOT EXISTS {name} USING fts5("
                   f"text, tokenize = '{FTS_TOKENIZER}')")
        db.execute("INSERT INTO kw_tables (collection, fts) VALUES (?, ?)", (collection, name))
        return name

    def replace_chunks(self, collection: str, rows: Iterable[tuple[str, str, str]]) -> None:
        """Insert (chunk_id, document_id, text) rows, replacing rows with the same chunk id."""
        rows = list(rows)
        if not rows:
            return
        with self._lock, self._connect() as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                table = self._table(db, collection, create=True)
                for cid, doc, text in rows:
                    old = db.execute("SELECT rowid FROM kw_chunks WHERE collection = ? AND "
                                     "chunk_id = ?", (collection, cid)).fetchone()
                    if old:  # table names are ours (fts_table), values are bound: below too
                        db.execute(f"DELETE FROM {table} WHERE rowid = ?",  # noqa: S608
                                   (old[0],))
                        db.execute("UPDATE kw_chunks SET document_id = ? WHERE rowid = ?",
                                   (doc, old[0]))
                        rowid = old[0]
                    else:
                        rowid = db.execute(
                            "INSERT INTO kw_chunks (collection, chunk_id, document_id) "
                            "VALUES (?, ?, ?)", (collection, cid, doc)).lastrowid
                    db.execute(f"INSERT INTO {table} (rowid, text) VALUES (?, ?)",  # noqa: S608
                               (rowid, self._indexed(collection, text)))
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise

    def _indexed(self, collection: str, text: str) -> str:
        return " ".join(self.hasher(collection, t) for t in terms(text))

    def delete_document(self, collection: str, document_id: str, keep: Sequence[str] = ()) -> None:
        keep_set = set(keep)
        with self._lock, self._connect() as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                table = self._table(db, collection, create=False)
                stale = [r[0] for r in db.execute(
                    "SELECT rowid, chunk_id FROM kw_chunks WHERE collection = ? AND "
                    "document_id = ?", (collection, document_id)) if r[1] not in keep_set]
                for rowid in stale:
                    if table:  # a name of ours (fts_table), never user text
                        db.execute(f"DELETE FROM {table} WHERE rowid = ?",  # noqa: S608
                                   (rowid,))
                    db.execute("DELETE FROM kw_chunks WHERE rowid = ?", (rowid,))
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise

    def search(self, collection: str, text: str, limit: int,
               document_ids: Sequence[str] | None = None) -> list[tuple[str, str, float]]:
        """(chunk_id, document_id, bm25 score — higher is better), best first."""
        expr = match_expression(text, self.hasher, collection)
        if not expr or limit <= 0 or (document_ids is not None and not document_ids):
            return []
        try:
            return self._search(collection, expr, limit, document_ids)
        except sqlite3.OperationalError as exc:  # locked past the busy timeout: a 503, not a 500
            raise StoreUnavailableError(f"the keyword index is not available ({exc})") from exc

    def _search(self, collection: str, expr: str, limit: int,
                document_ids: Sequence[str] | None) -> list[tuple[str, str, float]]:
        with self._connect() as db:
            table = self._table(db, collection, create=False)
            if table is None:
                return []
            # the table name is ours (fts_table); the query and document ids are bound
            if document_ids is None:  # the best `limit` ranked first, then only they joined
                return [(r[0], r[1], float(r[2])) for r in db.execute(
                    f"SELECT k.chunk_id, k.document_id, -t.rank FROM (SELECT rowid, rank "  # noqa: S608
                    f"FROM {table} WHERE {table} MATCH ? ORDER BY rank LIMIT ?) t "
                    "JOIN kw_chunks k ON k.rowid = t.rowid ORDER BY t.rank", (expr, limit))]
            sql = (f"SELECT k.chunk_id, k.document_id, -f.rank FROM {table} f "  # noqa: S608
                   f"JOIN kw_chunks k ON k.rowid = f.rowid WHERE {table} MATCH ?")
            args: list[object] = [expr]
            if document_ids is not None:  # one JSON array, however many (no IN (?, ?…) list:
                # SQLite allows 32,766 variables, and a filter can match more documents)
                sql += " AND k.document_id IN (SELECT value FROM json_each(?))"
                args.append(json.dumps(list(document_ids)))
            sql += " ORDER BY f.rank LIMIT ?"
            args.append(limit)
            return [(r[0], r[1], float(r[2])) for r in db.execute(sql, args)]

    def count(self, collection: str) -> int:
        with self._connect() as db:
            return int(db.execute("SELECT COUNT(*) FROM kw_chunks WHERE collection = ?",
                                  (collection,)).fetchone()[0])

    def scrub(self, collection: str) -> bool:
        return scrub_fts(self.path, collection)

    def describe(self) -> str:
        return str(self.path)


def scrub_fts(path: Path, collection: str) -> bool:
    """Merge the collection's FTS5 table into one segment, dropping deleted rows' terms
    (old segments are freed with ``secure_delete`` on: zeroed), then truncate the WAL."""
    if not Path(path).exists():
        return False
    db = sqlite3.connect(path, timeout=30, isolation_level=None)
    try:
        db.execute("PRAGMA busy_timeout=30000")
        db.execute("PRAGMA secure_delete=ON")
        row = db.execute("SELECT fts FROM kw_tables WHERE collection = ?",
                         (collection,)).fetchone()
        if row:
            table = str(row[0])
            if not re.fullmatch(r"fts_[0-9a-f]{24}", table):  # never user text in SQL
                raise ValueError(f"unexpected keyword table name {table!r}")
            db.execute(f"INSERT INTO {table} ({table}) VALUES ('optimize')")  # noqa: S608
        return checkpoint_truncate(db)
    finally:
        db.close()
