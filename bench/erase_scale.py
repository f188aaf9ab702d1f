"""What erasing one document costs in a tenant of N chunks: the shard design against the
single collection of before (``--shards 1``), without embedding N chunks first.

    python -m bench.erase_scale --chunks 100000 --shards 16 [--per-doc 5] [--json OUT]

Synthetic chunks are written through the store adapter (``ChromaStore.upsert``, with the
text cipher and the keyword index, as the ingest writes them) into one tenant on a Chroma
server of its own: random normalised 384-d vectors and nine evidence-unit vectors per chunk
(``bench/chroma_capacity.py``'s records: about 1,100 characters of text, sealed; no model is
run, so these are the store's costs, not the embedder's). Documents of ``--per-doc`` chunks,
written 100 documents per call (the store splits them by shard).
The store's part of a search is timed (30 queries: the 30 nearest chunks over every shard,
then 10 chunks fetched by id, as a hybrid search does for its keyword-only hits). Then one
more document holding a canary is written and erased the way the erasure job does it
(ingest/erasure.py), each step timed:

* ``delete_s``: the API's part (``delete_document``: Chroma and the keyword index);
* ``compaction_s``: rebuilding the collections that held the document
  (``ChromaStore.erase_collections``: one shard, or the whole tenant with ``--shards 1``);
* ``keywords_s``: the keyword index's scrub (the tenant's FTS5 table merged, WAL truncated);
* ``chroma_scrub_s``: the Chroma directory scrub (dropped segment directories removed,
  ``chroma.sqlite3`` vacuumed, the server running), which grows with the whole server's
  file, not the tenant's.

``erase_s`` is their sum (the job's 1 s queue delay and the 3 s second scrub pass aside).
The data directory is then scanned for the document's sealed chunk texts and the canary
(tests/forensics.py). One JSON object on stdout (and ``--json OUT``).
"""

from __future__ import annotations

import json
import random
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import click
import numpy as np

from bench.chroma_capacity import _batch, _du
from core.domain import Chunk
from core.keystore import SqliteKeyStore
from core.textcrypt import TEXT_KEY, TextCipher, term_key
from ingest.erasure import scrub_chroma_dir
from ingest.keywords import KeywordIndex
from ingest.store import ChromaStore, collection_name, tenant_get
from service.cli.processes import chroma_command, free_port, wait_http
from tests.forensics import files_containing

TENANT = "acme"


def log(msg: str) -> None:
    sys.stderr.write(f"[bench.erase_scale] {time.strftime('%H:%M:%S')} {msg}\n")
    sys.stderr.flush()


@click.command()
@click.option("--chunks", default=20000, type=int, help="chunks in the tenant")
@click.option("--shards", default=16, type=int, help="the tenant's shards (1 = one collection)")
@click.option("--per-doc", default=5, type=int, help="chunks per document")
@click.option("--json", "json_out", type=click.Path(path_type=Path), default=None)
@click.option("--data", type=click.Path(path_type=Path), default=None,
              help="directory to build in (default: a temporary one, removed after)")
def main(chunks: int, shards: int, per_doc: int, json_out: Path | None,
         data: Path | None) -> None:
    if data is not None:
        data.mkdir(parents=True, exist_ok=True)
        report = run(data, chunks, shards, per_doc)
    else:
        with tempfile.TemporaryDirectory(prefix="docqa-erase-") as tmp:
            report = run(Path(tmp), chunks, shards, per_doc)
    text = json.dumps(report, indent=2)
    click.echo(text)
    if json_out:
        json_out.write_text(text + "\n")


