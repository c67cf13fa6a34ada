"""Admission, queue-depth accounting and deadlines around generations, with scripted engine streams."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest

from monolith.admission import ASYNC, REALTIME, Admission, tracked
from monolith.engine import Delta
from monolith.errors import DeadlineExceeded, Overloaded
from monolith.metrics import QUEUE_DEPTH, REQUESTS_RUNNING

ADMISSION = Admission()  # the tests' own: a server's is its Runtime's


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
        async for _ in tracked(ADMISSION, script.run(), 10):
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
        async for _ in tracked(ADMISSION, script.run(), 0.3):
            pass
    # Ended by the 0.3 s deadline, not by the 5 s script; the margin is for a busy 2-core CI box.
    assert time.monotonic() - started < 2.0
    assert script.closed
    assert (QUEUE_DEPTH._value.get(), REQUESTS_RUNNING._value.get()) == (0, 0)


async def test_a_consumer_that_leaves_early_closes_the_engine_stream() -> None:
    script = ScriptedStream(tokens=100, gap_s=0.01)
    stream = tracked(ADMISSION, script.run(), 10)
    async for delta in stream:
        if delta.completion_tokens == 2:
            break
    await stream.aclose()
    assert script.closed
    assert REQUESTS_RUNNING._value.get() == 0


async def test_cancellation_while_queued_releases_the_queue_slot() -> None:
    script = ScriptedStream(tokens=1, gap_s=0, first_token_s=5)

    async def consume() -> None:
        async for _ in tracked(ADMISSION, script.run(), 10):
            pass

    task = asyncio.create_task(consume())
    await asyncio.sleep(0.05)
    assert QUEUE_DEPTH._value.get() == 1
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert QUEUE_DEPTH._value.get() == 0 and script.closed


def gauges() -> tuple[float, float]:
    return QUEUE_DEPTH._value.get(), REQUESTS_RUNNING._value.get()


async def test_a_request_with_concurrent_generations_counts_once_and_waits_again_between_them() -> None:
    # A RAG request: self-query and expansion together, then (after retrieval) the answer.
    ticket = ADMISSION.admit(10)
    assert gauges() == (1, 0)
    helpers = [ScriptedStream(tokens=2, gap_s=0.05) for _ in range(2)]
    seen: list[tuple[float, float]] = []

    async def consume(script: ScriptedStream) -> None:
        async for _ in tracked(ADMISSION, script.run(), 10, request_ticket=ticket):
            seen.append(gauges())

    await asyncio.gather(*(consume(h) for h in helpers))
    assert set(seen) == {(0, 1)}
    assert gauges() == (1, 0)  # retrieving: admitted, not generating
    await consume(ScriptedStream(tokens=1, gap_s=0))
    ticket.release()
    ticket.release()  # idempotent
    assert gauges() == (0, 0)


async def test_the_ticket_deadline_covers_every_generation_of_the_request() -> None:
    ticket = ADMISSION.admit(0.3)
    with pytest.raises(DeadlineExceeded):
        async for _ in tracked(ADMISSION, ScriptedStream(tokens=100, gap_s=0.05).run(), 60, request_ticket=ticket):
            pass
    ticket.release()


def test_a_ticket_nobody_releases_is_released_when_dropped() -> None:
    admission = Admission(max_waiting=1)
    admission.admit(10)  # dropped at once, as by a stream that never started
    assert admission.waiting[REALTIME] == 0
    kept = admission.admit(10)
    with pytest.raises(Overloaded):
        admission.admit(10)
    kept.release()


def test_past_max_waiting_realtime_is_refused_but_async_work_is_not() -> None:
    admission = Admission(max_waiting=2)
    held = [admission.admit(10), admission.admit(10)]
    with pytest.raises(Overloaded) as refused:
        admission.admit(10)
    assert refused.value.status_code == 429 and refused.value.retry_after == admission.max_retry_after_s
    async_ticket = admission.admit(10, lane="async")
    assert admission.waiting == {REALTIME: 2, "async": 1}
    for ticket in [*held, async_ticket]:
        ticket.release()


def test_retry_after_is_the_time_to_drain_the_wait_at_the_recent_rate() -> None:
    admission = Admission(max_waiting=6, max_retry_after_s=60)
    now = time.monotonic()
    admission._finished.extend(now - 9 + i for i in range(10))  # 10 requests finished over 9 s: ~1.1/s
    held = [admission.admit(10) for _ in range(6)]
    with pytest.raises(Overloaded) as refused:
        admission.admit(10)
    assert refused.value.retry_after == 6  # ceil(6 waiting / 1.11 per s)
    admission._finished.extend([now] * 1000)  # a fast drain: never below one second
    assert admission.retry_after() == 1
    admission._finished.clear()
    admission._finished.append(now - 2 * 60)  # nothing finished recently: the longest advice
    assert admission.retry_after() == 60
    for ticket in held:
        ticket.release()


async def test_each_lane_is_counted_apart_and_the_queue_depth_is_the_real_time_wait() -> None:
    from monolith.metrics import LANE_RUNNING, LANE_WAITING

    def lanes() -> tuple[float, float, float, float]:
        return (
            LANE_WAITING.labels(ASYNC)._value.get(),
            LANE_RUNNING.labels(ASYNC)._value.get(),
            LANE_WAITING.labels(REALTIME)._value.get(),
            QUEUE_DEPTH._value.get(),
        )

    background = ScriptedStream(tokens=3, gap_s=0.05, first_token_s=0.2)
    realtime = ScriptedStream(tokens=1, gap_s=0.0, first_token_s=0.1)

    async def consume(stream: ScriptedStream, lane: str) -> None:
        async for _ in tracked(ADMISSION, stream.run(), 10, lane):
            pass

    tasks = [asyncio.create_task(consume(background, ASYNC)), asyncio.create_task(consume(realtime, REALTIME))]
    await asyncio.sleep(0.05)
    assert lanes() == (1, 0, 1, 1), "an async job waiting does not count in the autoscaling signal"
    await asyncio.sleep(0.2)
    assert lanes() == (0, 1, 0, 0)
    await asyncio.gather(*tasks)
    assert lanes() == (0, 0, 0, 0)
