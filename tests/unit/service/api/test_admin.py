"""The /admin API (service/api/admin.py) through the real Litestar app (its guards, handlers
and error mapping) on a SQLite registry: who may call it, creating, listing and revoking
keys, the admin key's settings, and key changes on the audit record."""

from __future__ import annotations

import hashlib
import json
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import TestClient

from core.audit import AuditLog
from core.errors import ConfigurationError
from core.keys import create_key, hash_key
from tests.unit.conftest import FakeAnswers, bearer, is_problem
from tests.unit.conftest import make_app as shared_make_app

ADMIN = "admin-" + "x" * 30
STATIC = "static-acme-key-0123456789"
# the shared app (tests/unit/conftest.py) with this file's static key
make_app = partial(shared_make_app, api_keys=f"acme:{STATIC}")


# ---------------------------------------------------------------- admin API


def test_without_an_admin_key_the_admin_api_is_absent(tmp_path: Path) -> None:
    app, _ = make_app(tmp_path)
    with TestClient(app) as client:
        for method, path in (("GET", "/admin/keys"), ("POST", "/admin/keys"),
                             ("DELETE", "/admin/keys/k_1")):
            resp = client.request(method, path, headers=bearer(ADMIN))
            assert is_problem(resp, 404), (method, path, resp.text)


def test_admin_routes_need_the_admin_key(tmp_path: Path) -> None:
    app, repo = make_app(tmp_path, admin_key=ADMIN)
    stored = create_key(repo, "acme")
    with TestClient(app) as client:
        for headers in ({}, bearer(STATIC), bearer(stored), bearer(ADMIN + "x"),
                        {"Authorization": f"Basic {ADMIN}"}):
            for method, path in (("GET", "/admin/keys"), ("POST", "/admin/keys"),
                                 ("DELETE", "/admin/keys/k_1")):
                resp = client.request(method, path, headers=headers, json={"tenant": "x"})
                assert is_problem(resp, 401), (headers, method, path, resp.text)
                assert resp.headers["www-authenticate"].startswith("Bearer")
        assert client.get("/admin/keys", headers=bearer(ADMIN)).status_code == 200
        # and the admin key is no tenant key
        assert is_problem(client.get("/v1/documents", headers=bearer(ADMIN)), 401)


def test_create_list_revoke_through_the_admin_api(tmp_path: Path) -> None:
    app, repo = make_app(tmp_path, admin_key=ADMIN)
    with TestClient(app) as client:
        made = client.post("/admin/keys", headers=bearer(ADMIN),
                           json={"tenant": "initech", "name": "ci"})
        assert made.status_code == 201, made.text
        body = made.json()
        assert set(body) == {"id", "tenant", "name", "created_at", "key"}
        assert body["key"].startswith("dq_") and body["id"].startswith("k_")
        assert (body["tenant"], body["name"]) == ("initech", "ci") and body["created_at"]
        assert made.headers["cache-control"] == "no-store"
        key, key_id = body["key"], body["id"]
        assert key.encode() not in (tmp_path / "registry.sqlite3").read_bytes()  # hash only

        assert client.get("/v1/documents", headers=bearer(key)).status_code == 200

        other = client.post("/admin/keys", headers=bearer(ADMIN), json={"tenant": "acme"}).json()
        listing = client.get("/admin/keys", headers=bearer(ADMIN))
        assert listing.status_code == 200
        items = listing.json()["items"]
        assert [i["id"] for i in items] == [key_id, other["id"]]
        assert set(items[0]) == {"id", "tenant", "name", "created_at", "revoked_at", "active"}
        assert key not in listing.text and other["key"] not in listing.text
        assert hash_key(key) not in listing.text
        only = client.get("/admin/keys", params={"tenant": "acme"}, headers=bearer(ADMIN))
        assert [i["id"] for i in only.json()["items"]] == [other["id"]]

        assert client.delete(f"/admin/keys/{key_id}", headers=bearer(ADMIN)).status_code == 204
        revoked = client.get("/v1/documents", headers=bearer(key))  # at once
        assert is_problem(revoked, 401)
        assert client.get("/v1/documents", headers=bearer(other["key"])).status_code == 200
        items = client.get("/admin/keys", headers=bearer(ADMIN)).json()["items"]
        assert [(i["active"], i["revoked_at"] is not None) for i in items] == [
            (False, True), (True, False)]
        assert client.delete(f"/admin/keys/{key_id}", headers=bearer(ADMIN)).status_code == 204
        for missing in ("k_0000000000000000", "static-1", "a%00b"):
            assert is_problem(client.delete(f"/admin/keys/{missing}", headers=bearer(ADMIN)), 404)
    assert [k.active for k in repo.list_keys()] == [False, True]


