"""``docqa documents list|get|delete``: the tenant's documents."""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from service.cli.common import client_for, echo_json, json_opt, key_opt, url_opt
from service.cli.errors import FAILED
from service.client import DocqaAPIError, Document

STATUSES = ("queued", "processing", "ready", "failed")


@click.group()
def documents() -> None:
    """List, show and delete the tenant's documents."""


def _table(docs: list[Document]) -> None:
    rows = [("ID", "STATUS", "CHUNKS", "PAGES", "CREATED", "FILENAME")] + [
        (d["id"], d["status"], str(d["chunks"]), str(d["pages"]), d["created_at"][:19] + "Z",
         d["filename"]) for d in docs]
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    for r in rows:
        click.echo("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=False)) + "  " + r[5])


@documents.command("list")
@url_opt
@key_opt
@click.option("--status", type=click.Choice(STATUSES), default=None, help="only these")
@click.option("--limit", type=click.IntRange(1, 500), default=50, show_default=True,
              help="documents per page")
@click.option("--offset", type=click.IntRange(0), default=0, show_default=True,
              help="documents to skip (oldest first)")
@click.option("--all", "every", is_flag=True, help="every document, page after page")
@json_opt
def documents_list(url: str | None, api_key: str | None, status: str | None, limit: int,
                   offset: int, every: bool, as_json: bool) -> None:
    """List documents, oldest first: one page (--limit, --offset) or --all.

    --json: the API's page {items, total, limit, offset} (with --all: every item, offset
    0). Text: a table on stdout; how many there are in all on stderr."""
    with client_for(url, api_key) as client:
        if every:
            items = list(client.iter_documents(status))
            page: dict[str, Any] = {"items": items, "total": len(items), "limit": len(items),
                                    "offset": 0}
        else:
            page = dict(client.documents(status, limit=limit, offset=offset))
    if as_json:
        echo_json(page)
        return
    items = page["items"]
    if items:
        _table(items)
    shown = f"{page['offset'] + 1}-{page['offset'] + len(items)} of " if items else "none of "
    click.echo(f"{shown}{page['total']} document{'s' * (page['total'] != 1)}"
               + (f" ({status})" if status else ""), err=True)


def _echo_document(d: Document) -> None:
    p = d["progress"]
    fields: list[tuple[str, Any]] = [
        ("id", d["id"]), ("filename", d["filename"]), ("kind", d["kind"]),
        ("status", d["status"]),
    ]
    if d["status"] not in ("ready", "failed"):
        total = f"/{p['total']} {p['unit']}".rstrip() if p["total"] else ""
        fields.append(("progress", f"{p['stage']} {p['done']}{total}".strip()))
    if d["error"]:
        fields.append(("error", d["error"]))
    fields += [("chunks", d["chunks"]), ("pages", d["pages"]), ("size", d["size"]),
               ("sha256", d["sha256"]), ("created", d["created_at"]),
               ("updated", d["updated_at"]),
               ("metadata", json.dumps(d["metadata"], ensure_ascii=False)),
               ("pii redacted", "yes" if d["pii"]["redacted"] else "no")]
    width = max(len(k) for k, _ in fields)
    for k, v in fields:
        click.echo(f"{k + ':':<{width + 1}} {v}")


@documents.command("get")
@click.argument("document_id")
@url_opt
@key_opt
@json_opt
def documents_get(document_id: str, url: str | None, api_key: str | None,
                  as_json: bool) -> None:
    """Show one document: status, progress, error, chunks, pages, metadata.

    Exit 1 when it does not exist (or is another tenant's)."""
    with client_for(url, api_key) as client:
        doc = client.document(document_id)
    if as_json:
        echo_json(doc)
    else:
        _echo_document(doc)


@documents.command("delete")
@click.argument("document_ids", nargs=-1, required=True, metavar="ID...")
@url_opt
@key_opt
@json_opt
def documents_delete(document_ids: tuple[str, ...], url: str | None, api_key: str | None,
                     as_json: bool) -> None:
    """Erase documents: vectors, text, stored original and registry row (docs/erasure.md).

    Exit 1 when one of them does not exist (the others are deleted all the same). --json:
    {"deleted": [...], "not_found": [...]}."""
    deleted: list[str] = []
    missing: list[str] = []
    with client_for(url, api_key) as client:
        for doc_id in dict.fromkeys(document_ids):
            try:
                client.delete(doc_id)
            except DocqaAPIError as exc:
                if exc.status != 404:
                    raise
                missing.append(doc_id)
                if not as_json:
                    click.echo(f"{doc_id}: not found", err=True)
                continue
            deleted.append(doc_id)
            if not as_json:
                click.echo(f"deleted {doc_id}")
    if as_json:
        echo_json({"deleted": deleted, "not_found": missing})
    if missing:
        sys.exit(FAILED)
