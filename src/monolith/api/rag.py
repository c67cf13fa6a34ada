"""POST /rag: retrieval-augmented answers, as JSON or as Server-Sent Events."""

from __future__ import annotations

from collections.abc import AsyncIterator

import msgspec
from litestar import Controller, Request, post
from litestar.di import Provide
from litestar.response import Stream

from monolith.api.deps import provide_services
from monolith.api.schemas import RagRequest, RagResponse, SourceOut, Usage
from monolith.api.state import Services
from monolith.api.streaming import DONE, frame, sse, unless_disconnected
from monolith.engine import Sampling
from monolith.errors import BadRequest
from monolith.rag import RagOptions, RagPrompt


def rag_options(
    services: Services,
    k: int | None,
    max_tokens: int | None,
    temperature: float,
    expand: bool | None,
    self_query: bool | None,
) -> RagOptions:
    cfg = services.rag.settings.rag
    return RagOptions(
        k=k or cfg.k,
        max_tokens=services.generator.max_tokens(max_tokens),
        temperature=temperature,
        expand=cfg.expand if expand is None else expand,
        self_query=cfg.self_query if self_query is None else self_query,
    )


def check_query(services: Services, query: str, param: str) -> None:
    limit = services.rag.settings.rag.max_query_chars
    if not query.strip():
        raise BadRequest("the query is empty", param=param)
    if len(query) > limit:
        raise BadRequest(f"the query has {len(query)} characters; the limit is {limit}", param=param)


def sources_out(prepared: RagPrompt) -> list[SourceOut]:
    return [SourceOut(**vars(s)) for s in prepared.sources]


class RagController(Controller):
    path = "/rag"
    dependencies = {"services": Provide(provide_services, sync_to_thread=False)}
    tags = ["rag"]

    @post("", status_code=200, summary="Answer a question from the twin's own writing")
    async def answer(self, request: Request, data: RagRequest, services: Services) -> RagResponse | Stream:
        check_query(services, data.query, "query")
        opts = rag_options(services, data.k, data.max_tokens, data.temperature, data.expand, data.self_query)
        request_id = request.state.request_id
        messages = [{"role": "user", "content": data.query.strip()}]
        if data.stream:
            prepared = await unless_disconnected(request, services.rag.prepare(messages, opts, request_id))
            return sse(self._events(services, prepared, opts, request_id), request_id)
        return await unless_disconnected(request, self._complete(services, messages, opts, request_id))

    async def _complete(self, services: Services, messages, opts: RagOptions, request_id: str) -> RagResponse:
        prepared = await services.rag.prepare(messages, opts, request_id)
        sampling = Sampling(max_tokens=opts.max_tokens, temperature=opts.temperature)
        done = await services.generator.complete(prepared.prompt_ids, sampling, request_id)
        return RagResponse(
            answer=done.text,
            sources=sources_out(prepared),
            usage=Usage(done.prompt_tokens, done.completion_tokens, done.prompt_tokens + done.completion_tokens),
            request_id=request_id,
            queries=prepared.queries,
            author_filter=prepared.author,
            timings_ms=prepared.timings_ms,
            finish_reason=done.finish_reason,
        )

    async def _events(
        self, services: Services, prepared: RagPrompt, opts: RagOptions, request_id: str
    ) -> AsyncIterator[bytes]:
        sampling = Sampling(max_tokens=opts.max_tokens, temperature=opts.temperature)
        completion_tokens, finish = 0, None
        async for delta in services.generator.stream(prepared.prompt_ids, sampling, request_id):
            completion_tokens, finish = delta.completion_tokens, delta.finish_reason
            if delta.text:
                yield frame({"type": "delta", "text": delta.text})
        prompt_tokens = len(prepared.prompt_ids)
        final = {
            "type": "final",
            "request_id": request_id,
            "sources": msgspec.to_builtins(sources_out(prepared)),
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
            "queries": prepared.queries,
            "author_filter": prepared.author,
            "timings_ms": prepared.timings_ms,
            "finish_reason": finish,
        }
        yield frame(final)
        yield DONE
