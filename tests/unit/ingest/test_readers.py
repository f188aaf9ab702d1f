"""Text extraction per format (ingest/readers.py): PDF pages, HTML, CSV, DOCX, Markdown, and
the structure each keeps (headings, list items with their lead-in, table rows with their
header, DOCX tables in reading order)."""

import socket
from pathlib import Path
from typing import Any

import pytest

from core.domain import DocumentKind, LineKind, LineMark, Page
from core.errors import ParseError
from ingest.readers import READERS, RawPage, full_text, read_document
from ingest.units import split_units
from tests.factories import make_docx, make_pdf, make_pdf_lines


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


# ---------------------------------------------------------------- structure


def _units(pages: list[Page]) -> list[tuple[str, str, str]]:
    """(kind, quote, context) of every unit of a one-page document."""
    (page,) = pages
    return [(u.kind.value, page.text[u.start:u.end], u.context.describe())
            for u in split_units(page.text, page.marks)]


def test_markdown_keeps_headings_lists_and_tables(tmp_path: Path) -> None:
    md = (b"# Guide\n## Pricing\nThe fee is:\n- Basic: EUR 12/month\n* Pro: EUR 30/month\n"
          b"  billed yearly\n  + discounts on request\n1. Sign up\n\n"
          b"| Plan | Fee |\n|:---|---:|\n| Basic | 12 |\n| Pro | 30 \\| 25 |\n\n"
          b"Support\n-------\nCall **us**.\n\n---\n\n```\n# not a heading\n```\n")
    pages = read_document(_write(tmp_path, "a.md", md), DocumentKind.MARKDOWN)
    assert pages[0].text == (
        "Guide\n\nPricing\n\nThe fee is:\nBasic: EUR 12/month\nPro: EUR 30/month billed yearly\n"
        "discounts on request\n1. Sign up\n\nPlan: Basic | Fee: 12\nPlan: Pro | Fee: 30 | 25\n\n"
        "Support\n\nCall us.\n\n# not a heading")
    assert _units(pages) == [
        ("sentence", "The fee is:", "Guide > Pricing"),
        ("item", "Basic: EUR 12/month", "Guide > Pricing · The fee is:"),
        ("item", "Pro: EUR 30/month billed yearly", "Guide > Pricing · The fee is:"),
        ("item", "discounts on request", "Guide > Pricing · Pro: EUR 30/month billed yearly"),
        ("item", "Sign up", "Guide > Pricing · The fee is:"),
        ("row", "Plan: Basic | Fee: 12", "Guide > Pricing · Plan | Fee"),
        ("row", "Plan: Pro | Fee: 30 | 25", "Guide > Pricing · Plan | Fee"),
        ("sentence", "Call us.", "Guide > Support"),
        ("sentence", "# not a heading", "Guide > Support"),  # code is text
    ]


def test_html_keeps_headings_nested_lists_and_header_labelled_rows(tmp_path: Path) -> None:
    html = (b"<html><head><title>t</title></head><body><h2>Pricing</h2><p>The fee\n is:</p>"
            b"<ul><li>Basic: EUR 12</li><li>Pro<ul><li>yearly <b>300</b></li></ul></li>"
            b"<li><p>Free</p><p>trial</p></ul>"
            b"<table><caption>Fees 2025</caption><thead><tr><th>Plan</th><th>Fee</th></tr></thead>"
            b"<tbody>"
            b"<tr><td>Basic</td><td>12</td></tr><tr><td>Pro</td><td></td></tr></tbody></table>"
            b"<table><tr><th>Owner</th><td>Anna</td></tr></table><p>Line<br>two.</p></body></html>")
    pages = read_document(_write(tmp_path, "a.html", html), DocumentKind.HTML)
    assert pages[0].text == (
        "Pricing\n\nThe fee is:\n\nBasic: EUR 12\nPro\nyearly 300\nFree trial\n\nFees 2025\n\n"
        "Plan: Basic | Fee: 12\nPlan: Pro\n\nOwner | Anna\n\nLine\ntwo.")
    assert _units(pages) == [
        ("sentence", "The fee is:", "Pricing"),
        ("item", "Basic: EUR 12", "Pricing · The fee is:"),
        ("item", "Pro", "Pricing · The fee is:"),
        ("item", "yearly 300", "Pricing · Pro"),
        ("item", "Free trial", "Pricing · The fee is:"),
        ("sentence", "Fees 2025", "Pricing"),  # the caption
        ("row", "Plan: Basic | Fee: 12", "Pricing · Plan | Fee"),
        ("row", "Plan: Pro", "Pricing · Plan | Fee"),
        ("row", "Owner | Anna", "Pricing"),  # th beside td: no header row
        ("sentence", "Line\ntwo.", "Pricing"),
    ]


