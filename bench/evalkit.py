"""A reusable harness for grounded-QA evaluations against a running docqa service.

A corpus is a list of :class:`EvalDoc` (one uploaded document each) and a question set is a
list of :class:`EvalQuestion` (gold answers + the keys of the documents that hold them;
no gold answers = unanswerable). :func:`ingest` uploads the corpus through the service's own
upload path, :func:`ask_all` asks every question through ``POST /v1/ask`` and
:func:`score` turns the records into the metrics of ``../shared/eval/README.md``. A baseline
system only has to produce the same :class:`AskRecord` per question to be scored the same
way. Corpus loaders live next to this module (``bench/squad2.py``).
"""

from __future__ import annotations

import json
import math
import re
import string
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx

from service.client import DocqaAPIError, DocqaClient, UploadAccepted

MAX_ANSWER_WORDS = 40
UPLOAD_WORKERS = 8


def log(msg: str) -> None:
    sys.stderr.write(f"[eval] {msg}\n")
    sys.stderr.flush()


@dataclass(frozen=True)
class EvalDoc:
    """One document of a corpus.

    ``text`` is what the document says (the baseline indexes it). ``data`` is the file to
    upload, for a document that is not plain text (a PDF, a DOCX): None uploads ``text`` as
    UTF-8. ``pages`` is the text page by page where pages matter (a PDF); empty = one piece.
    """

    key: str  # stable identity inside the corpus (e.g. "07-012", "board-minutes.pdf")
    filename: str  # the name it is uploaded under; its suffix tells the service the format
    text: str
    metadata: dict[str, Any] = field(default_factory=dict)
    data: bytes | None = None
    pages: tuple[str, ...] = ()

    def payload(self) -> bytes:
        """The bytes uploaded for this document."""
        return self.text.encode("utf-8") if self.data is None else self.data


@dataclass(frozen=True)
class EvalQuestion:
    qid: str
    question: str
    answers: tuple[str, ...]  # empty = unanswerable
    doc_keys: tuple[str, ...]  # documents that hold the answer (the question's own paragraph)
    # the page of each of doc_keys that holds the answer (None: any page); empty: not checked
    doc_pages: tuple[int | None, ...] = ()

    @property
    def answerable(self) -> bool:
        return bool(self.answers)


@dataclass
class AskRecord:
    qid: str
    status: str  # answered | not_found | error
    answer: str
    cited_keys: list[str]
    seconds: float
    error: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
    cited_pages: list[int | None] = field(default_factory=list)  # parallel to cited_keys


# ------------------------------------------------------------------ metrics (SQuAD scorer)

_ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)
_PUNCT = set(string.punctuation)


def normalize_answer(text: str) -> str:
    """Lower-case, strip punctuation and articles, collapse white space (official scorer)."""
    text = text.lower()
    text = "".join(ch for ch in text if ch not in _PUNCT)
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def token_f1(prediction: str, gold: str) -> float:
    pred, ref = normalize_answer(prediction).split(), normalize_answer(gold).split()
    if not pred or not ref:
        return float(pred == ref)
    common = Counter(pred) & Counter(ref)
    same = sum(common.values())
    if same == 0:
        return 0.0
    precision, recall = same / len(pred), same / len(ref)
    return 2 * precision * recall / (precision + recall)


_CITE_MARK = re.compile(r"\s*\[\d{1,3}\]")


def answer_text(answer: str) -> str:
    """The answer without its citation marks (``[1]``), which are not part of the text."""
    return _CITE_MARK.sub("", answer).strip()


def is_correct(answer: str, golds: Iterable[str]) -> bool:
    text = answer_text(answer)
    if len(text.split()) > MAX_ANSWER_WORDS:
        return False
    norm = f" {normalize_answer(text)} "
    return any(g_norm and f" {g_norm} " in norm for g_norm in map(normalize_answer, golds))


def cites_gold(q: EvalQuestion, r: AskRecord) -> bool:
    """A citation points to a gold document (and, where the question gives one, its page)."""
    if not q.doc_pages:
        return bool(set(r.cited_keys) & set(q.doc_keys))
    gold = set(zip(q.doc_keys, q.doc_pages, strict=True))
    pages = r.cited_pages or [None] * len(r.cited_keys)
    return any((key, page) in gold or (key, None) in gold
               for key, page in zip(r.cited_keys, pages, strict=True))


