"""PII redaction at ingest: typed placeholders in place of personal data, counts per type.

``redact(text)`` replaces personal data with ``[EMAIL]``, ``[IBAN]``, ``[CARD]``, ``[SE_PIN]``,
``[US_SSN]`` and ``[PHONE]`` before a document is chunked, embedded and stored, and reports how
many of each it replaced (the document record shows the counts). It uses only ``re`` and
plain Python. The aim is high precision on checksummed identifiers and reasonable
recall on phone numbers, without touching dates, amounts, versions or order numbers.

Detection order and overlaps
    Detectors run in a fixed order, most specific first: EMAIL, IBAN, CARD, SE_PIN, US_SSN,
    PHONE. Each detector runs on a working copy of the text in which what the earlier
    detectors found is masked (replaced by an equal number of NUL characters, so offsets do not
    change). A later detector therefore cannot match inside, or across, an earlier finding,
    and overlaps resolve to the more specific type. Within a detector the leftmost match
    wins. Where a run of digit groups could be read several ways, the longest valid
    reading wins. A token printed like an IBAN (a known country code, check digits and groups
    of four) that fails the IBAN checks is masked as well, without being redacted, so its
    digits are never read as a card, PIN or phone. The result depends only on the input text.

Idempotence
    Placeholders contain no digits and no ``@``. Both the mask and any placeholder already in
    the input (``[EMAIL]`` …) count as part of a word: nothing may touch them. A finding ends
    in a letter or digit, so a neighbour sees the same boundary whether the finding is
    still there or has been replaced. Redacting already redacted text therefore changes
    nothing. A seeded fuzz test over glued combinations checks this. The cost of this
    rule: a second finding glued to the first without a separator is missed, as in
    ``a@example.com+46 70 123 45 67``, where the phone number is left alone. With a space,
    ``/``, ``,`` or ``;`` between them, both are found.

Boundaries
    A finding must stand alone. No letter, digit or underscore may touch it, and it may not
    continue a number with a decimal point or colon (``1.4111…``, ``…1111.5``, ``12:070…``).
    A comma is not a decimal mark here, so CSV fields such as ``17,0701234567`` are found.
    Digit groups joined by a tight ``-`` or ``.`` belong together. A card number may be split
    off from neighbouring numbers only at a space, and a phone number only at a space or
    a ``/``.

EMAIL ``[EMAIL]``
    ``local@domain.tld``. The local part is dot-separated atoms of word characters and
    ``%+-`` (plus-addressing included). The domain is one or more labels of at most 63
    characters plus an alphabetic top-level domain; subdomains are included. Unicode
    letters are accepted. Quoted local parts, rarer RFC 5322 characters (``!#$&'*=?^{|}~``),
    IP-literal domains and punycode TLDs are not detected (false negatives).

IBAN ``[IBAN]``
    Country code, 2 check digits, then the BBAN: compact, in printed groups of 4, or with
    any single spaces between characters. The total length must be exactly the length
    ``IBAN_LENGTHS`` gives for the country (all SEPA countries plus the other common IBAN
    countries). The ISO 13616 mod-97 check must give 1, and the check digits must be
    02-98. Letters may be in either case. The country's BBAN layout is not checked, so
    a random token passes with a probability of about 1/97, and only if it already has
    the right country code and exact length. Hyphenated IBANs and ``SE 45 …`` (a space
    inside the country code and check digits) are not detected.

CARD ``[CARD]``
    13-19 digits, written without separators or in groups joined by one kind of single
    separator, either a space or a hyphen. The groups must be 4-4-…-4 with a last
    group of 1-4 digits, or the Amex/Diners layout 4-6-5 or 4-6-4. The number must pass the
    Luhn check and match a known issuer prefix with a length that issuer uses: Visa 4
    (16/19; the retired 13-digit Visa numbers are left out because they collide with
    EAN-13 barcodes), Mastercard 51-55 and 2221-2720 (16), Amex 34/37 (15), Discover 6011,
    644-649, 65 (16-19), Diners 300-305, 3095, 36, 38-39 (14-19), JCB 3528-3589 (16-19), UnionPay 62
    (16-19), Maestro 5018/5020/5038/5893/6304/6759/6761-6763 (13-19), Dankort 5019 (16), Mir
    2200-2204 (16-19). Order or reference numbers that fail Luhn, or have no issuer
    prefix, are left alone. About one random digit string in ten that has an issuer
    prefix and the right length passes Luhn, so a long space-separated run of numbers in
    a table can occasionally yield a false positive.

SE_PIN ``[SE_PIN]`` (Swedish personnummer and samordningsnummer)
    ``YYMMDD-NNNN``, ``YYMMDD+NNNN`` (``+``: aged 100 or more), ``YYYYMMDDNNNN`` and
    ``YYYYMMDD-NNNN``. The century must be 18, 19 or 20. The date must exist: 29 February
    only in leap years, and with only two year digits every year divisible by 4 counts
    as a leap year. A samordningsnummer has day+60 (61-91). The Luhn check runs over the 10
    digits YYMMDDNNNN. The unseparated 10-digit form ``YYMMDDNNNN`` is *not* detected. It
    is easily confused with phone numbers (``0701234567``) and other 10-digit IDs,
    so missing it is a deliberate false negative. Birth dates in the future are not
    rejected, because the result must not depend on today's date. Organisation numbers
    (month digits 20 or more) fail the date check and are left alone. One compact
    ``YYYYMMDDhhmm`` timestamp in ten passes the Luhn check and is redacted as a PIN (a
    false positive).

US_SSN ``[US_SSN]``
    Only the hyphenated ``AAA-GG-SSSS`` form, with the SSA rules applied: area not 000, 666
    or 900-999, group not 00, serial not 0000. Unhyphenated 9-digit numbers and
    space-separated ``AAA GG SSSS`` are *not* detected. They cannot be told apart from
    order numbers, ZIP+4 codes and other IDs, and there is no checksum, so missing them
    is a deliberate false negative. Structurally valid numbers that are known to be
    fake or publicly known, such as ``123-45-6789`` and ``078-05-1120``, *are* redacted.
    They pass the rules, and redacting a number that is not personal data costs little.

PHONE ``[PHONE]`` (runs last)
    Digit groups joined by a space, ``-``, ``.`` or ``/`` (optionally with spaces around
    the punctuation), or by parentheses. A span is accepted if it fits one of these forms:

    * International: ``+`` or ``00``, then a country code (not starting with 0), then 8-13
      digits in total, leaving out a ``(0)`` trunk marker. E.164 allows 15 digits, but
      the limit is 13 so that a phone number directly followed by a year is not
      swallowed. With a ``00`` prefix the number must have at least two groups, so that
      ``0012345678`` stays an order number. Example: ``+46 70 123 45 67``.
    * National, with a trunk ``0``: a 2-5 digit area code, which may be in parentheses,
      then further groups of 2-8 digits, 8-11 digits in total, for example
      ``070-123 45 67``, ``08-123 456 78``, ``(08) 123 456 78``, ``030/12345678`` and
      ``01.23.45.67.89``. A dot may only be used as the sole separator, so prices such as
      ``09.99 07.95`` are not taken for a phone number. Without
      separators, only Swedish mobile numbers are accepted (``07[02369]`` + 7 digits).
      Other contiguous runs of digits are treated as IDs.
    * North American: ``(555) 123-4567``, ``555-123-4567``, ``555.123.4567`` or
      ``1-555-123-4567``. The area code must start with 2-9. Without parentheses, the two
      separators must be the same, and a space-only ``555 123 4567`` is not accepted.

    Before the phone detector runs, dates with a repeated separator (``2024-01-15``,
    ``15.01.2024``, ``01/15/24``) and clock times (``08.30``, ``8:30``; in Swedish, times are
    written with a dot) are hidden from it. Phone separators never include a comma or a
    colon, and a group joined by a tight separator cannot start a number. So amounts
    (``1,234,567``, ``1 234 567``, ``12.345.678,90``), version numbers (``1.2.3``), IP
    addresses and years cannot form a phone number. The false negatives this causes include
    numbers without a trunk 0 or country code outside North America (Norwegian and
    Danish 8-digit numbers), date-like ``08-12-34 56``, and contiguous runs of digits that
    are not Swedish mobile numbers. The false positives include reference numbers written
    like a national phone number (``0123-456 789``). A short number right after a phone
    number (``08-12 34 56 78``) may be redacted along with it if the total is still a
    plausible length.

Only ASCII spaces count as separators, so numbers split by non-breaking spaces or line
breaks are not detected. No pattern has quantifiers that can split the same text in more
than one way. Runs are enumerated with fixed caps (at most 8 groups per phone, 6 per card),
so the whole pass takes linear time even on adversarial input such as long runs of digits
or many ``@`` characters.
"""

