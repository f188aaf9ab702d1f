"""Registry-side filter resolution: only ever the caller's tenant (SQLite in a temp dir)."""

import time
from pathlib import Path

from core.domain import DocumentKind
from core.registry import SqliteDocumentRepository, metadata_matches


def _repo(tmp_path: Path) -> tuple[SqliteDocumentRepository, dict[str, str]]:
    repo = SqliteDocumentRepository(tmp_path / "r.sqlite3")
    ids = {}
    for tenant, name, meta, sha in [
        ("acme", "contract-2024.pdf", {"team": "legal", "tags": ["contract", "nda"]}, "1"),
        ("acme", "handbook.docx", {"team": "hr", "year": 2024}, "2"),
        ("globex", "contract-globex.pdf", {"team": "legal"}, "3"),
    ]:
        doc, _ = repo.create(tenant=tenant, filename=name, kind=DocumentKind.PDF,
                             sha256=sha * 64, size=10, metadata=meta)
        ids[name] = doc.id
    return repo, ids


def test_conditions_combine_within_the_tenant(tmp_path: Path) -> None:
    repo, ids = _repo(tmp_path)
    assert set(repo.find_ids("acme")) == {ids["contract-2024.pdf"], ids["handbook.docx"]}
    assert repo.find_ids("acme", filename="contract-*") == [ids["contract-2024.pdf"]]
    assert repo.find_ids("acme", metadata={"team": "legal"}) == [ids["contract-2024.pdf"]]
    assert repo.find_ids("acme", metadata={"tags": "nda"}) == [ids["contract-2024.pdf"]]
    assert repo.find_ids("acme", metadata={"year": 2024}) == [ids["handbook.docx"]]
    assert repo.find_ids("acme", metadata={"year": "2024"}) == []
    assert repo.find_ids("acme", created_from=time.time() + 60) == []
    assert len(repo.find_ids("acme", created_to=time.time() + 60)) == 2


def test_ids_of_another_tenant_never_match(tmp_path: Path) -> None:
    repo, ids = _repo(tmp_path)
    assert repo.find_ids("acme", ids=[ids["contract-globex.pdf"]]) == []
    assert repo.find_ids("acme", ids=[]) == []
    assert repo.find_ids("acme", filename="contract-globex.pdf") == []


def test_metadata_matching_is_type_strict_for_booleans() -> None:
    assert metadata_matches({"flag": True}, {"flag": True})
    assert not metadata_matches({"flag": 1}, {"flag": True})
    assert not metadata_matches({}, {"team": "x"})
