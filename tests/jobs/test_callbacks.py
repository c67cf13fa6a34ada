"""Callbacks to a real HTTP receiver on loopback: signature, retries with exponential backoff, giving up."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from monolith.config import JobsSettings
from monolith.jobs.callbacks import SIGNATURE_HEADER, CallbackSender, sign, verify
from monolith.store.database import Database, open_database
from monolith.store.jobs import JobStore
from tests.helpers import Receiver


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver(fail_first=3)
    yield r
    r.close()


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    database = await open_database("jobs.sqlite3", tmp_path)
    yield database
    await database.close()


def test_signature_round_trip() -> None:
    body = b'{"id": "job-1"}'
    assert verify("s3cret", body, sign("s3cret", body))
    assert not verify("s3cret", body + b" ", sign("s3cret", body))
    assert not verify("other", body, sign("s3cret", body))


async def deliver_until_settled(store: JobStore, sender: CallbackSender, job_id: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while (await store.get(job_id)).callback_state == "pending" and time.monotonic() < deadline:
        await sender.deliver_due(lambda j: b'{"id": "%s"}' % j.id.encode())
        await asyncio.sleep(0.02)


async def test_callback_is_retried_with_exponential_backoff_then_delivered_signed(
    db: Database, receiver: Receiver
) -> None:
    store = JobStore(db, "replica-a", lease_s=30, max_runs=3)
    backoff_s = 0.3
    settings = JobsSettings(callback_secret="s3cret", callback_backoff_s=backoff_s, callback_max_attempts=5)
    sender = CallbackSender(store, settings)
    job, _ = await store.submit("rag", b"{}", receiver.url, None)
    await store.finish(job.id, "succeeded", result=b'{"answer": "hi"}')
    await deliver_until_settled(store, sender, job.id, timeout_s=10)
    await sender.close()
    final = await store.get(job.id)
    assert final.callback_state == "delivered" and final.callback_attempts == 4
    assert len(receiver.received) == 4
    # Attempt n+1 waits backoff * 2**(n-1) after attempt n: 0.3, 0.6, 1.2 s (the loop polls every 20 ms).
    gaps = [later - earlier for earlier, later in zip(receiver.arrived, receiver.arrived[1:], strict=False)]
    for n, gap in enumerate(gaps):
        expected = backoff_s * 2**n
        assert expected <= gap < expected + 0.25, (n, gaps)
    headers, body = receiver.received[-1]
    assert verify("s3cret", body, headers[SIGNATURE_HEADER])
    assert headers["X-Monolith-Job-Id"] == job.id


async def test_callback_gives_up_after_max_attempts(db: Database) -> None:
    store = JobStore(db, "replica-a", lease_s=30, max_runs=3)
    settings = JobsSettings(callback_backoff_s=0.01, callback_max_attempts=2, callback_timeout_s=1)
    sender = CallbackSender(store, settings)
    job, _ = await store.submit("rag", b"{}", "http://127.0.0.1:9/nothing-listens", None)
    await store.finish(job.id, "failed", error=b"{}")
    await deliver_until_settled(store, sender, job.id, timeout_s=5)
    await sender.close()
    final = await store.get(job.id)
    assert final.callback_state == "failed" and final.callback_attempts == 2
