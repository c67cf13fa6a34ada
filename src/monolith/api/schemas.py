"""Wire types (msgspec Structs). Constraints are declared once here and reused across routes."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta

# Hard caps on the wire; the configured limits (rag.max_query_chars, engine.max_tokens_limit) are
# checked in the serving code, where the settings are known.
MaxTokens = Annotated[int, Meta(ge=1, le=1_000_000)]
Temperature = Annotated[float, Meta(ge=0.0, le=2.0)]
TopP = Annotated[float, Meta(gt=0.0, le=1.0)]
Penalty = Annotated[float, Meta(ge=-2.0, le=2.0)]
TopK = Annotated[int, Meta(ge=1, le=50)]
Query = Annotated[str, Meta(min_length=1, max_length=100_000)]
# vLLM's own bounds, checked here so that a bad value is a 400 naming the field, never an engine error.
StopString = Annotated[str, Meta(min_length=1, max_length=1000)]
Stop = StopString | Annotated[list[StopString], Meta(max_length=4)] | None
Seed = Annotated[int, Meta(ge=-(2**63), le=2**63 - 1)]  # a 64-bit signed integer, as torch seeds are
Name = Annotated[str, Meta(max_length=256)]
# A completions request's prompts each count as one request for admission; this many at most in one.
MAX_PROMPTS = 64


class StreamOptions(msgspec.Struct):
    include_usage: bool = False


class RagRequest(msgspec.Struct, forbid_unknown_fields=True):
    query: Query
    k: TopK | None = None
    max_tokens: MaxTokens | None = None
    temperature: Temperature | None = None  # the model's generation config, else rag.answer
    stream: bool = False
    expand: bool | None = None
    self_query: bool | None = None
    return_token_ids: bool = False  # vLLM's name: the answer's prompt as token ids (the RAG tax benchmark)


class SourceOut(msgspec.Struct):
    collection: str
    author_full_name: str
    platform: str
    link: str
    score: float
    content: str


class Usage(msgspec.Struct):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class RagResponse(msgspec.Struct):
    answer: str
    sources: list[SourceOut]
    usage: Usage
    request_id: str
    queries: list[str]
    author_filter: str | None
    timings_ms: dict[str, float]
    finish_reason: str | None
    notice: str | None = None  # a dropped author filter, no source past the relevance floor
    prompt_token_ids: list[int] | None = None  # with return_token_ids


class RagOverrides(msgspec.Struct, forbid_unknown_fields=True):
    """The `rag` extra body field of the OpenAI routes: `{"rag": true}` or `{"rag": {"k": 2}}`."""

    k: TopK | None = None
    expand: bool | None = None
    self_query: bool | None = None


class ChatMessage(msgspec.Struct):
    role: Literal["system", "user", "assistant", "tool", "developer"]
    # OpenAI allows a list of content parts; text parts are joined, others rejected.
    content: str | Annotated[list[dict[str, Any]], Meta(max_length=1000)] | None = None
    name: Name | None = None


class GenerationOptions(msgspec.Struct, kw_only=True):
    """Sampling fields the two OpenAI routes share (their defaults for max_tokens and temperature differ)."""

    top_p: TopP = 1.0
    n: Annotated[int, Meta(ge=1, le=1)] = 1
    stream: bool = False
    stream_options: StreamOptions | None = None
    stop: Stop = None
    seed: Seed | None = None
    presence_penalty: Penalty = 0.0
    frequency_penalty: Penalty = 0.0
    user: Name | None = None
    # vLLM's extension: generate exactly max_tokens (benchmarks, load tests).
    ignore_eos: bool = False


class ChatCompletionRequest(GenerationOptions):
    model: Name
    messages: Annotated[list[ChatMessage], Meta(min_length=1, max_length=10_000)]
    max_tokens: MaxTokens | None = None
    max_completion_tokens: MaxTokens | None = None
    temperature: Temperature = 0.7
    rag: bool | RagOverrides | None = None


class CompletionRequest(GenerationOptions):
    model: Name
    # OpenAI's four forms: text, a list of texts, token ids, a list of token-id lists. msgspec takes one
    # array type per union, so the list's items are checked for one form in serving.prompt_inputs; a list
    # of prompts is capped in serving too (a list of token ids is one prompt of any length).
    prompt: str | list[str | int | list[int]]
    max_tokens: MaxTokens | None = 16
    temperature: Temperature = 1.0
    echo: bool = False


class ModelCard(msgspec.Struct):
    id: str
    object: str = "model"
    created: int = 0
    owned_by: str = "monolith"
    max_model_len: int | None = None


class ModelList(msgspec.Struct):
    data: list[ModelCard]
    object: str = "list"


class ErrorBody(msgspec.Struct):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorResponse(msgspec.Struct):
    error: ErrorBody
