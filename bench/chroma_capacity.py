"""What one Chroma server holds on this machine: its memory (RSS) and disk per chunk.

Synthetic chunks go through the store adapter (``ingest/store.py``, ``ChromaStore.upsert``)
as the ingest writes them: a random normalised 384-d vector per chunk (MiniLM's size; no
model is run), about 1,100 characters of text sealed under a document key, and nine
evidence units per chunk with their own random 384-d vectors packed in the metadata
(``core/sentcodec.py``), as a 180-word chunk of prose has. After each step the server's RSS
is read from ``/proc`` (the server process and its children), the data directory is
measured, 50 queries are timed and ``chroma.sqlite3`` is vacuumed as the eraser does
(ingest/erasure.py, the server running); then the server is restarted and the RSS read again
after one query (the collection loaded from disk, no write buffers).

    python -m bench.chroma_capacity --steps 5000,20000 --tenants 1

Prints one JSON object. docs/capacity.md holds the figures and what they mean.
"""

from __future__ import annotations

import json
import random
import secrets
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import click
import numpy as np

from bench.stack import tree_rss_mb
from core.domain import Chunk
from core.keystore import SqliteKeyStore
from core.sentcodec import pack
from core.textcrypt import TextCipher
from ingest.erasure import CHROMA_DB, vacuum_sqlite
from ingest.store import ChromaStore
from service.cli.processes import chroma_command, free_port, wait_http

DIM = 384
UNITS_PER_CHUNK = 9
_WORDS = ("contract renewal notice payment invoice supplier warranty liability clause term "
          "employee leave policy incident report server outage backup restore audit review "
          "budget quarter revenue forecast committee approval deadline delivery").split()


def _du(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _unit_vectors(rng: np.random.Generator, n: int) -> np.ndarray:
    v = rng.standard_normal((n, DIM)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)  # type: ignore[no-any-return]


def _batch(rng: np.random.Generator, r: random.Random, doc: str, start: int, n: int
           ) -> tuple[list[Chunk], list[list[float]], list[dict[str, Any]]]:
    chunks, per_chunk = [], []
    for i in range(start, start + n):
        sentences = [" ".join(r.choice(_WORDS) for _ in range(20)).capitalize() + "."
                     for _ in range(UNITS_PER_CHUNK)]
        text = " ".join(sentences)
        spans, pos = [], 0
        for s in sentences:
            spans.append((pos, pos + len(s)))
            pos += len(s) + 1
        chunks.append(Chunk(f"{doc}:{i}:{secrets.token_hex(8)}", doc, i, text, 1, 0, len(text)))
        per_chunk.append(pack(spans, _unit_vectors(rng, UNITS_PER_CHUNK).tolist()))
    return chunks, _unit_vectors(rng, n).tolist(), per_chunk


def _query_ms(store: ChromaStore, rng: np.random.Generator, tenants: list[str]) -> float:
    times = []
    for q in _unit_vectors(rng, 50).tolist():
        t0 = time.perf_counter()
        store.query(random.choice(tenants), q, 10)  # noqa: S311 - benchmark
        times.append((time.perf_counter() - t0) * 1000)
    return round(statistics.median(times), 2)


@click.command()
@click.option("--steps", default="5000,20000", help="cumulative chunk counts to measure at")
@click.option("--tenants", default=1, type=int, help="collections the chunks are spread over")
@click.option("--batch", default=500, type=int)
def main(steps: str, tenants: int, batch: int) -> None:
    targets = [int(s) for s in steps.split(",")]
    rng, r = np.random.default_rng(7), random.Random(7)  # noqa: S311 - benchmark data
    out: dict[str, Any] = {"dim": DIM, "units_per_chunk": UNITS_PER_CHUNK, "tenants": tenants,
                           "vectors": "random, normalised (no model)", "steps": []}
    with tempfile.TemporaryDirectory(prefix="docqa-capacity-") as tmp:
        root = Path(tmp)
        chroma_dir, port = root / "chroma", free_port()

        def start() -> subprocess.Popen[bytes]:
            proc = subprocess.Popen(chroma_command(chroma_dir, "127.0.0.1", port),
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                    start_new_session=True)
            if not wait_http(f"http://127.0.0.1:{port}/api/v2/heartbeat", 60, [proc]):
                raise click.ClickException("Chroma did not start")
            return proc

        def stop(proc: subprocess.Popen[bytes]) -> None:
            proc.terminate()
            proc.wait(timeout=60)

        cipher = TextCipher(secrets.token_bytes(32), SqliteKeyStore(root / "keys.sqlite3"))
        names = [f"tenant{i}" for i in range(tenants)]
        proc = start()
        out["empty_rss_mb"] = tree_rss_mb(proc.pid)
        done = 0
        try:
            for target in targets:
                store = ChromaStore("127.0.0.1", port, cipher=cipher)
                t0, before = time.monotonic(), done
                while done < target:
                    n = min(batch, target - done)
                    tenant = names[(done // batch) % tenants]
                    chunks, vectors, per_chunk = _batch(rng, r, f"doc{done // batch}", done, n)
                    store.upsert(tenant, chunks, vectors, {"filename": "synthetic.txt"},
                                 per_chunk)
                    done += n
                write_s = time.monotonic() - t0
                time.sleep(5)  # let the server flush its log to the index
                q_ms = _query_ms(store, rng, names)
                t1 = time.monotonic()  # the eraser's VACUUM, with the server running
                vacuum_sqlite(chroma_dir / CHROMA_DB)
                vacuum_s = round(time.monotonic() - t1, 2)
                step = {"chunks": done, "rss_mb": tree_rss_mb(proc.pid),
                        "disk_mb": round(_du(chroma_dir) / 2**20, 1),
                        "write_chunks_per_s": round((done - before) / max(write_s, 1e-9), 1),
                        "query_ms_p50": q_ms, "vacuum_s": vacuum_s}
                stop(proc)  # a restart: what the collection costs loaded from disk
                proc = start()
                store = ChromaStore("127.0.0.1", port, cipher=cipher)
                step["query_ms_p50_after_restart"] = _query_ms(store, rng, names)
                step["rss_mb_after_restart"] = tree_rss_mb(proc.pid)
                step["disk_bytes_per_chunk"] = round(_du(chroma_dir) / done)
                out["steps"].append(step)
                click.echo(json.dumps(step))
        finally:
            stop(proc)
    click.echo(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
