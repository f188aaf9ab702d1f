"""Train the answer pipeline's sentence scorer and answerability gate on the SQuAD 2.0 dev split.

    python -m bench.train_grounding --url http://127.0.0.1:8080 --api-key KEY \\
        [--n 1500] [--out service/answer/grounding_model.json]
        [--cache bench/out/grounding_dev.jsonl]

Only *dev* articles (even index) are used; the test split is never read. The corpus is
uploaded through the service first (a tenant that already holds it re-uses its documents).
For N answerable + N unanswerable dev questions (``random.Random(11)``), the script calls
``POST /v1/search`` with the service's ``top_k``, rebuilds the pipeline's candidate sentences
with the same code the service runs (``service.answer.grounding``) and labels them:

* a sentence is positive when it comes from the question's own paragraph and contains a
  gold answer (normalised as the SQuAD scorer does);
* a question is positive for the gate when it is answerable.

Both models are standardised logistic regressions (scikit-learn, fixed solver, no
randomness). Quality is reported with 5-fold cross-validation grouped by article, and the
gate's threshold is chosen on the out-of-fold scores so that at most ``--max-false-abstention``
of answerable questions would be refused. The JSON written holds the weights, the threshold
and these figures. Features are cached in ``--cache`` so re-training needs no service.
"""

from __future__ import annotations

from core.settings import Settings, apply_offline_env
from ingest.embedding import SentenceTransformerEmbedder
from service.client import DocqaClient

apply_offline_env()

import argparse  # noqa: E402
import json  # noqa: E402
import random  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

from bench import squad2  # noqa: E402
from bench.evalkit import ingest, log, normalize_answer  # noqa: E402
from service.answer.grounding import (  # noqa: E402
    GATE_FEATURES,
    SENTENCE_FEATURES,
    Candidate,
    gate_features,
    make_candidates,
    sentence_features,
)

SEED = 11


def collect(args: argparse.Namespace) -> list[dict[str, Any]]:
    settings = Settings()
    data = squad2.load(Path(args.squad))
    rng = random.Random(SEED)
    dev = data.questions["dev"]
    answerable = [q for q in dev if q.answerable]
    impossible = [q for q in dev if not q.answerable]
    questions = rng.sample(answerable, min(args.n, len(answerable))) + rng.sample(
        impossible, min(args.n, len(impossible)))
    embedder = SentenceTransformerEmbedder(settings.models.resolved_embedding_path())
    cache: dict[str, list[float]] = {}

    def embed(texts: list[str]) -> list[list[float]]:
        """The service's embedder, memoised: the same paragraphs come back for many questions."""
        missing = [t for t in dict.fromkeys(texts) if t not in cache]
        if missing:
            cache.update(zip(missing, embedder.embed(missing), strict=True))
        return [cache[t] for t in texts]

    rows: list[dict[str, Any]] = []
    with DocqaClient(args.url, args.api_key, wait_on_429_s=600) as client:
        id_to_key = ingest(client, data.docs)
        t0 = time.perf_counter()
        for i, q in enumerate(questions, start=1):
            top_k = args.top_k or settings.retrieval.top_k
            hits = client.search(q.question, top_k=top_k)["results"]
            texts = [h["text"] for h in hits]
            scores = [h["score"] for h in hits]
            keys = [id_to_key.get(h["document_id"], "") for h in hits]
            q_vec = embedder.embed([q.question])[0]
            cands, first = make_candidates(texts, q_vec, embed)
            sentence_features(q.question, cands, scores, first, texts)
            golds = [normalize_answer(a) for a in q.answers]
            rows.append({
                "qid": q.qid, "question": q.question, "article": int(q.doc_keys[0][:2]),
                "doc_key": q.doc_keys[0],
                "answerable": q.answerable, "gold_retrieved": q.doc_keys[0] in keys,
                "hit_texts": texts, "hit_scores": scores, "hit_keys": keys,
                "candidates": [{
                    "hit_index": c.hit_index, "start": c.start, "end": c.end, "cos": c.cos,
                    "features": c.features,
                    "label": bool(golds) and keys[c.hit_index] == q.doc_keys[0] and any(
                        g and f" {g} " in f" {normalize_answer(c.text)} " for g in golds),
                } for c in cands],
            })
            if i % 250 == 0:
                log(f"features for {i}/{len(questions)} questions ({time.perf_counter()-t0:.0f}s)")
    return rows


