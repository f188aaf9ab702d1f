"""Features and small learned scorers for the answer pipeline.

Two logistic models, trained by ``bench/train_grounding.py`` on the SQuAD 2.0 *dev* split
only and committed as JSON (``service/answer/grounding_model.json``, a few hundred bytes):

* the **sentence scorer** ranks the sentences of the retrieved chunks by the chance that
  they hold the answer (features: embedding similarity, word and bigram overlap with the
  question, whether the sentence carries something of the kind the question asks for —
  a year for "when", a number for "how many", a name for "who" — and the chunk's rank);
* the **answerability gate** decides, from the best sentences and the question's words the
  evidence does not contain (a name, a number, a qualifier), whether the evidence answers
  the question at all. Below its threshold the answer is ``not_found`` and the generator is
  never called.

A model may also hold a **record scorer** (``bench/train_scorer.py``) that scores list items
and table rows in place of the sentence scorer; the committed model has none (the fits tried
are in docs/evaluation.md, "A scorer for business units").

Every feature is a ratio, a cosine or a small count, computed from the question and the
retrieved text alone (no corpus statistics), so the models carry over to documents that are
not Wikipedia. Weights stay readable in the JSON; nothing here is trusted to write text.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from core.units import Unit, UnitContext, UnitKind
from ingest.units import split_units

_TOKEN = re.compile(r"[A-Za-z0-9][A-Za-z0-9'\-.]*[A-Za-z0-9]|[A-Za-z0-9]")
NUMBER = re.compile(r"\d+(?:[.,]\d+)*")
_YEARLIKE = re.compile(
    r"\b(1\d{3}|20\d{2}|\d{1,2}(st|nd|rd|th)|century|centuries|january|february|march|april|"
    r"may|june|july|august|september|october|november|december|bc|ad|bce|ce|\d+s)\b",
    re.I,
)
_NEGATION = re.compile(r"\b(not|never|no|n't|without|neither|nor|least|fewest)\b", re.I)

STOPWORDS = frozenset(
    "a an the of to in on at by for with from and or but is are was were be been being "
    "it its this that these those as which who whom whose what when where why how do does did "
    "has have had not no yes than then there their they them he she his her we our you your "
    "i me my can could would should will shall may might must about into over under after "
    "before also only just so such very more most any all each other some answer passage "
    "passages question according many much one s".split()
)

MODEL_PATH = Path(__file__).with_name("grounding_model.json")


def stem(word: str) -> str:
    """A light suffix stripper (plural, -ed, -ing) so "failed" meets "fail" and "pumps" "pump"."""
    w = word.lower().strip(".'-")
    if w.endswith("'s"):
        w = w[:-2]
    if len(w) > 4 and w.endswith("ies"):
        return w[:-3] + "y"
    if len(w) > 3 and w.endswith("s") and not w.endswith(("ss", "us", "is")):
        w = w[:-1]
    if len(w) > 5 and w.endswith("ing"):
        w = w[:-3]
    elif len(w) > 4 and w.endswith("ed"):
        w = w[:-2]
    if len(w) > 3 and w[-1] == "e":
        w = w[:-1]  # "moved"->"mov", "move"->"mov"
    return w


def tokens(text: str) -> list[str]:
    return _TOKEN.findall(text)


# R&D, EBIT, CISO: three or more capitals, or two joined by "&" (two alone, "US", "IT",
# would meet a pair of words by chance too often)
_ACRONYM = re.compile(r"(?<![\w&])(?:[A-Z]&[A-Z]|[A-Z]{3,6})(?![\w&])")
_LINKS = frozenset({"and", "of", "for", "the", "&"})


def spelt_out(acronym: str, text: str) -> str | None:
    """The words of ``text`` that ``acronym`` abbreviates ("research and development" for
    R&D: one word per letter, in order, linking words between them allowed), or None."""
    letters = acronym.replace("&", "").lower()
    words = re.findall(r"[A-Za-z]+|&", text)
    for i, first in enumerate(words):
        if first[0].lower() != letters[0] or first.lower() in _LINKS:
            continue
        j, k = 1, i + 1
        while j < len(letters) and k < len(words):
            w = words[k].lower()
            if w[0] == letters[j] and w not in _LINKS:
                j += 1
            elif w not in _LINKS:
                break
            k += 1
        if j == len(letters):
            return " ".join(words[i:k])
    return None


def expand_acronyms(question: str, texts: Sequence[str]) -> str:
    """``question`` with each acronym the evidence does not use but spells out replaced by
    those words ("How much did we spend on R&D" → "… on research and development"), so the
    scorers' word overlap sees what the evidence says. Only for scoring: the qualifier
    check reads the question as asked."""
    out = question
    for m in _ACRONYM.finditer(question):
        acronym = m.group(0)
        if any(re.search(rf"(?<![\w&]){re.escape(acronym)}(?![\w&])", t) for t in texts):
            continue
        for text in texts:
            words = spelt_out(acronym, text)
            if words:
                out = out.replace(acronym, words, 1)
                break
    return out


def content_stems(text: str) -> set[str]:
    return {stem(t) for t in tokens(text)} - STOPWORDS - {""}


def _bigrams(words: Sequence[str]) -> set[tuple[str, str]]:
    return {(a, b) for a, b in zip(words, words[1:], strict=False)}


def cosine(a: Sequence[float], b: Sequence[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=False))
    na = math.sqrt(sum(x * x for x in a)) or 1.0
    nb = math.sqrt(sum(y * y for y in b)) or 1.0
    return dot / (na * nb)


def salient(text: str) -> set[str]:
    """Names and numbers of a question: capitalised words that do not open it, and digits."""
    toks = tokens(text)
    out = set()
    for i, t in enumerate(toks):
        if NUMBER.fullmatch(t) or any(c.isdigit() for c in t):
            out.add(stem(t))
        elif i > 0 and t[:1].isupper() and stem(t) not in STOPWORDS:
            out.add(stem(t))
    return out


def answer_kind(question: str) -> str:
    """The kind of thing the question asks for: year, number, person, place or other."""
    q = question.lower()
    if re.search(r"\bhow (many|much|long|old|far|large|big|tall|high|often)\b|"
                 r"\bwhat (percentage|percent|number|amount|size)\b", q):
        return "number"
    if re.search(r"\bwhen\b|\bwhat (year|century|decade|date|day|month|time|period)\b|"
                 r"\bwhich (year|century|decade)\b|\bin what year\b", q):
        return "year"
    if re.search(r"\bwho\b|\bwhom\b|\bwhose\b", q):
        return "person"
    if re.search(r"\bwhere\b|\bwhat (country|city|state|region|place|continent)\b", q):
        return "place"
    return "other"


def has_kind(sentence: str, kind: str, question_words: set[str]) -> bool:
    """Does the sentence carry something of ``kind`` that the question does not already say?"""
    toks = tokens(sentence)
    new = [t for t in toks if stem(t) not in question_words]
    if kind == "number":
        return any(any(c.isdigit() for c in t) or t.lower() in _NUMBER_WORDS for t in new)
    if kind == "year":
        return any(_YEARLIKE.search(t) for t in new)
    if kind in ("person", "place"):
        return any(t[:1].isupper() for i, t in enumerate(toks) if i > 0 and t in new)
    return any(stem(t) not in STOPWORDS for t in new)


_NUMBER_WORDS = frozenset(
    "one two three four five six seven eight nine ten eleven twelve dozen hundred hundreds "
    "thousand thousands million millions billion billions half quarter twenty thirty forty "
    "fifty sixty seventy eighty ninety".split()
)


@dataclass
class Candidate:
    """One evidence unit (a sentence, a list item or a table row) of one retrieved chunk."""

    hit_index: int
    start: int  # offsets inside the chunk text
    end: int
    text: str
    cos: float = 0.0
    features: dict[str, float] | None = None
    score: float = 0.0
    kind: UnitKind = UnitKind.SENTENCE
    # section path, list lead-in, table header: not part of ``text`` (the quote), for the
    # steps that need more than the unit says
    context: UnitContext = field(default_factory=UnitContext)

    @property
    def matched_text(self) -> str:
        """What the gate matches the question's words against: the unit with its context (a
        table row's header, a list item's lead-in, the section path). A sentence of prose
        without headings — all of SQuAD, which the models were trained on — is just its text.
        The sentence scorer ranks on the unit's own words: a heading shared by every unit of
        a section would otherwise lift them all alike and blur the ranking."""
        return f"{self.context.describe()} {self.text}" if self.context else self.text


SENTENCE_FEATURES = (
    "cos", "cos_margin", "cos_rank_inv", "hit_score", "hit_rank_inv", "overlap_q", "overlap_s",
    "overlap_margin", "bigram_q", "salient_q", "kind_match", "novel", "length", "first",
    "hit_margin", "chunk_overlap_q", "chunk_salient_q",
)


StoredUnits = tuple[Sequence[Unit] | Sequence[tuple[int, int]], Sequence[Sequence[float]]]


def make_candidates(hit_texts: Sequence[str], q_vec: Sequence[float], embed: object,
                    stored: Sequence[StoredUnits | None] = ()
                    ) -> tuple[list[Candidate], list[bool]]:
    """Every distinct unit of the retrieved chunks with its cosine to the question.

    ``stored[i]``, when given, holds chunk i's units (or, from older callers, sentence
    spans) and their vectors computed at ingest; the units of other chunks are split from
    their text (``ingest.units.split_units``) and embedded now with ``embed``
    (list[str] -> list[vector]). Two units are the same when their text and context are."""
    cands: list[Candidate] = []
    first: list[bool] = []
    vectors: list[Sequence[float] | None] = []
    inputs: list[str] = []  # what to embed for a unit without a stored vector
    seen: set[tuple[str, str]] = set()
    for hi, text in enumerate(hit_texts):
        pre = stored[hi] if hi < len(stored) else None
        units = [u if isinstance(u, Unit) else Unit(u[0], u[1]) for u in pre[0]] if pre \
            else split_units(text)
        for k, unit in enumerate(units):
            sentence = text[unit.start:unit.end]
            key = (" ".join(sentence.lower().split()), unit.context.describe())
            if key in seen or not sentence.strip() or (
                    unit.kind is UnitKind.SENTENCE and len(sentence) < 3):
                continue
            seen.add(key)
            cands.append(Candidate(hi, unit.start, unit.end, sentence, kind=unit.kind,
                                   context=unit.context))
            first.append(k == 0)
            vectors.append(pre[1][k] if pre else None)
            inputs.append(unit.embedding_text(text))
    missing = [i for i, v in enumerate(vectors) if v is None]
    if missing:
        fresh = embed([inputs[i] for i in missing])  # type: ignore[operator]
        for i, v in zip(missing, fresh, strict=True):
            vectors[i] = v
    for c, v in zip(cands, vectors, strict=True):
        c.cos = cosine(q_vec, v)  # type: ignore[arg-type]
    return cands, first


def sentence_features(question: str, candidates: list[Candidate], hit_scores: Sequence[float],
                      first_flags: Sequence[bool], hit_texts: Sequence[str] = ()) -> None:
    """Fill ``features`` of every candidate (``cos`` must already be set)."""
    q_words = content_stems(question)
    q_all = [stem(t) for t in tokens(question)]
    q_bi = _bigrams(q_all)
    q_sal = salient(question)
    kind = answer_kind(question)
    q_all_set = set(q_all)
    coses = sorted((c.cos for c in candidates), reverse=True)
    best_cos = coses[0] if coses else 0.0
    overlaps = []
    for c in candidates:
        s_words = content_stems(c.text)
        overlaps.append((len(q_words & s_words) / max(1, len(q_words)), s_words))
    best_overlap = max((o for o, _ in overlaps), default=0.0)
    top_hit = max(hit_scores, default=0.0)
    chunk_words: dict[int, set[str]] = {}
    for c in candidates:
        if c.hit_index not in chunk_words:
            text = hit_texts[c.hit_index] if c.hit_index < len(hit_texts) else c.text
            chunk_words[c.hit_index] = {stem(t) for t in tokens(text)}
    for i, c in enumerate(candidates):
        overlap_q, s_words = overlaps[i]
        s_all = [stem(t) for t in tokens(c.text)]
        s_set = set(s_all)
        novel = len(s_words - q_words)
        c.features = {
            "cos": c.cos,
            "cos_margin": c.cos - best_cos,
            "cos_rank_inv": 1.0 / (1 + coses.index(c.cos)),
            "hit_score": hit_scores[c.hit_index],
            "hit_rank_inv": 1.0 / (1 + c.hit_index),
            "overlap_q": overlap_q,
            "overlap_s": len(q_words & s_words) / max(1, len(s_words)),
            "overlap_margin": overlap_q - best_overlap,
            "bigram_q": len(q_bi & _bigrams(s_all)) / max(1, len(q_bi)),
            "salient_q": len(q_sal & s_set) / len(q_sal) if q_sal else 1.0,
            "kind_match": float(has_kind(c.text, kind, q_all_set)),
            "novel": min(novel, 20) / 20.0,
            "length": min(len(s_all), 80) / 80.0,
            "first": float(first_flags[i]),
            "hit_margin": hit_scores[c.hit_index] - top_hit,
            "chunk_overlap_q": len(q_words & chunk_words[c.hit_index]) / max(1, len(q_words)),
            "chunk_salient_q": (len(q_sal & chunk_words[c.hit_index]) / len(q_sal)
                                if q_sal else 1.0),
        }


GATE_FEATURES = (
    "p1", "p2", "p_gap", "hit1", "hit_gap", "miss_chunk", "miss_chunk_n", "miss_salient",
    "miss_sent", "miss_top3", "cos1", "overlap1", "negation", "q_len", "kind_match1", "kind_other",
    "neg_mismatch", "contrast", "rank_word_missing", "miss_adjacent",
)

# Words whose opposite turns a question about the passage into one it cannot answer.
_OPPOSITES = [
    ("first", "last"), ("before", "after"), ("most", "least"), ("largest", "smallest"),
    ("highest", "lowest"), ("earliest", "latest"), ("increase", "decrease"), ("more", "less"),
    ("north", "south"), ("east", "west"), ("maximum", "minimum"), ("longest", "shortest"),
    ("biggest", "smallest"), ("older", "younger"), ("oldest", "youngest"), ("win", "lose"),
    ("won", "lost"), ("start", "end"), ("began", "ended"), ("open", "close"), ("rise", "fall"),
    ("gain", "loss"), ("allow", "forbid"), ("accept", "reject"), ("early", "late"),
    ("major", "minor"), ("upper", "lower"), ("inside", "outside"), ("above", "below"),
]
_OPPOSITE = {a: b for a, b in _OPPOSITES} | {b: a for a, b in _OPPOSITES}
_RANK_WORD = re.compile(
    r"^(first|second|third|fourth|fifth|sixth|seventh|eighth|ninth|tenth|last|only|main|"
    r"primary|\w+est)$", re.I)


def gate_features(question: str, ranked: Sequence[Candidate], hit_texts: Sequence[str],
                  hit_scores: Sequence[float]) -> dict[str, float]:
    """Question-level features for the answerability gate (``ranked`` best first)."""
    q_words = content_stems(question)
    q_sal = salient(question)
    best = ranked[0]
    chunk_words = content_stems(hit_texts[best.hit_index]) | {
        stem(t) for t in tokens(hit_texts[best.hit_index])}
    top3 = set()
    for t in hit_texts[:3]:
        top3 |= {stem(x) for x in tokens(t)}
    sent_words = {stem(t) for t in tokens(best.matched_text)}
    miss_chunk = q_words - chunk_words
    q_toks = [t.lower() for t in tokens(question)]
    s_low = {t.lower() for t in tokens(best.matched_text)}
    q_neg = bool(_NEGATION.search(question))
    contrast = sum(1 for t in q_toks if t in _OPPOSITE and _OPPOSITE[t] in s_low and t not in s_low)
    rank_missing = sum(1 for t in q_toks if _RANK_WORD.match(t) and t not in s_low
                       and t not in STOPWORDS)
    q_stems = [stem(t) for t in tokens(question)]
    adjacent = 0
    for i, w in enumerate(q_stems):
        if w in q_words and w not in sent_words:
            near = q_stems[max(0, i - 1):i] + q_stems[i + 1:i + 2]
            adjacent += any(n in sent_words and n in q_words for n in near)
    p1 = best.score
    p2 = ranked[1].score if len(ranked) > 1 else 0.0
    f = best.features or {}
    return {
        "p1": p1,
        "p2": p2,
        "p_gap": p1 - p2,
        "hit1": hit_scores[0],
        "hit_gap": hit_scores[0] - (hit_scores[1] if len(hit_scores) > 1 else 0.0),
        "miss_chunk": len(miss_chunk) / max(1, len(q_words)),
        "miss_chunk_n": min(len(miss_chunk), 5) / 5.0,
        "miss_salient": min(len(q_sal - chunk_words), 3) / 3.0,
        "miss_sent": len(q_words - sent_words) / max(1, len(q_words)),
        "miss_top3": len(q_words - top3) / max(1, len(q_words)),
        "cos1": best.cos,
        "overlap1": f.get("overlap_q", 0.0),
        "negation": float(bool(_NEGATION.search(question))),
        "q_len": min(len(tokens(question)), 30) / 30.0,
        "kind_match1": f.get("kind_match", 0.0),
        "kind_other": float(answer_kind(question) == "other"),
        "neg_mismatch": float(q_neg != bool(_NEGATION.search(best.text))),
        "contrast": float(min(contrast, 2)) / 2.0,
        "rank_word_missing": float(min(rank_missing, 2)) / 2.0,
        "miss_adjacent": adjacent / max(1, len(q_words)),
    }


@dataclass(frozen=True)
class Logistic:
    """A standardised logistic regression read from JSON."""

    features: tuple[str, ...]
    mean: tuple[float, ...]
    scale: tuple[float, ...]
    coef: tuple[float, ...]
    intercept: float
    threshold: float = 0.5

    def prob(self, feats: dict[str, float]) -> float:
        z = self.intercept
        for name, m, s, w in zip(self.features, self.mean, self.scale, self.coef, strict=True):
            z += w * (feats[name] - m) / (s or 1.0)
        return 1.0 / (1.0 + math.exp(-max(-30.0, min(30.0, z))))

    @classmethod
    def from_dict(cls, d: dict[str, object]) -> Logistic:
        return cls(
            features=tuple(d["features"]),  # type: ignore[arg-type]
            mean=tuple(d["mean"]),  # type: ignore[arg-type]
            scale=tuple(d["scale"]),  # type: ignore[arg-type]
            coef=tuple(d["coef"]),  # type: ignore[arg-type]
            intercept=float(d["intercept"]),  # type: ignore[arg-type]
            threshold=float(d.get("threshold", 0.5)),  # type: ignore[arg-type]
        )


@dataclass(frozen=True)
class Mlp:
    """One hidden ReLU layer over standardised features, sigmoid output (read from JSON)."""

    features: tuple[str, ...]
    mean: tuple[float, ...]
    scale: tuple[float, ...]
    w1: tuple[tuple[float, ...], ...]  # [feature][hidden]
    b1: tuple[float, ...]
    w2: tuple[float, ...]  # [hidden]
    b2: float
    threshold: float = 0.5

    def prob(self, feats: dict[str, float]) -> float:
        x = [(feats[n] - m) / (s or 1.0) for n, m, s in zip(self.features, self.mean, self.scale,
                                                             strict=True)]
        z = self.b2
        for j, b in enumerate(self.b1):
            h = b + sum(xi * row[j] for xi, row in zip(x, self.w1, strict=True))
            if h > 0:
                z += h * self.w2[j]
        return 1.0 / (1.0 + math.exp(-max(-30.0, min(30.0, z))))

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Mlp:
        return cls(tuple(d["features"]), tuple(d["mean"]), tuple(d["scale"]),
                   tuple(tuple(r) for r in d["w1"]), tuple(d["b1"]), tuple(d["w2"]),
                   float(d["b2"]), float(d.get("threshold", 0.5)))


Scorer = Logistic | Mlp


def scorer_from_dict(d: dict[str, Any]) -> Scorer:
    return Mlp.from_dict(d) if d.get("kind") == "mlp" else Logistic.from_dict(d)


@dataclass(frozen=True)
class GroundingModel:
    sentence: Scorer
    gate: Scorer
    info: dict[str, object]
    # list items and table rows, when fitted (bench/train_scorer.py): the sentence scorer
    # learnt from SQuAD's prose, which has none
    record: Scorer | None = None

    def unit_prob(self, c: Candidate) -> float:
        """The chance that unit ``c`` (its ``features`` filled) holds the answer."""
        scorer = self.record if self.record is not None and c.kind is not UnitKind.SENTENCE \
            else self.sentence
        return scorer.prob(c.features or {})


@lru_cache(maxsize=4)
def load_model(path: str | None = None) -> GroundingModel | None:
    """The committed model, or None when it does not exist yet (heuristics are used then)."""
    p = Path(path) if path else MODEL_PATH
    if not p.exists():
        return None
    raw = json.loads(p.read_text(encoding="utf-8"))
    return GroundingModel(scorer_from_dict(raw["sentence"]), scorer_from_dict(raw["gate"]),
                          raw.get("info", {}),
                          scorer_from_dict(raw["record"]) if raw.get("record") else None)
