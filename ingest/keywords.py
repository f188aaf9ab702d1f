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

FTS5 scores every chunk that shares a term with the query, so its ranking grows with the
tenant; a search here asks it to rank only the chunks that can reach the top k (MaxScore,
:meth:`KeywordIndex._pruned`): the same top k, each score FTS5's. docs/capacity.md "Search
over 16 shards" has the figures.

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
import math
import re
import sqlite3
import threading
import unicodedata
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Protocol

import Stemmer  # type: ignore[import-not-found]

from core.errors import StoreUnavailableError
from core.keystore import checkpoint_truncate
from core.sqliteconn import ThreadConnections

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
BM25_K1, BM25_B = 1.2, 0.75  # FTS5's bm25() constants (fts5_aux.c)
# top-k pruning (KeywordIndex._pruned): below this many postings FTS5 ranks all matches;
# the rarest terms, ranked first for a floor, may hold this share of the chunks in postings
PRUNE_MIN_POSTINGS = 2000
PRUNE_RARE_SHARE = 0.05
READ_CACHE_KIB = 8192  # page cache of each searching thread's connection (docs/capacity.md)
_SPARE = 5  # more than `limit` asked of each pruned query: near ties at the cut
_TIE = 1e-12  # scores this close (relative) may be one tie summed in two orders

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
    return _any([hasher(collection, t) for t in query_terms(text)])


