"""Child-process supervision for ``docqa up``: a child that dies is started again.

A crashed worker, Chroma server or API is restarted after a backoff that doubles with each
crash in a row (1 s, 2 s, 4 s … at most ``backoff_max_s``) and starts over once the child
has stayed up ``stable_s``; every exit and restart is logged (``docqa up``'s stderr, and a
line in the child's own log). Nothing is lost meanwhile: messages of a dead worker come back
after the visibility timeout, ingests retry while Chroma is down, uploads wait for the API.
"""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class _State:
    started_at: float
    crashes: int = 0  # in a row
    restart_at: float | None = None


def describe_exit(code: int) -> str:
    if code < 0:
        try:
            return f"signal {signal.Signals(-code).name}"
        except ValueError:
            return f"signal {-code}"
    return f"code {code}"


class Supervisor:
    """Watches ``procs`` (name → process); :meth:`tick` restarts the ones that died.

    Args:
        procs: the live mapping ``docqa up`` also stops at shutdown (restarted children
            replace their entry).
        start: starts the child ``name`` again and returns its process.
        log: writes one line (with a timestamp) where the operator sees it.
    """

    def __init__(self, procs: dict[str, subprocess.Popen[bytes]],
                 start: Callable[[str], subprocess.Popen[bytes]], log: Callable[[str], None],
                 *, backoff_min_s: float = 1.0, backoff_max_s: float = 30.0,
                 stable_s: float = 60.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.procs = procs
        self.start = start
        self.log = log
        self.backoff_min_s, self.backoff_max_s = backoff_min_s, backoff_max_s
        self.stable_s = stable_s
        self.clock = clock
        now = clock()
        self.state = {name: _State(started_at=now) for name in procs}
        self.restarts: dict[str, int] = {name: 0 for name in procs}

    def _say(self, text: str) -> None:
        self.log(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} docqa up: {text}")

    def tick(self) -> None:
        now = self.clock()
        for name, proc in list(self.procs.items()):
            st = self.state.setdefault(name, _State(started_at=now))
            if st.restart_at is None:
                code = proc.poll()
                if code is None:
                    if st.crashes and now - st.started_at >= self.stable_s:
                        st.crashes = 0  # it stayed up: the next crash waits the minimum again
                    continue
                st.crashes = st.crashes + 1 if now - st.started_at < self.stable_s else 1
                delay = min(self.backoff_max_s, self.backoff_min_s * 2 ** (st.crashes - 1))
                st.restart_at = now + delay
                self._say(f"{name} (pid {proc.pid}) exited with {describe_exit(code)}; "
                          f"restarting in {delay:g} s")
            elif now >= st.restart_at:
                st.restart_at = None
                st.started_at = now
                try:
                    new = self.start(name)
                except OSError as exc:  # e.g. the executable vanished: try again later
                    st.crashes += 1
                    delay = min(self.backoff_max_s, self.backoff_min_s * 2 ** (st.crashes - 1))
                    st.restart_at = now + delay
                    self._say(f"{name} could not be started ({exc}); trying again in {delay:g} s")
                    continue
                self.procs[name] = new
                self.restarts[name] = self.restarts.get(name, 0) + 1
                self._say(f"{name} restarted (pid {new.pid}, restart {self.restarts[name]})")
