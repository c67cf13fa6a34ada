"""The lease keeper the async job runner and the batch runner share: renew every beat, stop what cannot be proven
held once the store has been unreachable for longer than a lease."""

from __future__ import annotations

import asyncio

from monolith.errors import STORE_OUTAGES
from monolith.jobs.heartbeat import LeaseKeeper

BEAT_S, LEASE_S = 0.02, 0.1


class Store:
    def __init__(self, answers: list[bool | BaseException]) -> None:
        self.answers = answers
        self.renewals = 0
        self.unproven = 0

    async def renew(self) -> bool:
        self.renewals += 1
        answer = self.answers[min(self.renewals, len(self.answers)) - 1]
        if isinstance(answer, BaseException):
            raise answer
        return answer

    async def stop_unproven(self) -> bool:
        self.unproven += 1
        return False


def outage() -> BaseException:
    return STORE_OUTAGES[0]("the store is down")


async def test_it_beats_until_a_renewal_says_to_stop() -> None:
    store = Store([True, True, False])
    await asyncio.wait_for(LeaseKeeper("test", BEAT_S, LEASE_S, store.renew, store.stop_unproven).run(), 2)
    assert store.renewals == 3 and store.unproven == 0


async def test_an_outage_shorter_than_the_lease_stops_nothing() -> None:
    store = Store([outage(), outage(), True, False])
    await asyncio.wait_for(LeaseKeeper("test", BEAT_S, LEASE_S, store.renew, store.stop_unproven).run(), 2)
    assert store.unproven == 0


async def test_an_outage_past_the_lease_stops_the_work_it_cannot_prove_it_holds() -> None:
    store = Store([outage()])
    await asyncio.wait_for(LeaseKeeper("test", BEAT_S, LEASE_S, store.renew, store.stop_unproven).run(), 2)
    assert store.unproven == 1 and store.renewals >= LEASE_S / BEAT_S


async def test_any_other_failure_is_tried_again_and_does_not_count_as_a_renewal() -> None:
    store = Store([RuntimeError("a bug"), True, False])
    await asyncio.wait_for(LeaseKeeper("test", BEAT_S, LEASE_S, store.renew, store.stop_unproven).run(), 2)
    assert store.renewals == 3 and store.unproven == 0


async def test_failures_that_are_not_outages_do_not_prove_the_lease_either() -> None:
    """A renewal that raised something else did not renew: past the lease, the next outage stops the work."""
    store = Store([RuntimeError("a bug")] * 10 + [outage()])
    await asyncio.wait_for(LeaseKeeper("test", BEAT_S, LEASE_S, store.renew, store.stop_unproven).run(), 2)
    assert store.unproven == 1
