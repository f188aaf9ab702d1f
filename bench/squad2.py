"""SQuAD 2.0 as a document-QA benchmark (see ../shared/eval/README.md).

Every paragraph of every article is one document (``AA-PPP.txt``, title and indices as
metadata). Articles at even index are the ``dev`` split (tune here), odd ones the ``test``
split (report here). ``sample`` draws N answerable and N unanswerable questions of a split
with ``random.Random(seed)``: answerable first, then unanswerable, each from file order.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import random
import sys
from dataclasses import dataclass
from pathlib import Path

from bench.baseline import LlamaIndexBaseline
from bench.evalkit import (
    EvalDoc,
    EvalQuestion,
    ask_all,
    docqa_asker,
    git_commit,
    ingest,
    log,
    records_as_dicts,
    score,
    table,
    write_json,
)
from core.settings import Settings
from service.answer.grounding import load_model
from service.client import DocqaClient

EVAL_DIR = Path(os.environ.get("DOCQA_EVAL_DIR")
                or Path(__file__).resolve().parents[2] / "shared" / "eval")
DEFAULT_PATH = EVAL_DIR / "squad2" / "dev-v2.0.json"
SPLITS = ("dev", "test", "all")


@dataclass(frozen=True)
class Squad2:
    docs: list[EvalDoc]
    questions: dict[str, list[EvalQuestion]]  # split -> questions in file order


def doc_key(article: int, paragraph: int) -> str:
    return f"{article:02d}-{paragraph:03d}"


def split_of(article: int) -> str:
    return "dev" if article % 2 == 0 else "test"


def load(path: Path = DEFAULT_PATH) -> Squad2:
    raw = json.loads(Path(path).read_text(encoding="utf-8"))
    docs: list[EvalDoc] = []
    questions: dict[str, list[EvalQuestion]] = {"dev": [], "test": []}
    for i, article in enumerate(raw["data"]):
        title = article.get("title", "")
        for j, para in enumerate(article["paragraphs"]):
            key = doc_key(i, j)
            docs.append(EvalDoc(key, f"{key}.txt", para["context"],
                                {"title": title, "article": i, "paragraph": j}))
            for qa in para.get("qas", []):
                impossible = qa.get("is_impossible", False) or not qa.get("answers")
                answers = () if impossible else tuple(
                    dict.fromkeys(a["text"] for a in qa["answers"]))
                questions[split_of(i)].append(
                    EvalQuestion(qa["id"], qa["question"], answers, (key,)))
    return Squad2(docs, questions)


def sample(data: Squad2, split: str, n: int, seed: int = 7) -> list[EvalQuestion]:
    """N answerable + N unanswerable questions of ``split`` (``all`` = both splits)."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}")
    pool = data.questions["dev"] + data.questions["test"] if split == "all" \
        else data.questions[split]
    rng = random.Random(seed)
    answerable = [q for q in pool if q.answerable]
    impossible = [q for q in pool if not q.answerable]
    return (rng.sample(answerable, min(n, len(answerable)))
            + rng.sample(impossible, min(n, len(impossible))))


TARGETS = {
    "answerable_correct": (">=", 0.65),
    "impossible_abstained": (">=", 0.80),
    "false_abstention": ("<=", 0.15),
    "citation_hit": (">=", 0.95),
    "ask_p50_s": ("<=", 1.0),
    "ask_p95_s": ("<=", 2.5),
}


def run(url: str, api_key: str, split: str = "test", n: int = 200, seed: int = 7,
        baseline: bool = False, path: Path = DEFAULT_PATH, json_out: Path | None = None,
        details_out: Path | None = None) -> dict[str, object]:
    """Ingest the corpus through the service, ask the sample, score docqa (and the baseline)."""

    settings = Settings()
    data = load(path)
    questions = sample(data, split, n, seed)
    log(f"{split}: {sum(q.answerable for q in questions)} answerable + "
        f"{sum(not q.answerable for q in questions)} unanswerable questions, seed {seed}")
    systems: dict[str, dict[str, object]] = {}
    details: dict[str, list[dict[str, object]]] = {}
    with DocqaClient(url, api_key, timeout=300.0, wait_on_429_s=600) as client:
        id_to_key = ingest(client, data.docs)
        records = ask_all(questions, docqa_asker(client, id_to_key), "docqa")
    systems["docqa"] = score(questions, records)
    details["docqa"] = records_as_dicts(questions, records)
    if baseline:

        digest = hashlib.sha256("".join(d.key + d.text for d in data.docs).encode()).hexdigest()
        bl = LlamaIndexBaseline(settings, data.docs, f"baseline_squad2_{digest[:16]}")
        b_records = ask_all(questions, bl.asker(), "baseline")
        systems["baseline"] = score(questions, b_records)
        details["baseline"] = records_as_dicts(questions, b_records)
    commit = git_commit()
    grounding = load_model()
    result: dict[str, object] = {
        **systems,
        "config": {
            "benchmark": "squad2", "split": split, "n_per_class": n, "seed": seed,
            "documents": len(data.docs), "url": url, "commit": commit,
            "retrieval_top_k": settings.retrieval.top_k,
            "generator": Path(settings.models.resolved_generator_path()).name,
            "embedding": Path(settings.models.resolved_embedding_path()).name,
            "max_tokens": settings.models.max_tokens,
            "grounding_model": grounding.info.get("trained_on") if grounding else None,
            "baseline": "llama-index VectorStoreIndex, default query engine (top-2)"
            if baseline else None,
            "cpus": os.cpu_count(), "python": platform.python_version(),
            "argv": _redacted(sys.argv[1:]),
        },
    }
    print(table(systems, TARGETS))  # noqa: T201 - the CLI's output
    write_json(json_out, result)
    write_json(details_out, details, indent=1)
    return result


def _redacted(argv: list[str]) -> list[str]:
    """The command line without the API key (the JSON is meant to be shared)."""
    out, hide = [], False
    for a in argv:
        if hide:
            out.append("***")
            hide = False
        elif a == "--api-key":
            out.append(a)
            hide = True
        elif a.startswith("--api-key="):
            out.append("--api-key=***")
        else:
            out.append(a)
    return out