from __future__ import annotations

import calendar
import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from core.domain import Page

__all__ = ["IBAN_LENGTHS", "PII_KINDS", "PiiSpan", "Redaction", "placeholder",
           "placeholder_spans", "redact", "redact_pages"]

PII_KINDS: tuple[str, ...] = ("EMAIL", "IBAN", "CARD", "SE_PIN", "US_SSN", "PHONE", "PERSON")
"""The detected types, in detection (priority) order."""

# Masked text counts as part of a word: nothing may touch it (every boundary check lists \x00).
_MASK = "\x00"
_PLACEHOLDER = re.compile(r"\[(?:EMAIL|IBAN|CARD|SE_PIN|US_SSN|PHONE|PERSON)\]")


def placeholder(kind: str) -> str:
    """The text that replaces a finding of ``kind``: ``[KIND]``."""
    return f"[{kind}]"


def placeholder_spans(text: str) -> list[tuple[int, int]]:
    """Where ``text`` holds a placeholder, as [start, end) character spans."""
    return [m.span() for m in _PLACEHOLDER.finditer(text)]


@dataclass(frozen=True, slots=True)
class PiiSpan:
    """One finding: ``text[start:end]`` of the *original* text was of type ``kind``."""

    start: int
    end: int
    kind: str


@dataclass(frozen=True, slots=True)
class Redaction:
    """The redacted text, the number of findings per type (only types found) and the spans."""

    text: str
    counts: dict[str, int] = field(default_factory=dict, hash=False)
    spans: tuple[PiiSpan, ...] = ()

    @property
    def total(self) -> int:
        return len(self.spans)


