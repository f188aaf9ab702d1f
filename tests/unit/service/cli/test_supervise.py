"""``docqa up``'s supervisor (service/cli/supervise.py) on fake processes and a fake clock:
dead children are restarted with a growing backoff. On real processes:
tests/integration/test_faults.py."""

from __future__ import annotations

from typing import Any

from service.cli.supervise import Supervisor


class FakeProc:
    _next = 100

    def __init__(self) -> None:
        FakeProc._next += 1
        self.pid = FakeProc._next
        self.code: int | None = None

    def poll(self) -> int | None:
        return self.code


def test_supervisor_restarts_dead_children_with_a_growing_backoff() -> None:
    now = [0.0]
    lines: list[str] = []
    procs: dict[str, Any] = {"worker": FakeProc(), "chroma": FakeProc()}
    started: list[str] = []

    def start(name: str) -> Any:
        started.append(name)
        return FakeProc()

    sup = Supervisor(procs, start, lines.append, backoff_min_s=1, backoff_max_s=8,
                     stable_s=60, clock=lambda: now[0])
    first = procs["worker"]
    first.code = -9
    sup.tick()
    assert started == []
    assert any(f"worker (pid {first.pid}) exited with signal SIGKILL; restarting in 1 s" in ln
               for ln in lines)
    now[0] = 1.0
    sup.tick()
    assert started == ["worker"] and procs["worker"] is not first
    assert any("worker restarted (pid" in ln for ln in lines)
    # it crashes again at once: 2 s, then 4 s, then at most 8 s
    delays = []
    for _ in range(4):
        procs["worker"].code = 1
        sup.tick()
        delays.append(float(lines[-1].rsplit("restarting in ", 1)[1].split(" s")[0]))
        now[0] += delays[-1]
        sup.tick()
    assert delays == [2, 4, 8, 8]
    # after a minute up, the next crash waits the minimum again
    now[0] += 61
    sup.tick()
    procs["worker"].code = 1
    sup.tick()
    assert lines[-1].endswith("restarting in 1 s")
    assert procs["chroma"].poll() is None and "chroma" not in started


def test_supervisor_keeps_trying_when_a_start_fails() -> None:
    now = [0.0]
    lines: list[str] = []
    procs: dict[str, Any] = {"chroma": FakeProc()}
    attempts = {"n": 0}

    def start(_name: str) -> Any:
        attempts["n"] += 1
        if attempts["n"] == 1:
            raise OSError("no such file")
        return FakeProc()

    sup = Supervisor(procs, start, lines.append, clock=lambda: now[0])
    procs["chroma"].code = 2
    for t in (0, 1, 2, 3, 4, 5):
        now[0] = t
        sup.tick()
    assert attempts["n"] == 2 and procs["chroma"].poll() is None
    assert any("could not be started (no such file)" in ln for ln in lines)
