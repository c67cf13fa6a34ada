"""The OpenAI Batch API over HTTP, spread over every replica: a batch's lines are split into shards at creation,
and each replica runs a few shards at once (of one batch or several) behind real-time traffic, holding a lease on
each. A shard whose replica died is resumed by another from the lines already in its part, so each custom_id is
answered once; the batch's output is assembled from the parts, in input order, when it ends."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from pathlib import Path

from monolith.config import BatchSettings, StoreSettings
from monolith.errors import STORE_OUTAGES, is_outage
from monolith.jobs.heartbeat import LeaseKeeper
from monolith.jobs.lines import written
from monolith.jobs.shards import assemble, remove_parts, shard_lines, split
from monolith.jobs.transform import BatchPacing, run_batch
from monolith.metrics import BATCH_LINES
from monolith.scheduling import BackgroundBudget
from monolith.serving.services import Services
from monolith.store.batches import BatchRecord, BatchStore, ShardPlan, ShardRecord
from monolith.store.files import new_file_id
from monolith.tracing import background_span

log = logging.getLogger(__name__)

IDLE_POLL_S = 1.0
# A shard's progress counts are written at most this often: a write per line was most of a running batch's store
# traffic (a 50,000-line batch: 50,000 transactions), each a few thread hand-overs that take a core from the engine
# on a CPU host. Its final counts come from its part file, whatever was written here.
COUNT_EVERY_S = 1.0
# Why a shard was stopped here: its batch stopped (a cancel, its window; its lease is let go at once so that the
# batch can end), or its lease was lost (taken over, or unproven through an outage: nothing more is written).
BATCH_STOPPED, LEASE_LOST = "batch", "lease"
END_STAMPS = {"completed": "completed_at", "cancelled": "cancelled_at", "expired": "expired_at"}


class BatchRunner:
    def __init__(
        self,
        store: BatchStore,
        services: Services,
        budget: BackgroundBudget,
        settings: StoreSettings,
        batch: BatchSettings,
    ) -> None:
        self.store = store
        self.services = services
        self.budget = budget
        self.retry_after_s = settings.retry_after_s
        self.shard_lines = batch.shard_lines
        self.most = batch.shards_per_replica
        self.leases = LeaseKeeper("batch shard", settings.heartbeat_s, settings.lease_s, self._renew, self._unproven)
        self._resume_at = 0.0  # after an outage, nothing is claimed before this (monotonic)
        self.paused = False
        self._wake = asyncio.Event()
        self._loops: list[asyncio.Task] = []
        self._shards: dict[int, tuple[ShardRecord, asyncio.Task]] = {}
        self._stopping: dict[int, str] = {}

    def start(self) -> None:
        self._loops = [asyncio.create_task(self._run_forever()), asyncio.create_task(self.leases.run())]

    def wake(self) -> None:
        self._wake.set()

    def pause(self) -> None:
        """Take no new shard (the drain); the running ones go on until shutdown."""
        self.paused = True

    async def stop(self) -> None:
        """The running shards are handed back at once: another replica, or the next start, resumes them."""
        shards = list(self._shards)
        tasks = self._loops + [task for _, task in self._shards.values()]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks)
        for seq in shards:
            with contextlib.suppress(Exception):  # the database may be gone too: then the leases run out
                await self.store.release(seq)

    async def create(
        self,
        endpoint: str,
        input_file_id: str,
        window: str,
        metadata: str | None,
        owner: str,
        traceparent: str | None,
    ) -> BatchRecord:
        """A batch over an uploaded file, split into shards that any replica may claim."""
        plans = await asyncio.to_thread(split, self.store.path_of(input_file_id), self.shard_lines)
        batch = await self.store.create_batch(endpoint, input_file_id, window, metadata, owner, traceparent, plans)
        self.wake()
        return batch

    async def cancel(self, batch_id: str) -> None:
        """From any replica: its shards here stop at once, those on other replicas at their next heartbeat."""
        await self.store.cancel(batch_id)
        for seq, (shard, _) in list(self._shards.items()):
            if shard.batch_id == batch_id:
                self._stop(seq, BATCH_STOPPED)
        self.wake()

    async def _run_forever(self) -> None:
        while True:
            took = False
            if not self.paused and time.monotonic() >= self._resume_at:
                try:
                    took = await self._take_work()
                except STORE_OUTAGES:  # said once by the store's health
                    self._resume_at = time.monotonic() + self.store.db.health.backoff_s()
                except Exception:
                    log.exception("claiming batch work failed; trying again")
            if not took:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), IDLE_POLL_S)
                self._wake.clear()

    async def _take_work(self) -> bool:
        """Ends a batch that is ready to, or else claims a shard while fewer than shards_per_replica run here;
        whether it found work (then it looks again at once)."""
        ending = await self.store.claim_ending()
        if ending is not None:
            await self._end(*ending)
            return True
        if len(self._shards) >= self.most:
            return False
        shard = await self.store.claim_shard()
        if shard is None:
            return False
        task = asyncio.create_task(self._run_shard(shard))
        self._shards[shard.seq] = (shard, task)
        task.add_done_callback(lambda _, seq=shard.seq: self._ended(seq))
        return True

    def _ended(self, seq: int) -> None:
        self._shards.pop(seq, None)
        self._stopping.pop(seq, None)
        self.wake()  # room for another shard, or the batch may end now

    def _stop(self, seq: int, why: str) -> None:
        self._stopping.setdefault(seq, why)
        self._shards[seq][1].cancel()

    async def _renew(self) -> bool:
        """Renews the leases of the shards running here; stops those whose batch stopped or that were taken over."""
        mine = list(self._shards)
        held = await self.store.renew_shards(mine)
        for seq in mine:
            if seq not in self._shards:
                continue
            if seq not in held:
                log.warning("batch shard %d: lease lost (taken over); stopping it here", seq)
                self._stop(seq, LEASE_LOST)
            elif held[seq] is not None:
                log.info("batch shard %d: its batch is %s; stopping it", seq, held[seq])
                self._stop(seq, BATCH_STOPPED)
        return True

    async def _unproven(self) -> bool:
        """The leases could not be renewed for longer than they last: another replica may run these shards now."""
        for seq in list(self._shards):
            log.warning("batch shard %d: job store unreachable past the lease; stopping it here", seq)
            self._stop(seq, LEASE_LOST)
        return True

    async def _run_shard(self, shard: ShardRecord) -> None:
        part = self.store.part_of(shard.batch_id, shard.idx)
        source = self.store.path_of(shard.input_file_id)
        try:
            plan, lines = shard.plan, None
            if plan.end_byte is None:  # a batch the upgrade to shards found running: one shard over its file
                lines = await asyncio.to_thread(_adopt, self.store.path_of(shard.output_file_id), part, source, plan)
            # A takeover: the counts start from what the dead runner wrote.
            completed, failed = await asyncio.to_thread(_counts, part)
            if not await self.store.start_shard(shard.seq, completed, failed, lines):
                return
            counts = LineCounts(self.store, shard.seq, COUNT_EVERY_S)
            try:
                pacing = BatchPacing(shard.endpoint, self.budget, shard.created_at, counts.add)
                run = {
                    "monolith.batch.id": shard.batch_id,
                    "monolith.batch.endpoint": shard.endpoint,
                    "monolith.batch.shard": shard.idx,
                    "monolith.batch.run": shard.runs,
                }
                with background_span(f"batch {shard.endpoint}", run, shard.traceparent):
                    report = await run_batch(
                        self.services, shard_lines(source, plan), part, self.budget.capacity, False, pacing, lines
                    )
            finally:  # before the final counts are written: a late progress write would add to them
                await counts.close()
            log.info("batch %s shard %d: %s", shard.batch_id, shard.idx, report.summary())
            completed, failed = await asyncio.to_thread(_counts, part)
            await self.store.finish_shard(shard.seq, completed, failed)
        except asyncio.CancelledError:
            if self._stopping.get(shard.seq) == BATCH_STOPPED:
                with contextlib.suppress(Exception):  # else its lease runs out
                    await self.store.let_go(shard.seq)
            raise
        except Exception as exc:
            if is_outage(exc):  # the engine or the vector store, not the batch: handed back, resumed later
                where = f"batch {shard.batch_id} shard {shard.idx}"
                log.warning("%s: %s; resumed in %.0f s", where, exc, self.retry_after_s)
                self._resume_at = time.monotonic() + self.retry_after_s
                with contextlib.suppress(Exception):  # the job store is down too: then the lease runs out
                    await self.store.release(shard.seq)
                return
            log.exception("batch %s shard %d failed", shard.batch_id, shard.idx)
            await self.store.fail_batch(shard.batch_id, type(exc).__name__)
            await self.store.let_go(shard.seq)

    async def _end(self, batch: BatchRecord, end: str) -> None:
        """Assembles the output from the parts (the lines answered, in input order) and gives the batch its end,
        holding the batch's lease while it assembles (a 50,000-line batch takes seconds)."""
        keeper = asyncio.create_task(self._ending_lease(batch.id).run())
        try:
            shards = [(self.store.part_of(batch.id, idx), plan) for idx, plan in await self.store.shards_of(batch.id)]
            source, output = self.store.path_of(batch.input_file_id), self.store.path_of(batch.output_file_id)
            error_file_id = batch.error_file_id or new_file_id()  # none: made before the upgrade to shards
            errors = self.store.path_of(error_file_id)
            completed, failed = await asyncio.to_thread(assemble, source, shards, output, errors)
            await self.store.register_output(batch, error_file_id if failed else None)
        except Exception as exc:
            if is_outage(exc):  # its lease runs out, and it is ended again
                raise
            log.exception("batch %s: its output could not be assembled", batch.id)
            await self.store.finish_held(batch.id, "failed", failed_at=int(time.time()), error=type(exc).__name__)
            return
        finally:
            keeper.cancel()
        ended = {END_STAMPS[end]: int(time.time()), "completed": completed, "failed": failed}
        if await self.store.finish_held(batch.id, end, error_file_id=error_file_id, **ended):
            log.info("batch %s %s: %d lines completed, %d failed", batch.id, end, completed, failed)
            await asyncio.to_thread(remove_parts, [part for part, _ in shards])

    def _ending_lease(self, batch_id: str) -> LeaseKeeper:
        """Renews the lease on a batch this replica is ending; if it is lost, its ending is not recorded here."""

        async def renew() -> bool:
            return await self.store.hold_batch(batch_id)

        async def unproven() -> bool:
            return False

        return LeaseKeeper("batch ending", self.leases.heartbeat_s, self.leases.lease_s, renew, unproven)


