"""Parse a document in a child process, isolated, under a wall-clock and a memory limit.

The worker calls ``parse_isolated``; it decrypts the stored file itself and starts
``python -m ingest.sandbox <target> <parent pid>`` (a plain subprocess, so it works from a
Celery prefork child, which as a daemonic process may not use ``multiprocessing``) with a
minimal environment and no file descriptor but its pipes. The child imports its parser, then
isolates itself (ingest/isolation.py: an empty network namespace, ``nobody`` when run as
root, Landlock, a seccomp filter against new sockets) before it reads a byte of the document:
it never sees the master key, a data key or a path into the data directory, only a JSON
header line and the plaintext on stdin, which it keeps in memory (a ``memfd``). It then
confines itself: ``RLIMIT_AS`` (memory), ``RLIMIT_CPU`` (a backstop to the parent's
wall-clock timeout), no core dumps, and it dies with its parent (``PR_SET_PDEATHSIG``). The
pages go back as JSON on stdout. With ``on_progress`` the child also writes ``"<done>
<total>\n"`` lines (pages parsed) on a third, non-blocking pipe; the parent wakes every
``PROGRESS_INTERVAL_S`` while it waits and passes on the latest pair when it changed (at
most ~4 calls a second). A parser that hangs, explodes, crashes or is taken over costs one
child; the document ends ``failed`` with the reason and the worker carries on.

Everything up to the isolation depends on the target only, not on the document, so a child
can be started ahead of time and handed its document later. With ``worker.parse_zygote`` the
child is not a new interpreter but a fork of the worker process's parse zygote
(ingest/zygote.py), which has imported the readers once; it then runs the same
``child_main`` with its pipes on fds 0-3, and the worker waits for it, limits it and reads
its end as for a new interpreter.
"""

from __future__ import annotations

import contextlib
import importlib
import inspect
import json
import logging
import os
import resource
import signal
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from core import crypto
from core.domain import DocumentKind, LineKind, LineMark, Page
from core.errors import ParseError, TransientError
from core.vault import memory_file
from ingest import zygote
from ingest.isolation import PR_SET_PDEATHSIG, isolate, minimal_env, prctl

log = logging.getLogger("docqa.ingest")

DEFAULT_TARGET = "ingest.readers:read_document"
MEMORY_EXIT = 3  # the child ran out of its address space
_IMPORT_ROOT = Path(__file__).resolve().parents[1]  # the folder holding ``ingest``
PROGRESS_INTERVAL_S = 0.25  # how often the waiting parent looks at the progress pipe
_MAX_PROGRESS = 10**7  # larger counts from the child are garbage, not progress
_MAX_HEADER = 1 << 16
ProgressCallback = Callable[[int, int], None]


def _limits_dict(limits: Any) -> dict[str, Any]:
    if hasattr(limits, "model_dump"):
        return dict(limits.model_dump())
    return dict(vars(limits))


def _kill(proc: Any) -> None:
    if not isinstance(proc, subprocess.Popen):  # forked by the zygote, which kills it
        proc.kill()
        return
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # the child leads its own session
    except ProcessLookupError:
        pass
    except PermissionError:  # pragma: no cover - not our group any more
        proc.kill()


def _memory_text(limits: Any) -> str:
    return f"{limits.parse_memory_bytes / (1024 * 1024):.0f} MiB"


class _Child:
    """A started parse child: its process, the write end of its stdin and the read end of
    its progress pipe. The child imports its parser and isolates itself at once, then waits
    for its one document on stdin."""

    def __init__(self, target: str, kind: DocumentKind | None) -> None:
        self.target, self.kind = target, kind
        self.owner = os.getpid()
        read_fd, write_fd = os.pipe()
        stdin_r, stdin_w = os.pipe()
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-E", "-s", "-m", "ingest.sandbox", target, str(os.getpid()),
                 *([kind.value] if kind is not None else [])],
                cwd=_IMPORT_ROOT, env=minimal_env(),
                stdin=stdin_r, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                start_new_session=True, close_fds=True, pass_fds=(write_fd,),
            )
        except OSError as exc:
            os.close(stdin_w)
            os.close(read_fd)
            raise TransientError(f"could not start the parser process: {exc}") from exc
        finally:
            os.close(stdin_r)  # the child holds its copies: EOF comes when it exits
            os.close(write_fd)
        self.stdin_w, self.progress_r, self.progress_w_in_child = stdin_w, read_fd, write_fd

    def alive(self) -> bool:
        return self.owner == os.getpid() and self.proc.poll() is None

    def discard(self) -> None:
        """Kill it and close our ends (a spare no longer wanted)."""
        if self.owner != os.getpid():  # a forked copy of another process's handle
            return
        _kill(self.proc)
        self.proc.wait()
        for fd in (self.stdin_w, self.progress_r):
            with contextlib.suppress(OSError):
                os.close(fd)
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()