def redact(text: str, names: bool = False) -> Redaction:
    """Replace e-mails, IBANs, cards, Swedish PINs, US SSNs and phones by typed placeholders;
    with ``names``, people's names too (spaCy's PERSON entities, see ``_detect_person``).

    Text outside the findings is returned unchanged, character for character. See the
    module docstring for the rules and trade-offs.
    """
    # placeholders already in the text (a second redaction) look exactly like masked findings
    work = _mask(text, placeholder_spans(text))
    found: list[PiiSpan] = []
    for kind, detect in _DETECTORS + ((("PERSON", _detect_person),) if names else ()):
        if kind == "PHONE":
            work = _mask(work, _date_time_spans(work))  # hidden from the phone detector only
        spans = detect(work)
        if spans:
            found.extend(PiiSpan(s, e, kind) for s, e in spans)
            work = _mask(work, spans)
        if kind == "IBAN":
            work = _mask(work, _iban_shaped_spans(work))  # invalid IBANs: leave them whole
    if not found:
        return Redaction(text, {}, ())
    found.sort(key=lambda sp: sp.start)
    parts: list[str] = []
    pos = 0
    per_kind: dict[str, int] = {}
    for sp in found:
        parts.append(text[pos:sp.start])
        parts.append(placeholder(sp.kind))
        pos = sp.end
        per_kind[sp.kind] = per_kind.get(sp.kind, 0) + 1
    parts.append(text[pos:])
    counts = {kind: per_kind[kind] for kind in PII_KINDS if kind in per_kind}
    return Redaction("".join(parts), counts, tuple(found))


def redact_pages(pages: Sequence[Page], names: bool = False
                 ) -> tuple[list[Page], dict[str, int]]:
    """Redact a parsed document page by page, for the ingest job; returns the pages and the
    findings per type over the whole document (only types found, in ``PII_KINDS`` order).

    A finding never spans two pages. Page numbers stay; each page's ``offset`` moves by the
    change in length of the pages before it, so offsets (and the chunks' ``start``/``end``
    derived from them) index the *redacted* text, with the reader's page separator kept.

    A page's structure marks (``Page.marks``) name lines, and a finding never holds a line
    break, so they stay valid; the table headers they carry are redacted too (they are
    embedded and stored as context; not counted again: a header's cells label the rows of
    the text, where they were counted). Should a page's line count change all the same, its
    marks are dropped rather than misplaced.
    """
    out: list[Page] = []
    totals: dict[str, int] = {}
    shift = 0
    for page in pages:
        r = redact(page.text, names)
        marks = page.marks if r.text.count("\n") == page.text.count("\n") else ()
        marks = tuple(replace(m, header=redact(m.header, names).text) if m.header else m
                      for m in marks)
        out.append(Page(number=page.number, text=r.text, offset=page.offset + shift,
                        marks=marks))
        shift += len(r.text) - len(page.text)
        for kind, n in r.counts.items():
            totals[kind] = totals.get(kind, 0) + n
    return out, {kind: totals[kind] for kind in PII_KINDS if kind in totals}


