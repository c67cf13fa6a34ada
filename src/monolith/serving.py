"""Wire requests -> engine calls -> wire responses, shared by the HTTP routes, async jobs and batch.

Each route has a `plan_*` step that validates and builds the prompt (every 4xx is raised there, so
async jobs and batch lines are rejected at submit time) and a `run_*` / `*_chunks` step that generates.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import msgspec

from monolith.admission import TICKET, Ticket
from monolith.api.schemas import (
    MAX_PROMPTS,
    ChatCompletionRequest,
    ChatMessage,
    CompletionRequest,
    RagOverrides,
    RagRequest,
    RagResponse,
    SourceOut,
    Usage,
)
from monolith.config import Settings
from monolith.engine import Sampling
from monolith.errors import BadRequest, NotFound
from monolith.generation import Completion, Generator, check_max_tokens
from monolith.rag import RagOptions, RagPrompt, Retrieval

RAG_SUFFIX = "-rag"


@dataclass
class Services:
    """What a loaded server hands to its routes, jobs and batches."""

    generator: Generator
    rag: Retrieval  # RagPipeline, or RetrievalOff where none was loaded
    store: Any
    embedder: Any = None  # the RAG embedder, which /v1/embeddings serves too (None where none was loaded)

    @property
    def settings(self) -> Settings:
        return self.generator.settings

    async def aclose(self) -> None:
        await self.generator.engine.aclose()
        await asyncio.to_thread(self.store.close)


# --- shared checks -------------------------------------------------------------------------------


def model_names(settings: Settings) -> tuple[str, str]:
    served = settings.engine.served_model_name
    return served, served + RAG_SUFFIX


def resolve_model(settings: Settings, model: str) -> bool:
    """Whether the model name itself asks for RAG; an unknown name is a 404 like OpenAI's."""
    served, rag = model_names(settings)
    if model not in (served, rag):
        raise NotFound(f"the model '{model}' does not exist; this server serves '{served}' and '{rag}'", param="model")
    return model == rag


def check_query(settings: Settings, query: str, param: str) -> None:
    limit = settings.rag.max_query_chars
    if not query.strip():
        raise BadRequest("the query is empty", param=param)
    if len(query) > limit:
        raise BadRequest(f"the query has {len(query)} characters; the limit is {limit}", param=param)


def wire_sampling(data: ChatCompletionRequest | CompletionRequest, max_tokens: int) -> Sampling:
    """The OpenAI routes' sampling fields, as the engine takes them."""
    return Sampling(
        max_tokens=max_tokens,
        temperature=data.temperature,
        top_p=data.top_p,
        stop=stop_list(data.stop),
        seed=data.seed,
        presence_penalty=data.presence_penalty,
        frequency_penalty=data.frequency_penalty,
        ignore_eos=data.ignore_eos,
    )


def rag_options(
    settings: Settings,
    k: int | None,
    max_tokens: int,
    temperature: float | None,
    expand: bool | None,
    self_query: bool | None,
    defaults: dict[str, float] | None = None,
) -> RagOptions:
    """The request's choices over the answer defaults (`defaults`: the model's generation config, then
    rag.answer) and the configured RAG switches."""
    cfg = settings.rag
    answer = {**cfg.answer.model_dump(), **(defaults or {})}
    return RagOptions(
        k=k or cfg.k,
        max_tokens=max_tokens,
        temperature=answer["temperature"] if temperature is None else temperature,
        expand=cfg.expand if expand is None else expand,
        self_query=cfg.self_query if self_query is None else self_query,
        top_p=answer["top_p"],
        repetition_penalty=answer["repetition_penalty"],
    )


def answer_sampling(opts: RagOptions) -> Sampling:
    return Sampling(
        max_tokens=opts.max_tokens,
        temperature=opts.temperature,
        top_p=opts.top_p,
        repetition_penalty=opts.repetition_penalty,
    )


def usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


def finish(reason: str | None) -> str | None:
    return "stop" if reason == "abort" else reason


