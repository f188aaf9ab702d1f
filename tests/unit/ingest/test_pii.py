"""PII redaction at ingest: every type, its checksums and rules, overlaps, counts, idempotence.

All numbers are synthetic: published test numbers (Visa 4111…, the IBAN registry examples,
Skatteverket's 19121212-1212), or values built here with the checksum helpers.
"""

from __future__ import annotations

import random
from collections import Counter

import pytest

from core.domain import LineKind, LineMark, Page
from ingest.pii import (
    IBAN_LENGTHS,
    PII_KINDS,
    PiiSpan,
    Redaction,
    placeholder,
    redact,
    redact_pages,
)
from tests.unit.conftest import PII


def one(text: str) -> str:
    """The redacted text for ``text`` alone (convenience)."""
    return redact(text).text


def assert_redacted_as(value: str, kind: str) -> None:
    """``value`` is found as exactly one ``kind`` in prose, with the prose left as it was."""
    r = redact(f"Ref: {value}. Next")
    assert r.text == f"Ref: [{kind}]. Next", value
    assert r.counts == {kind: 1}


def assert_untouched(value: str) -> None:
    r = redact(f"Ref: {value}. Next")
    assert r.text == f"Ref: {value}. Next", r.text
    assert r.counts == {} and r.spans == ()


def iban(country: str, bban: str, check: int | None = None) -> str:
    """A compact IBAN with correct check digits (or the given ones)."""
    if check is None:
        number = int("".join(str(int(ch, 36)) for ch in bban + country + "00"))
        check = 98 - number % 97
    return f"{country}{check:02d}{bban}"


def grouped(compact: str) -> str:
    return " ".join(compact[k:k + 4] for k in range(0, len(compact), 4))


# ----------------------------------------------------------------------------- API shape

def test_redaction_is_a_frozen_dataclass_with_counts_and_spans() -> None:
    text = "Mail a@example.com or b@example.org, call 070-123 45 67."
    r = redact(text)
    assert isinstance(r, Redaction)
    assert r.text == "Mail [EMAIL] or [EMAIL], call [PHONE]."
    assert r.counts == {"EMAIL": 2, "PHONE": 1}
    assert r.total == 3
    assert [text[s.start:s.end] for s in r.spans] == [
        "a@example.com", "b@example.org", "070-123 45 67"
    ]
    assert [s.kind for s in r.spans] == ["EMAIL", "EMAIL", "PHONE"]
    with pytest.raises(AttributeError):
        r.text = "x"  # type: ignore[misc]
    assert isinstance(r.spans[0], PiiSpan)


def test_nothing_found_returns_the_same_text_and_empty_counts() -> None:
    for text in ("", "Plain prose without personal data.", "   \n\t"):
        r = redact(text)
        assert r.text == text and r.counts == {} and r.spans == () and r.total == 0


def test_placeholders_and_kinds() -> None:
    assert PII_KINDS == ("EMAIL", "IBAN", "CARD", "SE_PIN", "US_SSN", "PHONE", "PERSON")
    assert [placeholder(k) for k in PII_KINDS] == [
        "[EMAIL]", "[IBAN]", "[CARD]", "[SE_PIN]", "[US_SSN]", "[PHONE]", "[PERSON]"
    ]


# ----------------------------------------------------------------------------- EMAIL

@pytest.mark.parametrize("value", [
    "anna@example.com",
    "anna.svensson@example.se",
    "anna.svensson+hr@example.se",          # plus-addressing
    "first_last-2@mail.corp.example.co.uk", # subdomains
    "John.Doe@Example.COM",
    "x%y@example.org",
    "åsa.öberg@företag.se",                 # Unicode letters
])
def test_email_is_redacted(value: str) -> None:
    assert_redacted_as(value, "EMAIL")


def test_email_in_brackets_and_mailto() -> None:
    assert one("<anna@example.com>") == "<[EMAIL]>"
    assert one("(mailto:anna@example.com)") == "(mailto:[EMAIL])"
    assert one("Write to anna@example.com.") == "Write to [EMAIL]."


