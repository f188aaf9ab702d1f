"""The local generator: one ``Llama`` per process, calls serialized, wait queue bounded.

A single ``Llama`` object is not safe for concurrent calls (docs/architecture.md), so every call
takes one lock; callers beyond ``queue_size`` waiting get ``OverloadedError`` (503 +
Retry-After) at once instead of piling up.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

from core.errors import ConfigurationError, OverloadedError


class Generator(Protocol):
    def chat(self, messages: list[dict[str, str]], max_tokens: int) -> str: ...


class StreamingGenerator(Generator, Protocol):
    def chat_stream(self, messages: list[dict[str, str]], max_tokens: int) -> Iterator[str]: ...


class LlamaGenerator:
    def __init__(
        self,
        model_path: Path,
        *,
        n_ctx: int = 2048,
        n_threads: int = 2,
        queue_size: int = 4,
        timeout_s: float = 20.0,
        retry_after_s: int = 2,
    ) -> None:
        if not Path(model_path).is_file():
            raise ConfigurationError(f"GGUF model not found at {model_path}")
        # imported here: the native library is loaded only by a process that generates
        # (extractive answers, the default, never do; workers never do)
        from llama_cpp import Llama

        # Chat template comes from the GGUF's own metadata, so any instruct GGUF works.
        self.llm: Any = Llama(
            model_path=str(model_path), n_ctx=n_ctx, n_threads=n_threads, verbose=False
        )
        self.model_path = Path(model_path)
        self.timeout_s = timeout_s
        self.retry_after_s = retry_after_s
        self._lock = threading.Lock()
        self._slots = threading.BoundedSemaphore(queue_size + 1)  # one running + queue_size waiting

    def chat(self, messages: list[dict[str, str]], max_tokens: int) -> str:
        return "".join(self.chat_stream(messages, max_tokens)).strip()

    def chat_stream(self, messages: list[dict[str, str]], max_tokens: int) -> Iterator[str]:
        """The reply piece by piece as the model writes it.

        A generator: the queue slot is taken at the first ``next()`` (``OverloadedError`` when
        the queue is full) and the lock is held until the reply ends, the deadline passes or
        the caller closes the iterator (a client that went away), whichever comes first.
        """
        if not self._slots.acquire(blocking=False):
            raise OverloadedError("the answer queue is full; retry shortly", self.retry_after_s)
        try:
            with self._lock:
                deadline = time.monotonic() + self.timeout_s
                # Streaming also lets us stop at the deadline instead of waiting for max_tokens.
                chunks = self.llm.create_chat_completion(
                    messages=messages,
                    max_tokens=max_tokens,
                    temperature=0.0,
                    top_k=1,
                    repeat_penalty=1.1,
                    stream=True,
                )
                try:
                    for chunk in chunks:
                        piece = chunk["choices"][0].get("delta", {}).get("content") or ""
                        if piece:
                            yield piece
                        if time.monotonic() > deadline:
                            break
                finally:
                    close = getattr(chunks, "close", None)
                    if close is not None:
                        close()
        finally:
            self._slots.release()

    def complete_constrained(self, messages: list[dict[str, str]], grammar: str,
                             max_tokens: int, deadline_s: float) -> str:
        """The reply to ``messages`` that the GBNF ``grammar`` allows, greedy.

        Takes the same queue slot and lock as :meth:`chat_stream`. ``deadline_s`` counts from
        the call and covers the wait for the lock: past it, ``TimeoutError`` (the caller falls
        back). A grammar llama.cpp cannot parse raises ``ValueError`` before any sampling (an
        unparsed grammar would reach the sampler chain as a null pointer)."""
        deadline = time.monotonic() + deadline_s
        if not self._slots.acquire(blocking=False):
            raise OverloadedError("the answer queue is full; retry shortly", self.retry_after_s)
        try:
            if not self._lock.acquire(timeout=max(0.0, deadline - time.monotonic())):
                raise TimeoutError("the generator stayed busy past the deadline")
            try:
                compiled = self._compile_grammar(grammar)
                # no repeat penalty: copying the passage's words is the point
                chunks = self.llm.create_chat_completion(
                    messages=messages, max_tokens=max_tokens, temperature=0.0, top_k=1,
                    repeat_penalty=1.0, grammar=compiled, stream=True,
                )
                pieces: list[str] = []
                try:
                    for chunk in chunks:
                        pieces.append(chunk["choices"][0].get("delta", {}).get("content") or "")
                        if time.monotonic() > deadline:
                            raise TimeoutError("span picking ran past its deadline")
                finally:
                    close = getattr(chunks, "close", None)
                    if close is not None:
                        close()
                return "".join(pieces)
            finally:
                self._lock.release()
        finally:
            self._slots.release()

    def _compile_grammar(self, grammar: str) -> Any:
        import llama_cpp
        from llama_cpp.llama_grammar import LlamaGrammar

        sampler = llama_cpp.llama_sampler_init_grammar(
            self.llm._model.vocab, grammar.encode("utf-8"), b"root")
        if not sampler:
            raise ValueError("llama.cpp could not parse the grammar")
        llama_cpp.llama_sampler_free(sampler)
        return LlamaGrammar.from_string(grammar, verbose=False)
