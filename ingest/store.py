"""Vector store adapter: each tenant's chunks in a fixed number of Chroma collections
(shards, by document) on the Chroma *server*.

Never a shared ``PersistentClient`` directory (docs/architecture.md: it silently lost vectors).
Chroma's default embedding function is never used: we always pass our vectors.

With a ``TextCipher`` (the service always has one) Chroma never receives chunk text in
the clear: it is stored sealed in the chunk's metadata (``core/textcrypt.py``) and opened
here when hits are read; Chroma's ``documents`` field stays empty. Records written by
older versions (plain ``documents``) are still read, and sealed when ``compact`` copies
them.
"""

from __future__ import annotations

import contextlib
import hashlib
import secrets
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

import numpy as np

from core.domain import Chunk, ChunkHit
from core.errors import ConfigurationError, StoreUnavailableError
from core.locks import redis_collection_lock
from core.sentcodec import Q8_KEY, VECTORS_KEY
from core.settings import Settings, apply_offline_env
from core.textcrypt import TEXT_KEY, TextCipher, TextKeyMissing, term_key
from core.threads import ProcessThreads
from ingest.chromahttp import ChromaReads
from ingest.keywords import KeywordIndex, KeywordStore
from ingest.sentences import KEYS

SENTENCE_KEYS = KEYS  # a chunk's evidence units, their vectors and context (core/sentcodec.py)

_UPSERT_BATCH = 256
IN_GROUP = 10_000  # document ids per Chroma ``$in`` (SQLite allows 32,766 variables)
COMPACT_PREFIX = "docqa_c_"  # collections being rebuilt by ``compact`` (never searched)
TENANT_PREFIX = "docqa_t_"
DEFAULT_SHARDS = 16  # docs/capacity.md "Shards": rebuild time against search fan-out
# Chroma purges its write-ahead log (``embeddings_queue``: every record's metadata and vector
# again) only up to what the collection's HNSW files hold, and writes those every
# ``sync_threshold`` records (1,000 by default): a shard kept up to 1,000 records twice, a
# tenant of 16 shards 16,000. Every 100 keeps the log small (docs/capacity.md); new
# collections only (shards get it when a compaction rebuilds them).
_HNSW_CONFIG = {"hnsw": {"space": "cosine", "sync_threshold": 100, "batch_size": 100}}

# ``lock(collection name)``: a lock shared by every process writing that collection (one
# shard; core/locks.py, in Redis). ``compact`` holds it while it catches up and swaps.
TenantLock = Callable[[str], AbstractContextManager[Any]]


def collection_name(tenant: str) -> str:
    """The tenant's key: the prefix of its shards' names, the keyword index's table and
    the name of the single collection a tenant had before shards (read as one more)."""
    return TENANT_PREFIX + hashlib.sha256(tenant.encode("utf-8")).hexdigest()[:32]


def shard_name(tenant: str, shard: int) -> str:
    return f"{collection_name(tenant)}_s{shard:02d}"


def shard_of(document_id: str, shards: int) -> int:
    """The shard a document's chunks live in. Document ids are random (the service makes
    them), so an unkeyed hash spreads them evenly and every process computes the same."""
    return int.from_bytes(hashlib.sha256(document_id.encode("utf-8")).digest()[:8], "big") % shards


FANOUT = 8  # threads asking a tenant's shards at once (docs/capacity.md "Search over 16 shards")
# a tool reading a tenant's shards meets one being swapped: how often and how long it asks
# for it again by name
SWAP_RETRIES = 50
SWAP_RETRY_S = 0.1


def tenant_key_of(name: str) -> str:
    """``collection_name(tenant)`` of one of the tenant's collections (shard or not)."""
    return name[:len(TENANT_PREFIX) + 32]


def tenant_collections(client: Any, tenant: str) -> list[Any]:
    """Every collection holding the tenant's chunks (its shards, and a collection of the
    single-collection layout if it still has one), for tests and tools reading Chroma
    directly."""
    key = collection_name(tenant)
    out = []
    for coll in client.list_collections():
        name = coll if isinstance(coll, str) else coll.name
        if name == key or (name.startswith(key + "_s") and name != key):
            out.append(_named_retrying(client, name))
    return out


def _named_retrying(client: Any, name: str) -> Any:
    """The collection called ``name``, asked again while a swap leaves the name free."""
    for _ in range(SWAP_RETRIES):
        try:
            return client.get_collection(name=name, embedding_function=None)
        except Exception as exc:
            if not _missing(exc):
                raise
        time.sleep(SWAP_RETRY_S)
    return client.get_collection(name=name, embedding_function=None)


