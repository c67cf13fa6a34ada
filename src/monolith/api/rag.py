"""POST /rag: retrieval-augmented answers, as JSON or as Server-Sent Events."""

from __future__ import annotations

from litestar import Controller, Request, Response, post
from litestar.di import Provide
from litestar.response import Stream

from monolith.api.admit import admitted
from monolith.api.deps import provide_services
from monolith.api.openapi import SERVED, errors
from monolith.api.streaming import sse, unless_disconnected
from monolith.protocol.rag import RagRequest, RagResponse
from monolith.serving import Services, plan_rag, rag_events, run_rag


class RagController(Controller):
    path = "/rag"
    dependencies = {"services": Provide(provide_services, sync_to_thread=False)}
    tags = ["rag"]

    @post(
        "",
        status_code=200,
        summary="Answer a question from the twin's own writing",
        responses=errors(*SERVED, 413, 429, 504),
    )
    async def answer(self, request: Request, data: RagRequest, services: Services) -> Response[RagResponse] | Stream:
        request_id = request.state.request_id
        with admitted(request, services.settings) as ticket:
            plan = plan_rag(services, data)
            if data.stream:
                # Retrieval before the first byte: its errors (400, 503) still get a proper status.
                prepared = await unless_disconnected(
                    request, services.rag.prepare(plan.messages, plan.opts, request_id)
                )
                return sse(rag_events(services, prepared, plan.opts, request_id), request_id, ticket)
            # Response[...] | Stream: a bare union would make Litestar label the stream application/json.
            return Response(await unless_disconnected(request, run_rag(services, plan, request_id)))
