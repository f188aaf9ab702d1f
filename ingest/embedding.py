"""Embedding component: the packaged all-MiniLM-L6-v2, through ONNX Runtime (default) or
sentence-transformers (torch).

``models.embedding_backend`` picks one (:func:`make_embedder`); every process that embeds
(API and workers) uses the same one, so questions and chunks are in one vector space:

* ``onnx``: the same weights exported once to ONNX, locally, from the packaged folder (no
  hub, no download) and cached under ``models.onnx_cache_dir`` (default DATA/cache/onnx),
  with a digest of the source files in the name and of the exported file beside it, checked
  at every load (a changed model or a damaged file is exported again). scripts/setup.sh
  and the image export it ahead; otherwise the first process that needs it does, under a
  file lock. Its vectors agree with torch's to a cosine of 1 - 1e-6 (tests/unit/ingest/
  test_embedding.py), and it is faster on CPU (docs/architecture.md, "Ingest speed");
* ``onnx-int8``: that export with its weights quantized to int8 (dynamic quantization):
  about 2x faster again, but its vectors drift (cosine 0.98 at worst to torch's) and it lost
  answers when it embedded everything; by default it embeds only the chunks' evidence
  units at ingest (``models.unit_embedding_backend``), where it was measured without loss;
* ``torch``: ``SentenceTransformer.encode``, the reference.

``HashEmbedder`` is the ``mock`` mode for fast unit tests only.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import math
import os
import re
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from core.errors import ConfigurationError
from core.settings import apply_offline_env, usable_cpus

if TYPE_CHECKING:
    from core.settings import Settings

log = logging.getLogger("docqa.ingest")

# bump when the exported graph changes (inputs, outputs, pooling, opset): old files are
# exported again, since the name carries it
EXPORT_VERSION = "2"
OPSET = 17
QUANT_VERSION = "matmul"  # what _quantize does; part of the int8 export's cache key
# the files that decide what the model computes; their digest names the export
_SOURCE_FILES = ("config.json", "model.safetensors", "pytorch_model.bin", "tokenizer.json",
                 "sentence_bert_config.json", "modules.json", "1_Pooling/config.json")


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


# ---------------------------------------------------------------- ONNX Runtime


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def source_digest(model_path: Path, quantized: bool) -> str:
    """What the export is made of: the model's files, the export's own version and whether
    it is quantized. A different model folder gets a different export."""
    quant = f" {QUANT_VERSION}" if quantized else ""
    h = hashlib.sha256(
        f"docqa-onnx {EXPORT_VERSION} opset {OPSET} int8 {quantized}{quant}".encode())
    for name in _SOURCE_FILES:
        path = model_path / name
        if path.is_file():
            h.update(name.encode() + b"\0" + file_digest(path).encode())
    return h.hexdigest()


def _check_exportable(model_path: Path) -> int:
    """The folder must be a plain Transformer -> mean pooling -> normalize pipeline (what
    the export computes); returns its maximum sequence length."""
    modules = json.loads((model_path / "modules.json").read_text(encoding="utf-8"))
    kinds = [str(m.get("type", "")).rsplit(".", 1)[-1] for m in modules]
    pooling = _read_json(model_path / "1_Pooling" / "config.json")
    if kinds[:2] != ["Transformer", "Pooling"] or not pooling.get("pooling_mode_mean_tokens") \
            or any(k not in ("Transformer", "Pooling", "Normalize") for k in kinds):
        raise ConfigurationError(
            f"{model_path}: the onnx embedding backend supports Transformer + mean pooling "
            f"models only (found {kinds}); set DOCQA_MODELS__EMBEDDING_BACKEND=torch")
    return int(_read_json(model_path / "sentence_bert_config.json").get("max_seq_length", 256))


@contextlib.contextmanager
def export_lock(cache_dir: Path) -> Iterator[None]:
    """One exporter at a time per cache directory (several worker children start together)."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    with open(cache_dir / ".export.lock", "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def valid_export(path: Path, source: str) -> bool:
    meta = _read_json(path.with_suffix(".json"))
    return (path.is_file() and meta.get("source") == source
            and meta.get("sha256") == file_digest(path))


def _target(model_path: Path, cache_dir: Path, quantized: bool) -> tuple[Path, str]:
    source = source_digest(model_path, quantized)
    return cache_dir / f"embedder-{source[:24]}{'-int8' if quantized else ''}.onnx", source