def answered_wrong(questions: Sequence[EvalQuestion], records: Sequence[AskRecord]
                   ) -> float | None:
    """Share of all questions answered with something wrong: an answerable question answered
    incorrectly (the rule of ``answerable_correct``) or an unanswerable one answered at all.
    The harm a user meets: a confident answer that is not in the documents."""
    by_qid = {r.qid: r for r in records}
    wrong = 0
    for q in questions:
        r = by_qid[q.qid]
        if r.status == "answered":
            wrong += not (q.answerable and is_correct(r.answer, q.answers))
    return _ratio(wrong, len(questions))


def percentile(values: Sequence[float], pct: float) -> float | None:
    """Linear-interpolation percentile (numpy's default); None for no data."""
    if not values:
        return None
    ordered = sorted(values)
    pos = (len(ordered) - 1) * pct / 100.0
    lo, hi = math.floor(pos), math.ceil(pos)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def _ratio(num: int, den: int) -> float | None:
    return round(num / den, 4) if den else None


def score(questions: Sequence[EvalQuestion], records: Sequence[AskRecord]) -> dict[str, Any]:
    """The metrics of ../shared/eval/README.md over one system's records."""
    by_qid = {r.qid: r for r in records}
    answerable = [q for q in questions if q.answerable]
    impossible = [q for q in questions if not q.answerable]
    correct = abstained_ans = answered_ans = cited_ok = abstained_imp = errors = 0
    f1_sum = 0.0
    for q in answerable:
        r = by_qid[q.qid]
        errors += r.status == "error"
        if r.status == "answered":
            answered_ans += 1
            correct += is_correct(r.answer, q.answers)
            f1_sum += max(token_f1(answer_text(r.answer), g) for g in q.answers)
            cited_ok += cites_gold(q, r)
        elif r.status == "not_found":
            abstained_ans += 1
    for q in impossible:
        r = by_qid[q.qid]
        errors += r.status == "error"
        abstained_imp += r.status == "not_found"
    seconds = [r.seconds for r in records if r.status != "error"]
    return {
        "answerable_correct": _ratio(correct, len(answerable)),
        "answerable_f1": round(f1_sum / len(answerable), 4) if answerable else None,
        "impossible_abstained": _ratio(abstained_imp, len(impossible)),
        "false_abstention": _ratio(abstained_ans, len(answerable)),
        "citation_hit": _ratio(cited_ok, answered_ans),
        "ask_p50_s": _round(percentile(seconds, 50)),
        "ask_p95_s": _round(percentile(seconds, 95)),
        "n_answerable": len(answerable),
        "n_impossible": len(impossible),
        "errors": errors,
    }


def _round(x: float | None, digits: int = 3) -> float | None:
    return None if x is None else round(x, digits)


METRICS = ("answerable_correct", "answerable_f1", "impossible_abstained", "false_abstention",
           "citation_hit", "ask_p50_s", "ask_p95_s")
LOWER_IS_BETTER = {"false_abstention", "ask_p50_s", "ask_p95_s"}


def table(systems: dict[str, dict[str, Any]], targets: dict[str, tuple[str, float]] | None = None,
          metrics: Sequence[str] = METRICS) -> str:
    """A plain-text table: one row per metric, one column per system (+ target)."""
    names = list(systems)
    head = ["metric", *names] + (["target"] if targets else [])
    rows = [head]
    for m in metrics:
        row = [m] + [_fmt(systems[s].get(m)) for s in names]
        if targets:
            op, val = targets.get(m, ("", None))
            row.append(f"{op} {val}" if op else "")
        rows.append(row)
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows)


def _fmt(v: Any) -> str:
    return "-" if v is None else (f"{v:.3f}" if isinstance(v, float) else str(v))


# ------------------------------------------------------------------ running against docqa


