"""Type detection of uploads by their bytes (ingest/detect.py)."""

from pathlib import Path

import pytest

from core.domain import DocumentKind
from core.errors import ParseError, UnsupportedMediaError
from core.settings import LimitSettings
from ingest.detect import sniff_bytes, sniff_kind
from tests import hostile as h

DOCX = DocumentKind.DOCX


def _write(tmp_path: Path, name: str, data: bytes) -> Path:
    p = tmp_path / name
    p.write_bytes(data)
    return p


@pytest.mark.parametrize(
    ("name", "data", "kind"),
    [("a.pdf", b"%PDF-1.7 ...", DocumentKind.PDF), ("notes", b"plain words", DocumentKind.TEXT),
     ("a.csv", b"a,b\n1,2", DocumentKind.CSV), ("x.htm", b"<p>x</p>", DocumentKind.HTML)],
)
def test_sniffing_accepts_supported_types(name: str, data: bytes, kind: DocumentKind) -> None:
    assert sniff_bytes(name, data) is kind


@pytest.mark.parametrize(
    ("name", "data"),
    [("a.exe", b"MZ\x90\x00"), ("a.txt", b"\x7fELF\x02"), ("a.pdf", b"not a pdf"),
     ("a.txt", b"%PDF-1.4"), ("a.zip", b"PK\x03\x04junk"), ("a.bin", b"hello")],
)
def test_sniffing_rejects_mismatched_or_executable_content(name: str, data: bytes) -> None:
    with pytest.raises(UnsupportedMediaError):
        sniff_bytes(name, data)


def test_upload_sniffing_refuses_zip_bombs_with_422(tmp_path: Path) -> None:
    err = ParseError("x")
    assert err.status_code == 422
    with pytest.raises(ParseError, match="fold"):
        sniff_kind("a.docx", b"PK\x03\x04", _write(tmp_path, "b.docx", h.docx_zip_bomb(8)))
    ok = _write(tmp_path, "ok.docx", h.base_docx())
    assert sniff_kind("ok.docx", ok.read_bytes()[:8192], ok, LimitSettings()) is DOCX
