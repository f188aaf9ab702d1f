"""The parse sandbox (ingest/sandbox.py): pages as in-process parsing gives them, refusals,
time and memory limits on hostile or misbehaving parsers, progress reported through a pipe,
and decryption in memory."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from core.domain import DocumentKind, LineKind, LineMark, Page
from core.errors import ParseError
from core.keystore import SqliteKeyStore
from core.settings import LimitSettings
from core.vault import Vault
from ingest import sandbox
from ingest.readers import read_document
from ingest.sandbox import marks_from_json, parse_isolated, parse_progress_line
from tests import hostile as h
from tests.factories import make_docx, make_pdf

CANARY = b"CANARY-7f3e9a-secret-payload"


def _vault(tmp_path: Path) -> Vault:
    return Vault(b"k" * 32, SqliteKeyStore(tmp_path / "registry.sqlite3"))


DOCX, PDF = DocumentKind.DOCX, DocumentKind.PDF


def _limits(**changes: Any) -> LimitSettings:
    return LimitSettings().model_copy(update=changes)


def _write(tmp_path: Path, name: str, data: bytes) -> Path:
    p = tmp_path / name
    p.write_bytes(data)
    return p


class Children:
    """The parse children ``parse_isolated`` starts (their pids), to check they are gone."""

    def __init__(self) -> None:
        self.pids: list[int] = []

    def all_gone(self) -> bool:
        for pid in self.pids:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                continue
            return False
        return bool(self.pids)


@pytest.fixture
def children(monkeypatch: pytest.MonkeyPatch) -> Children:
    import subprocess

    from ingest import sandbox

    seen = Children()

    class Recording(subprocess.Popen):  # type: ignore[type-arg]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            seen.pids.append(self.pid)

    monkeypatch.setattr(sandbox.subprocess, "Popen", Recording)
    return seen


# ---------------------------------------------------------------- pages and refusals


def test_isolated_parse_gives_the_same_pages(tmp_path: Path) -> None:
    for name, data, kind in [("a.pdf", make_pdf(["One.", "Two."]), PDF),
                             ("a.docx", make_docx(["Hello.", "World."]), DOCX),
                             ("a.txt", "Grüße, naïve café — ok\n".encode(), DocumentKind.TEXT)]:
        path = _write(tmp_path, name, data)
        assert parse_isolated(path, kind, LimitSettings()) == read_document(path, kind)


def test_the_structure_a_reader_saw_crosses_the_sandbox(tmp_path: Path) -> None:
    md = b"# Fees\n\nThe fee is:\n- Basic: EUR 12\n\n| Plan | Fee |\n|---|---|\n| Pro | 30 |\n"
    path = _write(tmp_path, "a.md", md)
    pages = parse_isolated(path, DocumentKind.MARKDOWN, LimitSettings())
    assert pages == read_document(path, DocumentKind.MARKDOWN)
    assert [m.kind for m in pages[0].marks] == [LineKind.HEADING, LineKind.ITEM, LineKind.ROW]
    assert pages[0].marks[-1].header == "Plan | Fee"


def test_marks_from_the_child_are_checked() -> None:
    good = [0, "item", 1, 2, ""]
    assert marks_from_json([good]) == (LineMark(0, LineKind.ITEM, 1, 2, ""),)
    for bad in ([-1, "item", 0, 0, ""], [0, "poem", 0, 0, ""], [0, "row", 0, 0, 5], [0, "row"],
                "x", None, [0.5, "row", 0, 0, ""]):
        assert marks_from_json([bad, good]) == (LineMark(0, LineKind.ITEM, 1, 2, ""),)
    assert marks_from_json("not a list") == ()


def test_isolated_parse_reports_refusals_and_accepts_relative_paths(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _write(tmp_path, "enc.pdf", h.encrypted_pdf())
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ParseError, match="encrypted"):
        parse_isolated(Path("enc.pdf"), PDF, LimitSettings())


# ---------------------------------------------------------------- hostile or misbehaving parsers


@pytest.mark.parametrize("target", ["tests.hostile:hang", "tests.hostile:sleep"])
def test_a_parser_that_never_returns_is_stopped_at_the_time_limit(
    tmp_path: Path, target: str, children: Children
) -> None:
    path = _write(tmp_path, "x.txt", b"text")
    with pytest.raises(ParseError, match=r"parsing exceeded the 1.5 s time limit"):
        parse_isolated(path, DocumentKind.TEXT, _limits(parse_timeout_s=1.5), target=target)
    assert children.all_gone()


def test_a_parser_that_allocates_without_end_is_stopped_at_the_memory_limit(
    tmp_path: Path, children: Children
) -> None:
    path = _write(tmp_path, "x.txt", b"text")
    with pytest.raises(ParseError, match=r"parsing exceeded the 256 MiB memory limit"):
        parse_isolated(path, DocumentKind.TEXT,
                       _limits(parse_memory_bytes=256 * 1024 * 1024, parse_timeout_s=30),
                       target="tests.hostile:allocate")
    assert children.all_gone()


def test_a_parser_that_crashes_fails_the_document_and_the_next_parse_works(
    tmp_path: Path,
) -> None:
    path = _write(tmp_path, "x.txt", b"Plain words after a crash.")
    with pytest.raises(ParseError, match="crashed.*SIGSEGV"):
        parse_isolated(path, DocumentKind.TEXT, LimitSettings(), target="tests.hostile:crash")
    pages = parse_isolated(path, DocumentKind.TEXT, LimitSettings())
    assert pages[0].text == "Plain words after a crash."


def test_memory_hungry_real_input_is_stopped_by_the_memory_limit(tmp_path: Path) -> None:
    """No fake parser: 22 MB of text with an emoji per line is 4 bytes per character in
    memory, and normalising it makes copies (it needs about 500 MB)."""
    line = "words and more words \U0001F600\t\t  x\r\n".encode()
    path = _write(tmp_path, "big.txt", line * 700_000)
    with pytest.raises(ParseError, match="parsing exceeded the 160 MiB memory limit"):
        parse_isolated(path, DocumentKind.TEXT, _limits(
            parse_memory_bytes=160 * 1024 * 1024, parse_timeout_s=60, max_text_chars=10**9))


def test_real_slow_pdf_is_stopped_by_the_time_limit(tmp_path: Path) -> None:
    path = _write(tmp_path, "slow.pdf", h.pdf_slow(4))  # ~8 s of pypdf work in 20 KB
    with pytest.raises(ParseError, match=r"parsing exceeded the 1.5 s time limit"):
        parse_isolated(path, PDF, _limits(parse_timeout_s=1.5))


def test_real_xml_heavy_docx_is_stopped_by_the_memory_limit(tmp_path: Path) -> None:
    path = _write(tmp_path, "fat.docx", h.docx_xml_heavy(600_000))  # 1.3 MB, 27 MB of XML
    with pytest.raises(ParseError, match=r"parsing exceeded the 200 MiB memory limit"):
        parse_isolated(path, DOCX, _limits(parse_memory_bytes=200 * 1024 * 1024))


# ---------------------------------------------------------------- the progress pipe


def plain_reader(path: Path, kind: DocumentKind, limits: Any) -> list[Any]:
    """A sandbox target without ``on_page`` (like the misbehaving ones in tests/hostile.py)."""
    return read_document(path, kind, limits)


@pytest.mark.parametrize(("line", "pair"), [
    (b"3 12", (3, 12)), (b"0 0", (0, 0)), (b" 12 12 ", (12, 12)),
    (b"13 12", None), (b"-1 12", None), (b"3", None), (b"3 12 1", None), (b"a b", None),
    (b"1 999999999", None), (b"", None), (b"\xff\xfe 1", None),
])
def test_progress_lines_from_the_child_are_checked(
    line: bytes, pair: tuple[int, int] | None
) -> None:
    assert parse_progress_line(line) == pair


def test_a_pdf_parse_reports_its_pages_to_the_parent(tmp_path: Path) -> None:
    texts = [f"Page {i} says something about topic {i}." for i in range(1, 8)]
    path = _write(tmp_path, "seven.pdf", make_pdf(texts))
    seen: list[tuple[int, int]] = []
    pages = parse_isolated(path, DocumentKind.PDF, LimitSettings(),
                           on_progress=lambda done, total: seen.append((done, total)))
    assert pages == read_document(path, DocumentKind.PDF)
    assert seen, "no progress reached the parent"
    assert seen[-1] == (7, 7)
    assert {total for _, total in seen} == {7}
    assert [done for done, _ in seen] == sorted({done for done, _ in seen})  # rising, no repeats


def test_a_one_piece_format_reports_one_of_one(tmp_path: Path) -> None:
    path = _write(tmp_path, "a.txt", b"Just one page of words.")
    seen: list[tuple[int, int]] = []
    parse_isolated(path, DocumentKind.TEXT, LimitSettings(),
                   on_progress=lambda done, total: seen.append((done, total)))
    assert seen == [(1, 1)]


def test_a_target_without_on_page_still_parses(tmp_path: Path) -> None:
    path = _write(tmp_path, "a.txt", b"Words without progress.")
    seen: list[tuple[int, int]] = []
    pages = parse_isolated(path, DocumentKind.TEXT, LimitSettings(),
                           target="tests.unit.ingest.test_sandbox:plain_reader",
                           on_progress=lambda done, total: seen.append((done, total)))
    assert pages[0].text == "Words without progress." and seen == []


def test_the_time_limit_holds_while_progress_is_watched(
    tmp_path: Path, children: Children
) -> None:
    path = _write(tmp_path, "x.txt", b"text")
    with pytest.raises(ParseError, match=r"parsing exceeded the 1.5 s time limit"):
        parse_isolated(path, DocumentKind.TEXT,
                       LimitSettings().model_copy(update={"parse_timeout_s": 1.5}),
                       target="tests.hostile:sleep", on_progress=lambda done, total: None)
    assert children.all_gone()


def test_refusals_still_arrive_as_parse_errors_with_progress_on(tmp_path: Path) -> None:
    from tests import hostile as h

    path = _write(tmp_path, "enc.pdf", h.encrypted_pdf())
    with pytest.raises(ParseError, match="encrypted"):
        parse_isolated(path, DocumentKind.PDF, LimitSettings(), on_progress=lambda d, t: None)


def test_a_large_document_reaches_a_child_that_is_slow_to_read(tmp_path: Path) -> None:
    """The worker's first wait for the child times out (progress is polled every 0.25 s)
    while the pipe is full: the rest of the document must still be written. With
    ``communicate`` resuming after a timeout it was not, and the parse hit its time limit."""
    data = b"w" * (8 * 1024 * 1024 - 16) + b"the-last-16-byte"
    path = _write(tmp_path, "big.txt", data)
    pages = parse_isolated(path, DocumentKind.TEXT, _limits(parse_timeout_s=30),
                           target="tests.slow_start:size", on_progress=lambda d, t: None)
    assert pages[0].text == f"{len(data)} the-last-16-byte"


# ---------------------------------------------------------------- decryption in memory


def test_the_parse_sandbox_decrypts_in_memory_and_refuses_a_wrong_key(tmp_path: Path) -> None:
    from core.domain import DocumentKind
    from core.errors import ParseError
    from core.settings import LimitSettings
    from ingest.sandbox import parse_isolated

    vault = _vault(tmp_path)
    path = tmp_path / "doc"
    vault.write_bytes(path, b"Plain words about " + CANARY + b".\n")
    pages = parse_isolated(path, DocumentKind.TEXT, LimitSettings(), key=vault.key_for(path))
    assert CANARY.decode() in pages[0].text
    with pytest.raises(ParseError, match="could not be decrypted"):
        parse_isolated(path, DocumentKind.TEXT, LimitSettings(), key=bytes(32))


# ---------------------------------------------------------------- children started ahead


def own_pid_reader(path: Path, kind: Any, limits: Any) -> list[Page]:
    """A sandbox target that answers with the pid of the child that parsed."""
    return [Page(number=1, text=f"{os.getpid()} {path.read_text()}", offset=0)]


def test_a_pool_hands_each_document_to_a_child_started_ahead_and_never_reuses_one(
        tmp_path: Path) -> None:
    pool = sandbox.SandboxPool()
    target = "tests.unit.ingest.test_sandbox:own_pid_reader"
    try:
        pids = []
        for n in range(3):
            path = _write(tmp_path, f"d{n}.txt", f"document {n}".encode())
            spare = pool.spare_pid
            pid, text = parse_isolated(path, DocumentKind.TEXT, LimitSettings(), target=target,
                                       pool=pool)[0].text.split(" ", 1)
            assert text == f"document {n}"
            if n:  # the child started after the previous parse took this document
                assert int(pid) == spare
            pids.append(int(pid))
            assert pool.spare_pid is not None and pool.spare_pid not in pids
        assert len(set(pids)) == 3  # one child per document
        for pid in pids:
            with pytest.raises(ProcessLookupError):
                os.kill(pid, 0)
    finally:
        pool.close()


def test_a_pooled_child_keeps_the_limits_and_the_next_document_still_parses(
        tmp_path: Path) -> None:
    pool = sandbox.SandboxPool()
    path = _write(tmp_path, "a.txt", b"hello")
    try:
        pool.refill("tests.hostile:sleep", DocumentKind.TEXT)
        spare = pool.spare_pid
        with pytest.raises(ParseError, match="time limit"):
            parse_isolated(path, DocumentKind.TEXT, _limits(parse_timeout_s=1.5),
                           target="tests.hostile:sleep", pool=pool)
        with pytest.raises(ProcessLookupError):
            os.kill(spare, 0)  # type: ignore[arg-type]
        pool.refill("tests.hostile:crash", DocumentKind.TEXT)
        with pytest.raises(ParseError):
            parse_isolated(path, DocumentKind.TEXT, LimitSettings(),
                           target="tests.hostile:crash", pool=pool)
        # a spare for another target or kind is not used for this document: a fresh one is
        pages = parse_isolated(path, DocumentKind.TEXT, LimitSettings(), pool=pool)
        assert [p.text for p in pages] == ["hello"]
        pages = parse_isolated(_write(tmp_path, "b.md", b"# Title\n\nbody"),
                               DocumentKind.MARKDOWN, LimitSettings(), pool=pool)
        assert "body" in pages[0].text
    finally:
        spare = pool.spare_pid
        pool.close()
    assert spare is not None
    with pytest.raises(ProcessLookupError):
        os.kill(spare, 0)


def test_a_deeper_pool_keeps_several_children_started_ahead_each_used_once(
        tmp_path: Path) -> None:
    """A batching worker parses a job's documents in a row: several spares boot together."""
    pool = sandbox.SandboxPool(depth=3)
    target = "tests.unit.ingest.test_sandbox:own_pid_reader"
    try:
        pool.refill(target, DocumentKind.TEXT)
        with pool._lock:
            ahead = [c.proc.pid for c in pool._spares]
        assert len(ahead) == 3 and len(set(ahead)) == 3
        pids = [int(parse_isolated(_write(tmp_path, f"d{n}.txt", b"x"), DocumentKind.TEXT,
                                   LimitSettings(), target=target, pool=pool)[0].text.split()[0])
                for n in range(3)]
        assert pids == ahead  # each document went to the next child started ahead
        with pool._lock:
            assert len(pool._spares) == 3 and not set(c.proc.pid for c in pool._spares) & set(pids)
        # another kind: a fresh child, and the spares of the other kind go
        pages = parse_isolated(_write(tmp_path, "b.md", b"# T\n\nbody"), DocumentKind.MARKDOWN,
                               LimitSettings(), pool=pool)
        assert "body" in pages[0].text
        with pool._lock:
            assert {c.kind for c in pool._spares} == {DocumentKind.MARKDOWN}
    finally:
        pool.close()
    for pid in ahead:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
