"""Ports: the small interfaces the API and workers depend on."""

from __future__ import annotations

import builtins
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from core.domain import ApiKey, ChunkHit, Document, DocumentKind, DocumentStatus, Progress


class DocumentRepository(Protocol):
    """Durable registry of documents and API keys."""

    def create(
        self,
        *,
        tenant: str,
        filename: str,
        kind: DocumentKind,
        sha256: str,
        size: int,
        metadata: dict[str, Any],
        redact_pii: bool = False,
    ) -> tuple[Document, bool]:
        """Insert a queued document; returns (document, created). Same bytes → existing
        (whatever its ``redact_pii``: see :meth:`enable_redaction`)."""

    def get(self, doc_id: str, tenant: str | None = None) -> Document | None: ...

    def list(
        self, tenant: str, status: DocumentStatus | None, limit: int, offset: int, *,
        name_contains: str | None = None, newest_first: bool = False,
    ) -> tuple[builtins.list[Document], int]:
        """One page of the tenant's documents and how many match in all; ``name_contains``:
        only those whose filename contains it, ignoring case."""

    def find_ids(self, tenant: str, *, ids: Sequence[str] | None = None,
                 filename: str | None = None, created_from: float | None = None,
                 created_to: float | None = None,
                 metadata: dict[str, Any] | None = None) -> builtins.list[str]: ...

    def set_status(
        self,
        doc_id: str,
        status: DocumentStatus,
        *,
        error: str | None = None,
        chunks: int | None = None,
        pages: int | None = None,
        pii_counts: dict[str, int] | None = None,
    ) -> None:
        """``pii_counts`` given: the document was redacted; record the counts (and the flag)."""

    def enable_redaction(self, doc_id: str) -> bool:
        """Turn PII redaction on for a document that is ``ready`` or ``failed`` and not yet
        redacted, and queue it again (counts cleared). False if it is not in such a state
        (missing, already redacted, or an ingest is queued or running)."""

    def set_progress(self, doc_id: str, progress: Progress) -> None: ...

    def stale_document_ids(self, updated_before: float,
                           limit: int = 1000) -> builtins.list[str]:
        """Ids of documents of every tenant that are ``queued`` or ``processing`` and were
        last updated before ``updated_before`` (epoch seconds), oldest first
        (workers/reconcile.py)."""

    def requeue_stale(self, doc_id: str, updated_before: float) -> bool:
        """Set a document that is still ``queued``/``processing`` and not updated since
        ``updated_before`` back to ``queued`` (progress cleared, ``updated_at`` now). False
        when it moved on meanwhile (or another reconciler got there first)."""

    def mark_deleting(self, doc_id: str) -> bool:
        """The first step of a DELETE: from now on the document matches no search filter
        (``find_ids``), is never queued again by the reconciler, and no text key can be made
        for it (``core/keystore.py``, ``put_if_registered``). False if there is no such row."""

    def delete(self, doc_id: str) -> bool: ...

    def add_key(self, key_hash: str, tenant: str, name: str) -> str:
        """Store a key's hash for ``tenant``; returns the key's id (``k_<hex>``, not secret)."""

    def tenant_for_key_hash(self, key_hash: str) -> str | None: ...

    def key_for_hash(self, key_hash: str) -> ApiKey | None:
        """The active (not revoked) key with this hash, or None."""

    def list_keys(self, tenant: str | None = None) -> builtins.list[ApiKey]:
        """Every key (revoked ones too, with ``revoked_at``), oldest first; never hashes."""

    def revoke_key(self, key_id: str) -> bool:
        """Revoke a key (idempotent: the first revocation time is kept); False if no such id."""

    def count_keys(self) -> int: ...

    def get_many(self, tenant: str, ids: Sequence[str]) -> builtins.list[Document]:
        """The tenant's documents among ``ids``, in no particular order (another tenant's
        and unknown ids are absent): batch status and the batch event stream."""
        ...

    def count_by_status(self, tenant: str | None = None) -> dict[str, int]:
        """Documents per status, of one tenant or over all tenants (``/metrics``)."""
        ...


class Embedder(Protocol):
    dimension: int

    def embed(self, texts: Sequence[str]) -> list[list[float]]: ...


class VectorStore(Protocol):
    """The vector store as the ingest pipeline, the document service and the answer engine
    use it: one collection per tenant, chunk text kept beside the vectors, and an optional
    keyword index written in the same calls (``ingest/store.py`` is the Chroma adapter)."""

    @property
    def has_keywords(self) -> bool:
        """Whether a keyword (BM25) index is kept beside the vectors."""
        ...

    def upsert(self, tenant: str, chunks: Sequence[Any], embeddings: Sequence[Sequence[float]],
               metadata: dict[str, Any],
               per_chunk: Sequence[dict[str, Any]] | None = None) -> None: ...

    def delete_document(self, tenant: str, document_id: str, keep: Sequence[str] = ()) -> int: ...

    def destroy_text_key(self, document_id: str) -> bool:
        """Make every stored copy of the document's chunk text unreadable (crypto-erasure)."""
        ...

    def chunk_id_key(self, document_id: str) -> bytes:
        """The key of the document's chunk ids, made on first use for a registered document
        only (``TextKeyMissing`` otherwise) and destroyed by :meth:`destroy_text_key`."""

    def count_document(self, tenant: str, document_id: str) -> int: ...

    def query(self, tenant: str, embedding: Sequence[float], top_k: int,
              document_ids: Sequence[str] | None = None) -> list[ChunkHit]:
        """The ``top_k`` chunks nearest ``embedding``, scored by cosine similarity."""
        ...

    def nearest(self, tenant: str, embedding: Sequence[float], top_k: int,
                document_ids: Sequence[str] | None = None) -> list[tuple[str, float]]:
        """(chunk id, cosine similarity) of the ``top_k`` chunks nearest ``embedding``, best
        first, without their records (``get_chunks`` reads those)."""
        ...

    def keyword_ids(self, tenant: str, text: str, n: int,
                    document_ids: Sequence[str] | None = None) -> list[str]:
        """The ids of the ``n`` best keyword matches, best first (none without an index)."""
        ...

    def get_chunks(self, tenant: str, ids: Sequence[str], embedding: Sequence[float],
                   scores: Mapping[str, float] | None = None) -> list[ChunkHit]:
        """Chunks by id, scored by cosine similarity to ``embedding``, or by ``scores[id]``
        where given."""
        ...

    def text_chunks(self, tenant: str, document_id: str, start: int, end: int,
                    limit: int | None = None) -> list[ChunkHit]:
        """The document's chunks that overlap characters ``[start, end)`` of its extracted
        text, ordered by offset (at most ``limit``)."""
        ...

    def heartbeat(self) -> None: ...
