"""Where a hybrid search's time goes in a tenant of N chunks, and what the store's fan-out
over the tenant's shards costs, without ingesting N chunks through the service.

    python -m bench.search_scale --chunks 20000 --data DIR [--queries 60] [--json OUT]

Builds (or reuses, and grows) one tenant in ``DIR``: its own Chroma server, the text cipher
and the keyword index beside it, 16 shards (``--shards``). Texts are the eval corpora's
(SQuAD 2.0 dev paragraphs and BEIR SciFact abstracts, ../shared/eval/, varied on each pass
as ``bench/scale.py`` does), one document per text, chunked by the service's chunker. The
first pass (about 8,000 chunks) is embedded by the service's embedder (``make_embedder``);
later passes take the vector of the chunk they vary, moved a little at random (``build``),
so the keyword index holds real text and the vectors are real text's, clustered as near
duplicates are. Each chunk's nine evidence-unit vectors are random (int8, as stored: a
record's real size; searching never reads them). ``DIR`` keeps what was built: a second
run with a larger ``--chunks`` adds documents; with the same one it only measures.

Measured, one query at a time, held-out questions (SQuAD test-split questions and SciFact
claims, ``bench/scale.py``): the service's search function (``AnswerPipeline.search``,
hybrid, top 10: "after") and the same steps as they were before this round's changes
(``bench/search_baseline.py``: reads through ``chromadb``'s client, the dense candidates
read whole before fusion, keyword-only hits asked of every shard: "before"), interleaved
query by query so both see the same machine; each one's parts (query embedding, the dense
side over every shard with its records when it reads them, the keyword search, the records
fetched by id after fusion; "after" asks the keyword index while the shards are asked, so
its parts overlap), and the top 10 of each query under both, compared. A third way,
"full_rank", is the service's search with the keyword ranking of before top-k pruning
(``bench/search_baseline.py`` ``FullRankIndex``: FTS5 scoring every match), so the
pruning's own effect is ``after`` against it (``*_ratio_to_full_rank``); the keyword top
30s of "after" are compared with the exact ones (``keyword_overlap``, ``keyword_plans``:
how many were pruned). The
registry's check of hits (``live``) is not part of it: there is no registry here.

One JSON object on stdout (and ``--json OUT``); progress on stderr.
"""

from __future__ import annotations

from core.settings import apply_offline_env

apply_offline_env()  # before anything that could import huggingface / chromadb

import json  # noqa: E402
import os  # noqa: E402
import secrets  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable, Iterator, Mapping, Sequence  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any, TypeVar, cast  # noqa: E402

import click  # noqa: E402
import numpy as np  # noqa: E402

from bench.evalkit import percentile  # noqa: E402
from bench.scale import EVAL_DIR, chunking, load_corpus, variant  # noqa: E402
from core.domain import Chunk, ChunkHit, Page  # noqa: E402
from core.keystore import SqliteKeyStore  # noqa: E402
from core.ports import Embedder, VectorStore  # noqa: E402
from core.sentcodec import pack  # noqa: E402
from core.settings import Settings  # noqa: E402
from core.textcrypt import TextCipher, term_key  # noqa: E402
from ingest.keywords import KeywordIndex  # noqa: E402
from ingest.store import ChromaStore  # noqa: E402
from service.cli.processes import chroma_command, free_port, wait_http  # noqa: E402

TENANT = "bench"
UNITS = 9
DOCS_PER_UPSERT = 100
T = TypeVar("T")


def log(msg: str) -> None:
    sys.stderr.write(f"[bench.search_scale] {time.strftime('%H:%M:%S')} {msg}\n")
    sys.stderr.flush()


