"""The document registry's contract, run against every backend: SQLite (in a temp dir) and
PostgreSQL (a database created for this test session and dropped at its end, one fresh
schema per test).

PostgreSQL is expected at ``DOCQA_TEST_POSTGRES_URL`` (default
``postgresql://postgres@127.0.0.1:5432/postgres``, a role allowed to create databases); when
it cannot be reached the PostgreSQL variants fail, they are not skipped. The fixtures
(``make_repo``, ``pg_dsn``) are in tests/unit/conftest.py: other tests use them too.
"""

from __future__ import annotations

import multiprocessing
import os
import sqlite3
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psycopg
import pytest

from core.domain import DocumentKind, DocumentStatus, Progress
from core.errors import ConfigurationError, TransientError
from core.ports import DocumentRepository
from core.registry import SqliteDocumentRepository, open_repository
from core.registry.postgres import PostgresDocumentRepository
from core.settings import Settings
from tests.unit.conftest import MakeRepo

# ---------------------------------------------------------------- fixtures


@pytest.fixture
def repo(make_repo: MakeRepo) -> DocumentRepository:
    return make_repo()


def _add(repo: DocumentRepository, tenant: str, name: str, sha: str,
         metadata: dict | None = None, kind: DocumentKind = DocumentKind.PDF):
    doc, _ = repo.create(tenant=tenant, filename=name, kind=kind,
                         sha256=sha.ljust(64, "0"), size=10, metadata=metadata or {})
    return doc


# ---------------------------------------------------------------- selection


def test_open_repository_picks_the_backend_from_the_settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DOCQA_DATABASE_URL", raising=False)
    sqlite_repo = open_repository(Settings(data_dir=tmp_path))
    assert isinstance(sqlite_repo, SqliteDocumentRepository)
    assert sqlite_repo.path == tmp_path / "registry.sqlite3"

    monkeypatch.setenv("DOCQA_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/docqa")
    settings = Settings(data_dir=tmp_path)
    assert settings.database_url == "postgresql://postgres@127.0.0.1:5432/docqa"
    assert isinstance(open_repository(settings), PostgresDocumentRepository)  # lazy: no connect


@pytest.mark.parametrize("url", ["sqlite:///tmp/x.db", "mysql://root@db/docqa",
                                 "postgresql://host:notaport/db", "postgresql://[::1/db",
                                 "host=db port"])
def test_unusable_database_urls_are_configuration_errors(url: str) -> None:
    with pytest.raises(ConfigurationError):
        PostgresDocumentRepository(url)


def test_unreachable_postgres_is_a_transient_error() -> None:
    repo = PostgresDocumentRepository("postgresql://postgres@127.0.0.1:1/docqa?connect_timeout=2")
    with pytest.raises(TransientError, match="registry database"):
        repo.get("x")


# ---------------------------------------------------------------- documents


def test_create_get_and_list_are_per_tenant(repo: DocumentRepository) -> None:
    a = _add(repo, "acme", "a.pdf", "1", {"team": "legal"})
    b = _add(repo, "acme", "b.pdf", "2")
    g = _add(repo, "globex", "g.pdf", "3")
    assert a.status is DocumentStatus.QUEUED and a.progress == Progress("queued", 0, 0)
    assert a.created_at == a.updated_at and a.metadata == {"team": "legal"}

    assert repo.get(a.id, "acme") == a
    assert repo.get(a.id) == a
    assert repo.get(a.id, "globex") is None
    assert repo.get("missing") is None

    docs, total = repo.list("acme", None, 10, 0)
    assert total == 2 and [d.id for d in docs] == [a.id, b.id]
    docs, total = repo.list("globex", None, 10, 0)
    assert total == 1 and docs == [g]
    assert repo.list("initech", None, 10, 0) == ([], 0)


def test_get_many_and_counts_are_per_tenant(repo: DocumentRepository) -> None:
    a = _add(repo, "acme", "a.pdf", "1")
    b = _add(repo, "acme", "b.pdf", "2")
    g = _add(repo, "globex", "g.pdf", "3")
    repo.set_status(b.id, DocumentStatus.READY, chunks=3, pages=1)
    got = repo.get_many("acme", [a.id, b.id, g.id, "nope"])
    assert sorted(d.id for d in got) == sorted([a.id, b.id])  # globex's id is simply absent
    assert {d.id: d.status for d in got}[b.id] is DocumentStatus.READY
    assert repo.get_many("acme", []) == []
    assert [d.id for d in repo.get_many("globex", [a.id, g.id])] == [g.id]
    many = [f"x{i}" for i in range(5000)] + [a.id]  # more ids than a statement has variables
    assert [d.id for d in repo.get_many("acme", many)] == [a.id]
    assert repo.count_by_status("acme") == {"queued": 1, "ready": 1}
    assert repo.count_by_status("globex") == {"queued": 1}
    assert repo.count_by_status("initech") == {}
    assert repo.count_by_status() == {"queued": 2, "ready": 1}


