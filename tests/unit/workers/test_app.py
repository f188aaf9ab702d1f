"""The worker's retry backoff (workers/app.py)."""

from __future__ import annotations

import pytest

from core.settings import Settings


def test_retry_backoff_stays_below_the_visibility_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    from workers import app as worker_app

    monkeypatch.setattr(worker_app, "_settings", Settings.model_validate(
        {"worker": {"visibility_timeout_s": 50, "task_time_limit_s": 30}}))
    waits = [worker_app._backoff(r) for r in range(10) for _ in range(20)]
    assert max(waits) <= 10 and min(waits) > 0  # (50 - 30) / 2
    monkeypatch.setattr(worker_app, "_settings", Settings())
    assert max(worker_app._backoff(r) for r in range(10) for _ in range(20)) <= 60
