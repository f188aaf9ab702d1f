"""The qualifier and answer-type check: does this unit answer *this* question?

A unit can be on topic and still not answer: it states the figure of another quarter, the
manager of another site, the price of another model, or it speaks of the thing asked about
without saying what was asked (no amount for "how much", no name for "who"). This step runs
after ranking, on the best units in order, and the answer is the first unit that passes; if
none does, the answer is ``not_found``. It is one explicit step, not a weight in a model.

Qualifiers of a question (:func:`analyse`):

* **periods**: years, quarters, half-years and months (from dates in any common form,
  ISO dates included);
* **identifiers**: codes that mix letters and digits (``CP-40``, ``IR-2024-017``);
* **names**: of people, places, organisations and products — spaCy's entities
  (``service/answer/tagger.py``) and, because a small tagger misses some, capitalised words
  that do not open the question.

Where each is looked for: the unit itself, its context (section path, list lead-in, table
header), the document's name (``headcount-2024.csv`` says its year), and more loosely the
retrieved chunk around the unit.

* A period or identifier must be in the unit, its context or the document's name. If it is
  not there but another value of the same kind is (another quarter, another year, another
  model of the same series), the unit states something else and is rejected; if nothing of
  that kind is there, the surrounding chunk must carry it.
* A name must appear in the unit, its context or the document's name, or — for a sentence,
  which may lean on its neighbours ("It was founded in 1987") — in the chunk; accents aside,
  and in any form sharing its first five letters (Scandinavia, Scandinavian). A list item
  or table row is a record about what it names: a name the question asks about must be in
  the record itself, its context or the document's name; only a table row that names
  nothing the question does not (:func:`other_names`: "Key figure: Revenue | 2023: …")
  may take it from the chunk, as a sentence does.
* The words naming the thing asked for (``focus``: "notice period" in "What is the notice
  period for …") must be in the unit or its context (:func:`focus_stated`): in a table row
  or a "term: value" list item its head noun always; in a sentence, where the question
  names it plainly ("What is the X …", "What X do …"), at least one of its words, and the
  head noun not only as another kind of it: a unit about the probation period does not
  state a notice period.
* A figure the question counts something by ("after 40 years") is a qualifier too: a unit
  that counts the same thing in another figure ("30 years of service: …"), with no range
  holding the question's, answers another question (:func:`measured_otherwise`); a figure
  inside a range ("over €25,000 to €150,000", currency signs and "12k" read as numbers)
  must fall in one the unit states.
* A period the unit only compares against ("2.1% more than in the third quarter of 2023")
  is not one it states (:func:`without_comparisons`).
* An acronym is stated by its spelt-out form ("MFA", "Multi-factor authentication"), and a
  name by a near form of it (Morocco, Moroccan).
* A table row or "term: value" item is about what it and its context say: one that leaves
  two or more of the question's common nouns unsaid is about something else
  (:func:`record_about`). A list item written as prose ("upload the invoice
  … by 30 November;") is held to what a sentence is held to.

Answer type (:func:`asked_for`): "how much/many", or a question about a price, fee, rate or
other measure, needs an amount that is not a calendar date; "when" needs a date, a time or
a number; "who" a name; "which N" a name, identifier or number, or the term a "term: value"
item defines ("blue: the group lock box"). The thing must be in the unit (not only in its
context) and not be something the question already says.

Two more things never answer: a sentence that ends in ":" (it introduces a list or table; the
values are in the items below it), and text that addresses an AI assistant with orders (a
prompt injection is data, not evidence).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from core.units import UnitContext, UnitKind
from ingest import tagger
from service.answer.grounding import STOPWORDS, stem

MONTHS = {m: i for i, m in enumerate(
    "january february march april may june july august september october november december"
    .split(), start=1)}
MONTHS.update({m[:3]: i for m, i in list(MONTHS.items())})
MONTHS["sept"] = 9
_MONTH = r"(january|february|march|april|may|june|july|august|september|october|november|" \
         r"december|jan|feb|mar|apr|jun|jul|aug|sept|sep|oct|nov|dec)\.?"
_YEAR = re.compile(r"(?<![\d.,])(19\d{2}|20\d{2})(?![\d.,]\d|%)")
_ISO_DATE = re.compile(r"(?<!\d)(19\d{2}|20\d{2})-(0[1-9]|1[0-2])(?:-(\d{2}))?(?!\d)")
_MONTH_WORD = re.compile(rf"\b{_MONTH}\b", re.I)
_ORDINAL = {"first": 1, "1st": 1, "second": 2, "2nd": 2, "third": 3, "3rd": 3, "fourth": 4,
            "4th": 4}
_QUARTER = re.compile(r"\bQ([1-4])\b|\b(first|second|third|fourth|1st|2nd|3rd|4th)[ -]quarter\b"
                      r"|\b([1-4])Q\b", re.I)
# "the last quarter of 2024" is its fourth; "last quarter" alone is the one before this one
_LAST_QUARTER = re.compile(r"\b(?:last|final)[ -]quarter\s+of\b", re.I)
# a whole year, asked or stated: its figure is not a quarter's, nor a quarter's its
_FULL_YEAR = re.compile(
    r"\b(?:full|whole|entire)[ -]year\b|\b(?:the\s+)?(?:whole|entirety)\s+of\s+(?:the\s+year|"
    r"(?:19|20)\d{2})\b|\b(?:19|20)\d{2}\s+as\s+a\s+whole\b|\bFY\s?(?:19|20)?\d{2}\b", re.I)
_HALF = re.compile(r"\bH([12])\b|\b(first|second|1st|2nd)[ -]half\b", re.I)
_DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
# a day of the week by name ("Sundays"), a run of them ("Monday to Friday", "Mon-Fri": the
# short forms count only in a run, where "Sun" or "sat" cannot be anything else), weekdays
# or the weekend
_DAY_NAME = r"(?:mon|tues|wednes|thurs|fri|satur|sun)day"
_DAY_SHORT = r"(?:Mon|Tue|Tues|Wed|Thu|Thur|Thurs|Fri|Sat|Sun)\.?"
_DAY_RUN = re.compile(rf"\b(?i:({_DAY_NAME})|({_DAY_SHORT}))\s*(?:to|until|till|through|-|–|—)"
                      rf"\s*(?i:({_DAY_NAME})|({_DAY_SHORT}))(?!\w)")
_DAY_ONE = re.compile(rf"\b({_DAY_NAME})s?\b", re.I)
_WEEKDAYS = re.compile(r"\bweek ?days\b", re.I)
_WEEKEND = re.compile(r"\bweek-?ends?\b", re.I)
# a calendar date: "3 September 2024", "September 3, 2024", "September 2024", "2024-09-03",
# "03.09.2024"; its numbers are not amounts
_DATE = re.compile(
    rf"\b\d{{1,2}}(?:st|nd|rd|th)?\.?\s+{_MONTH}(?:\s+\d{{4}})?\b|\b{_MONTH}\s+\d{{1,2}}(?:st|nd|"
    rf"rd|th)?,?\s+\d{{4}}\b|\b{_MONTH}\s+\d{{4}}\b|\b\d{{4}}-\d{{2}}(?:-\d{{2}})?\b|"
    r"\b\d{1,2}[./]\d{1,2}[./]\d{2,4}\b|\b\d{1,2}:\d{2}\b",
    re.I)
# letters and digits in one code, joined by hyphens or not: CP-40, IR-2024-017, FL-07, X200
# (not the decimals of a figure: "7.5-tonne" holds no code "5-tonne")
_IDENT = re.compile(r"(?<![\w-])(?<!\d[.,])(?=[\w-]*\d)(?=[\w-]*[A-Za-z])[A-Za-z0-9]+"
                    r"(?:-[A-Za-z0-9]+)*(?![\w-]*\w)")
# ordinals, units and measures written with a hyphen ("18-tonne", "40-hour") are no codes
_NOT_IDENT = re.compile(r"^(q[1-4]|h[12]|[1-4]q|\d+(st|nd|rd|th|s|h|m|kw|kg|km|mm|cm|pm|am|x)"
                        r"|\d+[a-z]{1,3}|\d+-[a-z]+)$", re.I)
_NUMBER = re.compile(r"\d+(?:[.,]\d+)*")
_NUMBER_WORDS = frozenset(
    "one two three four five six seven eight nine ten eleven twelve fifteen twenty thirty "
    "forty fifty sixty hundred thousand million billion half dozen once twice double triple "
    "treble".split())
_WORD = re.compile(r"[A-Za-z][A-Za-z'&.-]*[A-Za-z]|[A-Za-z]")
# what a question opens with, or words that are capitalised without naming anything
_NOT_NAMES = frozenset(
    "i what when where who whom whose which why how is are was were do does did can could "
    "would should will may might must the a an in on at of for to and or mr mrs ms dr "
    "monday tuesday wednesday thursday friday saturday sunday".split()) | set(MONTHS)
# a question that asks for a measure wants an amount even when it opens with "what"
_MEASURES = frozenset(
    "price prices cost costs fee fees rate rates revenue revenues margin margins share "
    "percentage percent amount amounts total headcount salary salaries budget "
    "discount discounts allowance allowances charge charges value turnover backlog debt "
    "spend spending expenditure capex profit loss losses ebit ebitda sales volume capacity "
    "count limit minimum maximum premium deposit penalty wage wages pay rent rents interest "
    "tax taxes bonus income earnings expense expenses savings".split())


# nor does "what is the deadline …" want anything but a date
_DATES = frozenset("deadline deadlines date dates".split())


class Asked(StrEnum):
    """What a question asks for."""

    AMOUNT = "amount"
    TIME = "time"
    PERSON = "person"
    NAMED = "named"  # which N: a name, an identifier or a number
    OTHER = "other"


@dataclass(frozen=True)
class Periods:
    years: frozenset[str] = frozenset()
    quarters: frozenset[str] = frozenset()
    halves: frozenset[str] = frozenset()
    months: frozenset[str] = frozenset()

    def kinds(self) -> Iterable[tuple[str, frozenset[str]]]:
        return (("year", self.years), ("quarter", self.quarters), ("half", self.halves),
                ("month", self.months))


@dataclass(frozen=True)
class Question:
    """A question's qualifiers and the kind of thing it asks for."""

    text: str
    periods: Periods
    idents: frozenset[str]
    names: tuple[str, ...]
    asked: Asked
    known: frozenset[str] = field(default_factory=frozenset)  # its words (lower-cased), figures
    amounts: frozenset[float] = frozenset()  # plain numbers ("an order of 60 units")
    focus: tuple[str, ...] = ()  # stems naming the thing asked for ("notice", "period")
    focus_is: bool = False  # named by a copula ("What is the notice period …")
    # named plainly: by a copula, or as the noun group of "What/Which N do …" ("What payment
    # terms do we have …"), not "What did the X do …" nor "How many N …"
    focus_plain: bool = False
    measures: frozenset[tuple[float, str]] = frozenset()  # "after 40 years": (40, "year")
    nouns: tuple[str, ...] = ()  # stems of its common nouns ("quality", "inspector")
    days: frozenset[str] = frozenset()  # days of the week ("on Sundays": "sun")


