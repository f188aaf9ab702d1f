"""OpenAI-compatible endpoints: a translation of OpenAI's requests and responses, nothing more.

``POST /v1/chat/completions``, ``GET /v1/models`` and ``POST /v1/embeddings`` speak enough
of OpenAI's API for its clients (the official ``openai`` package, LangChain, curl scripts) to
use docqa with nothing but a base URL and an API key. They are a thin translation: a chat
turn is a ``/v1/ask`` question (same grounding, rate limit and audit record, through the
``answer_events`` dependency), and ``/v1/embeddings`` returns the packaged embedder's vectors.

Differences from OpenAI's API, on purpose:

* the only chat model is ``docqa``; sampling parameters (``temperature``, ``max_tokens``…)
  are accepted and ignored: the answer is grounded, not sampled;
* a completion carries two extra top-level fields, ``citations`` (the objects ``/v1/ask``
  returns) and ``docqa_status`` (``answered`` | ``not_found``);
* a streamed completion sends the *verified* answer: an OpenAI client cannot take back
  content it was sent, so the unverified draft of generative mode is never streamed here
  (``/v1/ask`` with ``"stream": true`` streams it, with an authoritative ``final`` event);
* ``usage`` counts are estimates (about four characters per token), not a tokenizer's;
* errors are RFC 9457 problem+json like every other docqa route (OpenAI clients raise the
  matching exception class from the status code).
"""

from __future__ import annotations

import base64
import logging
import math
import secrets
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Annotated, Any, ClassVar, Literal

import msgspec
import numpy as np
from litestar import Request, Response, get, post
from litestar.di import NamedDependency
from litestar.exceptions import HTTPException
from litestar.openapi.spec import Schema
from litestar.params import FromPath, JSONBody
from litestar.response import Stream
from litestar.status_codes import HTTP_200_OK
from litestar.types import ExceptionHandlersMap

from core.errors import BadInputError, DocqaError, NotFoundError
from core.settings import Settings
from service.answer import AnswerResult, final_result
from service.answer.result import AnswerStatus
from service.api.ask import AnswerEvents
from service.api.components import Components
from service.api.errors import OpenAIProblem, error_response, problem_responses
from service.api.limits import ASK, charge_embedding
from service.api.schemas import MAX_HISTORY_TURNS, Citation, Filters, citation_out
from service.api.streaming import (
    EVENT_STREAM,
    STREAM_HEADERS,
    EventStreamOperation,
    event_schema,
    text_pieces,
)

log = logging.getLogger("docqa.api")

CHAT_MODEL = "docqa"
DEFAULT_EMBEDDING_MODEL = "all-MiniLM-L6-v2"
NOT_FOUND_MESSAGE = "Not found in your documents."
MAX_QUESTION_CHARS = 4000  # as AskRequest.question
MAX_MESSAGE_CHARS = 32_000
MAX_MESSAGES = 100
MAX_EMBEDDING_INPUTS = 256
MAX_EMBEDDING_CHARS = 8000  # the embedder reads ~256 word pieces; far beyond is a mistake
_STARTED = int(time.time())


class ChatChunksOperation(EventStreamOperation):
    """``/v1/chat/completions``' 200: a completion, or (``"stream": true``) OpenAI's chunks."""

    event_schema: ClassVar[Schema] = event_schema(
        None, "a chat.completion.chunk as JSON, or [DONE] at the end")


# ---------------------------------------------------------------- request and response bodies


class ContentPart(msgspec.Struct):
    type: Annotated[str, msgspec.Meta(max_length=64)]
    text: Annotated[str, msgspec.Meta(max_length=MAX_MESSAGE_CHARS)] | None = None


class ChatMessageIn(msgspec.Struct):
    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: (Annotated[str, msgspec.Meta(max_length=MAX_MESSAGE_CHARS)]
              | Annotated[list[ContentPart], msgspec.Meta(max_length=64)] | None) = None


class StreamOptions(msgspec.Struct):
    include_usage: bool = False


