"""Stored originals seen through the vault (core/vault.py): sniffing an encrypted upload."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from core.domain import DocumentKind
from core.vault import Vault
from ingest.detect import sniff_kind


def sniff_stored(vault: Vault, filename: str, path: Path, limits: Any) -> DocumentKind:
    """``sniff_kind`` on the plaintext of a (possibly encrypted) staged upload. Only a ZIP
    (DOCX) needs the whole file, for its central directory: it is decrypted into memory."""
    head = vault.read_head(path, 8192)
    if not head.startswith(b"PK\x03\x04"):
        return sniff_kind(filename, head, path, limits)
    with vault.plaintext(path) as plain:
        return sniff_kind(filename, head, plain, limits)
