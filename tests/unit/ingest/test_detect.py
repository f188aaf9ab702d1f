"""Type detection of uploads by their bytes (ingest/detect.py)."""

import pytest

from core.domain import DocumentKind
from core.errors import UnsupportedMediaError
from ingest.detect import sniff_bytes


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
