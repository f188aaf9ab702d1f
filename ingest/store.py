"""Vector store adapter: one Chroma collection per tenant on the Chroma *server*.

Never a shared ``PersistentClient`` directory (DESIGN.md: it silently lost vectors).
Chroma's default embedding function is never used: we always pass our vectors.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Sequence
from typing import Any

from core.domain import Chunk, ChunkHit
from core.errors import StoreUnavailableError
from core.settings import apply_offline_env
from ingest.sentences import unpack

_UPSERT_BATCH = 256


def collection_name(tenant: str) -> str:
    """Tenant isolation is by collection, not by a where-filter."""
    return "docqa_t_" + hashlib.sha256(tenant.encode("utf-8")).hexdigest()[:32]


class ChromaStore:
    def __init__(self, host: str, port: int) -> None:
        apply_offline_env()
        self.host, self.port = host, port
        self._client: Any = None
        self._collections: dict[str, Any] = {}
        self._lock = threading.Lock()

    def _connect(self) -> Any:
        if self._client is None:
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
        return self._client

    def _collection(self, tenant: str, create: bool = True) -> Any:
        name = collection_name(tenant)
        with self._lock:
            if name not in self._collections:
                client = self._connect()
                try:
                    if create:
                        coll = client.get_or_create_collection(
                            name=name,
                            embedding_function=None,
                            configuration={"hnsw": {"space": "cosine"}},
                            metadata={"tenant_hash": name},
                        )
                    else:
                        coll = client.get_collection(name=name, embedding_function=None)
                except Exception as exc:
                    if not create and "does not exist" in str(exc).lower():
                        return None
                    raise _wrap(exc) from exc
                self._collections[name] = coll
            return self._collections[name]

    def _call(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except Exception as exc:
            self._collections.clear()  # a restarted server may have new collection ids
            raise _wrap(exc) from exc

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
        coll = self._collection(tenant)
        extra = list(per_chunk) if per_chunk is not None else [{} for _ in chunks]
        for i in range(0, len(chunks), _UPSERT_BATCH):
            part = chunks[i : i + _UPSERT_BATCH]
            self._call(
                coll.upsert,
                ids=[c.id for c in part],
                embeddings=[list(e) for e in embeddings[i : i + _UPSERT_BATCH]],
                documents=[c.text for c in part],
                metadatas=[
                    {**metadata, **x, "document_id": c.document_id, "chunk_index": c.index,
                     "page": c.page, "start": c.start, "end": c.end}
                    for c, x in zip(part, extra[i : i + _UPSERT_BATCH], strict=True)
                ],
            )

    def chunk_ids(self, tenant: str, document_id: str) -> list[str]:
        coll = self._collection(tenant, create=False)
        if coll is None:
            return []
        got = self._call(coll.get, where={"document_id": document_id}, include=[])
        return list(got["ids"])

    def count_document(self, tenant: str, document_id: str) -> int:
        return len(self.chunk_ids(tenant, document_id))

    def delete_document(self, tenant: str, document_id: str, keep: Sequence[str] = ()) -> int:
        """Remove a document's chunks, except ids in ``keep`` (stale-chunk clean-up).

        Returns how many of the document's chunks remain stored (the kept ones found),
        so the caller can verify retrievability without another round trip.
        """
        keep_set = set(keep)
        present = self.chunk_ids(tenant, document_id)
        stale = [cid for cid in present if cid not in keep_set]
        if stale:
            coll = self._collection(tenant)
            self._call(coll.delete, ids=stale)
        return len(present) - len(stale)

    def query(
        self,
        tenant: str,
        embedding: Sequence[float],
        top_k: int,
        document_ids: Sequence[str] | None = None,
    ) -> list[ChunkHit]:
        coll = self._collection(tenant, create=False)
        if coll is None:
            return []
        where: dict[str, Any] | None = None
        if document_ids:
            where = {"document_id": {"$in": list(document_ids)}}
        res = self._call(
            coll.query,
            query_embeddings=[list(embedding)],
            n_results=top_k,
            where=where,
            include=["documents", "metadatas", "distances"],
        )
        hits = []
        for cid, text, meta, dist in zip(
            res["ids"][0], res["documents"][0], res["metadatas"][0], res["distances"][0],
            strict=True,
        ):
            hits.append(
                ChunkHit(
                    chunk_id=cid,
                    document_id=str(meta["document_id"]),
                    filename=str(meta.get("filename", "")),
                    text=text or "",
                    page=int(meta.get("page", 1)),
                    start=int(meta.get("start", 0)),
                    end=int(meta.get("end", 0)),
                    score=round(1.0 - float(dist), 6),
                    sentences=unpack(meta),
                )
            )
        return hits


def _wrap(exc: Exception) -> Exception:
    """Connection problems become ``StoreUnavailableError``; others pass through."""
    text = f"{type(exc).__name__}: {exc}"
    transient = any(
        s in text.lower()
        for s in ("connect", "timeout", "timed out", "refused", "unavailable", "503", "502",
                  "remoteprotocol", "readerror", "could not connect")
    )
    if transient:
        return StoreUnavailableError(f"Chroma server unavailable: {text}")
    return exc
