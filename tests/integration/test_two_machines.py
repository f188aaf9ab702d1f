"""Two machines on this one: each has its own API process, worker process and local data
directory; they share PostgreSQL (registry, key store, keyword index), one Redis, one Chroma
server and one originals directory (``DOCQA_ORIGINALS_DIR``), as a deployment on several
hosts does (docs/several-machines.md).

Machine 1 sees the Chroma server's directory (``DOCQA_CHROMA__DATA_DIR``: Chroma runs on
it), machine 2 does not: the erasure's Chroma file scrub must still happen, through the
``docqa.chroma`` queue that only machine 1's worker consumes.

The database is created for this module and dropped at its end (PostgreSQL at
``DOCQA_TEST_POSTGRES_URL``, default ``postgresql://postgres@127.0.0.1:5432/postgres``).
"""

from __future__ import annotations

import base64
import contextlib
import os
import re
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
import redis
from psycopg import conninfo, sql

from core.domain import Document, DocumentStatus
from core.registry.postgres import PostgresDocumentRepository
from service.cli.processes import chroma_command, free_port, wait_http
from tests.forensics import files_containing
from tests.integration.conftest import KEYS, NETGUARD, Stack, _stop
from tests.private_redis import session_redis_url

pytestmark = pytest.mark.integration

REDIS_URL = os.environ.get("DOCQA_TEST_TWO_MACHINES_REDIS_URL") or session_redis_url(14)
PG_ADMIN_URL = os.environ.get(
    "DOCQA_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
ERASE_DEADLINE_S = 60
# both machines: kill windows and a quick redelivery, as in test_faults.py
ENV = {
    "DOCQA_WORKER__VISIBILITY_TIMEOUT_S": "50",
    "DOCQA_WORKER__TASK_TIME_LIMIT_S": "30",
    "DOCQA_WORKER__UNACKED_RESTORE_INTERVAL_S": "1",
    "DOCQA_WORKER__UNACKED_RESTORE_THROTTLE": "1",
    "DOCQA_WORKER__RECONCILE_AFTER_S": "20",
    "DOCQA_WORKER__RECONCILE_INTERVAL_S": "5",
    "DOCQA_MODELS__EMBEDDING_BATCH_SIZE": "4",  # several embedding rounds per document
    "DOCQA_CHUNKING__SIZE": "50",
    "DOCQA_CHUNKING__OVERLAP": "10",
    "DOCQA_TEST_HOOKS__SLOW_EMBED_S": "0.3",  # TEST ONLY (workers/testhooks.py): kill window
    "DOCQA_LOAD_GENERATOR": "false",  # extractive answers need no GGUF model: two APIs
    "DOCQA_RATE_LIMIT__REQUESTS_PER_MINUTE": "0",
    "DOCQA_RATE_LIMIT__ASK_PER_MINUTE": "0",
    "DOCQA_RATE_LIMIT__AUTH_FAILURES_PER_MINUTE": "1000",
}


@dataclass
class Cluster:
    m1: Stack
    m2: Stack
    originals: Path
    chroma_dir: Path
    dsn: str

    def machines(self) -> list[Stack]:
        return [self.m1, self.m2]

    def repo(self) -> PostgresDocumentRepository:
        return PostgresDocumentRepository(self.dsn)

    def pg(self, query: str, *params: Any) -> list[tuple[Any, ...]]:
        with psycopg.connect(self.dsn) as db:
            return list(db.execute(query, params).fetchall())

    def pg_dump(self) -> bytes:
        """The whole test database as SQL text (every table's rows)."""
        return subprocess.run(["pg_dump", "--no-owner", "--data-only", self.dsn],
                              check=True, capture_output=True, timeout=120).stdout


def _create_database() -> str:
    try:
        admin = psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        pytest.fail(f"the two-machine test needs PostgreSQL at {PG_ADMIN_URL!r}: {exc}",
                    pytrace=False)
    name = f"docqa_two_{secrets.token_hex(6)}"
    with admin:
        admin.execute(sql.SQL("CREATE DATABASE {} TEMPLATE template0 ENCODING 'UTF8'")
                      .format(sql.Identifier(name)))
    return conninfo.make_conninfo(PG_ADMIN_URL, dbname=name)


def _drop_database(dsn: str) -> None:
    name = conninfo.conninfo_to_dict(dsn)["dbname"]
    with psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=5) as admin:
        admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)")
                      .format(sql.Identifier(name)))