@pytest.mark.parametrize("body", [{"tenant": "bad tenant"}, {"tenant": ""}, {},
                                  {"tenant": "acme", "name": "x" * 201},
                                  {"tenant": "acme", "extra": 1}])
def test_bad_create_requests_are_400(tmp_path: Path, body: dict[str, Any]) -> None:
    app, repo = make_app(tmp_path, admin_key=ADMIN)
    with TestClient(app) as client:
        resp = client.post("/admin/keys", headers=bearer(ADMIN), json=body)
        assert is_problem(resp, 400), resp.text
        assert is_problem(client.get("/admin/keys", params={"tenant": "a b"},
                                     headers=bearer(ADMIN)), 400)
    assert repo.list_keys() == []


def test_admin_key_given_as_its_hash(tmp_path: Path) -> None:
    digest = hashlib.sha256(ADMIN.encode()).hexdigest().upper()
    app, _ = make_app(tmp_path, admin_key_sha256=digest)
    with TestClient(app) as client:
        assert client.get("/admin/keys", headers=bearer(ADMIN)).status_code == 200
        assert client.get("/admin/keys", headers=bearer(digest)).status_code == 401


@pytest.mark.parametrize("settings", [{"admin_key": STATIC},
                                      {"admin_key_sha256": "not-hex"},
                                      {"admin_key": ADMIN, "admin_key_sha256": "a" * 64}])
def test_unusable_admin_key_settings_stop_the_start(tmp_path: Path,
                                                    settings: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError):
        make_app(tmp_path, **settings)


# ---------------------------------------------------------------- key changes on the audit record


def _lines(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines(keepends=True)


_Answers = FakeAnswers  # the name test_admin_key_changes_are_audited uses


def test_admin_key_changes_are_audited(tmp_path: Path) -> None:
    from litestar.testing import TestClient

    from core.registry import open_repository
    from core.settings import Settings
    from service.api.app import create_app
    from service.api.components import Components

    settings = Settings(data_dir=tmp_path, admin_key="admin-secret-1", load_generator=False,
                        database_url=None)
    comps = Components(settings=settings, repo=open_repository(settings), store=None,  # type: ignore[arg-type]
                       documents=None, answers=_Answers(), redis=None,  # type: ignore[arg-type]
                       audit=AuditLog(settings.audit_path))
    auth = {"Authorization": "Bearer admin-secret-1"}
    with TestClient(create_app(settings, comps)) as client:
        made = client.post("/admin/keys", json={"tenant": "globex"}, headers=auth)
        assert made.status_code == 201, made.text
        gone = client.delete(f"/admin/keys/{made.json()['id']}", headers=auth)
        assert gone.status_code == 204, gone.text
    entries = [json.loads(x) for x in _lines(settings.audit_path)]
    assert [(e["event"], e["key_id"], e["tenant"], e["target_key_id"]) for e in entries] == [
        ("key_create", "admin", "globex", made.json()["id"]),
        ("key_revoke", "admin", "globex", made.json()["id"])]
    text = settings.audit_path.read_text()
    assert made.json()["key"] not in text and "admin-secret-1" not in text
