"""API keys: generated with ``secrets``, stored only as SHA-256 hashes.

Keys carry 256 bits of randomness, so a fast hash is enough (no password stretching).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets

from core.errors import BadInputError
from core.ports import DocumentRepository

KEY_PREFIX = "dq_"
_TENANT_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def validate_tenant(tenant: str) -> str:
    if not _TENANT_RE.match(tenant):
        raise BadInputError(
            "tenant names are 1-63 characters of letters, digits, '.', '_' or '-'"
        )
    return tenant


def create_key(repo: DocumentRepository, tenant: str, name: str = "") -> str:
    """Create a key for ``tenant``, store its hash, and return the plain key once."""
    validate_tenant(tenant)
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    repo.add_key(hash_key(key), tenant, name)
    return key


def resolve_tenant(
    key: str, static_keys: dict[str, str], repo: DocumentRepository
) -> str | None:
    """Return the tenant of ``key`` (configured keys first, then stored hashes)."""
    for known, tenant in static_keys.items():
        if hmac.compare_digest(known.encode(), key.encode()):
            return tenant
    return repo.tenant_for_key_hash(hash_key(key))
