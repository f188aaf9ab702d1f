"""Bounded redelivery without processes (workers/deliveries.py): a document whose worker dies
on every attempt fails after the last one, on both registry backends. The same behaviour on
real processes: tests/integration/test_faults.py."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from core.domain import DocumentKind, DocumentStatus
from core.ports import DocumentRepository
from core.settings import Settings
from tests.unit.conftest import FakeRedis, MakeRepo
from workers import deliveries


@dataclass
class Deps:
    settings: Settings
    repo: DocumentRepository


def _doc(repo: DocumentRepository, name: str) -> str:
    doc, _ = repo.create(tenant="acme", filename=name, kind=DocumentKind.TEXT,
                         sha256=name.encode().hex().ljust(64, "0")[:64], size=1, metadata={})
    return doc.id


def test_a_document_whose_worker_dies_every_time_fails_after_max_retries_plus_one(
    make_repo: MakeRepo, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = FakeRedis()
    monkeypatch.setattr(deliveries, "_redis", lambda _url: fake)
    repo = make_repo()
    deps = Deps(Settings(), repo)
    doc_id = _doc(repo, "poison.txt")
    repo.set_status(doc_id, DocumentStatus.PROCESSING)
    # attempts 1..6 run (the worker dies in each: nothing clears the count)
    assert [deliveries.admit(deps, doc_id, 0, 6) for _ in range(6)] == [None] * 6
    assert deliveries.admit(deps, doc_id, 0, 6) == "failed"  # the 7th delivery gives up
    doc = repo.get(doc_id)
    assert doc is not None and doc.status is DocumentStatus.FAILED
    assert "died while ingesting this document on each of 6 attempts" in (doc.error or "")

    # a settled document is never failed by a late duplicate delivery
    other = _doc(repo, "fine.txt")
    repo.set_status(other, DocumentStatus.READY, chunks=3)
    for _ in range(10):
        assert deliveries.admit(deps, other, 0, 6) is None
    assert repo.get(other).status is DocumentStatus.READY  # type: ignore[union-attr]
    # a result resets the count
    deliveries.forget("redis://x", other)
    assert deliveries.KEY_PREFIX + other not in fake.values


def test_delivery_counting_fails_open(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(_url: str) -> Any:
        raise ConnectionError("redis is down")

    monkeypatch.setattr(deliveries, "_redis", broken)
    assert deliveries.count("redis://x", "d1") is None
    deliveries.forget("redis://x", "d1")  # no exception