def test_same_bytes_give_the_existing_document_within_a_tenant(repo: DocumentRepository) -> None:
    first, created = repo.create(tenant="acme", filename="a.pdf", kind=DocumentKind.PDF,
                                 sha256="f" * 64, size=3, metadata={"v": 1})
    assert created
    again, created = repo.create(tenant="acme", filename="renamed.pdf", kind=DocumentKind.TEXT,
                                 sha256="f" * 64, size=3, metadata={"v": 2})
    assert not created and again == first
    other, created = repo.create(tenant="globex", filename="a.pdf", kind=DocumentKind.PDF,
                                 sha256="f" * 64, size=3, metadata={})
    assert created and other.id != first.id


def test_list_filters_by_status_and_pages_in_creation_order(repo: DocumentRepository) -> None:
    docs = [_add(repo, "acme", f"d{i}.txt", str(i), kind=DocumentKind.TEXT) for i in range(5)]
    repo.set_status(docs[1].id, DocumentStatus.READY, chunks=3, pages=1)
    repo.set_status(docs[3].id, DocumentStatus.READY)
    page, total = repo.list("acme", None, 2, 1)
    assert total == 5 and [d.id for d in page] == [docs[1].id, docs[2].id]
    ready, total = repo.list("acme", DocumentStatus.READY, 10, 0)
    assert total == 2 and [d.id for d in ready] == [docs[1].id, docs[3].id]
    assert repo.list("acme", DocumentStatus.FAILED, 10, 0) == ([], 0)
    assert repo.list("acme", None, 10, 50) == ([], 5)


def test_list_by_part_of_the_name_any_case_newest_first(repo: DocumentRepository) -> None:
    names = ["Q1 Report.pdf", "notes.txt", "q2 REPORT.pdf", "Ärende-rapport.txt", "100%_x.txt"]
    docs = [_add(repo, "acme", name, str(i)) for i, name in enumerate(names)]
    _add(repo, "globex", "report.pdf", "g")
    page, total = repo.list("acme", None, 10, 0, name_contains="report")
    assert total == 2 and [d.id for d in page] == [docs[0].id, docs[2].id]
    page, total = repo.list("acme", None, 1, 1, name_contains="REPORT", newest_first=True)
    assert total == 2 and [d.id for d in page] == [docs[0].id]
    assert [d.id for d in repo.list("acme", None, 10, 0, name_contains="ärende")[0]] == [
        docs[3].id]
    # no wildcards: "%" and "_" are themselves
    assert [d.id for d in repo.list("acme", None, 10, 0, name_contains="0%_")[0]] == [docs[4].id]
    assert repo.list("acme", None, 10, 0, name_contains="%")[1] == 1
    assert repo.list("acme", DocumentStatus.READY, 10, 0, name_contains="report") == ([], 0)
    newest, _ = repo.list("acme", None, 10, 0, newest_first=True)
    assert [d.id for d in newest] == [d.id for d in reversed(docs)]


def test_status_transitions(repo: DocumentRepository) -> None:
    doc = _add(repo, "acme", "a.pdf", "1")
    repo.set_status(doc.id, DocumentStatus.PROCESSING)
    got = repo.get(doc.id)  # an ingest starts by parsing: the same write says so
    assert got is not None and got.progress == Progress("parsing", 0, 0)
    repo.set_progress(doc.id, Progress("embedding", 4, 10))
    got = repo.get(doc.id)
    assert got is not None and got.status is DocumentStatus.PROCESSING
    assert got.progress == Progress("embedding", 4, 10) and got.updated_at >= doc.updated_at

    repo.set_status(doc.id, DocumentStatus.READY, chunks=10, pages=2)
    got = repo.get(doc.id)
    assert got is not None and (got.status, got.progress.stage) == (DocumentStatus.READY, "ready")
    assert (got.chunks, got.pages, got.error) == (10, 2, None)
    assert (got.progress.done, got.progress.total) == (4, 10)

    repo.set_status(doc.id, DocumentStatus.FAILED, error="bad\x00 bytes")
    got = repo.get(doc.id)
    assert got is not None and (got.status, got.progress.stage) == (DocumentStatus.FAILED, "failed")
    assert got.error is not None and got.error.startswith("bad") and got.error.endswith(" bytes")
    assert (got.chunks, got.pages) == (10, 2)  # kept unless given

    repo.set_status(doc.id, DocumentStatus.QUEUED)  # a re-upload: progress starts over
    got = repo.get(doc.id)
    assert got is not None and got.status is DocumentStatus.QUEUED and got.error is None
    assert got.progress == Progress("queued", 0, 0)

    repo.set_status("missing", DocumentStatus.READY)  # no row: nothing happens
    repo.set_progress("missing", Progress("x", 1, 1))


