"""Does an embedding backend keep retrieval quality? Dense retrieval over the whole BEIR
SciFact corpus, in process, per backend: torch (sentence-transformers, the reference),
ONNX fp32, ONNX int8, and int8 chunks searched with fp32 claims (``onnx-int8-chunks``: a
worker embedding chunks in int8 behind an API embedding questions in fp32).

    python -m bench.embedder_quality [--split test]
        [--backends torch,onnx,onnx-int8,onnx-int8-chunks] [--json OUT]

Each abstract (title and text, as ``bench/scifact.py`` uploads it) is chunked by the
service's chunker and every chunk embedded by the backend; each claim of the split is
embedded by the same backend and the corpus ranked by the best chunk's cosine (a document
ranks where its best chunk does, as the service's search ranks them). Reported per backend:
nDCG@10 and recall@100 (BEIR's definitions, ``bench.scifact.evaluate``), the difference to
torch, how many claims keep the same top 10 as torch, the worst and mean cosine of each
chunk vector to torch's, and the embedding time of the chunks (one run, same process: a
ratio, not a speed). Dense only: the keyword side of the hybrid search does not depend on
the embedder.

One JSON object on stdout (and ``--json OUT``); progress on stderr.
"""

from __future__ import annotations

from core.settings import apply_offline_env

apply_offline_env()  # before anything that could import huggingface

import json  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import click  # noqa: E402
import numpy as np  # noqa: E402

from bench import scifact  # noqa: E402
from bench.evalkit import log, write_json  # noqa: E402
from core.domain import Page  # noqa: E402
from core.settings import Settings  # noqa: E402
from ingest.chunking import chunk_pages  # noqa: E402
from ingest.embedding import OnnxEmbedder, SentenceTransformerEmbedder  # noqa: E402

BACKENDS = ("torch", "onnx", "onnx-int8", "onnx-int8-chunks")
# chunks embedded by the first backend, claims (questions) by the second
MIXED = {"onnx-int8-chunks": ("onnx-int8", "onnx")}


def _embedder(name: str, settings: Settings) -> OnnxEmbedder | SentenceTransformerEmbedder:
    m = settings.models
    path = m.resolved_embedding_path()
    if name == "torch":
        return SentenceTransformerEmbedder(path, m.embedding_batch_size)
    return OnnxEmbedder(path, settings.onnx_cache_dir, m.embedding_batch_size,
                        quantized=name == "onnx-int8")


def _unit(rows: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    out: np.ndarray = rows / np.maximum(norms, 1e-12)
    return out


def rank(chunk_vecs: np.ndarray, chunk_docs: list[str], query_vecs: np.ndarray,
         top: int = 100) -> list[list[str]]:
    """Each query's documents, best first, by their best chunk's cosine."""
    scores = _unit(query_vecs) @ _unit(chunk_vecs).T
    out = []
    for row in scores:
        order = np.argsort(-row)
        ranked: list[str] = []
        seen: set[str] = set()
        for i in order:
            doc = chunk_docs[i]
            if doc not in seen:
                seen.add(doc)
                ranked.append(doc)
                if len(ranked) == top:
                    break
        out.append(ranked)
    return out


@click.command()
@click.option("--split", default="test", type=click.Choice(scifact.SPLITS))
@click.option("--backends", default=",".join(BACKENDS))
@click.option("--data", "root", type=click.Path(path_type=Path), default=scifact.DEFAULT_DIR)
@click.option("--json", "json_out", type=click.Path(path_type=Path), default=None)
def main(split: str, backends: str, root: Path, json_out: Path | None) -> None:
    names = [b.strip() for b in backends.split(",") if b.strip()]
    unknown = sorted(set(names) - set(BACKENDS))
    if unknown:
        raise click.UsageError(f"unknown backend(s): {', '.join(unknown)}")
    if "torch" not in names:
        names.insert(0, "torch")  # the reference every other backend is compared with
    settings = Settings()
    data = scifact.load(root)
    qrels = data.qrels[split]
    qids = [q for q in qrels if q in data.queries]
    claims = [data.queries[q] for q in qids]
    texts: list[str] = []
    chunk_docs: list[str] = []
    for doc in data.docs:
        pages = [Page(1, doc.text, 0)]
        for chunk in chunk_pages(doc.key, pages, settings.chunking.size,
                                 settings.chunking.overlap, b"bench"):
            texts.append(chunk.text)
            chunk_docs.append(doc.key)
    log(f"{len(data.docs)} abstracts, {len(texts)} chunks, {len(qids)} {split} claims")
    results: dict[str, dict[str, Any]] = {}
    reference: tuple[np.ndarray, list[list[str]]] | None = None
    embedders: dict[str, OnnxEmbedder | SentenceTransformerEmbedder] = {}
    chunk_vectors: dict[str, tuple[np.ndarray, float]] = {}

    def embedder(name: str) -> OnnxEmbedder | SentenceTransformerEmbedder:
        if name not in embedders:
            embedders[name] = _embedder(name, settings)
        return embedders[name]

    for name in names:
        chunk_name, query_name = MIXED.get(name, (name, name))
        if chunk_name not in chunk_vectors:
            emb = embedder(chunk_name)
            emb.embed(texts[:64])  # warm-up: first-call allocations are not its speed
            t0 = time.perf_counter()
            chunk_vectors[chunk_name] = (np.asarray(emb.embed(texts), dtype=np.float32),
                                         time.perf_counter() - t0)
        vecs, seconds = chunk_vectors[chunk_name]
        queries = np.asarray(embedder(query_name).embed(claims), dtype=np.float32)
        ranked = rank(vecs, chunk_docs, queries)
        metrics = scifact.evaluate(dict(zip(qids, ranked, strict=True)), qrels)
        row: dict[str, Any] = {"ndcg@10": round(metrics["ndcg@10"], 4),
                               "recall@100": round(metrics["recall@100"], 4),
                               "embed_s": round(seconds, 1)}
        if reference is None:
            reference = (vecs, ranked)
        else:
            ref_vecs, ref_ranked = reference
            cos = np.sum(_unit(vecs) * _unit(ref_vecs), axis=1)
            row.update({
                "ndcg@10_minus_torch": round(metrics["ndcg@10"] - results["torch"]["ndcg@10"], 4),
                "same_top10_as_torch": sum(a[:10] == b[:10] for a, b in zip(ranked, ref_ranked,
                                                                            strict=True)),
                "cosine_to_torch_min": round(float(cos.min()), 4),
                "cosine_to_torch_mean": round(float(cos.mean()), 5),
                "embed_speed_vs_torch": round(results["torch"]["embed_s"] / seconds, 2),
            })
        results[name] = row
        log(f"{name}: {row}")
    out = {"split": split, "abstracts": len(data.docs), "chunks": len(texts),
           "claims": len(qids), "backends": results}
    write_json(json_out, out)
    sys.stdout.write(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
