"""PII redaction at ingest on the real stack (API, Celery worker, Chroma server, models).

Its own stack (Redis database 6) with redaction forced for tenant ``globex``
(``DOCQA_PII__TENANTS``). Every personal value is synthetic and each document has its own
set, so "nowhere in the data directory" can be checked byte for byte:

* acme uploads one text and one PDF with ``redact_pii=true``: no value is found by search
  (hybrid, dense, keyword), in answers or quotes, in the Chroma collection, in
  ``keywords.sqlite3`` or in any file of the data directory; placeholders are found
  instead; the record counts each type; the original file is gone;
* acme uploads the same kind of text without redaction: searchable as before (control);
* globex's upload is redacted although it asks for no redaction;
* the same bytes with and without redaction: still one document, redaction wins.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ingest.pii import redact
from ingest.store import tenant_get
from service.client import SearchResponse
from tests.factories import make_pdf
from tests.integration.conftest import Stack, run_stack
from tests.private_redis import session_redis_url

pytestmark = pytest.mark.integration

REDIS_URL = os.environ.get("DOCQA_TEST_PII_REDIS_URL") or session_redis_url(6)


# ---------------------------------------------------------------- synthetic personal data


def _luhn_digit(digits: str) -> str:
    for d in "0123456789":
        total = 0
        for i, ch in enumerate(reversed(digits + d)):
            n = int(ch) * (2 if i % 2 else 1)
            total += n - 9 if n > 9 else n
        if total % 10 == 0:
            return d
    raise AssertionError("unreachable")


def _iban(bban: str, country: str = "SE") -> str:
    number = int("".join(str(int(ch, 36)) for ch in bban + country + "00"))
    compact = f"{country}{98 - number % 97:02d}{bban}"
    return " ".join(compact[k:k + 4] for k in range(0, len(compact), 4))


def pii_set(seed: int, name: str) -> dict[str, str]:
    """One person's synthetic values, every one unique to ``seed`` (1-8)."""
    first, last = name.lower().split()
    card = f"4{seed * 1_234_567:014d}"
    card += _luhn_digit(card)
    pin = f"{80 + seed:02d}{seed:02d}{10 + seed:02d}{100 * seed + 37:03d}"
    pin += _luhn_digit(pin)
    return {
        "EMAIL": f"{first}.{last}{seed}@example.org",
        "PHONE": f"070-{100 + seed * 111:03d} {10 + seed * 11:02d} {20 + seed * 7:02d}",
        "IBAN": _iban(f"50000000{seed * 7_654_321:012d}"),
        "CARD": " ".join(card[k:k + 4] for k in range(0, 16, 4)),
        "SE_PIN": f"19{pin[:6]}-{pin[6:]}",
        "US_SSN": f"{200 + seed:03d}-{10 + seed:02d}-{1000 + seed * 111:04d}",
    }


def record(name: str, v: dict[str, str]) -> str:
    return (
        f"Personnel record for {name}.\n\n"
        f"{name} can be reached by e-mail at {v['EMAIL']} and by phone on {v['PHONE']}.\n\n"
        f"The salary of {name} is paid to the bank account {v['IBAN']}.\n\n"
        f"The company credit card of {name} is {v['CARD']}.\n\n"
        f"The Swedish personal identity number of {name} is {v['SE_PIN']}.\n\n"
        f"The US social security number of {name} is {v['US_SSN']}.\n\n"
        f"Questions about the record go to {v['EMAIL']} before the end of the month.\n"
    )


COUNTS = {"EMAIL": 2, "IBAN": 1, "CARD": 1, "SE_PIN": 1, "US_SSN": 1, "PHONE": 1}
PEOPLE = {  # file -> (tenant, name, seed, ask for redaction)
    "redacted.txt": ("acme", "Ingrid Holm", 1, True),
    "control.txt": ("acme", "Oskar Lund", 2, False),
    "forced.txt": ("globex", "Maja Ek", 3, False),
}
VALUES = {f: pii_set(seed, name) for f, (_t, name, seed, _r) in PEOPLE.items()}
TEXTS = {f: record(PEOPLE[f][1], VALUES[f]) for f in PEOPLE}
# a two-page PDF (short lines: the test PDF writer wraps at 80 characters)
PDF_VALUES = pii_set(4, "Nils Berg")
PDF_PAGES = [
    "Travel claim 2025. Approved by the finance team in March.",
    f"Refunds for Nils Berg go to {PDF_VALUES['EMAIL']} within a week.",
]
PDF_COUNTS = {"EMAIL": 1}
# uploaded unredacted first, then again with redaction
UPGRADE_VALUES = pii_set(5, "Sven Dahl")
UPGRADE_TEXT = record("Sven Dahl", UPGRADE_VALUES)