def tenant_get(client: Any, tenant: str, **kwargs: Any) -> dict[str, list[Any]]:
    """``Collection.get(**kwargs)`` over all of the tenant's collections, merged."""
    merged: dict[str, list[Any]] = {}
    for coll in tenant_collections(client, tenant):
        res = _get_by_name(client, coll, kwargs)
        for k in ("ids", "documents", "metadatas", "embeddings"):
            if res.get(k) is not None:
                merged.setdefault(k, []).extend(list(res[k]))
        merged.setdefault("ids", [])
    merged.setdefault("ids", [])
    return merged


@dataclass(frozen=True)
class Layout:
    """Where a tenant's chunks are: ``shards`` collections (0 = none yet) and, for a tenant
    written before shards, its single collection (``legacy``)."""

    shards: int
    legacy: bool


class ChromaStore:
    """Chroma over HTTP, plus (optionally) the keyword index kept in step with it.

    A tenant's chunks are spread over ``shards`` collections by document
    (``shard_of``), so erasing a document rebuilds one shard, not the tenant
    (docs/architecture.md "Erasure"). The count is fixed per tenant when its first shard is
    made (kept in shard 0's metadata); the ``shards`` argument is for new tenants."""

    def __init__(self, host: str, port: int, keywords: KeywordStore | None = None,
                 lock: TenantLock | None = None, cipher: TextCipher | None = None,
                 shards: int = DEFAULT_SHARDS) -> None:
        apply_offline_env()
        if not 1 <= shards <= 256:
            raise ConfigurationError(f"chroma.shards must be 1..256, not {shards}")
        self.host, self.port = host, port
        self.keywords = keywords
        self.lock = lock
        self.cipher = cipher
        self.shards = shards
        self._client: Any = None
        # a search's reads without the client's per-request cost (ingest/chromahttp.py);
        # None for a store on an in-process client (unit tests): the client's calls then
        self._reads: ChromaReads | None = None
        self._collections: dict[str, Any] = {}
        self._layouts: dict[str, Layout] = {}
        self._lock = threading.Lock()
        self._threads = ProcessThreads(FANOUT, "shards")

    def _connect(self) -> Any:
        if self._client is None:
            # heavy: imported at the first connection, not by everything that imports this
            # module (the CLI, tests with a fake store)
            import chromadb
            from chromadb.config import Settings as ChromaClientSettings

            try:
                self._client = chromadb.HttpClient(
                    host=self.host, port=self.port,
                    settings=ChromaClientSettings(anonymized_telemetry=False),
                )
            except Exception as exc:
                raise StoreUnavailableError(
                    f"Chroma server at {self.host}:{self.port} is unreachable: {exc}"
                ) from exc
            self._reads = ChromaReads(self.host, self.port)
        return self._client

    def _named(self, name: str, create: bool = False,
               metadata: dict[str, Any] | None = None) -> Any:
        """The collection ``name`` (cached handle); None when it does not exist and
        ``create`` is false."""
        with self._lock:
            if name in self._collections:
                return self._collections[name]
        client = self._connect()
        try:
            if create:
                coll = client.get_or_create_collection(
                    name=name, embedding_function=None, configuration=_HNSW_CONFIG,
                    metadata=metadata or {"tenant_hash": tenant_key_of(name)})
            else:
                coll = client.get_collection(name=name, embedding_function=None)
        except Exception as exc:
            if not create and _missing(exc):
                return None
            raise _wrap(exc) from exc
        with self._lock:
            self._collections[name] = coll
        return coll

    def _forget(self) -> None:
        """Drop cached handles (a compaction swapped a collection, or a restarted server has
        new collection ids). Layouts stay: a tenant's shard count never changes."""
        with self._lock:
            self._collections.clear()

    def layout(self, tenant: str, create: bool = False) -> Layout:
        """The tenant's layout; with ``create``, its shards are made if it has none.

        Only a layout with shards is cached: a tenant without them yet may get them from
        another process at any time, and a single collection is never made any more."""
        with self._lock:
            cached = self._layouts.get(tenant)
        if cached is not None:
            return cached
        first = self._named(shard_name(tenant, 0))
        legacy = self._named(collection_name(tenant)) is not None
        if (first is None and self.lock is not None and not create
                and (not legacy or self._named(shard_name(tenant, 1)) is not None)):
            # shard 0's name is free for milliseconds while it is swapped (a tenant with
            # only the collection of before, and no shard 1, has no shards to swap)
            time.sleep(0.05)
            first = self._named(shard_name(tenant, 0))
        if first is None and create:
            first = self._create_shards(tenant)
        if first is None:
            return Layout(0, legacy)
        found = Layout(int((first.metadata or {}).get("shards", 1)), legacy)
        with self._lock:
            self._layouts[tenant] = found
        return found

    def _create_shards(self, tenant: str) -> Any:
        """Shard 0 (which records the count), then the others, all at once: readers then
        find every shard the count names. Two processes racing here agree on shard 0's
        count: ``create_collection`` lets only one of them make it."""
        client = self._connect()
        with self._write_lock(shard_name(tenant, 0)):  # not during a swap of shard 0
            try:
                first = client.create_collection(
                    name=shard_name(tenant, 0), embedding_function=None,
                    configuration=_HNSW_CONFIG,
                    metadata={"tenant_hash": collection_name(tenant), "shards": self.shards})
            except Exception as exc:
                if "exist" not in str(exc).lower():
                    raise _wrap(exc) from exc
                first = client.get_collection(name=shard_name(tenant, 0),
                                              embedding_function=None)
        for i in range(1, int((first.metadata or {}).get("shards", 1))):
            self._named(shard_name(tenant, i), create=True)
        with self._lock:
            self._collections[first.name] = first
        return first

    def _names(self, tenant: str, document_id: str | None = None,
               create: bool = False) -> list[str]:
        """The collections to read (or, with ``create``, write): the document's shard, or
        every shard without a document; the tenant's single collection when it has one."""
        lay = self.layout(tenant, create=create)
        if lay.shards == 0:
            shards: list[str] = []
        elif document_id is not None:
            shards = [shard_name(tenant, shard_of(document_id, lay.shards))]
        else:
            shards = [shard_name(tenant, i) for i in range(lay.shards)]
        return shards + ([collection_name(tenant)] if lay.legacy else [])

    def _write_lock(self, name: str) -> AbstractContextManager[Any]:
        return self.lock(name) if self.lock else contextlib.nullcontext()

    def _on(self, name: str, op: Callable[[Any], Any], create: bool = False,
            default: Any = None) -> Any:
        """``op(collection)`` on collection ``name`` (``default`` when it does not exist).

        ``compact`` replaces a shard by a rebuilt one under the same name: a handle cached
        before that fails as "does not exist", and is looked up again once. A lookup that
        finds nothing is retried once after 50 ms (the name is free for a few milliseconds
        during the swap)."""
        for attempt in (0, 1):
            coll = self._named(name, create=create)
            if coll is None:
                if attempt == 0 and self.lock is not None:
                    time.sleep(0.05)
                    continue
                if name == tenant_key_of(name):  # the single collection was dropped, empty
                    with self._lock:
                        self._layouts.clear()
                return default
            try:
                return op(coll)
            except Exception as exc:
                self._forget()  # a restarted server may have new collection ids
                if attempt == 0 and _missing(exc):
                    continue
                if attempt == 0 and _segment_race(exc):
                    time.sleep(0.1)
                    continue
                raise _wrap(exc) from exc
        return default

    def _each(self, names: Sequence[str], op: Callable[[Any], Any]) -> list[Any]:
        """``op`` on each collection, concurrently (a search asks every shard); the results
        of those that exist, in ``names`` order."""
        return [res for _name, res in self._each_named(names, op)]

    def _each_named(self, names: Sequence[str], op: Callable[[Any], Any]
                    ) -> list[tuple[str, Any]]:
        return self._map([(name, op) for name in names])

    def _map(self, calls: Sequence[tuple[str, Callable[[Any], Any]]]) -> list[tuple[str, Any]]:
        """(collection, ``op(collection)``) of each call, run concurrently; calls on
        collections that do not exist are left out."""
        if len(calls) <= 1:
            done = [(name, self._on(name, op)) for name, op in calls]
        else:
            done = list(self._threads.get().map(
                lambda call: (call[0], self._on(call[0], call[1])), calls))
        return [(name, res) for name, res in done if res is not None]

    def _call(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except Exception as exc:
            self._forget()  # a restarted server may have new collection ids
            raise _wrap(exc) from exc

    def _nearest_op(self, embedding: Sequence[float], n: int, where: dict[str, Any] | None,
                    include: list[str]) -> Callable[[Any], Any]:
        """``op`` asking a collection for the ``n`` nearest to ``embedding``."""
        reads, vector = self._reads, [float(x) for x in embedding]
        if reads is None:
            return lambda coll: coll.query(query_embeddings=[vector], n_results=n, where=where,
                                           include=include)
        return lambda coll: reads.query(coll, vector, n, where, include)

    def _get_op(self, ids: Sequence[str], include: list[str]) -> Callable[[Any], Any]:
        """``op`` asking a collection for records by id."""
        reads, wanted = self._reads, list(ids)
        if reads is None:
            return lambda coll: coll.get(ids=wanted, include=include)
        return lambda coll: reads.get(coll, wanted, include)

    def heartbeat(self) -> None:
        client = self._connect()
        self._call(client.heartbeat)

    def upsert(
        self,
        tenant: str,
        chunks: Sequence[Chunk],
        embeddings: Sequence[Sequence[float]],
        metadata: dict[str, Any],
        per_chunk: Sequence[dict[str, Any]] | None = None,
    ) -> None:
        extra = list(per_chunk) if per_chunk is not None else [{} for _ in chunks]
        lay = self.layout(tenant, create=True)
        for i in range(0, len(chunks), _UPSERT_BATCH):
            part = chunks[i : i + _UPSERT_BATCH]
            metadatas: list[dict[str, Any]] = [
                {**metadata, **x, "document_id": c.document_id, "chunk_index": c.index,
                 "page": c.page, "start": c.start, "end": c.end}
                for c, x in zip(part, extra[i : i + _UPSERT_BATCH], strict=True)
            ]
            for meta in metadatas:  # a chunk stored as float16 before: its old vectors go
                if Q8_KEY in meta:  # (an upsert keeps the keys it does not name)
                    meta[VECTORS_KEY] = None
            batch: dict[str, Any] = {
                "ids": [c.id for c in part],
                "embeddings": [list(e) for e in embeddings[i : i + _UPSERT_BATCH]],
                "metadatas": metadatas,
            }
            if self.cipher is not None:  # the text only sealed, in the metadata
                for c, meta in zip(part, metadatas, strict=True):
                    meta[TEXT_KEY] = self.cipher.seal(c.document_id, c.id, c.text)
            else:
                batch["documents"] = [c.text for c in part]
            by_shard: dict[str, list[int]] = {}
            for j, c in enumerate(part):  # one document per call in practice
                name = shard_name(tenant, shard_of(c.document_id, lay.shards))
                by_shard.setdefault(name, []).append(j)
            for name, rows in by_shard.items():
                sub = {k: [v[j] for j in rows] for k, v in batch.items()}

                def write(coll: Any, sub: dict[str, Any] = sub) -> Any:
                    return coll.upsert(**sub)

                with self._write_lock(name):
                    self._on(name, write, create=True)
            if lay.legacy:  # a record written before shards now lives in its shard only
                def unlist(coll: Any, ids: list[str] = batch["ids"]) -> Any:
                    return coll.delete(ids=ids)

                with self._write_lock(collection_name(tenant)):
                    self._on(collection_name(tenant), unlist)
        if self.keywords is not None:
            self.keywords.replace_chunks(collection_name(tenant),
                                         [(c.id, c.document_id, c.text) for c in chunks])

    def destroy_text_key(self, document_id: str) -> bool:
        """Crypto-erase the document's chunk text wherever a copy of it survives."""
        return self.cipher.forget(document_id) if self.cipher is not None else False

    def chunk_id_key(self, document_id: str) -> bytes:
        """The document's chunk-id key (``TextCipher.chunk_id_key``)."""
        if self.cipher is None:
            raise ConfigurationError("chunk ids are keyed by the text cipher: this store "
                                     "was opened without one")
        return self.cipher.chunk_id_key(document_id)

    def chunk_ids(self, tenant: str, document_id: str) -> list[str]:
        return [cid for ids in self._each(self._names(tenant, document_id), lambda coll: coll.get(
            where={"document_id": document_id}, include=[])["ids"]) for cid in ids]

    def count_document(self, tenant: str, document_id: str) -> int:
        return len(self.chunk_ids(tenant, document_id))

    def delete_document(self, tenant: str, document_id: str, keep: Sequence[str] = ()) -> int:
        """Remove a document's chunks, except ids in ``keep`` (stale-chunk clean-up).

        Returns how many of the document's chunks remain stored (the kept ones found),
        so the caller can verify retrievability without another round trip.
        """
        keep_set = set(keep)
        remaining = 0
        for name in self._names(tenant, document_id):
            with self._write_lock(name):
                present = self._on(name, lambda coll: coll.get(
                    where={"document_id": document_id}, include=[])["ids"], default=[])
                stale = [cid for cid in present if cid not in keep_set]
                if stale:
                    def drop(coll: Any, stale: list[str] = stale) -> Any:
                        return coll.delete(ids=stale)

                    self._on(name, drop)
            remaining += len(present) - len(stale)
        if self.keywords is not None:
            self.keywords.delete_document(collection_name(tenant), document_id, keep)
        return remaining

    def text_chunks(self, tenant: str, document_id: str, start: int, end: int,
                    limit: int | None = None) -> list[ChunkHit]:
        """The document's chunks that overlap characters ``[start, end)`` of its extracted
        text, by offset (score 0); none once its text key is destroyed."""
        where = {"$and": [{"document_id": document_id}, {"start": {"$lt": end}},
                          {"end": {"$gt": start}}]}
        hits: list[ChunkHit] = []
        for res in self._each(self._names(tenant, document_id), lambda coll: coll.get(
                where=where, limit=limit, include=["documents", "metadatas"])):
            self._prefetch(res["metadatas"])
            found = (self._hit(cid, text, meta, 0.0) for cid, text, meta in zip(
                res["ids"], res["documents"], res["metadatas"], strict=True))
            hits += [h for h in found if h is not None]
        hits.sort(key=lambda h: (h.start, h.chunk_id))
        return hits[:limit] if limit is not None else hits

    def get_chunks(self, tenant: str, ids: Sequence[str], embedding: Sequence[float],
                   scores: Mapping[str, float] | None = None) -> list[ChunkHit]:
        """Chunks by id, scored by cosine similarity to ``embedding`` (for keyword hits), or
        by ``scores[id]`` where given (dense hits: their score from ``nearest``).

        A chunk id starts with its document's id (``core.domain.chunk_id``), which names its
        shard: each shard is asked for its own ids only; ids not found there (an id of
        another form) are asked of the other collections."""
        if not ids:
            return []
        q = np.asarray(embedding, dtype=np.float32)
        qn = float(np.linalg.norm(q)) or 1.0
        given = scores or {}
        out: dict[str, ChunkHit] = {}
        self._connect()

        def read(calls: list[tuple[str, list[str]]]) -> set[str]:
            seen: set[str] = set()
            need = [name for name, group in calls if any(c not in given for c in group)]
            include = ["documents", "metadatas"]
            ops = [(name, self._get_op(group, include + (["embeddings"] if name in need
                                                         else [])))
                   for name, group in calls]
            for _name, res in self._map(ops):
                self._prefetch(res["metadatas"])
                embs = res.get("embeddings")
                for i, (cid, text, meta) in enumerate(zip(res["ids"], res["documents"],
                                                          res["metadatas"], strict=True)):
                    seen.add(cid)
                    if cid in given:
                        score = given[cid]
                    else:
                        v = np.asarray(embs[i], dtype=np.float32)
                        score = float(v @ q) / ((float(np.linalg.norm(v)) or 1.0) * qn)
                    hit = self._hit(cid, text, meta, score)
                    if hit is not None:
                        out[cid] = hit
            return seen

        names = self._names(tenant)
        lay = self.layout(tenant)
        routed: dict[str, list[str]] = {}
        for cid in dict.fromkeys(ids):
            home = (shard_name(tenant, shard_of(cid.split(":", 1)[0], lay.shards))
                    if lay.shards else names[0] if names else None)
            if home is not None:
                routed.setdefault(home, []).append(cid)
        found = read(list(routed.items()))
        missing = [cid for group in routed.values() for cid in group if cid not in found]
        if missing:  # ids of another form, the collection of before shards, or gone
            read([(name, left) for name in names
                  if (left := [c for c in missing if c not in routed.get(name, ())])])
        return [out[cid] for cid in dict.fromkeys(ids) if cid in out]

    @property
    def has_keywords(self) -> bool:
        return self.keywords is not None

    def keyword_ids(self, tenant: str, text: str, n: int,
                    document_ids: Sequence[str] | None = None) -> list[str]:
        """The ids of the ``n`` best keyword (BM25) matches, best first; none without an index."""
        if self.keywords is None:
            return []
        found = self.keywords.search(collection_name(tenant), text, n,
                                     list(document_ids) if document_ids else None)
        return [cid for cid, _doc, _s in found]

    def erase_collections(self, tenant: str, document_id: str) -> list[str]:
        """The collections erasing ``document_id`` rebuilds: its shard, and the tenant's
        single collection of before shards while it has one (its documents may be there)."""
        return self._names(tenant, document_id)

    def compact(self, tenant: str, document_id: str | None = None,
                page: int = 500) -> dict[str, Any]:
        """Rebuild the collections holding ``document_id`` (``erase_collections``), or
        every collection of the tenant without one (``compact_collection``)."""
        t0 = time.monotonic()
        names = (self.erase_collections(tenant, document_id) if document_id is not None
                 else self._names(tenant))
        chunks = sum(int(self.compact_collection(tenant, n, page)["chunks"]) for n in names)
        return {"chunks": chunks, "collections": len(names),
                "seconds": round(time.monotonic() - t0, 3)}

    def compact_collection(self, tenant: str, name: str, page: int = 500) -> dict[str, Any]:
        """Rebuild one of the tenant's collections from its current records and drop the
        old one.

        Deleting records from a Chroma collection (chromadb 1.5.9) leaves their vectors in
        the collection's HNSW files and their text in its write-ahead log until the log is
        purged. A rebuilt collection holds only the live records; dropping the old one
        removes its log rows and index. (Its segment directory stays on disk until
        ``ingest/erasure.py`` removes it, and ``chroma.sqlite3`` keeps freed pages until it
        is vacuumed there.) The cost is the collection's records: one shard of the tenant.

        Writers keep writing the old collection while it is copied; under the collection's
        lock the copy then catches up with what changed (ids added or removed since) and
        the rebuilt collection takes the old one's name (and metadata: shard 0 carries the
        tenant's shard count). Handles cached elsewhere find the old id gone and look the
        name up again (``_on``). The single collection of before shards is dropped instead
        once it is empty.
        """
        client = self._connect()
        stem = COMPACT_PREFIX + name[len(TENANT_PREFIX):]
        t0 = time.monotonic()
        try:
            old = client.get_collection(name=name, embedding_function=None)
        except Exception as exc:
            if _missing(exc):
                return {"chunks": 0, "seconds": 0.0}
            raise _wrap(exc) from exc
        legacy = name == collection_name(tenant)
        try:
            for leftover in client.list_collections():  # from a compaction that died
                lname = leftover if isinstance(leftover, str) else leftover.name
                if lname.startswith(stem + "_"):
                    client.delete_collection(lname)
            new = client.create_collection(
                name=f"{stem}_{secrets.token_hex(4)}", embedding_function=None,
                configuration=_HNSW_CONFIG,
                metadata=dict(old.metadata or {"tenant_hash": tenant_key_of(name)}))
        except Exception as exc:
            raise _wrap(exc) from exc
        include = ["embeddings", "documents", "metadatas"]

        def copy(res: dict[str, Any]) -> int:
            if res["ids"]:
                records = self._sealed_records(res["ids"], res["documents"], res["metadatas"])
                keep = records.pop("keep")
                if keep:
                    new.upsert(ids=[res["ids"][i] for i in keep],
                               embeddings=[res["embeddings"][i] for i in keep],
                               **{k: [v[i] for i in keep] for k, v in records.items()})
            return len(res["ids"])

        swapped = False
        try:
            copied: set[str] = set()
            offset = 0
            while True:  # offsets may shift under concurrent writes: the catch-up fixes that
                res = old.get(include=include, limit=page, offset=offset)
                copy(res)
                copied.update(res["ids"])
                if len(res["ids"]) < page:
                    break
                offset += page
            with self._write_lock(name):
                current = set(old.get(include=[])["ids"])
                if legacy and not current:  # nothing left of before shards: drop it
                    client.delete_collection(new.name)
                    client.delete_collection(name)
                    swapped = True
                    self._forget_layout(tenant)
                    return {"chunks": 0, "seconds": round(time.monotonic() - t0, 3),
                            "dropped": name}
                added = sorted(current - copied)
                for i in range(0, len(added), page):
                    copy(old.get(ids=added[i:i + page], include=include))
                removed = sorted(copied - current)
                for i in range(0, len(removed), page):
                    new.delete(ids=removed[i:i + page])
                retired = f"{stem}_old{secrets.token_hex(2)}"
                old.modify(name=retired)
                try:
                    new.modify(name=name)
                except Exception:
                    old.modify(name=name)  # put the old one back: nothing changed
                    raise
                swapped = True
                with self._lock:
                    self._collections.clear()
            client.delete_collection(retired)
        except Exception as exc:
            if not swapped:
                with contextlib.suppress(Exception):
                    client.delete_collection(new.name)
            raise _wrap(exc) from exc
        return {"chunks": len(current), "seconds": round(time.monotonic() - t0, 3)}

    def _forget_layout(self, tenant: str) -> None:
        with self._lock:
            self._layouts.pop(tenant, None)
            self._collections.clear()

    def all_chunks(self, page: int = 500) -> Iterator[tuple[str, str, str, str]]:
        """(tenant key, chunk_id, document_id, text) of every tenant collection; the tenant
        key is ``collection_name(tenant)``, the keyword index's."""
        client = self._connect()
        for coll in self._call(client.list_collections):
            name = coll if isinstance(coll, str) else coll.name
            if not name.startswith(TENANT_PREFIX):
                continue
            c = self._call(client.get_collection, name=name, embedding_function=None)
            offset = 0
            while True:
                res = self._call(c.get, include=["documents", "metadatas"], limit=page,
                                 offset=offset)
                self._prefetch(res["metadatas"])
                for cid, text, meta in zip(res["ids"], res["documents"], res["metadatas"],
                                           strict=True):
                    plain = self._text(cid, text, meta)
                    if plain is not None:
                        yield tenant_key_of(name), cid, str(meta.get("document_id", "")), plain
                if len(res["ids"]) < page:
                    break
                offset += page

    def rebuild_keywords(self) -> int:
        """Fill the keyword index from Chroma (used when it was missing or incomplete)."""
        if self.keywords is None:
            return 0
        batch: dict[str, list[tuple[str, str, str]]] = {}
        n = 0
        for name, cid, doc, text in self.all_chunks():
            batch.setdefault(name, []).append((cid, doc, text))
            n += 1
            if len(batch[name]) >= 500:
                self.keywords.replace_chunks(name, batch.pop(name))
        for name, rows in batch.items():
            self.keywords.replace_chunks(name, rows)
        return n

    def _candidates(self, tenant: str, embedding: Sequence[float], top_k: int,
                    document_ids: Sequence[str] | None, light: bool | None
                    ) -> tuple[list[tuple[float, str, str, Any, dict[str, Any] | None]], bool]:
        """(distance, chunk id, collection, document, metadata) of the ``top_k`` nearest,
        best first, and whether they are ``light``: ids and distances only (document and
        metadata None; ``light=None``: when several collections are asked).

        A filter can match tens of thousands of documents; Chroma turns ``$in`` into one
        SQL variable per value, and SQLite refuses more than 32,766 ("too many SQL
        variables"), so a long list is asked in groups and their nearest merged too.
        A filter asks only the shards its documents are in."""
        groups: list[list[str] | None] = [None]
        if document_ids:
            ids = list(document_ids)
            groups = [ids[i:i + IN_GROUP] for i in range(0, len(ids), IN_GROUP)]
        lay = self.layout(tenant)
        plan: list[tuple[list[str], dict[str, Any] | None]] = []
        for group in groups:
            where = {"document_id": {"$in": group}} if group else None
            if group and lay.shards:
                names = sorted({shard_name(tenant, shard_of(d, lay.shards)) for d in group})
                names += [collection_name(tenant)] if lay.legacy else []
            else:
                names = self._names(tenant)
            plan.append((names, where))
        if light is None:
            light = sum(len(names) for names, _w in plan) > 1
        include = ["distances"] if light else ["documents", "metadatas", "distances"]
        found: list[tuple[float, str, str, Any, dict[str, Any] | None]] = []
        self._connect()
        for names, where in plan:
            for name, res in self._each_named(
                    names, self._nearest_op(embedding, top_k, where, include)):
                docs = res["documents"][0] if not light else [None] * len(res["ids"][0])
                metas = res["metadatas"][0] if not light else [None] * len(res["ids"][0])
                found += [(float(dist), cid, name, text, meta) for cid, text, meta, dist in zip(
                    res["ids"][0], docs, metas, res["distances"][0], strict=True)]
        return sorted(found, key=lambda f: (f[0], f[1]))[:top_k], light

    def nearest(self, tenant: str, embedding: Sequence[float], top_k: int,
                document_ids: Sequence[str] | None = None) -> list[tuple[str, float]]:
        """(chunk id, cosine) of the ``top_k`` nearest chunks, best first, as ``query`` finds
        them but without reading their records (``get_chunks`` reads those wanted)."""
        found, _light = self._candidates(tenant, embedding, top_k, document_ids, light=True)
        return [(cid, 1.0 - dist) for dist, cid, _n, _t, _m in found]

    def query(
        self,
        tenant: str,
        embedding: Sequence[float],
        top_k: int,
        document_ids: Sequence[str] | None = None,
    ) -> list[ChunkHit]:
        """The ``top_k`` nearest chunks over all of the tenant's shards, within
        ``document_ids`` when given: each shard's ``top_k`` nearest, merged by distance
        (the true ``top_k``: none of them can be beaten by a shard's ``top_k + 1``-th).

        Several collections are asked for ids and distances only, and the records of the
        merged ``top_k`` fetched after (a hit's record is ~10 KB: its unit vectors and
        sealed text)."""
        found, light = self._candidates(tenant, embedding, top_k, document_ids, light=None)
        if light:
            records: dict[str, tuple[Any, dict[str, Any]]] = {}
            wanted: dict[str, list[str]] = {}
            for _d, cid, name, _t, _m in found:
                wanted.setdefault(name, []).append(cid)
            calls = [(name, self._get_op(ids, ["documents", "metadatas"]))
                     for name, ids in wanted.items()]
            for _name, res in self._map(calls):
                records.update({cid: (text, meta) for cid, text, meta in zip(
                    res["ids"], res["documents"], res["metadatas"], strict=True)})
            found = [(d, cid, n, *records[cid]) for d, cid, n, _t, _m in found
                     if cid in records]  # one deleted meanwhile is left out
        self._prefetch([meta for _d, _c, _n, _t, meta in found if meta is not None])
        hits = []
        for dist, cid, _n, text, meta in found:
            hit = self._hit(cid, text, meta or {}, 1.0 - dist)
            if hit is not None:
                hits.append(hit)
        return hits

    # ------------------------------------------------------------ sealed text

    def _prefetch(self, metadatas: Sequence[dict[str, Any]]) -> None:
        if self.cipher is not None:
            self.cipher.prefetch(str(m["document_id"]) for m in metadatas if TEXT_KEY in m)

    def _text(self, cid: str, text: str | None, meta: dict[str, Any]) -> str | None:
        """A record's chunk text: opened from its sealed metadata, or the plain document of
        a record from an older version. None when its document's key was destroyed (the
        document is being erased: the record is about to go)."""
        sealed = meta.get(TEXT_KEY)
        if sealed is None:
            return text or ""
        if self.cipher is None:
            raise StoreUnavailableError("this store holds sealed chunk text but was opened "
                                        "without the text cipher")
        try:
            return self.cipher.open(str(meta["document_id"]), cid, str(sealed))
        except TextKeyMissing:
            return None

    def _hit(self, cid: str, text: str | None, meta: dict[str, Any],
             score: float) -> ChunkHit | None:
        plain = self._text(cid, text, meta)
        return None if plain is None else _hit(cid, plain, meta, score)

    def _sealed_records(self, ids: Sequence[str], documents: Sequence[str | None] | None,
                        metadatas: Sequence[dict[str, Any]]) -> dict[str, Any]:
        """``documents``/``metadatas`` arguments for copying records, and ``keep``: the
        positions of the records to copy. With a cipher, plain texts of older records are
        sealed into the metadata on the way; one whose document is deleted or being deleted
        (no key may be made for it) is left out."""
        docs = list(documents) if documents is not None else [None] * len(ids)
        keep = list(range(len(ids)))
        if self.cipher is None:
            return {"documents": docs, "metadatas": list(metadatas), "keep": keep} if any(
                d is not None for d in docs) else {"metadatas": list(metadatas), "keep": keep}
        metas, keep = [], []
        for i, (cid, doc, meta) in enumerate(zip(ids, docs, metadatas, strict=True)):
            meta = dict(meta)
            metas.append(meta)
            if TEXT_KEY not in meta and doc is not None:
                try:
                    meta[TEXT_KEY] = self.cipher.seal(str(meta["document_id"]), cid, doc)
                except TextKeyMissing:
                    continue
            keep.append(i)
        return {"metadatas": metas, "keep": keep}


def _hit(cid: str, text: str, meta: dict[str, Any], score: float) -> ChunkHit:
    return ChunkHit(
        chunk_id=cid,
        document_id=str(meta["document_id"]),
        filename=str(meta.get("filename", "")),
        text=text,
        page=int(meta.get("page", 1)),
        start=int(meta.get("start", 0)),
        end=int(meta.get("end", 0)),
        score=round(score, 6),
        sentence_meta={k: meta[k] for k in SENTENCE_KEYS if k in meta} or None,
    )


def open_keywords(settings: Settings, key: bytes | None) -> KeywordStore:
    """The keyword index: in PostgreSQL when the registry is (shared by every machine),
    else SQLite FTS5 in the data directory (one machine)."""
    if settings.database_url:
        from ingest.pgkeywords import PostgresKeywordIndex  # psycopg only where configured

        return PostgresKeywordIndex(settings.database_url, key)
    return KeywordIndex(settings.keywords_path, key)


def open_store(settings: Settings) -> ChromaStore:
    """The service's store (API and workers): the Chroma server, chunk text sealed under
    per-document keys, the keyword index beside it with hashed terms, and the tenant write
    lock in Redis."""
    cipher = TextCipher.for_settings(settings)
    return ChromaStore(settings.chroma.host, settings.chroma.port,
                       open_keywords(settings, term_key(cipher.master)),
                       lock=redis_collection_lock(settings.redis_url), cipher=cipher,
                       shards=settings.chroma.shards)


def _get_by_name(client: Any, coll: Any, kwargs: dict[str, Any]) -> Any:
    """``coll.get(**kwargs)``; a shard a compaction swapped since it was listed (rebuilt
    under the same name, ``ChromaStore.compact``; the name is free for milliseconds) is
    found again by its name."""
    for _ in range(SWAP_RETRIES):
        try:
            return coll.get(**kwargs)
        except Exception as exc:
            if not _missing(exc):
                raise
        time.sleep(SWAP_RETRY_S)
        coll = _named_retrying(client, coll.name)
    return coll.get(**kwargs)


def _missing(exc: Exception) -> bool:
    """Chroma's answer for a collection that does not exist (any more)."""
    return type(exc).__name__ == "NotFoundError" or "does not exist" in str(exc).lower()


def _segment_race(exc: Exception) -> bool:
    """Chroma (1.5) querying a collection whose vector segment is being written for the first
    time can answer "Error creating hnsw segment reader: Nothing found on disk"; a moment
    later the same query works. Seen with many small shards under load."""
    text = str(exc).lower()
    return "hnsw segment reader" in text or "nothing found on disk" in text


def _wrap(exc: Exception) -> Exception:
    """Connection problems, and a segment still being written, become
    ``StoreUnavailableError`` (a 503 the client may retry); others pass through."""
    text = f"{type(exc).__name__}: {exc}"
    transient = _segment_race(exc) or any(
        s in text.lower()
        for s in ("connect", "timeout", "timed out", "refused", "unavailable", "503", "502",
                  "remoteprotocol", "readerror", "could not connect")
    )
    if transient:
        return StoreUnavailableError(f"Chroma server unavailable: {text}")
    return exc
