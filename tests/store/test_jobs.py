"""The shared job store on SQLite and on PostgreSQL: claim order, leases and takeover, one outcome,
idempotency across replicas, callbacks claimed once, retention."""

from __future__ import annotations

import asyncio
import time

import msgspec
import pytest

from monolith.errors import Conflict
from monolith.store.database import Database
from monolith.store.jobs import Job, JobStore


async def claim_one(store: JobStore) -> Job | None:
    """The oldest queued job (or a running one whose lease ran out), now leased to `store`'s replica."""
    claimed = await store.claim(1)
    return claimed[0] if claimed else None


def replica(db: Database, name: str, lease_s: float = 30, max_runs: int = 3) -> JobStore:
    return JobStore(db, name, lease_s, max_runs)


async def test_jobs_are_claimed_oldest_first_and_once_across_replicas(db: Database, other_db: Database) -> None:
    a, b = replica(db, "a"), replica(other_db, "b")
    first, _ = await a.submit("rag", b'{"query":"a"}', None, None)
    second, _ = await b.submit("rag", b'{"query":"b"}', None, None)
    claimed = [await claim_one(a), await claim_one(b), await claim_one(a), await claim_one(b)]
    assert [j.id if j else None for j in claimed] == [first.id, second.id, None, None]
    assert claimed[0].status == "running" and claimed[0].runs == 1


async def test_concurrent_claims_never_hand_one_job_to_two_replicas(db: Database, other_db: Database) -> None:
    a, b = replica(db, "a"), replica(other_db, "b")
    ids = {(await a.submit("chat", b"{}", None, None))[0].id for _ in range(20)}
    claims = await asyncio.gather(*(claim_one(store) for _ in range(15) for store in (a, b)))
    got = [job.id for job in claims if job is not None]
    assert sorted(got) == sorted(ids), "every job claimed exactly once"


async def test_one_claim_takes_up_to_its_limit_oldest_first_and_none_twice_across_replicas(
    db: Database, other_db: Database
) -> None:
    a, b = replica(db, "a"), replica(other_db, "b")
    ids = [(await a.submit("chat", b"{}", None, None))[0].id for _ in range(12)]
    assert [job.id for job in await a.claim(3)] == ids[:3], "the oldest, in order"
    claims = await asyncio.gather(a.claim(4), b.claim(4), a.claim(4))
    got = [job.id for jobs in claims for job in jobs]
    assert all(len(jobs) <= 4 for jobs in claims)
    assert sorted(got) == sorted(ids[3:]), "the rest, each claimed exactly once"
    assert await b.claim(4) == []


async def test_a_job_keeps_its_submits_trace_context_for_its_runs_on_any_replica(
    db: Database, other_db: Database
) -> None:
    traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    job, _ = await replica(db, "a").submit("chat", b"{}", None, None, traceparent=traceparent)
    untraced, _ = await replica(db, "a").submit("chat", b"{}", None, None)
    claimed = await replica(other_db, "b").claim(2)
    assert [(j.id, j.traceparent) for j in claimed] == [(job.id, traceparent), (untraced.id, None)]


async def test_a_job_keeps_its_first_outcome(db: Database) -> None:
    store = replica(db, "a")
    job, _ = await store.submit("chat", b"{}", None, None)
    await claim_one(store)
    assert await store.finish(job.id, "cancelled")
    assert not await store.finish(job.id, "succeeded", result=b'{"late": true}', held=True)
    final = await store.get(job.id)
    assert final.status == "cancelled" and final.result is None and final.finished_at