def test_delete(repo: DocumentRepository) -> None:
    doc = _add(repo, "acme", "a.pdf", "1")
    keep = _add(repo, "acme", "b.pdf", "2")
    assert repo.delete(doc.id) is True
    assert repo.delete(doc.id) is False
    assert repo.get(doc.id) is None and repo.get(keep.id) is not None
    again, created = repo.create(tenant="acme", filename="a.pdf", kind=DocumentKind.PDF,
                                 sha256="1".ljust(64, "0"), size=10, metadata={})
    assert created and again.id != doc.id  # the same bytes may be uploaded again


# ---------------------------------------------------------------- find_ids (filters)


def _filter_corpus(repo: DocumentRepository) -> dict[str, str]:
    ids = {}
    for tenant, name, meta, sha in [
        ("acme", "contract-2024.pdf", {"team": "legal", "tags": ["contract", "nda"]}, "1"),
        ("acme", "handbook.docx", {"team": "hr", "year": 2024}, "2"),
        ("globex", "contract-globex.pdf", {"team": "legal"}, "3"),
    ]:
        doc, _ = repo.create(tenant=tenant, filename=name, kind=DocumentKind.PDF,
                             sha256=sha * 64, size=10, metadata=meta)
        ids[name] = doc.id
    return ids


def test_conditions_combine_within_the_tenant(repo: DocumentRepository) -> None:
    ids = _filter_corpus(repo)
    assert set(repo.find_ids("acme")) == {ids["contract-2024.pdf"], ids["handbook.docx"]}
    assert repo.find_ids("acme", filename="contract-*") == [ids["contract-2024.pdf"]]
    assert repo.find_ids("acme", metadata={"team": "legal"}) == [ids["contract-2024.pdf"]]
    assert repo.find_ids("acme", metadata={"tags": "nda"}) == [ids["contract-2024.pdf"]]
    assert repo.find_ids("acme", metadata={"year": 2024}) == [ids["handbook.docx"]]
    assert repo.find_ids("acme", metadata={"year": "2024"}) == []
    assert repo.find_ids("acme", created_from=time.time() + 60) == []
    assert len(repo.find_ids("acme", created_to=time.time() + 60)) == 2
    assert repo.find_ids("acme", filename="*.pdf", metadata={"tags": "contract"},
                         ids=list(ids.values())) == [ids["contract-2024.pdf"]]
    assert repo.find_ids("acme", filename="*.pdf", metadata={"team": "hr"}) == []


def test_ids_of_another_tenant_never_match(repo: DocumentRepository) -> None:
    ids = _filter_corpus(repo)
    assert repo.find_ids("acme", ids=[ids["contract-globex.pdf"]]) == []
    assert repo.find_ids("acme", ids=[]) == []
    assert repo.find_ids("acme", filename="contract-globex.pdf") == []
    assert repo.find_ids("globex", filename="*") == [ids["contract-globex.pdf"]]
    assert repo.find_ids("acme", ids=[ids["handbook.docx"], "nope"]) == [ids["handbook.docx"]]


def test_created_bounds_are_from_inclusive_to_exclusive(repo: DocumentRepository) -> None:
    doc = _add(repo, "acme", "a.pdf", "1")
    assert repo.find_ids("acme", created_from=doc.created_at) == [doc.id]
    assert repo.find_ids("acme", created_to=doc.created_at) == []
    assert repo.find_ids("acme", created_from=doc.created_at,
                         created_to=doc.created_at + 0.001) == [doc.id]


