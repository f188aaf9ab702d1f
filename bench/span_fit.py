"""Fit and check the ranking of short-answer candidates (``service/answer/span.py``) offline.

    python -m bench.span_eval --n 100 --answerable-only --dump DUMP   # dev only
    python -m bench.span_fit DUMP [DUMP ...] [--json OUT]

The dump holds, per unit, its tagging, its candidates and the model's share of each. This
script computes ``span_features`` for them, fits the log-linear weights of ``rank_spans``
(conditional likelihood of the candidates that match a gold answer best) on one half of the
SQuAD 2.0 dev questions and checks them on the other half, both ways round; then, for the
fitted weights and the current ones, it sweeps the fallback threshold: below it, the answer is
the whole unit (``unit``) or the shortest run of the unit covering the two best candidates
(``cover``). SQuAD figures are pooled over both checks (each unit answered by the weights
fitted on the other half). Business dev rows are only scored (never fitted on). Halves are
by a hash of the question id, so they are the same in every run.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import statistics
from pathlib import Path
from typing import Any

from bench.evalkit import is_correct, token_f1
from service.answer.span import (
    FEATURES,
    WEIGHTS,
    WEIGHTS_NO_MODEL,
    Tagged,
    rank_spans,
    span_features,
)

THRESHOLDS = (0.0, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)


def half(qid: str) -> int:
    return hashlib.sha256(qid.encode()).digest()[0] % 2


def prepared(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Answerable rows with candidates, each with its features and per-candidate F1."""
    out = []
    for r in rows:
        if not r["golds"] or not r["spans"]:
            continue
        tagged = Tagged(tuple(map(tuple, r["tokens"])), tuple(map(tuple, r["entities"])))
        spans = [tuple(sp) for sp in r["spans"]]
        # shares[0] is NOT FOUND's; the candidates' are the rest
        greedy = r["greedy"] - 1 if r["greedy"] > 0 else None
        feats = span_features(r["question"], r["unit"], tagged, spans, r["shares"][1:], greedy)
        f1 = [max(token_f1(r["unit"][s:e], g) for g in r["golds"]) for s, e in spans]
        out.append({**r, "spans": spans, "feats": feats, "f1s": f1,
                    "not_found": r["greedy"] == 0})
    return out


def fit(rows: list[dict[str, Any]], names: tuple[str, ...], l2: float = 0.1,
        steps: int = 300, rate: float = 0.5) -> dict[str, float]:
    """Weights maximising the mean log-probability of each unit's best-F1 candidates (units
    whose best candidate has F1 below 0.5 teach nothing and are skipped), L2-regularised,
    by plain gradient ascent."""
    data = []
    for r in rows:
        best = max(r["f1s"])
        if best < 0.5:
            continue
        xs = [[f[k] for k in names] for f in r["feats"]]
        data.append((xs, [i for i, v in enumerate(r["f1s"]) if v == best]))
    w = [1.0 if k == "lm" else 0.0 for k in names]
    for _ in range(steps):
        grad = [-l2 * wk for wk in w]
        for xs, pos in data:
            scores = [sum(a * b for a, b in zip(w, x, strict=True)) for x in xs]
            top = max(scores)
            exp = [math.exp(s - top) for s in scores]
            z, zp = sum(exp), sum(exp[i] for i in pos)
            for k in range(len(w)):
                mean_all = sum(e * x[k] for e, x in zip(exp, xs, strict=True)) / z
                mean_pos = sum(exp[i] * xs[i][k] for i in pos) / zp
                grad[k] += (mean_pos - mean_all) / len(data)
        w = [wk + rate * g for wk, g in zip(w, grad, strict=True)]
    return {k: round(v, 3) for k, v in zip(names, w, strict=True)}


def answer(r: dict[str, Any], weights: dict[str, float] | None, tau: float, fallback: str,
           nf_unit: bool) -> str:
    """The policy's answer: the best candidate (by ``weights``; None: the model's greedy
    choice with its confidence) if its probability reaches ``tau``, else the fallback."""
    if nf_unit and r["not_found"]:
        return str(r["unit"])
    if weights is None:  # the greedy choice first, then the others by their share
        order = sorted(range(len(r["spans"])),
                       key=lambda k: (k != (r["greedy"] - 1), -r["shares"][k + 1]))
        ranked = [(order[0], float(r["confidence"]))] + [(k, 0.0) for k in order[1:]]
    else:
        ranked = rank_spans(r["feats"], weights)
    i, p = ranked[0]
    if p >= tau:
        s, e = r["spans"][i]
        return str(r["unit"][s:e])
    if fallback.startswith("cover") and len(ranked) > 1:
        top = [r["spans"][k] for k, _ in ranked[:int(fallback[5:] or 2)]]
        return str(r["unit"][min(s for s, _ in top):max(e for _, e in top)])
    return str(r["unit"])


