"""``docqa ingest``: upload files and folders, follow each document until it is ready.

Which files: every file under the folders given (and the files given), minus hidden ones
(a name starting with ``.``, or under such a folder) unless ``--hidden``, narrowed by
``--include`` and ``--exclude`` globs. An upload the API refuses (empty, too large, an
unsupported type, a hostile DOCX...) is *rejected*: named on stderr, counted, and the others
go on. Exit 1 when a file was rejected, failed or did not finish (errors.py).
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from pathlib import Path, PurePosixPath
from typing import Any

import click
from rich.progress import (
    BarColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from service.cli.common import client_for, key_opt, parse_metadata, url_opt
from service.cli.errors import FAILED, REFUSED_STATUSES, api_error_text, one_line
from service.client import DocqaAPIError, DocqaClient

# ---------------------------------------------------------------- which files


def _matches(rel: PurePosixPath, patterns: Iterable[str]) -> bool:
    """A glob matches the path relative to the folder given (``*`` crosses ``/``:
    ``*.pdf`` matches at any depth) or the file's name alone."""
    return any(fnmatchcase(str(rel), p) or fnmatchcase(rel.name, p) for p in patterns)


def collect_files(paths: Iterable[Path], include: tuple[str, ...] = (),
                  exclude: tuple[str, ...] = (), hidden: bool = False) -> list[Path]:
    """The files to upload, in order: each path given, a folder walked in sorted order.

    A file given by name is taken even when hidden; inside folders, names starting with
    ``.`` (files and folders) are skipped unless ``hidden``. ``exclude`` drops a file, or a
    whole folder, whose relative path or name matches; ``include`` (when given) keeps only
    files that match one of its globs. Symbolic links to folders are not followed."""
    files: list[Path] = []
    seen: set[Path] = set()

    def take(path: Path, rel: PurePosixPath) -> None:
        if include and not _matches(rel, include):
            return
        if _matches(rel, exclude) or path.resolve() in seen:
            return
        seen.add(path.resolve())
        files.append(path)

    for given in paths:
        if not given.is_dir():
            take(given, PurePosixPath(given.name))
            continue
        for root, dirs, names in os.walk(given):
            base = PurePosixPath(Path(root).relative_to(given).as_posix())
            dirs[:] = sorted(d for d in dirs if (hidden or not d.startswith("."))
                             and not _matches(base / d, exclude))
            for name in sorted(names):
                if hidden or not name.startswith("."):
                    take(Path(root) / name, base / name)
    return files


# ---------------------------------------------------------------- ingest progress

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
    return _RichIngestView(names) if sys.stdout.isatty() else _PlainIngestView(names)


def _follow_all(client: DocqaClient, names: dict[str, str], timeout: float
                ) -> dict[str, dict[str, Any]]:
    """Follow every document's progress in one event stream per 1,000 documents
    (``DocqaClient.follow``): a bar (or lines) for a document once it leaves the queue, a
    line when it ends.

    A document gone meanwhile ends ``failed``; one not finished within ``timeout`` is named
    and left out of the result. Any other error is the service's, not the document's
    (unreachable, key revoked, 5xx): it is raised, for the command's exit code (errors.py)."""
    final: dict[str, dict[str, Any]] = {}
    shown: set[str] = set()
    view = _ingest_view(names)

    def show(doc_id: str) -> None:
        if doc_id not in shown:
            shown.add(doc_id)
            view.begin(doc_id)

    try:
        try:
            for ev in client.follow(list(names), timeout=timeout):
                if ev.event == "progress" and ev.document is not None:
                    if ev.document["status"] != "queued" or ev.id in shown:
                        show(ev.id)
                        view.update(ev.id, dict(ev.document))
                    continue
                show(ev.id)
                final[ev.id] = (dict(ev.document) if ev.document is not None else
                                {"status": "failed", "error": "deleted while it was ingested"})
                view.end(ev.id, one_line(_outcome_text(final[ev.id])))
        except TimeoutError:
            for doc_id in names:
                if doc_id not in final:
                    show(doc_id)
                    view.end(doc_id, f"not finished after {timeout:g} s")
    finally:
        view.close()
    return final


