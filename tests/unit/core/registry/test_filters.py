"""Registry-side filter resolution: the pure helpers every backend shares.

The filters themselves (``find_ids``: only ever the caller's tenant, each condition) run
against SQLite and PostgreSQL in ``core/registry/test_backends.py``.
"""

import re
import sqlite3

import pytest

from core.registry import metadata_matches
from core.registry.postgres import glob_to_regex


def test_metadata_matching_is_type_strict_for_booleans() -> None:
    assert metadata_matches({"flag": True}, {"flag": True})
    assert not metadata_matches({"flag": 1}, {"flag": True})
    assert not metadata_matches({}, {"team": "x"})


NAMES = ["contract-2024.pdf", "Contract.pdf", "a]b", "a-b", "a\\b", "ab", "é.txt", "z", "[x].pdf",
         "x.pdf", "a.b", "a+b", "ñ", "report (1).pdf", "-", "^", "a^b", "(?i)x", "$1.txt", ""]


@pytest.mark.parametrize("pattern", [
    "contract-*", "*.pdf", "[]]*", "a[]-]b", "a[^-]b", "a[^]]b", "[a-c]*", "[c-a]*", "[a-c-e]*",
    "a\\b", "[x].pdf", "\\[x].pdf", "?", "??", "[é-ñ]*", "a.b", "a+b", "*(1)*", "[-]", "[^]",
    "[", "a[b", "[!x]*", "*[0-9]*", "[]-a]*", "^", "a^b", "[\\^]", "(?i)x", "$1.txt", "*", "",
    "[]", "[^a]", "[^^]*",
])
def test_glob_translation_matches_sqlite_glob(pattern: str) -> None:
    """The PostgreSQL backend's regex for a filename glob accepts exactly what SQLite's
    GLOB accepts (Python's ``re`` reads the emitted escapes as PostgreSQL does)."""
    oracle = sqlite3.connect(":memory:")
    regex = glob_to_regex(pattern)
    for name in NAMES:
        expected = bool(oracle.execute("SELECT ? GLOB ?", (name, pattern)).fetchone()[0])
        got = regex is not None and re.fullmatch(regex, name, re.DOTALL) is not None
        assert got == expected, (pattern, name, regex)
