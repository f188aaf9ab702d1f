"""A business-document evaluation of our own: one fictional company's files, in every format.

The corpus (``bench/business/``) is the paperwork of Velmora Pumps GmbH, an invented pump and
valve maker with plants in Graz, Maribor and Brno and a distribution centre in Villach: HR
and IT policies, a supply contract with its fee table, an incident report, board minutes, an
annual report summary, a price list, stock and headcount tables, and a supplier's e-mail that
tries to give an AI assistant orders. Text formats are committed as they are uploaded
(``corpus/``: Markdown, text, HTML, CSV); DOCX and PDF files are built from reviewable
sources (``sources/NAME.docx.md``, ``sources/NAME.pdf.md``) by ``bench/docbuild.py``, the
same bytes on every run, so a re-run against one tenant re-uses the earlier uploads.

``questions.json`` holds the questions, each with a fixed split (``dev`` and ``dev2`` to look
at and tune, ``test`` to report), written as a user would ask them: ``answerable`` ones with their
gold answer (a short span found verbatim in the document, on the given page) and
``unanswerable`` near misses, which ask for a quarter, year, site, person or attribute the
documents do not cover while sounding like ones they do (``miss`` says which, ``near``
names the document they resemble, ``why`` says what is missing). An answerable question's
``sources`` list every (document, page) that states its answer. ``dev2`` is a second, larger
development set about documents of their own (procurement, sales, a transport contract, IT
minutes, safety, benefits, training and asset records): ``dev`` had been tuned on until it
was nearly saturated, so further tuning needs questions it has not yet shaped. Every split
is asked against the whole corpus, so each one's documents compete with all the others.

Scoring is ``bench/evalkit.py``'s, plus ``answered_wrong`` (share of all questions answered
with something wrong). ``citation_hit`` also checks the page: a citation counts when it
names the gold document and the gold page (every format but PDF has one page).
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.baseline import LlamaIndexBaseline
from bench.docbuild import build_docx, build_pdf
from bench.evalkit import (
    METRICS,
    AskRecord,
    EvalDoc,
    EvalQuestion,
    answered_wrong,
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
from bench.squad2 import _redacted
from core.domain import Page
from core.settings import Settings
from ingest.detect import sniff_bytes
from ingest.readers import full_text, read_document
from service.answer.grounding import load_model
from service.client import DocqaClient

ROOT = Path(__file__).resolve().parent / "business"
# Another company's paperwork and questions, only to train the reader and the gate on: its
# documents live in a tenant of their own, so they never compete with what dev and test ask.
TRAIN_ROOT = ROOT / "train"
# A third company's, never fitted or tuned on: what a fit learnt from the others must hold
# on a company it has not seen, as a new customer's paperwork would be. Its own tenant too.
DEV3_ROOT = ROOT / "dev3"
QUESTION_SPLITS = ("dev", "dev2", "test")  # in the order ``all`` asks them
TRAIN_SPLIT = "train"
DEV3_SPLIT = "dev3"
OTHER_COMPANIES = {TRAIN_SPLIT: TRAIN_ROOT, DEV3_SPLIT: DEV3_ROOT}  # split -> its corpus
SPLITS = (*QUESTION_SPLITS, "all", *OTHER_COMPANIES)
KINDS = ("answerable", "unanswerable")
MISSES = ("quarter", "year", "site", "person", "attribute")
FORMATS = (".md", ".txt", ".html", ".docx", ".pdf", ".csv")
AUTHOR = "Velmora Pumps GmbH"
BUSINESS_METRICS = (*METRICS[:4], "answered_wrong", *METRICS[4:])
_BUILDERS = {".docx": build_docx, ".pdf": build_pdf}


@dataclass(frozen=True)
class Business:
    docs: list[EvalDoc]
    questions: dict[str, list[EvalQuestion]]  # split -> questions in file order
    info: dict[str, dict[str, Any]]  # qid -> the question's entry in questions.json


def root_of(split: str) -> Path:
    """The corpus a split's questions are about: another company's, or Velmora's."""
    return OTHER_COMPANIES.get(split, ROOT)


