"""Would the span reader's "answer here" score choose the evidence unit better than the
sentence scorer alone? Measured on dev splits, in process, against a running service's
stores (as ``bench.train_gate``; the tenants must already hold the corpora).

    DOCQA_DATA_DIR=… DOCQA_REDIS_URL=… DOCQA_CHROMA__PORT=… DOCQA_LOAD_GENERATOR=false \\
    python -m bench.rerank_eval --adapter READER.npz --squad-tenant sq --business-tenant biz \\
        [--squad-fold B] [--n 400] [--depth 5] [--cache F] [--json F]

For each question the pipeline runs up to its choice of unit; for each of the best
``--depth`` units it records the scorer's probability, the qualifier check's verdict, the
gate's probability were that unit chosen, whether the unit (as the service answers with it)
holds a gold answer, and the reader's :func:`service.answer.reader.answer_score`. The
choice and the gate are then replayed with the best units reordered by

    logit(scorer probability) + weight × reader score

for each weight of a grid (0 is the service as it is), and with the chosen unit's reader
score also held to a floor (``-inf``: the gate alone), giving the same figures as the
evals: correct among answerable questions, abstained among unanswerable ones, answered
wrong among all; keys are ``weight/floor``. Use a reader that was not trained on the
questions measured: ``python -m bench.train_reader --train squad:A,business:dev2
--negatives 2 --out F`` leaves SQuAD's half B and business dev out.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import sys
from pathlib import Path
from typing import Any

from bench import business, squad2
from bench.evalkit import is_correct, log

WEIGHTS = (0.0, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 100.0)
# a reader score the chosen unit must also reach to be answered (-inf: the gate alone)
FLOORS = (-math.inf, -6.0, -4.0, -2.0, 0.0, 2.0)


def question_row(pipeline: Any, reader: Any, tenant: str, question: str,
                 golds: tuple[str, ...], depth: int) -> dict[str, Any]:
    from service.answer.grounding import expand_acronyms, gate_features
    from service.answer.pipeline import focus_window, gate_threshold, rank_candidates
    from service.answer.qualifiers import analyse, check

    settings = pipeline.settings.retrieval
    row: dict[str, Any] = {"question": question, "answerable": bool(golds), "cands": []}
    hits, q_vec = pipeline.search(tenant, question, settings.top_k)
    if not hits or max(h.score for h in hits) < settings.min_score:
        return {**row, "stage": "retrieval"}
    scored_as = expand_acronyms(question, [h.text for h in hits])
    ranked = rank_candidates(scored_as, q_vec, hits, pipeline.embedder, pipeline.model)
    q = analyse(question)
    top = ranked[:depth]
    reader_scores = [r.score for r in reader.read(question, [c.text for c in top],
                                                  [c.context.describe() for c in top])]
    texts, scores = [h.text for h in hits], [h.score for h in hits]
    for i, c in enumerate(top):
        hit = hits[c.hit_index]
        verdict = check(q, c.text, c.kind, c.context, hit.text, hit.filename, c.start, c.end)
        order = [c, *ranked[:i], *ranked[i + 1:]]
        gate = pipeline.model.gate
        row["cands"].append({
            "score": c.score, "ok": verdict.ok, "other": bool(verdict.other_value),
            "place": [hit.filename, list(c.context.section)],
            "gate": gate.prob(gate_features(scored_as, order, texts, scores)),
            "threshold": gate_threshold(gate.threshold, c.kind, settings.record_gate_scale),
            "kind": c.kind.value,
            "holds": bool(golds) and is_correct(focus_window(c.text.rstrip("."), question),
                                                golds),
            "reader": reader_scores[i],
        })
    return {**row, "stage": "ranked"}


def replay(row: dict[str, Any], weight: float, reader_floor: float = -math.inf,
           walk: int = 5, record_pass: float = math.inf) -> tuple[bool, bool]:
    """(answered, correct) of ``row`` with its units reordered by ``weight``, as
    ``service.answer.pipeline.choose`` (its walk, on the recorded verdicts) and the gate
    decide, the chosen unit's reader score also held to ``reader_floor``; the check tries
    the ``walk`` best of the reordered units (``retrieval.qualifier_depth``). A record the
    reordering read passes a doubting gate at ``record_pass`` (``retrieval.
    record_reader_pass``), as ``gate_passes`` lets it."""
    from core.units import UnitKind
    from service.answer.pipeline import first_passing, fused_score, gate_passes
    from service.answer.qualifiers import Verdict

    cands = row["cands"]
    if row["stage"] != "ranked" or not cands:
        return False, False

    order = sorted(range(len(cands)), reverse=True,
                   key=lambda i: fused_score(cands[i]["score"], cands[i]["reader"], weight)) \
        if weight else list(range(len(cands)))
    tried = [cands[i] for i in order][:walk]
    chosen, _ = first_passing(
        [c["score"] for c in tried], [json.dumps(c["place"]) for c in tried],
        lambda i: Verdict(tried[i]["ok"], "", tried[i]["other"]))
    if chosen is None:
        return False, False
    c = tried[chosen]
    # the threshold is recorded scaled already; the reader runs only when it reorders
    passes = gate_passes(c["gate"], c["threshold"], UnitKind(c.get("kind", "sentence")), 1.0,
                         c["reader"] if weight else None, record_pass)
    answered = passes and c["reader"] >= reader_floor
    return answered, answered and c["holds"]


def figures(rows: list[dict[str, Any]], weight: float, reader_floor: float = -math.inf,
            walk: int = 5, record_pass: float = math.inf) -> dict[str, Any]:
    ans = [r for r in rows if r["answerable"]]
    imp = [r for r in rows if not r["answerable"]]
    out = [replay(r, weight, reader_floor, walk, record_pass) for r in rows]
    by_id = {id(r): o for r, o in zip(rows, out, strict=True)}
    correct = sum(by_id[id(r)][1] for r in ans)
    answered_ans = sum(by_id[id(r)][0] for r in ans)
    abstained = sum(not by_id[id(r)][0] for r in imp)
    wrong = (answered_ans - correct) + (len(imp) - abstained)
    return {
        "correct": round(correct / max(1, len(ans)), 3),
        "false_abstention": round((len(ans) - answered_ans) / max(1, len(ans)), 3),
        "abstained": round(abstained / max(1, len(imp)), 3) if imp else None,
        "answered_wrong": round(wrong / max(1, len(rows)), 3),
        "n": [len(ans), len(imp)],
    }


def collect(args: argparse.Namespace) -> dict[str, list[dict[str, Any]]]:
    from core.settings import Settings
    from service.answer.reader import SpanReader
    from service.api.components import build_components

    settings = Settings()
    pipeline = build_components(settings).answers
    reader = SpanReader(settings.models.resolved_embedding_path(), settings.onnx_cache_dir,
                        adapter=Path(args.adapter))
    depth = args.depth
    sets: dict[str, list[dict[str, Any]]] = {}
    data = squad2.load()
    article = {d.key: d.metadata["article"] for d in data.docs}
    dev = [q for q in data.questions["dev"]
           if ("A" if article[q.doc_keys[0]] % 4 == 0 else
               "B" if article[q.doc_keys[0]] % 4 == 2 else "") == args.squad_fold]
    rng = random.Random(7)
    ans = [q for q in dev if q.answerable]
    imp = [q for q in dev if not q.answerable]
    sample = rng.sample(ans, min(args.n, len(ans))) + rng.sample(imp, min(args.n, len(imp)))
    rows = []
    for i, q in enumerate(sample, start=1):
        rows.append(question_row(pipeline, reader, args.squad_tenant, q.question, q.answers,
                                 depth))
        if i % 100 == 0:
            log(f"squad {args.squad_fold}: {i}/{len(sample)}")
    sets[f"squad:{args.squad_fold}"] = rows
    bdata = business.load()
    for split in args.business.split(","):
        if split == "test":
            raise SystemExit("the business test split is never tuned on")
        sets[f"business:{split}"] = [
            question_row(pipeline, reader, args.business_tenant, q.question, q.answers, depth)
            for q in bdata.questions[split]]
    return sets


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--adapter", required=True, help="the reader's adapter (.npz)")
    ap.add_argument("--squad-tenant", default="sq")
    ap.add_argument("--business-tenant", default="biz")
    ap.add_argument("--squad-fold", default="B", choices=("A", "B"))
    ap.add_argument("--business", default="dev,dev2")
    ap.add_argument("--n", type=int, default=400, help="answerable and unanswerable each")
    ap.add_argument("--depth", type=int, default=5,
                    help="units recorded per question: the reader reorders this many")
    ap.add_argument("--walk", type=int, default=5,
                    help="of those, how many the check tries (retrieval.qualifier_depth)")
    ap.add_argument("--cache", default="bench/out/rerank_rows.json")
    ap.add_argument("--refresh", action="store_true")
    ap.add_argument("--json")
    args = ap.parse_args(argv)
    cache = Path(args.cache)
    if cache.exists() and not args.refresh:
        sets = json.loads(cache.read_text())
    else:
        os.environ.setdefault("DOCQA_LOAD_GENERATOR", "false")
        sets = collect(args)
        cache.parent.mkdir(parents=True, exist_ok=True)
        cache.write_text(json.dumps(sets))
    from core.settings import Settings

    record_pass = Settings().retrieval.record_reader_pass
    result = {name: {f"{w}/{f}": figures(rows, w, f, args.walk, record_pass)
                     for w in WEIGHTS for f in FLOORS}
              for name, rows in sets.items()}
    print(json.dumps(result, indent=1))  # noqa: T201 - the command's output
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
