"""Safety checks for hostile documents: ZIP (DOCX) bombs, XML DTDs, PDF bombs.

``limits`` is anything with the attributes of ``core.settings.LimitSettings`` (the
parsing child receives them as a ``SimpleNamespace`` so that it need not import pydantic).
Every check raises ``ParseError`` with a reason a person can act on.
"""

from __future__ import annotations

import contextlib
import dataclasses
import struct
import zipfile
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Any

from core.errors import ParseError

RATIO_GRACE_BYTES = 1024 * 1024  # members (and archives) smaller than this skip the ratio test
CD_BYTES_PER_MEMBER = 1024  # generous central-directory budget per allowed member
ALLOWED_COMPRESSION = {zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED}
EMBEDDINGS_DIR = "word/embeddings/"  # OLE packages (charts' workbooks): kept, never opened
_ARCHIVE_MAGIC = (
    b"PK\x03\x04", b"PK\x05\x06", b"PK\x07\x08", b"\x1f\x8b", b"BZh", b"\xfd7zXZ\x00",
    b"7z\xbc\xaf\x27\x1c", b"Rar!\x1a\x07", b"\x28\xb5\x2f\xfd",
)
_ARCHIVE_SUFFIXES = (".zip", ".gz", ".tgz", ".bz2", ".xz", ".7z", ".rar", ".zst", ".tar", ".jar")
# A DTD is how XML entity bombs and external entities get in; a DOCX never needs one.
# Matched lower-cased, in every encoding an XML parser detects without a declaration, and
# in UTF-7 ("+ADw-" is "<"). Text that mentions "<!DOCTYPE" is stored as "&lt;!DOCTYPE".
_DTD_WORDS = ("<!doctype", "<!entity")
_DTD_PATTERNS = tuple(
    word.encode(enc)
    for word in _DTD_WORDS
    for enc in ("utf-8", "utf-16-le", "utf-16-be", "utf-32-le", "utf-32-be")
) + (b"+adw-!doctype", b"+adw-!entity")
_OVERLAP = max(len(p) for p in _DTD_PATTERNS)
_READ_BLOCK = 1 << 20


def _mib(n: float) -> str:
    return f"{n / (1024 * 1024):.0f} MiB" if n >= 1024 * 1024 else f"{int(n)} bytes"


# ---------------------------------------------------------------- ZIP / DOCX


def zip_declared_entries(path: Path) -> tuple[int, int]:
    """Read the end-of-central-directory record: (entries, central directory bytes).

    Cheap and bounded (reads at most the last 64 KiB), so a ZIP with a million members
    is refused before ``zipfile`` builds a million objects.

    Raises:
        ParseError: no end-of-central-directory record (not a readable ZIP).
    """
    size = path.stat().st_size
    with path.open("rb") as fh:
        tail_len = min(size, 22 + 65535)
        fh.seek(size - tail_len)
        tail = fh.read(tail_len)
        at = tail.rfind(b"PK\x05\x06")
        if at < 0 or len(tail) - at < 22:
            raise ParseError("the ZIP/DOCX container is damaged (no central directory)")
        (_sig, _disk, _cd_disk, _n_disk, entries, cd_size, _cd_off,
         _clen) = struct.unpack("<4s4H2LH", tail[at:at + 22])
        # ZIP64: the real counts live in the zip64 end record, found through its locator
        loc = at - 20
        if loc >= 0 and tail[loc:loc + 4] == b"PK\x06\x07":
            (_s, _d, rec_off, _t) = struct.unpack("<4sLQL", tail[loc:loc + 20])
            if 0 <= rec_off < size:
                fh.seek(rec_off)
                rec = fh.read(56)
                if len(rec) == 56 and rec[:4] == b"PK\x06\x06":
                    entries64, cd_size64 = struct.unpack("<QQ", rec[32:48])
                    entries, cd_size = max(entries, entries64), max(cd_size, cd_size64)
    return entries, cd_size


def _odd_name(name: str) -> str | None:
    if not name or "\x00" in name or any(ord(ch) < 32 for ch in name):
        return "a control character"
    if "\\" in name:
        return "a backslash"
    if name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        return "an absolute path"
    parts = PurePosixPath(name).parts
    if ".." in parts or "." in name.split("/") or "//" in name:
        return "a '..' or empty path component"
    return None