def run(root: Path, chunks: int, shards: int, per_doc: int) -> dict[str, Any]:
    rng, r = np.random.default_rng(7), random.Random(7)  # noqa: S311 - benchmark data
    chroma_dir, port = root / "chroma", free_port()
    proc = subprocess.Popen(chroma_command(chroma_dir, "127.0.0.1", port),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        if not wait_http(f"http://127.0.0.1:{port}/api/v2/heartbeat", 60, [proc]):
            raise click.ClickException("Chroma did not start")
        master = secrets.token_bytes(32)
        cipher = TextCipher(master, SqliteKeyStore(root / "keys.sqlite3"))
        keywords = KeywordIndex(root / "keywords.sqlite3", term_key(master))
        store = ChromaStore("127.0.0.1", port, keywords, cipher=cipher, shards=shards)
        t0, done, d = time.monotonic(), 0, 0
        while done < chunks:  # 100 documents per upsert call: the store splits by shard
            part, vectors, per_chunk = [], [], []
            for _ in range(100):
                n = min(per_doc, chunks - done)
                if n <= 0:
                    break
                c, v, u = _batch(rng, r, f"doc{d:07d}", 0, n)
                part += c
                vectors += v
                per_chunk += u
                done, d = done + n, d + 1
            store.upsert(TENANT, part, vectors, {"filename": "synthetic.txt"}, per_chunk)
            if d % 2000 == 0:
                log(f"{done} chunks written ({time.monotonic() - t0:.0f} s)")
        write_s = time.monotonic() - t0
        canary = "ERASECANARY" + secrets.token_hex(8).upper()
        victim = "victim-" + secrets.token_hex(4)
        part, vectors, per_chunk = _batch(rng, r, victim, 0, per_doc)
        part = [Chunk(c.id, c.document_id, c.index, f"{c.text} The codeword is {canary}.",
                      c.page, c.start, c.end + 30) for c in part]
        store.upsert(TENANT, part, vectors, {"filename": "secret.txt"}, per_chunk)
        time.sleep(5)  # let the server flush its log to the index, as in a running service
        got = tenant_get(store._connect(), TENANT, where={"document_id": victim},
                         include=["metadatas"])
        needles = [str(m[TEXT_KEY])[20:60].encode() for m in got["metadatas"]]
        seen_before = bool(files_containing(root, needles))
        disk = _du(chroma_dir)
        query_ms = []  # what a search asks the store: the 30 nearest, then 10 chunks by id
        for q in _batch(rng, r, "query", 0, 30)[1]:
            t = time.perf_counter()
            ids = [h.chunk_id for h in store.query(TENANT, q, 30)]
            store.get_chunks(TENANT, ids[20:], q)
            query_ms.append((time.perf_counter() - t) * 1000)
        steps: dict[str, float] = {}

        def timed(name: str, fn: Any) -> Any:
            t = time.monotonic()
            out = fn()
            steps[name] = round(time.monotonic() - t, 2)
            return out

        timed("delete_s", lambda: store.delete_document(TENANT, victim))
        cipher.forget(victim)
        names = store.erase_collections(TENANT, victim)
        compaction = timed("compaction_s", lambda: store.compact(TENANT, victim))
        timed("keywords_s", lambda: keywords.scrub(collection_name(TENANT)))
        scrub = timed("chroma_scrub_s", lambda: scrub_chroma_dir(chroma_dir))
        left = files_containing(root, needles + [canary.encode(), canary.lower().encode()])
        return {
            "chunks": done + per_doc, "shards": shards, "per_doc": per_doc,
            "vectors": "random, normalised (no model)",
            "write_s": round(write_s, 1), "chroma_disk_mb": round(disk / 2**20, 1),
            "keywords_disk_mb": round(sum(p.stat().st_size for p in
                                          root.glob("keywords.sqlite3*")) / 2**20, 1),
            "store_search_p50_ms": round(statistics.median(query_ms), 1),
            "store_search_p95_ms": round(sorted(query_ms)[int(0.95 * len(query_ms))], 1),
            "rebuilt": names, "rebuilt_chunks": compaction["chunks"], **steps,
            "vacuum_s": scrub.get("vacuum_seconds"),
            "erase_s": round(sum(steps.values()), 2),
            "canary_seen_before_erase": seen_before,
            "canary_found_after_erase": bool(left), "canary_files": sorted(left),
        }
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()


if __name__ == "__main__":
    main()
