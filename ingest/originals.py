"""Stored originals seen through the vault (core/vault.py): where an upload is kept, its data
key, sniffing an encrypted upload, and erasing a document (the one erase sequence, used by
``DELETE /v1/documents/{id}`` in service/documents.py and again by the background eraser in
ingest/erasure.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from core.domain import DocumentKind
from core.errors import ParseError
from core.ports import VectorStore
from core.settings import Settings
from core.vault import MissingKeyError, Vault
from ingest.detect import sniff_kind


def stored_file(settings: Settings, doc_id: str) -> Path:
    """Uploads live under generated ids only; the client's filename is metadata."""
    return settings.files_dir / doc_id


def stored_file_key(vault: Vault, path: Path) -> bytes | None:
    """The data key of an encrypted stored original (None: plaintext, from an older
    version). A key that is gone (the document was erased meanwhile) fails the parse."""
    try:
        return vault.key_for(path)
    except MissingKeyError as exc:
        raise ParseError(exc.detail) from None


def sniff_stored(vault: Vault, filename: str, path: Path, limits: Any) -> DocumentKind:
    """``sniff_kind`` on the plaintext of a (possibly encrypted) staged upload. Only a ZIP
    (DOCX) needs the whole file, for its central directory: it is decrypted into memory."""
    head = vault.read_head(path, 8192)
    if not head.startswith(b"PK\x03\x04"):
        return sniff_kind(filename, head, path, limits)
    with vault.plaintext(path) as plain:
        return sniff_kind(filename, head, plain, limits)


def drop_original(settings: Settings, vault: Vault, doc_id: str) -> None:
    """Delete a redacted document's uploaded file (it still holds the personal data): its
    key and then the file (crypto-erasure, core/vault.py). Done once its ingest has ended,
    ready or failed; uploading the same bytes again brings a failed one back for a retry."""
    vault.destroy(stored_file(settings, doc_id))


def erase_document(settings: Settings, store: VectorStore, vault: Vault, tenant: str,
                   doc_id: str) -> None:
    """Delete what a document left in the store and on disk: its chunks (Chroma and the
    keyword index), its text key, then its stored file's key and the file. The registry row
    is the caller's: the API deletes it after this, the background eraser runs once it is
    gone (and repeats this, so a crash between the API's steps leaves nothing behind)."""
    store.delete_document(tenant, doc_id)  # vectors first: a failure here changes nothing
    store.destroy_text_key(doc_id)  # what Chroma keeps of its text is unreadable now
    vault.destroy(stored_file(settings, doc_id))  # its key first: crypto-erasure


__all__ = ["drop_original", "erase_document", "sniff_stored", "stored_file", "stored_file_key"]