def score(rows: list[dict[str, Any]], all_rows: list[dict[str, Any]],
          weights: dict[str, float] | None, tau: float, fallback: str, nf_unit: bool
          ) -> dict[str, float]:
    """Answerable correct and F1 over ``all_rows``' answerable units (a unit without
    candidates keeps the unit), answering ``rows`` with the policy."""
    chosen = {r["qid"]: answer(r, weights, tau, fallback, nf_unit) for r in rows}
    ans = [r for r in all_rows if r["golds"]]
    texts = [chosen.get(r["qid"], r["unit"]) for r in ans]
    return {
        "answerable_correct": round(statistics.fmean(
            is_correct(t, r["golds"]) for t, r in zip(texts, ans, strict=True)), 3),
        "answerable_f1": round(statistics.fmean(
            max(token_f1(t, g) for g in r["golds"]) for t, r in zip(texts, ans, strict=True)), 3),
        "n": len(ans),
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(prog="python -m bench.span_fit", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dump", type=Path, nargs="+",
                    help="bench.span_eval --dump files (JSON lines, one unit each)")
    ap.add_argument("--features", default=",".join(FEATURES))
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    names = tuple(args.features.split(","))
    dump: dict[str, list[dict[str, Any]]] = {}
    for path in args.dump:
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                row = json.loads(line)
                dump.setdefault(row["set"], []).append(row)
    result: dict[str, Any] = {"features": names, "current_weights": WEIGHTS}
    squad = dump.get("squad2", [])
    rows = prepared(squad)
    no_model = tuple(k for k in names if k not in ("lm", "greedy"))
    if rows:
        fits = {(kind, h): fit([r for r in rows if half(r["qid"]) == h], feats)
                for kind, feats in (("fitted", names), ("no_model", no_model)) for h in (0, 1)}
        result["fitted"] = {f"{kind} half{h}": w for (kind, h), w in fits.items()}
        result["fitted"]["fitted all"] = fit(rows, names)
        result["fitted"]["no_model all"] = fit(rows, no_model)
        table: dict[str, Any] = {}
        for name in ("greedy", "current", "current_no_model", "fitted", "no_model"):
            for fallback in ("unit", "cover", "cover3"):
                for nf in (False, True):
                    for tau in THRESHOLDS:
                        halves = []
                        for h in (0, 1):  # fitted on half h, checked on the other
                            held = [r for r in rows if half(r["qid"]) != h]
                            held_all = [r for r in squad if half(r["qid"]) != h]
                            w = fits.get((name, h)) if name in ("fitted", "no_model") else {
                                "current": WEIGHTS, "current_no_model": WEIGHTS_NO_MODEL
                            }.get(name)
                            halves.append(score(held, held_all, w, tau, fallback, nf))
                        table[f"{name} {fallback} nf_unit={nf} {tau}"] = {
                            "checked_on_half1": halves[0], "checked_on_half0": halves[1],
                            # pooled: each unit answered by the weights of the other half
                            "answerable_correct": round(sum(
                                x["answerable_correct"] * x["n"] for x in halves)
                                / sum(x["n"] for x in halves), 3),
                            "answerable_f1": round(sum(
                                x["answerable_f1"] * x["n"] for x in halves)
                                / sum(x["n"] for x in halves), 3)}
        result["squad2_heldout"] = table
        result["squad2_unit"] = score([], squad, {}, 0, "unit", False)
        result["squad2_unit_halves"] = [score([], [r for r in squad if half(r["qid"]) == h], {},
                                              0, "unit", False) for h in (0, 1)]
        result["squad2_one_candidate"] = round(
            sum(len(r["spans"]) == 1 for r in rows) / len(rows), 3)
    biz = dump.get("business", [])
    brows = prepared(biz)
    if brows:
        fitted = result.get("fitted", {})
        result["business"] = {
            f"business {name} {fallback} {tau}": score(brows, biz, w, tau, fallback, True)
            for name, w in (("greedy", None), ("current", WEIGHTS),
                            ("current_no_model", WEIGHTS_NO_MODEL),
                            ("fitted", fitted.get("fitted all", WEIGHTS)),
                            ("no_model", fitted.get("no_model all", WEIGHTS_NO_MODEL)))
            for fallback in ("unit", "cover", "cover3") for tau in THRESHOLDS}
        result["business_unit"] = score([], biz, {}, 0, "unit", False)
    for key, v in {**result.get("squad2_heldout", {}), **result.get("business", {})}.items():
        print(f"{key:40s} {v['answerable_correct']:.3f} {v['answerable_f1']:.3f}")  # noqa: T201
    for key in ("fitted", "squad2_unit", "squad2_unit_halves", "business_unit",
                "squad2_one_candidate"):
        print(key, json.dumps(result.get(key)))  # noqa: T201
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=1), encoding="utf-8")
    return result


if __name__ == "__main__":
    main()
