"""TEST ONLY: fault-injection hooks for tests/integration/test_faults.py.

Driven by ``settings.test_hooks`` (``DOCQA_TEST_HOOKS__*``), all off by default; with them
off, :func:`hooked_embedder` returns the real embedder unchanged and :func:`before_ingest`
does nothing. Never set them in a deployment.

- ``DOCQA_TEST_HOOKS__SLOW_EMBED_S``: sleep before every embedding call, so a test can kill
  a process while a document is being embedded.
- ``DOCQA_TEST_HOOKS__CRASH_WORKER_ON``: the worker child SIGKILLs itself at the first
  embedding call of a document whose filename contains this text (a poison document that
  kills its worker on every attempt).
"""

from __future__ import annotations

import logging
import os
import signal
import time
from collections.abc import Sequence
from typing import Any

from core.settings import FaultHookSettings, Settings

log = logging.getLogger("docqa.worker")


class HookedEmbedder:
    """Wraps the real embedder; sleeps and crashes as the hooks say."""

    def __init__(self, inner: Any, hooks: FaultHookSettings) -> None:
        self.inner = inner
        self.hooks = hooks
        # of the documents being ingested (set by before_ingest, before_batch)
        self.filenames: list[str] = []

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        poison = self.hooks.crash_worker_on
        if poison and any(poison in name for name in self.filenames):
            log.warning("TEST HOOK: killing this worker child (pid %d) on %r",
                        os.getpid(), self.filenames)
            os.kill(os.getpid(), signal.SIGKILL)
        if self.hooks.slow_embed_s:
            time.sleep(self.hooks.slow_embed_s)
        vectors: list[list[float]] = self.inner.embed(texts)
        return vectors

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def active(settings: Settings) -> bool:
    hooks = settings.test_hooks
    return bool(hooks.slow_embed_s or hooks.crash_worker_on)


def hooked_embedder(settings: Settings, embedder: Any) -> Any:
    """The embedder itself, or (test hooks set) the embedder behind :class:`HookedEmbedder`."""
    if not active(settings):
        return embedder
    log.warning("TEST HOOKS ARE ON (%s): fault injection for tests only",
                settings.test_hooks.model_dump())
    return HookedEmbedder(embedder, settings.test_hooks)


def before_ingest(deps: Any, doc_id: str) -> None:
    """Tell the hooked embedder which document it embeds (for ``crash_worker_on``)."""
    before_batch(deps, [doc_id])


def before_batch(deps: Any, doc_ids: Sequence[str]) -> None:
    """Tell the hooked embedder which documents it embeds (for ``crash_worker_on``): a batch
    that holds the poison document dies in its shared embedding call."""
    embedder = deps.embedder
    if isinstance(embedder, HookedEmbedder) and embedder.hooks.crash_worker_on:
        docs = [deps.repo.get(d) for d in doc_ids]
        embedder.filenames = [doc.filename for doc in docs if doc is not None]