@dataclass(frozen=True)
class Verdict:
    ok: bool
    reason: str = ""
    # rejected for stating another value of the kind asked: another period or identifier
    # (Q3 for Q1), a band missing the amount asked, another count of the measure asked
    other_value: bool = False


PASS = Verdict(True)


def periods(text: str) -> Periods:
    years: set[str] = set()
    months: set[str] = set()
    for m in _ISO_DATE.finditer(text):
        years.add(m.group(1))
        months.add(str(int(m.group(2))))
    years.update(m.group(1) for m in _YEAR.finditer(text))
    for m in _MONTH_WORD.finditer(text):
        word = m.group(1).lower()
        if word == "may" and not m.group(0)[0].isupper():
            continue  # "may" the verb
        if word == "mar" and not m.group(0)[0].isupper():
            continue
        months.add(str(MONTHS[word]))
    quarters = set()
    for m in _QUARTER.finditer(text):
        n = m.group(1) or m.group(3) or str(_ORDINAL[m.group(2).lower()])
        quarters.add(f"Q{n}")
    if _LAST_QUARTER.search(text):
        quarters.add("Q4")
    if _FULL_YEAR.search(text):
        quarters.add("FY")  # the whole year, where a quarter would be
    halves = set()
    for m in _HALF.finditer(text):
        halves.add(f"H{m.group(1) or _ORDINAL[m.group(2).lower()]}")
    return Periods(frozenset(years), frozenset(quarters), frozenset(halves), frozenset(months))


