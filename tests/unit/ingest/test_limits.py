"""Hostile documents refused before or while they are read (ingest/limits.py and the limits
the readers apply): ZIP/DOCX bombs, DTDs, PDF bombs, encrypted PDFs, too much text. The
corpus is built in code (tests/hostile.py)."""

from __future__ import annotations

import io
import os
import warnings
import zipfile
from pathlib import Path
from typing import Any

import pytest

from core.domain import DocumentKind
from core.errors import ParseError
from core.settings import LimitSettings
from ingest import limits as zlimits
from ingest.readers import full_text, read_document
from tests import hostile as h
from tests.factories import make_docx

DOCX, PDF = DocumentKind.DOCX, DocumentKind.PDF


def _limits(**changes: Any) -> LimitSettings:
    return LimitSettings().model_copy(update=changes)


def _write(tmp_path: Path, name: str, data: bytes) -> Path:
    p = tmp_path / name
    p.write_bytes(data)
    return p


def _refused(tmp_path: Path, data: bytes, kind: DocumentKind, *words: str,
             limits: LimitSettings | None = None) -> str:
    with pytest.raises(ParseError) as err:
        read_document(_write(tmp_path, f"f.{kind.value}", data), kind, limits or LimitSettings())
    for word in words:
        assert word in err.value.detail, err.value.detail
    return err.value.detail


# ---------------------------------------------------------------- DOCX / ZIP


def _zip(members: list[tuple[zipfile.ZipInfo | str, bytes]]) -> bytes:
    out = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # duplicate names on purpose
        with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
            for info, data in members:
                z.writestr(info, data)
    return out.getvalue()


def _set_encrypted_flag(data: bytes, name: bytes) -> bytes:
    """zipfile cannot write encrypted members: set bit 0 of the flags in both headers."""
    buf = bytearray(data)
    at = buf.find(name)
    while at >= 0:
        for sig, name_at, flag_at in ((b"PK\x03\x04", 30, 6), (b"PK\x01\x02", 46, 8)):
            if buf[at - name_at:at - name_at + 4] == sig:
                buf[at - name_at + flag_at] |= 0x1
        at = buf.find(name, at + 1)
    return bytes(buf)


def test_ordinary_docx_passes_every_check(tmp_path: Path) -> None:
    data = h._rezip(make_docx(["Start every web page with <!DOCTYPE html> and a title."]),
                    extra={"word/embeddings/Microsoft_Excel_Worksheet.xlsx": h.nested_zip()})
    text = full_text(read_document(_write(tmp_path, "a.docx", data), DOCX))
    assert "<!DOCTYPE html>" in text  # mentioning a DTD in the text is fine


def test_zip_bomb_member_is_refused_from_the_central_directory(tmp_path: Path) -> None:
    _refused(tmp_path, h.docx_zip_bomb(64), DOCX, "image1.png", "fold", "ZIP bomb")


def test_zip_whose_members_together_expand_too_much_is_refused(tmp_path: Path) -> None:
    _refused(tmp_path, h.docx_overall_ratio_bomb(), DOCX, "overall", "ZIP bomb")


def test_zip_over_the_total_uncompressed_size_is_refused(tmp_path: Path) -> None:
    data = h.docx_with_member("word/media/photo.jpg", os.urandom(300_000))
    _refused(tmp_path, data, DOCX, "expands to more than",
             limits=_limits(zip_max_uncompressed_bytes=200_000))


def test_zip_with_too_many_members_is_refused(tmp_path: Path) -> None:
    _refused(tmp_path, h.docx_many_members(1500), DOCX, "1517 members", "limit is 1000")


@pytest.mark.parametrize("name", ["../../etc/cron.d/evil", "/abs/part.xml", "word\\x.xml",
                                  "word/\x01odd.xml", "word/./x.xml", "C:/x.xml"])
def test_zip_member_names_that_point_elsewhere_are_refused(tmp_path: Path, name: str) -> None:
    _refused(tmp_path, h.docx_with_member(name), DOCX, "member name")


def test_zip_oddities_are_refused(tmp_path: Path) -> None:
    base = zipfile.ZipFile(io.BytesIO(h.base_docx()))
    members = [(i.filename, base.read(i)) for i in base.infolist()]
    twice = _zip(members + [("word/document.xml", b"<x/>")])
    _refused(tmp_path, twice, DOCX, "twice")
    _refused(tmp_path, _set_encrypted_flag(_zip(members + [("word/secret.xml", b"x")]),
                                           b"word/secret.xml"), DOCX, "encrypted")
    bz = zipfile.ZipInfo("word/b.xml")
    bz.compress_type = zipfile.ZIP_BZIP2
    _refused(tmp_path, _zip(members + [(bz, b"<b/>")]), DOCX, "compression method")


