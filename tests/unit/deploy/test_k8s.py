"""Static checks of the Kubernetes manifests in infra/k8s.

No cluster and no network: every manifest is validated against the Kubernetes JSON
schemas that ship inside the ``kubernetes-validate`` package (strict mode: unknown
fields are errors), and its content is read with PyYAML.
"""

from __future__ import annotations

import base64
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[3]
K8S = ROOT / "infra" / "k8s"
KUSTOMIZATION = K8S / "kustomization.yaml"
DOCKERFILE = ROOT / "infra" / "Dockerfile"

KUBERNETES_VERSION = "1.30"
NAMESPACE = "docqa"
BACKENDS = ("redis", "chroma", "postgres")
APP = ("api", "worker")
PLACEHOLDER = "CHANGE-ME"
COMPONENT = "app.kubernetes.io/component"
HEARTBEAT = "/tmp/docqa-worker.heartbeat"  # noqa: S108 - the pod's own /tmp emptyDir
HEARTBEAT_PROBE = f"exec python -m workers.health {HEARTBEAT} --max-age"


def kubernetes_validate() -> Any:
    try:
        import kubernetes_validate as kv
    except ImportError:
        pytest.fail("kubernetes-validate is not installed (pip install -e '.[test]')",
                    pytrace=False)
    return kv


def load_docs(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d]


def validate(kv: Any, doc: dict[str, Any]) -> None:
    """Validate one resource strictly; a kind without a bundled schema is an error too."""
    kv.validate(doc, KUBERNETES_VERSION, strict=True)


