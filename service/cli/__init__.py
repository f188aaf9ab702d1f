"""The ``docqa`` command line, one module per command group:

    docqa up        Chroma server + Celery worker + API on one machine, supervised
    docqa serve     the API only                                        (processes.py)
    docqa worker    a Celery worker only (runs ``python -m workers``)
    docqa keys create --tenant T [--name N] | list [--tenant T] [--json] | revoke KEY_ID
                                                                        (keys.py)
    docqa ingest PATH...  /  docqa ask "question"                       (documents.py)
    docqa audit verify|tail                                             (audit.py)

Evaluations have their own entry point, ``python -m bench`` (``docqa-bench``).

A command's module is imported only when that command runs: ``docqa ask`` should not pay
for importing the API server, Chroma's client and the models' libraries.
"""

from __future__ import annotations

from importlib import import_module

import click

COMMANDS = {
    "up": "service.cli.processes:up",
    "serve": "service.cli.processes:serve",
    "worker": "service.cli.processes:worker",
    "keys": "service.cli.keys:keys",
    "ingest": "service.cli.documents:ingest",
    "ask": "service.cli.documents:ask",
    "audit": "service.cli.audit:audit",
}


class LazyGroup(click.Group):
    """Commands named in ``COMMANDS``, each imported from its module on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *COMMANDS})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = COMMANDS.get(cmd_name)
        if target is None:
            return super().get_command(ctx, cmd_name)
        module, _, attr = target.partition(":")
        command = getattr(import_module(module), attr)
        assert isinstance(command, click.Command), target
        return command


@click.group(cls=LazyGroup)
def main() -> None:
    """docqa: private document question answering."""
