"""The background budget's decisions, on an admission queue of its own and tasks that stand in for background
generations (the real engine's side: tests/jobs/test_preemption.py)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest

from monolith.admission import ASYNC, BATCH, REALTIME, Admission
from monolith.config import Settings, load_settings
from monolith.scheduling import BackgroundBudget, Hold
from tests.conftest import CPU_CONFIG

CAPACITY = 8


def settings(**scheduling: object) -> Settings:
    base = load_settings(CPU_CONFIG)
    engine = base.engine.model_copy(update={"max_num_seqs": CAPACITY})
    defaults = {"adaptive": True, "realtime_quiet_s": 5.0, "realtime_itl_target_s": 0.05, "min_background_slots": 1}
    return base.model_copy(
        update={"engine": engine, "scheduling": base.scheduling.model_copy(update={**defaults, **scheduling})}
    )


@pytest.fixture
async def admission() -> AsyncIterator[Admission]:
    yield Admission()


async def started(budget: BackgroundBudget) -> AsyncIterator[BackgroundBudget]:
    budget.start()
    try:
        yield budget
    finally:
        await budget.stop()


def running(budget: BackgroundBudget, count: int, lane: str = ASYNC, overdue: bool = False) -> list[Hold]:
    """`count` background items holding slots, each a task that runs until cancelled."""
    holds = []
    for _ in range(count):
        held = budget.hold(lane, overdue, time.time())
        held.task = asyncio.create_task(asyncio.sleep(3600))
        holds.append(held)
        time.sleep(0.001)  # distinct start times: the youngest is the last
    return holds


def realtime_gaps(admission: Admission, seconds_per_token: float, count: int = 20) -> None:
    now = time.monotonic()
    admission.itl.extend((now, seconds_per_token) for _ in range(count))


async def test_with_no_real_time_traffic_the_background_may_fill_the_engine(admission: Admission) -> None:
    budget = BackgroundBudget(settings(), admission)
    running(budget, CAPACITY - 1)
    assert budget.allowed() == CAPACITY and budget.room()
    running(budget, 1)
    assert not budget.room(), "never more than the engine's slots"


async def test_while_real_time_requests_come_the_background_keeps_its_budget_and_their_slots(
    admission: Admission,
) -> None:
    budget = BackgroundBudget(settings(), admission)
    ticket = admission.admit(30)
    admission._started(ticket._slot)  # generating: in flight, not waiting
    assert budget.allowed() == budget.limit == CAPACITY // 2
    running(budget, budget.limit - 1)
    assert budget.room()
    running(budget, 1)
    assert not budget.room()
    ticket.release()
    assert budget.allowed() == budget.limit, "a real-time request left a moment ago: not quiet yet"


async def test_no_background_item_starts_while_a_real_time_request_waits_unless_overdue(admission: Admission) -> None:
    budget = BackgroundBudget(settings(), admission)
    ticket = admission.admit(30)
    assert not budget.room()
    assert budget.room(overdue=True)
    assert budget.is_overdue(time.time() - 301) and not budget.is_overdue(time.time() - 10)
    ticket.release()


async def test_a_real_time_arrival_to_a_full_engine_preempts_the_youngest_background_item(
    admission: Admission,
) -> None:
    budget = BackgroundBudget(settings(), admission)
    async for _ in started(budget):
        oldest = running(budget, 1, overdue=True)
        rest = running(budget, CAPACITY - 1, lane=BATCH)
        budget.limit = CAPACITY  # the controller had let the background have it all
        tickets = [admission.admit(30) for _ in range(2)]
        await asyncio.sleep(0)
        assert [h.preempted for h in rest] == [False] * (CAPACITY - 3) + [True, True], "the two youngest"
        assert rest[-1].task is not None and rest[-1].task.cancelled()
        assert budget.preempted == 2 and not oldest[0].preempted
        assert len(budget.holds) == CAPACITY - 2
        for ticket in tickets:
            ticket.release()


async def test_while_real_time_requests_come_the_background_leaves_headroom_for_their_next_arrivals(
    admission: Admission,
) -> None:
    budget = BackgroundBudget(settings(realtime_headroom_slots=2), admission)
    async for _ in started(budget):
        budget.limit = CAPACITY  # the controller would let the background have it all
        first = admission.admit(30)
        admission._started(first._slot)
        holds = running(budget, CAPACITY - 1 - 2 - 1)
        assert budget.room()
        holds += running(budget, 1)
        assert not budget.room(), "one real-time stream and two free slots for the next arrivals"
        arrivals = [admission.admit(30) for _ in range(2)]
        await asyncio.sleep(0)
        assert not any(h.preempted for h in holds), "the arrivals found free slots"
        arrivals.append(admission.admit(30))
        await asyncio.sleep(0)
        assert [h.preempted for h in holds] == [False] * (len(holds) - 1) + [True], "past the headroom: preempted"
        for ticket in [first, *arrivals]:
            ticket.release()
        admission.last_realtime -= budget.settings.realtime_quiet_s  # real-time traffic stopped a while ago
        running(budget, CAPACITY - 1 - len(budget.holds))
        assert budget.room(), "with no real-time traffic no slot is kept free"


async def test_overdue_work_takes_the_slots_real_time_leaves_past_the_budget(admission: Admission) -> None:
    """Under steady real-time traffic the budget can sit at its minimum; overdue work is served like real-time
    requests: into every free engine slot but a reserve kept for real-time arrivals."""
    budget = BackgroundBudget(settings(), admission)
    budget.limit = 1
    tickets = [admission.admit(30) for _ in range(2)]
    for ticket in tickets:
        admission._started(ticket._slot)  # two real-time streams generating
    running(budget, 1)
    assert not budget.room(), "the budget is spent"
    free = CAPACITY - 2 - budget.overdue_reserve  # 4 of 8: the budget's 1 and 3 overdue
    running(budget, free - 2, overdue=True)
    assert budget.room(overdue=True)
    running(budget, 1, overdue=True)
    assert not budget.room(overdue=True), "the reserve stays free for real-time arrivals"
    for ticket in tickets:
        ticket.release()


async def test_an_overdue_item_is_never_preempted(admission: Admission) -> None:
    budget = BackgroundBudget(settings(), admission)
    async for _ in started(budget):
        overdue = running(budget, CAPACITY, overdue=True)
        tickets = [admission.admit(30) for _ in range(3)]
        assert not any(h.preempted for h in overdue) and budget.preempted == 0
        for ticket in tickets:
            ticket.release()


async def test_the_budget_halves_while_real_time_decode_is_slow_and_grows_while_it_is_fast(
    admission: Admission,
) -> None:
    budget = BackgroundBudget(settings(), admission)
    ticket = admission.admit(30)
    admission._started(ticket._slot)
    holds = running(budget, budget.limit)
    assert budget.limit == 4
    realtime_gaps(admission, 0.2)
    budget.adjust()
    assert budget.limit == 2
    assert [h.preempted for h in holds] == [False, False, True, True], "down to the budget at once, youngest first"
    realtime_gaps(admission, 0.2)
    budget.adjust()
    budget.adjust()  # no new samples: no change
    assert budget.limit == 1
    realtime_gaps(admission, 0.2)
    budget.adjust()
    assert budget.limit == 1, "min_background_slots"
    realtime_gaps(admission, 0.01)
    budget.adjust()
    assert budget.limit == 2
    realtime_gaps(admission, 0.01)
    budget.adjust()
    assert budget.limit == 2, "grows only while the background uses what it has"
    ticket.release()


async def test_after_the_last_real_time_request_the_budget_ramps_up_to_the_whole_engine(admission: Admission) -> None:
    budget = BackgroundBudget(settings(realtime_quiet_s=1.0), admission)
    admission.admit(30).release()
    assert budget.allowed() == budget.limit == 4
    await asyncio.sleep(0.55)
    assert 4 < budget.allowed() < CAPACITY, "part of the rest, half-way through the quiet period"
    await asyncio.sleep(0.5)
    assert budget.allowed() == CAPACITY


async def test_quiet_means_the_whole_engine_and_nothing_is_preempted_for_slow_decode(admission: Admission) -> None:
    budget = BackgroundBudget(settings(realtime_quiet_s=0.05), admission)
    admission.admit(30).release()
    await asyncio.sleep(0.1)
    holds = running(budget, CAPACITY)
    realtime_gaps(admission, 0.5)
    budget.adjust()
    assert budget.allowed() == CAPACITY and not any(h.preempted for h in holds)


async def test_not_adaptive_the_background_fills_the_engine_and_is_never_preempted(admission: Admission) -> None:
    budget = BackgroundBudget(settings(adaptive=False), admission)
    async for _ in started(budget):
        ticket = admission.admit(30)
        admission._started(ticket._slot)
        assert budget.allowed() == CAPACITY
        holds = running(budget, CAPACITY - 1)
        tickets = [admission.admit(30) for _ in range(CAPACITY)]
        realtime_gaps(admission, 0.5)
        budget.adjust()
        assert not any(h.preempted for h in holds)
        assert not budget.room(), "still none while real-time requests wait"
        for t in [ticket, *tickets]:
            t.release()
        assert budget.room()


async def test_an_item_waiting_for_a_slot_gets_it_when_one_frees(admission: Admission) -> None:
    budget = BackgroundBudget(settings(), admission)
    holds = running(budget, CAPACITY)
    waiter = asyncio.create_task(budget.acquire(BATCH, time.time()))
    await asyncio.sleep(0.1)
    assert not waiter.done()
    budget.release(holds[0])
    held = await asyncio.wait_for(waiter, 1)
    assert held in budget.holds and held.lane == BATCH and not held.overdue
    assert REALTIME not in admission.waiting or admission.waiting[REALTIME] == 0


async def test_a_freed_slot_goes_to_a_paused_item_then_an_async_job_then_a_batch_line(admission: Admission) -> None:
    """The lanes' order, whoever asked first: a paused generation resumes before anything new starts, and an async
    job starts before a batch line."""
    budget = BackgroundBudget(settings(), admission)
    holds = running(budget, CAPACITY)
    batch_line = asyncio.create_task(budget.acquire(BATCH, time.time()))
    await asyncio.sleep(0.01)
    job = asyncio.create_task(budget.acquire(ASYNC, time.time()))
    await asyncio.sleep(0.01)
    paused = holds.pop()
    paused.pause = lambda: None
    budget._preempt(paused)  # for a real-time burst, which takes the slot
    holds.append(budget.hold(ASYNC, False, time.time()))
    resuming = asyncio.create_task(budget.resume(paused))
    await asyncio.sleep(0.01)
    assert not (batch_line.done() or job.done() or resuming.done())
    granted: list[str] = []
    for waiter, name in ((resuming, "paused"), (job, "async"), (batch_line, "batch")):
        waiter.add_done_callback(lambda _, name=name: granted.append(name))
    for held in holds[:3]:
        budget.release(held)
        await asyncio.sleep(0.01)
    assert granted == ["paused", "async", "batch"]


async def test_a_freed_slot_is_granted_once(admission: Admission) -> None:
    budget = BackgroundBudget(settings(), admission)
    first, *_ = running(budget, CAPACITY)
    waiters = [asyncio.create_task(budget.acquire(BATCH, time.time())) for _ in range(2)]
    await asyncio.sleep(0.01)
    budget.release(first)
    budget.release(first)  # released twice (a finish after a preemption): one slot freed, one item let in
    await asyncio.sleep(0.01)
    assert [w.done() for w in waiters] == [True, False], "first come first"
    waiters[1].cancel()


async def test_a_standing_request_holds_every_slot_that_frees_ahead_of_batch_lines(admission: Admission) -> None:
    """The async job runner's, while jobs wait for room: slots that free one by one while its claim is in flight
    are its too, not the next batch line's, and it is told at once."""
    budget = BackgroundBudget(settings(), admission)
    holds = running(budget, CAPACITY)
    line = asyncio.create_task(budget.acquire(BATCH, time.time()))
    await asyncio.sleep(0.01)
    told: list[int] = []
    request = budget.ask_standing(ASYNC, lambda: told.append(len(request.holds)))
    assert budget.take(request) == [] and told == []
    for held in holds[:3]:
        budget.release(held)  # three sequences end in one engine step: three slots free, one by one
    assert request.granted.done() and told == [1], "told once, as soon as it held one"
    assert len(budget.take(request)) == 3 and not line.done()
    budget.release(holds[3])
    assert len(budget.take(request)) == 1, "it goes on standing after a take"
    budget.withdraw(request)
    budget.release(holds[4])
    assert (await asyncio.wait_for(line, 1)).lane == BATCH, "withdrawn: the next slot is the batch line's"