@dataclass
class _Uploads:
    """What became of each file: a document id (several files may share one: same bytes),
    or the API's refusal."""

    accepted: list[tuple[Path, str]] = field(default_factory=list)
    rejected: list[tuple[Path, DocqaAPIError]] = field(default_factory=list)


def _upload_all(client: DocqaClient, files: list[Path], metadata: dict[str, Any],
                redact_pii: bool) -> _Uploads:
    """Upload the files in order. A refusal of the file itself (400, 409, 413, 415, 422)
    is named on stderr and the others go on; any other error (the key, the service) ends
    the command (an upload already accepted is ingested all the same)."""
    done = _Uploads()
    off_the_bar = "\n" if sys.stdout.isatty() else ""  # a line of its own below the bar
    with click.progressbar(files, label="uploading", show_pos=True) as bar:
        for f in bar:
            try:
                accepted = client.upload(f, metadata=metadata or None,
                                         redact_pii=True if redact_pii else None)
            except DocqaAPIError as exc:
                if exc.status not in REFUSED_STATUSES:
                    raise
                done.rejected.append((f, exc))
                click.echo(f"{off_the_bar}{f}: rejected: "
                           f"{one_line(api_error_text(exc))}", err=True)
                continue
            except OSError as exc:  # unreadable (permissions, vanished meanwhile)
                raise click.FileError(str(f), hint=exc.strerror or str(exc)) from None
            done.accepted.append((f, accepted["id"]))
    return done


@click.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@url_opt
@key_opt
@click.option("--metadata", "metadata_pairs", multiple=True, metavar="KEY=VALUE",
              help="metadata of every file uploaded (repeatable; KEY:=JSON for a number, "
              "true/false or a list); ask and search filter on it (--filter KEY=VALUE)")
@click.option("--include", multiple=True, metavar="GLOB",
              help="only files whose path (relative to the folder given) or name matches "
              "(repeatable: any of them)")
@click.option("--exclude", multiple=True, metavar="GLOB",
              help="skip files and folders whose relative path or name matches (repeatable)")
@click.option("--hidden", is_flag=True,
              help="also upload hidden files and folders' contents (names starting with '.')")
@click.option("--timeout", default=3600.0, show_default=True,
              help="seconds to wait for all documents to be ready")
@click.option("--redact-pii", is_flag=True,
              help="replace e-mails, phones, IBANs, cards and ID numbers by placeholders")
def ingest(paths: tuple[Path, ...], url: str | None, api_key: str | None,
           metadata_pairs: tuple[str, ...], include: tuple[str, ...], exclude: tuple[str, ...],
           hidden: bool, timeout: float, redact_pii: bool) -> None:
    """Upload files or folders and follow each one until it is ready.

    On a terminal: a bar per file being processed (stage, pages or chunks) and an overall
    one (files finished, ETA). Piped: plain progress lines. Then `N ready, M failed` (and
    `R rejected`, `U not finished` when there are). A file the API refuses is named on
    stderr and counted. Exit 1 if any file was rejected, failed or did not finish, or no
    file was selected.
    """
    metadata = parse_metadata(metadata_pairs)
    files = collect_files(paths, include, exclude, hidden)
    if not files:
        click.echo("no files to upload (hidden files are skipped without --hidden; "
                   "check --include/--exclude)", err=True)
        sys.exit(FAILED)
    with client_for(url, api_key) as client:
        uploads = _upload_all(client, files, metadata, redact_pii)
        names: dict[str, str] = {}
        for path, doc_id in uploads.accepted:
            names.setdefault(doc_id, str(path))  # same bytes twice: followed once
        final = _follow_all(client, names, timeout)
    ready = failed = unfinished = 0
    for path, doc_id in uploads.accepted:
        doc = final.get(doc_id)
        if doc is None:
            unfinished += 1
        elif doc["status"] == "failed":
            failed += 1
            click.echo(f"{path}: failed: {one_line(doc.get('error') or 'unknown error')}",
                       err=True)
        else:
            ready += 1
    rejected = len(uploads.rejected)
    click.echo(f"{ready} ready, {failed} failed"
               + (f", {rejected} rejected" if rejected else "")
               + (f", {unfinished} not finished after {timeout:g} s" if unfinished else ""))
    if failed or rejected or unfinished:
        sys.exit(FAILED)