def check_zip(path: Path, limits: Any) -> None:
    """Refuse ZIP bombs and odd archives using only the central directory (no decompression).

    Checks: member count (before ``zipfile`` reads the directory), member names (absolute,
    ``..``, backslashes, control characters, duplicates), encryption, compression method,
    total uncompressed size, compression ratio per member and for the whole file, and
    archives nested inside it (by name; by content in ``scan_zip``).

    Raises:
        ParseError: the archive breaks one of these rules.
    """
    max_members = limits.zip_max_members
    entries, cd_size = zip_declared_entries(path)
    if entries > max_members:
        raise ParseError(f"the DOCX (ZIP) has {entries} members; the limit is {max_members}")
    if cd_size > max_members * CD_BYTES_PER_MEMBER:  # the count field can lie; the size bounds it
        raise ParseError(f"the DOCX (ZIP) directory is {cd_size} bytes, more than "
                         f"{max_members} members need; the limit is {max_members} members")
    try:
        with zipfile.ZipFile(path) as zf:
            infos = zf.infolist()
    except (zipfile.BadZipFile, OSError, ValueError, NotImplementedError) as exc:
        raise ParseError(f"the ZIP/DOCX container is damaged: {exc}") from exc
    if len(infos) > max_members:
        raise ParseError(f"the DOCX (ZIP) has {len(infos)} members; the limit is {max_members}")
    seen: set[str] = set()
    total = 0
    for info in infos:
        name = info.filename
        why = _odd_name(name)
        if why:
            raise ParseError(f"the DOCX (ZIP) has a member name with {why}: {name[:80]!r}")
        if name in seen:
            raise ParseError(f"the DOCX (ZIP) holds {name[:80]!r} twice")
        seen.add(name)
        if info.flag_bits & 0x1:
            raise ParseError("the DOCX (ZIP) has encrypted members")
        if info.compress_type not in ALLOWED_COMPRESSION:
            raise ParseError(
                f"the DOCX (ZIP) member {name[:80]!r} uses an unsupported compression method "
                f"({info.compress_type}); only stored and deflate are accepted")
        if name.lower().endswith(_ARCHIVE_SUFFIXES) and not name.startswith(EMBEDDINGS_DIR):
            raise ParseError(f"the DOCX (ZIP) contains another archive: {name[:80]!r}")
        size = info.file_size
        if size > RATIO_GRACE_BYTES and size > limits.zip_max_ratio * max(info.compress_size, 1):
            ratio = size / max(info.compress_size, 1)
            raise ParseError(
                f"the DOCX (ZIP) member {name[:80]!r} expands {ratio:.0f}-fold (limit "
                f"{limits.zip_max_ratio:g}); refusing a likely ZIP bomb")
        total += size
        if total > limits.zip_max_uncompressed_bytes:
            raise ParseError(
                f"the DOCX (ZIP) expands to more than {_mib(limits.zip_max_uncompressed_bytes)}"
                " (limit); refusing a likely ZIP bomb")
    archive_size = max(path.stat().st_size, 1)
    if total > RATIO_GRACE_BYTES and total > limits.zip_max_ratio * archive_size:
        raise ParseError(
            f"the DOCX (ZIP) expands {total / archive_size:.0f}-fold overall (limit "
            f"{limits.zip_max_ratio:g}); refusing a likely ZIP bomb")


def scan_zip(path: Path, limits: Any) -> None:
    """Decompress every member once (bounded by ``check_zip``'s limits) and refuse any
    with a DTD (``<!DOCTYPE``/``<!ENTITY``, in UTF-8/16/32 or UTF-7) or that is itself an
    archive.

    Every member is scanned, whatever its name: ``[Content_Types].xml`` decides which
    parts python-docx parses as XML, so a name proves nothing.

    Raises:
        ParseError: a member breaks a rule, or the archive is damaged.
    """
    budget = limits.zip_max_uncompressed_bytes
    try:
        with zipfile.ZipFile(path) as zf:
            for info in zf.infolist():
                if not info.is_dir():
                    with zf.open(info) as member:
                        budget = _scan_member(info.filename, member, budget, limits)
    except ParseError:
        raise
    except (zipfile.BadZipFile, OSError, ValueError, NotImplementedError, EOFError) as exc:
        raise ParseError(f"the ZIP/DOCX container is damaged: {exc}") from exc


