"""Erasure and encryption at rest on the real stack (Chroma server, worker, API, Redis).

The promise (docs/erasure.md): within 60 s of the DELETE response no byte sequence of the
document's text remains in any file under the data directory — Chroma's included — and
search and ask never return it. Stored originals are encrypted at rest.
"""

from __future__ import annotations

import secrets
import stat
import time
from pathlib import Path

import pytest
import redis

from service.client import DocqaClient
from tests.forensics import files_containing
from tests.integration.conftest import REDIS_URL, Stack

pytestmark = pytest.mark.integration

ERASE_DEADLINE_S = 60


def _needles(canary: str, token: str) -> list[bytes]:
    # the canary as uploaded and lowercased (the keyword index stores lowercased terms),
    # and a distinctive word of the text (stemmed terms start with it)
    return [canary.encode(), canary.lower().encode(), token[:9].encode()]


def _files_containing(root: Path, needles: list[bytes]) -> dict[str, list[str]]:
    return files_containing(root, needles)


def _secret_text(canary: str, token: str) -> bytes:
    return (f"Confidential settlement memo. The settlement codeword is {canary}.\n"
            f"The {token} programme pays the claimant in three instalments.\n"
            f"Only the legal team may read the {token} file.\n").encode()


def _answers_mention(client: DocqaClient, question: str, needle: str) -> bool:
    ans = client.ask(question)
    return needle.lower() in (ans["answer"] + " ".join(
        c["quote"] for c in ans["citations"])).lower()


def test_stored_original_is_encrypted_at_rest(stack: Stack, acme: DocqaClient) -> None:
    canary = "ATRESTCANARY" + secrets.token_hex(6).upper()
    doc = acme.upload_bytes("atrest.txt", f"The vault code word is {canary}.\n".encode())
    stored = stack.data_dir / "files" / doc["id"]
    assert stored.exists()
    assert canary.encode() not in stored.read_bytes()  # before the worker even saw it
    assert stat.S_IMODE(stored.stat().st_mode) == 0o600
    key_file = stack.data_dir / "master.key"  # no DOCQA_ENCRYPTION_KEY in the test stack
    assert key_file.exists() and stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert "generated a new master key" in stack.log("api") + stack.log("worker")
    assert acme.wait_ready([doc["id"]], timeout=120)[doc["id"]]["status"] == "ready"
    assert canary.encode() not in stored.read_bytes()
    for mode in ("hybrid", "dense", "keyword"):
        hits = acme.search(f"vault code word {canary}", top_k=3, mode=mode)["results"]
        assert hits and canary in hits[0]["text"], mode  # decrypted to parse, and to answer
    assert not list((stack.data_dir / "files" / ".staging").iterdir())
    # the extracted text is encrypted at rest too: Chroma holds it sealed, the keyword index
    # holds keyed hashes of its terms; no file under the data directory holds it in the clear
    assert not _files_containing(stack.data_dir, [canary.encode(), canary.lower().encode(),
                                                  b"vault code word"])
    sealed = _sealed_fragments(stack, doc["id"])
    assert sealed and _files_containing(stack.data_dir, sealed)  # the scan sees stored text


def _sealed_fragments(stack: Stack, doc_id: str) -> list[bytes]:
    """40 characters of each sealed chunk text of the document, as Chroma stores it."""
    return [sealed[20:60].encode() for sealed, _text in stack.stored_chunks("acme", doc_id)]


def test_delete_erases_every_byte_of_the_text_within_60_seconds(
    stack: Stack, acme: DocqaClient
) -> None:
    canary = "ERASECANARY" + secrets.token_hex(8).upper()
    token = "zorblaxif" + secrets.token_hex(3)
    needles = _needles(canary, token)
    keep = acme.upload_bytes("lighthouse.txt", (
        b"The harbour lighthouse is repainted every spring by the Vestby maintenance crew.\n"
        b"Its lamp was converted to LED in 2019.\n"))
    doc = acme.upload_bytes("settlement.txt", _secret_text(canary, token))
    final = acme.wait_ready([keep["id"], doc["id"]], timeout=180)
    assert {d["status"] for d in final.values()} == {"ready"}
    # the text itself never reaches the disk in the clear (sealed in Chroma, hashed terms
    # in the keyword index: test_stored_original_is_encrypted_at_rest); what is stored of it,
    # the sealed form, must go as well
    assert not _files_containing(stack.data_dir, needles)
    sealed = _sealed_fragments(stack, doc["id"])
    assert sealed and _files_containing(stack.data_dir, sealed)  # the check can see it before
    # ... and its key, wrapped, in the registry: destroying it (crypto-erasure) makes any
    # copy of the sealed text that survives anywhere unreadable, so the key must go for good
    from core.keystore import SqliteKeyStore
    from core.textcrypt import text_key_id

    wrapped = SqliteKeyStore(stack.data_dir / "registry.sqlite3").get(text_key_id(doc["id"]))
    assert wrapped and _files_containing(stack.data_dir, [wrapped])
    needles.append(wrapped)

    acme.delete(doc["id"])
    deleted_at = time.monotonic()
    # search and ask never return it, from the DELETE response on
    assert all(canary not in h["text"] for h in acme.search(canary, top_k=50)["results"])
    assert not _answers_mention(acme, f"What is the settlement codeword {canary}?", canary)

    left: dict[str, list[str]] = {}
    while time.monotonic() - deleted_at < ERASE_DEADLINE_S:
        left = _files_containing(stack.data_dir, needles)
        if not left:
            break
        time.sleep(0.5)
    took = time.monotonic() - deleted_at
    assert not left, f"after {took:.0f} s the text is still in {left}"

    for mode in ("hybrid", "dense", "keyword"):
        found = acme.search(f"settlement codeword {canary} {token}", top_k=50, mode=mode)
        assert all(canary not in h["text"] and token not in h["text"] for h in found["results"])
    assert not _answers_mention(acme, f"Which programme is {token}?", token)
    # the other document is untouched: searchable and answerable
    hits = acme.search("When was the lighthouse lamp converted to LED?", top_k=3)["results"]
    assert hits and hits[0]["document_id"] == keep["id"]
    assert _answers_mention(acme, "When was the lighthouse lamp converted to LED?", "2019")
    # Redis (broker, results) never carried the text
    r = redis.Redis.from_url(REDIS_URL)
    for key in r.scan_iter(count=1000):
        dumped = r.dump(key) or b""
        assert not any(n in dumped for n in needles), key


def test_erasure_of_a_deleted_docx_leaves_nothing_either(stack: Stack, acme: DocqaClient) -> None:
    from tests.factories import make_docx

    canary = "DOCXCANARY" + secrets.token_hex(6).upper()
    doc = acme.upload_bytes("minutes.docx", make_docx(
        ["Board minutes.", f"The acquisition target is code named {canary}."]))
    assert acme.wait_ready([doc["id"]], timeout=120)[doc["id"]]["status"] == "ready"
    hits = acme.search(f"acquisition target code named {canary}", top_k=3)["results"]
    assert hits and canary in hits[0]["text"]  # parsed from memory, decrypted in the child
    acme.delete(doc["id"])
    deadline = time.monotonic() + ERASE_DEADLINE_S
    needles = [canary.encode(), canary.lower().encode()]
    while (left := _files_containing(stack.data_dir, needles)) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not left
