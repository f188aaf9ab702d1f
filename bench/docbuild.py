"""Build DOCX and PDF files from a small Markdown subset, byte for byte the same on every run.

Evaluation corpora keep their binary documents as reviewable text and build the files when
they are needed (``bench/business.py``). The subset, one block per line group:

- ``# Title``, ``## Section``, ``### Subsection``: headings;
- ``- item``: a bullet item; ``3. item``: a numbered item (the number is kept as written);
- ``| a | b |`` lines: a table, the first row its header (``|---|`` rows are skipped);
- ``<!-- page -->``: a page break (PDF; ignored in DOCX, which has no fixed pages);
- any other lines: a paragraph (lines of one paragraph are joined with a space);
- a blank line ends a paragraph.

Same input, same bytes: DOCX core properties are fixed and its ZIP members get a fixed
timestamp; the PDF writer uses no clock. That keeps a re-run's uploads identical, so the
service de-duplicates them instead of holding two copies.

The PDF writer lays text out in Helvetica (WinAnsi encoding, so "€" and "–" work) on A4
pages, wraps paragraphs, breaks pages when one is full and prints "Page n of m" at the foot.
"""

from __future__ import annotations

import datetime as dt
import io
import re
import textwrap
import zipfile
import zlib
from dataclasses import dataclass, field

PAGE_BREAK = "<!-- page -->"
FIXED_TIME = dt.datetime(2025, 1, 6, 9, 0, 0)
_NUMBERED = re.compile(r"^(\d{1,3})\.\s+(.*)$")
_TABLE_RULE = re.compile(r"^\|[\s:|-]+\|$")


@dataclass
class Block:
    kind: str  # heading | paragraph | bullet | numbered | table | page
    text: str = ""
    level: int = 0  # heading level, or the number of a numbered item
    rows: list[list[str]] = field(default_factory=list)


def parse(source: str) -> list[Block]:
    """The blocks of a source in the subset described in the module docstring."""
    blocks: list[Block] = []
    para: list[str] = []

    def flush() -> None:
        if para:
            blocks.append(Block("paragraph", " ".join(para)))
            para.clear()

    for raw in source.splitlines():
        line = raw.strip()
        if not line:
            flush()
            continue
        if line == PAGE_BREAK:
            flush()
            blocks.append(Block("page"))
        elif line.startswith("#"):
            flush()
            hashes = len(line) - len(line.lstrip("#"))
            blocks.append(Block("heading", line[hashes:].strip(), level=hashes))
        elif line.startswith("- "):
            flush()
            blocks.append(Block("bullet", line[2:].strip()))
        elif m := _NUMBERED.match(line):
            flush()
            blocks.append(Block("numbered", m.group(2).strip(), level=int(m.group(1))))
        elif line.startswith("|"):
            flush()
            if _TABLE_RULE.match(line):
                continue
            cells = [c.strip() for c in line.strip("|").split("|")]
            if blocks and blocks[-1].kind == "table":
                blocks[-1].rows.append(cells)
            else:
                blocks.append(Block("table", rows=[cells]))
        else:
            para.append(line)
    flush()
    return blocks


# ------------------------------------------------------------------------------- DOCX


def build_docx(source: str, title: str, author: str = "") -> bytes:
    """A Word document of the source's blocks (python-docx), with fixed metadata."""
    import docx
    from docx.shared import Pt

    document = docx.Document()
    props = document.core_properties
    props.title = title
    props.author = props.last_modified_by = author
    props.created = props.modified = FIXED_TIME
    props.revision = 1
    for block in parse(source):
        if block.kind == "heading":
            document.add_heading(block.text, level=min(block.level - 1, 3))
        elif block.kind == "paragraph":
            document.add_paragraph(block.text)
        elif block.kind == "bullet":
            document.add_paragraph(block.text, style="List Bullet")
        elif block.kind == "numbered":
            document.add_paragraph(block.text, style="List Number")
        elif block.kind == "table":
            width = max(len(r) for r in block.rows)
            table = document.add_table(rows=len(block.rows), cols=width)
            table.style = "Table Grid"
            for i, row in enumerate(block.rows):
                for j, cell in enumerate(row):
                    run = table.cell(i, j).paragraphs[0].add_run(cell)
                    run.bold = i == 0
                    run.font.size = Pt(10)
    buf = io.BytesIO()
    document.save(buf)
    return _fixed_zip(buf.getvalue())


def _fixed_zip(data: bytes) -> bytes:
    """The same archive with every member dated FIXED_TIME (python-docx stamps the clock)."""
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as src, \
            zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            member = zipfile.ZipInfo(info.filename, date_time=FIXED_TIME.timetuple()[:6])
            member.compress_type = zipfile.ZIP_DEFLATED
            member.external_attr = 0o644 << 16
            dst.writestr(member, src.read(info.filename))
    return out.getvalue()


# -------------------------------------------------------------------------------- PDF

PAGE_W, PAGE_H = 595, 842  # A4 in points
MARGIN_X, TOP, BOTTOM = 56, 800, 70
BODY_SIZE, BODY_LEAD = 10, 14
HEAD_SIZE = {1: 15, 2: 12, 3: 11}
CHAR_W = 0.5  # average Helvetica glyph width, in em: enough to wrap and place columns
WRAP = int((PAGE_W - 2 * MARGIN_X) / (BODY_SIZE * CHAR_W)) - 4


@dataclass
class _Line:
    text: str
    x: float
    size: int
    bold: bool = False
    gap: float = 0.0  # extra space above
    cells: list[tuple[float, str]] = field(default_factory=list)  # a table row


