"""Embedding component: the packaged all-MiniLM-L6-v2 through sentence-transformers.

``HashEmbedder`` is the ``mock`` mode for fast unit tests only.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Sequence
from pathlib import Path

from core.settings import apply_offline_env


class SentenceTransformerEmbedder:
    """Loads a local sentence-transformers folder; never reaches a model hub."""

    def __init__(self, model_path: Path, batch_size: int = 32) -> None:
        apply_offline_env()
        # heavy (torch), and must come after apply_offline_env: loaded only by a process
        # that embeds with the real model
        from sentence_transformers import SentenceTransformer

        self.model = SentenceTransformer(str(model_path), device="cpu", local_files_only=True)
        self.batch_size = batch_size
        dimension = getattr(self.model, "get_embedding_dimension",
                            self.model.get_sentence_embedding_dimension)
        self.dimension = int(dimension() or 384)

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        if not texts:
            return []
        vectors = self.model.encode(
            list(texts), batch_size=self.batch_size, normalize_embeddings=True,
            show_progress_bar=False, convert_to_numpy=True,
        )
        return vectors.tolist()  # type: ignore[no-any-return]


class HashEmbedder:
    """Deterministic bag-of-words hashing embedder (unit tests only)."""

    def __init__(self, dimension: int = 64) -> None:
        self.dimension = dimension

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        out = []
        for text in texts:
            vec = [0.0] * self.dimension
            for word in re.findall(r"\w+", text.lower()):
                h = int.from_bytes(hashlib.blake2b(word.encode(), digest_size=4).digest(), "big")
                vec[h % self.dimension] += 1.0
            norm = math.sqrt(sum(v * v for v in vec)) or 1.0
            out.append([v / norm for v in vec])
        return out
