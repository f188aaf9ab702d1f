"""The ONNX Runtime embedder against the torch one it replaces, and its export cache.

The agreement tests run the real packaged MiniLM both ways (the export scripts/setup.sh made,
or one made here on first use); the cache tests replace the export by a stand-in."""

from __future__ import annotations

import collections
import json
import os
from pathlib import Path

import numpy as np
import pytest

from core.settings import Settings
from ingest import embedding
from ingest.embedding import OnnxEmbedder, SentenceTransformerEmbedder, onnx_model_file

CACHE = Path(os.environ.get("DOCQA_MODELS__ONNX_CACHE_DIR")
             or Path(__file__).resolve().parents[3] / "data" / "cache" / "onnx")

PASSAGES = [
    "Employees accrue 25 days of paid annual leave per calendar year.",
    "The data centre in Frankfurt is cooled by outside air for most of the year.",
    "Invoices are payable within 30 days of receipt, without deduction.",
    "The Eiffel Tower was completed in 1889 for the World's Fair in Paris.",
    "Photosynthesis converts light energy into chemical energy stored in glucose.",
    "A short one.",
    ("Parental leave may be taken in up to three blocks before the child turns eight; "
     "requests must reach HR seven weeks before the first day of leave. ") * 6,
]
QUERIES = [
    "How many vacation days do staff get?",
    "When was the Eiffel Tower built?",
    "What is the payment term for invoices?",
    "How do plants store energy from light?",
    "How early must parental leave be requested?",
]


@pytest.fixture(scope="module")
def model_path() -> Path:
    return Settings().models.resolved_embedding_path()


@pytest.fixture(scope="module")
def torch_vectors(model_path: Path) -> tuple[np.ndarray, np.ndarray]:
    st = SentenceTransformerEmbedder(model_path)
    return np.array(st.embed(PASSAGES)), np.array(st.embed(QUERIES))


@pytest.mark.parametrize("quantized", [False, True], ids=["onnx", "onnx-int8"])
def test_onnx_agrees_with_torch(model_path: Path, torch_vectors: tuple[np.ndarray, np.ndarray],
                                quantized: bool) -> None:
    onnx = OnnxEmbedder(model_path, CACHE, batch_size=3, quantized=quantized)
    passages, queries = np.array(onnx.embed(PASSAGES)), np.array(onnx.embed(QUERIES))
    ref_p, ref_q = torch_vectors
    assert passages.shape == ref_p.shape and queries.shape == ref_q.shape
    np.testing.assert_allclose(np.linalg.norm(passages, axis=1), 1.0, atol=1e-4)
    agreement = np.concatenate([(passages * ref_p).sum(1), (queries * ref_q).sum(1)])
    # fp32 is the same computation (measured 1 - 1e-6); int8 drifts: 0.991 at worst on this
    # set, 0.98 at worst over 1,373 SQuAD sentences, which is why it embeds only the
    # evidence units, never what retrieval compares (models.unit_embedding_backend)
    assert agreement.min() >= (0.9999 if not quantized else 0.99)
    # the same passage ranking for every query
    assert ((queries @ passages.T).argsort(1)[:, ::-1][:, :3].tolist()
            == (ref_q @ ref_p.T).argsort(1)[:, ::-1][:, :3].tolist())


def test_the_export_traces_the_plain_attention(model_path: Path) -> None:
    """torch's scaled_dot_product_attention, traced, masks with IsNaN/Where steps in every
    layer (the plain attention takes 0.84 of its CPU for the same vectors); the export asks
    the model for its plain attention, which traces without them."""
    import onnx

    graph = onnx.load(str(onnx_model_file(model_path, CACHE))).graph
    ops = collections.Counter(node.op_type for node in graph.node)
    assert ops["Softmax"] == 6  # MiniLM-L6: one attention per layer
    # the mask is built once for all layers, not repaired in each
    assert ops["IsNaN"] == 0 and ops["Where"] < ops["Softmax"]


def test_onnx_keeps_input_order_across_length_sorted_batches(model_path: Path) -> None:
    onnx = OnnxEmbedder(model_path, CACHE, batch_size=2)
    together = np.array(onnx.embed(PASSAGES))
    one_by_one = np.array([onnx.embed([p])[0] for p in PASSAGES])
    np.testing.assert_allclose(together, one_by_one, atol=1e-5)
    assert onnx.embed([]) == []


def _stand_in(calls: list[Path]):  # type: ignore[no-untyped-def]
    def export(model: Path, out: Path) -> None:
        calls.append(out)
        out.write_bytes(b"exported " + str(model).encode())
    return export


