"""PostgreSQL implementation of the document registry (API and workers on several machines).

Same interface and semantics as :class:`core.registry.SqliteDocumentRepository`: the same
tables and columns, times as epoch seconds, metadata stored as the JSON text given and
matched by :func:`core.registry.metadata_matches`, ``filename`` filters with SQLite's
``GLOB`` rules (translated to a PostgreSQL regular expression by :func:`glob_to_regex`).

Connections: a small pool per process, opened lazily and never shared across ``fork`` (a
child drops what it inherited, unclosed: those sockets are the parent's). Every statement
runs in autocommit, as the SQLite repository's do. The schema is created on first use,
under an advisory lock, so several processes starting at once are safe. A ``search_path``
given in the DSN (``?options=-csearch_path%3Ddocqa``) puts the tables in that schema.
"""

from __future__ import annotations

import json
import os
import threading
import time
import uuid
import weakref
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import psycopg
from psycopg import conninfo
from psycopg.pq import TransactionStatus
from psycopg.rows import dict_row

from core.domain import ApiKey, Document, DocumentKind, DocumentStatus, Progress
from core.errors import ConfigurationError, TransientError
from core.registry import (
    ENABLE_REDACTION_SET,
    ENABLE_REDACTION_STATES,
    REQUEUE_SET,
    STALE_STATES,
    document_from_row,
    key_from_row,
    metadata_matches,
    new_key_id,
)

T = TypeVar("T")

# Text columns compare by code point (COLLATE "C"), as SQLite's do: ORDER BY and GLOB agree.
_SCHEMA = """
CREATE TABLE IF NOT EXISTS documents (
    id TEXT COLLATE "C" PRIMARY KEY,
    tenant TEXT COLLATE "C" NOT NULL,
    filename TEXT COLLATE "C" NOT NULL,
    kind TEXT NOT NULL,
    sha256 TEXT COLLATE "C" NOT NULL,
    size BIGINT NOT NULL,
    status TEXT NOT NULL,
    stage TEXT NOT NULL DEFAULT 'queued',
    done BIGINT NOT NULL DEFAULT 0,
    total BIGINT NOT NULL DEFAULT 0,
    chunks BIGINT NOT NULL DEFAULT 0,
    pages BIGINT NOT NULL DEFAULT 0,
    error TEXT,
    metadata TEXT NOT NULL DEFAULT '{}',
    created_at DOUBLE PRECISION NOT NULL,
    updated_at DOUBLE PRECISION NOT NULL,
    redact_pii BOOLEAN NOT NULL DEFAULT FALSE,
    pii_counts TEXT,
    UNIQUE (tenant, sha256)
);
CREATE INDEX IF NOT EXISTS documents_tenant_status ON documents (tenant, status, created_at);
CREATE TABLE IF NOT EXISTS api_keys (
    id TEXT COLLATE "C" PRIMARY KEY,
    key_hash TEXT COLLATE "C" NOT NULL UNIQUE,
    tenant TEXT COLLATE "C" NOT NULL,
    name TEXT NOT NULL DEFAULT '',
    created_at DOUBLE PRECISION NOT NULL,
    revoked_at DOUBLE PRECISION
);
ALTER TABLE api_keys ADD COLUMN IF NOT EXISTS name TEXT NOT NULL DEFAULT '';
ALTER TABLE api_keys ADD COLUMN IF NOT EXISTS created_at DOUBLE PRECISION NOT NULL DEFAULT 0;
ALTER TABLE api_keys ADD COLUMN IF NOT EXISTS revoked_at DOUBLE PRECISION;
CREATE INDEX IF NOT EXISTS api_keys_tenant ON api_keys (tenant, created_at);
ALTER TABLE documents ADD COLUMN IF NOT EXISTS redact_pii BOOLEAN NOT NULL DEFAULT FALSE;
ALTER TABLE documents ADD COLUMN IF NOT EXISTS pii_counts TEXT;
"""
_SCHEMA_LOCK = 0x646F637161  # pg_advisory_xact_lock key ("docqa"): one schema creator at a time
_CONNECT_TIMEOUT_S = 5


