"""What several unit test files share, defined once: import it from here
(``from tests.unit.conftest import FakeStore, make_app``); fixtures are found by pytest.

* :class:`FakeStore`: the vector store port (``core.ports.VectorStore``) in memory;
* :class:`FakeRedis`: the few Redis commands the code under test sends, in memory;
* :func:`make_app`: the real Litestar app (guards, handlers, error mapping) on fake or given
  components; :func:`make_passages_app` is it answering from :data:`PASSAGES`;
* :class:`FakeAnswers`, :class:`BrokenRepo`, :class:`StreamingFake`, :class:`RecordingQueue`:
  the other stand-ins used by more than one file;
* :class:`Env`: the document service and the ingest job on a PII record (:data:`TEXT`);
* the registry fixtures ``make_repo``, ``pg_dsn``, ``pg_database``: one test body run on
  SQLite and on PostgreSQL.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import re
import secrets
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
import pytest
from litestar import Litestar
from psycopg import conninfo, sql

from core.audit import AuditLog, open_audit
from core.domain import Chunk, ChunkHit, Document
from core.errors import OverloadedError
from core.ports import DocumentRepository, Embedder
from core.registry import SqliteDocumentRepository, open_repository
from core.registry.postgres import PostgresDocumentRepository
from core.settings import Settings
from core.tasks import INGEST_QUEUE
from core.vault import Vault
from ingest.embedding import HashEmbedder
from ingest.pipeline import IngestDeps, ingest_document
from service.answer import AnswerPipeline
from service.api.app import create_app
from service.api.components import Components
from service.api.streaming import text_pieces
from service.documents import DocumentService

# ---------------------------------------------------------------- the vector store

ANY_TENANT = "*"  # the tenant of passages given to FakeStore(...): every tenant sees them


class FakeStore:
    """The vector store (``core.ports.VectorStore``) in memory.

    ``FakeStore(passages, embedder)`` holds fixed passages that every tenant sees: passage
    ``i`` is chunk ``c{i}`` of document ``d{i}`` (file ``f{i}.txt``, page 1, offsets 0 to its
    length). Chunks upserted later belong to their tenant. ``query`` scores by the dot product
    of the stored vectors with the query vector; ``keyword_ids`` (only with
    ``keywords=True``, else ``has_keywords`` is False and there are none) ranks chunks by
    how many of the query's words they contain. ``up=False``: ``heartbeat`` fails.
    """

    has_keywords = False

    def __init__(self, passages: Sequence[str] = (), embedder: Embedder | None = None, *,
                 keywords: bool = False, up: bool = True) -> None:
        self.up = up
        if keywords:
            self.has_keywords = True
        self.chunks: dict[str, tuple[str, str, Chunk]] = {}  # id -> (tenant, document, chunk)
        self.vectors: dict[str, list[float]] = {}
        self.metadata: dict[str, dict[str, Any]] = {}
        self.deletes: list[tuple[str, str]] = []  # whole-document deletes, in order
        self.destroyed: set[str] = set()  # documents whose text key was destroyed
        self.id_keys: dict[str, bytes] = {}  # documents' chunk-id keys
        if passages and embedder is None:
            raise ValueError("passages need an embedder")
        for i, text in enumerate(passages):
            chunk = Chunk(f"c{i}", f"d{i}", 0, text, 1, 0, len(text))
            self.chunks[chunk.id] = (ANY_TENANT, chunk.document_id, chunk)
            self.vectors[chunk.id] = embedder.embed([text])[0]  # type: ignore[union-attr]
            self.metadata[chunk.id] = {"document_id": chunk.document_id, "filename": f"f{i}.txt"}

    # ------------------------------------------------------------ writes

    def upsert(self, tenant: str, chunks: Sequence[Chunk], embeddings: Any, metadata: Any,
               per_chunk: Any = None) -> None:
        for i, c in enumerate(chunks):
            self.chunks[c.id] = (tenant, c.document_id, c)
            self.vectors[c.id] = list(embeddings[i])
            self.metadata[c.id] = {**(metadata or {}), **(per_chunk[i] if per_chunk else {}),
                                   "document_id": c.document_id}

    def delete_document(self, tenant: str, document_id: str, keep: Sequence[str] = ()) -> int:
        """Returns how many of the document's chunks remain (the kept ones found)."""
        if not keep:
            self.deletes.append((tenant, document_id))
        present = self.chunk_ids(tenant, document_id)
        for cid in present:
            if cid not in keep:
                del self.chunks[cid]
        return len([c for c in present if c in keep])

    def destroy_text_key(self, document_id: str) -> bool:
        """Crypto-erasure: the document's chunks are never returned again, and its chunk-id
        key is gone."""
        fresh = document_id not in self.destroyed
        self.destroyed.add(document_id)
        self.id_keys.pop(document_id, None)
        return fresh

    def chunk_id_key(self, document_id: str) -> bytes:
        return self.id_keys.setdefault(document_id, secrets.token_bytes(32))

    # ------------------------------------------------------------ reads

    def chunk_ids(self, tenant: str, document_id: str) -> list[str]:
        return [k for k, (t, d, _) in self.chunks.items() if (t, d) == (tenant, document_id)]

    def count_document(self, tenant: str, document_id: str) -> int:
        return len(self.chunk_ids(tenant, document_id))

    def texts(self, document_id: str) -> list[str]:
        """The stored text of a document's chunks (any tenant)."""
        return [c.text for _t, d, c in self.chunks.values() if d == document_id]

    def query(self, tenant: str, embedding: Sequence[float], top_k: int,
              document_ids: Sequence[str] | None = None) -> list[ChunkHit]:
        hits = [self._hit(cid, embedding) for cid in self._visible(tenant, document_ids)]
        return sorted(hits, key=lambda h: h.score, reverse=True)[:top_k]

    def nearest(self, tenant: str, embedding: Sequence[float], top_k: int,
                document_ids: Sequence[str] | None = None) -> list[tuple[str, float]]:
        return [(h.chunk_id, h.score) for h in self.query(tenant, embedding, top_k,
                                                          document_ids)]

    def keyword_ids(self, tenant: str, text: str, n: int,
                    document_ids: Sequence[str] | None = None) -> list[str]:
        if not self.has_keywords:
            return []
        words = set(re.findall(r"\w+", text.lower()))
        found = {cid: len(words & set(re.findall(r"\w+", self.chunks[cid][2].text.lower())))
                 for cid in self._visible(tenant, document_ids)}
        return sorted((c for c, k in found.items() if k), key=lambda c: -found[c])[:n]

    def text_chunks(self, tenant: str, document_id: str, start: int, end: int,
                    limit: int | None = None) -> list[ChunkHit]:
        if document_id in self.destroyed:
            return []
        found = sorted((c for t, d, c in self.chunks.values()
                        if t in (tenant, ANY_TENANT) and d == document_id
                        and c.start < end and c.end > start), key=lambda c: (c.start, c.id))
        return [ChunkHit(c.id, c.document_id, "", c.text, c.page, c.start, c.end, 0.0)
                for c in found[:limit]]

    def get_chunks(self, tenant: str, ids: Sequence[str], embedding: Sequence[float],
                   scores: Mapping[str, float] | None = None) -> list[ChunkHit]:
        visible = set(self._visible(tenant, None))
        return [self._hit(cid, embedding) for cid in ids if cid in visible]

    def heartbeat(self) -> None:
        if not self.up:
            raise ConnectionError("chroma down")

    def _visible(self, tenant: str, document_ids: Sequence[str] | None) -> list[str]:
        return [cid for cid, (t, d, _) in self.chunks.items()
                if t in (tenant, ANY_TENANT) and d not in self.destroyed
                and (document_ids is None or d in document_ids)]

    def _hit(self, cid: str, embedding: Sequence[float]) -> ChunkHit:
        _t, doc, c = self.chunks[cid]
        meta = self.metadata[cid]
        score = sum(a * b for a, b in zip(self.vectors[cid], embedding, strict=True))
        sentences = {k: v for k, v in meta.items() if k.startswith("sent_")} or None
        return ChunkHit(cid, doc, str(meta.get("filename", "")), c.text, c.page, c.start, c.end,
                        score, sentences)