def _machine_env(data: Path, api_port: int, chroma_port: int, dsn: str, originals: Path,
                 master_key: str, extra: dict[str, str]) -> dict[str, str]:
    env = {
        **os.environ,
        "DOCQA_DATA_DIR": str(data),
        "DOCQA_ORIGINALS_DIR": str(originals),
        "DOCQA_DATABASE_URL": dsn,
        "DOCQA_ENCRYPTION_KEY": master_key,  # one key for every machine (a Secret)
        "DOCQA_REDIS_URL": REDIS_URL,
        "DOCQA_CHROMA__HOST": "127.0.0.1",
        "DOCQA_CHROMA__PORT": str(chroma_port),
        "DOCQA_HOST": "127.0.0.1",
        "DOCQA_PORT": str(api_port),
        "DOCQA_API_KEYS": ",".join(f"{t}:{k}" for t, k in KEYS.items()),
        "DOCQA_NETGUARD_LOG": str(data / "netguard.log"),
        "PYTHONPATH": os.pathsep.join([str(NETGUARD), str(Path(__file__).resolve().parents[2]),
                                       os.environ.get("PYTHONPATH", "")]),
        "NO_PROXY": "*",
        **ENV,
        **extra,
    }
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY",
                "DOCQA_CHROMA__DATA_DIR", "DOCQA_METRICS__MULTIPROC_DIR", "DOCQA_AUDIT__PATH"):
        if var not in extra:
            env.pop(var, None)
    return env


def _start(st: Stack, name: str, cmd: list[str]) -> None:
    with (st.data_dir / "logs" / f"{name}.log").open("ab") as log:
        st.procs[name] = subprocess.Popen(cmd, env=st.env, stdout=log, stderr=subprocess.STDOUT,
                                          start_new_session=True)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    root = tmp_path_factory.mktemp("docqa-two-machines")
    originals, chroma_dir = root / "shared-originals", root / "shared-chroma"
    originals.mkdir()
    redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2).flushdb()
    dsn = _create_database()
    master_key = base64.b64encode(secrets.token_bytes(32)).decode()
    chroma_port = free_port()
    machines: list[Stack] = []
    chroma_proc: subprocess.Popen[bytes] | None = None
    try:
        (root / "chroma-logs").mkdir()
        with (root / "chroma-logs" / "chroma.log").open("ab") as log:
            chroma_proc = subprocess.Popen(
                chroma_command(chroma_dir, "127.0.0.1", chroma_port), env={**os.environ},
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        assert wait_http(f"http://127.0.0.1:{chroma_port}/api/v2/heartbeat", 60, [chroma_proc])
        for n in (1, 2):
            data = root / f"machine-{n}"
            (data / "logs").mkdir(parents=True)
            api_port = free_port()
            # machine 1 runs the Chroma server: it sees its directory, machine 2 does not
            extra = {"DOCQA_CHROMA__DATA_DIR": str(chroma_dir)} if n == 1 else {}
            env = _machine_env(data, api_port, chroma_port, dsn, originals, master_key, extra)
            st = Stack(f"http://127.0.0.1:{api_port}", data, env, chroma_port,
                       data / "netguard.log")
            machines.append(st)
            _start(st, "worker", [sys.executable, "-m", "service.cli", "worker"])
            _start(st, "api", [sys.executable, "-m", "service.cli", "serve"])
        for st in machines:
            if not wait_http(f"{st.url}/readyz", 240, list(st.procs.values())):
                pytest.fail(f"{st.data_dir.name} did not become ready:\n"
                            + st.log("api")[-3000:] + st.log("worker")[-3000:])
        deadline = time.monotonic() + 180
        while (not all("ready" in st.log("worker") for st in machines)
               and time.monotonic() < deadline):
            time.sleep(0.5)
        yield Cluster(machines[0], machines[1], originals, chroma_dir, dsn)
    finally:
        for st in machines:
            _resume(st)
            _stop(st.procs)
        if chroma_proc is not None:
            _stop({"chroma": chroma_proc})
        _drop_database(dsn)


# ---------------------------------------------------------------- processes


def _descendants(pid: int) -> list[int]:
    out, todo = [], [pid]
    while todo:
        parent = todo.pop()
        try:
            kids = [int(x) for x in
                    Path(f"/proc/{parent}/task/{parent}/children").read_text().split()]
        except OSError:
            kids = []
        out += kids
        todo += kids
    return out


def _worker_pids(st: Stack) -> list[int]:
    main = st.procs["worker"].pid
    return [main, *_descendants(main)]


def _signal(pids: list[int], sig: signal.Signals) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)


