"""``docqa ingest`` against a fake API: which files it picks (hidden, --include,
--exclude), what it sends (--metadata), and how it counts and names rejected and failed
files (exit 1)."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from service.cli.ingest import collect_files
from tests.unit.service.cli.conftest import FakeAPI, problem, run


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "docs"
    for rel in ("a.txt", "b.pdf", ".hidden.txt", "sub/c.txt", "sub/d.md", ".git/config",
                "drafts/e.txt", "sub/.env"):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(f"text of {rel}\n")
    return root


def names(files: list[Path], root: Path) -> list[str]:
    return [f.relative_to(root).as_posix() for f in files]


def test_hidden_files_and_folders_are_skipped_unless_asked(tree: Path) -> None:
    assert names(collect_files([tree]), tree) == ["a.txt", "b.pdf", "drafts/e.txt",
                                                  "sub/c.txt", "sub/d.md"]
    with_hidden = names(collect_files([tree], hidden=True), tree)
    assert {".hidden.txt", ".git/config", "sub/.env"} <= set(with_hidden)
    # a hidden file named on the command line is taken: it was asked for
    assert collect_files([tree / ".hidden.txt"]) == [tree / ".hidden.txt"]


def test_include_and_exclude_globs(tree: Path) -> None:
    assert names(collect_files([tree], include=("*.txt",)), tree) == [
        "a.txt", "drafts/e.txt", "sub/c.txt"]
    assert names(collect_files([tree], include=("sub/*",)), tree) == ["sub/c.txt", "sub/d.md"]
    assert names(collect_files([tree], include=("*.txt", "*.md")), tree) == [
        "a.txt", "drafts/e.txt", "sub/c.txt", "sub/d.md"]
    # a folder excluded by name or path is not walked; a file by name or path
    assert names(collect_files([tree], exclude=("drafts",)), tree) == [
        "a.txt", "b.pdf", "sub/c.txt", "sub/d.md"]
    assert names(collect_files([tree], exclude=("*.pdf", "sub/c.txt")), tree) == [
        "a.txt", "drafts/e.txt", "sub/d.md"]
    assert collect_files([tree], include=("*.docx",)) == []


def test_a_file_given_twice_is_uploaded_once(tree: Path) -> None:
    assert collect_files([tree / "a.txt", tree, tree / "a.txt"])[0] == tree / "a.txt"
    assert len(collect_files([tree / "a.txt", tree])) == 5


def test_ingest_uploads_with_metadata_and_waits_for_ready(api: FakeAPI, tree: Path) -> None:
    result = run("ingest", str(tree / "sub"), "--metadata", "team=legal",
                 "--metadata", "year:=2024", "--metadata", "tags:=[\"a\", \"b\"]")
    assert result.exit_code == 0, result.output
    assert result.stdout.rstrip().endswith("2 ready, 0 failed")
    assert api.uploads == [("c.txt", {"team": "legal", "year": 2024, "tags": ["a", "b"]}),
                           ("d.md", {"team": "legal", "year": 2024, "tags": ["a", "b"]})]
    assert result.stderr == ""


def test_rejected_uploads_are_counted_and_named(api: FakeAPI, tmp_path: Path) -> None:
    (tmp_path / "ok.txt").write_text("fine\n")
    (tmp_path / "empty.txt").write_bytes(b"")
    (tmp_path / "tool.exe").write_bytes(b"MZ\x90\x00")
    result = run("ingest", str(tmp_path))
    assert result.exit_code == 1
    assert result.stdout.rstrip().endswith("1 ready, 0 failed, 2 rejected")
    errors = result.stderr.splitlines()
    assert errors == [
        f"{tmp_path / 'empty.txt'}: rejected: HTTP 400 Empty upload: the file is empty",
        f"{tmp_path / 'tool.exe'}: rejected: HTTP 415 Unsupported media type: executables "
        "are not accepted"]


def test_every_file_rejected_is_no_success(api: FakeAPI, tmp_path: Path) -> None:
    (tmp_path / "a.exe").write_bytes(b"MZ")
    (tmp_path / "b.exe").write_bytes(b"MZ!")
    result = run("ingest", str(tmp_path))
    assert result.exit_code == 1
    assert result.stdout.rstrip().endswith("0 ready, 0 failed, 2 rejected")


def test_a_failed_document_is_counted_and_named(api: FakeAPI, tmp_path: Path) -> None:
    (tmp_path / "good.txt").write_text("fine\n")
    (tmp_path / "bad.txt").write_text("FAIL\n")
    result = run("ingest", str(tmp_path))
    assert result.exit_code == 1
    assert result.stdout.rstrip().endswith("1 ready, 1 failed")
    assert result.stderr.splitlines() == [f"{tmp_path / 'bad.txt'}: failed: no text found"]


def test_every_document_is_followed_in_one_stream(api: FakeAPI, tmp_path: Path) -> None:
    for i in range(6):
        (tmp_path / f"f{i}.txt").write_text(f"file {i}\n")
    result = run("ingest", str(tmp_path))
    assert result.exit_code == 0 and result.stdout.rstrip().endswith("6 ready, 0 failed")
    followed = [r for r in api.requests if r.url.path == "/v1/documents/events"]
    assert len(followed) == 1 and len(json.loads(followed[0].read())["ids"]) == 6
    assert not [r for r in api.requests if r.method == "GET"]  # no request per document


def test_a_document_deleted_while_followed_is_failed(api: FakeAPI, tmp_path: Path) -> None:
    (tmp_path / "kept.txt").write_text("kept\n")
    (tmp_path / "gone.txt").write_text("gone\n")

    def deleted(request: httpx.Request) -> httpx.Response | None:
        if request.url.path == "/v1/documents/events":
            api.docs.pop("doc-01")  # gone.txt, uploaded first
        return None

    api.override = deleted
    result = run("ingest", str(tmp_path))
    assert result.exit_code == 1 and result.stdout.rstrip().endswith("1 ready, 1 failed")
    assert "gone.txt: failed: deleted while it was ingested" in result.stderr


def test_nothing_to_upload_exits_1(api: FakeAPI, tree: Path) -> None:
    result = run("ingest", str(tree), "--include", "*.docx")
    assert result.exit_code == 1 and "no files to upload" in result.stderr
    assert api.requests == []


def test_a_refused_key_stops_at_the_first_upload(api: FakeAPI, tree: Path) -> None:
    result = run("ingest", str(tree), env={"DOCQA_API_KEY": "wrong"})
    assert result.exit_code == 2 and len(api.requests) == 1
    assert result.stderr.splitlines()[-1].startswith("Error: the API refused the key")


def test_the_service_going_away_while_following_exits_3(api: FakeAPI, tree: Path) -> None:
    def gone(request: httpx.Request) -> httpx.Response | None:
        if request.url.path == "/v1/documents/events":
            raise httpx.ConnectError("[Errno 111] Connection refused", request=request)
        return None

    api.override = gone
    result = run("ingest", str(tree / "sub"))
    assert result.exit_code == 3
    assert result.stderr.splitlines()[-1].startswith("Error: cannot reach the docqa API")


def test_a_service_error_at_upload_is_not_a_rejection(api: FakeAPI, tree: Path) -> None:
    api.override = lambda req: problem(503, "Service unavailable", "queue down") \
        if req.method == "POST" else None
    result = run("ingest", str(tree / "sub"))
    assert result.exit_code == 3 and "rejected" not in result.output
    assert len(api.requests) == 1


def test_bad_metadata_is_a_usage_error(api: FakeAPI, tree: Path) -> None:
    for bad in ("team", "=x", "year:=20x4"):
        result = run("ingest", str(tree), "--metadata", bad)
        assert result.exit_code == 2 and "--metadata" in result.stderr, bad
    assert api.requests == []