class LineCounts:
    """A running shard's progress: the lines answered are added to its counts in one write at most every
    `every_s`, the first line after a write starting the wait; a write that fails keeps its lines for the next."""

    def __init__(self, store: BatchStore, shard_seq: int, every_s: float) -> None:
        self.store = store
        self.shard_seq = shard_seq
        self.every_s = every_s
        self.completed = 0
        self.failed = 0
        self._pending: asyncio.Task | None = None

    async def add(self, ok: bool) -> None:
        BATCH_LINES.inc()
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
            await self.store.count_lines(self.shard_seq, completed, failed)
        except Exception as exc:  # progress only (the end counts the part file): the next write tries again
            self.completed += completed
            self.failed += failed
            log.warning("batch shard %d: its progress could not be written (%r); trying again", self.shard_seq, exc)
            self._write_soon()

    async def close(self) -> None:
        """The shard's lines stopped: its counts are set from its part file next, and nothing here may write
        after that."""
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.cancel()
            await asyncio.wait({pending})


def _counts(output: Path) -> tuple[int, int]:
    """(completed, failed) as an output (or part) file records them."""
    outcomes = written(output)
    succeeded = sum(outcomes.values())
    return succeeded, len(outcomes) - succeeded


def _adopt(output: Path, part: Path, source: Path, plan: ShardPlan) -> int:
    """A shard over a whole file (made by the upgrade to shards) takes over the output its batch's runner wrote
    before; its request lines, counted."""
    if output.exists() and not part.exists():
        part.parent.mkdir(parents=True, exist_ok=True)
        output.rename(part)
    return sum(1 for _ in shard_lines(source, plan))
