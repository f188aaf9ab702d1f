"""API keys, the admin API and shared per-key rate limits on real processes.

Next to the session stack (tests/integration/conftest.py, left as it is: no admin key,
default limits) this module starts two more API processes ("A" and "B", like two replicas)
on the same data dir (one SQLite registry) and the same Chroma server, with an admin key
and low limits, counting in Redis database 9 (``DOCQA_TEST_LIMIT_REDIS_URL`` overrides it;
only their own ``docqa:rl:{key id}:*`` keys, deleted at the end). They load no generator:
nothing here needs it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field

import httpx
import pytest
import redis

from service.cli.processes import free_port, wait_http
from service.client import AdminClient
from tests.integration.conftest import KEYS, REDIS_URL, Stack, raw

pytestmark = pytest.mark.integration

ADMIN_KEY = "test-admin-key-0123456789abcdef"
LIMIT_REDIS_URL = os.environ.get("DOCQA_TEST_LIMIT_REDIS_URL",
                                 REDIS_URL.rsplit("/", 1)[0] + "/9")
REQUESTS_PER_MINUTE = 8
ASK_PER_MINUTE = 2


@dataclass
class Replicas:
    urls: list[str]
    key_ids: list[str] = field(default_factory=list)  # whose limiter keys to delete

    def request(self, i: int, method: str, path: str, key: str | None = None,
                **kwargs) -> httpx.Response:  # type: ignore[no-untyped-def]
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        return httpx.request(method, self.urls[i] + path, headers=headers, timeout=60,
                             trust_env=False, **kwargs)

    def admin(self, i: int) -> AdminClient:
        return AdminClient(self.urls[i], ADMIN_KEY)

    def new_key(self, tenant: str, name: str = "") -> tuple[str, str]:
        with self.admin(0) as admin:
            body = admin.create_key(tenant, name)
            assert admin.last_response.status_code == 201, admin.last_response.text
        self.key_ids.append(body["id"])
        return body["id"], body["key"]


@pytest.fixture(scope="module")
def replicas(stack: Stack) -> Iterator[Replicas]:
    procs: list[subprocess.Popen[bytes]] = []
    urls: list[str] = []
    reps = Replicas(urls)
    try:
        for name in ("a", "b"):
            port = free_port()
            env = {**stack.env, "DOCQA_PORT": str(port), "DOCQA_REDIS_URL": LIMIT_REDIS_URL,
                   "DOCQA_ADMIN_KEY": ADMIN_KEY, "DOCQA_LOAD_GENERATOR": "false",
                   "DOCQA_RATE_LIMIT__REQUESTS_PER_MINUTE": str(REQUESTS_PER_MINUTE),
                   "DOCQA_RATE_LIMIT__ASK_PER_MINUTE": str(ASK_PER_MINUTE),
                   # the session API's audit log is its own
                   "DOCQA_AUDIT__PATH": str(stack.data_dir / f"audit-replica-{name}.log")}
            log = (stack.data_dir / "logs" / f"api-replica-{name}.log").open("ab")
            procs.append(subprocess.Popen([sys.executable, "-m", "service.cli", "serve"],
                                          env=env, stdout=log, stderr=subprocess.STDOUT,
                                          start_new_session=True))
            urls.append(f"http://127.0.0.1:{port}")
        for name, url in zip("ab", urls, strict=True):
            if not wait_http(f"{url}/readyz", 240, procs):
                pytest.fail(f"replica {name} did not become ready:\n"
                            + stack.log(f"api-replica-{name}")[-3000:])
        yield reps
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
    r = redis.Redis.from_url(LIMIT_REDIS_URL)
    for key_id in reps.key_ids:
        r.delete(f"docqa:rl:{{{key_id}}}:requests", f"docqa:rl:{{{key_id}}}:ask")
    r.close()


def cli(stack: Stack, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "service.cli", "keys", *args], env=stack.env,
                          capture_output=True, text=True, timeout=120)


def is_problem(resp: httpx.Response, status: int) -> bool:
    return (resp.status_code == status
            and resp.headers["content-type"].startswith("application/problem+json")
            and resp.json()["status"] == status and bool(resp.json()["detail"]))


def test_without_an_admin_key_the_admin_api_is_not_there(stack: Stack) -> None:
    for method in ("GET", "POST"):
        resp = raw(stack, method, "/admin/keys", headers={"Authorization": f"Bearer {ADMIN_KEY}"},
                   json={"tenant": "x"})
        assert is_problem(resp, 404), resp.text


def test_admin_routes_need_the_admin_key(stack: Stack, replicas: Replicas) -> None:
    stored = cli(stack, "create", "--tenant", "keys-it-guard")
    assert stored.returncode == 0, stored.stderr
    for key in (None, KEYS["acme"], stored.stdout.strip(), ADMIN_KEY[:-1]):
        for method, path in (("GET", "/admin/keys"), ("POST", "/admin/keys"),
                             ("DELETE", "/admin/keys/k_0000000000000000")):
            resp = replicas.request(0, method, path, key, json={"tenant": "x"})
            assert is_problem(resp, 401), (key, method, path, resp.text)
    assert replicas.request(1, "GET", "/admin/keys", ADMIN_KEY).status_code == 200
    # the admin key is not a tenant key, on any API process
    assert is_problem(replicas.request(0, "GET", "/v1/documents", ADMIN_KEY), 401)
    assert is_problem(raw(stack, "GET", "/v1/documents",
                          headers={"Authorization": f"Bearer {ADMIN_KEY}"}), 401)


def test_created_key_works_is_listed_without_secrets_and_revocation_is_immediate(
    stack: Stack, replicas: Replicas
) -> None:
    key_id, key = replicas.new_key("keys-it", "ci")
    assert key.startswith("dq_") and key_id.startswith("k_")
    assert key.encode() not in (stack.data_dir / "registry.sqlite3").read_bytes()
    # works on the other replica and on the session stack's API (one registry)
    assert replicas.request(1, "GET", "/v1/documents", key).status_code == 200
    assert raw(stack, "GET", "/v1/documents",
               headers={"Authorization": f"Bearer {key}"}).status_code == 200

    from core.keys import hash_key

    with replicas.admin(1) as admin:
        listing = admin.keys(tenant="keys-it")
        assert admin.last_response.status_code == 200
        listing_text = admin.last_response.text
    assert [(i["id"], i["name"], i["active"]) for i in listing["items"]] == [
        (key_id, "ci", True)]
    assert key not in listing_text and hash_key(key) not in listing_text
    listed = cli(stack, "list", "--json")
    assert listed.returncode == 0, listed.stderr
    assert key_id in {k["id"] for k in json.loads(listed.stdout)}
    assert key not in listed.stdout and hash_key(key) not in listed.stdout
    table = cli(stack, "list", "--tenant", "keys-it")
    assert key_id in table.stdout and "active" in table.stdout and key not in table.stdout

    with replicas.admin(0) as admin:
        admin.revoke_key(key_id)
        assert admin.last_response.status_code == 204
    for resp in (replicas.request(1, "GET", "/v1/documents", key),
                 replicas.request(0, "GET", "/v1/documents", key),
                 raw(stack, "GET", "/v1/documents", headers={"Authorization": f"Bearer {key}"})):
        assert is_problem(resp, 401), resp.text
    assert "revoked" in cli(stack, "list", "--tenant", "keys-it").stdout

    # the CLI's way: create (key on stdout, id on stderr), use, revoke
    made = cli(stack, "create", "--tenant", "keys-it", "--name", "cli")
    assert made.returncode == 0, made.stderr
    cli_key = made.stdout.strip()
    cli_id = next(w for w in made.stderr.split() if w.startswith("k_"))
    replicas.key_ids.append(cli_id)
    assert replicas.request(0, "GET", "/v1/documents", cli_key).status_code == 200
    revoked = cli(stack, "revoke", cli_id)
    assert revoked.returncode == 0 and cli_id in revoked.stdout, revoked.stderr
    assert is_problem(replicas.request(0, "GET", "/v1/documents", cli_key), 401)
    assert is_problem(replicas.request(1, "GET", "/v1/documents", cli_key), 401)
    assert cli(stack, "revoke", "k_0000000000000000").returncode == 1


def test_two_api_processes_share_one_rate_limit(replicas: Replicas) -> None:
    _, key = replicas.new_key("keys-it-limits")
    codes = [replicas.request(i % 2, "GET", "/v1/documents", key).status_code
             for i in range(REQUESTS_PER_MINUTE + 2)]
    assert codes == [200] * REQUESTS_PER_MINUTE + [429, 429]  # counted across A and B
    limited = replicas.request(1, "GET", "/v1/documents", key)
    assert is_problem(limited, 429), limited.text
    assert limited.headers["retry-after"].isdigit()
    assert 1 <= int(limited.headers["retry-after"]) <= 120
    # per key: another key of the same tenant is not limited; health and schema never are
    _, other = replicas.new_key("keys-it-limits")
    assert replicas.request(0, "GET", "/v1/documents", other).status_code == 200
    for path in ("/healthz", "/readyz", "/schema/openapi.json"):
        assert all(replicas.request(i % 2, "GET", path).status_code == 200
                   for i in range(REQUESTS_PER_MINUTE + 2))


def test_ask_has_its_own_lower_limit(replicas: Replicas) -> None:
    _, key = replicas.new_key("keys-it-ask")
    question = {"question": "Who leads Project Bluefin?"}
    for i in range(ASK_PER_MINUTE):
        resp = replicas.request(i % 2, "POST", "/v1/ask", key, json=question)
        assert resp.status_code == 200 and resp.json()["status"] == "not_found", resp.text
    limited = replicas.request(0, "POST", "/v1/ask", key, json=question)
    assert is_problem(limited, 429) and int(limited.headers["retry-after"]) >= 1
    assert "questions" in limited.json()["detail"]
    assert replicas.request(1, "GET", "/v1/documents", key).status_code == 200
