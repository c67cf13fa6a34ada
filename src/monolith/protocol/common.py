"""Bounds every API shares, declared once (vLLM's own where it has them, so a bad value is a 400 naming the
field, never an engine error), and the small shapes more than one API uses."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from msgspec import Meta

# Hard caps on the wire; the configured limits (rag.max_query_chars, engine.max_tokens_limit) are
# checked in the serving code, where the settings are known.
MaxTokens = Annotated[int, Meta(ge=1, le=1_000_000)]
Temperature = Annotated[float, Meta(ge=0.0, le=2.0)]
TopP = Annotated[float, Meta(gt=0.0, le=1.0)]
Penalty = Annotated[float, Meta(ge=-2.0, le=2.0)]
TopK = Annotated[int, Meta(ge=1, le=50)]
# A question needs one character that is not whitespace (what serving's "the query is empty" checks): the served
# schema says so, so a schema-valid request is never refused. Whitespace to neither Python's regex (the server's)
# nor ECMAScript's (a client's reading the schema): `\S` alone means two things (\x1c-\x1f and \x85 are space to
# Python only, \ufeff to ECMAScript only), and the fuzzer sent a query "\x1e" the schema admits and `\S` refused.
Query = Annotated[str, Meta(min_length=1, max_length=100_000, pattern=r"[^\s\x1c-\x1f\x85\ufeff]")]
# vLLM's own bounds, checked here so that a bad value is a 400 naming the field, never an engine error.
StopString = Annotated[str, Meta(min_length=1, max_length=1000)]
Stop = StopString | Annotated[list[StopString], Meta(max_length=4)] | None
Seed = Annotated[int, Meta(ge=-(2**63), le=2**63 - 1)]  # a 64-bit signed integer, as torch seeds are
Name = Annotated[str, Meta(max_length=256)]
# OpenAI's documented bounds on `metadata`: at most 16 pairs, keys up to 64 characters, values up to 512.
Metadata = Annotated[
    dict[Annotated[str, Meta(max_length=64)], Annotated[str, Meta(max_length=512)]], Meta(max_length=16)
]
# An id this server made (file-..., batch_..., job-...): anything longer names nothing here.
ObjectId = Annotated[str, Meta(min_length=1, max_length=128)]
# Choices per request (`n`): vLLM runs them as one request of n sequences.
MAX_N = 16
N = Annotated[int, Meta(ge=1, le=MAX_N)]
# vLLM's sampling extensions, with its own bounds (top_k -1 or 0: every token).
SamplingTopK = Annotated[int, Meta(ge=-1, le=1_000_000)]
MinP = Annotated[float, Meta(ge=0.0, le=1.0)]
RepetitionPenalty = Annotated[float, Meta(gt=0.0, le=2.0)]
MinTokens = Annotated[int, Meta(ge=0, le=1_000_000)]
# The largest token id the wire takes; the served schema lowers it to the model's vocabulary (api.openapi).
TOKEN_ID_MAX = 2**31 - 1
TokenId = Annotated[int, Meta(ge=0, le=TOKEN_ID_MAX)]
StopTokenIds = Annotated[list[TokenId], Meta(max_length=64)]
# OpenAI's shape: token ids as strings, a bias of -100 to 100 each; checked against the vocabulary in serving.
Bias = Annotated[float, Meta(ge=-100, le=100)]
LogitBias = Annotated[dict[Annotated[str, Meta(max_length=16)], Bias], Meta(max_length=300)]
# vLLM's default --max-logprobs.
TopLogprobs = Annotated[int, Meta(ge=0, le=20)]
Schema = Annotated[dict[str, Any], Meta(max_length=1000)]
# A request's own priority, vLLM's field (lower first): it orders a request inside its lane (real-time, async,
# batch) and never past the lane before it, so a client cannot jump the real-time lane.
MAX_CLIENT_PRIORITY = 99
Priority = Annotated[
    int,
    Meta(
        ge=0,
        le=MAX_CLIENT_PRIORITY,
        description="Lower is served earlier, within the request's lane; needs scheduling.policy priority",
    ),
]

# Fields of OpenAI's or vLLM's that are recognised and not honoured. msgspec takes any value, so that serving can
# refuse it with a 400 that says why; the served schema admits only the values that are honoured (null and,
# for some, the one value that means "off").
_REFUSED = "Not supported here: any other value is a 400 naming this field"
Refused = Annotated[Any, Meta(description=_REFUSED, extra_json_schema={"enum": [None]})]
RefusedUnlessFalse = Annotated[Any, Meta(description=_REFUSED, extra_json_schema={"enum": [None, False]})]
RefusedUnlessOne = Annotated[Any, Meta(description=_REFUSED, extra_json_schema={"enum": [None, 1]})]
RefusedUnlessText = Annotated[Any, Meta(description=_REFUSED, extra_json_schema={"enum": [None, ["text"]]})]
RefusedUnlessEmpty = Annotated[Any, Meta(description=_REFUSED, extra_json_schema={"enum": [None, []]})]


def honoured(value: Any, *allowed: Any) -> bool:
    """Whether a refused field holds one of the values its schema's `enum` admits, compared as JSON Schema does:
    `true` is not `1` and `0` is not `false` (Python's == says they are), while `1.0` is `1`."""
    return any(value == a and isinstance(value, bool) == isinstance(a, bool) for a in allowed)


class StreamOptions(msgspec.Struct):
    include_usage: bool = False


class Usage(msgspec.Struct):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