def _author(root: Path) -> str:
    """The company named as the DOCX and PDF files' author (``questions.json``'s ``author``)."""
    path = root / "questions.json"
    raw = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    return str(raw.get("author", AUTHOR))


def corpus_files(root: Path = ROOT) -> dict[str, bytes]:
    """Filename -> the bytes uploaded: text formats as committed, DOCX and PDF built."""
    author = _author(root)
    files: dict[str, bytes] = {}
    for path in sorted((root / "corpus").iterdir()):
        if path.is_file():
            files[path.name] = path.read_bytes()
    for path in sorted((root / "sources").glob("*.md")):
        name = path.name.removesuffix(".md")  # board-minutes.pdf.md -> board-minutes.pdf
        suffix = Path(name).suffix
        if suffix not in _BUILDERS:
            raise ValueError(f"{path.name}: a source must end in .docx.md or .pdf.md")
        source = path.read_text(encoding="utf-8")
        files[name] = _BUILDERS[suffix](source, _title(source, name), author)
    return dict(sorted(files.items()))


def _title(source: str, name: str) -> str:
    heading = next((line.lstrip("#").strip() for line in source.splitlines()
                    if line.startswith("# ")), "")
    return heading or name


def write_corpus(out_dir: Path, root: Path = ROOT) -> list[Path]:
    """Write every document of the corpus into ``out_dir`` (to look at or upload by hand)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, data in corpus_files(root).items():
        (out_dir / name).write_bytes(data)
        written.append(out_dir / name)
    return written


def extract_pages(files: dict[str, bytes]) -> dict[str, list[Page]]:
    """Filename -> its pages, as the service's own type sniffing and readers see them."""
    pages: dict[str, list[Page]] = {}
    with tempfile.TemporaryDirectory(prefix="docqa-business-") as tmp:
        for name, data in files.items():
            path = Path(tmp) / name
            path.write_bytes(data)
            pages[name] = read_document(path, sniff_bytes(name, data))
    return pages


def load(root: Path = ROOT) -> Business:
    files = corpus_files(root)
    pages = extract_pages(files)
    docs = [EvalDoc(name, name, full_text(pages[name]), {"corpus": "business"},
                    data=data, pages=tuple(p.text for p in pages[name]))
            for name, data in files.items()]
    raw = json.loads((root / "questions.json").read_text(encoding="utf-8"))
    questions: dict[str, list[EvalQuestion]] = {
        s: [] for s in (*QUESTION_SPLITS, *OTHER_COMPANIES)}
    info: dict[str, dict[str, Any]] = {}
    for entry in raw["questions"]:
        q = _question(entry, files)
        if q.qid in info:
            raise ValueError(f"question id {q.qid} appears twice")
        info[q.qid] = entry
        questions[entry["split"]].append(q)
    return Business(docs, questions, info)


def _question(entry: dict[str, Any], files: dict[str, bytes]) -> EvalQuestion:
    qid, kind, split = entry["id"], entry["kind"], entry["split"]
    if split not in (*QUESTION_SPLITS, *OTHER_COMPANIES) or kind not in KINDS:
        raise ValueError(f"{qid}: split must be one of {(*QUESTION_SPLITS, *OTHER_COMPANIES)} and "
                         f"kind one of {KINDS}")
    if kind == "answerable":
        answers = tuple(entry["answers"])
        sources = [(s["doc"], s["page"]) for s in entry.get("sources", [])]
        if not answers or not sources or any(
                doc not in files or not isinstance(page, int) for doc, page in sources):
            raise ValueError(f"{qid}: an answerable question needs answers and sources "
                             "(corpus file and page)")
        return EvalQuestion(qid, entry["question"], answers,
                            tuple(d for d, _ in sources), tuple(p for _, p in sources))
    if entry.get("answers") or entry.get("miss") not in MISSES or entry.get("near") not in files:
        raise ValueError(f"{qid}: an unanswerable question has no answers, a miss in {MISSES} "
                         "and the document it is near")
    return EvalQuestion(qid, entry["question"], (), ())


