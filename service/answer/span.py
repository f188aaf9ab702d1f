"""The short answer inside a chosen unit: SmolLM2 copies a span of it, and only that.

A 135M model asked to "answer briefly" invents words; asked to copy, it may still drift. So
decoding is constrained by a GBNF grammar built from the unit itself: the reply is either
``NOT FOUND`` or a run of the unit's consecutive tokens (words, numbers and punctuation
marks, as ``_TOKEN`` cuts them), starting at a word and ending at any word or closing mark,
with the unit's own spacing (any white space reads as one space). The model decides where
the run starts and when to stop; it cannot write anything else.

After decoding, the reply is mapped back to token positions and the returned text is the
exact substring of the unit between them (``unit[start:end]``), so a caller can cite its
offsets. Anything that goes wrong (no generator, a full queue, the deadline, a reply that
does not map back) yields a :class:`SpanPick` without a span: the caller answers with the
whole unit, which is what it did before spans existed.

Nothing is cached across calls but the model the generator holds.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from core.errors import OverloadedError
from service.answer.grounding import answer_kind, content_stems, stem

NOT_FOUND = "NOT FOUND"
MAX_TOKENS = 32  # the longest span the model may write, in model tokens
MAX_UNIT_TOKENS = 400  # a longer unit is not offered (its grammar and prompt would be large)
DEADLINE_S = 1.5

# a number with its inner separators ("41.2", "1,200", "8:30"), a word (with inner
# apostrophes, "company's") or one mark; white space separates them
_TOKEN = re.compile(r"\d+(?:[.,:]\d+)+|\w+(?:['’]\w+)*|[^\w\s]")
# a span may not open on these (a closing mark or a separator) ...
_NO_START = frozenset(",.;:!?)]}»”’'\"%/|-–—")
# ... nor end on these (an opening mark or a separator)
_NO_END = frozenset("([{«“‘'\"/|-–—$€£¥#")

SYSTEM = ("You answer a question by copying the shortest exact phrase from the passage "
          "that answers it. If the passage does not answer it, reply NOT FOUND.")
# Worked examples, sent as earlier turns: without them SmolLM2 copies whole sentences. They
# open every prompt unchanged, so llama.cpp reuses their evaluated prefix from the last call.
EXAMPLES = (
    ("", "The Eiffel Tower, completed in 1889, is 330 metres tall and stands in Paris.",
     "When was the Eiffel Tower completed?", "1889"),
    ("Quarter | Revenue (EUR m) | EBIT margin", "Q2 2023 | 38.4 | 7.5%",
     "What was the EBIT margin in Q2 2023?", "7.5%"),
    ("", "Marie Curie shared the 1903 Nobel Prize in Physics with Pierre Curie and Henri "
     "Becquerel for their work on radiation.",
     "Who shared the prize with Marie Curie?", "Pierre Curie and Henri Becquerel"),
)


class ConstrainedGenerator(Protocol):
    def complete_constrained(self, messages: list[dict[str, str]], grammar: str,
                             max_tokens: int, deadline_s: float) -> str: ...

    def choose(self, messages: list[dict[str, str]], replies: Sequence[str],
               deadline_s: float) -> tuple[int, float]: ...

    def choose_shares(self, messages: list[dict[str, str]], replies: Sequence[str],
                      deadline_s: float) -> tuple[int, float, list[float]]: ...


@dataclass(frozen=True, slots=True)
class UnitRead:
    """What the reader made of one unit: how strongly it holds the answer (``score``, in
    logits) and its most probable spans (start char, end char, probability; best first),
    so that the unit chosen after a reordering is not read a second time for its phrase."""

    score: float
    spans: tuple[tuple[int, int, float], ...]


class SpanPicker(Protocol):
    """Picks the answering span of a unit by itself (``service/answer/reader.py``).
    ``spans``: the unit's spans as a :class:`UnitRead` already holds them (not read again)."""

    def pick(self, question: str, unit: str, context: str = "",
             deadline_s: float | None = None,
             spans: Sequence[tuple[int, int, float]] | None = None) -> SpanPick: ...


class UnitReader(SpanPicker, Protocol):
    """A span picker that can also say how strongly each unit holds the answer."""

    def read(self, question: str, units: list[str], contexts: list[str]
             ) -> list[UnitRead]: ...


