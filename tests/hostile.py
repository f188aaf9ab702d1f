"""A malicious corpus built in code, and parsers that misbehave on purpose.

Builders return bytes; the ``hang``/``sleep``/``allocate``/``crash`` functions have the
signature of ``ingest.readers.read_document`` so that ``ingest.sandbox.parse_isolated`` can
run them in its child (``target="tests.hostile:hang"``) to prove the limits kill it.
"""

from __future__ import annotations

import io
import os
import signal
import time
import zipfile
import zlib
from pathlib import Path
from typing import Any

from bench.docbuild import write_pdf
from tests.factories import make_docx, make_pdf

W_NS = "http://schemas.openxmlformats.org/wordprocessingml/2006/main"


def _rezip(docx: bytes, extra: dict[str, bytes] | None = None,
           replace: dict[str, bytes] | None = None) -> bytes:
    """Copy a DOCX member by member, replacing some and appending others (deflated)."""
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(docx)) as src, \
            zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            data = (replace or {}).get(info.filename, src.read(info.filename))
            dst.writestr(info.filename, data)
        for name, data in (extra or {}).items():
            dst.writestr(name, data)
    return out.getvalue()


def base_docx() -> bytes:
    return make_docx(["An ordinary paragraph about the quarterly budget."])


def docx_zip_bomb(mib: int = 64) -> bytes:
    """A member of zeros that deflates ~1000-fold."""
    return _rezip(base_docx(), extra={"word/media/image1.png": bytes(mib * 1024 * 1024)})


def docx_overall_ratio_bomb(members: int = 24, kib: int = 900) -> bytes:
    """Every member stays under the per-member grace; together they expand ~1000-fold."""
    return _rezip(base_docx(), extra={f"customXml/filler{i}.xml": b" " * (kib * 1024)
                                      for i in range(members)})


def docx_many_members(n: int = 1500) -> bytes:
    return _rezip(base_docx(), extra={f"word/media/m{i}.bin": b"x" for i in range(n)})


def docx_with_member(name: str, data: bytes = b"x") -> bytes:
    return _rezip(base_docx(), extra={name: data})


def nested_zip() -> bytes:
    inner = io.BytesIO()
    with zipfile.ZipFile(inner, "w") as z:
        z.writestr("a.txt", "inner")
    return inner.getvalue()


BILLION_LAUGHS = (
    '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
    '<!DOCTYPE lolz [<!ENTITY lol "lol">'
    + "".join(f'<!ENTITY lol{i} "{("&lol" + (str(i - 1) if i > 1 else "") + ";") * 10}">'
              for i in range(1, 10))
    + f']>\n<w:document xmlns:w="{W_NS}"><w:body><w:p><w:r><w:t>&lol9;</w:t></w:r></w:p>'
    '</w:body></w:document>'
)
XXE = (
    '<?xml version="1.0" encoding="UTF-8"?>\n'
    '<!DOCTYPE d [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>\n'
    f'<w:document xmlns:w="{W_NS}"><w:body><w:p><w:r><w:t>&xxe;</w:t></w:r></w:p>'
    '</w:body></w:document>'
)


def docx_with_document_xml(xml: str, encoding: str = "utf-8") -> bytes:
    data = xml.encode(encoding)
    if encoding.startswith("utf-16"):
        data = xml.replace('encoding="UTF-8"', 'encoding="UTF-16"').encode("utf-16")
    return _rezip(base_docx(), replace={"word/document.xml": data})


def encrypted_pdf(password: str = "s3cret") -> bytes:
    from pypdf import PdfReader, PdfWriter

    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(make_pdf(["Confidential salary table."]))))
    writer.encrypt(user_password=password, owner_password=password + "-owner",
                   algorithm="RC4-128")  # RC4 needs no crypto library
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def many_pages_pdf(n: int) -> bytes:
    return make_pdf([f"Page {i}." for i in range(n)])


def pdf_with_content(pages: list[bytes]) -> bytes:
    """A PDF whose pages carry the given raw content streams, flate-compressed."""
    objects: list[bytes] = [b"<< /Type /Catalog /Pages 2 0 R >>"]
    n = len(pages)
    font = 3 + 2 * n
    kids = " ".join(f"{3 + 2 * i} 0 R" for i in range(n))
    objects.append(f"<< /Type /Pages /Kids [{kids}] /Count {n} >>".encode())
    for i, content in enumerate(pages):
        objects.append(
            f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents {4 + 2 * i} 0 R "
            f"/Resources << /Font << /F1 {font} 0 R >> >> >>".encode())
        stream = zlib.compress(content, 9)
        objects.append(f"<< /Length {len(stream)} /Filter /FlateDecode >>\nstream\n".encode()
                       + stream + b"\nendstream")
    objects.append(b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>")
    return write_pdf(objects)


def pdf_stream_bomb(mib: int = 128) -> bytes:
    """One page whose content stream inflates to ``mib`` MiB of spaces (~1000-fold)."""
    return pdf_with_content([b"BT /F1 11 Tf 50 740 Td (Hi) Tj ET\n" + b" " * (mib * 1024 * 1024)])


def pdf_huge_text(chars: int) -> bytes:
    """Pages of real, extractable text adding up to about ``chars`` characters."""
    line = b"(" + b"word " * 20 + b") Tj T*\n"
    per_page = 400
    body = b"BT /F1 8 Tf 10 TL 20 780 Td\n" + line * per_page + b"ET"
    n = max(1, chars // (per_page * 100))
    return pdf_with_content([body] * n)


def pdf_slow(pages: int) -> bytes:
    """Real, tiny and slow: 300,000 empty text objects per page cost pypdf ~2 s a page."""
    content = b"BT ET\n" * 300_000 + b"BT /F1 11 Tf 50 740 Td (A slow page.) Tj ET\n"
    return pdf_with_content([content] * pages)


def docx_xml_heavy(paragraphs: int) -> bytes:
    """Real and memory-hungry: 46 bytes of XML per paragraph, compressed ~20-fold (under the
    ratio limit); lxml and python-docx need ~7 bytes of memory per byte of XML."""
    import random

    rng = random.Random(7)
    words = ["alpha", "budget", "contract", "delta", "energy", "forest", "garden", "harbor",
             "island", "jungle", "kettle", "lemon"]
    body = "".join(f"<w:p><w:r><w:t>{rng.choice(words)} {rng.choice(words)}</w:t></w:r></w:p>"
                   for _ in range(paragraphs))
    return docx_with_document_xml(
        '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
        f'<w:document xmlns:w="{W_NS}"><w:body>{body}</w:body></w:document>')


# ---------------------------------------------------------------- misbehaving parsers


def hang(path: Path, kind: Any, limits: Any) -> list[Any]:
    while True:  # burns CPU, like a parser stuck in a loop
        pass


def sleep(path: Path, kind: Any, limits: Any) -> list[Any]:
    time.sleep(3600)  # waits without using CPU: only the wall clock can stop it
    return []


def allocate(path: Path, kind: Any, limits: Any) -> list[Any]:
    hoard = []
    while True:
        hoard.append(bytearray(32 * 1024 * 1024))


def crash(path: Path, kind: Any, limits: Any) -> list[Any]:
    os.kill(os.getpid(), signal.SIGSEGV)
    return []
