"""The one table of endpoints that run on the engine or the embedder: path -> request type, plan, run, stream,
and what a body needs loaded. Every reader of routes uses it: the real-time controllers, the async job routes
(`/v1/async/...`, one per entry), batch lines (a line's `url`, a batch's `endpoint`), and anything later that
dispatches by route. Adding an endpoint is one entry here."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal

import msgspec
from msgspec import Struct

from monolith.config import Settings
from monolith.errors import BadRequest
from monolith.protocol.chat import ChatCompletionRequest
from monolith.protocol.completions import CompletionRequest
from monolith.protocol.embeddings import EmbeddingRequest
from monolith.protocol.errors import field_of
from monolith.protocol.rag import RagRequest
from monolith.protocol.responses import ResponsesRequest
from monolith.protocol.tgi import TgiRequest
from monolith.serving.chat import chat_chunks, plan_chat, retrieve_for_chat, run_chat
from monolith.serving.completions import completion_chunks, plan_completion, prompt_count, run_completion
from monolith.serving.embeddings import plan_embeddings, run_embeddings
from monolith.serving.models import RAG_SUFFIX, model_names
from monolith.serving.rag import plan_rag, prepare_rag, rag_events, run_rag
from monolith.serving.responses import plan_response, run_response
from monolith.serving.responses_events import response_events
from monolith.serving.services import Services
from monolith.serving.tgi import plan_tgi, run_tgi, tgi_events
from monolith.work import Work

Plan = Callable[[Services, Any, str], Awaitable[Any]]
# (services, plan, request id, the work it serves: lane, ticket(s), background slot) -> the JSON answer.
Run = Callable[[Services, Any, str, Work], Awaitable[Any]]
# What must happen before the first byte (retrieval: its errors still get a status), then the SSE frames.
StreamFrames = Callable[[Services, Any, str, Work], Awaitable[AsyncIterator[bytes]]]


@dataclass(frozen=True)
class Endpoint:
    path: str
    kind: str  # an async job's kind, as the job store keeps it
    request: type[Struct]
    plan: Plan  # every 4xx is raised here, so async jobs and batch lines are refused at submit
    run: Run  # the JSON answer
    stream: StreamFrames | None  # None: the route does not stream
    needs_retrieval: Callable[[Settings, dict[str, Any]], bool]  # a body (as sent) needs the embedder loaded
    # Engine requests one body makes, each admitted as a request of its own; 0: no engine (not admitted).
    admissions: Callable[[Any], int]
    id_prefix: str  # a real-time answer's id: this, then the request id's hex

    @property
    def async_path(self) -> str:
        return "/v1/async" + self.path.removeprefix("/v1")


def _always(settings: Settings, body: dict[str, Any]) -> bool:
    return True


def _never(settings: Settings, body: dict[str, Any]) -> bool:
    return False


def _asks_for_rag(settings: Settings, body: dict[str, Any]) -> bool:
    """plan_chat's rule: the `rag` field, or a RAG model name (the base's or a twin's)."""
    model = body.get("model")
    rag_name = isinstance(model, str) and model.endswith(RAG_SUFFIX) and model in model_names(settings)
    return bool(body.get("rag")) or rag_name


async def _plan_rag(services: Services, data: RagRequest, request_id: str) -> Any:
    return plan_rag(services, data)


async def _plan_chat(services: Services, data: ChatCompletionRequest, request_id: str) -> Any:
    return await services.generator.off_loop(plan_chat, services, data)


async def _plan_completion(services: Services, data: CompletionRequest, request_id: str) -> Any:
    return await services.generator.off_loop(plan_completion, services, data)


async def _plan_response(services: Services, data: ResponsesRequest, request_id: str) -> Any:
    response_id = request_id if request_id.startswith("resp_") else f"resp_{request_id}"
    return await services.generator.off_loop(plan_response, services, data, response_id)


async def _plan_embeddings(services: Services, data: EmbeddingRequest, request_id: str) -> Any:
    return await plan_embeddings(services, data)


async def _plan_tgi(services: Services, data: TgiRequest, request_id: str) -> Any:
    return await services.generator.off_loop(plan_tgi, services, data)


