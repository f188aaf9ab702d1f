"""Where the answer pipeline loses a business split's answers, question by question, in
process against a running service's stores (as ``bench.train_gate`` runs it):

    DOCQA_DATA_DIR=… DOCQA_REDIS_URL=… DOCQA_CHROMA__PORT=… DOCQA_LOAD_GENERATOR=false \\
    python -m bench.where_lost --split train --tenant biztrain [--json F]

For each answerable question: the place, in the order the qualifier check tries the units
(the scorer's, reordered by the reader), of the first unit holding a gold answer (``first``,
``top5``, ``deeper``, or ``none`` retrieved); what the check did (passed that unit, passed
another, passed none); and for a unit it passed, whether the gate let it through. For each
near miss: where it stopped (retrieval, check, gate) or that it was answered. A gold answer
is found by the evaluation's own rule, so a unit of another row that states the same figure
also counts as holding it. Never run on ``test``.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from bench import business
from bench.evalkit import is_correct


def place(rank: int | None) -> str:
    if rank is None:
        return "none"
    return "first" if rank == 0 else "top5" if rank < 5 else "deeper"


def outcome(chosen: int | None, rank: int | None) -> str:
    if chosen is None:
        return "check passed none"
    return "check passed it" if chosen == rank else "check passed another"


def trace(pipeline: Any, tenant: str, question: str, golds: tuple[str, ...]) -> dict[str, Any]:
    """One question through retrieval, scoring, reordering, the check and the gate."""
    from service.answer.grounding import expand_acronyms, gate_features
    from service.answer.pipeline import choose, gate_passes, rank_candidates, rerank
    from service.answer.qualifiers import analyse
    from service.answer.span import UnitRead

    r = pipeline.settings.retrieval
    row: dict[str, Any] = {"question": question, "answerable": bool(golds)}
    hits, q_vec = pipeline.search(tenant, question, r.top_k)
    if not hits or max(h.score for h in hits) < r.min_score:
        return {**row, "stage": "retrieval", "place": "none"}
    scored_as = expand_acronyms(question, [h.text for h in hits])
    ranked = rank_candidates(scored_as, q_vec, hits, pipeline.embedder, pipeline.model)
    tried = ranked
    reads: list[UnitRead] = []
    if r.reader_rerank_weight and pipeline.reader is not None:
        tried, reads = rerank(question, ranked, pipeline.reader, r.reader_rerank_depth,
                              r.reader_rerank_weight)
    rank = next((i for i, c in enumerate(tried) if golds and is_correct(c.text, golds)), None)
    chosen, rejected = choose(analyse(question), tried, hits, r.qualifier_depth)
    row.update(place=place(rank), rank=rank, chosen=chosen, rejected=rejected[:6],
               check=outcome(chosen, rank) if golds else None)
    if chosen is None:
        return {**row, "stage": "check"}
    first = tried[chosen]
    ordered = [first, *(c for c in ranked if c is not first)]
    p = pipeline.model.gate.prob(gate_features(scored_as, ordered, [h.text for h in hits],
                                               [h.score for h in hits]))
    passed = gate_passes(p, pipeline.model.gate.threshold, first.kind, r.record_gate_scale,
                         reads[chosen].score if chosen < len(reads) else None,
                         r.record_reader_pass)
    return {**row, "stage": "answered" if passed else "gate", "gate_p": round(p, 3),
            "unit": first.text[:200]}


def summarise(rows: list[dict[str, Any]]) -> dict[str, Any]:
    answerable = [r for r in rows if r["answerable"]]
    return {
        "answerable": len(answerable),
        "first_gold_unit": dict(Counter(r["place"] for r in answerable)),
        "check": dict(Counter(f"{r['place']}: {r['check']}" for r in answerable
                              if r.get("check"))),
        "stage_answerable": dict(Counter(r["stage"] for r in answerable)),
        "gate_refused_right_unit": sum(r["stage"] == "gate" and r["check"] == "check passed it"
                                       for r in answerable),
        "stage_near_misses": dict(Counter(r["stage"] for r in rows if not r["answerable"])),
    }


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawTextHelpFormatter)
    # not dev3, which is kept for checking fits, nor test
    ap.add_argument("--split", default="train", choices=["dev", "dev2", business.TRAIN_SPLIT])
    ap.add_argument("--tenant", required=True, help="the tenant that holds the split's corpus")
    ap.add_argument("--json", dest="json_out", default=None, help="write every question here")
    args = ap.parse_args(argv)
    from bench.train_gate import _pipeline

    pipeline = _pipeline()
    data = business.load(business.root_of(args.split))
    rows = [{"qid": q.qid, **trace(pipeline, args.tenant, q.question, q.answers)}
            for q in data.questions[args.split]]
    summary = summarise(rows)
    json.dump(summary, sys.stdout, indent=2)
    sys.stdout.write("\n")
    if args.json_out:
        Path(args.json_out).write_text(json.dumps({"summary": summary, "questions": rows},
                                                  indent=1))


if __name__ == "__main__":
    main()