class SandboxPool:
    """Parse children started ahead, one document each, and where they come from.

    With ``zygote`` each child is forked by this process's parse zygote (ingest/zygote.py:
    a few ms of CPU instead of a new interpreter's ~55 ms), and started as a new
    interpreter only when no zygote can be had. ``depth`` 0: no spares, a child per parse.

    A child costs a Python start and its parser's imports (about 45 ms of CPU for a text
    file) before it can read a byte; started after the previous parse, that happens while
    the worker embeds and stores, off the document's path. Each child still parses exactly
    one document and then exits: nothing a hostile file does in one child can see the next
    document. It is isolated before it is handed its document, with the same limits, and
    dies with the process that started it (``PR_SET_PDEATHSIG``, so started from the thread
    that parses: a Celery child's main thread).

    Up to ``depth`` spares are kept (one unless the worker takes several documents per job:
    workers/batching.py parses them one after another, and spares started together boot on
    both cores while the worker parses), for the kind and target last parsed (documents of a
    batch are mostly of one kind); a document of another kind gets a fresh child, as without
    a pool, and the spares of the other kind go.
    """

    def __init__(self, depth: int = 1, zygote: bool = False) -> None:
        self.depth = max(0, depth)
        self.zygote = zygote
        self._spares: list[Any] = []  # _Child or zygote.ForkedChild
        self._lock = threading.Lock()

    def new_child(self, target: str, kind: DocumentKind) -> Any:
        """A child for ``target``: forked by the zygote when asked and possible, else a new
        interpreter."""
        if self.zygote:
            forked = zygote.child(target, kind)
            if forked is not None:
                return forked
        return _Child(target, kind)

    def take(self, target: str, kind: DocumentKind) -> Any:
        with self._lock:
            spares, self._spares = self._spares, []
        chosen: Any = None
        keep: list[Any] = []
        for spare in spares:
            if spare.target == target and spare.kind is kind and spare.alive():
                if chosen is None:
                    chosen = spare
                else:
                    keep.append(spare)
            else:
                spare.discard()
        with self._lock:
            self._spares = keep + self._spares
        return chosen if chosen is not None else self.new_child(target, kind)

    def refill(self, target: str, kind: DocumentKind) -> None:
        """Start spares for the next documents, up to ``depth`` (best effort: a failure to
        start one only means the next parse starts its own child)."""
        while True:
            with self._lock:
                if len(self._spares) >= self.depth:
                    return
            try:
                child = self.new_child(target, kind)
            except TransientError as exc:
                log.warning("no spare parse child started: %s", exc.detail)
                return
            with self._lock:
                self._spares.append(child)

    def close(self) -> None:
        with self._lock:
            spares, self._spares = self._spares, []
        for spare in spares:
            spare.discard()

    @property
    def spare_pid(self) -> int | None:
        """The pid of the first waiting spare (tests)."""
        with self._lock:
            spares = list(self._spares)
        for spare in spares:
            if spare.alive():
                return int(spare.proc.pid)
        return None


