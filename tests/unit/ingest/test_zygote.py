"""The parse zygote (ingest/zygote.py), with the real processes: one child forked per
document, each gone after its parse; a parser that crashes, hangs or eats memory fails its
document only; a zygote killed between or during parses is replaced; without a usable
zygote the parse falls back to a new interpreter; nothing a child forked outlives it."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from core.domain import DocumentKind, Page
from core.errors import ParseError, TransientError
from core.settings import LimitSettings
from ingest import zygote
from ingest.sandbox import SandboxPool, parse_isolated

HERE = "tests.unit.ingest.test_zygote"
TEXT = DocumentKind.TEXT


# ---------------------------------------------------------------- targets (in the child)


def who(path: Path, kind: Any, limits: Any) -> list[Page]:
    """The child's pid, its parent's pid, then the document."""
    return [Page(number=1, text=f"{os.getpid()} {os.getppid()} {path.read_text()}", offset=0)]


def leave_descendants(path: Path, kind: Any, limits: Any) -> list[Page]:
    """Fork a sleeper, which tries to leave the child's process group and forks a sleeper
    of its own; answer with their pids and whether the sleeper got away."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.setsid()
            left = "left"
        except OSError:
            left = "stayed"
        grandchild = os.fork()
        if grandchild == 0:
            time.sleep(600)
            os._exit(0)
        os.write(write, f"{grandchild} {left}".encode())
        time.sleep(600)
        os._exit(0)
    answer = os.read(read, 100).decode()
    return [Page(number=1, text=f"{pid} {answer}", offset=0)]


def report_then_sleep(path: Path, kind: Any, limits: Any, on_page: Any = None) -> list[Page]:
    on_page(0, 1)  # the worker's callback kills the zygote
    time.sleep(600)
    return []


# ---------------------------------------------------------------- helpers


@pytest.fixture
def pool() -> Iterator[SandboxPool]:
    zygote.stop()  # a zygote of this test's own
    pool = SandboxPool(depth=0, zygote=True)
    yield pool
    pool.close()
    zygote.stop()


@pytest.fixture
def spared() -> Iterator[tuple[SandboxPool, int, zygote.Zygote]]:
    """A pool whose spare child the zygote forked ahead: the pool, the spare's pid, the
    zygote."""
    zygote.stop()
    pool = SandboxPool(depth=1, zygote=True)
    try:
        pool.refill(f"{HERE}:who", TEXT)
        spare = pool.spare_pid
        z = zygote.current()
        assert spare is not None and z is not None
        yield pool, spare, z
    finally:
        pool.close()
        zygote.stop()


def _doc(tmp_path: Path, text: str = "words") -> Path:
    path = tmp_path / f"doc-{time.monotonic_ns()}.txt"
    path.write_text(text)
    return path


def _who(tmp_path: Path, pool: SandboxPool, text: str = "words") -> tuple[int, int, str]:
    pages = parse_isolated(_doc(tmp_path, text), TEXT, LimitSettings(), target=f"{HERE}:who",
                           pool=pool)
    pid, parent, rest = pages[0].text.split(" ", 2)
    return int(pid), int(parent), rest


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def _limits(**changes: Any) -> LimitSettings:
    return LimitSettings().model_copy(update=changes)


# ---------------------------------------------------------------- the tests


def test_each_document_gets_a_child_forked_by_one_zygote(tmp_path: Path,
                                                         pool: SandboxPool) -> None:
    seen = []
    for n in range(3):
        pid, parent, text = _who(tmp_path, pool, f"document {n}")
        assert text == f"document {n}"
        z = zygote.current()
        assert z is not None and parent == z.pid != os.getpid()
        seen.append((pid, parent))
    assert len({pid for pid, _ in seen}) == 3  # a process per document
    assert len({parent for _, parent in seen}) == 1  # from the same zygote
    assert all(_gone(pid) for pid, _ in seen)


def test_real_readers_parse_in_forked_children(tmp_path: Path, pool: SandboxPool) -> None:
    from ingest.readers import read_document
    from tests.factories import make_docx, make_pdf

    for name, data, kind in [("a.pdf", make_pdf(["One.", "Two."]), DocumentKind.PDF),
                             ("a.docx", make_docx(["Hello."]), DocumentKind.DOCX),
                             ("a.md", b"# T\n\n- item\n", DocumentKind.MARKDOWN)]:
        path = tmp_path / name
        path.write_bytes(data)
        seen: list[tuple[int, int]] = []
        assert parse_isolated(path, kind, LimitSettings(), pool=pool,
                              on_progress=lambda d, t, seen=seen: seen.append((d, t))
                              ) == read_document(path, kind)
        assert seen and seen[-1][0] == seen[-1][1]  # progress crossed on fd 3
    assert zygote.current() is not None


def test_spares_are_forked_ahead_by_the_zygote(
        tmp_path: Path, spared: tuple[SandboxPool, int, zygote.Zygote]) -> None:
    pool, spare, z = spared
    pid, parent, _ = _who(tmp_path, pool)
    assert (pid, parent) == (spare, z.pid)
    assert pool.spare_pid not in (None, spare)