class ChatRequest(msgspec.Struct):
    """OpenAI's chat request; fields docqa does not use (``temperature``, ``max_tokens``,
    ``tools``…) are accepted and ignored. ``top_k`` and ``filters`` are docqa's own (the
    ``openai`` client sends them with ``extra_body``)."""

    model: Annotated[str, msgspec.Meta(min_length=1, max_length=200, examples=[CHAT_MODEL])]
    messages: Annotated[list[ChatMessageIn], msgspec.Meta(min_length=1, max_length=MAX_MESSAGES)]
    stream: bool = False
    stream_options: StreamOptions | None = None
    n: Annotated[int, msgspec.Meta(ge=1, le=1, description="only 1 is supported")] | None = None
    top_k: Annotated[int, msgspec.Meta(ge=1, le=50)] | None = None
    filters: Filters | None = None


class ChatMessageOut(msgspec.Struct):
    role: str
    content: str


class ChatChoice(msgspec.Struct):
    index: int
    message: ChatMessageOut
    finish_reason: str
    logprobs: None = None


class Usage(msgspec.Struct):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class ChatCompletion(msgspec.Struct):
    id: str
    object: str
    created: int
    model: str
    choices: list[ChatChoice]
    usage: Usage
    citations: list[Citation]
    docqa_status: AnswerStatus


class ModelCard(msgspec.Struct):
    id: str
    object: str
    created: int
    owned_by: str


class ModelList(msgspec.Struct):
    object: str
    data: list[ModelCard]


EmbeddingText = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_EMBEDDING_CHARS)]


class EmbeddingRequest(msgspec.Struct):
    model: Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
    # token arrays are OpenAI input too: accepted by the schema so the answer can say why not
    input: (EmbeddingText
            | Annotated[list[EmbeddingText | int | list[int]],
                        msgspec.Meta(min_length=1, max_length=MAX_EMBEDDING_INPUTS)])
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: Annotated[int, msgspec.Meta(ge=1, le=100_000)] | None = None


class EmbeddingItem(msgspec.Struct):
    object: str
    index: int
    embedding: list[float] | str


class EmbeddingUsage(msgspec.Struct):
    prompt_tokens: int
    total_tokens: int


class EmbeddingList(msgspec.Struct):
    object: str
    data: list[EmbeddingItem]
    model: str
    usage: EmbeddingUsage


# ---------------------------------------------------------------- translation


def approx_tokens(chars: int) -> int:
    """OpenAI's rule of thumb, about four characters a token (no tokenizer is loaded for it)."""
    return math.ceil(chars / 4)


def message_text(message: ChatMessageIn) -> str:
    if message.content is None or isinstance(message.content, str):
        return message.content or ""
    kinds = {part.type for part in message.content} - {"text"}
    if kinds:
        raise BadInputError(f"only text content is supported, not {', '.join(sorted(kinds))}")
    return "\n".join(part.text or "" for part in message.content)


@dataclass(frozen=True)
class Conversation:
    question: str  # the last user message
    earlier: list[str]  # the user messages before it, oldest first
    prompt_chars: int


def read_conversation(messages: Sequence[ChatMessageIn]) -> Conversation:
    """The last message is the question and must come from the user; earlier user turns give
    follow-ups their subject. System and assistant turns are not instructions to docqa:
    answers come from the documents only."""
    texts = [message_text(m) for m in messages]
    if messages[-1].role != "user":
        raise BadInputError(f"the last message must have role 'user' (the question), not "
                            f"{messages[-1].role!r}")
    question = texts[-1].strip()
    if not question:
        raise BadInputError("the last user message is empty: ask a question")
    if len(question) > MAX_QUESTION_CHARS:
        raise BadInputError(f"the question is {len(question)} characters long; the limit is "
                            f"{MAX_QUESTION_CHARS}")
    earlier = [t.strip()[:MAX_QUESTION_CHARS] for m, t in zip(messages[:-1], texts[:-1],
                                                               strict=True)
               if m.role == "user" and t.strip()]
    return Conversation(question, earlier[-MAX_HISTORY_TURNS:], sum(len(t) for t in texts))


