"""The business-document evaluation (``bench/business.py``): its corpus, its questions and the
metrics it adds, without a running service.

The corpus is read with the service's own type sniffing and readers, so a gold answer that
these tests find on its page is one the service can find too.
"""

from __future__ import annotations

import io
import zipfile
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from bench import business
from bench.__main__ import main as bench_cli
from bench.baseline import _documents
from bench.docbuild import build_docx, build_pdf, parse
from bench.evalkit import (
    AskRecord,
    EvalDoc,
    EvalQuestion,
    answered_wrong,
    cites_gold,
    ingest,
    normalize_answer,
    score,
)
from core.domain import DocumentKind
from ingest.detect import sniff_bytes


@pytest.fixture(scope="module")
def data() -> business.Business:
    return business.load()


@pytest.fixture(scope="module")
def files() -> dict[str, bytes]:
    return business.corpus_files()


def _all(data: business.Business) -> list[EvalQuestion]:
    return [q for split in business.QUESTION_SPLITS for q in data.questions[split]]


def _entries(data: business.Business, *splits: str) -> list[dict[str, Any]]:
    return [e for e in data.info.values() if e["split"] in splits]


def _doc_of(entry: dict[str, Any]) -> str:
    return str(entry["sources"][0]["doc"] if entry["kind"] == "answerable" else entry["near"])


# ------------------------------------------------------------------------------ corpus


def test_corpus_has_twenty_two_documents_in_all_six_formats(
        data: business.Business, files: dict[str, bytes]) -> None:
    assert len(data.docs) == 22  # 13 that dev and test ask about, 9 that dev2 asks about
    assert {Path(d.filename).suffix for d in data.docs} == set(business.FORMATS)
    kinds = {sniff_bytes(name, blob) for name, blob in files.items()}
    assert kinds == set(DocumentKind)  # the service itself takes them for all six kinds
    assert all(d.data == files[d.filename] and d.payload() == d.data for d in data.docs)


def test_a_pdf_has_several_pages_and_every_document_has_text(data: business.Business) -> None:
    pdf_pages = {d.filename: len(d.pages) for d in data.docs if d.filename.endswith(".pdf")}
    assert max(pdf_pages.values()) >= 3, pdf_pages
    for d in data.docs:
        assert d.pages and all(p.strip() for p in d.pages), d.filename
        assert d.text.startswith(d.pages[0]) and d.text.endswith(d.pages[-1])


def test_the_corpus_has_the_structures_it_is_meant_to_test(
        data: business.Business, files: dict[str, bytes]) -> None:
    text = {d.filename: d.text for d in data.docs}
    # tables in HTML, DOCX and Markdown
    assert any(b"<table" in blob for n, blob in files.items() if n.endswith(".html"))
    assert any(b"|---" in blob for n, blob in files.items() if n.endswith(".md"))
    assert any(_docx_has_table(blob) for n, blob in files.items() if n.endswith(".docx"))
    # lists introduced by a lead-in line that ends in ":" (Markdown, DOCX, HTML, text, PDF)
    for suffix in (".md", ".docx", ".html", ".txt", ".pdf"):
        assert any(_has_lead_in(t) for n, t in text.items() if n.endswith(suffix)), suffix
    # two people in the same role, and an attempt to instruct the model
    assert "Karin Berg" in text["management-team.md"]
    assert "Tomas Novak" in text["management-team.md"]
    assert "Ignore all previous instructions" in text["brightline-price-notice.txt"]
    # one figure repeated per quarter and per site
    for quarter in ("Q1 2024", "Q2 2024", "Q3 2024"):
        assert quarter in text["board-minutes-2024-11-14.pdf"]
        assert text["headcount-2024.csv"].count(quarter) == 3


def _docx_has_table(blob: bytes) -> bool:
    with zipfile.ZipFile(io.BytesIO(blob)) as zf:
        return b"<w:tbl>" in zf.read("word/document.xml")


def _has_lead_in(text: str) -> bool:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return any(a.endswith(":") and len(a.split()) > 2 and len(b.split()) > 2
               for a, b in zip(lines, lines[1:], strict=False))


def test_docx_and_pdf_build_to_the_same_bytes_every_time(files: dict[str, bytes]) -> None:
    """Same bytes on every run: the service de-duplicates a re-run's uploads by hash."""
    again = business.corpus_files()
    assert again == files
    built = [n for n in files if n.endswith((".docx", ".pdf"))]
    assert {Path(n).suffix for n in built} == {".docx", ".pdf"}