def prepare(rows: list[dict[str, Any]], top_k: int | None) -> list[dict[str, Any]]:
    """Recompute every candidate's features from the cached raw retrieval (texts, scores,
    cosines) with the current feature code, keeping only the first ``top_k`` chunks."""
    out = []
    for r in rows:
        k = top_k or len(r["hit_texts"])
        texts, scores = r["hit_texts"][:k], r["hit_scores"][:k]
        raw = [c for c in r["candidates"] if c["hit_index"] < k]
        cands = [Candidate(c["hit_index"], c["start"], c["end"],
                           texts[c["hit_index"]][c["start"]:c["end"]], c["cos"]) for c in raw]
        first = [bool(c["features"]["first"]) for c in raw]
        sentence_features(r["question"], cands, scores, first, texts)
        out.append({**r, "hit_texts": texts, "hit_scores": scores,
                    "hit_keys": r.get("hit_keys", [])[:k],
                    "gold_retrieved": r["gold_retrieved"] if "hit_keys" not in r
                    else r["doc_key"] in r["hit_keys"][:k],
                    "candidates": [{**c, "features": cand.features}
                                   for c, cand in zip(raw, cands, strict=True)]})
    return out


def _standardise(X: Any) -> tuple[Any, Any]:
    import numpy as np

    mean = X.mean(axis=0)
    scale = X.std(axis=0)
    scale[scale == 0] = 1.0
    return mean, np.asarray(scale)


def fit_logistic(X: Any, y: Any, C: float, sample_weight: Any = None) -> dict[str, Any]:
    from sklearn.linear_model import LogisticRegression  # type: ignore[import-untyped]

    mean, scale = _standardise(X)
    model = LogisticRegression(C=C, max_iter=2000, solver="lbfgs")
    model.fit((X - mean) / scale, y, sample_weight=sample_weight)
    return {"mean": mean.tolist(), "scale": scale.tolist(), "coef": model.coef_[0].tolist(),
            "intercept": float(model.intercept_[0])}


def fit_mlp(X: Any, y: Any, hidden: int) -> dict[str, Any]:
    from sklearn.neural_network import MLPClassifier  # type: ignore[import-untyped]

    mean, scale = _standardise(X)
    model = MLPClassifier(hidden_layer_sizes=(hidden,), alpha=1e-3, max_iter=600,
                          early_stopping=True, random_state=0)
    model.fit((X - mean) / scale, y)
    return {"kind": "mlp", "mean": mean.tolist(), "scale": scale.tolist(),
            "w1": model.coefs_[0].tolist(), "b1": model.intercepts_[0].tolist(),
            "w2": model.coefs_[1][:, 0].tolist(), "b2": float(model.intercepts_[1][0])}


def fit(X: Any, y: Any, kind: str) -> dict[str, Any]:
    return fit_mlp(X, y, 16) if kind == "mlp" else fit_logistic(X, y, C=1.0)


def predict(params: dict[str, Any], X: Any) -> Any:
    import numpy as np

    Z = (X - np.asarray(params["mean"])) / np.asarray(params["scale"])
    if params.get("kind") == "mlp":
        H = np.maximum(0.0, Z @ np.asarray(params["w1"]) + np.asarray(params["b1"]))
        z = H @ np.asarray(params["w2"]) + params["b2"]
    else:
        z = Z @ np.asarray(params["coef"]) + params["intercept"]
    return 1.0 / (1.0 + np.exp(-z))