def completion_for(result: AnswerResult, conversation: Conversation) -> ChatCompletion:
    answered = result.status == "answered"
    content = result.answer if answered else NOT_FOUND_MESSAGE
    prompt, completion = approx_tokens(conversation.prompt_chars), approx_tokens(len(content))
    return ChatCompletion(
        id=f"chatcmpl-{secrets.token_hex(12)}", object="chat.completion", created=int(time.time()),
        model=CHAT_MODEL,
        choices=[ChatChoice(0, ChatMessageOut("assistant", content), "stop")],
        usage=Usage(prompt, completion, prompt + completion),
        citations=[citation_out(c) for c in result.citations], docqa_status=result.status,
    )


def completion_chunks(completion: ChatCompletion, include_usage: bool) -> list[bytes]:
    """OpenAI's stream of a finished completion: the role, the content word by word, the
    finish reason with ``citations``, optionally a usage chunk, then ``[DONE]``."""
    head = {"id": completion.id, "object": "chat.completion.chunk",
            "created": completion.created, "model": completion.model}

    def chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> bytes:
        body = {**head, "choices": [{"index": 0, "delta": delta, "logprobs": None,
                                     "finish_reason": finish}], **extra}
        return b"data: " + msgspec.json.encode(body) + b"\n\n"

    out = [chunk({"role": "assistant", "content": ""})]
    content = completion.choices[0].message.content
    out += [chunk({"content": piece}) for piece in text_pieces(content)]
    out.append(chunk({}, "stop", citations=completion.citations,
                     docqa_status=completion.docqa_status))
    if include_usage:
        out.append(b"data: " + msgspec.json.encode(
            {**head, "choices": [], "usage": completion.usage}) + b"\n\n")
    out.append(b"data: [DONE]\n\n")
    return out


async def _replay(chunks: list[bytes]) -> AsyncIterator[bytes]:
    for chunk in chunks:
        yield chunk


def embedding_model_id(settings: Settings) -> str:
    """The embedding model's name: its folder's name when configured, else the packaged one."""
    path = settings.models.embedding_path
    return path.name if path is not None and path.name else DEFAULT_EMBEDDING_MODEL


def embedding_texts(value: str | list[str | int | list[int]]) -> list[str]:
    items = [value] if isinstance(value, str) else value
    if not all(isinstance(item, str) for item in items):
        raise BadInputError("token arrays are not supported as embedding input: send the text "
                            "(a string or a list of strings)")
    return [item for item in items if isinstance(item, str)]


def encode_vector(vector: Sequence[float], encoding: str) -> list[float] | str:
    if encoding == "float":
        return [float(x) for x in vector]
    # OpenAI's base64 form: the little-endian float32 bytes (what its client decodes)
    return base64.b64encode(np.asarray(vector, dtype="<f4").tobytes()).decode("ascii")


_ERROR_TYPES = {401: "authentication_error", 403: "permission_error", 404: "not_found_error",
                429: "rate_limit_error"}


