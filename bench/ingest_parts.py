"""What the parts of an ingest cost on their own, in one process, against the raw encode.

    python -m bench.ingest_parts [--squad FILE] [--limit 400] [--parses 40] [--json OUT]
    python -m bench.ingest_parts --parse-only [--parses 40]

``bench.ingest`` times the whole service; this bench times its expensive parts in one run, on
the same texts (the first ``--limit`` SQuAD 2.0 dev paragraphs, chunked with the service's
own chunker and settings), so their costs can be set against the bar the issue sets (the raw
``SentenceTransformer.encode`` of the chunk texts, torch, batch 32):

* ``embed``: the chunk texts through torch, ONNX fp32 and ONNX int8 (``ingest/embedding.py``),
  each with the session's default threads and with one thread; ``ratio_to_torch`` is docs/s
  over torch's in the same run;
* ``units``: the evidence units of those chunks (what the worker embeds a second time) through
  the int8 embedder the worker uses for them;
* ``parse``: ``--parses`` small text files parsed by ``parse_isolated`` (one isolated child
  process per document, as the worker does: a new interpreter, with and without a child
  started ahead, and a child forked by the parse zygote, ingest/zygote.py, with and without
  one forked ahead) and by the reader in this process. A new interpreter's CPU is read from
  ``RUSAGE_CHILDREN``; the zygote's children are the zygote's, so their CPU is read from
  the zygote's ``/proc/PID/stat`` (its own and its reaped children's, 10 ms ticks), its
  start (one per worker process) reported apart. ``worker_cpu_ms_per_doc``: this process's
  own share (starting or asking for the child, feeding it, reading its answer);
  ``zygote_to_fresh``: the zygote's figures over the new interpreter's, same run.
  ``--parse-only`` skips the embedding parts.

``--attention`` instead compares two exports of the packaged model made here, in a temporary
directory: with the model's plain (``eager``) attention, which ``ingest/embedding.py``
exports, and with torch's ``sdpa``. Each is timed on the chunk texts (fp32, the worker's
``models.onnx_batch_size``) and on the units (int8, one text per run, as the worker embeds
them), in ``--rounds`` interleaved rounds, in process CPU seconds and wall seconds;
``eager_to_sdpa`` is the ratio of the totals, ``cosine_min`` the two exports' worst
agreement on the same texts.

One JSON object on stdout (and ``--json OUT``); progress on stderr. Only the ratios within
one run mean anything on a shared machine.
"""

from __future__ import annotations

from core.settings import Settings, apply_offline_env

apply_offline_env()  # before anything that could import huggingface

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import resource  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable, Sequence  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

from bench.evalkit import write_json  # noqa: E402
from bench.ingest import DEFAULT_SQUAD, ENCODE_BATCH, WARMUP_TEXTS, load_squad  # noqa: E402
from core.domain import DocumentKind, Page  # noqa: E402
from ingest import zygote  # noqa: E402
from ingest.chunking import chunk_pages  # noqa: E402
from ingest.embedding import (  # noqa: E402
    OnnxEmbedder,
    SentenceTransformerEmbedder,
    _export,
    _quantize,
)
from ingest.readers import read_document  # noqa: E402
from ingest.sandbox import SandboxPool, parse_isolated  # noqa: E402
from ingest.units import chunk_units  # noqa: E402


def log(msg: str) -> None:
    sys.stderr.write(f"[bench.ingest_parts] {msg}\n")
    sys.stderr.flush()


def timed(docs: int, embed: Callable[[Sequence[str]], Any], texts: Sequence[str]
          ) -> dict[str, float]:
    embed(list(texts[:WARMUP_TEXTS]))  # untimed: first-call costs are not throughput
    t0 = time.perf_counter()
    embed(list(texts))
    seconds = time.perf_counter() - t0
    return {"seconds": round(seconds, 3), "docs_per_s": round(docs / seconds, 2)}


def children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def zygote_cpu() -> float:
    """The zygote's CPU and its reaped children's, in seconds (0 without a zygote)."""
    z = zygote.current()
    if z is None:
        return 0.0
    with open(f"/proc/{z.pid}/stat", encoding="ascii") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return sum(int(f) for f in fields[11:15]) / os.sysconf("SC_CLK_TCK")