def parse_isolated(
    path: Path, kind: DocumentKind, limits: Any, target: str = DEFAULT_TARGET,
    key: bytes | None = None, on_progress: ProgressCallback | None = None,
    pool: SandboxPool | None = None,
) -> list[Page]:
    """Run ``target(<memory file>, kind, limits)`` (default ``read_document``) in an isolated,
    confined child, on the plaintext of ``path``.

    Args:
        limits: ``core.settings.LimitSettings`` (or an object with its attributes).
        target: ``module:function`` to call in the child; tests point it at misbehaving
            parsers.
        key: the data key of an encrypted stored file (``core/vault.py``). This process
            decrypts into memory and sends the plaintext over the child's stdin pipe; the
            child gets neither the key nor the path, and no plaintext reaches the disk.
        on_progress: called in this thread with (pages parsed, pages in total) while the
            child parses (when the target takes ``on_page``), only when the pair changed and
            at most every ``PROGRESS_INTERVAL_S``, and once more with the last pair at the end.
        pool: take the child started ahead for this target and kind (:class:`SandboxPool`)
            and start the next one after this parse, forked by the parse zygote when the
            pool says so; None: a new interpreter for this parse alone.

    Raises:
        ParseError: the file could not be decrypted, the parser refused it, broke the time or
            memory limit, or crashed.
        TransientError: the child process could not be started.
    """
    timeout = float(limits.parse_timeout_s)
    plaintext = bytearray()
    for block in _plaintext_blocks(Path(path), key):
        plaintext += block
    child = pool.take(target, kind) if pool is not None else _Child(target, kind)
    try:
        return _parse_in(child, path, kind, limits, timeout, plaintext, on_progress)
    finally:
        if pool is not None:
            pool.refill(target, kind)


def _parse_in(child: Any, path: Path, kind: DocumentKind, limits: Any, timeout: float,
              plaintext: bytearray, on_progress: ProgressCallback | None) -> list[Page]:
    proc, read_fd = child.proc, child.progress_r
    header = json.dumps({
        "kind": kind.value, "limits": _limits_dict(limits),
        # the same number in the child; none when nobody listens
        "progress_fd": child.progress_w_in_child if on_progress else None,
    }).encode() + b"\n"
    # the request is written by a thread while this one reads the output and the progress
    # (communicate could not resume writing its input after a timed-out slice)
    feeder = threading.Thread(target=_feed, args=(child.stdin_w, header, plaintext),
                              daemon=True, name="docqa-sandbox-feed")
    feeder.start()
    progress = _ProgressPipe(read_fd, on_progress) if on_progress else None
    try:
        out, err = _communicate(proc, timeout, progress)
    except subprocess.TimeoutExpired:
        _kill(proc)
        proc.communicate()
        raise ParseError(f"parsing exceeded the {timeout:g} s time limit") from None
    except BaseException:  # e.g. Celery's soft time limit or shutdown: leave no child behind
        _kill(proc)
        proc.wait()
        raise
    finally:
        os.close(read_fd)
        feeder.join()  # ends at once: the child is gone, its end of the pipe closed
        if not isinstance(proc, subprocess.Popen):
            proc.close()  # its output pipes (communicate closes a Popen's)
    if getattr(proc, "lost", False):  # the zygote died, and the child with it
        raise TransientError("the parse zygote ended during the parse; will retry")
    code = proc.returncode
    if code == 0:
        try:
            reply = json.loads(out)
        except ValueError:
            reply = {"error": "the parser process returned no result"}
        if "error" in reply:
            raise ParseError(str(reply["error"]))
        return [Page(number=p[0], text=p[1], offset=p[2],
                     marks=marks_from_json(p[3] if len(p) > 3 else []))
                for p in reply["pages"]]
    if code == MEMORY_EXIT:
        raise ParseError(f"parsing exceeded the {_memory_text(limits)} memory limit")
    if code in (-signal.SIGXCPU, -signal.SIGKILL):
        raise ParseError(f"parsing exceeded the {timeout:g} s time limit (CPU)")
    tail = err.decode("utf-8", "replace").strip().splitlines()[-1:] or [""]
    log.warning("parser process for %s ended with %s: %s", path, code, err[-2000:])
    if code < 0:
        name = signal.Signals(-code).name if -code in signal.valid_signals() else str(-code)
        raise ParseError(f"the parser crashed on this file ({name}); it may be malformed or "
                         f"need more than the {_memory_text(limits)} memory limit")
    raise ParseError(f"the parser process failed (exit {code}): {tail[0][:300]}")


def _plaintext_blocks(path: Path, key: bytes | None) -> Iterator[bytes]:
    """The stored file's plaintext, decrypted in memory when it is encrypted."""
    try:
        with open(path, "rb") as fh:
            if key is None:
                while block := fh.read(1 << 20):
                    yield block
            else:
                yield from crypto.decrypt_stream(fh, key)
    except crypto.IntegrityError as exc:
        raise ParseError(f"the stored file could not be decrypted: {exc.detail}") from None


