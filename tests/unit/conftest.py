"""What several unit test files share, defined once: import it from here
(``from tests.unit.conftest import FakeStore, make_app``); fixtures are found by pytest.

* :class:`FakeRedis`: the few Redis commands the code under test sends, in memory;
* the registry fixtures ``make_repo``, ``pg_dsn``, ``pg_database``: one test body run on
  SQLite and on PostgreSQL.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import conninfo, sql

from core.ports import DocumentRepository
from core.registry import open_repository
from core.registry.postgres import PostgresDocumentRepository
from core.settings import Settings

# ---------------------------------------------------------------- Redis


class FakeRedis:
    """The Redis commands the code under test sends (counters, locks, the Celery queue and
    unacked set, readiness), in memory; no expiry. ``up=False``: every command fails."""

    def __init__(self, up: bool = True, *, lists: dict[str, list[bytes]] | None = None) -> None:
        self.up = up
        self.values: dict[str, int] = {}
        self.lists: dict[str, list[bytes]] = dict(lists or {})
        self.hashes: dict[str, dict[str, bytes]] = {}

    def _check(self) -> None:
        if not self.up:
            raise ConnectionError("redis down")

    def ping(self) -> bool:
        self._check()
        return True

    def incr(self, key: str) -> int:
        self._check()
        self.values[key] = self.values.get(key, 0) + 1
        return self.values[key]

    def get(self, key: str) -> int | None:
        self._check()
        return self.values.get(key)

    def set(self, key: str, value: int) -> None:
        self._check()
        self.values[key] = value

    def expire(self, key: str, _ttl: int) -> bool:
        self._check()
        return key in self.values

    def delete(self, *keys: str) -> int:
        self._check()
        return sum(store.pop(k, None) is not None
                   for k in keys for store in (self.values, self.lists, self.hashes))

    def llen(self, key: str) -> int:
        self._check()
        return len(self.lists.get(key, []))

    def lrange(self, key: str, start: int, end: int) -> list[bytes]:
        self._check()
        items = self.lists.get(key, [])
        return list(items[start:] if end == -1 else items[start:end + 1])

    def hvals(self, key: str) -> list[bytes]:
        self._check()
        return list(self.hashes.get(key, {}).values())

    def lock(self, *_: Any, **__: Any) -> contextlib.AbstractContextManager[None]:
        return contextlib.nullcontext()

    def pipeline(self, transaction: bool = True) -> FakePipeline:
        return FakePipeline(self)


class FakePipeline:
    """Queues commands; ``execute`` runs them in order and returns their results."""

    def __init__(self, redis: FakeRedis) -> None:
        self.redis = redis
        self.ops: list[tuple[str, tuple[Any, ...]]] = []

    def incr(self, key: str) -> None:
        self.ops.append(("incr", (key,)))

    def expire(self, key: str, ttl: int) -> None:
        self.ops.append(("expire", (key, ttl)))

    def llen(self, key: str) -> None:
        self.ops.append(("llen", (key,)))

    def execute(self) -> list[Any]:
        ops, self.ops = self.ops, []
        return [getattr(self.redis, name)(*args) for name, args in ops]


# ---------------------------------------------------------------- the registry, both backends

# PostgreSQL is expected at ``DOCQA_TEST_POSTGRES_URL`` (a role allowed to create databases);
# when it cannot be reached the PostgreSQL variants fail, they are not skipped
PG_ADMIN_URL = os.environ.get(
    "DOCQA_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
MakeRepo = Callable[[], DocumentRepository]


@pytest.fixture(scope="session")
def pg_database() -> Iterator[str]:
    """DSN of a database created for this session (UTF-8) and dropped at its end."""
    try:
        admin = psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        reason = str(exc).strip()
    else:
        reason = ""
    if reason:
        pytest.fail(
            f"PostgreSQL is not reachable at {PG_ADMIN_URL!r}: {reason}\n"
            "The PostgreSQL registry tests need a server (start it, or point "
            "DOCQA_TEST_POSTGRES_URL at one whose role may CREATE DATABASE).",
            pytrace=False,
        )
    name = f"docqa_test_{secrets.token_hex(6)}"
    admin.execute(sql.SQL("CREATE DATABASE {} TEMPLATE template0 ENCODING 'UTF8'")
                  .format(sql.Identifier(name)))
    try:
        yield conninfo.make_conninfo(PG_ADMIN_URL, dbname=name)
    finally:
        admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)")
                      .format(sql.Identifier(name)))
        admin.close()


@pytest.fixture
def pg_dsn(pg_database: str) -> str:
    """A fresh, empty schema in the session database, selected through the DSN."""
    schema = f"t_{secrets.token_hex(6)}"
    with psycopg.connect(pg_database, autocommit=True) as db:
        db.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    return conninfo.make_conninfo(pg_database, options=f"-csearch_path={schema}")


@pytest.fixture(params=["sqlite", "postgres"])
def make_repo(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[MakeRepo]:
    """Opens (through ``open_repository``) another repository object on one shared store,
    as another process would."""
    url = None if request.param == "sqlite" else request.getfixturevalue("pg_dsn")
    settings = Settings(data_dir=tmp_path / "data", database_url=url)
    made: list[DocumentRepository] = []

    def make() -> DocumentRepository:
        repo = open_repository(settings)
        made.append(repo)
        return repo

    yield make
    for repo in made:
        if isinstance(repo, PostgresDocumentRepository):
            repo.close()