# ----------------------------------------------------------------------------- helpers

def _mask(work: str, spans: list[tuple[int, int]]) -> str:
    if not spans:
        return work
    parts: list[str] = []
    pos = 0
    for start, end in sorted(spans):
        parts.append(work[pos:start])
        parts.append(_MASK * (end - start))
        pos = end
    parts.append(work[pos:])
    return "".join(parts)


_DOUBLED = (0, 2, 4, 6, 8, 1, 3, 5, 7, 9)


def _luhn_ok(digits: str) -> bool:
    total = sum(ord(c) - 48 for c in digits[-1::-2])
    total += sum(_DOUBLED[ord(c) - 48] for c in digits[-2::-2])
    return total % 10 == 0


# Something that glues a number to what follows it: a word character, or a decimal/time tail.
_GLUED_AFTER = re.compile(r"[\w\x00]|[.:][0-9\x00]")


def _free_after(work: str, pos: int) -> bool:
    return _GLUED_AFTER.match(work, pos) is None


# ----------------------------------------------------------------------------- EMAIL

_EMAIL = re.compile(
    r"(?<![\w%+\x00-])(?<![\w%+\x00-]\.)"    # start of a local part, not inside a.b
    r"[\w%+-]+(?:\.[\w%+-]+)*"               # dot-atoms (no leading/trailing/double dots)
    r"@"
    r"(?:[^\W_](?:[\w-]{0,61}[^\W_])?\.)+"  # labels of <= 63 chars, each followed by a dot
    r"[^\W\d_]{2,63}"                        # alphabetic TLD
    r"(?![\w\x00-])"
)


def _detect_email(work: str) -> list[tuple[int, int]]:
    return [m.span() for m in _EMAIL.finditer(work)]


# ----------------------------------------------------------------------------- IBAN

IBAN_LENGTHS: dict[str, int] = {
    # SEPA
    "AD": 24, "AT": 20, "BE": 16, "BG": 22, "CH": 21, "CY": 28, "CZ": 24, "DE": 22, "DK": 18,
    "EE": 20, "ES": 24, "FI": 18, "FR": 27, "GB": 22, "GI": 23, "GR": 27, "HR": 21, "HU": 28,
    "IE": 22, "IS": 26, "IT": 27, "LI": 21, "LT": 20, "LU": 20, "LV": 21, "MC": 27, "MT": 31,
    "NL": 18, "NO": 15, "PL": 28, "PT": 25, "RO": 24, "SE": 24, "SI": 19, "SK": 24, "SM": 27,
    "VA": 22, "AL": 28, "MD": 24, "ME": 22, "MK": 19, "RS": 22,
    # other IBAN countries
    "AE": 23, "AZ": 28, "BA": 20, "BH": 22, "BR": 29, "BY": 28, "CR": 22, "DO": 28, "EG": 29,
    "FO": 18, "GE": 22, "GL": 18, "GT": 28, "IL": 23, "IQ": 23, "JO": 30, "KW": 30, "KZ": 20,
    "LB": 28, "LC": 32, "LY": 25, "MR": 27, "MU": 30, "PK": 24, "PS": 29, "QA": 29, "SA": 24,
    "SC": 31, "ST": 25, "SV": 28, "TL": 23, "TN": 24, "TR": 26, "UA": 29, "VG": 24, "XK": 20,
    "BI": 27, "DJ": 27, "FK": 18, "HN": 28, "MN": 20, "NI": 28, "RU": 33,
}
"""Total IBAN length (country code and check digits included) per country."""

_IBAN_HEAD = re.compile(r"(?<![\w\x00])([A-Za-z]{2})([0-9]{2})")
# the BBAN: exactly n alphanumerics, each optionally preceded by one space
_IBAN_BODY = {
    n: re.compile(rf"(?:[ ]?[A-Za-z0-9]){{{n - 4}}}(?![\w\x00])")
    for n in sorted(set(IBAN_LENGTHS.values()))
}


