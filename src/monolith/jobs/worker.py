"""Runs queued jobs on the engine capacity real-time traffic leaves (scheduling.BackgroundBudget); a job the
budget preempts goes back to the queue, that run not counted, and runs again from the start.

Jobs come from the shared store with a lease. A heartbeat renews the leases of the jobs this replica runs
and stops any that were cancelled through another replica or taken over; a replica that dies stops
renewing, and another takes its jobs over when their leases run out.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable

import msgspec

from monolith.admission import ASYNC
from monolith.errors import STORE_OUTAGES, MonolithError, as_domain_error, is_outage
from monolith.jobs.callbacks import CallbackSender
from monolith.jobs.wire import render_job
from monolith.metrics import ASYNC_BACKLOG, ASYNC_RUNNING
from monolith.protocol.errors import error_response
from monolith.scheduling import BackgroundBudget, Hold
from monolith.serving.common import Services
from monolith.serving.registry import BY_KIND, answer_of
from monolith.store.jobs import Job, JobStore
from monolith.store.leases import Lease
from monolith.work import Work

log = logging.getLogger(__name__)

PURGE_EVERY_S = 60.0
HOUSEKEEPING = "housekeeping"


class JobRunner:
    def __init__(self, store: JobStore, services: Services, budget: BackgroundBudget) -> None:
        self.store = store
        self.services = services
        self.settings = services.settings.jobs
        self.budget = budget
        self.running: dict[str, asyncio.Task] = {}
        self.callbacks = CallbackSender(store, self.settings)
        # One replica at a time exports the shared backlog and purges old jobs.
        self.housekeeper = Lease(store.db, HOUSEKEEPING, store.replica, self.settings.lease_s)
        self._wake = asyncio.Event()
        self._callbacks_due = asyncio.Event()  # a job finished here: its callback goes now, not at the next look
        self._loops: list[asyncio.Task] = []
        self._last_purge = 0.0
        # Set by the loader: batch files past batch.file_ttl_s go with the same housekeeping.
        self.expire_files: Callable[[], Awaitable[int]] | None = None
        self.paused = False
        # Whether the last look found no room for the next job: then a slot that frees is held for it at once
        # (`offer`), before a waiting batch line takes it.
        self.starved = False
        self._offered: list[Hold] = []

    def start(self) -> None:
        self.budget.on_room.append(self.offer)
        self._loops = [
            asyncio.create_task(self._dispatch()),
            asyncio.create_task(self._heartbeat()),
            asyncio.create_task(self._deliver_callbacks()),
        ]

    def pause(self) -> None:
        """Claim no more jobs (the drain); running ones go on."""
        self.paused = True
        self._give_back_offered()

    def wake(self) -> None:
        self._wake.set()

    def offer(self) -> None:
        """Room may have appeared (scheduling.BackgroundBudget.announce): while jobs wait for it, slots are held for
        them now, synchronously, and the dispatcher claims jobs into them; a batch line or a resuming generation
        woken by the same change would take them while the dispatcher's wake-up is still on its way."""
        while self.starved and not self.paused and self.budget.room():
            self._offered.append(self.budget.hold(ASYNC, False, time.time()))
            self.wake()

    def _stop_offering(self, held: Hold) -> None:
        self.starved = False
        self.budget.release(held)
        self._give_back_offered()

    def _give_back_offered(self) -> None:
        offered, self._offered = self._offered, []
        for held in offered:
            self.budget.release(held)

    async def stop(self) -> None:
        """Running jobs go back to the queue at once, for any replica (or the next start) to run."""
        with contextlib.suppress(ValueError):
            self.budget.on_room.remove(self.offer)
        self._give_back_offered()
        for task in self._loops:
            task.cancel()
        held = list(self.running)
        for task in list(self.running.values()):
            task.cancel()
        await asyncio.gather(*self._loops, *self.running.values(), return_exceptions=True)
        with contextlib.suppress(Exception):  # the database may be gone too: then the leases run out
            released = await self.store.release(held)
            if released:
                log.info("handed %d running job(s) back to the queue", released)
            await self.housekeeper.release()
        await self.callbacks.close()

    async def cancel(self, job_id: str) -> bool:
        """Cancel a queued or running job. One running here is aborted in the engine at once; one running
        on another replica stops at that replica's next heartbeat."""
        cancelled = await self.store.finish(job_id, "cancelled")
        await self._stop_here(job_id)
        if cancelled:
            self.wake()
            self._callbacks_due.set()
        return cancelled

    async def _stop_here(self, job_id: str) -> None:
        task = self.running.get(job_id)
        if task is not None:
            task.cancel()
            # wait(), not `await task` under suppress(CancelledError): that would also swallow a cancel of
            # the caller (the heartbeat at shutdown), which would then never stop.
            await asyncio.wait({task})

    async def _dispatch(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.settings.poll_interval_s)
            self._wake.clear()
            try:
                while not self.paused and await self._claim_some():
                    pass
            except STORE_OUTAGES:  # said once by the store's health; wait longer each time until it is back
                await asyncio.sleep(self.store.db.health.backoff_s())
            except Exception:
                log.exception("claiming a job failed; trying again")
            ASYNC_RUNNING.set(len(self.running))

    async def _claim_some(self) -> bool:
        """Claims jobs into the slots of the background budget free now, in one call to the store, and starts
        them; whether the queue may hold more (every slot got a job)."""
        held = await self._reserve()
        if held is None:
            return False
        holds = [held] if held.overdue else [held, *self._more_room()]
        try:
            jobs = await self.store.claim(len(holds))
        except BaseException:  # and none held for the next try either: a failing claim would be retried at once
            for spare in holds[1:]:
                self.budget.release(spare)
            self._stop_offering(held)  # releases the first
            raise
        emptied = len(jobs) < len(holds)  # the queue is empty: no slot waits for a job any more
        if emptied:
            self.starved = False  # before the spare slots go back, which would else be held for jobs again
        for spare in holds[len(jobs) :]:
            self.budget.release(spare)
        for slot, job in zip(holds, jobs, strict=False):
            if slot.preempted:  # real-time traffic took the slot back while the claim was in flight
                await self._requeue(job.id)
                continue
            slot.queued_at = job.created_at
            slot.overdue = slot.overdue or self.budget.is_overdue(job.created_at)
            slot.task = self.running[job.id] = asyncio.create_task(self._run(job, slot))
        if emptied:
            self._give_back_offered()
            return False
        return not any(slot.preempted for slot in holds)

    def _more_room(self) -> list[Hold]:
        """Further slots for the same claim: those held for jobs already (`offer`), then what room there is; the
        ones the claim finds no job for go back as soon as it returns."""
        more = []
        while (held := self._next_offered()) is not None:
            more.append(held)
        while self.budget.room():
            more.append(self.budget.hold(ASYNC, False, time.time()))
        return more

    def _next_offered(self) -> Hold | None:
        """The next slot `offer` held for a job, or None."""
        while self._offered:
            held = self._offered.pop(0)
            if not held.preempted:  # one preempted before its claim has already been released
                return held
        return None

    async def _reserve(self) -> Hold | None:
        """A slot in the background budget for the next job the claim takes, held before the claim awaits the
        store (a batch line woken by the same change would take it meanwhile); None where there is no room."""
        if (held := self._next_offered()) is not None:
            return held
        if self.budget.room():
            return self.budget.hold(ASYNC, False, time.time())
        self.starved = True
        if not self.budget.room(overdue=True):
            return None
        oldest = await self.store.oldest_queued_at()
        if oldest is None or not self.budget.is_overdue(oldest) or not self.budget.room(overdue=True):
            return None
        return self.budget.hold(ASYNC, True, oldest)

    async def _run(self, job: Job, held: Hold) -> None:
        # One ticket per job: a RAG job's helper generations and its answer count as one request.
        ticket = self.services.admission.admit(self.services.settings.server.request_timeout_s, lane=ASYNC)
        work = Work(ASYNC, (ticket,), held)
        try:
            try:
                why = "an async job cannot stream"
                result = await answer_of(self.services, BY_KIND[job.kind], job.request, job.id, work, why)
                outcome = ("succeeded", msgspec.json.encode(result), None)
            except asyncio.CancelledError:
                if held.preempted:  # for real-time traffic: back to the queue, to run again from the start
                    await self._requeue(job.id)
                return  # else cancelled by a caller (already recorded), taken over, or shutdown (released)
            except Exception as failure:
                exc = as_domain_error(failure, f"job {job.id}")
                if exc.status_code >= 500:  # the server's fault or a dependency's, not the job's: again, later
                    self.budget.release(held)
                    await self._retry_later(job.id, exc)
                    return
                outcome = ("failed", None, msgspec.json.encode(error_response(exc).error))
            # The outcome is in hand: from here a preemption must not cancel it. Nothing awaits between the
            # answer and this line, so releasing the slot here closes that window.
            self.budget.release(held)
            status, result_bytes, error_bytes = outcome
            try:
                finished = await self.store.finish(job.id, status, result=result_bytes, error=error_bytes, held=True)
            except STORE_OUTAGES:  # the answer cannot be recorded: the lease runs out and the job runs again
                log.warning("job %s: finished, but the job store is unreachable; it will run again", job.id)
                return
            if not finished:
                log.warning("job %s finished here after its lease was lost; its recorded outcome stands", job.id)
        finally:
            self.budget.release(held)
            ticket.release()
            self.running.pop(job.id, None)
            ASYNC_RUNNING.set(len(self.running))
            self.wake()
            self._callbacks_due.set()

    async def _requeue(self, job_id: str) -> None:
        try:
            await self.store.release([job_id])
        except STORE_OUTAGES:  # said once by the store's health; the lease runs out, the job is taken up again
            pass
        except Exception:  # the lease runs out instead, and the job is taken up again (that run then counts)
            log.exception("job %s: handing the preempted job back failed", job_id)

    async def _retry_later(self, job_id: str, exc: MonolithError) -> None:
        """An outage (the engine stopped, the vector store unreachable) does not count the run; another server
        error does, so a job that fails the same way max_runs times ends `failed` with that error."""
        error = msgspec.json.encode(error_response(exc).error)
        try:
            now = await self.store.retry_later(job_id, self.settings.retry_after_s, not is_outage(exc), error)
        except Exception:  # the store is unreachable too: the lease runs out and the job is taken up again
            log.warning("job %s: could not hand it back after %s; its lease will run out", job_id, exc.error_type)
            return
        if now == "queued":
            log.warning("job %s: %s; queued again in %.0f s", job_id, exc.message, self.settings.retry_after_s)

    async def _heartbeat(self) -> None:
        """Renews this replica's leases; stops jobs it no longer holds; housekeeping if it holds that lease."""
        renewed_at = time.monotonic()
        while True:
            await asyncio.sleep(self.settings.heartbeat_s)
            try:
                mine = list(self.running)
                held = await self.store.renew(mine)
                renewed_at = time.monotonic()
                for job_id in mine:
                    if job_id not in held and job_id in self.running:
                        log.info("job %s was cancelled or taken over through another replica; stopping it", job_id)
                        await self._stop_here(job_id)
                await self._housekeeping()
            except STORE_OUTAGES:
                if self.running and time.monotonic() - renewed_at > self.settings.lease_s:
                    await self._stop_unproven()
            except Exception:
                log.exception("job heartbeat failed; trying again")

    async def _stop_unproven(self) -> None:
        """The leases could not be renewed for longer than they last: another replica may already run these jobs
        (and this one could not record their results anyway). They stop here; whoever claims them when the
        store is back runs them again."""
        held = len(self.running)
        log.warning("job store unreachable past the lease: stopping %d job(s) this replica cannot prove it holds", held)
        for job_id in list(self.running):
            await self._stop_here(job_id)

    async def _housekeeping(self) -> None:
        if not await self.housekeeper.hold():
            ASYNC_BACKLOG.set(0)  # the holder exports the shared figure; see metrics.ASYNC_BACKLOG
            return
        ASYNC_BACKLOG.set(await self.store.backlog())
        if time.time() - self._last_purge > PURGE_EVERY_S:
            self._last_purge = time.time()
            purged = await self.store.purge(time.time() - self.settings.result_ttl_s)
            expired = await self.expire_files() if self.expire_files else 0
            if purged or expired:
                log.info("deleted %d finished job(s) and %d file(s) past their retention", purged, expired)

    async def _deliver_callbacks(self) -> None:
        while True:
            try:
                await self.callbacks.deliver_due(render_job)
            except STORE_OUTAGES:
                await asyncio.sleep(self.store.db.health.backoff_s())
            except Exception:
                log.exception("callback delivery failed; trying again")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._callbacks_due.wait(), self.settings.poll_interval_s)
            self._callbacks_due.clear()
