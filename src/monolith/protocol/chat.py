"""/v1/chat/completions: messages, tools and the request."""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

import msgspec
from msgspec import Meta

from monolith.protocol.common import (
    MaxTokens,
    Name,
    Refused,
    RefusedUnlessFalse,
    RefusedUnlessText,
    Schema,
    Temperature,
    TopLogprobs,
)
from monolith.protocol.rag import RagOverrides
from monolith.protocol.sampling import GenerationOptions


class ToolCallFunction(msgspec.Struct):
    name: Name
    arguments: Annotated[str, Meta(max_length=1_000_000)]  # a JSON object, as a string


class ToolCall(msgspec.Struct):
    id: Name
    function: ToolCallFunction
    type: Literal["function"] = "function"


class TextPart(msgspec.Struct):
    """A content part; only text is taken (the served models read text), so an image part is a 400 naming it."""

    type: Literal["text"]
    text: Annotated[str, Meta(max_length=1_000_000)]


class ChatMessage(msgspec.Struct):
    # A tool message answers a call; only an assistant message carries calls.
    __schema_rules__: ClassVar[dict[str, Any]] = {
        "allOf": [
            {
                "if": {"properties": {"role": {"const": "tool"}}},
                "then": {
                    "required": ["tool_call_id"],
                    "properties": {"tool_call_id": {"type": "string", "minLength": 1}},
                },
            },
            {
                "if": {"required": ["tool_calls"], "properties": {"tool_calls": {"type": "array"}}},
                "then": {"properties": {"role": {"const": "assistant"}}},
            },
        ]
    }
    role: Literal["system", "user", "assistant", "tool", "developer"]
    # OpenAI allows a list of content parts; text parts are joined.
    content: str | Annotated[list[TextPart], Meta(max_length=1000)] | None = None
    name: Name | None = None
    tool_calls: Annotated[list[ToolCall], Meta(max_length=128)] | None = None  # an assistant's earlier calls
    tool_call_id: Name | None = None  # a tool message: the call it answers


class FunctionDefinition(msgspec.Struct):
    name: Annotated[str, Meta(min_length=1, max_length=64, pattern="^[a-zA-Z0-9_-]+$")]
    description: Annotated[str, Meta(max_length=10_000)] | None = None
    parameters: Schema | None = None  # a JSON schema; none: no arguments
    strict: bool | None = None


class Tool(msgspec.Struct):
    type: Literal["function"]
    function: FunctionDefinition


class FunctionName(msgspec.Struct):
    name: Name


class NamedToolChoice(msgspec.Struct):
    type: Literal["function"]
    function: FunctionName


ToolChoice = Literal["none", "auto", "required"] | NamedToolChoice


# OpenAI's chat temperature is 1.0; this server's has been 0.7 (a 135M model rambles at 1.0), the default where
# a request sets none.
CHAT_TEMPERATURE = 0.7


class ChatCompletionRequest(GenerationOptions):
    model: Name
    messages: Annotated[list[ChatMessage], Meta(min_length=1, max_length=10_000)]
    max_tokens: MaxTokens | None = None
    max_completion_tokens: MaxTokens | None = None
    temperature: Temperature | None = None  # None: CHAT_TEMPERATURE, or engine.tool_temperature under tools
    rag: bool | RagOverrides | None = None
    logprobs: bool = False
    top_logprobs: TopLogprobs | None = None
    tools: Annotated[list[Tool], Meta(max_length=128)] | None = None
    tool_choice: ToolChoice | None = None
    parallel_tool_calls: bool = True
    # Recognised and refused (serving.refuse_unsupported): no audio, images, web search or stored completions.
    audio: Refused = None
    modalities: RefusedUnlessText = None
    prediction: Refused = None
    web_search_options: Refused = None
    functions: Refused = None
    function_call: Refused = None
    store: RefusedUnlessFalse = None
    reasoning_effort: Refused = None