def write_export(path: Path, source: str, model_path: Path,
                 build: Callable[[Path], None]) -> None:
    """``build`` into a temporary file, then the file and its digests in place (a reader
    sees the old state or the new one, never half a file)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        build(tmp)
        digest = file_digest(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    meta, meta_tmp = path.with_suffix(".json"), path.with_name(f".{path.name}.json.tmp")
    meta_tmp.write_text(json.dumps({"source": source, "sha256": digest,
                                    "model": str(model_path)}), encoding="utf-8")
    os.replace(meta_tmp, meta)


def onnx_model_file(model_path: Path, cache_dir: Path, quantized: bool = False) -> Path:
    """The exported model for ``model_path``, exported now if the cache has no valid copy
    (the source digest in its name; its own digest, recorded beside it, is checked)."""
    path, source = _target(model_path, cache_dir, quantized)
    if valid_export(path, source):
        return path
    with export_lock(cache_dir):
        full, full_source = _target(model_path, cache_dir, False)
        if not valid_export(full, full_source):  # the int8 model is made from this one
            log.info("exporting the embedding model %s to ONNX (once): %s", model_path, full)
            write_export(full, full_source, model_path, lambda out: _export(model_path, out))
        if quantized and not valid_export(path, source):
            log.info("quantizing the ONNX embedding model to int8 (once): %s", path)
            write_export(path, source, model_path, lambda out: _quantize(full, out))
    return path


def _export(model_path: Path, out: Path, attention: str = "eager") -> None:
    """Transformer + attention-masked mean pooling + L2 normalisation, as one graph: what
    sentence-transformers computes for this folder, from its weights on disk. ``attention``
    is the model's attention implementation (``sdpa`` only to compare, bench.ingest_parts)."""
    _check_exportable(model_path)
    apply_offline_env()
    import torch
    from transformers import AutoModel

    # the plain attention, not torch's scaled_dot_product_attention: traced, SDPA's mask
    # handling adds IsNaN/Where steps to every layer; the plain one takes 0.84 of its CPU
    # in ONNX Runtime for the same vectors (docs/architecture.md, "Ingest speed")
    model = AutoModel.from_pretrained(str(model_path), local_files_only=True,
                                      attn_implementation=attention)
    model.eval()

    class Pooled(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = model

        def forward(self, input_ids: Any, attention_mask: Any) -> Any:
            hidden = self.inner(input_ids=input_ids, attention_mask=attention_mask,
                                token_type_ids=torch.zeros_like(input_ids))[0]
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            summed = (hidden * mask).sum(1)
            mean = summed / mask.sum(1).clamp(min=1e-9)
            return torch.nn.functional.normalize(mean, p=2.0, dim=1)

    ids = torch.ones((2, 16), dtype=torch.int64)
    with torch.no_grad():
        torch.onnx.export(
            Pooled(), (ids, torch.ones_like(ids)), str(out),
            input_names=["input_ids", "attention_mask"], output_names=["embedding"],
            dynamic_axes={"input_ids": {0: "batch", 1: "tokens"},
                          "attention_mask": {0: "batch", 1: "tokens"},
                          "embedding": {0: "batch"}},
            opset_version=OPSET, do_constant_folding=True, dynamo=False,
        )


def _quantize(source: Path, out: Path) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    # the matrix products only: quantizing the word-embedding table (a Gather) as well saves
    # nothing worth having (a lookup) and cost agreement with torch (cosine 0.9886 at worst
    # against 0.9908 on tests/unit/ingest/test_embedding.py's set, onnxruntime 1.32)
    quantize_dynamic(str(source), str(out), weight_type=QuantType.QInt8, per_channel=True,
                     op_types_to_quantize=["MatMul"])


class OnnxEmbedder:
    """The exported model in ONNX Runtime, with the model folder's own fast tokenizer.

    Texts are tokenized (truncated to the model's ``max_seq_length``, as
    sentence-transformers does), ordered by length and run in batches of ``batch_size``
    padded only to their own longest text, so short sentences do not pay for long chunks."""

    def __init__(self, model_path: Path, cache_dir: Path, batch_size: int = 32,
                 quantized: bool = False, threads: int | None = None,
                 model_file: Path | None = None) -> None:
        apply_offline_env()
        import onnxruntime as ort
        from tokenizers import Tokenizer

        max_len = _check_exportable(model_path)
        # model_file: an export made elsewhere, unchecked (bench.ingest_parts compares two)
        self.path = model_file or onnx_model_file(model_path, cache_dir, quantized)
        self.tokenizer = Tokenizer.from_file(str(model_path / "tokenizer.json"))
        self.tokenizer.enable_truncation(max_length=max_len)
        self.tokenizer.no_padding()
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = threads or usable_cpus()
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        # idle pool threads sleep instead of spinning: the worker's other work (the parse
        # child, Chroma, the registry) needs those cores between two batches
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.log_severity_level = 3
        self.session = ort.InferenceSession(str(self.path), options,
                                            providers=["CPUExecutionProvider"])
        # int8: the export quantizes activations with one scale per tensor, computed at run
        # time over the whole batch (padding included), so a text's vector would depend on
        # the texts run with it; one text per run keeps it a function of the text (about as
        # fast: 16.2 against 18.1 ms a chunk, 4.1 against 3.4 ms a unit at batch 8)
        self.batch_size = 1 if quantized else max(1, batch_size)
        self.dimension = int(_read_json(model_path / "config.json").get("hidden_size", 384))

    def embed_array(self, texts: Sequence[str]) -> np.ndarray:
        """Unit vectors, one row per text, in the order given."""
        out = np.zeros((len(texts), self.dimension), dtype=np.float32)
        if not texts:
            return out
        encodings = self.tokenizer.encode_batch(list(texts))
        lengths = [len(e.ids) for e in encodings]
        order = sorted(range(len(texts)), key=lengths.__getitem__)
        for i in range(0, len(order), self.batch_size):
            rows = order[i:i + self.batch_size]
            width = max(lengths[r] for r in rows)
            ids = np.zeros((len(rows), width), dtype=np.int64)
            mask = np.zeros((len(rows), width), dtype=np.int64)
            for k, r in enumerate(rows):
                n = lengths[r]
                ids[k, :n] = encodings[r].ids
                mask[k, :n] = 1
            (vectors,) = self.session.run(None, {"input_ids": ids, "attention_mask": mask})
            out[rows] = vectors
        return out

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        return self.embed_array(texts).tolist()  # type: ignore[no-any-return]


def _onnx(settings: Settings, quantized: bool) -> OnnxEmbedder:
    m = settings.models
    return OnnxEmbedder(m.resolved_embedding_path(), settings.onnx_cache_dir,
                        m.onnx_batch_size, quantized=quantized,
                        threads=m.embedding_threads or None)


def make_embedder(settings: Settings) -> OnnxEmbedder | SentenceTransformerEmbedder:
    """The embedder ``models.embedding_backend`` names, on the configured model folder."""
    m = settings.models
    if m.embedding_backend == "torch":
        return SentenceTransformerEmbedder(m.resolved_embedding_path(), m.embedding_batch_size)
    return _onnx(settings, quantized=m.embedding_backend == "onnx-int8")


def chunk_backend(settings: Settings) -> str:
    """The backend a worker embeds chunks with: int8 when either setting asks for it, else
    the embedding backend (``models.chunk_embedding_backend`` 'same')."""
    m = settings.models
    int8 = "onnx-int8" in (m.embedding_backend, m.chunk_embedding_backend)
    return "onnx-int8" if int8 else m.embedding_backend


def _int8_chunks(settings: Settings) -> bool:
    return chunk_backend(settings) == "onnx-int8"


def make_chunk_embedder(settings: Settings) -> OnnxEmbedder | SentenceTransformerEmbedder:
    """What a worker embeds chunks with (``models.chunk_embedding_backend``)."""
    return _onnx(settings, quantized=True) if _int8_chunks(settings) else make_embedder(settings)


def make_unit_embedder(settings: Settings
                       ) -> OnnxEmbedder | SentenceTransformerEmbedder | None:
    """The embedder of the evidence units at ingest when it is not the chunks' one (None:
    the chunks' embedder is the one they need: one session, not two alike)."""
    m = settings.models
    int8_units = m.unit_embedding_backend == "onnx-int8" or m.embedding_backend == "onnx-int8"
    if int8_units == _int8_chunks(settings):
        return None
    # 'same' is the embedding backend's, which int8 chunks are not
    return _onnx(settings, quantized=True) if int8_units else make_embedder(settings)


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


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m ingest.embedding [--cache-dir DIR]``: export the configured embedding
    model to ONNX, and its int8 form, ahead of first use (scripts/setup.sh, the image)."""
    import argparse

    from core.settings import Settings

    ap = argparse.ArgumentParser(prog="python -m ingest.embedding", description=main.__doc__)
    ap.add_argument("--cache-dir", type=Path, default=None,
                    help="default: models.onnx_cache_dir (DATA/cache/onnx)")
    args = ap.parse_args(argv)
    settings = Settings()
    cache = args.cache_dir or settings.onnx_cache_dir
    model = settings.models.resolved_embedding_path()
    for quantized in (False, True):  # fp32 for retrieval, int8 for the evidence units
        print(onnx_model_file(model, cache, quantized))  # noqa: T201 - the command's output
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