def _scan_member(name: str, member: Any, budget: int, limits: Any) -> int:
    """Stream one member; returns the uncompressed budget left."""
    shown = repr(name[:80])
    tail = b""
    first = True
    while block := member.read(_READ_BLOCK):
        budget -= len(block)
        if budget < 0:
            raise ParseError("the DOCX (ZIP) expands to more than "
                             f"{_mib(limits.zip_max_uncompressed_bytes)} (limit)")
        if first:
            first = False
            if block.startswith(_ARCHIVE_MAGIC) and not name.startswith(EMBEDDINGS_DIR):
                raise ParseError(f"the DOCX (ZIP) contains another archive: {shown}")
        window = (tail + block).lower()
        if any(p in window for p in _DTD_PATTERNS):
            raise ParseError(
                f"the DOCX part {shown} declares a DTD (<!DOCTYPE> or <!ENTITY>); refused "
                "because DTDs enable entity-expansion attacks")
        tail = block[-_OVERLAP:]
    return budget


# ---------------------------------------------------------------- PDF


def _pypdf_overrides(limits: Any) -> dict[str, Any]:
    cap = int(limits.pdf_max_stream_bytes)
    return {
        "maximum_declared_stream_length": cap,
        "array_based_stream_maximum_output_length": cap,
        "zlib_maximum_output_length": cap,
        "lzw_maximum_output_length": cap,
        "run_length_maximum_output_length": cap,
        "brotli_maximum_output_length": cap,
        "jbig2_maximum_output_length": cap,
        "image_maximum_buffer_size": cap,
        "jbig2dec_binary": None,  # never run an external decoder on uploaded bytes
    }


@contextlib.contextmanager
def pdf_limits(limits: Any) -> Iterator[None]:
    """Apply the per-stream decompression caps to pypdf for the duration of a parse.

    pypdf ≥ 6 has ``apply_configuration``; older releases read module constants, which are
    set (and restored) instead.
    """
    # pypdf only in the parse sandbox's child: the API imports this module for the ZIP checks
    import pypdf

    wanted = _pypdf_overrides(limits)
    apply = getattr(pypdf, "apply_configuration", None)
    if apply is not None:
        known = {f.name for f in dataclasses.fields(pypdf.Configuration)}
        with apply(**{k: v for k, v in wanted.items() if k in known}):
            yield
        return
    from pypdf import filters  # pragma: no cover - pypdf < 6

    legacy = {"ZLIB_MAX_OUTPUT_LENGTH": wanted["zlib_maximum_output_length"],
              "MAX_DECLARED_STREAM_LENGTH": wanted["maximum_declared_stream_length"],
              "MAX_ARRAY_BASED_STREAM_OUTPUT_LENGTH": wanted["zlib_maximum_output_length"],
              "LZW_MAX_OUTPUT_LENGTH": wanted["zlib_maximum_output_length"],
              "RUN_LENGTH_MAX_OUTPUT_LENGTH": wanted["zlib_maximum_output_length"]}
    saved = {k: getattr(filters, k) for k in legacy if hasattr(filters, k)}
    for k in saved:
        setattr(filters, k, legacy[k])
    try:
        yield
    finally:
        for k, v in saved.items():
            setattr(filters, k, v)


def page_content_bytes(page: Any) -> int:
    """Decompressed size of a page's content streams (pypdf caches the decoded data, so
    the text extraction that follows does not decode them again)."""
    from pypdf.generic import ArrayObject  # the sandbox's child only (see pdf_limits)

    contents = page.get("/Contents")
    if contents is None:
        return 0
    obj = contents.get_object()
    streams = obj if isinstance(obj, ArrayObject) else [obj]
    total = 0
    for stream in streams:
        stream = stream.get_object()
        if hasattr(stream, "get_data"):
            total += len(stream.get_data())
    return total


def too_much_text(limit: int) -> ParseError:
    """The reason a document over ``max_text_chars`` fails: said before any embedding, not
    after a worker spent its whole task time limit on it."""
    return ParseError(
        f"the document holds more than {limit} characters of text, more than one ingest "
        "may embed within the worker's time limit (DOCQA_LIMITS__MAX_TEXT_CHARS); split it "
        "into smaller documents")


def check_text_size(raw_pages: list[str], limits: Any) -> None:
    total = sum(len(p) for p in raw_pages)
    if total > limits.max_text_chars:
        raise too_much_text(limits.max_text_chars)
