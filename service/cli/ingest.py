"""``docqa ingest`` and ``docqa ask``: the API's client on the command line."""

from __future__ import annotations

import json
import queue
import sys
import threading
import time
from pathlib import Path
from typing import Any

import click
import httpx

from service.cli.common import client_for, key_opt, url_opt
from service.client import DocqaAPIError

# ---------------------------------------------------------------- ingest progress

FOLLOW_AT_ONCE = 4  # event streams followed at a time (workers take files in upload order)
_FINAL = ("ready", "failed")


def _stage_text(doc: dict[str, Any]) -> str:
    """``parsing 3/12 pages``, ``embedding 40/96 chunks``, ``queued``."""
    p = doc.get("progress") or {}
    stage, total = str(p.get("stage") or doc.get("status", "")), int(p.get("total") or 0)
    if not total or stage in ("queued", *_FINAL):
        return stage
    unit = p.get("unit") or ""
    return f"{stage} {p.get('done', 0)}/{total}" + (f" {unit}" if unit else "")


def _outcome_text(doc: dict[str, Any]) -> str:
    if doc.get("status") == "ready":
        chunks, pages = int(doc.get("chunks") or 0), int(doc.get("pages") or 0)
        return (f"ready ({chunks} chunk{'s' * (chunks != 1)}, "
                f"{pages} page{'s' * (pages != 1)})")
    return f"failed: {doc.get('error') or 'unknown error'}"


