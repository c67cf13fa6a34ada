"""The engine's LoRA slots, shared fairly between twins. vLLM runs at most `engine.max_loras` adapters in a step; a
request whose adapter is not among those running is skipped, and the requests behind it that *are* go on. So a
steady stream for one twin keeps its adapter in the slots for ever and another twin's request waits for ever
(vLLM's scheduler skips it step after step). This server is the engine's only client, so it holds the slots here:
a twin's generation reaches the engine only when its adapter is running already or a slot is free, in arrival
order (real-time ahead of background work), and no later request overtakes one that waits for a slot. The base
model needs no slot and never waits here."""

from __future__ import annotations

import asyncio
from collections import Counter, deque
from collections.abc import AsyncIterator
from contextlib import aclosing
from dataclasses import dataclass
from typing import TypeVar

from monolith.metrics import TWIN_SLOT_WAITING

T = TypeVar("T")


@dataclass
class _Waiter:
    adapter: str
    realtime: bool
    granted: asyncio.Future[None]


class TwinSlots:
    def __init__(self, slots: int) -> None:
        self.slots = slots
        self.active: Counter[str] = Counter()  # adapter -> its generations in the engine
        self._waiting: deque[_Waiter] = deque()

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    def _fits(self, adapter: str) -> bool:
        return adapter in self.active or len(self.active) < self.slots

    async def enter(self, adapter: str, realtime: bool) -> None:
        """Returns once `adapter` may have one more generation in the engine; `leave` when it ends."""
        if not self._waiting and self._fits(adapter):
            self.active[adapter] += 1
            return
        waiter = _Waiter(adapter, realtime, asyncio.get_running_loop().create_future())
        self._queue(waiter)
        try:
            await waiter.granted
        except asyncio.CancelledError:
            if waiter.granted.done() and not waiter.granted.cancelled():
                self.leave(adapter)  # granted in the same tick it was cancelled: give it back
            else:
                self._waiting.remove(waiter)
                TWIN_SLOT_WAITING.labels(adapter).dec()
                self._grant()  # it may have been the head that held the others
            raise

    def _queue(self, waiter: _Waiter) -> None:
        """First come first served, real-time ahead of every background waiter."""
        TWIN_SLOT_WAITING.labels(waiter.adapter).inc()
        if waiter.realtime:
            behind = next((i for i, w in enumerate(self._waiting) if not w.realtime), len(self._waiting))
            self._waiting.insert(behind, waiter)
        else:
            self._waiting.append(waiter)

    def leave(self, adapter: str) -> None:
        self.active[adapter] -= 1
        if self.active[adapter] <= 0:
            del self.active[adapter]
        self._grant()

    def _grant(self) -> None:
        while self._waiting and self._fits(self._waiting[0].adapter):
            waiter = self._waiting.popleft()
            TWIN_SLOT_WAITING.labels(waiter.adapter).dec()
            self.active[waiter.adapter] += 1
            waiter.granted.set_result(None)

    async def gated(self, adapter: str, realtime: bool, stream: AsyncIterator[T]) -> AsyncIterator[T]:
        """`stream` (an engine generation, not yet started) once its adapter has a slot; the slot is given back
        however it ends (finished, aborted, cancelled)."""
        await self.enter(adapter, realtime)
        try:
            async with aclosing(stream) as items:  # type: ignore[type-var]
                async for item in items:
                    yield item
        finally:
            self.leave(adapter)
