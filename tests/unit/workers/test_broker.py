"""The guard on kombu's restore of unacknowledged Redis messages (workers/broker.py), on
kombu's own Redis ``QoS``; the real case (Redis killed under a batching worker) is
tests/integration/test_faults.py."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from types import SimpleNamespace
from typing import Any

import kombu
import pytest
from kombu.transport import redis as kombu_redis

from workers import broker


class Channel:
    """What kombu's Redis QoS reads of its channel: ``connection`` is the transport, whose
    ``client`` (the kombu Connection) is None once the connection released it; making a
    client then fails as kombu's ``_connparams`` does."""

    do_restore = True

    def __init__(self, released: bool) -> None:
        self.connection = SimpleNamespace(client=None if released else object())
        self.restored: list[str] = []

    @contextmanager
    def conn_or_acquire(self, client: Any = None) -> Iterator[Any]:
        if self.connection.client is None:
            raise AttributeError("'NoneType' object has no attribute 'hostname'")
        yield client or self


@pytest.fixture
def unguarded(monkeypatch: pytest.MonkeyPatch) -> Any:
    original = kombu_redis.QoS.restore_unacked
    while getattr(original, "__wrapped__", None) is not None:
        original = original.__wrapped__
    monkeypatch.setattr(kombu_redis.QoS, "restore_unacked", original)  # put back after
    return original


def qos_holding(channel: Channel, tags: list[str], monkeypatch: pytest.MonkeyPatch) -> Any:
    qos = kombu_redis.QoS(channel, prefetch_count=16)
    qos._on_collect.cancel()  # no restore at garbage collection in a test
    for tag in tags:
        qos._delivered[tag] = SimpleNamespace(delivery_tag=tag)
    monkeypatch.setattr(qos, "restore_by_tag",
                        lambda tag, client=None, leftmost=False: channel.restored.append(tag))
    return qos


def test_without_the_guard_a_released_transport_kills_the_restore(
        unguarded: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    qos = qos_holding(Channel(released=True), ["t1", "t2"], monkeypatch)
    with pytest.raises(AttributeError, match="hostname"):
        qos.restore_unacked_once()


def test_the_guard_leaves_a_released_transports_messages_in_redis_and_says_so(
        unguarded: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    assert broker.guard_restore_unacked()
    assert broker.guard_restore_unacked()  # once: a second call does not wrap it again
    assert kombu_redis.QoS.restore_unacked.__wrapped__ is unguarded
    channel = Channel(released=True)
    qos = qos_holding(channel, ["t1", "t2"], monkeypatch)
    with caplog.at_level(logging.WARNING, "docqa.worker"):
        qos.restore_unacked_once()
        qos.restore_unacked_once()  # the channel closed again: nothing more, no assertion
    assert channel.restored == [] and not qos._delivered
    assert "2 unacknowledged message(s) stay in Redis's unacked set" in caplog.text


def test_the_guard_runs_kombus_restore_while_the_transport_is_there(
        unguarded: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    assert broker.guard_restore_unacked()
    channel = Channel(released=False)
    qos = qos_holding(channel, ["t1", "t2"], monkeypatch)
    qos.restore_unacked_once()
    assert channel.restored == ["t1", "t2"] and not qos._delivered


def test_an_unknown_kombu_is_left_alone(unguarded: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(kombu, "__version__", "6.0.0")
    assert not broker.guard_restore_unacked()
    assert kombu_redis.QoS.restore_unacked is unguarded