async def test_a_lapsed_lease_is_taken_over_and_the_old_runner_cannot_write(db: Database, other_db: Database) -> None:
    a, b = replica(db, "a", lease_s=0.4), replica(other_db, "b", lease_s=0.4)
    job, _ = await a.submit("rag", b"{}", None, None)
    assert (await claim_one(a)).id == job.id
    assert await claim_one(b) is None, "a live lease is not taken"
    await asyncio.sleep(0.6)  # a stops renewing: killed
    taken = await claim_one(b)
    assert taken.id == job.id and taken.runs == 2 and taken.status == "running"
    assert await a.renew([job.id]) == set(), "a learns at its next heartbeat that it lost the job"
    assert not await a.finish(job.id, "succeeded", result=b'{"from": "a"}', held=True)
    assert await b.finish(job.id, "succeeded", result=b'{"from": "b"}', held=True)
    assert msgspec.json.decode((await a.get(job.id)).result) == {"from": "b"}


async def test_renewing_keeps_the_lease(db: Database, other_db: Database) -> None:
    a, b = replica(db, "a", lease_s=0.5), replica(other_db, "b", lease_s=0.5)
    job, _ = await a.submit("rag", b"{}", None, None)
    await claim_one(a)
    for _ in range(6):
        await asyncio.sleep(0.2)
        assert await a.renew([job.id]) == {job.id}
        assert await claim_one(b) is None


async def test_a_cancel_through_another_replica_reaches_the_runner_at_its_heartbeat(
    db: Database, other_db: Database
) -> None:
    a, b = replica(db, "a"), replica(other_db, "b")
    job, _ = await a.submit("chat", b"{}", None, None)
    await claim_one(a)
    assert await b.finish(job.id, "cancelled")
    assert await a.renew([job.id]) == set()
    assert (await a.get(job.id)).status == "cancelled"


async def test_a_job_that_keeps_killing_its_runner_fails_after_max_runs(db: Database, other_db: Database) -> None:
    a, b = replica(db, "a", lease_s=0.2, max_runs=2), replica(other_db, "b", lease_s=0.2, max_runs=2)
    job, _ = await a.submit("chat", b"{}", "http://127.0.0.1:9/cb", None)
    assert (await claim_one(a)).runs == 1
    await asyncio.sleep(0.3)
    assert (await claim_one(b)).runs == 2
    await asyncio.sleep(0.3)
    assert await claim_one(a) is None
    failed = await a.get(job.id)
    assert failed.status == "failed" and failed.finished_at and failed.callback_state == "pending"
    error = msgspec.json.decode(failed.error)
    assert error["type"] == "job_runs_exhausted" and "2 times" in error["message"]


async def test_a_clean_shutdown_hands_its_jobs_back_at_once(db: Database, other_db: Database) -> None:
    a, b = replica(db, "a"), replica(other_db, "b")
    job, _ = await a.submit("chat", b"{}", None, None)
    await claim_one(a)
    assert await a.release([job.id]) == 1
    again = await claim_one(b)
    assert again.id == job.id and again.runs == 1, "a clean release does not count as a run"


async def test_idempotency_key_returns_the_first_job_and_rejects_a_different_body(db: Database) -> None:
    store = replica(db, "a")
    job, created = await store.submit("rag", b'{"query":"a"}', None, "key-1")
    again, created_again = await store.submit("rag", b'{"query":"a"}', None, "key-1")
    assert created and not created_again and again.id == job.id
    with pytest.raises(Conflict):
        await store.submit("rag", b'{"query":"other"}', None, "key-1")


async def test_racing_submits_of_one_idempotency_key_make_one_job(db: Database, other_db: Database) -> None:
    stores = [replica(db, "a"), replica(other_db, "b")]
    results = await asyncio.gather(*(stores[i % 2].submit("rag", b'{"q":1}', None, "race") for i in range(8)))
    assert len({job.id for job, _ in results}) == 1
    assert sum(created for _, created in results) == 1
    jobs, _ = await stores[0].list(None, 100, None)
    assert len(jobs) == 1


async def test_list_filters_by_status_and_pages(db: Database) -> None:
    store = replica(db, "a")
    ids = [(await store.submit("rag", b"{}", None, None))[0].id for _ in range(5)]
    await claim_one(store)
    page, more = await store.list(None, 2, None)
    assert [j.id for j in page] == ids[:2] and more
    page, more = await store.list(None, 2, ids[3])
    assert [j.id for j in page] == ids[4:] and not more
    assert [j.id for j in (await store.list("running", 10, None))[0]] == ids[:1]
    assert await store.backlog() == 5


