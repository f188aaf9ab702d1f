"""Wrapped data keys of the encrypted files (``core/crypto.py``) and of documents' chunk
text (``core/textcrypt.py``, ids ``text-<document id>``), by key id.

They live in the registry's database — SQLite ``DATA/registry.sqlite3`` (table
``file_keys``) or PostgreSQL when ``DOCQA_DATABASE_URL`` is set — so every API process and
worker that sees the registry sees the keys, and a text key is created in the same
statement that checks the document is still registered
(:meth:`KeyStore.put_if_registered`). Deleting a key is the crypto-erasure of its file: on
SQLite the row is overwritten (``secure_delete``) and :meth:`scrub` checkpoints
the WAL so no older copy of the page stays in ``registry.sqlite3-wal``.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from core.errors import TransientError
from core.sqliteconn import ThreadConnections

if TYPE_CHECKING:
    import psycopg

    from core.settings import Settings

_SQLITE_SCHEMA = """
CREATE TABLE IF NOT EXISTS file_keys (
    key_id TEXT PRIMARY KEY,
    wrapped BLOB NOT NULL,
    created_at REAL NOT NULL
)
"""
_PG_SCHEMA_LOCK = 0x646F6B6579  # pg_advisory_xact_lock key ("dokey"): one schema creator
_PG_SCHEMA = """
CREATE TABLE IF NOT EXISTS file_keys (
    key_id TEXT PRIMARY KEY,
    wrapped BYTEA NOT NULL,
    created_at DOUBLE PRECISION NOT NULL
)
"""


class KeyStore(Protocol):
    def put(self, key_id: str, wrapped: bytes) -> None: ...

    def put_if_absent(self, key_id: str, wrapped: bytes) -> bool:
        """Store the key unless one with that id exists; True when this one was stored."""

    def put_if_registered(self, key_id: str, wrapped: bytes, document_id: str) -> bool:
        """Store the key unless one with that id exists, and only while the registry (the
        same database) holds ``document_id`` with no DELETE begun on it, in one statement:
        a key can never be made for a document that is gone or going. True when stored."""

    def get(self, key_id: str) -> bytes | None: ...

    def get_many(self, key_ids: list[str]) -> dict[str, bytes]:
        """The stored keys among ``key_ids`` (one round trip)."""

    def delete(self, key_id: str) -> bool: ...

    def list(self) -> list[tuple[str, float]]:
        """(key id, created_at) of every stored key."""

    def scrub(self) -> bool:
        """Make deleted keys unrecoverable from the store's files; True when done."""


def checkpoint_truncate(db: sqlite3.Connection, attempts: int = 20) -> bool:
    """``wal_checkpoint(TRUNCATE)``, retried while a reader holds an old snapshot."""
    for _ in range(attempts):
        busy = db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        if busy is None or busy[0] == 0:
            return True
        time.sleep(0.1)
    return False