def parse_costs(settings: Settings, n: int) -> dict[str, Any]:
    folder = Path(tempfile.mkdtemp(prefix="docqa-parts-"))
    files = []
    for i in range(n):
        path = folder / f"doc{i}.txt"
        path.write_text(f"Sentence {i} of a small plain text document. " * 20, encoding="utf-8")
        files.append(path)
    out: dict[str, Any] = {"documents": n}
    zygote.stop()
    modes: list[tuple[str, SandboxPool | None]] = [
        ("fresh_child", None), ("child_started_ahead", SandboxPool()),
        ("zygote_child", SandboxPool(depth=0, zygote=True)),
        ("zygote_child_forked_ahead", SandboxPool(depth=1, zygote=True))]
    for name, pool in modes:
        if pool is not None and pool.zygote and zygote.current() is None:
            t0 = time.perf_counter()  # the zygote's start and first child, untimed
            parse_isolated(files[0], DocumentKind.TEXT, settings.limits, pool=pool)
            out["zygote_start"] = {"wall_ms": round((time.perf_counter() - t0) * 1000, 1),
                                   "cpu_ms": round(zygote_cpu() * 1000, 1)}
        child0 = zygote_cpu() if pool is not None and pool.zygote else children_cpu()
        own0, t0 = time.process_time(), time.perf_counter()
        for path in files:
            parse_isolated(path, DocumentKind.TEXT, settings.limits, key=None, pool=pool)
        wall, own = time.perf_counter() - t0, time.process_time() - own0
        child = (zygote_cpu() if pool is not None and pool.zygote else children_cpu()) - child0
        out[name] = {"wall_ms_per_doc": round(wall * 1000 / n, 1),
                     "child_cpu_ms_per_doc": round(child * 1000 / n, 1),
                     "worker_cpu_ms_per_doc": round(own * 1000 / n, 2)}
        if pool is not None:
            pool.close()
    zygote.stop()
    out["zygote_to_fresh"] = {
        key: round(out["zygote_child"][key] / out["fresh_child"][key], 3)
        for key in ("wall_ms_per_doc", "child_cpu_ms_per_doc") if out["fresh_child"][key]}
    t0 = time.process_time()
    for path in files:
        read_document(path, DocumentKind.TEXT)
    out["in_process"] = {"cpu_ms_per_doc": round((time.process_time() - t0) * 1000 / n, 3)}
    return out