def _iban_ok(compact: str) -> bool:
    check = int(compact[2:4])
    if not 2 <= check <= 98:
        return False
    rearranged = compact[4:] + compact[:4]
    return int("".join(str(int(ch, 36)) for ch in rearranged)) % 97 == 1


# printed in groups of four like an IBAN, but failing its checks: not a card, PIN or phone either
_IBAN_SHAPED_BODY = re.compile(r"(?: [A-Za-z0-9]{4}){2,}(?: [A-Za-z0-9]{1,3})?(?![\w\x00])")


def _iban_shaped_spans(work: str) -> list[tuple[int, int]]:
    spans: list[tuple[int, int]] = []
    last_end = 0
    for m in _IBAN_HEAD.finditer(work):
        if m.start() >= last_end and m.group(1).upper() in IBAN_LENGTHS:
            body = _IBAN_SHAPED_BODY.match(work, m.end())
            if body is not None:
                spans.append((m.start(), body.end()))
                last_end = body.end()
    return spans


def _detect_iban(work: str) -> list[tuple[int, int]]:
    spans: list[tuple[int, int]] = []
    last_end = 0
    for m in _IBAN_HEAD.finditer(work):
        if m.start() < last_end:
            continue
        length = IBAN_LENGTHS.get(m.group(1).upper())
        if length is None:
            continue
        body = _IBAN_BODY[length].match(work, m.end())
        if body is None:
            continue
        compact = (m.group(1) + m.group(2) + body.group().replace(" ", "")).upper()
        if _iban_ok(compact):
            spans.append((m.start(), body.end()))
            last_end = body.end()
    return spans


# ----------------------------------------------------------------------------- CARD

_R1319 = frozenset(range(13, 20))
_R1419 = frozenset(range(14, 20))
_R1619 = frozenset(range(16, 20))
# (prefix length, lowest prefix, highest prefix, allowed lengths)
_CARD_IIN: tuple[tuple[int, int, int, frozenset[int]], ...] = (
    (1, 4, 4, frozenset({16, 19})),                  # Visa (13-digit numbers: retired)
    (2, 51, 55, frozenset({16})),                    # Mastercard
    (4, 2221, 2720, frozenset({16})),                # Mastercard 2-series
    (2, 34, 34, frozenset({15})),                    # American Express
    (2, 37, 37, frozenset({15})),
    (4, 6011, 6011, _R1619),                         # Discover
    (3, 644, 649, _R1619),
    (2, 65, 65, _R1619),
    (3, 300, 305, _R1419),                           # Diners Club
    (4, 3095, 3095, _R1419),
    (2, 36, 36, _R1419),
    (2, 38, 39, _R1419),
    (4, 3528, 3589, _R1619),                         # JCB
    (2, 62, 62, _R1619),                             # UnionPay
    (4, 5018, 5018, _R1319),                         # Maestro
    (4, 5020, 5020, _R1319),
    (4, 5038, 5038, _R1319),
    (4, 5893, 5893, _R1319),
    (4, 6304, 6304, _R1319),
    (4, 6759, 6759, _R1319),
    (4, 6761, 6763, _R1319),
    (4, 5019, 5019, frozenset({16})),                # Dankort
    (4, 2200, 2204, _R1619),                         # Mir
)


def _build_iin_table() -> tuple[frozenset[int], ...]:
    """Allowed card lengths per 4-digit prefix (every issuer prefix has at most 4 digits)."""
    table: list[frozenset[int]] = []
    for prefix in range(10_000):
        text = f"{prefix:04d}"
        lengths: set[int] = set()
        for size, lo, hi, allowed in _CARD_IIN:
            if lo <= int(text[:size]) <= hi:
                lengths |= allowed
        table.append(frozenset(lengths))
    return tuple(table)


_IIN_LENGTHS = _build_iin_table()


# a run of digit groups joined by single spaces or hyphens, not continuing a word or a decimal
_CARD_RUN = re.compile(r"(?<![\w\x00])(?<![0-9\x00]\.)[0-9]+(?:[ -][0-9]+)*")
_DIGITS = re.compile(r"[0-9]+")


def _card_layout_ok(sizes: list[int]) -> bool:
    if len(sizes) == 1:
        return True
    if sizes[0] != 4:
        return False
    if sizes in ([4, 6, 5], [4, 6, 4]):
        return True
    return all(s == 4 for s in sizes[1:-1]) and 1 <= sizes[-1] <= 4


