"""SQLite implementation of the document registry (the embedded default), and
:func:`open_repository`, which picks it or the PostgreSQL one (``core.registry_pg``).

One short-lived connection per call: safe across threads and processes (WAL mode).
"""

from __future__ import annotations

import json
import secrets
import sqlite3
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.domain import ApiKey, Document, DocumentKind, DocumentStatus, Progress

if TYPE_CHECKING:
    from core.ports import DocumentRepository
    from core.settings import Settings

_SCHEMA = """
CREATE TABLE IF NOT EXISTS documents (
    id TEXT PRIMARY KEY,
    tenant TEXT NOT NULL,
    filename TEXT NOT NULL,
    kind TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    size INTEGER NOT NULL,
    status TEXT NOT NULL,
    stage TEXT NOT NULL DEFAULT 'queued',
    done INTEGER NOT NULL DEFAULT 0,
    total INTEGER NOT NULL DEFAULT 0,
    chunks INTEGER NOT NULL DEFAULT 0,
    pages INTEGER NOT NULL DEFAULT 0,
    error TEXT,
    metadata TEXT NOT NULL DEFAULT '{}',
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    redact_pii INTEGER NOT NULL DEFAULT 0,
    pii_counts TEXT,
    UNIQUE (tenant, sha256)
);
CREATE INDEX IF NOT EXISTS documents_tenant_status ON documents (tenant, status, created_at);
CREATE TABLE IF NOT EXISTS api_keys (
    id TEXT PRIMARY KEY,
    key_hash TEXT NOT NULL UNIQUE,
    tenant TEXT NOT NULL,
    name TEXT NOT NULL DEFAULT '',
    created_at REAL NOT NULL,
    revoked_at REAL
);
"""
# Columns api_keys must have (added to older files that lack one), then its indexes.
_KEY_COLUMNS = {
    "name": "TEXT NOT NULL DEFAULT ''",
    "created_at": "REAL NOT NULL DEFAULT 0",
    "revoked_at": "REAL",
}
# Columns documents must have (added to older files that lack one): PII redaction.
_DOC_COLUMNS = {
    "redact_pii": "INTEGER NOT NULL DEFAULT 0",
    "pii_counts": "TEXT",
}
_KEY_INDEX = "CREATE INDEX IF NOT EXISTS api_keys_tenant ON api_keys (tenant, created_at)"
KEY_ID_PREFIX = "k_"


def new_key_id() -> str:
    """A key's public id: ``k_`` and 16 hex digits (keys stored before ids had this prefix
    keep their 12-hex-digit ids)."""
    return KEY_ID_PREFIX + secrets.token_hex(8)


def key_from_row(row: Mapping[str, Any] | sqlite3.Row) -> ApiKey:
    """An ``api_keys`` row (any backend) as an :class:`ApiKey` (the hash is left behind)."""
    return ApiKey(id=row["id"], tenant=row["tenant"], name=row["name"] or "",
                  created_at=float(row["created_at"]),
                  revoked_at=None if row["revoked_at"] is None else float(row["revoked_at"]))


def metadata_matches(stored: dict[str, Any], wanted: dict[str, Any]) -> bool:
    for key, value in wanted.items():
        have = stored.get(key)
        if isinstance(have, list):
            if value not in have:
                return False
        elif have != value or isinstance(have, bool) != isinstance(value, bool):
            return False
    return True


def document_from_row(row: Mapping[str, Any] | sqlite3.Row) -> Document:
    """A ``documents`` row (same columns in every backend) as a :class:`Document`."""
    return Document(
        id=row["id"],
        tenant=row["tenant"],
        filename=row["filename"],
        kind=DocumentKind(row["kind"]),
        sha256=row["sha256"],
        size=row["size"],
        status=DocumentStatus(row["status"]),
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        progress=Progress(row["stage"], row["done"], row["total"]),
        chunks=row["chunks"],
        pages=row["pages"],
        error=row["error"],
        metadata=json.loads(row["metadata"]),
        redact_pii=bool(row["redact_pii"]),
        pii_counts=None if row["pii_counts"] is None else json.loads(row["pii_counts"]),
    )


# enable_redaction's update (both backends): only a settled document that is not redacted yet
ENABLE_REDACTION_SET = (
    "pii_counts=NULL, status='queued', stage='queued', done=0, total=0, error=NULL"
)
ENABLE_REDACTION_STATES = (DocumentStatus.READY.value, DocumentStatus.FAILED.value)
# documents the reconciler (workers/reconcile.py) may queue again, and what it sets
STALE_STATES = (DocumentStatus.QUEUED.value, DocumentStatus.PROCESSING.value)
REQUEUE_SET = "status='queued', stage='queued', done=0, total=0, error=NULL"


