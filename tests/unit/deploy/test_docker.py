"""Static checks of the container deployment: infra/Dockerfile and docker-compose.yml.

No Docker daemon and no network: the compose file is validated against the Compose
Specification schema that ships inside check-jsonschema, and its content is read with
PyYAML.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from core.settings import Settings

ROOT = Path(__file__).resolve().parents[3]
COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "infra" / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"

DOCQA_SERVICES = ("chroma", "api", "worker")


def check_jsonschema() -> str:
    exe = Path(sys.executable).with_name("check-jsonschema")
    if exe.exists():
        return str(exe)
    found = shutil.which("check-jsonschema")
    if found is None:
        pytest.fail("check-jsonschema is not installed (pip install -e '.[test]')")
    return found


def validate_compose(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [check_jsonschema(), "--builtin-schema", "vendor.compose-spec", str(path)],
        capture_output=True, text=True, timeout=120, check=False,
    )


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return compose["services"]


@pytest.fixture(scope="module")
def dockerfile() -> str:
    return DOCKERFILE.read_text(encoding="utf-8")


def as_text(value: str | list[str] | None) -> str:
    """A compose command/entrypoint/test, list or string form, as one string."""
    if value is None:
        return ""
    return value if isinstance(value, str) else " ".join(str(v) for v in value)


def env_of(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {str(k): str(v) for k, v in env.items()}


def settings_of(service: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> Settings:
    """The settings a container of ``service`` runs with (its environment; the secret file
    is not read here)."""
    for key in [k for k in os.environ if k.startswith("DOCQA_")]:
        monkeypatch.delenv(key)
    for key, value in env_of(service).items():
        if key.startswith("DOCQA_") and key != "DOCQA_ENCRYPTION_KEY_FILE":
            monkeypatch.setenv(key, value)
    return Settings()


def stages(dockerfile: str) -> list[str]:
    """The Dockerfile's text split at each FROM line (one entry per stage)."""
    parts = re.split(r"(?im)^(?=FROM\s)", dockerfile)
    return [p for p in parts if re.match(r"(?i)FROM\s", p)]


# --- (a) schema validation ------------------------------------------------------


def test_compose_file_matches_compose_spec() -> None:
    result = validate_compose(COMPOSE)
    assert result.returncode == 0, f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"


@pytest.mark.parametrize(
    "broken",
    [
        "services:\n  api:\n    image: docqa\n    ports: 12\n",
        "services:\n  api:\n    image: docqa\nnot_a_compose_key: true\n",
        "services:\n  api:\n    image: docqa\n    depends_on:\n      redis:\n        condition: sometimes\n",
    ],
    ids=["ports-not-a-list", "unknown-top-level-key", "bad-depends-on-condition"],
)
def test_validator_rejects_broken_compose_file(tmp_path: Path, broken: str) -> None:
    path = tmp_path / "docker-compose.yml"
    path.write_text(broken, encoding="utf-8")
    result = validate_compose(path)
    output = result.stdout + result.stderr
    assert result.returncode != 0, f"accepted a broken file:\n{output}"
    # Rejected by the schema, not by a crash or a missing file.
    assert "Schema validation errors" in output, output


# --- (b) compose content ----------------------------------------------------------


def test_compose_has_no_version_key_and_expected_services(compose: dict[str, Any]) -> None:
    assert "version" not in compose
    assert {"redis", "chroma", "api", "worker"} <= set(compose["services"])
    assert "x-docqa" in compose


def test_redis_is_durable_and_never_evicts(services: dict[str, dict[str, Any]]) -> None:
    redis = services["redis"]
    command = as_text(redis.get("command"))
    assert "--appendonly yes" in command
    assert "noeviction" in command
    assert any(str(v).endswith(":/data") for v in redis.get("volumes", []))


def test_only_the_api_publishes_ports(services: dict[str, dict[str, Any]]) -> None:
    publishing = sorted(name for name, svc in services.items() if svc.get("ports"))
    assert publishing == ["api"]
    assert [str(p) for p in services["api"]["ports"]] == ["8080:8080"]


@pytest.mark.parametrize("name", ["api", "chroma", "redis", "worker"])
def test_service_has_healthcheck(services: dict[str, dict[str, Any]], name: str) -> None:
    check = services[name].get("healthcheck")
    assert check and check.get("test") and not check.get("disable")


def test_healthchecks_probe_the_right_endpoints(services: dict[str, dict[str, Any]]) -> None:
    assert "/readyz" in as_text(services["api"]["healthcheck"]["test"])
    assert "127.0.0.1:8000/api/v2/heartbeat" in as_text(services["chroma"]["healthcheck"]["test"])
    assert "redis-cli ping" in as_text(services["redis"]["healthcheck"]["test"])


@pytest.mark.parametrize("name", ["api", "worker"])
def test_app_waits_for_healthy_backends(services: dict[str, dict[str, Any]], name: str) -> None:
    deps = services[name]["depends_on"]
    assert isinstance(deps, dict)
    for backend in ("redis", "chroma"):
        assert deps[backend]["condition"] == "service_healthy"


