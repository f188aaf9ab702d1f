"""The ``docqa`` command line, one module per command group:

    docqa up        Chroma server + Celery worker + API on one machine, supervised
    docqa serve     the API only                                        (processes.py)
    docqa worker    a Celery worker only (runs ``python -m workers``)
    docqa keys create --tenant T [--name N] | list [--tenant T] [--json] | revoke KEY_ID
                                                                        (keys.py)
    docqa ingest PATH... [--metadata K=V] [--include GLOB] [--exclude GLOB] (ingest.py)
    docqa ask "question" [--filter K=V] [--top-k N] [--stream] [--json]
    docqa search "query" [--filter K=V] [--top-k N] [--mode M] [--json] (questions.py)
    docqa documents list|get|delete [--json]                            (documents.py)
    docqa audit verify|tail                                             (audit.py)
    docqa eval business|squad2|scifact ...    the evaluations          (evaluate.py)

Errors become one line on stderr and an exit code in one place, :meth:`LazyGroup.invoke`
(the codes: errors.py). Evaluations have their own entry point, ``python -m bench``
(``docqa-bench``); ``docqa eval`` hands its arguments to it without importing it.

A command's module is imported only when that command runs: ``docqa ask`` should not pay
for importing the API server, Chroma's client and the models' libraries.
"""

from __future__ import annotations

from importlib import import_module
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import click

from service.cli.errors import HANDLED, cli_error

COMMANDS = {
    "up": "service.cli.processes:up",
    "serve": "service.cli.processes:serve",
    "worker": "service.cli.processes:worker",
    "keys": "service.cli.keys:keys",
    "ingest": "service.cli.ingest:ingest",
    "ask": "service.cli.questions:ask",
    "search": "service.cli.questions:search",
    "documents": "service.cli.documents:documents",
    "audit": "service.cli.audit:audit",
    "eval": "service.cli.evaluate:evaluate",
}


class LazyGroup(click.Group):
    """Commands named in ``COMMANDS``, each imported from its module on first use; the
    errors a command lets through (the API's, the connection's, the settings') end as one
    line on stderr with the exit code errors.py documents, never as a traceback."""

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

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except HANDLED as exc:
            raise cli_error(exc) from exc


def _version() -> str:
    try:
        return version("docqa")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown (not installed)"


def _print_version(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    if value and not ctx.resilient_parsing:
        click.echo(f"docqa {_version()}")
        ctx.exit()


@click.group(cls=LazyGroup)
@click.option("--version", is_flag=True, expose_value=False, is_eager=True,
              callback=_print_version, help="Print docqa's version and exit.")
def main() -> None:
    """docqa: private document question answering.

    \b
    The client commands (ingest, ask, search, documents) reach the API at --url or
    $DOCQA_URL (default http://DOCQA_HOST:DOCQA_PORT) with --api-key or $DOCQA_API_KEY
    (default: the first key of DOCQA_API_KEYS). Errors are one line on stderr.

    \b
    Exit codes:
      0  done
      1  some documents failed, were rejected at upload, or were not found
      2  usage or auth: bad arguments, no key or a refused key (401/403), a request
         the API refused (400, 409, 413, 415, 422)
      3  service unreachable or unavailable: connection refused, timeout, 5xx,
         429 after waiting out Retry-After for 120 s (retrying later may help)
    """