def _resume(st: Stack) -> None:
    if "worker" in st.procs and st.procs["worker"].poll() is None:
        _signal(_worker_pids(st), signal.SIGCONT)


def _wait_until(pred: Callable[[], Any], timeout: float, what: str, poll: float = 0.3) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := pred()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(poll)
    return value


# ---------------------------------------------------------------- files and rows


def _files_containing(root: Path, needles: list[bytes]) -> dict[str, list[str]]:
    return files_containing(root, needles, absolute=True)


def _sealed_fragments(cluster: Cluster, tenant: str, doc_id: str) -> list[bytes]:
    """40 characters of each sealed chunk text of the document, as Chroma stores it."""
    from core.textcrypt import TEXT_KEY
    from ingest.store import tenant_get

    res = tenant_get(cluster.m1.chroma(), tenant, where={"document_id": doc_id},
                     include=["metadatas", "documents"])
    assert all(d is None for d in res["documents"]), "plain text in Chroma"
    return [str(m[TEXT_KEY])[20:60].encode() for m in res["metadatas"]]


def _chroma_ids(cluster: Cluster, tenant: str, doc_id: str) -> list[str]:
    from ingest.store import tenant_get

    return tenant_get(cluster.m1.chroma(), tenant, where={"document_id": doc_id},
                      include=[])["ids"]


def _hashed_terms(master_key: str, tenant: str, text: str) -> list[str]:
    """The keyword index's form of ``text``'s terms: stemmed, then hashed per tenant."""
    from core.crypto import parse_master_key
    from core.textcrypt import term_key
    from ingest.keywords import TermHasher, terms
    from ingest.store import collection_name

    hasher = TermHasher(term_key(parse_master_key(master_key)))
    return [hasher(collection_name(tenant), t) for t in terms(text)]


def _keyword_rows(cluster: Cluster, doc_id: str, hashed: list[str]) -> dict[str, int]:
    """Rows of the keyword index naming the document, and rows holding each hashed term
    (as the postgres role: a superuser, row-level security does not hide other tenants)."""
    out = {"document": cluster.pg("SELECT count(*) FROM keyword_chunks WHERE document_id = %s",
                                  doc_id)[0][0]}
    for h in hashed:
        out[h] = cluster.pg("SELECT count(*) FROM keyword_chunks WHERE terms @@ %s::tsquery",
                            "'" + h.replace("'", "''") + "'")[0][0]
    return out


# ---------------------------------------------------------------- documents

DOCS = {
    "lighthouse.txt": (
        "The harbour lighthouse at Vestby is repainted every spring by the maintenance "
        "crew. Its lamp was converted to LED in 2019, which cut the power bill by half. "
        "The keeper's cottage now houses a small museum of shipwrecks."),
    "payroll.txt": (
        "Payroll policy. Salaries are paid on the 25th of each month. Overtime is paid at "
        "one and a half times the hourly rate and must be approved by a line manager. "
        "Expense claims are reimbursed with the next salary payment."),
    "bakery.txt": (
        "The Lindqvist bakery opens at six in the morning. Its sourdough rye is baked in a "
        "wood-fired oven, and the cardamom buns sell out before nine on Saturdays."),
}
QUESTIONS = [
    "When was the lighthouse lamp converted to LED?",
    "At what rate is overtime paid?",
    "What time does the bakery open?",
    "Which oven is the sourdough rye baked in?",
]


