"""Request metrics per route template, and a request id on every response."""

from __future__ import annotations

import time
import uuid

from litestar.types import ASGIApp, Message, Receive, Scope, Send

from monolith.metrics import REQUEST_LATENCY, REQUESTS

_UNMATCHED = "unmatched"


def metrics_middleware(app: ASGIApp) -> ASGIApp:
    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500
        request_id = f"req-{uuid.uuid4().hex}"
        scope.setdefault("state", {})["request_id"] = request_id

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", []), (b"x-request-id", request_id.encode())]
            await send(message)

        try:
            await app(scope, receive, send_wrapper)
        finally:
            # path_template, not the raw path: label cardinality stays bounded.
            route = scope.get("path_template") or _UNMATCHED
            REQUESTS.labels(route, scope["method"], str(status)).inc()
            REQUEST_LATENCY.labels(route).observe(time.perf_counter() - started)

    return middleware
