"""The reconciler (workers/reconcile.py): documents left queued or processing with no message
in the queue or the unacked set are queued again, on both registry backends. On real
processes: tests/integration/test_faults.py."""

from __future__ import annotations

import base64
import json
import time

from core.domain import DocumentKind, DocumentStatus, Progress
from core.ports import DocumentRepository
from core.tasks import INGEST_DOCUMENT, INGEST_QUEUE, PRIORITY_SEP
from tests.unit.conftest import FakeRedis, MakeRepo
from workers import reconcile


def _doc(repo: DocumentRepository, name: str) -> str:
    doc, _ = repo.create(tenant="acme", filename=name, kind=DocumentKind.TEXT,
                         sha256=name.encode().hex().ljust(64, "0")[:64], size=1, metadata={})
    return doc.id


def _message(doc_id: str, task: str = INGEST_DOCUMENT) -> bytes:
    """A Celery protocol-2 message as kombu's Redis transport stores it."""
    body = base64.b64encode(json.dumps([[doc_id], {}, {"callbacks": None}]).encode()).decode()
    return json.dumps({
        "body": body, "content-encoding": "utf-8", "content-type": "application/json",
        "headers": {"task": task, "id": "t-" + doc_id, "argsrepr": repr([doc_id])},
        "properties": {"body_encoding": "base64",
                       "delivery_info": {"exchange": "", "routing_key": INGEST_QUEUE}},
    }).encode()


def test_enqueued_ids_are_read_from_the_queue_and_the_unacked_set() -> None:
    fake = FakeRedis()
    fake.lists[INGEST_QUEUE] = [_message("a"), _message("x", task="docqa.erase_document")]
    fake.lists[INGEST_QUEUE + PRIORITY_SEP + "3"] = [_message("b")]
    fake.hashes[reconcile.UNACKED_KEY] = {
        "tag1": json.dumps([json.loads(_message("c")), "", INGEST_QUEUE]).encode(),
        "tag2": b"not json"}
    assert reconcile.enqueued_document_ids(fake) == {"a", "b", "c"}


def test_reconcile_requeues_only_stale_documents_without_a_message(
    make_repo: MakeRepo
) -> None:
    repo = make_repo()
    stuck_q, stuck_p, in_queue, in_unacked, done = (
        _doc(repo, n) for n in ("q", "p", "iq", "iu", "done"))
    repo.set_status(stuck_p, DocumentStatus.PROCESSING)
    repo.set_progress(stuck_p, Progress("embedding", 4, 8))
    repo.set_status(done, DocumentStatus.READY, chunks=2)
    fake = FakeRedis()
    fake.lists[INGEST_QUEUE] = [_message(in_queue)]
    fake.hashes[reconcile.UNACKED_KEY] = {
        "t": json.dumps([json.loads(_message(in_unacked)), "", INGEST_QUEUE]).encode()}
    later = time.time() + 100  # every document above is 100 s old by then ...
    sent: list[str] = []
    requeued = reconcile.reconcile(repo, fake, sent.append, after_s=50, now=later)
    assert sorted(requeued) == sorted(sent) == sorted([stuck_q, stuck_p])
    doc = repo.get(stuck_p)
    assert doc is not None and doc.status is DocumentStatus.QUEUED
    assert doc.progress == Progress("queued", 0, 0)
    # ... and the next round (40 s on) does not queue them again: they were just updated
    assert reconcile.reconcile(repo, fake, sent.append, after_s=50, now=time.time() + 40) == []
    assert len(sent) == 2
    # nothing is stale before the deadline
    assert reconcile.reconcile(repo, fake, sent.append, after_s=500, now=later) == []
    assert done not in sent
