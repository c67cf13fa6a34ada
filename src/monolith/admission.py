"""Admission control and queue-depth accounting: who may wait for the engine, and for how long.

A request holds a `Ticket` from the moment it is admitted until it finishes. While none of its
generations is producing tokens it counts in `monolith_queue_depth` (the app's own wait before
the engine, plus the engine's waiting queue); while one is, in `monolith_requests_running`.
Real-time requests past `admission.max_waiting` are refused at once with 429 and a Retry-After
derived from how fast requests have been finishing.
"""

from __future__ import annotations

import asyncio
import math
import time
import weakref
from collections import Counter, deque
from collections.abc import AsyncIterator
from contextlib import aclosing
from contextvars import ContextVar
from dataclasses import dataclass

from monolith.engine import Delta
from monolith.errors import DeadlineExceeded, Overloaded
from monolith.metrics import GENERATED_TOKENS, PROMPT_TOKENS, QUEUE_DEPTH, REQUESTS_RUNNING, TIME_TO_FIRST_TOKEN

REALTIME = "realtime"
# Which kind of work a generation serves; async jobs and batches set it so real-time goes first.
LANE: ContextVar[str] = ContextVar("lane", default=REALTIME)
DRAIN_WINDOW_S = 60.0  # finishes older than this no longer count towards the drain rate


@dataclass(eq=False)
class _Slot:
    lane: str
    generating: int = 0
    released: bool = False


class Ticket:
    """One admitted request. Released explicitly, or when garbage-collected (a stream never started)."""

    def __init__(self, admission: Admission, lane: str, deadline: float) -> None:
        self.lane = lane
        self.deadline = deadline
        self.streaming = False  # a response stream holds it and releases it when the stream ends
        self._slot = _Slot(lane)
        self._admission = admission
        self._finalizer = weakref.finalize(self, admission._release, self._slot)

    def release(self) -> None:
        self._finalizer()

    @property
    def released(self) -> bool:
        return self._slot.released


# The request's ticket; generations outside any request (warm-up, batch lines) get their own.
TICKET: ContextVar[Ticket | None] = ContextVar("ticket", default=None)


class Admission:
    def __init__(self, max_waiting: int | None = None, max_retry_after_s: int = 60) -> None:
        self.max_waiting = max_waiting
        self.max_retry_after_s = max_retry_after_s
        self.waiting = Counter[str]()  # admitted, no generation producing tokens, per lane
        self.running = Counter[str]()  # admitted, at least one generation producing tokens
        self._finished: deque[float] = deque()  # when real-time requests finished, for the drain rate

    def configure(self, max_waiting: int | None, max_retry_after_s: int = 60) -> None:
        self.max_waiting = max_waiting
        self.max_retry_after_s = max_retry_after_s

    def in_flight(self, lane: str = REALTIME) -> int:
        return self.waiting[lane] + self.running[lane]

    def admit(self, timeout_s: float, lane: str = REALTIME) -> Ticket:
        """Raises Overloaded when the real-time wait is full; async and batch lanes are paced elsewhere."""
        return self.admit_many(timeout_s, 1, lane)[0]

    def admit_many(self, timeout_s: float, count: int, lane: str = REALTIME) -> list[Ticket]:
        """One ticket per generation a request will make at once (a completions request's prompts): all
        admitted, or none."""
        if lane == REALTIME and self.max_waiting is not None and self.waiting[lane] + count > self.max_waiting:
            raise Overloaded(
                f"{self.waiting[lane]} requests are already waiting for the engine and this one brings {count} "
                f"(the limit is {self.max_waiting}); retry later",
                retry_after=self.retry_after(),
            )
        self.waiting[lane] += count
        QUEUE_DEPTH.inc(count)
        deadline = time.monotonic() + timeout_s
        return [Ticket(self, lane, deadline) for _ in range(count)]

    def drain_rate(self) -> float:
        """Real-time requests finished per second over the recent window."""
        now = time.monotonic()
        while self._finished and now - self._finished[0] > DRAIN_WINDOW_S:
            self._finished.popleft()
        if not self._finished:
            return 0.0
        span = max(now - self._finished[0], 1.0)
        return len(self._finished) / span

    def retry_after(self) -> int:
        """Seconds until the current wait has drained at the recent rate, within [1, max_retry_after_s]."""
        rate = self.drain_rate()
        if rate == 0:
            return self.max_retry_after_s
        return max(1, min(self.max_retry_after_s, math.ceil(self.waiting[REALTIME] / rate)))

    def _started(self, slot: _Slot) -> None:
        slot.generating += 1
        if slot.generating == 1 and not slot.released:
            self.waiting[slot.lane] -= 1
            self.running[slot.lane] += 1
            QUEUE_DEPTH.dec()
            REQUESTS_RUNNING.inc()

    def _stopped(self, slot: _Slot) -> None:
        slot.generating -= 1
        if slot.generating == 0 and not slot.released:
            # A RAG request between its helper generations and its answer waits again.
            self.running[slot.lane] -= 1
            self.waiting[slot.lane] += 1
            REQUESTS_RUNNING.dec()
            QUEUE_DEPTH.inc()

    def _release(self, slot: _Slot) -> None:
        if slot.released:
            return
        slot.released = True
        if slot.generating:
            self.running[slot.lane] -= 1
            REQUESTS_RUNNING.dec()
        else:
            self.waiting[slot.lane] -= 1
            QUEUE_DEPTH.dec()
        if slot.lane == REALTIME:
            self._finished.append(time.monotonic())


ADMISSION = Admission()


def realtime_waiting() -> int:
    return ADMISSION.waiting[REALTIME]


async def tracked(stream: AsyncIterator[Delta], timeout_s: float) -> AsyncIterator[Delta]:
    """Runs one engine generation under the current request's ticket and deadline.

    Leaving early (client gone, deadline, error) closes the engine stream, which aborts the request.
    """
    request_ticket = TICKET.get()
    own = request_ticket is None
    ticket = ADMISSION.admit(timeout_s, lane=LANE.get()) if request_ticket is None else request_ticket
    deadline = ticket.deadline
    submitted = time.monotonic()
    started = False
    produced: dict[int, int] = {}  # per choice: a request of n choices streams n running counts
    try:
        async with aclosing(stream) as deltas:
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise DeadlineExceeded("the request ran past its deadline")
                try:
                    # asyncio.timeout, not wait_for: no extra task per token (Python 3.11), and the
                    # engine runs in this process, so every loop callback competes with it for the GIL.
                    async with asyncio.timeout(remaining):
                        delta = await anext(deltas)
                except StopAsyncIteration:
                    return
                except TimeoutError:
                    raise DeadlineExceeded("the request ran past its deadline") from None
                if not started:
                    started = True
                    ADMISSION._started(ticket._slot)
                    TIME_TO_FIRST_TOKEN.observe(time.monotonic() - submitted)
                    PROMPT_TOKENS.inc(delta.prompt_tokens)
                GENERATED_TOKENS.inc(delta.completion_tokens - produced.get(delta.index, 0))
                produced[delta.index] = delta.completion_tokens
                yield delta
    finally:
        if started:
            ADMISSION._stopped(ticket._slot)
        if own:
            ticket.release()
