"""The real GGUF generator: serialized calls and a bounded wait queue (503 when full)."""

from __future__ import annotations

import pytest

from core.errors import OverloadedError
from core.settings import Settings
from service.answer.generator import LlamaGenerator

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def generator() -> LlamaGenerator:
    return LlamaGenerator(Settings().models.resolved_generator_path(), n_ctx=512, n_threads=2,
                          queue_size=1, timeout_s=10, retry_after_s=3)


def test_generates_with_the_packaged_model(generator: LlamaGenerator) -> None:
    reply = generator.chat([{"role": "user", "content": "Say hello."}], max_tokens=8)
    assert isinstance(reply, str) and reply.strip()


def test_full_queue_answers_overloaded_with_retry_after(generator: LlamaGenerator) -> None:
    # occupy the running slot and the single waiting slot
    assert generator._slots.acquire(blocking=False) and generator._slots.acquire(blocking=False)
    try:
        with pytest.raises(OverloadedError) as err:
            generator.chat([{"role": "user", "content": "hi"}], max_tokens=4)
        assert err.value.retry_after == 3 and err.value.status_code == 503
    finally:
        generator._slots.release()
        generator._slots.release()
    assert generator.chat([{"role": "user", "content": "hi"}], max_tokens=4) is not None


def test_deadline_bounds_generation() -> None:
    gen = LlamaGenerator(Settings().models.resolved_generator_path(), n_ctx=512, n_threads=2,
                         timeout_s=0.0)
    reply = gen.chat([{"role": "user", "content": "Write a long story about ships."}], max_tokens=200)
    assert len(reply.split()) <= 3  # stopped after the first token