@pytest.mark.parametrize("value", [
    "anna@localhost",                 # no top-level domain
    "@anna_handle",
    "anna@",
    "anna at example dot com",
    "2 @ 3",
    "a@b.c1",                         # numeric TLD
    "anna@-example.com",              # label may not start with a hyphen
])
def test_not_an_email(value: str) -> None:
    assert_untouched(value)


# ----------------------------------------------------------------------------- IBAN

@pytest.mark.parametrize("value", [
    "GB82 WEST 1234 5698 7654 32",
    "GB82WEST12345698765432",
    "gb82 west 1234 5698 7654 32",
    "DE89 3704 0044 0532 0130 00",
    "DE89370400440532013000",
    "SE45 5000 0000 0583 9825 7466",
    "BE68 5390 0754 7034",
    "NO93 8601 1117 947",
    "FR14 2004 1010 0505 0001 3M02 606",
    "MT84 MALT 0110 0001 2345 MTLC AST0 01S",
    "DE89 370400440532013000",        # irregular spacing is still one IBAN
])
def test_iban_is_redacted(value: str) -> None:
    assert_redacted_as(value, "IBAN")


@pytest.mark.parametrize("value", [
    "GB82 WEST 1234 5698 7654 33",    # mod-97 fails
    "DE88 3704 0044 0532 0130 00",    # wrong check digits
    "SE45 5000 0000 0583 9825 746",   # one character short for SE (24)
    "DE89 3704 0044 0532 0130 001",   # one character long for DE (22)
    "XX82 WEST 1234 5698 7654 32",    # not an IBAN country
])
def test_invalid_iban_is_left_alone(value: str) -> None:
    assert_untouched(value)


def test_iban_check_digits_00_are_rejected_even_though_mod97_passes() -> None:
    valid = iban("DE", "370400440532013050")
    assert valid[2:4] == "97"
    assert_redacted_as(valid, "IBAN")
    # 00 is congruent to 97 mod 97, so the raw checksum passes, but 00 is never issued
    assert_untouched(valid[:2] + "00" + valid[4:])


def test_iban_length_table_covers_sepa_and_generated_ibans_validate() -> None:
    sepa = {
        "AD", "AT", "BE", "BG", "CH", "CY", "CZ", "DE", "DK", "EE", "ES", "FI", "FR", "GB", "GI",
        "GR", "HR", "HU", "IE", "IS", "IT", "LI", "LT", "LU", "LV", "MC", "MT", "NL", "NO", "PL",
        "PT", "RO", "SE", "SI", "SK", "SM", "VA",
    }
    assert sepa <= IBAN_LENGTHS.keys()
    rng = random.Random(7)  # noqa: S311 - seeded test data, not cryptography
    for country, length in sorted(IBAN_LENGTHS.items()):
        bban = "".join(rng.choice("0123456789") for _ in range(length - 4))
        value = iban(country, bban)
        assert_redacted_as(grouped(value), "IBAN")
        assert_redacted_as(value, "IBAN")


def test_iban_followed_by_a_number_is_cut_at_the_country_length() -> None:
    # BE is 16 characters: the next group of four is not swallowed
    assert one("BE68 5390 0754 7034 2024") == "[IBAN] 2024"
    assert one("IBAN:SE45 5000 0000 0583 9825 7466, BIC: ESSESESS") == "IBAN:[IBAN], BIC: ESSESESS"


# ----------------------------------------------------------------------------- CARD

@pytest.mark.parametrize("value", [
    "4111 1111 1111 1111",            # Visa
    "4111-1111-1111-1111",
    "4111111111111111",
    "5555 5555 5555 4444",            # Mastercard
    "2223 0031 2200 3222",            # Mastercard 2-series
    "3782 822463 10005",              # Amex, 4-6-5
    "378282246310005",
    "6011 1111 1111 1117",            # Discover
    "3056 9309 0259 04",              # Diners, 14 digits
    "3530 1113 3330 0000",            # JCB
    "6200 0000 0000 0005",            # UnionPay
])
def test_card_is_redacted(value: str) -> None:
    assert_redacted_as(value, "CARD")


