"""docs/configuration.md lists every setting: a field added to core/settings.py without a
row there fails here, so the reference cannot fall behind the code."""

from __future__ import annotations

import re
from pathlib import Path

from pydantic import BaseModel

from core.settings import Settings

DOC = Path(__file__).resolve().parents[3] / "docs" / "configuration.md"


def env_names(model: type[BaseModel], prefix: str = "DOCQA_") -> list[str]:
    """The environment variable of every leaf setting (``DOCQA_`` + path joined by ``__``)."""
    names: list[str] = []
    for name, field in model.model_fields.items():
        kind = field.annotation
        if isinstance(kind, type) and issubclass(kind, BaseModel):
            names += env_names(kind, f"{prefix}{name.upper()}__")
        else:
            names.append(prefix + name.upper())
    return names


def documented() -> set[str]:
    """Variables named in the first column of a table row of the doc."""
    names: set[str] = set()
    for line in DOC.read_text(encoding="utf-8").splitlines():
        if line.startswith("| `DOCQA_"):
            names.update(re.findall(r"`(DOCQA_[A-Z0-9_]+)`", line.split("|")[1]))
    return names


def test_the_walk_sees_nested_settings() -> None:
    names = env_names(Settings)
    assert "DOCQA_REDIS_URL" in names and "DOCQA_CHROMA__PORT" in names
    assert "DOCQA_LIMITS__PDF_MAX_PAGES" in names and "DOCQA_CHROMA" not in names


def test_every_setting_has_a_row_in_docs_configuration() -> None:
    missing = [n for n in env_names(Settings) if n not in documented()]
    assert not missing, f"add these to docs/configuration.md: {missing}"


def test_docs_configuration_names_no_setting_that_does_not_exist() -> None:
    unknown = sorted(documented() - set(env_names(Settings)))
    assert not unknown, f"docs/configuration.md names settings core/settings.py lacks: {unknown}"
