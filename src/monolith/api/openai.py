"""OpenAI-compatible routes. A chat request asks for RAG with the model `<served>-rag` or `"rag": true`."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, Response, get, post
from litestar.response import Stream

from monolith.api.openapi import GENERATION, SERVED, errors
from monolith.api.realtime import answer
from monolith.config import Settings
from monolith.errors import ModelNotFound
from monolith.protocol.chat import ChatCompletionRequest
from monolith.protocol.completions import CompletionRequest
from monolith.protocol.embeddings import EmbeddingRequest
from monolith.protocol.models import ModelCard, ModelList
from monolith.protocol.responses import ResponsesRequest
from monolith.serving.models import RAG_SUFFIX, model_names
from monolith.serving.services import Services


def model_cards(settings: Settings) -> list[ModelCard]:
    """The base and its RAG alias, each twin and its alias (a LoRA on the base, as vLLM lists one), the embedder
    and the reranker."""
    limit, base = settings.engine.max_model_len, settings.engine.served_model_name
    cards = [ModelCard(name, max_model_len=limit, root=settings.engine.model) for name in model_names(settings)[:2]]
    for name, twin in settings.twins.items():
        cards += [
            ModelCard(alias, max_model_len=limit, root=twin.adapter, parent=base) for alias in (name, name + RAG_SUFFIX)
        ]
    cards.append(ModelCard(settings.embedder.served_model_name))
    reranker = settings.rerank.served_name
    return [*cards, ModelCard(reranker)] if reranker else cards


class OpenAIController(Controller):
    path = "/v1"
    tags = ["openai"]

    @get(
        "/models",
        summary="The base model, each twin, their RAG aliases, the embedding model and the reranker",
        responses=errors(401),
    )
    async def models(self, settings: Settings) -> ModelList:
        return ModelList(model_cards(settings))

    @get("/models/{model_id:str}", summary="One model", responses=errors(400, 401, 404))
    async def model(self, model_id: str, settings: Settings) -> ModelCard:
        card = next((c for c in model_cards(settings) if c.id == model_id), None)
        if card is None:
            raise ModelNotFound(f"the model '{model_id}' does not exist", param="model")
        return card

    @post(
        "/embeddings",
        status_code=200,
        summary="Embeddings from the RAG embedder (float or base64)",
        responses=errors(*SERVED, 404, 413),
    )
    async def embeddings(self, request: Request, data: EmbeddingRequest, services: Services) -> dict[str, Any]:
        return (await answer(request, "/v1/embeddings", data, services)).content

    @post("/chat/completions", status_code=200, responses=errors(*GENERATION))
    async def chat(
        self, request: Request, data: ChatCompletionRequest, services: Services
    ) -> Response[dict[str, Any]] | Stream:
        return await answer(request, "/v1/chat/completions", data, services)

    @post("/completions", status_code=200, responses=errors(*GENERATION))
    async def completions(
        self, request: Request, data: CompletionRequest, services: Services
    ) -> Response[dict[str, Any]] | Stream:
        return await answer(request, "/v1/completions", data, services)

    @post(
        "/responses",
        status_code=200,
        summary="Responses API, stateless: the whole conversation in input",
        responses=errors(*GENERATION),
    )
    async def responses(
        self, request: Request, data: ResponsesRequest, services: Services
    ) -> Response[dict[str, Any]] | Stream:
        return await answer(request, "/v1/responses", data, services)