def _feed(fd: int, header: bytes, plaintext: bytearray) -> None:
    """Write the header line and the plaintext to the child's stdin, then close it."""
    try:
        for data in (header, plaintext):
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
    except OSError:  # the child is gone (a limit, a crash, a load failure): it wants no more
        pass
    finally:
        os.close(fd)


def _communicate(
    proc: subprocess.Popen[bytes], timeout: float, progress: _ProgressPipe | None,
) -> tuple[bytes, bytes]:
    """``proc.communicate`` under the wall-clock ``timeout``; with ``progress``, in slices of
    ``PROGRESS_INTERVAL_S`` (retrying ``communicate`` after its timeout loses no output)."""
    if progress is None:
        return proc.communicate(timeout=timeout)
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        try:
            out, err = proc.communicate(timeout=max(0.0, min(PROGRESS_INTERVAL_S, left)))
        except subprocess.TimeoutExpired:
            progress.poll()
            if time.monotonic() >= deadline:
                raise
            continue
        progress.poll()  # the child wrote its last pair before its reply
        return out, err


def marks_to_json(page: Page) -> list[list[Any]]:
    """A page's structure marks as JSON (the child's side)."""
    return [[m.line, m.kind.value, m.level, m.marker, m.header]
            for m in getattr(page, "marks", ())]


def marks_from_json(raw: Any) -> tuple[LineMark, ...]:
    """The marks the child sent, those that are well formed (the child parses hostile files:
    its reply is checked, never trusted; a bad mark costs structure, never the document)."""
    marks: list[LineMark] = []
    if not isinstance(raw, list):
        return ()
    for item in raw:
        try:
            line, kind, level, marker, header = item
            if not (isinstance(line, int) and isinstance(level, int) and isinstance(marker, int)
                    and isinstance(header, str)) or min(line, level, marker) < 0:
                continue
            marks.append(LineMark(line, LineKind(kind), level, marker, header))
        except (TypeError, ValueError):
            continue
    return tuple(marks)


def parse_progress_line(line: bytes) -> tuple[int, int] | None:
    """``b"3 12"`` → (3, 12); None for anything else (the child parses hostile files: its
    lines are checked, never trusted)."""
    parts = line.split()
    if len(parts) != 2 or not all(p.isdigit() and len(p) <= 8 for p in parts):
        return None
    done, total = int(parts[0]), int(parts[1])
    if done > total or total > _MAX_PROGRESS:
        return None
    return done, total


class _ProgressPipe:
    """The parent's end of the progress pipe: non-blocking reads, the latest valid pair is
    handed to the callback when it differs from the last one handed on."""

    _MAX_READS = 16  # per poll: a child writing without end cannot keep the parent here

    def __init__(self, fd: int, callback: ProgressCallback) -> None:
        os.set_blocking(fd, False)
        self.fd, self.callback = fd, callback
        self.partial = b""
        self.last: tuple[int, int] | None = None

    def poll(self) -> None:
        latest = None
        for _ in range(self._MAX_READS):
            try:
                block = os.read(self.fd, 65536)
            except BlockingIOError:
                break
            if not block:  # EOF: the child is gone
                break
            *lines, rest = (self.partial + block).split(b"\n")
            self.partial = rest[-64:]  # a real line is short; garbage cannot grow this
            for line in reversed(lines):
                pair = parse_progress_line(line)
                if pair is not None:
                    latest = pair
                    break
        if latest is not None and latest != self.last:
            self.last = latest
            self.callback(*latest)


# ---------------------------------------------------------------- the child


def _die_with_parent(parent: int) -> None:
    """Die with the worker (Linux): a killed worker must not leave a parser running. Set
    again after the privileges change (the kernel clears it then)."""
    prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(1)


def _confine(limits: Any) -> None:
    memory = int(limits.parse_memory_bytes)
    if memory > 0:
        resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    cpu = int(float(limits.parse_timeout_s)) + 2
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 5))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def _near_memory_limit(limits: Any, status: Any) -> bool:
    """Did this process come within 10% of its address-space limit (``VmPeak``)? ``status``:
    ``/proc/self/status``, opened before the isolation (it cannot be opened after it)."""
    memory = int(limits.parse_memory_bytes)
    if memory <= 0 or status is None:
        return False
    try:
        status.seek(0)
        for line in status.read().splitlines():
            if line.startswith(b"VmPeak:"):
                return int(line.split()[1]) * 1024 >= 0.9 * memory
    except (OSError, ValueError, IndexError):
        pass
    return False


