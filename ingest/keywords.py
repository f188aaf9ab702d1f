"""The keyword (BM25) index beside Chroma: SQLite FTS5 in the data directory.

FTS5 ranks with Okapi BM25 (k1=1.2, b=0.75), updates per document in a transaction (a
worker adds one document at a time; bm25s and llama-index's BM25 retriever rebuild the
whole index on every change) and lets several processes read while one writes (WAL).
Rows carry the tenant's collection name, so a tenant is searched only within itself.
``ChromaStore`` writes it in the same upsert/delete calls that write Chroma, and rebuilds
it from Chroma when the file is missing.
"""

from __future__ import annotations

import re
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

_WORD = re.compile(r"[^\W_]+", re.UNICODE)
# FTS5 ranks every term; very common words only add noise and time
_STOP = frozenset(
    "a an the of to in on at by for with from and or but is are was were be been it its this "
    "that these those as which who whom whose what when where why how do does did has have had "
    "not no can could would should will may might must about into than then there their they "
    "he she his her we our you your i me my".split()
)
MAX_TERMS = 32

SCHEMA = """
CREATE VIRTUAL TABLE IF NOT EXISTS chunk_text USING fts5(
    text, collection UNINDEXED, document_id UNINDEXED, chunk_id UNINDEXED,
    tokenize = 'porter unicode61 remove_diacritics 2'
);
"""


def match_expression(text: str) -> str:
    """An FTS5 query OR-ing the text's words, each quoted (user text is never FTS syntax)."""
    words = [w for w in dict.fromkeys(w.lower() for w in _WORD.findall(text)) if w not in _STOP]
    return " OR ".join(f'"{w}"' for w in words[:MAX_TERMS])


class KeywordIndex:
    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.existed = self.path.exists()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        with self._connect() as db:
            db.execute("PRAGMA journal_mode=WAL")
            db.executescript(SCHEMA)

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        try:
            yield db
        finally:
            db.close()

    def replace_chunks(self, collection: str, rows: Iterable[tuple[str, str, str]]) -> None:
        """Insert (chunk_id, document_id, text) rows, replacing rows with the same chunk id."""
        rows = list(rows)
        if not rows:
            return
        with self._lock, self._connect() as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                db.executemany("DELETE FROM chunk_text WHERE chunk_id = ? AND collection = ?",
                               [(cid, collection) for cid, _, _ in rows])
                db.executemany(
                    "INSERT INTO chunk_text (text, collection, document_id, chunk_id) "
                    "VALUES (?, ?, ?, ?)",
                    [(text, collection, doc, cid) for cid, doc, text in rows])
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise

    def delete_document(self, collection: str, document_id: str, keep: Sequence[str] = ()) -> None:
        keep_set = set(keep)
        with self._lock, self._connect() as db:
            present = [r[0] for r in db.execute(
                "SELECT chunk_id FROM chunk_text WHERE collection = ? AND document_id = ?",
                (collection, document_id))]
            stale = [cid for cid in present if cid not in keep_set]
            db.executemany("DELETE FROM chunk_text WHERE collection = ? AND chunk_id = ?",
                           [(collection, cid) for cid in stale])

    def search(self, collection: str, text: str, limit: int,
               document_ids: Sequence[str] | None = None) -> list[tuple[str, str, float]]:
        """(chunk_id, document_id, bm25 score — higher is better), best first."""
        expr = match_expression(text)
        if not expr or limit <= 0 or (document_ids is not None and not document_ids):
            return []
        sql = ("SELECT chunk_id, document_id, -bm25(chunk_text) AS s FROM chunk_text "
               "WHERE chunk_text MATCH ? AND collection = ?")
        args: list[object] = [expr, collection]
        if document_ids is not None:
            sql += f" AND document_id IN ({','.join('?' * len(document_ids))})"
            args.extend(document_ids)
        sql += " ORDER BY s DESC LIMIT ?"
        args.append(limit)
        with self._connect() as db:
            return [(r[0], r[1], float(r[2])) for r in db.execute(sql, args)]

    def count(self, collection: str) -> int:
        with self._connect() as db:
            return int(db.execute("SELECT COUNT(*) FROM chunk_text WHERE collection = ?",
                                  (collection,)).fetchone()[0])