@pytest.mark.parametrize("value", [
    "4111 1111 1111 1112",            # Luhn fails
    "4111111111111112",
    "1234 5678 9012 3452",            # Luhn passes, but no issuer uses prefix 1
    "411111111111116",                # Luhn passes, but Visa has no 15-digit numbers
    "4111 1111-1111 1111",            # mixed separators
    "41 1111 1111 1111 11",           # not a card layout
    "1234567890123",                  # a 13-digit order number
    "9999999999999995",               # Luhn-valid order number without an issuer
    "4222222222222",                  # retired 13-digit Visa test number (Luhn passes) ...
    "4006380000094",                  # ... is shaped like this EAN-13 barcode (Luhn passes too)
])
def test_not_a_card(value: str) -> None:
    assert_untouched(value)


def test_card_next_to_other_numbers() -> None:
    assert one("Card 4111 1111 1111 1111 12/26 CVC 123") == "Card [CARD] 12/26 CVC 123"
    assert one("Qty 12 4111 1111 1111 1111") == "Qty 12 [CARD]"
    assert one("INV4111111111111111") == "INV4111111111111111"       # glued to a word
    assert one("0.4111111111111111") == "0.4111111111111111"         # a decimal
    assert one("4111-1111-1111-1111-5") == "4111-1111-1111-1111-5"   # tight hyphen binds


# ----------------------------------------------------------------------------- SE_PIN

@pytest.mark.parametrize("value", [
    "19121212-1212",
    "121212-1212",
    "191212121212",
    "121212+1212",                    # aged 100 or more
    "811218-9876",
    "701063-2391",                    # samordningsnummer (day 3 + 60)
    "19701063-2391",
    "20000229-1235",                  # 2000 was a leap year
    "000229-1235",
])
def test_swedish_pin_is_redacted(value: str) -> None:
    assert_redacted_as(value, "SE_PIN")


@pytest.mark.parametrize("value", [
    "121212-1213",                    # Luhn fails
    "19121212-1213",
    "19121312-1212",                  # month 13
    "701093-2395",                    # samordningsnummer day 33 (Luhn passes)
    "19010229-1234",                  # 1901 was not a leap year (Luhn passes)
    "010229-1234",
    "17121212-1212",                  # no such century
    "556677-8899",                    # organisation number, month 66 (Luhn passes)
    "1212121212",                     # 10 digits without separator: deliberately not detected
    "19121212+1212",                  # "+" only in the 10-digit form
])
def test_not_a_swedish_pin(value: str) -> None:
    assert_untouched(value)


# ----------------------------------------------------------------------------- US_SSN

@pytest.mark.parametrize("value", [
    "123-45-6789",    # structurally valid, so redacted (documented choice)
    "078-05-1120",    # the famous wallet-card number: valid structure, redacted
    "899-99-9999",
    "665-01-0001",
])
def test_us_ssn_is_redacted(value: str) -> None:
    assert_redacted_as(value, "US_SSN")


@pytest.mark.parametrize("value", [
    "000-12-3456",    # area 000
    "666-12-3456",    # area 666
    "900-12-3456",    # area 900-999
    "999-12-3456",
    "123-00-4567",    # group 00
    "123-45-0000",    # serial 0000
    "123456789",      # unhyphenated: deliberately not detected
    "123 45 6789",    # spaces: deliberately not detected
    "A123-45-6789",
    "123-45-67890",
    "1-123-45-6789",
])
def test_not_a_us_ssn(value: str) -> None:
    assert_untouched(value)


# ----------------------------------------------------------------------------- PHONE

@pytest.mark.parametrize("value", [
    "+46 70 123 45 67",
    "+46701234567",
    "+46 (0)70-123 45 67",
    "+46 8 123 456 78",
    "+1 (555) 123-4567",
    "+44 20 7946 0958",
    "0046 70 123 45 67",
    "070-123 45 67",
    "070 - 123 45 67",
    "070 123 45 67",
    "0701234567",                     # Swedish mobile without separators
    "08-123 456 78",
    "031-12 34 56",
    "(08) 123 456 78",
    "030/12345678",
    "020 7946 0958",
    "01 23 45 67 89",
    "01.23.45.67.89",
    "(555) 123-4567",
    "(555)123-4567",
    "(555)-123-4567",
    "555-123-4567",
    "555.123.4567",
    "1-555-123-4567",
])
def test_phone_is_redacted(value: str) -> None:
    assert_redacted_as(value, "PHONE")