def _detect_card(work: str) -> list[tuple[int, int]]:
    spans: list[tuple[int, int]] = []
    for run in _CARD_RUN.finditer(work):
        if run.end() - run.start() < 13:
            continue
        groups = [(g.start(), g.end()) for g in _DIGITS.finditer(work, run.start(), run.end())]
        last = len(groups) - 1
        end_free = _free_after(work, run.end())
        i = 0
        while i <= last:
            start = groups[i][0]
            first_len = groups[i][1] - start
            if (
                (first_len != 4 and not 13 <= first_len <= 19)
                or (i > 0 and work[start - 1] != " ")  # a tight hyphen binds it to the group before
                or not _IIN_LENGTHS[int(work[start:start + 4])]
            ):
                i += 1
                continue
            best = -1
            n = 0
            for j in range(i, min(last, i + 5) + 1):
                n += groups[j][1] - groups[j][0]
                if n > 19:
                    break
                if n < 13:
                    continue
                if j < last and work[groups[j][1]] != " ":
                    continue  # cannot end on a tight hyphen
                if j == last and not end_free:
                    continue
                if j > i and len({work[groups[k][1]] for k in range(i, j)}) != 1:
                    continue  # mixed separators
                if not _card_layout_ok([e - s for s, e in groups[i:j + 1]]):
                    continue
                digits = "".join(work[s:e] for s, e in groups[i:j + 1])
                if n in _IIN_LENGTHS[int(digits[:4])] and _luhn_ok(digits):
                    best = j
            if best >= 0:
                spans.append((start, groups[best][1]))
                i = best + 1
            else:
                i += 1
    return spans


# ----------------------------------------------------------------------------- SE_PIN

_SE_PIN = re.compile(
    r"(?<![\w\x00+-])(?<![0-9\x00][.:])"
    r"(?:(?P<century>[0-9]{2})(?P<date8>[0-9]{6})-?|(?P<date6>[0-9]{6})[-+])"
    r"(?P<serial>[0-9]{4})"
    r"(?![\w\x00])(?![-+.:][0-9\x00])"
)


def _se_pin_ok(m: re.Match[str]) -> bool:
    if m.group("century") is not None:
        if m.group("century") not in ("18", "19", "20"):
            return False
        yymmdd = m.group("date8")
        leap = calendar.isleap(int(m.group("century") + yymmdd[:2]))
    else:
        yymmdd = m.group("date6")
        leap = int(yymmdd[:2]) % 4 == 0  # century unknown: 00 may be 2000 (leap)
    month, day = int(yymmdd[2:4]), int(yymmdd[4:6])
    if day > 60:
        day -= 60  # samordningsnummer
    if not 1 <= month <= 12 or day < 1:
        return False
    days = (31, 29 if leap else 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)[month - 1]
    return day <= days and _luhn_ok(yymmdd + m.group("serial"))


def _detect_se_pin(work: str) -> list[tuple[int, int]]:
    return [m.span() for m in _SE_PIN.finditer(work) if _se_pin_ok(m)]


# ----------------------------------------------------------------------------- US_SSN

_US_SSN = re.compile(
    r"(?<![\w\x00-])(?<![0-9\x00][.:])"
    r"(?P<area>[0-9]{3})-(?P<group>[0-9]{2})-(?P<serial>[0-9]{4})"
    r"(?![\w\x00])(?![-.:][0-9\x00])"
)


def _ssn_ok(m: re.Match[str]) -> bool:
    area = int(m.group("area"))
    return (
        area != 0 and area != 666 and area < 900
        and m.group("group") != "00" and m.group("serial") != "0000"
    )


def _detect_ssn(work: str) -> list[tuple[int, int]]:
    return [m.span() for m in _US_SSN.finditer(work) if _ssn_ok(m)]


# ---------------------------------------------------------------- dates, times (for PHONE)

