"""The engine's LoRA slots shared between twins (src/monolith/twin_slots.py): a twin runs when its adapter runs
already or a slot is free; one that waits for a slot has one running adapter drained for it (no new generation
for that one), while the others go on; real-time waits ahead of background work (vLLM's own scheduler lets a
steady stream for one twin starve another). The real engine under that stream: tests/api/test_twins.py."""

from __future__ import annotations

import asyncio

import pytest

from monolith.metrics import REGISTRY
from monolith.twin_slots import Residency, TwinSlots


def held_back(twin: str) -> float | None:
    return REGISTRY.get_sample_value("monolith_twin_slot_waiting", {"twin": twin})


async def entered(slots: TwinSlots, adapter: str, realtime: bool = True) -> asyncio.Task:
    task = asyncio.create_task(slots.enter(adapter, realtime))
    await asyncio.sleep(0)
    return task


async def test_a_twin_already_running_or_a_free_slot_goes_at_once() -> None:
    slots = TwinSlots(2, patience=0)
    for adapter in ("ada", "ada", "jonas"):
        assert (await entered(slots, adapter)).done()
    assert slots.active == {"ada": 2, "jonas": 1}


async def test_a_third_twin_waits_for_a_slot_and_nothing_overtakes_it() -> None:
    slots = TwinSlots(1, patience=0)
    await slots.enter("ada", True)
    jonas = await entered(slots, "jonas")
    more_ada = await entered(slots, "ada")  # ada runs, but jonas came first: it waits too
    assert not jonas.done() and not more_ada.done() and slots.waiting == 2
    assert held_back("jonas") == 1 and held_back("ada") == 1
    slots.leave("ada")
    await asyncio.sleep(0)
    assert jonas.done() and not more_ada.done(), "jonas got the slot ada left"
    slots.leave("jonas")
    await asyncio.sleep(0)
    assert more_ada.done() and slots.active == {"ada": 1}
    assert held_back("jonas") == held_back("ada") == 0


async def test_real_time_waits_ahead_of_background_work() -> None:
    slots = TwinSlots(1, patience=0)
    await slots.enter("ada", False)
    batch_line = await entered(slots, "jonas", realtime=False)
    user = await entered(slots, "priya", realtime=True)
    slots.leave("ada")
    await asyncio.sleep(0)
    assert user.done() and not batch_line.done()


async def test_a_waiter_that_leaves_frees_the_ones_it_held_up() -> None:
    slots = TwinSlots(1, patience=0)
    await slots.enter("ada", True)
    jonas = await entered(slots, "jonas")
    more_ada = await entered(slots, "ada")
    jonas.cancel()  # the client went away
    with pytest.raises(asyncio.CancelledError):
        await jonas
    await asyncio.sleep(0)
    assert more_ada.done() and slots.active == {"ada": 2} and slots.waiting == 0


async def test_the_slot_comes_back_however_the_generation_ends() -> None:
    slots = TwinSlots(1, patience=0)

    async def tokens():
        yield 1
        raise RuntimeError("the engine refused it")

    with pytest.raises(RuntimeError):
        async for _ in slots.gated("ada", True, tokens()):
            pass
    assert slots.active == {}

    async def endless():
        while True:
            yield 1

    stream = slots.gated("jonas", True, endless())
    assert await anext(stream) == 1 and slots.active == {"jonas": 1}
    await stream.aclose()  # the client left mid-answer
    assert slots.active == {}


async def test_the_adapter_with_the_fewest_generations_drains_for_a_waiter_and_the_others_go_on() -> None:
    slots = TwinSlots(2, patience=0)
    for adapter in ("ada", "ada", "jonas"):
        await slots.enter(adapter, True)
    priya = await entered(slots, "priya")
    assert not priya.done() and slots.draining == "jonas"
    more_ada = await entered(slots, "ada")
    more_jonas = await entered(slots, "jonas")
    assert more_ada.done(), "ada keeps the engine full meanwhile"
    assert not more_jonas.done(), "jonas takes nothing new while it drains"
    slots.leave("jonas")
    await asyncio.sleep(0)
    assert priya.done() and slots.active == {"ada": 3, "priya": 1}
    assert not more_jonas.done() and slots.draining == "priya", "now jonas waits, and priya drains for it"


async def test_a_drain_no_longer_needed_ends() -> None:
    slots = TwinSlots(2, patience=0)
    await slots.enter("ada", True)
    await slots.enter("jonas", True)
    await slots.enter("jonas", True)
    priya = await entered(slots, "priya")
    assert slots.draining == "ada"
    priya.cancel()
    with pytest.raises(asyncio.CancelledError):
        await priya
    assert slots.draining is None and (await entered(slots, "ada")).done()


async def test_running_twins_go_ahead_of_a_waiter_until_its_patience_is_spent() -> None:
    """As in vLLM, a slot often frees by itself; only past `patience` overtakes is one drained."""
    slots = TwinSlots(1, patience=2)
    await slots.enter("ada", True)
    jonas = await entered(slots, "jonas")
    assert slots.draining is None
    assert (await entered(slots, "ada")).done() and (await entered(slots, "ada")).done()
    assert slots.draining == "ada", "two went ahead: ada drains now"
    held = await entered(slots, "ada")
    assert not held.done() and not jonas.done()
    for _ in range(3):
        slots.leave("ada")
    await asyncio.sleep(0)
    assert jonas.done() and not held.done() and slots.overtakes == 0


def test_the_residency_mirror_says_where_each_adapter_comes_from() -> None:
    """vLLM's two LRU caches: `slots` adapters in LoRA slots, `host` in host memory; in use never leaves a slot."""
    place = Residency(slots=1, host=2)
    assert place.use("ada") == "disk", "first use: read from disk"
    assert place.use("ada") is None, "it holds the slot"
    assert place.use("jonas") == "disk"
    assert place.use("ada") == "host", "jonas took the slot, ada stayed in host memory"
    assert place.use("priya") == "disk"
    assert place.use("jonas") == "disk", "two in host memory: the least recent, jonas, was dropped"
    busy = Residency(slots=2, host=4)
    for adapter in ("ada", "jonas"):
        busy.use(adapter)
    busy.use("priya", running=["ada", "priya"])  # ada still runs: jonas leaves its slot, not ada
    assert busy.use("ada", running=["ada", "priya"]) is None and busy.use("jonas") == "host"


def swaps(twin: str, source: str) -> float:
    return REGISTRY.get_sample_value("monolith_twin_swaps_total", {"twin": twin, "source": source}) or 0.0


def swap_timings(source: str) -> float:
    labels = {"source": source}
    return REGISTRY.get_sample_value("monolith_twin_swap_time_to_first_token_seconds_count", labels) or 0.0


async def test_a_generation_that_swaps_its_adapter_in_is_counted_and_its_first_token_timed() -> None:
    slots = TwinSlots(1, patience=0, twins=["ada", "jonas"], host=1)
    before = {(t, s): swaps(t, s) for t in ("ada", "jonas") for s in ("host", "disk")}
    timed = swap_timings("disk")

    async def tokens():
        yield 1
        yield 2

    for adapter in ("ada", "ada", "jonas", "ada"):
        assert [t async for t in slots.gated(adapter, True, tokens())] == [1, 2]
    made = {key: swaps(*key) - count for key, count in before.items()}
    assert made == {("ada", "disk"): 2, ("jonas", "disk"): 1, ("ada", "host"): 0, ("jonas", "host"): 0}
    assert swap_timings("disk") - timed == 3, "one first token timed per swap, not per token"
