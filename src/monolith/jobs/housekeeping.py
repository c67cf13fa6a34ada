"""Work for one replica at a time, under a named lease: the shared backlogs (async jobs, batch lines) exported as
metrics, and finished jobs and batch files past their retention deleted."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from monolith.config import StoreSettings
from monolith.errors import STORE_OUTAGES
from monolith.metrics import ASYNC_BACKLOG, BATCH_BACKLOG
from monolith.store.jobs import JobStore
from monolith.store.leases import Lease

log = logging.getLogger(__name__)

PURGE_EVERY_S = 60.0
HOUSEKEEPING = "housekeeping"


class Housekeeping:
    def __init__(self, store: JobStore, settings: StoreSettings, result_ttl_s: float) -> None:
        self.store = store
        self.settings = settings
        self.result_ttl_s = result_ttl_s
        self.lease = Lease(store.db, HOUSEKEEPING, store.replica, settings.lease_s)
        # Set by the runtime: batch files past files.ttl_s go with the same housekeeping.
        self.expire_files: Callable[[], Awaitable[int]] | None = None
        # Set by the runtime: the batch lines still to answer, exported beside the async backlog.
        self.batch_backlog: Callable[[], Awaitable[int]] | None = None
        self._last_purge = 0.0

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.settings.heartbeat_s)
            try:
                await self.once()
            except STORE_OUTAGES:  # said once by the store's health
                pass
            except Exception:
                log.exception("housekeeping failed; trying again")

    async def once(self) -> None:
        if not await self.lease.hold():
            ASYNC_BACKLOG.set(0)  # the holder exports the shared figures; see metrics.ASYNC_BACKLOG
            BATCH_BACKLOG.set(0)
            return
        ASYNC_BACKLOG.set(await self.store.backlog())
        if self.batch_backlog is not None:
            BATCH_BACKLOG.set(await self.batch_backlog())
        if time.time() - self._last_purge > PURGE_EVERY_S:
            self._last_purge = time.time()
            purged = await self.store.purge(time.time() - self.result_ttl_s)
            expired = await self.expire_files() if self.expire_files else 0
            if purged or expired:
                log.info("deleted %d finished job(s) and %d file(s) past their retention", purged, expired)

    async def release(self) -> None:
        await self.lease.release()
