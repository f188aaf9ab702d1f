"""The real store adapter on an in-process Chroma client, for unit tests.

One process only, which the unit tests are (docs/architecture.md allows ``PersistentClient``
there); the service and the integration tests always use the Chroma server.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from core.textcrypt import TextCipher
from ingest.keywords import KeywordIndex
from ingest.store import ChromaStore, TenantLock


class LocalChromaStore(ChromaStore):
    def __init__(self, path: Path, keywords: KeywordIndex | None = None,
                 lock: TenantLock | None = None, cipher: TextCipher | None = None) -> None:
        super().__init__("in-process", 0, keywords, lock=lock, cipher=cipher)
        self.path = Path(path)

    def _connect(self) -> Any:
        if self._client is None:
            import chromadb
            from chromadb.config import Settings as ChromaClientSettings

            self._client = chromadb.PersistentClient(
                path=str(self.path), settings=ChromaClientSettings(anonymized_telemetry=False))
        return self._client
