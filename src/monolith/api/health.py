"""Liveness, readiness (the truth during load and drain) and the Prometheus exposition."""

from __future__ import annotations

from litestar import Controller, Request, Response, get
from prometheus_client import CONTENT_TYPE_LATEST
from prometheus_client.exposition import choose_encoder

from monolith.api.openapi import errors
from monolith.metrics import REGISTRY
from monolith.runtime import Phase, Runtime


class HealthController(Controller):
    tags = ["operations"]

    @get("/health/live", summary="The process answers (503 once it must be restarted)", responses=errors(503))
    async def live(self, runtime: Runtime) -> Response[dict]:
        if runtime.fatal is not None:  # it is exiting; should it not manage to, the kubelet restarts it
            body = {"status": "restart", "phase": runtime.phase.value, "detail": runtime.fatal}
            return Response(body, status_code=503)
        return Response({"status": "alive", "phase": runtime.phase.value}, status_code=200)

    @get(
        "/health/ready",
        summary="200 once the engine, embedder and store are loaded and warmed up",
        responses=errors(503),
    )
    async def ready(self, runtime: Runtime) -> Response[dict]:
        body = {"status": runtime.phase.value, "detail": runtime.detail, "timings_s": runtime.timings_s}
        if runtime.database is not None:
            # Stays ready while the job store is down: real-time serving never needs it, and every replica shares
            # one store, so dropping them all from the Service would turn a jobs outage into a total one.
            body["store"] = "up" if runtime.database.health.up else "down"
        if runtime.phase is Phase.READY:
            return Response(body, status_code=200)
        retry = "1" if runtime.phase is Phase.DRAINING else "5"
        return Response(body, status_code=503, headers={"Retry-After": retry})

    @get(
        "/metrics",
        summary="Prometheus text exposition",
        description="The OpenMetrics format instead when the scraper's Accept header asks for it (Prometheus does): "
        "with tracing on, its latency histograms carry the trace id of a request they counted as an exemplar.",
        media_type=CONTENT_TYPE_LATEST,
        responses=errors(401),
    )
    async def metrics(self, request: Request) -> Response[bytes]:
        encode, media_type = choose_encoder(request.headers.get("accept", ""))
        return Response(encode(REGISTRY), media_type=media_type)
