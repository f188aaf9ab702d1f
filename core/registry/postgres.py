"""PostgreSQL implementation of the document registry (API and workers on several machines).

The same queries as the SQLite one (``core/registry/common.py``) on the same tables and
columns: times as epoch seconds, metadata stored as the JSON text given and matched by
:func:`core.registry.common.metadata_matches`, ``filename`` filters with SQLite's ``GLOB``
rules (translated to a PostgreSQL regular expression by :func:`glob_to_regex`).

Connections: a small pool per process, opened lazily and never shared across ``fork`` (a
child drops what it inherited, unclosed: those sockets are the parent's). Every statement
runs in autocommit, as the SQLite repository's do. The schema is created on first use,
under an advisory lock, so several processes starting at once are safe. A ``search_path``
given in the DSN (``?options=-csearch_path%3Ddocqa``) puts the tables in that schema.
"""

from __future__ import annotations

import os
import threading
import weakref
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar, cast

import psycopg
from psycopg import conninfo
from psycopg.pq import TransactionStatus
from psycopg.rows import dict_row

from core.domain import Document, DocumentKind
from core.errors import ConfigurationError, TransientError
from core.registry.common import (
    INSERT_DOCUMENT,
    SAME_CONTENT,
    Connection,
    SqlRepository,
    document_from_row,
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
    deleted_at DOUBLE PRECISION,
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
ALTER TABLE documents ADD COLUMN IF NOT EXISTS deleted_at DOUBLE PRECISION;
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

    def __init__(self, dsn: str, max_idle: int,
                 on_connect: Callable[[psycopg.Connection[dict[str, Any]]], None]) -> None:
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


class PostgresDocumentRepository(SqlRepository):
    placeholder = "%s"

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

    @contextmanager
    def _snapshot(self, db: Connection) -> Iterator[None]:
        pg = cast("psycopg.Connection[dict[str, Any]]", db)  # what _run passes
        with pg.transaction():  # one snapshot for the count and the page
            pg.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
            yield

    def _filename_condition(self, pattern: str) -> tuple[str, list[Any]] | None:
        if not _has_wildcards(pattern):
            return "filename = ?", [pattern]
        regex = glob_to_regex(pattern)
        return None if regex is None else ("filename ~ ?", [regex])

    def _name_contains_condition(self, part: str) -> tuple[str, list[Any]]:
        # the column sorts bytewise ("C"), whose lower() folds ASCII only: fold with the
        # database's own locale, as Python folds the part
        return ('strpos(lower(filename COLLATE "default"), ?) > 0',
                [_no_nul(part.lower())])

    def _ids_condition(self, ids: Sequence[str]) -> tuple[str, list[Any]]:
        return "id = ANY(?)", [list(ids)]  # one array, however many ids

    def _text(self, value: str | None) -> str | None:
        return _no_nul(value)

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
        insert = self._sql(INSERT_DOCUMENT + " ON CONFLICT (tenant, sha256) DO NOTHING RETURNING *")
        existing = self._sql(SAME_CONTENT)

        def work(db: psycopg.Connection[dict[str, Any]]) -> tuple[Document, bool]:
            for _ in range(5):  # the existing row may be deleted between the two statements
                row = db.execute(insert, self._new_document(
                    tenant, filename, kind, sha256, size, metadata, redact_pii)).fetchone()
                if row is not None:
                    return document_from_row(row), True
                row = db.execute(existing, (tenant, sha256)).fetchone()
                if row is not None:
                    return document_from_row(row), False
            raise TransientError("document registry busy: the same upload is being replaced")

        return self._run(work)

    def close(self) -> None:
        """Close this process's idle connections (optional; they also close at exit)."""
        self._pool.discard_idle()