def glob_to_regex(pattern: str) -> str | None:
    """An anchored PostgreSQL (ARE) regular expression matching what SQLite's
    ``name GLOB pattern`` matches, or None when the pattern can match nothing (an
    unterminated ``[``).

    SQLite's rules: ``*`` any run of characters, ``?`` one character, ``[...]`` one of the
    listed characters or ranges (``[^...]`` none of them; ``]`` first in the list is
    literal; ``-`` first or last is literal); everything else, ``\\`` included, is literal and
    case-sensitive. Every character but ASCII letters and digits is written as a
    ``\\UXXXXXXXX`` escape, which PostgreSQL and Python's ``re`` read the same way.
    """
    out = ["^"]
    i, n = 0, len(pattern)
    while i < n:
        c = pattern[i]
        i += 1
        if c == "*":
            out.append(".*")
        elif c == "?":
            out.append(".")
        elif c == "[":
            invert = False
            ranges: list[tuple[str, str]] = []
            if i < n and pattern[i] == "^":
                invert, i = True, i + 1
            if i < n and pattern[i] == "]":
                ranges.append(("]", "]"))
                i += 1
            prior: str | None = None
            closed = False
            while i < n:
                c2 = pattern[i]
                i += 1
                if c2 == "]":
                    closed = True
                    break
                if c2 == "-" and prior is not None and i < n and pattern[i] != "]":
                    high = pattern[i]
                    i += 1
                    if prior <= high:  # a reversed range adds nothing (its start is listed)
                        ranges.append((prior, high))
                    prior = None
                else:
                    ranges.append((c2, c2))
                    prior = c2
            if not closed:
                return None
            body = "".join(
                _escape(lo) if lo == hi else f"{_escape(lo)}-{_escape(hi)}" for lo, hi in ranges
            )
            out.append(f"[{'^' if invert else ''}{body}]")
        else:
            out.append(_escape(c))
    out.append("$")
    return "".join(out)


def _escape(ch: str) -> str:
    if ch.isascii() and ch.isalnum():
        return ch
    return f"\\U{ord(ch):08X}"


def _has_wildcards(pattern: str) -> bool:
    return any(ch in pattern for ch in "*?[")


def _no_nul(text: str | None) -> str | None:
    """PostgreSQL text cannot hold NUL (SQLite's can): keep the rest of e.g. an error."""
    return None if text is None else text.replace("\x00", "\ufffd")


def _checked_dsn(dsn: str) -> str:
    scheme = dsn.split("://", 1)[0].lower() if "://" in dsn else None
    if scheme is not None and scheme not in ("postgresql", "postgres"):
        raise ConfigurationError(
            f"database URL scheme {scheme!r} is not supported: "
            "use postgresql://user@host:5432/dbname"
        )
    try:
        params = conninfo.conninfo_to_dict(dsn)
    except psycopg.ProgrammingError as exc:  # the message may quote the URL: not its password
        reason = str(exc).split(" in URI")[0].split(" in connection info")[0].strip()
        raise ConfigurationError(f"invalid database URL: {reason}") from None
    if not all(p.strip().isdigit() for p in str(params.get("port") or "5432").split(",")):
        raise ConfigurationError("invalid database URL: the port must be a number")
    if "connect_timeout" not in params:
        dsn = conninfo.make_conninfo(dsn, connect_timeout=_CONNECT_TIMEOUT_S)
    return dsn


def _redacted(dsn: str) -> str:
    """host:port/dbname, for messages (never the password)."""
    p = conninfo.conninfo_to_dict(dsn)
    return f"{p.get('host', 'localhost')}:{p.get('port', 5432)}/{p.get('dbname', '')}"


# Objects whose locks and connections must not carry over into a forked child.
_FORK_SENSITIVE: weakref.WeakSet[Any] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for obj in list(_FORK_SENSITIVE):
        obj._after_fork()


os.register_at_fork(after_in_child=_after_fork_in_child)


