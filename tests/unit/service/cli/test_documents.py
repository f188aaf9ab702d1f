"""``docqa documents list|get|delete`` against a fake API."""

from __future__ import annotations

import json

from tests.unit.service.cli.conftest import FakeAPI, run


def test_list_a_page_as_a_table_or_json(api: FakeAPI) -> None:
    for i in range(5):
        api.add(f"f{i}.txt", status="failed" if i == 2 else "ready")
    table = run("documents", "list", "--limit", "2", "--offset", "1")
    assert table.exit_code == 0, table.output
    lines = table.stdout.splitlines()
    assert lines[0].split() == ["ID", "STATUS", "CHUNKS", "PAGES", "CREATED", "FILENAME"]
    assert [ln.split()[0] for ln in lines[1:]] == ["doc-02", "doc-03"]  # oldest first
    assert table.stderr == "2-3 of 5 documents\n"
    page = json.loads(run("documents", "list", "--json", "--status", "ready").stdout)
    assert page["total"] == 4 and page["limit"] == 50 and page["offset"] == 0
    assert {d["status"] for d in page["items"]} == {"ready"}


def test_list_all_pages_through(api: FakeAPI) -> None:
    for i in range(3):
        api.add(f"f{i}.txt")
    every = json.loads(run("documents", "list", "--all", "--json").stdout)
    assert [d["id"] for d in every["items"]] == ["doc-01", "doc-02", "doc-03"]
    assert every["total"] == 3
    empty = run("documents", "list", "--status", "queued")
    assert empty.exit_code == 0 and empty.stdout == ""
    assert empty.stderr == "none of 0 documents (queued)\n"


def test_get_shows_one_document(api: FakeAPI) -> None:
    doc_id = api.add("contract.pdf", team="legal")
    text = run("documents", "get", doc_id)
    assert text.exit_code == 0
    assert "filename:     contract.pdf" in text.stdout
    assert 'metadata:     {"team": "legal"}' in text.stdout
    assert json.loads(run("documents", "get", doc_id, "--json").stdout) == api.docs[doc_id]


def test_get_an_unknown_document_exits_1_in_one_line(api: FakeAPI) -> None:
    result = run("documents", "get", "nope", "--json")
    assert result.exit_code == 1 and result.stdout == ""
    assert result.stderr == "Error: not found (HTTP 404 Not found: no document 'nope')\n"


def test_delete_reports_each_and_exits_1_when_one_was_not_found(api: FakeAPI) -> None:
    a, b = api.add("a.txt"), api.add("b.txt")
    one = run("documents", "delete", a)
    assert one.exit_code == 0 and one.stdout == f"deleted {a}\n" and a not in api.docs
    mixed = run("documents", "delete", "nope", b, "--json")
    assert mixed.exit_code == 1
    assert json.loads(mixed.stdout) == {"deleted": [b], "not_found": ["nope"]}
    assert api.docs == {}
    text = run("documents", "delete", "nope")
    assert text.exit_code == 1 and text.stderr == "nope: not found\n"
