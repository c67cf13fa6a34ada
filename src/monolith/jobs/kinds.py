"""What each job kind runs: the same validation and serving code as its real-time route."""

from __future__ import annotations

from typing import Any

import msgspec

from monolith.errors import BadRequest
from monolith.protocol.chat import ChatCompletionRequest
from monolith.protocol.rag import RagRequest
from monolith.serving import Services, plan_chat, plan_rag, run_chat, run_rag

KINDS = {"rag": RagRequest, "chat": ChatCompletionRequest}


async def validate(services: Services, kind: str, body: RagRequest | ChatCompletionRequest) -> bytes:
    """Every check the real-time route makes, at submit time; returns the body to store."""
    if body.stream:
        raise BadRequest("an async job cannot stream; poll the job or give a callback_url", param="stream")
    if kind == "rag":
        plan_rag(services, body)  # type: ignore[arg-type]
    else:
        await services.generator.off_loop(plan_chat, services, body)
    return msgspec.json.encode(body)


async def execute(services: Services, kind: str, request: bytes, request_id: str) -> Any:
    body = msgspec.json.decode(request, type=KINDS[kind])
    if kind == "rag":
        return await run_rag(services, plan_rag(services, body), request_id)
    return await run_chat(services, await services.generator.off_loop(plan_chat, services, body), request_id)