def _stdin_blocks() -> Iterator[bytes]:
    while block := sys.stdin.buffer.read(1 << 20):
        yield block


def _progress_reporter(fd: int | None) -> ProgressCallback | None:
    """Write "<done> <total>" lines to the parent's progress pipe; never block or fail the
    parse over it (a full pipe drops a line, the next one says more)."""
    if fd is None:
        return None
    os.set_blocking(fd, False)

    def report(done: int, total: int) -> None:
        try:
            os.write(fd, f"{done} {total}\n".encode())
        except OSError:  # full (BlockingIOError) or the parent is gone
            pass

    return report


def _takes_keyword(func: Callable[..., Any], name: str) -> bool:
    try:
        return name in inspect.signature(func).parameters
    except (TypeError, ValueError):
        return False


def _load(target: str, kind: DocumentKind | None) -> Callable[..., Any]:
    """Import the target and whatever it loads lazily for ``kind`` (its module's
    ``preload``): after the isolation no module file can be opened."""
    module_name, _, name = target.partition(":")
    module = importlib.import_module(module_name)
    preload = getattr(module, "preload", None)
    if callable(preload):
        preload(kind) if _takes_keyword(preload, "kind") else preload()
    return getattr(module, name)  # type: ignore[no-any-return]


def main() -> None:
    # the kind only picks what to import ahead (None: everything, for a child started
    # before its document is known); the header line says what to parse
    target, parent = sys.argv[1], int(sys.argv[2])
    ahead = DocumentKind(sys.argv[3]) if len(sys.argv) > 3 else None
    child_main(target, parent, ahead)


def child_main(target: str, parent: int, ahead: DocumentKind | None) -> None:
    """What a parse child does, started as a new interpreter (``main``) or forked by the
    parse zygote (ingest/zygote.py) with its pipes on fds 0-3: load, isolate, read its one
    document from stdin, parse, reply on stdout, exit. Never returns."""
    _die_with_parent(parent)
    # parser libraries log per broken object; nobody reads it and a hostile file could
    # make it gigabytes
    logging.disable(logging.CRITICAL)
    warnings.simplefilter("ignore")
    try:  # read at the end, when it can no longer be opened
        status: Any = open("/proc/self/status", "rb")  # noqa: SIM115
    except OSError:
        status = None
    parse: Callable[..., Any] | None = None
    failure = ""
    try:
        parse = _load(target, ahead)
    except Exception as exc:  # noqa: BLE001 - reported like a parser failure
        failure = f"the parser could not be loaded: {type(exc).__name__}: {exc}"
    isolate()
    _die_with_parent(parent)
    request = json.loads(sys.stdin.buffer.readline(_MAX_HEADER))
    limits = SimpleNamespace(**request["limits"])
    kind = request["kind"]
    _confine(limits)
    try:
        if parse is None:
            raise ParseError(failure)
        report = _progress_reporter(request.get("progress_fd"))
        extra = {"on_page": report} if report and _takes_keyword(parse, "on_page") else {}
        with memory_file(_stdin_blocks()) as path:
            pages = parse(path, DocumentKind(kind), limits, **extra)
        reply: dict[str, Any] = {"pages": [[p.number, p.text, p.offset, marks_to_json(p)]
                                           for p in pages]}
    except MemoryError:
        os._exit(MEMORY_EXIT)  # allocate nothing more: no message, the exit code says it
    except ParseError as exc:
        reply = {"error": exc.detail}
    except RecursionError:
        reply = {"error": "the document is nested too deeply to parse"}
    except Exception as exc:  # noqa: BLE001 - any parser failure fails the document
        reply = {"error": f"the {kind} file could not be read: {type(exc).__name__}: {exc}"}
    if "error" in reply and _near_memory_limit(limits, status):
        # C parsers (lxml, zlib) report a failed allocation as their own error
        # ("XMLSyntaxError: unknown error"): name the real cause
        os._exit(MEMORY_EXIT)
    try:
        data = json.dumps(reply, ensure_ascii=False).encode("utf-8", "replace")
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
    except MemoryError:
        os._exit(MEMORY_EXIT)
    os._exit(0)


if __name__ == "__main__":
    main()
