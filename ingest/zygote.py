"""The parse zygote: one long-lived process per worker process that has imported the parsers
once and forks a fresh parse child per document.

A parse child started as a new interpreter (ingest/sandbox.py) spends about 55 ms of CPU on
Python's start and the readers' imports before it reads a byte, more than the embedding of a
small document costs. A fork of a process that has already imported them costs a few
milliseconds, and the child then does exactly what a new interpreter's child does.

The zygote is ``python -m ingest.zygote_process <worker pid> <socket fd>`` (what it runs is
in ingest/zygote_process.py; this module is the worker's side), a plain subprocess of the
worker (a Celery prefork child may not use ``multiprocessing``), started as a parse child is:
minimal environment, its own session, no file descriptor but /dev/null and its end of a Unix
``SOCK_SEQPACKET`` socket pair. It dies with the worker (``PR_SET_PDEATHSIG``, and when the
socket closes), imports ``ingest.readers`` with every kind's libraries and then only serves
the worker's requests. It never reads a byte of a document and never holds a key or a path
of the data directory: a request names the parse target and the kind, and carries the
child's four pipe ends (stdin, stdout, stderr, progress) as ``SCM_RIGHTS``. The worker
decrypts and writes the document into the child's stdin itself, as for any child.

Isolation: the zygote applies none of it to itself. Each forked child moves its pipes to
fds 0-3, closes everything else (the zygote's socket, the other children's pidfds), leads a
session of its own and then runs ``sandbox.child_main``: it dies with its parent (the
zygote), enters a network namespace of its own, becomes ``nobody`` when root, and takes
Landlock, seccomp and the rlimits, before it reads its document. So every document still
gets a process no other document has touched, with a namespace and a Landlock domain of its
own (siblings cannot ptrace one another through Landlock). The zygote has to stay
unisolated to make those per child (a namespace needs root or a user namespace, which the
isolation takes away, and a test's target is imported by its child before it isolates).

What the zygote adds around its children:

* it is not dumpable (``PR_SET_DUMPABLE`` 0): a process of the same user without
  ``CAP_SYS_PTRACE``, its own children included, cannot ptrace it; each child makes itself
  dumpable again, as a new interpreter is;
* when a child ends it kills the child's process group, which holds everything the parser
  forked (the child's seccomp filter refuses ``setsid`` and ``setpgid``), and, as a child
  subreaper (``PR_SET_CHILD_SUBREAPER``) to which those orphans fall, reaps them all before
  it reports the child's end: nothing of a document outlives its parse, and nothing holds
  the child's pipes open once the worker hears of its end;
* it is replaced after ``MAX_FORKS`` children: forked children share the zygote's
  address-space layout and hash seed (a new interpreter had its own), so a layout one
  document's parser could leak would help a memory-corruption exploit of another document's
  parser, for at most that many documents. What a taken-over child can reach is unchanged.

The worker (``child`` below, used by ``sandbox.SandboxPool`` when ``worker.parse_zygote`` is
on) starts the zygote at its first parse, restarts it when it died, and falls back to a new
interpreter per document when it cannot be started or does not answer. The wall-clock limit
stays the worker's: on timeout it asks the zygote to kill the child's process group (the
zygote, as the reaper, is the one that knows the pid has not been reused). Exit statuses
come back over the socket, so the worker reports a child's end exactly as before.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import select
import selectors
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from core.domain import DocumentKind
from core.errors import TransientError
from ingest.isolation import minimal_env

log = logging.getLogger("docqa.ingest")

MAX_FORKS = 1000  # children per zygote, then a new one (a new address-space layout)
REPLY_S = 30.0  # how long the worker waits for a fork's answer (the first waits for imports)
RETRY_AFTER_S = 60.0  # after a zygote failed to start, new interpreters until then
PROGRESS_FD = 3  # the child's progress pipe (after stdin, stdout, stderr)
_IMPORT_ROOT = Path(__file__).resolve().parents[1]
_MODULE = "ingest.zygote_process"  # what the zygote runs (python -m)
MAX_MESSAGE = 4096


class ZygoteUnavailable(Exception):
    """The zygote could not fork a child (gone, refused, no answer): use a new interpreter."""


# ---------------------------------------------------------------- the worker's side


class Zygote:
    """The worker's handle on its zygote: the process, the socket, and the exit statuses of
    the children it reported."""

    def __init__(self) -> None:
        self.owner = os.getpid()
        self.forks = 0
        self.lost = False  # the zygote is gone (its children died with it)
        self.exits: dict[int, int] = {}
        self.lock = threading.RLock()
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-E", "-s", "-m", _MODULE, str(os.getpid()),
                 str(theirs.fileno())],
                cwd=_IMPORT_ROOT, env=minimal_env(), stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                start_new_session=True, close_fds=True, pass_fds=(theirs.fileno(),),
            )
        except OSError as exc:
            ours.close()
            raise TransientError(f"could not start the parse zygote: {exc}") from exc
        finally:
            theirs.close()
        self.sock = ours

    @property
    def pid(self) -> int:
        return int(self.proc.pid)

    def alive(self) -> bool:
        return self.owner == os.getpid() and not self.lost and self.proc.poll() is None

    def close(self) -> None:
        """End the zygote (its children die with it)."""
        if self.owner != os.getpid():  # a forked copy of another process's handle
            with contextlib.suppress(OSError):
                self.sock.close()
            return
        self.lost = True
        with contextlib.suppress(OSError):
            self.sock.close()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()

    def _take(self, raw: bytes) -> dict[str, Any] | None:
        """One message from the zygote: exit statuses are kept, anything else returned."""
        msg = json.loads(raw)
        if "exit" in msg:
            self.exits[int(msg["exit"])] = int(msg["status"])
            return None
        return dict(msg)

    def pump(self, wait: float = 0.0) -> dict[str, Any] | None:
        """Read what the zygote sent (waiting up to ``wait`` for the first message); the
        first message that is not an exit status, if any."""
        with self.lock:
            if self.lost:
                return None
            deadline = time.monotonic() + wait
            while True:
                left = max(0.0, deadline - time.monotonic())
                ready, _, _ = select.select([self.sock], [], [], left)
                if not ready:
                    return None
                try:
                    raw = self.sock.recv(MAX_MESSAGE)
                except OSError:
                    raw = b""
                if not raw:  # gone: its children were killed with it (PR_SET_PDEATHSIG)
                    self.lost = True
                    return None
                reply = self._take(raw)
                if reply is not None:
                    return reply
                deadline = time.monotonic()  # then only what is already there

    def fork(self, target: str, kind: DocumentKind | None
             ) -> tuple[_Forked, int, int]:
        """A new child for ``target``: its process, the write end of its stdin and the read
        end of its progress pipe."""
        pipes = [os.pipe() for _ in range(4)]  # stdin, stdout, stderr, progress
        theirs = [pipes[0][0], pipes[1][1], pipes[2][1], pipes[3][1]]
        ours = [pipes[0][1], pipes[1][0], pipes[2][0], pipes[3][0]]
        request = json.dumps({"fork": target, "kind": kind.value if kind else None}).encode()
        try:
            with self.lock:
                if not self.alive():
                    raise ZygoteUnavailable("the parse zygote is gone")
                try:
                    socket.send_fds(self.sock, [request], theirs)
                except OSError as exc:
                    self.lost = True
                    raise ZygoteUnavailable(f"the parse zygote is gone: {exc}") from exc
                reply = self.pump(REPLY_S)
            if reply is None or "forked" not in reply:
                why = reply.get("error") if reply else "no answer"
                raise ZygoteUnavailable(f"the parse zygote did not fork: {why}")
        except BaseException:
            for fd in ours:
                os.close(fd)
            raise
        finally:
            for fd in theirs:
                os.close(fd)
        self.forks += 1
        return _Forked(self, int(reply["forked"]), ours[1], ours[2]), ours[0], ours[3]

    def kill(self, pid: int) -> None:
        """Kill a child's process group (the zygote checks the child is still its own)."""
        with self.lock:
            if self.lost:
                return
            with contextlib.suppress(OSError):
                self.sock.send(json.dumps({"kill": pid}).encode())


