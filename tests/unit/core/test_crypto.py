"""Encryption at rest (core/crypto.py): file format, key wrapping, the master key file."""

from __future__ import annotations

import base64
import io
import logging
import stat
from pathlib import Path

import pytest

from core import crypto
from core.errors import ConfigurationError

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