def test_write_corpus_writes_every_document(tmp_path: Path, files: dict[str, bytes]) -> None:
    result = CliRunner().invoke(bench_cli, ["business-corpus", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    assert {p.name: p.read_bytes() for p in (tmp_path / "out").iterdir()} == files


# --------------------------------------------------------------------------- questions


def test_enough_questions_of_each_kind(data: business.Business) -> None:
    questions = _all(data)
    assert len({q.qid for q in questions}) == len(questions) == len(data.info)
    for split, answerable, unanswerable in (("dev", 44, 21), ("test", 44, 21),
                                             ("dev2", 60, 40)):
        qs = data.questions[split]
        assert sum(q.answerable for q in qs) >= answerable, split
        assert sum(not q.answerable for q in qs) >= unanswerable, split
        misses = Counter(e["miss"] for e in _entries(data, split)
                         if e["kind"] == "unanswerable")
        assert set(misses) == set(business.MISSES), split


def test_no_question_is_asked_in_two_splits(data: business.Business) -> None:
    split_of: dict[str, str] = {}
    for entry in data.info.values():
        text = normalize_answer(entry["question"])
        assert split_of.setdefault(text, entry["split"]) == entry["split"], entry["id"]
    assert len(split_of) == len(data.info)  # and none twice within a split either


def test_dev2_asks_about_documents_of_its_own_in_all_six_formats(
        data: business.Business) -> None:
    """Tuning on dev2 must not shape the passages that dev and test ask about."""
    dev2 = {_doc_of(e) for e in _entries(data, "dev2")}
    dev2_sources = {s["doc"] for e in _entries(data, "dev2") if e["kind"] == "answerable"
                    for s in e["sources"]}
    older = {_doc_of(e) for e in _entries(data, "dev", "test")} | {
        s["doc"] for e in _entries(data, "dev", "test") if e["kind"] == "answerable"
        for s in e["sources"]}
    assert not (dev2 | dev2_sources) & older
    assert {Path(d).suffix for d in dev2} == set(business.FORMATS)
    assert len(dev2) >= 8
    # and every one of its documents has questions of both kinds
    for doc in dev2:
        kinds = {e["kind"] for e in _entries(data, "dev2") if _doc_of(e) == doc}
        assert kinds == set(business.KINDS), doc


def test_every_gold_answer_is_on_its_stated_page(data: business.Business) -> None:
    _assert_golds_on_their_pages(data, _all(data))


def _assert_golds_on_their_pages(data: business.Business, questions: list[EvalQuestion]
                                 ) -> None:
    """Verbatim (white space collapsed: PDF lines wrap) and as whole words after the scorer's
    normalisation, so a quote of the right passage can be scored correct."""
    pages = {d.key: d.pages for d in data.docs}
    for q in questions:
        if not q.answerable:
            continue
        for doc, page in zip(q.doc_keys, q.doc_pages, strict=True):
            assert page is not None and 1 <= page <= len(pages[doc]), (q.qid, doc, page)
            text = pages[doc][page - 1]
            for gold in q.answers:
                assert gold in " ".join(text.split()), (q.qid, gold, doc, page)
                assert f" {normalize_answer(gold)} " in f" {normalize_answer(text)} ", \
                    (q.qid, gold, doc, page)


def test_gold_answers_are_short(data: business.Business, train: business.Business) -> None:
    for q in _all(data) + train.questions["train"]:
        assert all(len(a.split()) <= 8 for a in q.answers), q.qid


# ------------------------------------------------------------- the training company's corpus


@pytest.fixture(scope="module")
def train() -> business.Business:
    return business.load(business.TRAIN_ROOT)


def test_the_training_corpus_is_another_companys_in_all_six_formats(
        data: business.Business, train: business.Business) -> None:
    """What the reader and the gate learn from must not be the documents dev and test ask."""
    assert len(train.docs) >= 12
    assert {Path(d.filename).suffix for d in train.docs} == set(business.FORMATS)
    assert not {d.filename for d in train.docs} & {d.filename for d in data.docs}
    assert not any("Velmora" in d.text for d in train.docs)
    assert not any("Aldermoor" in d.text for d in data.docs)
    assert business._author(business.TRAIN_ROOT) == "Aldermoor Foods Ltd"
    assert business._author(business.ROOT) == business.AUTHOR
    pdf_pages = [len(d.pages) for d in train.docs if d.filename.endswith(".pdf")]
    assert max(pdf_pages) >= 3
    assert business.corpus_files(business.TRAIN_ROOT) == {d.filename: d.data for d in train.docs}


def test_training_questions_are_their_own_and_of_every_kind(
        data: business.Business, train: business.Business) -> None:
    qs = train.questions["train"]
    assert {len(v) for k, v in train.questions.items() if k != "train"} == {0}
    assert data.questions["train"] == []
    assert sum(q.answerable for q in qs) >= 100 and sum(not q.answerable for q in qs) >= 50
    misses = Counter(e["miss"] for e in train.info.values() if e["kind"] == "unanswerable")
    assert set(misses) == set(business.MISSES) and min(misses.values()) >= 5, misses
    asked = {normalize_answer(e["question"]) for e in data.info.values()}
    assert not {normalize_answer(e["question"]) for e in train.info.values()} & asked
    assert [q.qid for q in business.select(train, "train")] != []
    _assert_golds_on_their_pages(train, qs)
    # questions about every document, both kinds
    docs = {_doc_of(e) for e in train.info.values()}
    assert docs == {d.filename for d in train.docs}


# ------------------------------------------------------------ the third company's corpus


@pytest.fixture(scope="module")
def dev3() -> business.Business:
    return business.load(business.DEV3_ROOT)


def test_the_third_company_is_its_own_in_all_six_formats(
        data: business.Business, train: business.Business, dev3: business.Business) -> None:
    """dev3 checks whether a fit carries over to a company it never saw: no document, name or
    question may come from Velmora's or the training company's corpus."""
    assert len(dev3.docs) >= 12
    assert {Path(d.filename).suffix for d in dev3.docs} == set(business.FORMATS)
    others = data.docs + train.docs
    assert not {d.filename for d in dev3.docs} & {d.filename for d in others}
    assert not any(name in d.text for d in dev3.docs for name in ("Velmora", "Aldermoor"))
    assert not any("Solvang" in d.text for d in others)
    assert business._author(business.DEV3_ROOT) == "Solvang Marine Services AS"
    assert max(len(d.pages) for d in dev3.docs if d.filename.endswith(".pdf")) >= 3
    assert business.root_of(business.DEV3_SPLIT) == business.DEV3_ROOT
    assert business.root_of(business.TRAIN_SPLIT) == business.TRAIN_ROOT
    assert business.root_of("dev2") == business.ROOT


def test_the_third_companys_questions_are_their_own_and_of_every_kind(
        data: business.Business, train: business.Business, dev3: business.Business) -> None:
    qs = dev3.questions[business.DEV3_SPLIT]
    assert {len(v) for k, v in dev3.questions.items() if k != business.DEV3_SPLIT} == {0}
    assert data.questions[business.DEV3_SPLIT] == train.questions[business.DEV3_SPLIT] == []
    assert sum(q.answerable for q in qs) >= 100 and sum(not q.answerable for q in qs) >= 40
    misses = Counter(e["miss"] for e in dev3.info.values() if e["kind"] == "unanswerable")
    assert set(misses) == set(business.MISSES) and min(misses.values()) >= 5, misses
    asked = {normalize_answer(e["question"]) for e in [*data.info.values(),
                                                        *train.info.values()]}
    assert not {normalize_answer(e["question"]) for e in dev3.info.values()} & asked
    _assert_golds_on_their_pages(dev3, qs)
    assert all(len(a.split()) <= 8 for q in qs for a in q.answers)
    for kind in business.KINDS:  # both kinds about every document
        docs = {_doc_of(e) for e in dev3.info.values() if e["kind"] == kind}
        assert docs == {d.filename for d in dev3.docs}, kind


def test_dev_and_test_are_half_each_across_kinds_documents_and_misses(
        data: business.Business) -> None:
    counts: Counter[tuple[str, str]] = Counter()  # (group, split)
    for entry in _entries(data, "dev", "test"):
        groups = [f"kind {entry['kind']}", f"document {_doc_of(entry)}"]
        if entry["kind"] == "unanswerable":
            groups.append(f"miss {entry['miss']}")
        for group in groups:
            counts[group, entry["split"]] += 1
    for group in {g for g, _ in counts}:
        assert abs(counts[group, "dev"] - counts[group, "test"]) <= 1, group
    assert len(data.questions["dev"]) == len(data.questions["test"])


def test_select_returns_one_split_answerable_first(data: business.Business) -> None:
    dev = business.select(data, "dev")
    assert {data.info[q.qid]["split"] for q in dev} == {"dev"}
    flags = [q.answerable for q in dev]
    assert flags == sorted(flags, reverse=True)
    assert len(business.select(data, "all")) == len(_all(data))
    dev2 = business.select(data, "dev2")
    assert {data.info[q.qid]["split"] for q in dev2} == {"dev2"}
    assert len(dev2) == len(data.questions["dev2"])
    assert business.select(data, "train") == []  # training questions are another corpus's
    with pytest.raises(ValueError):
        business.select(data, "holdout")


def test_the_cli_takes_every_split_and_refuses_others() -> None:
    result = CliRunner().invoke(bench_cli, ["business", "--help"])
    assert result.exit_code == 0 and "dev2" in result.output and "train" in result.output, \
        result.output
    result = CliRunner().invoke(bench_cli, ["business", "--split", "holdout"])
    assert result.exit_code == 2 and "holdout" in result.output, result.output


def test_loader_refuses_a_malformed_question(tmp_path: Path) -> None:
    root = tmp_path / "business"
    (root / "corpus").mkdir(parents=True)
    (root / "sources").mkdir()
    (root / "corpus" / "a.txt").write_text("The notice period is three months.\n")
    good = {"id": "q1", "split": "dev", "kind": "answerable", "question": "Notice period?",
            "answers": ["three months"], "sources": [{"doc": "a.txt", "page": 1}]}
    (root / "questions.json").write_text(_json({"questions": [good]}))
    loaded = business.load(root)
    assert loaded.questions["dev"][0].doc_pages == (1,)
    (root / "questions.json").write_text(_json({"questions": [{**good, "split": "dev2"}]}))
    assert business.load(root).questions["dev2"][0].answers == ("three months",)
    for broken in ({**good, "sources": [{"doc": "missing.txt", "page": 1}]},
                   {**good, "split": "holdout"},
                   {**good, "kind": "unanswerable", "answers": []}):  # no miss, no near
        (root / "questions.json").write_text(_json({"questions": [broken]}))
        with pytest.raises(ValueError):
            business.load(root)


def _json(obj: Any) -> str:
    import json

    return json.dumps(obj)


# ------------------------------------------------------------------------------ metrics


def _rec(qid: str, status: str, answer: str = "", keys: list[str] | None = None,
         pages: list[int | None] | None = None) -> AskRecord:
    return AskRecord(qid, status, answer, keys or [], 0.1, cited_pages=pages or [])


def test_answered_wrong_counts_wrong_answers_and_answered_unanswerables() -> None:
    qs = [
        EvalQuestion("a1", "Notice period?", ("six months",), ("c.docx",), (1,)),
        EvalQuestion("a2", "Fee?", ("€12,400",), ("c.docx",), (1,)),
        EvalQuestion("a3", "Who?", ("Karin Berg",), ("m.md",), (1,)),
        EvalQuestion("a4", "When?", ("1987",), ("h.md",), (1,)),
        EvalQuestion("u1", "Q4 revenue?", (), ()),
        EvalQuestion("u2", "Villach headcount?", (), ()),
    ]
    records = [
        _rec("a1", "answered", "with six months' notice [1]", ["c.docx"], [1]),  # right
        _rec("a2", "answered", "€1,850 per change", ["c.docx"], [1]),  # wrong
        _rec("a3", "not_found"),  # abstained: not wrong
        _rec("a4", "error"),  # an error is no answer
        _rec("u1", "answered", "€49.9 million", ["b.pdf"], [2]),  # wrong
        _rec("u2", "not_found"),  # right
    ]
    assert answered_wrong(qs, records) == pytest.approx(2 / 6, abs=1e-4)
    assert answered_wrong([], []) is None
    # an answer over 40 words is not correct, so it is wrong when given
    long = _rec("a1", "answered", "six months " + "word " * 45, ["c.docx"], [1])
    assert answered_wrong(qs[:1], [long]) == 1.0


def test_business_scores_are_evalkits_plus_answered_wrong() -> None:
    qs = [EvalQuestion("a1", "Notice?", ("six months",), ("c.docx",), (1,)),
          EvalQuestion("u1", "Q4?", (), ())]
    records = [_rec("a1", "answered", "six months", ["c.docx"], [1]),
               _rec("u1", "answered", "€1", ["b.pdf"], [2])]
    got = business.score_business(qs, records)
    base = score(qs, records)
    assert {k: v for k, v in got.items() if k != "answered_wrong"} == base
    assert got["answered_wrong"] == 0.5
    assert list(got).index("answered_wrong") == list(got).index("citation_hit") - 1


def test_citation_hit_checks_the_page_where_the_question_gives_one() -> None:
    q = EvalQuestion("a", "Capex?", ("€4.2 million",), ("b.pdf", "b.pdf"), (3, 4))
    assert cites_gold(q, _rec("a", "answered", "", ["b.pdf"], [4]))
    assert not cites_gold(q, _rec("a", "answered", "", ["b.pdf"], [2]))
    assert not cites_gold(q, _rec("a", "answered", "", ["x.md"], [3]))
    assert cites_gold(q, _rec("a", "answered", "", ["x.md", "b.pdf"], [1, 3]))
    # no pages given (SQuAD, SciFact): the document alone counts, as before
    plain = EvalQuestion("p", "Q?", ("x",), ("01-000",))
    assert cites_gold(plain, _rec("p", "answered", "", ["01-000"]))
    assert cites_gold(plain, _rec("p", "answered", "", ["01-000"], [7]))
    assert not cites_gold(plain, _rec("p", "answered", "", ["01-001"]))
    # a page given as None accepts any page of that document
    anywhere = EvalQuestion("n", "Q?", ("x",), ("b.pdf",), (None,))
    assert cites_gold(anywhere, _rec("n", "answered", "", ["b.pdf"], [3]))


# ------------------------------------------------------------------ upload and baseline


class _FakeClient:
    def __init__(self) -> None:
        self.uploads: list[tuple[str, bytes]] = []

    def upload_bytes(self, filename: str, data: bytes, metadata: Any = None) -> dict[str, str]:
        self.uploads.append((filename, data))
        return {"id": f"id-{filename}", "status": "queued"}

    def wait_ready(self, ids: list[str], timeout: float, on_progress: Any) -> dict[str, Any]:
        return {i: {"id": i, "status": "ready"} for i in ids}


def test_ingest_uploads_files_under_their_names_and_text_as_before(
        data: business.Business) -> None:
    client = _FakeClient()
    plain = EvalDoc("01-000", "01-000.txt", "Plain paragraph.")
    ids = ingest(client, [*data.docs, plain])  # type: ignore[arg-type]
    uploaded = dict(client.uploads)
    assert uploaded["01-000.txt"] == b"Plain paragraph."
    for d in data.docs:
        assert uploaded[d.filename] == d.data
    assert ids["id-board-minutes-2024-11-14.pdf"] == "board-minutes-2024-11-14.pdf"


def test_baseline_indexes_a_paged_document_page_by_page(data: business.Business) -> None:
    minutes = next(d for d in data.docs if d.filename == "board-minutes-2024-11-14.pdf")
    plain = EvalDoc("01-000", "01-000.txt", "Plain paragraph.")
    docs = _documents([minutes, plain])
    assert [m for _, m in docs] == [
        *({"key": minutes.key, "page": n} for n in range(1, len(minutes.pages) + 1)),
        {"key": "01-000"},  # as before: one document, its key only
    ]
    assert docs[1][0] == minutes.pages[1] and docs[-1][0] == "Plain paragraph."


# ----------------------------------------------------------------------- document builder


def test_builder_reads_headings_lists_tables_and_page_breaks() -> None:
    blocks = parse("# Title\n\nLead in:\n- one\n2. two\n\n| a | b |\n|---|---|\n| 1 | 2 |\n"
                   "<!-- page -->\nwrapped\nparagraph\n")
    assert [b.kind for b in blocks] == ["heading", "paragraph", "bullet", "numbered", "table",
                                        "page", "paragraph"]
    assert blocks[3].level == 2 and blocks[4].rows == [["a", "b"], ["1", "2"]]
    assert blocks[-1].text == "wrapped paragraph"


def test_built_pdf_and_docx_read_back_with_the_service_readers(tmp_path: Path) -> None:
    from ingest.readers import read_document

    source = "# Fees\n\nThe fee is €12,400 (net).\n<!-- page -->\n| Item | Fee |\n| A | €5 |\n"
    pdf = tmp_path / "f.pdf"
    pdf.write_bytes(build_pdf(source, "Fees"))
    pages = read_document(pdf, DocumentKind.PDF)
    assert len(pages) == 2 and "The fee is €12,400 (net)." in pages[0].text
    # the table's cells stand in columns: read back as a header-labelled row, as from DOCX
    assert "Item: A | Fee: €5" in pages[1].text and "page 2 of 2" in pages[1].text
    docx = tmp_path / "f.docx"
    docx.write_bytes(build_docx(source, "Fees"))
    (page,) = read_document(docx, DocumentKind.DOCX)
    assert "The fee is €12,400 (net)." in page.text and "Item: A | Fee: €5" in page.text