class SqliteKeyStore:
    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._connections = ThreadConnections(self._open)
        with self._connect() as db:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute(_SQLITE_SCHEMA)

    def _open(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        db.execute("PRAGMA busy_timeout=30000")
        db.execute("PRAGMA secure_delete=ON")
        return db

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        with self._connections.connection() as db:
            yield db

    def put(self, key_id: str, wrapped: bytes) -> None:
        with self._connect() as db:
            db.execute("INSERT OR REPLACE INTO file_keys (key_id, wrapped, created_at) "
                       "VALUES (?, ?, ?)", (key_id, wrapped, time.time()))

    def put_if_absent(self, key_id: str, wrapped: bytes) -> bool:
        with self._connect() as db:
            cur = db.execute("INSERT OR IGNORE INTO file_keys (key_id, wrapped, created_at) "
                             "VALUES (?, ?, ?)", (key_id, wrapped, time.time()))
        return cur.rowcount > 0

    def put_if_registered(self, key_id: str, wrapped: bytes, document_id: str) -> bool:
        with self._connect() as db:
            cur = db.execute("INSERT OR IGNORE INTO file_keys (key_id, wrapped, created_at) "
                             "SELECT ?, ?, ? WHERE EXISTS (SELECT 1 FROM documents "
                             "WHERE id = ? AND deleted_at IS NULL)",
                             (key_id, wrapped, time.time(), document_id))
        return cur.rowcount > 0

    def get(self, key_id: str) -> bytes | None:
        with self._connect() as db:
            row = db.execute("SELECT wrapped FROM file_keys WHERE key_id = ?",
                             (key_id,)).fetchone()
        return bytes(row[0]) if row else None

    def get_many(self, key_ids: list[str]) -> dict[str, bytes]:
        out: dict[str, bytes] = {}
        with self._connect() as db:
            for i in range(0, len(key_ids), 500):
                part = key_ids[i:i + 500]
                out.update((str(r[0]), bytes(r[1])) for r in db.execute(
                    f"SELECT key_id, wrapped FROM file_keys WHERE key_id IN "  # noqa: S608
                    f"({','.join('?' * len(part))})", part))
        return out

    def delete(self, key_id: str) -> bool:
        with self._connect() as db:
            cur = db.execute("DELETE FROM file_keys WHERE key_id = ?", (key_id,))
        return cur.rowcount > 0

    def list(self) -> list[tuple[str, float]]:
        with self._connect() as db:
            return [(r[0], float(r[1])) for r in
                    db.execute("SELECT key_id, created_at FROM file_keys")]

    def scrub(self) -> bool:
        with self._connect() as db:
            return checkpoint_truncate(db)


class PostgresKeyStore:
    """Same table in PostgreSQL. Deleted rows stay in PostgreSQL's heap and WAL until they
    are vacuumed and recycled: :meth:`scrub` runs ``VACUUM`` on the table (docs/erasure.md)."""

    def __init__(self, url: str) -> None:
        self.url = url
        with self._connect() as db, db.transaction():
            # CREATE TABLE IF NOT EXISTS is not safe against itself: two processes starting
            # at once (an API and a worker, on two machines) both create the row type and one
            # fails on a unique violation. One creator at a time.
            db.execute("SELECT pg_advisory_xact_lock(%s)", (_PG_SCHEMA_LOCK,))
            db.execute(_PG_SCHEMA)

    @contextmanager
    def _connect(self) -> Iterator[psycopg.Connection[tuple[Any, ...]]]:
        import psycopg  # loaded only by processes configured for PostgreSQL

        try:
            conn = psycopg.connect(self.url, autocommit=True)
        except psycopg.OperationalError as exc:
            raise TransientError(f"key store database unavailable: {type(exc).__name__}") from exc
        try:
            yield conn
        finally:
            conn.close()

    def put(self, key_id: str, wrapped: bytes) -> None:
        with self._connect() as db:
            db.execute("INSERT INTO file_keys (key_id, wrapped, created_at) VALUES (%s, %s, %s) "
                       "ON CONFLICT (key_id) DO UPDATE SET wrapped = EXCLUDED.wrapped",
                       (key_id, wrapped, time.time()))

    def put_if_absent(self, key_id: str, wrapped: bytes) -> bool:
        with self._connect() as db:
            cur = db.execute("INSERT INTO file_keys (key_id, wrapped, created_at) "
                             "VALUES (%s, %s, %s) ON CONFLICT (key_id) DO NOTHING",
                             (key_id, wrapped, time.time()))
        return bool(cur.rowcount)

    def put_if_registered(self, key_id: str, wrapped: bytes, document_id: str) -> bool:
        with self._connect() as db:
            cur = db.execute("INSERT INTO file_keys (key_id, wrapped, created_at) "
                             "SELECT %s, %s, %s WHERE EXISTS (SELECT 1 FROM documents "
                             "WHERE id = %s AND deleted_at IS NULL) "
                             "ON CONFLICT (key_id) DO NOTHING",
                             (key_id, wrapped, time.time(), document_id))
        return bool(cur.rowcount)

    def get(self, key_id: str) -> bytes | None:
        with self._connect() as db:
            row = db.execute("SELECT wrapped FROM file_keys WHERE key_id = %s",
                             (key_id,)).fetchone()
        return bytes(row[0]) if row else None

    def get_many(self, key_ids: list[str]) -> dict[str, bytes]:
        if not key_ids:
            return {}
        with self._connect() as db:
            rows = db.execute("SELECT key_id, wrapped FROM file_keys "
                              "WHERE key_id = ANY(%s)", (key_ids,)).fetchall()
        return {str(r[0]): bytes(r[1]) for r in rows}

    def delete(self, key_id: str) -> bool:
        with self._connect() as db:
            cur = db.execute("DELETE FROM file_keys WHERE key_id = %s", (key_id,))
        return bool(cur.rowcount)

    def list(self) -> list[tuple[str, float]]:
        with self._connect() as db:
            return [(r[0], float(r[1])) for r in
                    db.execute("SELECT key_id, created_at FROM file_keys")]

    def scrub(self) -> bool:
        with self._connect() as db:
            db.execute("VACUUM file_keys")
        return True


def open_keystore(settings: Settings) -> KeyStore:
    if settings.database_url:
        return PostgresKeyStore(settings.database_url)
    return SqliteKeyStore(settings.registry_path)