async def test_due_callbacks_are_claimed_by_one_replica(db: Database, other_db: Database) -> None:
    a, b = replica(db, "a", lease_s=0.4), replica(other_db, "b", lease_s=0.4)
    ids = set()
    for _ in range(6):
        job, _ = await a.submit("rag", b"{}", "http://127.0.0.1:9/cb", None)
        await a.finish(job.id, "succeeded", result=b"{}")
        ids.add(job.id)
    first, second = await asyncio.gather(a.claim_callbacks(), b.claim_callbacks())
    assert {j.id for j in first} | {j.id for j in second} == ids
    assert not {j.id for j in first} & {j.id for j in second}
    assert await a.claim_callbacks() == [] and await b.claim_callbacks() == []
    # b delivered its share; a died holding its own: after the lease, b takes them over.
    for job in second:
        await b.callback_result(job.id, delivered=True, retry_in_s=None, give_up=False)
    await asyncio.sleep(0.5)
    retaken = await b.claim_callbacks()
    assert {j.id for j in retaken} == {j.id for j in first}


async def test_a_failed_callback_is_retried_after_its_backoff(db: Database) -> None:
    store = replica(db, "a")
    job, _ = await store.submit("rag", b"{}", "http://127.0.0.1:9/cb", None)
    await store.finish(job.id, "succeeded", result=b"{}")
    [claimed] = await store.claim_callbacks()
    await store.callback_result(claimed.id, delivered=False, retry_in_s=0.4, give_up=False)
    assert await store.claim_callbacks() == []
    await asyncio.sleep(0.5)
    [again] = await store.claim_callbacks()
    assert again.id == job.id and again.callback_attempts == 1


async def test_retention_deletes_old_finished_jobs_but_not_pending_callbacks(db: Database) -> None:
    store = replica(db, "a")
    plain, _ = await store.submit("rag", b"{}", None, None)
    with_callback, _ = await store.submit("rag", b"{}", "http://127.0.0.1:9/cb", None)
    for job in (plain, with_callback):
        await store.finish(job.id, "succeeded", result=b"{}")
    assert await store.purge(time.time() + 1) == 1
    assert await store.get(plain.id) is None and await store.get(with_callback.id) is not None
    assert [j.id for j in await store.claim_callbacks()] == [with_callback.id]


async def test_an_outage_hands_the_job_back_uncounted_and_delayed(db: Database, other_db: Database) -> None:
    a, b = replica(db, "a", max_runs=1), replica(other_db, "b", max_runs=1)
    job, _ = await a.submit("chat", b"{}", None, None)
    await claim_one(a)
    assert await b.retry_later(job.id, 0.5, count_run=False, error=b"{}") is None, "only the holder hands it back"
    assert await a.retry_later(job.id, 0.5, count_run=False, error=b"{}") == "queued"
    waiting = await a.get(job.id)
    assert waiting.status == "queued" and waiting.runs == 0 and waiting.started_at is None
    assert await claim_one(b) is None, "claimed before its delay"
    await asyncio.sleep(0.6)
    again = await claim_one(b)
    assert again.id == job.id and again.runs == 1  # max_runs 1, and still it runs: the outage was not its run


async def test_a_server_error_counts_the_run_and_fails_the_job_at_max_runs(db: Database) -> None:
    store = replica(db, "a", max_runs=2)
    job, _ = await store.submit("chat", b"{}", None, None)
    error = b'{"message": "internal error", "type": "internal_error", "param": null, "code": null}'
    await claim_one(store)
    assert await store.retry_later(job.id, 0.01, count_run=True, error=error) == "queued"
    await asyncio.sleep(0.05)
    assert (await claim_one(store)).runs == 2
    assert await store.retry_later(job.id, 0.01, count_run=True, error=error) == "failed"
    failed = await store.get(job.id)
    assert failed.status == "failed" and failed.error == error and failed.finished_at
