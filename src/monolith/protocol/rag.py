"""/rag, and the `rag` extra field of the OpenAI routes."""

from __future__ import annotations

import msgspec

from monolith.protocol.common import (
    MaxTokens,
    Name,
    Priority,
    Query,
    Temperature,
    TopK,
    Usage,
)


class RagRequest(msgspec.Struct, forbid_unknown_fields=True):
    query: Query
    k: TopK | None = None
    max_tokens: MaxTokens | None = None
    temperature: Temperature | None = None  # the model's generation config, else rag.answer
    stream: bool = False
    expand: bool | None = None
    self_query: bool | None = None
    return_token_ids: bool = False  # vLLM's name: the answer's prompt as token ids (the RAG tax benchmark)
    priority: Priority = 0  # vLLM's name: the order inside the request's lane
    model: Name | None = None  # a twin answers from its own author's documents; None: the base model


class SourceOut(msgspec.Struct):
    collection: str
    author_full_name: str
    platform: str
    link: str
    score: float
    content: str


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
