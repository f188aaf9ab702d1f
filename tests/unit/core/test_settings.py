"""Settings from the environment (core/settings.py): prefix and nesting, packaged models,
API keys, safe defaults of the worker and of the document limits."""

from pathlib import Path

import pytest

from core.errors import ConfigurationError
from core.settings import LimitSettings, Settings, parse_api_keys


def test_env_prefix_and_nested_delimiter(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCQA_DATA_DIR", "/srv/docqa")
    monkeypatch.setenv("DOCQA_CHROMA__PORT", "8123")
    monkeypatch.setenv("DOCQA_MODELS__GENERATOR_PATH", "/models/other.gguf")
    monkeypatch.setenv("DOCQA_API_KEYS", "acme:k1, globex:k2")
    # read only, never connected to: no Redis listens on this port
    monkeypatch.setenv("DOCQA_REDIS_URL", "redis://127.0.0.1:6390/2")
    s = Settings()
    assert s.data_dir == Path("/srv/docqa") and s.chroma.port == 8123
    assert s.models.resolved_generator_path() == Path("/models/other.gguf")
    assert s.static_api_keys == {"k1": "acme", "k2": "globex"}
    assert s.redis_url == "redis://127.0.0.1:6390/2"


def test_default_models_resolve_to_packaged_files() -> None:
    s = Settings()
    assert s.models.resolved_generator_path().name.endswith(".gguf")
    assert s.models.resolved_generator_path().is_file()
    assert (s.models.resolved_embedding_path() / "model.safetensors").is_file()


@pytest.mark.parametrize("raw", ["nokey", "tenant:", ":key"])
def test_malformed_api_keys_are_rejected(raw: str) -> None:
    with pytest.raises(ConfigurationError):
        parse_api_keys(raw)


def test_defaults_stay_safe() -> None:
    w = Settings().worker
    assert w.task_time_limit_s < w.visibility_timeout_s
    assert (w.unacked_restore_interval_s, w.unacked_restore_throttle) == (10, 10)  # kombu's
    assert w.reconcile_after_s >= 600
    hooks = Settings().test_hooks
    assert hooks.slow_embed_s == 0 and hooks.crash_worker_on == ""


def test_limits_are_settings_with_documented_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCQA_LIMITS__PARSE_TIMEOUT_S", "5")
    monkeypatch.setenv("DOCQA_LIMITS__ZIP_MAX_MEMBERS", "20")
    s = Settings()
    assert s.limits.parse_timeout_s == 5 and s.limits.zip_max_members == 20
    d = LimitSettings()
    assert d.parse_timeout_s == 60 and d.parse_memory_bytes == 1 << 30
    assert d.pdf_max_pages == 2000 and d.zip_max_ratio == 100


def test_the_encryption_key_may_come_from_a_mounted_secret_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from core.crypto import load_or_create_master_key, new_master_key_text

    key = new_master_key_text()
    secret = tmp_path / "docqa_encryption_key"
    secret.write_text(key + "\n")  # as `openssl rand -base64 32 > file` leaves it
    monkeypatch.setenv("DOCQA_ENCRYPTION_KEY_FILE", str(secret))
    settings = Settings(data_dir=tmp_path / "data")
    assert settings.encryption_key is not None
    assert settings.encryption_key.get_secret_value() == key
    master, created = load_or_create_master_key(settings.data_dir,
                                                settings.encryption_key.get_secret_value())
    assert len(master) == 32 and not created and not (tmp_path / "data").exists()
    monkeypatch.setenv("DOCQA_ENCRYPTION_KEY", key)
    with pytest.raises(ConfigurationError, match="not both"):
        Settings()
    monkeypatch.delenv("DOCQA_ENCRYPTION_KEY")
    for bad in (tmp_path / "missing", tmp_path):
        monkeypatch.setenv("DOCQA_ENCRYPTION_KEY_FILE", str(bad))
        with pytest.raises(ConfigurationError, match="cannot be read"):
            Settings()
    secret.write_text("\n")
    monkeypatch.setenv("DOCQA_ENCRYPTION_KEY_FILE", str(secret))
    with pytest.raises(ConfigurationError, match="is empty"):
        Settings()


def test_keys_shorter_than_24_characters_are_refused_by_name_never_echoed() -> None:
    """``docqa serve`` and ``docqa up`` refuse a short or example key (issue 15, point 7);
    the message names the tenant or the setting, never the key itself."""
    from core.errors import ConfigurationError
    from core.settings import MIN_KEY_CHARS

    strong = "k" * MIN_KEY_CHARS
    Settings(api_keys=f"acme:{strong}", admin_key=strong).check_key_strength()
    Settings(admin_key_sha256="a" * 64).check_key_strength()  # a hash: nothing to measure
    Settings().check_key_strength()  # no keys configured: nothing to refuse
    with pytest.raises(ConfigurationError) as short:
        Settings(api_keys=f"acme:{strong},globex:change-me").check_key_strength()
    assert "'globex'" in str(short.value) and "'acme'" not in str(short.value)
    assert "24 characters" in str(short.value) and "change-me" not in str(short.value)
    with pytest.raises(ConfigurationError, match="DOCQA_ADMIN_KEY ") as admin:
        Settings(api_keys=f"acme:{strong}", admin_key="k" * (MIN_KEY_CHARS - 1)
                 ).check_key_strength()
    assert "k" * (MIN_KEY_CHARS - 1) not in str(admin.value)


def test_originals_and_the_chroma_directory_may_live_outside_the_data_dir(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Several machines: the originals on a shared volume and the Chroma server's directory
    where this machine sees it, while the rest of the data dir stays the machine's own."""
    defaults = Settings(data_dir=tmp_path / "data")
    assert defaults.files_dir == tmp_path / "data" / "files"
    assert defaults.chroma_dir == tmp_path / "data" / "chroma"
    monkeypatch.setenv("DOCQA_DATA_DIR", str(tmp_path / "local"))
    monkeypatch.setenv("DOCQA_ORIGINALS_DIR", str(tmp_path / "shared" / "originals"))
    monkeypatch.setenv("DOCQA_CHROMA__DATA_DIR", str(tmp_path / "chroma-host"))
    s = Settings()
    assert s.files_dir == tmp_path / "shared" / "originals"
    assert s.chroma_dir == tmp_path / "chroma-host"
    assert s.keywords_path.parent == s.metrics_dir.parent == s.audit_path.parent == (
        tmp_path / "local")
