"""Request metrics per route template, a request id on every response, and with tracing on a server span."""

from __future__ import annotations

import re
import time
import uuid

from litestar.types import ASGIApp, Message, Receive, Scope, Send
from opentelemetry import propagate, trace

from monolith.metrics import REQUEST_LATENCY, REQUESTS, exemplar

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
            REQUEST_LATENCY.labels(route).observe(time.perf_counter() - started, exemplar())

    return middleware


def tracing_middleware(app: ASGIApp) -> ASGIApp:
    """Each HTTP request a server span (installed only with tracing on: monolith.tracing), continuing the caller's
    W3C `traceparent`; the trace goes back in a `traceresponse` header (W3C Trace Context level 2's form: the
    trace id, this server's span id, the flags), and the span is current while the app runs, so the generation
    spans and log lines under it belong to it."""
    tracer = trace.get_tracer("monolith.api")

    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return
        carrier: dict[str, str] = {}
        for name, value in scope.get("headers", []):
            key = name.decode("latin-1").lower()
            carrier[key] = f"{carrier[key]},{value.decode('latin-1')}" if key in carrier else value.decode("latin-1")
        method = scope["method"]
        attributes = {"http.request.method": method, "url.path": scope["path"], "url.scheme": scope["scheme"]}
        span = tracer.start_span(method, propagate.extract(carrier), trace.SpanKind.SERVER, attributes)
        context = span.get_span_context()
        traceresponse = f"00-{trace.format_trace_id(context.trace_id)}-{trace.format_span_id(context.span_id)}-"
        traceresponse += f"{int(context.trace_flags):02x}"

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                span.set_attribute("http.response.status_code", message["status"])
                if message["status"] >= 500:
                    span.set_status(trace.StatusCode.ERROR)
                if context.is_valid:
                    message["headers"] = [*message.get("headers", []), (b"traceresponse", traceresponse.encode())]
            await send(message)

        try:
            with trace.use_span(span, end_on_exit=False, record_exception=True, set_status_on_exception=True):
                await app(scope, receive, send_wrapper)
        finally:
            route = scope.get("path_template") or _UNMATCHED
            span.update_name(f"{method} {route}")
            span.set_attribute("http.route", route)
            request_id = scope.get("state", {}).get("request_id")
            if request_id:
                span.set_attribute("monolith.request_id", request_id)
            span.end()

    return middleware
