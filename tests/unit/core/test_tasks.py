"""The Celery configuration built from the settings (core/tasks.py)."""

from __future__ import annotations

import pytest

from core.errors import ConfigurationError
from core.settings import Settings
from core.tasks import INGEST_QUEUE, celery_config, ingest_priority, queue_keys, soft_time_limit


def test_delivery_settings_reach_the_redis_transport(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCQA_WORKER__VISIBILITY_TIMEOUT_S", "20")
    monkeypatch.setenv("DOCQA_WORKER__TASK_TIME_LIMIT_S", "15")
    monkeypatch.setenv("DOCQA_WORKER__UNACKED_RESTORE_INTERVAL_S", "1")
    monkeypatch.setenv("DOCQA_WORKER__UNACKED_RESTORE_THROTTLE", "1")
    conf = celery_config(Settings())
    assert conf["broker_transport_options"] == {
        "visibility_timeout": 20, "unacked_restore_interval": 1, "unacked_restore_throttle": 1,
        "priority_steps": list(range(10))}  # every priority level its own list: fair ingest
    assert conf["task_time_limit"] == 15 and conf["task_soft_time_limit"] == 12
    assert conf["worker_proc_alive_timeout"] >= 60  # a restarted child may load its model


@pytest.mark.parametrize(("hard", "soft"), [(900, 870), (60, 48), (30, 24), (20, 16), (2, 1)])
def test_soft_time_limit_comes_before_the_hard_one(hard: int, soft: int) -> None:
    assert soft_time_limit(hard) == soft


def test_celery_config_is_at_least_once_and_json_only() -> None:
    conf = celery_config(Settings())
    assert conf["task_acks_late"] and conf["task_reject_on_worker_lost"]
    assert conf["worker_prefetch_multiplier"] == 1  # one document per job by default
    assert conf["accept_content"] == ["json"] and conf["task_serializer"] == "json"
    assert conf["task_time_limit"] < conf["broker_transport_options"]["visibility_timeout"]


def test_a_batching_worker_holds_a_running_job_and_the_next_one(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCQA_WORKER__BATCH_SIZE", "32")
    assert celery_config(Settings())["worker_prefetch_multiplier"] == 64


def test_time_limit_must_stay_below_visibility_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCQA_WORKER__TASK_TIME_LIMIT_S", "4000")
    monkeypatch.setenv("DOCQA_WORKER__VISIBILITY_TIMEOUT_S", "3600")
    with pytest.raises(ConfigurationError):
        celery_config(Settings())


def test_ingest_priority_is_the_tenants_place_in_line() -> None:
    assert [ingest_priority(n) for n in (-1, 0, 1, 8, 9, 10, 500)] == [0, 0, 1, 8, 9, 9, 9]
    keys = queue_keys(INGEST_QUEUE)
    assert keys[0] == INGEST_QUEUE and keys[9] == INGEST_QUEUE + "\x06\x169" and len(keys) == 10


def test_a_child_is_replaced_after_its_jobs_and_a_memory_limit_is_optional() -> None:
    conf = celery_config(Settings())
    assert conf["worker_max_tasks_per_child"] == 2000
    assert conf["worker_max_memory_per_child"] is None  # a PII-tagging child is larger
    settings = Settings()
    settings.worker.max_tasks_per_child, settings.worker.max_memory_mb = 0, 700
    conf = celery_config(settings)
    assert conf["worker_max_tasks_per_child"] is None
    assert conf["worker_max_memory_per_child"] == 700 * 1024  # KiB
