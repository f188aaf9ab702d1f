"""Extracted text at rest (core/textcrypt.py): chunk text sealed per document, keys destroyed
on erasure. The store keeping only sealed text: ingest/test_store.py."""

from __future__ import annotations

import secrets
import threading
from pathlib import Path

import pytest

from core import crypto
from core.keystore import SqliteKeyStore
from core.textcrypt import TextCipher, TextKeyMissing, text_key_id
from core.vault import Vault

CANARY = "SEALEDCANARY" + secrets.token_hex(6).upper()


def cipher_in(tmp_path: Path, master: bytes | None = None) -> TextCipher:
    return TextCipher(master or secrets.token_bytes(32), SqliteKeyStore(tmp_path / "keys.sqlite3"))


def test_sealed_text_opens_only_for_its_own_chunk_and_document(tmp_path: Path) -> None:
    c = cipher_in(tmp_path)
    sealed = c.seal("doc-1", "chunk-1", f"The codeword is {CANARY}.")
    assert CANARY not in sealed
    assert c.open("doc-1", "chunk-1", sealed) == f"The codeword is {CANARY}."
    with pytest.raises(crypto.IntegrityError):
        c.open("doc-1", "chunk-2", sealed)  # moved to another chunk
    c.seal("doc-2", "chunk-9", "other")
    with pytest.raises(crypto.IntegrityError):
        c.open("doc-2", "chunk-1", sealed)  # another document's key
    tampered = sealed[:-6] + ("A" if sealed[-6] != "A" else "B") + sealed[-5:]
    with pytest.raises(crypto.IntegrityError):
        c.open("doc-1", "chunk-1", tampered)


def test_a_destroyed_key_makes_every_copy_unreadable_in_every_process(tmp_path: Path) -> None:
    master = secrets.token_bytes(32)
    writer, reader = cipher_in(tmp_path, master), cipher_in(tmp_path, master)
    sealed = writer.seal("doc-1", "c1", CANARY)
    assert reader.open("doc-1", "c1", sealed) == CANARY
    assert writer.forget("doc-1") is True
    assert writer.forget("doc-1") is False
    fresh = cipher_in(tmp_path, master)  # another process: no cached key
    with pytest.raises(TextKeyMissing):
        fresh.open("doc-1", "c1", sealed)
    wrapped = SqliteKeyStore(tmp_path / "keys.sqlite3").get(text_key_id("doc-1"))
    assert wrapped is None


def test_processes_creating_one_documents_key_at_once_agree_on_it(tmp_path: Path) -> None:
    master = secrets.token_bytes(32)
    ciphers = [cipher_in(tmp_path, master) for _ in range(8)]
    sealed: list[tuple[int, str]] = []
    barrier = threading.Barrier(len(ciphers))

    def seal(i: int) -> None:
        barrier.wait()
        sealed.append((i, ciphers[i].seal("doc-race", f"c{i}", f"text {i}")))

    threads = [threading.Thread(target=seal, args=(i,)) for i in range(len(ciphers))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    reader = cipher_in(tmp_path, master)
    assert sorted(reader.open("doc-race", f"c{i}", s) for i, s in sealed) == sorted(
        f"text {i}" for i in range(len(ciphers)))


def test_text_keys_are_not_swept_as_orphan_file_keys(tmp_path: Path) -> None:
    keys = SqliteKeyStore(tmp_path / "keys.sqlite3")
    master = secrets.token_bytes(32)
    c = TextCipher(master, keys)
    c.seal("doc-1", "c1", "kept")
    (tmp_path / "files").mkdir()
    assert Vault(master, keys).sweep_orphan_keys([tmp_path / "files"], grace_s=-1) == 0
    assert keys.get(text_key_id("doc-1")) is not None


def test_chunk_id_keys_are_per_document_shared_by_processes_and_erased_with_the_text_key(
        tmp_path: Path) -> None:
    """Re-ingesting a document in another worker gives the same chunk ids (its key is
    derived from the document's stored text key); another document's ids use another key;
    once the text key is destroyed the chunk-id key is gone for good (issue 15, point 5)."""
    from core.domain import chunk_id

    master = secrets.token_bytes(32)
    a, b = cipher_in(tmp_path, master), cipher_in(tmp_path, master)
    key = a.chunk_id_key("doc-1")
    assert b.chunk_id_key("doc-1") == key  # another process, the same ids
    assert a.chunk_id_key("doc-2") != key
    assert key != a.key("doc-1")  # derived, not the sealing key itself
    cid = chunk_id("doc-1", "salary: 85000", 0, key)
    assert a.forget("doc-1")
    fresh = cipher_in(tmp_path, master)
    assert chunk_id("doc-1", "salary: 85000", 0, fresh.chunk_id_key("doc-1")) != cid
