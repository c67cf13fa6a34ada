"""Request metrics per route template, and a request id on every response."""

from __future__ import annotations

import re
import time
import uuid

from litestar.types import ASGIApp, Message, Receive, Scope, Send

from monolith.metrics import REQUEST_LATENCY, REQUESTS

_UNMATCHED = "unmatched"
# A client's X-Request-Id is kept only if short and printable: it goes into headers and logs.
_CLIENT_REQUEST_ID = re.compile(rb"[\x21-\x7e]{1,128}")


def client_request_id(scope: Scope) -> str | None:
    for name, value in scope.get("headers", []):
        if name == b"x-request-id":
            return value.decode() if _CLIENT_REQUEST_ID.fullmatch(value) else None
    return None


def metrics_middleware(app: ASGIApp) -> ASGIApp:
    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500
        # Ours names the engine requests (unique); a client's own id, when it sent a sane one, is echoed back.
        request_id = f"req-{uuid.uuid4().hex}"
        scope.setdefault("state", {})["request_id"] = request_id
        shown = client_request_id(scope) or request_id

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", []), (b"x-request-id", shown.encode())]
            await send(message)

        try:
            await app(scope, receive, send_wrapper)
        finally:
            # path_template, not the raw path: label cardinality stays bounded.
            route = scope.get("path_template") or _UNMATCHED
            REQUESTS.labels(route, scope["method"], str(status)).inc()
            REQUEST_LATENCY.labels(route).observe(time.perf_counter() - started)

    return middleware