_DATE = re.compile(
    r"(?<![\w\x00])(?<![0-9\x00][-./])"
    r"(?:(?P<y>[0-9]{4})(?P<s1>[-./])(?P<m1>[0-9]{1,2})(?P=s1)(?P<d1>[0-9]{1,2})"
    r"(?![\w\x00])(?!(?P=s1)[0-9\x00])"
    r"|(?P<a>[0-9]{1,2})(?P<s2>[-./])(?P<b>[0-9]{1,2})(?P=s2)(?:[0-9]{4}|[0-9]{2})"
    r"(?![\w\x00])(?!(?P=s2)[0-9\x00]))"
)
# 08.30, 8:30, 08.30.15 (Swedish writes times with dots, which are also phone separators)
_TIME = re.compile(
    r"(?<![\w\x00])(?<![0-9\x00][.:])"
    r"(?:[01]?[0-9]|2[0-3])(?P<s>[.:])[0-5][0-9](?:(?P=s)[0-5][0-9])?"
    r"(?![\w\x00])(?![.:][0-9\x00])"
)


def _date_ok(m: re.Match[str]) -> bool:
    if m.group("y") is not None:
        return 1 <= int(m.group("m1")) <= 12 and 1 <= int(m.group("d1")) <= 31
    a, b = int(m.group("a")), int(m.group("b"))
    return (1 <= a <= 31 and 1 <= b <= 12) or (1 <= a <= 12 and 1 <= b <= 31)


def _date_time_spans(work: str) -> list[tuple[int, int]]:
    """Dates and times, hidden from the phone detector (never redacted themselves)."""
    spans = [m.span() for m in _DATE.finditer(work) if _date_ok(m)]
    if spans:
        work = _mask(work, spans)
    spans.extend(m.span() for m in _TIME.finditer(work))
    return spans


# ----------------------------------------------------------------------------- PHONE

_PHONE_RUN = re.compile(
    r"(?<![\w\x00+])(?<![0-9\x00][.:-])"
    r"(?:\+[ ]?)?"
    r"(?:\([0-9]{1,5}\)|[0-9]+)"
    r"(?:(?:[ ]?[-./][ ]?|[ ]|(?<=\))|(?=\())(?:\([0-9]{1,5}\)|[0-9]+))*"
)
_PHONE_GROUP = re.compile(r"\(([0-9]+)\)|([0-9]+)")
_SE_MOBILE = re.compile(r"07[02369][0-9]{7}")
_NANP_SEPS = ("-", ".")


def _loose(sep: str) -> bool:
    """A separator at which a phone number may begin or end: one with a space or a slash."""
    return " " in sep or "/" in sep


def _phone_ok(
    gs: list[tuple[str, bool]], seps: list[str], plus: bool
) -> bool:
    """``gs``: (digits, parenthesised) per group; ``seps[k]``: text between group k and k+1."""
    first, first_paren = gs[0]
    if plus or first.startswith("00"):
        rest = [d for k, (d, p) in enumerate(gs) if not (p and d == "0" and k > 0)]
        digits = "".join(rest)
        if not plus:
            if len(gs) < 2 or first_paren:
                return False
            digits = digits[2:]
        return digits[:1] not in ("", "0") and 8 <= len(digits) <= 13
    if first[0] == "0":
        if len(gs) == 1:
            return not first_paren and _SE_MOBILE.fullmatch(first) is not None
        if not 2 <= len(first) <= 5:
            return False
        if any("." in sep for sep in seps) and any(sep != "." for sep in seps):
            return False  # dots only as the sole separator (01.23.45.67.89), not 09.99 07.95
        n = len(first)
        for d, p in gs[1:]:
            if p or not 2 <= len(d) <= 8:
                return False
            n += len(d)
        return 8 <= n <= 11
    # North American
    if first == "1" and not first_paren and len(gs) == 4:
        gs, seps = gs[1:], seps[1:]
    if len(gs) != 3:
        return False
    (area, area_paren), (exchange, ex_paren), (line, line_paren) = gs
    if ex_paren or line_paren or len(area) != 3 or len(exchange) != 3 or len(line) != 4:
        return False
    if area[0] in "01":
        return False
    s0, s1 = seps[0].strip(), seps[1].strip()
    if area_paren:
        return s0 in ("", "-") and s1 in ("-", ".", "")
    return s0 == s1 and s0 in _NANP_SEPS


