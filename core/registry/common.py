"""What the registry's two backends share: the row mappers and :class:`SqlRepository`,
which writes every query once for both.

The shared statements are written with sqlite3's ``?`` placeholder; :meth:`SqlRepository._sql`
puts the backend's own (``%s`` for psycopg) in its place, so they hold no other ``?`` and
no ``%``. A backend supplies how a statement runs (:meth:`~SqlRepository._run`, and
:meth:`~SqlRepository._snapshot` for reads that must agree), ``create`` (which the two
databases settle differently when the upload exists already), and the conditions whose SQL
really differs: a filename glob, a list of ids, and text the database cannot store.
"""

from __future__ import annotations

import builtins
import json
import secrets
import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, ClassVar, Protocol, TypeVar

from core.domain import ApiKey, Document, DocumentKind, DocumentStatus, Progress

T = TypeVar("T")

KEY_ID_PREFIX = "k_"
# documents the reconciler (workers/reconcile.py) may queue again
STALE_STATES = (DocumentStatus.QUEUED.value, DocumentStatus.PROCESSING.value)
# documents enable_redaction may queue again (settled ones, when not redacted yet)
ENABLE_REDACTION_STATES = (DocumentStatus.READY.value, DocumentStatus.FAILED.value)


# create's statements (each backend settles an existing upload its own way): a new document
# (arguments from SqlRepository._new_document), and the tenant's one with the same content
INSERT_DOCUMENT = (
    "INSERT INTO documents (id, tenant, filename, kind, sha256, size, status,"
    " metadata, created_at, updated_at, redact_pii)"
    " VALUES (?,?,?,?,?,?,?,?,?,?,?)"
)
SAME_CONTENT = "SELECT * FROM documents WHERE tenant=? AND sha256=?"


class Row(Protocol):
    """A fetched row read by column name: ``sqlite3.Row`` or psycopg's ``dict_row``."""

    def __getitem__(self, key: str, /) -> Any: ...


class Cursor(Protocol):
    @property
    def rowcount(self) -> int: ...

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...


class Connection(Protocol):
    """What the shared queries use of a ``sqlite3.Connection`` or ``psycopg.Connection``."""

    def execute(self, sql: str, args: Sequence[Any] = ..., /) -> Cursor: ...


def new_key_id() -> str:
    """A key's public id: ``k_`` and 16 hex digits (keys stored before ids had this prefix
    keep their 12-hex-digit ids)."""
    return KEY_ID_PREFIX + secrets.token_hex(8)


def key_from_row(row: Row) -> ApiKey:
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


def document_from_row(row: Row) -> Document:
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
        deleting=row["deleted_at"] is not None,
    )


