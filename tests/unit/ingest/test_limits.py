"""Hostile documents: ZIP/DOCX bombs, DTDs, PDF bombs, encrypted PDFs, parsers that hang,
explode or crash. The corpus is built in code (tests/hostile.py)."""

from __future__ import annotations

import io
import os
import socket
import warnings
import zipfile
from pathlib import Path
from typing import Any

import pytest

from core.domain import DocumentKind
from core.errors import ParseError
from core.settings import LimitSettings, Settings
from ingest import limits as zlimits
from ingest.detect import sniff_kind
from ingest.readers import full_text, read_document
from ingest.sandbox import parse_isolated
from tests import hostile as h
from tests.factories import make_docx, make_pdf

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


def test_limits_are_settings_with_documented_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCQA_LIMITS__PARSE_TIMEOUT_S", "5")
    monkeypatch.setenv("DOCQA_LIMITS__ZIP_MAX_MEMBERS", "20")
    s = Settings()
    assert s.limits.parse_timeout_s == 5 and s.limits.zip_max_members == 20
    d = LimitSettings()
    assert d.parse_timeout_s == 60 and d.parse_memory_bytes == 1 << 30
    assert d.pdf_max_pages == 2000 and d.zip_max_ratio == 100


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


def test_upload_sniffing_refuses_zip_bombs_with_422(tmp_path: Path) -> None:
    err = ParseError("x")
    assert err.status_code == 422
    with pytest.raises(ParseError, match="fold"):
        sniff_kind("a.docx", b"PK\x03\x04", _write(tmp_path, "b.docx", h.docx_zip_bomb(8)))
    ok = _write(tmp_path, "ok.docx", h.base_docx())
    assert sniff_kind("ok.docx", ok.read_bytes()[:8192], ok, LimitSettings()) is DOCX


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
    _refused(tmp_path, b"many words " * 20_000, DocumentKind.TEXT, "characters of text",
             limits=_limits(max_text_chars=100_000))


# ---------------------------------------------------------------- HTML, Markdown


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


# ---------------------------------------------------------------- the sandbox


def _gone(pid_file: Path) -> bool:
    pid = int(pid_file.read_text())
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def test_isolated_parse_gives_the_same_pages(tmp_path: Path) -> None:
    for name, data, kind in [("a.pdf", make_pdf(["One.", "Two."]), PDF),
                             ("a.docx", make_docx(["Hello.", "World."]), DOCX),
                             ("a.txt", "Grüße, naïve café — ok\n".encode(), DocumentKind.TEXT)]:
        path = _write(tmp_path, name, data)
        assert parse_isolated(path, kind, LimitSettings()) == read_document(path, kind)


def test_isolated_parse_reports_refusals_and_accepts_relative_paths(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _write(tmp_path, "enc.pdf", h.encrypted_pdf())
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ParseError, match="encrypted"):
        parse_isolated(Path("enc.pdf"), PDF, LimitSettings())


@pytest.mark.parametrize("target", ["tests.hostile:hang", "tests.hostile:sleep"])
def test_a_parser_that_never_returns_is_stopped_at_the_time_limit(
    tmp_path: Path, target: str
) -> None:
    path = _write(tmp_path, "x.txt", b"text")
    with pytest.raises(ParseError, match=r"parsing exceeded the 1.5 s time limit"):
        parse_isolated(path, DocumentKind.TEXT, _limits(parse_timeout_s=1.5), target=target)
    assert _gone(path.with_suffix(".pid"))


def test_a_parser_that_allocates_without_end_is_stopped_at_the_memory_limit(
    tmp_path: Path,
) -> None:
    path = _write(tmp_path, "x.txt", b"text")
    with pytest.raises(ParseError, match=r"parsing exceeded the 256 MiB memory limit"):
        parse_isolated(path, DocumentKind.TEXT,
                       _limits(parse_memory_bytes=256 * 1024 * 1024, parse_timeout_s=30),
                       target="tests.hostile:allocate")
    assert _gone(path.with_suffix(".pid"))


def test_a_parser_that_crashes_fails_the_document_and_the_next_parse_works(
    tmp_path: Path,
) -> None:
    path = _write(tmp_path, "x.txt", b"Plain words after a crash.")
    with pytest.raises(ParseError, match="crashed.*SIGSEGV"):
        parse_isolated(path, DocumentKind.TEXT, LimitSettings(), target="tests.hostile:crash")
    pages = parse_isolated(path, DocumentKind.TEXT, LimitSettings())
    assert pages[0].text == "Plain words after a crash."


def test_memory_hungry_real_input_is_stopped_by_the_memory_limit(tmp_path: Path) -> None:
    """No fake parser: 22 MB of text with an emoji per line is 4 bytes per character in
    memory, and normalising it makes copies (it needs about 500 MB)."""
    line = "words and more words \U0001F600\t\t  x\r\n".encode()
    path = _write(tmp_path, "big.txt", line * 700_000)
    with pytest.raises(ParseError, match="parsing exceeded the 160 MiB memory limit"):
        parse_isolated(path, DocumentKind.TEXT, _limits(
            parse_memory_bytes=160 * 1024 * 1024, parse_timeout_s=60, max_text_chars=10**9))


def test_real_slow_pdf_is_stopped_by_the_time_limit(tmp_path: Path) -> None:
    path = _write(tmp_path, "slow.pdf", h.pdf_slow(4))  # ~8 s of pypdf work in 20 KB
    with pytest.raises(ParseError, match=r"parsing exceeded the 1.5 s time limit"):
        parse_isolated(path, PDF, _limits(parse_timeout_s=1.5))


def test_real_xml_heavy_docx_is_stopped_by_the_memory_limit(tmp_path: Path) -> None:
    path = _write(tmp_path, "fat.docx", h.docx_xml_heavy(600_000))  # 1.3 MB, 27 MB of XML
    with pytest.raises(ParseError, match=r"parsing exceeded the 200 MiB memory limit"):
        parse_isolated(path, DOCX, _limits(parse_memory_bytes=200 * 1024 * 1024))