def ingest(client: DocqaClient, docs: Sequence[EvalDoc], ready_timeout: float = 3600.0
           ) -> dict[str, str]:
    """Upload every document (identical bytes already in the tenant come back as the same id,
    so re-running against one tenant re-uses the earlier ingest); wait until all are ready.
    Returns document id → corpus key. Raises when any document failed or was refused."""
    ids: dict[str, str] = {}
    errors: list[str] = []
    t0 = time.perf_counter()

    def upload(d: EvalDoc) -> UploadAccepted:
        return client.upload_bytes(d.filename, d.payload(), d.metadata or None)

    with ThreadPoolExecutor(max_workers=UPLOAD_WORKERS) as pool:
        futures = {pool.submit(upload, d): d for d in docs}
        for i, fut in enumerate(as_completed(futures), start=1):
            d = futures[fut]
            try:
                ids[fut.result()["id"]] = d.key
            except (DocqaAPIError, httpx.HTTPError) as exc:
                errors.append(f"{d.filename}: {exc}")
            if i % 250 == 0 or i == len(docs):
                log(f"uploaded {i}/{len(docs)} ({time.perf_counter() - t0:.0f}s)")
    if errors:
        raise RuntimeError(f"{len(errors)} uploads refused, e.g. {errors[:3]}")
    last = [0.0]

    def progress(done: int, total: int) -> None:
        if time.perf_counter() - last[0] > 10 or done == total:
            last[0] = time.perf_counter()
            log(f"ready {done}/{total} ({last[0] - t0:.0f}s)")

    final = client.wait_ready(list(ids), timeout=ready_timeout, on_progress=progress)
    failed = [d for d in final.values() if d["status"] != "ready"]
    if failed:
        raise RuntimeError(f"{len(failed)} documents failed, e.g. {failed[0].get('error')}")
    return ids


def ask_all(
    questions: Sequence[EvalQuestion],
    ask: Callable[[EvalQuestion], AskRecord],
    label: str,
) -> list[AskRecord]:
    """Ask sequentially (latency is measured per question on an otherwise idle system)."""
    out: list[AskRecord] = []
    t0 = time.perf_counter()
    for i, q in enumerate(questions, start=1):
        out.append(ask(q))
        if i % 50 == 0 or i == len(questions):
            log(f"{label}: asked {i}/{len(questions)} ({time.perf_counter() - t0:.0f}s)")
    return out


def docqa_asker(client: DocqaClient,
                id_to_key: dict[str, str]) -> Callable[[EvalQuestion], AskRecord]:
    def ask(q: EvalQuestion) -> AskRecord:
        t = time.perf_counter()
        try:
            res = client.ask(q.question)
        except (DocqaAPIError, httpx.HTTPError) as exc:
            return AskRecord(q.qid, "error", "", [], time.perf_counter() - t, error=str(exc))
        seconds = time.perf_counter() - t
        keys = [id_to_key.get(c["document_id"], c["document_id"]) for c in res["citations"]]
        return AskRecord(q.qid, res["status"], res["answer"], keys, seconds,
                         extra={"timings": res.get("timings", {})},
                         cited_pages=[c.get("page") for c in res["citations"]])
    return ask


def records_as_dicts(questions: Sequence[EvalQuestion], records: Sequence[AskRecord]
                     ) -> list[dict[str, Any]]:
    by_qid = {q.qid: q for q in questions}
    return [{**asdict(r), "question": by_qid[r.qid].question,
             "gold": list(by_qid[r.qid].answers), "gold_keys": list(by_qid[r.qid].doc_keys)}
            for r in records]


def git_commit() -> str:
    """The checkout's short commit, for a run's config ("" outside a git checkout)."""
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, cwd=Path(__file__).parent, check=False).stdout.strip()
    except OSError:
        return ""


def cached_rows(path: Path, refresh: bool,
                collect: Callable[[], list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """What ``collect`` returns, kept as JSON at ``path`` and read back from there on later
    runs unless ``refresh``: collecting runs the pipeline over thousands of questions, while
    a refit from the rows takes seconds."""
    if path.exists() and not refresh:
        rows: list[dict[str, Any]] = json.loads(path.read_text())
        log(f"read {len(rows)} cached questions from {path}")
        return rows
    rows = collect()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(rows))
    return rows


def write_json(path: Path | None, data: object, indent: int = 2) -> None:
    """``data`` as JSON at ``path`` (folders made); nothing when no path was asked for."""
    if path is None:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=indent) + "\n")