class TimedStore:
    """The store as ``retrieve`` sees it, each call's time added to ``parts``."""

    def __init__(self, store: ChromaStore) -> None:
        self.store = store
        self.parts: dict[str, float] = {}
        self.keyword_top: list[str] = []  # the last keyword ranking asked for

    def _timed(self, name: str, fn: Callable[[], T]) -> T:
        t = time.perf_counter()
        try:
            return fn()
        finally:
            self.parts[name] = self.parts.get(name, 0.0) + (time.perf_counter() - t) * 1000

    @property
    def has_keywords(self) -> bool:
        return self.store.has_keywords

    def query(self, tenant: str, embedding: Sequence[float], top_k: int,
              document_ids: Sequence[str] | None = None) -> list[ChunkHit]:
        return self._timed("dense_ms", lambda: self.store.query(
            tenant, embedding, top_k, document_ids))

    def nearest(self, tenant: str, embedding: Sequence[float], top_k: int,
                document_ids: Sequence[str] | None = None) -> list[tuple[str, float]]:
        return self._timed("dense_ms", lambda: self.store.nearest(
            tenant, embedding, top_k, document_ids))

    def keyword_ids(self, tenant: str, text: str, n: int,
                    document_ids: Sequence[str] | None = None) -> list[str]:
        found: list[str] = self._timed("keyword_ms", lambda: self.store.keyword_ids(
            tenant, text, n, document_ids))
        self.keyword_top = found
        return found

    def get_chunks(self, tenant: str, ids: Sequence[str], embedding: Sequence[float],
                   scores: Mapping[str, float] | None = None) -> list[ChunkHit]:
        return self._timed("fetch_ms", lambda: self.store.get_chunks(
            tenant, ids, embedding, scores))


class TimedEmbedder:
    def __init__(self, embedder: Any, parts: dict[str, float]) -> None:
        self.embedder, self.parts = embedder, parts
        self.dimension: int = embedder.dimension

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        t = time.perf_counter()
        out: list[list[float]] = self.embedder.embed(texts)
        self.parts["embed_ms"] = self.parts.get("embed_ms", 0.0) + (
            time.perf_counter() - t) * 1000
        return out


def documents(texts: list[str]) -> Iterator[tuple[str, str, int]]:
    """(document id, text, pass) forever: pass 0 the texts themselves, then their variants.
    Document ``d`` of pass ``r`` varies document ``d - r * len(texts)`` of pass 0."""
    rep, serial = 0, 0
    while True:
        for t in texts:
            yield f"d{serial:07d}", variant(t, rep, serial), rep
            serial += 1
        rep += 1


def _near(rng: np.random.Generator, base: np.ndarray) -> np.ndarray:
    """A unit vector near ``base`` (cosine about 0.94): a variant's chunk."""
    noise = rng.standard_normal(base.shape).astype(np.float32)
    v = base + 0.35 * noise / np.linalg.norm(noise)
    return cast(np.ndarray, v / np.linalg.norm(v))


def build(store: ChromaStore, cipher: TextCipher, embedder: Any, texts: list[str],
          state: dict[str, Any], target: int, state_path: Path) -> None:
    """Add documents until the tenant holds ``target`` chunks; ``state`` (documents and
    chunks written so far) is saved after each upsert, so a run can be resumed.

    Pass 0's chunks are embedded; a variant's chunk gets the vector of the same chunk (or
    the last) of the text it varies, read back from the store, moved a little at random:
    embedding 100,000 chunks on this machine takes over an hour, and what the store's
    search costs does not depend on which text a vector came from."""
    from ingest.chunking import chunk_pages
    from ingest.store import tenant_get

    size, overlap = chunking(None)
    rng = np.random.default_rng(state["docs"])
    gen = documents(texts)
    for _ in range(state["docs"]):
        next(gen)
    t0, start = time.monotonic(), state["chunks"]
    while state["chunks"] < target:
        chunks: list[Chunk] = []
        reps: list[int] = []
        ndocs = 0
        while ndocs < DOCS_PER_UPSERT and state["chunks"] + len(chunks) < target:
            doc, text, rep = next(gen)
            part = chunk_pages(doc, [Page(1, text, 0)], size, overlap, cipher.chunk_id_key(doc))
            chunks += part
            reps += [rep] * len(part)
            ndocs += 1
        fresh = [i for i, rep in enumerate(reps) if rep == 0]
        vectors: list[list[float]] = [[] for _ in chunks]
        for i, v in zip(fresh, embedder.embed([chunks[i].text for i in fresh]), strict=True):
            vectors[i] = v
        if len(fresh) < len(chunks):
            bases = sorted({_base(c.document_id, len(texts)) for c, rep in zip(
                chunks, reps, strict=True) if rep})
            got = tenant_get(store._connect(), TENANT, where={"document_id": {"$in": bases}},
                             include=["embeddings", "metadatas"])
            by_doc: dict[str, dict[int, np.ndarray]] = {}
            for emb, meta in zip(got["embeddings"], got["metadatas"], strict=True):
                by_doc.setdefault(str(meta["document_id"]), {})[int(meta["chunk_index"])] = (
                    np.asarray(emb, dtype=np.float32))
            for i, (c, rep) in enumerate(zip(chunks, reps, strict=True)):
                if rep:
                    of = by_doc[_base(c.document_id, len(texts))]
                    vectors[i] = _near(rng, of[min(c.index, max(of))]).tolist()
        per_chunk = []
        for _c in chunks:
            u = rng.standard_normal((UNITS, len(vectors[0]))).astype(np.float32)
            u /= np.linalg.norm(u, axis=1, keepdims=True)
            per_chunk.append(pack([(0, 1)] * UNITS, u.tolist()))
        store.upsert(TENANT, chunks, vectors, {"filename": "bench.txt"}, per_chunk)
        state["docs"] += ndocs
        state["chunks"] += len(chunks)
        state_path.write_text(json.dumps(state))
        if state["docs"] % 1000 < DOCS_PER_UPSERT:
            rate = (state["chunks"] - start) / max(1e-9, time.monotonic() - t0) * 60
            log(f"{state['chunks']} chunks ({rate:.0f} a minute, load {load()})")


