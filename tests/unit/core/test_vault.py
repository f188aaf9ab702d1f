"""The vault (core/vault.py): originals encrypted at rest under per-file keys, erased by
destroying the key; legacy plaintext files; orphan keys; in-memory plaintext."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from core import crypto
from core.keystore import SqliteKeyStore
from core.vault import MissingKeyError, Vault, encrypt_legacy_files, memory_file

CANARY = b"CANARY-7f3e9a-secret-payload"


def _data(n: int) -> bytes:
    return (CANARY + b" filler text ") * (n // (len(CANARY) + 13) + 1)


def _vault(tmp_path: Path) -> Vault:
    return Vault(b"k" * 32, SqliteKeyStore(tmp_path / "registry.sqlite3"))


def test_vault_writes_0600_ciphertext_reads_it_back_and_erases_the_key(tmp_path: Path) -> None:
    vault = _vault(tmp_path)
    path = tmp_path / "doc"
    data = _data(150_000)
    vault.write_bytes(path, data)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert CANARY not in path.read_bytes()
    assert vault.read_bytes(path) == data and vault.read_head(path, 100) == data[:100]
    with vault.plaintext(path) as plain:
        assert plain.read_bytes() == data and plain.stat().st_size == len(data)
    copy = path.read_bytes()
    key_id = crypto.file_key_id(path)
    assert key_id is not None
    assert vault.destroy(path) and not path.exists()
    assert vault.keys.get(key_id.hex()) is None
    assert not vault.destroy(path)  # idempotent
    (tmp_path / "copy").write_bytes(copy)  # a surviving copy of the ciphertext is useless
    with pytest.raises(MissingKeyError):
        vault.read_bytes(tmp_path / "copy")


def test_a_failed_write_leaves_neither_file_nor_key(tmp_path: Path) -> None:
    vault = _vault(tmp_path)
    path = tmp_path / "doc"
    with pytest.raises(RuntimeError), vault.create(path) as w:
        w.write(b"partial")
        raise RuntimeError("client went away")
    assert not path.exists() and vault.keys.list() == []


def test_legacy_plaintext_files_stay_readable_and_are_encrypted_in_place(tmp_path: Path) -> None:
    vault = _vault(tmp_path)
    files = tmp_path / "files"
    (files / ".staging").mkdir(parents=True)
    old = files / "0123abcd"
    old.write_bytes(b"legacy " + CANARY)
    assert vault.key_for(old) is None and vault.read_bytes(old) == b"legacy " + CANARY
    with vault.plaintext(old) as plain:
        assert plain == old
    assert encrypt_legacy_files(vault, files) == 1
    assert CANARY not in old.read_bytes() and vault.read_bytes(old) == b"legacy " + CANARY
    assert encrypt_legacy_files(vault, files) == 0
    assert [p.name for p in files.iterdir() if p.is_file()] == ["0123abcd"]


def test_orphan_keys_are_swept_after_the_grace_period(tmp_path: Path) -> None:
    vault = _vault(tmp_path)
    files = tmp_path / "files"
    files.mkdir()
    vault.write_bytes(files / "kept", b"kept")
    vault.write_bytes(files / "gone", b"gone")
    (files / "gone").unlink()  # removed without destroy()
    assert vault.sweep_orphan_keys([files], grace_s=3600) == 0
    assert vault.sweep_orphan_keys([files], grace_s=0) == 1
    assert len(vault.keys.list()) == 1 and vault.read_bytes(files / "kept") == b"kept"


def test_memory_file_is_not_on_disk() -> None:
    with memory_file([b"abc", b"def"]) as p:
        assert p.read_bytes() == b"abcdef"
        assert str(p).startswith("/proc/self/fd/")
