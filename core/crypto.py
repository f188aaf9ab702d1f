"""Encryption at rest: AES-256-GCM with a data key per file, wrapped by a master key.

File format (``files/<id>``, and uploads while they are staged)::

    MAGIC (8) | key id (16) | nonce prefix (8) | segment 0 | segment 1 | ... | final segment

Each segment is at most ``SEGMENT`` bytes of plaintext sealed with AES-GCM (16-byte tag)
under the file's data key, nonce = prefix + big-endian segment number, associated data =
the 32-byte header + one byte that is 1 on the final segment only — so a reordered,
edited, truncated or extended file fails to decrypt. Files are written and read as a
stream; a 50 MB upload never sits in memory whole.

The data key (32 random bytes) is stored only wrapped: AES-GCM under the master key, bound
to the key id (``core/keystore.py`` keeps it, by key id). Destroying the wrapped key makes
the file's bytes unreadable wherever copies of them survive (crypto-erasure).

The master key comes from ``DOCQA_ENCRYPTION_KEY`` (base64 of 32 bytes) or, when that is
unset, from ``DATA/master.key``, which is generated (mode 0600) on first use.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import logging
import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from core.errors import ConfigurationError, DocqaError

log = logging.getLogger("docqa.crypto")

MAGIC = b"DQAENC\x01\x00"
KEY_ID_BYTES = 16
PREFIX_BYTES = 8
HEADER_BYTES = len(MAGIC) + KEY_ID_BYTES + PREFIX_BYTES  # 32
SEGMENT = 64 * 1024
TAG_BYTES = 16
KEY_BYTES = 32
MASTER_KEY_FILE = "master.key"
_WRAP_VERSION = b"\x01"
_KCV_BYTES = 4


class IntegrityError(DocqaError):
    """A stored file or wrapped key failed authentication (tampered, truncated, wrong key)."""

    status_code = 500
    title = "Stored data failed its integrity check"


# ---------------------------------------------------------------- master key


def parse_master_key(text: str) -> bytes:
    """Decode a configured master key (base64, standard or URL-safe, of exactly 32 bytes)."""
    raw = text.strip()
    try:
        key = base64.b64decode(raw + "=" * (-len(raw) % 4), altchars=b"-_" if (
            "-" in raw or "_" in raw) else None, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ConfigurationError("DOCQA_ENCRYPTION_KEY must be base64 of 32 bytes") from exc
    if len(key) != KEY_BYTES:
        raise ConfigurationError(
            f"DOCQA_ENCRYPTION_KEY must be base64 of 32 bytes (got {len(key)} bytes)")
    return key


def new_master_key_text() -> str:
    return base64.b64encode(secrets.token_bytes(KEY_BYTES)).decode("ascii")


def load_or_create_master_key(data_dir: Path, configured: str | None) -> tuple[bytes, bool]:
    """The master key: ``configured`` (base64) if given, else ``DATA/master.key``, created
    with mode 0600 when missing. Returns (key, created)."""
    if configured:
        return parse_master_key(configured), False
    path = Path(data_dir) / MASTER_KEY_FILE
    created = False
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{MASTER_KEY_FILE}.{os.getpid()}.{secrets.token_hex(4)}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "w") as fh:
                fh.write(new_master_key_text() + "\n")
                fh.flush()
                os.fsync(fh.fileno())
            try:  # atomic and never overwrites: a process that lost the race reads the winner's
                os.link(tmp, path)
                created = True
            except FileExistsError:
                pass
        finally:
            tmp.unlink(missing_ok=True)
        if created:
            log.warning(
                "no DOCQA_ENCRYPTION_KEY set: generated a new master key in %s (mode 0600). "
                "Back it up separately from the data: without it the stored originals "
                "cannot be read", path)
    mode = path.stat().st_mode & 0o777
    if mode & 0o077:
        log.warning("master key file %s is readable by others (mode %o); chmod 600 it",
                    path, mode)
    try:
        return parse_master_key(path.read_text()), created
    except ConfigurationError as exc:
        raise ConfigurationError(f"{path} does not hold a valid master key: {exc.detail}") from exc


def _kcv(master: bytes) -> bytes:
    """A short check value of the master key: tells 'wrong master key' from 'tampered'."""
    return hashlib.sha256(b"docqa-master-key-check" + master).digest()[:_KCV_BYTES]


# ---------------------------------------------------------------- data keys


def new_data_key() -> tuple[bytes, bytes]:
    """(key id, data key) for one new file."""
    return secrets.token_bytes(KEY_ID_BYTES), secrets.token_bytes(KEY_BYTES)


def wrap_key(master: bytes, key_id: bytes, data_key: bytes) -> bytes:
    nonce = secrets.token_bytes(12)
    sealed = AESGCM(master).encrypt(nonce, data_key, b"docqa-dek:" + key_id)
    return _WRAP_VERSION + _kcv(master) + nonce + sealed


def unwrap_key(master: bytes, key_id: bytes, wrapped: bytes) -> bytes:
    if len(wrapped) != 1 + _KCV_BYTES + 12 + KEY_BYTES + TAG_BYTES or wrapped[:1] != _WRAP_VERSION:
        raise IntegrityError("a stored data key is malformed")
    if not secrets.compare_digest(wrapped[1:1 + _KCV_BYTES], _kcv(master)):
        raise IntegrityError("a stored data key was wrapped with another master key "
                             "(is DOCQA_ENCRYPTION_KEY / master.key the right one?)")
    nonce = wrapped[1 + _KCV_BYTES:1 + _KCV_BYTES + 12]
    try:
        return AESGCM(master).decrypt(nonce, wrapped[1 + _KCV_BYTES + 12:], b"docqa-dek:" + key_id)
    except InvalidTag as exc:
        raise IntegrityError("a stored data key failed its integrity check") from exc


# ---------------------------------------------------------------- files


def header_key_id(head: bytes) -> bytes | None:
    """The key id of an encrypted file from its first bytes; None for a plaintext file."""
    if len(head) >= HEADER_BYTES and head.startswith(MAGIC):
        return head[len(MAGIC):len(MAGIC) + KEY_ID_BYTES]
    return None


def file_key_id(path: Path) -> bytes | None:
    with open(path, "rb") as fh:
        return header_key_id(fh.read(HEADER_BYTES))


def _nonce(prefix: bytes, index: int) -> bytes:
    if index >= 1 << 32:
        raise ValueError("file too large for one data key")
    return prefix + index.to_bytes(4, "big")


class EncryptingWriter:
    """Writes the encrypted form of everything given to :meth:`write` to ``out``.
    :meth:`close` seals the final segment (and must be called: without it the file is
    truncated and will not decrypt)."""

    def __init__(self, out: IO[bytes], key_id: bytes, data_key: bytes) -> None:
        self.out = out
        self._aead = AESGCM(data_key)
        self._prefix = secrets.token_bytes(PREFIX_BYTES)
        self.header = MAGIC + key_id + self._prefix
        self._buf = bytearray()
        self._index = 0
        self._closed = False
        out.write(self.header)

    def _seal(self, data: bytes, last: bool) -> None:
        aad = self.header + (b"\x01" if last else b"\x00")
        self.out.write(self._aead.encrypt(_nonce(self._prefix, self._index), data, aad))
        self._index += 1

    def write(self, data: bytes) -> int:
        self._buf += data
        while len(self._buf) > SEGMENT:  # keep the tail: the final segment is sealed in close
            self._seal(bytes(self._buf[:SEGMENT]), last=False)
            del self._buf[:SEGMENT]
        return len(data)

    def close(self) -> None:
        if not self._closed:
            self._seal(bytes(self._buf), last=True)
            self._buf.clear()
            self._closed = True


def decrypt_stream(src: IO[bytes], data_key: bytes) -> Iterator[bytes]:
    """Plaintext segments of an encrypted file opened at its start.

    Raises:
        IntegrityError: not an encrypted file, or tampered, reordered or truncated.
    """
    header = src.read(HEADER_BYTES)
    if header_key_id(header) is None:
        raise IntegrityError("not an encrypted docqa file")
    prefix = header[-PREFIX_BYTES:]
    aead = AESGCM(data_key)
    block = SEGMENT + TAG_BYTES
    cur = src.read(block)
    if not cur:
        raise IntegrityError("the encrypted file is truncated")
    index = 0
    while True:
        nxt = src.read(block)
        last = not nxt
        try:
            yield aead.decrypt(_nonce(prefix, index), cur, header + (b"\x01" if last else b"\x00"))
        except InvalidTag as exc:
            raise IntegrityError("the encrypted file failed its integrity check "
                                 "(tampered, truncated or the wrong key)") from exc
        if last:
            return
        cur, index = nxt, index + 1


def encrypt_bytes(data: bytes, key_id: bytes, data_key: bytes) -> bytes:
    out = io.BytesIO()
    w = EncryptingWriter(out, key_id, data_key)
    w.write(data)
    w.close()
    return out.getvalue()


def decrypt_bytes(blob: bytes, data_key: bytes) -> bytes:
    return b"".join(decrypt_stream(io.BytesIO(blob), data_key))