class _Pool:
    """A few idle autocommit connections, thread-safe, owned by one process id.

    After ``fork`` the child forgets the inherited connections without closing them (closing
    would end the parent's sessions) and opens its own; its lock is new too (another thread
    of the parent may have held it at the fork).
    """

    def __init__(self, dsn: str, max_idle: int, on_connect: Callable[[psycopg.Connection], None]):
        self._dsn = dsn
        self._max_idle = max_idle
        self._on_connect = on_connect
        self._lock = threading.Lock()
        self._pid = os.getpid()
        self._idle: list[psycopg.Connection[dict[str, Any]]] = []
        _FORK_SENSITIVE.add(self)

    def _after_fork(self) -> None:
        self._lock = threading.Lock()
        self._idle = []
        self._pid = os.getpid()

    def _own(self) -> None:
        if self._pid != os.getpid():
            self._idle = []
            self._pid = os.getpid()

    def take(self) -> tuple[psycopg.Connection[dict[str, Any]], bool]:
        """A connection, and whether it is a reused one."""
        with self._lock:
            self._own()
            while self._idle:
                conn = self._idle.pop()
                if not conn.closed:
                    return conn, True
        try:
            conn = psycopg.connect(self._dsn, autocommit=True, row_factory=dict_row)
        except psycopg.OperationalError as exc:
            reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise TransientError(
                f"registry database {_redacted(self._dsn)} unavailable: {reason}"
            ) from exc
        try:
            self._on_connect(conn)
        except BaseException:
            conn.close()
            raise
        return conn, False

    def give(self, conn: psycopg.Connection[dict[str, Any]], pid: int) -> None:
        if pid != os.getpid():
            return  # taken before a fork: the parent's connection, not ours to close
        healthy = not conn.closed and conn.info.transaction_status == TransactionStatus.IDLE
        with self._lock:
            self._own()
            if healthy and len(self._idle) < self._max_idle:
                self._idle.append(conn)
                return
        conn.close()

    def discard_idle(self) -> None:
        with self._lock:
            self._own()
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()