async def _run_embeddings(services: Services, plan: Any, request_id: str, work: Work) -> Any:
    return await run_embeddings(services, plan)


async def _run_response(services: Services, plan: Any, request_id: str, work: Work) -> Any:
    return await run_response(services, plan, work)


async def _stream_tgi(services: Services, plan: Any, request_id: str, work: Work) -> AsyncIterator[bytes]:
    return tgi_events(services, plan, request_id, work)


async def _stream_rag(services: Services, plan: Any, request_id: str, work: Work) -> AsyncIterator[bytes]:
    prepared = await prepare_rag(services, plan.messages, plan.opts, request_id, work)
    return rag_events(services, prepared, plan.opts, request_id, work)


async def _stream_chat(services: Services, plan: Any, request_id: str, work: Work) -> AsyncIterator[bytes]:
    await retrieve_for_chat(services, plan, request_id, work)
    return chat_chunks(services, plan, request_id, work)


async def _stream_completion(services: Services, plan: Any, request_id: str, work: Work) -> AsyncIterator[bytes]:
    return completion_chunks(services, plan, request_id, work)


async def _stream_response(services: Services, plan: Any, request_id: str, work: Work) -> AsyncIterator[bytes]:
    await retrieve_for_chat(services, plan.chat, plan.id, work)
    return response_events(services, plan, work)


ENDPOINTS: dict[str, Endpoint] = {
    e.path: e
    for e in (
        Endpoint(
            "/v1/chat/completions",
            "chat",
            ChatCompletionRequest,
            _plan_chat,
            run_chat,
            _stream_chat,
            _asks_for_rag,
            lambda d: 1,
            "chatcmpl-",
        ),
        Endpoint(
            "/v1/completions",
            "completion",
            CompletionRequest,
            _plan_completion,
            run_completion,
            _stream_completion,
            _never,
            prompt_count,  # each prompt of a list waits for the engine as a request of its own
            "cmpl-",
        ),
        Endpoint(
            "/v1/responses",
            "response",
            ResponsesRequest,
            _plan_response,
            _run_response,
            _stream_response,
            _asks_for_rag,
            lambda d: 1,
            "resp_",
        ),
        Endpoint(
            "/v1/embeddings",
            "embedding",
            EmbeddingRequest,
            _plan_embeddings,
            _run_embeddings,
            None,
            _always,
            lambda d: 0,
            "",
        ),
        Endpoint("/rag", "rag", RagRequest, _plan_rag, run_rag, _stream_rag, _always, lambda d: 1, "req-"),
        # TGI's generate (its routes, SageMaker's TGI payload): answered as TGI answers, errors aside.
        Endpoint("/generate", "tgi", TgiRequest, _plan_tgi, run_tgi, _stream_tgi, _never, lambda d: 1, "tgi-"),
    )
}
BY_KIND: dict[str, Endpoint] = {e.kind: e for e in ENDPOINTS.values()}
# A batch line's `url` and a batch's `endpoint` (OpenAI's names for it): any entry.
BatchEndpoint = Literal[tuple(ENDPOINTS)]  # type: ignore[valid-type]


def body_of(endpoint: Endpoint, body: dict[str, Any] | bytes) -> Any:
    """A body as sent (a batch line's, or a stored job's) as its route's request type; a 400 naming the field."""
    try:
        if isinstance(body, bytes):
            return msgspec.json.decode(body, type=endpoint.request)
        return msgspec.convert(body, endpoint.request)
    except msgspec.ValidationError as exc:
        raise BadRequest(f"body: {exc}", param=field_of(str(exc))) from None


def refuse_stream(data: Any, why: str) -> None:
    if getattr(data, "stream", False):
        raise BadRequest(why, param="stream")


async def answer_of(
    services: Services, endpoint: Endpoint, body: Any, request_id: str, work: Work, why_not_streamed: str
) -> Any:
    """One request of `endpoint` answered whole for `work`, outside HTTP (a batch line, an async job): its checks,
    its run."""
    data = body if isinstance(body, endpoint.request) else body_of(endpoint, body)
    refuse_stream(data, why_not_streamed)
    plan = await endpoint.plan(services, data, request_id)
    return await endpoint.run(services, plan, request_id, work)
