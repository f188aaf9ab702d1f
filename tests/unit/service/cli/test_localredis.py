"""The private Redis of ``docqa up`` (service/cli/localredis.py): what its config allows,
and when ``docqa up`` starts one at all."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from core.settings import Settings
from service.cli import localredis
from service.cli.processes import redis_configured


def directives(text: str) -> dict[str, list[str]]:
    """redis.conf as directive -> values (comments and blank lines left out)."""
    out: dict[str, list[str]] = {}
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            name, _, value = line.partition(" ")
            out.setdefault(name.lower(), []).append(value.strip())
    return out


def test_the_config_listens_on_the_loopback_only_with_an_append_only_file(tmp_path: Path) -> None:
    server = localredis.prepare(tmp_path / "my data", 6390)
    conf = directives(server.config_path.read_text())
    assert conf["bind"] == ["127.0.0.1"] and conf["port"] == ["6390"]
    assert conf["protected-mode"] == ["yes"] and conf["appendonly"] == ["yes"]
    assert "unixsocket" not in conf and "tls-port" not in conf  # no other listener
    assert conf["requirepass"] == [server.password] and len(server.password) >= 24
    assert conf["dir"] == [f'"{(tmp_path / "my data" / "redis").resolve()}"']
    assert conf["maxmemory-policy"] == ["noeviction"]  # queued jobs are never evicted
    assert server.url == f"redis://:{server.password}@127.0.0.1:6390/0"
    assert server.password not in server.display_url


def test_config_and_directory_are_private_to_the_user(tmp_path: Path) -> None:
    (tmp_path / "redis").mkdir(mode=0o755)
    (tmp_path / "redis" / localredis.CONFIG_FILE).write_text("old")
    (tmp_path / "redis" / localredis.CONFIG_FILE).chmod(0o644)
    server = localredis.prepare(tmp_path, 6391)
    assert stat.S_IMODE(server.dir.stat().st_mode) == 0o700
    assert stat.S_IMODE(server.config_path.stat().st_mode) == 0o600
    assert "old" not in server.config_path.read_text()


def test_every_start_has_a_new_password(tmp_path: Path) -> None:
    assert localredis.prepare(tmp_path, 6392).password != localredis.prepare(
        tmp_path, 6392).password


def test_a_redis_url_given_in_the_environment_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DOCQA_REDIS_URL", raising=False)
    assert not redis_configured(Settings())
    default = Settings.model_fields["redis_url"].default
    monkeypatch.setenv("DOCQA_REDIS_URL", default)  # the default, but given
    assert redis_configured(Settings())
    monkeypatch.setenv("DOCQA_REDIS_URL", "")
    assert not redis_configured(Settings())