class PostgresDocumentRepository:
    def __init__(self, dsn: str, *, max_idle: int = 4) -> None:
        self.dsn = _checked_dsn(dsn)
        self._schema_ready = False
        self._schema_lock = threading.Lock()
        self._pool = _Pool(self.dsn, max_idle, self._ensure_schema)
        _FORK_SENSITIVE.add(self)

    def _after_fork(self) -> None:
        self._schema_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"PostgresDocumentRepository({_redacted(self.dsn)!r})"

    def _ensure_schema(self, conn: psycopg.Connection[dict[str, Any]]) -> None:
        if self._schema_ready:
            return
        with self._schema_lock:
            if self._schema_ready:
                return
            # the newest schema object last: a database made by an older version is migrated
            exists = conn.execute(
                "SELECT to_regclass('documents') IS NOT NULL"
                " AND to_regclass('api_keys') IS NOT NULL"
                " AND to_regclass('api_keys_tenant') IS NOT NULL"
                " AND EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = to_regclass('documents')"
                " AND attname = 'pii_counts' AND NOT attisdropped) AS ok"
            ).fetchone()
            if not (exists and exists["ok"]):
                with conn.transaction():
                    conn.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK,))
                    conn.execute(_SCHEMA)
            self._schema_ready = True

    def _run(self, work: Callable[[psycopg.Connection[dict[str, Any]]], T]) -> T:
        """Run ``work`` on a pooled connection. A reused connection found dead (server
        restarted, idle connection dropped) is replaced once; an unreachable server is a
        ``TransientError`` (503 in the API, a retry in the workers)."""
        for attempt in (1, 2):
            pid = os.getpid()
            conn, reused = self._pool.take()
            try:
                result = work(conn)
            except psycopg.OperationalError as exc:
                if conn.broken or conn.closed:
                    self._pool.give(conn, pid)
                    if reused and attempt == 1:
                        self._pool.discard_idle()
                        continue
                    raise TransientError(f"registry database connection lost: {exc}") from exc
                self._pool.give(conn, pid)
                raise
            except BaseException:
                self._pool.give(conn, pid)
                raise
            self._pool.give(conn, pid)
            return result
        raise AssertionError("unreachable")  # pragma: no cover

    # ------------------------------------------------------------ documents

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
        def work(db: psycopg.Connection[dict[str, Any]]) -> tuple[Document, bool]:
            for _ in range(5):  # the existing row may be deleted between the two statements
                now = time.time()
                row = db.execute(
                    "INSERT INTO documents (id, tenant, filename, kind, sha256, size, status,"
                    " metadata, created_at, updated_at, redact_pii)"
                    " VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s)"
                    " ON CONFLICT (tenant, sha256) DO NOTHING RETURNING *",
                    (uuid.uuid4().hex, tenant, _no_nul(filename), kind.value, sha256, size,
                     DocumentStatus.QUEUED.value, json.dumps(metadata), now, now,
                     bool(redact_pii)),
                ).fetchone()
                if row is not None:
                    return document_from_row(row), True
                row = db.execute(
                    "SELECT * FROM documents WHERE tenant=%s AND sha256=%s", (tenant, sha256)
                ).fetchone()
                if row is not None:
                    return document_from_row(row), False
            raise TransientError("document registry busy: the same upload is being replaced")

        return self._run(work)

    def get(self, doc_id: str, tenant: str | None = None) -> Document | None:
        if tenant is None:
            sql, args = "SELECT * FROM documents WHERE id=%s", (doc_id,)
        else:
            sql, args = "SELECT * FROM documents WHERE id=%s AND tenant=%s", (doc_id, tenant)
        row = self._run(lambda db: db.execute(sql, args).fetchone())
        return document_from_row(row) if row else None

    def list(
        self, tenant: str, status: DocumentStatus | None, limit: int, offset: int
    ) -> tuple[list[Document], int]:
        where, args = "tenant=%s", [tenant]
        if status is not None:
            where += " AND status=%s"
            args.append(status.value)

        def work(db: psycopg.Connection[dict[str, Any]]) -> tuple[list[Document], int]:
            with db.transaction():  # one snapshot for the count and the page
                db.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
                total = db.execute(
                    f"SELECT COUNT(*) AS n FROM documents WHERE {where}", args  # noqa: S608
                ).fetchone()
                rows = db.execute(
                    f"SELECT * FROM documents WHERE {where}"  # noqa: S608
                    " ORDER BY created_at, id LIMIT %s OFFSET %s",
                    [*args, limit, offset],
                ).fetchall()
            return [document_from_row(r) for r in rows], int(total["n"]) if total else 0

        return self._run(work)

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
        where: list[str] = ["tenant=%s"]
        args: list[Any] = [tenant]
        if ids is not None:
            if not ids:
                return []
            where.append("id = ANY(%s)")
            args.append(list(ids))
        if filename is not None:
            if _has_wildcards(filename):
                regex = glob_to_regex(filename)
                if regex is None:
                    return []
                where.append("filename ~ %s")
                args.append(regex)
            else:
                where.append("filename = %s")
                args.append(filename)
        if created_from is not None:
            where.append("created_at >= %s")
            args.append(created_from)
        if created_to is not None:
            where.append("created_at < %s")
            args.append(created_to)
        sql = (f"SELECT id, metadata FROM documents WHERE {' AND '.join(where)}"  # noqa: S608
               " ORDER BY created_at, id")
        rows = self._run(lambda db: db.execute(sql, args).fetchall())
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
        sets = ["status=%s", "error=%s", "updated_at=%s"]
        args: list[Any] = [status.value, _no_nul(error), time.time()]
        if status is DocumentStatus.QUEUED:
            sets += ["stage='queued'", "done=0", "total=0"]
        if status is DocumentStatus.READY:
            sets += ["stage='ready'"]
        if status is DocumentStatus.FAILED:
            sets += ["stage='failed'"]
        if chunks is not None:
            sets.append("chunks=%s")
            args.append(chunks)
        if pages is not None:
            sets.append("pages=%s")
            args.append(pages)
        if pii_counts is not None:
            sets += ["pii_counts=%s", "redact_pii=TRUE"]
            args.append(json.dumps(pii_counts))
        sql = f"UPDATE documents SET {', '.join(sets)} WHERE id=%s"  # noqa: S608
        self._run(lambda db: db.execute(sql, [*args, doc_id]))

    def enable_redaction(self, doc_id: str) -> bool:
        rowcount = self._run(lambda db: db.execute(
            f"UPDATE documents SET redact_pii=TRUE, {ENABLE_REDACTION_SET}, updated_at=%s"  # noqa: S608
            " WHERE id=%s AND NOT redact_pii AND status IN (%s,%s)",
            (time.time(), doc_id, *ENABLE_REDACTION_STATES),
        ).rowcount)
        return rowcount > 0

    def set_progress(self, doc_id: str, progress: Progress) -> None:
        self._run(lambda db: db.execute(
            "UPDATE documents SET stage=%s, done=%s, total=%s, updated_at=%s WHERE id=%s",
            (_no_nul(progress.stage), progress.done, progress.total, time.time(), doc_id),
        ))

    def stale_document_ids(self, updated_before: float, limit: int = 1000) -> list[str]:
        rows = self._run(lambda db: db.execute(
            "SELECT id FROM documents WHERE status IN (%s,%s) AND updated_at < %s"
            " ORDER BY updated_at, id LIMIT %s",
            (*STALE_STATES, updated_before, limit),
        ).fetchall())
        return [r["id"] for r in rows]

    def requeue_stale(self, doc_id: str, updated_before: float) -> bool:
        rowcount = self._run(lambda db: db.execute(
            f"UPDATE documents SET {REQUEUE_SET}, updated_at=%s"  # noqa: S608
            " WHERE id=%s AND status IN (%s,%s) AND updated_at < %s",
            (time.time(), doc_id, *STALE_STATES, updated_before),
        ).rowcount)
        return rowcount > 0

    def delete(self, doc_id: str) -> bool:
        rowcount = self._run(
            lambda db: db.execute("DELETE FROM documents WHERE id=%s", (doc_id,)).rowcount
        )
        return rowcount > 0

    # ------------------------------------------------------------ API keys

    def add_key(self, key_hash: str, tenant: str, name: str) -> str:
        key_id = new_key_id()
        self._run(lambda db: db.execute(
            "INSERT INTO api_keys (id, key_hash, tenant, name, created_at) VALUES (%s,%s,%s,%s,%s)",
            (key_id, key_hash, tenant, _no_nul(name), time.time()),
        ))
        return key_id

    def tenant_for_key_hash(self, key_hash: str) -> str | None:
        row = self._run(lambda db: db.execute(
            "SELECT tenant FROM api_keys WHERE key_hash=%s AND revoked_at IS NULL", (key_hash,)
        ).fetchone())
        return row["tenant"] if row else None

    def key_for_hash(self, key_hash: str) -> ApiKey | None:
        row = self._run(lambda db: db.execute(
            "SELECT * FROM api_keys WHERE key_hash=%s AND revoked_at IS NULL", (key_hash,)
        ).fetchone())
        return key_from_row(row) if row else None

    def list_keys(self, tenant: str | None = None) -> list[ApiKey]:
        sql = "SELECT id, tenant, name, created_at, revoked_at FROM api_keys"
        args: tuple[Any, ...] = ()
        if tenant is not None:
            sql, args = sql + " WHERE tenant=%s", (tenant,)
        rows = self._run(lambda db: db.execute(sql + " ORDER BY created_at, id", args).fetchall())
        return [key_from_row(r) for r in rows]

    def revoke_key(self, key_id: str) -> bool:
        rowcount = self._run(lambda db: db.execute(
            "UPDATE api_keys SET revoked_at=COALESCE(revoked_at, %s) WHERE id=%s",
            (time.time(), key_id),
        ).rowcount)
        return rowcount > 0

    def count_keys(self) -> int:
        row = self._run(lambda db: db.execute(
            "SELECT COUNT(*) AS n FROM api_keys WHERE revoked_at IS NULL"
        ).fetchone())
        return int(row["n"]) if row else 0

    def count_by_status(self) -> dict[str, int]:
        """Documents per status, all tenants (``/metrics``, at scrape time)."""
        rows = self._run(lambda db: db.execute(
            "SELECT status, COUNT(*) AS n FROM documents GROUP BY status").fetchall())
        return {str(r["status"]): int(r["n"]) for r in rows}

    def close(self) -> None:
        """Close this process's idle connections (optional; they also close at exit)."""
        self._pool.discard_idle()