def days(text: str) -> frozenset[str]:
    """The days of the week ``text`` speaks of ("sun" for "on Sundays"; "Monday to Friday"
    and "weekdays" are five, "the weekend" two)."""
    out: set[str] = set()
    rest = text
    for m in _DAY_RUN.finditer(text):
        a, b = (_DAYS.index((m.group(i) or m.group(i + 1)).lower()[:3]) for i in (1, 3))
        out.update(_DAYS[a:b + 1] if a <= b else _DAYS[a:] + _DAYS[:b + 1])
        rest = rest.replace(m.group(0), " ")
    out.update(m.group(1).lower()[:3] for m in _DAY_ONE.finditer(rest))
    if _WEEKDAYS.search(text):
        out.update(_DAYS[:5])
    if _WEEKEND.search(text):
        out.update(_DAYS[5:])
    return frozenset(out)


def identifiers(text: str) -> frozenset[str]:
    """Codes mixing letters and digits, upper-cased without hyphens (``CP-40`` → ``CP40``);
    a longer code also counts as each code it opens with (``CP-40-H`` is a ``CP-40`` part)."""
    out = set()
    for m in _IDENT.finditer(text):
        token = m.group(0)
        if _NOT_IDENT.match(token) or _YEAR.fullmatch(token):
            continue
        parts = token.upper().split("-")
        for k in range(1, len(parts) + 1):
            code = "".join(parts[:k])
            if k == len(parts) or (re.search(r"\d", code) and re.search(r"[A-Z]", code)):
                out.add(code)
    return frozenset(out)


_NUM = r"(\d[\d,]*(?:\.\d+)?)"
_CUR = r"(?:[€$£]\s?|(?:EUR|USD|GBP|CHF|CZK)\s)?"  # "over €2,500 to €25,000"
_RANGES = (  # (pattern, (low group, high group)); a missing bound is open
    (re.compile(rf"(?:between\s+)?{_NUM}\s*(?:to|and|-|–|—)\s*{_CUR}{_NUM}", re.I), (1, 2)),
    (re.compile(rf"{_NUM}\s*(?:[A-Za-z]+\s+)?(?:or more|or above|and above|and over|"
                rf"or longer|\+)", re.I), (1, 0)),
    (re.compile(rf"(?:more than|over|above|at least|from|longer than)\s+{_CUR}{_NUM}", re.I),
     (1, 0)),
    (re.compile(rf"(?:up to|less than|under|below|at most|fewer than|within)\s+{_CUR}{_NUM}",
                re.I), (0, 1)),
)
# "a 12k order": thousands
_THOUSANDS = re.compile(r"(?<![\w.,])(\d+(?:\.\d+)?)\s?k\b", re.I)


def _value(text: str) -> float:
    return float(text.replace(",", ""))


def numbers(text: str) -> frozenset[float]:
    """Plain numbers of a question: not years, dates, times or parts of identifiers."""
    bare = _DATE.sub(" ", text)
    found = {float(m.group(1)) * 1000 for m in _THOUSANDS.finditer(bare)}
    bare = _IDENT.sub(" ", _YEAR.sub(" ", _THOUSANDS.sub(" ", bare)))
    return frozenset(found | {_value(m.group(0)) for m in re.finditer(_NUM, bare)})


def ranges(text: str) -> list[tuple[float, float]]:
    """The ranges ``text`` states; "over €2,500 to €25,000" is one closed range, not also
    the open "over €2,500"."""
    found = []
    taken: list[tuple[int, int]] = []  # spans of the closed ranges
    for pattern, (lo, hi) in _RANGES:
        for m in pattern.finditer(text):
            if not (lo and hi) and any(a < m.end() and m.start() < b for a, b in taken):
                continue
            low = _value(m.group(lo)) if lo else float("-inf")
            high = _value(m.group(hi)) if hi else float("inf")
            if low <= high:
                found.append((low, high))
                if lo and hi:
                    taken.append(m.span())
    return found


# "40 years", "3 shifts": a figure and the word it counts
_MEASURE = re.compile(r"(?<![\w.,])(\d[\d,]*(?:\.\d+)?)[ -]([A-Za-z]{3,})\b")


def measures(text: str) -> set[tuple[float, str]]:
    """(figure, stem of the word it counts) of ``text``, not dates or years: "after 40 years"
    gives (40, "year")."""
    bare = _YEAR.sub(" ", _DATE.sub(" ", text))
    return {(_value(m.group(1)), stem(m.group(2).lower())) for m in _MEASURE.finditer(bare)
            if m.group(2).lower() not in STOPWORDS}


def _series(ident: str) -> str:
    """The letters an identifier opens with: CP40 and CP110 are of one series."""
    m = re.match(r"[A-Z]+", ident)
    return m.group(0) if m else ""


def _norm_words(text: str) -> set[str]:
    return {w.lower().removesuffix("'s").strip(".'") for w in _WORD.findall(text)}


def names(text: str) -> tuple[str, ...]:
    """Names a question mentions: spaCy's named entities, then capitalised words that do not
    open the text (each name once, as written, without a possessive)."""
    found: list[str] = []
    covered: set[str] = set()
    for ent, label, _, _ in tagger.entities(text):
        if label in tagger.NAMED:
            name = ent.removesuffix("'s").removesuffix("’s").strip()
            words = _norm_words(name) - _NOT_NAMES
            if words:
                found.append(name)
                covered |= words
    for i, m in enumerate(_WORD.finditer(text)):
        word = m.group(0)
        low = word.lower().removesuffix("'s")
        # Titlecase only: an all-capitals word is a term (EBIT, R&D, CISO) unless the tagger
        # says it names something; "I've", "I'm" are the asker
        if i == 0 or not word[0].isupper() or word.isupper() or low in _NOT_NAMES \
                or low.partition("'")[0] in _NOT_NAMES or low in covered:
            continue
        if _YEAR.fullmatch(word) or _QUARTER.fullmatch(word):
            continue
        found.append(word.removesuffix("'s"))
        covered.add(low)
    return tuple(dict.fromkeys(found))


_BOUND_ASKED = re.compile(
    r"\b(?:below|above|under|over|beyond|at least|at most|more than|less than) what\b|"
    r"\bat what (?:age|temperature|speed|price|rate|level|percentage|height|depth|pressure|"
    r"weight|distance|cost)\b")
_PRICE_VERB = re.compile(
    r"^\s*what\s+(?:does|do|did|will|would)\s+(?:[\w'’-]+\s+){1,4}?(?:cost|charge|bill|pay)"
    r"\b(?!\s+(?:attention|tribute|homage|off|back|out)\b)")


