"""SSE framing, and ending a non-streamed generation when its client goes away."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TypeVar

from litestar import Request
from litestar.response import Stream

from monolith.admission import Ticket
from monolith.errors import ClientGone, MonolithError, as_domain_error
from monolith.protocol.errors import error_response
from monolith.serving.answers import frame

T = TypeVar("T")

SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def error_frame(exc: MonolithError) -> bytes:
    return frame(error_response(exc))


async def guarded(
    frames: AsyncIterator[bytes], request_id: str, on_error: Callable[[MonolithError], bytes] = error_frame
) -> AsyncIterator[bytes]:
    """Headers are already sent once streaming starts, so an error becomes a last data frame (`on_error`'s)."""
    try:
        async for chunk in frames:
            yield chunk
    except Exception as exc:
        yield on_error(as_domain_error(exc, f"request {request_id}", "internal server error"))


async def holding(ticket: Ticket, frames: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """The request stays admitted until its last frame (or its client leaves)."""
    try:
        async for chunk in frames:
            yield chunk
    finally:
        ticket.release()


def sse(
    frames: AsyncIterator[bytes],
    request_id: str,
    ticket: Ticket | None = None,
    on_error: Callable[[MonolithError], bytes] = error_frame,
) -> Stream:
    if ticket is not None:
        ticket.streaming = True
        frames = holding(ticket, frames)
    return Stream(guarded(frames, request_id, on_error), media_type="text/event-stream", headers=SSE_HEADERS)


async def _disconnected(request: Request) -> None:
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return


async def unless_disconnected(request: Request, work: Awaitable[T]) -> T:
    """Race the handler against http.disconnect: a vanished client cancels the work (and the engine request)."""
    task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(_disconnected(request))
    try:
        await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watcher.cancel()
    if not task.done():
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
        raise ClientGone("the client closed the connection")
    return task.result()