class _Forked:
    """A forked child as ``subprocess.Popen`` would show it to ingest/sandbox.py: ``pid``,
    ``returncode``, ``poll``, ``wait``, ``communicate`` (output kept across timeouts) and
    ``kill``. ``lost``: the zygote died before the child's end was reported."""

    def __init__(self, zygote: Zygote, pid: int, stdout: int, stderr: int) -> None:
        self.zygote, self.pid = zygote, pid
        self.returncode: int | None = None
        self.lost = False
        self._fds = {stdout: bytearray(), stderr: bytearray()}
        self._stdout, self._stderr = stdout, stderr
        self._open = {stdout, stderr}

    def poll(self) -> int | None:
        if self.returncode is None:
            self.zygote.pump()
            if self.pid in self.zygote.exits:
                self.returncode = self.zygote.exits.pop(self.pid)
            elif self.zygote.lost:
                self.returncode, self.lost = -signal.SIGKILL, True
        return self.returncode

    def kill(self) -> None:
        if self.returncode is None:
            self.zygote.kill(self.pid)

    def wait(self, timeout: float | None = None) -> int:
        self._run(timeout, read=False)
        assert self.returncode is not None
        return self.returncode

    def communicate(self, timeout: float | None = None) -> tuple[bytes, bytes]:
        self._run(timeout, read=True)
        out, err = bytes(self._fds[self._stdout]), bytes(self._fds[self._stderr])
        return out, err

    def close(self) -> None:
        for fd in self._open:
            with contextlib.suppress(OSError):
                os.close(fd)
        self._open.clear()

    def _run(self, timeout: float | None, *, read: bool) -> None:
        """Until the output is read to its end (``read``) and the exit reported."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with selectors.DefaultSelector() as sel:
            if read:
                for fd in self._open:
                    sel.register(fd, selectors.EVENT_READ)
            if not self.zygote.lost:
                sel.register(self.zygote.sock, selectors.EVENT_READ)
            while (read and self._open) or self.poll() is None:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    raise subprocess.TimeoutExpired(f"parse child {self.pid}", timeout or 0.0)
                if self.returncode is not None:
                    # the zygote reports an end once the child's whole group is reaped: what
                    # it wrote is in the pipes, and nothing can hold them open any more
                    left = 0.0
                events = sel.select(left)
                if not events and self.returncode is not None:
                    break
                for key, _ in events:
                    fd = key.fd
                    if fd == self.zygote.sock.fileno():
                        if self.poll() is not None or self.zygote.lost:
                            sel.unregister(fd)
                        continue
                    block = os.read(fd, 65536)
                    if block:
                        self._fds[fd] += block
                    else:
                        sel.unregister(fd)
                        os.close(fd)
                        self._open.discard(fd)


class ForkedChild:
    """A parse child forked by the zygote, as ingest/sandbox.py's ``_Child`` is to it: the
    process, the write end of its stdin, the read end of its progress pipe and that pipe's
    fd number in the child."""

    progress_w_in_child = PROGRESS_FD

    def __init__(self, zygote: Zygote, target: str, kind: DocumentKind | None) -> None:
        self.target, self.kind = target, kind
        self.owner = os.getpid()
        self.proc, self.stdin_w, self.progress_r = zygote.fork(target, kind)

    def alive(self) -> bool:
        return self.owner == os.getpid() and self.proc.poll() is None

    def discard(self) -> None:
        if self.owner != os.getpid():
            return
        self.proc.kill()
        for fd in (self.stdin_w, self.progress_r):
            with contextlib.suppress(OSError):
                os.close(fd)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(REPLY_S)
        self.proc.close()


_current: Zygote | None = None
_failed_at = -RETRY_AFTER_S
_lock = threading.Lock()


def current() -> Zygote | None:
    """This process's zygote, if it has one running (tests, the bench)."""
    z = _current
    return z if z is not None and z.alive() else None


