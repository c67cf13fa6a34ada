"""Queue-depth accounting around every engine generation, and per-request deadlines."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import aclosing
from contextvars import ContextVar

from monolith.engine import Delta
from monolith.errors import DeadlineExceeded
from monolith.metrics import GENERATED_TOKENS, PROMPT_TOKENS, QUEUE_DEPTH, REQUESTS_RUNNING, TIME_TO_FIRST_TOKEN

# Which kind of work a generation serves; async jobs and batches set it so real-time goes first.
LANE: ContextVar[str] = ContextVar("lane", default="realtime")
WAITING = Counter[str]()  # generations admitted but not yet producing tokens, per lane


def realtime_waiting() -> int:
    return WAITING["realtime"]


async def tracked(stream: AsyncIterator[Delta], deadline: float) -> AsyncIterator[Delta]:
    """Counts the generation as queued until its first token, then as running; ends it at the deadline.

    Leaving early (client gone, deadline, error) closes the engine stream, which aborts the request.
    """
    submitted = time.monotonic()
    lane = LANE.get()
    WAITING[lane] += 1
    QUEUE_DEPTH.inc()
    waiting = True
    produced = 0
    try:
        async with aclosing(stream) as deltas:
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise DeadlineExceeded("the request ran past its deadline")
                try:
                    delta = await asyncio.wait_for(anext(deltas), remaining)
                except StopAsyncIteration:
                    return
                except TimeoutError:
                    raise DeadlineExceeded("the request ran past its deadline") from None
                if waiting:
                    waiting = False
                    WAITING[lane] -= 1
                    QUEUE_DEPTH.dec()
                    REQUESTS_RUNNING.inc()
                    TIME_TO_FIRST_TOKEN.observe(time.monotonic() - submitted)
                    PROMPT_TOKENS.inc(delta.prompt_tokens)
                GENERATED_TOKENS.inc(delta.completion_tokens - produced)
                produced = delta.completion_tokens
                yield delta
    finally:
        if waiting:
            WAITING[lane] -= 1
        (QUEUE_DEPTH if waiting else REQUESTS_RUNNING).dec()