def test_metadata_booleans_and_lists(repo: DocumentRepository) -> None:
    flag = _add(repo, "acme", "a.pdf", "1", {"flag": True, "n": 1, "tags": [1, "x"]})
    one = _add(repo, "acme", "b.pdf", "2", {"flag": 1, "n": 1.0})
    assert repo.find_ids("acme", metadata={"flag": True}) == [flag.id]
    assert repo.find_ids("acme", metadata={"flag": 1}) == [one.id]
    assert repo.find_ids("acme", metadata={"n": 1}) == [flag.id, one.id]
    assert repo.find_ids("acme", metadata={"tags": 1, "flag": True}) == [flag.id]
    assert repo.find_ids("acme", metadata={"tags": "y"}) == []


GLOB_NAMES = ["contract-2024.pdf", "Contract.PDF", "report (1).pdf", "[draft].pdf", "d.pdf",
              "a]b", "a-b", "a\\b", "a.b", "a+b", "résumé.txt", "ñ.md", "100%_done.txt", "x"]
GLOB_PATTERNS = ["contract-*", "*.pdf", "*.PDF", "?.pdf", "*(1)*", "[draft].pdf", "[[]draft].pdf",
                 "[]]*", "a[]-]b", "a[^-]b", "[a-c]*", "[c-a]*", "a\\b", "a.b", "a+b",
                 "r?sum?.txt", "[é-ñ]*", "*[0-9]*", "100%_done.txt", "100%*", "_*", "[", "a[b",
                 "*[!x]", "x", "X", "*"]


def test_filename_globs_match_like_sqlite_glob(repo: DocumentRepository) -> None:
    ids = {name: _add(repo, "acme", name, f"{i:02d}").id for i, name in enumerate(GLOB_NAMES)}
    by_id = {v: k for k, v in ids.items()}
    oracle = sqlite3.connect(":memory:")
    for pattern in GLOB_PATTERNS:
        expected = {n for n in GLOB_NAMES
                    if oracle.execute("SELECT ? GLOB ?", (n, pattern)).fetchone()[0]}
        got = {by_id[i] for i in repo.find_ids("acme", filename=pattern)}
        assert got == expected, pattern


# ---------------------------------------------------------------- API keys


def test_keys(repo: DocumentRepository) -> None:
    assert repo.count_keys() == 0
    assert repo.tenant_for_key_hash("h1") is None
    key_id = repo.add_key("h1", "acme", "ci")
    assert key_id.startswith("k_") and len(key_id) == 18
    repo.add_key("h2", "globex", "")
    assert repo.tenant_for_key_hash("h1") == "acme"
    assert repo.tenant_for_key_hash("h2") == "globex"
    assert repo.count_keys() == 2
    with pytest.raises(Exception):  # noqa: B017 - each backend's integrity error
        repo.add_key("h1", "globex", "same hash twice")
    assert repo.tenant_for_key_hash("h1") == "acme" and repo.count_keys() == 2


def test_keys_are_listed_without_secrets_and_revoked(repo: DocumentRepository) -> None:
    assert repo.list_keys() == [] and repo.list_keys("acme") == []
    before = time.time()
    a1 = repo.add_key("hash-a1", "acme", "ci")
    g1 = repo.add_key("hash-g1", "globex", "")
    a2 = repo.add_key("hash-a2", "acme", "laptop")
    assert len({a1, g1, a2}) == 3
    listed = repo.list_keys()
    assert [k.id for k in listed] == [a1, g1, a2]  # oldest first
    assert [(k.tenant, k.name, k.revoked_at, k.active) for k in listed] == [
        ("acme", "ci", None, True), ("globex", "", None, True), ("acme", "laptop", None, True)]
    assert all(before <= k.created_at <= time.time() for k in listed)
    assert not any("hash" in repr(k) for k in listed)  # the record has no hash field
    assert [k.id for k in repo.list_keys("acme")] == [a1, a2]
    assert repo.list_keys("initech") == []

    found = repo.key_for_hash("hash-a2")
    assert found is not None and (found.id, found.tenant, found.name) == (a2, "acme", "laptop")
    assert repo.key_for_hash("nope") is None

    assert repo.revoke_key(a1) is True
    assert repo.tenant_for_key_hash("hash-a1") is None and repo.key_for_hash("hash-a1") is None
    assert repo.tenant_for_key_hash("hash-a2") == "acme"  # the tenant's other key still works
    assert repo.count_keys() == 2
    revoked = {k.id: k for k in repo.list_keys("acme")}[a1]
    assert not revoked.active and revoked.revoked_at is not None
    assert revoked.revoked_at >= revoked.created_at
    assert repo.revoke_key(a1) is True  # idempotent: the first revocation time is kept
    assert {k.id: k for k in repo.list_keys()}[a1].revoked_at == revoked.revoked_at
    assert repo.revoke_key("k_0000000000000000") is False
    assert repo.revoke_key("") is False