@dataclass(frozen=True, slots=True)
class SpanPick:
    """What span picking made of one unit.

    ``start``/``end`` index the unit and ``text == unit[start:end]`` when a span was picked;
    ``not_found`` when the model said the unit does not answer; neither when picking failed
    (``reason`` says why: ``timeout``, ``overloaded``, ``error``, ``unmapped``, ``too_long``,
    ``empty``, ``unsure``). ``reason`` is ``ok`` for a picked span, ``cover`` for the run
    covering the best few candidates when the first was not sure enough. ``seconds`` is the
    wall time of the whole pick; ``confidence`` the probability of the reply among the
    candidates (the model's, or the ranking's with ``rank``; None for the free grammar)."""

    text: str | None
    start: int
    end: int
    not_found: bool
    reason: str
    seconds: float
    raw: str = ""  # what the model wrote
    confidence: float | None = None

    @property
    def picked(self) -> bool:
        return self.text is not None


@dataclass(frozen=True, slots=True)
class _Tok:
    start: int
    end: int
    space_before: bool  # white space separates it from the token before


def tokenize(unit: str) -> list[_Tok]:
    out: list[_Tok] = []
    prev_end = 0
    for m in _TOKEN.finditer(unit):
        out.append(_Tok(m.start(), m.end(), bool(out) and m.start() > prev_end))
        prev_end = m.end()
    return out


def _is_word(text: str) -> bool:
    return bool(re.match(r"\w", text))


def _can_start(text: str) -> bool:
    return text not in _NO_START


def _can_end(text: str) -> bool:
    return text not in _NO_END


def _literal(text: str) -> str:
    """A GBNF string literal of ``text``: quotes, backslashes and control characters escaped."""
    out = []
    for ch in text:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\x{ord(ch):02X}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def build_grammar(unit: str, allow_not_found: bool = True) -> str:
    """The GBNF grammar of the replies allowed for ``unit``: ``NOT FOUND`` (if allowed) or a
    run of its consecutive tokens, spaced as in the unit.

    Rule ``tI`` is "token I, then optionally the run continuing at token I+1", so a reply may
    start at any start-able token and stop after any end-able one; the grammar is linear in
    the unit's length. Raises ``ValueError`` for a unit without tokens."""
    toks = tokenize(unit)
    texts = [unit[t.start:t.end] for t in toks]
    if not any(_is_word(t) for t in texts):
        raise ValueError("the unit has no words")
    lines = []
    for i, text in enumerate(texts):
        lit = _literal(text)
        if i + 1 < len(toks):
            nxt = f'" " t{i + 1}' if toks[i + 1].space_before else f"t{i + 1}"
            body = f"{lit} ({nxt})?" if _can_end(text) else f"{lit} {nxt}"
        else:
            body = lit
        lines.append(f"t{i} ::= {body}")
    starts = [f"t{i}" for i, text in enumerate(texts) if _can_start(text)]
    alternatives = ([_literal(NOT_FOUND)] if allow_not_found else []) + starts
    return "\n".join([f"root ::= {' | '.join(alternatives)}", *lines]) + "\n"


@dataclass(frozen=True, slots=True)
class Tagged:
    """What a tagger saw in a unit: its tokens ``(start, end, coarse POS)`` and its named
    entities ``(start, end, label)``, offsets in the unit (spaCy's ``Token.pos_`` and
    ``Span.label_``)."""

    tokens: tuple[tuple[int, int, str], ...]
    entities: tuple[tuple[int, int, str], ...] = ()


def tagged_from_doc(doc: Any) -> Tagged:
    """A :class:`Tagged` from a spaCy ``Doc`` of the unit (the caller runs the pipeline)."""
    return Tagged(tuple((t.idx, t.idx + len(t.text), t.pos_) for t in doc),
                  tuple((e.start_char, e.end_char, e.label_) for e in doc.ents))