def _any(terms: Sequence[str]) -> str:
    """An FTS5 OR of hashed (or stemmed) terms, each quoted."""
    return " OR ".join(f'"{t}"' for t in terms)


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
        # how keyword searches were ranked, for the bench: "pruned", "exact" (FTS5 ranked
        # every match), of which "fallback" (pruning tried first)
        self.plans: Counter[str] = Counter()
        self._readers = ThreadConnections(self._open_reader)
        self._connections = ThreadConnections(self._open)
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

    def _open(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        db.execute("PRAGMA secure_delete=ON")
        return db

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        with self._connections.connection() as db:
            yield db

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
        query = [self.hasher(collection, t) for t in query_terms(text)]
        if not query or limit <= 0 or (document_ids is not None and not document_ids):
            return []
        try:
            return self._search(collection, query, limit, document_ids)
        except sqlite3.OperationalError as exc:  # locked past the busy timeout: a 503, not a 500
            raise StoreUnavailableError(f"the keyword index is not available ({exc})") from exc

    def _search(self, collection: str, query: list[str], limit: int,
                document_ids: Sequence[str] | None) -> list[tuple[str, str, float]]:
        expr = _any(query)
        with self._readers.connection() as db:
            table = self._table(db, collection, create=False)
            if table is None:
                return []
            # the table name is ours (fts_table); the query and document ids are bound
            if document_ids is None:
                ranked = self._pruned(db, table, query, limit)
                if ranked is None:
                    self.plans["exact"] += 1
                    ranked = self._ranked(db, table, expr, limit)
                return self._named(db, ranked)
            # one JSON array, however many (no IN (?, ?…) list: SQLite allows 32,766
            # variables, and a filter can match more documents)
            return [(r[0], r[1], float(r[2])) for r in db.execute(
                f"SELECT k.chunk_id, k.document_id, -f.rank FROM {table} f "  # noqa: S608
                f"JOIN kw_chunks k ON k.rowid = f.rowid WHERE {table} MATCH ? "
                "AND k.document_id IN (SELECT value FROM json_each(?)) ORDER BY f.rank LIMIT ?",
                (expr, json.dumps(list(document_ids)), limit))]

    def _open_reader(self) -> sqlite3.Connection:
        """A connection for searches, kept per thread (``self._readers``): its page cache
        stays warm from one search to the next (a new connection read every page again:
        about a fifth of a search at 100,000 chunks). Autocommit, every result read whole,
        so it holds no snapshot between searches and sees every commit."""
        db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        db.execute(f"PRAGMA cache_size=-{READ_CACHE_KIB}")
        return db

    @staticmethod
    def _ranked(db: sqlite3.Connection, table: str, expr: str,
                limit: int) -> list[tuple[int, float]]:
        """FTS5's BM25 ranking: (rowid, score), best first, ties by row id; it scores every
        match. ``bm25()`` sorted by SQLite, not FTS5's ``ORDER BY rank``: the same order,
        but SQLite keeps only the best ``limit`` while FTS5's sorter held every match."""
        return [(int(r[0]), -float(r[1])) for r in db.execute(
            f"SELECT rowid, bm25({table}) AS s FROM {table} WHERE {table} MATCH ? "  # noqa: S608
            "ORDER BY s, rowid LIMIT ?", (expr, limit))]

    def _tied(self, db: sqlite3.Connection, table: str, query: list[str],
              df: dict[str, int], stats: tuple[int, int],
              found: dict[int, float]) -> dict[int, float]:
        """The chunks of ``found`` whose scores are within rounding of another's, scored
        as FTS5 scores them for ``query`` in its own order (a true tie of two chunks can
        come out of another order one bit apart, and rank them the other way round)."""
        order = sorted(found.items(), key=lambda rs: -rs[1])
        near = {r for (r, s), (r2, s2) in zip(order, order[1:], strict=False)
                if s - s2 <= _TIE * abs(s) for r in (r, r2)}
        if not near:
            return {}
        texts = dict(db.execute(
            f"SELECT id, c0 FROM {table}_content WHERE id IN "  # noqa: S608
            "(SELECT value FROM json_each(?))", (json.dumps(sorted(near)),)))
        idf = {t: bm25_idf(stats[0], df[t]) for t in query}
        return dict(zip(texts, bm25_scores([str(x) for x in texts.values()], query, idf,
                                           stats[1] / stats[0], self.hasher.key is not None),
                        strict=True))

    @staticmethod
    def _named(db: sqlite3.Connection,
               ranked: list[tuple[int, float]]) -> list[tuple[str, str, float]]:
        """(chunk_id, document_id, score) of ranked rows, in their order."""
        names = {int(r[0]): (str(r[1]), str(r[2])) for r in db.execute(
            "SELECT rowid, chunk_id, document_id FROM kw_chunks WHERE rowid IN "
            "(SELECT value FROM json_each(?))", (json.dumps([r for r, _ in ranked]),))}
        return [(*names[r], s) for r, s in ranked if r in names]

    def _pruned(self, db: sqlite3.Connection, table: str, query: list[str],
                limit: int) -> list[tuple[int, float]] | None:
        """FTS5's top ``limit`` for the OR of the ``query`` terms without scoring every
        match (MaxScore); None when no term can be set aside, and FTS5 is then to rank
        every match.

        FTS5's work is one BM25 score per chunk sharing any term with the query (about 5 µs
        each, idle), so a common term in the query costs tens of thousands of them at
        100,000 chunks; finding the matches costs a hundredth of that. A term's part in a
        score is at most ``idf * (k1 + 1)``. So: the rarest terms alone are ranked first
        (their scores are lower bounds of the whole query's, so their ``limit``-th is a
        ``floor`` of the top ``limit``'s); as ``frequent`` are set aside the most frequent
        terms whose largest parts sum below ``floor``; a chunk holding those alone cannot
        reach the top ``limit``. FTS5 then ranks, by every term, only the chunks that hold
        another term: ``(rare) AND (frequent)`` and ``(rare) NOT (frequent)``, the best
        ``limit`` of each. Both queries name every term once, but not in the query's order:
        FTS5 adds the terms' parts in that order, and the last bits of a sum can depend on
        it, so chunks whose scores come out (nearly) tied are scored again in the query's
        order (:meth:`_tied`), and ties are broken by row id, as FTS5 breaks them."""
        if len(query) < 2:
            return None
        stats = _averages(db, table)
        if stats is None or stats[0] <= 0:
            return None
        df = _doc_freqs(db, table, query)
        if sum(df.values()) <= PRUNE_MIN_POSTINGS:
            return None  # FTS5 ranks few matches quickly
        # terms no chunk holds change no score; the rest, fewest postings first
        by_df = sorted((t for t in query if df[t]), key=lambda t: df[t])
        top = {t: bm25_idf(stats[0], df[t]) * (BM25_K1 + 1.0) for t in by_df}
        rare, budget = 1, max(PRUNE_MIN_POSTINGS, int(stats[0] * PRUNE_RARE_SHARE))
        while rare < len(by_df) and sum(df[t] for t in by_df[:rare + 1]) <= budget:
            rare += 1
        head = self._ranked(db, table, _any(by_df[:rare]), limit)
        if len(head) < limit:
            self.plans["fallback"] += 1
            return None
        # the frequent: the most postings, whose largest parts sum below the floor
        rare, room = len(by_df), head[-1][1]
        while rare > 1 and top[by_df[rare - 1]] < room:
            room -= top[by_df[rare - 1]]
            rare -= 1
        if rare == len(by_df):
            self.plans["fallback"] += 1
            return None
        some, frequent = _any(by_df[:rare]), _any(by_df[rare:])
        found = dict(self._ranked(db, table, f"({some}) AND ({frequent})", limit + _SPARE)
                     + self._ranked(db, table, f"({some}) NOT ({frequent})", limit + _SPARE))
        found.update(self._tied(db, table, query, df, stats, found))
        best = sorted(found.items(), key=lambda rs: (-rs[1], rs[0]))[:limit]
        if len(best) < limit or best[-1][1] <= sum(top[t] for t in by_df[rare:]):
            self.plans["fallback"] += 1  # not expected: the floor only rose
            return None
        self.plans["pruned"] += 1
        return best

    def count(self, collection: str) -> int:
        with self._connect() as db:
            return int(db.execute("SELECT COUNT(*) FROM kw_chunks WHERE collection = ?",
                                  (collection,)).fetchone()[0])

    def scrub(self, collection: str) -> bool:
        return scrub_fts(self.path, collection)

    def describe(self) -> str:
        return str(self.path)


def bm25_idf(n_rows: int, n_hit: int) -> float:
    """FTS5's IDF of a phrase in ``n_hit`` of ``n_rows`` rows, floored as FTS5 floors it."""
    idf = math.log((n_rows - n_hit + 0.5) / (n_hit + 0.5))
    return idf if idf > 0.0 else 1e-6


def bm25_scores(texts: Sequence[str], query: Sequence[str], idf: dict[str, float],
                avgdl: float, fixed: bool) -> list[float]:
    """FTS5's ``bm25()`` of each indexed text (space-separated terms) for the OR of the
    ``query`` terms, computed as fts5_aux.c computes it, term by term in query order, so
    the scores are equal to FTS5's, not just close. ``fixed``: every term has one length
    (hashed terms), so counting a term in the text is counting its tokens."""
    out = []
    for text in texts:
        if fixed:
            size = text.count(" ") + 1 if text else 0
            freq = {t: text.count(t) for t in query}
        else:
            tokens = text.split()
            size = len(tokens)
            freq = Counter(tokens)
        score = 0.0
        for t in query:
            f = float(freq.get(t, 0))
            score += idf[t] * ((f * (BM25_K1 + 1.0)) / (
                f + BM25_K1 * (1 - BM25_B + BM25_B * size / avgdl)))
        out.append(score)
    return out


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    """SQLite's varint at ``pos``: (value, position after it)."""
    value = 0
    for i in range(8):
        byte = buf[pos + i]
        value = (value << 7) | (byte & 0x7F)
        if byte < 0x80:
            return value, pos + i + 1
    return (value << 8) | buf[pos + 8], pos + 9


def _averages(db: sqlite3.Connection, table: str) -> tuple[int, int] | None:
    """(rows, tokens) of an FTS5 table, as its bm25() reads them: the averages record
    (row 1 of ``%_data``: the row count, then each column's token total, as varints)."""
    row = db.execute(f"SELECT block FROM {table}_data WHERE id = 1").fetchone()  # noqa: S608
    if not row or not row[0]:
        return None
    try:
        n_rows, pos = _varint(row[0], 0)
        n_tokens, _ = _varint(row[0], pos)
    except IndexError:
        return None
    return n_rows, n_tokens


def _doc_freqs(db: sqlite3.Connection, table: str, hashed: Sequence[str]) -> dict[str, int]:
    """How many rows hold each term (FTS5's own count, through an fts5vocab table)."""
    vocab = "v_" + table
    db.execute(f"CREATE VIRTUAL TABLE IF NOT EXISTS temp.{vocab} "
               f"USING fts5vocab(main, {table}, row)")
    out: dict[str, int] = {}
    for t in hashed:
        row = db.execute(f"SELECT doc FROM temp.{vocab} WHERE term = ?",  # noqa: S608
                         (t,)).fetchone()
        out[t] = int(row[0]) if row else 0
    return out


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
