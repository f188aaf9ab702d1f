"""Erasure that really erases: the background job behind ``DELETE /v1/documents/{id}``.

The API, before it answers 204, queues this job and then deletes the document's chunks
(Chroma and the keyword index), its stored file's key and the file (crypto-erasure,
core/vault.py) and its registry row. Searches stop returning it at once. What those deletes
leave on disk, measured on chromadb 1.5.9 and SQLite 3.40:

- Chroma keeps deleted records' text, metadata and vectors in its write-ahead log
  (``embeddings_queue`` in ``chroma.sqlite3``) until the log is purged, their vectors in
  the collection's HNSW files, and freed pages of ``chroma.sqlite3`` still hold the
  bytes (Chroma does not use ``secure_delete``);
- FTS5 (the keyword index) writes a deleted row's terms again into a delete-marker
  segment and keeps the old segments until they are merged;
- freed SQLite pages and WAL frames keep old row contents.

This job, run by a worker (well within 60 s of the DELETE on an idle worker; see docs/erasure.md),
therefore: rebuilds the document's shard (one of the tenant's Chroma collections,
``ChromaStore.compact_collection``) without the document and drops the old one, has
segment directories no collection uses any more removed
and ``chroma.sqlite3`` vacuumed (by a worker that sees the Chroma server's directory: the
job queues that on ``docqa.chroma``, which only such workers consume), scrubs the keyword
index (SQLite: merges the tenant's FTS5 table into one segment, ``optimize``, with
``secure_delete`` on, and checkpoints its WAL; PostgreSQL: ``VACUUM`` of its table),
vacuums the SQLite registry (rows and wrapped file keys), and deletes keys no stored file
uses.

Deletions coming in bursts share work: each job counts itself in Redis (per shard, per
keyword table, per Chroma directory); a run covers every deletion counted before it started,
and later jobs that it covered skip theirs.
"""

from __future__ import annotations

import logging
import re
import shutil
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis

from core.errors import TransientError
from core.keystore import checkpoint_truncate
from core.ports import DocumentRepository
from core.settings import Settings
from core.vault import Vault
from ingest.keywords import scrub_fts
from ingest.originals import erase_document
from ingest.store import ChromaStore, collection_name

log = logging.getLogger("docqa.erasure")

_UUID_DIR = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
CHROMA_DB = "chroma.sqlite3"


class NotDeletedYet(TransientError):
    """The registry still has the document: the API has not finished its part (or failed
    and answered 503, in which case the document was not deleted)."""


# ---------------------------------------------------------------- file-level scrubbing


def scrub_keywords(path: Path, collection: str) -> bool:
    """The SQLite keyword index's scrub (``KeywordIndex.scrub``), by path."""
    return scrub_fts(path, collection)


def vacuum_sqlite(path: Path) -> bool:
    """Rebuild a SQLite file so no freed page or unused cell keeps deleted rows; then
    truncate its WAL (if it has one). Safe while other processes use the file (they wait
    for the lock)."""
    if not Path(path).exists():
        return False
    db = sqlite3.connect(path, timeout=60, isolation_level=None)
    try:
        db.execute("PRAGMA busy_timeout=60000")
        db.execute("VACUUM")
        return checkpoint_truncate(db)
    finally:
        db.close()


def scrub_chroma_dir(chroma_dir: Path) -> dict[str, Any]:
    """Remove HNSW segment directories that no Chroma segment uses any more (a dropped
    collection's stay behind in chromadb 1.5.9), then vacuum ``chroma.sqlite3``.

    The directories are listed before the live segment ids are read, so a collection
    created meanwhile (whose directory was not listed) is never touched."""
    db_path = Path(chroma_dir) / CHROMA_DB
    if not db_path.exists():
        return {"skipped": "no local Chroma data directory"}
    listed = [p for p in Path(chroma_dir).iterdir() if p.is_dir() and _UUID_DIR.match(p.name)]
    ro = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=60)
    try:
        live = {str(r[0]) for r in ro.execute("SELECT id FROM segments")}
    finally:
        ro.close()
    removed = 0
    for p in listed:
        if p.name not in live:
            shutil.rmtree(p, ignore_errors=True)
            removed += 1
    t0 = time.monotonic()
    vacuum_sqlite(db_path)
    return {"segment_dirs_removed": removed, "vacuum_seconds": round(time.monotonic() - t0, 3)}


# ---------------------------------------------------------------- the job


SECOND_PASS_DELAY_S = 3.0


