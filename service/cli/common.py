"""What every command group shares: settings from flags and the environment, the API
address and key, the typed HTTP client, and ``KEY=VALUE`` options."""

from __future__ import annotations

import json
from typing import Any

import click

from core.settings import Settings, apply_offline_env
from service.cli.errors import UsageOrAuthError
from service.client import DocqaClient


def settings_from(**overrides: Any) -> Settings:
    """The settings (environment, ``DOCQA_*``), with the flags that were given on top."""
    apply_offline_env()
    return Settings(**{k: v for k, v in overrides.items() if v is not None})


def client_for(url: str | None, api_key: str | None) -> DocqaClient:
    """A client of the API; a request refused by the rate limit is sent again after its
    ``Retry-After`` for up to 120 s before the 429 reaches the command (exit 3)."""
    base, key = address(url, api_key)
    return DocqaClient(base, key, wait_on_429_s=120)


def address(url: str | None, api_key: str | None) -> tuple[str, str]:
    """The API URL and key. ``url`` and ``api_key`` come from the flags or, through click,
    $DOCQA_URL and $DOCQA_API_KEY; without them: this machine's DOCQA_HOST:DOCQA_PORT and
    the first key of DOCQA_API_KEYS."""
    settings = settings_from()
    key = api_key or next(iter(settings.static_api_keys), "")  # key → tenant
    if not key:
        raise UsageOrAuthError("no API key: give --api-key, or set DOCQA_API_KEY or "
                               "DOCQA_API_KEYS")
    return url or f"http://{settings.host}:{settings.port}", key


url_opt = click.option("--url", envvar="DOCQA_URL", show_envvar=True, default=None,
                       help="API URL (default http://DOCQA_HOST:DOCQA_PORT)")
key_opt = click.option("--api-key", envvar="DOCQA_API_KEY", show_envvar=True, default=None,
                       help="API key (default: the first of DOCQA_API_KEYS)")
json_opt = click.option("--json", "as_json", is_flag=True,
                        help="print the API's JSON instead of text")


def parse_pair(raw: str, option: str) -> tuple[str, Any]:
    """``KEY=VALUE`` → (KEY, "VALUE"), a string; ``KEY:=JSON`` → (KEY, the JSON value), for
    numbers, true/false and lists (``year:=2024``, ``tags:='["a","b"]'``)."""
    key, eq, value = raw.partition("=")
    if not eq:
        raise click.BadParameter(f"{raw!r} is not KEY=VALUE", param_hint=option)
    typed = key.endswith(":")
    key = key.removesuffix(":").strip()
    if not key:
        raise click.BadParameter(f"{raw!r} has no key", param_hint=option)
    if not typed:
        return key, value
    try:
        return key, json.loads(value)
    except ValueError:
        raise click.BadParameter(f"{raw!r}: {value!r} is not JSON (use KEY=VALUE for a "
                                 "string)", param_hint=option) from None


def parse_metadata(pairs: tuple[str, ...]) -> dict[str, Any]:
    return dict(parse_pair(p, "--metadata") for p in pairs)


FILTER_KEYS = "filename=GLOB, id=DOCUMENT_ID, uploaded_after=DATE, uploaded_before=DATE"


def parse_filters(pairs: tuple[str, ...]) -> dict[str, Any]:
    """``--filter`` pairs as the API's ``filters``: ``filename=GLOB``, ``id=DOCUMENT_ID``
    (repeatable), ``uploaded_after=``/``uploaded_before=`` (ISO 8601); any other key is a
    metadata condition (``team=legal``; ``meta.filename=x`` for a metadata key that is one
    of those names)."""
    filters: dict[str, Any] = {}
    for raw in pairs:
        key, value = parse_pair(raw, "--filter")
        if key in ("id", "document_id"):
            filters.setdefault("document_ids", []).append(str(value))
        elif key in ("filename", "uploaded_after", "uploaded_before"):
            filters[key] = str(value)
        else:
            filters.setdefault("metadata", {})[key.removeprefix("meta.")] = value
    return filters


filter_opt = click.option(
    "--filter", "filter_pairs", multiple=True, metavar="KEY=VALUE",
    help=f"narrow to some documents (repeatable, all must hold): {FILTER_KEYS}; any other "
    "KEY=VALUE matches upload metadata (KEY:=JSON for a number, true/false)")


def echo_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, ensure_ascii=False))
