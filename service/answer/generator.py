"""The local generator: one ``Llama`` per process, calls serialized, wait queue bounded.

A single ``Llama`` object is not safe for concurrent calls (docs/architecture.md), so every call
takes one lock; callers beyond ``queue_size`` waiting get ``OverloadedError`` (503 +
Retry-After) at once instead of piling up.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Iterator, Sequence
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
        self._formatter: Any = None  # the chat template, compiled on first use by choose()

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

    def choose(self, messages: list[dict[str, str]], replies: Sequence[str],
               deadline_s: float) -> tuple[int, float]:
        """Which of ``replies`` the model writes to ``messages`` when it may write only one of
        them: the index and its probability among them (see :meth:`choose_shares`)."""
        index, prob, _ = self.choose_shares(messages, replies, deadline_s)
        return index, prob

    def choose_shares(self, messages: list[dict[str, str]], replies: Sequence[str],
                      deadline_s: float) -> tuple[int, float, list[float]]:
        """The greedy choice among ``replies``, its probability, and each reply's share.

        Greedy over the replies' tokens, each step choosing among the next tokens of the
        replies still possible (or the end of the turn, where a reply ends); the probability
        is the product of the chosen token's share at each step. Only steps where the replies
        part need the model, so a choice costs the prompt plus a token or two. A reply that
        leaves the chosen path gets the probability of the path up to where it left times
        its own token's share there (the model's mass on its branch: no further tokens are
        evaluated for it). The prompt's prefix evaluated by the previous call is reused. Same
        queue slot, lock and deadline rules as :meth:`complete_constrained`; ``ValueError``
        for no replies."""
        if not replies:
            raise ValueError("no replies to choose from")
        deadline = time.monotonic() + deadline_s
        if not self._slots.acquire(blocking=False):
            raise OverloadedError("the answer queue is full; retry shortly", self.retry_after_s)
        try:
            if not self._lock.acquire(timeout=max(0.0, deadline - time.monotonic())):
                raise TimeoutError("the generator stayed busy past the deadline")
            try:
                return self._choose(messages, replies, deadline)
            finally:
                self._lock.release()
        finally:
            self._slots.release()

    def _choose(self, messages: list[dict[str, str]], replies: Sequence[str],
                deadline: float) -> tuple[int, float, list[float]]:
        llm = self.llm
        end = llm.token_eos()
        seqs = [llm.tokenize(r.encode("utf-8"), add_bos=False, special=False) for r in replies]
        logits = self._eval_prompt(self._prompt_tokens(messages))
        alive, depth, prob = list(range(len(replies))), 0, 1.0
        shares = [0.0] * len(replies)
        while True:
            if time.monotonic() > deadline:
                raise TimeoutError("choosing a reply ran past its deadline")
            options: dict[int, list[int]] = {}
            for i in alive:
                options.setdefault(seqs[i][depth] if depth < len(seqs[i]) else end, []).append(i)
            if len(options) == 1 and end not in options:  # all alike here: no choice to make
                token = next(iter(options))
            else:
                top = max(logits[t] for t in options)
                weights = {t: math.exp(float(logits[t]) - top) for t in options}
                total = sum(weights.values())
                token = max(weights, key=lambda t: weights[t])
                for t, idx in options.items():
                    for i in idx:
                        shares[i] = prob * weights[t] / total
                prob *= weights[token] / total
            alive = options[token]
            if token == end or len(alive) == 1:
                shares[alive[0]] = prob
                return alive[0], prob, shares
            logits = self._eval_tokens([token])
            depth += 1

    def _prompt_tokens(self, messages: list[dict[str, str]]) -> list[int]:
        """``messages`` under the GGUF's own chat template, tokenized as
        ``create_chat_completion`` does, with the assistant's turn opened."""
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        llm = self.llm
        if self._formatter is None:
            template = llm.metadata.get("tokenizer.chat_template")
            if not template:
                raise ConfigurationError(f"{self.model_path.name} has no chat template")
            self._formatter = Jinja2ChatFormatter(
                template=template, eos_token=llm._model.token_get_text(llm.token_eos()),
                bos_token=llm._model.token_get_text(llm.token_bos()))
        result = self._formatter(messages=messages)
        tokens: list[int] = llm.tokenize(result.prompt.encode("utf-8"),
                                         add_bos=not result.added_special, special=True)
        return tokens

    def _eval_prompt(self, tokens: list[int]) -> Any:
        """Evaluate ``tokens`` (reusing what the last call left in the cache, up to the last
        token, whose logits are needed) and return the logits after them."""
        llm = self.llm
        cached = llm.input_ids[: llm.n_tokens].tolist()
        same = 0
        while same < min(len(cached), len(tokens) - 1) and cached[same] == tokens[same]:
            same += 1
        llm.n_tokens = same
        return self._eval_tokens(tokens[same:])

    def _eval_tokens(self, tokens: list[int]) -> Any:
        import numpy as np

        self.llm.eval(tokens)
        return np.ctypeslib.as_array(self.llm._ctx.get_logits(), shape=(self.llm.n_vocab(),))
