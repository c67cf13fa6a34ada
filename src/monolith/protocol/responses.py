"""/v1/responses, stateless: input as text or items (messages, function calls and their outputs), function
tools, text formats. Fields of OpenAI's that need state or features this server lacks are declared so that
setting one is a 400 naming it (serving.responses.refuse_unsupported)."""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

import msgspec
from msgspec import Meta

from monolith.protocol.common import (
    MaxTokens,
    Metadata,
    Name,
    Priority,
    Refused,
    RefusedUnlessEmpty,
    RefusedUnlessFalse,
    Schema,
    Temperature,
    TopP,
)
from monolith.protocol.rag import RagOverrides

Text = Annotated[str, Meta(max_length=1_000_000)]


def not_null(*fields: str) -> dict[str, Any]:
    return {"properties": {name: {"not": {"type": "null"}} for name in fields}}


class ContentPart(msgspec.Struct):
    """A text part of a message: `input_text` in what a client writes, `output_text` in an earlier answer it
    sends back. Images, files and audio are not taken (the served models read text)."""

    type: Literal["input_text", "output_text"]
    text: Text
    annotations: Any = None


class InputItem(msgspec.Struct):
    """One item of `input`: a message (with or without `type`), a function call the model made earlier, or the
    output of one. Which fields an item needs depends on its type (checked in serving, and said in the schema)."""

    __schema_rules__: ClassVar[dict[str, Any]] = {
        "allOf": [
            {
                "if": {"required": ["type"], "properties": {"type": {"const": "function_call"}}},
                "then": {"required": ["call_id", "name", "arguments"], **not_null("call_id", "name", "arguments")},
            },
            {
                "if": {"required": ["type"], "properties": {"type": {"const": "function_call_output"}}},
                "then": {"required": ["call_id", "output"], **not_null("call_id", "output")},
            },
            {
                "if": {
                    "required": ["type"],
                    "properties": {"type": {"enum": ["function_call", "function_call_output"]}},
                },
                "else": {"required": ["role", "content"], **not_null("role", "content")},
            },
        ]
    }

    type: Literal["message", "function_call", "function_call_output"] = "message"
    role: Literal["user", "assistant", "system", "developer"] | None = None
    content: Text | Annotated[list[ContentPart], Meta(max_length=1000)] | None = None
    call_id: Name | None = None
    name: Name | None = None
    arguments: Text | None = None
    output: Text | Annotated[list[ContentPart], Meta(max_length=1000)] | None = None
    id: Name | None = None
    status: Literal["in_progress", "completed", "incomplete"] | None = None


class FunctionTool(msgspec.Struct):
    """Responses' flat function tool (chat nests the same fields under `function`)."""

    type: Literal["function"]
    name: Annotated[str, Meta(min_length=1, max_length=64, pattern="^[a-zA-Z0-9_-]+$")]
    description: Annotated[str, Meta(max_length=10_000)] | None = None
    parameters: Schema | None = None
    strict: bool | None = None


class FunctionChoice(msgspec.Struct):
    type: Literal["function"]
    name: Name


class TextFormat(msgspec.Struct):
    type: Literal["text", "json_object", "json_schema"]
    name: Annotated[str, Meta(min_length=1, max_length=64)] | None = None
    schema: Schema | None = None
    strict: bool | None = None
    description: Annotated[str, Meta(max_length=10_000)] | None = None


class TextConfig(msgspec.Struct):
    format: TextFormat | None = None
    verbosity: Literal["medium"] | None = None  # the served model has one


class ResponsesStreamOptions(msgspec.Struct):
    include_obfuscation: RefusedUnlessFalse = None


# Frameworks send `reasoning` with every field null (the Agents SDK's default settings): that asks for nothing.
NoReasoning = Annotated[
    Any,
    Meta(
        description="Not supported here: null, or an object whose every field is null; anything else is a 400",
        extra_json_schema={"anyOf": [{"type": "null"}, {"type": "object", "additionalProperties": {"type": "null"}}]},
    ),
]


class ResponsesRequest(msgspec.Struct, kw_only=True):
    model: Name
    input: Text | Annotated[list[InputItem], Meta(min_length=1, max_length=10_000)]
    instructions: Text | None = None
    max_output_tokens: MaxTokens | None = None
    temperature: Temperature | None = None
    top_p: TopP | None = None
    text: TextConfig | None = None
    tools: Annotated[list[FunctionTool], Meta(max_length=128)] | None = None
    tool_choice: Literal["none", "auto", "required"] | FunctionChoice | None = None
    parallel_tool_calls: bool | None = None
    stream: bool = False
    stream_options: ResponsesStreamOptions | None = None
    metadata: Metadata | None = None
    user: Name | None = None
    safety_identifier: Name | None = None
    prompt_cache_key: Name | None = None
    truncation: Literal["disabled"] | None = None  # input over the context is a 400
    service_tier: Literal["auto", "default"] | None = None
    rag: bool | RagOverrides | None = None  # this server's extension, as on chat
    priority: Priority = 0  # vLLM's extension: the order inside the request's lane
    # Recognised and refused: they need stored state, background work, reasoning or features not served here.
    store: RefusedUnlessFalse = None
    previous_response_id: Refused = None
    conversation: Refused = None
    background: RefusedUnlessFalse = None
    prompt: Refused = None
    reasoning: NoReasoning = None
    include: RefusedUnlessEmpty = None
    top_logprobs: Refused = None
    max_tool_calls: Refused = None
    context_management: Refused = None