def asked_for(question: str) -> Asked:
    q = question.lower()
    if re.search(r"\bwho\b|\bwhom\b|\bwhose\b", q):
        return Asked.PERSON
    if re.search(r"\bhow (many|much|long|old|far|large|big|tall|high|often|fast|heavy)\b|"
                 r"\bwhat (percentage|percent|number|amount|share|proportion)\b|"
                 r"\bup to what\b|\bhow quickly\b", q):
        return Asked.TIME if re.search(r"\bhow (long|often|quickly)\b", q) else Asked.AMOUNT
    # a bound asked for ("Below what score …", "At what temperature …") or what something
    # costs ("What does the carrier bill for …") is a figure whatever noun follows
    if _BOUND_ASKED.search(q) or _PRICE_VERB.search(q):
        return Asked.AMOUNT
    if re.search(r"\bwhen\b|\bsince when\b|\bwhat (year|date|day|month|time)\b|"
                 r"\b(which|what) (year|date|day|month)\b|\bby when\b|\buntil when\b", q):
        return Asked.TIME
    m = re.match(r"^\s*(?:what(?:'s|’s| is| was| are| were)|how much)\s+(.*)", q)
    if m:  # the words before the first preposition or verb name what is asked for
        head = re.split(r"\b(?:in|of|for|on|at|per|did|does|do|is|was|are|were|has|have|"
                        r"will|would|can|to|from|with|by)\b", m.group(1))[0]
        if set(_norm_words(head)) & _MEASURES:
            return Asked.AMOUNT
        if set(_norm_words(head)) & _DATES:
            return Asked.TIME
    if re.search(r"\bwhich\b", q):
        return Asked.NAMED
    return Asked.OTHER


# "Who is the EHS officer …", "What was the list price of …": the noun after the article
_HEAD_IS = re.compile(
    r"^\s*(?:who|what|which)(?:'s|’s|\s+(?:is|was|are|were))\s+(?:the|a|an|our|its|their|his|"
    r"her|my|your)\s+(.+)$", re.I)
# "What volume discount does …", "How much special leave do I …", "How many days was …"
_HEAD_DO = re.compile(
    r"^\s*(?:what|which|how much|how many)\s+(.+?)\s+(?:do|does|did|is|are|was|were|can|could|"
    r"will|would|should|has|have|had|must|may)\b", re.I)
_HEAD_END = re.compile(
    r"\s+(?:of|in|for|at|on|after|before|with|to|from|by|per|during|under|between|across|"
    r"over|within|among|through|that|who|which|when|where|do|does|did|is|are|was|were)\b|"
    r"[?,]", re.I)
# heads that say nothing about the thing asked for (the answer type covers them)
_GENERIC = frozenset(
    "people person persons thing things one ones kind type types way ways name names part "
    "money amount amounts number numbers time times share percentage percent proportion "
    "value values quantity quantities figure figures level levels total totals".split())


def focus(question: str, skip: Iterable[str] = (), nouns: Iterable[str] = ()
          ) -> tuple[str, ...]:
    """The words naming the thing a question asks for ("notice period" in "What is the notice
    period for …"), stemmed, without qualifiers, names or generic words; () if none.
    ``nouns``: the question's (:func:`question_nouns`), for "How many N <verb> …"."""
    m = _HEAD_IS.match(question) or _HEAD_DO.match(question)
    if not m:
        return _counted(question, nouns)
    head = _IDENT.sub(" ", _HEAD_END.split(m.group(1), maxsplit=1)[0])
    skipped = {w.lower() for w in skip}
    words = [w for w in _WORD.findall(head) if w.lower() not in skipped
             and w.lower() not in _GENERIC]
    return tuple(dict.fromkeys(stem(w) for w in words if stem(w) not in STOPWORDS))


_HOW_MANY = re.compile(r"^\s*how many\s+([A-Za-z][\w-]*)\s", re.I)


def _counted(question: str, nouns: Iterable[str]) -> tuple[str, ...]:
    """"How many operators per shift worked …": the noun counted, where no verb of "do" or
    "be" closes it (:data:`_HEAD_DO` takes "How many days was …"), if it is one of the
    question's ``nouns``; () without a tagger."""
    m = _HOW_MANY.match(question)
    counted = stem(m.group(1)) if m else ""
    return (counted,) if counted and counted in set(nouns) else ()


# "What did the X do …": the words after "what" open with a verb, not the thing asked for
_NOT_A_HEAD = frozenset(
    "do does did is are was were can could will would should has have had must may might "
    "i we you he she it they the a an".split())


def plain_focus(question: str) -> bool:
    """Does the question name the thing it asks for plainly: "What is the X …", or "What/Which
    X do …" where X is a noun group?"""
    if _HEAD_IS.match(question):
        return True
    m = _HEAD_DO.match(question)
    if m is None or not re.match(r"\s*(?:what|which)\b", question, re.I):
        return False
    first = m.group(1).split()[0].lower()
    return first not in _NOT_A_HEAD


def question_nouns(question: str) -> tuple[str, ...]:
    """Stems of the common nouns of a question (not names, periods or generic words): what a
    record must speak of to answer it. () without a tagger."""
    doc = tagger.parse(question)
    if doc is None:
        return ()
    out = []
    for tok in doc:
        word = tok.text.lower()
        if tok.pos_ == "NOUN" and tok.text.isalpha() and word not in _GENERIC \
                and word not in _NOT_NAMES and not _QUARTER.fullmatch(tok.text):
            out.append(stem(word))
    return tuple(dict.fromkeys(w for w in out if w not in STOPWORDS))


def _known(question: str) -> frozenset[str]:
    """What a question already says, as an answer cannot: its words, lower-cased, and its
    figures as written ("2023", "2.1"), so a unit's figure that only repeats one is no
    amount, date or number of its own."""
    return frozenset(_norm_words(question)) | frozenset(
        m.group(0) for m in _NUMBER.finditer(question))


def analyse(question: str) -> Question:
    found = names(question)
    name_words = {w for n in found for w in _norm_words(n)}
    nouns = question_nouns(question)  # one tagger pass for the nouns and "How many N"
    return Question(question, periods(question), identifiers(question), found,
                    asked_for(question), _known(question), numbers(question),
                    focus(question, name_words, nouns), bool(_HEAD_IS.match(question)),
                    plain_focus(question), frozenset(measures(question)), nouns, days(question))


