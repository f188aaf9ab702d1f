"""One open SQLite connection per thread, reused by every call of a store.

Opening a connection per call cost about 1 ms of CPU and, in WAL mode, a checkpoint and
the WAL file's removal at each close when no other connection was open (about 10 ms of
wall time a write, against 3 ms on a kept connection; docs/architecture.md "Ingest
speed"). A store keeps one connection per thread of the process instead:

* per thread, because a ``sqlite3.Connection`` belongs to the thread that opened it;
* per process: a connection inherited through ``fork`` (a Celery pool child, a parse
  child) is never used or closed by the child — it is the parent's, with the parent's
  locks and WAL index — and the child opens its own;
* a nested use on the same thread (a store method called while another holds the
  connection) gets a connection of its own, closed after, as every use did before;
* nothing outlives a call: a transaction a call left open is rolled back when the call
  ends, as closing the connection did, and a call that raised closes the connection.

What erasure needs from the files is unchanged: deleted rows are overwritten in place
(``secure_delete``, set when a connection opens) and the stores that hold secrets truncate
their WAL explicitly (``checkpoint_truncate`` in core/keystore.py), which a kept connection
in autocommit mode, holding no read transaction between calls, does not block.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

# connections inherited through fork: kept referenced so the child never closes them
_inherited: list[sqlite3.Connection] = []


class ThreadConnections:
    def __init__(self, open_connection: Callable[[], sqlite3.Connection]) -> None:
        self._open = open_connection
        self._local = threading.local()

    @contextmanager
    def connection(self) -> Iterator[sqlite3.Connection]:
        local, pid = self._local, os.getpid()
        db: sqlite3.Connection | None = getattr(local, "db", None)
        if db is not None and local.pid != pid:
            _inherited.append(db)
            db = local.db = None
        if db is not None and local.busy:
            fresh = self._open()
            try:
                yield fresh
            finally:
                fresh.close()
            return
        if db is None:
            db = self._open()
            local.db, local.pid = db, pid
        local.busy = True
        try:
            yield db
        except BaseException:
            # whatever failed, the next call starts from a new connection, as before
            local.db = None
            db.close()
            raise
        finally:
            local.busy = False
        if db.in_transaction:
            db.rollback()

    def close(self) -> None:
        """Close this thread's connection (the next use opens another)."""
        db = getattr(self._local, "db", None)
        if db is not None and self._local.pid == os.getpid() and not self._local.busy:
            self._local.db = None
            db.close()