@pytest.mark.parametrize("value", [
    "2024-01-15",                     # ISO date
    "15.01.2024",
    "01/15/2024",
    "05-03-2024",
    "05-03-2024 1200",                # a date, then a number
    "2024",                           # a year
    "1999 2000 2001 2002",
    "08:30",                          # times
    "08.30-17.00",
    "08.30 09.45 10.15 11.00",
    "1.2.3",                          # versions
    "10.0.19045.2965",
    "v2.3.1",
    "1,234,567",                      # amounts
    "1 234 567",
    "12.345.678,90",
    "+1 234 567",                     # too short to be an international number
    "0012345678",                     # order number with leading zeros
    "1234567890",                     # contiguous 10 digits that are not a Swedish mobile
    "0123456789",
    "192.168.0.1",                    # IP address
    "3.14159265358979",
    "555 123 4567",                   # NANP with spaces only: deliberately not detected
    "123-456-7890",                   # NANP area code cannot start with 1
    "114 55",                         # Swedish postcode
    "0.12345678",
    "09.99 07.95",                    # prices: dots mixed with spaces
])
def test_not_a_phone(value: str) -> None:
    assert_untouched(value)


def test_adjacent_findings_in_lists_and_csv_rows() -> None:
    assert one("070-123 45 67/08-123 456 78") == "[PHONE]/[PHONE]"
    assert one("anna@example.com/070-123 45 67") == "[EMAIL]/[PHONE]"
    assert one("19121212-1212/070-123 45 67") == "[SE_PIN]/[PHONE]"
    row = (
        "17,19121212-1212,0701234567,4111111111111111,12.50;"
        "anna@example.com;SE4550000000058398257466"
    )
    assert one(row) == "17,[SE_PIN],[PHONE],[CARD],12.50;[EMAIL];[IBAN]"


def test_a_finding_glued_to_another_without_separator_is_missed() -> None:
    # documented cost of idempotence: the phone touches the e-mail's last letter
    assert one("a@example.com+46 70 123 45 67") == "[EMAIL]+46 70 123 45 67"
    assert one("a@example.com +46 70 123 45 67") == "[EMAIL] [PHONE]"


def test_phone_does_not_swallow_a_following_year_or_number() -> None:
    assert one("Tel 070-123 45 67 2024") == "Tel [PHONE] 2024"
    assert one("Tel +46 70 123 45 67 2024") == "Tel [PHONE] 2024"
    assert one("Room 12 070-123 45 67") == "Room 12 [PHONE]"
    assert one("555-123-4567-89") == "555-123-4567-89"       # tight tail: some other code


# ----------------------------------------------------------------------------- overlaps

def test_more_specific_types_win_over_phone_and_card() -> None:
    # digits inside e-mail addresses, IBANs, PINs and SSNs are never phones or cards
    assert redact("0701234567@sms.example.com").counts == {"EMAIL": 1}
    assert redact("4111111111111111@cards.example.com").counts == {"EMAIL": 1}
    assert redact("SE45 5000 0000 0583 9825 7466").counts == {"IBAN": 1}
    assert redact("19121212-1212").counts == {"SE_PIN": 1}
    assert redact("123-45-6789").counts == {"US_SSN": 1}
    r = redact("Tel 070-123 45 67 4111 1111 1111 1111")
    assert r.text == "Tel [PHONE] [CARD]" and r.counts == {"CARD": 1, "PHONE": 1}


def test_detection_is_deterministic() -> None:
    text = HR_PARAGRAPH * 3
    assert redact(text) == redact(text)


# ----------------------------------------------------------------------------- documents

