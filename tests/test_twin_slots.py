"""The engine's LoRA slots shared between twins (src/monolith/twin_slots.py): a twin runs when its adapter runs
already or a slot is free; one that waits for a slot has one running adapter drained for it (no new generation
for that one), while the others go on; real-time waits ahead of background work (vLLM's own scheduler lets a
steady stream for one twin starve another). The real engine under that stream: tests/api/test_twins.py."""

from __future__ import annotations

import asyncio

import pytest

from monolith.metrics import REGISTRY
from monolith.twin_slots import TwinSlots


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
