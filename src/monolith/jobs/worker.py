"""Runs queued jobs on spare engine capacity: never while a real-time request waits, at most a share of it."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Callable

import msgspec

from monolith.admission import ADMISSION, LANE, TICKET, realtime_waiting
from monolith.api.schemas import ErrorBody
from monolith.errors import MonolithError
from monolith.jobs.callbacks import CallbackSender
from monolith.jobs.kinds import execute
from monolith.jobs.store import Job, JobStore
from monolith.serving import Services

log = logging.getLogger(__name__)

PURGE_EVERY_S = 60.0


class JobRunner:
    def __init__(self, store: JobStore, services: Services, render: Callable[[Job], bytes]) -> None:
        self.store = store
        self.services = services
        self.settings = services.settings.jobs
        self.render = render
        self.slots = max(1, math.floor(services.settings.engine.max_num_seqs * self.settings.max_share))
        self.running: dict[str, asyncio.Task] = {}
        self.callbacks = CallbackSender(store, self.settings)
        self._wake = asyncio.Event()
        self._loops: list[asyncio.Task] = []
        self.paused = False

    def start(self) -> None:
        requeued = self.store.requeue_running()
        if requeued:
            log.info("re-queued %d job(s) that were running when the server stopped", requeued)
        self._loops = [asyncio.create_task(self._dispatch()), asyncio.create_task(self._housekeeping())]

    def pause(self) -> None:
        """Claim no more jobs (the drain); running ones go on."""
        self.paused = True

    def wake(self) -> None:
        self._wake.set()

    async def stop(self) -> None:
        """Running jobs go back to the queue: the next start runs them to completion."""
        for task in self._loops:
            task.cancel()
        for job_id, task in list(self.running.items()):
            task.cancel()
            self.store.requeue(job_id)
        await asyncio.gather(*self._loops, *self.running.values(), return_exceptions=True)
        await self.callbacks.close()

    async def cancel(self, job_id: str) -> bool:
        """Cancel a queued or running job; a running one is aborted in the engine."""
        cancelled = self.store.finish(job_id, "cancelled")
        task = self.running.get(job_id)
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if cancelled:
            self.wake()
        return cancelled

    async def _dispatch(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.settings.poll_interval_s)
            self._wake.clear()
            while not self.paused and len(self.running) < self.slots and realtime_waiting() == 0:
                job = self.store.claim_next()
                if job is None:
                    break
                self.running[job.id] = asyncio.create_task(self._run(job))

    async def _run(self, job: Job) -> None:
        LANE.set("async")
        # One ticket per job: a RAG job's helper generations and its answer count as one request.
        ticket = ADMISSION.admit(self.services.settings.server.request_timeout_s, lane="async")
        TICKET.set(ticket)
        try:
            result = await execute(self.services, job.kind, job.request, job.id)
            self.store.finish(job.id, "succeeded", result=msgspec.json.encode(result))
        except asyncio.CancelledError:
            pass  # cancelled by the caller (already recorded) or by shutdown (re-queued)
        except MonolithError as exc:
            error = ErrorBody(exc.message, exc.error_type, exc.param)
            self.store.finish(job.id, "failed", error=msgspec.json.encode(error))
        except Exception:
            log.exception("job %s failed", job.id)
            error = ErrorBody(f"internal error (job {job.id})", "internal_error")
            self.store.finish(job.id, "failed", error=msgspec.json.encode(error))
        finally:
            ticket.release()
            self.running.pop(job.id, None)
            self.wake()

    async def _housekeeping(self) -> None:
        last_purge = 0.0
        while True:
            try:
                await self.callbacks.deliver_due(self.render)
                if time.time() - last_purge > PURGE_EVERY_S:
                    last_purge = time.time()
                    purged = self.store.purge(time.time() - self.settings.result_ttl_s)
                    if purged:
                        log.info("deleted %d finished job(s) past their retention", purged)
            except Exception:
                log.exception("job housekeeping failed")
            await asyncio.sleep(self.settings.poll_interval_s)