_PHRASE_POS = frozenset({"DET", "ADJ", "NOUN", "PROPN", "NUM", "PART", "SYM"})
_HEAD_POS = frozenset({"NOUN", "PROPN", "NUM"})
_JOINERS = frozenset({"%", "-", "–"})
_AMOUNTS = frozenset({"MONEY", "QUANTITY", "PERCENT", "CARDINAL"})
_TEMPORAL = frozenset({"DATE", "TIME"})
_CURRENCY_SIGNS = frozenset("€$£¥")
_RANGE = re.compile(r"\s*(?:-|–|—|to|until|till|and)\s*")
_WHO = frozenset({"PERSON", "ORG", "NORP"})
_WHERE = frozenset({"GPE", "LOC", "FAC"})
_NUMBER_WORDS = frozenset(
    "one two three four five six seven eight nine ten eleven twelve dozen hundred thousand "
    "million billion half quarter twenty thirty forty fifty sixty seventy eighty ninety".split())
_STOP = frozenset(
    "a an the of in on at to for by with and or is was were are be been as its it their his "
    "her this that these those from".split())
MAX_CANDIDATES = 40


def _words(text: str) -> set[str]:
    return {w for w in re.findall(r"\w+", text.lower()) if w not in _STOP}


def _phrases(tokens: Sequence[tuple[int, int, str]], unit: str) -> list[tuple[int, int]]:
    """Noun-phrase-like runs (determiners, adjectives, nouns, numbers, "X of Y"), trimmed
    to open after a determiner and close on a noun, a number or "%", plus each run cut
    before its "of"."""
    out: list[tuple[int, int]] = []
    n, i = len(tokens), 0

    def text(k: int) -> str:
        return unit[tokens[k][0]:tokens[k][1]]

    def in_phrase(k: int) -> bool:  # a table's cell separator ends a phrase
        return (tokens[k][2] in _PHRASE_POS or text(k) in _JOINERS) and text(k) != "|"

    while i < n:
        if not in_phrase(i) or text(i) in _JOINERS:
            i += 1
            continue
        j = i
        while j + 1 < n and (in_phrase(j + 1) or (text(j + 1) == "of" and j + 2 < n
                                                     and tokens[j + 2][2] in _PHRASE_POS)):
            j += 1
        lo, hi = i, j
        while lo <= hi and tokens[lo][2] in ("DET", "PART"):
            lo += 1
        while hi >= lo and tokens[hi][2] not in _HEAD_POS and text(hi) != "%":
            hi -= 1
        if lo <= hi:
            out.append((tokens[lo][0], tokens[hi][1]))
            out.extend((tokens[lo][0], tokens[k][1]) for k in range(lo, hi)
                       if text(k + 1) == "of" and tokens[k][2] in _HEAD_POS)
        i = j + 1
    return out


def _widened(unit: str, start: int, end: int) -> tuple[int, int]:
    """A span with the currency sign or code written just before it ("€" 6.50, "EUR" 180)."""
    if start >= 1 and unit[start - 1] in _CURRENCY_SIGNS:
        return start - 1, end
    code = re.search(r"\b(?:EUR|USD|CHF|GBP|CZK)\s$", unit[max(0, start - 4):start])
    return (start - len(code.group()), end) if code else (start, end)


def _ranges(unit: str, spans: Sequence[tuple[int, int]]) -> list[tuple[int, int]]:
    """"8:30 to 14:00", "2022–2024": two spans holding figures joined by a range word."""
    figures = sorted(sp for sp in spans if any(c.isdigit() for c in unit[sp[0]:sp[1]]))
    return [(a[0], b[1]) for a in figures for b in figures
            if a[1] < b[0] and _RANGE.fullmatch(unit[a[1]:b[0]])]


def _of_kind(kind: str, text: str, labels: set[str]) -> bool:
    if kind == "number":  # an amount, not the year it is for
        if labels & _AMOUNTS:
            return True
        bare = re.sub(r"\b(?:1[5-9]|20)\d\d\b", "", text)
        return not labels & _TEMPORAL and (any(c.isdigit() for c in bare)
                                           or bool(_words(text) & _NUMBER_WORDS))
    if kind == "year":
        return bool(labels & _TEMPORAL) or bool(re.search(r"\b(?:1[5-9]|20)\d\d\b", text))
    if kind == "person":
        return bool(labels & _WHO)
    if kind == "place":
        return bool(labels & _WHERE)
    return True


# a figure and the word after it; not a year ("2024 revenue" states no quantity of revenue)
_QUANTITY = re.compile(r"(?<![\w.])(?!(?:1[5-9]|20)\d\d\b)\d[\d.,]*\s*([^\W\d_]+)")