SECRETS = [*VALUES["redacted.txt"].values(), *VALUES["forced.txt"].values(), PDF_VALUES["EMAIL"]]


def test_the_synthetic_values_are_detected_as_their_types() -> None:
    for values in (*VALUES.values(), UPGRADE_VALUES):
        for kind, value in values.items():
            assert redact(f"Ref: {value}. Next").counts == {kind: 1}, (kind, value)
    for text in (*TEXTS.values(), UPGRADE_TEXT):
        assert redact(text).counts == COUNTS
    all_values = [v for vs in (*VALUES.values(), PDF_VALUES, UPGRADE_VALUES) for v in vs.values()]
    assert len(set(all_values)) == len(all_values)


# ---------------------------------------------------------------- the stack and the corpus


@pytest.fixture(scope="module")
def pii_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with run_stack(tmp_path_factory.mktemp("docqa-pii"), REDIS_URL,
                   {"DOCQA_PII__TENANTS": "globex"}) as st:
        yield st


@pytest.fixture(scope="module")
def docs(pii_stack: Stack) -> dict[str, dict[str, Any]]:
    """file name -> final record; also the upload replies under ``reply``."""
    out: dict[str, dict[str, Any]] = {}
    for fname, (tenant, _name, _seed, ask) in PEOPLE.items():
        # globex asks for no redaction explicitly: its tenant setting wins
        with pii_stack.client(tenant) as c:
            reply = c.upload_bytes(fname, TEXTS[fname].encode(), redact_pii=ask)
            assert c.last_response.status_code == 202, c.last_response.text
        out[fname] = {"reply": reply, "tenant": tenant}
    with pii_stack.client("acme") as c:
        reply = c.upload_bytes("claim.pdf", make_pdf(PDF_PAGES), redact_pii=True)
    out["claim.pdf"] = {"reply": reply, "tenant": "acme"}
    for tenant in ("acme", "globex"):
        mine = {v["reply"]["id"]: f for f, v in out.items() if v["tenant"] == tenant}
        with pii_stack.client(tenant) as c:
            for doc_id, doc in c.wait_ready(list(mine), timeout=300).items():
                out[mine[doc_id]].update(doc)
    assert {f: d["status"] for f, d in out.items()} == {f: "ready" for f in out}, out
    return out


def _files(data_dir: Path) -> Iterator[Path]:
    for path in data_dir.rglob("*"):
        if path.is_file():
            yield path


def _wait_gone(path: Path, timeout: float = 10) -> bool:
    deadline = time.monotonic() + timeout
    while path.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    return not path.exists()


def _texts(result: SearchResponse) -> str:
    return "\n".join(h["text"] for h in result["results"])


# ---------------------------------------------------------------- records


def test_the_records_show_redaction_and_counts(pii_stack: Stack,
                                               docs: dict[str, dict[str, Any]]) -> None:
    assert docs["redacted.txt"]["reply"]["pii_redacted"] is True
    assert docs["redacted.txt"]["pii"] == {"redacted": True, "counts": COUNTS}
    assert docs["claim.pdf"]["pii"] == {"redacted": True, "counts": PDF_COUNTS}
    assert docs["claim.pdf"]["pages"] == 2
    assert docs["control.txt"]["reply"]["pii_redacted"] is False
    assert docs["control.txt"]["pii"] == {"redacted": False, "counts": None}
    assert docs["forced.txt"]["reply"]["pii_redacted"] is True  # asked for false
    assert docs["forced.txt"]["pii"] == {"redacted": True, "counts": COUNTS}
    with pii_stack.client("acme") as c:
        listed = {d["id"]: d["pii"] for d in c.documents(limit=500)["items"]}
    assert listed[docs["redacted.txt"]["id"]] == {"redacted": True, "counts": COUNTS}
    assert listed[docs["control.txt"]["id"]] == {"redacted": False, "counts": None}


def test_redacted_originals_are_deleted_and_unredacted_ones_kept(
    pii_stack: Stack, docs: dict[str, dict[str, Any]]
) -> None:
    files = pii_stack.data_dir / "files"
    for fname in ("redacted.txt", "claim.pdf", "forced.txt"):
        assert _wait_gone(files / docs[fname]["id"]), fname
    assert (files / docs["control.txt"]["id"]).exists()


# ---------------------------------------------------------------- search and ask