def openai_error(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    """docqa's problem+json with OpenAI's ``error`` object added (an RFC 9457 extension
    member): OpenAI clients put its ``message`` into the exceptions they raise."""
    resp = error_response(request, exc)
    body = resp.content
    if isinstance(body, dict):
        status = resp.status_code or 500
        kind = _ERROR_TYPES.get(status, "server_error" if status >= 500 else
                                "invalid_request_error")
        body["error"] = {"message": body.get("detail", ""), "type": kind, "code": None}
    return resp


OPENAI_ERRORS: ExceptionHandlersMap = {DocqaError: openai_error, HTTPException: openai_error}
OPENAI_PROBLEMS = partial(problem_responses, container=OpenAIProblem)


def check_model(requested: str, served: Sequence[str]) -> None:
    if requested not in served:
        raise NotFoundError(f"the model {requested[:200]!r} does not exist here; models: "
                            f"{', '.join(served)} (GET /v1/models)")


# ---------------------------------------------------------------- handlers (under the /v1 router)


@post("/chat/completions", status_code=HTTP_200_OK, sync_to_thread=True,
      opt={"rate_limit": ASK}, operation_class=ChatChunksOperation,
      exception_handlers=OPENAI_ERRORS, summary="Chat completion (OpenAI-compatible)",
      responses=OPENAI_PROBLEMS(404, 413))
def chat_completions(data: JSONBody[ChatRequest],
                     answer_events: NamedDependency[AnswerEvents]) -> Response[ChatCompletion]:
    """A conversation's last user message answered like ``/v1/ask`` (404 for a model other
    than ``docqa``; 400 when the last message is not a user's text)."""
    check_model(data.model, [CHAT_MODEL])
    conversation = read_conversation(data.messages)
    result = final_result(answer_events(conversation.question, data.top_k, data.filters,
                                        conversation.earlier))
    completion = completion_for(result, conversation)
    if data.stream:
        include_usage = data.stream_options is not None and data.stream_options.include_usage
        return Stream(_replay(completion_chunks(completion, include_usage)),  # type: ignore[return-value]
                      media_type=EVENT_STREAM, headers=STREAM_HEADERS)
    return Response(completion)


@get("/models", sync_to_thread=False, exception_handlers=OPENAI_ERRORS,
     summary="Models (OpenAI-compatible)", responses=OPENAI_PROBLEMS())
def list_models(comps: NamedDependency[Components]) -> ModelList:
    """``docqa`` (chat) and the embedding model (``/v1/embeddings``)."""
    return ModelList("list", [ModelCard(m, "model", _STARTED, "docqa")
                              for m in (CHAT_MODEL, embedding_model_id(comps.settings))])


@get("/models/{model_id:str}", sync_to_thread=False, exception_handlers=OPENAI_ERRORS,
     summary="Model (OpenAI-compatible)", responses=OPENAI_PROBLEMS(404))
def get_model(model_id: FromPath[str], comps: NamedDependency[Components]) -> ModelCard:
    served = [CHAT_MODEL, embedding_model_id(comps.settings)]
    check_model(model_id, served)
    return ModelCard(model_id, "model", _STARTED, "docqa")


@post("/embeddings", status_code=HTTP_200_OK, sync_to_thread=True,
      exception_handlers=OPENAI_ERRORS, summary="Embeddings (OpenAI-compatible)",
      responses=OPENAI_PROBLEMS(404, 413, 429))
def create_embeddings(data: JSONBody[EmbeddingRequest], comps: NamedDependency[Components],
                      request: Request[Any, Any, Any]) -> EmbeddingList:
    """Vectors of the embedder docqa indexes with (normalized); ``encoding_format`` float or
    base64 (float32 little-endian, the official client's default). The inputs' characters
    count against the key's own limit (429 with Retry-After past it; 413 for a request
    larger than the whole limit)."""
    model = embedding_model_id(comps.settings)
    check_model(data.model, [model])
    texts = embedding_texts(data.input)
    charge_embedding(comps, str(request.state.key_id), sum(len(t) for t in texts))
    vectors = comps.answers.embedder.embed(texts)
    dimension = len(vectors[0]) if vectors else 0
    if data.dimensions is not None and data.dimensions != dimension:
        raise BadInputError(f"{model} makes vectors of {dimension} dimensions; "
                            f"'dimensions' cannot change that")
    tokens = sum(approx_tokens(len(t)) for t in texts)
    return EmbeddingList(
        "list",
        [EmbeddingItem("embedding", i, encode_vector(v, data.encoding_format))
         for i, v in enumerate(vectors)],
        model, EmbeddingUsage(tokens, tokens),
    )


route_handlers = [chat_completions, list_models, get_model, create_embeddings]
