"""Checks every API shares: fields the server recognises and cannot honour (a 400 naming each), a RAG query's bounds."""

from __future__ import annotations

from typing import Any

from monolith.config import Settings
from monolith.errors import BadRequest
from monolith.protocol.chat import ChatCompletionRequest
from monolith.protocol.common import honoured
from monolith.protocol.completions import CompletionRequest


def check_query(settings: Settings, query: str, param: str) -> None:
    limit = settings.rag.max_query_chars
    if not query.strip():
        raise BadRequest("the query is empty", param=param)
    if len(query) > limit:
        raise BadRequest(f"the query has {len(query)} characters; the limit is {limit}", param=param)


# Fields of OpenAI's that this server recognises and cannot honour: a 400 naming each, never a silent 200.
UNSUPPORTED = {
    "audio": "audio output is not supported",
    "prediction": "predicted outputs are not supported",
    "web_search_options": "web search is not supported",
    "functions": "the deprecated functions field is not supported; use tools",
    "function_call": "the deprecated function_call field is not supported; use tool_choice",
    "reasoning_effort": "the served model does not reason; reasoning_effort is not supported",
    "suffix": "suffix (fill in the middle) is not supported",
}


def refuse_fields(data: Any, reasons: dict[str, str]) -> None:
    """A 400 naming the first recognised field that is set although the server cannot honour it, with why."""
    for name, why in reasons.items():
        if getattr(data, name, None) is not None:
            raise BadRequest(why, param=name)


def refuse_unsupported(data: ChatCompletionRequest | CompletionRequest) -> None:
    refuse_fields(data, UNSUPPORTED)
    modalities = getattr(data, "modalities", None)
    if modalities is not None and modalities != ["text"]:
        raise BadRequest("only text output is supported", param="modalities")
    if not honoured(getattr(data, "store", None), None, False):
        raise BadRequest("stored completions are not supported; store must be false", param="store")