# ---------------------------------------------------------------- Redis


class FakeRedis:
    """The Redis commands the code under test sends (counters, locks, the Celery queue and
    unacked set, readiness), in memory; no expiry. ``up=False``: every command fails."""

    def __init__(self, up: bool = True, *, lists: dict[str, list[bytes]] | None = None) -> None:
        self.up = up
        self.values: dict[str, int] = {}
        self.lists: dict[str, list[bytes]] = dict(lists or {})
        self.hashes: dict[str, dict[str, bytes]] = {}

    def _check(self) -> None:
        if not self.up:
            raise ConnectionError("redis down")

    def ping(self) -> bool:
        self._check()
        return True

    def incr(self, key: str) -> int:
        self._check()
        self.values[key] = self.values.get(key, 0) + 1
        return self.values[key]

    def get(self, key: str) -> int | None:
        self._check()
        return self.values.get(key)

    def set(self, key: str, value: int) -> None:
        self._check()
        self.values[key] = value

    def mget(self, keys: Sequence[str]) -> list[int | None]:
        self._check()
        return [self.values.get(k) for k in keys]

    def expire(self, key: str, _ttl: int) -> bool:
        self._check()
        return key in self.values

    def delete(self, *keys: str) -> int:
        self._check()
        return sum(store.pop(k, None) is not None
                   for k in keys for store in (self.values, self.lists, self.hashes))

    def llen(self, key: str) -> int:
        self._check()
        return len(self.lists.get(key, []))

    def lrange(self, key: str, start: int, end: int) -> list[bytes]:
        self._check()
        items = self.lists.get(key, [])
        return list(items[start:] if end == -1 else items[start:end + 1])

    def hvals(self, key: str) -> list[bytes]:
        self._check()
        return list(self.hashes.get(key, {}).values())

    def lock(self, *_: Any, **__: Any) -> contextlib.AbstractContextManager[None]:
        return contextlib.nullcontext()

    def pipeline(self, transaction: bool = True) -> FakePipeline:
        return FakePipeline(self)


