"""What every command group shares: settings from flags and the environment, the API
address and key, and the typed HTTP client."""

from __future__ import annotations

import os
from typing import Any

import click

from core.settings import Settings, apply_offline_env
from service.client import DocqaClient


def settings_from(**overrides: Any) -> Settings:
    """The settings (environment, ``DOCQA_*``), with the flags that were given on top."""
    apply_offline_env()
    return Settings(**{k: v for k, v in overrides.items() if v is not None})


def client_for(url: str | None, api_key: str | None) -> DocqaClient:

    base, key = address(url, api_key)
    return DocqaClient(base, key, wait_on_429_s=120)


def address(url: str | None, api_key: str | None) -> tuple[str, str]:
    """The API URL and key: flags, then $DOCQA_API_KEY, then the first of DOCQA_API_KEYS."""
    settings = settings_from()
    key = api_key or os.environ.get("DOCQA_API_KEY") or next(iter(settings.static_api_keys), "")
    if not key:
        raise click.UsageError("give --api-key, or set DOCQA_API_KEY or DOCQA_API_KEYS")
    return url or f"http://{settings.host}:{settings.port}", key


url_opt = click.option("--url", default=None, help="API URL (default from settings)")
key_opt = click.option("--api-key", default=None, help="API key (default $DOCQA_API_KEY)")
