"""/v1/rerank, and vLLM's /rerank and Cohere's /v2/rerank spellings of it."""

from __future__ import annotations

from typing import Any

from litestar import Controller, post

from monolith.api.openapi import SERVED, errors
from monolith.protocol.rerank import RerankRequest
from monolith.serving.rerank import rerank
from monolith.serving.services import Services


class RerankController(Controller):
    tags = ["openai"]

    @post(
        ["/v1/rerank", "/rerank", "/v2/rerank"],
        status_code=200,
        summary="Documents ordered by relevance to a query, by the RAG reranker (when rerank.model is set)",
        responses=errors(*SERVED, 404, 413),
    )
    async def rerank(self, data: RerankRequest, services: Services) -> dict[str, Any]:
        return await rerank(services, data)
