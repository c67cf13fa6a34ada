"""/rag: a question in, an answer with its sources out; and the RAG prompt every route that asks for RAG
builds from the retrieved sources (the context, best first, within the token budget)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import msgspec

from monolith.errors import BadRequest
from monolith.generation import Generator, check_max_tokens
from monolith.protocol.rag import RagRequest, RagResponse, SourceOut
from monolith.retrieval.pipeline import RagOptions, Source
from monolith.serving.answers import DONE, frame, usage
from monolith.serving.checks import check_query
from monolith.serving.models import resolve_model
from monolith.serving.sampling import answer_sampling, rag_options
from monolith.serving.services import Services
from monolith.work import Work

SYSTEM_PROMPT = (
    "You are a writer answering in your own voice. Answer the user's question using the context below, "
    "which comes from your own articles, posts and code. If the context does not cover it, say so.\n\nContext:\n"
)
NO_CONTEXT = "(no sources: nothing you wrote is relevant to this question; say that you have not written about it)\n"
# Room for the template's own tokens around the context, which per-chunk counts do not see.
_TEMPLATE_MARGIN = 16


@dataclass
class RagPrompt:
    prompt_ids: list[int]
    sources: list[Source]
    queries: list[str]
    author: str | None
    timings_ms: dict[str, float] = field(default_factory=dict)
    notice: str | None = None  # what the pipeline did that the caller should know (a dropped filter, no sources)


def with_context(messages: list[dict[str, str]], context: str) -> list[dict[str, str]]:
    """The retrieved context goes into the system message, ahead of any system text the caller sent."""
    system = SYSTEM_PROMPT + (context or NO_CONTEXT)
    if messages and messages[0]["role"] == "system":
        return [{"role": "system", "content": f"{system}\n{messages[0]['content']}"}, *messages[1:]]
    return [{"role": "system", "content": system}, *messages]


def build_prompt(
    generator: Generator, messages: list[dict[str, str]], sources: list[Source], max_tokens: int, param: str
) -> tuple[list[int], list[Source]]:
    """Context chunks, best first, as many as fit in max_model_len - max_tokens, counted in tokens."""
    bare = generator.chat_ids(with_context(messages, ""))
    generator.check_fits(bare, max_tokens, param)
    budget = generator.max_model_len - max_tokens - len(bare) - _TEMPLATE_MARGIN
    blocks: list[str] = []
    used: list[Source] = []
    for i, source in enumerate(sources, start=1):
        block = f"[{i}] {source.author_full_name} ({source.platform}): {source.content}\n"
        cost = generator.count_tokens(block)
        if cost > budget:
            if budget > 32:  # a useful fraction of the chunk still fits: cut it to the budget
                blocks.append(generator.decode(generator.encode(block, add_special_tokens=False)[:budget]))
                used.append(source)
            break
        blocks.append(block)
        used.append(source)
        budget -= cost
    ids = generator.chat_ids(with_context(messages, "".join(blocks)))
    generator.check_fits(ids, max_tokens, param)
    return ids, used


async def prepare_rag(
    services: Services,
    messages: list[dict[str, str]],
    opts: RagOptions,
    request_id: str,
    work: Work,
    param: str = "query",
) -> RagPrompt:
    """Retrieval for the last (user) message, then the prompt with the sources that fit."""
    query = messages[-1]["content"].strip()
    if not query:
        raise BadRequest("the query is empty", param=param)
    timings: dict[str, float] = {}
    sources, queries, author, notice = await services.rag.retrieve(query, opts, request_id, work, timings)
    started = time.perf_counter()
    generator = services.generator
    ids, used = await generator.off_loop(build_prompt, generator, messages, sources, opts.max_tokens, param)
    timings["prompt"] = round((time.perf_counter() - started) * 1000, 1)
    return RagPrompt(ids, used, queries, author, timings, notice)


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
    generator = services.generator
    generator.check_priority(data.priority)
    model = resolve_model(settings, data.model) if data.model is not None else None
    opts = rag_options(
        settings,
        data.k,
        max_tokens,
        data.temperature,
        data.expand,
        data.self_query,
        generator.answer_defaults,
        data.priority,
        model,
    )
    return RagPlan([{"role": "user", "content": data.query.strip()}], opts, data.return_token_ids)


def sources_out(prepared: RagPrompt) -> list[SourceOut]:
    return [SourceOut(**vars(s)) for s in prepared.sources]


async def run_rag(services: Services, plan: RagPlan, request_id: str, work: Work) -> RagResponse:
    prepared = await prepare_rag(services, plan.messages, plan.opts, request_id, work)
    done = await services.generator.complete(prepared.prompt_ids, answer_sampling(plan.opts), request_id, work)
    return RagResponse(
        answer=done.text,
        sources=sources_out(prepared),
        usage=usage(done.prompt_tokens, done.completion_tokens),
        request_id=request_id,
        queries=prepared.queries,
        author_filter=prepared.author,
        timings_ms=prepared.timings_ms,
        finish_reason=done.finish_reason,
        notice=prepared.notice,
        prompt_token_ids=prepared.prompt_ids if plan.return_token_ids else None,
    )


async def rag_events(
    services: Services, prepared: RagPrompt, opts: RagOptions, request_id: str, work: Work
) -> AsyncIterator[bytes]:
    """Token deltas, then one final event with sources, usage and timings, then [DONE]."""
    completion_tokens, finish_reason = 0, None
    async for delta in services.generator.stream(prepared.prompt_ids, answer_sampling(opts), request_id, work):
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
