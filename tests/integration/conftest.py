"""A real stack per test session: Chroma server, Celery worker and API as subprocesses.

Redis is the test session's own redis-server (tests/private_redis.py), on a database of
this module's; every Python subprocess runs under the network guard (tests/integration/netguard).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
import redis

from service.cli.processes import chroma_command, free_port, wait_http
from service.client import DocqaClient
from tests.private_redis import session_redis_url

# the embedding model's ONNX export scripts/setup.sh made: stacks use it rather than each
# exporting its own (the export on first use is the same code, run by setup.sh)
ONNX_CACHE = os.environ.get("DOCQA_MODELS__ONNX_CACHE_DIR") or str(
    Path(__file__).resolve().parents[2] / "data" / "cache" / "onnx")
REDIS_URL = os.environ.get("DOCQA_TEST_REDIS_URL") or session_redis_url(13)
NETGUARD = Path(__file__).parent / "netguard"
KEYS = {"acme": "test-key-acme-0123456789", "globex": "test-key-globex-0123456789"}


@dataclass
class Stack:
    url: str
    data_dir: Path
    env: dict[str, str]
    chroma_port: int
    netlog: Path
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def client(self, tenant: str = "acme") -> DocqaClient:
        return DocqaClient(self.url, KEYS[tenant], timeout=180)

    def chroma(self):  # type: ignore[no-untyped-def]
        import chromadb
        from chromadb.config import Settings

        return chromadb.HttpClient(host="127.0.0.1", port=self.chroma_port,
                                   settings=Settings(anonymized_telemetry=False))

    def stored_chunks(self, tenant: str, document_id: str | None = None
                      ) -> list[tuple[str, str]]:
        """(sealed text as Chroma stores it, the text it opens to) of a tenant's chunks, read
        from the Chroma server and opened with the stack's master key and key store."""
        from core.crypto import load_or_create_master_key
        from core.keystore import SqliteKeyStore
        from core.textcrypt import TEXT_KEY, TextCipher
        from ingest.store import tenant_get

        master, _ = load_or_create_master_key(self.data_dir,
                                              self.env.get("DOCQA_ENCRYPTION_KEY") or None)
        cipher = TextCipher(master, SqliteKeyStore(self.data_dir / "registry.sqlite3"))
        res = tenant_get(self.chroma(), tenant,
                         where={"document_id": document_id} if document_id else None,
                         include=["documents", "metadatas"])
        assert all(d is None for d in res["documents"]), "plain text in Chroma"
        return [(str(m[TEXT_KEY]), cipher.open(str(m["document_id"]), cid, str(m[TEXT_KEY])))
                for cid, m in zip(res["ids"], res["metadatas"], strict=True)]

    def log(self, name: str) -> str:
        path = self.data_dir / "logs" / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""


def _stop(procs: dict[str, subprocess.Popen[bytes]]) -> None:
    for p in procs.values():
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for p in procs.values():
        try:
            p.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with run_stack(tmp_path_factory.mktemp("docqa-data"), REDIS_URL) as st:
        yield st


@contextmanager
def run_stack(
    data: Path, redis_url: str, extra_env: dict[str, str] | None = None, workers: int = 1
) -> Iterator[Stack]:
    """Chroma, ``workers`` worker processes and the API on data dir ``data`` and Redis
    ``redis_url`` (flushed first); ``extra_env`` adds or overrides settings
    (tests/integration/test_hostile_uploads.py runs its own stack with tight limits on Redis
    database 8). The workers are named ``worker``, ``worker-2``… (their logs too)."""
    try:
        r = redis.Redis.from_url(redis_url, socket_connect_timeout=2)
        r.flushdb()
    except redis.RedisError as exc:
        pytest.fail(f"integration tests need Redis at {redis_url}: {exc}")
    (data / "logs").mkdir()
    chroma_port, api_port = free_port(), free_port()
    netlog = data / "netguard.log"
    env = {
        **os.environ,
        "DOCQA_DATA_DIR": str(data),
        "DOCQA_REDIS_URL": redis_url,
        "DOCQA_CHROMA__HOST": "127.0.0.1",
        "DOCQA_CHROMA__PORT": str(chroma_port),
        "DOCQA_HOST": "127.0.0.1",
        "DOCQA_PORT": str(api_port),
        "DOCQA_API_KEYS": ",".join(f"{t}:{k}" for t, k in KEYS.items()),
        "DOCQA_NETGUARD_LOG": str(netlog),
        "PYTHONPATH": os.pathsep.join(
            [str(NETGUARD), str(Path(__file__).resolve().parents[2]), os.environ.get("PYTHONPATH", "")]
        ),
        # Make proxies irrelevant: nothing may leave the machine anyway.
        "NO_PROXY": "*",
        # every test is the client 127.0.0.1: the keys refused on purpose by all the tests
        # would add up (the throttle itself: tests/unit/service/api/test_limits.py)
        "DOCQA_RATE_LIMIT__AUTH_FAILURES_PER_MINUTE": "1000",
        "DOCQA_MODELS__ONNX_CACHE_DIR": ONNX_CACHE,
        # one child per worker: the fault tests act on "the worker's child", and a test
        # stack is lighter; the default (one per CPU) runs in test_small_documents.py
        "DOCQA_WORKER__CONCURRENCY": "1",
        **(extra_env or {}),
    }
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY"):
        env.pop(var, None)
    st = Stack(f"http://127.0.0.1:{api_port}", data, env, chroma_port, netlog)

    def start(name: str, cmd: list[str]) -> None:
        log = (data / "logs" / f"{name}.log").open("ab")
        st.procs[name] = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT,
                                          start_new_session=True)

    try:
        start("chroma", chroma_command(data / "chroma", "127.0.0.1", chroma_port))
        assert wait_http(f"http://127.0.0.1:{chroma_port}/api/v2/heartbeat", 60), st.log("chroma")
        names = ["worker", *(f"worker-{i}" for i in range(2, workers + 1))]
        for name in names:
            start(name, [sys.executable, "-m", "service.cli", "worker"])
        start("api", [sys.executable, "-m", "service.cli", "serve"])
        if not wait_http(f"{st.url}/readyz", 240, list(st.procs.values())):
            pytest.fail("stack did not become ready:\n" + st.log("api")[-3000:] + st.log("worker")[-3000:])
        # the worker child loads its model after the API is ready; wait for it to consume
        deadline = time.monotonic() + 120
        while (not all("ready" in st.log(n) for n in names)
               and time.monotonic() < deadline):
            time.sleep(0.5)
        yield st
    finally:
        _stop(st.procs)


@pytest.fixture
def acme(stack: Stack) -> Iterator[DocqaClient]:
    with stack.client("acme") as c:
        yield c


@pytest.fixture
def globex(stack: Stack) -> Iterator[DocqaClient]:
    with stack.client("globex") as c:
        yield c


def raw(stack: Stack, method: str, path: str, **kwargs) -> httpx.Response:  # type: ignore[no-untyped-def]
    return httpx.request(method, stack.url + path, timeout=60, trust_env=False, **kwargs)