def _base(document_id: str, n: int) -> str:
    return f"d{int(document_id[1:]) % n:07d}"


def _ms(values: list[float], pct: float) -> float:
    v = percentile(values, pct)
    return round(float(v or 0.0), 1)


def _overlap(exact: list[list[str]], other: list[list[str]]) -> float:
    shares = [len(set(a) & set(b)) / len(a) for a, b in zip(exact, other, strict=True) if a]
    return round(sum(shares) / len(shares), 4) if shares else 1.0


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


@click.command()
@click.option("--chunks", default=20000, type=int, help="chunks in the tenant")
@click.option("--data", type=click.Path(path_type=Path), required=True,
              help="directory of the tenant (kept: later runs reuse and grow it)")
@click.option("--shards", default=16, type=int, help="shards of a new tenant")
@click.option("--queries", default=60, type=int, help="queries timed (each way)")
@click.option("--json", "json_out", type=click.Path(path_type=Path), default=None)
def main(chunks: int, data: Path, shards: int, queries: int, json_out: Path | None) -> None:
    data.mkdir(parents=True, exist_ok=True)
    key_path, state_path = data / "master.key", data / "built.json"
    if not key_path.exists():
        key_path.write_bytes(secrets.token_bytes(32))
    master = key_path.read_bytes()
    state = json.loads(state_path.read_text()) if state_path.exists() else {
        "docs": 0, "chunks": 0}
    port = free_port()
    proc = subprocess.Popen(chroma_command(data / "chroma", "127.0.0.1", port),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        if not wait_http(f"http://127.0.0.1:{port}/api/v2/heartbeat", 120, [proc]):
            raise click.ClickException("Chroma did not start")
        report = run(data, port, master, state, state_path, chunks, shards, queries)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
    text = json.dumps(report, indent=2)
    click.echo(text)
    if json_out:
        json_out.write_text(text + "\n")


def run(data: Path, port: int, master: bytes, state: dict[str, Any], state_path: Path,
        chunks: int, shards: int, queries: int) -> dict[str, Any]:
    from bench.search_baseline import BaselineStore, FullRankIndex
    from bench.search_baseline import hybrid_search as old_hybrid
    from ingest.embedding import make_embedder
    from service.answer.pipeline import AnswerPipeline

    def searcher(name: str, pipe: AnswerPipeline, timed: TimedStore, r: Any
                 ) -> Callable[[str], list[ChunkHit]]:
        """The service's own search function, or for ``before`` the same steps with the
        retrieval of before."""
        if name != "before":
            return lambda q: pipe.search(TENANT, q, 10, mode="hybrid")[0]
        return lambda q: old_hybrid(cast(VectorStore, timed), TENANT,
                                    pipe.embedder.embed([q])[0], q, 10, None,
                                    r.keyword_candidates, r.rrf_k, r.keyword_weight)

    settings = Settings()
    cipher = TextCipher(master, SqliteKeyStore(data / "keys.sqlite3"))
    keywords = KeywordIndex(data / "keywords.sqlite3", term_key(master))
    store = ChromaStore("127.0.0.1", port, keywords, cipher=cipher, shards=shards)
    embedder = make_embedder(settings)
    corpus = load_corpus(EVAL_DIR)
    if state["chunks"] < chunks:
        t0 = time.monotonic()
        log(f"building: {state['chunks']} -> {chunks} chunks (load {load()})")
        build(store, cipher, embedder, corpus.texts, state, chunks, state_path)
        state["build_s"] = round(state.get("build_s", 0) + time.monotonic() - t0, 1)
        state_path.write_text(json.dumps(state))
    before = BaselineStore("127.0.0.1", port, keywords, cipher=cipher, shards=shards)
    # the service's search with the keyword ranking of before top-k pruning
    full_rank = ChromaStore("127.0.0.1", port, FullRankIndex(data / "keywords.sqlite3",
                                                             term_key(master)),
                            cipher=cipher, shards=shards)
    ways = {"before": TimedStore(before), "full_rank": TimedStore(full_rank),
            "after": TimedStore(store)}
    r = settings.retrieval
    searches: dict[str, Callable[[str], list[ChunkHit]]] = {}
    for name, timed in ways.items():
        # the pipeline calls only the search methods, which the timed wrappers have
        pipe = AnswerPipeline(settings, cast(Embedder, TimedEmbedder(embedder, timed.parts)),
                              cast(VectorStore, timed), None, model=False)
        searches[name] = searcher(name, pipe, timed, r)
    qs = corpus.questions[:queries]
    for name, search in searches.items():  # first-call costs (connections, handles) aside
        search(qs[-1])
        ways[name].parts.clear()
    total: dict[str, list[float]] = {n: [] for n in ways}
    parts: dict[str, dict[str, list[float]]] = {n: {} for n in ways}
    tops: dict[str, list[list[str]]] = {n: [] for n in ways}
    kw_tops: dict[str, list[list[str]]] = {n: [] for n in ways}
    plans_start = dict(keywords.plans)
    load_start = load()
    for i, q in enumerate(qs):
        order = list(ways) if i % 2 == 0 else list(reversed(ways))  # none always first
        for name in order:
            ways[name].parts.clear()
            t = time.perf_counter()
            hits = searches[name](q)
            total[name].append((time.perf_counter() - t) * 1000)
            for k, v in ways[name].parts.items():
                parts[name].setdefault(k, []).append(v)
            tops[name].append([h.chunk_id for h in hits])
            kw_tops[name].append(ways[name].keyword_top)
    same = sum(a == b for a, b in zip(tops["before"], tops["after"], strict=True))
    same_fr = sum(a == b for a, b in zip(tops["full_rank"], tops["after"], strict=True))
    same_kw = sum(a == b for a, b in zip(kw_tops["before"], kw_tops["after"], strict=True))
    out: dict[str, Any] = {
        "chunks": state["chunks"], "documents": state["docs"], "shards": store.layout(
            TENANT).shards, "queries": len(qs), "build_s": state.get("build_s"),
        "load_before": load_start, "load_after": load(),
        "same_top10": f"{same}/{len(qs)}",
        # set overlap of "after"'s hybrid top 10 and keyword top 30 with "before"'s (whose
        # keyword ranking is FTS5's of every match), averaged over the queries
        "top10_overlap": _overlap(tops["before"], tops["after"]),
        "keyword_overlap": _overlap(kw_tops["before"], kw_tops["after"]),
        "same_keyword_order": f"{same_kw}/{len(qs)}",
        "keyword_plans": {k: v - plans_start.get(k, 0) for k, v in keywords.plans.items()},
        "full_rank_same_top10": f"{same_fr}/{len(qs)}",
    }
    for name in ways:
        out[name] = {"search_p50_ms": _ms(total[name], 50),
                     "search_p95_ms": _ms(total[name], 95),
                     **{f"{k.removesuffix('_ms')}_p50_ms": _ms(v, 50)
                        for k, v in sorted(parts[name].items())}}
    out["p50_ratio"] = round(out["after"]["search_p50_ms"] / out["before"]["search_p50_ms"], 3)
    out["p95_ratio"] = round(out["after"]["search_p95_ms"] / out["before"]["search_p95_ms"], 3)
    for q in ("p50", "p95"):  # top-k pruning alone: the service's search with and without
        out[f"{q}_ratio_to_full_rank"] = round(out["after"][f"search_{q}_ms"] / out[
            "full_rank"][f"search_{q}_ms"], 3)
    out["keyword_p50_ratio_to_full_rank"] = round(out["after"]["keyword_p50_ms"] / max(
        1e-9, out["full_rank"]["keyword_p50_ms"]), 3)
    return out


if __name__ == "__main__":
    main()
