"""Audit log: hash chain, tamper detection, concurrent appends, fail-closed wiring."""

from __future__ import annotations

import json
import multiprocessing
import os
import stat
from pathlib import Path
from typing import Any

import pytest

from core.audit import (
    GENESIS,
    AuditLog,
    AuditUnavailableError,
    RequestAudit,
    canonical,
    entry_hash,
    head_path,
    request_id,
    verify,
)
from tests.unit.conftest import file_lines as _lines
from tests.unit.conftest import fill_audit as _fill
from tests.unit.conftest import write_lines as _write


def test_entries_chain_and_verify(tmp_path: Path) -> None:
    path = tmp_path / "audit.log"
    _fill(path, 3)
    entries = [json.loads(line) for line in _lines(path)]
    assert [e["seq"] for e in entries] == [1, 2, 3]
    assert entries[0]["prev"] == GENESIS
    assert entries[1]["prev"] == entries[0]["hash"] and entries[2]["prev"] == entries[1]["hash"]
    assert all(entry_hash(e) == e["hash"] for e in entries)
    assert entries[0]["ts"].endswith("Z") and entries[0]["key_id"] == "k_test"
    assert _lines(path)[0] == canonical(entries[0]) + b"\n"
    result = verify(path)
    assert result.ok and result.lines == 3 and result.last_hash == entries[2]["hash"]
    assert "OK" in result.message(path)