def test_a_key_revoked_by_one_process_stops_working_in_another(make_repo: MakeRepo) -> None:
    api, cli = make_repo(), make_repo()
    key_id = api.add_key("h", "acme", "")
    assert api.tenant_for_key_hash("h") == "acme"  # the API has looked it up before
    assert cli.revoke_key(key_id)
    assert api.tenant_for_key_hash("h") is None and api.key_for_hash("h") is None


def test_sqlite_registry_from_an_older_version_is_migrated(tmp_path: Path) -> None:
    path = tmp_path / "registry.sqlite3"
    old = sqlite3.connect(path)
    old.executescript(
        "CREATE TABLE api_keys (id TEXT PRIMARY KEY, key_hash TEXT NOT NULL UNIQUE,"
        " tenant TEXT NOT NULL);"
        "INSERT INTO api_keys VALUES ('0123456789ab', 'old-hash', 'acme');")
    old.close()
    repo = SqliteDocumentRepository(path)
    SqliteDocumentRepository(path)  # opening it again (another process) changes nothing
    assert repo.tenant_for_key_hash("old-hash") == "acme"
    [key] = repo.list_keys()
    assert (key.id, key.tenant, key.name, key.revoked_at) == ("0123456789ab", "acme", "", None)
    new_id = repo.add_key("new-hash", "acme", "n")
    assert [k.id for k in repo.list_keys("acme")] == ["0123456789ab", new_id]
    assert repo.revoke_key("0123456789ab") and repo.tenant_for_key_hash("old-hash") is None


def test_pg_registry_from_an_older_version_is_migrated(pg_dsn: str) -> None:
    with psycopg.connect(pg_dsn, autocommit=True) as db:
        db.execute(
            "CREATE TABLE api_keys (id TEXT PRIMARY KEY, key_hash TEXT NOT NULL UNIQUE,"
            " tenant TEXT NOT NULL, created_at DOUBLE PRECISION NOT NULL)")
        db.execute("INSERT INTO api_keys VALUES ('0123456789ab', 'old-hash', 'acme', 1.5)")
    repo = PostgresDocumentRepository(pg_dsn)
    try:
        assert repo.tenant_for_key_hash("old-hash") == "acme"
        [key] = repo.list_keys()
        assert (key.id, key.name, key.created_at, key.revoked_at) == ("0123456789ab", "", 1.5, None)
        assert repo.revoke_key("0123456789ab") and repo.tenant_for_key_hash("old-hash") is None
        assert repo.list("acme", None, 10, 0) == ([], 0)  # the documents table was created too
    finally:
        repo.close()


# ---------------------------------------------------------------- PII redaction


def test_pii_redaction_flag_and_counts_round_trip(repo: DocumentRepository) -> None:
    plain = _add(repo, "acme", "plain.txt", "1")
    assert (plain.redact_pii, plain.pii_counts) == (False, None)
    red, created = repo.create(tenant="acme", filename="red.txt", kind=DocumentKind.TEXT,
                               sha256="2" * 64, size=5, metadata={}, redact_pii=True)
    assert created and (red.redact_pii, red.pii_counts) == (True, None)
    assert repo.get(red.id) == red

    counts = {"EMAIL": 2, "SE_PIN": 1}
    repo.set_status(red.id, DocumentStatus.READY, chunks=3, pages=1, pii_counts=counts)
    got = repo.get(red.id)
    assert got is not None and got.status is DocumentStatus.READY
    assert (got.redact_pii, got.pii_counts) == (True, counts)
    repo.set_status(red.id, DocumentStatus.READY)  # counts are kept unless given
    assert repo.get(red.id).pii_counts == counts  # type: ignore[union-attr]
    listed = {d.id: d for d in repo.list("acme", None, 10, 0)[0]}
    assert (listed[red.id].pii_counts, listed[plain.id].redact_pii) == (counts, False)

    # counts given (the worker redacted a forced tenant's upload): the flag follows
    repo.set_status(plain.id, DocumentStatus.READY, chunks=1, pii_counts={})
    got = repo.get(plain.id)
    assert got is not None and (got.redact_pii, got.pii_counts) == (True, {})
    # same bytes again, without redaction: the redacted document, unchanged
    again, created = repo.create(tenant="acme", filename="x.txt", kind=DocumentKind.TEXT,
                                 sha256="2" * 64, size=5, metadata={}, redact_pii=False)
    assert not created and again.id == red.id and again.redact_pii