def _comparable_hits(body: dict[str, Any]) -> list[tuple[Any, ...]]:
    return [(h["chunk_id"], h["document_id"], h["text"], h["score"]) for h in body["results"]]


def _comparable_answer(body: dict[str, Any]) -> tuple[Any, ...]:
    return (body["status"], body["answer"],
            [(c["document_id"], c["start"], c["end"], c["quote"], c["score"])
             for c in body["citations"]])


# ---------------------------------------------------------------- the tests


def test_state_is_shared_where_it_must_be_and_local_where_it_may(cluster: Cluster) -> None:
    """No SQLite registry or keyword index in a machine's directory (PostgreSQL holds them),
    no originals there either, and each machine's metrics files and audit log its own."""
    with cluster.m1.client() as one:
        doc = one.upload_bytes("placement.txt", b"The placement check document says hello.\n")
        assert one.wait_ready([doc["id"]], timeout=180)[doc["id"]]["status"] == "ready"
    assert (cluster.originals / doc["id"]).is_file()
    for st in cluster.machines():
        names = {p.name for p in st.data_dir.rglob("*")}
        assert not {"registry.sqlite3", "keywords.sqlite3", "files", doc["id"]} & names, names
        assert not list(st.data_dir.rglob("*.sqlite3*")), st.data_dir
        assert list((st.data_dir / "metrics").glob("*.db")), st.data_dir  # this machine's
        assert not (st.data_dir / "netguard.log").exists()  # nothing reached outward
    assert (cluster.m1.data_dir / "audit.log").read_text().count(doc["id"]) >= 1
    assert doc["id"] not in (cluster.m2.data_dir / "audit.log").read_text()
    assert "does not see the Chroma directory" in cluster.m2.log("worker")
    assert "this worker sees the Chroma directory" in cluster.m1.log("worker")


def test_upload_on_one_machine_answers_the_same_on_the_other(cluster: Cluster) -> None:
    with cluster.m1.client() as one, cluster.m2.client() as two:
        ids = [one.upload_bytes(name, text.encode())["id"] for name, text in DOCS.items()]
        final = two.wait_ready(ids, timeout=240)  # machine 2 sees machine 1's uploads
        assert {d["status"] for d in final.values()} == {"ready"}, final
        for mode in ("hybrid", "dense", "keyword"):
            for q in QUESTIONS:
                a, b = one.search(q, top_k=5, mode=mode), two.search(q, top_k=5, mode=mode)
                assert _comparable_hits(a) == _comparable_hits(b), (mode, q)
                assert a["results"], (mode, q)
        # hybrid finds by keyword what dense alone ranks lower: both machines use the
        # shared PostgreSQL index (a word only one document has)
        hits = two.search("Lindqvist cardamom", top_k=1, mode="keyword")["results"]
        assert hits and hits[0]["document_id"] == ids[2]
        for q in QUESTIONS:
            a, b = one.ask(q), two.ask(q)
            assert _comparable_answer(a) == _comparable_answer(b), q
        assert two.ask(QUESTIONS[0])["status"] == "answered"
        assert "2019" in two.ask(QUESTIONS[0])["answer"]
        # the chunk text is sealed, so machine 2 opened it with the shared key store
        assert "2019" in two.search(QUESTIONS[0], top_k=1)["results"][0]["text"]