# Words a document writes for what a question says otherwise: "weekly hours" speaks of the
# week of "hours a week", "Payload (kg)" of kilos, "Minimum order" of the smallest one
_SAID_AS = {
    "hourly": "hour", "daily": "day", "weekly": "week", "monthly": "month",
    "quarterly": "quarter", "yearly": "year", "annual": "year", "annually": "year",
    "kg": "kilo kilogram", "g": "gram", "km": "kilometre", "t": "tonne", "l": "litre",
    "h": "hour", "hrs": "hour", "min": "minute", "mins": "minute",
    "minimum": "smallest lowest least", "max": "maximum largest highest most biggest",
    "maximum": "largest highest most biggest",
}
_SAID_STEMS = {k: {stem(w) for w in v.split()} for k, v in _SAID_AS.items()}


def _stems(text: str) -> set[str]:
    """The stems of the words of ``text``; "government-set" also states "government" and
    "set", "weekly" the "week", "kg" kilos (``_SAID_AS``)."""
    words = _WORD.findall(text)
    return {stem(w) for w in words} | {stem(p) for w in words for p in w.split("-") if p} | {
        s for w in words for s in _SAID_STEMS.get(w.lower(), ())}


def focus_stated(q: Question, unit: str, near: str, record: bool) -> Verdict:
    """Is the thing the question asks for (its ``focus``) stated in the unit or its context
    (``near``: unit, context and document name)?

    A record (list item, table row) must state the head noun, and may say at most one
    modifier otherwise ("maximum hotel rate" of "Munich: maximum rate"). Prose paraphrases
    ("the outage was caused by" for "the root cause") and answers "What N …" with an
    instance of N ("women" for "What gender …"), so it is held to less, and only where the
    question names the thing plainly (:func:`plain_focus`): the head noun must not be there
    only as another kind of it (a "probation period" does not state a notice period); and
    a "Who is the <role> …" sentence must speak of that role (one naming the Head of
    Logistics does not say who the deputy is). SQuAD dev: demanding some focus word of every
    plainly named "What …" cost 0.715 → 0.685 correct, all on paraphrases like those."""
    if not q.focus or not (record or q.focus_plain):
        return PASS
    have = _stems(near)
    missing = [w for w in q.focus if w not in have]
    if record:
        if q.focus[-1] in missing or len(missing) > 1:
            return Verdict(False, f"{' '.join(missing)} not stated")
        return PASS
    if q.asked is Asked.PERSON and q.focus_is and len(missing) == len(q.focus):
        return Verdict(False, f"{' '.join(missing)} not stated")
    head = q.focus[-1]
    if missing and head not in missing and _only_other_kind(unit, head, q.focus):
        return Verdict(False, f"{' '.join(missing)} {head} not stated, another {head} is")
    return PASS


def _only_other_kind(unit: str, head: str, wanted: Sequence[str]) -> bool:
    """Does every mention of ``head`` in ``unit`` follow a noun the question does not ask
    about ("probation period" where a "notice period" is asked)? False without a tagger,
    or where ``head`` is only in the context."""
    doc = tagger.parse(unit)
    if doc is None:
        return False
    seen = False
    for i, tok in enumerate(doc):
        if stem(tok.text) != head:
            continue
        seen = True
        prev = doc[i - 1] if i else None
        if prev is None or prev.pos_ not in ("NOUN", "PROPN") or not prev.text.isalpha() \
                or stem(prev.text) in wanted:
            return False
    return seen


def doc_label(filename: str) -> str:
    """A document's name as words: ``board-minutes-2024-11-14.pdf`` keeps its date whole."""
    stem = filename.rsplit(".", 1)[0] if "." in filename else filename
    return re.sub(r"(?<!\d)[-_](?!\d)|(?<=\d)[_](?=\d)", " ", stem)


def _fold(word: str) -> str:
    return "".join(c for c in unicodedata.normalize("NFKD", word) if not unicodedata.combining(c))


# a people's name that is no near form of its country's (Moroccan/Morocco is: _near_form)
_DEMONYMS = {
    "irish": "ireland", "dutch": "netherlands", "british": "britain", "english": "england",
    "scottish": "scotland", "scots": "scotland", "welsh": "wales", "french": "france",
    "spanish": "spain", "swiss": "switzerland", "danish": "denmark", "swedish": "sweden",
    "finnish": "finland", "polish": "poland", "czech": "czechia", "belgian": "belgium",
    "norwegian": "norway", "greek": "greece", "turkish": "turkey", "portuguese": "portugal",
    "flemish": "flanders", "chinese": "china", "japanese": "japan",
}


def _contains(text: str, name: str) -> bool:
    """Does ``text`` mention ``name``: any of its words (a surname alone is enough), accents
    aside, in any form that shares its first five letters (Scandinavia/Scandinavian), or as
    the country its people are named after (Irish/Ireland)?"""
    words = {_fold(w) for w in _norm_words(name) - _NOT_NAMES}
    if not words:
        return False
    words |= {_DEMONYMS[w] for w in words if w in _DEMONYMS}
    have = {_fold(w) for w in _norm_words(text)}
    if words & have:
        return True
    if any(len(w) >= 5 and len(h) >= 5 and _near_form(w, h) for w in words for h in have):
        return True
    return _spelt_out(name, text)


def _near_form(a: str, b: str) -> bool:
    """One word in another form: Scandinavia/Scandinavian, Morocco/Moroccan (they share all
    but the last letter of the shorter, and at least five)."""
    short, long_ = sorted((a, b), key=len)
    common = 0
    for x, y in zip(short, long_, strict=False):
        if x != y:
            break
        common += 1
    return common >= max(5, len(short) - 1)


_ACRONYM = re.compile(r"^[A-Z]{2,6}$")


def _spelt_out(name: str, text: str) -> bool:
    """An acronym the text spells out: "MFA" in "Multi-factor authentication"."""
    if not _ACRONYM.match(name):
        return False
    parts = [p for w in re.findall(r"[A-Za-z][A-Za-z-]*", text) for p in w.split("-") if p]
    initials = "".join(p[0].upper() for p in parts)
    return name in initials and any(
        initials[i:i + len(name)] == name and not {p.lower() for p in parts[i:i + len(name)]}
        & STOPWORDS for i in range(len(initials) - len(name) + 1))


_ASSISTANT = re.compile(r"\b(AI|assistants?|chat ?bots?|language models?|LLMs?|"
                        r"system prompt|automated system)\b", re.I)
_ORDER = re.compile(r"\b(ignore (all |any )?(previous|prior|earlier|above)|you are now|"
                    r"answer only|reply only|respond only|do not (mention|cite|tell|reveal)|"
                    r"instructions?)\b", re.I)


def addresses_assistant(paragraph: str) -> bool:
    """Text that talks to an AI system and gives it orders: a prompt injection."""
    return bool(_ASSISTANT.search(paragraph) and _ORDER.search(paragraph))