def test_enable_redaction_only_on_a_settled_unredacted_document(repo: DocumentRepository) -> None:
    doc = _add(repo, "acme", "a.txt", "1")
    assert repo.enable_redaction(doc.id) is False  # queued: an ingest is on its way
    repo.set_status(doc.id, DocumentStatus.PROCESSING)
    assert repo.enable_redaction(doc.id) is False
    repo.set_status(doc.id, DocumentStatus.READY, chunks=4, pages=2)
    repo.set_progress(doc.id, Progress("indexing", 4, 4))
    repo.set_status(doc.id, DocumentStatus.READY)
    assert repo.enable_redaction(doc.id) is True
    got = repo.get(doc.id)
    assert got is not None and got.redact_pii and got.pii_counts is None
    assert got.status is DocumentStatus.QUEUED and got.progress == Progress("queued", 0, 0)
    assert got.error is None and got.updated_at >= doc.updated_at
    assert repo.enable_redaction(doc.id) is False  # already redacted

    failed = _add(repo, "acme", "b.txt", "2")
    repo.set_status(failed.id, DocumentStatus.FAILED, error="no text")
    assert repo.enable_redaction(failed.id) is True
    got = repo.get(failed.id)
    assert got is not None and got.status is DocumentStatus.QUEUED and got.error is None
    assert repo.enable_redaction("missing") is False


OLD_DOCUMENTS = (
    "CREATE TABLE documents (id TEXT PRIMARY KEY, tenant TEXT NOT NULL, filename TEXT NOT NULL,"
    " kind TEXT NOT NULL, sha256 TEXT NOT NULL, size INTEGER NOT NULL, status TEXT NOT NULL,"
    " stage TEXT NOT NULL DEFAULT 'queued', done INTEGER NOT NULL DEFAULT 0,"
    " total INTEGER NOT NULL DEFAULT 0, chunks INTEGER NOT NULL DEFAULT 0,"
    " pages INTEGER NOT NULL DEFAULT 0, error TEXT, metadata TEXT NOT NULL DEFAULT '{}',"
    " created_at REAL NOT NULL, updated_at REAL NOT NULL, UNIQUE (tenant, sha256))"
)
OLD_ROW = ("INSERT INTO documents (id, tenant, filename, kind, sha256, size, status, chunks,"
           " created_at, updated_at) VALUES ('d1', 'acme', 'a.txt', 'text', 'ab', 3, 'ready', 2,"
           " 1.0, 1.0)")


def test_sqlite_documents_from_before_pii_redaction_are_migrated(tmp_path: Path) -> None:
    path = tmp_path / "registry.sqlite3"
    old = sqlite3.connect(path)
    old.executescript(f"{OLD_DOCUMENTS}; {OLD_ROW};")
    old.close()
    repo = SqliteDocumentRepository(path)
    SqliteDocumentRepository(path)  # another process opening it changes nothing
    doc = repo.get("d1")
    assert doc is not None and (doc.redact_pii, doc.pii_counts, doc.chunks) == (False, None, 2)
    assert repo.enable_redaction("d1") is True
    repo.set_status("d1", DocumentStatus.READY, chunks=2, pii_counts={"PHONE": 1})
    assert repo.get("d1").pii_counts == {"PHONE": 1}  # type: ignore[union-attr]


def test_pg_documents_from_before_pii_redaction_are_migrated(pg_dsn: str) -> None:
    with psycopg.connect(pg_dsn, autocommit=True) as db:
        db.execute(OLD_DOCUMENTS.replace("REAL", "DOUBLE PRECISION"))
        db.execute(OLD_ROW)
        db.execute("CREATE TABLE api_keys (id TEXT PRIMARY KEY, key_hash TEXT NOT NULL UNIQUE,"
                   " tenant TEXT NOT NULL, name TEXT NOT NULL DEFAULT '',"
                   " created_at DOUBLE PRECISION NOT NULL, revoked_at DOUBLE PRECISION)")
        db.execute("CREATE INDEX api_keys_tenant ON api_keys (tenant, created_at)")
    repo = PostgresDocumentRepository(pg_dsn)
    try:
        doc = repo.get("d1")
        assert doc is not None and (doc.redact_pii, doc.pii_counts, doc.chunks) == (False, None, 2)
        assert repo.enable_redaction("d1") is True
        repo.set_status("d1", DocumentStatus.READY, chunks=2, pii_counts={"PHONE": 1})
        got = repo.get("d1")
        assert got is not None and (got.redact_pii, got.pii_counts) == (True, {"PHONE": 1})
    finally:
        repo.close()


