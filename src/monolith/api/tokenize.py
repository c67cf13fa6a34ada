"""POST /tokenize and /detokenize (vLLM's routes, at the root like vLLM's)."""

from __future__ import annotations

from litestar import Controller, post

from monolith.api.openapi import SERVED, errors
from monolith.protocol.tokenize import DetokenizeRequest, DetokenizeResponse, TokenizeRequest, TokenizeResponse
from monolith.serving.services import Services
from monolith.serving.tokenize import detokenize, tokenize


class TokenizeController(Controller):
    path = "/"
    tags = ["vllm"]

    @post(
        "/tokenize",
        status_code=200,
        summary="A prompt or chat as the served model's token ids",
        responses=errors(*SERVED, 404, 413),
    )
    async def tokenize(self, data: TokenizeRequest, services: Services) -> TokenizeResponse:
        return await services.generator.off_loop(tokenize, services, data)

    @post("/detokenize", status_code=200, summary="Token ids back to text", responses=errors(*SERVED, 404, 413))
    async def detokenize(self, data: DetokenizeRequest, services: Services) -> DetokenizeResponse:
        return await services.generator.off_loop(detokenize, services, data)