def test_export_is_reused_and_made_again_when_damaged(
        tmp_path: Path, model_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[Path] = []
    monkeypatch.setattr(embedding, "_export", _stand_in(calls))
    cache = tmp_path / "cache"
    first = onnx_model_file(model_path, cache)
    assert len(calls) == 1 and first.is_file()
    meta = json.loads(first.with_suffix(".json").read_text())
    assert meta["source"] == embedding.source_digest(model_path, False)
    assert onnx_model_file(model_path, cache) == first and len(calls) == 1  # reused
    first.write_bytes(b"damaged")  # the recorded digest no longer matches
    assert onnx_model_file(model_path, cache) == first and len(calls) == 2
    assert first.read_bytes().startswith(b"exported")
    assert not [p for p in cache.iterdir() if p.name.endswith(".tmp")]


def test_another_model_gets_another_export(tmp_path: Path, model_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[Path] = []
    monkeypatch.setattr(embedding, "_export", _stand_in(calls))
    other = tmp_path / "model"
    other.mkdir()
    for name in ("config.json", "modules.json", "sentence_bert_config.json", "tokenizer.json"):
        (other / name).write_bytes((model_path / name).read_bytes())
    (other / "model.safetensors").write_bytes(b"other weights")
    a = onnx_model_file(model_path, tmp_path / "cache")
    b = onnx_model_file(other, tmp_path / "cache")
    assert a != b and len(calls) == 2


def test_a_model_the_export_cannot_compute_is_refused(tmp_path: Path) -> None:
    (tmp_path / "modules.json").write_text(json.dumps(
        [{"type": "sentence_transformers.models.Transformer"},
         {"type": "sentence_transformers.models.Pooling"}]))
    (tmp_path / "1_Pooling").mkdir()
    (tmp_path / "1_Pooling" / "config.json").write_text(json.dumps(
        {"pooling_mode_cls_token": True, "pooling_mode_mean_tokens": False}))
    with pytest.raises(embedding.ConfigurationError, match="mean pooling"):
        embedding._check_exportable(tmp_path)


def test_int8_chunks_and_questions_share_one_session_with_the_units(tmp_path: Path) -> None:
    """With int8 chunks and questions (a setting, docs/architecture.md) the units share
    their session; with fp32 chunks, the default, they get an int8 session of their own."""
    default = Settings(data_dir=tmp_path, models={"onnx_cache_dir": CACHE,
                                                  "embedding_backend": "onnx-int8"})
    main = embedding.make_embedder(default)
    assert isinstance(main, OnnxEmbedder) and main.path.name.endswith("-int8.onnx")
    assert embedding.make_unit_embedder(default) is None
    assert main.batch_size == 1  # int8: one text per run (below)
    fp32 = Settings(data_dir=tmp_path, models={"onnx_cache_dir": CACHE})
    assert fp32.models.embedding_backend == "onnx"
    units = embedding.make_unit_embedder(fp32)
    assert isinstance(units, OnnxEmbedder) and units.path.name.endswith("-int8.onnx")
    assert not embedding.make_embedder(fp32).path.name.endswith("-int8.onnx")  # type: ignore[union-attr]


def test_int8_chunks_under_fp32_questions(tmp_path: Path) -> None:
    """models.chunk_embedding_backend: the worker embeds chunks in int8 while the API's
    embedder, which embeds questions, stays fp32; int8 units share the chunks' session,
    'same' units keep the fp32 embedding backend's."""
    def settings(**models: str) -> Settings:
        return Settings(data_dir=tmp_path, models={"onnx_cache_dir": CACHE,
                                                   "chunk_embedding_backend": "onnx-int8",
                                                   **models})

    def is_int8(e: object) -> bool:
        return isinstance(e, OnnxEmbedder) and e.path.name.endswith("-int8.onnx")

    mixed = settings()
    assert mixed.models.embedding_backend == "onnx"
    assert is_int8(embedding.make_chunk_embedder(mixed))
    assert not is_int8(embedding.make_embedder(mixed))  # the API's: questions
    assert embedding.make_unit_embedder(mixed) is None
    same_units = embedding.make_unit_embedder(settings(unit_embedding_backend="same"))
    assert isinstance(same_units, OnnxEmbedder) and not is_int8(same_units)
    default = Settings(data_dir=tmp_path, models={"onnx_cache_dir": CACHE})
    assert default.models.chunk_embedding_backend == "same"
    assert not is_int8(embedding.make_chunk_embedder(default))


def test_an_int8_vector_depends_on_its_text_alone_not_on_the_texts_run_with_it(
        model_path: Path) -> None:
    """Dynamic int8 quantization scales activations per tensor, over the whole batch: run
    together, "A" and "B" would each change the other's vector (by up to 0.02 per
    coordinate when measured). The int8 embedder runs one text at a time."""
    int8 = OnnxEmbedder(model_path, CACHE, batch_size=32, quantized=True)
    together = np.array(int8.embed(PASSAGES))
    alone = np.array([int8.embed([p])[0] for p in PASSAGES])
    assert np.array_equal(together, alone)
    fp32 = OnnxEmbedder(model_path, CACHE, batch_size=32)
    assert fp32.batch_size == 32