def _structured_docx() -> bytes:
    import io

    import docx

    d = docx.Document()
    d.add_heading("Vendor agreement", 1)
    d.add_paragraph("The contract renews yearly.")
    d.add_heading("Pricing", 2)
    d.add_paragraph("The fee is:")
    d.add_paragraph("Basic: EUR 12 per month", style="List Bullet")
    d.add_paragraph("Pro: EUR 30 per month", style="List Bullet")
    d.add_paragraph("billed yearly", style="List Bullet 2")
    table = d.add_table(rows=3, cols=3)
    for r, row in enumerate([("Plan", "Fee", "Notice"), ("Basic", "12", "30 days"),
                             ("Pro", "30", "90 days")]):
        for c, value in enumerate(row):
            table.cell(r, c).text = value
    d.add_paragraph("Signed in Malmo.")
    pairs = d.add_table(rows=2, cols=2)  # name | value pairs: no header
    for r, (k, v) in enumerate([("Owner", "Anna"), ("Deputy", "Olof")]):
        pairs.cell(r, 0).text, pairs.cell(r, 1).text = k, v
    bold = d.add_table(rows=2, cols=2)  # a bold first row is a header
    for c, (h, v) in enumerate([("Site", "Lund"), ("Staff", "40")]):
        bold.cell(0, c).paragraphs[0].add_run(h).bold = True
        bold.cell(1, c).text = v
    buf = io.BytesIO()
    d.save(buf)
    return buf.getvalue()


def test_docx_keeps_headings_lists_and_tables_in_reading_order(tmp_path: Path) -> None:
    pages = read_document(_write(tmp_path, "a.docx", _structured_docx()), DocumentKind.DOCX)
    assert pages[0].text == (
        "Vendor agreement\n\nThe contract renews yearly.\n\nPricing\n\nThe fee is:\n\n"
        "Basic: EUR 12 per month\nPro: EUR 30 per month\nbilled yearly\n\n"
        "Plan: Basic | Fee: 12 | Notice: 30 days\nPlan: Pro | Fee: 30 | Notice: 90 days\n\n"
        "Signed in Malmo.\n\nOwner | Anna\nDeputy | Olof\n\nSite: Lund | Staff: 40")
    pricing = "Vendor agreement > Pricing"
    assert _units(pages) == [
        ("sentence", "The contract renews yearly.", "Vendor agreement"),
        ("sentence", "The fee is:", pricing),
        ("item", "Basic: EUR 12 per month", f"{pricing} · The fee is:"),
        ("item", "Pro: EUR 30 per month", f"{pricing} · The fee is:"),
        ("item", "billed yearly", f"{pricing} · Pro: EUR 30 per month"),
        ("row", "Plan: Basic | Fee: 12 | Notice: 30 days", f"{pricing} · Plan | Fee | Notice"),
        ("row", "Plan: Pro | Fee: 30 | Notice: 90 days", f"{pricing} · Plan | Fee | Notice"),
        ("sentence", "Signed in Malmo.", pricing),  # after the table, as in the document
        ("row", "Owner | Anna", pricing),
        ("row", "Deputy | Olof", pricing),
        ("row", "Site: Lund | Staff: 40", f"{pricing} · Site | Staff"),
    ]


def test_pdf_and_text_lists_come_from_their_lines(tmp_path: Path) -> None:
    lines = ["Invoices are sent monthly. The fee is:", "Basic EUR 12 per month",
             "Pro EUR 30 per month", "Conditions:", "- Invoices are due within thirty days of",
             "the invoice date.", "- Late fees apply after that."]
    pdf = read_document(_write(tmp_path, "a.pdf", make_pdf_lines([lines])), DocumentKind.PDF)
    txt = read_document(_write(tmp_path, "a.txt", "\n".join(lines).replace("- ", "• ").encode()),
                        DocumentKind.TEXT)
    expected = [
        ("sentence", "Invoices are sent monthly.", ""),
        ("sentence", "The fee is:", ""),
        ("item", "Basic EUR 12 per month", "The fee is:"),
        ("item", "Pro EUR 30 per month", "The fee is:"),
        ("sentence", "Conditions:", ""),
        ("item", "Invoices are due within thirty days of\nthe invoice date.", "Conditions:"),
        ("item", "Late fees apply after that.", "Conditions:"),
    ]
    assert pdf[0].marks == () and _units(pdf) == expected
    assert _units(txt) == expected


def test_csv_rows_are_marked_with_their_header(tmp_path: Path) -> None:
    pages = read_document(_write(tmp_path, "a.csv", b"name,badge\nAnna,B-1\n\"Olof\nSund\",B-2\n"),
                          DocumentKind.CSV)
    assert pages[0].text == "name: Anna; badge: B-1.\nname: Olof Sund; badge: B-2."
    assert _units(pages) == [("row", "name: Anna; badge: B-1.", "name | badge"),
                             ("row", "name: Olof Sund; badge: B-2.", "name | badge")]