def paragraph_at(text: str, start: int, end: int) -> str:
    """The block of lines (between blank lines) around ``text[start:end]``."""
    a = text.rfind("\n\n", 0, start)
    b = text.find("\n\n", end)
    return text[a + 2 if a >= 0 else 0: b if b >= 0 else len(text)]


def _amounts(text: str, known: frozenset[str]) -> bool:
    """A number in ``text`` that is not part of a calendar date or time and not already in the
    question."""
    bare = _DATE.sub(" ", text)
    bare = _YEAR.sub(" ", bare) if not re.search(r"[€$£%]|\b(EUR|USD|GBP)\b", bare) else bare
    for m in _NUMBER.finditer(bare):
        if m.group(0) not in known:
            return True
    return any(w in _NUMBER_WORDS and w not in known for w in _norm_words(bare))


# "… until the empire fell", "… when funding cannot cover costs": a time given by an event
_WHEN_CLAUSE = re.compile(r"\b(until|till|after|before|during|since|when|whenever|once|while|"
                          r"as soon as|by the time)\b", re.I)


# "How long …", "Within what time …": a length of time, which an event does not give
_DURATION_ASKED = re.compile(r"\bhow (?:long|quickly|soon)\b|\bwithin what\b", re.I)


# a length of time: "45 minutes", "three months", "a week", "1939 to 1945"; not a point in
# time ("in October", "the fourth quarter"), which answers "when"
_LENGTH = re.compile(
    r"\b(?:\d+(?:[.,]\d+)?|an?|one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|"
    r"fifteen|twenty|thirty|forty|fifty|sixty|ninety|hundred|several|few|half|many)"
    r"(?:[\s-]+(?:working|calendar|business|full|more|further|consecutive))?[\s-]+"
    r"(?:seconds?|minutes?|mins?|hours?|hrs?|days?|weeks?|months?|years?|quarters?|decades?|"
    r"centuries|century|shifts?|nights?)\b|\b(?:19|20|1\d)\d{2}\s*(?:to|until|-|–|—)\s*"
    r"(?:19|20|1\d)?\d{2}\b|\b(?:immediately|overnight|same day|next day)\b", re.I)


def _temporal(text: str, known: frozenset[str], events: bool = True) -> bool:
    """A date, a time, a period or a number (a duration, a condition) the question does not
    already say; ``events``: a clause naming when ("until the empire fell") counts too."""
    p = periods(text)
    return bool(_DATE.search(text) or (events and _WHEN_CLAUSE.search(text))
                or (p.years - known)
                or p.months or p.quarters or p.halves or _amounts(text, known)) or any(
        label in tagger.TEMPORAL and not set(ent.lower().split()) <= known
        for ent, label, _, _ in tagger.entities(text))


def _has_name(text: str, q: Question, kind: UnitKind) -> bool:
    for ent, label, _, _ in tagger.entities(text):
        if label in tagger.NAMED and not (_norm_words(ent) <= q.known):
            return True
    # a small tagger misses names in fragments ("Maribor: Nina Petek"): two capitalised
    # words in a row that the question does not say
    words = _WORD.findall(text)
    for a, b in zip(words, words[1:], strict=False):
        if a[0].isupper() and b[0].isupper() and not ({a.lower(), b.lower()} & q.known) \
                and a.lower() not in _NOT_NAMES:
            return True
    return False


def answer_type(q: Question, unit: str, kind: UnitKind) -> Verdict:
    if q.asked is Asked.AMOUNT and not _amounts(unit, q.known):
        return Verdict(False, "no amount")
    duration = bool(_DURATION_ASKED.search(q.text))
    if q.asked is Asked.TIME and not _temporal(unit, q.known, events=not duration):
        return Verdict(False, "no date or time")
    # "how long" asks for a length of time or of a thing ("How long is the tunnel?": "46
    # metres"); a figure counting something answers it, a point in time does not
    if duration and not (_LENGTH.search(unit) or measures(unit)):
        return Verdict(False, "no length of time")
    if q.asked is Asked.PERSON and not _has_name(unit, q, kind):
        return Verdict(False, "no name")
    if q.asked is Asked.NAMED and not (
            _has_name(unit, q, kind) or (identifiers(unit) - q.idents)
            or _amounts(unit, q.known) or labelled(unit, kind, q)):
        return Verdict(False, "nothing named")
    return PASS


# "Who was head of sales before Anna Berg?", "Who is Anna Berg's deputy?": someone other
# than the person named
_RELATIVE = re.compile(
    r"\b(?:before|after|succeeded|replaced|preceded|follows|followed|instead of|other than|"
    r"besides|apart from)\s+([A-Z][\w'’-]+(?:\s+[A-Z][\w'’-]+)*)|"
    r"([A-Z][\w-]+(?:\s+[A-Z][\w-]+)*)(?:'s|’s)\s+(?:deputy|successor|predecessor|"
    r"assistant|stand-in|substitute|replacement|manager|boss)\b")


def namesake(unit: str, name: str) -> str:
    """Another thing ``unit`` names that shares a word with ``name`` but is not it ("Health
    and Safety Committee" for "Investment Committee", "Rajesh Nair" for "Priya Nair"), when
    the unit does not state ``name`` itself; "" otherwise. A name counts as stated when any
    of its words is (a surname alone names a person), which such a namesake also satisfies.
    Names of one word are left alone: "Nair" may well be Rajesh Nair; so are other forms
    of the same word ("South African" for "South Africa")."""
    want = _norm_words(_fold(name)) - _NOT_NAMES
    if len(want) < 2 or want <= _norm_words(_fold(unit)):
        return ""

    def same(w: str, x: str) -> bool:  # one word in two forms (Asia, Asian; Africa, African)
        return w == x or _near_form(w, x) \
            or (min(len(w), len(x)) >= 4 and (w.startswith(x) or x.startswith(w)))

    for ent, label, _, _ in tagger.entities(unit):
        if label not in tagger.NAMED:
            continue
        words = _norm_words(_fold(ent)) - _NOT_NAMES
        shared = {w for w in words if any(same(w, x) for x in want)}
        missing = {x for x in want if not any(same(w, x) for w in words)}
        if shared and words - shared and missing:
            return ent
    return ""


