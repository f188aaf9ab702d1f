"""``docqa eval ...``: the evaluations (``docqa eval business --split test --json OUT``,
``docqa eval squad2 …``, ``docqa eval scifact …``) under the one command users know.

The evaluations live in ``bench``, the layer above the service, which the service never
imports: this command replaces itself with ``python -m bench`` and its arguments, so
their output, exit code and ``--help`` are the bench's own."""

from __future__ import annotations

import os
import sys

import click


@click.command("eval", context_settings={"ignore_unknown_options": True,
                                          "allow_extra_args": True,
                                          "help_option_names": []})
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def evaluate(args: tuple[str, ...]) -> None:
    """Run an evaluation: business, squad2 or scifact (the same as docqa-bench)."""
    # this interpreter and its own module; the arguments go to bench as a list, no shell
    os.execv(sys.executable, [sys.executable, "-m", "bench", *args])  # noqa: S606
