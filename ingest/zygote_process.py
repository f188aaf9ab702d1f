"""What runs in the parse zygote (ingest/zygote.py says what it is and why): it imports
every reader once, then forks a child per request of its worker until the worker lets go of
it, and reports each child's end once the child's whole process group is gone."""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import select
import signal
import socket
import sys
import traceback
import warnings
from typing import Any, NoReturn

from core.domain import DocumentKind
from ingest import sandbox
from ingest.isolation import PR_SET_CHILD_SUBREAPER, PR_SET_DUMPABLE, prctl
from ingest.zygote import MAX_MESSAGE


def _send(sock: socket.socket, msg: dict[str, Any]) -> None:
    with contextlib.suppress(OSError):  # the worker is gone: the next recv says so
        sock.send(json.dumps(msg).encode())


def _end(pid: int) -> int:
    """Kill the group of an ended child (before reaping it: until then its pid cannot be
    reused), reap the child, then the rest of its group, which fell to this subreaper as
    each parent died; the child's exit code."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)
    _, status = os.waitpid(pid, 0)
    while True:
        try:
            os.waitid(os.P_PGID, pid, os.WEXITED)
        except ChildProcessError:
            break
    return os.waitstatus_to_exitcode(status)


def _in_child(fds: list[int], target: str, kind: DocumentKind | None, zygote: int) -> NoReturn:
    """In the forked child: its pipes on 0-3 and nothing else, a session of its own, then
    what every parse child does."""
    try:
        high = [fcntl.fcntl(fd, fcntl.F_DUPFD, 64) for fd in fds]
        for number, fd in enumerate(high):
            os.dup2(fd, number)
        os.closerange(len(high), os.sysconf("SC_OPEN_MAX"))
        os.setsid()
        prctl(PR_SET_DUMPABLE, 1)
        sandbox.child_main(target, zygote, kind)
    except BaseException:  # noqa: BLE001 - reported on its stderr, like a new interpreter's
        with contextlib.suppress(BaseException):
            traceback.print_exc()
            sys.stderr.flush()
    os._exit(70)


def serve(sock: socket.socket) -> NoReturn:
    """Fork a child per request until the worker closes the socket."""
    children: dict[int, int] = {}  # pidfd → pid
    poller = select.poll()
    poller.register(sock, select.POLLIN)
    me = os.getpid()
    while True:
        for fd, _ in poller.poll():
            if fd in children:  # a child ended: its group goes with it, then its status
                pid = children.pop(fd)
                poller.unregister(fd)
                os.close(fd)
                _send(sock, {"exit": pid, "status": _end(pid)})
                continue
            try:
                raw, fds, _, _ = socket.recv_fds(sock, MAX_MESSAGE, 4)
            except OSError:
                raw, fds = b"", []
            if not raw:  # the worker is gone or let go of us: so do the children
                for pid in children.values():
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(pid, signal.SIGKILL)
                os._exit(0)
            try:
                request = json.loads(raw)
            except ValueError:
                request = {}
            if "kill" in request:
                pid = int(request["kill"])
                if pid in children.values():  # not reaped yet: the pid is still that child
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)  # maybe not yet leading its group
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(pid, signal.SIGKILL)
                continue
            if "fork" not in request or len(fds) != 4:
                for received in fds:
                    os.close(received)
                _send(sock, {"error": "a fork request needs a target and four pipes"})
                continue
            kind = DocumentKind(request["kind"]) if request.get("kind") else None
            try:
                pid = os.fork()
            except OSError as exc:
                pid = -1
                _send(sock, {"error": f"fork: {exc}"})
            if pid == 0:
                _in_child(fds, str(request["fork"]), kind, me)
            for received in fds:
                os.close(received)
            if pid > 0:
                pidfd = os.pidfd_open(pid)
                children[pidfd] = pid
                poller.register(pidfd, select.POLLIN)
                _send(sock, {"forked": pid})


def main() -> NoReturn:
    parent, fd = int(sys.argv[1]), int(sys.argv[2])
    sandbox._die_with_parent(parent)
    prctl(PR_SET_CHILD_SUBREAPER, 1)
    prctl(PR_SET_DUMPABLE, 0)
    logging.disable(logging.CRITICAL)  # as in a child: nobody reads it
    warnings.simplefilter("ignore")
    sock = socket.socket(fileno=fd)
    try:
        sandbox._load(sandbox.DEFAULT_TARGET, None)  # every kind's libraries
    except Exception as exc:  # noqa: BLE001 - the worker falls back to new interpreters
        _send(sock, {"error": f"the parsers could not be loaded: {type(exc).__name__}: {exc}"})
        os._exit(1)
    import gc

    gc.freeze()  # what was imported stays out of collections: children do not copy its pages
    serve(sock)


if __name__ == "__main__":
    main()
