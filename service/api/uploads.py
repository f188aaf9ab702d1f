"""The multipart body of ``POST /v1/documents``, read as it streams in.

Litestar's own form parsing hands the handler an ``UploadFile``, which spools a file part
larger than 1 MiB to ``$TMPDIR`` in plaintext before any of our code sees it. Here the body is
parsed as it arrives (``multipart``'s push parser, the one Litestar uses underneath) and the
file part is handed out block by block through :meth:`MultipartUpload.read`, which
``DocumentService.stage`` writes straight into the vault's encrypting writer while it counts
the size limit. The other fields (``metadata``, ``redact_pii``) are small and kept in memory.

The form contract is Litestar's: one ``file`` part (a file name is optional), optional
``metadata`` (a JSON object as text) and ``redact_pii`` (``true``/``false``/``1``/``0``),
fields in any order, unknown fields ignored. ``redact_pii`` replaces personal data by typed
placeholders before anything is stored (docs/pii.md); a tenant with redaction
forced on (``DOCQA_PII__*``) cannot turn it off.
"""

from __future__ import annotations

from collections import deque
from collections.abc import AsyncIterator
from typing import Any

from multipart import MultipartError, MultipartSegment, PushMultipartParser

from core.errors import BadInputError, PayloadTooLargeError

FILE_FIELD = "file"
MAX_FIELD_BYTES = 64 * 1024  # a text field; metadata has its own, smaller limit
MAX_PARTS = 32
_TRUE, _FALSE = {"true", "1"}, {"false", "0"}
_END = object()


class MultipartUpload:
    """One upload form. :meth:`start_file` reads up to the file part, :meth:`read` then
    returns its bytes as they arrive (``b""`` at its end), :meth:`finish` reads the rest;
    :attr:`fields` holds the text fields seen."""

    def __init__(self, content_type: tuple[str, dict[str, str]],
                 body: AsyncIterator[bytes]) -> None:
        media, options = content_type
        boundary = options.get("boundary", "")
        if media != "multipart/form-data" or not boundary:
            raise BadInputError("the upload must be multipart/form-data with a boundary, "
                                "the document in its 'file' field")
        try:
            self._parser = PushMultipartParser(boundary, max_segment_count=MAX_PARTS)
        except MultipartError as exc:
            raise BadInputError(f"the multipart boundary is not valid: {exc}") from None
        self._body = body
        self._events: deque[Any] = deque()
        self._segment: MultipartSegment | None = None
        self._value = bytearray()
        self._in_file = False
        self._file_seen = False
        self.filename: str | None = None
        self.fields: dict[str, str] = {}

    async def _next(self) -> Any:
        while not self._events:
            if self._parser.closed:
                return _END
            chunk = await anext(self._body, b"")
            try:  # each chunk's events are taken at once: the parser wants its generator drained
                self._events.extend(self._parser.parse(chunk))
            except MultipartError as exc:
                raise BadInputError(f"the multipart body is malformed: {exc}") from None
            if not chunk and not self._events and not self._parser.closed:
                raise BadInputError("the multipart body ended early")
        return self._events.popleft()

    async def _step(self) -> bytes | None:
        """Handle one parser event; file bytes are returned, the end of the file part is
        ``b""``, anything else ``None``. The end of the body raises :class:`EOFError`."""
        event = await self._next()
        if event is _END:
            raise EOFError
        if isinstance(event, MultipartSegment):
            self._segment, self._value = event, bytearray()
            if event.name == FILE_FIELD:
                if self._file_seen:
                    raise BadInputError("the upload has more than one 'file' field")
                self._in_file = self._file_seen = True
                self.filename = event.filename
            return None
        if event is None:  # the end of a part
            segment, self._segment = self._segment, None
            if self._in_file:
                self._in_file = False
                return b""
            if segment is not None and segment.name:
                try:
                    self.fields[segment.name] = self._value.decode(segment.charset or "utf-8")
                except (UnicodeDecodeError, LookupError):
                    raise BadInputError(
                        f"the form field {segment.name[:64]!r} is not valid text") from None
            return None
        if self._in_file:
            return bytes(event)
        self._value += event
        if len(self._value) > MAX_FIELD_BYTES:
            name = self._segment.name if self._segment is not None else ""
            raise PayloadTooLargeError(
                f"the form field {name[:64]!r} is larger than {MAX_FIELD_BYTES // 1024} KiB")
        return None

    async def start_file(self) -> None:
        """Read the fields before the file part, up to its first byte."""
        try:
            while not self._in_file:
                await self._step()
        except EOFError:
            raise BadInputError(f"the upload has no '{FILE_FIELD}' field") from None

    async def read(self, _size: int = -1) -> bytes:
        """The file part's next block as it arrived; ``b""`` at its end."""
        while self._in_file:
            try:
                block = await self._step()
            except EOFError:
                raise BadInputError("the multipart body ended inside the file") from None
            if block is not None:
                return block
        return b""

    async def finish(self) -> None:
        """Read the fields after the file part, to the end of the body."""
        try:
            while True:
                await self._step()
        except EOFError:
            return

    def flag(self, name: str) -> bool:
        raw = self.fields.get(name, "").strip().lower()
        if raw in _TRUE:
            return True
        if raw in _FALSE or raw == "":
            return False
        raise BadInputError(f"the form field {name!r} must be true or false, not {raw[:20]!r}")