class SqlRepository(ABC):
    """The document registry (``core.ports.DocumentRepository``) over SQL, for a backend
    that says how to run a statement. Statements run in autocommit, each on its own but
    those a backend's :meth:`_snapshot` groups."""

    placeholder: ClassVar[str] = "?"
    # the tenant condition of a statement that also names the ids it wants
    tenant_of_ids: ClassVar[str] = "tenant=?"

    # ------------------------------------------------------------ the backend's part

    @abstractmethod
    def _run(self, work: Callable[[Connection], T]) -> T:
        """``work`` on a connection of this backend."""

    @contextmanager
    def _snapshot(self, db: Connection) -> Iterator[None]:
        """Around reads that must see the same data (a count and its page)."""
        yield

    @abstractmethod
    def _filename_condition(self, pattern: str) -> tuple[str, builtins.list[Any]] | None:
        """The condition for ``filename`` matching the glob ``pattern`` (SQLite's ``GLOB``
        rules), or None when no name can match it."""

    @abstractmethod
    def _name_contains_condition(self, part: str) -> tuple[str, builtins.list[Any]]:
        """The condition for ``filename`` containing ``part``, ignoring letter case."""

    @abstractmethod
    def _ids_condition(self, ids: Sequence[str]) -> tuple[str, builtins.list[Any]]:
        """The condition for ``id`` being one of ``ids``, bound as one value (there may be
        more ids than a statement may have placeholders)."""

    def _text(self, value: str | None) -> str | None:
        """``value`` as this backend can store it."""
        return value

    def _sql(self, statement: str) -> str:
        """``statement`` with this backend's placeholder for each ``?``."""
        return statement.replace("?", self.placeholder)

    def _one(self, statement: str, args: Sequence[Any] = ()) -> Any:
        sql = self._sql(statement)
        return self._run(lambda db: db.execute(sql, args).fetchone())

    def _all(self, statement: str, args: Sequence[Any] = ()) -> builtins.list[Any]:
        sql = self._sql(statement)
        return self._run(lambda db: db.execute(sql, args).fetchall())

    def _change(self, statement: str, args: Sequence[Any] = ()) -> int:
        """Run a statement that writes; returns how many rows it changed."""
        sql = self._sql(statement)
        return self._run(lambda db: db.execute(sql, args).rowcount)

    # ------------------------------------------------------------ documents

    def _new_document(
        self, tenant: str, filename: str, kind: DocumentKind, sha256: str, size: int,
        metadata: dict[str, Any], redact_pii: bool,
    ) -> tuple[Any, ...]:
        """The arguments of :data:`INSERT_DOCUMENT`: a new id, queued, times now."""
        now = time.time()
        return (uuid.uuid4().hex, tenant, self._text(filename), kind.value, sha256, size,
                DocumentStatus.QUEUED.value, json.dumps(metadata), now, now, bool(redact_pii))

    def get(self, doc_id: str, tenant: str | None = None) -> Document | None:
        if tenant is None:
            row = self._one("SELECT * FROM documents WHERE id=?", (doc_id,))
        else:
            row = self._one("SELECT * FROM documents WHERE id=? AND tenant=?", (doc_id, tenant))
        return document_from_row(row) if row else None

    def list(
        self, tenant: str, status: DocumentStatus | None, limit: int, offset: int, *,
        name_contains: str | None = None, newest_first: bool = False,
    ) -> tuple[builtins.list[Document], int]:
        where, args = "tenant=?", [tenant]
        if status is not None:
            where += " AND status=?"
            args.append(status.value)
        if name_contains:
            condition, values = self._name_contains_condition(name_contains)
            where += f" AND {condition}"
            args.extend(values)
        order = "created_at DESC, id DESC" if newest_first else "created_at, id"
        count = self._sql(f"SELECT COUNT(*) AS n FROM documents WHERE {where}")  # noqa: S608
        page = self._sql(f"SELECT * FROM documents WHERE {where}"  # noqa: S608
                         f" ORDER BY {order} LIMIT ? OFFSET ?")

        def work(db: Connection) -> tuple[builtins.list[Document], int]:
            with self._snapshot(db):
                total = db.execute(count, args).fetchone()
                rows = db.execute(page, [*args, limit, offset]).fetchall()
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
    ) -> builtins.list[str]:
        """Ids of the tenant's documents matching every given condition (never another
        tenant's), oldest first. ``filename`` is a glob (``*``, ``?``, ``[...]``; exact when
        it has none); ``metadata`` values must equal the uploaded value, or be in it when
        that is a list. A document being deleted matches nothing."""
        where: builtins.list[str] = [
            "tenant=?" if ids is None else self.tenant_of_ids, "deleted_at IS NULL"]
        args: builtins.list[Any] = [tenant]
        if ids is not None:
            if not ids:
                return []
            condition = self._ids_condition(ids)
            where.append(condition[0])
            args.extend(condition[1])
        if filename is not None:
            matching = self._filename_condition(filename)
            if matching is None:
                return []
            where.append(matching[0])
            args.extend(matching[1])
        if created_from is not None:
            where.append("created_at >= ?")
            args.append(created_from)
        if created_to is not None:
            where.append("created_at < ?")
            args.append(created_to)
        rows = self._all(f"SELECT id, metadata FROM documents WHERE {' AND '.join(where)}"  # noqa: S608
                         " ORDER BY created_at, id", args)
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
        args: builtins.list[Any] = [status.value, self._text(error), time.time()]
        if status is DocumentStatus.QUEUED:
            sets += ["stage='queued'", "done=0", "total=0"]
        if status is DocumentStatus.PROCESSING:  # an ingest starts by parsing (one write)
            sets += ["stage='parsing'", "done=0", "total=0"]
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
            sets += ["pii_counts=?", "redact_pii=TRUE"]
            args.append(json.dumps(pii_counts))
        self._change(f"UPDATE documents SET {', '.join(sets)} WHERE id=?", [*args, doc_id])  # noqa: S608

    def enable_redaction(self, doc_id: str) -> bool:
        return self._change(
            "UPDATE documents SET redact_pii=TRUE, pii_counts=NULL, status='queued',"
            " stage='queued', done=0, total=0, error=NULL, updated_at=?"
            " WHERE id=? AND NOT redact_pii AND status IN (?,?)",
            (time.time(), doc_id, *ENABLE_REDACTION_STATES),
        ) > 0

    def set_progress(self, doc_id: str, progress: Progress) -> None:
        self._change(
            "UPDATE documents SET stage=?, done=?, total=?, updated_at=? WHERE id=?",
            (self._text(progress.stage), progress.done, progress.total, time.time(), doc_id),
        )

    def stale_document_ids(self, updated_before: float, limit: int = 1000) -> builtins.list[str]:
        rows = self._all(
            "SELECT id FROM documents WHERE status IN (?,?) AND updated_at < ?"
            " AND deleted_at IS NULL ORDER BY updated_at, id LIMIT ?",
            (*STALE_STATES, updated_before, limit),
        )
        return [r["id"] for r in rows]

    def requeue_stale(self, doc_id: str, updated_before: float) -> bool:
        return self._change(
            "UPDATE documents SET status='queued', stage='queued', done=0, total=0, error=NULL,"
            " updated_at=? WHERE id=? AND status IN (?,?) AND updated_at < ?"
            " AND deleted_at IS NULL",
            (time.time(), doc_id, *STALE_STATES, updated_before),
        ) > 0

    def mark_deleting(self, doc_id: str) -> bool:
        return self._change("UPDATE documents SET deleted_at=COALESCE(deleted_at, ?) WHERE id=?",
                            (time.time(), doc_id)) > 0

    def delete(self, doc_id: str) -> bool:
        return self._change("DELETE FROM documents WHERE id=?", (doc_id,)) > 0

    def get_many(self, tenant: str, ids: Sequence[str]) -> builtins.list[Document]:
        """The tenant's documents among ``ids`` (another tenant's and unknown ids are simply
        absent), in no particular order; one statement however many ids."""
        if not ids:
            return []
        condition, args = self._ids_condition(ids)
        rows = self._all(f"SELECT * FROM documents WHERE {self.tenant_of_ids} "  # noqa: S608
                         f"AND {condition}", [tenant, *args])
        return [document_from_row(r) for r in rows]

    def count_by_status(self, tenant: str | None = None) -> dict[str, int]:
        """Documents per status: of one tenant, or of all (``/metrics``, at scrape time)."""
        if tenant is None:
            rows = self._all("SELECT status, COUNT(*) AS n FROM documents GROUP BY status")
        else:
            rows = self._all("SELECT status, COUNT(*) AS n FROM documents WHERE tenant=?"
                             " GROUP BY status", (tenant,))
        return {str(r["status"]): int(r["n"]) for r in rows}

    # ------------------------------------------------------------ API keys

    def add_key(self, key_hash: str, tenant: str, name: str) -> str:
        key_id = new_key_id()
        self._change(
            "INSERT INTO api_keys (id, key_hash, tenant, name, created_at) VALUES (?,?,?,?,?)",
            (key_id, key_hash, tenant, self._text(name), time.time()),
        )
        return key_id

    def tenant_for_key_hash(self, key_hash: str) -> str | None:
        row = self._one(
            "SELECT tenant FROM api_keys WHERE key_hash=? AND revoked_at IS NULL", (key_hash,)
        )
        return row["tenant"] if row else None

    def key_for_hash(self, key_hash: str) -> ApiKey | None:
        row = self._one(
            "SELECT * FROM api_keys WHERE key_hash=? AND revoked_at IS NULL", (key_hash,)
        )
        return key_from_row(row) if row else None

    def list_keys(self, tenant: str | None = None) -> builtins.list[ApiKey]:
        sql = "SELECT id, tenant, name, created_at, revoked_at FROM api_keys"
        args: tuple[Any, ...] = ()
        if tenant is not None:
            sql, args = sql + " WHERE tenant=?", (tenant,)
        return [key_from_row(r) for r in self._all(sql + " ORDER BY created_at, id", args)]

    def revoke_key(self, key_id: str) -> bool:
        return self._change(
            "UPDATE api_keys SET revoked_at=COALESCE(revoked_at, ?) WHERE id=?",
            (time.time(), key_id),
        ) > 0

    def count_keys(self) -> int:
        row = self._one("SELECT COUNT(*) AS n FROM api_keys WHERE revoked_at IS NULL")
        return int(row["n"]) if row else 0
