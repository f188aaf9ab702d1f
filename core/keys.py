"""API keys: generated with ``secrets``, stored only as SHA-256 hashes.

Keys carry 256 bits of randomness, so a fast hash is enough (no password stretching). Each
stored key has a public id (``k_<hex>``) by which it is listed and revoked; the plain key is
returned once, at creation. Keys are looked up on every request (no cache), so a revoked key
stops working at its next request, on every API process.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from core.domain import ApiKey
from core.errors import BadInputError
from core.ports import DocumentRepository

KEY_PREFIX = "dq_"
STATIC_KEY_ID_PREFIX = "static-"
_TENANT_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
_KEY_ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


@dataclass(frozen=True, slots=True)
class ResolvedKey:
    """Who a presented key is: its public id (rate limits count per id) and its tenant."""

    key_id: str
    tenant: str


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def validate_tenant(tenant: str) -> str:
    if not _TENANT_RE.match(tenant):
        raise BadInputError(
            "tenant names are 1-63 characters of letters, digits, '.', '_' or '-'"
        )
    return tenant


def valid_key_id(key_id: str) -> bool:
    return bool(_KEY_ID_RE.match(key_id))


def issue_key(repo: DocumentRepository, tenant: str, name: str = "") -> tuple[str, str]:
    """Create a key for ``tenant`` and store its hash; returns (key id, plain key), the
    plain key for the only time."""
    validate_tenant(tenant)
    if len(name) > 200 or "\x00" in name:
        raise BadInputError("key names are at most 200 characters, without NUL")
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    key_id = repo.add_key(hash_key(key), tenant, name)
    return key_id, key


def create_key(repo: DocumentRepository, tenant: str, name: str = "") -> str:
    """Create a key for ``tenant``, store its hash, and return the plain key once."""
    return issue_key(repo, tenant, name)[1]


def resolve_key(
    key: str, static_keys: dict[str, str], repo: DocumentRepository
) -> ResolvedKey | None:
    """Who ``key`` is: configured keys first (ids ``static-1``, ``static-2``… in the order
    of ``DOCQA_API_KEYS``; the id never derives from the key), then active stored keys."""
    for n, (known, tenant) in enumerate(static_keys.items(), start=1):
        if hmac.compare_digest(known.encode(), key.encode()):
            return ResolvedKey(f"{STATIC_KEY_ID_PREFIX}{n}", tenant)
    stored = repo.key_for_hash(hash_key(key))
    return ResolvedKey(stored.id, stored.tenant) if stored else None


def is_admin_key(key: str, admin_key_hash: str | None) -> bool:
    """Whether ``key`` is the admin key, given the SHA-256 hex of the configured one
    (None: no admin key, nothing is)."""
    if not admin_key_hash or not key:
        return False
    return hmac.compare_digest(hash_key(key).encode(), admin_key_hash.lower().encode())


def resolve_tenant(
    key: str, static_keys: dict[str, str], repo: DocumentRepository
) -> str | None:
    """Return the tenant of ``key`` (configured keys first, then stored hashes)."""
    resolved = resolve_key(key, static_keys, repo)
    return resolved.tenant if resolved else None


def public_record(key: ApiKey) -> dict[str, Any]:
    """What may be shown of a stored key (CLI, admin API): never the key or its hash."""
    def iso(ts: float | None) -> str | None:
        return None if ts is None else datetime.fromtimestamp(ts, tz=UTC).isoformat()

    return {"id": key.id, "tenant": key.tenant, "name": key.name,
            "created_at": iso(key.created_at), "revoked_at": iso(key.revoked_at),
            "active": key.active}
