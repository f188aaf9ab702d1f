"""The parse sandbox (ingest/sandbox.py): pages as in-process parsing gives them, refusals,
time and memory limits on hostile or misbehaving parsers, progress reported through a pipe,
and decryption in memory."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.keystore import SqliteKeyStore
from core.vault import Vault

CANARY = b"CANARY-7f3e9a-secret-payload"


def _vault(tmp_path: Path) -> Vault:
    return Vault(b"k" * 32, SqliteKeyStore(tmp_path / "registry.sqlite3"))


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
