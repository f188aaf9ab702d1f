"""Encryption at rest: file format, key wrapping, master key file, vault, legacy files."""

from __future__ import annotations

import base64
import io
import logging
import stat
from pathlib import Path

import pytest

from core import crypto
from core.errors import ConfigurationError
from core.keystore import SqliteKeyStore
from core.vault import MissingKeyError, Vault, encrypt_legacy_files, memory_file

CANARY = b"CANARY-7f3e9a-secret-payload"


def _data(n: int) -> bytes:
    return (CANARY + b" filler text ") * (n // (len(CANARY) + 13) + 1)


@pytest.mark.parametrize("size", [0, 1, crypto.SEGMENT - 1, crypto.SEGMENT, crypto.SEGMENT + 1,
                                  3 * crypto.SEGMENT, 200_000])
def test_round_trip_at_every_segment_boundary(size: int) -> None:
    key_id, key = crypto.new_data_key()
    data = _data(size)[:size]
    blob = crypto.encrypt_bytes(data, key_id, key)
    assert CANARY not in blob
    assert crypto.header_key_id(blob) == key_id
    assert crypto.decrypt_bytes(blob, key) == data


def test_streaming_writes_of_any_size_give_the_same_plaintext() -> None:
    key_id, key = crypto.new_data_key()
    data = _data(300_000)
    out = io.BytesIO()
    w = crypto.EncryptingWriter(out, key_id, key)
    for i in range(0, len(data), 7777):
        w.write(data[i:i + 7777])
    w.close()
    assert crypto.decrypt_bytes(out.getvalue(), key) == data


def test_wrong_key_fails() -> None:
    key_id, key = crypto.new_data_key()
    blob = crypto.encrypt_bytes(b"hello", key_id, key)
    with pytest.raises(crypto.IntegrityError):
        crypto.decrypt_bytes(blob, crypto.new_data_key()[1])


@pytest.mark.parametrize("where", ["header", "body", "tag"])
def test_tampering_is_detected(where: str) -> None:
    key_id, key = crypto.new_data_key()
    blob = bytearray(crypto.encrypt_bytes(_data(100_000), key_id, key))
    pos = {"header": crypto.HEADER_BYTES - 1, "body": 5000, "tag": len(blob) - 1}[where]
    blob[pos] ^= 0x01
    with pytest.raises(crypto.IntegrityError):
        crypto.decrypt_bytes(bytes(blob), key)


def test_truncation_reordering_and_extension_are_detected() -> None:
    key_id, key = crypto.new_data_key()
    blob = crypto.encrypt_bytes(_data(3 * crypto.SEGMENT + 10), key_id, key)
    seg = crypto.SEGMENT + crypto.TAG_BYTES
    h = crypto.HEADER_BYTES
    segments = [blob[h + i * seg:h + (i + 1) * seg] for i in range(4)]
    truncated = blob[:h] + b"".join(segments[:3])  # whole segments dropped from the end
    reordered = blob[:h] + segments[1] + segments[0] + segments[2] + segments[3]
    for bad in (truncated, reordered, blob[:h], blob + segments[3]):
        with pytest.raises(crypto.IntegrityError):
            crypto.decrypt_bytes(bad, key)


def test_key_wrapping_binds_the_key_id_and_detects_another_master_key() -> None:
    master, other = b"m" * 32, b"o" * 32
    key_id, key = crypto.new_data_key()
    wrapped = crypto.wrap_key(master, key_id, key)
    assert crypto.unwrap_key(master, key_id, wrapped) == key
    with pytest.raises(crypto.IntegrityError, match="another master key"):
        crypto.unwrap_key(other, key_id, wrapped)
    with pytest.raises(crypto.IntegrityError):
        crypto.unwrap_key(master, crypto.new_data_key()[0], wrapped)
    tampered = bytearray(wrapped)
    tampered[-1] ^= 1
    with pytest.raises(crypto.IntegrityError):
        crypto.unwrap_key(master, key_id, bytes(tampered))


def test_master_key_file_is_created_0600_once_and_logged(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="docqa.crypto"):
        key, created = crypto.load_or_create_master_key(tmp_path, None)
    path = tmp_path / crypto.MASTER_KEY_FILE
    assert created and len(key) == 32
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert "generated a new master key" in caplog.text and str(path) in caplog.text
    again, created_again = crypto.load_or_create_master_key(tmp_path, None)
    assert again == key and not created_again
    assert [p.name for p in tmp_path.iterdir()] == [crypto.MASTER_KEY_FILE]


def test_configured_master_key_wins_and_is_validated(tmp_path: Path) -> None:
    raw = bytes(range(32))
    key, created = crypto.load_or_create_master_key(tmp_path, base64.b64encode(raw).decode())
    assert key == raw and not created and not (tmp_path / crypto.MASTER_KEY_FILE).exists()
    assert crypto.parse_master_key(base64.urlsafe_b64encode(raw).decode().rstrip("=")) == raw
    for bad in ("not base64!!", base64.b64encode(b"short").decode()):
        with pytest.raises(ConfigurationError):
            crypto.parse_master_key(bad)


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


def test_the_parse_sandbox_decrypts_in_memory_and_refuses_a_wrong_key(tmp_path: Path) -> None:
    from core.domain import DocumentKind
    from core.errors import ParseError
    from core.settings import LimitSettings
    from ingest.sandbox import parse_isolated

    vault = _vault(tmp_path)
    path = tmp_path / "doc"
    vault.write_bytes(path, b"Plain words about " + CANARY + b".\n")
    pages = parse_isolated(path, DocumentKind.TEXT, LimitSettings(), key=vault.key_for(path))
    assert CANARY.decode() in pages[0].text
    with pytest.raises(ParseError, match="could not be decrypted"):
        parse_isolated(path, DocumentKind.TEXT, LimitSettings(), key=bytes(32))