def test_files_are_private(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "audit.log"
    _fill(path, 1)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(head_path(path).stat().st_mode) == 0o600
    path.chmod(0o644)
    _fill(path, 1)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_reserved_fields_cannot_be_overridden(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        AuditLog(tmp_path / "a.log").append("ask", prev=GENESIS)


def _edit_value(lines: list[bytes], i: int) -> None:
    e = json.loads(lines[i])
    e["tenant"] = "globex"
    lines[i] = canonical(e) + b"\n"


def _edit_and_rehash(lines: list[bytes], i: int) -> None:
    e = json.loads(lines[i])
    e["results"] = 99
    e["hash"] = entry_hash(e)
    lines[i] = canonical(e) + b"\n"


def _insert_forged(lines: list[bytes], i: int) -> None:
    before = json.loads(lines[i - 1])
    forged = {"event": "delete", "seq": before["seq"] + 1, "prev": before["hash"],
              "tenant": "acme", "key_id": "k_x", "request_id": "x", "ts": before["ts"]}
    forged["hash"] = entry_hash(forged)
    lines.insert(i, canonical(forged) + b"\n")


def _whitespace(lines: list[bytes], i: int) -> None:
    lines[i] = json.dumps(json.loads(lines[i]), sort_keys=True).encode() + b"\n"


@pytest.mark.parametrize(
    ("tamper", "bad_line", "words"),
    [
        (_edit_value, 3, "hash"),
        (_edit_and_rehash, 4, "prev"),  # the edited line is self-consistent; its successor isn't
        (lambda ls, i: ls.pop(i), 3, "seq"),  # deleted
        (lambda ls, i: ls.pop(0), 1, "seq"),  # first line deleted
        (lambda ls, i: ls.insert(i + 1, ls.pop(i)), 3, "seq"),  # reordered
        (_insert_forged, 4, "seq"),  # inserted (a well-formed entry chained to line 3)
        (_whitespace, 3, "canonical"),
        (lambda ls, i: ls.__setitem__(i, b"not json\n"), 3, "JSON"),
    ],
    ids=["edited", "edited-rehashed", "deleted", "first-deleted", "reordered", "inserted",
         "reformatted", "garbage"],
)
def test_tampering_is_detected_at_the_first_bad_line(
    tmp_path: Path, tamper: Any, bad_line: int, words: str
) -> None:
    path = tmp_path / "audit.log"
    _fill(path, 6)
    lines = _lines(path)
    tamper(lines, 2)  # the third line (1-based line 3)
    _write(path, lines)
    result = verify(path)
    assert not result.ok
    assert result.bad_line == bad_line, result
    assert words in result.reason, result
    assert "TAMPERED" in result.message(path) and f"line {bad_line}" in result.message(path)


def test_truncated_tail_is_detected(tmp_path: Path) -> None:
    path = tmp_path / "audit.log"
    _fill(path, 4)
    lines = _lines(path)
    _write(path, lines[:-1])  # the last whole line cut off: the chain alone still holds
    result = verify(path)
    assert not result.ok and "truncated" in result.reason and result.bad_line == 4
    _write(path, lines[:-1] + [lines[-1][:20]])  # cut in the middle of the last line
    result = verify(path)
    assert not result.ok and result.bad_line == 4 and "incomplete" in result.reason
    path.unlink()
    assert not verify(path).ok  # log gone, head left


def test_without_head_file_a_valid_prefix_verifies(tmp_path: Path) -> None:
    """The head file is what catches cut-off lines; documents the limit without it."""
    path = tmp_path / "audit.log"
    _fill(path, 3)
    head_path(path).unlink()
    assert verify(path).ok
    assert not verify(tmp_path / "missing.log").ok


def test_head_lagging_after_a_crash_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "audit.log"
    _fill(path, 3)
    first = json.loads(_lines(path)[0])
    head_path(path).write_text(f"{1:020d} {first['hash']}\n")
    assert verify(path).ok
    head_path(path).write_text(f"{1:020d} {'f' * 64}\n")
    result = verify(path)
    assert not result.ok and "head" in result.reason


def test_second_writer_sees_the_first_writers_lines(tmp_path: Path) -> None:
    path = tmp_path / "audit.log"
    a, b = AuditLog(path), AuditLog(path)
    a.append("upload")
    b.append("delete")
    a.append("search")  # a's cached tail is stale: it must re-read under the lock
    b.append("ask")
    assert [json.loads(x)["seq"] for x in _lines(path)] == [1, 2, 3, 4]
    assert verify(path).ok


def test_long_lines_are_re_read_correctly(tmp_path: Path) -> None:
    path = tmp_path / "audit.log"
    a, b = AuditLog(path), AuditLog(path)
    a.append("search", chunk_ids=[f"{'d' * 32}:{i}:{'c' * 16}" for i in range(200)])
    b.append("search", chunk_ids=["x"] * 5000)  # b reads a's ~11 kB line backwards
    a.append("ask")  # and a reads b's ~20 kB one
    assert len(_lines(path)[1]) > 16384 and verify(path).ok


def test_incomplete_or_unreadable_tail_fails_closed(tmp_path: Path) -> None:
    path = tmp_path / "audit.log"
    log = _fill(path, 2)
    with path.open("ab") as fh:
        fh.write(b'{"event":"se')
    with pytest.raises(AuditUnavailableError, match="incomplete"):
        log.append("search")
    _write(path, _lines(path)[:1] + [b"garbage\n"])
    with pytest.raises(AuditUnavailableError, match="unreadable"):
        AuditLog(path).append("search")


def test_unwritable_location_fails_at_start(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(AuditUnavailableError):
        AuditLog(blocker / "audit.log")


def test_text_is_recorded_only_when_asked(tmp_path: Path) -> None:
    assert AuditLog(tmp_path / "a.log").text_field("query", "secret plan") == {"query_chars": 11}
    assert AuditLog(tmp_path / "b.log", include_text=True).text_field("query", "q") == {"query": "q"}


def test_request_audit_fails_closed_and_records_failures(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from core.errors import NotFoundError

    path = tmp_path / "audit.log"
    ra = RequestAudit(AuditLog(path), "acme", "static-1", "req-1")
    ra.failed("delete", NotFoundError("no such document"), document_ids=["x"])
    entry = json.loads(_lines(path)[0])
    assert entry["status"] == "error" and entry["http_status"] == 404
    assert entry["request_id"] == "req-1" and entry["key_id"] == "static-1"
    with path.open("ab") as fh:
        fh.write(b"{")
    with pytest.raises(AuditUnavailableError) as err:
        ra.record("search", status="ok")
    assert err.value.status_code == 503
    assert "audit entry not written" in caplog.text
    ra.failed("delete", NotFoundError("x"))  # never raises: the original error wins
    assert RequestAudit(None, "acme", "k", "r").text("query", "q") == {}
    RequestAudit(None, "acme", "k", "r").record("search")  # disabled: no-op


def test_request_id_takes_a_sane_header_or_makes_one() -> None:
    assert request_id("abc-123") == "abc-123"
    made = request_id('x"\n{evil}')
    assert made != 'x"\n{evil}' and len(made) == 32
    assert request_id(None) != request_id(None)


def _append_many(path: str, worker: int, n: int, barrier: Any = None) -> None:
    log = AuditLog(Path(path))
    for i in range(n):
        if barrier is not None and i % 25 == 0:
            barrier.wait(60)  # every 25 entries all writers line up: their runs overlap
        log.append("search", tenant=f"t{worker}", key_id=f"k_{worker}", request_id=f"{worker}-{i}")


def test_concurrent_appends_from_several_processes_keep_one_chain(tmp_path: Path) -> None:
    path = tmp_path / "audit.log"
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(4)
    procs = [ctx.Process(target=_append_many, args=(str(path), w, 150, barrier))
             for w in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
        assert p.exitcode == 0
    result = verify(path)
    assert result.ok and result.lines == 600, result
    entries = [json.loads(x) for x in _lines(path)]
    assert {e["request_id"] for e in entries} == {f"{w}-{i}" for w in range(4) for i in range(150)}
    writers = [e["tenant"] for e in entries]
    assert sum(a != b for a, b in zip(writers, writers[1:])) > 3  # they really interleaved


# ---------------------------------------------------------------- settings


def test_audit_can_be_disabled_and_relocated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from core.audit import open_audit
    from core.settings import Settings

    monkeypatch.setenv("DOCQA_AUDIT__PATH", str(tmp_path / "elsewhere.log"))
    monkeypatch.setenv("DOCQA_AUDIT__INCLUDE_TEXT", "true")
    s = Settings(data_dir=tmp_path)
    log = open_audit(s)
    assert log is not None and log.path == tmp_path / "elsewhere.log" and log.include_text
    assert Settings(data_dir=tmp_path).audit_path == tmp_path / "elsewhere.log"
    monkeypatch.delenv("DOCQA_AUDIT__PATH")
    assert Settings(data_dir=tmp_path).audit_path == tmp_path / "audit.log"
    monkeypatch.setenv("DOCQA_AUDIT__ENABLED", "false")
    assert open_audit(Settings()) is None
    assert os.environ["DOCQA_AUDIT__ENABLED"] == "false"


