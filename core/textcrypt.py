"""Extracted text, encrypted at rest: chunk text sealed under a key per document.

Chroma never receives a chunk's text in the clear: ``ChromaStore`` stores it only as
ciphertext in the chunk's metadata (``TEXT_KEY``), sealed with AES-256-GCM under a random
data key of its document, with the chunk id as associated data (a sealed text moved to
another chunk fails to open). The data key is stored wrapped by the master key in the key
store (``core/keystore.py``, key id ``text-<document id>``), beside the keys of the stored
originals. Erasing a document destroys that key: whatever copy of its ciphertext the
vector store keeps behind (its log, freed pages, index files) is unreadable from then on.

The keyword index never holds words either: :func:`term_key` derives the key with which
``ingest/keywords.py`` replaces each stemmed term by a keyed hash before it is indexed.

Measured cost (``python -m bench.keyword_compare``, "sealing"): sealing or opening one
chunk takes microseconds; keys are cached per process and a search's uncached keys are read
in one key-store query (:meth:`TextCipher.prefetch`).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import threading
from collections import OrderedDict
from collections.abc import Iterable
from typing import TYPE_CHECKING

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from core import crypto
from core.keystore import KeyStore
from core.vault import Vault

if TYPE_CHECKING:
    from core.settings import Settings

TEXT_KEY = "text_sealed"  # the Chroma metadata field that holds a chunk's sealed text
KEY_PREFIX = "text-"  # key-store ids of document text keys (file keys are 32 hex digits)
_VERSION = b"\x01"
_NONCE = 12
_CACHE = 100_000  # documents' keys kept per process (32 bytes each, plus dict overhead)


def text_key_id(document_id: str) -> str:
    return KEY_PREFIX + document_id


def _wrap_id(key_id: str) -> bytes:
    """The 16 bytes the wrapped key is bound to (``crypto.wrap_key``'s associated data)."""
    return hashlib.sha256(key_id.encode("utf-8")).digest()[: crypto.KEY_ID_BYTES]


def term_key(master: bytes) -> bytes:
    """The keyword index's term-hashing key, derived from the master key."""
    return hmac.new(master, b"docqa keyword terms v1", hashlib.sha256).digest()


class TextKeyMissing(crypto.IntegrityError):
    """The document's text key is gone: the document was erased (or is being erased)."""

    title = "Document text key missing"


class TextCipher:
    """Seals and opens chunk text; one per process (keys cached, thread-safe).

    ``registered_only`` (the service's, :meth:`for_settings`): a document's key is made only
    while the registry holds the document and no DELETE has begun on it, checked in the
    statement that stores the key (``KeyStore.put_if_registered``). An ingest still running
    when its document is deleted can then never leave a key behind that erasure missed."""

    def __init__(self, master: bytes, keys: KeyStore, *, registered_only: bool = False) -> None:
        self.master = master
        self.keys = keys
        self.registered_only = registered_only
        self._cache: OrderedDict[str, bytes] = OrderedDict()
        self._lock = threading.Lock()

    @classmethod
    def for_settings(cls, settings: Settings) -> TextCipher:
        vault = Vault.for_settings(settings)
        return cls(vault.master, vault.keys, registered_only=True)

    # ------------------------------------------------------------ keys

    def _cached(self, document_id: str) -> bytes | None:
        with self._lock:
            key = self._cache.get(document_id)
            if key is not None:
                self._cache.move_to_end(document_id)
            return key

    def _remember(self, document_id: str, key: bytes) -> bytes:
        with self._lock:
            self._cache[document_id] = key
            while len(self._cache) > _CACHE:
                self._cache.popitem(last=False)
        return key

    def _load(self, document_id: str) -> bytes | None:
        kid = text_key_id(document_id)
        wrapped = self.keys.get(kid)
        return None if wrapped is None else crypto.unwrap_key(self.master, _wrap_id(kid), wrapped)

    def prefetch(self, document_ids: Iterable[str]) -> None:
        """Load the keys of documents not cached yet in one key-store read (a search's
        hits span many documents)."""
        missing = [d for d in dict.fromkeys(document_ids) if self._cached(d) is None]
        if not missing:
            return
        found = self.keys.get_many([text_key_id(d) for d in missing])
        for d in missing:
            wrapped = found.get(text_key_id(d))
            if wrapped is not None:
                self._remember(d, crypto.unwrap_key(self.master, _wrap_id(text_key_id(d)),
                                                    wrapped))

    def key(self, document_id: str, create: bool = False) -> bytes:
        """The document's text key; with ``create``, made on first use (with
        ``registered_only``, only for a registered document that is not being deleted). Two
        processes creating it at once agree on one key (the first stored wins)."""
        key = self._cached(document_id) or self._load(document_id)
        if key is None and create:
            kid = text_key_id(document_id)
            wrapped = crypto.wrap_key(self.master, _wrap_id(kid),
                                      secrets.token_bytes(crypto.KEY_BYTES))
            if self.registered_only:
                self.keys.put_if_registered(kid, wrapped, document_id)
            else:
                self.keys.put_if_absent(kid, wrapped)
            key = self._load(document_id)
        if key is None:
            raise TextKeyMissing(f"the text key of document {document_id} does not exist"
                                 + (" (the document is deleted or being deleted)"
                                    if create else ""))
        return self._remember(document_id, key)

    def chunk_id_key(self, document_id: str) -> bytes:
        """The key of the document's chunk ids (``core.domain.chunk_id``): derived from its
        text key, so it is made with that key (only for a registered document) and
        destroyed with it at erasure, and the same for every ingest of the document."""
        return hmac.new(self.key(document_id, create=True), b"docqa chunk ids v1",
                        hashlib.sha256).digest()

    def forget(self, document_id: str) -> bool:
        """Destroy the document's text key (crypto-erasure of its chunk text anywhere)."""
        with self._lock:
            self._cache.pop(document_id, None)
        return self.keys.delete(text_key_id(document_id))

    # ------------------------------------------------------------ text

    def seal(self, document_id: str, chunk_id: str, text: str) -> str:
        nonce = secrets.token_bytes(_NONCE)
        sealed = AESGCM(self.key(document_id, create=True)).encrypt(
            nonce, text.encode("utf-8"), chunk_id.encode("utf-8"))
        return base64.b64encode(_VERSION + nonce + sealed).decode("ascii")

    def open(self, document_id: str, chunk_id: str, sealed: str) -> str:
        """The chunk's text. Raises ``TextKeyMissing`` for an erased document and
        ``IntegrityError`` for a tampered or misplaced text."""
        blob = base64.b64decode(sealed)
        if blob[:1] != _VERSION or len(blob) < 1 + _NONCE + crypto.TAG_BYTES:
            raise crypto.IntegrityError("a sealed chunk text is malformed")
        try:
            return AESGCM(self.key(document_id)).decrypt(
                blob[1:1 + _NONCE], blob[1 + _NONCE:], chunk_id.encode("utf-8")).decode("utf-8")
        except InvalidTag as exc:
            raise crypto.IntegrityError("a sealed chunk text failed its integrity check") from exc


__all__ = ["KEY_PREFIX", "TEXT_KEY", "TextCipher", "TextKeyMissing", "term_key", "text_key_id"]