def _stated_units(question: str) -> set[str]:
    """The units of the quantities the question states itself ("for 60 units": units)."""
    return {stem(m.group(1)) for m in _QUANTITY.finditer(question)} - _STOP


def _restates_quantity(text: str, stated: set[str]) -> bool:
    """A figure in the unit the question states a quantity of is the condition the
    question picks its unit by ("50 to 199 units" for "for 60 units"), not its answer."""
    if not stated or not any(c.isdigit() for c in text):
        return False
    last = re.findall(r"[^\W\d_]+", text)
    return bool(last) and stem(last[-1].lower()) in stated


def candidate_spans(question: str, unit: str, tagged: Tagged,
                    typed: bool = True) -> list[tuple[int, int]]:
    """The spans of ``unit`` that may answer ``question``: its named entities and noun
    phrases (with a currency written before them, and "X to Y" ranges of them), minus
    those that only repeat the question's words; with ``typed``, only those of the kind the
    question asks for (an amount, a date, a person, a place) when there are any. In reading
    order, at most ``MAX_CANDIDATES``."""
    labels: dict[tuple[int, int], set[str]] = {}
    for start, end, label in tagged.entities:
        labels.setdefault((start, end), set()).add(label)
    found = set(labels) | set(_phrases(tagged.tokens, unit))
    found |= {_widened(unit, s, e) for s, e in found}
    # a bare number only as the end of a range: offered alone, the model would stop at
    # "30" rather than write "30 days" (business dev)
    numbers = {_widened(unit, s, e) for s, e, pos in tagged.tokens if pos == "NUM"}
    spans = found | set(_ranges(unit, sorted(found | numbers)))
    asked, stated = _words(question), _stated_units(question)
    keep = sorted(sp for sp in spans if 0 <= sp[0] < sp[1] <= len(unit)
                  and (w := _words(unit[sp[0]:sp[1]])) and not w <= asked
                  and not _restates_quantity(unit[sp[0]:sp[1]], stated))
    if typed:
        kind = answer_kind(question)
        inside = [sp for sp in keep if _of_kind(kind, unit[sp[0]:sp[1]], {
            lab for (s, e), labs in labels.items() if sp[0] <= s and e <= sp[1] for lab in labs})]
        keep = inside or keep
    return keep[:MAX_CANDIDATES]


# the entity labels that answer a question by its wh-phrase (spaCy's OntoNotes labels),
# the first pattern that matches deciding; a finer cut than ``answer_kind``, used as a
# feature of the ranking only
_WANTED = tuple((re.compile(p, re.I), frozenset(labels.split())) for p, labels in (
    (r"\bhow many\b", "CARDINAL QUANTITY"),
    (r"\bhow much\b|\bwhat (?:price|cost|fee|amount)\b", "MONEY QUANTITY PERCENT CARDINAL"),
    (r"\bwhat (?:percentage|percent|share|proportion)\b", "PERCENT"),
    (r"\bhow (?:long|old)\b", "DATE TIME QUANTITY CARDINAL"),
    (r"\bhow (?:far|large|big|tall|high|heavy|deep|wide)\b", "QUANTITY CARDINAL"),
    (r"\bwhen\b|\b(?:what|which|in what) (?:year|century|decade|date|day|month|time|period)\b",
     "DATE TIME"),
    (r"\bwho\b|\bwhom\b|\bwhose\b", "PERSON ORG NORP"),
    (r"\bwhere\b|\b(?:what|which) (?:country|city|state|region|place|continent|town)\b",
     "GPE LOC FAC"),
    (r"\b(?:what|which) (?:company|organi[sz]ation|group|team|university|party)\b", "ORG"),
    (r"\b(?:what|which) language\b", "LANGUAGE"),
    (r"\b(?:what|which) (?:nationality|religion)\b", "NORP"),
))
FEATURES = ("lm", "greedy", "type", "near", "qover", "length", "entity")


def wanted_labels(question: str) -> frozenset[str]:
    """The entity labels the question's wh-phrase asks for (empty: no particular type)."""
    return next((labels for pattern, labels in _WANTED if pattern.search(question)),
                frozenset())


