"""/v1/responses on the chat path: the request becomes a chat request (the same checks, tools, structured
outputs, RAG and sampling), and the chat answer becomes Responses output items, whole or as Responses events.
Nothing is stored: a request carries its whole conversation in `input`."""

from __future__ import annotations

import re
import time
import uuid
from dataclasses import dataclass
from typing import Any

import msgspec

from monolith.errors import BadRequest, MonolithError
from monolith.protocol.chat import (
    ChatCompletionRequest,
    ChatMessage,
    FunctionDefinition,
    FunctionName,
    NamedToolChoice,
    Tool,
    ToolCall,
    ToolCallFunction,
)
from monolith.protocol.common import honoured
from monolith.protocol.responses import ContentPart, FunctionChoice, InputItem, ResponsesRequest
from monolith.protocol.sampling import JsonSchemaFormat, ResponseFormat
from monolith.serving.chat import ChatPlan, answer_message, plan_chat, retrieve_for_chat
from monolith.serving.checks import refuse_fields
from monolith.serving.services import Services
from monolith.work import Work

# Fields of OpenAI's that need stored state, background work or features this server lacks.
REFUSED = {
    "previous_response_id": "responses are not stored; send the whole conversation in input",
    "conversation": "conversations are not stored; send the whole conversation in input",
    "prompt": "stored prompt templates are not supported; send instructions and input",
    "top_logprobs": "log probabilities are served on /v1/chat/completions, not here",
    "max_tool_calls": "max_tool_calls is not supported; parallel_tool_calls false allows one call",
    "context_management": "context management (compaction) is not supported",
}
# Chat's field names in errors, as the Responses request names them.
PARAMS = {
    "max_completion_tokens": "max_output_tokens",
    "max_tokens": "max_output_tokens",
    "response_format": "text.format",
    "response_format.json_schema": "text.format",
}
MESSAGE_PARAM = re.compile(r"^messages(?:\[(\d+)\])?(.*)$")


@dataclass
class ResponsePlan:
    id: str
    request: ResponsesRequest
    chat: ChatPlan
    created_at: int


def refuse_unsupported(data: ResponsesRequest) -> None:
    refuse_fields(data, REFUSED)
    if not honoured(data.store, None, False):
        raise BadRequest("responses are not stored; store must be false", param="store")
    if not honoured(data.background, None, False):
        raise BadRequest(
            "background responses are not supported; use /v1/async/responses (202 and a job id)", param="background"
        )
    if data.reasoning is not None and (
        not isinstance(data.reasoning, dict) or any(v is not None for v in data.reasoning.values())
    ):
        raise BadRequest("the served model does not reason; reasoning is not supported", param="reasoning")
    if not honoured(data.include, None, []):
        raise BadRequest("no extra output can be included", param="include")
    if data.stream_options is not None and not honoured(data.stream_options.include_obfuscation, None, False):
        raise BadRequest("stream obfuscation is not supported", param="stream_options.include_obfuscation")


def part_text(parts: str | list[ContentPart] | None) -> str:
    return parts if isinstance(parts, str) else "".join(p.text for p in parts or [])


def conversation(data: ResponsesRequest) -> tuple[list[ChatMessage], list[str]]:
    """The chat messages, and for each the Responses field it came from (to name it in errors). Consecutive
    function calls become one assistant turn with several tool calls, as chat history holds them."""
    messages: list[ChatMessage] = []
    origins: list[str] = []
    if data.instructions is not None:
        messages.append(ChatMessage("system", data.instructions))
        origins.append("instructions")
    items = [InputItem(role="user", content=data.input)] if isinstance(data.input, str) else data.input
    for i, item in enumerate(items):
        where = "input" if isinstance(data.input, str) else f"input[{i}]"
        message = as_message(item, where)
        if item.type == "function_call" and messages and origins[-1].startswith("input") and messages[-1].tool_calls:
            messages[-1].tool_calls = [*messages[-1].tool_calls, *(message.tool_calls or [])]
            continue
        messages.append(message)
        origins.append(where)
    return messages, origins


def needs(item: InputItem, where: str, *fields: str) -> None:
    for name in fields:
        if getattr(item, name) is None:
            raise BadRequest(f"a {item.type} item needs {name}", param=f"{where}.{name}")


def as_message(item: InputItem, where: str) -> ChatMessage:
    if item.type == "function_call":
        needs(item, where, "call_id", "name", "arguments")
        call = ToolCall(item.call_id or "", ToolCallFunction(item.name or "", item.arguments or ""))
        return ChatMessage("assistant", None, tool_calls=[call])
    if item.type == "function_call_output":
        needs(item, where, "call_id", "output")
        return ChatMessage("tool", part_text(item.output), tool_call_id=item.call_id)
    needs(item, where, "role", "content")
    return ChatMessage(item.role or "user", part_text(item.content))


