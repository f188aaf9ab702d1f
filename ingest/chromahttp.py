"""The two reads a search makes of every shard, over plain keep-alive HTTP.

A search asks each of a tenant's shards (16 by default) for its nearest chunks, then asks
some of them for records by id. Through ``chromadb``'s client each request costs about
1 ms of Python (its request validation, tracing decorators and ``httpx``'s connection
pool) besides the server's work, and that part holds the GIL, so querying the shards from
threads does not overlap it: measured on this machine, 16 shard queries from 4 threads took
about twice as long through the client as through ``http.client`` (docs/capacity.md
"Search over 16 shards"). These two calls, and only these, go straight to Chroma's REST
API (``/api/v2``, the routes the client itself posts to); everything else, writes and
collection management included, stays on the client.

Errors are the client's: a response naming one of ``chromadb.errors``' types raises it (so
``NotFoundError`` for a collection a compaction swapped is recognised the same way), any
other failure status raises with the server's text; connection failures raise the socket's
own errors, which ``ingest.store`` reports as the store being unavailable.
"""

from __future__ import annotations

import http.client
import os
import threading
from collections.abc import Sequence
from typing import Any
from urllib.parse import quote

import orjson

API = "/api/v2"


class ChromaReads:
    """``query`` and ``get`` by id on a collection (a ``chromadb`` collection handle: its
    id, tenant and database), one keep-alive connection per thread."""

    def __init__(self, host: str, port: int, timeout: float = 60.0) -> None:
        self.host, self.port, self.timeout = host, port, timeout
        self._local = threading.local()

    def _connection(self) -> http.client.HTTPConnection:
        conn: http.client.HTTPConnection | None = getattr(self._local, "conn", None)
        if conn is None or self._local.pid != os.getpid():  # none survive a fork
            conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
            self._local.conn, self._local.pid = conn, os.getpid()
        return conn

    def _drop(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
        self._local.conn = None

    def _post(self, coll: Any, op: str, body: dict[str, Any]) -> dict[str, Any]:
        path = (f"{API}/tenants/{quote(str(coll.tenant), safe='')}/databases/"
                f"{quote(str(coll.database), safe='')}/collections/{coll.id}/{op}")
        payload = orjson.dumps(body)
        for attempt in (0, 1):
            conn = self._connection()
            try:
                conn.request("POST", path, payload, {"Content-Type": "application/json"})
                resp = conn.getresponse()
                data = resp.read()
            except (http.client.RemoteDisconnected, http.client.BadStatusLine,
                    ConnectionResetError, BrokenPipeError):
                # the server closed a kept-alive connection (idle, or restarted): a read,
                # so asked once more on a new connection
                self._drop()
                if attempt == 0:
                    continue
                raise
            except Exception:
                self._drop()
                raise
            if resp.status >= 400:
                raise _error(resp.status, data)
            out: dict[str, Any] = orjson.loads(data)
            return out
        raise AssertionError("unreachable")  # pragma: no cover

    def query(self, coll: Any, embedding: Sequence[float], n_results: int,
              where: dict[str, Any] | None, include: Sequence[str]) -> dict[str, Any]:
        """``coll.query(query_embeddings=[embedding], ...)``'s result: lists of lists."""
        return self._post(coll, "query", {
            "query_embeddings": [[float(x) for x in embedding]], "n_results": n_results,
            "where": where, "where_document": None, "ids": None, "include": list(include)})

    def get(self, coll: Any, ids: Sequence[str], include: Sequence[str]) -> dict[str, Any]:
        """``coll.get(ids=ids, include=include)``'s result (metadata values are plain: docqa
        writes no sparse vectors, the one type the client would convert)."""
        return self._post(coll, "get", {
            "ids": list(ids), "where": None, "limit": None, "offset": None,
            "where_document": None, "include": list(include)})


def _error(status: int, data: bytes) -> Exception:
    """The exception ``chromadb``'s client raises for this answer."""
    from chromadb import errors

    try:
        body = orjson.loads(data)
        kind = errors.error_types.get(body.get("error", "")) if isinstance(body, dict) else None
        if kind is not None:
            return kind(body.get("message", ""))
    except orjson.JSONDecodeError:
        pass
    return RuntimeError(f"Chroma answered {status}: {data[:500].decode('utf-8', 'replace')}")