def test_delete_on_machine_two_erases_everywhere_within_60_seconds(cluster: Cluster) -> None:
    canary = "TWOMACHCANARY" + secrets.token_hex(6).upper()
    token = "quorvantel" + secrets.token_hex(3)
    text = (f"Confidential merger memo. The merger codeword is {canary}.\n"
            f"The {token} programme pays the sellers in three instalments.\n"
            f"Only the board may read the {token} file.\n")
    master = cluster.m1.env["DOCQA_ENCRYPTION_KEY"]
    with cluster.m1.client() as one, cluster.m2.client() as two:
        doc = one.upload_bytes("merger.txt", text.encode())
        doc_id = doc["id"]
        assert two.wait_ready([doc_id], timeout=180)[doc_id]["status"] == "ready"
        for mode in ("hybrid", "keyword", "dense"):
            hits = two.search(f"merger codeword {canary}", top_k=3, mode=mode)["results"]
            assert hits and canary in hits[0]["text"], mode

        # what is stored of it, so that the checks below can be seen to see it
        plain = [canary.encode(), canary.lower().encode(), token[:9].encode()]
        sealed = _sealed_fragments(cluster, "acme", doc_id)
        assert sealed and _files_containing(cluster.chroma_dir, sealed)
        hashed = _hashed_terms(master, "acme", f"{canary} {token}")
        before = _keyword_rows(cluster, doc_id, hashed)
        assert before["document"] >= 1 and all(before[h] >= 1 for h in hashed), before
        assert cluster.pg("SELECT count(*) FROM documents WHERE id = %s", doc_id)[0][0] == 1
        assert cluster.pg("SELECT count(*) FROM file_keys WHERE key_id = %s",
                          f"text-{doc_id}")[0][0] == 1
        assert (cluster.originals / doc_id).is_file()
        dump = cluster.pg_dump()
        assert doc_id.encode() in dump and hashed[0].encode() in dump
        assert not any(n in dump for n in plain)  # the text never reaches PostgreSQL

        scrubs = cluster.m1.log("worker").count("Chroma directory scrubbed")
        two.delete(doc_id)
        deleted_at = time.monotonic()
        for mode in ("hybrid", "keyword", "dense"):
            found = one.search(f"merger codeword {canary} {token}", top_k=50, mode=mode)
            assert all(canary not in h["text"] and h["document_id"] != doc_id
                       for h in found["results"]), mode

        file_needles = [*plain, *sealed]
        roots = [cluster.m1.data_dir, cluster.m2.data_dir, cluster.originals, cluster.chroma_dir]

        def left() -> dict[str, Any]:
            out: dict[str, Any] = {}
            # the scrub of the Chroma directory runs on machine 1, the one that sees it
            if cluster.m1.log("worker").count("Chroma directory scrubbed") <= scrubs:
                out["chroma scrub"] = "not run yet"
            for root in roots:
                out.update(_files_containing(root, file_needles))
            if (cluster.originals / doc_id).exists():
                out["original"] = str(cluster.originals / doc_id)
            rows = _keyword_rows(cluster, doc_id, hashed)
            if any(rows.values()):
                out["keyword_chunks"] = rows
            if cluster.pg("SELECT count(*) FROM documents WHERE id = %s", doc_id)[0][0]:
                out["documents"] = doc_id
            if cluster.pg("SELECT count(*) FROM file_keys WHERE key_id = %s",
                          f"text-{doc_id}")[0][0]:
                out["file_keys"] = f"text-{doc_id}"
            dump = cluster.pg_dump()
            in_dump = [n for n in (*plain, *sealed, doc_id.encode(),
                                   *(h.encode() for h in hashed)) if n in dump]
            if in_dump:
                out["pg_dump"] = in_dump
            return out

        remaining: dict[str, Any] = {}
        while time.monotonic() - deleted_at < ERASE_DEADLINE_S:
            remaining = left()
            if not remaining:
                break
            time.sleep(0.5)
        took = time.monotonic() - deleted_at
        assert not remaining, f"after {took:.0f} s the document is still in {remaining}"
        assert "Chroma directory scrubbed" not in cluster.m2.log("worker")
        ans = two.ask(f"What is the merger codeword {canary}?")
        assert canary not in ans["answer"] + " ".join(c["quote"] for c in ans["citations"])
    r = redis.Redis.from_url(REDIS_URL)
    for key in r.scan_iter(count=1000):
        assert not any(n in (r.dump(key) or b"") for n in plain), key


