"""Extracted text at rest: chunk text sealed per document, keys destroyed on erasure."""

from __future__ import annotations

import secrets
import threading
from pathlib import Path

import pytest

from core import crypto
from core.domain import Chunk
from core.keystore import SqliteKeyStore
from core.textcrypt import TEXT_KEY, TextCipher, TextKeyMissing, text_key_id
from core.vault import Vault
from ingest.keywords import KeywordIndex
from ingest.retrieval import keyword_search
from tests.local_chroma import LocalChromaStore

CANARY = "SEALEDCANARY" + secrets.token_hex(6).upper()


def cipher_in(tmp_path: Path, master: bytes | None = None) -> TextCipher:
    return TextCipher(master or secrets.token_bytes(32), SqliteKeyStore(tmp_path / "keys.sqlite3"))


def test_sealed_text_opens_only_for_its_own_chunk_and_document(tmp_path: Path) -> None:
    c = cipher_in(tmp_path)
    sealed = c.seal("doc-1", "chunk-1", f"The codeword is {CANARY}.")
    assert CANARY not in sealed
    assert c.open("doc-1", "chunk-1", sealed) == f"The codeword is {CANARY}."
    with pytest.raises(crypto.IntegrityError):
        c.open("doc-1", "chunk-2", sealed)  # moved to another chunk
    c.seal("doc-2", "chunk-9", "other")
    with pytest.raises(crypto.IntegrityError):
        c.open("doc-2", "chunk-1", sealed)  # another document's key
    tampered = sealed[:-6] + ("A" if sealed[-6] != "A" else "B") + sealed[-5:]
    with pytest.raises(crypto.IntegrityError):
        c.open("doc-1", "chunk-1", tampered)


def test_a_destroyed_key_makes_every_copy_unreadable_in_every_process(tmp_path: Path) -> None:
    master = secrets.token_bytes(32)
    writer, reader = cipher_in(tmp_path, master), cipher_in(tmp_path, master)
    sealed = writer.seal("doc-1", "c1", CANARY)
    assert reader.open("doc-1", "c1", sealed) == CANARY
    assert writer.forget("doc-1") is True
    assert writer.forget("doc-1") is False
    fresh = cipher_in(tmp_path, master)  # another process: no cached key
    with pytest.raises(TextKeyMissing):
        fresh.open("doc-1", "c1", sealed)
    wrapped = SqliteKeyStore(tmp_path / "keys.sqlite3").get(text_key_id("doc-1"))
    assert wrapped is None


def test_processes_creating_one_documents_key_at_once_agree_on_it(tmp_path: Path) -> None:
    master = secrets.token_bytes(32)
    ciphers = [cipher_in(tmp_path, master) for _ in range(8)]
    sealed: list[tuple[int, str]] = []
    barrier = threading.Barrier(len(ciphers))

    def seal(i: int) -> None:
        barrier.wait()
        sealed.append((i, ciphers[i].seal("doc-race", f"c{i}", f"text {i}")))

    threads = [threading.Thread(target=seal, args=(i,)) for i in range(len(ciphers))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    reader = cipher_in(tmp_path, master)
    assert sorted(reader.open("doc-race", f"c{i}", s) for i, s in sealed) == sorted(
        f"text {i}" for i in range(len(ciphers)))


def test_text_keys_are_not_swept_as_orphan_file_keys(tmp_path: Path) -> None:
    keys = SqliteKeyStore(tmp_path / "keys.sqlite3")
    master = secrets.token_bytes(32)
    c = TextCipher(master, keys)
    c.seal("doc-1", "c1", "kept")
    (tmp_path / "files").mkdir()
    assert Vault(master, keys).sweep_orphan_keys([tmp_path / "files"], grace_s=-1) == 0
    assert keys.get(text_key_id("doc-1")) is not None


def _chunks(doc: str, texts: list[str]) -> list[Chunk]:
    out, pos = [], 0
    for i, t in enumerate(texts):
        out.append(Chunk(id=f"{doc}-{i}", document_id=doc, index=i, text=t, page=1,
                         start=pos, end=pos + len(t)))
        pos += len(t) + 1
    return out


def _vec(i: int) -> list[float]:
    v = [0.01] * 8
    v[i % 8] = 1.0
    return v


def test_chroma_holds_only_sealed_text_and_search_opens_it(tmp_path: Path) -> None:
    cipher = cipher_in(tmp_path)
    store = LocalChromaStore(tmp_path / "chroma",
                             KeywordIndex(tmp_path / "kw.sqlite3", b"t" * 32), cipher=cipher)
    texts = [f"The settlement codeword is {CANARY}.", "Minutes of the March board meeting."]
    store.upsert("acme", _chunks("d1", texts), [_vec(0), _vec(1)], {"filename": "memo.txt"})
    raw = store._collection("acme").get(include=["documents", "metadatas"])
    assert all(d is None for d in raw["documents"])
    assert all(TEXT_KEY in m and CANARY not in m[TEXT_KEY] for m in raw["metadatas"])
    hits = store.query("acme", _vec(0), 2)
    assert hits[0].text == texts[0] and hits[0].filename == "memo.txt"
    kw = keyword_search(store, "acme", _vec(0), CANARY, 5)
    assert [h.chunk_id for h in kw] == ["d1-0"] and kw[0].text == texts[0]
    assert [(c, t) for _n, c, _d, t in store.all_chunks()] == [
        ("d1-0", texts[0]), ("d1-1", texts[1])]
    # nothing under the data directory holds the text: not Chroma, not the keyword index
    raw_bytes = b"".join(p.read_bytes() for p in tmp_path.rglob("*") if p.is_file())
    assert CANARY.encode() not in raw_bytes and CANARY.lower().encode() not in raw_bytes
    assert b"settlement" not in raw_bytes
    # the key destroyed: its records are never returned, even before they are deleted
    store.destroy_text_key("d1")
    assert store.query("acme", _vec(0), 2) == []
    assert list(store.all_chunks()) == []


def test_compaction_seals_plain_records_of_older_versions(tmp_path: Path) -> None:
    keywords = KeywordIndex(tmp_path / "kw.sqlite3", b"t" * 32)
    old = LocalChromaStore(tmp_path / "chroma", keywords)  # an older version: plain documents
    old.upsert("acme", _chunks("d1", [f"Legacy text {CANARY}."]), [_vec(2)], {"filename": "a"})
    assert old._collection("acme").get(include=["documents"])["documents"] == [
        f"Legacy text {CANARY}."]
    store = LocalChromaStore(tmp_path / "chroma", keywords, cipher=cipher_in(tmp_path))
    assert store.query("acme", _vec(2), 1)[0].text == f"Legacy text {CANARY}."  # still read
    store.compact("acme")
    raw = store._collection("acme").get(include=["documents", "metadatas"])
    assert raw["documents"] == [None] and TEXT_KEY in raw["metadatas"][0]
    assert store.query("acme", _vec(2), 1)[0].text == f"Legacy text {CANARY}."
