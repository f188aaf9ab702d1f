"""`docqa-bench squad2` (`python -m bench squad2`) end to end on a small SQuAD-format corpus of business documents.

The harness uploads through the running service, asks through /v1/ask, runs the llama-index
baseline in its own process against the same Chroma server and GGUF, and writes both
systems' metrics side by side. Nothing may reach outward while it does.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.conftest import Stack

pytestmark = pytest.mark.integration

ARTICLES = [
    {  # index 0: dev split (not asked with --split test)
        "title": "Facilities",
        "paragraphs": [{
            "context": "The Lund office moved to Bredgatan 4 in March 2021. The canteen on the "
                       "second floor serves lunch between 11:30 and 13:30 on weekdays.",
            "qas": [{"id": "d1", "question": "When does the canteen serve lunch?",
                     "answers": [{"text": "between 11:30 and 13:30", "answer_start": 0}],
                     "is_impossible": False}],
        }],
    },
    {  # index 1: test split
        "title": "Incident report",
        "paragraphs": [
            {"context": "On 14 June 2024 the Malmo data centre lost cooling for 47 minutes. "
                        "The root cause was a cracked seal in chiller pump 3, which the vendor "
                        "Kylteknik replaced the same night.",
             "qas": [
                 {"id": "t1", "question": "How long did the Malmo data centre lose cooling?",
                  "answers": [{"text": "47 minutes", "answer_start": 0}], "is_impossible": False},
                 {"id": "t2", "question": "What was the root cause of the cooling loss?",
                  "answers": [{"text": "a cracked seal in chiller pump 3", "answer_start": 0}],
                  "is_impossible": False},
                 {"id": "t3", "question": "Which vendor repaired the Stockholm generator?",
                  "answers": [], "is_impossible": True},
             ]},
            {"context": "Supplier contract 2023-117 with Nordic Paper AB runs until 31 December "
                        "2026 and renews automatically for one year unless cancelled in writing "
                        "three months before it ends.",
             "qas": [
                 {"id": "t4", "question": "What is the penalty for late delivery by the "
                                          "helicopter supplier?",
                  "answers": [], "is_impossible": True},
             ]},
        ],
    },
]


def test_eval_squad2_with_baseline_writes_both_systems(stack: Stack, tmp_path: Path) -> None:
    data = tmp_path / "mini-squad.json"
    data.write_text(json.dumps({"version": "v2.0", "data": ARTICLES}))
    key = subprocess.run([sys.executable, "-m", "service.cli", "keys", "create", "--tenant",
                          "evaluation"], env=stack.env, capture_output=True, text=True,
                         check=True).stdout.strip()
    out = tmp_path / "eval.json"
    details = tmp_path / "details.json"
    run = subprocess.run(
        [sys.executable, "-m", "bench", "squad2", "--split", "test", "--n", "2",
         "--data", str(data), "--json", str(out), "--details", str(details), "--baseline",
         "--url", stack.url, "--api-key", key],
        env=stack.env, capture_output=True, text=True, timeout=900,
    )
    assert run.returncode == 0, run.stderr[-4000:]
    result = json.loads(out.read_text())
    assert set(result) == {"docqa", "baseline", "config"}
    for system in ("docqa", "baseline"):
        m = result[system]
        assert (m["n_answerable"], m["n_impossible"], m["errors"]) == (2, 2, 0)
        for name in ("answerable_correct", "answerable_f1", "impossible_abstained",
                     "false_abstention"):
            assert 0.0 <= m[name] <= 1.0
        assert m["ask_p50_s"] > 0 and m["ask_p95_s"] >= m["ask_p50_s"]
    assert result["config"]["split"] == "test" and result["config"]["documents"] == 3
    assert key not in out.read_text() and "***" in result["config"]["argv"]  # no secret kept
    assert "answerable_correct" in run.stdout and "baseline" in run.stdout  # the printed table

    # docqa on plain business text: both facts answered from the right document, cited
    docqa = {r["qid"]: r for r in json.loads(details.read_text())["docqa"]}
    for qid, fact in (("t1", "47 minutes"), ("t2", "cracked seal in chiller pump 3")):
        assert docqa[qid]["status"] == "answered", docqa[qid]
        assert fact in docqa[qid]["answer"] and docqa[qid]["cited_keys"] == ["01-000"]
    assert result["docqa"]["answerable_correct"] == 1.0
    assert result["docqa"]["citation_hit"] == 1.0

    assert not stack.netlog.exists() or stack.netlog.read_text() == "", stack.netlog.read_text()
