"""/v1/chat/completions: plain, RAG (the `-rag` model or the `rag` field), structured, with tools, n choices,
log probabilities; JSON or streamed."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import msgspec

from monolith.engine import Delta, Sampling
from monolith.errors import BadRequest
from monolith.generation import Completion, check_max_tokens
from monolith.protocol.chat import ChatCompletionRequest, ChatMessage
from monolith.protocol.rag import RagOverrides
from monolith.retrieval.pipeline import RagOptions
from monolith.serving.answers import DONE, finish, frame, usage
from monolith.serving.checks import check_query, refuse_unsupported
from monolith.serving.format_instruction import already_stated, format_instruction, with_instruction
from monolith.serving.logprobs import chat_logprobs
from monolith.serving.models import resolve_model
from monolith.serving.rag import prepare_rag, sources_out
from monolith.serving.sampling import answer_temperature, rag_options, structured_constraint, wire_sampling
from monolith.serving.services import Services
from monolith.serving.tools import (
    ToolPlan,
    call_names,
    history_message,
    parse_answer,
    plan_tools,
    tool_dicts,
    with_tools,
)
from monolith.work import Work


@dataclass
class ChatPlan:
    model: str
    messages: list[dict[str, Any]]
    sampling: Sampling
    rag: RagOptions | None
    include_usage: bool
    prompt_ids: list[int] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)
    top_logprobs: int | None = None  # None: no logprobs asked
    tools: ToolPlan | None = None


def message_text(message: ChatMessage) -> str:
    if isinstance(message.content, list):
        return "".join(part.text for part in message.content)
    return message.content or ""


def message_dicts(
    messages: list[ChatMessage], native_tools: bool = False, native_calls: bool = False
) -> list[dict[str, Any]]:
    """The turns as the chat template takes them; `native_tools`: the template renders tool results itself;
    `native_calls`: and earlier calls too (the model answers `auto` its own way)."""
    out, names = [], call_names(messages)
    for i, m in enumerate(messages):
        if m.role == "tool" and not m.tool_call_id:
            raise BadRequest("a tool message needs the tool_call_id it answers", param=f"messages[{i}].tool_call_id")
        if m.tool_calls and m.role != "assistant":
            raise BadRequest("only an assistant message carries tool_calls", param=f"messages[{i}].tool_calls")
        turn = history_message(m, message_text(m), names, native_tools, native_calls)
        out.append({**turn, "role": "system"} if m.role == "developer" else turn)
    return out


def chat_logprob_count(data: ChatCompletionRequest) -> int | None:
    if data.top_logprobs is not None and not data.logprobs:
        raise BadRequest("top_logprobs needs logprobs: true", param="top_logprobs")
    return (data.top_logprobs or 0) if data.logprobs else None


def with_format(messages: list[dict[str, Any]], structured: dict[str, Any], data: ChatCompletionRequest) -> list:
    """The messages with the answer's JSON format shown to the model (serving.format_instruction), unless they
    state it already or it says nothing a model reads (a regex, a choice, a grammar)."""
    named = data.response_format.json_schema if data.response_format is not None else None
    text = format_instruction(structured, named and named.name, named and named.description)
    if text is None or already_stated(messages, structured):
        return messages
    return with_instruction(messages, text)


def plan_chat(services: Services, data: ChatCompletionRequest) -> ChatPlan:
    """Every check that needs no retrieval; a plain chat prompt is tokenised and checked here too."""
    settings, generator = services.settings, services.generator
    refuse_unsupported(data)
    model = resolve_model(settings, data.model)
    use_rag = model.rag or bool(data.rag)
    messages = message_dicts(data.messages, generator.template_knows_tools, generator.tool_reader is not None)
    max_tokens = data.max_completion_tokens or data.max_tokens or settings.engine.default_max_tokens
    check_max_tokens(settings, max_tokens)
    reader = generator.tool_reader
    tools = plan_tools(data, native=reader is not None)
    structured, param = structured_constraint(data)
    shown_tools = None  # the tools the chat template shows itself (native mode)
    if tools is not None:
        if structured is not None:
            raise BadRequest("tools constrain the answer already; drop response_format", param=param)
        if use_rag:
            raise BadRequest("tools cannot be combined with RAG", param="tools")
        if tools.mode == "native" and reader is not None:
            shown_tools = tool_dicts(tools)
            tools.reader = partial(reader.read, tools=shown_tools)
        else:
            structured, param = {"json": tools.schema}, "tools"
            messages = with_tools(messages, tools)
    elif structured is not None and settings.engine.describe_response_format:
        messages = with_format(messages, structured, data)
    top_logprobs = chat_logprob_count(data)
    sampling = wire_sampling(
        generator,
        data,
        max_tokens,
        structured,
        top_logprobs,
        adapter=model.twin,
        tools=tools is not None and tools.mode != "native",  # native: the model's own way, no grammar
        named_tool=tools is not None and tools.mode == "named",
    )
    generator.check_sampling(sampling, param)
    include_usage = bool(data.stream_options and data.stream_options.include_usage)
    plan = ChatPlan(data.model, messages, sampling, None, include_usage, top_logprobs=top_logprobs, tools=tools)
    if use_rag:
        if messages[-1]["role"] != "user":
            raise BadRequest("a RAG request must end with a user message", param="messages")
        check_query(settings, messages[-1]["content"], f"messages[{len(messages) - 1}].content")
        over = data.rag if isinstance(data.rag, RagOverrides) else RagOverrides()
        temperature = answer_temperature(settings, data, tools=False)
        plan.rag = rag_options(settings, over.k, max_tokens, temperature, over.expand, over.self_query, model=model)
    else:
        plan.prompt_ids = generator.chat_ids(messages, tools=shown_tools)
        generator.check_fits(plan.prompt_ids, max_tokens, "messages")
    return plan


async def retrieve_for_chat(services: Services, plan: ChatPlan, request_id: str, work: Work) -> ChatPlan:
    """For a RAG chat: retrieval, then the prompt with its context (a no-op for a plain chat)."""
    if plan.rag is not None and not plan.prompt_ids:
        prepared = await prepare_rag(services, plan.messages, plan.rag, request_id, work, param="messages")
        plan.prompt_ids = prepared.prompt_ids
        plan.extra = {"sources": msgspec.to_builtins(sources_out(prepared))}
        if prepared.notice:
            plan.extra["rag_notice"] = prepared.notice
    return plan


def answer_message(plan: ChatPlan, text: str, reason: str | None) -> tuple[dict[str, Any], str | None]:
    """The assistant message and finish reason: with tools, the constrained JSON read as calls or content."""
    if plan.tools is None:
        return {"role": "assistant", "content": text}, finish(reason)
    parsed = parse_answer(plan.tools, text)
    if parsed.calls:
        return {"role": "assistant", "content": None, "tool_calls": parsed.calls}, "tool_calls"
    return {"role": "assistant", "content": parsed.content}, finish(reason)


def choice_logprobs(plan: ChatPlan, tokens: list | None) -> dict[str, Any] | None:
    return None if plan.top_logprobs is None else chat_logprobs(tokens or [], plan.top_logprobs)


def chat_choice(plan: ChatPlan, done: Completion) -> dict[str, Any]:
    message, reason = answer_message(plan, done.text, done.finish_reason)
    return {
        "index": done.index,
        "message": message,
        "finish_reason": reason,
        "logprobs": choice_logprobs(plan, done.logprobs),
    }


async def run_chat(services: Services, plan: ChatPlan, request_id: str, work: Work) -> dict[str, Any]:
    await retrieve_for_chat(services, plan, request_id, work)
    choices = await services.generator.complete_all(plan.prompt_ids, plan.sampling, request_id, work)
    return {
        "id": request_id,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": plan.model,
        "choices": [chat_choice(plan, done) for done in choices],
        "usage": usage(len(plan.prompt_ids), sum(done.completion_tokens for done in choices)),
        **plan.extra,
    }


def tool_deltas(plan: ChatPlan, text: str, reason: str | None) -> tuple[dict[str, Any], str | None]:
    """A tool-mode choice's whole answer as one delta: calls in OpenAI's streamed shape (index, id, type,
    name and the arguments in one piece), or content."""
    message, reason = answer_message(plan, text, reason)
    if "tool_calls" not in message:
        return {"content": message["content"]}, reason
    return {"tool_calls": [{"index": i, **call} for i, call in enumerate(message["tool_calls"])]}, reason


async def chat_chunks(services: Services, plan: ChatPlan, request_id: str, work: Work) -> AsyncIterator[bytes]:
    """Deltas per choice. With tools, a choice's answer is held until it ends (a call is only known once its
    JSON is whole) and sent as one delta; token logprobs still arrive as they are made."""
    head = {"id": request_id, "object": "chat.completion.chunk", "created": int(time.time()), "model": plan.model}

    def chunk(
        index: int, delta: dict[str, Any], reason: str | None = None, logprobs: Any = None, **extra: Any
    ) -> bytes:
        choice = {"index": index, "delta": delta, "finish_reason": reason, "logprobs": logprobs}
        return frame({**head, "choices": [choice], **extra})

    for index in range(plan.sampling.n):  # RAG sources ride on the first chunk
        opening = {"role": "assistant", "content": "" if plan.tools is None else None}
        yield chunk(index, opening, **(plan.extra if index == 0 else {}))
    held: dict[int, list[str]] = {}
    tokens: dict[int, int] = {}
    delta: Delta
    async for delta in services.generator.stream(plan.prompt_ids, plan.sampling, request_id, work):
        tokens[delta.index] = delta.completion_tokens
        logprobs = choice_logprobs(plan, delta.logprobs) if delta.logprobs else None
        if plan.tools is not None:
            held.setdefault(delta.index, []).append(delta.text)
            if delta.finish_reason:
                answer, reason = tool_deltas(plan, "".join(held[delta.index]), delta.finish_reason)
                yield chunk(delta.index, answer, reason, logprobs)
            elif logprobs:
                yield chunk(delta.index, {}, None, logprobs)
        elif delta.text or delta.finish_reason:
            yield chunk(
                delta.index, {"content": delta.text} if delta.text else {}, finish(delta.finish_reason), logprobs
            )
    if plan.include_usage:
        yield frame({**head, "choices": [], "usage": usage(len(plan.prompt_ids), sum(tokens.values()))})
    yield DONE
