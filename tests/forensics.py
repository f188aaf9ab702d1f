"""The on-disk canary scan of the erasure tests and of ``bench.scale``: which files under a
directory hold any of some byte sequences."""

from __future__ import annotations

import os
from collections.abc import Collection, Iterator
from pathlib import Path


def _files(root: Path) -> Iterator[Path]:
    # os.walk, not Path.rglob: a directory removed while it is walked (Chroma drops a
    # segment's folder as a document is erased) is passed over instead of raising
    for folder, _dirs, names in os.walk(root):
        for name in names:
            yield Path(folder) / name


def files_containing(root: Path, needles: list[bytes], skip: Collection[str] = (),
                     absolute: bool = False) -> dict[str, list[str]]:
    """Files under ``root`` and which of ``needles`` each holds, by path relative to
    ``root`` (or absolute). Every file is read whole, logs and SQLite files included,
    except under the top-level entries named in ``skip``."""
    found: dict[str, list[str]] = {}
    for p in _files(Path(root)):
        rel = p.relative_to(root)
        if rel.parts[0] in skip:
            continue
        try:
            if not p.is_file():
                continue
            data = p.read_bytes()
        except OSError:  # removed while we walked
            continue
        hits = [n.decode(errors="replace") for n in needles if n in data]
        if hits:
            found[str(p) if absolute else str(rel)] = hits
    return found
