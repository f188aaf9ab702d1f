"""Server-sent events shared by the streaming routes (``/v1/ask`` and chat completions)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import msgspec
from litestar.openapi.spec import (
    OpenAPIMediaType,
    OpenAPIResponse,
    Operation,
    Reference,
    Schema,
)
from litestar.openapi.spec.enums import OpenAPIType

EVENT_STREAM = "text/event-stream"
# the content type as a header too: a handler's own media type (JSON) would win over the
# Stream's media_type (Litestar 2.25), a header it only sets by default
STREAM_HEADERS = {"Content-Type": f"{EVENT_STREAM}; charset=utf-8", "Cache-Control": "no-cache",
                  "X-Accel-Buffering": "no"}


def sse(event: str, data: Any) -> bytes:
    """One server-sent event; msgspec's JSON never holds a newline, so one data line."""
    return b"event: " + event.encode() + b"\ndata: " + msgspec.json.encode(data) + b"\n\n"


def text_pieces(text: str) -> list[str]:
    """``text`` cut into word-sized pieces (each with its trailing space) that join back to it."""
    return re.findall(r"\s*\S+\s*", text) or ([text] if text else [])


def event_schema(names: Sequence[str] | None, data: str) -> Schema:
    """One server-sent event, as OpenAPI 3.1 tools read an event stream's schema."""
    props: dict[str, Schema | Reference] = {
        "data": Schema(type=OpenAPIType.STRING, description=data)}
    if names:
        props["event"] = Schema(type=OpenAPIType.STRING, enum=list(names))
    return Schema(type=OpenAPIType.OBJECT, properties=props,
                  required=["data", "event"] if names else ["data"])


@dataclass
class EventStreamOperation(Operation):
    """A route whose 200 is its JSON body or, when asked, an event stream of ``event_schema``."""

    event_schema: ClassVar[Schema] = event_schema(None, "")

    def __post_init__(self) -> None:
        ok = (self.responses or {}).get("200")
        if isinstance(ok, OpenAPIResponse) and ok.content is not None:
            ok.content[EVENT_STREAM] = OpenAPIMediaType(schema=self.event_schema)
