"""The on-disk canary scan of the erasure tests and of ``bench.scale``: which files under a
directory hold any of some byte sequences."""

from __future__ import annotations

from pathlib import Path


def files_containing(root: Path, needles: list[bytes]) -> dict[str, list[str]]:
    """Files under ``root`` (relative paths) and which of ``needles`` each holds. Every
    file is read whole, logs and SQLite files included."""
    found: dict[str, list[str]] = {}
    for p in Path(root).rglob("*"):
        try:
            if not p.is_file():
                continue
            data = p.read_bytes()
        except OSError:  # removed while we walked
            continue
        hits = [n.decode(errors="replace") for n in needles if n in data]
        if hits:
            found[str(p.relative_to(root))] = hits
    return found