def _mid_embed(cluster: Cluster, doc_id: str, min_done: int = 4) -> Document | None:
    doc = cluster.repo().get(doc_id)
    assert doc is not None
    assert doc.status not in (DocumentStatus.READY, DocumentStatus.FAILED), (
        f"{doc_id} ended {doc.status} before the kill")
    if doc.progress.stage == "embedding" and min_done <= doc.progress.done < doc.progress.total:
        return doc
    return None


def _long_text(tag: str, words: int = 400) -> bytes:
    vocab = ("contract renewal notice payment invoice supplier warranty liability clause term "
             "employee leave policy incident report server outage backup restore audit review "
             "budget quarter revenue forecast committee approval deadline delivery").split()
    out, i = [], 0
    while len(out) < words:
        out.extend([vocab[(i * 7 + j * 3) % len(vocab)] for j in range(11)])
        out.append(f"({tag} {i}).")
        i += 1
    return (" ".join(out) + "\n").encode()


def test_worker_killed_on_machine_one_mid_ingest_finishes_once_on_machine_two(
    cluster: Cluster,
) -> None:
    data = _long_text("two-machine-kill")
    # machine 2's worker is held (SIGSTOP) so that machine 1's takes the document
    _signal(_worker_pids(cluster.m2), signal.SIGSTOP)
    received = cluster.m1.log("worker").count("Task docqa.ingest_document[")
    try:
        with cluster.m1.client() as one:
            doc_id = one.upload_bytes("kill-mid-ingest.txt", data)["id"]
        _wait_until(lambda: _mid_embed(cluster, doc_id), 180, f"{doc_id} to be mid-embed", 0.05)
        # embedding while machine 2's worker is stopped: machine 1's took it
        assert cluster.m1.log("worker").count("Task docqa.ingest_document[") == received + 1
        written = len(_chroma_ids(cluster, "acme", doc_id))
        victims = _worker_pids(cluster.m1)
        _signal(victims, signal.SIGKILL)  # machine 1's worker: main process and pool child
        cluster.m1.procs["worker"].wait(timeout=30)
    finally:
        _resume(cluster.m2)
    assert written >= 1  # killed with part of the document stored

    repo = cluster.repo()
    final = _wait_until(lambda: (d := repo.get(doc_id)) is not None and d.status in (
        DocumentStatus.READY, DocumentStatus.FAILED) and d, 240, f"{doc_id} to settle", 0.5)
    assert final.status is DocumentStatus.READY, (final.error, cluster.m2.log("worker")[-3000:])
    # machine 2 finished it, once
    assert re.search(rf"ingest {doc_id}: delivery 2 \(at most", cluster.m2.log("worker"))
    ready_lines = [len(re.findall(rf"document {doc_id} ready:", st.log("worker")))
                   for st in cluster.machines()]
    assert ready_lines == [0, 1], ready_lines
    # as many chunks as an undisturbed ingest of the same bytes gives, each once
    with cluster.m2.client("globex") as two:
        ref = two.upload_bytes("kill-mid-ingest.txt", data)["id"]
        assert two.wait_ready([ref], timeout=180)[ref]["status"] == "ready"
    stored = _chroma_ids(cluster, "acme", doc_id)
    want = len(_chroma_ids(cluster, "globex", ref))
    assert len(stored) == len(set(stored)) == final.chunks == want > written, (
        len(stored), final.chunks, want, written)
    rows = cluster.pg("SELECT count(*), count(DISTINCT chunk_id) FROM keyword_chunks "
                      "WHERE document_id = %s", doc_id)[0]
    assert rows == (want, want)
    names = [d.filename for d in repo.list("acme", None, 10_000, 0)[0]]
    assert names.count("kill-mid-ingest.txt") == 1