@pytest.mark.parametrize("mode", [None, "dense", "keyword"])
def test_no_redacted_value_is_found_by_search(pii_stack: Stack, docs: dict[str, dict[str, Any]],
                                              mode: str | None) -> None:
    for tenant, fname in (("acme", "redacted.txt"), ("globex", "forced.txt")):
        name = PEOPLE[fname][1]
        with pii_stack.client(tenant) as c:
            for kind, value in VALUES[fname].items():
                for query in (value, f"{name} {kind.lower().replace('_', ' ')} {value}"):
                    found = _texts(c.search(query, top_k=50, mode=mode))
                    assert not any(s in found for s in SECRETS), (mode, kind, query)
            hits = c.search(f"{name} e-mail phone bank account card", top_k=10,
                            mode=mode)["results"]
            mine = [h for h in hits if h["document_id"] == docs[fname]["id"]]
            assert mine, (mode, hits)  # the redacted document is still found ...
            text = "\n".join(h["text"] for h in mine)
            assert "[EMAIL]" in text or "[PHONE]" in text or "[IBAN]" in text  # ... redacted
    with pii_stack.client("acme") as c:
        found = _texts(c.search(f"Refunds for Nils Berg {PDF_VALUES['EMAIL']}", top_k=20,
                                mode=mode))
        assert PDF_VALUES["EMAIL"] not in found and "Refunds for Nils Berg go to [EMAIL]" in found


def test_placeholders_are_keyword_searchable_and_page_numbers_stay(
    pii_stack: Stack, docs: dict[str, dict[str, Any]]
) -> None:
    with pii_stack.client("acme") as c:
        hits = c.search("Refunds Nils Berg", top_k=5, mode="keyword")["results"]
    pdf = [h for h in hits if h["document_id"] == docs["claim.pdf"]["id"]]
    assert pdf and pdf[0]["page"] == 2 and "[EMAIL]" in pdf[0]["text"]
    assert pdf[0]["end"] - pdf[0]["start"] == len(pdf[0]["text"])  # offsets: the redacted text


def test_the_unredacted_control_is_searchable_as_before(
    pii_stack: Stack, docs: dict[str, dict[str, Any]]
) -> None:
    values = VALUES["control.txt"]
    with pii_stack.client("acme") as c:
        for mode in (None, "dense", "keyword"):
            found = _texts(c.search(f"Oskar Lund e-mail {values['EMAIL']}", top_k=10, mode=mode))
            assert values["EMAIL"] in found, mode
        found = _texts(c.search(values["IBAN"], top_k=10, mode="keyword"))
        assert values["IBAN"] in found


@pytest.mark.parametrize(("tenant", "fname", "question", "placeholder"), [
    ("acme", "redacted.txt", "What is the e-mail address of Ingrid Holm?", "[EMAIL]"),
    ("acme", "redacted.txt", "Which bank account is the salary of Ingrid Holm paid to?",
     "[IBAN]"),
    ("acme", "redacted.txt", "What is the US social security number of Ingrid Holm?",
     "[US_SSN]"),
    ("acme", "redacted.txt", "What is the phone number of Ingrid Holm?", "[PHONE]"),
    ("globex", "forced.txt", "What is the Swedish personal identity number of Maja Ek?",
     "[SE_PIN]"),
    ("acme", "claim.pdf", "Where do refunds for Nils Berg go?", "[EMAIL]"),
])
def test_answers_and_quotes_hold_placeholders_not_values(
    pii_stack: Stack, docs: dict[str, dict[str, Any]], tenant: str, fname: str, question: str,
    placeholder: str,
) -> None:
    with pii_stack.client(tenant) as c:
        result = c.ask(question)
    shown = result["answer"] + "\n" + "\n".join(x["quote"] for x in result["citations"])
    assert not any(s in shown for s in SECRETS), result
    assert result["status"] == "answered" and placeholder in result["answer"], result
    first = result["citations"][0]
    assert first["document_id"] == docs[fname]["id"] and placeholder in first["quote"], result
    if fname == "claim.pdf":
        assert first["page"] == 2, result


def test_a_control_answer_still_quotes_the_value(docs: dict[str, dict[str, Any]],
                                                 pii_stack: Stack) -> None:
    with pii_stack.client("acme") as c:
        result = c.ask("What is the e-mail address of Oskar Lund?")
    assert result["status"] == "answered", result
    assert VALUES["control.txt"]["EMAIL"] in result["answer"] + "".join(
        x["quote"] for x in result["citations"])


# ---------------------------------------------------------------- what is stored


def test_chroma_holds_placeholders_not_values(pii_stack: Stack,
                                              docs: dict[str, dict[str, Any]]) -> None:
    # chunk text is sealed in Chroma (encryption at rest): what it opens to is checked
    for tenant, fnames in (("acme", ["redacted.txt", "claim.pdf"]), ("globex", ["forced.txt"])):
        everything = tenant_get(pii_stack.chroma(), tenant, include=["metadatas"])
        opened = "\n".join(text for _sealed, text in pii_stack.stored_chunks(tenant))
        stored = repr(everything["metadatas"]) + opened
        assert not any(s in stored for s in SECRETS), tenant
        for fname in fnames:
            mine = pii_stack.stored_chunks(tenant, docs[fname]["id"])
            assert len(mine) == docs[fname]["chunks"]
            assert "[EMAIL]" in "\n".join(text for _s, text in mine), fname
    control = pii_stack.stored_chunks("acme", docs["control.txt"]["id"])
    assert VALUES["control.txt"]["EMAIL"] in "\n".join(text for _s, text in control)