def test_nested_archives_are_refused_by_name_and_by_content(tmp_path: Path) -> None:
    _refused(tmp_path, h.docx_with_member("word/media/inner.zip", h.nested_zip()), DOCX,
             "another archive")
    _refused(tmp_path, h.docx_with_member("word/media/image9.png", h.nested_zip()), DOCX,
             "another archive")


@pytest.mark.parametrize(
    ("xml", "encoding"),
    [(h.BILLION_LAUGHS, "utf-8"), (h.XXE, "utf-8"), (h.XXE, "utf-16"),
     (h.BILLION_LAUGHS, "utf-16")],
)
def test_any_dtd_in_a_docx_part_is_refused(tmp_path: Path, xml: str, encoding: str) -> None:
    _refused(tmp_path, h.docx_with_document_xml(xml, encoding), DOCX, "word/document.xml", "DTD")


def test_dtd_in_a_part_with_an_innocent_name_is_refused(tmp_path: Path) -> None:
    data = h.docx_with_member("word/media/image1.png", h.XXE.encode())
    _refused(tmp_path, data, DOCX, "image1.png", "DTD")


def test_python_docx_parser_never_expands_entities_or_reads_files() -> None:
    """Second line of defence, should a DTD ever get past the scan."""
    from docx.oxml.parser import parse_xml
    from lxml.etree import XMLSyntaxError

    try:  # libxml2 refuses the amplification, or leaves the reference unexpanded
        laughs = "".join(parse_xml(h.BILLION_LAUGHS.encode()).itertext())
        assert "lollol" not in laughs
    except XMLSyntaxError as exc:
        assert "amplification" in str(exc)
    xxe = "".join(parse_xml(h.XXE.encode()).itertext())
    assert "root:" not in xxe


def test_member_count_is_read_before_zipfile_builds_objects(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _write(tmp_path, "many.docx", h.docx_many_members(1500))
    assert zlimits.zip_declared_entries(path)[0] == len(zipfile.ZipFile(path).infolist())

    def forbidden(*_: Any, **__: Any) -> None:
        raise AssertionError("ZipFile must not be opened for an over-limit archive")

    monkeypatch.setattr(zlimits.zipfile, "ZipFile", forbidden)
    with pytest.raises(ParseError, match="members"):
        zlimits.check_zip(path, LimitSettings())


def test_damaged_zip_is_a_parse_error(tmp_path: Path) -> None:
    _refused(tmp_path, b"PK\x03\x04" + b"\x00" * 100, DOCX, "damaged")


# ---------------------------------------------------------------- PDF


def test_encrypted_pdf_is_refused_with_a_clear_reason(tmp_path: Path) -> None:
    _refused(tmp_path, h.encrypted_pdf(), PDF, "encrypted", "unencrypted copy")


def test_pdf_over_the_page_limit_is_refused(tmp_path: Path) -> None:
    _refused(tmp_path, h.many_pages_pdf(51), PDF, "51 pages", "limit is 50",
             limits=_limits(pdf_max_pages=50))
    assert len(read_document(_write(tmp_path, "ok.pdf", h.many_pages_pdf(50)), PDF,
                             _limits(pdf_max_pages=50))) == 50


def test_pdf_stream_bomb_is_refused(tmp_path: Path) -> None:
    _refused(tmp_path, h.pdf_stream_bomb(8), PDF, "PDF bomb",
             limits=_limits(pdf_max_stream_bytes=1024 * 1024))


def test_pdf_whose_pages_together_decompress_too_much_is_refused(tmp_path: Path) -> None:
    page = b"BT /F1 11 Tf 50 740 Td (Hi) Tj ET\n" + b" " * 600_000
    _refused(tmp_path, h.pdf_with_content([page] * 5), PDF, "decompress to more than",
             limits=_limits(pdf_max_stream_bytes=1 << 20, pdf_max_content_bytes=2 << 20))


def test_text_over_the_character_limit_is_refused(tmp_path: Path) -> None:
    _refused(tmp_path, h.pdf_huge_text(200_000), PDF, "characters of text",
             limits=_limits(max_text_chars=100_000))
    # said before any embedding, with what to do (the worker could not embed it in time)
    _refused(tmp_path, b"many words " * 20_000, DocumentKind.TEXT,
             "within the worker's time limit (DOCQA_LIMITS__MAX_TEXT_CHARS); split it",
             limits=_limits(max_text_chars=100_000))




