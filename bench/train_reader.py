"""Train the span reader (``service/answer/reader.py``): the packaged MiniLM with low-rank
adapters and a start/end head, fitted to pick the answer's span inside its unit.

    python -m bench.train_reader --train squad:A,business:dev2 --eval squad:B,business:dev \
        [--epochs 5] [--rank 16] [--out reader.npz] [--json F] [--details F]
    python -m bench.train_reader --model reader.npz --eval squad:B      # measure only

Dev splits only (docs/span.md has the runs and the command that made the committed
``service/answer/reader_adapter.npz``). ``squad:A`` and ``squad:B`` are the two halves of
SQuAD 2.0's dev articles (even article index; A: index % 4 == 0, B: index % 4 == 2),
``squad:dev`` both; ``business:dev`` and ``business:dev2`` the business corpus's splits,
``business:train`` the training company's questions (``bench/business/train/``). A
case is an answerable question with the unit (``ingest/units.py``) that holds a gold answer,
as ``bench.span_eval`` takes them.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import business as bench_business
from bench import squad2 as bench_squad2
from bench.evalkit import is_correct, log, normalize_answer, token_f1
from bench.span_eval import _gold_unit, _overlap, gold_page_unit
from core.units import Unit
from ingest.units import split_units


@dataclass(frozen=True)
class ReadCase:
    qid: str
    question: str
    context: str
    unit: str
    golds: tuple[str, ...]


def hard_negatives(question: str, qid: str, units: list[tuple[Unit, str]],
                   golds: tuple[str, ...], k: int, tag: str = "") -> list[ReadCase]:
    """Up to ``k`` units of the same passage that hold no gold answer, those sharing most
    words with the question first: "no answer here" cases that teach the reader to tell the
    unit that answers from its neighbours (its score then ranks units)."""
    norm = [normalize_answer(g) for g in golds]
    others = [(u, t) for u, t in units
              if not any(f" {g} " in f" {normalize_answer(t)} " for g in norm if g)]
    others.sort(key=lambda ut: -_overlap(question, ut[1]))
    return [ReadCase(f"{qid}~{tag}{i}", question, u.context.describe(), t, ())
            for i, (u, t) in enumerate(others[:k])]


def in_fold(article: int, fold: str) -> bool:
    """SQuAD dev's folds by article (the dev split's articles have even indexes): ``A``
    (index % 4 == 0), ``B`` (the others), ``A/2`` (index % 8 == 0, half of A: the learning
    curve) or ``dev`` (all)."""
    if fold == "dev":
        return True
    if fold == "A/2":
        return article % 8 == 0
    if fold in ("A", "B"):
        return ("A" if article % 4 == 0 else "B") == fold
    raise SystemExit(f"unknown SQuAD fold {fold!r}")


def _squad(fold: str, unanswerable: bool = False, negatives: int = 0,
           far: int = 0) -> list[ReadCase]:
    data = bench_squad2.load()
    docs = {d.key: (d.text, d.metadata["article"]) for d in data.docs}
    by_article: dict[int, list[tuple[str, Unit, str]]] = {}  # (paragraph, unit, its text)
    if far:
        for key, (text, article) in docs.items():
            by_article.setdefault(article, []).extend(
                (key, u, text[u.start:u.end]) for u in split_units(text))
    out = []
    for q in data.questions["dev"]:
        if not q.answerable and not unanswerable:
            continue
        text, article = docs[q.doc_keys[0]]
        if not in_fold(article, fold):
            continue
        units = [(u, text[u.start:u.end]) for u in split_units(text)]
        if not q.answerable:  # the unit sharing most words with it: "no answer" there
            u, t = max(units, key=lambda ut: _overlap(q.question, ut[1]))
            out.append(ReadCase(q.qid, q.question, u.context.describe(), t, ()))
            continue
        pick = _gold_unit(units, q.answers)
        if pick is not None:
            out.append(ReadCase(q.qid, q.question, pick[0].context.describe(), pick[1],
                                q.answers))
            out += hard_negatives(q.question, q.qid, units, q.answers, negatives)
            if far:  # units of the article's other paragraphs: what retrieval also brings
                others = [(u, t) for key, u, t in by_article[article] if key != q.doc_keys[0]]
                out += hard_negatives(q.question, q.qid, others, q.answers, far, "f")
    return out


def _business(split: str, negatives: int = 0, far: int = 0) -> list[ReadCase]:
    root = bench_business.root_of(split)
    data = bench_business.load(root)
    pages = bench_business.extract_pages(bench_business.corpus_files(root))
    out = []
    for q in data.questions[split]:
        if not q.answerable:
            continue
        pick = gold_page_unit(q, pages)
        if pick is not None:
            out.append(ReadCase(q.qid, q.question, pick[0].context.describe(), pick[1],
                                q.answers))
            units = [(u, p.text[u.start:u.end])
                     for doc, page in zip(q.doc_keys, q.doc_pages, strict=True)
                     for p in pages[doc] if page is None or p.number == page
                     for u in split_units(p.text, p.marks)]
            out += hard_negatives(q.question, q.qid, units, q.answers, negatives)
            if far:  # units of the corpus's other documents
                others = [(u, p.text[u.start:u.end]) for doc, ps in pages.items()
                          if doc not in q.doc_keys for p in ps
                          for u in split_units(p.text, p.marks)]
                out += hard_negatives(q.question, q.qid, others, q.answers, far, "f")
    return out


def load_cases(spec: str, unanswerable: bool = False, negatives: int = 0,
               far: int = 0) -> list[ReadCase]:
    """The cases of ``spec``; with ``unanswerable``, SQuAD's unanswerable questions too (no
    gold: the target is "no answer in this unit"); with ``negatives``, that many units of
    each answerable question's passage that do not hold its answer (the same target)."""
    out: list[ReadCase] = []
    for part in spec.split(","):
        corpus, _, which = part.partition(":")
        if corpus == "squad":
            out += _squad(which, unanswerable, negatives, far)
        elif corpus == "business":
            if which == "test":
                raise SystemExit("the business test split is never trained or tuned on")
            out += _business(which, negatives, far)
        else:
            raise SystemExit(f"unknown case set {part!r}")
    return out


