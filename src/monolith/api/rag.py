"""POST /rag: retrieval-augmented answers, as JSON or as Server-Sent Events."""

from __future__ import annotations

from litestar import Controller, Request, Response, post
from litestar.response import Stream

from monolith.api.openapi import SERVED, errors
from monolith.api.realtime import answer
from monolith.protocol.rag import RagRequest, RagResponse
from monolith.serving.services import Services


class RagController(Controller):
    path = "/rag"
    tags = ["rag"]

    @post(
        "",
        status_code=200,
        summary="Answer a question from the twin's own writing",
        responses=errors(*SERVED, 404, 413, 429, 504),
    )
    async def answer(self, request: Request, data: RagRequest, services: Services) -> Response[RagResponse] | Stream:
        # Response[...] | Stream: a bare union would make Litestar label the stream application/json.
        return await answer(request, "/rag", data, services)
