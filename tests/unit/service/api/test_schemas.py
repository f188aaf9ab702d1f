"""The API's response bodies (service/api/schemas.py): the progress unit of a document."""

from __future__ import annotations

from core.domain import Document, DocumentKind, DocumentStatus, Progress
from service.api.schemas import DocumentOut


def _doc(status: str = "processing", stage: str = "parsing", done: int = 0,
         total: int = 0) -> Document:
    return Document(id="d1", tenant="acme", filename="a.pdf", kind=DocumentKind.PDF,
                    sha256="0" * 64, size=10, status=DocumentStatus(status),
                    created_at=1.0, updated_at=1.0, progress=Progress(stage, done, total))


def test_the_unit_follows_the_stage() -> None:
    units: dict[str, str] = {}
    for stage in ["queued", "parsing", "chunking", "embedding", "indexing", "ready", "failed"]:
        units[stage] = DocumentOut.from_domain(_doc(stage=stage)).progress.unit
    assert units == {"queued": "", "parsing": "pages", "chunking": "", "embedding": "chunks",
                     "indexing": "chunks", "ready": "", "failed": ""}
