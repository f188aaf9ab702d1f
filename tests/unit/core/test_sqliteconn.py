"""core/sqliteconn.py: one kept SQLite connection per thread and process, reused by every
call of a store, with the guarantees a connection per call gave (real SQLite files)."""

from __future__ import annotations

import os
import sqlite3
import threading
from pathlib import Path

import pytest

from core.sqliteconn import ThreadConnections


def _cache(path: Path) -> tuple[ThreadConnections, list[sqlite3.Connection]]:
    opened: list[sqlite3.Connection] = []

    def open_() -> sqlite3.Connection:
        db = sqlite3.connect(path, timeout=30, isolation_level=None)
        opened.append(db)
        return db

    cache = ThreadConnections(open_)
    with cache.connection() as db:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("CREATE TABLE IF NOT EXISTS t (v TEXT)")
    return cache, opened


def _rows(path: Path) -> list[str]:
    with sqlite3.connect(path) as other:
        return [r[0] for r in other.execute("SELECT v FROM t ORDER BY rowid")]


def test_one_thread_reuses_one_connection_and_other_threads_get_their_own(tmp_path: Path) -> None:
    cache, opened = _cache(tmp_path / "a.sqlite3")
    for i in range(5):
        with cache.connection() as db:
            db.execute("INSERT INTO t VALUES (?)", (f"main {i}",))
    assert len(opened) == 1

    def other_thread() -> None:
        for i in range(3):
            with cache.connection() as db:
                db.execute("INSERT INTO t VALUES (?)", (f"thread {i}",))

    t = threading.Thread(target=other_thread)
    t.start()
    t.join()
    assert len(opened) == 2 and opened[0] is not opened[1]
    assert len(_rows(tmp_path / "a.sqlite3")) == 8  # every write committed, seen by others


def test_a_nested_use_gets_a_connection_of_its_own_closed_after(tmp_path: Path) -> None:
    cache, opened = _cache(tmp_path / "a.sqlite3")
    with cache.connection() as outer:
        outer.execute("BEGIN IMMEDIATE")
        outer.execute("INSERT INTO t VALUES ('outer')")
        with cache.connection() as inner:
            assert inner is not outer
            assert inner.execute("SELECT count(*) FROM t").fetchone()[0] == 0  # not committed
        outer.execute("COMMIT")
    assert len(opened) == 2
    with pytest.raises(sqlite3.ProgrammingError):  # the nested one was closed
        opened[1].execute("SELECT 1")
    with cache.connection() as again:
        assert again is outer


def test_a_transaction_left_open_is_rolled_back_when_the_call_ends(tmp_path: Path) -> None:
    cache, _ = _cache(tmp_path / "a.sqlite3")
    with cache.connection() as db:
        db.execute("BEGIN")
        db.execute("INSERT INTO t VALUES ('never committed')")
    assert _rows(tmp_path / "a.sqlite3") == []
    with cache.connection() as db:
        assert not db.in_transaction
        db.execute("INSERT INTO t VALUES ('kept')")
    assert _rows(tmp_path / "a.sqlite3") == ["kept"]


def test_a_call_that_raised_leaves_nothing_and_the_next_call_opens_a_new_connection(
    tmp_path: Path,
) -> None:
    cache, opened = _cache(tmp_path / "a.sqlite3")
    with pytest.raises(RuntimeError), cache.connection() as db:
        db.execute("BEGIN IMMEDIATE")
        db.execute("INSERT INTO t VALUES ('half')")
        raise RuntimeError("the caller failed")
    assert _rows(tmp_path / "a.sqlite3") == []
    with cache.connection() as db:
        assert db is not opened[0]
    assert len(opened) == 2


def test_a_forked_child_opens_its_own_and_never_touches_the_parents(tmp_path: Path) -> None:
    path = tmp_path / "a.sqlite3"
    cache, opened = _cache(path)
    with cache.connection() as db:
        db.execute("INSERT INTO t VALUES ('parent before')")
    pid = os.fork()
    if pid == 0:  # the child: its own connection, the parent's left alone
        code = 1
        try:
            with cache.connection() as db:
                db.execute("INSERT INTO t VALUES ('child')")
                code = 0 if db is not opened[0] and len(opened) == 2 else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    with cache.connection() as db:  # the parent's connection still works after the child
        assert db is opened[0]
        db.execute("INSERT INTO t VALUES ('parent after')")
    assert _rows(path) == ["parent before", "child", "parent after"]
