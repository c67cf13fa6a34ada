"""OpenAI-compatible routes. A chat request asks for RAG with the model `<served>-rag` or `"rag": true`."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, Response, get, post
from litestar.di import Provide
from litestar.response import Stream

from monolith.api.admit import admitted, admitted_many
from monolith.api.deps import provide_services, provide_state
from monolith.api.openapi import GENERATION, SERVED, errors
from monolith.api.state import ServerState
from monolith.api.streaming import sse, unless_disconnected
from monolith.api.unknown_fields import log_unknown_fields
from monolith.config import Settings
from monolith.embeddings import EmbeddingRequest, embeddings
from monolith.errors import NotFound
from monolith.protocol.chat import ChatCompletionRequest
from monolith.protocol.completions import CompletionRequest
from monolith.protocol.models import ModelCard, ModelList
from monolith.protocol.responses import ResponsesRequest
from monolith.serving import (
    Services,
    chat_chunks,
    completion_chunks,
    model_names,
    plan_chat,
    plan_completion,
    prompt_count,
    retrieve_for_chat,
    run_chat,
    run_completion,
)
from monolith.serving.responses import plan_response, response_events, run_response


def model_cards(settings: Settings) -> list[ModelCard]:
    limit = settings.engine.max_model_len
    cards = [ModelCard(name, max_model_len=limit) for name in model_names(settings)]
    cards.append(ModelCard(settings.embedder.served_model_name))
    reranker = settings.rerank.served_name
    return [*cards, ModelCard(reranker)] if reranker else cards


class OpenAIController(Controller):
    path = "/v1"
    dependencies = {
        "services": Provide(provide_services, sync_to_thread=False),
        "server": Provide(provide_state, sync_to_thread=False),
    }
    tags = ["openai"]
    before_request = log_unknown_fields

    @get("/models", summary="The served model, its RAG alias, and the embedding model", responses=errors(401))
    async def models(self, server: ServerState) -> ModelList:
        return ModelList(model_cards(server.settings))

    @get("/models/{model_id:str}", summary="One model", responses=errors(400, 401, 404))
    async def model(self, model_id: str, server: ServerState) -> ModelCard:
        card = next((c for c in model_cards(server.settings) if c.id == model_id), None)
        if card is None:
            raise NotFound(f"the model '{model_id}' does not exist", param="model")
        return card

    @post(
        "/embeddings",
        status_code=200,
        summary="Embeddings from the RAG embedder (float or base64)",
        responses=errors(*SERVED, 404, 413),
    )
    async def embeddings(self, data: EmbeddingRequest, services: Services) -> dict[str, Any]:
        return await embeddings(services, data)

    @post("/chat/completions", status_code=200, responses=errors(*GENERATION))
    async def chat(
        self, request: Request, data: ChatCompletionRequest, services: Services
    ) -> Response[dict[str, Any]] | Stream:
        request_id = "chatcmpl-" + request.state.request_id.removeprefix("req-")
        with admitted(request, services.settings) as ticket:
            plan = await services.generator.off_loop(plan_chat, services, data)
            if data.stream:
                await unless_disconnected(request, retrieve_for_chat(services, plan, request_id))
                return sse(chat_chunks(services, plan, request_id), request_id, ticket)
            return Response(await unless_disconnected(request, run_chat(services, plan, request_id)))

    @post("/completions", status_code=200, responses=errors(*GENERATION))
    async def completions(
        self, request: Request, data: CompletionRequest, services: Services
    ) -> Response[dict[str, Any]] | Stream:
        request_id = "cmpl-" + request.state.request_id.removeprefix("req-")
        # Each prompt of a list waits for the engine as a request of its own: it counts for admission.
        with admitted_many(request, services.settings, prompt_count(data)) as tickets:
            plan = await services.generator.off_loop(plan_completion, services, data)
            if data.stream:
                return sse(completion_chunks(services, plan, request_id), request_id, tickets[0])
            run = run_completion(services, plan, request_id, tickets)
            return Response(await unless_disconnected(request, run))

    @post(
        "/responses",
        status_code=200,
        summary="Responses API, stateless: the whole conversation in input",
        responses=errors(*GENERATION),
    )
    async def responses(
        self, request: Request, data: ResponsesRequest, services: Services
    ) -> Response[dict[str, Any]] | Stream:
        response_id = "resp_" + request.state.request_id.removeprefix("req-")
        with admitted(request, services.settings) as ticket:
            plan = await services.generator.off_loop(plan_response, services, data, response_id)
            if data.stream:
                await unless_disconnected(request, retrieve_for_chat(services, plan.chat, response_id))
                return sse(response_events(services, plan), response_id, ticket)
            return Response(await unless_disconnected(request, run_response(services, plan)))
