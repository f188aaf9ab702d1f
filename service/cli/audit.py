"""``docqa audit``: check the audit log's hash chain, or read its last entries."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from core.audit import tail, verify
from service.cli.common import settings_from


@click.group()
def audit() -> None:
    """Check or read the audit log (DATA/audit.log unless DOCQA_AUDIT__PATH)."""


audit_path_opt = click.option("--path", "path", type=click.Path(path_type=Path), default=None,
                              help="audit log file (default from settings)")


@audit.command("verify")
@audit_path_opt
def audit_verify(path: Path | None) -> None:
    """Check the hash chain; exit 0 when intact, 1 when tampered or truncated."""
    path = path or settings_from().audit_path
    if not path.exists() and not Path(str(path) + ".head").exists():
        click.echo(f"no audit log at {path}", err=True)
        sys.exit(2)
    result = verify(path)
    click.echo(result.message(path), err=not result.ok)
    sys.exit(0 if result.ok else 1)


@audit.command("tail")
@audit_path_opt
@click.option("-n", "lines", type=int, default=10, show_default=True)
def audit_tail(path: Path | None, lines: int) -> None:
    """Print the last entries (JSON lines)."""
    path = path or settings_from().audit_path
    if not path.exists():
        raise click.ClickException(f"no audit log at {path}")
    for line in tail(path, lines):
        click.echo(line)


