"""Text extraction per format (ingest/readers.py): PDF pages, HTML, CSV, DOCX, Markdown."""

import socket
from pathlib import Path
from typing import Any

import pytest

from core.domain import DocumentKind
from core.errors import ParseError
from ingest.readers import full_text, read_document
from tests.factories import make_docx, make_pdf


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


# ---------------------------------------------------------------- hostile HTML, Markdown


def test_html_with_a_dtd_and_external_entities_fetches_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_network(*_: Any, **__: Any) -> None:
        raise AssertionError("the HTML reader tried to open a connection")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    html = (b'<!DOCTYPE html [<!ENTITY xxe SYSTEM "http://127.0.0.1:9/x">'
            b'<!ENTITY lol "lollollol">]><html><body><p>Visible &xxe; &lol; text</p>'
            b'<img src="http://127.0.0.1:9/p.png"><link rel="stylesheet" href="http://x/y.css">'
            b"</body></html>")
    text = full_text(read_document(_write(tmp_path, "a.html", html), DocumentKind.HTML))
    assert "Visible" in text and "lollollol" not in text


def test_markdown_that_would_backtrack_quadratically_parses_quickly(tmp_path: Path) -> None:
    data = b"# Title\n" + b"\n" * 300_000 + b"[" * 300_000 + b"![" * 100_000 + b"[a](" * 50_000
    text = full_text(read_document(_write(tmp_path, "a.md", data), DocumentKind.MARKDOWN))
    assert text.startswith("Title")
    md = b"# Head\n\n- item\n> quote\nSome **bold** [link](http://x) ![img](i.png) `code`."
    assert full_text(read_document(_write(tmp_path, "b.md", md), DocumentKind.MARKDOWN)) == (
        "Head\n\nitem\nquote\nSome bold link img code.")
