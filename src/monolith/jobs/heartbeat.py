"""Keeping what this replica runs from the shared store: a lease renewed every heartbeat, for the async jobs and for
the batch alike. A replica that dies stops renewing, and another takes its work over when the leases run out; one
that cannot reach the store for longer than a lease can no longer prove that it holds its work, and stops it."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from monolith.errors import STORE_OUTAGES

log = logging.getLogger(__name__)

# What to do on each beat, and when the leases could not be renewed for longer than they last: whether to go on.
Beat = Callable[[], Awaitable[bool]]


class LeaseKeeper:
    def __init__(self, what: str, heartbeat_s: float, lease_s: float, renew: Beat, unproven: Beat) -> None:
        """`renew`: renews the leases (and acts on what the store says of them); `unproven`: stops the work the
        leases covered. Each returns whether to go on beating."""
        self.what = what
        self.heartbeat_s = heartbeat_s
        self.lease_s = lease_s
        self.renew = renew
        self.unproven = unproven

    async def run(self) -> None:
        """Beats until `renew` or `unproven` says to stop (or the task is cancelled). An outage is said once by the
        store's health, here only when it outlasts the lease; any other failure is logged and tried again."""
        renewed_at = time.monotonic()
        while True:
            await asyncio.sleep(self.heartbeat_s)
            try:
                going_on = await self.renew()
                renewed_at = time.monotonic()
            except STORE_OUTAGES:
                going_on = time.monotonic() - renewed_at <= self.lease_s or await self.unproven()
            except Exception:
                log.exception("%s heartbeat failed; trying again", self.what)
                going_on = True
            if not going_on:
                return
