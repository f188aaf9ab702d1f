"""Which queues a worker consumes (workers/app.py), and the erasure's Chroma directory
scrub handed to a worker that sees the directory (ingest/erasure.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from core import tasks as names
from core.settings import Settings


def test_only_a_worker_that_sees_the_chroma_directory_consumes_its_scrub_queue(
    tmp_path: Path,
) -> None:
    from workers.app import worker_queues

    chroma = tmp_path / "chroma"
    settings = Settings(data_dir=tmp_path / "local", chroma={"data_dir": chroma})
    assert worker_queues(settings) == [names.INGEST_QUEUE, names.ERASE_QUEUE]
    chroma.mkdir()
    (chroma / "chroma.sqlite3").write_bytes(b"")  # the Chroma server's database is here
    assert worker_queues(settings) == [names.INGEST_QUEUE, names.ERASE_QUEUE,
                                       names.CHROMA_QUEUE]


def test_an_erasure_hands_the_chroma_directory_scrub_on_when_told_to(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The worker's eraser queues the scrub (the Chroma server's files may be elsewhere); an
    eraser without that hook scrubs the directory itself."""
    from ingest.erasure import Eraser
    from tests.unit.conftest import FakeRedis

    class Store:
        keywords = None

        def delete_document(self, tenant: str, doc_id: str) -> None: ...

        def destroy_text_key(self, doc_id: str) -> None: ...

        def erase_collections(self, tenant: str, doc_id: str) -> list[str]:
            return ["shard"]

        def compact_collection(self, tenant: str, name: str) -> dict[str, int]:
            return {"chunks": 0}

    class Vault:
        def destroy(self, path: Path) -> None: ...

        def sweep_orphan_keys(self, roots: list[Path]) -> int:
            return 0

    class Repo:
        def get(self, doc_id: str) -> None:
            return None

    settings = Settings(data_dir=tmp_path / "data")
    queued: list[str] = []
    eraser = Eraser(settings, Repo(), Store(), Vault(), FakeRedis(),  # type: ignore[arg-type]
                    lambda: queued.append("scrub"))
    report = eraser.erase("acme", "d1")
    assert queued == ["scrub"] and report["chroma"] == "queued"
    eraser.scrub_chroma_later = None
    monkeypatch.setattr("ingest.erasure.SECOND_PASS_DELAY_S", 0.0)
    report = eraser.erase("acme", "d2")
    assert queued == ["scrub"]  # not queued again: scrubbed here (no directory: skipped)
    assert report["chroma"]["first_pass"] == {"skipped": "no local Chroma data directory"}


def test_a_worker_told_its_queues_consumes_only_those(tmp_path: Path) -> None:
    """DOCQA_WORKER__QUEUES=docqa.chroma: the worker beside the Chroma server scrubs and
    takes no ingest or erasure (its Chroma directory may not be created yet)."""
    from workers.app import worker_queues

    chroma = tmp_path / "chroma"
    settings = Settings(data_dir=tmp_path / "local", chroma={"data_dir": chroma},
                        worker={"queues": " docqa.chroma, docqa.chroma"})
    assert worker_queues(settings) == [names.CHROMA_QUEUE]
    chroma.mkdir()
    (chroma / "chroma.sqlite3").write_bytes(b"")
    assert worker_queues(settings) == [names.CHROMA_QUEUE]
    erase_only = Settings(data_dir=tmp_path / "local", worker={"queues": "docqa.erase"})
    assert worker_queues(erase_only) == [names.ERASE_QUEUE]


def test_an_unknown_queue_is_refused(tmp_path: Path) -> None:
    from core.errors import ConfigurationError
    from workers.app import worker_queues

    settings = Settings(data_dir=tmp_path, worker={"queues": "docqa.chroma,docqa.chrome"})
    with pytest.raises(ConfigurationError, match=r"docqa\.chrome"):
        worker_queues(settings)


def test_queues_option_reaches_celery_and_skips_the_model(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``python -m workers --queues docqa.chroma`` (over DOCQA_WORKER__QUEUES) starts Celery
    on that queue alone, and its children load no embedding model."""
    from click.testing import CliRunner

    from workers import __main__ as entry
    from workers import app as worker_app

    argv: list[str] = []

    class App:
        def worker_main(self, args: list[str]) -> None:
            argv.extend(args)

    monkeypatch.setattr(worker_app, "create_celery_app", lambda settings: App())
    monkeypatch.setattr(worker_app.reconcile, "install", lambda app, settings: None)
    monkeypatch.setattr(worker_app.health, "install", lambda app, path, interval: None)
    monkeypatch.setattr(worker_app, "_warm_up", True)
    monkeypatch.setenv("DOCQA_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("DOCQA_WORKER__QUEUES", "docqa.ingest")
    monkeypatch.setenv("DOCQA_METRICS__ENABLED", "false")
    monkeypatch.setattr(entry, "configure_process", lambda settings, role: None)
    result = CliRunner().invoke(entry.main, ["--queues", "docqa.chroma"])
    assert result.exit_code == 0, result.output
    assert argv[argv.index("-Q") + 1] == names.CHROMA_QUEUE
    assert worker_app._warm_up is False
    argv.clear()
    result = CliRunner().invoke(entry.main, [])  # the setting alone: ingest, model loaded
    assert result.exit_code == 0, result.output
    assert argv[argv.index("-Q") + 1] == names.INGEST_QUEUE
    assert worker_app._warm_up is True