class FakePipeline:
    """Queues commands; ``execute`` runs them in order and returns their results."""

    def __init__(self, redis: FakeRedis) -> None:
        self.redis = redis
        self.ops: list[tuple[str, tuple[Any, ...]]] = []

    def incr(self, key: str) -> None:
        self.ops.append(("incr", (key,)))

    def expire(self, key: str, ttl: int) -> None:
        self.ops.append(("expire", (key, ttl)))

    def llen(self, key: str) -> None:
        self.ops.append(("llen", (key,)))

    def execute(self) -> list[Any]:
        ops, self.ops = self.ops, []
        return [getattr(self.redis, name)(*args) for name, args in ops]


# ---------------------------------------------------------------- other stand-ins


class FakeAnswers:
    """The answer engine where a route only needs it to be there (readiness looks at its
    models; set ``FakeAnswers.generator = None`` for "no generator loaded") or to return
    fixed search hits."""

    embedder: Any = object()
    generator: Any = object()

    def __init__(self, hits: Sequence[ChunkHit] = ()) -> None:
        self.hits = list(hits)

    def search(self, *_: Any, **__: Any) -> tuple[list[ChunkHit], list[float]]:
        return list(self.hits), []


class BrokenRepo:
    """A registry whose storage is gone (what readiness and the metrics scrape call)."""

    def count_keys(self) -> int:
        raise OSError("disk gone")

    def count_by_status(self) -> dict[str, int]:
        raise OSError("disk gone")


class StreamingFake:
    """A generator that streams ``reply`` in pieces, with LlamaGenerator's slot semantics
    (one slot: a second caller is refused with 503); records whether it was closed."""

    def __init__(self, reply: str) -> None:
        self.reply, self.closed, self.busy = reply, False, False
        self.slot = threading.BoundedSemaphore(1)

    def chat(self, messages: list[dict[str, str]], max_tokens: int) -> str:
        return "".join(self.chat_stream(messages, max_tokens)).strip()

    def chat_stream(self, messages: list[dict[str, str]], max_tokens: int) -> Iterator[str]:
        if not self.slot.acquire(blocking=False):
            raise OverloadedError("the answer queue is full; retry shortly", 3)
        try:
            yield from text_pieces(self.reply)
        except GeneratorExit:
            self.closed = True
            raise
        finally:
            self.slot.release()


class RecordingQueue:
    """Stands in for Celery: uploads are recorded, not ingested (there is no worker)."""

    def __init__(self) -> None:
        self.enqueued: list[str] = []
        self.priorities: list[int] = []

    def enqueue_ingest(self, doc_id: str, priority: int = 0) -> None:
        self.enqueued.append(doc_id)
        self.priorities.append(priority)


