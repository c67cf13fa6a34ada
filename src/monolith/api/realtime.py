"""A registry entry answered in real time: admitted (429 past the wait), planned (every 4xx), then run as JSON
or streamed as SSE; abandoned in the engine when the client leaves."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from litestar import Request, Response
from litestar.response import Stream

from monolith.admission import REALTIME
from monolith.api.admit import admitted_many
from monolith.api.streaming import error_frame, sse, unless_disconnected
from monolith.errors import MonolithError
from monolith.serving.registry import ENDPOINTS
from monolith.serving.services import Services
from monolith.work import Work


async def answer(
    request: Request,
    path: str,
    data: Any,
    services: Services,
    stream: bool | None = None,
    on_error: Callable[[MonolithError], bytes] = error_frame,
) -> Response[Any] | Stream:
    """`stream`: whether to stream (default: the body's `stream`); `on_error`: a failed stream's last frame."""
    endpoint = ENDPOINTS[path]
    streamed = getattr(data, "stream", False) if stream is None else stream
    request_id = endpoint.id_prefix + request.state.request_id.removeprefix("req-")
    count = endpoint.admissions(data)
    if count == 0:  # no engine behind it: nothing to wait for, nothing to admit
        plan = await endpoint.plan(services, data, request_id)
        return Response(await endpoint.run(services, plan, request_id, Work()))
    with admitted_many(request, services, count) as tickets:
        work = Work(REALTIME, tuple(tickets))
        plan = await endpoint.plan(services, data, request_id)
        if endpoint.stream is not None and streamed:
            # What comes before the first byte (retrieval) still gets a proper status when it fails.
            frames = await unless_disconnected(request, endpoint.stream(services, plan, request_id, work))
            return sse(frames, request_id, tickets[0], on_error)
        return Response(await unless_disconnected(request, endpoint.run(services, plan, request_id, work)))
