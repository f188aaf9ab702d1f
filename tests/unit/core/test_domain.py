"""Domain values (core/domain.py): content-addressed chunk ids."""

from core.domain import chunk_id


def test_chunk_ids_are_deterministic_and_content_addressed() -> None:
    assert chunk_id("d", "text", 0) == chunk_id("d", "text", 0)
    assert chunk_id("d", "text", 0) != chunk_id("d", "text!", 0)
    assert chunk_id("d", "text", 0) != chunk_id("d", "text", 1)
    assert chunk_id("d", "text", 0) != chunk_id("e", "text", 0)
