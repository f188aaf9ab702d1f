"""A guard on kombu's restore of unacknowledged Redis messages at a lost connection.

When a worker's Redis connection is lost, Celery collects the connection (closing its
channels, then releasing the transport) and closes it. Closing a kombu Redis channel reads
the reply of a BRPOP still pending on it first; against a dead Redis that read raises, and the
close stops there, before the channel is marked closed and before its unacknowledged messages
are given back. The transport's other channels' closes may stop the same way, so the channel
is closed again only by the final close, after the transport was released: its restore then
needs new connection parameters from a transport that no longer has them and raises
``AttributeError`` (``'NoneType' object has no attribute 'hostname'``), which Celery takes as
unrecoverable: the worker dies.

A channel has a BRPOP pending while it holds unacknowledged messages only when its worker
takes messages while others are still unacknowledged: a worker of one child taking one message
at a time stops polling while it runs, so its close gives back (or fails to give back) the
message before the transport goes. A batching worker (workers/batching.py) holds messages
and keeps polling, and died at every Redis restart that found it so.

The guard: a channel whose transport was released has nothing left to reach Redis with, so its
restore gives nothing back and says so. Its messages stay in Redis's ``unacked`` set, which is
where a message whose restore failed against a dead Redis stays too: the batching dispatcher
settles those it holds through the new connection, and any other is handed out again after the
visibility timeout. Only that case changes; every other restore runs kombu's own code.
"""

from __future__ import annotations

import functools
import inspect
import logging
from typing import Any

log = logging.getLogger("docqa.worker")

# the kombu versions whose Redis QoS.restore_unacked(client=None) and channel layout
# (channel.connection is the transport, transport.client its kombu Connection, None once
# released) the guard was written against and tested with
KOMBU_VERSIONS = ((5, 3), (5, 4), (5, 5), (5, 6), (5, 7))
_GUARD = "_docqa_guarded"


def _version(text: str) -> tuple[int, int]:
    parts = text.split(".")
    return int(parts[0]), int(parts[1])


def guard_restore_unacked() -> bool:
    """Install the guard on kombu's Redis ``QoS.restore_unacked`` (once); False when this
    kombu is not one the guard knows, in which case nothing is changed."""
    import kombu
    from kombu.transport import redis as kombu_redis

    qos_cls = kombu_redis.QoS
    original: Any = qos_cls.restore_unacked
    if getattr(original, _GUARD, False):
        return True
    if _version(kombu.__version__) not in KOMBU_VERSIONS or list(
            inspect.signature(original).parameters) != ["self", "client"]:
        log.warning("kombu %s is not a version the restore guard knows: not installed; a "
                    "batching worker may die when its Redis restarts", kombu.__version__)
        return False

    @functools.wraps(original)
    def restore_unacked(self: Any, client: Any = None) -> Any:
        transport = getattr(self.channel, "connection", None)
        if client is None and transport is not None and transport.client is None:
            delivered = self._delivered
            if delivered:
                log.warning("broker connection lost: %d unacknowledged message(s) stay in "
                            "Redis's unacked set (settled through the new connection, or "
                            "handed out again after the visibility timeout)", len(delivered))
            delivered.clear()  # as a restore leaves it; kombu checks it is empty after
            return None
        return original(self, client)

    setattr(restore_unacked, _GUARD, True)
    setattr(qos_cls, "restore_unacked", restore_unacked)  # noqa: B010 - the one method guarded
    return True