def _eta_text(elapsed: float, done: int, total: int) -> str:
    """Files still to come at the pace of those finished so far."""
    if done <= 0 or done >= total:
        return ""
    minutes, seconds = divmod(round(elapsed / done * (total - done)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"ETA {hours}:{minutes:02d}:{seconds:02d}" if hours else f"ETA {minutes}:{seconds:02d}"


class _PlainIngestView:
    """Output for a pipe or a log (no TTY): plain lines, no control codes. A line per file
    when its stage changes (within a stage at most one per ``EVERY_S``), and one per
    finished file with the overall count and ETA."""

    EVERY_S = 2.0

    def __init__(self, names: dict[str, str]) -> None:
        self.names, self.lock = names, threading.Lock()
        self.total, self.finished, self.started = len(names), 0, time.monotonic()
        self.last: dict[str, tuple[str, str, float]] = {}  # id → (stage, text, when)

    def begin(self, doc_id: str) -> None:
        pass

    def update(self, doc_id: str, doc: dict[str, Any]) -> None:
        stage, text = str((doc.get("progress") or {}).get("stage")), _stage_text(doc)
        now = time.monotonic()
        with self.lock:
            before = self.last.get(doc_id)
            if before and (before[1] == text or (before[0] == stage
                                                 and now - before[2] < self.EVERY_S)):
                return
            self.last[doc_id] = (stage, text, now)
            click.echo(f"{self.names[doc_id]}: {text}")

    def end(self, doc_id: str, outcome: str) -> None:
        with self.lock:
            self.finished += 1
            eta = _eta_text(time.monotonic() - self.started, self.finished, self.total)
            click.echo(f"{self.names[doc_id]}: {outcome} "
                       f"[{self.finished}/{self.total} files{', ' + eta if eta else ''}]")

    def close(self) -> None:
        pass


class _RichIngestView:
    """Terminal output (``rich``): an overall bar (files finished, ETA) and one bar per file
    being followed (stage, done/total and unit); a finished file leaves a line above."""

    def __init__(self, names: dict[str, str]) -> None:
        from rich.progress import (
            BarColumn,
            Progress,
            TaskID,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self.names = names
        self.bars = Progress(TextColumn("{task.description}"), BarColumn(),
                             TextColumn("{task.fields[count]}"), TimeElapsedColumn(),
                             TimeRemainingColumn())
        self.overall = self.bars.add_task("all files", total=len(names),
                                          count=f"0/{len(names)} files")
        self.tasks: dict[str, TaskID] = {}
        self.stages: dict[str, str] = {}
        self.finished = 0
        self.lock = threading.Lock()
        self.bars.start()

    def begin(self, doc_id: str) -> None:
        self.tasks[doc_id] = self.bars.add_task(self.names[doc_id], total=None, count="")

    def update(self, doc_id: str, doc: dict[str, Any]) -> None:
        p = doc.get("progress") or {}
        stage, total = str(p.get("stage")), int(p.get("total") or 0) or None
        task = self.tasks[doc_id]
        count = _stage_text(doc).removeprefix(stage).strip()
        if self.stages.get(doc_id) != stage:  # a new stage starts its own bar (and ETA)
            self.stages[doc_id] = stage
            self.bars.reset(task, total=total, completed=int(p.get("done") or 0))
        self.bars.update(task, description=f"{self.names[doc_id]} · {stage}", total=total,
                         completed=int(p.get("done") or 0), count=count)

    def end(self, doc_id: str, outcome: str) -> None:
        with self.lock:  # the follower threads finish files concurrently
            self.bars.remove_task(self.tasks.pop(doc_id))
            self.finished += 1
            self.bars.console.print(f"{self.names[doc_id]}: {outcome}", highlight=False,
                                    markup=False)
            self.bars.update(self.overall, advance=1,
                             count=f"{self.finished}/{len(self.names)} files")

    def close(self) -> None:
        self.bars.stop()


def _ingest_view(names: dict[str, str]) -> _PlainIngestView | _RichIngestView:
    if not sys.stdout.isatty():
        return _PlainIngestView(names)
    try:
        import rich  # noqa: F401 - present with litestar; plain lines without it
    except ImportError:
        return _PlainIngestView(names)
    return _RichIngestView(names)


def _follow(client: Any, doc_id: str, deadline: float, view: Any) -> dict[str, Any]:
    """The document's events until it is ready or failed (the client reconnects a broken
    stream); polling ``GET`` instead if the server has no events route."""
    try:
        for doc in client.document_events(doc_id, timeout=max(0.0, deadline - time.monotonic())):
            if doc["status"] in _FINAL:
                return dict(doc)
            view.update(doc_id, doc)
    except DocqaAPIError as exc:
        if exc.status != 404:
            raise
        client.document(doc_id)  # 404 again: the document is gone; else an older server
    while True:
        doc = client.document(doc_id)
        if doc["status"] in _FINAL:
            return dict(doc)
        view.update(doc_id, doc)
        if time.monotonic() > deadline:
            raise TimeoutError(f"document {doc_id} not finished")
        time.sleep(1.0)


def _follow_all(client: Any, names: dict[str, str], timeout: float) -> dict[str, dict[str, Any]]:
    """Follow every document's progress, ``FOLLOW_AT_ONCE`` streams at a time in upload
    order (daemon threads: Ctrl-C ends the command without waiting for them)."""
    todo: queue.SimpleQueue[str] = queue.SimpleQueue()
    for doc_id in names:
        todo.put(doc_id)
    final: dict[str, dict[str, Any]] = {}
    deadline = time.monotonic() + timeout
    view = _ingest_view(names)

    def run() -> None:
        while True:
            try:
                doc_id = todo.get_nowait()
            except queue.Empty:
                return
            view.begin(doc_id)
            try:
                doc = _follow(client, doc_id, deadline, view)
                final[doc_id] = doc
                outcome = _outcome_text(doc)
            except TimeoutError:
                outcome = f"not finished after {timeout:g} s"
            except (DocqaAPIError, httpx.HTTPError) as exc:
                final[doc_id] = {"status": "failed", "error": str(exc)}
                outcome = f"failed: {exc}"
            view.end(doc_id, outcome)

    threads = [threading.Thread(target=run, daemon=True, name=f"follow-{i}")
               for i in range(min(FOLLOW_AT_ONCE, len(names)))]
    try:
        for t in threads:
            t.start()
        for t in threads:
            while t.is_alive():
                t.join(0.5)
    finally:
        view.close()
    return final


@click.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@url_opt
@key_opt
@click.option("--timeout", default=3600.0)
@click.option("--redact-pii", is_flag=True,
              help="replace e-mails, phones, IBANs, cards and ID numbers by placeholders")
def ingest(paths: tuple[Path, ...], url: str | None, api_key: str | None, timeout: float,
           redact_pii: bool) -> None:
    """Upload files or folders and follow each one until it is ready.

    On a terminal: a bar per file being processed (stage, pages or chunks) and an overall
    one (files finished, ETA). Piped: plain progress lines. Exit 1 if any file failed.
    """
    files = [f for p in paths
             for f in ([p] if p.is_file() else sorted(x for x in p.rglob("*") if x.is_file()))]
    client = client_for(url, api_key)
    ids: dict[str, Path] = {}
    with click.progressbar(files, label="uploading", show_pos=True) as bar:
        for f in bar:
            try:
                ids[client.upload(f, redact_pii=True if redact_pii else None)["id"]] = f
            except DocqaAPIError as exc:
                click.echo(f"\n{f}: {exc}", err=True)
    final = _follow_all(client, {doc_id: str(path) for doc_id, path in ids.items()}, timeout)
    unfinished = [ids[doc_id] for doc_id in ids if doc_id not in final]
    failed = {k: v for k, v in final.items() if v["status"] == "failed"}
    for doc_id, doc in failed.items():
        click.echo(f"{ids[doc_id]}: failed: {doc['error']}", err=True)
    click.echo(f"{len(final) - len(failed)} ready, {len(failed)} failed"
               + (f", {len(unfinished)} not finished after {timeout:g} s" if unfinished else ""))
    if failed or unfinished:
        sys.exit(1)


@click.command()
@click.argument("question")
@url_opt
@key_opt
@click.option("--json", "as_json", is_flag=True, help="print the raw JSON response")
def ask(question: str, url: str | None, api_key: str | None, as_json: bool) -> None:
    """Ask a question and print the answer with its citations."""
    result = client_for(url, api_key).ask(question)
    if as_json:
        click.echo(json.dumps(result, indent=2))
        return
    if result["status"] == "not_found":
        click.echo("Not found in your documents.")
        return
    click.echo(result["answer"])
    for c in result["citations"]:
        click.echo(f"  [{c['n']}] {c['filename']} p.{c['page']} ({c['start']}-{c['end']}): "
                   f"\"{c['quote']}\"")