def open_repository(settings: Settings) -> DocumentRepository:
    """The registry the settings select: PostgreSQL when ``database_url``
    (``DOCQA_DATABASE_URL``) is set, otherwise SQLite at ``settings.registry_path``."""
    if settings.database_url:
        from core.registry_pg import PostgresDocumentRepository

        return PostgresDocumentRepository(settings.database_url)
    return SqliteDocumentRepository(settings.registry_path)


class SqliteDocumentRepository:
    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as db:
            db.execute("PRAGMA journal_mode=WAL")
            db.executescript(_SCHEMA)
            for table, columns in (("api_keys", _KEY_COLUMNS), ("documents", _DOC_COLUMNS)):
                have = {r["name"] for r in db.execute(f"PRAGMA table_info({table})")}
                for column, decl in columns.items():
                    if column not in have:
                        try:
                            db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {decl}")
                        except sqlite3.OperationalError as exc:  # another process added it first
                            if "duplicate column" not in str(exc).lower():
                                raise
            db.execute(_KEY_INDEX)

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        db.row_factory = sqlite3.Row
        try:
            db.execute("PRAGMA busy_timeout=30000")
            yield db
        finally:
            db.close()

    @staticmethod
    def _row(row: sqlite3.Row) -> Document:
        return document_from_row(row)

    def create(
        self,
        *,
        tenant: str,
        filename: str,
        kind: DocumentKind,
        sha256: str,
        size: int,
        metadata: dict[str, Any],
        redact_pii: bool = False,
    ) -> tuple[Document, bool]:
        now = time.time()
        doc_id = uuid.uuid4().hex
        with self._connect() as db:
            try:
                db.execute(
                    "INSERT INTO documents (id, tenant, filename, kind, sha256, size, status,"
                    " metadata, created_at, updated_at, redact_pii)"
                    " VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                    (doc_id, tenant, filename, kind.value, sha256, size,
                     DocumentStatus.QUEUED.value, json.dumps(metadata), now, now,
                     int(redact_pii)),
                )
                created = True
            except sqlite3.IntegrityError:
                created = False
            row = db.execute(
                "SELECT * FROM documents WHERE tenant=? AND sha256=?", (tenant, sha256)
            ).fetchone()
        return self._row(row), created

    def get(self, doc_id: str, tenant: str | None = None) -> Document | None:
        with self._connect() as db:
            if tenant is None:
                row = db.execute("SELECT * FROM documents WHERE id=?", (doc_id,)).fetchone()
            else:
                row = db.execute(
                    "SELECT * FROM documents WHERE id=? AND tenant=?", (doc_id, tenant)
                ).fetchone()
        return self._row(row) if row else None

    def list(
        self, tenant: str, status: DocumentStatus | None, limit: int, offset: int
    ) -> tuple[list[Document], int]:
        where, args = "tenant=?", [tenant]
        if status is not None:
            where += " AND status=?"
            args.append(status.value)
        with self._connect() as db:
            total = db.execute(f"SELECT COUNT(*) FROM documents WHERE {where}", args).fetchone()[0]  # noqa: S608
            rows = db.execute(
                f"SELECT * FROM documents WHERE {where} ORDER BY created_at, id LIMIT ? OFFSET ?",  # noqa: S608
                [*args, limit, offset],
            ).fetchall()
        return [self._row(r) for r in rows], total

    def find_ids(
        self,
        tenant: str,
        *,
        ids: Sequence[str] | None = None,
        filename: str | None = None,
        created_from: float | None = None,
        created_to: float | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> list[str]:
        """Ids of the tenant's documents matching every given condition (never another
        tenant's). ``filename`` is a glob (``*``, ``?``; exact when it has neither);
        ``metadata`` values must equal the uploaded value, or be in it when that is a list."""
        where, args = ["tenant=?"], [tenant]
        if ids is not None:
            if not ids:
                return []
            where.append(f"id IN ({','.join('?' * len(ids))})")
            args.extend(ids)
        if filename is not None:
            where.append("filename GLOB ?")
            args.append(filename)
        if created_from is not None:
            where.append("created_at >= ?")
            args.append(created_from)
        if created_to is not None:
            where.append("created_at < ?")
            args.append(created_to)
        sql = f"SELECT id, metadata FROM documents WHERE {' AND '.join(where)}"  # noqa: S608
        with self._connect() as db:
            rows = db.execute(sql, args).fetchall()
        if not metadata:
            return [r["id"] for r in rows]
        return [r["id"] for r in rows if metadata_matches(json.loads(r["metadata"]), metadata)]

    def set_status(
        self,
        doc_id: str,
        status: DocumentStatus,
        *,
        error: str | None = None,
        chunks: int | None = None,
        pages: int | None = None,
        pii_counts: dict[str, int] | None = None,
    ) -> None:
        sets = ["status=?", "error=?", "updated_at=?"]
        args: list[Any] = [status.value, error, time.time()]
        if status is DocumentStatus.QUEUED:
            sets += ["stage='queued'", "done=0", "total=0"]
        if status is DocumentStatus.READY:
            sets += ["stage='ready'"]
        if status is DocumentStatus.FAILED:
            sets += ["stage='failed'"]
        if chunks is not None:
            sets.append("chunks=?")
            args.append(chunks)
        if pages is not None:
            sets.append("pages=?")
            args.append(pages)
        if pii_counts is not None:
            sets += ["pii_counts=?", "redact_pii=1"]
            args.append(json.dumps(pii_counts))
        with self._connect() as db:
            db.execute(f"UPDATE documents SET {', '.join(sets)} WHERE id=?", [*args, doc_id])  # noqa: S608

    def enable_redaction(self, doc_id: str) -> bool:
        with self._connect() as db:
            cur = db.execute(
                f"UPDATE documents SET redact_pii=1, {ENABLE_REDACTION_SET}, updated_at=?"  # noqa: S608
                " WHERE id=? AND redact_pii=0 AND status IN (?,?)",
                (time.time(), doc_id, *ENABLE_REDACTION_STATES),
            )
        return cur.rowcount > 0

    def set_progress(self, doc_id: str, progress: Progress) -> None:
        with self._connect() as db:
            db.execute(
                "UPDATE documents SET stage=?, done=?, total=?, updated_at=? WHERE id=?",
                (progress.stage, progress.done, progress.total, time.time(), doc_id),
            )

    def stale_document_ids(self, updated_before: float, limit: int = 1000) -> list[str]:
        with self._connect() as db:
            rows = db.execute(
                "SELECT id FROM documents WHERE status IN (?,?) AND updated_at < ?"
                " ORDER BY updated_at, id LIMIT ?",
                (*STALE_STATES, updated_before, limit),
            ).fetchall()
        return [r["id"] for r in rows]

    def requeue_stale(self, doc_id: str, updated_before: float) -> bool:
        with self._connect() as db:
            cur = db.execute(
                f"UPDATE documents SET {REQUEUE_SET}, updated_at=?"  # noqa: S608
                " WHERE id=? AND status IN (?,?) AND updated_at < ?",
                (time.time(), doc_id, *STALE_STATES, updated_before),
            )
        return cur.rowcount > 0

    def delete(self, doc_id: str) -> bool:
        with self._connect() as db:
            cur = db.execute("DELETE FROM documents WHERE id=?", (doc_id,))
        return cur.rowcount > 0

    def add_key(self, key_hash: str, tenant: str, name: str) -> str:
        key_id = new_key_id()
        with self._connect() as db:
            db.execute(
                "INSERT INTO api_keys (id, key_hash, tenant, name, created_at) VALUES (?,?,?,?,?)",
                (key_id, key_hash, tenant, name, time.time()),
            )
        return key_id

    def tenant_for_key_hash(self, key_hash: str) -> str | None:
        with self._connect() as db:
            row = db.execute(
                "SELECT tenant FROM api_keys WHERE key_hash=? AND revoked_at IS NULL", (key_hash,)
            ).fetchone()
        return row["tenant"] if row else None

    def key_for_hash(self, key_hash: str) -> ApiKey | None:
        with self._connect() as db:
            row = db.execute(
                "SELECT * FROM api_keys WHERE key_hash=? AND revoked_at IS NULL", (key_hash,)
            ).fetchone()
        return key_from_row(row) if row else None

    def list_keys(self, tenant: str | None = None) -> list[ApiKey]:
        sql = "SELECT id, tenant, name, created_at, revoked_at FROM api_keys"
        args: tuple[Any, ...] = ()
        if tenant is not None:
            sql, args = sql + " WHERE tenant=?", (tenant,)
        with self._connect() as db:
            rows = db.execute(sql + " ORDER BY created_at, id", args).fetchall()
        return [key_from_row(r) for r in rows]

    def revoke_key(self, key_id: str) -> bool:
        with self._connect() as db:
            cur = db.execute(
                "UPDATE api_keys SET revoked_at=COALESCE(revoked_at, ?) WHERE id=?",
                (time.time(), key_id),
            )
        return cur.rowcount > 0

    def count_keys(self) -> int:
        with self._connect() as db:
            return int(
                db.execute("SELECT COUNT(*) FROM api_keys WHERE revoked_at IS NULL").fetchone()[0]
            )

    def count_by_status(self) -> dict[str, int]:
        """Documents per status, all tenants (``/metrics``, at scrape time)."""
        with self._connect() as db:
            rows = db.execute("SELECT status, COUNT(*) FROM documents GROUP BY status")
            return {str(r[0]): int(r[1]) for r in rows}
