"""``docqa keys``: create, list and revoke API keys on this machine's registry."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from core.audit import AuditUnavailableError, RequestAudit, open_audit, request_id
from core.errors import BadInputError
from core.keys import issue_key, public_record, valid_key_id
from core.registry import open_repository
from core.settings import Settings
from service.cli.common import settings_from


@click.group()
def keys() -> None:
    """Manage API keys (only hashes are stored)."""


@keys.command("create")
@click.option("--tenant", required=True)
@click.option("--name", default="")
@click.option("--data-dir", type=click.Path(path_type=Path), default=None)
def keys_create(tenant: str, name: str, data_dir: Path | None) -> None:
    """Create an API key for TENANT and print it (shown once; only its hash is stored).

    The key goes to stdout alone (for scripts); its id, by which it is listed and revoked,
    to stderr."""
    settings = settings_from(data_dir=data_dir)
    try:
        key_id, key = issue_key(open_repository(settings), tenant, name)
    except BadInputError as exc:
        raise click.UsageError(exc.detail) from None
    audit_key_event(settings, "key_create", tenant, key_id)
    click.echo(key)
    click.echo(f"created key {key_id} for tenant {tenant!r} (the key is shown only this once)",
               err=True)


@keys.command("list")
@click.option("--tenant", default=None, help="only this tenant's keys")
@click.option("--json", "as_json", is_flag=True, help="print JSON (one array)")
@click.option("--data-dir", type=click.Path(path_type=Path), default=None)
def keys_list(tenant: str | None, as_json: bool, data_dir: Path | None) -> None:
    """List stored API keys (ids, tenants, names, dates; never keys or hashes).

    Keys configured in DOCQA_API_KEYS are not stored, so not listed."""
    records = [public_record(k) for k in open_repository(settings_from(data_dir=data_dir))
               .list_keys(tenant)]
    if as_json:
        click.echo(json.dumps(records, indent=2))
        return
    if not records:
        click.echo("no keys", err=True)
        return
    rows = [("ID", "TENANT", "NAME", "CREATED", "STATUS")] + [
        (r["id"], r["tenant"], r["name"], r["created_at"][:19] + "Z",
         "active" if r["active"] else f"revoked {r['revoked_at'][:19]}Z") for r in records
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    for row in rows:
        click.echo("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=False)) + "  " + row[4])


@keys.command("revoke")
@click.argument("key_id")
@click.option("--data-dir", type=click.Path(path_type=Path), default=None)
def keys_revoke(key_id: str, data_dir: Path | None) -> None:
    """Revoke the key KEY_ID (see `docqa keys list`): it stops working at once."""
    settings = settings_from(data_dir=data_dir)
    repo = open_repository(settings)
    if not valid_key_id(key_id) or not repo.revoke_key(key_id):
        click.echo(f"no API key with id {key_id!r}", err=True)
        sys.exit(1)
    audit_key_event(settings, "key_revoke",
                     next((k.tenant for k in repo.list_keys() if k.id == key_id), None), key_id)
    click.echo(f"revoked {key_id}")


def audit_key_event(settings: Settings, event: str, tenant: str | None, key_id: str) -> None:
    """Put a key change made on this machine's command line on the audit record (who:
    ``cli``). Fails closed: a created key is then not shown, a revocation is reported as
    not recorded (exit 1)."""
    try:
        RequestAudit(open_audit(settings), tenant, "cli", request_id(None)).record(
            event, status="ok", target_key_id=key_id)
    except AuditUnavailableError as exc:
        shown = " (not shown; revoke it)" if event == "key_create" else ""
        raise click.ClickException(
            f"{event} {key_id} done{shown} but not on the audit record: {exc.detail}") from None