async def test_a_withdrawn_standing_request_gives_back_what_it_did_not_take(admission: Admission) -> None:
    budget = BackgroundBudget(settings(), admission)
    holds = running(budget, CAPACITY)
    request = budget.ask_standing(ASYNC, lambda: None)
    budget.release(holds[0])
    assert len(request.holds) == 1 and len(budget.holds) == CAPACITY
    line = asyncio.create_task(budget.acquire(BATCH, time.time()))
    await asyncio.sleep(0.01)
    budget.withdraw(request)
    assert (await asyncio.wait_for(line, 1)).lane == BATCH and len(budget.holds) == CAPACITY


async def test_a_slot_granted_to_an_item_cancelled_before_it_ran_goes_to_the_next(admission: Admission) -> None:
    budget = BackgroundBudget(settings(), admission)
    first, *_ = running(budget, CAPACITY)
    cancelled = asyncio.create_task(budget.acquire(BATCH, time.time()))
    await asyncio.sleep(0.01)
    patient = asyncio.create_task(budget.acquire(BATCH, time.time()))
    await asyncio.sleep(0.01)
    budget.release(first)  # granted to `cancelled`, which is cancelled before it runs again
    cancelled.cancel()
    held = await asyncio.wait_for(patient, 1)
    assert held in budget.holds and len(budget.holds) == CAPACITY


async def test_a_waiting_item_looks_again_when_a_real_time_request_leaves(
    admission: Admission, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Not only a freed background slot makes room: a real-time request that starts or leaves does too, and the
    items waiting are told at once (on their own they look again every ROOM_RECHECK_S, as the controller steps: here
    an hour)."""
    monkeypatch.setattr("monolith.scheduling.ROOM_RECHECK_S", 3600.0)
    budget = BackgroundBudget(settings(realtime_headroom_slots=0, adjust_every_s=3600.0), admission)
    budget.start()
    try:
        running(budget, 2)
        realtime = admission.admit(30)
        waiter = asyncio.create_task(budget.acquire(BATCH, time.time()))
        await asyncio.sleep(0.05)
        assert not waiter.done(), "a real-time request waits: no room for the background"
        realtime.release()
        assert not (await asyncio.wait_for(waiter, 1)).overdue
    finally:
        await budget.stop()
