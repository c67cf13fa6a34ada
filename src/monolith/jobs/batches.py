"""The OpenAI Batch API over HTTP: each replica runs one batch at a time, behind real-time traffic, holding
its lease in the shared store. A batch whose runner died is resumed by another replica (or the next start)
from the lines already written to its output, so each custom_id is answered once."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from monolith.config import StoreSettings
from monolith.errors import STORE_OUTAGES, is_outage
from monolith.jobs.heartbeat import LeaseKeeper
from monolith.jobs.lines import read_lines, written
from monolith.jobs.transform import BatchPacing, run_batch
from monolith.scheduling import BackgroundBudget
from monolith.serving.services import Services
from monolith.store.batches import BatchRecord, BatchStore
from monolith.tracing import background_span

log = logging.getLogger(__name__)

IDLE_POLL_S = 1.0
# A batch's progress counts (request_counts) are written at most this often: a write per line was most of a
# running batch's store traffic (a 50,000-line batch: 50,000 transactions), each a few thread hand-overs that take
# a core from the engine on a CPU host. Its final counts come from the output file, whatever was written here.
COUNT_EVERY_S = 1.0


class BatchRunner:
    def __init__(
        self, store: BatchStore, services: Services, budget: BackgroundBudget, settings: StoreSettings
    ) -> None:
        self.store = store
        self.services = services
        self.budget = budget
        self.heartbeat_s = settings.heartbeat_s
        self.lease_s = settings.lease_s
        self.retry_after_s = settings.retry_after_s
        self._resume_at = 0.0  # after an outage, no batch is claimed before this (monotonic)
        self.paused = False
        self._wake = asyncio.Event()
        self._loop: asyncio.Task | None = None
        self._current: tuple[str, asyncio.Task] | None = None

    def start(self) -> None:
        self._loop = asyncio.create_task(self._run_forever())

    def wake(self) -> None:
        self._wake.set()

    def pause(self) -> None:
        """Take no new batch (the drain); the current one goes on until shutdown."""
        self.paused = True

    async def stop(self) -> None:
        """The current batch is handed back at once: another replica, or the next start, resumes it."""
        current = self._current
        tasks = [t for t in (self._loop, current[1] if current else None) if t is not None]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks)
        if current:
            with contextlib.suppress(Exception):  # the database may be gone too: then the lease runs out
                await self.store.release(current[0])

    async def cancel(self, batch_id: str) -> None:
        """From any replica: the replica running the batch stops it at its next heartbeat (at once here)."""
        await self.store.cancel(batch_id)
        if self._current and self._current[0] == batch_id:
            self._current[1].cancel()

    async def _run_forever(self) -> None:
        while True:
            batch = None
            if not self.paused and time.monotonic() >= self._resume_at:
                try:
                    batch = await self.store.claim_next()
                except STORE_OUTAGES:  # said once by the store's health
                    self._resume_at = time.monotonic() + self.store.db.health.backoff_s()
                except Exception:
                    log.exception("claiming a batch failed; trying again")
            if batch is None:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), IDLE_POLL_S)
                self._wake.clear()
                continue
            task = asyncio.create_task(self._run(batch))
            heartbeat = asyncio.create_task(self._lease_keeper(batch.id, task).run())
            self._current = (batch.id, task)
            try:
                # wait(), not `await task`: the batch ending cancelled must not look like this loop's own cancel.
                await asyncio.wait({task})
            finally:
                heartbeat.cancel()
                self._current = None
            if not task.cancelled() and task.exception() is not None:  # the store failed before or after the lines
                if not isinstance(task.exception(), STORE_OUTAGES):
                    log.error("batch %s stopped: %r; its lease runs out and it is resumed", batch.id, task.exception())
                self._resume_at = time.monotonic() + self.retry_after_s

    def _lease_keeper(self, batch_id: str, task: asyncio.Task) -> LeaseKeeper:
        """Renews the batch's lease; stops the batch when a replica asked to cancel it, or when the lease is lost
        (taken over, or not renewed for longer than it lasts)."""

        async def renew() -> bool:
            status = await self.store.renew(batch_id)
            if status is None:
                log.warning("batch %s: lease lost (taken over); stopping it here", batch_id)
            if status is None or status == "cancelling":
                task.cancel()
                return False
            return True

        async def unproven() -> bool:
            log.warning("batch %s: job store unreachable past the lease; stopping it here", batch_id)
            task.cancel()
            return False

        return LeaseKeeper("batch", self.heartbeat_s, self.lease_s, renew, unproven)

    async def _run(self, batch: BatchRecord) -> None:
        output = self.store.path_of(batch.output_file_id)
        if batch.status == "cancelling":  # cancelled while the replica that ran it was dead
            await self._end_cancelled(batch)
            return
        source = self.store.path_of(batch.input_file_id)
        total = await asyncio.to_thread(lambda: sum(1 for _ in read_lines(source)))
        # Taken over (or restarted): the counts come from what the output already holds.
        completed, failed = await asyncio.to_thread(_counts, output)
        started = batch.in_progress_at or int(time.time())
        fields = {"in_progress_at": started, "total": total, "completed": completed, "failed": failed}
        if not await self.store.update_held(batch.id, status="in_progress", **fields):
            return
        counts = LineCounts(self.store, batch.id, COUNT_EVERY_S)
        try:
            try:
                pacing = BatchPacing(batch.endpoint, self.budget, batch.created_at, counts.add)
                capacity = self.budget.capacity
                run = {"monolith.batch.id": batch.id, "monolith.batch.endpoint": batch.endpoint}
                with background_span(
                    f"batch {batch.endpoint}", run | {"monolith.batch.run": batch.runs}, batch.traceparent
                ):
                    report = await run_batch(self.services, source, output, capacity, False, pacing, total)
            finally:  # before the final counts are written: a late progress write would add to them
                await counts.close()
            log.info("batch %s: %s", batch.id, report.summary())
            await self.store.register_output(batch)
            completed, failed = await asyncio.to_thread(_counts, output)
            ended = {"completed_at": int(time.time()), "completed": completed, "failed": failed}
            await self.store.finish_held(batch.id, "completed", **ended)
        except asyncio.CancelledError:
            current = await self.store.get_batch(batch.id)
            if current is not None and current.status == "cancelling":
                await self._end_cancelled(batch)
            raise
        except Exception as exc:
            if is_outage(exc):  # the engine or the vector store, not the batch: handed back, resumed later
                log.warning("batch %s: %s; resumed in %.0f s", batch.id, exc, self.retry_after_s)
                self._resume_at = time.monotonic() + self.retry_after_s
                with contextlib.suppress(Exception):  # the job store is down too: then the lease runs out
                    await self.store.release(batch.id)
                return
            log.exception("batch %s failed", batch.id)
            await self.store.finish_held(batch.id, "failed", failed_at=int(time.time()), error=type(exc).__name__)

    async def _end_cancelled(self, batch: BatchRecord) -> None:
        """Lines already answered stay in the output file, which is kept."""
        await self.store.register_output(batch)
        completed, failed = await asyncio.to_thread(_counts, self.store.path_of(batch.output_file_id))
        ended = {"cancelled_at": int(time.time()), "completed": completed, "failed": failed}
        await self.store.finish_held(batch.id, "cancelled", **ended)


class LineCounts:
    """A running batch's progress: the lines answered are added to its counts in one write at most every
    `every_s`, the first line after a write starting the wait; a write that fails keeps its lines for the next."""

    def __init__(self, store: BatchStore, batch_id: str, every_s: float) -> None:
        self.store = store
        self.batch_id = batch_id
        self.every_s = every_s
        self.completed = 0
        self.failed = 0
        self._pending: asyncio.Task | None = None

    async def add(self, ok: bool) -> None:
        if ok:
            self.completed += 1
        else:
            self.failed += 1
        self._write_soon()

    def _write_soon(self) -> None:
        """Within every_s, unless a write is already waiting (it takes these lines too)."""
        if self._pending is None:
            self._pending = asyncio.create_task(self._write_later())

    async def _write_later(self) -> None:
        await asyncio.sleep(self.every_s)
        completed, failed = self.completed, self.failed
        self.completed = self.failed = 0
        self._pending = None  # lines answered from here on start the next wait
        try:
            await self.store.count_lines(self.batch_id, completed, failed)
        except Exception as exc:  # progress only (the end counts the output file): the next write tries again
            self.completed += completed
            self.failed += failed
            log.warning("batch %s: its progress counts could not be written (%r); trying again", self.batch_id, exc)
            self._write_soon()

    async def close(self) -> None:
        """The batch's lines stopped: its counts are set from its output file next, and nothing here may write
        after that."""
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.cancel()
            await asyncio.wait({pending})


def _counts(output) -> tuple[int, int]:
    """(completed, failed) as the output file records them."""
    outcomes = written(output)
    succeeded = sum(outcomes.values())
    return succeeded, len(outcomes) - succeeded
