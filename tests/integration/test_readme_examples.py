"""The README's examples run against the real stack, as a reader would run them: the
blocks marked ``<!-- readme-test: NAME -->`` are read from README.md and executed from the
repository root, with the stack's URL and a key in DOCQA_URL / DOCQA_API_KEY (which the
snippets read). An example that stops working, or a marker that disappears, fails here."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.conftest import KEYS, Stack

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
BLOCK = re.compile(r"<!-- readme-test: (\w+) -->\s*```(\w+)\n(.*?)```", re.S)


def examples() -> dict[str, tuple[str, str]]:
    """name -> (language, code) of every marked block."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    return {m.group(1): (m.group(2), m.group(3)) for m in BLOCK.finditer(text)}


def test_the_readme_marks_its_three_examples() -> None:
    found = examples()
    assert found.keys() == {"curl", "client", "openai"}
    assert found["curl"][0] == "sh" and found["client"][0] == found["openai"][0] == "python"
    assert "from service.client import DocqaClient" in found["client"][1]
    assert 'os.environ["DOCQA_URL"] + "/v1"' in found["openai"][1]


def run(stack: Stack, name: str) -> str:
    language, code = examples()[name]
    # the stack's environment keeps the network guard on PYTHONPATH and proxies out
    env = {**stack.env, "DOCQA_URL": stack.url, "DOCQA_API_KEY": KEYS["acme"]}
    argv = (["bash", "-euo", "pipefail", "-c", code] if language == "sh"
            else [sys.executable, "-c", code])
    done = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"{name}: exit {done.returncode}\n{done.stdout}\n{done.stderr}"
    return done.stdout


def test_the_curl_example_uploads_waits_and_answers(stack: Stack) -> None:
    answer = json.loads(run(stack, "curl"))
    assert answer["status"] == "answered", answer
    assert "30 days" in answer["answer"]
    cite = answer["citations"][0]
    assert cite["filename"] == "travel-expense-policy.txt" and "30 days" in cite["quote"]


def test_the_python_client_example_answers_with_a_citation(stack: Stack) -> None:
    lines = run(stack, "client").splitlines()
    assert lines[0].startswith("answered ") and "EUR 0.42" in lines[0], lines
    assert lines[1].startswith("[1] travel-expense-policy.txt p.1: ") and "0.42" in lines[1]


def test_the_openai_example_answers_with_a_citation(stack: Stack) -> None:
    # the document is the tenant's after the examples above; upload it here too so this
    # test also stands alone (the same bytes are the same document: no second copy)
    with stack.client("acme") as client:
        doc = client.upload(ROOT / "bench/business/corpus/travel-expense-policy.txt")
        assert client.wait_ready([doc["id"]], timeout=300)[doc["id"]]["status"] == "ready"
    out = run(stack, "openai")
    answer, _, citations = out.partition("\n[1] ")
    assert "EUR 20" in answer, out
    assert citations.startswith("travel-expense-policy.txt p.1: ") and "EUR 20" in citations
