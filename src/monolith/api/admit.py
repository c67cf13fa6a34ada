"""The real-time edge of admission control: a ticket per generating request, its deadline from the client."""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager

from litestar import Request

from monolith import tracing
from monolith.admission import Ticket
from monolith.config import Settings
from monolith.errors import BadRequest
from monolith.serving.services import Services

TIMEOUT_HEADER = "X-Request-Timeout"


def request_timeout(request: Request, settings: Settings) -> float:
    """The client's deadline in seconds (X-Request-Timeout), never above the server's own."""
    limit = settings.server.request_timeout_s
    raw = request.headers.get(TIMEOUT_HEADER)
    if raw is None:
        return limit
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not 0 < value <= limit:
        raise BadRequest(
            f"{TIMEOUT_HEADER} must be a number of seconds above 0 and at most {limit:g}; got {raw!r}",
            param=TIMEOUT_HEADER,
        )
    return value


@contextmanager
def admitted_many(request: Request, services: Services, count: int) -> Iterator[list[Ticket]]:
    """`count` tickets at once, for a request that runs that many generations side by side (429 + Retry-After when
    the wait is full), released on the way out unless a stream took one over (see `streaming.sse`)."""
    settings = services.settings
    if count > settings.admission.max_waiting:  # a 429 would never clear: say so once
        limit = settings.admission.max_waiting
        raise BadRequest(f"{count} prompts in one request; this server admits {limit} at once", param="prompt")
    tickets = services.admission.admit_many(request_timeout(request, settings), count)
    tracing.event("admitted", {"monolith.lane": "realtime", "monolith.admission.tickets": count})
    try:
        yield tickets
    finally:
        for ticket in tickets:
            if not ticket.streaming:
                ticket.release()
