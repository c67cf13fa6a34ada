"""Admission control, lanes and queue-depth accounting: who may wait for the engine, for how long, and in what
order.

A request holds a `Ticket` from the moment it is admitted until it finishes. While none of its generations is
producing tokens it counts as waiting (the app's own wait before the engine, plus the engine's waiting queue);
while one is, as running; both by lane (`monolith_lane_waiting`, `monolith_lane_running`), and a real-time
request's wait in `monolith_queue_depth`, the autoscaling signal. Real-time requests past
`admission.max_waiting` are refused at once with 429 and a Retry-After derived from how fast requests have been
finishing. Under the engine's priority policy each lane is a band of priorities (`engine_priority`).
"""

from __future__ import annotations

import asyncio
import math
import time
import weakref
from collections import Counter, deque
from collections.abc import AsyncIterator
from contextlib import aclosing
from dataclasses import dataclass
from typing import Protocol

from monolith.engine import Delta
from monolith.errors import DeadlineExceeded, Overloaded
from monolith.metrics import (
    GENERATED_TOKENS,
    LANE_RUNNING,
    LANE_WAITING,
    MODEL_GENERATED_TOKENS,
    MODEL_GENERATIONS,
    MODEL_TIME_TO_FIRST_TOKEN,
    PROMPT_TOKENS,
    QUEUE_DEPTH,
    REQUESTS_RUNNING,
    TIME_TO_FIRST_TOKEN,
    exemplar,
)
from monolith.protocol.common import MAX_CLIENT_PRIORITY

REALTIME, ASYNC, BATCH = "realtime", "async", "batch"
LANES = (REALTIME, ASYNC, BATCH)  # first served first


def engine_priority(lane: str, own: int = 0, overdue: bool = False) -> int:
    """vLLM's priority (lower first): the lane's band, then the request's own priority (0..MAX_CLIENT_PRIORITY)
    inside it, so that no request of a later lane goes before one of an earlier lane, whatever it asks. Overdue
    background work gets 0, first in first out with real-time requests of the default priority: it cannot starve."""
    if overdue:
        return 0
    return LANES.index(lane) * (MAX_CLIENT_PRIORITY + 1) + min(max(own, 0), MAX_CLIENT_PRIORITY)


DRAIN_WINDOW_S = 60.0  # finishes older than this no longer count towards the drain rate
ITL_SAMPLES = 4096  # recent real-time inter-token gaps kept for the background budget


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


class RealtimeListener(Protocol):
    """Told when real-time traffic moves (the background budget): it makes room, or lets waiting work look again."""

    def realtime_arrived(self) -> None: ...

    def realtime_left(self) -> None:
        """A real-time request stopped waiting or stopped running."""


