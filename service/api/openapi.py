"""The OpenAPI document (``/schema/openapi.json``) and its browsable page (``/schema``).

The page is Swagger UI 5 (it reads OpenAPI 3.1) from the static files the ``swagger-ui-py``
package ships, never from a CDN: an on-prem service must not tell the internet it exists, nor
run third-party JavaScript on the origin where the web page keeps its API key. Only the three
files the page loads are served (no path from the URL reaches the file system).
"""

from __future__ import annotations

from functools import cache
from importlib.metadata import version
from importlib.resources import files

from litestar import Response, get
from litestar.exceptions import NotFoundException
from litestar.handlers import HTTPRouteHandler
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import JsonRenderPlugin, SwaggerRenderPlugin
from litestar.openapi.spec import Components, SecurityScheme, Tag
from litestar.params import FromPath

from service.api.errors import problem_types_description

SECURITY_SCHEME = "apiKey"
ASSETS_PATH = "/schema-assets"
ASSETS: dict[str, str] = {
    "swagger-ui-bundle.js": "text/javascript; charset=utf-8",
    "swagger-ui-standalone-preset.js": "text/javascript; charset=utf-8",
    "swagger-ui.css": "text/css; charset=utf-8",
}
TAGS = [
    Tag(name="documents", description="Upload, list, follow and delete documents"),
    Tag(name="questions", description="Search and grounded, cited answers"),
    Tag(name="openai", description="OpenAI-compatible chat, models and embeddings"),
    Tag(name="admin", description="API keys (the admin key only)"),
    Tag(name="operations", description="Liveness, readiness and metrics"),
]


def openapi_config() -> OpenAPIConfig:
    return OpenAPIConfig(
        title="docqa",
        version=version("docqa"),
        description="Private document question answering: answers cited to the exact "
                    "passage of your documents, or an honest not_found.\n\n"
                    "Every error is an RFC 9457 problem (`application/problem+json`, schema "
                    "`Problem`) whose `type` names its kind:\n\n"
                    + problem_types_description(),
        components=Components(security_schemes={SECURITY_SCHEME: SecurityScheme(
            type="http", scheme="bearer",
            description="An API key: `Authorization: Bearer <key>` (`docqa keys create`)")}),
        tags=TAGS,
        path="/schema",
        render_plugins=[
            SwaggerRenderPlugin(
                path=["/", "/swagger"],
                js_url=f"{ASSETS_PATH}/swagger-ui-bundle.js",
                css_url=f"{ASSETS_PATH}/swagger-ui.css",
                standalone_preset_js_url=f"{ASSETS_PATH}/swagger-ui-standalone-preset.js",
                favicon="<link rel='icon' href='/web/icon.svg'>",
            ),
            JsonRenderPlugin(),
        ],
    )


@cache
def _asset(name: str) -> bytes:
    """Read once per process, on first request (not at import)."""
    # only the package's static files: its server integrations are not used
    return (files("swagger_ui") / "static" / name).read_bytes()


@get(f"{ASSETS_PATH}/{{name:str}}", include_in_schema=False)
async def schema_asset(name: FromPath[str]) -> Response[bytes]:
    if name not in ASSETS:
        raise NotFoundException(f"no such file: {name[:100]}")
    return Response(_asset(name), media_type=ASSETS[name],
                    headers={"Cache-Control": "max-age=86400",
                             "X-Content-Type-Options": "nosniff"})


route_handlers: list[HTTPRouteHandler] = [schema_asset]