def other_person(q: Question, unit: str) -> Verdict:
    """A "who" question about someone placed relative to a person it names (before, after,
    instead of, their deputy) is answered only by a unit naming another person: one that
    names only the question's person ("Owner: Anna Berg, Head of Sales") says who that is,
    not who came before."""
    if q.asked is not Asked.PERSON or not _RELATIVE.search(q.text):
        return PASS
    # the tagger's people, and two capitalised words in a row that it may have missed
    # ("… was run by Petra Lang")
    people = [e for e, label, _, _ in tagger.entities(unit) if label == "PERSON"]
    people += _NAME_PAIR.findall(unit)
    if any(not _norm_words(e) <= q.known | _NOT_NAMES for e in people):
        return PASS
    return Verdict(False, "no one but the person asked about")


_NAME_PAIR = re.compile(r"\b[A-Z][a-z][\w'’-]*[ \t]+[A-Z][a-z][\w'’-]*\b")


_CELL_SPLIT = re.compile(r"\s\|\s|;\s")


def other_names(row: str, q: Question) -> list[str]:
    """The names a table row's cells give that the question does not say: capitalised
    words of its values (after a "Header: " label), not all capitals (EUR, CP), not
    question words. A row that names none ("Key figure: Revenue | 2023: €193.4 million")
    speaks of what its document speaks of, so a name the question asks about may come from
    the chunk around it, as for a sentence; a row naming another site or person may not."""
    found = []
    for cell in _CELL_SPLIT.split(row):
        value = cell.split(": ", 1)[1] if ": " in cell else cell
        for word in _WORD.findall(value):
            low = word.lower().removesuffix("'s")
            if word[0].isupper() and not word.isupper() and low not in q.known \
                    and low not in _NOT_NAMES:
                found.append(word)
    return found


def names_the_one_asked(q: Question, unit: str, kind: UnitKind) -> Verdict:
    """"Which N …" answered by a sentence: one that speaks of an N ("the forklift accident")
    must also say which (a name, an identifier or a number the question does not give); one
    that does not say N may name it by what it is ("the Rhine" for "which river")."""
    if q.asked is not Asked.NAMED or not q.focus:
        return PASS
    head = q.focus[-1]
    if head in {stem(w) for w in _WORD.findall(unit)} and not answer_type(q, unit, kind).ok:
        return Verdict(False, f"no {head} named")
    return PASS


def _layered(what: str, value: str, own: Iterable[str], label: Iterable[str],
             chunk: Iterable[str]) -> Verdict:
    """A period or identifier is looked for in the unit and its context first: if they state
    another value of its kind, they speak of something else. Only where they state none does
    the document's name decide, and only where that is silent too, the chunk around."""
    for layer in (set(own), set(label)):
        if value in layer:
            return PASS
        if layer:
            shown = "/".join(sorted(layer))
            return Verdict(False, f"{what} {value} asked, {shown} stated"
                           if what != value else f"{value} asked, {shown} stated",
                           other_value=True)
    return PASS if value in set(chunk) else Verdict(False, f"{value} not stated")


# "2.1% more than in the third quarter of 2023": the period after "than" is what the figure
# is measured against, not what it is of
_COMPARED = re.compile(r"\b(?:than|compared (?:with|to)|against|versus|vs\.?)\s[^,;:()]*", re.I)


def without_comparisons(text: str) -> str:
    return _COMPARED.sub(" ", text)


# "blue: the group lock box": a list item that defines a term, which is its answer
_LABEL = re.compile(r"^\s*([^:\n]{1,40}):\s+\S")


def labelled(unit: str, kind: UnitKind, q: Question) -> bool:
    """A list item of the form "term: what it is" whose term the question does not say."""
    m = _LABEL.match(unit) if kind is UnitKind.ITEM else None
    return m is not None and len(m.group(1).split()) <= 4 \
        and not _norm_words(m.group(1)) <= q.known


def measured_otherwise(q: Question, unit: str, spans: Sequence[tuple[float, float]]
                       ) -> Verdict:
    """"After 40 years" answered by "30 years of service: …": the unit counts the same thing
    as the question, in another figure, and no range it states (``spans``) holds the
    question's."""
    stated = measures(unit)
    for n, word in q.measures:
        same = {m for m, w in stated if w == word}
        if same and n not in same and not any(lo <= n <= hi for lo, hi in spans):
            shown = "/".join(f"{m:g}" for m in sorted(same))
            return Verdict(False, f"{n:g} {word} asked, {shown} stated", other_value=True)
    return PASS


# how many of a question's nouns a record may leave unsaid (dev2: 0 cost 4 of 86 answerable
# questions and 2 of 44 on dev; 1 abstains on 2 more of 45 near misses than no check)
RECORD_MISSING_NOUNS = 1


def record_about(q: Question, near: str) -> Verdict:
    """A record (table row, "term: value" item) is about what its cells and its context
    say: one that leaves two or more of the question's nouns unsaid ("quality inspectors"
    of a colour-coding list whose items name maintenance staff and contractors) is about
    something else. One missing noun is allowed: a question says more than a row repeats
    ("Who runs the plant in Graz?" of "Site: Graz | Plant manager: …")."""
    have = _stems(near)
    missing = [n for n in q.nouns if n not in have]
    if len(missing) > RECORD_MISSING_NOUNS:
        return Verdict(False, f"{' '.join(missing)} not in the record")
    return PASS


_JOINED = re.compile(r"\s*(?:,|&|\+|/|\band\b)\s*")


def named_with_others(q: Question, row: str) -> Verdict:
    """A table row whose cell names what the question asks about together with something
    else ("Sites: Graz and Villach | Laptops: 190") gives a figure for them together, not
    one for the name asked ("How many laptops in Villach?"), unless the question names
    them all."""
    for cell in _CELL_SPLIT.split(row):
        value = cell.split(": ", 1)[1] if ": " in cell else cell
        parts = [p for p in _JOINED.split(value.strip()) if p]
        if len(parts) < 2 or not all(p[:1].isupper() and len(p.split()) <= 3 for p in parts):
            continue
        asked = [p for p in parts if any(_contains(p, n) for n in q.names)]
        others = [p for p in parts if p not in asked and not _norm_words(p) <= q.known]
        if asked and others:
            return Verdict(False, f"{asked[0]} stated together with {others[0]}")
    return PASS


# one "label: value" cell of a table row ("Q3 2024: 95.4%"), between " | " or "; "
_CELL = re.compile(r"(?:^|(?<= \| )|(?<=; ))([^|;:]{1,40}):\s+([^|;]+?)(?=\s*(?: \| |; |\.?$))")