# ---------------------------------------------------------------- concurrency


def test_concurrent_creates_from_threads(repo: DocumentRepository) -> None:
    def upload(worker: int) -> list[tuple[str, bool]]:
        out = []
        for i in range(10):
            doc, created = repo.create(tenant="acme", filename=f"w{worker}-{i}.txt",
                                       kind=DocumentKind.TEXT, sha256=f"{worker:02d}{i:02d}" * 16,
                                       size=1, metadata={})
            out.append((doc.id, created))
            repo.set_progress(doc.id, Progress("embedding", i, 10))
            doc, created = repo.create(tenant="acme", filename="shared.txt", kind=DocumentKind.TEXT,
                                       sha256="s" * 64, size=1, metadata={})
            out.append((doc.id, created))
        return out

    with ThreadPoolExecutor(8) as pool:
        results = [r for rs in pool.map(upload, range(8)) for r in rs]
    shared = results[1::2]
    assert len({doc_id for doc_id, _ in shared}) == 1
    assert sum(created for _, created in shared) == 1
    assert all(created for _, created in results[0::2])
    assert repo.list("acme", None, 1000, 0)[1] == 8 * 10 + 1


def test_two_repository_objects_see_each_others_writes(make_repo: MakeRepo) -> None:
    api, worker = make_repo(), make_repo()
    doc = _add(api, "acme", "a.pdf", "1")
    assert worker.get(doc.id) == doc
    worker.set_status(doc.id, DocumentStatus.PROCESSING)
    worker.set_progress(doc.id, Progress("embedding", 1, 2))
    seen = api.get(doc.id, "acme")
    assert seen is not None and seen.status is DocumentStatus.PROCESSING
    assert seen.progress == Progress("embedding", 1, 2)
    again, created = worker.create(tenant="acme", filename="a.pdf", kind=DocumentKind.PDF,
                                   sha256="1".ljust(64, "0"), size=10, metadata={})
    assert not created and again.id == doc.id
    worker.add_key("h", "acme", "")
    assert api.tenant_for_key_hash("h") == "acme" and api.count_keys() == 1
    assert api.delete(doc.id) and worker.get(doc.id) is None


def _child_work(repo: DocumentRepository, doc_id: str) -> None:
    code = 3
    try:
        doc, created = repo.create(tenant="acme", filename="child.pdf", kind=DocumentKind.PDF,
                                   sha256="c" * 64, size=1, metadata={})
        for i in range(200):
            repo.set_progress(doc_id, Progress("embedding", i, 200))
            got = repo.get(doc_id)
            assert got is not None and got.id == doc_id
        repo.set_status(doc_id, DocumentStatus.READY, chunks=20)
        if created and repo.get(doc.id) == doc:
            code = 0
        if isinstance(repo, PostgresDocumentRepository):
            repo.close()  # a child cleaning up must not end the parent's sessions
    finally:
        os._exit(code)


def _backend_pid(repo: DocumentRepository) -> int | None:
    if isinstance(repo, PostgresDocumentRepository):
        return repo._run(lambda db: db.info.backend_pid)
    return None


def test_a_forked_process_does_not_share_the_parents_connections(repo: DocumentRepository) -> None:
    doc = _add(repo, "acme", "a.pdf", "1")
    other = _add(repo, "acme", "b.pdf", "2")
    session = _backend_pid(repo)  # the parent has a pooled connection when it forks
    child = multiprocessing.get_context("fork").Process(target=_child_work, args=(repo, doc.id))
    child.start()
    for _ in range(200):  # at the same time as the child
        got = repo.get(other.id)
        assert got is not None and got.id == other.id
    child.join(60)
    assert child.exitcode == 0
    assert _backend_pid(repo) == session  # the parent's connection survived, untouched
    got = repo.get(doc.id)
    assert got is not None and got.status is DocumentStatus.READY and got.chunks == 20
    assert len(repo.find_ids("acme")) == 3


# ---------------------------------------------------------------- PostgreSQL specifics