@pytest.mark.parametrize("name", ["api", "worker"])
def test_app_env_points_at_the_backends(services: dict[str, dict[str, Any]], name: str) -> None:
    env = env_of(services[name])
    assert env["DOCQA_REDIS_URL"] == "redis://redis:6379/0"
    assert env["DOCQA_CHROMA__HOST"] == "chroma"
    assert env["DOCQA_CHROMA__PORT"] == "8000"
    assert env["DOCQA_API_KEYS"].startswith("${DOCQA_API_KEYS:?")
    assert "docqa-data:/data" in services[name]["volumes"]


@pytest.mark.parametrize("name", ["api", "worker"])
def test_machine_state_is_kept_off_the_data_volume(
    services: dict[str, dict[str, Any]], compose: dict[str, Any], name: str,
    monkeypatch: pytest.MonkeyPatch
) -> None:
    """Prometheus multiprocess files (mmap) on a volume of their own with the local driver,
    shared by this host's api and workers (the api adds the workers' up), never on the data
    volume; the worker's heartbeat file in the container's own /tmp."""
    svc = services[name]
    settings = settings_of(svc, monkeypatch)
    mounts = {str(v).split(":", 1)[1]: str(v).split(":", 1)[0] for v in svc["volumes"]}
    assert mounts[str(settings.metrics_dir)] == "docqa-metrics"
    assert compose["volumes"]["docqa-metrics"]["driver"] == "local"
    assert not str(settings.metrics_dir).startswith(str(settings.data_dir) + "/")
    assert settings.worker.heartbeat_file is not None
    assert str(settings.worker.heartbeat_file).startswith("/tmp/")  # noqa: S108
    assert not any(str(settings.worker.heartbeat_file).startswith(p) for p in mounts)