HR_PARAGRAPH = (
    "Onboarding note – Anna Svensson (personnummer 19121212-1212, samordningsnummer "
    "701063-2391) starts on 2024-03-01 as Senior Engineer, grade 7, salary 52 500 SEK/month.\n"
    "Reach her at anna.svensson+hr@corp.example.se or +46 70 123 45 67 (office: 08-123 456 78).\n"
    "Salary is paid to IBAN SE45 5000 0000 0583 9825 7466; the old account "
    "DE89 3704 0044 0532 0130 00 is closed.\n"
    "Travel card 4111 1111 1111 1111 (exp 12/26) was issued under order no. 2024-00417, "
    "PO 1234567890123, total 1,234.50 EUR.\n"
    "Her US colleague John Doe (SSN 123-45-6789, phone (555) 123-4567) uses handbook v2.3.1, "
    "updated 15.01.2024 at 08.30; contact john.doe@us.example.com.\r\n"
)
HR_REDACTED = (
    "Onboarding note – Anna Svensson (personnummer [SE_PIN], samordningsnummer "
    "[SE_PIN]) starts on 2024-03-01 as Senior Engineer, grade 7, salary 52 500 SEK/month.\n"
    "Reach her at [EMAIL] or [PHONE] (office: [PHONE]).\n"
    "Salary is paid to IBAN [IBAN]; the old account "
    "[IBAN] is closed.\n"
    "Travel card [CARD] (exp 12/26) was issued under order no. 2024-00417, "
    "PO 1234567890123, total 1,234.50 EUR.\n"
    "Her US colleague John Doe (SSN [US_SSN], phone [PHONE]) uses handbook v2.3.1, "
    "updated 15.01.2024 at 08.30; contact [EMAIL].\r\n"
)


def test_mixed_hr_paragraph() -> None:
    r = redact(HR_PARAGRAPH)
    assert r.text == HR_REDACTED
    assert r.counts == {"EMAIL": 2, "IBAN": 2, "CARD": 1, "SE_PIN": 2, "US_SSN": 1, "PHONE": 3}
    assert list(r.counts) == [k for k in PII_KINDS if k in r.counts]  # stable key order


def test_multiple_occurrences_are_all_counted() -> None:
    text = "a@example.com, a@example.com and 070-123 45 67; 070-123 45 67; 070-123 45 67."
    r = redact(text)
    assert r.text == "[EMAIL], [EMAIL] and [PHONE]; [PHONE]; [PHONE]."
    assert r.counts == {"EMAIL": 2, "PHONE": 3}
    single = redact(HR_PARAGRAPH).counts
    assert redact(HR_PARAGRAPH * 4).counts == {k: 4 * v for k, v in single.items()}


def test_text_outside_pii_is_untouched_byte_for_byte() -> None:
    before = "  Ünïcödé ✓ 🙂\ttabs\r\nCRLF «quotes» — dash\u00a0nbsp "
    after = " \u200bzero-width, trailing spaces   \n\n"
    for value, kind in [
        ("anna@example.com", "EMAIL"), ("SE45 5000 0000 0583 9825 7466", "IBAN"),
        ("4111 1111 1111 1111", "CARD"), ("19121212-1212", "SE_PIN"),
        ("123-45-6789", "US_SSN"), ("+46 70 123 45 67", "PHONE"),
    ]:
        r = redact(before + value + after)
        assert r.text == before + f"[{kind}]" + after
        (span,) = r.spans
        assert (span.start, span.end) == (len(before), len(before) + len(value))
        assert r.text.encode("utf-8") == (before + f"[{kind}]" + after).encode("utf-8")


def test_redacting_redacted_text_changes_nothing() -> None:
    once = redact(HR_PARAGRAPH)
    twice = redact(once.text)
    assert twice.text == once.text and twice.counts == {} and twice.spans == ()
    assert redact("[EMAIL] [IBAN] [CARD] [SE_PIN] [US_SSN] [PHONE]").counts == {}


SNIPPETS = [
    "anna@example.com", "GB82 WEST 1234 5698 7654 32", "DE89370400440532013000",
    "4111 1111 1111 1111", "3782 822463 10005", "19121212-1212", "121212-1212", "701063-2391",
    "123-45-6789", "+46 70 123 45 67", "070-123 45 67", "(555) 123-4567", "555-123-4567",
    "2024-01-15", "08.30", "1.2.3", "1,234,567", "1 234 567", "12", "2024", "0", "00", "+",
    "-", ".", "/", "(", ")", "@", "x", "kr", "Nr", "\n", " ", " ", " ", ", ", "; ", ",", ":",
    "0701234567", "DE88 3704 0044 0532 0130 00", "121212+1212", "[PHONE]", "[EMAIL]", "_", "%",
]


