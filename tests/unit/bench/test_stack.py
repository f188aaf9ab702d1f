"""bench/stack.py: a benchmark stopped with SIGTERM still stops its stack."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

from bench.stack import sigterm_unwinds

ROOT = Path(__file__).resolve().parents[3]

CHILD = """
import time
from bench.stack import sigterm_unwinds
with sigterm_unwinds():
    try:
        print("ready", flush=True)
        time.sleep(60)
    finally:
        print("cleaned up", flush=True)
"""


def test_sigterm_runs_the_finally_blocks() -> None:
    proc = subprocess.Popen([sys.executable, "-c", CHILD], cwd=ROOT, stdout=subprocess.PIPE,
                            text=True)
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "ready"
    proc.send_signal(signal.SIGTERM)
    rest, _ = proc.communicate(timeout=30)
    assert rest.strip() == "cleaned up"
    assert proc.returncode == 128 + signal.SIGTERM


def test_the_handler_before_is_restored() -> None:
    before = signal.getsignal(signal.SIGTERM)
    with sigterm_unwinds():
        assert signal.getsignal(signal.SIGTERM) is not before
    assert signal.getsignal(signal.SIGTERM) is before