def test_pg_schema_created_once_by_racing_processes(pg_dsn: str) -> None:
    repos = [PostgresDocumentRepository(pg_dsn) for _ in range(6)]
    start = threading.Barrier(len(repos))

    def first_use(r: PostgresDocumentRepository) -> int:
        start.wait()
        return r.count_keys()

    with ThreadPoolExecutor(len(repos)) as pool:
        assert list(pool.map(first_use, repos)) == [0] * len(repos)
    for r in repos:
        r.close()


def test_pg_reconnects_after_its_idle_connections_are_dropped(pg_dsn: str) -> None:
    repo = PostgresDocumentRepository(pg_dsn)
    doc = _add(repo, "acme", "a.pdf", "1")
    pids = [repo._run(lambda db: db.info.backend_pid) for _ in range(2)]
    with psycopg.connect(pg_dsn, autocommit=True) as admin:
        for pid in pids:
            admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
    time.sleep(0.2)
    assert repo.get(doc.id) == doc  # a dead pooled connection is replaced, not reported
    repo.close()


# ---------------------------------------------------------------- metrics queries


def test_count_by_status_on_postgresql(pg_dsn: str) -> None:
    from core.registry.postgres import PostgresDocumentRepository

    repo = PostgresDocumentRepository(pg_dsn)
    try:
        assert repo.count_by_status() == {}
        for n, status in enumerate([DocumentStatus.QUEUED, DocumentStatus.READY,
                                    DocumentStatus.READY]):
            doc, _ = repo.create(tenant=f"t{n % 2}", filename="f.txt", kind=DocumentKind.TEXT,
                                 sha256=f"{n:064x}", size=1, metadata={})
            repo.set_status(doc.id, status)
        assert repo.count_by_status() == {"queued": 1, "ready": 2}
    finally:
        repo.close()


# ---------------------------------------------------------------- the reconciler's queries


def _doc(repo: DocumentRepository, name: str) -> str:
    doc, _ = repo.create(tenant="acme", filename=name, kind=DocumentKind.TEXT,
                         sha256=name.encode().hex().ljust(64, "0")[:64], size=1, metadata={})
    return doc.id


def test_registry_stale_queries_and_compare_and_set(make_repo: MakeRepo) -> None:
    repo, other = make_repo(), make_repo()
    a, b = _doc(repo, "a"), _doc(repo, "b")
    repo.set_status(b, DocumentStatus.FAILED, error="x")
    cutoff = time.time() + 10
    assert other.stale_document_ids(cutoff) == [a]
    assert other.stale_document_ids(time.time() - 3600) == []
    assert other.requeue_stale(a, cutoff)
    assert not repo.requeue_stale(a, cutoff - 20)  # updated since: left alone
    assert not repo.requeue_stale(b, cutoff)  # failed is not stale


def test_sqlite_finds_named_ids_by_primary_key_not_by_reading_the_tenant(
        tmp_path: Path) -> None:
    """The hits' live check (every search and ask) and a batch status name their ids: SQLite
    must look them up by primary key. Without statistics its planner read every row of the
    tenant through UNIQUE (tenant, sha256) instead (112 ms for 10 ids among 62,000)."""
    repo = SqliteDocumentRepository(tmp_path / "registry.sqlite3")
    docs = [_add(repo, "acme", f"f{i}.pdf", f"{i:x}") for i in range(30)]
    _add(repo, "other", "o.pdf", "ff")
    statements: list[tuple[str, list[object]]] = []
    run_all = repo._all

    def recording(statement: str, args: list[object] = []) -> list[object]:  # noqa: B006
        statements.append((statement, list(args)))
        return run_all(statement, args)  # type: ignore[no-any-return]

    repo._all = recording  # type: ignore[method-assign]
    wanted = [d.id for d in docs[3:6]]
    assert sorted(repo.find_ids("acme", ids=wanted)) == sorted(wanted)
    assert sorted(d.id for d in repo.get_many("acme", wanted)) == sorted(wanted)
    assert repo.find_ids("other", ids=wanted) == [] and repo.get_many("other", wanted) == []
    db = sqlite3.connect(tmp_path / "registry.sqlite3")
    for statement, args in statements:
        plan = " ".join(str(row[-1]) for row in
                        db.execute("EXPLAIN QUERY PLAN " + statement, args).fetchall())
        assert "SEARCH documents USING INDEX sqlite_autoindex_documents_1 (id=?)" in plan, plan
