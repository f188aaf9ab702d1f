"""Domain values (core/domain.py): chunk ids, deterministic and keyed per document."""

import hashlib
import secrets

from core.domain import chunk_id


def test_chunk_ids_are_deterministic_and_content_addressed() -> None:
    k = secrets.token_bytes(32)
    assert chunk_id("d", "text", 0, k) == chunk_id("d", "text", 0, k)
    assert chunk_id("d", "text", 0, k) != chunk_id("d", "text!", 0, k)
    assert chunk_id("d", "text", 0, k) != chunk_id("d", "text", 1, k)
    assert chunk_id("d", "text", 0, k) != chunk_id("e", "text", 0, k)


def test_a_chunk_id_confirms_no_guess_of_its_text_without_the_key() -> None:
    """Ids outlive an erased document (the audit log keeps them): with the key gone, a
    guessed short chunk cannot be checked against its id (issue 15, point 5)."""
    text = "name: Jane Roe; salary: 85000"
    k = secrets.token_bytes(32)
    cid = chunk_id("d", text, 0, k)
    digest = cid.rsplit(":", 1)[1]
    assert digest != hashlib.sha256(text.encode()).hexdigest()[:16]  # not the unkeyed hash
    assert cid != chunk_id("d", text, 0, secrets.token_bytes(32))  # another key, another id
    assert cid != chunk_id("d", text, 0, b"")
