"""Faults on real processes: every kill is ``kill -9`` of a process id, and afterwards every
document ends ``ready`` once, with as many chunks in Chroma as an undisturbed run gives it
(or, for a poison document, ``failed`` after a bounded number of attempts).

Stacks here:
- ``faults``: Chroma, a worker and the API on the machine's Redis, database 4, with short
  delivery settings (visibility timeout 50 s, task time limit 30 s, unacked messages looked
  for every second, reconciler after 20 s every 5 s) and the TEST-ONLY hooks of
  workers/testhooks.py: every embedding call sleeps (a window to kill a process mid-embed)
  and a document named ``*POISON*`` SIGKILLs its worker child on every attempt.
- ``own_redis``: a redis-server of our own (free port, ``--appendonly yes`` as in
  docker-compose.yml, temp dir) that these tests kill and restart; the shared Redis on 6379
  is never touched. It carries the Redis-restart stack (db 0) and ``docqa up`` (db 1).

Polling reads the registry file directly (the API is itself killed in one test); deadlines
are generous and nothing asserts on timing.
"""

from __future__ import annotations

import contextlib
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from core.domain import Document, DocumentStatus
from core.registry import SqliteDocumentRepository
from ingest.store import tenant_get
from service.cli.processes import chroma_command, free_port, wait_http
from service.client import DocqaClient
from tests.integration.conftest import KEYS, NETGUARD, ONNX_CACHE, Stack, run_stack
from tests.private_redis import session_redis_url

pytestmark = pytest.mark.integration

FAULTS_REDIS_URL = os.environ.get("DOCQA_TEST_FAULTS_REDIS_URL") or session_redis_url(4)
MAX_RETRIES = 5  # the default: a poison document gets MAX_RETRIES + 1 attempts
FAULT_ENV = {
    "DOCQA_WORKER__VISIBILITY_TIMEOUT_S": "50",
    "DOCQA_WORKER__TASK_TIME_LIMIT_S": "30",
    "DOCQA_WORKER__UNACKED_RESTORE_INTERVAL_S": "1",
    "DOCQA_WORKER__UNACKED_RESTORE_THROTTLE": "1",
    "DOCQA_WORKER__MAX_RETRIES": str(MAX_RETRIES),
    "DOCQA_WORKER__RECONCILE_AFTER_S": "20",
    "DOCQA_WORKER__RECONCILE_INTERVAL_S": "5",
    "DOCQA_MODELS__EMBEDDING_BATCH_SIZE": "4",  # several embedding rounds per document
    "DOCQA_CHUNKING__SIZE": "50",  # small chunks: little work per round on a busy machine
    "DOCQA_CHUNKING__OVERLAP": "10",
    "DOCQA_TEST_HOOKS__SLOW_EMBED_S": "0.5",  # TEST ONLY (workers/testhooks.py)
    "DOCQA_TEST_HOOKS__CRASH_WORKER_ON": "POISON",  # TEST ONLY
    "DOCQA_LOAD_GENERATOR": "false",  # no /v1/ask here: save the API the model load
    "DOCQA_RATE_LIMIT__REQUESTS_PER_MINUTE": "0",  # polling must never be throttled
}
FINAL = (DocumentStatus.READY, DocumentStatus.FAILED)
WAIT_S = 240.0  # a generous bound for documents to settle on a busy 2-core machine


# ---------------------------------------------------------------- documents

_WORDS = ("contract renewal notice payment invoice supplier warranty liability clause term "
          "employee leave policy incident report server outage backup restore audit review "
          "budget quarter revenue forecast committee approval deadline delivery shipment "
          "customer complaint refund safety training equipment maintenance schedule").split()


def make_docs(tag: str, n: int, words: int = 300) -> list[tuple[str, bytes]]:
    """``n`` distinct plain-text documents of about 7 chunks each (50-word chunks in the
    fault stacks: two embedding rounds of 4)."""
    docs = []
    for i in range(n):
        rng = random.Random(f"{tag}-{i}")  # noqa: S311 - test data
        sentences = []
        count = 0
        while count < words:
            k = rng.randint(8, 16)
            sentences.append(" ".join(rng.choice(_WORDS) for _ in range(k)).capitalize()
                             + f" ({tag} {i} {count}).")
            count += k + 3
        docs.append((f"{tag}-{i}.txt", (" ".join(sentences) + "\n").encode()))
    return docs