def stop_list(stop: str | list[str] | None) -> list[str]:
    return [stop] if isinstance(stop, str) else list(stop or [])


def frame(payload: Any) -> bytes:
    data = payload if isinstance(payload, bytes) else msgspec.json.encode(payload)
    return b"data: " + data + b"\n\n"


DONE = b"data: [DONE]\n\n"


# --- /rag ----------------------------------------------------------------------------------------


@dataclass
class RagPlan:
    messages: list[dict[str, str]]
    opts: RagOptions
    return_token_ids: bool = False


def plan_rag(services: Services, data: RagRequest) -> RagPlan:
    settings = services.settings
    check_query(settings, data.query, "query")
    max_tokens = data.max_tokens or settings.engine.default_max_tokens
    check_max_tokens(settings, max_tokens)
    defaults = services.generator.answer_defaults
    opts = rag_options(settings, data.k, max_tokens, data.temperature, data.expand, data.self_query, defaults)
    return RagPlan([{"role": "user", "content": data.query.strip()}], opts, data.return_token_ids)


def sources_out(prepared: RagPrompt) -> list[SourceOut]:
    return [SourceOut(**vars(s)) for s in prepared.sources]


async def run_rag(services: Services, plan: RagPlan, request_id: str) -> RagResponse:
    prepared = await services.rag.prepare(plan.messages, plan.opts, request_id)
    done = await services.generator.complete(prepared.prompt_ids, answer_sampling(plan.opts), request_id)
    return RagResponse(
        answer=done.text,
        sources=sources_out(prepared),
        usage=Usage(done.prompt_tokens, done.completion_tokens, done.prompt_tokens + done.completion_tokens),
        request_id=request_id,
        queries=prepared.queries,
        author_filter=prepared.author,
        timings_ms=prepared.timings_ms,
        finish_reason=done.finish_reason,
        notice=prepared.notice,
        prompt_token_ids=prepared.prompt_ids if plan.return_token_ids else None,
    )


async def rag_events(
    services: Services, prepared: RagPrompt, opts: RagOptions, request_id: str
) -> AsyncIterator[bytes]:
    """Token deltas, then one final event with sources, usage and timings, then [DONE]."""
    completion_tokens, finish_reason = 0, None
    async for delta in services.generator.stream(prepared.prompt_ids, answer_sampling(opts), request_id):
        completion_tokens, finish_reason = delta.completion_tokens, delta.finish_reason
        if delta.text:
            yield frame({"type": "delta", "text": delta.text})
    yield frame(
        {
            "type": "final",
            "request_id": request_id,
            "sources": msgspec.to_builtins(sources_out(prepared)),
            "usage": usage(len(prepared.prompt_ids), completion_tokens),
            "queries": prepared.queries,
            "author_filter": prepared.author,
            "timings_ms": prepared.timings_ms,
            "finish_reason": finish_reason,
            "notice": prepared.notice,
        }
    )
    yield DONE


# --- /v1/chat/completions ------------------------------------------------------------------------


@dataclass
class ChatPlan:
    model: str
    messages: list[dict[str, str]]
    sampling: Sampling
    rag: RagOptions | None
    include_usage: bool
    prompt_ids: list[int] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)


def message_dicts(messages: list[ChatMessage]) -> list[dict[str, str]]:
    out = []
    for i, m in enumerate(messages):
        if isinstance(m.content, list):
            texts = []
            for part in m.content:
                if part.get("type") != "text" or not isinstance(part.get("text"), str):
                    raise BadRequest("only text content parts are supported", param=f"messages[{i}].content")
                texts.append(part["text"])
            content = "".join(texts)
        else:
            content = m.content or ""
        out.append({"role": "system" if m.role == "developer" else m.role, "content": content})
    return out


