"""The key stores (core/keystore.py) on both registry backends, SQLite and PostgreSQL, as
the document-text cipher (core/textcrypt.py) uses them from several processes."""

from __future__ import annotations

import secrets
from pathlib import Path

import pytest

from core.settings import Settings


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_document_text_keys_on_both_key_stores(backend: str, request: pytest.FixtureRequest,
                                               tmp_path: Path) -> None:
    """Chunk text sealed by one process opens in another; the first stored key wins a race;
    a destroyed key is gone for every process (core/textcrypt.py on core/keystore.py)."""
    from core.keystore import open_keystore
    from core.textcrypt import TextCipher, TextKeyMissing, text_key_id

    url = None if backend == "sqlite" else request.getfixturevalue("pg_dsn")
    settings = Settings(data_dir=tmp_path / "data", database_url=url)
    master = secrets.token_bytes(32)
    a, b = TextCipher(master, open_keystore(settings)), TextCipher(master, open_keystore(settings))
    keys = open_keystore(settings)
    assert keys.put_if_absent("probe", b"first") is True
    assert keys.put_if_absent("probe", b"second") is False and keys.get("probe") == b"first"
    sealed = {d: a.seal(d, "c1", f"text of {d}") for d in ("d1", "d2", "d3")}
    assert set(keys.get_many([text_key_id(d) for d in ("d1", "d2", "nope")])) == {
        text_key_id("d1"), text_key_id("d2")}
    b.prefetch(["d1", "d2", "d3", "unknown"])  # one read; an unknown document is skipped
    assert [b.open(d, "c1", s) for d, s in sealed.items()] == [
        "text of d1", "text of d2", "text of d3"]
    assert a.forget("d2") is True
    with pytest.raises(TextKeyMissing):
        TextCipher(master, open_keystore(settings)).open("d2", "c1", sealed["d2"])


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_the_service_cipher_makes_no_key_for_a_document_gone_or_being_deleted(
        backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    """An ingest still running when its document is deleted must not leave a text key that
    erasure never removes: the key is stored only in the statement that finds the document
    registered and not marked by a DELETE (issue 15, point 1)."""
    from core.domain import DocumentKind
    from core.keystore import open_keystore
    from core.registry import open_repository
    from core.registry.postgres import PostgresDocumentRepository
    from core.textcrypt import TextCipher, TextKeyMissing, text_key_id

    url = None if backend == "sqlite" else request.getfixturevalue("pg_dsn")
    settings = Settings(data_dir=tmp_path / "data", database_url=url)
    repo = open_repository(settings)
    try:
        keys = open_keystore(settings)
        cipher = TextCipher(secrets.token_bytes(32), keys, registered_only=True)
        live, _ = repo.create(tenant="acme", filename="a.txt", kind=DocumentKind.TEXT,
                              sha256="a" * 64, size=1, metadata={})
        going, _ = repo.create(tenant="acme", filename="b.txt", kind=DocumentKind.TEXT,
                               sha256="b" * 64, size=1, metadata={})
        assert cipher.open(live.id, "c1", cipher.seal(live.id, "c1", "kept")) == "kept"

        assert repo.mark_deleting(going.id) is True
        with pytest.raises(TextKeyMissing, match="being deleted"):
            cipher.seal(going.id, "c1", "written after the DELETE began")
        with pytest.raises(TextKeyMissing):
            cipher.seal("never-registered", "c1", "text")
        assert repo.delete(going.id)
        with pytest.raises(TextKeyMissing):
            cipher.seal(going.id, "c1", "written after the DELETE answered")
        assert keys.get(text_key_id(going.id)) is None
        assert keys.get(text_key_id("never-registered")) is None
        assert keys.put_if_registered("probe", b"x", live.id) is True
        assert keys.put_if_registered("probe", b"y", live.id) is False  # first stored wins
        assert keys.get("probe") == b"x"
    finally:
        if isinstance(repo, PostgresDocumentRepository):
            repo.close()


def test_pg_key_table_created_once_by_racing_processes(pg_dsn: str) -> None:
    """An API and a worker (or two machines) starting at once: every one opens the key
    store, none fails on the table both try to create (found by the two-machine test)."""
    import threading
    from concurrent.futures import ThreadPoolExecutor

    from core.keystore import PostgresKeyStore

    start = threading.Barrier(6)

    def open_and_use(i: int) -> bytes | None:
        start.wait()
        store = PostgresKeyStore(pg_dsn)
        store.put(f"k{i}", b"wrapped")
        return store.get(f"k{i}")

    with ThreadPoolExecutor(6) as pool:
        assert list(pool.map(open_and_use, range(6))) == [b"wrapped"] * 6


def test_a_machine_with_another_master_key_is_refused_by_the_shared_key_store(
    pg_dsn: str, tmp_path: Path
) -> None:
    """Two machines sharing the PostgreSQL registry: the second one, started without the
    first one's DOCQA_ENCRYPTION_KEY, generates a key of its own and must not start."""
    from core.crypto import new_master_key_text
    from core.errors import ConfigurationError
    from core.vault import Vault, _cache

    key = new_master_key_text()
    first = Settings(data_dir=tmp_path / "one", database_url=pg_dsn, encryption_key=key)
    same = Settings(data_dir=tmp_path / "two", database_url=pg_dsn, encryption_key=key)
    other = Settings(data_dir=tmp_path / "three", database_url=pg_dsn)  # generates its own
    try:
        assert Vault.for_settings(first).master == Vault.for_settings(same).master
        with pytest.raises(ConfigurationError, match="same DOCQA_ENCRYPTION_KEY"):
            Vault.for_settings(other)
    finally:
        _cache.clear()