# ---------------------------------------------------------------- process helpers


def children(pid: int) -> list[int]:
    """Direct children of ``pid`` (Linux ``/proc``)."""
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(x) for x in text.split()]


def descendants(pid: int) -> list[int]:
    out, todo = [], [pid]
    while todo:
        for child in children(todo.pop()):
            out.append(child)
            todo.append(child)
    return out


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def kill9(*pids: int) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def wait_until(pred: Callable[[], Any], timeout: float, what: str, poll: float = 0.3) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = pred()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(poll)


def kill_and_reap(st: Stack, name: str, with_children: bool = True) -> list[int]:
    """SIGKILL ``name``'s process (and every process below it) by pid; returns the pids."""
    proc = st.procs[name]
    pids = [proc.pid, *(descendants(proc.pid) if with_children else [])]
    kill9(*pids)
    proc.wait(timeout=30)
    wait_until(lambda: not any(alive(p) for p in pids), 30, f"{name} processes to die")
    return pids


def start(st: Stack, name: str) -> subprocess.Popen[bytes]:
    """Start ``name`` again as run_stack does (same command, environment and log)."""
    if name == "chroma":
        cmd = chroma_command(st.data_dir / "chroma", "127.0.0.1", st.chroma_port)
    else:
        cmd = [sys.executable, "-m", "service.cli", "worker" if name == "worker" else "serve"]
    with (st.data_dir / "logs" / f"{name}.log").open("ab") as log:
        log.write(f"--- test: starting {name} again ---\n".encode())
        log.flush()
        st.procs[name] = subprocess.Popen(cmd, env=st.env, stdout=log, stderr=subprocess.STDOUT,
                                          start_new_session=True)
    if name == "chroma":
        assert wait_http(f"http://127.0.0.1:{st.chroma_port}/api/v2/heartbeat", 90,
                         [st.procs[name]]), st.log("chroma")[-3000:]
    elif name == "api":
        assert wait_http(f"{st.url}/readyz", 180, [st.procs[name]]), st.log("api")[-3000:]
    return st.procs[name]


def worker_child(st: Stack) -> int:
    """The worker's pool child (concurrency 1), once it exists."""
    return wait_until(lambda: (children(st.procs["worker"].pid) or [None])[0], 120,
                      "the worker's pool child")


# ---------------------------------------------------------------- registry and Chroma


def registry(st: Stack) -> SqliteDocumentRepository:
    return SqliteDocumentRepository(st.data_dir / "registry.sqlite3")


def wait_mid_embed(st: Stack, doc_id: str, min_done: int = 4) -> Document:
    """Until ``doc_id`` is being embedded with at least one batch written to Chroma."""
    repo = registry(st)

    def mid() -> Document | None:
        doc = repo.get(doc_id)
        assert doc is not None
        assert doc.status not in FINAL, f"{doc_id} ended {doc.status} before the fault"
        if doc.progress.stage == "embedding" and min_done <= doc.progress.done < doc.progress.total:
            return doc
        return None

    return wait_until(mid, 120, f"{doc_id} to be mid-embed", poll=0.05)


def wait_final(st: Stack, ids: list[str], timeout: float = WAIT_S) -> dict[str, Document]:
    repo = registry(st)

    def settled() -> dict[str, Document] | None:
        docs = {i: repo.get(i) for i in ids}
        if all(d is not None and d.status in FINAL for d in docs.values()):
            return docs  # type: ignore[return-value]
        return None

    try:
        return wait_until(settled, timeout, "documents to settle", poll=0.5)
    except AssertionError:
        states = {i: (d.status.value, d.progress) if (d := repo.get(i)) else None for i in ids}
        raise AssertionError(f"not settled: {states}\n--- worker log ---\n"
                             + st.log("worker")[-4000:]) from None


def chroma_ids(st: Stack, tenant: str, doc_id: str) -> list[str]:
    return tenant_get(st.chroma(), tenant, where={"document_id": doc_id}, include=[])["ids"]