def plan_chat(services: Services, data: ChatCompletionRequest) -> ChatPlan:
    """Every check that needs no retrieval; a plain chat prompt is tokenised and checked here too."""
    settings = services.settings
    use_rag = resolve_model(settings, data.model) or bool(data.rag)
    messages = message_dicts(data.messages)
    max_tokens = data.max_completion_tokens or data.max_tokens or settings.engine.default_max_tokens
    check_max_tokens(settings, max_tokens)
    sampling = wire_sampling(data, max_tokens)
    include_usage = bool(data.stream_options and data.stream_options.include_usage)
    plan = ChatPlan(data.model, messages, sampling, None, include_usage)
    if use_rag:
        if messages[-1]["role"] != "user":
            raise BadRequest("a RAG request must end with a user message", param="messages")
        check_query(settings, messages[-1]["content"], f"messages[{len(messages) - 1}].content")
        over = data.rag if isinstance(data.rag, RagOverrides) else RagOverrides()
        plan.rag = rag_options(settings, over.k, max_tokens, data.temperature, over.expand, over.self_query)
    else:
        plan.prompt_ids = services.generator.chat_ids(messages)
        services.generator.check_fits(plan.prompt_ids, max_tokens, "messages")
    return plan


async def retrieve_for_chat(services: Services, plan: ChatPlan, request_id: str) -> ChatPlan:
    """For a RAG chat: retrieval, then the prompt with its context (a no-op for a plain chat)."""
    if plan.rag is not None and not plan.prompt_ids:
        prepared = await services.rag.prepare(plan.messages, plan.rag, request_id, param="messages")
        plan.prompt_ids = prepared.prompt_ids
        plan.extra = {"sources": msgspec.to_builtins(sources_out(prepared))}
        if prepared.notice:
            plan.extra["rag_notice"] = prepared.notice
    return plan


async def run_chat(services: Services, plan: ChatPlan, request_id: str) -> dict[str, Any]:
    await retrieve_for_chat(services, plan, request_id)
    done = await services.generator.complete(plan.prompt_ids, plan.sampling, request_id)
    message = {"role": "assistant", "content": done.text}
    return {
        "id": request_id,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": plan.model,
        "choices": [{"index": 0, "message": message, "finish_reason": finish(done.finish_reason), "logprobs": None}],
        "usage": usage(done.prompt_tokens, done.completion_tokens),
        **plan.extra,
    }


