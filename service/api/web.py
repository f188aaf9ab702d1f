"""The web page at ``/``: a static page (``service/web/``) that talks to the v1 API from
the browser.

Nothing here needs an API key: the page holds no data, the browser sends the key it was
given (``Authorization: Bearer``) on every /v1 call, exactly like any other client.

Why the page is plain files with a strict Content-Security-Policy (``default-src 'self'``):
the service is on-prem and offline, so the page may fetch nothing from outside (no CDN, no
fonts, no build step), and a page that renders user documents' text must never execute it:
no inline scripts or styles are allowed, the page writes all server text with
``textContent``. Only the assets named in ``ASSETS`` are served (no path from the URL ever
reaches the file system).
"""

from __future__ import annotations

from functools import cache
from importlib.resources import files

from litestar import Response, get
from litestar.exceptions import NotFoundException
from litestar.handlers import HTTPRouteHandler
from litestar.params import FromPath

CONTENT_SECURITY_POLICY = (
    "default-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'; "
    "object-src 'none'"
)
ASSETS: dict[str, str] = {
    "index.html": "text/html; charset=utf-8",
    "app.js": "text/javascript; charset=utf-8",
    "app.css": "text/css; charset=utf-8",
    "icon.svg": "image/svg+xml",
}
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    # the files change with the installed version; revalidating costs little on a LAN
    "Cache-Control": "no-cache",
}


@cache
def _asset(name: str) -> bytes:
    """Read once per process, on first request (not at import)."""
    return (files("service") / "web" / name).read_bytes()


def _serve(name: str) -> Response[bytes]:
    return Response(_asset(name), media_type=ASSETS[name], headers=SECURITY_HEADERS)


@get("/", include_in_schema=False)
async def web_index() -> Response[bytes]:
    return _serve("index.html")


@get("/web/{name:str}", include_in_schema=False)
async def web_asset(name: FromPath[str]) -> Response[bytes]:
    if name not in ASSETS:
        raise NotFoundException(f"no such file: {name[:100]}")
    return _serve(name)


# mounted at the app level (outside the /v1 API-key guard)
route_handlers: list[HTTPRouteHandler] = [web_index, web_asset]