class Upload:
    """An uploaded file as the document service reads it (``await upload.read(n)``)."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    async def read(self, n: int) -> bytes:
        block, self.data = self.data[:n], self.data[n:]
        return block


# ---------------------------------------------------------------- the app

API_KEY = "test-key-acme-0123456789"  # make_app's static key of tenant "acme"


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def is_problem(resp: Any, status: int) -> bool:
    """An RFC 9457 problem+json answer with this status."""
    return (resp.status_code == status
            and resp.headers["content-type"].startswith("application/problem+json")
            and resp.json()["status"] == status)


def make_app(tmp_path: Path | None = None, *, settings: Settings | None = None,
             api_keys: str = f"acme:{API_KEY}", repo: Any = None, store: Any = None,
             documents: Any = None, answers: Any = None, redis: Any = None,
             audit: Any = None, limiter: Any = None, redis_up: bool = True,
             chroma_up: bool = True, **overrides: Any) -> tuple[Litestar, Any]:
    """The real app and its registry. Settings: ``settings``, or ``Settings(data_dir=tmp_path,
    api_keys=api_keys, **overrides)``. Components not given: a SQLite registry in the data
    directory, an empty :class:`FakeStore` (``chroma_up``), a :class:`FakeRedis`
    (``redis_up``) with four ingest jobs waiting, :class:`FakeAnswers`, no document service,
    no audit log, no rate limits."""
    s = settings or Settings(data_dir=tmp_path, api_keys=api_keys, **overrides)
    if repo is None:
        repo = SqliteDocumentRepository(s.registry_path)
    comps = Components(
        settings=s, repo=repo, store=FakeStore(up=chroma_up) if store is None else store,
        documents=documents, answers=FakeAnswers() if answers is None else answers,
        redis=FakeRedis(redis_up, lists={INGEST_QUEUE: [b"{}"] * 4}) if redis is None else redis,
        audit=audit, limiter=limiter,
    )
    return create_app(s, comps), repo


# the app answering from three fixed passages (a hash embedder, no models)
PASSAGES = ["The Acme plant opened in 2014 and employs 10 engineers.",
            "Kestrel Corp was founded in 1987 in Tromso by Ingrid Vale.",
            "The canteen serves lunch at noon."]
PASSAGES_KEY = "unit-openai-key-0123456789"


def settings_for(tmp: Path, mode: str = "extractive") -> Settings:
    """The settings of :func:`make_passages_app` (``mode``: the answer mode)."""
    s = Settings(data_dir=tmp, api_keys=f"acme:{PASSAGES_KEY}", load_generator=False)
    s.retrieval.answer_mode = mode  # type: ignore[assignment]
    return s


def make_passages_app(tmp: Path, generator: Any = None, mode: str = "extractive") -> Litestar:
    """:func:`make_app` with the real answer pipeline over :data:`PASSAGES` (``generator``
    for generative mode) and the audit log on."""
    s = settings_for(tmp, mode)
    emb = HashEmbedder()
    answers = AnswerPipeline(s, emb, FakeStore(PASSAGES, emb), generator, model=False)
    app, _ = make_app(settings=s, answers=answers, audit=open_audit(s))
    return app


# ---------------------------------------------------------------- a PII record, ingested

# synthetic values only (published test numbers or checksums built for the tests)
PII = {
    "EMAIL": "anna.berg@example.com",
    "PHONE": "070-123 45 67",
    "IBAN": "SE45 5000 0000 0583 9825 7466",
    "CARD": "4111 1111 1111 1111",
    "SE_PIN": "19121212-1212",
    "US_SSN": "123-45-6789",
    "PERSON": "Anna Berg",
}
TEXT = (
    f"Employee record for {PII['PERSON']}.\n\n"
    f"Reach her at {PII['EMAIL']} or {PII['PHONE']}. Her salary goes to {PII['IBAN']}.\n\n"
    f"The company card is {PII['CARD']}. Personnummer {PII['SE_PIN']}. "
    f"Her US social security number is {PII['US_SSN']}. A second mail: {PII['EMAIL']}.\n"
).encode()
COUNTS = {"EMAIL": 2, "IBAN": 1, "CARD": 1, "SE_PIN": 1, "US_SSN": 1, "PHONE": 1, "PERSON": 1}


class Env:
    """The document service (upload) and the ingest job on one SQLite registry and one
    :class:`FakeStore`; real parsing (sandboxed) and chunking, the hashing embedder.
    ``**pii``: the ``pii`` settings (``tenants``, ``redact_all``)."""

    def __init__(self, tmp: Path, api_keys: str = "", **pii: Any) -> None:
        pii.setdefault("names", True)  # the record's name is PII here (COUNTS)
        self.settings = Settings(data_dir=tmp / "data", pii=pii, load_generator=False,
                                 api_keys=api_keys)
        self.repo = SqliteDocumentRepository(self.settings.registry_path)
        self.store = FakeStore()
        self.queue = RecordingQueue()
        self.service = DocumentService(self.settings, self.repo, self.store,  # type: ignore[arg-type]
                                       self.queue)  # type: ignore[arg-type]
        self.deps = IngestDeps(self.settings, self.repo, self.store, HashEmbedder(),
                               Vault.for_settings(self.settings))

    def upload(self, data: bytes, tenant: str = "acme", name: str = "record.txt",
               redact: bool = False) -> tuple[Document, bool]:
        staged, sha256, size = asyncio.run(self.service.stage(Upload(data)))  # as the API does
        assert sha256 == hashlib.sha256(data).hexdigest()
        return self.service.accept(tenant, staged, sha256, size, name, {}, redact_pii=redact)

    def ingest(self, doc_id: str) -> Document:
        ingest_document(self.deps, doc_id)
        doc = self.repo.get(doc_id)
        assert doc is not None
        return doc


@pytest.fixture
def env(tmp_path: Path) -> Env:
    return Env(tmp_path)


def assert_no_pii(texts: Sequence[str]) -> None:
    joined = "\n".join(texts)
    for kind, value in PII.items():
        assert value not in joined, kind
    assert "4111" not in joined and "1212" not in joined and "@" not in joined


# ---------------------------------------------------------------- the registry, both backends

# PostgreSQL is expected at ``DOCQA_TEST_POSTGRES_URL`` (a role allowed to create databases);
# when it cannot be reached the PostgreSQL variants fail, they are not skipped
PG_ADMIN_URL = os.environ.get(
    "DOCQA_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
MakeRepo = Callable[[], DocumentRepository]


@pytest.fixture(scope="session")
def pg_database() -> Iterator[str]:
    """DSN of a database created for this session (UTF-8) and dropped at its end."""
    try:
        admin = psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        reason = str(exc).strip()
    else:
        reason = ""
    if reason:
        pytest.fail(
            f"PostgreSQL is not reachable at {PG_ADMIN_URL!r}: {reason}\n"
            "The PostgreSQL registry tests need a server (start it, or point "
            "DOCQA_TEST_POSTGRES_URL at one whose role may CREATE DATABASE).",
            pytrace=False,
        )
    name = f"docqa_test_{secrets.token_hex(6)}"
    admin.execute(sql.SQL("CREATE DATABASE {} TEMPLATE template0 ENCODING 'UTF8'")
                  .format(sql.Identifier(name)))
    try:
        yield conninfo.make_conninfo(PG_ADMIN_URL, dbname=name)
    finally:
        admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)")
                      .format(sql.Identifier(name)))
        admin.close()


@pytest.fixture
def pg_dsn(pg_database: str) -> str:
    """A fresh, empty schema in the session database, selected through the DSN."""
    schema = f"t_{secrets.token_hex(6)}"
    with psycopg.connect(pg_database, autocommit=True) as db:
        db.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    return conninfo.make_conninfo(pg_database, options=f"-csearch_path={schema}")


@pytest.fixture(params=["sqlite", "postgres"])
def make_repo(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[MakeRepo]:
    """Opens (through ``open_repository``) another repository object on one shared store,
    as another process would."""
    url = None if request.param == "sqlite" else request.getfixturevalue("pg_dsn")
    settings = Settings(data_dir=tmp_path / "data", database_url=url)
    made: list[DocumentRepository] = []

    def make() -> DocumentRepository:
        repo = open_repository(settings)
        made.append(repo)
        return repo

    yield make
    for repo in made:
        if isinstance(repo, PostgresDocumentRepository):
            repo.close()


# ---------------------------------------------------------------- small shared helpers


def doc_chunks(doc: str, texts: list[str]) -> list[Chunk]:
    """Chunks ``doc:0``, ``doc:1``, … each at offsets 0 to its length."""
    return [Chunk(f"{doc}:{i}", doc, i, t, 1, 0, len(t)) for i, t in enumerate(texts)]


def random_vectors(n: int, seed: int) -> list[list[float]]:
    return np.random.default_rng(seed).random((n, 8)).astype(float).tolist()


def grep_tree(root: Path, *needles: str) -> list[str]:
    """Files under ``root`` (relative paths) whose bytes hold any of ``needles``."""
    found = []
    for p in root.rglob("*"):
        if p.is_file():
            data = p.read_bytes()
            if any(n.encode() in data for n in needles):
                found.append(str(p.relative_to(root)))
    return found


def fill_audit(path: Path, n: int = 5) -> AuditLog:
    log = AuditLog(path)
    for i in range(n):
        log.append("search", tenant="acme", key_id="k_test", request_id=f"r{i}",
                   chunk_ids=[f"doc:{i}:abc"], results=1)
    return log


def file_lines(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines(keepends=True)


def write_lines(path: Path, lines: list[bytes]) -> None:
    path.write_bytes(b"".join(lines))