def ready_lines(st: Stack, doc_id: str) -> int:
    """How often the worker finished ``doc_id`` (its "document … ready" log line)."""
    return len(re.findall(rf"document {doc_id} ready:", st.log("worker")))


def upload_all(client: DocqaClient, docs: list[tuple[str, bytes]]) -> list[str]:
    return [client.upload_bytes(name, data)["id"] for name, data in docs]


def undisturbed_chunks(st: Stack, docs: list[tuple[str, bytes]]) -> list[int]:
    """Chunk counts of the same bytes ingested again by tenant globex with no fault."""
    with st.client("globex") as globex:
        ids = upload_all(globex, docs)
    final = wait_final(st, ids)
    assert all(final[i].status is DocumentStatus.READY for i in ids)
    return [len(chroma_ids(st, "globex", i)) for i in ids]


def assert_converged(st: Stack, ids: list[str], docs: list[tuple[str, bytes]]) -> None:
    """Every document ready exactly once, its chunks in Chroma as many as the registry says
    and as an undisturbed run of the same bytes gives, no duplicate document."""
    final = wait_final(st, ids)
    for i in ids:
        assert final[i].status is DocumentStatus.READY, (final[i].error, st.log("worker")[-3000:])
    expected = undisturbed_chunks(st, docs)
    for doc_id, want in zip(ids, expected, strict=True):
        stored = chroma_ids(st, "acme", doc_id)
        assert len(stored) == len(set(stored)) == final[doc_id].chunks == want > 1, (
            doc_id, len(stored), final[doc_id].chunks, want)
        assert ready_lines(st, doc_id) == 1, doc_id
    names = [d.filename for d in registry(st).list("acme", None, 10_000, 0)[0]]
    for name, _ in docs:
        assert names.count(name) == 1, name


# ---------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def faults(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with run_stack(tmp_path_factory.mktemp("docqa-faults"), FAULTS_REDIS_URL, FAULT_ENV) as st:
        yield st


@pytest.fixture
def acme(faults: Stack) -> Iterator[DocqaClient]:
    with faults.client("acme") as c:
        yield c


class OwnRedis:
    """A redis-server of our own, append-only as in docker-compose.yml, killable."""

    def __init__(self, root: Path) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.fail("the fault tests need the redis-server binary (apt install redis-server)")
        self.binary, self.root, self.port = binary, root, free_port()
        self.dir = root / "redis-0"
        self.proc: subprocess.Popen[bytes] | None = None

    def url(self, db: int) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def start(self, fresh_dir: bool = False) -> None:
        if fresh_dir:  # Redis lost its data: a new, empty directory
            self.dir = self.root / f"redis-{len(list(self.root.glob('redis-*')))}"
        self.dir.mkdir(exist_ok=True)
        log = (self.root / "redis.log").open("ab")
        self.proc = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.dir),
             "--appendonly", "yes", "--save", "", "--maxmemory-policy", "noeviction",
             "--daemonize", "no"], stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        client = redis.Redis(port=self.port, socket_connect_timeout=1)

        def up() -> bool:
            try:
                return bool(client.ping())
            except redis.RedisError:
                return False

        wait_until(up, 60, "our redis-server to answer")

    def kill9(self) -> None:
        assert self.proc is not None
        kill9(self.proc.pid)
        self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.kill9()


@pytest.fixture(scope="module")
def own_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OwnRedis]:
    server = OwnRedis(tmp_path_factory.mktemp("own-redis"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def redis_stack(tmp_path_factory: pytest.TempPathFactory, own_redis: OwnRedis) -> Iterator[Stack]:
    with run_stack(tmp_path_factory.mktemp("docqa-redisfault"), own_redis.url(0),
                   FAULT_ENV) as st:
        yield st


@pytest.fixture(scope="module")
def batching_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Stack, OwnRedis]]:
    """A stack whose worker runs batches, on a killable Redis of its own."""
    server = OwnRedis(tmp_path_factory.mktemp("own-redis-batching"))
    server.start()
    try:
        with run_stack(tmp_path_factory.mktemp("docqa-redisfault-batching"), server.url(0),
                       {**FAULT_ENV, "DOCQA_WORKER__BATCH_SIZE": "8"}) as st:
            yield st, server
    finally:
        server.stop()


