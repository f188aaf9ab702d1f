"""The verifier: a draft of the small generator is an answer only if the evidence holds it.

Every number must appear in the cited text; at least half of the content words (all of
them when there are only one or two) must appear there too; and the cited evidence must be
about the question. Anything else is rejected and the pipeline quotes the evidence instead.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

from service.answer.grounding import NUMBER, tokens
from service.answer.result import Evidence

_CITE = re.compile(r"\[(\d{1,2})\]")
_DECLINE = re.compile(
    r"not found|not (?:mentioned|provided|stated|specified|given|available)|"
    r"(?:do not|don't|cannot|can't|unable to) (?:know|answer|find|determine)|no information",
    re.I,
)
STOPWORDS = frozenset(
    "a an the of to in on at by for with from and or but is are was were be been being "
    "it its this that these those as which who whom what when where why how do does did "
    "has have had not no yes than then there their they them he she his her we our you your "
    "i me my can could would should will shall may might must about into over under after "
    "before also only just so such very more most any all each other some answer passage "
    "passages question according".split()
)


def content_words(text: str) -> set[str]:
    return {w.lower().strip(".'-") for w in tokens(text)} - STOPWORDS - {""}


def numbers(text: str) -> set[str]:
    return {n.replace(",", "") for n in NUMBER.findall(text)}


@dataclass
class Verdict:
    supported: bool
    answer: str
    cited: list[int]
    reason: str = ""


def verify(draft: str, evidence: Sequence[Evidence], question: str = "") -> Verdict:
    """Check a draft against the evidence it cites (or all evidence if it cites none).

    Every number must appear in the cited text; at least half of the content words
    (and all of them when there are only one or two) must appear there too; and the
    cited evidence must be about the question (share a content word with it, or be
    the best-ranked sentence), so a true-but-irrelevant quote is not an answer.
    """
    by_n = {ev.n: ev for ev in evidence}
    cited = [int(n) for n in _CITE.findall(draft) if int(n) in by_n]
    text = _CITE.sub("", draft)
    text = re.sub(r"^\s*(answer|a)\s*:\s*", "", text, flags=re.I).strip().strip('"').strip()
    text = re.sub(r"\s+([.,;:])", r"\1", text).strip()
    if not text or _DECLINE.search(text):
        return Verdict(False, "", [], "declined")
    support_pool = [by_n[n] for n in cited] or list(evidence)
    support_text = " ".join(ev.text for ev in support_pool)
    missing_numbers = numbers(text) - numbers(support_text)
    if missing_numbers:
        return Verdict(False, text, cited, f"unsupported numbers {sorted(missing_numbers)}")
    words = content_words(text)
    if not words:
        return Verdict(False, text, cited, "no content words")
    support_words = content_words(support_text)
    found = len(words & support_words)
    needed = len(words) if len(words) <= 2 else math.ceil(len(words) / 2)
    if found < needed:
        return Verdict(False, text, cited, "unsupported words")
    if not cited:
        # attribute to the evidence sentence that supports the draft best
        best = max(evidence, key=lambda ev: len(words & content_words(ev.text)))
        cited = [best.n]
    q_words = content_words(question)
    if q_words and evidence:
        top = evidence[0].n
        for n in cited:
            if n != top and not (q_words & content_words(by_n[n].text)):
                return Verdict(False, text, cited, f"cited passage [{n}] is off the question")
    return Verdict(True, text, cited)