async def chat_chunks(services: Services, plan: ChatPlan, request_id: str) -> AsyncIterator[bytes]:
    head = {"id": request_id, "object": "chat.completion.chunk", "created": int(time.time()), "model": plan.model}
    opening = {"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}
    yield frame({**head, "choices": [opening], **plan.extra})
    completion_tokens = 0
    async for delta in services.generator.stream(plan.prompt_ids, plan.sampling, request_id):
        completion_tokens = delta.completion_tokens
        if delta.text or delta.finish_reason:
            content = {"content": delta.text} if delta.text else {}
            yield frame(
                {**head, "choices": [{"index": 0, "delta": content, "finish_reason": finish(delta.finish_reason)}]}
            )
    if plan.include_usage:
        yield frame({**head, "choices": [], "usage": usage(len(plan.prompt_ids), completion_tokens)})
    yield DONE


# --- /v1/completions -----------------------------------------------------------------------------


@dataclass
class CompletionPlan:
    model: str
    prompts: list[str]
    prompt_ids: list[list[int]]
    sampling: Sampling
    echo: bool
    include_usage: bool


def prompt_inputs(generator: Generator, prompt: str | list[str | int | list[int]]) -> tuple[list[str], list[list[int]]]:
    """The prompts as texts (for echo) and token ids, from any of OpenAI's four prompt forms."""
    if isinstance(prompt, str):
        return [prompt], [generator.text_ids(prompt)]
    if not prompt:
        raise BadRequest("the prompt list is empty", param="prompt")
    if not isinstance(prompt[0], int) and len(prompt) > MAX_PROMPTS:
        raise BadRequest(f"{len(prompt)} prompts in one request; the limit is {MAX_PROMPTS}", param="prompt")
    if all(isinstance(p, str) for p in prompt):
        texts = [str(p) for p in prompt]
        return texts, [generator.text_ids(t) for t in texts]
    if all(isinstance(p, int) for p in prompt):
        ids = [[int(p) for p in prompt]]  # type: ignore[arg-type]
    elif all(isinstance(p, list) for p in prompt):
        ids = [list(p) for p in prompt]  # type: ignore[arg-type]
    else:
        raise BadRequest(
            "prompt must be a string, a list of strings, a list of token ids or a list of token-id lists, not a mix",
            param="prompt",
        )
    for i, one in enumerate(ids):
        if not one:
            raise BadRequest("a token-id prompt is empty", param=f"prompt[{i}]")
        generator.check_token_ids(one, "prompt")
    return [generator.decode(one) for one in ids], ids


def prompt_count(data: CompletionRequest) -> int:
    """How many generations a completions request makes: one per prompt of a list of texts or of token-id
    lists (a list of token ids is one prompt)."""
    prompt = data.prompt
    if isinstance(prompt, str) or not prompt or isinstance(prompt[0], int):
        return 1
    if len(prompt) > MAX_PROMPTS:
        raise BadRequest(f"{len(prompt)} prompts in one request; the limit is {MAX_PROMPTS}", param="prompt")
    return len(prompt)


def plan_completion(services: Services, data: CompletionRequest) -> CompletionPlan:
    settings = services.settings
    resolve_model(settings, data.model)
    prompts, ids = prompt_inputs(services.generator, data.prompt)
    if data.stream and len(prompts) > 1:
        raise BadRequest("streaming takes a single prompt", param="prompt")
    max_tokens = data.max_tokens or settings.engine.default_max_tokens
    check_max_tokens(settings, max_tokens)
    sampling = wire_sampling(data, max_tokens)
    for one in ids:
        services.generator.check_fits(one, max_tokens, "prompt")
    include_usage = bool(data.stream_options and data.stream_options.include_usage)
    return CompletionPlan(data.model, prompts, ids, sampling, data.echo, include_usage)


async def run_completion(
    services: Services, plan: CompletionPlan, request_id: str, tickets: list[Ticket] | None = None
) -> dict[str, Any]:
    """`tickets`: one per prompt (each prompt is admitted as a request of its own); without them the
    prompts share the caller's ticket (a batch line)."""

    async def one(i: int, ids: list[int]) -> Completion:
        if tickets is not None:
            TICKET.set(tickets[i])  # gather runs this in a task of its own: the context is its own too
        return await services.generator.complete(ids, plan.sampling, f"{request_id}-{i}")

    results = await asyncio.gather(*(one(i, ids) for i, ids in enumerate(plan.prompt_ids)))
    choices = [
        {
            "index": i,
            "text": (plan.prompts[i] if plan.echo else "") + r.text,
            "finish_reason": finish(r.finish_reason),
            "logprobs": None,
        }
        for i, r in enumerate(results)
    ]
    return {
        "id": request_id,
        "object": "text_completion",
        "created": int(time.time()),
        "model": plan.model,
        "choices": choices,
        "usage": usage(sum(r.prompt_tokens for r in results), sum(r.completion_tokens for r in results)),
    }


async def completion_chunks(services: Services, plan: CompletionPlan, request_id: str) -> AsyncIterator[bytes]:
    head = {"id": request_id, "object": "text_completion", "created": int(time.time()), "model": plan.model}
    if plan.echo:
        yield frame(
            {**head, "choices": [{"index": 0, "text": plan.prompts[0], "finish_reason": None, "logprobs": None}]}
        )
    completion_tokens = 0
    async for delta in services.generator.stream(plan.prompt_ids[0], plan.sampling, request_id):
        completion_tokens = delta.completion_tokens
        if delta.text or delta.finish_reason:
            choice = {"index": 0, "text": delta.text, "finish_reason": finish(delta.finish_reason), "logprobs": None}
            yield frame({**head, "choices": [choice]})
    if plan.include_usage:
        yield frame({**head, "choices": [], "usage": usage(len(plan.prompt_ids[0]), completion_tokens)})
    yield DONE