def train(rows: list[dict[str, Any]], max_false_abstention: float, folds: int = 5,
          kind: str = "logistic") -> dict[str, Any]:
    import numpy as np

    articles = sorted({r["article"] for r in rows})
    fold_of = {a: i % folds for i, a in enumerate(articles)}

    def sent_matrix(rs: list[dict[str, Any]]) -> tuple[Any, Any]:
        X = [[c["features"][f] for f in SENTENCE_FEATURES] for r in rs for c in r["candidates"]]
        y = [c["label"] for r in rs for c in r["candidates"]]
        return np.asarray(X, dtype=float), np.asarray(y, dtype=int)

    def gate_rows(rs: list[dict[str, Any]], sent_params: dict[str, Any]
                  ) -> tuple[Any, Any, Any, Any]:
        X, y, top_ok, cited_ok = [], [], [], []
        for r in rs:
            cands = [Candidate(c["hit_index"], c["start"], c["end"], "", c["cos"],
                               c["features"]) for c in r["candidates"]]
            if not cands:
                X.append([0.0] * len(GATE_FEATURES))
                y.append(int(r["answerable"]))
                top_ok.append(False)
                cited_ok.append(False)
                continue
            probs = predict(sent_params, np.asarray(
                [[(c.features or {})[f] for f in SENTENCE_FEATURES] for c in cands], dtype=float))
            for c, p, raw in zip(cands, probs, r["candidates"], strict=True):
                c.score = float(p)
                hit = r["hit_texts"][c.hit_index]
                c.text = hit[raw["start"]:raw["end"]]
            order = sorted(range(len(cands)), key=lambda i: -cands[i].score)
            ranked = [cands[i] for i in order]
            g = gate_features(r["question"], ranked, r["hit_texts"], r["hit_scores"])
            X.append([g[f] for f in GATE_FEATURES])
            y.append(int(r["answerable"]))
            top_ok.append(bool(r["candidates"][order[0]]["label"]))
            keys = r.get("hit_keys") or []
            cited_ok.append(bool(keys) and keys[ranked[0].hit_index] == r.get("doc_key"))
        return (np.asarray(X, dtype=float), np.asarray(y, dtype=int), np.asarray(top_ok),
                np.asarray(cited_ok))

    # out-of-fold predictions, grouped by article
    oof_gate = np.zeros(len(rows))
    oof_top_ok = np.zeros(len(rows), dtype=bool)
    oof_cited = np.zeros(len(rows), dtype=bool)
    for k in range(folds):
        tr = [r for r in rows if fold_of[r["article"]] != k]
        te_idx = [i for i, r in enumerate(rows) if fold_of[r["article"]] == k]
        te = [rows[i] for i in te_idx]
        sp = fit(*sent_matrix(tr), kind)
        Xg, yg, _, _ = gate_rows(tr, sp)
        gp = fit(Xg, yg, kind)
        Xt, _, ok, cited = gate_rows(te, sp)
        oof_gate[te_idx] = predict(gp, Xt)
        oof_top_ok[te_idx] = ok
        oof_cited[te_idx] = cited
    y_ans = np.asarray([r["answerable"] for r in rows], dtype=bool)
    # threshold: the highest one whose out-of-fold false abstention stays within the limit
    ans_scores = np.sort(oof_gate[y_ans])
    idx = int(np.floor(max_false_abstention * len(ans_scores)))
    threshold = float(ans_scores[max(0, idx - 1)]) if idx > 0 else 0.0
    answered = oof_gate >= threshold
    cv = {
        "questions": len(rows),
        "answerable": int(y_ans.sum()),
        "top_sentence_has_answer": round(float(oof_top_ok[y_ans].mean()), 4),
        "gold_retrieved": round(float(np.mean(
            [r["gold_retrieved"] for r in rows if r["answerable"]])), 4),
        "false_abstention": round(float((~answered[y_ans]).mean()), 4),
        "impossible_abstained": round(float((~answered[~y_ans]).mean()), 4),
        "answered_and_top_sentence_right": round(float((answered & oof_top_ok)[y_ans].mean()), 4),
        "gate_auc": round(_auc(oof_gate[y_ans], oof_gate[~y_ans]), 4),
        "citation_hit_of_answered": round(float(oof_cited[y_ans & answered].mean()), 4)
        if any("hit_keys" in r for r in rows) else None,
    }
    sp = fit(*sent_matrix(rows), kind)
    Xg, yg, _, _ = gate_rows(rows, sp)
    gp = fit(Xg, yg, kind)
    return {
        "sentence": {"features": list(SENTENCE_FEATURES), **sp},
        "gate": {"features": list(GATE_FEATURES), **gp, "threshold": threshold},
        "info": {"trained_on": "SQuAD 2.0 dev split (even articles)", "seed": SEED, "kind": kind,
                 "max_false_abstention": max_false_abstention, "cross_validation": cv},
    }


def _auc(pos: Any, neg: Any) -> float:
    import numpy as np

    allv = np.concatenate([pos, neg])
    ranks = allv.argsort().argsort() + 1
    r_pos = ranks[: len(pos)].sum()
    return float((r_pos - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg)))


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--url", default="http://127.0.0.1:8080")
    ap.add_argument("--api-key")
    ap.add_argument("--squad", default=str(squad2.DEFAULT_PATH))
    ap.add_argument("--n", type=int, default=1500, help="answerable and unanswerable dev questions")
    ap.add_argument("--top-k", type=int, default=None,
                    help="chunks per question (default: settings)")
    ap.add_argument("--cache", default="bench/out/grounding_dev.jsonl")
    ap.add_argument("--refresh", action="store_true", help="recollect features even if cached")
    ap.add_argument("--max-false-abstention", type=float, default=0.12)
    ap.add_argument("--model", choices=("logistic", "mlp"), default="logistic")
    ap.add_argument("--out", default="service/answer/grounding_model.json")
    args = ap.parse_args(argv)
    cache = Path(args.cache)
    if cache.exists() and not args.refresh:
        rows = [json.loads(line) for line in cache.read_text().splitlines()]
        log(f"read {len(rows)} cached questions from {cache}")
    else:
        if not args.api_key:
            ap.error("--api-key is needed to collect features")
        rows = collect(args)
        cache.parent.mkdir(parents=True, exist_ok=True)
        cache.write_text("".join(json.dumps(r) + "\n" for r in rows))
    rows = prepare(rows, args.top_k)
    model = train(rows, args.max_false_abstention, kind=args.model)
    Path(args.out).write_text(json.dumps(model, indent=1) + "\n")
    json.dump(model["info"], sys.stdout, indent=2)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