@pytest.fixture(scope="module")
def kustomization() -> dict[str, Any]:
    data = yaml.safe_load(KUSTOMIZATION.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def listed_files() -> list[str]:
    data = yaml.safe_load(KUSTOMIZATION.read_text(encoding="utf-8"))
    return list(data.get("resources") or [])


@pytest.fixture(scope="module")
def resources() -> list[dict[str, Any]]:
    return [doc for name in listed_files() for doc in load_docs(K8S / name)]


def find(resources: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    hits = [r for r in resources if r["kind"] == kind and r["metadata"]["name"] == name]
    assert len(hits) == 1, f"expected one {kind}/{name}, found {len(hits)}"
    return hits[0]


def of_kind(resources: list[dict[str, Any]], *kinds: str) -> list[dict[str, Any]]:
    return [r for r in resources if r["kind"] in kinds]


def workload(resources: list[dict[str, Any]], component: str) -> dict[str, Any]:
    hits = [r for r in of_kind(resources, "Deployment", "StatefulSet")
            if r["spec"]["template"]["metadata"]["labels"].get(COMPONENT) == component]
    assert len(hits) == 1, f"expected one workload for {component}, found {len(hits)}"
    return hits[0]


def pod_spec(obj: dict[str, Any]) -> dict[str, Any]:
    return obj["spec"]["template"]["spec"]


def containers(obj: dict[str, Any]) -> list[dict[str, Any]]:
    spec = pod_spec(obj)
    return [*spec.get("initContainers", []), *spec["containers"]]


def main_container(obj: dict[str, Any]) -> dict[str, Any]:
    return pod_spec(obj)["containers"][0]


def services_for(resources: list[dict[str, Any]], component: str) -> list[dict[str, Any]]:
    return [s for s in of_kind(resources, "Service")
            if s["spec"].get("selector", {}).get(COMPONENT) == component]


def probe_text(container: dict[str, Any], probe: dict[str, Any]) -> str:
    """A probe as one line: "http PATH PORT" (named port resolved) or "exec COMMAND"."""
    if "httpGet" in probe:
        port = port_number(container, probe["httpGet"]["port"])
        return f"http {probe['httpGet']['path']} {port}"
    if "exec" in probe:
        return "exec " + " ".join(probe["exec"]["command"])
    if "tcpSocket" in probe:
        return f"tcp {probe['tcpSocket']['port']}"
    return ""


def port_number(container: dict[str, Any], port: int | str) -> int:
    if isinstance(port, int):
        return port
    named = {p.get("name"): p["containerPort"] for p in container.get("ports", [])}
    assert port in named, f"port name {port!r} not declared by container {container['name']}"
    return int(named[port])


def secret_values(secret: dict[str, Any]) -> Iterator[tuple[str, str]]:
    yield from (secret.get("stringData") or {}).items()
    for key, value in (secret.get("data") or {}).items():
        yield key, base64.b64decode(value).decode("utf-8")


def dockerfile_ids() -> tuple[int, int]:
    text = DOCKERFILE.read_text(encoding="utf-8")
    uid = re.search(r"useradd\b[^\n]*--uid\s+(\d+)", text)
    gid = re.search(r"groupadd\b[^\n]*--gid\s+(\d+)", text)
    assert uid and gid, "infra/Dockerfile must create its user with fixed --uid/--gid"
    return int(uid.group(1)), int(gid.group(1))


# --- (a) schema validation ------------------------------------------------------


def test_validator_ships_schemas_for_the_target_version() -> None:
    kv = kubernetes_validate()
    from kubernetes_validate import utils

    assert KUBERNETES_VERSION in {utils.major_minor(v) for v in utils.all_versions()}
    schemas = Path(kv.__file__).parent / "kubernetes-json-schema"
    strict = next(schemas.glob(f"v{KUBERNETES_VERSION}.*-local-strict"))
    assert (strict / "deployment-apps-v1.json").is_file()


@pytest.mark.parametrize("filename", listed_files())
def test_manifest_is_valid_kubernetes(filename: str) -> None:
    kv = kubernetes_validate()
    docs = load_docs(K8S / filename)
    assert docs, f"{filename} holds no resource"
    errors: list[str] = []
    for doc in docs:
        name = f"{doc.get('kind')}/{doc.get('metadata', {}).get('name')}"
        try:
            validate(kv, doc)
        except kv.ValidationError as exc:
            where = ".".join(str(p) for p in exc.path)
            errors.append(f"{filename}: {name}: {where}: {exc.message}")
        except kv.SchemaNotFoundError as exc:
            errors.append(f"{filename}: {name}: {exc.message}")
    if errors:
        pytest.fail("\n".join(errors), pytrace=False)


DEPLOYMENT = """
apiVersion: apps/v1
kind: Deployment
metadata: {name: x}
spec:
  replicas: REPLICAS
  selector: {matchLabels: {a: b}}
  template:
    metadata: {labels: {a: b}}
    spec:
      containers:
        - name: c
          image: docqa:latest
          EXTRA
"""


@pytest.mark.parametrize(
    ("replicas", "extra"),
    [
        ("1", "unknownField: true"),
        ("two", "args: [serve]"),
        ("1", "ports: [{containerPort: http}]"),
    ],
    ids=["unknown-field", "replicas-not-an-integer", "port-not-an-integer"],
)
def test_validator_rejects_broken_manifest(replicas: str, extra: str) -> None:
    kv = kubernetes_validate()
    doc = yaml.safe_load(DEPLOYMENT.replace("REPLICAS", replicas).replace("EXTRA", extra))
    with pytest.raises(kv.ValidationError):
        validate(kv, doc)


def test_validator_rejects_unknown_kind() -> None:
    kv = kubernetes_validate()
    with pytest.raises(kv.SchemaNotFoundError):
        validate(kv, {"apiVersion": "v1", "kind": "NoSuchKind", "metadata": {"name": "x"}})


# --- (b) kustomization ------------------------------------------------------------


def test_kustomization_lists_every_manifest(kustomization: dict[str, Any]) -> None:
    assert kustomization["apiVersion"] == "kustomize.config.k8s.io/v1beta1"
    assert kustomization["kind"] == "Kustomization"
    assert kustomization["namespace"] == NAMESPACE
    listed = kustomization["resources"]
    assert len(listed) == len(set(listed)), "a file is listed twice"
    for name in listed:
        assert (K8S / name).is_file(), f"{name} is listed but does not exist"
    on_disk = {p.name for p in K8S.glob("*.y*ml")} - {KUSTOMIZATION.name}
    assert on_disk == set(listed), f"not listed: {sorted(on_disk - set(listed))}"


def test_kustomization_sets_the_docqa_image(
    kustomization: dict[str, Any], resources: list[dict[str, Any]]
) -> None:
    images = {i["name"]: i for i in kustomization["images"]}
    assert "docqa" in images
    for component in ("api", "worker", "chroma"):
        assert main_container(workload(resources, component))["image"].split(":")[0] == "docqa"


def test_expected_resources(resources: list[dict[str, Any]]) -> None:
    kinds = {(r["kind"], r["metadata"]["name"]) for r in resources}
    assert {
        ("Namespace", NAMESPACE), ("ConfigMap", "docqa-config"), ("Secret", "docqa-secrets"),
        ("PersistentVolumeClaim", "docqa-data"),
        ("StatefulSet", "redis"), ("Service", "redis"),
        ("StatefulSet", "chroma"), ("Service", "chroma"),
        ("StatefulSet", "postgres"), ("Service", "postgres"),
        ("Deployment", "docqa-api"), ("Service", "docqa-api"),
        ("Deployment", "docqa-worker"), ("HorizontalPodAutoscaler", "docqa-worker"),
    } <= kinds
    assert len(kinds) == len(resources), "two resources share a kind and name"


def test_everything_is_in_the_namespace(resources: list[dict[str, Any]]) -> None:
    for r in resources:
        if r["kind"] != "Namespace":
            assert r["metadata"].get("namespace") == NAMESPACE, r["metadata"]["name"]


# --- (b) workloads ----------------------------------------------------------------


def test_selectors_match_pod_labels(resources: list[dict[str, Any]]) -> None:
    for w in of_kind(resources, "Deployment", "StatefulSet"):
        selector = w["spec"]["selector"]["matchLabels"]
        labels = w["spec"]["template"]["metadata"]["labels"]
        assert selector.items() <= labels.items(), w["metadata"]["name"]


def test_services_reach_a_declared_port(resources: list[dict[str, Any]]) -> None:
    pods = of_kind(resources, "Deployment", "StatefulSet")
    for svc in of_kind(resources, "Service"):
        selector = svc["spec"]["selector"]
        targets = [w for w in pods
                   if selector.items() <= w["spec"]["template"]["metadata"]["labels"].items()]
        assert len(targets) == 1, f"Service {svc['metadata']['name']} selects {len(targets)}"
        for port in svc["spec"]["ports"]:
            port_number(main_container(targets[0]), port.get("targetPort", port["port"]))


def test_statefulsets_have_a_governing_service(resources: list[dict[str, Any]]) -> None:
    for sts in of_kind(resources, "StatefulSet"):
        svc = find(resources, "Service", sts["spec"]["serviceName"])
        assert svc["spec"].get("clusterIP") == "None", "the governing Service must be headless"


def test_api_and_worker_share_image_and_config(resources: list[dict[str, Any]]) -> None:
    api, worker = (main_container(workload(resources, c)) for c in APP)
    chroma = main_container(workload(resources, "chroma"))
    assert api["image"] == worker["image"] == chroma["image"] == "docqa:latest"
    for c in (api, worker):
        refs = {(k, v["name"]) for e in c["envFrom"] for k, v in e.items()}
        assert refs == {("configMapRef", "docqa-config"), ("secretRef", "docqa-secrets")}


def test_commands(resources: list[dict[str, Any]]) -> None:
    api = main_container(workload(resources, "api"))
    worker = main_container(workload(resources, "worker"))
    chroma = main_container(workload(resources, "chroma"))
    assert "command" not in api and "command" not in worker  # the image's ENTRYPOINT: docqa
    assert api["args"] == ["serve", "--host", "0.0.0.0", "--port", "8080"]
    assert worker["args"] == ["worker"]
    assert " ".join(chroma["command"]) == (
        "chroma run --path /data/chroma --host 0.0.0.0 --port 8000"
    )


def test_configmap(resources: list[dict[str, Any]]) -> None:
    data = find(resources, "ConfigMap", "docqa-config")["data"]
    assert data["DOCQA_REDIS_URL"] == "redis://redis:6379/0"
    assert data["DOCQA_CHROMA__HOST"] == "chroma"
    assert data["DOCQA_CHROMA__PORT"] == "8000"
    assert data["DOCQA_DATA_DIR"] == "/data"
    assert data["DOCQA_DATABASE_URL"] == "postgresql://docqa@postgres:5432/docqa"
    assert data["DOCQA_RETRIEVAL__HYBRID"] == "true"  # the keyword index is in PostgreSQL
    assert data["ANONYMIZED_TELEMETRY"] == "False"
    assert data["HF_HUB_OFFLINE"] == "1"
    assert data["TRANSFORMERS_OFFLINE"] == "1"
    assert all(isinstance(v, str) for v in data.values()), "ConfigMap values must be strings"
    for key in data:
        assert not re.search(r"KEY|PASSWORD|SECRET|TOKEN", key), f"{key} belongs in the Secret"


def test_configmap_is_read_by_the_settings(
    resources: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    from core.settings import Settings

    data = find(resources, "ConfigMap", "docqa-config")["data"]
    for key, value in data.items():
        monkeypatch.setenv(key, value)
    settings = Settings()
    assert settings.redis_url == "redis://redis:6379/0"
    assert (settings.chroma.host, settings.chroma.port) == ("chroma", 8000)
    assert str(settings.data_dir) == "/data"
    assert settings.models.n_threads == int(data["DOCQA_MODELS__N_THREADS"])
    if "database_url" in Settings.model_fields:  # the PostgreSQL registry
        assert settings.database_url == data["DOCQA_DATABASE_URL"]


def test_secret_holds_only_placeholders(resources: list[dict[str, Any]]) -> None:
    secrets = of_kind(resources, "Secret")
    assert [s["metadata"]["name"] for s in secrets] == ["docqa-secrets"]
    values = dict(secret_values(secrets[0]))
    assert {"DOCQA_API_KEYS", "PGPASSWORD", "DOCQA_ENCRYPTION_KEY"} <= set(values)
    for key, value in values.items():
        # the placeholder, at most behind a tenant name: nothing that could be a real secret
        assert re.fullmatch(rf"(?:[a-z]+:)?{PLACEHOLDER}", value), f"{key} is not a placeholder"
    # the placeholder keeps the tenant:key shape, so the API starts and the user sees it
    from core.settings import parse_api_keys

    assert parse_api_keys(values["DOCQA_API_KEYS"]) == {PLACEHOLDER: "default"}


def test_no_credentials_outside_the_secret(resources: list[dict[str, Any]]) -> None:
    url = find(resources, "ConfigMap", "docqa-config")["data"]["DOCQA_DATABASE_URL"]
    assert ":" not in url.split("://", 1)[1].split("@", 1)[0], "password in DOCQA_DATABASE_URL"
    for w in of_kind(resources, "Deployment", "StatefulSet"):
        for c in containers(w):
            for env in c.get("env", []):
                if re.search(r"KEY|PASSWORD|SECRET|TOKEN", env["name"]):
                    assert "value" not in env, f"{env['name']} must come from the Secret"
                    ref = env["valueFrom"]["secretKeyRef"]
                    secret = find(resources, "Secret", ref["name"])
                    assert ref["key"] in dict(secret_values(secret))


def test_redis_is_durable_and_never_evicts(resources: list[dict[str, Any]]) -> None:
    redis = workload(resources, "redis")
    c = main_container(redis)
    assert c["image"] == "redis:7-alpine"
    args = " ".join(c.get("command", []) + c.get("args", []))
    assert "--appendonly yes" in args
    assert "--maxmemory-policy noeviction" in args
    claims = {t["metadata"]["name"] for t in redis["spec"]["volumeClaimTemplates"]}
    assert any(m["name"] in claims and m["mountPath"] == "/data" for m in c["volumeMounts"])


@pytest.mark.parametrize("component", BACKENDS)
def test_backends_keep_their_data_on_a_volume_claim(
    resources: list[dict[str, Any]], component: str
) -> None:
    sts = workload(resources, component)
    assert sts["kind"] == "StatefulSet"
    assert sts["spec"]["replicas"] == 1
    templates = sts["spec"]["volumeClaimTemplates"]
    assert templates and all(t["spec"]["accessModes"] == ["ReadWriteOnce"] for t in templates)
    mounted = {m["name"] for m in main_container(sts)["volumeMounts"]}
    assert {t["metadata"]["name"] for t in templates} <= mounted


@pytest.mark.parametrize(
    ("component", "expected"),
    [
        ("api", {"readinessProbe": "http /readyz 8080", "livenessProbe": "http /healthz 8080"}),
        ("chroma", {"readinessProbe": "http /api/v2/heartbeat 8000",
                    "livenessProbe": "http /api/v2/heartbeat 8000"}),
        ("redis", {"readinessProbe": "redis-cli ping", "livenessProbe": "redis-cli ping"}),
        ("postgres", {"readinessProbe": "pg_isready", "livenessProbe": "pg_isready"}),
        ("worker", {"startupProbe": HEARTBEAT_PROBE, "readinessProbe": HEARTBEAT_PROBE,
                    "livenessProbe": HEARTBEAT_PROBE}),
    ],
)
def test_probes(resources: list[dict[str, Any]], component: str, expected: dict[str, str]) -> None:
    c = main_container(workload(resources, component))
    for kind, text in expected.items():
        assert kind in c, f"{component} has no {kind}"
        actual = probe_text(c, c[kind])
        assert text in actual, f"{component} {kind}: {actual}"


def test_api_deployment(resources: list[dict[str, Any]]) -> None:
    api = workload(resources, "api")
    assert api["kind"] == "Deployment"
    assert api["spec"]["replicas"] == 2
    c = main_container(api)
    assert port_number(c, "http") == 8080
    # started only when the models are loaded, so liveness does not kill a slow start
    assert "startupProbe" in c


def parse_quantity(value: str | int) -> float:
    """CPU in cores or memory in bytes, from a Kubernetes quantity."""
    units = {"m": 1e-3, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40,
             "k": 1e3, "M": 1e6, "G": 1e9}
    match = re.fullmatch(r"([0-9.]+)([A-Za-z]*)", str(value))
    assert match, f"not a quantity: {value!r}"
    number, unit = match.groups()
    return float(number) * (units[unit] if unit else 1)


def test_every_container_has_requests_and_limits(resources: list[dict[str, Any]]) -> None:
    for w in of_kind(resources, "Deployment", "StatefulSet"):
        for c in containers(w):
            res = c.get("resources", {})
            for part in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(res.get(part, {})), f"{c['name']}: {part}"
                # so the quantities parse
                for value in res[part].values():
                    parse_quantity(value)
            for key in ("cpu", "memory"):
                assert parse_quantity(res["requests"][key]) <= parse_quantity(res["limits"][key])


def test_app_resources_fit_the_models(resources: list[dict[str, Any]]) -> None:
    api = main_container(workload(resources, "api"))["resources"]
    assert parse_quantity(api["requests"]["cpu"]) >= 1
    assert parse_quantity(api["requests"]["memory"]) >= 3 * 2**30
    assert parse_quantity(api["limits"]["memory"]) >= 4 * 2**30
    worker = main_container(workload(resources, "worker"))["resources"]
    assert parse_quantity(worker["requests"]["memory"]) >= 2 * 2**30


def test_worker_scales_horizontally(resources: list[dict[str, Any]]) -> None:
    worker = workload(resources, "worker")
    assert worker["kind"] == "Deployment"
    assert services_for(resources, "worker") == []
    assert not main_container(worker).get("ports")
    hpa = find(resources, "HorizontalPodAutoscaler", "docqa-worker")
    target = hpa["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", worker["metadata"]["name"])
    assert hpa["spec"]["minReplicas"] >= 2
    assert hpa["spec"]["maxReplicas"] > hpa["spec"]["minReplicas"]
    # on queue depth first (an external metric), CPU as well: not on CPU alone
    external, cpu = hpa["spec"]["metrics"]
    assert external["type"] == "External" and cpu["resource"]["name"] == "cpu"
    metric = external["external"]["metric"]
    from core.tasks import INGEST_QUEUE

    assert metric["name"] == "docqa_queue_depth"
    assert metric["selector"]["matchLabels"] == {"queue": INGEST_QUEUE}
    assert external["external"]["target"]["type"] == "AverageValue"
    assert parse_quantity(external["external"]["target"]["averageValue"]) >= 1
    # the HPA owns the count; a replicas field would be reset by every `kubectl apply`
    assert "replicas" not in worker["spec"]


@pytest.mark.parametrize("component", ["api", "worker", *BACKENDS])
def test_graceful_shutdown(resources: list[dict[str, Any]], component: str) -> None:
    assert pod_spec(workload(resources, component)).get("terminationGracePeriodSeconds", 0) >= 30


def test_worker_may_finish_a_task_on_shutdown(resources: list[dict[str, Any]]) -> None:
    worker = pod_spec(workload(resources, "worker"))
    api = pod_spec(workload(resources, "api"))
    assert worker["terminationGracePeriodSeconds"] >= 60
    # uvicorn's own graceful shutdown is 20 s (service/cli/processes.py), plus the preStop sleep
    assert api["terminationGracePeriodSeconds"] > 20


# --- (b) shared data ---------------------------------------------------------------


def test_data_volume_is_shared_by_api_and_workers(resources: list[dict[str, Any]]) -> None:
    pvc = find(resources, "PersistentVolumeClaim", "docqa-data")
    assert pvc["spec"]["accessModes"] == ["ReadWriteMany"]
    for component in APP:
        w = workload(resources, component)
        volumes = {v["name"]: v for v in pod_spec(w)["volumes"]}
        mounts = [m for m in main_container(w)["volumeMounts"] if m["mountPath"] == "/data"]
        assert len(mounts) == 1, f"{component} does not mount /data"
        assert not mounts[0].get("readOnly")
        source = volumes[mounts[0]["name"]]
        assert source["persistentVolumeClaim"]["claimName"] == "docqa-data"


def test_only_api_and_worker_mount_the_shared_data(resources: list[dict[str, Any]]) -> None:
    users = sorted(
        pod_spec(w)["containers"][0]["name"] for w in of_kind(resources, "Deployment",
                                                              "StatefulSet")
        if any(v.get("persistentVolumeClaim", {}).get("claimName") == "docqa-data"
               for v in pod_spec(w).get("volumes", []))
    )
    assert users == ["api", "worker"]


def app_settings(resources: list[dict[str, Any]], component: str,
                 monkeypatch: pytest.MonkeyPatch) -> Any:
    """The settings a pod of ``component`` runs with: the ConfigMap, then its own env."""
    from core.settings import Settings

    for key in [k for k in os.environ if k.startswith("DOCQA_")]:
        monkeypatch.delenv(key)
    for key, value in find(resources, "ConfigMap", "docqa-config")["data"].items():
        monkeypatch.setenv(key, value)
    for env in main_container(workload(resources, component)).get("env", []):
        if "value" in env:
            monkeypatch.setenv(env["name"], env["value"])
    return Settings()


def volume_at(w: dict[str, Any], path: str | Path,
              container: dict[str, Any] | None = None) -> dict[str, Any]:
    """The volume holding ``path`` in ``container`` (default: the pod's main container),
    the deepest mount."""
    volumes = {v["name"]: v for v in pod_spec(w)["volumes"]}
    best = ""
    for m in (container or main_container(w))["volumeMounts"]:
        root = m["mountPath"].rstrip("/") or "/"
        if (str(path) == root or str(path).startswith(root.rstrip("/") + "/")) and \
                len(root) > len(best):
            best = root
            name = m["name"]
    assert best, f"{path} is on no volume (the root file system is read-only)"
    return volumes.get(name, {"name": name})  # a StatefulSet's claim template: its name


def is_shared(resources: list[dict[str, Any]], volume: dict[str, Any]) -> bool:
    claim = volume.get("persistentVolumeClaim", {}).get("claimName")
    if claim is None:
        return False
    pvc = find(resources, "PersistentVolumeClaim", claim)
    return "ReadWriteMany" in pvc["spec"]["accessModes"]


@pytest.mark.parametrize("component", APP)
def test_no_sqlite_file_or_metrics_directory_on_the_shared_volume(
    resources: list[dict[str, Any]], component: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SQLite's locking and WAL, and prometheus-client's mmap files, are unsafe on a
    network file system; every pod keeps them off the ReadWriteMany volume."""
    w = workload(resources, component)
    settings = app_settings(resources, component, monkeypatch)
    # the registry, the key store and the keyword index: PostgreSQL, not SQLite in /data
    assert settings.database_url, "DOCQA_DATABASE_URL unset: SQLite files in the data dir"
    from ingest.pgkeywords import PostgresKeywordIndex
    from ingest.store import open_keywords

    assert isinstance(open_keywords(settings, None), PostgresKeywordIndex)
    assert settings.retrieval.hybrid
    # Prometheus multiprocess files: the pod's own emptyDir
    metrics = volume_at(w, settings.metrics_dir)
    assert "emptyDir" in metrics and not is_shared(resources, metrics)
    shared = [m for m in main_container(w)["volumeMounts"]
              if is_shared(resources, {v["name"]: v for v in pod_spec(w)["volumes"]}[m["name"]])]
    assert [m["mountPath"] for m in shared] == ["/data"]
    for m in shared:  # nothing mounted into or out of it by name: no sqlite, no metrics
        assert not re.search(r"sqlite|\.db$|metrics", m["mountPath"] + m.get("subPath", ""))
    for env in main_container(w).get("env", []):
        assert not re.search(r"\.sqlite3?$|\.db$", str(env.get("value", ""))), env
    if component == "worker":  # the heartbeat file is per pod too
        assert settings.worker.heartbeat_file == Path(HEARTBEAT)
        assert "emptyDir" in volume_at(w, HEARTBEAT)


def test_the_chroma_volume_is_the_chroma_servers_own(resources: list[dict[str, Any]]) -> None:
    """Chroma's SQLite file is on its StatefulSet's ReadWriteOnce claim, opened by the
    Chroma server alone."""
    chroma = workload(resources, "chroma")
    volume = volume_at(chroma, "/data/chroma/chroma.sqlite3")
    claims = {t["metadata"]["name"]: t for t in chroma["spec"]["volumeClaimTemplates"]}
    assert volume["name"] in claims
    assert claims[volume["name"]]["spec"]["accessModes"] == ["ReadWriteOnce"]


def scrub_worker(chroma: dict[str, Any]) -> dict[str, Any]:
    hits = [c for c in pod_spec(chroma)["containers"] if c.get("args", [])[:1] == ["worker"]]
    assert len(hits) == 1, "the Chroma pod runs no worker beside the server"
    return hits[0]


def test_a_worker_beside_chroma_scrubs_its_volume(
    resources: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Chroma's volume is ReadWriteOnce: the erasure's directory scrub (queue docqa.chroma)
    runs in the Chroma pod, on a worker that consumes that queue alone and sees the server's
    chroma.sqlite3 at DOCQA_CHROMA__DATA_DIR."""
    from core import tasks as names
    from core.settings import Settings
    from workers.__main__ import main, with_queues
    from workers.app import worker_queues

    chroma = workload(resources, "chroma")
    c = scrub_worker(chroma)
    worker = main_container(workload(resources, "worker"))
    assert c["image"] == worker["image"]
    assert c["envFrom"] == worker["envFrom"]  # the ConfigMap and the Secret, as the workers
    # its settings: the ConfigMap, its own env, its command line (docqa worker --queues ...)
    for key in [k for k in os.environ if k.startswith("DOCQA_")]:
        monkeypatch.delenv(key)
    for key, value in find(resources, "ConfigMap", "docqa-config")["data"].items():
        monkeypatch.setenv(key, value)
    for env in c.get("env", []):
        monkeypatch.setenv(env["name"], env["value"])
    ctx = main.make_context("worker", list(c["args"][1:]))
    settings = with_queues(Settings(), ctx.params["queues"])
    assert worker_queues(settings) == [names.CHROMA_QUEUE]
    # the server's database and segments are on the volume mounted at chroma.data_dir
    server = main_container(chroma)
    db = "chroma.sqlite3"
    served = volume_at(chroma, f"/data/chroma/{db}", server)
    seen = volume_at(chroma, settings.chroma_dir / db, c)
    assert seen["name"] == served["name"]
    assert served["name"] in {t["metadata"]["name"] for t in chroma["spec"]["volumeClaimTemplates"]}
    assert not any(m.get("readOnly") or m.get("subPath") for m in c["volumeMounts"]
                   if m["name"] == served["name"])
    # per-container state on its own emptyDirs; nothing of the shared /data volume
    for path in (settings.metrics_dir, HEARTBEAT, "/tmp", "/home/docqa"):  # noqa: S108
        volume = volume_at(chroma, path, c)
        assert "emptyDir" in volume, path
        assert volume["name"] not in {m["name"] for m in server["volumeMounts"]}, path
    assert settings.worker.heartbeat_file == Path(HEARTBEAT)
    assert not any(v.get("persistentVolumeClaim") for v in pod_spec(chroma)["volumes"])
    for kind in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert HEARTBEAT_PROBE in probe_text(c, c[kind]), kind
    # modest: no embedding model is loaded, so far less than an ingest worker
    for part in ("requests", "limits"):
        assert parse_quantity(c["resources"][part]["memory"]) <= \
            parse_quantity(worker["resources"][part]["memory"]) / 2
    assert not c.get("ports")


def test_the_queue_depth_reaches_the_hpa_through_the_adapter_rule() -> None:
    """infra/prometheus-adapter-values.yaml serves the metric the HPA asks for, from the
    series the API exports (max over API pods: each reports the same Redis length)."""
    values = yaml.safe_load((ROOT / "infra" / "prometheus-adapter-values.yaml").read_text())
    (rule,) = values["rules"]["external"]
    assert rule["name"]["as"] == "docqa_queue_depth"
    assert rule["seriesQuery"].startswith("docqa_queue_depth{")
    assert rule["metricsQuery"].startswith("max by (queue)")
    exported = (ROOT / "service" / "api" / "metrics.py").read_text()
    assert '"docqa_queue_depth"' in exported


# --- (b) exposure and network policy ------------------------------------------------


def test_only_the_api_service_is_for_outside_traffic(resources: list[dict[str, Any]]) -> None:
    for svc in of_kind(resources, "Service"):
        kind = svc["spec"].get("type", "ClusterIP")
        component = svc["spec"]["selector"].get(COMPONENT)
        if component in BACKENDS:
            assert kind == "ClusterIP", f"{svc['metadata']['name']} is {kind}"
            assert not svc["spec"].get("externalIPs")
        else:
            assert component == "api", f"unexpected Service {svc['metadata']['name']}"
    api = services_for(resources, "api")
    assert len(api) == 1 and api[0]["spec"].get("type", "ClusterIP") == "ClusterIP"
    assert [p["port"] for p in api[0]["spec"]["ports"]] == [8080]
    for component in BACKENDS:
        assert len(services_for(resources, component)) == 1


def policies(resources: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return of_kind(resources, "NetworkPolicy")


def test_default_deny_ingress(resources: list[dict[str, Any]]) -> None:
    deny = [p for p in policies(resources)
            if p["spec"]["podSelector"] == {} and "Ingress" in p["spec"]["policyTypes"]]
    assert len(deny) == 1
    assert not deny[0]["spec"].get("ingress")


def selected_components(policy: dict[str, Any]) -> set[str]:
    labels = policy["spec"]["podSelector"].get("matchLabels", {})
    return {labels[COMPONENT]} if COMPONENT in labels else set()


def peer_components(peer: dict[str, Any]) -> set[str]:
    """The components a `from` peer admits; fails on anything wider than app pods."""
    assert set(peer) == {"podSelector"}, f"peer {peer} reaches beyond the namespace"
    selector = peer["podSelector"]
    found: set[str] = set()
    if COMPONENT in selector.get("matchLabels", {}):
        found.add(selector["matchLabels"][COMPONENT])
    for expr in selector.get("matchExpressions", []):
        assert expr["key"] == COMPONENT and expr["operator"] == "In", expr
        found.update(expr["values"])
    assert found, f"peer {peer} selects every pod"
    return found


def test_only_the_api_accepts_traffic_from_anywhere(resources: list[dict[str, Any]]) -> None:
    for policy in policies(resources):
        for rule in policy["spec"].get("ingress", []):
            peers = rule.get("from") or [{}]  # no `from`: every source
            if any(set(peer) != {"podSelector"} for peer in peers):
                assert selected_components(policy) == {"api"}, policy["metadata"]["name"]
    api_rules = [r for p in policies(resources) if selected_components(p) == {"api"}
                 for r in p["spec"].get("ingress", [])]
    assert any(not r.get("from") and [x["port"] for x in r["ports"]] == [8080]
               for r in api_rules)


# the Chroma pod's scrub worker reaches Redis (its queue) and PostgreSQL (the registry)
@pytest.mark.parametrize(("component", "port", "peers"), [
    ("redis", 6379, {*APP, "chroma"}), ("chroma", 8000, set(APP)),
    ("postgres", 5432, {*APP, "chroma"})])
def test_backends_accept_only_api_and_workers(
    resources: list[dict[str, Any]], component: str, port: int, peers: set[str]
) -> None:
    mine = [p for p in policies(resources) if selected_components(p) == {component}]
    assert mine, f"no NetworkPolicy for {component}"
    for policy in mine:
        assert policy["spec"]["policyTypes"] == ["Ingress"]
        for rule in policy["spec"]["ingress"]:
            assert rule.get("from"), f"{policy['metadata']['name']} admits every source"
            for peer in rule["from"]:
                assert peer_components(peer) <= peers
            assert [p["port"] for p in rule["ports"]] == [port]


# --- (b) security context -------------------------------------------------------------


def test_every_pod_runs_restricted(resources: list[dict[str, Any]]) -> None:
    for w in of_kind(resources, "Deployment", "StatefulSet"):
        name = w["metadata"]["name"]
        spec = pod_spec(w)
        pod_sc = spec.get("securityContext", {})
        assert spec.get("automountServiceAccountToken") is False, name
        assert pod_sc.get("seccompProfile", {}).get("type") == "RuntimeDefault", name
        for c in containers(w):
            sc = c.get("securityContext", {})
            assert sc.get("runAsNonRoot", pod_sc.get("runAsNonRoot")) is True, name
            assert sc.get("runAsUser", pod_sc.get("runAsUser", 0)) != 0, name
            assert sc.get("allowPrivilegeEscalation") is False, name
            assert sc.get("capabilities", {}).get("drop") == ["ALL"], name
            assert not sc.get("capabilities", {}).get("add"), name
            assert not sc.get("privileged"), name
            assert sc.get("readOnlyRootFilesystem") is True, name


def test_docqa_pods_run_as_the_image_user(resources: list[dict[str, Any]]) -> None:
    uid, gid = dockerfile_ids()
    for component in ("api", "worker", "chroma"):
        sc = pod_spec(workload(resources, component))["securityContext"]
        assert (sc["runAsUser"], sc["runAsGroup"], sc["fsGroup"]) == (uid, gid, gid), component


@pytest.mark.parametrize("component", ["api", "worker", "chroma"])
def test_docqa_pods_have_writable_scratch_space(
    resources: list[dict[str, Any]], component: str
) -> None:
    w = workload(resources, component)
    volumes = {v["name"]: v for v in pod_spec(w)["volumes"]}
    mounts = {m["mountPath"]: m["name"] for m in main_container(w)["volumeMounts"]}
    for path in ("/tmp", "/home/docqa"):  # noqa: S108 - the container's own /tmp
        assert path in mounts, f"{component}: {path} is not writable"
        assert "emptyDir" in volumes[mounts[path]]
