"""``docqa ask`` and ``docqa search``: questions and searches over the tenant's documents."""

from __future__ import annotations

import json
from typing import Any

import click

from service.cli.common import (
    client_for,
    echo_json,
    filter_opt,
    json_opt,
    key_opt,
    parse_filters,
    url_opt,
)
from service.client import AskResponse, DocqaClient, SearchResult

NOT_FOUND_TEXT = "Not found in your documents."


def _echo_citations(result: AskResponse) -> None:
    for c in result["citations"]:
        click.echo(f"  [{c['n']}] {c['filename']} p.{c['page']} ({c['start']}-{c['end']}): "
                   f"\"{c['quote']}\"")


def _echo_answer(result: AskResponse) -> None:
    click.echo(result["answer"] if result["status"] != "not_found" else NOT_FOUND_TEXT)
    _echo_citations(result)


def _ask_streamed(client: DocqaClient, question: str, top_k: int | None,
                  filters: dict[str, Any], as_json: bool) -> None:
    """Tokens as they come, then the citations. In generative mode the tokens are the
    model's unverified draft: when the verified answer says something else, it follows on a
    line of its own (stderr says so). ``--json``: every event as a JSON line."""
    streamed: list[str] = []
    for event in client.ask_stream(question, top_k, **filters):
        if as_json:
            click.echo(json.dumps({"event": event.event, "data": event.data},
                                  ensure_ascii=False))
        elif event.event == "token":
            text = str(event.data.get("text", ""))
            streamed.append(text)
            click.echo(text, nl=False)  # click.echo flushes
        elif event.event == "final":
            result: AskResponse = event.data  # type: ignore[assignment]
            drafted = "".join(streamed)
            if drafted:
                click.echo()
            kept = result["status"] != "not_found" and \
                drafted.split() == result["answer"].split()
            if not kept:
                if drafted:
                    click.echo("(the draft above was not kept; the verified answer follows)",
                               err=True)
                click.echo(result["answer"] if result["status"] != "not_found"
                           else NOT_FOUND_TEXT)
            _echo_citations(result)


@click.command()
@click.argument("question")
@url_opt
@key_opt
@filter_opt
@click.option("--top-k", type=click.IntRange(1, 50), default=None,
              help="passages retrieved (default: the service's, DOCQA_RETRIEVAL__TOP_K)")
@click.option("--stream", is_flag=True,
              help="print the answer as it is written, then its citations")
@json_opt
def ask(question: str, url: str | None, api_key: str | None, filter_pairs: tuple[str, ...],
        top_k: int | None, stream: bool, as_json: bool) -> None:
    """Ask a question and print the answer with its citations.

    "Not found in your documents." is an answer (exit 0); --json shows its status
    (answered | not_found). With --stream --json: one JSON line per event (token..., final).
    """
    filters = parse_filters(filter_pairs)
    with client_for(url, api_key) as client:
        if stream:
            _ask_streamed(client, question, top_k, filters, as_json)
            return
        result = client.ask(question, top_k, **filters)
    if as_json:
        echo_json(result)
    else:
        _echo_answer(result)


def _snippet(text: str, width: int = 160) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[:width - 1].rstrip() + "…"


def _echo_hit(rank: int, hit: SearchResult) -> None:
    click.echo(f"{rank:>3}. {hit['score']:.3f}  {hit['filename']} p.{hit['page']}  "
               f"({hit['document_id']})")
    click.echo(f"     {_snippet(hit['text'])}")


@click.command()
@click.argument("query")
@url_opt
@key_opt
@filter_opt
@click.option("--top-k", type=click.IntRange(1, 200), default=None,
              help="chunks returned (default: the service's, DOCQA_RETRIEVAL__TOP_K)")
@click.option("--mode", type=click.Choice(["hybrid", "dense", "keyword"]), default=None,
              help="hybrid: dense and keyword rankings fused (the default); dense: "
              "embeddings only; keyword: BM25 only")
@json_opt
def search(query: str, url: str | None, api_key: str | None, filter_pairs: tuple[str, ...],
           top_k: int | None, mode: str | None, as_json: bool) -> None:
    """Search the documents' passages: ranked chunks with their scores.

    Exit 0 also when nothing matches (no lines; --json: an empty `results`)."""
    filters = parse_filters(filter_pairs)
    with client_for(url, api_key) as client:
        found = client.search(query, top_k, mode, **filters)
    if as_json:
        echo_json(found)
        return
    for rank, hit in enumerate(found["results"], 1):
        _echo_hit(rank, hit)
