"""Queue-depth accounting and deadlines around a generation, with a scripted engine stream."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest

from monolith.admission import tracked
from monolith.engine import Delta
from monolith.errors import DeadlineExceeded
from monolith.metrics import QUEUE_DEPTH, REQUESTS_RUNNING


class ScriptedStream:
    """Yields `tokens` deltas, `gap_s` apart, and records whether it was closed (the engine abort path)."""

    def __init__(self, tokens: int, gap_s: float, first_token_s: float = 0.0) -> None:
        self.tokens, self.gap_s, self.first_token_s = tokens, gap_s, first_token_s
        self.closed = False
        self.first_token = asyncio.Event()

    async def run(self) -> AsyncIterator[Delta]:
        try:
            await asyncio.sleep(self.first_token_s)
            for i in range(1, self.tokens + 1):
                if i > 1:
                    await asyncio.sleep(self.gap_s)
                yield Delta("x", i, 5, "length" if i == self.tokens else None)
                self.first_token.set()
        finally:
            self.closed = True


async def test_a_generation_counts_as_queued_then_running_then_neither() -> None:
    script = ScriptedStream(tokens=3, gap_s=0.05, first_token_s=0.1)
    seen: list[tuple[float, float]] = []

    async def consume() -> None:
        async for _ in tracked(script.run(), time.monotonic() + 10):
            seen.append((QUEUE_DEPTH._value.get(), REQUESTS_RUNNING._value.get()))

    task = asyncio.create_task(consume())
    await asyncio.sleep(0.05)
    assert (QUEUE_DEPTH._value.get(), REQUESTS_RUNNING._value.get()) == (1, 0)
    await task
    assert seen == [(0, 1)] * 3
    assert (QUEUE_DEPTH._value.get(), REQUESTS_RUNNING._value.get()) == (0, 0)


async def test_deadline_ends_the_generation_and_closes_the_engine_stream() -> None:
    script = ScriptedStream(tokens=100, gap_s=0.05)
    started = time.monotonic()
    with pytest.raises(DeadlineExceeded):
        async for _ in tracked(script.run(), time.monotonic() + 0.3):
            pass
    assert time.monotonic() - started < 0.6
    assert script.closed
    assert (QUEUE_DEPTH._value.get(), REQUESTS_RUNNING._value.get()) == (0, 0)


async def test_a_consumer_that_leaves_early_closes_the_engine_stream() -> None:
    script = ScriptedStream(tokens=100, gap_s=0.01)
    stream = tracked(script.run(), time.monotonic() + 10)
    async for delta in stream:
        if delta.completion_tokens == 2:
            break
    await stream.aclose()
    assert script.closed
    assert REQUESTS_RUNNING._value.get() == 0


async def test_cancellation_while_queued_releases_the_queue_slot() -> None:
    script = ScriptedStream(tokens=1, gap_s=0, first_token_s=5)

    async def consume() -> None:
        async for _ in tracked(script.run(), time.monotonic() + 10):
            pass

    task = asyncio.create_task(consume())
    await asyncio.sleep(0.05)
    assert QUEUE_DEPTH._value.get() == 1
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert QUEUE_DEPTH._value.get() == 0 and script.closed
