"""Fit the answer pipeline's record scorer: how likely a list item or table row holds the
answer, learnt from business questions, as the service sees them.

    DOCQA_DATA_DIR=… DOCQA_REDIS_URL=… DOCQA_CHROMA__PORT=… DOCQA_LOAD_GENERATOR=false \\
    python -m bench.train_scorer --business-tenant biz --train-tenant biztrain \\
        [--cache bench/out/scorer_rows.json] [--model service/answer/grounding_model.json]
    python -m bench.train_scorer --sentence --squad-tenant sq [--business-weight 5] …

The sentence scorer (``bench.train_grounding``) learnt from SQuAD's prose, which has no
lists or tables; a row ("Q3 2024 | Leeds | 2290") shares few words with the question that
it answers, and the prose scorer ranks it low. This script runs the pipeline's own ranking
step (``rank_candidates``: the stored units, their vectors and features) in process against
a running service's stores, for the business **dev** questions (in ``--business-tenant``)
and the training company's (``bench/business/train/``, in ``--train-tenant``), labels a
unit positive when it comes from a gold document and contains a gold answer (normalised as
the evaluation does), and fits a standardised logistic regression of the sentence scorer's
features on the record units alone. Sentences keep the sentence scorer, so SQuAD, all
prose, is scored as before. ``dev2`` is collected for the figures only, never fitted on;
``test`` is never read.

``--sentence`` refits the sentence scorer itself instead, on the same 3,000 SQuAD 2.0 dev
questions as ``bench.train_grounding`` (1,500 answerable and 1,500 unanswerable,
``random.Random(11)``, asked in ``--squad-tenant``) together with business dev and train, a
business question's units weighing ``--business-weight``; no record scorer is written.
Neither is the committed model: see docs/evaluation.md, "A scorer for business units".

The figures, written into the model's info and printed: the share of answerable questions
whose best-scored unit holds a gold answer, with the sentence scorer alone and with the
record scorer, on dev, dev2 (held out) and train, and across companies (fitted on dev alone,
measured on train: another company's documents and writers).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
from pathlib import Path
from typing import Any

from bench import business
from bench.evalkit import cached_rows, log, normalize_answer

SEED = 11
SPLITS = ("dev", "dev2", business.TRAIN_SPLIT)
FITTED = ("dev", business.TRAIN_SPLIT)


def holds(text: str, golds: tuple[str, ...]) -> bool:
    """Does ``text`` contain a gold answer, by the evaluation's normalisation (any length:
    the unit is ranked here, not the answer)."""
    norm = f" {normalize_answer(text)} "
    return any(g and f" {g} " in norm for g in map(normalize_answer, golds))


def question_units(pipeline: Any, tenant: str, question: str, golds: tuple[str, ...],
                   gold_docs: tuple[str, ...]) -> list[dict[str, Any]]:
    """Every unit the pipeline ranks for ``question``: kind, features and label."""
    from service.answer.grounding import expand_acronyms
    from service.answer.pipeline import rank_candidates

    settings = pipeline.settings.retrieval
    hits, q_vec = pipeline.search(tenant, question, settings.top_k)
    if not hits or max(h.score for h in hits) < settings.min_score:
        return []
    scored_as = expand_acronyms(question, [h.text for h in hits])
    ranked = rank_candidates(scored_as, q_vec, hits, pipeline.embedder, pipeline.model)
    return [{"kind": c.kind.value, "features": c.features,
             "label": bool(golds) and hits[c.hit_index].filename in gold_docs
             and holds(c.text, golds)} for c in ranked]


def collect(business_tenant: str, train_tenant: str, squad_tenant: str | None = None
            ) -> list[dict[str, Any]]:
    """One row per question: its split (``squad`` for SQuAD, with its article as ``group``),
    answerability and units."""
    from bench.train_gate import _pipeline

    pipeline = _pipeline()
    rows: list[dict[str, Any]] = []
    if squad_tenant:
        from bench import squad2

        rng = random.Random(SEED)
        dev = squad2.load().questions["dev"]
        questions = rng.sample([q for q in dev if q.answerable], 1500) + rng.sample(
            [q for q in dev if not q.answerable], 1500)
        # SQuAD's documents are named by their key ("12-004.txt")
        rows += [{"split": "squad", "group": q.doc_keys[0][:2], "answerable": q.answerable,
                  "units": question_units(pipeline, squad_tenant, q.question, q.answers,
                                          tuple(f"{k}.txt" for k in q.doc_keys))}
                 for q in questions]
        log(f"squad: {len(questions)} questions")
    for split in SPLITS:
        tenant = train_tenant if split == business.TRAIN_SPLIT else business_tenant
        corpus = business.load(business.root_of(split))
        rows += [{"split": split, "answerable": q.answerable,
                  "units": question_units(pipeline, tenant, q.question, q.answers, q.doc_keys)}
                 for q in corpus.questions[split]]
        log(f"business {split}: {len(corpus.questions[split])} questions")
    return rows


def fit_units(units: list[dict[str, Any]], features: tuple[str, ...],
              weights: list[float] | None = None) -> dict[str, Any]:
    """A standardised logistic regression of ``features`` on the labels of ``units``."""
    import numpy as np

    from bench.train_grounding import fit_logistic

    X = np.asarray([[u["features"][f] for f in features] for u in units], dtype=float)
    y = np.asarray([int(u["label"]) for u in units])
    return {"features": list(features), **fit_logistic(
        X, y, C=1.0, sample_weight=None if weights is None else np.asarray(weights))}


def fit_sentence(rows: list[dict[str, Any]], features: tuple[str, ...],
                 business_weight: float) -> dict[str, Any]:
    """The sentence scorer fitted on every unit of ``rows``, a business question's units
    weighing ``business_weight``."""
    return fit_units([u for r in rows for u in r["units"]], features,
                     [1.0 if r["split"] == "squad" else business_weight
                      for r in rows for _ in r["units"]])


def refit_sentence(rows: list[dict[str, Any]], sentence: dict[str, Any],
                   business_weight: float) -> dict[str, Any]:
    """``--sentence``: the sentence scorer on SQuAD, business dev and train, and its figures
    beside the committed one (SQuAD out of fold, five folds grouped by article)."""
    features = tuple(sentence["features"])
    squad = [r for r in rows if r["split"] == "squad"]
    business_rows = [r for r in rows if r["split"] in FITTED]
    groups = sorted({r["group"] for r in squad})
    fold_of = {g: i % 5 for i, g in enumerate(groups)}
    right = total = 0
    for k in range(5):
        held = [r for r in squad if fold_of[r["group"]] == k]
        params = fit_sentence([r for r in squad if fold_of[r["group"]] != k] + business_rows,
                              features, business_weight)
        n = sum(r["answerable"] for r in held)
        right += round(top_holds(params, None, held) * n)
        total += n
    refit = fit_sentence(squad + business_rows, features, business_weight)
    splits = ("squad", *SPLITS)
    info = {
        "trained_on": "SQuAD 2.0 dev (seed 11, 1,500 + 1,500) and business dev and "
                      f"{business.TRAIN_SPLIT}, every unit the pipeline ranks",
        "business_weight": business_weight,
        "top_unit_holds_answer": {
            "committed": {s: top_holds(sentence, None, [r for r in rows if r["split"] == s])
                          for s in splits},
            "refit": {**{s: top_holds(refit, None, [r for r in rows if r["split"] == s])
                         for s in SPLITS},
                      "squad_out_of_fold": round(right / max(1, total), 4)},
        },
    }
    return {**refit, "info": info}


def fit_records(rows: list[dict[str, Any]], features: tuple[str, ...]) -> dict[str, Any]:
    """The record scorer fitted on the record units of ``rows``."""
    return fit_units([u for r in rows for u in r["units"] if u["kind"] != "sentence"],
                     features)


def top_holds(sentence: dict[str, Any], record: dict[str, Any] | None,
              rows: list[dict[str, Any]]) -> float:
    """Share of the answerable ``rows`` whose best unit, each unit scored by its kind's
    scorer (``record`` None: the sentence scorer for all), holds a gold answer."""
    import numpy as np

    from bench.train_grounding import predict

    def prob(u: dict[str, Any]) -> float:
        params = record if record is not None and u["kind"] != "sentence" else sentence
        return float(predict(params, np.asarray([[u["features"][f]
                                                  for f in params["features"]]]))[0])

    answerable = [r for r in rows if r["answerable"]]
    right = sum(bool(r["units"]) and bool(max(r["units"], key=prob)["label"])
                for r in answerable)
    return round(right / max(1, len(answerable)), 4)


def fit(rows: list[dict[str, Any]], sentence: dict[str, Any]) -> dict[str, Any]:
    """The record scorer on dev and train, and its figures beside ``sentence`` alone."""
    by_split = {s: [r for r in rows if r["split"] == s] for s in SPLITS}
    features = tuple(sentence["features"])
    record = fit_records([r for s in FITTED for r in by_split[s]], features)
    on_dev = fit_records(by_split["dev"], features)
    train = business.TRAIN_SPLIT
    info = {
        "trained_on": "the list items and table rows the pipeline ranks for business dev "
                      f"and {train}",
        "units": sum(u["kind"] != "sentence" for s in FITTED for r in by_split[s]
                     for u in r["units"]),
        "top_unit_holds_answer": {
            "sentence_scorer_alone": {s: top_holds(sentence, None, by_split[s])
                                      for s in SPLITS},
            "with_record_scorer": {s: top_holds(sentence, record, by_split[s]) for s in SPLITS},
            f"record_scorer_fitted_on_dev_only_on_{train}": top_holds(sentence, on_dev,
                                                                      by_split[train]),
        },
    }
    return {**record, "info": info}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--sentence", action="store_true",
                    help="refit the sentence scorer (with SQuAD) instead of a record scorer")
    ap.add_argument("--squad-tenant", default="sq")
    ap.add_argument("--business-weight", type=float, default=5.0)
    ap.add_argument("--business-tenant", default="biz")
    ap.add_argument("--train-tenant", default="biztrain")
    ap.add_argument("--cache", default="bench/out/scorer_rows.json")
    ap.add_argument("--refresh", action="store_true")
    ap.add_argument("--model", default="service/answer/grounding_model.json")
    args = ap.parse_args(argv)
    os.environ.setdefault("DOCQA_LOAD_GENERATOR", "false")
    cache = Path(args.cache)
    rows = cached_rows(cache, args.refresh, lambda: collect(
        args.business_tenant, args.train_tenant, args.squad_tenant if args.sentence else None))
    model = json.loads(Path(args.model).read_text())
    if args.sentence:
        if not any(r["split"] == "squad" for r in rows):
            ap.error(f"{cache} holds no SQuAD questions: collect with --refresh")
        fitted = refit_sentence(rows, model["sentence"], args.business_weight)
    else:
        fitted = fit(rows, model["sentence"])
    info = fitted.pop("info")
    model["sentence" if args.sentence else "record"] = fitted
    model.setdefault("info", {})["sentence_refit" if args.sentence else "record"] = info
    Path(args.model).write_text(json.dumps(model, indent=1) + "\n")
    json.dump(info, sys.stdout, indent=2)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
