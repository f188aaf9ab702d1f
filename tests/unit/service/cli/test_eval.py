"""``docqa eval``: the evaluations under the docqa command, handed to ``python -m bench``."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[4]


def docqa(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "service.cli", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=120, check=False)


def test_eval_business_is_the_bench_business_command() -> None:
    done = docqa("eval", "business", "--help")
    assert done.returncode == 0, done.stderr
    assert "python -m bench business" in done.stdout
    assert "--split [dev|dev2|test|all|train|dev3]" in done.stdout and "--baseline" in done.stdout


def test_eval_passes_the_bench_exit_code_and_errors_through() -> None:
    done = docqa("eval", "no-such-eval")
    assert done.returncode == 2
    assert "No such command 'no-such-eval'" in done.stderr


def test_eval_is_listed_among_docqa_commands() -> None:
    done = docqa("--help")
    assert done.returncode == 0 and "eval " in done.stdout
