"""Readiness of the API (``GET /readyz``); ``/healthz`` is liveness only and checks nothing.

``/readyz`` answers 200 when every dependency answers, else 503 naming what failed:

* ``redis``: PING (broker, rate limits);
* ``chroma``: the Chroma server's heartbeat;
* ``registry``: one query on the registry database, PostgreSQL when ``DOCQA_DATABASE_URL``
  is set, SQLite in the data dir otherwise (``registry_backend`` says which);
* ``embedder``: the embedding model is loaded (it is needed for every search and question);
* ``generator``: the GGUF model is loaded (only required when ``load_generator`` is on).

Body: ``{"status": "ready"|"not ready", "checks": {name: "ok" | "unavailable: Error" |
"not loaded"}, "failed": [names], "registry_backend": "sqlite"|"postgresql"}``. A check
that changes state is logged once (warning when it fails, info when it recovers), not at
every probe.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Annotated, Any, Literal

import msgspec
from litestar import Response, get
from litestar.di import NamedDependency
from litestar.openapi.datastructures import ResponseSpec

log = logging.getLogger("docqa.health")

_last: dict[str, bool] = {}
_last_lock = threading.Lock()


def _probe(name: str, check: Callable[[], Any]) -> str:
    try:
        check()
        result = "ok"
    except Exception as exc:  # noqa: BLE001 - report, don't raise
        result = f"unavailable: {type(exc).__name__}"
        _changed(name, False, f"{type(exc).__name__}: {exc}")
        return result
    _changed(name, True, "")
    return result


def _changed(name: str, ok: bool, why: str) -> None:
    with _last_lock:
        before = _last.get(name)
        _last[name] = ok
    if before is None and ok:
        return
    if before is not False and not ok:
        log.warning("readiness: %s unavailable: %s", name, why[:300])
    elif before is False and ok:
        log.info("readiness: %s available again", name)


class Readiness(msgspec.Struct):
    status: Literal["ready", "not ready"]
    checks: Annotated[dict[str, str], msgspec.Meta(
        description='each check: "ok", "unavailable: <error class>" or "not loaded"')]
    failed: list[str]
    registry_backend: Literal["sqlite", "postgresql"]


def readiness(comps: Any) -> tuple[bool, Readiness]:
    """(ready, response body) for the app's components."""
    settings = comps.settings
    checks: dict[str, str] = {
        "redis": _probe("redis", comps.redis.ping),
        "chroma": _probe("chroma", comps.store.heartbeat),
        "registry": _probe("registry", comps.repo.count_keys),
        "embedder": "ok" if getattr(comps.answers, "embedder", None) is not None
        else "not loaded",
        "generator": "ok" if getattr(comps.answers, "generator", None) is not None
        else "not loaded",
    }
    required = [k for k in checks if k != "generator" or settings.load_generator]
    failed = [k for k in required if checks[k] != "ok"]
    body = Readiness("not ready" if failed else "ready", checks, failed,
                     "postgresql" if settings.database_url else "sqlite")
    return not failed, body


@get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@get("/readyz", sync_to_thread=True, responses={503: ResponseSpec(
    Readiness, generate_examples=False, description="Not ready: `failed` names what")})
def readyz(comps: NamedDependency[Any]) -> Response[Readiness]:
    """Redis, Chroma, the registry database and the models."""
    ready, body = readiness(comps)
    return Response(body, status_code=200 if ready else 503)


route_handlers = [healthz, readyz]