def child(target: str, kind: DocumentKind | None) -> ForkedChild | None:
    """A child forked by this process's zygote (started or restarted as needed); None when
    no zygote can be had: the caller starts a new interpreter instead."""
    global _current, _failed_at
    with _lock:
        for attempt in range(2):  # a zygote that died since its last fork: once more
            z = _current
            if z is not None and (not z.alive() or z.forks >= MAX_FORKS):
                if z.owner == os.getpid() and z.forks < MAX_FORKS:
                    log.warning("the parse zygote (pid %s) ended; starting another", z.pid)
                z.close()
                z = _current = None
            if z is None:
                if time.monotonic() - _failed_at < RETRY_AFTER_S:
                    return None
                try:
                    z = _current = Zygote()
                except TransientError as exc:
                    log.warning("%s; parsing in new interpreters", exc.detail)
                    _failed_at = time.monotonic()
                    return None
            try:
                return ForkedChild(z, target, kind)
            except ZygoteUnavailable as exc:
                log.warning("%s", exc)
                z.close()
                _current = None
                if attempt:
                    _failed_at = time.monotonic()
        return None


def stop() -> None:
    """End this process's zygote (tests, the bench); the next ``child`` starts another."""
    global _current
    with _lock:
        if _current is not None:
            _current.close()
            _current = None