@dataclass
class Eraser:
    settings: Settings
    repo: DocumentRepository
    store: ChromaStore
    vault: Vault
    redis: Any  # redis.Redis: counters and locks shared by every worker
    # the worker's: queue the Chroma directory scrub for a worker that sees the directory
    # (the Chroma server's files may be on another machine); None = scrub here
    scrub_chroma_later: Callable[[], None] | None = None

    def erase(self, tenant: str, doc_id: str) -> dict[str, Any]:
        """Finish erasing ``doc_id`` (its registry row must be gone). Idempotent."""
        if self.repo.get(doc_id) is not None:
            raise NotDeletedYet(f"document {doc_id} is still registered")
        t0 = time.monotonic()
        # what the API did, again: a crash between its steps must leave nothing behind
        erase_document(self.settings, self.store, self.vault, tenant, doc_id)
        coll = collection_name(tenant)
        report: dict[str, Any] = {"document_id": doc_id, "compaction": {}}
        for name in self.store.erase_collections(tenant, doc_id):  # its shard: not the tenant
            report["compaction"][name] = self._once(
                f"docqa:erase:{name}",
                lambda name=name: self.store.compact_collection(tenant, name))
        report["keywords"] = self._once(f"docqa:erase:{coll}:keywords",
                                        lambda: self._scrub_keywords(coll))
        if self.scrub_chroma_later is None:
            report["chroma"] = self.scrub_chroma()
        else:  # after the compaction: the scrub removes what the compaction dropped
            self.scrub_chroma_later()
            report["chroma"] = "queued"
        report["registry"] = self._scrub_registry()
        report["seconds"] = round(time.monotonic() - t0, 3)
        log.info("document %s erased everywhere: %s", doc_id, report)
        return report

    def scrub_chroma(self) -> dict[str, Any]:
        """Scrub the Chroma server's directory (``scrub_chroma_dir``), once for every erasure
        counted before this run, then a second time."""
        report: dict[str, Any] = {"first_pass": self._once(
            "docqa:erase:chroma-dir", lambda: scrub_chroma_dir(self.settings.chroma_dir))}
        # the Chroma server may still flush a dropped collection's HNSW files after the first
        # pass removed its directory (a CI run found the deleted text in such a file): again
        time.sleep(SECOND_PASS_DELAY_S)
        report["second_pass"] = scrub_chroma_dir(self.settings.chroma_dir)
        return report

    def _scrub_keywords(self, coll: str) -> bool:
        """The tenant's keyword table (kept per tenant, not per shard) scrubbed."""
        keywords = self.store.keywords
        return keywords.scrub(coll) if keywords is not None else False

    def _once(self, key: str, work: Any) -> Any:
        return self._run(key, self._ticket(key), work)

    def _ticket(self, key: str) -> int:
        """Count this job (after its own deletes: a run that sees the count sees them)."""
        return int(self.redis.incr(f"{key}:requested"))

    def _run(self, key: str, ticket: int, work: Any) -> Any:
        """Run ``work`` unless a run that started after ``ticket`` was counted already
        finished (it covered this job's deletion). Runs are serialized by a Redis lock."""
        ttl = self.settings.worker.task_time_limit_s
        with self.redis.lock(f"{key}:lock", timeout=ttl, blocking_timeout=ttl):
            if int(self.redis.get(f"{key}:done") or 0) >= ticket:
                return "covered by an earlier run"
            seen = int(self.redis.get(f"{key}:requested") or ticket)
            result = work()
            self.redis.set(f"{key}:done", seen)
            return result

    def _scrub_registry(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.settings.database_url:  # PostgreSQL: VACUUM of the key table (docs/erasure.md)
            out["keys"] = self.vault.keys.scrub()
        else:  # rows and wrapped keys share registry.sqlite3
            out["vacuumed"] = vacuum_sqlite(self.settings.registry_path)
        out["orphan_keys_removed"] = self.vault.sweep_orphan_keys([self.settings.files_dir])
        return out


def sees_chroma_dir(settings: Settings) -> bool:
    """Whether this machine sees the Chroma server's directory (``chroma.data_dir``)."""
    return (settings.chroma_dir / CHROMA_DB).is_file()


def build_eraser(settings: Settings, repo: DocumentRepository, store: ChromaStore,
                 scrub_chroma_later: Callable[[], None] | None = None) -> Eraser:
    return Eraser(settings, repo, store, Vault.for_settings(settings),
                  redis.Redis.from_url(settings.redis_url, socket_timeout=30,
                                       socket_connect_timeout=5), scrub_chroma_later)


__all__ = ["Eraser", "NotDeletedYet", "build_eraser", "scrub_chroma_dir",
           "scrub_keywords", "sees_chroma_dir", "vacuum_sqlite"]