def span_features(question: str, unit: str, tagged: Tagged, spans: Sequence[tuple[int, int]],
                  shares: Sequence[float] | None = None, greedy: int | None = None
                  ) -> list[dict[str, float]]:
    """The signals classic extractive QA ranks answer candidates by, per span:

    * ``lm``: log of the model's share of the span as its reply, ``greedy``: 1 for the reply
      it chose (both 0 without the model);
    * ``type``: the span holds an entity of the kind the wh-phrase asks for;
    * ``near``: 1 / (1 + the number of tokens between the span and the closest question
      word in the unit; 0 if there is none): the answer tends to sit next to the words the
      unit shares with the question;
    * ``qover``: the share of the span's words that the question already says;
    * ``length``: log(1 + its words); ``entity``: the span is exactly a named entity."""
    asked = content_stems(question)
    want = wanted_labels(question)
    toks = tagged.tokens
    hits = [k for k, (s, e, _) in enumerate(toks) if stem(unit[s:e]) in asked]
    ents = {(s, e) for s, e, _ in tagged.entities}
    out = []
    for n, (s, e) in enumerate(spans):
        inside = [k for k, (ts, te, _) in enumerate(toks) if s <= ts and te <= e]
        lo, hi = (inside[0], inside[-1]) if inside else (0, 0)
        gaps = [lo - k if k < lo else k - hi for k in hits if not lo <= k <= hi]
        words = re.findall(r"\w+", unit[s:e])
        content = [w for w in words if stem(w) not in _STOP]
        labels = {lab for es, ee, lab in tagged.entities if s <= es and ee <= e}
        out.append({
            "lm": math.log(max(shares[n], 1e-6)) if shares is not None else 0.0,
            "greedy": 1.0 if greedy == n else 0.0,
            "type": 1.0 if labels & want else 0.0,
            "near": 1.0 / min(gaps) if gaps else 0.0,
            "qover": sum(stem(w) in asked for w in content) / len(content) if content else 0.0,
            "length": math.log1p(len(words)),
            "entity": 1.0 if (s, e) in ents else 0.0,
        })
    return out


# The weights of :func:`rank_spans`, fitted by ``bench/span_eval.py --fit`` on half of the
# SQuAD 2.0 dev questions and checked on the other half (docs/span.md).
WEIGHTS: dict[str, float] = {"lm": 0.644, "greedy": -0.457, "type": -0.121, "near": 0.67,
                             "qover": -0.137, "length": 0.219, "entity": 0.083}
# the same without the model's features: the ranking alone, no model call
WEIGHTS_NO_MODEL: dict[str, float] = {"type": -0.113, "near": 0.664, "qover": -0.047,
                                      "length": 0.3, "entity": 0.337}


def rank_spans(features: Sequence[dict[str, float]],
               weights: dict[str, float] | None = None) -> list[tuple[int, float]]:
    """The spans' indices, best first, each with its probability under the log-linear
    score ``sum(weight * feature)`` (a softmax over the spans)."""
    w = WEIGHTS if weights is None else weights
    scores = [sum(w.get(k, 0.0) * f[k] for k in f) for f in features]
    if not scores:
        return []
    top = max(scores)
    exp = [math.exp(x - top) for x in scores]
    total = sum(exp)
    return sorted(((i, x / total) for i, x in enumerate(exp)), key=lambda p: -p[1])


def candidates_grammar(replies: Sequence[str]) -> str:
    """The GBNF grammar whose sentences are exactly ``replies`` (for greedy decoding among
    candidates, the alternative to :meth:`ConstrainedGenerator.choose`)."""
    if not replies:
        raise ValueError("no replies")
    return "root ::= " + " | ".join(_literal(r) for r in replies) + "\n"


def locate(reply: str, unit: str, cut: bool = False) -> tuple[int, int] | None:
    """Offsets in ``unit`` of the run of its tokens that reads ``reply`` (white space
    normalised), the first such run; None when no run does.

    With ``cut``, ``reply`` may also stop inside a token (generation ran out of tokens): the
    run is then its whole tokens before that point, if there are any."""
    want = " ".join(reply.split())
    if not want:
        return None
    toks = tokenize(unit)
    texts = [unit[t.start:t.end] for t in toks]
    for i in range(len(toks)):
        pos, j = 0, i
        while j < len(toks):
            piece = texts[j] if j == i else (" " if toks[j].space_before else "") + texts[j]
            rest = want[pos:]
            if rest.startswith(piece):
                pos += len(piece)
                if pos == len(want):
                    return toks[i].start, toks[j].end
                j += 1
                continue
            if cut and j > i and piece.startswith(rest):
                return toks[i].start, toks[j - 1].end
            break
    return None


