"""The engine's LoRA slots, shared fairly between twins. vLLM runs at most `engine.max_loras` adapters in a step; a
request whose adapter is not among those running is skipped, and the requests behind it that *are* go on. So a
steady stream for one twin keeps its adapter in the slots for ever and another twin's request waits for ever
(vLLM's scheduler skips it step after step). This server is the engine's only client, so it holds the slots here.

A twin whose adapter runs already goes to the engine at once, and so does one that finds a slot free. One that
finds every slot taken waits, in arrival order (real-time ahead of background work). Meanwhile the running twins
go on, as in vLLM, and a slot usually frees by itself when a twin's requests happen to end; but once `patience`
generations have gone ahead of the oldest such waiter, one running adapter is drained for it: the one with the
fewest generations in the engine, which gets no new one until it has left its slot. So a twin waits at most for
`patience` generations and one adapter's drain, and the engine stays as full as the slots allow. (Measured on
four twins over two slots: holding every twin back behind a waiter made a third of vLLM's tokens; draining for
every waiter at once, two thirds.) The base model needs no slot and never waits here.

Since every use passes here, this also mirrors where vLLM keeps each adapter (its slots and its host-memory cache,
both least recently used out) and so knows which generations swap an adapter in, and from where: what a swap
costs is on /metrics (`monolith_twin_swaps_total`, `monolith_twin_swap_time_to_first_token_seconds`)."""

from __future__ import annotations

import asyncio
import time
from collections import Counter, OrderedDict, deque
from collections.abc import AsyncIterator, Iterable
from contextlib import aclosing
from dataclasses import dataclass
from typing import TypeVar

from monolith.metrics import TWIN_SLOT_WAITING, TWIN_SWAP_FIRST_TOKEN, TWIN_SWAPS, exemplar

T = TypeVar("T")


@dataclass
class _Waiter:
    adapter: str
    realtime: bool
    granted: asyncio.Future[str | None]  # where its adapter came from (`Residency.use`)


class Residency:
    """Where vLLM holds the adapters: `slots` of them in its LoRA slots, `host` in host memory, each least recently
    used out (vLLM's LRU adapter managers; an adapter in use is never evicted from a slot)."""

    def __init__(self, slots: int, host: int) -> None:
        self.capacity = {"slot": slots, "host": max(host, slots)}
        self.held: dict[str, OrderedDict[str, None]] = {"slot": OrderedDict(), "host": OrderedDict()}

    def use(self, adapter: str, running: Iterable[str] = ()) -> str | None:
        """Records a generation for `adapter`; returns where its adapter came from: None (it held a slot), `host`
        or `disk`."""
        source = None if adapter in self.held["slot"] else "host" if adapter in self.held["host"] else "disk"
        busy = set(running) | {adapter}
        for place, held in self.held.items():
            held[adapter] = None
            held.move_to_end(adapter)
            while len(held) > self.capacity[place]:
                idle = [a for a in held if a not in busy] if place == "slot" else list(held)
                del held[idle[0] if idle else next(iter(held))]
        return source


class TwinSlots:
    def __init__(self, slots: int, patience: int, twins: Iterable[str] = (), host: int = 0) -> None:
        for twin in twins:  # each configured twin's series, at 0 until it waits or swaps
            TWIN_SLOT_WAITING.labels(twin).set(0)
            for source in ("host", "disk"):
                TWIN_SWAPS.labels(twin, source)
        self.residency = Residency(slots, host)
        self.slots = slots
        self.patience = patience  # generations that may go ahead of a twin waiting for a slot before a drain
        self.active: Counter[str] = Counter()  # adapter -> its generations in the engine
        self.draining: str | None = None  # the adapter leaving its slot to the oldest waiter
        self.overtakes = 0  # generations gone ahead of the oldest twin waiting for a slot
        self._waiting: deque[_Waiter] = deque()

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    def _fits(self, adapter: str) -> bool:
        if adapter in self.active:
            return adapter != self.draining
        return len(self.active) < self.slots

    async def enter(self, adapter: str, realtime: bool) -> str | None:
        """Returns once `adapter` may have one more generation in the engine (`leave` when it ends), with where its
        adapter comes from for it: None (it holds a slot), `host` or `disk`."""
        if self._fits(adapter) and not any(w.adapter == adapter for w in self._waiting):
            self.active[adapter] += 1  # never ahead of an earlier request for the same twin
            self.overtakes += self._slot_wanted()
            if self.overtakes >= self.patience and self.draining is None:
                self._grant()  # the waiter's patience is spent: a drain begins
            return self.residency.use(adapter, self.active)
        waiter = _Waiter(adapter, realtime, asyncio.get_running_loop().create_future())
        self._queue(waiter)
        self._grant()
        try:
            return await waiter.granted
        except asyncio.CancelledError:
            if waiter.granted.done() and not waiter.granted.cancelled():
                self.leave(adapter)  # granted in the same tick it was cancelled: give it back
            else:
                self._waiting.remove(waiter)
                TWIN_SLOT_WAITING.labels(adapter).dec()
                self._grant()  # the drain it asked for may be needed no more
            raise

    def _slot_wanted(self) -> bool:
        return any(w.adapter not in self.active for w in self._waiting)

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
            if self.draining == adapter:
                self.draining = None
        self._grant()

    def _grant(self) -> None:
        """Every waiter that fits now, in order; the oldest one that needs a slot names the adapter to drain (the
        one already draining while it runs, so that a drain, once begun, ends)."""
        previous, self.draining = self.draining, None
        blocked: set[str] = set()  # twins with an earlier waiter still waiting: their order holds
        for waiter in list(self._waiting):
            if waiter.adapter not in blocked and self._fits(waiter.adapter):
                new_slot = waiter.adapter not in self.active
                self._waiting.remove(waiter)
                TWIN_SLOT_WAITING.labels(waiter.adapter).dec()
                self.active[waiter.adapter] += 1
                waiter.granted.set_result(self.residency.use(waiter.adapter, self.active))
                self.overtakes = 0 if new_slot else self.overtakes + self._slot_wanted()
                continue
            blocked.add(waiter.adapter)
            wants_slot = waiter.adapter not in self.active and len(self.active) >= self.slots
            if self.draining is None and wants_slot and (self.overtakes >= self.patience or previous):
                running = previous if previous in self.active else None
                self.draining = running or min(self.active, key=lambda a: self.active[a])

    async def gated(self, adapter: str, realtime: bool, stream: AsyncIterator[T]) -> AsyncIterator[T]:
        """`stream` (an engine generation, not yet started) once its adapter has a slot; the slot is given back
        however it ends (finished, aborted, cancelled). A generation that swaps its adapter in is counted, and its
        first token timed, as what a swap costs."""
        source = await self.enter(adapter, realtime)
        started = time.perf_counter()
        try:
            async with aclosing(stream) as items:  # type: ignore[type-var]
                async for item in items:
                    if source is not None:
                        TWIN_SWAPS.labels(adapter, source).inc()
                        TWIN_SWAP_FIRST_TOKEN.labels(source).observe(time.perf_counter() - started, exemplar())
                        source = None
                    yield item
        finally:
            self.leave(adapter)
