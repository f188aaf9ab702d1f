from pathlib import Path

import pytest

from core.domain import DocumentKind, Page, chunk_id
from core.errors import ParseError, UnsupportedMediaError
from ingest.chunking import chunk_pages
from ingest.detect import sniff_bytes
from ingest.readers import full_text, read_document
from tests.factories import make_docx, make_pdf


def test_chunk_ids_are_deterministic_and_content_addressed() -> None:
    assert chunk_id("d", "text", 0) == chunk_id("d", "text", 0)
    assert chunk_id("d", "text", 0) != chunk_id("d", "text!", 0)
    assert chunk_id("d", "text", 0) != chunk_id("d", "text", 1)
    assert chunk_id("d", "text", 0) != chunk_id("e", "text", 0)


def test_chunk_offsets_and_pages_index_the_extracted_text() -> None:
    body = " ".join(f"Sentence {i} is about widget number {i}." for i in range(120))
    pages = [Page(1, body, 0), Page(2, "Second page text. It ends here.", len(body) + 2)]
    chunks = chunk_pages("doc", pages, size=50, overlap=10)
    text = full_text(pages)
    assert len(chunks) > 3
    for c in chunks:
        assert text[c.start : c.end] == c.text
    assert chunks[-1].page == 2 and chunks[0].page == 1
    assert [c.index for c in chunks] == list(range(len(chunks)))
    # running twice gives the same ids: re-ingest is a no-op upsert
    assert [c.id for c in chunk_pages("doc", pages, 50, 10)] == [c.id for c in chunks]


def _write(tmp_path: Path, name: str, data: bytes) -> Path:
    p = tmp_path / name
    p.write_bytes(data)
    return p


def test_pdf_pages_are_numbered(tmp_path: Path) -> None:
    pages = read_document(_write(tmp_path, "a.pdf", make_pdf(["First page.", "Second page."])),
                          DocumentKind.PDF)
    assert [p.number for p in pages] == [1, 2] and "Second page" in pages[1].text


def test_html_drops_scripts_and_keeps_blocks(tmp_path: Path) -> None:
    html = b"<html><script>var s='hidden';</script><h1>Title</h1><p>Body text.</p></html>"
    text = full_text(read_document(_write(tmp_path, "a.html", html), DocumentKind.HTML))
    assert "hidden" not in text and "Title\n\nBody text." in text


def test_csv_rows_become_labelled_sentences(tmp_path: Path) -> None:
    text = full_text(read_document(_write(tmp_path, "a.csv", b"name,badge\nAnna,B-1\n"),
                                   DocumentKind.CSV))
    assert text == "name: Anna; badge: B-1."


def test_docx_and_markdown(tmp_path: Path) -> None:
    docx_text = full_text(read_document(_write(tmp_path, "a.docx", make_docx(["Hello there."])),
                                        DocumentKind.DOCX))
    assert "Hello there." in docx_text
    md = full_text(read_document(_write(tmp_path, "a.md", b"# Head\n\nSome **bold** [link](x)."),
                                 DocumentKind.MARKDOWN))
    assert md == "Head\n\nSome bold link."


def test_unreadable_documents_raise_parse_error(tmp_path: Path) -> None:
    with pytest.raises(ParseError):
        read_document(_write(tmp_path, "b.pdf", b"%PDF-1.4 garbage"), DocumentKind.PDF)
    with pytest.raises(ParseError):
        read_document(_write(tmp_path, "e.txt", b"   \n\n "), DocumentKind.TEXT)


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