def _turn(context: str, unit: str, question: str) -> str:
    where = f"Context: {' '.join(context.split())}\n" if context.strip() else ""
    return f"{where}Passage: {' '.join(unit.split())}\nQuestion: {' '.join(question.split())}"


def build_messages(question: str, unit: str, context: str = "") -> list[dict[str, str]]:
    """The chat: the system rule, the worked examples, then this unit and question."""
    messages = [{"role": "system", "content": SYSTEM}]
    for ex_context, ex_unit, ex_question, ex_answer in EXAMPLES:
        messages.append({"role": "user", "content": _turn(ex_context, ex_unit, ex_question)})
        messages.append({"role": "assistant", "content": ex_answer})
    messages.append({"role": "user", "content": _turn(context, unit, question)})
    return messages


def pick_span(generator: ConstrainedGenerator | None, question: str, unit: str,
              context: str = "", *, tagged: Tagged | None = None,
              deadline_s: float = DEADLINE_S, max_tokens: int = MAX_TOKENS,
              allow_not_found: bool = True, typed: bool = True,
              min_confidence: float = 0.0,
              decode: Literal["choose", "grammar"] = "choose",
              rank: Literal["off", "model", "features"] = "off",
              cover: int = 0) -> SpanPick:
    """The phrase of ``unit`` that answers ``question``, as SmolLM2 picks it; never raises
    (see :class:`SpanPick`).

    With ``tagged`` (the unit's tokens and entities), the model chooses one of the
    :func:`candidate_spans` (or ``NOT FOUND``) by their likelihood as its reply, and a choice
    below ``min_confidence`` is not used (``unsure``); ``decode="grammar"`` instead decodes
    greedily under a grammar of the candidates (no confidence). Without ``tagged``, or when the unit
    has no candidates, it may write any run of the unit's tokens (:func:`build_grammar`).
    ``context`` is what the unit does not say itself (its section, list lead-in or table
    header: ``UnitContext.describe()``); it goes into the prompt, never into the span.

    ``rank="model"`` takes the top of :func:`rank_spans` over the model's shares and the
    candidates' features instead of the model's choice, its ranking probability as the
    confidence; ``rank="features"`` ranks by the features alone and never calls the model.
    With either, a choice below ``min_confidence`` answers the shortest run of the unit
    holding the ``cover`` best candidates (reason ``cover``) when ``cover`` > 1."""
    t0 = time.monotonic()

    def fail(reason: str, raw: str = "", confidence: float | None = None) -> SpanPick:
        return SpanPick(None, 0, 0, False, reason, time.monotonic() - t0, raw, confidence)

    toks = tokenize(unit)
    if generator is None and not (rank == "features" and tagged is not None):
        return fail("no_generator")
    if not any(_is_word(unit[t.start:t.end]) for t in toks):
        return fail("empty")
    if len(toks) > MAX_UNIT_TOKENS:
        return fail("too_long")
    spans = candidate_spans(question, unit, tagged, typed) if tagged is not None else []
    if rank == "features":  # no model: the ranking alone
        if not spans:
            return fail("no_candidates")
        ranked = rank_spans(span_features(question, unit, tagged or Tagged(()), spans),
                            WEIGHTS_NO_MODEL)
        return _decided(unit, spans, ranked, min_confidence, cover, t0)
    if generator is None:
        return fail("no_generator")
    messages = build_messages(question, unit, context)
    confidence: float | None = None
    covered: tuple[int, int] | None = None
    try:
        if spans:
            by_text = {" ".join(unit[s:e].split()): (s, e) for s, e in reversed(spans)}
            replies = ([NOT_FOUND] if allow_not_found else []) + list(by_text)
            if decode == "grammar":
                reply = " ".join(generator.complete_constrained(
                    messages, candidates_grammar(replies), max_tokens, deadline_s).split())
            elif rank == "model":
                reply, confidence, covered = _ranked_reply(
                    generator, messages, replies, question, unit, tagged, by_text, deadline_s,
                    cover)
            else:
                index, confidence = generator.choose(messages, replies, deadline_s)
                reply = replies[index]
        else:
            reply = " ".join(generator.complete_constrained(
                messages, build_grammar(unit, allow_not_found), max_tokens, deadline_s).split())
    except TimeoutError:
        return fail("timeout")
    except OverloadedError:
        return fail("overloaded")
    except Exception:  # noqa: BLE001 - a failed pick falls back to the unit
        return fail("error")
    if allow_not_found and reply == NOT_FOUND:
        return SpanPick(None, 0, 0, True, "not_found", time.monotonic() - t0, reply, confidence)
    span = by_text.get(reply) if spans else (locate(reply, unit)
                                             or locate(reply, unit, cut=True))
    if span is None:
        return fail("unmapped", reply, confidence)
    if confidence is not None and confidence < min_confidence:
        if covered is None:
            return fail("unsure", reply, confidence)
        span, reason = covered, "cover"
    else:
        reason = "ok"
    start, end = span
    return SpanPick(unit[start:end], start, end, False, reason, time.monotonic() - t0, reply,
                    confidence)


