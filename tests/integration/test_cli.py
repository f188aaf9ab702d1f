"""``docqa`` as a script runs it: ``python -m service.cli`` as a subprocess against the real
stack, its stdout, stderr and exit code for each outcome (service/cli/errors.py):
0 ok, 1 documents failed/rejected/not found, 2 usage or auth, 3 service unreachable.

The module's commands run as a tenant of their own (a key made with ``docqa keys create``),
reaching the API through ``DOCQA_URL`` and ``DOCQA_API_KEY`` only."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from service.cli.processes import free_port
from tests.integration.conftest import Stack

pytestmark = pytest.mark.integration

FACT = ("The Zanzibar office cafeteria opens at 7:45 every weekday morning and closes "
        "at 15:30.\n")
QUESTION = "When does the Zanzibar office cafeteria open?"


def docqa(env: dict[str, str], *args: str, timeout: float = 300
          ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "service.cli", *args], env=env,
                          capture_output=True, text=True, timeout=timeout, check=False)


def one_error_line(proc: subprocess.CompletedProcess[str]) -> str:
    """The command failed with exactly one line on stderr, and no traceback anywhere."""
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    return lines[0]


def as_json(proc: subprocess.CompletedProcess[str]) -> Any:
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


@pytest.fixture(scope="module")
def env(stack: Stack) -> dict[str, str]:
    """The stack's environment with a new tenant's key in DOCQA_API_KEY and the API in
    DOCQA_URL (none of the commands below gets --url or --api-key)."""
    made = docqa(stack.env, "keys", "create", "--tenant", f"cli-{uuid.uuid4().hex[:8]}")
    assert made.returncode == 0, made.stderr
    return {**stack.env, "DOCQA_URL": stack.url, "DOCQA_API_KEY": made.stdout.strip()}


@pytest.fixture(scope="module")
def ingested(env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> str:
    """``docqa ingest`` of a folder with --include, --exclude, a hidden file and
    --metadata: only the policy is uploaded. Its document id."""
    folder = tmp_path_factory.mktemp("cli-docs")
    (folder / "policy.txt").write_text(FACT)
    (folder / "draft-policy.txt").write_text("Draft: the cafeteria might open at noon.\n")
    (folder / ".notes.txt").write_text("Hidden note: the cafeteria opens at midnight.\n")
    (folder / "diagram.md").write_text("# Diagram\n\nNot a text file by --include.\n")
    (folder / ".cache").mkdir()
    (folder / ".cache" / "old.txt").write_text("A cached copy of something else.\n")
    done = docqa(env, "ingest", str(folder), "--include", "*.txt", "--exclude", "draft-*",
                 "--metadata", "team=facilities", "--metadata", "year:=2031")
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.rstrip().endswith("1 ready, 0 failed"), done.stdout
    assert f"{folder / 'policy.txt'}: ready" in done.stdout
    assert done.stderr == ""
    listing = as_json(docqa(env, "documents", "list", "--all", "--json"))
    assert [d["filename"] for d in listing["items"]] == ["policy.txt"]
    return str(listing["items"][0]["id"])


def test_version(stack: Stack) -> None:
    proc = docqa(stack.env, "--version")
    assert proc.returncode == 0 and proc.stdout.startswith("docqa ") and proc.stderr == ""


def test_ingest_metadata_reaches_the_document(env: dict[str, str], ingested: str) -> None:
    doc = as_json(docqa(env, "documents", "get", ingested, "--json"))
    assert doc["status"] == "ready" and doc["filename"] == "policy.txt"
    assert doc["metadata"] == {"team": "facilities", "year": 2031}
    text = docqa(env, "documents", "get", ingested)
    assert text.returncode == 0 and "status:       ready" in text.stdout


def test_ingest_counts_and_names_rejected_files(env: dict[str, str], tmp_path: Path) -> None:
    (tmp_path / "memo.txt").write_text("Memo: the west wing printer is on the second floor.\n")
    (tmp_path / "empty.txt").write_bytes(b"")
    (tmp_path / "setup.exe").write_bytes(b"MZ\x90\x00\x03" + b"\x00" * 64)
    done = docqa(env, "ingest", str(tmp_path))
    assert done.returncode == 1, done.stdout + done.stderr
    assert done.stdout.rstrip().endswith("1 ready, 0 failed, 2 rejected"), done.stdout
    rejected = sorted(done.stderr.splitlines())
    assert len(rejected) == 2, done.stderr
    assert rejected[0].startswith(f"{tmp_path / 'empty.txt'}: rejected: HTTP 400")
    assert rejected[1].startswith(f"{tmp_path / 'setup.exe'}: rejected: HTTP 415")
    assert "Traceback" not in done.stderr


def test_ingest_where_every_file_is_rejected_fails(env: dict[str, str], tmp_path: Path) -> None:
    (tmp_path / "a.exe").write_bytes(b"MZ\x90\x00\x03" + b"\x00" * 64)
    done = docqa(env, "ingest", str(tmp_path / "a.exe"))
    assert done.returncode == 1
    assert done.stdout.rstrip().endswith("0 ready, 0 failed, 1 rejected"), done.stdout


def test_ask_text_json_and_stream(env: dict[str, str], ingested: str) -> None:
    text = docqa(env, "ask", QUESTION)
    assert text.returncode == 0, text.stderr
    assert "7:45" in text.stdout and "[1] policy.txt p." in text.stdout
    body = as_json(docqa(env, "ask", QUESTION, "--json", "--top-k", "3",
                         "--filter", "team=facilities", "--filter", "year:=2031"))
    assert body["status"] == "answered" and "7:45" in body["answer"]
    assert body["citations"][0]["document_id"] == ingested
    streamed = docqa(env, "ask", QUESTION, "--stream")
    assert streamed.returncode == 0, streamed.stderr
    assert "7:45" in streamed.stdout.splitlines()[0]
    assert "[1] policy.txt p." in streamed.stdout
    events = [json.loads(x) for x in docqa(env, "ask", QUESTION, "--stream", "--json")
              .stdout.splitlines()]
    assert events[-1]["event"] == "final" and events[-1]["data"]["status"] == "answered"


def test_ask_filters_that_match_nothing_find_nothing(env: dict[str, str], ingested: str) -> None:
    for condition in ("filename=*.pdf", "team=legal", "year=2031"):  # "2031" is no 2031
        proc = docqa(env, "ask", QUESTION, "--filter", condition)
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.strip() == "Not found in your documents.", condition


def test_search_json_and_text(env: dict[str, str], ingested: str) -> None:
    found = as_json(docqa(env, "search", "cafeteria opening hours", "--json", "--top-k", "5",
                          "--filter", f"id={ingested}"))
    assert found["results"] and found["results"][0]["document_id"] == ingested
    keyword = docqa(env, "search", "Zanzibar cafeteria", "--mode", "keyword")
    assert keyword.returncode == 0 and "policy.txt p." in keyword.stdout
    assert f"({ingested})" in keyword.stdout


def test_documents_list_get_delete_and_not_found(env: dict[str, str], tmp_path: Path) -> None:
    (tmp_path / "temp.txt").write_text("Temporary: the parking garage closes at 22:00.\n")
    assert docqa(env, "ingest", str(tmp_path / "temp.txt")).returncode == 0
    total = as_json(docqa(env, "documents", "list", "--json", "--limit", "1"))["total"]
    assert total >= 2
    page = as_json(docqa(env, "documents", "list", "--json", "--limit", "1",
                         "--offset", str(total - 1)))  # oldest first: the last is the newest
    assert page["limit"] == 1 and page["offset"] == total - 1 and len(page["items"]) == 1
    assert page["items"][0]["filename"] == "temp.txt"
    doc_id = page["items"][0]["id"]
    table = docqa(env, "documents", "list", "--status", "ready")
    assert table.returncode == 0 and doc_id in table.stdout
    assert table.stderr.endswith(" documents (ready)\n")
    assert as_json(docqa(env, "documents", "get", doc_id, "--json"))["id"] == doc_id
    assert as_json(docqa(env, "documents", "delete", doc_id, "--json")) == {
        "deleted": [doc_id], "not_found": []}

    gone = docqa(env, "documents", "get", doc_id)
    assert gone.returncode == 1 and gone.stdout == ""
    assert "not found (HTTP 404" in one_error_line(gone)
    again = docqa(env, "documents", "delete", doc_id)
    assert again.returncode == 1 and one_error_line(again) == f"{doc_id}: not found"


def test_a_wrong_key_exits_2_in_one_line(env: dict[str, str], tmp_path: Path) -> None:
    wrong = {**env, "DOCQA_API_KEY": "dq_not-a-key-of-anyone"}
    (tmp_path / "x.txt").write_text("Anything.\n")
    for args in (["ask", QUESTION], ["ask", QUESTION, "--stream"], ["search", "x", "--json"],
                 ["documents", "list"], ["ingest", str(tmp_path)]):
        proc = docqa(wrong, *args)
        assert proc.returncode == 2, (args, proc.stderr)
        assert one_error_line(proc).startswith("Error: the API refused the key (HTTP 401")


def test_an_unreachable_service_exits_3_naming_its_url(env: dict[str, str],
                                                       tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    nowhere = {**env, "DOCQA_URL": url}
    (tmp_path / "x.txt").write_text("Anything.\n")
    for args in (["ask", QUESTION], ["search", "x"], ["documents", "get", "abc"],
                 ["ingest", str(tmp_path)]):
        proc = docqa(nowhere, *args)
        assert proc.returncode == 3, (args, proc.stderr)
        assert one_error_line(proc).startswith(f"Error: cannot reach the docqa API at {url}")


def test_usage_errors_exit_2(env: dict[str, str]) -> None:
    assert docqa(env, "ask", QUESTION, "--top-k", "0").returncode == 2
    assert docqa(env, "documents", "list", "--status", "lost").returncode == 2
    no_key = docqa({**env, "DOCQA_API_KEY": "", "DOCQA_API_KEYS": ""}, "documents", "list")
    assert no_key.returncode == 2 and "no API key" in one_error_line(no_key)