# ---------------------------------------------------------------- worker faults


def test_worker_child_killed_mid_embed_is_redelivered_and_converges(
    faults: Stack, acme: DocqaClient
) -> None:
    docs = make_docs("child-kill", 3)
    main_pid = faults.procs["worker"].pid
    ids = upload_all(acme, docs)
    wait_mid_embed(faults, ids[0])
    child = worker_child(faults)
    kill9(child)  # the pool child, mid-embed: some chunks are in Chroma, the rest not
    wait_until(lambda: not alive(child), 30, "the worker child to die")

    assert_converged(faults, ids, docs)
    assert faults.procs["worker"].poll() is None and alive(main_pid)  # the worker survived
    assert child not in children(main_pid)
    assert re.search(rf"ingest {ids[0]}: delivery 2 \(at most", faults.log("worker"))


def test_whole_worker_killed_and_restarted_redelivers_after_the_visibility_timeout(
    faults: Stack, acme: DocqaClient
) -> None:
    docs = make_docs("worker-kill", 3)
    ids = upload_all(acme, docs)
    wait_mid_embed(faults, ids[0])
    pids = kill_and_reap(faults, "worker")  # main process and pool child, by pid
    assert len(pids) >= 2
    # its message stays in Redis's unacked set; nothing runs it until a worker is back
    start(faults, "worker")

    assert_converged(faults, ids, docs)
    assert re.search(rf"ingest {ids[0]}: delivery 2 \(at most", faults.log("worker"))


def test_poison_document_ends_failed_after_bounded_attempts_and_never_blocks_the_queue(
    faults: Stack, acme: DocqaClient
) -> None:
    poison = make_docs("POISON", 1)
    docs = make_docs("after-poison", 2)
    poison_id = upload_all(acme, poison)[0]
    ids = upload_all(acme, docs)
    main_pid = faults.procs["worker"].pid

    final = wait_final(faults, [poison_id, *ids], timeout=WAIT_S + 120)
    assert final[poison_id].status is DocumentStatus.FAILED
    assert "died while ingesting this document" in (final[poison_id].error or "")
    crashes = len(re.findall(rf"TEST HOOK: killing this worker child .*{poison[0][0]}",
                             faults.log("worker")))
    assert crashes == MAX_RETRIES + 1  # bounded: no more attempts than allowed
    assert_converged(faults, ids, docs)  # the documents behind it were not held up for ever
    assert faults.procs["worker"].poll() is None and alive(main_pid)
    # and it stays failed: no further delivery comes (its message was acknowledged)
    time.sleep(3)
    assert registry(faults).get(poison_id).status is DocumentStatus.FAILED  # type: ignore[union-attr]
    assert len(re.findall(rf"TEST HOOK: killing this worker child .*{poison[0][0]}",
                          faults.log("worker"))) == crashes


# ---------------------------------------------------------------- Chroma and API faults


def test_chroma_killed_mid_ingest_and_restarted_jobs_retry_and_lose_nothing(
    faults: Stack, acme: DocqaClient
) -> None:
    before = make_docs("chroma-before", 1)
    acked_id = upload_all(acme, before)[0]
    assert wait_final(faults, [acked_id])[acked_id].status is DocumentStatus.READY
    acked = sorted(chroma_ids(faults, "acme", acked_id))
    assert acked

    docs = make_docs("chroma-kill", 2)
    ids = upload_all(acme, docs)
    wait_mid_embed(faults, ids[0])
    kill_and_reap(faults, "chroma")
    wait_until(lambda: "transient error, retrying" in faults.log("worker"), 60,
               "the worker to retry against the dead Chroma")
    start(faults, "chroma")

    assert_converged(faults, ids, docs)
    # chunks acknowledged before the crash are all still there, and searchable
    assert sorted(chroma_ids(faults, "acme", acked_id)) == acked
    hits = acme.search("contract renewal", top_k=50, mode="dense",
                       document_ids=[acked_id])["results"]
    assert hits and {h["document_id"] for h in hits} == {acked_id}