def _covering(spans: Sequence[tuple[int, int]], ranked: Sequence[tuple[int, float]],
              cover: int) -> tuple[int, int] | None:
    """The shortest run holding the ``cover`` best of ``spans`` (None for fewer than two)."""
    top = [spans[k] for k, _ in ranked[:cover]] if cover > 1 else []
    return (min(s for s, _ in top), max(e for _, e in top)) if len(top) > 1 else None


def _decided(unit: str, spans: Sequence[tuple[int, int]], ranked: Sequence[tuple[int, float]],
             min_confidence: float, cover: int, t0: float) -> SpanPick:
    """The pick of a ranking made without the model: its best span if sure enough, else the
    covering run (``cover``) or nothing (the unit)."""
    best, p = ranked[0]
    start, end = spans[best]
    reason = "ok"
    if p < min_confidence:
        covered = _covering(spans, ranked, cover)
        if covered is None:
            return SpanPick(None, 0, 0, False, "unsure", time.monotonic() - t0, "", p)
        (start, end), reason = covered, "cover"
    return SpanPick(unit[start:end], start, end, False, reason, time.monotonic() - t0,
                    unit[spans[best][0]:spans[best][1]], p)


def _ranked_reply(generator: ConstrainedGenerator, messages: list[dict[str, str]],
                  replies: list[str], question: str, unit: str, tagged: Tagged | None,
                  by_text: dict[str, tuple[int, int]], deadline_s: float, cover: int
                  ) -> tuple[str, float, tuple[int, int] | None]:
    """The reply :func:`rank_spans` puts first, given the model's shares of them, with its
    probability under the ranking and, with ``cover`` > 1, the shortest run of the unit
    holding the ``cover`` best (the answer when the first is not sure enough); ``NOT
    FOUND`` when that is the model's own choice."""
    index, prob, shares = generator.choose_shares(messages, replies, deadline_s)
    if replies[index] == NOT_FOUND:
        return NOT_FOUND, prob, None
    first = 1 if replies[0] == NOT_FOUND else 0
    texts = replies[first:]
    feats = span_features(question, unit, tagged or Tagged(()), [by_text[t] for t in texts],
                          shares[first:], index - first)
    ranked = rank_spans(feats)
    best, p = ranked[0]
    return texts[best], p, _covering([by_text[t] for t in texts], ranked, cover)


def offsets_in(parent_start: int, pick: SpanPick) -> tuple[int, int] | None:
    """The pick's offsets in the text the unit was cut from (the unit starts there at
    ``parent_start``), or None when nothing was picked."""
    return (parent_start + pick.start, parent_start + pick.end) if pick.picked else None


__all__ = ["FEATURES", "NOT_FOUND", "WEIGHTS", "WEIGHTS_NO_MODEL", "ConstrainedGenerator",
           "SpanPick", "SpanPicker", "Tagged", "build_grammar", "build_messages", "candidate_spans",
           "candidates_grammar", "locate", "offsets_in", "pick_span", "rank_spans",
           "span_features", "tagged_from_doc", "tokenize", "wanted_labels"]