@pytest.mark.parametrize(("target", "limits", "reason"), [
    ("tests.hostile:crash", {}, r"crashed.*SIGSEGV"),
    ("tests.hostile:sleep", {"parse_timeout_s": 1.5}, r"exceeded the 1.5 s time limit"),
    ("tests.hostile:hang", {"parse_timeout_s": 1.5}, r"exceeded the 1.5 s time limit"),
    ("tests.hostile:allocate", {"parse_memory_bytes": 256 * 1024 * 1024,
                                "parse_timeout_s": 30}, r"exceeded the 256 MiB memory limit"),
])
def test_a_misbehaving_parser_costs_its_child_only(
    tmp_path: Path, pool: SandboxPool, target: str, limits: dict[str, Any], reason: str
) -> None:
    _who(tmp_path, pool)
    z = zygote.current()
    assert z is not None
    with pytest.raises(ParseError, match=reason):
        parse_isolated(_doc(tmp_path), TEXT, _limits(**limits), target=target, pool=pool)
    pid, parent, text = _who(tmp_path, pool, "after")
    assert text == "after" and parent == z.pid and zygote.current() is z
    assert not z.exits  # every child's end was taken by its parse


def test_real_memory_hungry_input_is_stopped_in_a_forked_child(tmp_path: Path,
                                                               pool: SandboxPool) -> None:
    line = "words and more words \U0001F600\t\t  x\r\n".encode()
    path = tmp_path / "big.txt"
    path.write_bytes(line * 700_000)
    with pytest.raises(ParseError, match="parsing exceeded the 160 MiB memory limit"):
        parse_isolated(path, TEXT, _limits(parse_memory_bytes=160 * 1024 * 1024,
                                           parse_timeout_s=60, max_text_chars=10**9),
                       pool=pool)


def test_a_killed_zygote_is_replaced_at_the_next_parse(tmp_path: Path,
                                                       pool: SandboxPool) -> None:
    _, first, _ = _who(tmp_path, pool)
    os.kill(first, signal.SIGKILL)
    pid, parent, text = _who(tmp_path, pool, "still parsed")
    assert text == "still parsed" and parent != first
    z = zygote.current()
    assert z is not None and z.pid == parent
    assert _gone(first)  # reaped, not a zombie


def test_a_zygote_killed_during_a_parse_fails_it_as_transient(tmp_path: Path,
                                                              pool: SandboxPool) -> None:
    _, first, _ = _who(tmp_path, pool)
    with pytest.raises(TransientError, match="zygote ended"):
        parse_isolated(_doc(tmp_path), TEXT, LimitSettings(),
                       target=f"{HERE}:report_then_sleep", pool=pool,
                       on_progress=lambda d, t: os.kill(first, signal.SIGKILL))
    _, parent, text = _who(tmp_path, pool, "next")
    assert text == "next" and parent != first


def test_a_spare_of_a_dead_zygote_is_not_used(
        tmp_path: Path, spared: tuple[SandboxPool, int, zygote.Zygote]) -> None:
    pool, spare, z = spared
    os.kill(z.pid, signal.SIGKILL)
    z.proc.wait()  # dead before the next parse looks at its spare
    pid, parent, _ = _who(tmp_path, pool)
    assert pid != spare and parent != z.pid


def test_without_a_usable_zygote_a_new_interpreter_parses(
    tmp_path: Path, pool: SandboxPool, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a zygote that cannot start (the project is installed in the venv, so a folder without
    # it would not do: the module is found wherever the zygote is started)
    monkeypatch.setattr(zygote, "_MODULE", "ingest.no_such_zygote")
    monkeypatch.setattr(zygote, "_failed_at", -zygote.RETRY_AFTER_S)
    pid, parent, text = _who(tmp_path, pool, "fallback")
    assert text == "fallback" and parent == os.getpid()  # a child of this process
    assert zygote.current() is None


def test_nothing_a_child_forked_outlives_it(tmp_path: Path, pool: SandboxPool) -> None:
    pages = parse_isolated(_doc(tmp_path), TEXT, LimitSettings(),
                           target=f"{HERE}:leave_descendants", pool=pool)
    sleeper, its_child, left = pages[0].text.split()
    assert left == "stayed"  # setsid is refused: everything stays in the child's group
    # the zygote killed and reaped them (as its subreaper) before it reported the end
    assert _gone(int(sleeper)) and _gone(int(its_child))


def test_a_forked_child_holds_only_its_pipes(tmp_path: Path, pool: SandboxPool) -> None:
    import json

    from tests.unit.ingest.test_isolation import HERE as PROBES

    path = tmp_path / "p.txt"
    path.write_text("[]")
    pages = parse_isolated(path, TEXT, LimitSettings(), target=f"{PROBES}:probe_read",
                           pool=pool)
    held = {k: v for k, v in json.loads(pages[0].text).items() if k.startswith("fd ")}
    assert set(held) <= {"fd 0", "fd 1", "fd 2", "fd 3", "fd 4", "fd 5"}, held
    assert not any(str(v).startswith("socket:") for v in held.values()), held
