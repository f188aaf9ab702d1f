"""The document registry (documents and API keys): SQLite, embedded, by default;
PostgreSQL when API and workers run on several machines.

``common`` holds what both backends share (the queries, written once); ``sqlite`` and
``postgres`` only how each runs them and the SQL that really differs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from core.registry.common import (
    KEY_ID_PREFIX,
    STALE_STATES,
    document_from_row,
    key_from_row,
    metadata_matches,
    new_key_id,
)
from core.registry.sqlite import SqliteDocumentRepository

if TYPE_CHECKING:
    from core.ports import DocumentRepository
    from core.settings import Settings

__all__ = [
    "KEY_ID_PREFIX",
    "STALE_STATES",
    "SqliteDocumentRepository",
    "document_from_row",
    "key_from_row",
    "metadata_matches",
    "new_key_id",
    "open_repository",
]


def open_repository(settings: Settings) -> DocumentRepository:
    """The registry the settings select: PostgreSQL when ``database_url``
    (``DOCQA_DATABASE_URL``) is set, otherwise SQLite at ``settings.registry_path``."""
    if settings.database_url:
        # psycopg is loaded only by processes configured for PostgreSQL
        from core.registry.postgres import PostgresDocumentRepository

        return PostgresDocumentRepository(settings.database_url)
    return SqliteDocumentRepository(settings.registry_path)
