"""Append-only, hash-chained audit log: who (key id, never the key) did what, as JSON lines.

Every line is one JSON object in canonical form (sorted keys, no spaces, UTF-8)::

    {"event":"search","hash":"…","key_id":"k_…","prev":"…","request_id":"…","seq":7,
     "status":"ok","tenant":"acme","ts":"2025-…Z", …event fields…}

``prev`` is the ``hash`` of the line before (``GENESIS`` for the first line) and ``hash`` is
the SHA-256 of the canonical JSON of the entry without ``hash`` (so it covers ``prev``,
``seq`` and every field). Editing, deleting, reordering or inserting a line breaks the chain
at that line; ``verify`` names the first bad line. A side file ``<log>.head`` holds the
last ``seq`` and ``hash`` written, so cutting whole lines off the end (which leaves a valid
but shorter chain) is detected too.

Limits: the hash is unkeyed, so someone who can write the data dir can rewrite the whole
chain from an edited line onwards, head file included. Copy ``docqa audit verify``'s
printed head (seq + hash) somewhere else from time to time to anchor it. Rotation is not
implemented: the file grows until an operator moves it (and its ``.head``) aside; a new
chain then starts.

Several API processes may append at once: each append takes an exclusive ``flock`` on the
log, re-reads the last line if the file changed since this process last wrote, appends
one line in one ``write``, ``fsync``s it and then updates the head file, so the chain
stays linear. A log whose last line is incomplete or unreadable is not appended to
(``AuditUnavailableError``): an operator has to look at it first.

What goes in is decided by the caller (``service/api/``): ids, counts and statuses, never
document text. Query and question text only when ``audit.include_text`` is set
(``text_field``); by default only their length.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import re
import stat
import threading
import uuid
from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from core.errors import TransientError

_log = logging.getLogger("docqa.audit")
GENESIS = "0" * 64
_HEAD_FORMAT = "{seq:020d} {hash}\n"  # fixed width: rewritten in place with one pwrite
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
RESERVED = ("seq", "ts", "event", "tenant", "key_id", "request_id", "prev", "hash")


class AuditUnavailableError(TransientError):
    """The audit log could not be written; the request is refused (fail closed)."""

    title = "Audit log unavailable"


def canonical(entry: dict[str, Any]) -> bytes:
    """The exact bytes that are hashed and written (without the trailing newline)."""
    return json.dumps(entry, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False).encode("utf-8")


def entry_hash(entry: dict[str, Any]) -> str:
    """SHA-256 of the canonical JSON of ``entry`` without its ``hash`` field."""
    body = {k: v for k, v in entry.items() if k != "hash"}
    return hashlib.sha256(canonical(body)).hexdigest()


def head_path(path: Path) -> Path:
    return path.with_name(path.name + ".head")


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class AuditLog:
    """One audit log file, safe to append to from several threads and processes."""

    def __init__(self, path: Path, include_text: bool = False) -> None:
        self.path = Path(path)
        self.head = head_path(self.path)
        self.include_text = include_text
        self._lock = threading.Lock()
        # (inode, size) of the file right after our last append, and the chain state then
        self._cached: tuple[int, int] | None = None
        self._seq = 0
        self._hash = GENESIS
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            os.close(self._open())
        except OSError as exc:
            raise AuditUnavailableError(f"cannot open audit log {self.path}: {exc}") from exc

    def text_field(self, name: str, text: str) -> dict[str, Any]:
        """``{name: text}`` when text is to be recorded, else only ``{name_chars: len}``."""
        return {name: text} if self.include_text else {f"{name}_chars": len(text)}

    def append(self, event: str, *, tenant: str | None = None, key_id: str | None = None,
               request_id: str | None = None, **fields: Any) -> dict[str, Any]:
        """Append one entry and return it (with ``seq``, ``prev`` and ``hash``).

        Raises:
            AuditUnavailableError: the entry could not be made durable.
        """
        clash = set(fields) & set(RESERVED)
        if clash:
            raise ValueError(f"reserved audit fields: {sorted(clash)}")
        with self._lock:
            try:
                fd = self._open()
            except OSError as exc:
                raise AuditUnavailableError(f"cannot open audit log: {exc}") from exc
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                st = os.fstat(fd)
                if self._cached != (st.st_ino, st.st_size):
                    self._seq, self._hash = _read_tail(fd, st.st_size)
                entry = {
                    **fields, "event": event, "tenant": tenant, "key_id": key_id,
                    "request_id": request_id, "seq": self._seq + 1, "ts": utc_now(),
                    "prev": self._hash,
                }
                entry["hash"] = entry_hash(entry)
                line = canonical(entry) + b"\n"
                written = os.write(fd, line)
                if written != len(line):
                    raise OSError(f"short write ({written} of {len(line)} bytes)")
                os.fsync(fd)
                self._seq, self._hash = entry["seq"], entry["hash"]
                self._cached = (st.st_ino, st.st_size + len(line))
                self._write_head()
                return entry
            except AuditUnavailableError:
                self._cached = None
                raise
            except (OSError, ValueError, TypeError) as exc:
                self._cached = None
                raise AuditUnavailableError(f"cannot write audit log: {exc}") from exc
            finally:
                os.close(fd)  # also releases the flock

    def _open(self) -> int:
        fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
        if stat.S_IMODE(os.fstat(fd).st_mode) & 0o077:
            os.fchmod(fd, 0o600)
        return fd

    def _write_head(self) -> None:
        """Record the last seq and hash. Called under the lock, after the line is fsync'd:
        the head may lag the log after a crash (allowed) but never runs ahead of it."""
        fd = os.open(self.head, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            os.pwrite(fd, _HEAD_FORMAT.format(seq=self._seq, hash=self._hash).encode(), 0)
        finally:
            os.close(fd)


def _read_tail(fd: int, size: int) -> tuple[int, str]:
    """(seq, hash) of the last line of the log open as ``fd``; (0, GENESIS) when empty."""
    if size == 0:
        return 0, GENESIS
    block = 4096
    while True:
        start = max(0, size - block)
        data = os.pread(fd, size - start, start)
        if not data.endswith(b"\n"):
            raise AuditUnavailableError(
                "audit log ends with an incomplete line; run 'docqa audit verify'")
        cut = data.rfind(b"\n", 0, len(data) - 1)
        if cut >= 0 or start == 0:
            last = data[cut + 1:-1]
            break
        block *= 4
    try:
        entry = json.loads(last)
        seq, digest = entry["seq"], entry["hash"]
        if not isinstance(seq, int) or not isinstance(digest, str) or not _HEX64.match(digest):
            raise ValueError("bad seq or hash")
    except (ValueError, KeyError, TypeError) as exc:
        raise AuditUnavailableError(
            f"audit log's last line is unreadable ({exc}); run 'docqa audit verify'") from exc
    return seq, digest


# ---------------------------------------------------------------- verification


@dataclass(frozen=True)
class VerifyResult:
    ok: bool
    lines: int  # lines read (all of them when ok)
    bad_line: int | None = None  # 1-based number of the first bad line
    reason: str = ""
    last_seq: int = 0
    last_hash: str = GENESIS

    def message(self, path: Path) -> str:
        if self.ok:
            return (f"OK: {path}: {self.lines} entries, chain intact "
                    f"(head seq {self.last_seq}, hash {self.last_hash})")
        where = f"line {self.bad_line}: " if self.bad_line else ""
        return f"TAMPERED: {path}: {where}{self.reason}"


def verify(path: Path) -> VerifyResult:
    """Check the whole chain of the log at ``path`` (and its head file, when present).

    Detects an edited line (hash mismatch or non-canonical bytes), a deleted, reordered or
    inserted line (seq / prev mismatch), an incomplete last line, and whole lines cut off
    the end (shorter than the head file records).
    """
    path = Path(path)
    head = _read_head(head_path(path))
    if isinstance(head, VerifyResult):
        return head
    if not path.exists():
        if head is None:
            return VerifyResult(False, 0, None, f"no audit log at {path}")
        return VerifyResult(False, 0, 1, f"log missing but its head records seq {head[0]}")
    prev, n, head_seen = GENESIS, 0, None
    with path.open("rb") as fh:
        for n, raw in enumerate(fh, start=1):
            reason, digest = _check_line(raw, n, prev)
            if reason:
                return VerifyResult(False, n - 1, n, reason, n - 1, prev)
            prev = digest
            if head is not None and n == head[0]:
                head_seen = digest
    if head is not None:
        head_seq, head_hash = head
        if head_seq > n:
            return VerifyResult(False, n, n + 1,
                                f"truncated: the head records seq {head_seq} but the log ends "
                                f"at seq {n}", n, prev)
        if head_seq and head_seen != head_hash:
            return VerifyResult(False, n, head_seq,
                                f"head hash differs from line {head_seq}'s hash", n, prev)
    return VerifyResult(True, n, None, "", n, prev)


def _check_line(raw: bytes, n: int, prev: str) -> tuple[str, str]:
    """("", the line's hash) when line ``n`` is intact and follows ``prev``, else (why, "")."""
    if not raw.endswith(b"\n"):
        return "incomplete last line (truncated tail)", ""
    body = raw[:-1]
    try:
        entry = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return "not valid JSON", ""
    if not isinstance(entry, dict):
        return "not a JSON object", ""
    if not isinstance(entry.get("hash"), str) or not isinstance(entry.get("seq"), int):
        return "missing seq or hash", ""
    try:
        if canonical(entry) != body:
            return "bytes differ from the entry's canonical form (edited)", ""
    except ValueError:
        return "not canonical JSON", ""
    if entry_hash(entry) != entry["hash"]:
        return "hash does not match the entry (edited)", ""
    if entry["seq"] != n:
        return (f"seq {entry['seq']} where {n} was expected "
                "(line deleted, inserted or reordered)"), ""
    if entry.get("prev") != prev:
        return "prev does not match the previous line's hash (line deleted, inserted or " \
            "reordered)", ""
    return "", entry["hash"]


def _read_head(path: Path) -> tuple[int, str] | VerifyResult | None:
    try:
        text = path.read_text(encoding="ascii")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        return VerifyResult(False, 0, None, f"head file {path} unreadable: {exc}")
    seq_s, _, digest = text.strip().partition(" ")
    if not seq_s.isdigit() or not _HEX64.match(digest):
        return VerifyResult(False, 0, None, f"head file {path} is malformed")
    return int(seq_s), digest


def tail(path: Path, n: int = 10) -> list[str]:
    """The last ``n`` lines of the log (as text)."""
    with Path(path).open(encoding="utf-8", errors="replace") as fh:
        return [line.rstrip("\n") for line in deque(fh, maxlen=n)]


_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")


def request_id(header: str | None) -> str:
    """The caller's ``X-Request-ID`` when it is a plain token of at most 64 characters,
    else a fresh random id."""
    if header and _REQUEST_ID.match(header):
        return header
    return uuid.uuid4().hex


class RequestAudit:
    """The audit log bound to one request's tenant, key id and request id.

    ``record`` is fail-closed: when the entry cannot be written it logs an error and raises
    ``AuditUnavailableError`` (503), so the caller does not get a response that is not
    on record. ``failed`` records a request that is failing anyway; it never raises (the
    original error is what the client gets) but logs an error when it cannot write.
    """

    def __init__(self, log: AuditLog | None, tenant: str | None, key_id: str,
                 request_id: str) -> None:
        self.log = log
        self.tenant = tenant
        self.key_id = key_id
        self.request_id = request_id

    def text(self, name: str, text: str) -> dict[str, Any]:
        if self.log is None:
            return {}
        return self.log.text_field(name, text)

    def record(self, event: str, **fields: Any) -> None:
        if self.log is None:
            return
        try:
            self.log.append(event, tenant=self.tenant, key_id=self.key_id,
                            request_id=self.request_id, **fields)
        except AuditUnavailableError as exc:
            _log.error("audit entry not written, request refused (event=%s tenant=%s "
                       "key_id=%s request_id=%s): %s", event, self.tenant, self.key_id,
                       self.request_id, exc.detail)
            raise

    def failed(self, event: str, exc: Exception, **fields: Any) -> None:
        status = getattr(exc, "status_code", 500)
        try:
            self.record(event, status="error", http_status=status, **fields)
        except AuditUnavailableError:
            pass  # logged by record; the request fails with its own error


def open_audit(settings: Any) -> AuditLog | None:
    """The configured audit log, or None when ``audit.enabled`` is false."""
    if not settings.audit.enabled:
        return None
    return AuditLog(settings.audit_path, include_text=settings.audit.include_text)