def _detect_phone(work: str) -> list[tuple[int, int]]:
    spans: list[tuple[int, int]] = []
    for run in _PHONE_RUN.finditer(work):
        if run.end() - run.start() < 9:  # the shortest accepted form has 8 digits and 1 separator
            continue
        plus = work[run.start()] == "+"
        groups: list[tuple[int, int, str, bool]] = []
        for g in _PHONE_GROUP.finditer(work, run.start(), run.end()):
            if g.group(1) is not None:
                groups.append((g.start(), g.end(), g.group(1), True))
            else:
                groups.append((g.start(), g.end(), g.group(2), False))
        seps = [work[groups[k][1]:groups[k + 1][0]] for k in range(len(groups) - 1)]
        last = len(groups) - 1
        end_free = _free_after(work, run.end())
        i = 0
        while i <= last:
            with_plus = plus and i == 0
            first = groups[i][2]
            if i > 0 and not _loose(seps[i - 1]):
                i += 1  # a tight separator binds this group to the one before
                continue
            # the digit counts worth testing for this start (see _phone_ok); NANP by group count
            if with_plus:
                lo, hi = 8, 14
            elif first[:2] == "00":
                lo, hi = 10, 16
            elif first[0] == "0" and len(first) >= 2:
                lo, hi = 8, 11
            elif first == "1" or (len(first) == 3 and first[0] not in "01"):
                lo, hi = 10, 11
            else:
                i += 1
                continue
            best = -1
            n = 0
            for j in range(i, min(last, i + 7) + 1):
                n += len(groups[j][2])
                if n > hi:
                    break
                if n < lo:
                    continue
                if j < last and not _loose(seps[j]):
                    continue
                if j == last and not end_free:
                    continue
                gs = [(g[2], g[3]) for g in groups[i:j + 1]]
                if _phone_ok(gs, seps[i:j], with_plus):
                    best = j
            if best >= 0:
                start = run.start() if with_plus else groups[i][0]
                spans.append((start, groups[best][1]))
                i = best + 1
            else:
                i += 1
    return spans


# spaCy's pipeline takes at most this many characters at once; pages are cut at line breaks
_NER_PIECE = 100_000
_NAME_WORD = re.compile(r"[^\W\d_][^\W\d_'’.-]*", re.UNICODE)


def _detect_person(work: str) -> list[tuple[int, int]]:
    """People's names: the PERSON entities of the small English pipeline (ingest/tagger.py).

    Statistical, so neither complete nor exact (measured in docs/pii.md). To keep its
    mistakes cheap, a finding must look like a name: two to four words, each starting with
    a capital letter, no digit, no line break, and nothing already masked inside it. A single
    word counts only where the same text also names the person in full ("Wolf" after "Sabine
    Wolf"): alone, the small model takes too many places and headings for people. A name's
    possessive "'s" stays in the text. Without the tagger nothing is found (the tagger logs
    that it is missing)."""
    found: list[tuple[int, int, int]] = []  # start, end, words
    # masked findings read as spaces, so the tagger never sees a NUL or a placeholder
    plain = work.replace(_MASK, " ")
    base = 0
    for piece in _pieces(plain, _NER_PIECE):
        for _, label, start, end in _person_entities(piece):
            if label != "PERSON":
                continue
            a, b = base + start, base + end
            if work[a:b].endswith(("'s", "’s")):
                b -= 2
            text = work[a:b]
            words = text.split()
            if (not 1 <= len(words) <= 4 or "\n" in text or _MASK in text
                    or any(ch.isdigit() for ch in text)
                    or not all(_NAME_WORD.fullmatch(w) and w[0].isupper() for w in words)):
                continue
            found.append((a, b, len(words)))
        base += len(piece)
    full = {w for a, b, n in found if n > 1 for w in work[a:b].split()}
    return [(a, b) for a, b, n in found if n > 1 or work[a:b] in full]


def _pieces(text: str, size: int) -> list[str]:
    """``text`` cut into consecutive pieces of at most about ``size`` characters, at line
    breaks where there are any."""
    out: list[str] = []
    pos = 0
    while pos < len(text):
        end = min(len(text), pos + size)
        if end < len(text):
            cut = text.rfind("\n", pos, end)
            end = cut + 1 if cut > pos else end
        out.append(text[pos:end])
        pos = end
    return out


def _person_entities(text: str) -> list[tuple[str, str, int, int]]:
    from ingest import tagger  # spaCy loads only when names are redacted

    doc = tagger.parse(text) if text.strip() else None
    return [] if doc is None else [(e.text, e.label_, e.start_char, e.end_char)
                                   for e in doc.ents]


_DETECTORS = (
    ("EMAIL", _detect_email),
    ("IBAN", _detect_iban),
    ("CARD", _detect_card),
    ("SE_PIN", _detect_se_pin),
    ("US_SSN", _detect_ssn),
    ("PHONE", _detect_phone),
)