def test_sqlite_files_stay_on_a_volume_of_this_host(compose: dict[str, Any],
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """Compose is one host: the registry and the keyword index are SQLite on the data
    volume, which must then be a local one (SQLite's locks and WAL are unsafe on a network
    file system; several hosts use PostgreSQL, as infra/k8s does)."""
    settings = settings_of(compose["services"]["worker"], monkeypatch)
    assert settings.database_url is None
    data = compose["volumes"]["docqa-data"] or {}
    assert data.get("driver", "local") == "local" and not data.get("driver_opts")
    assert not data.get("external")


@pytest.mark.parametrize("name", ["api", "worker"])
def test_the_encryption_key_is_a_secret(
    services: dict[str, dict[str, Any]], compose: dict[str, Any], name: str,
    monkeypatch: pytest.MonkeyPatch
) -> None:
    svc = services[name]
    assert svc["secrets"] == ["docqa_encryption_key"]
    assert compose["secrets"]["docqa_encryption_key"]["file"].startswith("./secrets/")
    env = env_of(svc)
    assert env["DOCQA_ENCRYPTION_KEY_FILE"] == "/run/secrets/docqa_encryption_key"
    assert "DOCQA_ENCRYPTION_KEY" not in env  # never a value in the file itself
    entries = DOCKERIGNORE.read_text(encoding="utf-8").splitlines()
    assert "secrets" in entries  # never in the image's build context


def test_worker_healthcheck_reads_its_heartbeat(services: dict[str, dict[str, Any]],
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    worker = services["worker"]
    heartbeat = settings_of(worker, monkeypatch).worker.heartbeat_file
    test = as_text(worker["healthcheck"]["test"])
    assert test.startswith(f"CMD python -m workers.health {heartbeat} --max-age ")
    assert int(test.rsplit(" ", 1)[1]) >= 3 * Settings().worker.heartbeat_interval_s


def test_compose_ships_no_example_key_and_its_api_refuses_a_short_one(
        services: dict[str, dict[str, Any]], tmp_path: Path) -> None:
    """No ``change-me`` key to copy (issue 15, point 7): the example makes a random one, and
    the API container's command refuses a key shorter than 24 characters before it starts
    (it is what ``docker compose up`` runs; exit 2, and the key is never printed)."""
    text = COMPOSE.read_text(encoding="utf-8")
    assert "change-me" not in text.lower()
    assert "DOCQA_API_KEYS=acme:$(openssl rand -hex 24)" in text
    env = {**os.environ, **{k: v for k, v in env_of(services["api"]).items()
                            if not v.startswith("${")},  # what compose sets itself
           "DOCQA_API_KEYS": "acme:change-me", "PYTHONPATH": str(ROOT),
           # here, not the container's paths; nothing is reached: refused before
           "DOCQA_DATA_DIR": str(tmp_path / "data"), "DOCQA_REDIS_URL": "redis://127.0.0.1:1/0"}
    if "DOCQA_ENCRYPTION_KEY_FILE" in env:  # the container's secret: a file of the test's
        from core.crypto import new_master_key_text

        secret = tmp_path / "docqa_encryption_key"
        secret.write_text(new_master_key_text() + "\n", encoding="utf-8")
        env["DOCQA_ENCRYPTION_KEY_FILE"] = str(secret)
    proc = subprocess.run([sys.executable, "-m", "service.cli",
                           *as_text(services["api"]["command"]).split()],
                          env=env, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 2, proc.stderr
    assert "24 characters" in proc.stderr and "change-me" not in proc.stderr + proc.stdout


def test_worker_is_scalable(services: dict[str, dict[str, Any]]) -> None:
    worker = services["worker"]
    assert "container_name" not in worker
    assert not worker.get("ports")
    assert as_text(worker.get("command")) == "worker"


def test_api_command(services: dict[str, dict[str, Any]]) -> None:
    assert as_text(services["api"]["command"]) == "serve --host 0.0.0.0 --port 8080"


def test_chroma_runs_the_server_from_the_docqa_image(services: dict[str, dict[str, Any]]) -> None:
    chroma = services["chroma"]
    assert as_text(chroma["entrypoint"]) == (
        "chroma run --path /data/chroma --host 0.0.0.0 --port 8000"
    )
    assert "chroma-data:/data/chroma" in chroma["volumes"]
    assert chroma["build"]["dockerfile"] == "infra/Dockerfile"
    assert chroma["image"] == services["api"]["image"] == services["worker"]["image"]


def test_named_volumes_are_declared(compose: dict[str, Any]) -> None:
    declared = set(compose.get("volumes") or {})
    assert {"redis-data", "chroma-data", "docqa-data"} <= declared
    for svc in compose["services"].values():
        for mount in svc.get("volumes", []):
            source = str(mount).split(":", 1)[0]
            if not source.startswith(("/", ".", "~")):
                assert source in declared, f"volume {source!r} is not declared"


@pytest.mark.parametrize("name", DOCQA_SERVICES)
def test_docqa_services_disable_telemetry(
    services: dict[str, dict[str, Any]], dockerfile: str, name: str
) -> None:
    svc = services[name]
    assert svc["build"]["dockerfile"] == "infra/Dockerfile"
    in_env = env_of(svc).get("ANONYMIZED_TELEMETRY") == "False"
    in_image = "ANONYMIZED_TELEMETRY=False" in stages(dockerfile)[-1]
    assert in_env or in_image


# --- (c) Dockerfile ---------------------------------------------------------------


def test_dockerfile_is_multi_stage(dockerfile: str) -> None:
    assert len(re.findall(r"(?im)^FROM\s", dockerfile)) >= 2
    assert "python:3.11-slim-bookworm" in dockerfile


def test_dockerfile_builds_portable_llama_cpp(dockerfile: str) -> None:
    assert "-DLLAVA_BUILD=OFF" in dockerfile
    assert "-DGGML_NATIVE=OFF" in dockerfile
    builder = stages(dockerfile)[0]
    assert "build-essential" in builder and "cmake" in builder
    assert "pip wheel" in builder


def test_cpu_torch_index_only_in_builder(dockerfile: str) -> None:
    *build_stages, runtime = stages(dockerfile)
    assert any("download.pytorch.org/whl/cpu" in s and "--extra-index-url" in s
               for s in build_stages)
    assert "torch==2.13.0" in dockerfile
    assert "extra-index-url" not in runtime
    assert "--no-index" in runtime
    assert "build-essential" not in runtime


def test_runtime_stage(dockerfile: str) -> None:
    runtime = stages(dockerfile)[-1]
    for env in ("ANONYMIZED_TELEMETRY=False", "HF_HUB_OFFLINE=1", "TRANSFORMERS_OFFLINE=1",
                "DOCQA_DATA_DIR=/data"):
        assert env in runtime
    users = re.findall(r"(?im)^USER\s+(\S+)", runtime)
    assert users, "runtime stage must set USER"
    assert users[-1].split(":")[0] not in ("root", "0")
    assert re.search(r"(?im)^VOLUME\s+/data\s*$", runtime)
    assert re.search(r"(?im)^EXPOSE\s+8080\s*$", runtime)
    assert re.search(r'(?im)^ENTRYPOINT\s+\["docqa"\]\s*$', runtime)
    assert re.search(r'(?im)^CMD\s+\["serve",\s*"--host",\s*"0\.0\.0\.0"\]\s*$', runtime)


def test_dockerignore_keeps_local_state_out() -> None:
    entries = {line.strip() for line in DOCKERIGNORE.read_text(encoding="utf-8").splitlines()}
    assert {".venv", "data", ".git", "__pycache__"} <= entries


def test_the_workers_see_the_chroma_store_they_scrub_after_erasures(
    services: dict[str, dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The erasure's scrub of Chroma's files runs on a worker that sees them (queue
    docqa.chroma, ingest/erasure.py): compose mounts the Chroma volume where the workers'
    settings look for it."""
    settings = settings_of(services["worker"], monkeypatch)
    assert f"chroma-data:{settings.chroma_dir}" in services["worker"]["volumes"]
    assert f"chroma-data:{settings.chroma_dir}" in services["chroma"]["volumes"]
