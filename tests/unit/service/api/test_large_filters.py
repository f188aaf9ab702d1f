"""A filter matching more documents than SQLite allows variables in one statement (32,766):
``/v1/search`` and ``/v1/ask`` answer 200 with the same hits as an unfiltered search,
through the real app, SQLite registry, keyword index (FTS5) and store adapter on an
in-process Chroma (issue 15, point 7). Each of the three once built an ``IN (?, ?…)`` list
of every matching document and failed with "too many SQL variables" (500).

Chroma's own SQLite has the default limit of 32,766 variables; Debian's libsqlite3, which
Python uses here, allows 250,000, so Python's connections are held to the default limit
for these tests (:func:`default_sqlite_limit`), as other builds of SQLite are."""

from __future__ import annotations

import json
import secrets
import sqlite3
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import TestClient

from core.domain import Chunk, DocumentKind
from core.registry import SqliteDocumentRepository
from core.settings import Settings
from core.textcrypt import TextCipher
from ingest.embedding import HashEmbedder
from ingest.keywords import KeywordIndex
from service.answer import AnswerPipeline
from tests.local_chroma import LocalChromaStore
from tests.unit.conftest import API_KEY, bearer, make_app

MANY = 33_000  # more than SQLite's 32,766 variables
FACTS = ["The Vestby lighthouse lamp was converted to LED in 2019.",
         "The harbour crane at Vestby lifts forty tonnes."]


SQLITE_DEFAULT_MAX_VARIABLES = 32_766


@pytest.fixture(scope="module", autouse=True)
def default_sqlite_limit() -> Iterator[None]:
    real = sqlite3.connect

    def connect(*args: Any, **kwargs: Any) -> sqlite3.Connection:
        db = real(*args, **kwargs)
        db.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, SQLITE_DEFAULT_MAX_VARIABLES)
        return db

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(sqlite3, "connect", connect)
        yield


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    data = tmp_path_factory.mktemp("large-filters")
    s = Settings(data_dir=data, api_keys=f"acme:{API_KEY}", load_generator=False)
    repo = SqliteDocumentRepository(s.registry_path)
    store = LocalChromaStore(data / "chroma", KeywordIndex(s.keywords_path),
                             cipher=TextCipher.for_settings(s))
    emb = HashEmbedder()
    for i, fact in enumerate(FACTS):
        doc, _ = repo.create(tenant="acme", filename=f"fact-{i}.txt", kind=DocumentKind.TEXT,
                             sha256=f"{i:064x}", size=len(fact), metadata={"batch": "x"})
        chunk = Chunk(f"{doc.id}:0:{i:016x}", doc.id, 0, fact, 1, 0, len(fact))
        store.upsert("acme", [chunk], emb.embed([fact]), {"filename": doc.filename})
    now = time.time()
    with repo._connect() as db:  # the many other documents: rows only, in one transaction
        db.execute("BEGIN")
        db.executemany(
            "INSERT INTO documents (id, tenant, filename, kind, sha256, size, status, metadata,"
            " created_at, updated_at) VALUES (?,?,?,?,?,?,?,?,?,?)",
            [(uuid.uuid4().hex, "acme", f"filler-{i}.txt", "text", secrets.token_hex(32), 1,
              "ready", json.dumps({"batch": "x"}), now, now) for i in range(MANY)])
        db.execute("COMMIT")
    answers = AnswerPipeline(s, emb, store, None, model=False,
                             live=lambda tenant, ids: repo.find_ids(tenant, ids=ids))
    application, _ = make_app(settings=s, repo=repo, store=store, answers=answers)
    with TestClient(application) as client:
        yield client


@pytest.mark.parametrize("mode", ["hybrid", "dense", "keyword"])
@pytest.mark.parametrize("filters", [{"filename": "*.txt"}, {"metadata": {"batch": "x"}}])
def test_a_filter_matching_33000_documents_searches_them_all(
        app: Any, mode: str, filters: dict[str, Any]) -> None:
    query = {"query": "When was the Vestby lighthouse lamp converted to LED?", "mode": mode}
    unfiltered = app.post("/v1/search", json=query, headers=bearer(API_KEY))
    filtered = app.post("/v1/search", json={**query, "filters": filters},
                        headers=bearer(API_KEY))
    assert unfiltered.status_code == 200 and filtered.status_code == 200, filtered.text
    hits = filtered.json()["results"]
    assert hits and hits[0]["text"] == FACTS[0]
    assert [h["chunk_id"] for h in hits] == [h["chunk_id"] for h in unfiltered.json()["results"]]


def test_ask_with_a_filter_matching_33000_documents_answers(app: Any) -> None:
    resp = app.post("/v1/ask", json={"question": "When was the Vestby lighthouse lamp "
                                                 "converted to LED?",
                                     "filters": {"filename": "*.txt"}}, headers=bearer(API_KEY))
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["status"] == "answered" and "2019" in body["answer"]


def test_the_registry_finds_33000_ids_by_id(tmp_path: Path) -> None:
    repo = SqliteDocumentRepository(tmp_path / "registry.sqlite3")
    now = time.time()
    ids = [uuid.uuid4().hex for _ in range(MANY)]
    with repo._connect() as db:
        db.execute("BEGIN")
        db.executemany(
            "INSERT INTO documents (id, tenant, filename, kind, sha256, size, status,"
            " created_at, updated_at) VALUES (?,?,?,?,?,?,?,?,?)",
            [(d, "acme", "f.txt", "text", secrets.token_hex(32), 1, "ready", now, now)
             for d in ids])
        db.execute("COMMIT")
    assert sorted(repo.find_ids("acme", ids=[*ids, "not-a-document"])) == sorted(ids)
    assert repo.find_ids("globex", ids=ids) == []  # never another tenant's