def test_api_killed_and_restarted_with_uploads_in_flight_loses_nothing(
    faults: Stack, acme: DocqaClient
) -> None:
    docs = make_docs("api-kill", 6)
    accepted: dict[str, str] = {}  # filename -> id, for every upload that got an answer
    failed: list[tuple[str, bytes]] = []
    killed = threading.Event()

    def uploader() -> None:
        with DocqaClient(faults.url, KEYS["acme"], timeout=30) as c:
            for name, data in docs:
                try:
                    accepted[name] = c.upload_bytes(name, data)["id"]
                except Exception:  # noqa: BLE001 - the API died under this request
                    failed.append((name, data))
                if len(accepted) == 2:
                    killed.wait(60)  # the rest are sent while (or after) the API is down

    thread = threading.Thread(target=uploader)
    thread.start()
    wait_until(lambda: len(accepted) >= 2, 120, "the first uploads")
    kill_and_reap(faults, "api")
    killed.set()
    thread.join(timeout=300)
    assert not thread.is_alive()
    assert failed, "some uploads should have met the dead API"
    start(faults, "api")
    # the client sends again what got no answer (the same bytes: the same document if the
    # dead API had recorded it)
    for name, data in failed:
        accepted[name] = acme.upload_bytes(name, data)["id"]

    ids = [accepted[name] for name, _ in docs]
    assert_converged(faults, ids, docs)
    listed = {d["id"] for d in acme.documents(limit=200)["items"]}
    assert set(ids) <= listed


# ---------------------------------------------------------------- Redis faults


def test_redis_killed_and_restarted_queued_and_in_progress_documents_finish(
    redis_stack: Stack, own_redis: OwnRedis
) -> None:
    """Queued messages come back from the append-only file. The document in progress loses
    its Redis lock mid-upsert and its retry cannot be published while Redis is down; its
    message comes back from the ``unacked`` set after the visibility timeout or, when the
    last second of the file was lost with it, the reconciler queues the document again."""
    st = redis_stack
    docs = make_docs("redis-restart", 4)
    with st.client("acme") as acme:
        ids = upload_all(acme, docs)
    uploaded = time.monotonic()
    wait_mid_embed(st, ids[1])  # the second: its message has been in Redis a while
    # the append-only file is written every second (appendfsync everysec, as in compose)
    time.sleep(max(0.0, uploaded + 2.0 - time.monotonic()))
    repo = registry(st)
    assert repo.get(ids[3]).status is DocumentStatus.QUEUED  # type: ignore[union-attr]
    own_redis.kill9()  # ids[1] mid-embed (its message unacked), ids[2:] queued
    time.sleep(2)
    own_redis.start()  # same directory: the append-only file brings the queue back

    assert_converged(st, ids, docs)
    # the API enqueues again after Redis came back
    late = make_docs("redis-after", 1)
    with st.client("acme") as acme:
        late_ids = upload_all(acme, late)
    assert_converged(st, late_ids, late)


def test_reconciler_on_worker_start_requeues_documents_redis_lost(
    redis_stack: Stack, own_redis: OwnRedis
) -> None:
    st = redis_stack
    docs = make_docs("redis-lost", 3)
    with st.client("acme") as acme:
        ids = upload_all(acme, docs)
    wait_mid_embed(st, ids[0])
    kill_and_reap(st, "worker")  # ids[0] stuck processing, the others queued
    own_redis.kill9()
    own_redis.start(fresh_dir=True)  # Redis lost everything: queue, unacked set, counts
    repo = registry(st)
    assert repo.get(ids[0]).status is DocumentStatus.PROCESSING  # type: ignore[union-attr]
    assert all(repo.get(i).status is DocumentStatus.QUEUED for i in ids[1:])  # type: ignore[union-attr]
    after_s = int(FAULT_ENV["DOCQA_WORKER__RECONCILE_AFTER_S"])
    time.sleep(after_s + 1)  # past the reconciler's deadline
    start(st, "worker")

    assert_converged(st, ids, docs)
    assert re.search(r"reconcile: 3 document\(s\) were queued or processing", st.log("worker"))