def test_fuzzed_compositions_keep_the_invariants() -> None:
    rng = random.Random(20240115)  # noqa: S311 - seeded test data, not cryptography
    for _ in range(1500):
        text = "".join(rng.choice(SNIPPETS) for _ in range(rng.randint(1, 25)))
        r = redact(text)
        # spans are sorted, disjoint and rebuild the output from the untouched original
        rebuilt, pos = [], 0
        for span in r.spans:
            assert pos <= span.start < span.end <= len(text)
            rebuilt.append(text[pos:span.start] + placeholder(span.kind))
            pos = span.end
        rebuilt.append(text[pos:])
        assert "".join(rebuilt) == r.text
        assert r.counts == dict(Counter(s.kind for s in r.spans))
        again = redact(r.text)
        assert again.text == r.text and again.counts == {}, (text, r.text, again.text)


# ----------------------------------------------------------------------------- adversarial input

def test_large_adversarial_input_completes() -> None:
    """Patterns with no catastrophic backtracking: about 1 MB of worst-case shapes finishes.

    No timing assertion; a quadratic or exponential regex would not finish at all.
    """
    size = 100_000
    parts = [
        "7" * size,                        # one long digit run
        "1 " * (size // 2),                # one long run of 1-digit groups
        "4111 " * (size // 5),             # card-like groups
        "555-" * (size // 4),
        "01 " * (size // 3),               # phone-like groups
        "@" * size,                        # many @
        "a@" * (size // 2),
        "a." * (size // 2),                # one endless dotted local part, no @
        "a@" + "a." * (size // 2),         # one endless domain without a TLD
        "a" * size,                        # one endless word
        "DE12 " * (size // 5),             # IBAN heads
        "+1 " * (size // 3),
        "(0)" * (size // 3),
    ]
    text = "\n".join(parts)
    assert len(text) > 1_000_000
    r = redact(text)
    assert isinstance(r, Redaction)
    # nothing but the phone-like groups is personal data here
    assert set(r.counts) <= {"PHONE"}
    assert r.text.startswith("7" * size + "\n" + "1 " * 10)


# ----------------------------------------------------------------------------- per page


def test_pages_are_redacted_one_by_one_and_offsets_follow_the_redacted_text() -> None:
    sep = "\n\n"
    raw = [f"Mail {PII['EMAIL']} today.", "No personal data here.", f"Call {PII['PHONE']}."]
    pages, offset = [], 0
    for n, text in enumerate(raw, start=1):
        pages.append(Page(n, text, offset))
        offset += len(text) + len(sep)
    out, counts = redact_pages(pages)
    assert counts == {"EMAIL": 1, "PHONE": 1}
    assert [p.number for p in out] == [1, 2, 3]
    assert [p.text for p in out] == ["Mail [EMAIL] today.", raw[1], "Call [PHONE]."]
    full = sep.join(p.text for p in out)
    assert all(full[p.offset:p.offset + len(p.text)] == p.text for p in out)
    assert redact_pages([]) == ([], {})


def test_redaction_keeps_the_structure_marks_and_redacts_table_headers() -> None:
    text = f"Contacts\nname: Anna; {PII['EMAIL']}: yes.\nCall {PII['PHONE']} today."
    marks = (LineMark(0, LineKind.HEADING, 1),
             LineMark(1, LineKind.ROW, header=f"name | {PII['EMAIL']}"))
    (page,), counts = redact_pages([Page(1, text, 0, marks)])
    assert counts == {"EMAIL": 1, "PHONE": 1}  # the header's copy is not counted again
    assert page.text.split("\n")[1] == "name: Anna; [EMAIL]: yes."
    assert page.marks == (LineMark(0, LineKind.HEADING, 1),
                          LineMark(1, LineKind.ROW, header="name | [EMAIL]"))