class Admission:
    def __init__(self, max_waiting: int | None = None, max_retry_after_s: int = 60) -> None:
        self.max_waiting = max_waiting
        self.max_retry_after_s = max_retry_after_s
        self.waiting = Counter[str]()  # admitted, no generation producing tokens, per lane
        self.running = Counter[str]()  # admitted, at least one generation producing tokens
        self._finished: deque[float] = deque()  # when real-time requests finished, for the drain rate
        # (when, seconds per token) between a real-time stream's tokens: what the background budget steers by.
        self.itl: deque[tuple[float, float]] = deque(maxlen=ITL_SAMPLES)
        self.last_realtime = -math.inf  # when a real-time request was last admitted or finished (monotonic)
        self._listeners: list[RealtimeListener] = []

    def listen(self, listener: RealtimeListener) -> None:
        self._listeners.append(listener)

    def stop_listening(self, listener: RealtimeListener) -> None:
        if listener in self._listeners:
            self._listeners.remove(listener)

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
        self._waits(lane, count)
        deadline = time.monotonic() + timeout_s
        tickets = [Ticket(self, lane, deadline) for _ in range(count)]
        if lane == REALTIME:
            self.last_realtime = time.monotonic()
            for listener in self._listeners:
                listener.realtime_arrived()
        return tickets

    def realtime_quiet_for(self) -> float:
        """Seconds since the last real-time request left, or 0 while one is in flight."""
        if self.in_flight(REALTIME):
            return 0.0
        return time.monotonic() - self.last_realtime

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

    def _waits(self, lane: str, change: int) -> None:
        self.waiting[lane] += change
        LANE_WAITING.labels(lane).inc(change)
        if lane == REALTIME:
            QUEUE_DEPTH.inc(change)
            self._realtime_moved(change)

    def _runs(self, lane: str, change: int) -> None:
        self.running[lane] += change
        LANE_RUNNING.labels(lane).inc(change)
        REQUESTS_RUNNING.inc(change)
        if lane == REALTIME:
            self._realtime_moved(change)

    def _realtime_moved(self, change: int) -> None:
        if change < 0:
            for listener in self._listeners:
                listener.realtime_left()

    def _started(self, slot: _Slot) -> None:
        slot.generating += 1
        if slot.generating == 1 and not slot.released:
            self._waits(slot.lane, -1)
            self._runs(slot.lane, 1)

    def _stopped(self, slot: _Slot) -> None:
        slot.generating -= 1
        if slot.generating == 0 and not slot.released:
            # A RAG request between its helper generations and its answer waits again.
            self._runs(slot.lane, -1)
            self._waits(slot.lane, 1)

    def _release(self, slot: _Slot) -> None:
        if slot.released:
            return
        slot.released = True
        if slot.generating:
            self._runs(slot.lane, -1)
        else:
            self._waits(slot.lane, -1)
        if slot.lane == REALTIME:
            self._finished.append(time.monotonic())
            self.last_realtime = time.monotonic()


async def tracked(
    admission: Admission,
    stream: AsyncIterator[Delta],
    timeout_s: float,
    lane: str = REALTIME,
    request_ticket: Ticket | None = None,
    model: str = "",
) -> AsyncIterator[Delta]:
    """Runs one engine generation under its request's ticket and deadline; without a ticket (a batch line, the
    warm-up) it is admitted on its own, in `lane`, for `timeout_s`. `model`: the base's or a twin's name, for
    the per-model metrics (a configured name only).

    Leaving early (client gone, deadline, error) closes the engine stream, which aborts the request.
    """
    own = request_ticket is None
    ticket = admission.admit(timeout_s, lane=lane) if request_ticket is None else request_ticket
    deadline = ticket.deadline
    submitted = time.monotonic()
    started = False
    produced: dict[int, int] = {}  # per choice: a request of n choices streams n running counts
    last_token: dict[int, float] = {}  # per choice: when its previous delta came (real-time only)
    model_tokens = MODEL_GENERATED_TOKENS.labels(model) if model else None  # looked up once, not per token
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
                    admission._started(ticket._slot)
                    waited = time.monotonic() - submitted
                    TIME_TO_FIRST_TOKEN.labels(ticket.lane).observe(waited, exemplar())
                    PROMPT_TOKENS.inc(delta.prompt_tokens)
                    if model:
                        MODEL_GENERATIONS.labels(model).inc()
                        MODEL_TIME_TO_FIRST_TOKEN.labels(model).observe(waited, exemplar())
                new_tokens = delta.completion_tokens - produced.get(delta.index, 0)
                GENERATED_TOKENS.inc(new_tokens)
                if model_tokens is not None:
                    model_tokens.inc(new_tokens)
                produced[delta.index] = delta.completion_tokens
                if ticket.lane == REALTIME and new_tokens > 0:
                    now = time.monotonic()
                    if delta.index in last_token:
                        admission.itl.append((now, (now - last_token[delta.index]) / new_tokens))
                    last_token[delta.index] = now
                yield delta
    finally:
        if started:
            admission._stopped(ticket._slot)
        if own:
            ticket.release()