def attention_costs(settings: Settings, texts: Sequence[str], unit_texts: Sequence[str],
                    rounds: int) -> dict[str, Any]:
    """The ``eager`` export against the ``sdpa`` one, in interleaved rounds (see above)."""
    import numpy as np

    path = settings.models.resolved_embedding_path()
    batch = settings.models.onnx_batch_size
    out: dict[str, Any] = {"rounds": rounds}
    with tempfile.TemporaryDirectory(prefix="docqa-attention-") as tmp:
        made: dict[str, dict[str, OnnxEmbedder]] = {}
        for attention in ("sdpa", "eager"):
            fp32, int8 = Path(tmp) / f"{attention}.onnx", Path(tmp) / f"{attention}-int8.onnx"
            _export(path, fp32, attention)
            _quantize(fp32, int8)
            made[attention] = {
                "chunks": OnnxEmbedder(path, Path(tmp), batch, model_file=fp32),
                "units": OnnxEmbedder(path, Path(tmp), batch, quantized=True, model_file=int8)}
        for part, part_texts in (("chunks", texts), ("units", unit_texts)):
            vectors = {a: made[a][part].embed_array(part_texts) for a in made}  # also warms
            cpu = dict.fromkeys(made, 0.0)
            wall = dict.fromkeys(made, 0.0)
            for _ in range(rounds):
                for attention, embedders in made.items():
                    c0, w0 = time.process_time(), time.perf_counter()
                    embedders[part].embed_array(part_texts)
                    cpu[attention] += time.process_time() - c0
                    wall[attention] += time.perf_counter() - w0
            out[part] = {
                "texts": len(part_texts),
                "cpu_s": {a: round(v / rounds, 3) for a, v in cpu.items()},
                "wall_s": {a: round(v / rounds, 3) for a, v in wall.items()},
                "eager_to_sdpa_cpu": round(cpu["eager"] / cpu["sdpa"], 3),
                "eager_to_sdpa_wall": round(wall["eager"] / wall["sdpa"], 3),
                "cosine_min": round(float(np.min(np.sum(vectors["eager"] * vectors["sdpa"],
                                                        axis=1))), 6)}
            log(f"{part}: {out[part]}")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--squad", type=Path, default=DEFAULT_SQUAD)
    ap.add_argument("--limit", type=int, default=400, help="SQuAD paragraphs (documents)")
    ap.add_argument("--parses", type=int, default=40, help="documents parsed per parse mode")
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--parse-only", action="store_true", help="only the parse part")
    ap.add_argument("--attention", action="store_true",
                    help="only the eager-against-sdpa export comparison")
    ap.add_argument("--rounds", type=int, default=5, help="rounds of --attention")
    args = ap.parse_args()
    settings = Settings()
    if args.parse_only:
        parse_report = {"parse": parse_costs(settings, args.parses),
                        "config": {"cpu_count": os.cpu_count(),
                                   "load_average": list(os.getloadavg())}}
        write_json(args.json, parse_report)
        sys.stdout.write(json.dumps(parse_report, indent=2) + "\n")
        return
    paras = load_squad(args.squad, args.limit)
    docs = len(paras)
    texts: list[str] = []
    unit_texts: list[str] = []
    for i, para in enumerate(paras):
        pages = [Page(1, para.context, 0)]
        chunks = chunk_pages(f"d{i}", pages, settings.chunking.size, settings.chunking.overlap,
                             b"bench")
        texts += [c.text for c in chunks]
        for chunk, units in zip(chunks, chunk_units(pages, chunks), strict=True):
            unit_texts += [u.embedding_text(chunk.text) for u in units]
    log(f"{docs} documents, {len(texts)} chunks, {len(unit_texts)} units")
    if args.attention:
        report = {"documents": docs, "attention": attention_costs(settings, texts, unit_texts,
                                                                   args.rounds),
                  "config": {"cpu_count": os.cpu_count(), "load_average": list(os.getloadavg()),
                             "source": str(args.squad)}}
        write_json(args.json, report)
        sys.stdout.write(json.dumps(report, indent=2) + "\n")
        return
    path = settings.models.resolved_embedding_path()
    cache = settings.onnx_cache_dir
    embed: dict[str, Any] = {}
    torch = SentenceTransformerEmbedder(path, ENCODE_BATCH)
    embed["torch"] = timed(docs, torch.embed, texts)
    log(f"torch: {embed['torch']}")
    for name, quantized in (("onnx_fp32", False), ("onnx_int8", True)):
        for threads in (None, 1):
            key = name if threads is None else f"{name}_1_thread"
            onnx = OnnxEmbedder(path, cache, ENCODE_BATCH, quantized=quantized, threads=threads)
            embed[key] = timed(docs, onnx.embed_array, texts)
            log(f"{key}: {embed[key]}")
    for row in embed.values():
        row["ratio_to_torch"] = round(row["docs_per_s"] / embed["torch"]["docs_per_s"], 3)
    int8 = OnnxEmbedder(path, cache, ENCODE_BATCH, quantized=True)
    unit_cost: dict[str, Any] = {**timed(docs, int8.embed_array, unit_texts),
                                 "texts": len(unit_texts)}
    report = {"documents": docs, "chunks": len(texts), "embed": embed,
              "units_onnx_int8": unit_cost, "parse": parse_costs(settings, args.parses),
              "config": {"cpu_count": os.cpu_count(), "load_average": list(os.getloadavg()),
                         "source": str(args.squad), "batch_size": ENCODE_BATCH}}
    write_json(args.json, report)
    sys.stdout.write(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
