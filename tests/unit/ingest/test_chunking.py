"""Chunking (ingest/chunking.py): offsets and pages index the extracted text; stable ids."""

from core.domain import Page
from ingest.chunking import chunk_pages, text_between
from ingest.readers import full_text

KEY = b"k" * 32  # the document's chunk-id key


def test_chunk_offsets_and_pages_index_the_extracted_text() -> None:
    body = " ".join(f"Sentence {i} is about widget number {i}." for i in range(120))
    pages = [Page(1, body, 0), Page(2, "Second page text. It ends here.", len(body) + 2)]
    chunks = chunk_pages("doc", pages, size=50, overlap=10, id_key=KEY)
    text = full_text(pages)
    assert len(chunks) > 3
    for c in chunks:
        assert text[c.start : c.end] == c.text
    assert chunks[-1].page == 2 and chunks[0].page == 1
    assert [c.index for c in chunks] == list(range(len(chunks)))
    # running twice gives the same ids: re-ingest is a no-op upsert
    assert [c.id for c in chunk_pages("doc", pages, 50, 10, KEY)] == [c.id for c in chunks]


def test_the_text_between_two_offsets_comes_back_from_the_chunks() -> None:
    """``GET /v1/documents/{id}/text`` has only the chunks (the store keeps no other copy of
    the text): overlapping chunks give every character back at its offset, the gaps between
    them are the whitespace the splitter dropped, and a page change is the page separator."""
    paras = ["\n\n".join(" ".join(f"Clause {p}.{i} binds party {i % 7} until year {2000 + i}."
                                  for i in range(j, j + 9)) for j in range(0, 45, 9))
             for p in range(3)]
    pages, offset = [], 0
    for n, body in enumerate(paras, start=1):
        pages.append(Page(n, body, offset))
        offset += len(body) + 2
    pages.append(Page(4, "", offset))  # an empty page: no chunk at all
    pages.append(Page(5, "The last page.", offset + 2))
    text = full_text(pages)
    chunks = chunk_pages("doc", pages, size=40, overlap=8, id_key=KEY)
    assert len(chunks) > 10 and {c.page for c in chunks} == {1, 2, 3, 5}
    for start, end in [(0, len(text)), (0, 1), (5, 900), (len(paras[0]) - 20, len(paras[0]) + 40),
                       (1234, 1234), (len(text) - 30, len(text) + 500)]:
        got, clipped = text_between(chunks, start, end)
        assert clipped == min(end, len(text)) and len(got) == clipped - start
        want = text[start:clipped]
        assert got == want or (got.split() == want.split() and all(
            g == w for g, w in zip(got, want, strict=True) if not w.isspace())), (start, end)
    assert text_between(chunks, 0, len(text))[0] == text  # separators included
    assert text_between(chunks, len(text) + 5, len(text) + 50) == ("", len(text) + 5)


_CHUNK_IN_A_FRESH_PROCESS = """
import json, sys
if sys.argv[1] == "full":
    import nltk, scipy.stats, sklearn  # nltk as it loads where scipy and sklearn are imported
from core.domain import Page
from ingest.chunking import chunk_pages
text = " ".join(f"Dr. Smith met Mr. Jones on Jan. {i}. They signed clause {i}.{i} at 5 p.m. sharp."
                for i in range(90))
chunks = chunk_pages("doc", [Page(1, text, 0)], 60, 10, b"k" * 32)
lean = not {"scipy", "sklearn"} & set(sys.modules)
import scipy.stats  # still importable by whoever needs it afterwards
print(json.dumps({"chunks": [(c.start, c.end) for c in chunks], "lean": lean}))
"""


def test_the_splitter_loads_nltk_without_scipy_or_sklearn_and_cuts_the_same() -> None:
    """nltk imports scipy and scikit-learn only for features the splitter never uses (about
    100 MB in every worker child): chunking leaves them out, and cuts where nltk with them
    loaded cuts."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[3]
    out = {how: json.loads(subprocess.run(
        [sys.executable, "-c", _CHUNK_IN_A_FRESH_PROCESS, how], cwd=root, check=True,
        capture_output=True, text=True, timeout=120).stdout) for how in ("lean", "full")}
    assert out["lean"]["lean"] and not out["full"]["lean"]
    assert len(out["lean"]["chunks"]) > 3
    assert out["lean"]["chunks"] == out["full"]["chunks"]
