"""``docqa keys create`` and ``docqa keys revoke``: on the audit record, never with the key."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from core.audit import verify


def _lines(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines(keepends=True)


def test_cli_key_create_and_revoke_are_audited_without_the_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from service.cli import main

    monkeypatch.delenv("DOCQA_DATABASE_URL", raising=False)
    runner = CliRunner()
    created = runner.invoke(main, ["keys", "create", "--tenant", "acme", "--data-dir",
                                   str(tmp_path)])
    assert created.exit_code == 0, created.output
    key = created.stdout.strip().splitlines()[0]
    log = tmp_path / "audit.log"
    (entry,) = [json.loads(x) for x in _lines(log)]
    assert entry["event"] == "key_create" and entry["key_id"] == "cli"
    assert entry["tenant"] == "acme" and entry["target_key_id"].startswith("k_")
    revoked = runner.invoke(main, ["keys", "revoke", entry["target_key_id"], "--data-dir",
                                   str(tmp_path)])
    assert revoked.exit_code == 0, revoked.output
    last = json.loads(_lines(log)[-1])
    assert last["event"] == "key_revoke" and last["target_key_id"] == entry["target_key_id"]
    assert last["tenant"] == "acme"
    assert key not in log.read_text() and verify(log).ok


def test_cli_key_create_fails_closed_without_showing_the_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from service.cli import main

    monkeypatch.delenv("DOCQA_DATABASE_URL", raising=False)
    (tmp_path / "audit.log").write_bytes(b"{torn")
    result = CliRunner().invoke(main, ["keys", "create", "--tenant", "acme", "--data-dir",
                                       str(tmp_path)])
    assert result.exit_code == 1 and "not on the audit record" in result.output
    assert "dq_" not in result.output