def test_no_redacted_value_is_in_any_file_of_the_data_directory(
    pii_stack: Stack, docs: dict[str, dict[str, Any]]
) -> None:
    """keywords.sqlite3 (and its WAL), Chroma's files, the registry, logs, audit log."""
    keywords = pii_stack.data_dir / "keywords.sqlite3"
    assert keywords.exists()
    for fname in ("redacted.txt", "claim.pdf", "forced.txt"):
        _wait_gone(pii_stack.data_dir / "files" / docs[fname]["id"])
    needles = [s.encode() for s in SECRETS]
    # no file holds any text in the clear (sealed chunks, hashed keyword terms), so the scan
    # proves it can see stored text by finding the unredacted control's sealed chunks
    control = [sealed[20:60].encode() for sealed, _t in
               pii_stack.stored_chunks("acme", docs["control.txt"]["id"])]
    seen_control = False
    for path in _files(pii_stack.data_dir):
        data = path.read_bytes()
        hits = [n.decode() for n in needles if n in data]
        assert not hits, (path, hits)
        seen_control |= any(c in data for c in control)
    assert control and seen_control  # the same check finds the control's stored chunks


# ---------------------------------------------------------------- the same bytes twice


def test_same_bytes_without_redaction_return_the_redacted_document(
    pii_stack: Stack, docs: dict[str, dict[str, Any]]
) -> None:
    with pii_stack.client("acme") as c:
        body = c.upload_bytes("again.txt", TEXTS["redacted.txt"].encode())
        assert c.last_response.status_code == 200, c.last_response.text
    assert body == {"id": docs["redacted.txt"]["id"], "status": "ready", "duplicate": True,
                    "pii_redacted": True}
    assert not (pii_stack.data_dir / "files" / body["id"]).exists()  # not brought back


def test_same_bytes_with_redaction_redact_the_unredacted_document(
    pii_stack: Stack, docs: dict[str, dict[str, Any]]
) -> None:
    values = UPGRADE_VALUES
    with pii_stack.client("acme") as c:
        first = c.upload_bytes("sven.txt", UPGRADE_TEXT.encode())
        assert c.wait_ready([first["id"]], timeout=120)[first["id"]]["status"] == "ready"
        assert values["EMAIL"] in _texts(c.search(values["EMAIL"], top_k=10, mode="keyword"))

        again = c.upload_bytes("sven-copy.txt", UPGRADE_TEXT.encode(), redact_pii=True)
        assert again["id"] == first["id"] and again["pii_redacted"] is True
        assert again["status"] in ("queued", "processing")  # the worker may be quick
        # the unredacted chunks are gone at once, not when the redacted ingest ends
        for mode in ("dense", "keyword"):
            assert values["EMAIL"] not in _texts(c.search(values["EMAIL"], top_k=50, mode=mode))
        done = c.wait_ready([first["id"]], timeout=120)[first["id"]]
        assert done["status"] == "ready" and done["pii"] == {"redacted": True, "counts": COUNTS}
        for mode in (None, "dense", "keyword"):
            for value in values.values():
                assert value not in _texts(c.search(f"Sven Dahl {value}", top_k=50, mode=mode))
        assert "[EMAIL]" in _texts(c.search("Sven Dahl e-mail", top_k=10, mode="keyword"))
        listing = c.documents(limit=500)["items"]
        assert sum(1 for d in listing if d["sha256"] == done["sha256"]) == 1
    stored = "\n".join(text for _s, text in pii_stack.stored_chunks("acme", first["id"]))
    assert "[IBAN]" in stored and not any(v in stored for v in values.values())
    assert _wait_gone(pii_stack.data_dir / "files" / first["id"])


def test_a_redacted_document_can_be_deleted(pii_stack: Stack) -> None:
    with pii_stack.client("acme") as c:
        doc = c.upload_bytes("tmp.txt", b"Temporary note: call 070-999 88 77 today.\n",
                             redact_pii=True)
        assert c.wait_ready([doc["id"]], timeout=120)[doc["id"]]["status"] == "ready"
        c.delete(doc["id"])
        assert all(d["id"] != doc["id"] for d in c.documents(limit=500)["items"])
    assert tenant_get(pii_stack.chroma(), "acme", where={"document_id": doc["id"]},
                      include=[])["ids"] == []
