"""/tokenize and /detokenize, in vLLM's shapes."""

from __future__ import annotations

from typing import Annotated, Any, ClassVar

import msgspec
from msgspec import Meta

from monolith.protocol.chat import ChatMessage
from monolith.protocol.common import Name, TokenId


class TokenizeRequest(msgspec.Struct, kw_only=True):
    """A text (`prompt`) or a chat (`messages`, through the model's template), as vLLM takes either."""

    __schema_rules__: ClassVar[dict[str, Any]] = {
        "oneOf": [
            {"required": ["prompt"], "properties": {"prompt": {"type": "string"}, "messages": {"type": "null"}}},
            {
                "required": ["messages"],
                "properties": {  # the chat template writes the special tokens itself
                    "messages": {"type": "array"},
                    "prompt": {"type": "null"},
                    "add_special_tokens": {"enum": [False, None]},
                },
            },
        ]
    }

    model: Name | None = None
    prompt: Annotated[str, Meta(max_length=1_000_000)] | None = None
    messages: Annotated[list[ChatMessage], Meta(min_length=1, max_length=10_000)] | None = None
    add_special_tokens: bool | None = None  # vLLM's defaults: true for a prompt, false for messages
    add_generation_prompt: bool = True
    return_token_strs: bool = False


class TokenizeResponse(msgspec.Struct):
    count: int
    max_model_len: int
    tokens: list[int]
    token_strs: list[str] | None = None


class DetokenizeRequest(msgspec.Struct, kw_only=True):
    tokens: Annotated[list[TokenId], Meta(max_length=1_000_000)]
    model: Name | None = None


class DetokenizeResponse(msgspec.Struct):
    prompt: str