def _lines(blocks: list[Block]) -> list[_Line | None]:
    """Lines to set, with None where a page must break."""
    out: list[_Line | None] = []
    for block in blocks:
        if block.kind == "page":
            out.append(None)
        elif block.kind == "heading":
            size = HEAD_SIZE.get(block.level, 11)
            for i, part in enumerate(textwrap.wrap(block.text, int(WRAP * BODY_SIZE / size))):
                out.append(_Line(part, MARGIN_X, size, bold=True, gap=10.0 if i == 0 else 0.0))
        elif block.kind == "paragraph":
            for i, part in enumerate(textwrap.wrap(block.text, WRAP)):
                out.append(_Line(part, MARGIN_X, BODY_SIZE, gap=5.0 if i == 0 else 0.0))
        elif block.kind in ("bullet", "numbered"):
            mark = "\u2022" if block.kind == "bullet" else f"{block.level}."
            for i, part in enumerate(textwrap.wrap(block.text, WRAP - 4)):
                out.append(_Line(f"{mark} {part}" if i == 0 else part,
                                 MARGIN_X + (6 if i == 0 else 18), BODY_SIZE,
                                 gap=2.0 if i == 0 else 0.0))
        elif block.kind == "table":
            width = max(len(r) for r in block.rows)
            chars = [max(len(r[j]) if j < len(r) else 0 for r in block.rows)
                     for j in range(width)]
            xs, x = [], float(MARGIN_X)
            for n in chars:
                xs.append(x)
                x += (n + 3) * BODY_SIZE * CHAR_W
            for i, row in enumerate(block.rows):
                out.append(_Line("", MARGIN_X, BODY_SIZE, bold=i == 0, gap=6.0 if i == 0 else 0.0,
                                 cells=list(zip(xs, row, strict=False))))
    return out


def _paginate(lines: list[_Line | None]) -> list[list[tuple[float, _Line]]]:
    """(baseline y, line) per page."""
    pages: list[list[tuple[float, _Line]]] = [[]]
    y = float(TOP)
    for line in lines:
        if line is None:
            if pages[-1]:
                pages.append([])
                y = float(TOP)
            continue
        step = max(BODY_LEAD, line.size + 4) + (line.gap if pages[-1] else 0.0)
        if y - step < BOTTOM and pages[-1]:
            pages.append([])
            y = float(TOP)
            step -= line.gap
        y -= step
        pages[-1].append((y, line))
    return pages


def _pdf_string(text: str) -> str:
    raw = text.encode("cp1252")  # WinAnsi; raises on a glyph Helvetica cannot show
    out = []
    for b in raw:
        ch = chr(b)
        if ch in "\\()":
            out.append("\\" + ch)
        elif b < 32 or b > 126:
            out.append(f"\\{b:03o}")
        else:
            out.append(ch)
    return "(" + "".join(out) + ")"


def _text_op(x: float, y: float, size: int, bold: bool, text: str) -> str:
    font = "F2" if bold else "F1"
    return f"BT /{font} {size} Tf 1 0 0 1 {x:.1f} {y:.1f} Tm {_pdf_string(text)} Tj ET"


def build_pdf(source: str, title: str, author: str = "") -> bytes:
    """A text PDF of the source's blocks: real text objects, so readers extract it."""
    pages = _paginate(_lines(parse(source)))
    n_pages = len(pages)
    # objects: 1 catalog, 2 pages, 3 regular font, 4 bold font, 5 info, then page + content
    objects: list[bytes] = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        ("<< /Type /Pages /Kids [" + " ".join(f"{6 + 2 * i} 0 R" for i in range(n_pages))
         + f"] /Count {n_pages} >>").encode(),
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica-Bold "
        b"/Encoding /WinAnsiEncoding >>",
        (f"<< /Title {_pdf_string(title)} /Author {_pdf_string(author)} "
         "/Producer (docqa bench) >>").encode("latin-1"),
    ]
    for number, page in enumerate(pages, start=1):
        ops: list[str] = []
        for y, line in page:
            if line.cells:
                ops.extend(_text_op(x, y, line.size, line.bold, cell)
                           for x, cell in line.cells if cell)
            else:
                ops.append(_text_op(line.x, y, line.size, line.bold, line.text))
        ops.append(_text_op(MARGIN_X, 40, 8, False, f"{title} - page {number} of {n_pages}"))
        stream = zlib.compress("\n".join(ops).encode("latin-1"), 9)
        objects.append(
            f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 {PAGE_W} {PAGE_H}] "
            f"/Contents {7 + 2 * (number - 1)} 0 R "
            "/Resources << /Font << /F1 3 0 R /F2 4 0 R >> >> >>".encode())
        objects.append(f"<< /Length {len(stream)} /Filter /FlateDecode >>\nstream\n".encode()
                       + stream + b"\nendstream")
    return write_pdf(objects, PDF_HEADER, info=5)


PDF_HEADER = b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n"  # the binary comment marks a binary file


def write_pdf(objects: list[bytes], header: bytes = b"%PDF-1.4\n",
              info: int | None = None) -> bytes:
    """Numbered objects (1 = catalog; ``info``: the document information object) with
    their cross-reference table and trailer. The tests' PDF factories write with it too."""
    out = io.BytesIO()
    out.write(header)
    offsets = []
    for num, body in enumerate(objects, start=1):
        offsets.append(out.tell())
        out.write(f"{num} 0 obj\n".encode() + body + b"\nendobj\n")
    xref = out.tell()
    out.write(f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode())
    for off in offsets:
        out.write(f"{off:010d} 00000 n \n".encode())
    info_ref = f" /Info {info} 0 R" if info is not None else ""
    out.write(f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R{info_ref} >>\n"
              f"startxref\n{xref}\n%%EOF\n".encode())
    return out.getvalue()
