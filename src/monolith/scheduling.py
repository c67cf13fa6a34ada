"""The background budget: how many engine slots async jobs and batch lines may hold together, now.

Real-time requests come first, and the background takes what they leave:
- with no real-time request for `scheduling.realtime_quiet_s`, the background may fill the engine (every one of
  `engine.max_num_seqs`; a fixed share would leave slots idle that nobody asked for), ramping up to it from the
  moment the last real-time request left;
- while real-time requests come, the background's slots follow real-time decode speed, additive increase and
  multiplicative decrease: every `adjust_every_s`, halved while the median real-time inter-token latency is above
  `realtime_itl_target_s` (each background sequence makes every engine step, and so every real-time token, a
  little slower), one more while it is below;
- while real-time requests come, `realtime_headroom_slots` are left free for the next arrivals, which then start
  without preempting anything;
- when a real-time request arrives to a full engine, or the budget shrinks below what the background holds, the
  youngest background generation is preempted: aborted in the engine (vLLM frees a slot only when a sequence
  ends: it preempts for KV-cache pressure, never for priority, vllm-project/vllm#40004). A generation that can
  go on from its own tokens pauses and resumes from them when there is room again, before any new item starts
  (`monolith.resume`); any other is handed back to its runner, which requeues it, and only the run that
  finishes writes a result;
- work that waited longer than `max_background_wait_s` is overdue: it starts even while real-time requests wait,
  past the budget into any slot real-time requests leave (less a quarter of the engine kept for their arrivals),
  goes into the engine like a real-time request, and is never preempted, so it cannot starve and a backlog under
  steady real-time traffic stops growing once its oldest work is overdue.
With `scheduling.adaptive` false the background may always fill the engine while no real-time request waits and
nothing is preempted (the bench's first-come row beside it).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import statistics
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from monolith.admission import ASYNC, BATCH, LANES, REALTIME, Admission
from monolith.config import SchedulingSettings, Settings
from monolith.metrics import BACKGROUND_PREEMPTED, BACKGROUND_SLOTS

log = logging.getLogger(__name__)

# Slots are granted to the items waiting whenever one may have freed (a release, a real-time request that started or
# left, a controller step); at the latest after this, for what only time changes (the ramp, an item's age).
# Polling every 20 ms instead, 24 waiting batch lines woke the event loop 1,200 times a second.
ROOM_RECHECK_S = 0.25
for _lane in (ASYNC, BATCH):  # exported from the start, at 0
    BACKGROUND_PREEMPTED.labels(_lane)


@dataclass(eq=False)
class Hold:
    """One background item holding an engine slot; `task` is what a preemption cancels, unless `pause` is set."""

    lane: str
    overdue: bool
    queued_at: float  # wall clock: when the job or batch was submitted (overdue past max_background_wait_s)
    budget: BackgroundBudget
    task: asyncio.Task | None = None
    started: float = field(default_factory=time.monotonic)
    preempted: bool = False  # cancelled for real-time traffic: its runner requeues it
    # Set while a generation that can resume from its own tokens runs (monolith.resume): a preemption calls it
    # (the engine request is aborted) instead of cancelling the task, and the item waits in `budget.paused`.
    pause: Callable[[], None] | None = None


@dataclass(eq=False)
class SlotRequest:
    """Waiting for a slot: granted in the lanes' order, paused generations first (`resuming`). A standing request
    (`standing`, the async job runner's while jobs wait for room) is granted every slot there is room for, now and
    as slots free, until it is withdrawn; `granted` is set once it holds one."""

    lane: str
    queued_at: float
    granted: asyncio.Future[list[Hold]]
    standing: bool = False
    resuming: Hold | None = None
    holds: list[Hold] = field(default_factory=list)
    on_grant: Callable[[], None] | None = None  # a standing request's holder is told as soon as it holds a slot

    @property
    def order(self) -> tuple[bool, int]:
        return self.resuming is None, LANES.index(self.lane)


class LatencyController:
    """The background's slots while real-time requests come, steered by real-time decode speed: additive increase,
    multiplicative decrease. It starts at half the engine and moves with the real-time inter-token latency."""

    def __init__(self, settings: SchedulingSettings, capacity: int, itl: deque[tuple[float, float]]) -> None:
        self.settings = settings
        self.capacity = capacity
        self.limit = max(settings.min_background_slots, capacity // 2)
        self._itl = itl  # (when, seconds per token) between a real-time stream's tokens: Admission.itl
        self._samples_after = time.monotonic()

    def step(self, held: int, realtime_recent: bool) -> None:
        """One step on the gaps since the last: halved (to what the background holds, at least
        min_background_slots) while their median is above realtime_itl_target_s, one more while below."""
        gaps = [gap for at, gap in self._itl if at > self._samples_after]
        self._samples_after = time.monotonic()
        if not gaps or not realtime_recent:
            return
        if statistics.median(gaps) > self.settings.realtime_itl_target_s:
            if held:  # with no background running, shrinking it would not speed real-time up
                self.limit = max(self.settings.min_background_slots, min(self.limit, held) // 2)
        elif held >= self.limit:  # grow only while the background uses what it has
            self.limit = min(self.capacity, self.limit + 1)


class BackgroundBudget:
    def __init__(self, settings: Settings, admission: Admission) -> None:
        self.settings = settings.scheduling
        self.admission = admission
        self.capacity = settings.engine.max_num_seqs
        self.controller = LatencyController(self.settings, self.capacity, admission.itl)
        self.holds: list[Hold] = []
        # Preempted generations waiting to resume: they go before any new item (room() counts them as holding).
        self.paused: list[Hold] = []
        # Slots overdue work leaves to real-time arrivals: it cannot be preempted to make room for them.
        self.overdue_reserve = max(1, self.capacity // 4)
        self.preempted = 0
        # Items waiting for a slot, granted in order whenever room may have appeared: a paused generation before any
        # new item, an async job before a batch line (`make bench`, mixed: when whichever waiter looked first took a
        # freed slot, async jobs held 0-1 slots for ~18 s beside up to 15 batch lines), first come first within one.
        self._waiting: list[SlotRequest] = []
        self._recheck: asyncio.TimerHandle | None = None
        self._controller: asyncio.Task | None = None

    @property
    def limit(self) -> int:
        """The background's slots under real-time load (the latency controller's)."""
        return self.controller.limit

    @limit.setter
    def limit(self, slots: int) -> None:
        self.controller.limit = slots

    def start(self) -> None:
        self.admission.listen(self)
        if self.settings.adaptive:
            self._controller = asyncio.create_task(self._adjust_forever())
        BACKGROUND_SLOTS.set(self.allowed())

    async def stop(self) -> None:
        self.admission.stop_listening(self)
        if self._recheck is not None:
            self._recheck.cancel()
        if self._controller is not None:
            self._controller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._controller

    def is_overdue(self, queued_at: float) -> bool:
        """`queued_at`: wall-clock seconds (a job's or batch's created_at)."""
        return time.time() - queued_at > self.settings.max_background_wait_s

    def allowed(self) -> int:
        """Slots the background may hold now: its budget while real-time requests are in flight, then more and
        more of the rest of the engine as the quiet lasts, all of it after realtime_quiet_s. A ramp, not a switch:
        what a short lull lets in is young when the next real-time request preempts it, so little work is lost."""
        quiet_for = self.admission.realtime_quiet_for()
        if not self.settings.adaptive or quiet_for >= self.settings.realtime_quiet_s:
            return self.capacity
        spare = self.capacity - self.limit
        return self.limit + int(spare * quiet_for / self.settings.realtime_quiet_s)

    def room(self, overdue: bool = False, resuming: bool = False) -> bool:
        """Whether one more background item may start now (`resuming`: whether a paused one may go on)."""
        held = len(self.holds) + (0 if resuming else len(self.paused))
        if overdue:
            # Served like a real-time request: past the budget, into any engine slot real-time requests leave,
            # less a reserve so that a real-time arrival still finds one free (overdue work is never preempted).
            # Within the budget alone, a steady real-time stream that keeps the budget at its minimum let a
            # backlog grow without end (`make soak`: 343 jobs after 15 minutes at half capacity).
            free = self.realtime_leaves() - self.overdue_reserve
            return held < max(1, self.allowed(), free)
        if self.admission.waiting[REALTIME]:
            return False
        if not self.settings.adaptive:
            return held < self.capacity
        # Leave the slots real-time requests in flight need, and while they come a few more for the next
        # arrivals: an arrival to a full engine preempts, and the item it throws away is requeued, restarts and
        # is the youngest again at the next arrival.
        headroom = self.settings.realtime_headroom_slots if self.realtime_recent() else 0
        return held < min(self.allowed(), self.realtime_leaves() - headroom)

    def realtime_leaves(self) -> int:
        """Engine slots the real-time requests in flight leave free."""
        return self.capacity - self.admission.in_flight(REALTIME)

    def realtime_recent(self) -> bool:
        return self.admission.realtime_quiet_for() < self.settings.realtime_quiet_s

    def hold(self, lane: str, overdue: bool, queued_at: float, task: asyncio.Task | None = None) -> Hold:
        """Takes a slot, room or not: for what `room` already allowed (and the tests)."""
        held = Hold(lane, overdue, queued_at, self, task)
        self.holds.append(held)
        return held

    def try_acquire(self, lane: str, queued_at: float, overdue: bool) -> Hold | None:
        """A slot now if there is room for an item of `lane` queued at `queued_at` (wall clock), else None."""
        return self.hold(lane, overdue, queued_at) if self.room(overdue) else None

    async def acquire(self, lane: str, queued_at: float) -> Hold:
        """A slot for one item of `lane` queued at `queued_at` (wall clock), once it is its turn and there is room:
        past max_background_wait_s it is overdue, and served like real-time. Give it back with `release`."""
        return (await self._wait(SlotRequest(lane, queued_at, self._future())))[0]

    def ask_standing(self, lane: str, on_grant: Callable[[], None]) -> SlotRequest:
        """A standing request for `lane`, registered now: every slot there is room for, now and as slots free, goes
        to it ahead of later lanes until `withdraw` (the async job runner claims that many jobs at once; a batch
        line would otherwise take a slot that frees while its claim is in flight). `on_grant` is called whenever
        it comes to hold slots."""
        request = SlotRequest(lane, time.time(), self._future(), standing=True, on_grant=on_grant)
        self._waiting.append(request)
        self.announce()
        return request

    def take(self, request: SlotRequest) -> list[Hold]:
        """The slots a standing request holds now; it goes on standing."""
        holds, request.holds = request.holds, []
        if request.granted.done():
            request.granted = self._future()
        return holds

    def withdraw(self, request: SlotRequest) -> None:
        """A standing request ends: the slots it holds and did not take go back."""
        if request in self._waiting:
            self._waiting.remove(request)
        for held in self.take(request):
            self.release(held)

    async def resume(self, held: Hold) -> None:
        """A paused item takes a slot again once there is room, ahead of new items; it is the youngest again."""
        try:
            await self._wait(SlotRequest(held.lane, held.queued_at, self._future(), resuming=held))
        except BaseException:
            self.forget_pause(held)
            raise

    def release(self, held: Hold) -> None:
        """The item finished (or failed, or was cancelled): its slot is free. Idempotent."""
        if held not in self.holds:
            return
        self.holds.remove(held)
        self.announce()

    @staticmethod
    def _future() -> asyncio.Future[list[Hold]]:
        return asyncio.get_running_loop().create_future()

    async def _wait(self, request: SlotRequest) -> list[Hold]:
        self._waiting.append(request)
        self.announce()
        try:
            await request.granted
        except BaseException:  # cancelled while it waited (no slots), or once granted, before it ran
            if request in self._waiting:
                self._waiting.remove(request)
            for held in request.holds:
                self.release(held)
            raise
        return request.holds

    def announce(self) -> None:
        """Room may have appeared: the items waiting get what there is, in order."""
        for waiter in sorted(self._waiting, key=lambda w: w.order):  # sorted() is stable: first come first
            if waiter.standing:
                while self.room():
                    waiter.holds.append(self.hold(waiter.lane, False, time.time()))
                if waiter.holds and not waiter.granted.done():
                    waiter.granted.set_result(waiter.holds)
                    if waiter.on_grant is not None:
                        waiter.on_grant()
                continue
            overdue = self.is_overdue(waiter.queued_at)
            if waiter.granted.done() or not self.room(overdue, resuming=waiter.resuming is not None):
                continue
            self._waiting.remove(waiter)
            waiter.holds += self._slots_for(waiter, overdue)
            waiter.granted.set_result(waiter.holds)
        if self._waiting and self._recheck is None:
            self._recheck = asyncio.get_running_loop().call_later(ROOM_RECHECK_S, self._look_again)

    def _slots_for(self, waiter: SlotRequest, overdue: bool) -> list[Hold]:
        if waiter.resuming is not None:
            held = waiter.resuming
            held.overdue = overdue
            with contextlib.suppress(ValueError):  # not through forget_pause: its slot goes on, no room appeared
                self.paused.remove(held)
            held.started = time.monotonic()
            self.holds.append(held)
            return [held]
        return [self.hold(waiter.lane, overdue, waiter.queued_at)]

    def _look_again(self) -> None:
        """What only time changes (the ramp, an item's age) may have made room."""
        self._recheck = None
        self.announce()

    def forget_pause(self, held: Hold) -> None:
        """The paused item will not resume (it finished after all, or was cancelled): it no longer waits."""
        if held in self.paused:
            self.paused.remove(held)
            self.announce()  # new items counted it as holding a slot

    def realtime_arrived(self) -> None:
        """A real-time request was admitted: room for it in the engine at once."""
        self.enforce()

    def realtime_left(self) -> None:
        """A real-time request stopped waiting or running: background items waiting for room look again."""
        self.announce()

    def enforce(self) -> None:
        """Preempts the youngest background items above what real-time traffic leaves them (overdue ones never)."""
        if not self.settings.adaptive:
            return
        keep = min(self.allowed(), self.realtime_leaves())
        excess = len(self.holds) - max(keep, 0)
        if excess <= 0:
            return
        youngest_first = sorted((h for h in self.holds if not h.overdue), key=lambda h: h.started, reverse=True)
        for held in youngest_first[:excess]:
            self._preempt(held)

    def _preempt(self, held: Hold) -> None:
        self.preempted += 1
        BACKGROUND_PREEMPTED.labels(held.lane).inc()
        if held.pause is not None:
            self.paused.append(held)  # before the release, whose listeners must not give its slot to a new item
            self.release(held)
            held.pause()
            return
        held.preempted = True
        self.release(held)
        if held.task is not None:
            held.task.cancel()

    def adjust(self) -> None:
        """One step of the latency controller, then what it means now: preempt above it, or let waiting work in."""
        self.controller.step(len(self.holds), self.realtime_recent())
        self.enforce()
        self.announce()  # the budget, the ramp or an item's age may have made room
        BACKGROUND_SLOTS.set(self.allowed())

    async def _adjust_forever(self) -> None:
        while True:
            await asyncio.sleep(self.settings.adjust_every_s)
            try:
                self.adjust()
            except Exception:
                log.exception("adjusting the background budget failed; trying again")
