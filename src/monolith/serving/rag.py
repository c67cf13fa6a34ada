"""/rag: a question in, an answer with its sources out."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import msgspec

from monolith.generation import check_max_tokens
from monolith.protocol.common import Usage
from monolith.protocol.rag import RagRequest, RagResponse, SourceOut
from monolith.rag import RagOptions, RagPrompt
from monolith.serving.common import DONE, Services, answer_sampling, check_query, frame, rag_options, usage


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