def chat_request(data: ResponsesRequest, messages: list[ChatMessage]) -> ChatCompletionRequest:
    fields: dict[str, Any] = {
        "max_completion_tokens": data.max_output_tokens,
        "temperature": data.temperature,
        "top_p": data.top_p,
        "parallel_tool_calls": data.parallel_tool_calls,
        "rag": data.rag,
        "user": data.user,
        "stream": data.stream,
        "priority": data.priority,
    }
    if data.tools:
        fields["tools"] = [
            Tool("function", FunctionDefinition(t.name, t.description, t.parameters, t.strict)) for t in data.tools
        ]
    choice = data.tool_choice
    fields["tool_choice"] = (
        NamedToolChoice("function", FunctionName(choice.name)) if isinstance(choice, FunctionChoice) else choice
    )
    fmt = data.text.format if data.text is not None else None
    if fmt is not None:
        schema = JsonSchemaFormat(fmt.name or "response", fmt.schema, fmt.strict, fmt.description)
        fields["response_format"] = ResponseFormat(fmt.type, schema if fmt.type == "json_schema" else None)
    given = {k: v for k, v in fields.items() if v is not None}
    return ChatCompletionRequest(model=data.model, messages=messages, **given)


def renamed(param: str | None, origins: list[str]) -> str | None:
    """A chat field as the Responses request names it: messages[2].content -> input[1].content."""
    if param is None:
        return None
    if param.startswith(("tools[", "tool_choice.")):  # Responses' tools are flat
        return param.replace(".function.", ".", 1).replace(".function", "", 1)
    found = MESSAGE_PARAM.match(param)
    if found is None:
        return PARAMS.get(param, param)
    index, rest = found.groups()
    if index is None or int(index) >= len(origins):
        return "input" + rest
    origin = origins[int(index)]
    return origin if origin in ("instructions", "input") else origin + rest


def plan_response(services: Services, data: ResponsesRequest, response_id: str) -> ResponsePlan:
    refuse_unsupported(data)
    messages, origins = conversation(data)
    try:
        chat = plan_chat(services, chat_request(data, messages))
    except MonolithError as exc:
        exc.param = renamed(exc.param, origins)
        raise
    return ResponsePlan(response_id, data, chat, int(time.time()))


# --- output ---------------------------------------------------------------------------------------


def item_id(kind: str) -> str:
    return f"{kind}_{uuid.uuid4().hex}"


def output_text(text: str) -> dict[str, Any]:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


def message_item(text: str, status: str) -> dict[str, Any]:
    return {
        "type": "message",
        "id": item_id("msg"),
        "status": status,
        "role": "assistant",
        "content": [output_text(text)],
    }


def function_call_item(call: dict[str, Any]) -> dict[str, Any]:
    function = call["function"]
    return {
        "type": "function_call",
        "id": item_id("fc"),
        "call_id": call["id"],
        "name": function["name"],
        "arguments": function["arguments"],
        "status": "completed",
    }


def status_of(reason: str | None) -> str:
    return "incomplete" if reason == "length" else "completed"


def output_items(plan: ResponsePlan, text: str, reason: str | None) -> list[dict[str, Any]]:
    """The answer as output items: one message, or one function_call item per tool call."""
    message, _ = answer_message(plan.chat, text, reason)
    if message.get("tool_calls"):
        return [function_call_item(call) for call in message["tool_calls"]]
    return [message_item(message["content"] or "", status_of(reason))]


def response_usage(prompt_tokens: int, output_tokens: int) -> dict[str, Any]:
    return {
        "input_tokens": prompt_tokens,
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": output_tokens,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": prompt_tokens + output_tokens,
    }


def response_object(
    plan: ResponsePlan, status: str, output: list[dict[str, Any]], usage: dict[str, Any] | None = None
) -> dict[str, Any]:
    data, sampling = plan.request, plan.chat.sampling
    text_format = data.text.format if data.text is not None and data.text.format is not None else None
    return {
        "id": plan.id,
        "object": "response",
        "created_at": plan.created_at,
        "status": status,
        "background": False,
        "error": None,
        "incomplete_details": {"reason": "max_output_tokens"} if status == "incomplete" else None,
        "instructions": data.instructions,
        "max_output_tokens": data.max_output_tokens,
        "model": data.model,
        "output": output,
        "parallel_tool_calls": data.parallel_tool_calls is not False,
        "previous_response_id": None,
        "reasoning": {"effort": None, "summary": None},
        "service_tier": "default",
        "store": False,
        "temperature": sampling.temperature,
        "text": {"format": msgspec.to_builtins(text_format) if text_format else {"type": "text"}},
        "tool_choice": msgspec.to_builtins(data.tool_choice) if data.tool_choice is not None else "auto",
        "tools": msgspec.to_builtins(data.tools or []),
        "top_p": sampling.top_p,
        "truncation": "disabled",
        "usage": usage,
        "user": data.user,
        "metadata": data.metadata or {},
        **plan.chat.extra,  # RAG: sources, and a notice where retrieval found nothing usable
    }


async def run_response(services: Services, plan: ResponsePlan, work: Work) -> dict[str, Any]:
    await retrieve_for_chat(services, plan.chat, plan.id, work)
    done = (await services.generator.complete_all(plan.chat.prompt_ids, plan.chat.sampling, plan.id, work))[0]
    output = output_items(plan, done.text, done.finish_reason)
    usage = response_usage(len(plan.chat.prompt_ids), done.completion_tokens)
    return response_object(plan, status_of(done.finish_reason), output, usage)
