"""Liveness, readiness (the truth during load and drain) and the Prometheus exposition."""

from __future__ import annotations

from litestar import Controller, Response, get
from litestar.di import Provide
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from monolith.api.deps import provide_state
from monolith.api.openapi import errors
from monolith.api.state import Phase, ServerState
from monolith.metrics import REGISTRY


class HealthController(Controller):
    dependencies = {"server": Provide(provide_state, sync_to_thread=False)}
    tags = ["operations"]

    @get("/health/live", summary="The process answers")
    async def live(self, server: ServerState) -> dict[str, str]:
        return {"status": "alive", "phase": server.phase.value}

    @get(
        "/health/ready",
        summary="200 once the engine, embedder and store are loaded and warmed up",
        responses=errors(503),
    )
    async def ready(self, server: ServerState) -> Response[dict]:
        body = {"status": server.phase.value, "detail": server.detail, "timings_s": server.timings_s}
        if server.phase is Phase.READY:
            return Response(body, status_code=200)
        retry = "1" if server.phase is Phase.DRAINING else "5"
        return Response(body, status_code=503, headers={"Retry-After": retry})

    @get("/metrics", summary="Prometheus text exposition", media_type=CONTENT_TYPE_LATEST, responses=errors(401))
    async def metrics(self) -> Response[bytes]:
        return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)