def answer_cell(q: Question, row: str, read: tuple[int, int] | None = None
                ) -> tuple[int, int] | None:
    """The value of the one cell of a table row (``row[start:end]``) whose label is what the
    question asks for, or None where no single cell is.

    Tried in turn, the first that finds any cell deciding: a label that is the period asked,
    where the row spreads its figure over periods ("Q3 2024: 95.4%" of "Site: Leeds | Q1
    2024: 96.2% | … | Q3 2024: 95.4%"); a label stating every word of the thing asked for
    ("List price: €412.00" for "What is the list price …"); a label holding a name the
    question asks about ("Slovenia (Maribor): €200 per year" for Maribor). Two cells found
    by the same test leave the pick to the reader. The check has already passed the row."""
    cells = [(m.group(1), m.start(2), m.end(2)) for m in _CELL.finditer(row)]
    if len(cells) < 2:
        return None
    wanted = [(k, v) for k, v in q.periods.kinds() if v]
    label_periods = {label: dict(periods(label).kinds()) for label, _, _ in cells}

    def period_fits(label: str) -> bool:
        # a label may leave a kind to the row ("Full year" of 2024), not state another value
        has = label_periods[label]
        return all(v <= has[k] for k, v in wanted if has[k]) \
            and any(has[k] for k, _ in wanted)

    dated = sum(any(label_periods[label].values()) for label, _, _ in cells)
    name_words = [_norm_words(name) - STOPWORDS for name in q.names]
    tests: list[Callable[[str], bool]] = [
        lambda label: bool(wanted) and dated >= 2 and period_fits(label),
        lambda label: bool(q.focus) and set(q.focus) <= _stems(label),
        # every word of the name, as a whole word ("Slovenia (Maribor)"), not as part of
        # another ("ST" of "ST-C02" in "swl_tonnes")
        lambda label: any(words <= _norm_words(label) for words in name_words if words),
    ]
    for fits in tests:
        found = [(a, b) for label, a, b in cells if fits(label)]
        if found:
            return found[0] if len(found) == 1 else None
    if read is None:
        return None
    # else the one label sharing most of the question's words ("Completed" for "When did …
    # complete …", "Price per case" for "What does a case … cost"), where the reader's best
    # span lies in its value: the label says where the reader's answer ends
    said = {stem(w) for w in _WORD.findall(q.text)
            if len(w) > 2 and w.lower() not in STOPWORDS and w.lower() not in _GENERIC} \
        - {stem(w) for words in name_words for w in words}
    shared = [(len(said & _stems(label)), a, b) for label, a, b in cells]
    most = max(n for n, _, _ in shared)
    best = [(a, b) for n, a, b in shared if n == most]
    if most and len(best) == 1 and best[0][0] <= read[0] and read[1] <= best[0][1]:
        return best[0]
    return None


def check(q: Question, unit: str, kind: UnitKind, context: UnitContext, chunk: str,
          filename: str, start: int = 0, end: int = 0) -> Verdict:
    """Does ``unit`` (of ``chunk``, at ``start:end``) answer ``q``? (``ok`` or a reason)"""
    if kind is UnitKind.SENTENCE and unit.rstrip().endswith(":"):
        return Verdict(False, "lead-in")
    if addresses_assistant(paragraph_at(chunk, start, end) if end else unit):
        return Verdict(False, "instructions to an assistant")
    own = f"{unit} \n{context.describe()}"
    label = doc_label(filename)
    layers = (periods(without_comparisons(own)), periods(label), periods(chunk))
    for kind_name, wanted in q.periods.kinds():
        stated = [dict(layer.kinds())[kind_name] for layer in layers]
        for value in wanted:
            if value == "FY" and not stated[0] and not stated[1]:
                continue  # a unit naming no part of the year speaks of all of it
            verdict = _layered(kind_name, value, stated[0], stated[1], stated[2])
            if not verdict.ok:
                return verdict
    if q.days:
        # a unit about other days of the week ("Saturday overtime" for Sundays) speaks of
        # them; one naming no day may hold for every day, so the chunk is not asked
        stated_days = days(without_comparisons(own))
        if stated_days and not q.days <= stated_days:
            return Verdict(False, f"{'/'.join(sorted(q.days - stated_days))} asked, "
                                  f"{'/'.join(sorted(stated_days))} stated", other_value=True)
    id_layers = (identifiers(own), identifiers(label), identifiers(chunk))
    for ident in q.idents:
        same = [{i for i in layer if _series(i) == _series(ident)} for layer in id_layers]
        verdict = _layered(ident, ident, same[0], same[1], id_layers[2])
        if not verdict.ok:
            return verdict
    near = f"{own} \n{label}"
    spans = ranges(unit)
    figures = {_value(m.group(0)) for m in re.finditer(_NUM, unit)}
    for n in q.amounts:
        if spans and n not in figures and not any(lo <= n <= hi for lo, hi in spans):
            return Verdict(False, f"{n:g} asked, outside the range stated", other_value=True)
    verdict = measured_otherwise(q, unit, spans)
    if not verdict.ok:
        return verdict
    record = kind is not UnitKind.SENTENCE
    for name in q.names:
        other = namesake(unit, name)
        if other:
            return Verdict(False, f"{other} named, not {name}")
        if _contains(near, name):
            continue
        if record and (kind is not UnitKind.ROW or other_names(unit, q)
                       or not _contains(chunk, name)):
            return Verdict(False, f"{name} not in the {kind.value}")
        # a sentence may leave a name to what came before it ("It was founded in 1987"), not
        # to what follows
        if not _contains(chunk, name):
            return Verdict(False, f"{name} not stated")
    if kind is UnitKind.ROW and q.asked is Asked.AMOUNT:
        verdict = named_with_others(q, unit)
        if not verdict.ok:
            return verdict
    # the thing asked for (SQuAD dev: demanding every word of it of prose turned 0.72
    # correct into 0.66, hence the looser rule for prose)
    # a list item written as prose ("upload the invoice … by 30 November") is held to what a
    # sentence is; a row or a "term: value" item must name the thing asked for
    record_like = kind is UnitKind.ROW or (kind is UnitKind.ITEM and bool(_LABEL.match(unit)))
    verdict = focus_stated(q, unit, near, record_like)
    if not verdict.ok:
        return verdict
    if record_like:
        verdict = record_about(q, near)
        if not verdict.ok:
            return verdict
    verdict = other_person(q, unit)
    if not verdict.ok:
        return verdict
    if not record and q.asked in (Asked.PERSON, Asked.NAMED):
        # prose names people and things by role as often as by name ("the duty officer");
        # a record's cells are the names themselves
        return names_the_one_asked(q, unit, kind)
    return answer_type(q, unit, kind)