def gold_spans(c: ReadCase) -> list[tuple[int, int]]:
    """Character span of each distinct gold answer found verbatim in the unit (SQuAD has
    several annotators' answers to a question)."""
    out: list[tuple[int, int]] = []
    for g in dict.fromkeys(c.golds):
        i = c.unit.find(g)
        if i >= 0 and (i, i + len(g)) not in out:
            out.append((i, i + len(g)))
    return out


def gold_span(c: ReadCase) -> tuple[int, int] | None:
    """Character span of the first gold answer found verbatim in the unit."""
    for g in c.golds:
        i = c.unit.find(g)
        if i >= 0:
            return i, i + len(g)
    low = c.unit.lower()
    for g in c.golds:
        i = low.find(g.lower())
        if i >= 0:
            return i, i + len(g)
    return None


def train(args: argparse.Namespace) -> int:
    import torch

    from core.settings import ModelSettings
    from service.answer.reader import (
        answer_score,
        choose,
        encode_pairs,
        load_net,
        load_tokenizer,
        save_adapter,
        top_spans,
        torch_reader,
    )

    torch.manual_seed(args.seed)
    random.seed(args.seed)
    torch.set_num_threads(args.threads)
    model_path = ModelSettings().resolved_embedding_path()
    tok = load_tokenizer(model_path)
    if args.model:
        net, train_cases = load_net(model_path, Path(args.model)), []
    else:
        net = torch_reader(model_path, args.rank, args.alpha)
        cases = load_cases(args.train, args.unanswerable, args.negatives, args.far_negatives)
        # one example per distinct gold answer the unit holds, or the first one only; an
        # unanswerable case's target is the [CLS] token (-1, -1 here)
        train_cases = [(c, g) for c in cases
                       for g in ((gold_spans(c) if args.all_golds else [gold_span(c)])
                                 if c.golds else [(-1, -1)])
                       if g is not None]
    eval_cases = load_cases(args.eval, args.unanswerable, args.negatives) if args.eval else []
    log(f"train {len(train_cases)} cases, eval {len(eval_cases)}")

    def run(batch: list[ReadCase]) -> tuple[Any, Any, Any]:
        enc = encode_pairs(tok, [c.question for c in batch], [c.context for c in batch],
                           [c.unit for c in batch])
        start, end = net(torch.from_numpy(enc.input_ids), torch.from_numpy(enc.attention_mask),
                         torch.from_numpy(enc.token_type_ids))
        return enc, start, end

    params = [p for p in net.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=args.lr, weight_decay=0.01)
    steps = max(1, math.ceil(len(train_cases) / args.batch) * args.epochs)
    warm = max(1, steps // 10)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warm) * max(0.0, (steps - s) / steps))
    t0 = time.monotonic()
    step, total = 0, 0.0
    for epoch in range(args.epochs if train_cases else 0):
        order = list(train_cases)
        random.shuffle(order)
        net.train()
        for b in range(0, len(order), args.batch):
            batch = order[b:b + args.batch]
            enc, start, end = run([c for c, _ in batch])
            golds = [enc.token_span(i, *g) if g[0] >= 0 else (0, 0)
                     for i, (_, g) in enumerate(batch)]
            mask = torch.from_numpy(enc.unit_mask)
            mask[:, 0] = True  # a gold span lost to truncation points at [CLS]
            start = start.masked_fill(~mask, -1e4)
            end = end.masked_fill(~mask, -1e4)
            loss = (torch.nn.functional.cross_entropy(start, torch.tensor([g[0] for g in golds]))
                    + torch.nn.functional.cross_entropy(end, torch.tensor([g[1] for g in golds]))
                    ) / 2
            opt.zero_grad()
            loss.backward()  # type: ignore[no-untyped-call]
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            sched.step()
            step += 1
            total += float(loss.detach())
            if step % 50 == 0:
                log(f"epoch {epoch} step {step}/{steps} loss {total / 50:.3f} "
                    f"{time.monotonic() - t0:.0f}s")
                total = 0.0
    result: dict[str, Any] = {"train": args.train if train_cases else None,
                              "model": args.model, "eval": args.eval,
                              "train_cases": len(train_cases), "epochs": args.epochs,
                              "rank": args.rank, "alpha": args.alpha, "lr": args.lr,
                              "all_golds": args.all_golds,
                              "unanswerable": args.unanswerable,
                              "seed": args.seed,
                              "train_seconds": round(time.monotonic() - t0, 1)}
    if args.out:
        save_adapter(net, Path(args.out))
    if eval_cases:
        net.eval()
        rows = []
        with torch.no_grad():
            for b in range(0, len(eval_cases), 32):
                chunk = eval_cases[b:b + 32]
                enc, start, end = run(chunk)
                for i, c in enumerate(chunk):
                    ls, le = start[i].numpy(), end[i].numpy()
                    top = top_spans(enc, i, ls, le)
                    idx = enc.unit_mask[i].nonzero()[0]
                    # "no answer" against the best span, in logits (SQuAD 2.0's usual score)
                    null = float(ls[0] + le[0] - (ls[idx].max() + le[idx].max()))
                    base = c.qid.partition("~")[0]
                    rows.append({"qid": c.qid, "set": "s" if len(base) == 24 else "b",
                                 "question": c.question, "unit": c.unit,
                                 "golds": list(c.golds), "top": top, "null": null,
                                 "answer": answer_score(enc, i, ls, le)})
        result["eval_cases"] = len(rows)
        answerable = [r for r in rows if r["golds"]]
        result["policies"] = sweep(answerable, choose)
        if args.negatives:
            result["unit_ranking"] = unit_ranking(rows)
        elif len(answerable) < len(rows):
            result["null_auc"] = null_auc(rows)
        if args.details:
            Path(args.details).write_text(json.dumps(rows, indent=1))
    print(json.dumps(result, indent=2))  # noqa: T201 - the command's output
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    return 0


def _score(rows: list[dict[str, Any]], answer: Any) -> dict[str, float]:
    correct = f1 = 0.0
    for r in rows:
        text = answer(r)
        correct += is_correct(text, r["golds"])
        f1 += max(token_f1(text, g) for g in r["golds"])
    return {"correct": round(correct / len(rows), 3), "f1": round(f1 / len(rows), 3)}


def unit_ranking(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Per set, how often the unit holding the answer outscores the passage's other units
    given with it (``--negatives``), by the reader's "answer here" score (minus its "no
    answer" score) and, for comparison, by words shared with the question."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault(str(r["qid"]).partition("~")[0], []).append(r)
    out: dict[str, Any] = {}
    for name in sorted({r["set"] for r in rows}):
        gs = [g for g in groups.values() if g[0]["set"] == name and len(g) > 1
              and g[0]["golds"]]
        if not gs:
            continue
        def top1(key: Any, gs: list[list[dict[str, Any]]] = gs) -> float:
            # a tie with another unit is not a win
            wins = sum(key(g[0]) > max(key(r) for r in g[1:]) for g in gs)
            return round(float(wins) / len(gs), 3)
        out["squad" if name == "s" else "business"] = {
            "n": len(gs),
            "reader": top1(lambda r: r["answer"]),
            "overlap": top1(lambda r: _overlap(str(r["question"]), str(r["unit"]))),
        }
    return out


def null_auc(rows: list[dict[str, Any]]) -> dict[str, float]:
    """Per set, how well the reader's "no answer" score tells unanswerable cases from
    answerable ones (area under the ROC curve; 0.5 is chance)."""
    out = {}
    for name in sorted({r["set"] for r in rows}):
        pos = [r["null"] for r in rows if r["set"] == name and not r["golds"]]
        neg = [r["null"] for r in rows if r["set"] == name and r["golds"]]
        if pos and neg:
            wins = sum((p > n) + 0.5 * (p == n) for p in pos for n in neg)
            out["squad" if name == "s" else "business"] = round(wins / (len(pos) * len(neg)), 3)
    return out


def sweep(rows: list[dict[str, Any]], choose: Any) -> dict[str, Any]:
    """Correct and F1 on the gold units, per set (SQuAD, business), for the unit as the
    service answers with it (``unit``: its 40 words nearest the question when longer) and for
    each (min_confidence, cover_mass) of the pick, the shorter of the pick and that window
    (as ``AnswerPipeline`` answers)."""
    from service.answer.pipeline import focus_window

    out: dict[str, Any] = {}
    for name in sorted({r["set"] for r in rows}):
        rs = [r for r in rows if r["set"] == name]

        def window(r: dict[str, Any]) -> str:
            return focus_window(str(r["unit"]).rstrip("."), str(r["question"]))

        def shorter(r: dict[str, Any], picked: tuple[int, ...] | None) -> str:
            body = window(r)
            if picked is None:
                return body
            text = str(r["unit"])[picked[0]:picked[1]]
            return text if len(text.split()) < len(body.split()) else body

        per: dict[str, Any] = {"n": len(rs), "unit": _score(rs, window)}
        for th in (0.3, 0.5, 0.6, 0.7, 0.8, 0.9, 1.1):
            for mass in (0.0, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95):
                def answer(r: dict[str, Any], th: float = th, mass: float = mass) -> str:
                    return shorter(r, choose([tuple(t) for t in r["top"]], str(r["unit"]), th,
                                             mass))
                per[f"{th:.1f}/{mass:.2f}"] = _score(rs, answer)
        for lam in MBR_WEIGHTS:
            def mbr(r: dict[str, Any], lam: float = lam) -> str:
                return shorter(r, expected_best([tuple(t) for t in r["top"]], str(r["unit"]),
                                                lam))
            per[f"mbr/{lam:g}"] = _score(rs, mbr)
        out["squad" if name == "s" else "business"] = per
    return out


# weights of "holds the answer" against expected F1 in :func:`expected_best`
MBR_WEIGHTS = (0.0, 1.0, 2.0, 5.0, 8.0, 12.0, 20.0, 40.0)


def expected_best(spans: list[tuple[int, int, float]], unit: str, lam: float
                  ) -> tuple[int, int] | None:
    """Another pick, measured against the service's (``choose``) in :func:`sweep`: the run
    of ``unit`` between any start and any end of ``spans`` that maximises its expected F1
    against the reader's spans plus ``lam`` × the probability that it contains the answer
    (each span taken as the answer with its probability; minimum Bayes risk). Widened and
    trimmed as ``choose`` does; None without spans."""
    from service.answer.reader import trim_end, whole_words

    if not spans:
        return None
    best, value = None, -math.inf
    for s in sorted({a for a, _, _ in spans}):
        for e in sorted({b for _, b, _ in spans}):
            if e <= s:
                continue
            text = unit[s:e]
            holds = sum(p for a, b, p in spans if s <= a and b <= e)
            f1 = sum(p * token_f1(text, unit[a:b]) for a, b, p in spans)
            if f1 + lam * holds > value:
                best, value = (s, e), f1 + lam * holds
    assert best is not None
    s, e = whole_words(unit, *best)
    return s, trim_end(unit, s, e)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--train", default="squad:A,business:dev2")
    p.add_argument("--eval", default="squad:B,business:dev")
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--rank", type=int, default=16)
    p.add_argument("--alpha", type=float, default=32.0)
    p.add_argument("--unanswerable", action="store_true",
                   help="also SQuAD's unanswerable questions, on the unit sharing most words "
                   "with them, with 'no answer' as the target; measures its AUC")
    p.add_argument("--negatives", type=int, default=0,
                   help="also this many units of each answerable question's passage that do "
                   "not hold its answer, with 'no answer' as the target; measures how often "
                   "the answering unit outscores them")
    p.add_argument("--far-negatives", type=int, default=0,
                   help="also this many units of other passages (SQuAD: the article's other "
                   "paragraphs; business: other documents) as 'no answer' cases, in training")
    p.add_argument("--all-golds", action="store_true",
                   help="train on every distinct gold answer of a question, not the first")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--seed", type=int, default=13)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out")
    p.add_argument("--model", help="evaluate this trained reader instead of training one")
    p.add_argument("--json")
    p.add_argument("--details")
    return train(p.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