def select(data: Business, split: str) -> list[EvalQuestion]:
    """The questions of ``split`` (``all``: dev, dev2, test; ``train`` and ``dev3`` are only
    in their companies' corpora), answerable first, in file order."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}")
    pool = [q for s in QUESTION_SPLITS for q in data.questions[s]] if split == "all" \
        else data.questions[split]
    return [q for q in pool if q.answerable] + [q for q in pool if not q.answerable]


def score_business(questions: Sequence[EvalQuestion], records: Sequence[AskRecord]
                   ) -> dict[str, Any]:
    """evalkit's metrics (citation_hit with pages) plus ``answered_wrong``."""
    metrics = score(questions, records)
    wrong = answered_wrong(questions, records)
    keys = list(metrics)
    at = keys.index("citation_hit")
    ordered = {k: metrics[k] for k in keys[:at]}
    ordered["answered_wrong"] = wrong
    ordered.update({k: metrics[k] for k in keys[at:]})
    return ordered


def run(url: str, api_key: str, split: str = "test", baseline: bool = False,
        root: Path = ROOT, json_out: Path | None = None, details_out: Path | None = None
        ) -> dict[str, object]:
    """Ingest the corpus through the service, ask the split, score docqa (and the baseline)."""
    settings = Settings()
    data = load(root)
    questions = select(data, split)
    log(f"business {split}: {sum(q.answerable for q in questions)} answerable + "
        f"{sum(not q.answerable for q in questions)} unanswerable questions, "
        f"{len(data.docs)} documents")
    systems: dict[str, dict[str, object]] = {}
    details: dict[str, list[dict[str, object]]] = {}
    with DocqaClient(url, api_key, timeout=300.0, wait_on_429_s=600) as client:
        id_to_key = ingest(client, data.docs)
        records = ask_all(questions, docqa_asker(client, id_to_key), "docqa")
    systems["docqa"] = score_business(questions, records)
    details["docqa"] = _details(data, questions, records)
    if baseline:
        digest = hashlib.sha256(
            "".join(d.key + "\f".join(d.pages) for d in data.docs).encode()).hexdigest()
        bl = LlamaIndexBaseline(settings, data.docs, f"baseline_business_{digest[:16]}")
        b_records = ask_all(questions, bl.asker(), "baseline")
        systems["baseline"] = score_business(questions, b_records)
        details["baseline"] = _details(data, questions, b_records)
    commit = git_commit()
    grounding = load_model()
    result: dict[str, object] = {
        **systems,
        "config": {
            "benchmark": "business", "split": split,
            "n_questions": len(questions), "documents": len(data.docs),
            "formats": sorted({Path(d.filename).suffix for d in data.docs}),
            "citation_hit": "a citation names the gold document and the gold page",
            "url": url, "commit": commit,
            "retrieval_top_k": settings.retrieval.top_k,
            "generator": Path(settings.models.resolved_generator_path()).name,
            "embedding": Path(settings.models.resolved_embedding_path()).name,
            "max_tokens": settings.models.max_tokens,
            "grounding_model": grounding.info.get("trained_on") if grounding else None,
            "baseline": "llama-index VectorStoreIndex, default query engine (top-2), one "
                        "Document per page of the text the service's readers extract"
            if baseline else None,
            "cpus": os.cpu_count(), "python": platform.python_version(),
            "argv": _redacted(sys.argv[1:]),
        },
    }
    print(table(systems, metrics=BUSINESS_METRICS))  # noqa: T201 - the CLI's output
    write_json(json_out, result)
    write_json(details_out, details, indent=1)
    return result


def _details(data: Business, questions: Sequence[EvalQuestion], records: Sequence[AskRecord]
             ) -> list[dict[str, object]]:
    """evalkit's per-question records plus the question's kind, miss, gold page and split."""
    out = records_as_dicts(questions, records)
    for row in out:
        entry = data.info[str(row["qid"])]
        row.update({k: entry[k] for k in ("split", "kind", "miss", "sources", "near")
                    if k in entry})
    return out
