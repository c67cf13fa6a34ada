"""Runs queued jobs on the engine slots the background budget grants them (scheduling.BackgroundBudget): claims as
many jobs as it has slots for, in one call to the shared store, and runs each; a job the budget preempts goes back
to the queue, that run not counted, and runs again from the start.

Jobs come from the shared store with a lease, renewed by a heartbeat (jobs.heartbeat) that stops any job cancelled
through another replica or taken over; a replica that dies stops renewing, and another takes its jobs over when
their leases run out. Housekeeping (jobs.housekeeping) and callbacks (jobs.callbacks) run beside it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

import msgspec

from monolith.admission import ASYNC
from monolith.errors import STORE_OUTAGES, MonolithError, as_domain_error, is_outage
from monolith.jobs.callbacks import CallbackLoop, CallbackSender
from monolith.jobs.heartbeat import LeaseKeeper
from monolith.jobs.housekeeping import Housekeeping
from monolith.jobs.wire import render_job
from monolith.metrics import ASYNC_RUNNING
from monolith.protocol.errors import error_response
from monolith.scheduling import BackgroundBudget, Hold, SlotRequest
from monolith.serving.registry import BY_KIND, answer_of
from monolith.serving.services import Services
from monolith.store.jobs import Job, JobStore
from monolith.tracing import background_span
from monolith.work import Work

log = logging.getLogger(__name__)


class JobRunner:
    def __init__(self, store: JobStore, services: Services, budget: BackgroundBudget) -> None:
        self.store = store
        self.services = services
        self.settings = services.settings.store
        self.budget = budget
        self.running: dict[str, asyncio.Task] = {}
        self.callbacks = CallbackSender(store, services.settings.callbacks)
        self.deliveries = CallbackLoop(self.callbacks, render_job, self.settings.poll_interval_s)
        self.housekeeping = Housekeeping(store, self.settings, services.settings.jobs.result_ttl_s)
        self.leases = LeaseKeeper("job", self.settings.heartbeat_s, self.settings.lease_s, self._renew, self._unproven)
        self._wake = asyncio.Event()
        self._loops: list[asyncio.Task] = []
        self.paused = False
        # While jobs wait for room (the last look found none), a standing request for every slot that frees, ahead
        # of the batch lines: it holds them while a claim is in flight too, until a claim finds the queue empty.
        self._asking: SlotRequest | None = None

    def start(self) -> None:
        self._loops = [
            asyncio.create_task(self._dispatch()),
            asyncio.create_task(self.leases.run()),
            asyncio.create_task(self.housekeeping.run()),
            asyncio.create_task(self.deliveries.run()),
        ]

    def pause(self) -> None:
        """Claim no more jobs (the drain); running ones go on."""
        self.paused = True
        self._stop_asking()

    def wake(self) -> None:
        self._wake.set()

    async def stop(self) -> None:
        """Running jobs go back to the queue at once, for any replica (or the next start) to run."""
        self._stop_asking()
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
            await self.housekeeping.release()
        await self.callbacks.close()

    async def cancel(self, job_id: str) -> bool:
        """Cancel a queued or running job. One running here is aborted in the engine at once; one running
        on another replica stops at that replica's next heartbeat."""
        cancelled = await self.store.finish(job_id, "cancelled")
        await self._stop_here(job_id)
        if cancelled:
            self.wake()
            self.deliveries.due()
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
        """Claims jobs into the slots the budget gives this runner, in one call to the store, and starts them;
        whether the queue may hold more (every slot got a job)."""
        holds = await self._slots()
        if not holds:
            return False
        try:
            jobs = await self.store.claim(len(holds))
        except BaseException:  # and none held for the next try either: a failing claim would be retried at once
            self._stop_asking()
            for held in holds:
                self.budget.release(held)
            raise
        if len(jobs) < len(holds):  # the queue is empty: no slot waits for a job any more
            self._stop_asking()
        for spare in holds[len(jobs) :]:
            self.budget.release(spare)
        for slot, job in zip(holds, jobs, strict=False):
            if slot.preempted:  # real-time traffic took the slot back while the claim was in flight
                await self._requeue(job.id)
                continue
            slot.queued_at = job.created_at
            slot.overdue = slot.overdue or self.budget.is_overdue(job.created_at)
            slot.task = self.running[job.id] = asyncio.create_task(self._run(job, slot))
        return len(jobs) == len(holds) and not any(slot.preempted for slot in holds)

    async def _slots(self) -> list[Hold]:
        """Slots for the next claim, held before it awaits the store (a batch line would take them meanwhile):
        those the standing request holds and every one there is room for now; with none, one for the oldest queued
        job where it waited past max_background_wait_s (it claims that job alone); else those the standing request
        is granted within poll_interval_s."""
        holds = self.budget.take(self._asking) if self._asking is not None else []
        while (held := self.budget.try_acquire(ASYNC, time.time(), overdue=False)) is not None:
            holds.append(held)
        if holds:
            return holds
        asking = self._ask()  # before anything awaits: a slot that frees meanwhile is held for a job
        if self.budget.room(overdue=True):
            oldest = await self.store.oldest_queued_at()
            if oldest is not None and self.budget.is_overdue(oldest):
                overdue = self.budget.try_acquire(ASYNC, oldest, overdue=True)
                if overdue is not None:
                    return [overdue]
        await asyncio.wait({asking.granted}, timeout=self.settings.poll_interval_s)
        return self.budget.take(asking) if asking is self._asking else []

    def _ask(self) -> SlotRequest:
        if self._asking is None:  # granted: the dispatcher claims at once, not at its next look
            self._asking = self.budget.ask_standing(ASYNC, self.wake)
        return self._asking

    def _stop_asking(self) -> None:
        """No job waits for a slot any more (the queue is empty, the drain began): the standing request goes, and
        the slots it holds go back."""
        asking, self._asking = self._asking, None
        if asking is not None:
            self.budget.withdraw(asking)

    async def _run(self, job: Job, held: Hold) -> None:
        # One ticket per job: a RAG job's helper generations and its answer count as one request.
        ticket = self.services.admission.admit(self.services.settings.server.request_timeout_s, lane=ASYNC)
        work = Work(ASYNC, (ticket,), held)
        try:
            try:
                why = "an async job cannot stream"
                run = {"monolith.job.id": job.id, "monolith.job.kind": job.kind, "monolith.job.run": job.runs}
                with background_span(f"job {job.kind}", run, job.traceparent):  # its own trace, linked to the submit
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
            self.deliveries.due()

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

    async def _renew(self) -> bool:
        """Renews the leases of the jobs running here; stops any this replica no longer holds."""
        mine = list(self.running)
        held = await self.store.renew(mine)
        for job_id in mine:
            if job_id not in held and job_id in self.running:
                log.info("job %s was cancelled or taken over through another replica; stopping it", job_id)
                await self._stop_here(job_id)
        return True

    async def _unproven(self) -> bool:
        """The leases could not be renewed for longer than they last: another replica may already run these jobs
        (and this one could not record their results anyway). They stop here; whoever claims them when the
        store is back runs them again."""
        if self.running:
            held = len(self.running)
            log.warning("job store unreachable past the lease: stopping %d job(s) it cannot prove it holds", held)
            for job_id in list(self.running):
                await self._stop_here(job_id)
        return True