def test_marks_that_normalising_would_move_are_dropped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def sloppy(path: Path, limits: Any = None) -> list[RawPage]:
        return [RawPage("Title\n\n\n\nBody  text.", (LineMark(0, LineKind.HEADING, 1),
                                                    LineMark(4, LineKind.ITEM)))]

    def tidy(path: Path, limits: Any = None) -> list[RawPage]:
        return [RawPage("Title\n\nBody text.", (LineMark(0, LineKind.HEADING, 1),))]

    monkeypatch.setitem(READERS, DocumentKind.TEXT, sloppy)
    (page,) = read_document(_write(tmp_path, "a.txt", b"x"), DocumentKind.TEXT)
    assert page.text == "Title\n\nBody text." and page.marks == ()
    monkeypatch.setitem(READERS, DocumentKind.TEXT, tidy)
    (page,) = read_document(_write(tmp_path, "a.txt", b"x"), DocumentKind.TEXT)
    assert page.marks == (LineMark(0, LineKind.HEADING, 1),)



def _pdf_cells(rows: list[list[str]], xs: list[int], prose: list[str] = ()) -> bytes:
    """A one-page PDF (Helvetica, never bold): ``prose`` lines, then ``rows`` with each cell
    drawn at its column's x."""
    import zlib

    from bench.docbuild import PDF_HEADER, write_pdf

    ops, y = [], 740
    for line in prose:
        ops.append(f"BT /F1 10 Tf 1 0 0 1 50 {y} Tm ({line}) Tj ET")
        y -= 14
    for row in rows:
        ops += [f"BT /F1 10 Tf 1 0 0 1 {x} {y} Tm ({cell}) Tj ET"
                for x, cell in zip(xs, row, strict=True)]
        y -= 14
    stream = zlib.compress("\n".join(ops).encode("latin-1"))
    return write_pdf([
        b"<< /Type /Catalog /Pages 2 0 R >>", b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> >> >>",
        f"<< /Length {len(stream)} /Filter /FlateDecode >>\nstream\n".encode() + stream
        + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>"], PDF_HEADER)


def test_pdf_tables_in_columns_become_labelled_rows_and_headings_by_font(
        tmp_path: Path) -> None:
    from bench.docbuild import build_pdf

    source = ("# Annual report\n\nAcme Ltd, Lund.\n\n## Results\n\nRevenue by quarter:\n\n"
              "| Quarter | Revenue | Margin |\n|---|---|---|\n"
              "| Q1 2024 | EUR 48.2 million | 7.9% |\n| Q2 2024 | EUR 51.6 million | 8.3% |\n\n"
              "The margin fell in the second half.\n")
    (page,) = read_document(_write(tmp_path, "t.pdf", build_pdf(source, "Results")),
                            DocumentKind.PDF)
    section = "Annual report > Results"
    header = "Quarter | Revenue | Margin"
    # headings (set larger, in bold) are never part of a sentence; the header row is context
    assert _units([page]) == [
        ("sentence", "Acme Ltd, Lund.", "Annual report"),
        ("sentence", "Revenue by quarter:", section),
        ("row", "Quarter: Q1 2024 | Revenue: EUR 48.2 million | Margin: 7.9%",
         f"{section} · {header}"),
        ("row", "Quarter: Q2 2024 | Revenue: EUR 51.6 million | Margin: 8.3%",
         f"{section} · {header}"),
        ("sentence", "The margin fell in the second half.", section),
        ("sentence", "Results - page 1 of 1", section),  # the footer is text of the page
    ]


def test_pdf_table_header_by_its_labels_and_a_table_without_one(tmp_path: Path) -> None:
    labelled = _pdf_cells([["Site", "Staff", "Open since"], ["Lund", "40", "2019"],
                           ["Oslo", "12", "2021"]], [50, 150, 250], ["Our sites:"])
    (page,) = read_document(_write(tmp_path, "s.pdf", labelled), DocumentKind.PDF)
    assert page.text == ("Our sites:\n\nSite: Lund | Staff: 40 | Open since: 2019\n"
                         "Site: Oslo | Staff: 12 | Open since: 2021")
    assert _units([page])[1:] == [
        ("row", "Site: Lund | Staff: 40 | Open since: 2019", "Site | Staff | Open since"),
        ("row", "Site: Oslo | Staff: 12 | Open since: 2021", "Site | Staff | Open since")]
    # name/value pairs: no header row, every row kept with its cells joined
    pairs = _pdf_cells([["Anna Berg", "0316 4410"], ["Olof Sund", "0316 4412"]], [50, 200])
    (page,) = read_document(_write(tmp_path, "p.pdf", pairs), DocumentKind.PDF)
    assert _units([page]) == [("row", "Anna Berg | 0316 4410", ""),
                              ("row", "Olof Sund | 0316 4412", "")]


def test_pdf_prose_and_two_column_text_are_no_table(tmp_path: Path) -> None:
    lines = ["Invoices are sent monthly.", "Late fees apply after thirty days."]
    (page,) = read_document(_write(tmp_path, "p.pdf", make_pdf_lines([lines])), DocumentKind.PDF)
    assert page.marks == () and page.text == "\n".join(lines)
    # two columns of running text start their lines at two x positions too, but its "cells"
    # are long: it stays text
    columns = _pdf_cells([["The board met in Graz on a cold day", "and approved the budget for"],
                          ["the next year after a long debate on", "the new line and its cost in"]],
                         [50, 320])
    (page,) = read_document(_write(tmp_path, "c.pdf", columns), DocumentKind.PDF)
    assert page.marks == ()