def test_a_batching_worker_holding_messages_survives_redis_killed_and_restarted(
    batching_redis: tuple[Stack, OwnRedis]
) -> None:
    """A worker with batches (``worker.batch_size`` 8) keeps polling Redis while it holds
    unacknowledged messages: one document running in its child, the others held for the next
    job. Redis killed then: the worker reconnects instead of dying in kombu's restore of those
    messages (workers/broker.py), and every document still ends ready exactly once, the held
    ones settled through the new connection."""
    st, server = batching_redis
    worker = st.procs["worker"]
    docs = make_docs("batch-redis", 4)
    with st.client("acme") as acme:
        ids = upload_all(acme, docs)
    uploaded = time.monotonic()
    # each document is several embedding batches, so a job takes one and holds the others
    wait_mid_embed(st, ids[1])
    time.sleep(max(0.0, uploaded + 2.0 - time.monotonic()))  # the append-only file's second
    assert registry(st).get(ids[3]).status is DocumentStatus.QUEUED  # type: ignore[union-attr]
    assert re.search(r"ingest job: [2-9] document\(s\) given", st.log("worker")), \
        "the worker did not hold several messages at once: the case is not reached"
    server.kill9()
    time.sleep(2)
    server.start()

    assert_converged(st, ids, docs)
    assert worker.poll() is None and st.procs["worker"] is worker, st.log("worker")[-3000:]
    assert "Unrecoverable error" not in st.log("worker")


# ---------------------------------------------------------------- docqa up supervision


def _proc_cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def _up_child(up_pid: int, needle: str) -> int | None:
    for pid in children(up_pid):
        if needle in _proc_cmdline(pid) and alive(pid):
            return pid
    return None


def test_up_restarts_a_crashed_worker_and_chroma_and_still_stops_cleanly(
    tmp_path: Path, own_redis: OwnRedis
) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOCQA_")}
    env.update({
        "DOCQA_REDIS_URL": own_redis.url(1),
        "DOCQA_NETGUARD_LOG": str(tmp_path / "net.log"),
        "DOCQA_API_KEYS": f"acme:{KEYS['acme']}",
        "DOCQA_LOAD_GENERATOR": "false",
        "DOCQA_MODELS__ONNX_CACHE_DIR": ONNX_CACHE,
        "PYTHONPATH": os.pathsep.join([str(NETGUARD), str(Path(__file__).resolve().parents[2])]),
    })
    proc = subprocess.Popen(
        [sys.executable, "-m", "service.cli", "up", "--port", str(port), "--data-dir",
         str(tmp_path / "data")], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True, start_new_session=True)
    lines: list[str] = []

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    url = f"http://127.0.0.1:{port}"
    seen: set[int] = set()
    try:
        wait_until(lambda: any("Press Ctrl-C" in ln for ln in lines), 300,
                   "docqa up to be ready")
        seen.update(descendants(proc.pid))
        for name, needle in (("worker", "-m workers"), ("chroma", "chroma run")):
            old = _up_child(proc.pid, needle)
            assert old, (name, "".join(lines))
            kill9(old)
            new = wait_until(lambda n=needle, o=old: (p := _up_child(proc.pid, n)) != o and p,
                             120, f"{name} to be restarted")
            seen.update(descendants(proc.pid))
            assert any(f"{name} (pid {old}) exited with signal SIGKILL; restarting" in ln
                       for ln in lines), "".join(lines)
            assert any(f"{name} restarted (pid {new}" in ln for ln in lines), "".join(lines)
        assert proc.poll() is None
        # the restarted pair works: an upload ends ready
        assert wait_http(f"{url}/readyz", 120)
        with DocqaClient(url, KEYS["acme"], timeout=60) as c:
            doc_id = c.upload_bytes("after-restarts.txt", make_docs("up", 1)[0][1])["id"]
            assert c.wait_ready([doc_id], timeout=WAIT_S)[doc_id]["status"] == "ready"
        seen.update(descendants(proc.pid))
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            raise
        reader.join(timeout=10)
    assert proc.returncode == 0, "".join(lines)
    assert any("docqa stopped." in ln for ln in lines)
    wait_until(lambda: not any(alive(p) for p in seen), 30, "every child of docqa up to exit")
    logs = (tmp_path / "data" / "logs" / "worker.log").read_text(errors="replace")
    assert "--- docqa up: restarting worker ---" in logs
