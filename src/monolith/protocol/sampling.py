"""The sampling fields chat and completions share, structured outputs included."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec
from msgspec import Meta

from monolith.protocol.common import (
    LogitBias,
    MinP,
    MinTokens,
    N,
    Name,
    Penalty,
    Priority,
    RefusedUnlessOne,
    RepetitionPenalty,
    SamplingTopK,
    Schema,
    Seed,
    Stop,
    StopTokenIds,
    StreamOptions,
    TopP,
)


class JsonSchemaFormat(msgspec.Struct):
    name: Annotated[str, Meta(min_length=1, max_length=64)]
    schema: Schema | None = None
    strict: bool | None = None
    description: Annotated[str, Meta(max_length=10_000)] | None = None


class ResponseFormat(msgspec.Struct):
    type: Literal["text", "json_object", "json_schema"]
    json_schema: JsonSchemaFormat | None = None


class StructuredOutputs(msgspec.Struct, forbid_unknown_fields=True):
    """vLLM's extension: exactly one of json, regex, choice, grammar, json_object."""

    json: Schema | Annotated[str, Meta(max_length=100_000)] | None = None
    regex: Annotated[str, Meta(min_length=1, max_length=10_000)] | None = None
    choice: Annotated[list[Annotated[str, Meta(max_length=1000)]], Meta(min_length=1, max_length=1000)] | None = None
    grammar: Annotated[str, Meta(min_length=1, max_length=100_000)] | None = None
    json_object: bool | None = None
    # vLLM's per-request whitespace options are not taken: its engine applies one setting to every request
    # (engine.compact_json here), so a request that sets them is refused as an unknown field.


class GenerationOptions(msgspec.Struct, kw_only=True):
    """Sampling fields the two OpenAI routes share (their defaults for max_tokens and temperature differ).
    Fields of OpenAI's or vLLM's that this server cannot honour are declared too, so that a request that sets
    one is refused naming it (serving.refuse_unsupported) instead of being answered as if it had not."""

    top_p: TopP = 1.0
    n: N = 1
    best_of: RefusedUnlessOne = None  # vLLM dropped it
    stream: bool = False
    stream_options: StreamOptions | None = None
    stop: Stop = None
    seed: Seed | None = None
    presence_penalty: Penalty = 0.0
    frequency_penalty: Penalty | None = None  # None: 0, or engine.tool_frequency_penalty under tools
    user: Name | None = None
    # vLLM's extension: generate exactly max_tokens (benchmarks, load tests).
    ignore_eos: bool = False
    priority: Priority = 0  # vLLM's extension: the order inside the request's lane
    top_k: SamplingTopK | None = None
    min_p: MinP = 0.0
    repetition_penalty: RepetitionPenalty | None = None
    min_tokens: MinTokens = 0
    stop_token_ids: StopTokenIds | None = None
    logit_bias: LogitBias | None = None
    response_format: ResponseFormat | None = None
    structured_outputs: StructuredOutputs | None = None
