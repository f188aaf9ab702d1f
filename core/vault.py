"""Stored originals, encrypted at rest (``core/crypto.py``) with keys in ``core/keystore.py``.

The API writes uploads through :meth:`Vault.create` (encrypted while they stream in), reads
them back only into memory (:func:`memory_file`, a Linux ``memfd``; the parse sandbox does
the same in its child), and :meth:`Vault.destroy` deletes a file's key before the file
(crypto-erasure). Files written by older versions (plaintext, no header) stay readable and
are encrypted in place by :meth:`Vault.encrypt_legacy`.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import re
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from core import crypto
from core.errors import ConfigurationError
from core.keystore import KeyStore, open_keystore

if TYPE_CHECKING:
    from core.settings import Settings

log = logging.getLogger("docqa.vault")

_cache: dict[tuple[str, str], Vault] = {}
_FILE_KEY_ID = re.compile(f"[0-9a-f]{{{2 * crypto.KEY_ID_BYTES}}}")
_cache_lock = threading.Lock()


class MissingKeyError(crypto.IntegrityError):
    title = "Stored file key missing"


MASTER_CHECK_ID = "master-key-check"  # not a file key id: the orphan sweep leaves it


def check_master_key(keys: KeyStore, master: bytes) -> None:
    """Refuse a master key other than the one the shared key store's keys were wrapped
    with. A machine without ``DOCQA_ENCRYPTION_KEY`` generates a key of its own in its data
    dir: it could open no document of the others, and its API would take the shared keyword
    index's term hashes for another key's and rebuild the index under its own.

    Raises:
        ConfigurationError: the store was first used with another master key.
    """
    check = hmac.new(master, b"docqa master key check", hashlib.sha256).digest()
    if keys.put_if_absent(MASTER_CHECK_ID, check):
        return
    stored = keys.get(MASTER_CHECK_ID)
    if stored is not None and not hmac.compare_digest(stored, check):
        raise ConfigurationError(
            "the master key is not the one the registry's keys were made with: every API "
            "and worker sharing DOCQA_DATABASE_URL needs the same DOCQA_ENCRYPTION_KEY (or "
            "DOCQA_ENCRYPTION_KEY_FILE); a machine without it generates a key of its own")


class Vault:
    def __init__(self, master: bytes, keys: KeyStore) -> None:
        self.master = master
        self.keys = keys

    @classmethod
    def for_settings(cls, settings: Settings) -> Vault:
        """One vault per (data dir, configured key) and process; the master key is loaded
        (or generated) on first use."""
        configured = settings.encryption_key.get_secret_value() if settings.encryption_key else ""
        ident = (str(Path(settings.data_dir).resolve()), configured)
        with _cache_lock:
            vault = _cache.get(ident)
            if vault is None:
                master, _created = crypto.load_or_create_master_key(settings.data_dir,
                                                                    configured or None)
                keys = open_keystore(settings)
                if settings.database_url:  # shared by every machine: so must the key be
                    check_master_key(keys, master)
                vault = _cache[ident] = cls(master, keys)
            return vault

    # ------------------------------------------------------------ writing

    @contextmanager
    def create(self, path: Path) -> Iterator[crypto.EncryptingWriter]:
        """Write a new encrypted file at ``path`` (mode 0600). Its wrapped key is stored
        before the first byte is written; on an error the file and its key are removed."""
        key_id, data_key = crypto.new_data_key()
        self.keys.put(key_id.hex(), crypto.wrap_key(self.master, key_id, data_key))
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as out:
                writer = crypto.EncryptingWriter(out, key_id, data_key)
                yield writer
                writer.close()
        except BaseException:
            Path(path).unlink(missing_ok=True)
            self.keys.delete(key_id.hex())
            raise

    def write_bytes(self, path: Path, data: bytes) -> None:
        with self.create(path) as w:
            w.write(data)

    # ------------------------------------------------------------ reading

    def key_for(self, path: Path) -> bytes | None:
        """The data key of ``path``; None when it is a plaintext file from an older version.

        Raises:
            MissingKeyError: the file is encrypted but its key is gone (erased).
        """
        key_id = crypto.file_key_id(path)
        if key_id is None:
            return None
        wrapped = self.keys.get(key_id.hex())
        if wrapped is None:
            raise MissingKeyError("the stored file's key does not exist (erased?)")
        return crypto.unwrap_key(self.master, key_id, wrapped)

    def plaintext_chunks(self, path: Path) -> Iterator[bytes]:
        yield from self.open_plaintext(path)

    def open_plaintext(self, path: Path) -> Iterator[bytes]:
        """The plaintext of ``path`` in blocks, decrypted as they are read. The file is opened
        and its key looked up now: a missing file (FileNotFoundError) or key
        (MissingKeyError) raises here, not at the first block."""
        key = self.key_for(path)
        fh = open(path, "rb")  # noqa: SIM115 - the generator below closes it

        def blocks() -> Iterator[bytes]:
            with fh:
                if key is None:
                    while block := fh.read(1 << 20):
                        yield block
                else:
                    yield from crypto.decrypt_stream(fh, key)

        return blocks()

    def read_head(self, path: Path, n: int = 8192) -> bytes:
        out = bytearray()
        for block in self.plaintext_chunks(path):
            out += block
            if len(out) >= n:
                break
        return bytes(out[:n])

    def read_bytes(self, path: Path) -> bytes:
        return b"".join(self.plaintext_chunks(path))

    @contextmanager
    def plaintext(self, path: Path) -> Iterator[Path]:
        """A path to the plaintext of ``path`` that exists only in memory (the path itself
        for a plaintext file)."""
        if crypto.file_key_id(path) is None:
            yield path
            return
        with memory_file(self.plaintext_chunks(path)) as plain:
            yield plain

    # ------------------------------------------------------------ erasure

    def destroy(self, path: Path) -> bool:
        """Crypto-erase ``path``: delete its key, then overwrite and unlink the file.
        Idempotent; True when there was a file."""
        path = Path(path)
        try:
            key_id = crypto.file_key_id(path)
        except FileNotFoundError:
            return False
        if key_id is not None:
            self.keys.delete(key_id.hex())
        _overwrite_and_unlink(path)
        return True

    def sweep_orphan_keys(self, roots: Iterable[Path], grace_s: float = 600.0) -> int:
        """Delete keys that no file under ``roots`` uses any more (files removed without
        :meth:`destroy`, e.g. an upload that was a duplicate); keys younger than
        ``grace_s`` are kept (their upload may still be streaming)."""
        used: set[str] = set()
        for root in roots:
            if not Path(root).is_dir():
                continue
            for p in Path(root).rglob("*"):
                try:
                    if p.is_file() and (kid := crypto.file_key_id(p)) is not None:
                        used.add(kid.hex())
                except OSError:
                    continue
        now, n = time.time(), 0
        for key_id, created in self.keys.list():
            if not _FILE_KEY_ID.fullmatch(key_id):
                continue  # a document's text key (core/textcrypt.py): erasure deletes those
            if key_id not in used and now - created > grace_s and self.keys.delete(key_id):
                n += 1
        return n

    # ------------------------------------------------------------ migration

    def encrypt_legacy(self, path: Path) -> bool:
        """Encrypt a plaintext original from an older version in place; False if it
        already was encrypted."""
        path = Path(path)
        if crypto.file_key_id(path) is not None:
            return False
        tmp = path.with_name(f".{path.name}.enc-{os.getpid()}")
        with self.create(tmp) as w, open(path, "rb") as src:
            while block := src.read(1 << 20):
                w.write(block)
        os.replace(tmp, path)
        return True


def encrypt_legacy_files(vault: Vault, files_dir: Path) -> int:
    """Encrypt every plaintext original under ``files_dir`` (not the staging area)."""
    n = 0
    if not Path(files_dir).is_dir():
        return 0
    for p in sorted(Path(files_dir).iterdir()):
        if p.is_file() and not p.name.startswith("."):
            try:
                n += vault.encrypt_legacy(p)
            except FileNotFoundError:  # deleted meanwhile
                continue
    if n:
        log.info("encrypted %d stored original(s) written by an older version", n)
    return n


def _overwrite_and_unlink(path: Path) -> None:
    """Zero the file before unlinking it (best effort: on copy-on-write or journaling file
    systems and SSDs old blocks may survive; the destroyed key is the real guarantee)."""
    try:
        size = path.stat().st_size
        with open(path, "r+b", buffering=0) as fh:
            zeros = bytes(min(size, 1 << 20))
            done = 0
            while done < size:
                done += fh.write(zeros[: min(len(zeros), size - done)])
            os.fsync(fh.fileno())
    except OSError:
        pass
    path.unlink(missing_ok=True)


@contextmanager
def memory_file(chunks: Iterable[bytes]) -> Iterator[Path]:
    """Write ``chunks`` to an anonymous in-memory file and yield a path that opens it
    (``/proc/self/fd/N`` of a ``memfd``). Without ``memfd_create``: a 0600 temporary
    file in ``/dev/shm`` (or the temp dir), removed on exit."""
    if hasattr(os, "memfd_create") and Path("/proc/self/fd").is_dir():
        fd = os.memfd_create("docqa-plaintext", os.MFD_CLOEXEC)
        try:
            _write_all(fd, chunks)
            yield Path(f"/proc/self/fd/{fd}")
        finally:
            os.close(fd)
        return
    where = "/dev/shm" if Path("/dev/shm").is_dir() else None  # noqa: S108
    fd, name = tempfile.mkstemp(prefix="docqa-", dir=where)
    try:
        _write_all(fd, chunks)
        yield Path(name)
    finally:
        os.close(fd)
        Path(name).unlink(missing_ok=True)


def _write_all(fd: int, chunks: Iterable[bytes]) -> None:
    for block in chunks:
        view = memoryview(block)
        while view:
            view = view[os.write(fd, view):]

